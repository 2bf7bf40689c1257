#!/usr/bin/env bash
# Installs the peers fasttito is tested against that conflict with the test extra, each in a
# cached venv of its own:
#   verifiers 0.4.0 (its TrainClient renders with renderers; the test extra pins verifiers 0.3.1
#   for the drop-in client), with renderers 0.1.12 and the tokenizer stack the local engine needs.
# fasttito itself is not installed there: the test puts the build under test on PYTHONPATH
# (a folder holding only the fasttito package), so the cached venv never goes stale.
# Prints, as its last line, `FASTTITO_VERIFIERS04=<venv>` for the caller to eval.
#
# Where: ${FASTTITO_CACHE:-$HOME/.cache/fasttito}/verifiers-0.4.0. The venv is built in a
# temporary folder and renamed into place when complete, so an interrupted install never looks
# installed; a second run takes well under a second. PYTHON picks the interpreter (>= 3.11).
set -euo pipefail

python="${PYTHON:-python3}"
cache="${FASTTITO_CACHE:-$HOME/.cache/fasttito}"
venv="$cache/verifiers-0.4.0"
pins=(verifiers==0.4.0 renderers==0.1.12 transformers==5.23.0 tokenizers==0.23.3 jinja2 aiohttp)
marker="$venv/.fasttito-peers"
want="${pins[*]}"

if [[ -f "$marker" && "$(cat "$marker")" == "$want" ]]; then
    echo "FASTTITO_VERIFIERS04=$venv"
    exit 0
fi
mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.verifiers-0.4.0.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
"$python" -m venv "$tmp"
"$tmp/bin/python" -m pip install -q --disable-pip-version-check "${pins[@]}" >&2
echo "$want" > "$tmp/.fasttito-peers"
rm -rf "$venv"
# venvs hard-code their path in scripts; only bin/python is used, and it resolves either way
mv "$tmp" "$venv"
trap - EXIT
echo "FASTTITO_VERIFIERS04=$venv"
