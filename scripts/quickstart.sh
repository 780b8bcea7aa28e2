#!/usr/bin/env bash
# The README's first command: install, then run the main job on the bundled example corpus with
# the embedded default model (SmolLM2-135M-Instruct on llama.cpp, started and stopped by `run`).
#   N=4 bash scripts/quickstart.sh
# For tests (tests/test_quickstart.py runs this sequence against the stub server):
#   TF_SKIP_INSTALL=1 uses $VENV as it is; TF_RUN_ARGS adds flags to `run` (e.g. --llm-url URL).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
N=${N:-2}
OUT=${OUT:-out}
[ "${TF_SKIP_INSTALL:-0}" = 1 ] || VENV="$VENV" bash scripts/install.sh
TF="$VENV/bin/teacherforge"
mkdir -p "$OUT"
DB="$OUT/quickstart.duckdb"

"$TF" ingest examples/university --db "$DB"
# shellcheck disable=SC2086  # TF_RUN_ARGS is a list of flags
"$TF" run --config examples/quickstart.yaml --n "$N" --db "$DB" --json ${TF_RUN_ARGS:-} > "$OUT/run.log"   # progress on stderr, run id + JSON on stdout
RUN_ID=$(head -n 1 "$OUT/run.log")
# One split: a demo of a few samples would otherwise drop those whose documents straddle splits.
"$TF" export --db "$DB" --run "$RUN_ID" --out "$OUT/dataset.jsonl" --split 1,0,0
"$TF" export --db "$DB" --run "$RUN_ID" --out "$OUT/all-samples.jsonl" --status all --thought field --split 1,0,0
# The accepted ones again with their thought and evidence, scored by `check` as a dataset from
# anywhere would be: the gate's verdict, re-derived from the file and the chunk index alone.
"$TF" export --db "$DB" --run "$RUN_ID" --out "$OUT/dataset-evidence.jsonl" --thought field --split 1,0,0
if [ -s "$OUT/dataset-evidence.jsonl" ]; then
    "$TF" check "$OUT/dataset-evidence.jsonl" --db "$DB" > "$OUT/check.txt" || true
    echo "teacherforge check $OUT/dataset-evidence.jsonl: $(tail -n 1 "$OUT/check.txt")" >&2
fi
"$TF" sql "select tier, count(*) as samples, avg((status = 'accepted')::int) as acceptance from samples where run_id = '$RUN_ID' group by 1 order by 1" --db "$DB"
FIRST=$("$TF" sql "select sample_id from samples where run_id = '$RUN_ID' order by 1 limit 1" --db "$DB" --format csv | tail -n 1)
"$TF" replay "$FIRST" --db "$DB"
echo "dataset: $OUT/dataset.jsonl   event log: $DB   run: $RUN_ID" >&2
