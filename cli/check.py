"""``teacherforge check FILE``: score conversations that did not come from a run, with a run's gate.

For each assistant turn it retrieves what a run's teacher would have retrieved for the user message
before it (the same retriever, top-k and search mode), adds the chunks the turn's evidence names,
and runs graph/gate.py: the rules (with a neutral plan: no persona, no hard-negative expectation,
only alternating turns asked for), the verifier, and with ``--llm-url`` the critic. Reading only:
nothing is written to the database, so a dataset from anywhere can be checked against a corpus.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from teacherforge.agents.rules import RuleSettings
from teacherforge.agents.schemas import Persona, Plan, cited_ids
from teacherforge.cli.check_input import CheckInputError, Conversation, load_conversations
from teacherforge.cli.common import DEFAULT_DB, USER_ERRORS, DbOption, app, err, fail, out, read_only
from teacherforge.graph import gate
from teacherforge.graph.config import RunConfig, load_config
from teacherforge.graph.runner import RunError, build_agents, build_retriever
from teacherforge.retrieval.retriever import InMemoryRetriever

CHECK_FORMATS = ("table", "json")
NEUTRAL_PERSONA = Persona(
    name="unspecified user", description="No persona was given: judge the user turns as plain questions."
)


def neutral_plan(conversation: Conversation) -> Plan:
    """A plan for a conversation that has none: direct tier, standard technique, no persona."""
    users = sum(1 for t in conversation.turns if t["role"] == "user")
    return Plan(
        sample_id=conversation.id,
        index=conversation.line,
        category=None,
        tier="direct",
        persona=NEUTRAL_PERSONA,
        technique="standard",
        user_turns=min(12, max(1, users)),
    )


def with_retrieval(
    conversation: Conversation, retriever: InMemoryRetriever, config: RunConfig, texts: dict[str, str]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The turns with ``retrieved_chunk_ids`` filled as a run would, and the text of every chunk used.

    ``texts`` is the whole corpus by chunk id: evidence may name a chunk the search did not return,
    and that chunk's real text is what its quote is checked against. An unknown id stays unknown.
    """
    turns: list[dict[str, Any]] = []
    chunk_text: dict[str, str] = {}
    asked = ""
    for turn in conversation.turns:
        if turn["role"] == "user":
            asked = turn["content"]
            turns.append(dict(turn))
            continue
        hits = retriever.search(asked, config.top_k, config.search) if asked.strip() else []
        named = [e["chunk_id"] for e in turn["evidence"] if e["chunk_id"] in texts]
        chunk_text.update({h.chunk_id: h.text for h in hits})
        chunk_text.update({c: texts[c] for c in named})
        turns.append(
            {
                **turn,
                "cited_chunk_ids": cited_ids(turn.get("cited_chunk_ids") or [], turn["evidence"]),
                "retrieved_chunk_ids": list(dict.fromkeys([*(h.chunk_id for h in hits), *named])),
            }
        )
    return turns, chunk_text


def _rule_settings(config: RunConfig, require_thought: bool) -> RuleSettings:
    """The run's rule settings; a missing thought is advisory unless asked for (exports may drop it)."""
    settings = config.rules
    if require_thought or "thought_missing" in settings.advisory:
        return settings
    return settings.model_copy(update={"advisory": [*settings.advisory, "thought_missing"]})


