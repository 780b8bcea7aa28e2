"""Every export format loads in the library that consumes it, the split by document can be checked
from the files alone, and the same conversation costs the same tokens whatever format carried it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, query, run_generation
from scripted import GoodModel
from stub_server import StubServer
from typer.testing import CliRunner

from teacherforge.cli.app import app

datasets = pytest.importorskip("datasets")
PLAN = {"min_user_turns": 1, "max_user_turns": 3, "hard_negative_rate": 0.2, "multi_source_rate": 0}
SPLIT_NAMES = ("train", "validation", "test")
JSONL = ("openai", "sharegpt", "alpaca")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def forge(ingested_template, tmp_path_factory) -> tuple[Path, str, Path]:
    """16 stub conversations (top_k 1, so records touch few documents and a split exists)."""
    root = tmp_path_factory.mktemp("export")
    db = root / "forge.duckdb"
    shutil.copy(ingested_template, db)
    with StubServer(GoodModel()) as stub:
        summary = run_generation(db, stub.url, n=16, seed=5, top_k=1, plan=PLAN)
    assert summary.accepted >= 12
    return db, summary.run_id, root


@pytest.fixture(scope="module")
def exports(forge) -> dict[str, Path]:
    """Each format as a folder (a file per split), openai also as one file; thoughts inlined."""
    db, _, root = forge
    (root / "sharegpt").mkdir()
    (root / "sharegpt" / "dataset_info.json").write_text(json.dumps({"mine": {"file_name": "mine.json"}}))
    paths = {fmt: root / fmt for fmt in ("openai", "sharegpt", "alpaca", "hf")}
    paths["single"] = root / "single.jsonl"
    for name, path in paths.items():
        fmt = "openai" if name == "single" else name
        result = invoke("export", "--db", db, "--out", path, "--format", fmt, "--thought", "inline")
        assert result.exit_code == 0, result.output
        assert f"to {path} ({fmt})" in result.stdout and "split by source document" in result.stdout
    return paths


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def split_files(folder: Path) -> dict[str, Path]:
    return {name: folder / f"{name}.jsonl" for name in SPLIT_NAMES if (folder / f"{name}.jsonl").exists()}


def test_jsonl_exports_load_with_datasets_json(exports, tmp_path):
    single = read_jsonl(exports["single"])
    alpaca = {"instruction", "input", "output", "system", "history"}
    for fmt, columns in {"openai": {"messages"}, "sharegpt": {"conversations"}, "alpaca": alpaca}.items():
        files = split_files(exports[fmt])
        assert {"train", "test"} <= set(files)
        loaded = datasets.load_dataset(
            "json", data_files={k: str(v) for k, v in files.items()}, cache_dir=str(tmp_path / fmt)
        )
        assert set(loaded) == set(files)
        for name, split in loaded.items():
            assert columns | {"metadata"} <= set(split.column_names)
            assert {m["split"] for m in split["metadata"]} == {name}
            assert split.num_rows == len(read_jsonl(files[name]))
        assert sum(s.num_rows for s in loaded.values()) == len(single)
    one = datasets.load_dataset("json", data_files=str(exports["single"]), cache_dir=str(tmp_path / "one"))
    assert one["train"].num_rows == len(single)
    assert {r["metadata"]["split"] for r in single} == set(split_files(exports["openai"]))


def test_hf_export_loads_from_disk_and_as_parquet_with_typed_features(exports, tmp_path):
    folder = exports["hf"]
    on_disk = datasets.load_from_disk(str(folder))
    parquet = datasets.load_dataset("parquet", data_dir=str(folder / "parquet"), cache_dir=str(tmp_path))
    openai = {name: read_jsonl(path) for name, path in split_files(exports["openai"]).items()}
    assert set(on_disk) == set(parquet) == set(openai)
    for name in on_disk:
        assert on_disk[name].num_rows == parquet[name].num_rows == len(openai[name])
        by_id = {r["metadata"]["sample_id"]: r for r in openai[name]}
        for row in on_disk[name]:
            assert row["messages"] == by_id[row["metadata"]["sample_id"]]["messages"]
    features = on_disk["train"].features
    assert features["messages"].feature["content"].dtype == "string"  # a list of {role, content}
    meta = features["metadata"]
    assert meta["source_documents"].feature.dtype == "string" and meta["revisions"].dtype == "int32"
    assert {v.dtype for v in meta["critic_scores"].values()} == {"int32"}
    assert parquet["train"].features == features


def test_hf_declares_types_even_when_a_column_is_empty_everywhere(tmp_path):
    """No thoughts, no scores, no documents anywhere: inference would type these columns null."""
    from teacherforge.dataset.export_hf import write_hf

    bare = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
            "metadata": {"sample_id": "s1", "split": "train", "source_chunk_ids": [], "source_documents": [],
                         "critic_scores": None, "revisions": 0}}  # fmt: skip
    write_hf([bare], tmp_path / "bare", "field")
    full = json.loads(json.dumps(bare))
    full["messages"][1]["thought"] = "because"
    full["metadata"].update(source_documents=["a.md"], critic_scores={"groundedness": 5}, sample_id="s2")
    write_hf([full], tmp_path / "full", "field")
    a = datasets.load_from_disk(str(tmp_path / "bare"))["train"]
    b = datasets.load_dataset("parquet", data_dir=str(tmp_path / "full" / "parquet"), cache_dir=str(tmp_path))
    both = datasets.concatenate_datasets([a, b["train"].cast(a.features)])
    assert both[1]["messages"][1]["thought"] == "because" and both[0]["messages"][1]["thought"] is None
    assert both[1]["metadata"]["source_documents"] == ["a.md"]
    assert "null" not in str(a.features)


def test_every_record_names_its_documents_and_no_document_is_in_two_splits(forge, exports):
    db, _, _ = forge
    chunk_doc = dict(query(db, "SELECT chunk_id, document FROM chunks"))
    ingested = {r[0] for r in query(db, "SELECT path FROM documents")}
    side_of: dict[str, str] = {}
    for name, path in split_files(exports["openai"]).items():
        for record in read_jsonl(path):
            meta = record["metadata"]
            assert meta["split"] == name and meta["source_documents"]
            assert set(meta["source_documents"]) <= ingested
            assert meta["source_documents"] == sorted({chunk_doc[c] for c in meta["source_chunk_ids"]})
            for doc in meta["source_documents"]:
                assert side_of.setdefault(doc, name) == name, f"{doc} is in {side_of[doc]} and {name}"
    assert len(set(side_of.values())) >= 2


def test_dataset_info_entries_point_at_files_with_the_named_columns(exports):
    for fmt in ("sharegpt", "alpaca"):
        info = json.loads((exports[fmt] / "dataset_info.json").read_text())
        entries = {k: v for k, v in info.items() if k.startswith(f"{fmt}_")}
        assert set(entries) == {f"{fmt}_{name}" for name in split_files(exports[fmt])}
        for entry in entries.values():
            row = read_jsonl(exports[fmt] / entry["file_name"])[0]
            assert entry["formatting"] == fmt
            assert set(entry["columns"].values()) <= set(row)
            if fmt == "sharegpt":
                tags = entry["tags"]
                roles = {turn[tags["role_tag"]] for turn in row["conversations"]}
                assert roles <= {tags["system_tag"], tags["user_tag"], tags["assistant_tag"]}
                assert row["conversations"][1][tags["role_tag"]] == tags["user_tag"]
    kept = json.loads((exports["sharegpt"] / "dataset_info.json").read_text())["mine"]
    assert kept == {"file_name": "mine.json"}  # other datasets listed there survive
    assert not (exports["openai"] / "dataset_info.json").exists()


def test_thought_modes_and_alpaca_refuses_a_thought_field(forge, tmp_path):
    db, _, _ = forge
    for thought in ("drop", "field"):
        assert invoke("export", "--db", db, "--out", tmp_path / f"{thought}.jsonl", "--format", "sharegpt",
                      "--thought", thought).exit_code == 0  # fmt: skip
    dropped = read_jsonl(tmp_path / "drop.jsonl")
    field = read_jsonl(tmp_path / "field.jsonl")
    gpt = [t for r in field for t in r["conversations"] if t["from"] == "gpt"]
    assert gpt and all(t["thought"] and not t["value"].startswith("<think>") for t in gpt)
    assert not any("thought" in t or "<think>" in t["value"] for r in dropped for t in r["conversations"])
    result = invoke("export", "--db", db, "--out", tmp_path / "a", "--format", "alpaca", "--thought", "field")
    assert result.exit_code == 2 and "alpaca" in result.stderr and "--thought drop or inline" in result.stderr
    bad = invoke("export", "--db", db, "--out", tmp_path / "x.json")
    assert bad.exit_code == 2 and ".jsonl" in bad.stderr


def test_alpaca_flattens_earlier_exchanges_into_history(exports):
    files = split_files(exports["openai"]).values()
    openai = {r["metadata"]["sample_id"]: r for p in files for r in read_jsonl(p)}
    rows = [r for p in split_files(exports["alpaca"]).values() for r in read_jsonl(p)]
    assert any(r["history"] for r in rows)  # multi-turn conversations exist
    for row in rows:
        messages = openai[row["metadata"]["sample_id"]]["messages"]
        assert alpaca_messages(row) == messages


def test_the_student_uses_the_exported_split(exports):
    from teacherforge.student.data import load_records
    from teacherforge.student.split import split_by_document

    records = load_records(exports["single"])
    split = split_by_document(records, heldout_share=0.5, seed=1)
    held = {r.sample_id for r in split.heldout}
    assert held == {r.sample_id for r in records if r.metadata["split"] != "train"} and held
    assert not held & {r.sample_id for r in split.train}


def alpaca_messages(row: dict) -> list[dict]:
    messages = [{"role": "system", "content": row["system"]}] if row["system"] else []
    for user, assistant in [*row["history"], [row["instruction"], row["output"]]]:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return messages


SHAREGPT_ROLE = {"system": "system", "human": "user", "gpt": "assistant"}


@pytest.fixture(scope="module")
def gemma_tokenizer():
    """The bundled Gemma 3 270M tokenizer with the Gemma chat template the student trains with."""
    pytest.importorskip("transformers")
    pytest.importorskip("trl")
    from teacherforge.student import base_model

    converted = base_model.converted_dir()
    if (converted / "tokenizer_config.json").exists():
        return base_model.load_tokenizer(str(converted))
    try:
        gguf = base_model.bundled_gguf()
    except base_model.BaseModelError as exc:
        pytest.skip(str(exc))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)  # no model conversion
    tokenizer.chat_template = base_model.GEMMA3_CHAT_TEMPLATE
    return tokenizer


@pytest.mark.slow
def test_same_conversation_same_tokens_in_every_format(exports, gemma_tokenizer):
    from trl.data_utils import apply_chat_template

    def tokens(messages: list[dict]) -> list[int]:
        text = apply_chat_template({"messages": messages}, gemma_tokenizer)["text"]
        return gemma_tokenizer(text, add_special_tokens=False)["input_ids"]

    conversations: dict[str, dict[str, list[dict]]] = {}
    for path in split_files(exports["openai"]).values():
        for r in read_jsonl(path):
            conversations.setdefault(r["metadata"]["sample_id"], {})["openai"] = r["messages"]
    for path in split_files(exports["sharegpt"]).values():
        for r in read_jsonl(path):
            turns = [{"role": SHAREGPT_ROLE[t["from"]], "content": t["value"]} for t in r["conversations"]]
            conversations[r["metadata"]["sample_id"]]["sharegpt"] = turns
    for path in split_files(exports["alpaca"]).values():
        for r in read_jsonl(path):
            conversations[r["metadata"]["sample_id"]]["alpaca"] = alpaca_messages(r)
    for split in datasets.load_from_disk(str(exports["hf"])).values():
        for r in split:
            conversations[r["metadata"]["sample_id"]]["hf"] = r["messages"]
    assert len(conversations) >= 10
    for sample_id, by_format in conversations.items():
        assert set(by_format) == {"openai", "sharegpt", "alpaca", "hf"}, sample_id
        counts = {fmt: tokens(messages) for fmt, messages in by_format.items()}
        lengths = {k: len(v) for k, v in counts.items()}
        assert len({tuple(ids) for ids in counts.values()}) == 1, (sample_id, lengths)
        assert len(counts["openai"]) > 20
    some = next(iter(conversations.values()))["openai"]
    assert "<think>" in gemma_tokenizer.decode(tokens(some))  # the inlined thoughts were counted too


def test_the_samples_in_docs_export_md_have_the_fields_an_export_writes(exports):
    blocks = re.findall(r"```json\n(.*?)```", (ROOT / "docs" / "export.md").read_text(), re.S)
    openai, sharegpt, alpaca = (json.loads(b) for b in blocks[:3])
    rows = {fmt: read_jsonl(split_files(exports[fmt])["train"])[0] for fmt in JSONL}
    assert set(openai["metadata"]) == set(rows["openai"]["metadata"])
    assert set(sharegpt) == set(rows["sharegpt"]) and set(alpaca) == set(rows["alpaca"])
    assert [t["from"] for t in sharegpt["conversations"]] == ["system", "human", "gpt", "human", "gpt"]
    assert alpaca_messages(alpaca)[1:] == [
        {"role": m["role"], "content": m["content"] if m["role"] == "user" else
         f"<think>{m['thought']}</think>\n{m['content']}"} for m in openai["messages"][1:]
    ]  # fmt: skip
