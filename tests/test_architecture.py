"""The package layout's rules (docs/architecture.md), checked on the source so they cannot drift.

- imports run one way between packages: the import-linter contracts in pyproject.toml;
- no private name (``_x``) is imported from another module;
- SQL lives in store/: no other product package holds a SQL statement;
- prompts live in prompts/, and only agents/llm.py (StructuredLLM) calls a chat model.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ["agents", "prompts", "store", "retrieval", "graph", "dataset", "student", "serve", "ui", "cli"]
SQL_STATEMENT = re.compile(
    r"^\s*(SELECT|INSERT\s+INTO|CREATE\s+(OR\s+REPLACE\s+)?(TABLE|VIEW|INDEX|SEQUENCE|TEMP)|UPDATE\s+\w+\s+SET|"
    r"DELETE\s+FROM|WITH\s+\w+\s+AS|COPY\s|DROP\s|ALTER\s|DESCRIBE\s)"  # the project writes SQL upper-case
)


def _sources(packages: list[str]) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return "teacherforge." + ".".join(parts)


def test_import_contracts_hold():
    """In a child process: import-linter reconfigures logging, which other tests capture."""
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_no_private_name_is_imported_from_another_module():
    offenders = []
    for path in _sources(PRODUCT + ["evals"]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("teacherforge."):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.module} {private}")
    assert not offenders, "private names imported across modules:\n" + "\n".join(offenders)


def _string_constants(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            yield ast.Constant(value=text, lineno=node.lineno)


@pytest.mark.parametrize("package", [p for p in PRODUCT if p != "store"])
def test_sql_lives_in_store(package):
    offenders = []
    for path in _sources([package]):
        for const in _string_constants(ast.parse(path.read_text(), str(path))):
            if SQL_STATEMENT.match(const.value) and len(const.value.split()) >= 3:
                offenders.append(f"{path.relative_to(ROOT)}:{const.lineno} {const.value.strip()[:60]!r}")
    assert not offenders, "SQL outside store/ (move it into a store/ module):\n" + "\n".join(offenders)


def test_prompt_templates_live_in_prompts():
    """Every Jinja template with a system/user block (a prompt) is under prompts/."""
    stray = [
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*.j2")
        if p.parts[len(ROOT.parts)] not in ("prompts", ".venv", "build", "dist", "out")
        and re.search(r"{%-?\s*block\s+(system|user)\b", p.read_text())
    ]
    assert not stray, f"prompt templates outside prompts/: {stray}"


def test_only_structured_llm_calls_a_chat_model():
    """Chat-model clients and chat/completions requests appear only in agents/llm.py, in the transport
    beneath it (agents/chat_transport.py, used by nothing else) and in serve/ (the server side)."""
    pattern = re.compile(r"ChatOpenAI\(|AsyncOpenAI\(|[\"'][^\"']*/chat/completions[\"']|chat/completions\"")
    offenders = []
    for path in _sources([p for p in PRODUCT if p != "serve"]):
        if path in (ROOT / "agents" / "llm.py", ROOT / "agents" / "chat_transport.py"):
            continue
        if "chat_transport" in path.read_text():
            offenders.append(f"{path.relative_to(ROOT)} uses agents/chat_transport.py (StructuredLLM only)")
        for const_line, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if pattern.search(code) and not code.lstrip().startswith(('"""', "'")):
                offenders.append(f"{path.relative_to(ROOT)}:{const_line} {line.strip()[:80]}")
    assert not offenders, "model calls outside StructuredLLM:\n" + "\n".join(offenders)


def test_every_folder_is_an_installed_package():
    """pyproject maps each top-level package folder into the teacherforge namespace."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = {v for v in config["package-dir"].values()}
    assert mapped == set(PRODUCT) | {"evals"}
    for path in _sources(PRODUCT + ["evals"]):
        package = _module_name(path.parent / "__init__.py")
        if path.name == "__init__.py":
            assert package in config["packages"], f"{package} is missing from [tool.setuptools] packages"
