#!/usr/bin/env bash
# Installs the real NVIDIA Dynamo OpenAI frontend (PyPI ai-dynamo==1.6.1) into ./.venv, for the
# tests that run it on CPU (fasttito.testing.dynamo_launch, tests/test_dynamo_frontend.py) and for fasttito demo.
#   scripts/install-dynamo.sh          (creates .venv with $PYTHON or python3 if it is missing)
#
# Why not `pip install ai-dynamo`: its dependency aisimulate==0.13.0 is a stub that downloads the
# real wheel from NVIDIA's own index, and it asks for a certifi newer than any on PyPI. Neither is
# needed by the frontend or by dynamo.common.backend (the Python engine API), so the two Dynamo
# wheels go in with --no-deps, plus the few packages they import:
#   ai-dynamo-runtime needs pydantic + uvloop; the frontend and dynamo.common.backend import
#   msgspec, packaging and yaml; the test engine needs transformers + tokenizers + jinja2 (for
#   apply_chat_template).
# Pins: the Dynamo wheels, uvloop and msgspec are exact and always enforced. pydantic, packaging,
# PyYAML, transformers, tokenizers and jinja2 are shared with the project's own test extras
# (pyproject.toml), so a version already in .venv is kept (checked: pydantic 2.14 works although
# ai-dynamo-runtime declares <=2.13.5); the pins below only apply when the package is missing.
# Idempotent; takes well under a second when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
PIP=(-m pip install -q --disable-pip-version-check --only-binary=:all:)

# exact, enforced
DYNAMO=(ai-dynamo==1.6.1 ai-dynamo-runtime==1.6.1)
EXACT=(uvloop==0.23.0 msgspec==0.22.0)
# installed only when missing (dist name, pin, minimum accepted version)
SHARED=(
    "pydantic pydantic==2.13.5 2.10.6"
    "packaging packaging==26.3 20.0"
    "PyYAML PyYAML==6.0.4 5.1"
    "transformers transformers==5.23.0 4.56.0"
    "tokenizers tokenizers==0.23.3 0.21.0"
    "Jinja2 jinja2==3.1.6 3.1.0"
)

if [ ! -x .venv/bin/python ]; then
    echo "--- creating .venv"
    "$python" -m venv .venv
fi
py=.venv/bin/python

# Prints the requirements that are not satisfied, one per line: "dynamo", "exact <spec>" or
# "shared <pin>". Nothing printed = all there.
missing() {
    "$py" - "${EXACT[@]}" -- "${SHARED[@]}" <<'PY'
import sys
from importlib import metadata

def version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None

def vtuple(v):
    out = []
    for part in v.split("."):
        digits = "".join(ch for ch in part if ch.isdigit()) or "0"
        out.append(int(digits))
        if not part.isdigit():
            break
    return tuple(out)

if version("ai-dynamo") != "1.6.1" or version("ai-dynamo-runtime") != "1.6.1":
    print("dynamo")
args = sys.argv[1:]
sep = args.index("--")
for spec in args[:sep]:
    dist, want = spec.split("==")
    if version(dist) != want:
        print("exact", spec)
for line in args[sep + 1 :]:
    dist, pin, minimum = line.split()
    have = version(dist)
    if have is None or vtuple(have) < vtuple(minimum):
        print("shared", pin)
PY
}

# pip install, minus pip's complaints about the ai-dynamo dependencies deliberately left out
pip_install() {
    local log rc=0
    log="$(mktemp)"
    "$py" "${PIP[@]}" "$@" 2>"$log" || rc=$?
    local expected="dependency resolver does not currently take into account"
    expected+="|^ai-dynamo(-runtime)? 1\.6\.1 requires "
    grep -vE "$expected" "$log" >&2 || true
    rm -f "$log"
    return "$rc"
}

todo="$(missing)"
if [ -n "$todo" ]; then
    start=$(date +%s.%N)
    if grep -qx dynamo <<<"$todo"; then
        echo "--- installing ${DYNAMO[*]} (--no-deps)"
        pip_install --no-deps "${DYNAMO[@]}"
    fi
    specs=$(awk '$1 != "dynamo" {print $2}' <<<"$todo")
    if [ -n "$specs" ]; then
        echo "--- installing" $specs
        # shellcheck disable=SC2086
        pip_install $specs
    fi
    left="$(missing)"
    if [ -n "$left" ]; then
        echo "error: still missing after install:" >&2
        echo "$left" >&2
        exit 1
    fi
    took="$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')"
    echo "--- installed in $took s"
fi

# Smoke check: the frontend starts its CLI, and the engine API imports.
"$py" -c "import dynamo.common.backend.run, dynamo.common.backend.engine, dynamo.llm.exceptions" \
    || { echo "error: dynamo.common.backend does not import" >&2; exit 1; }
version="$(HF_HUB_OFFLINE=1 "$py" -m dynamo.frontend --version 2>&1)" \
    || { echo "error: python -m dynamo.frontend --version failed: $version" >&2; exit 1; }
echo "--- ok: $version"
