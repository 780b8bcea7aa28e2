"""``teacherforge ui`` on the real server: the JSON API end to end, reviews as events that export, sql,
replay and verify honour, hostile text shown as text, and the guards (bind, token, cross-site POSTs)."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import query
from typer.testing import CliRunner
from ui_support import csrf_of, make_run, sample_ids, served

from teacherforge.cli.app import app
from teacherforge.ui.settings import UiSettings, UnsafeBind

runner = CliRunner()
HOSTILE = '<script>document.title="pwned"</script><a href="javascript:alert(1)">click</a>'


@pytest.fixture(scope="module")
def base_db(ingested_template, tmp_path_factory):
    path = tmp_path_factory.mktemp("ui") / "forge.duckdb"
    shutil.copy(ingested_template, path)
    make_run(path)
    return path


@pytest.fixture
def db(base_db, tmp_path):
    path = tmp_path / "forge.duckdb"
    shutil.copy(base_db, path)
    return path


def review(client, sample_id: str, **body):
    return client.post(f"/api/samples/{sample_id}/review", json=body)


def test_api_lists_filters_searches_and_shows_a_sample_with_its_events(db):
    accepted = sample_ids(db, "accepted")
    with served(db) as client:
        listed = client.get("/api/samples").json()
        assert listed["total"] == 6 and len(listed["samples"]) == 6 and listed["run"].startswith("run-")
        first = listed["samples"][0]
        assert {"status", "tier", "persona", "technique", "category", "scores", "verdict", "review"} <= set(
            first
        )
        only = client.get("/api/samples", params={"status": "accepted", "sort": "sample_id"}).json()
        assert [s["sample_id"] for s in only["samples"]] == accepted
        paged = client.get("/api/samples", params={"per_page": 2, "page": 2}).json()
        assert paged["pages"] == 3 and len(paged["samples"]) == 2
        question = first["first_question"].split()[-1].strip("?")
        found = client.get("/api/samples", params={"q": question}).json()
        assert first["sample_id"] in [s["sample_id"] for s in found["samples"]]
        assert client.get("/api/samples", params={"q": "zzz-no-such-words"}).json()["total"] == 0

        sample = client.get(f"/api/samples/{accepted[0]}").json()
        assert sample["status"] == "accepted" and len(sample["turns"]) == 4 and sample["review"] == {}
        kinds = [e["type"] for e in sample["events"]]
        assert kinds[0] == "sample.planned" and "llm.call" in kinds and kinds[-1] == "sample.accepted"
        assert client.get("/api/samples/nope").status_code == 404
        assert client.get("/api/openapi.json").json()["paths"]["/api/samples/{sample_id}/review"]
        assert client.get("/docs").status_code == 404  # FastAPI's docs load scripts from a CDN: off


def test_reviews_are_events_that_sql_replay_and_verify_show(db):
    accepted, rejected = sample_ids(db, "accepted"), sample_ids(db, "rejected")
    with served(db) as client:
        ok = review(client, accepted[0], action="approve")
        assert ok.status_code == 200 and ok.json()["state"] == "landed"
        assert review(client, accepted[1], action="reject").status_code == 400  # a reason is required
        assert review(client, accepted[1], action="reject", reason="tone is off").json()["state"] == "landed"
        edit = review(client, accepted[0], action="edit", turn=1, content="An edited answer.", reviewer="ana")
        assert edit.status_code == 200, edit.text
        assert review(client, rejected[0], action="tag", tag="needs-source").status_code == 200
        assert review(client, accepted[0], action="edit", turn=9, content="x").status_code == 400
        assert review(client, accepted[0], action="publish").status_code == 400
        assert review(client, "nope", action="approve").status_code == 404
        shown = client.get(f"/api/samples/{accepted[0]}").json()
        assert shown["review"] == {
            "decision": "approved",
            "reason": None,
            "reviewer": "tester",
            "edited_turns": [1],
        }
        assert shown["turns"][1]["content"] == "An edited answer."
        states = {s["sample_id"]: s["review"] for s in client.get("/api/samples").json()["samples"]}
        assert states[accepted[0]] == "approved" and states[accepted[1]] == "rejected"
        page = client.get(f"/samples/{accepted[0]}")
        assert "edited by a person" in page.text and "approved by tester" in page.text

    rows = query(
        db, "SELECT action, reviewer, reason, turn_index, after FROM reviews ORDER BY seq, sample_id"
    )
    assert sorted(r[0] for r in rows) == ["approved", "edited", "rejected", "tagged"]
    assert ("edited", "ana", None, 1, "An edited answer.") in rows
    state = dict(query(db, "SELECT sample_id, decision FROM review_state"))
    assert (
        state[accepted[0]] == "approved" and state[accepted[1]] == "rejected" and state[rejected[0]] is None
    )
    verified = runner.invoke(app, ["verify", "--db", str(db)])
    assert verified.exit_code == 0, verified.output
    replayed = runner.invoke(app, ["replay", accepted[0], "--db", str(db)])
    assert "review.edited" in replayed.output and "review: approved by tester" in replayed.output


def test_export_honours_approve_reject_and_edit(db, tmp_path):
    accepted = sample_ids(db, "accepted")
    with served(db) as client:
        review(client, accepted[0], action="approve")
        review(client, accepted[0], action="edit", turn=1, content="A person wrote this answer.")
        review(client, accepted[1], action="reject", reason="wrong fee")
    out = tmp_path / "data.jsonl"
    result = runner.invoke(app, ["export", "--db", str(db), "--out", str(out), "--split", "1,0,0"])
    assert result.exit_code == 0, result.output
    records = {
        json.loads(line)["metadata"]["sample_id"]: json.loads(line) for line in out.read_text().splitlines()
    }
    assert accepted[1] not in records and len(records) == len(accepted) - 1
    assert "by review" in result.stderr
    assert records[accepted[0]]["messages"][2]["content"] == "A person wrote this answer."
    assert records[accepted[0]]["metadata"]["review"]["decision"] == "approved"
    assert "review" not in records[accepted[2]]["metadata"]  # unreviewed records are as before

    approved = tmp_path / "approved.jsonl"
    result = runner.invoke(app, ["export", "--db", str(db), "--out", str(approved), "--split", "1,0,0",
                                 "--approved-only"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["metadata"]["sample_id"] for line in approved.read_text().splitlines()] == [
        accepted[0]
    ]


def test_hostile_document_and_turn_text_render_as_text(db):
    target = sample_ids(db, "accepted")[0]
    chunk = query(db, "SELECT unnest(retrieved_chunk_ids) FROM turns WHERE sample_id = ? AND turn_index = 1",
                  target)[0][0]  # fmt: skip
    con = __import__("duckdb").connect(str(db))
    con.execute("UPDATE chunks SET text = ? || text, document = ? WHERE chunk_id = ?",
                [HOSTILE, 'evil"><script>alert(2)</script>.md', chunk])  # fmt: skip
    con.close()
    with served(db) as client:
        assert review(client, target, action="edit", turn=0, content=HOSTILE).status_code == 200
        for page in (client.get(f"/samples/{target}"), client.get("/samples")):
            assert page.status_code == 200
            assert "<script>document.title" not in page.text and "<script>alert(2)" not in page.text
            assert "&lt;script&gt;document.title" in page.text
            assert 'href="javascript:' not in page.text
            assert "script-src 'nonce-" in page.headers["content-security-policy"]
        assert "&lt;script&gt;alert(2)&lt;/script&gt;.md" in client.get(f"/samples/{target}").text


def test_a_bind_beyond_loopback_needs_a_token(db):
    result = runner.invoke(app, ["ui", "--db", str(db), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "--token" in result.stderr and result.stderr.count("\n") == 1
    with pytest.raises(UnsafeBind):
        UiSettings(db=db, host="192.168.1.5")
    UiSettings(db=db, host="192.168.1.5", token="s3cret")  # allowed with a token
    with served(db, token="s3cret") as client:
        assert client.get("/api/samples").status_code == 401
        assert client.get("/api/samples", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        hop = client.get("/samples?token=s3cret&status=accepted")
        assert hop.status_code == 303 and "token" not in hop.headers["location"]
        assert client.get("/samples").status_code == 200  # the cookie set by the hop


def test_cross_site_requests_are_refused_and_the_page_forms_work(db):
    accepted = sample_ids(db, "accepted")
    target = accepted[0]
    with served(db) as client:
        url = f"/api/samples/{target}/review"
        evil = client.post(url, json={"action": "approve"}, headers={"Origin": "http://evil.example"})
        assert evil.status_code == 403
        assert (
            client.post(
                url, content='{"action": "approve"}', headers={"Content-Type": "text/plain"}
            ).status_code
            == 415
        )
        assert (
            client.post(url, data={"action": "approve"}).status_code == 403
        )  # a form without the CSRF token
        assert (
            client.get("/samples", headers={"Host": "attacker.example"}).status_code == 421
        )  # DNS rebinding
        token = csrf_of(client.get(f"/samples/{target}").text)
        posted = client.post(url, data={"action": "approve", "csrf": token, "back": ""})
        assert posted.status_code == 303 and "recorded" in posted.headers["location"]
        assert client.get("/api/reviews/pending").json()["pending"] == []
        form = {"action": "approve", "csrf": token, "back": "status=accepted", "go": "next"}
        then = client.post(f"/api/samples/{accepted[1]}/review", data=form)
        assert then.headers["location"].startswith(f"/samples/{accepted[2]}?")  # on to the next of the list
        assert "status=accepted" in then.headers["location"]
    assert query(db, "SELECT count(*) FROM reviews")[0][0] == 2
