"""The pages in a real browser: headless Chromium (Debian's package, as the report test uses) opens the
samples page, a sample page, the dashboard and a page with hostile text; each renders its content with
no console message at all (a script error or a Content-Security-Policy violation would log one). The
screenshots go to the test's temporary folder; with TEACHERFORGE_UPDATE_SCREENSHOTS=1 they replace
docs/ui/*.png, which docs/ui.md shows (a plain test run leaves the working tree as it was)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest
from conftest import ROOT, query
from ui_support import make_run, sample_ids, served

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
DOC_SHOTS = ROOT / "docs" / "ui"
UPDATE_SHOTS = os.environ.get("TEACHERFORGE_UPDATE_SCREENSHOTS", "") == "1"
HOSTILE = '<script>document.title="pwned"</script><img src=x onerror="document.title=\'pwned\'">'


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def browse(browser: str, url: str, profile: Path, screenshot: Path | None = None, height: int = 1000):
    """The DOM after load (or a screenshot) and every console line Chromium logged."""
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
        f"--window-size=1280,{height}", f"--screenshot={screenshot}" if screenshot else "--dump-dom", url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


def shrink(path: Path) -> None:
    """A palette PNG: a page of text needs few colours, and the docs stay small."""
    from PIL import Image

    with Image.open(path) as image:
        image.convert("RGB").quantize(colors=64).save(path, optimize=True)


@pytest.fixture(scope="module")
def browser():
    found = _chromium()
    if found is None:
        if IN_CI:
            pytest.fail("chromium is not installed; .ci/run installs it with apt-get")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def db(ingested_template, tmp_path_factory):
    path = tmp_path_factory.mktemp("ui-browser") / "forge.duckdb"
    shutil.copy(ingested_template, path)
    make_run(path)
    return path


def test_pages_render_the_conversation_and_chunks_without_console_messages(browser, db, tmp_path):
    revised = query(db, "SELECT min(sample_id) FROM samples WHERE status = 'accepted' AND revisions > 0")[0][
        0
    ]
    hostile = [s for s in sample_ids(db, "accepted") if s != revised][0]
    chunk = query(
        db, "SELECT retrieved_chunk_ids[1] FROM turns WHERE sample_id = ? AND turn_index = 1", hostile
    )
    con = duckdb.connect(str(db))
    con.execute("UPDATE chunks SET text = ? || text WHERE chunk_id = ?", [HOSTILE, chunk[0][0]])
    con.close()
    rejected = sample_ids(db, "rejected")[0]
    with served(db) as client:
        client.post(f"/api/samples/{revised}/review", json={"action": "approve"})
        client.post(f"/api/samples/{revised}/review", json={"action": "tag", "tag": "good-example"})
        client.post(
            f"/api/samples/{rejected}/review", json={"action": "reject", "reason": "agree with the critic"}
        )
        client.post(f"/api/samples/{hostile}/review", json={"action": "edit", "turn": 0, "content": HOSTILE})
        base = str(client.base_url)
        profile = tmp_path / "profile"

        dom, console = browse(browser, f"{base}/samples", profile)
        assert console == [], console
        assert len(re.findall(r'<tr data-href="/samples/', dom)) == 6 and "approved" in dom

        dom, console = browse(browser, f"{base}/samples/{revised}", profile)
        assert console == [], console
        assert len(re.findall(r'class="turn (?:user|assistant)"', dom)) == 4
        assert dom.count('class="chunk"') >= 2 and "retrieved for this turn" in dom and "<mark>" in dom
        assert "Revisions" in dom and 'class="diff"' in dom and "llm.call" in dom

        dom, console = browse(browser, f"{base}/samples/{hostile}", profile)
        assert console == [], console  # the injected script neither ran nor was even attempted
        assert "pwned" not in re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
        assert "&lt;script&gt;document.title" in dom

        dom, console = browse(browser, f"{base}/dashboard", profile)
        assert console == [], console
        assert "Rejection reasons" in dom and "<svg" in dom

        shots = DOC_SHOTS if UPDATE_SHOTS else tmp_path / "shots"
        shots.mkdir(parents=True, exist_ok=True)
        for name, path, height in (("samples", "/samples", 560), ("sample", f"/samples/{revised}", 1500),
                                   ("dashboard", "/dashboard", 1250)):  # fmt: skip
            shot = shots / f"{name}.png"
            browse(browser, f"{base}{path}", profile, screenshot=shot, height=height)
            assert shot.stat().st_size > 10_000, f"{shot} looks blank"
            shrink(shot)
