"""The README's first command, scripts/quickstart.sh, as a command sequence on the stub server.

The real script needs the embedded model, which CI does not run; this runs the same sequence
(ingest, run, export twice, sql, sql --format csv into replay) with ``--llm-url`` pointing at the
stub. A change that breaks how the commands fit together (it happened: ``sql --format csv`` once
wrote CRLF and the captured sample id broke ``replay``) fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from scripted import GoodModel
from stub_server import StubServer

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_sequence_runs_end_to_end_on_the_stub(tmp_path):
    out = tmp_path / "out"
    with StubServer(GoodModel()) as stub:
        env = {
            **os.environ,
            "VENV": sys.prefix,
            "TF_SKIP_INSTALL": "1",
            "TF_RUN_ARGS": f"--llm-url {stub.url} --model stub-model",
            "OUT": str(out),
            "N": "2",
        }
        done = subprocess.run(
            ["bash", "scripts/quickstart.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
        )
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = (out / "run.log").read_text().splitlines()[0]
    rows = [json.loads(line) for line in (out / "all-samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["metadata"]["run_id"] == run_id for r in rows)
    assert (out / "dataset.jsonl").exists()
    assert f"{run_id}-0" in done.stdout  # replay of the first sample printed its conversation
    assert "acceptance" in done.stdout  # the sql table
    assert f"run: {run_id}" in done.stderr
    accepted = len((out / "dataset.jsonl").read_text().splitlines())
    assert accepted >= 1  # the stub's good model gets through the gate
    # what the gate accepted passes `check` from the exported file alone
    assert f"{accepted} conversation(s): {accepted} pass, 0 fail" in done.stderr, done.stderr[-2000:]
