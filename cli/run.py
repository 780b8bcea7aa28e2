"""The `run` command: generate a run (fresh, --resume, --shard, --from-eval)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from teacherforge.cli.common import (
    DEFAULT_DB,
    USER_ERRORS,
    DbOption,
    app,
    err,
    fail,
    open_writer,
    server_error_types,
)
from teacherforge.cli.retrieval import (
    DEFAULT_COLLECTION,
    StoreOption,
    WeaviateCollectionOption,
    WeaviateGrpcOption,
    WeaviateUrlOption,
    close_retriever,
    open_retriever,
    store_settings,
)
from teacherforge.cli.run_stop import dry_run_command, finish_stopped, hard_exit, run_stoppable
from teacherforge.graph.budget import Budget, outcome_text
from teacherforge.graph.config import ConfigError, load_config
from teacherforge.graph.feedback import seeded_jobs, seeds_for_run
from teacherforge.graph.interrupt import StopControl
from teacherforge.graph.lineage import resume_jobs, resume_replies, run_config
from teacherforge.graph.ray_cluster import connect as connect_cluster
from teacherforge.graph.ray_cluster import disconnect as disconnect_cluster
from teacherforge.graph.runner import generate, new_run_id
from teacherforge.graph.session import run_endpoints
from teacherforge.graph.shard import (
    check_run_id,
    keep_shard,
    parse_shard,
    plan_hash,
    run_shard,
    shard_jobs,
    shared_run_id,
)
from teacherforge.graph.workers import check_worker_options, generate_on_workers
from teacherforge.store.db_lock import note_run
from teacherforge.store.run_queries import run_exists


@app.command()
def run(
    n: Annotated[int | None, typer.Option("--n", help="Samples to generate.")] = None,
    db: DbOption = DEFAULT_DB,
    config: Annotated[Path | None, typer.Option("--config", help="YAML run config.")] = None,
    llm_url: Annotated[
        list[str] | None,
        typer.Option(
            help="OpenAI-compatible URL (vLLM); default: embedded. Repeat for replicas of one model: "
            "requests go to the replica with the fewest in flight."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model name at --llm-url, or a GGUF path for the embedded server.")
    ] = None,
    critic_url: Annotated[str | None, typer.Option(help="Separate endpoint for the critic.")] = None,
    critic_model: Annotated[str | None, typer.Option()] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    concurrency: Annotated[int | None, typer.Option()] = None,
    max_revisions: Annotated[int | None, typer.Option()] = None,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON summary line.")] = False,
    keep_server: Annotated[
        bool, typer.Option(help="Leave the embedded model server running for later runs to reuse.")
    ] = False,
    resume: Annotated[
        str | None,
        typer.Option(
            help="Continue RUN_ID: keep finished samples, restart the rest reusing recorded replies."
        ),
    ] = None,
    from_eval: Annotated[
        str | None,
        typer.Option(
            help="New round from EVAL_ID: one sample per held-out question the student failed, same "
            "chunks, harder tier (--n repeats them round-robin)."
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(help="I/N: generate only plan indexes k with k % N == I (merge the files afterwards)."),
    ] = None,
    run_id_option: Annotated[
        str | None,
        typer.Option(
            "--run-id",
            help="Run id to use; shards of one run share it (default with --shard: derived from the config).",
        ),
    ] = None,
    adaptive: Annotated[
        bool, typer.Option(help="Adaptive concurrency: AIMD on 429s and latency, --concurrency is the cap.")
    ] = False,
    store: StoreOption = "duckdb",
    weaviate_url: WeaviateUrlOption = None,
    weaviate_grpc_port: WeaviateGrpcOption = 50051,
    weaviate_collection: WeaviateCollectionOption = DEFAULT_COLLECTION,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and an estimate of calls and tokens; no model.")
    ] = False,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            help="Cap the run at N tokens (in + out): each call first reserves max_tokens + its prompt, "
            "and one that does not fit is not sent."
        ),
    ] = None,
    max_cost: Annotated[
        float | None, typer.Option(help="Stop taking samples at this cost in USD (needs --price-in/out).")
    ] = None,
    price_in: Annotated[float, typer.Option(help="USD per 1M prompt tokens.")] = 0.0,
    price_out: Annotated[float, typer.Option(help="USD per 1M completion tokens.")] = 0.0,
    wait: Annotated[
        bool, typer.Option("--wait", help="If another process writes to --db, wait for it; do not fail.")
    ] = False,
    grace: Annotated[
        float, typer.Option(help="After Ctrl-C, seconds in-flight samples may take to finish.")
    ] = 60.0,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Run the samples on N Ray worker processes (a local Ray cluster on 127.0.0.1, started "
            "and stopped by run; with --ray-address: N workers on that cluster). Needs teacherforge[ray].",
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="Join the Ray cluster at HOST:PORT (`ray start --head` prints it); default one worker "
            "per node. Samples are handed out as slots free; this process writes --db.",
        ),
    ] = None,
) -> None:
    """Generate conversations: plan → user ⇄ teacher → rules → critic → refine → accept/reject."""
    overrides = {
        "n": n,
        "llm_url": (llm_url[0] if len(llm_url) == 1 else llm_url) if llm_url else None,
        "adaptive": True if adaptive else None,
        "model": model,
        "critic_url": critic_url,
        "critic_model": critic_model,
        "seed": seed,
        "concurrency": concurrency,
        "max_revisions": max_revisions,
    }
    run_id, extra_start, sharding = resume or run_id_option or new_run_id(), None, None
    log = retriever = cluster = None
    try:
        sharding = parse_shard(shard) if shard else None
        budget = Budget(max_tokens, max_cost, price_in, price_out)
        if dry_run:
            dry_run_command(db, config, overrides, budget, as_json)
            return
        if run_id_option:
            check_run_id(run_id_option)
        if resume and from_eval:
            raise ConfigError("--resume and --from-eval exclude each other; a resumed run keeps its seeds")
        settings = store_settings(store, weaviate_url, weaviate_grpc_port, weaviate_collection)
        if workers is not None or ray_address is not None:
            check_worker_options(workers, ray_address)
            cluster = connect_cluster(workers, ray_address)  # before the database: nothing to undo on failure
            err.print(cluster.describe(), highlight=False)
        con, log = open_writer(db, wait)
        retriever = open_retriever(con, settings) if settings else None
        if resume:
            cfg = run_config(con, resume).model_copy(
                update={k: v for k, v in overrides.items() if v is not None}
            )
            jobs, kept = resume_jobs(con, resume, cfg.n)
            jobs = keep_shard(jobs, sharding or run_shard(con, resume))  # a shard resumes its own slice
            replies = resume_replies(con, resume)
            err.print(
                f"resuming {resume}: {kept} sample(s) kept, {len(jobs)} to (re)generate", highlight=False
            )
        elif from_eval:  # the eval's failures become this run's plan seeds (graph/feedback.py)
            seeds = seeds_for_run(con, from_eval, n)
            cfg = load_config(config, {**overrides, "n": len(seeds)})
            jobs, replies = seeded_jobs(con, run_id, seeds), None
            extra_start = {"from_eval": from_eval, "plan_seeds": seeds}
            err.print(f"seeding {len(jobs)} sample(s) from the failures in {from_eval}", highlight=False)
        else:
            cfg = load_config(config, overrides)
            jobs, replies = None, None
            if sharding is not None:
                run_id = run_id_option or shared_run_id(cfg)
                jobs = shard_jobs(run_id, cfg.n, sharding)
        if not resume and run_exists(con, run_id):
            raise ConfigError(f"run {run_id} is already in {db}; continue it with --resume {run_id}")
        if sharding is not None and not resume:
            if from_eval:
                jobs = keep_shard(jobs, sharding)
            extra_start = {**(extra_start or {}), "shard": sharding.payload(), "plan_hash": plan_hash(cfg)}
    except USER_ERRORS as exc:
        # Close what was opened: exiting with the writer thread and DuckDB still open could abort the
        # process (SIGABRT in native teardown) instead of the one-line error and exit code 2.
        if cluster is not None:
            disconnect_cluster(cluster)
        if retriever is not None:
            close_retriever(retriever)
        if log is not None:
            log.close()
            con.close()
        fail(str(exc))
    print(run_id, flush=True)
    note_run(db, run_id)
    control = StopControl(grace_s=grace)
    try:
        with run_endpoints(cfg, lambda m: err.print(m, highlight=False), keep_server) as (gen, crit):
            summary = _generate_with_progress(
                con,
                log,
                cfg,
                gen,
                crit,
                run_id,
                jobs,
                replies,
                retriever,
                bool(resume),
                extra_start,
                control=control,
                budget=budget,
                on_hard_exit=lambda: hard_exit(log, run_id, db),
                cluster=cluster,
                workers=workers,
                weaviate=settings,
            )
    except USER_ERRORS + server_error_types() as exc:
        log.close()
        fail(str(exc))
    except KeyboardInterrupt:  # Ctrl-C before generation began (endpoint check, model server start)
        log.close()
        if not run_exists(con, run_id):
            fail("interrupted before the run started; nothing was generated", code=130)
        fail(f"interrupted; continue with: teacherforge run --resume {run_id} --db {db}", code=130)
    finally:
        if retriever is not None:
            close_retriever(retriever)
        if cluster is not None:
            disconnect_cluster(cluster)
    log.close()
    con.close()  # not left to the collector: a stopped sample's traceback cycle would keep the file open
    err.print(
        f"run {summary.run_id}: {summary.accepted} accepted, {summary.rejected} rejected, "
        f"{summary.failed} failed, {summary.llm_calls} LLM calls ({summary.reused_calls} reused) "
        f"in {summary.wall_s:.1f}s",
        highlight=False,
    )
    if summary.budget:
        err.print(f"budget: {outcome_text(summary.budget)}", highlight=False)
    if as_json:
        print(json.dumps(summary.as_dict()), flush=True)
    finish_stopped(control, run_id, db)


def _generate_with_progress(
    con,
    log,
    cfg,
    gen,
    crit,
    run_id,
    jobs=None,
    replies=None,
    retriever=None,
    resumed=None,
    extra_start=None,
    control=None,
    budget=None,
    on_hard_exit=None,
    cluster=None,
    workers=None,
    weaviate=None,
):
    counts = {"accepted": 0, "rejected": 0, "failed": 0}
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task("generating", total=cfg.n if jobs is None else len(jobs))

        def done(sample_id: str, status: str) -> None:
            counts[status] = counts.get(status, 0) + 1
            label = " ".join(f"{k} {v}" for k, v in counts.items())
            progress.update(task, advance=1, description=f"generating ({label})")

        common = {
            "run_id": run_id,
            "on_sample_done": done,
            "jobs": jobs,
            "replies": replies,
            "resumed": jobs is not None if resumed is None else resumed,
            "extra_start": extra_start,
            "control": control,
        }
        if cluster is not None:  # the samples run on Ray workers; this process stays the only writer
            notify = lambda m: err.print(m, highlight=False)  # noqa: E731
            on = {"notify": notify, "weaviate": weaviate, "budget": budget}
            work = generate_on_workers(con, log, cfg, gen, crit, cluster, workers, **on, **common)
        else:
            work = generate(con, log, cfg, gen, crit, retriever=retriever, budget=budget, **common)
        return asyncio.run(run_stoppable(work, control, on_hard_exit))