def _seed(conversation: Conversation) -> int:
    return int(hashlib.sha256(f"check:{conversation.id}".encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


async def _judge_all(
    items: list[tuple[Conversation, list[dict], dict[str, str]]],
    config: RunConfig,
    rule_settings: RuleSettings,
    agents: Any,
) -> list[gate.Verdict]:
    semaphore = asyncio.Semaphore(config.concurrency)

    async def one(conversation: Conversation, turns: list[dict], chunk_text: dict[str, str]) -> gate.Verdict:
        async with semaphore:
            return await gate.judge(
                neutral_plan(conversation),
                turns,
                chunk_text,
                rule_settings,
                config.verifier,
                agents,
                config.critic_thresholds,
                _seed(conversation),
                structure="alternating",
            )

    try:
        return await asyncio.gather(*(one(*item) for item in items))
    finally:
        if agents is not None:
            await agents.aclose()


def result_line(conversation: Conversation, verdict: gate.Verdict) -> dict[str, Any]:
    """One JSON line: the verdict, short reason codes, and every check's findings."""
    critic: dict[str, Any] | None = None
    if verdict.critic is not None:
        critic = verdict.critic.payload(0)
    elif verdict.critic_error is not None:
        critic = {"error": verdict.critic_error}
    return {
        "id": conversation.id,
        "line": conversation.line,
        "verdict": "pass" if verdict.passed else "fail",
        "reasons": verdict.reason_codes(),
        "checks": {
            "rules": [f.model_dump() for f in verdict.checked.rule_failures],
            "verifier": [f.model_dump() for f in verdict.checked.verifier_failures],
            "critic": critic,
        },
    }


def summary_line(results: list[dict[str, Any]]) -> dict[str, Any]:
    by_reason = Counter(code for r in results for code in r["reasons"])
    passed = sum(1 for r in results if r["verdict"] == "pass")
    return {
        "summary": {
            "conversations": len(results),
            "pass": passed,
            "fail": len(results) - passed,
            "by_reason": dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
        }
    }


def _first_detail(result: dict[str, Any]) -> str:
    checks = result["checks"]
    for f in checks["verifier"]:
        if not f["advisory"]:
            return f"turn {f['turn_index']}: '{f['span']}' {f['detail']}"
    for f in checks["rules"]:
        if not f["advisory"]:
            return f"{f['rule']}: {f['detail']}"
    critic = checks["critic"] or {}
    if critic.get("error"):
        return critic["error"]
    if critic.get("failed_dimensions"):
        return f"below threshold: {', '.join(critic['failed_dimensions'])}"
    return ""


def _print_table(results: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    table = Table("id", "verdict", "reasons", "first problem")
    for r in results:
        style = "green" if r["verdict"] == "pass" else "red"
        table.add_row(
            Text(r["id"]), Text(r["verdict"], style), Text(", ".join(r["reasons"])), Text(_first_detail(r))
        )
    out.print(table)
    s = summary["summary"]
    reasons = ", ".join(f"{k} {v}" for k, v in s["by_reason"].items()) or "none"
    out.print(f"{s['conversations']} conversation(s): {s['pass']} pass, {s['fail']} fail; reasons: {reasons}",
              highlight=False)  # fmt: skip


@app.command()
def check(
    file: Annotated[
        Path, typer.Argument(help='JSONL, one {"messages": [...]} per line (export --format openai).')
    ],
    db: DbOption = DEFAULT_DB,
    fmt: Annotated[str, typer.Option("--format", help="table|json")] = "table",
    llm_url: Annotated[
        str | None, typer.Option("--llm-url", help="Also run the critic on this OpenAI-compatible endpoint.")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="The critic's model at --llm-url.")] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="run.yaml: rules, verifier, critic_thresholds, top_k, search"),
    ] = None,
    top_k: Annotated[
        int | None, typer.Option("--top-k", help="Chunks retrieved per user turn (default 3)")
    ] = None,
    require_thought: Annotated[
        bool, typer.Option("--require-thought", help="A missing assistant thought fails (default: advisory).")
    ] = False,
) -> None:
    """Score conversations from anywhere with a run's rules, verifier and (with --llm-url) critic.

    Exit code 0: every conversation passes; 1: some fail; 2: the input cannot be checked.
    """
    if fmt not in CHECK_FORMATS:
        fail(f"--format must be one of {'|'.join(CHECK_FORMATS)} (got '{fmt}')")
    try:
        conversations = load_conversations(file)
        cfg = load_config(config, {"top_k": top_k, "llm_url": llm_url, "model": model})
        con = read_only(db)
    except (CheckInputError, *USER_ERRORS) as exc:
        fail(str(exc))
    try:
        retriever = build_retriever(con)
    except RunError as exc:
        fail(f"{db}: {exc}")
    finally:
        con.close()
    texts = dict(zip(retriever.table.ids, retriever.table.texts, strict=True))
    items = [(c, *with_retrieval(c, retriever, cfg, texts)) for c in conversations]
    verdicts = _verdicts(items, cfg, _rule_settings(cfg, require_thought), llm_url)
    results = [result_line(c, v) for (c, _, _), v in zip(items, verdicts, strict=True)]
    summary = summary_line(results)
    if fmt == "json":
        for line in [*results, summary]:
            sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
    else:
        _print_table(results, summary)
    if summary["summary"]["fail"]:
        raise typer.Exit(1)


def _verdicts(items: list, cfg: RunConfig, rule_settings: RuleSettings, llm_url: str | None) -> list:
    """Judge every conversation; the critic's endpoint is checked (and probed) once, like a run's."""
    if llm_url is None:
        return asyncio.run(_judge_all(items, cfg, rule_settings, None))
    from teacherforge.graph.session import run_endpoints

    try:
        with run_endpoints(cfg, log_line=lambda m: err.print(m, highlight=False)) as (generator, critic):
            agents = build_agents(cfg, generator, critic)
            return asyncio.run(_judge_all(items, cfg, rule_settings, agents))
    except USER_ERRORS as exc:
        fail(str(exc))
    return []  # pragma: no cover - fail() exits
