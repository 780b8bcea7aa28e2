"""Every SQL recipe in docs/provenance.md runs as written on a real (stub-model) run."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT, query, run_generation
from scripted import GoodModel, failing_critique
from stub_server import FaultPlan, StubServer

RECIPES = re.findall(r"```sql\n(.*?)```", (ROOT / "docs" / "provenance.md").read_text(), re.S)


@pytest.fixture(scope="module")
def populated_db(ingested_template, tmp_path_factory):
    import shutil

    path = tmp_path_factory.mktemp("prov") / "forge.duckdb"
    shutil.copy(ingested_template, path)

    def sloppy_teacher(body, n):  # every fifth answer cites a chunk it never saw: a rule failure
        if n % 5 == 0:
            return {
                "thought": "see [zzz-999]",
                "cited_chunk_ids": ["zzz-999"],
                "content": "It is described there.",
            }
        return None

    model = GoodModel(
        {
            "Critique": lambda body, n: failing_critique(1) if n % 3 == 0 else None,
            "TeacherReply": sloppy_teacher,
        }
    )
    with StubServer(model, faults=FaultPlan(script={3: "500", 9: "truncated"})) as stub:
        run_generation(path, stub.url, n=8, max_revisions=1, plan={"hard_negative_rate": 0.25})
    return path


def test_doc_has_at_least_ten_recipes():
    assert len(RECIPES) >= 10


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.split("\n")[0][:40] for r in RECIPES])
def test_recipe_runs_and_returns_rows(populated_db, recipe):
    rows = query(populated_db, recipe)
    assert rows, "recipe returned no rows on a run that should populate it"
