#!/usr/bin/env bash
# Builds fasttito from this checkout and installs it into ./.venv, with optional extras.
#   scripts/bootstrap.sh [release|debug] [EXTRAS]     e.g. scripts/bootstrap.sh release test
#   FASTTITO_WHEEL=dist/fasttito-...whl scripts/bootstrap.sh release test   installs that wheel
# Needs: python3 (>= 3.11) and a Rust toolchain (cargo). Everything else comes from PyPI/crates.io.
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${1:-release}"
extras="${2:-}"
python="${PYTHON:-python3}"

command -v cargo >/dev/null || { echo "error: cargo not found; install Rust from https://rustup.rs" >&2; exit 1; }
"$python" - <<'PY' || { echo "error: fasttito needs Python >= 3.11 (set PYTHON=...)" >&2; exit 1; }
import sys; raise SystemExit(sys.version_info < (3, 11))
PY

if [ ! -x .venv/bin/python ]; then
    echo "--- creating .venv"
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip "maturin>=1.9.4,<2"

rm -rf target/wheels
if [ -n "${FASTTITO_WHEEL:-}" ]; then
    # A wheel built already (scripts/test passes the one scripts/build-wheels wrote into dist/).
    echo "--- using the wheel $FASTTITO_WHEEL"
    mkdir -p target/wheels
    cp "$FASTTITO_WHEEL" target/wheels/
elif [ "$profile" = release ]; then
    echo "--- building the fasttito wheel ($profile)"
    .venv/bin/maturin build --release --locked --out target/wheels
else
    echo "--- building the fasttito wheel ($profile)"
    .venv/bin/maturin build --locked --out target/wheels
fi
wheel=$(ls target/wheels/fasttito-*.whl)
spec="$wheel"
[ -n "$extras" ] && spec="$wheel[$extras]"
echo "--- installing $spec"
.venv/bin/python -m pip install -q --disable-pip-version-check --force-reinstall "$spec"
