"""Hostile input: malformed manifests and the provider answers a real network produces, through the
real CLI. Each gives a clear message, the documented exit code, no traceback, and state unharmed.

Providers are played by respx on loopback addresses (`127.0.0.1:9` for Replicate, `127.0.0.1:8`
for Emissary): nothing can leave the machine even if a route were missed. Payloads are shaped like
the recorded fixtures in tests/providers/fixtures/.
"""
from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import respx

from tests.reliability.harness import REPO, run_cli

pytestmark = pytest.mark.slow  # hostile servers: trickled bodies, stalls and retries (full suite only)

FIXTURES = REPO / "tests" / "providers" / "fixtures"
CASES = REPO / "tests" / "manifests" / "cases"
VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
TOKEN = "r8_HOSTILE_SENTINEL_0123456789"
EMISSARY_KEY = "em_HOSTILE_SENTINEL_0123456789"

PREDICTION = json.loads((FIXTURES / "replicate" / "prediction_get_succeeded.json").read_text())
P401 = json.loads((FIXTURES / "replicate" / "error_401_unauthenticated.json").read_text())
P422 = json.loads((FIXTURES / "replicate" / "error_422_input_validation.json").read_text())
EMISSARY = json.loads((FIXTURES / "emissary" / "training_job_detail_and_list.json").read_text())
HTML_502 = ("<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>"
            "<hr><center>cloudflare</center></body></html>")

MANIFEST = f"""apiVersion: jobrunner/v1
kind: PredictionBatch
metadata: {{name: hostile}}
spec:
  provider: replicate
  version: {VERSION}
  inputs:
    - {{key: a, text: Alice}}
"""


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "jobrunner.yaml").write_text("providers: {}\n")
    (root / "m.yaml").write_text(MANIFEST)
    monkeypatch.chdir(root)
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    monkeypatch.setenv("REPLICATE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("EMISSARY_CLIENT_API_KEY", EMISSARY_KEY)
    monkeypatch.setenv("EMISSARY_SERVER_URL", "http://127.0.0.1:8")
    monkeypatch.delenv("JOBRUNNER_STATE_URL", raising=False)
    return root


class FakeReplicate:
    """Plays Replicate: `create` answers the POST (a response or a list of them, in turn), `get`
    the polls; the listing holds whatever a create committed."""

    def __init__(self, create: Any = None, get: Any = None, commit: bool | Literal["always"] = True) -> None:
        self.create = create if isinstance(create, list) else [create]
        self.get = get if isinstance(get, list) else [get]
        self.commit = commit
        self.posts = 0
        self.calls: list[str] = []
        self.committed: list[dict[str, Any]] = []

    def job(self, status: str = "starting") -> dict[str, Any]:
        from datetime import datetime

        from jobrunner.local.clock import rfc3339

        return PREDICTION | {"status": status, "output": None, "created_at": rfc3339(datetime.now(UTC))}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}")
        assert TOKEN in request.headers.get("authorization", "")
        if request.method == "POST":
            self.posts += 1
            answer = self.create[min(self.posts - 1, len(self.create) - 1)]
            if (
                answer is None
                or (answer.status_code < 300 and self.commit)
                or (answer.status_code >= 500 and self.commit == "always")
            ):
                self.committed.append(self.job())
            if answer is None:
                return httpx.Response(201, json=self.committed[-1])
            return answer
        if request.url.path.endswith("/predictions"):
            return httpx.Response(200, json={"next": None, "previous": None, "results": self.committed})
        n = sum(1 for c in self.calls if c.startswith("GET /v1/predictions/")) - 1
        answer = self.get[min(n, len(self.get) - 1)]
        if answer is None:
            return httpx.Response(200, json=PREDICTION)
        if isinstance(answer, str):
            return httpx.Response(200, json=PREDICTION | {"status": answer, "output": None})
        return answer


def run_against(fake: Callable[[httpx.Request], httpx.Response], *args: str, host_port: int = 9):
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1", port=host_port).mock(side_effect=fake)
        r = run_cli(*args)
    assert "Traceback" not in r.output, r.output
    assert TOKEN not in r.output and EMISSARY_KEY not in r.output
    return r


def state_doc(root: Path) -> dict[str, Any]:
    path = root / ".jobrunner" / "state.json"
    return json.loads(path.read_text()) if path.exists() else {"addresses": {}}


# -- malformed manifests ---------------------------------------------------------------------

CASE_FILES = sorted(p for p in CASES.glob("*.yaml"))


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_every_malformed_manifest_exits_1_through_plan_and_apply_and_sends_nothing(command: str, ws: Path) -> None:
    assert len(CASE_FILES) >= 40
    shutil.copytree(CASES, ws / "cases")
    (ws / "cases" / ".jobrunnerignore").unlink(missing_ok=True)
    fake = FakeReplicate()
    for case in CASE_FILES:
        args = [command, f"cases/{case.name}"] + (["--auto-approve"] if command == "apply" else [])
        r = run_against(fake, *args)
        assert r.code == 1, f"{case.name}: exit {r.code}\n{r.output}"
        # positioned: names the manifest (or the inputs file it points to) with a line number
        assert re.search(r"cases/\S+:\d+", r.output), f"{case.name}: the message names no position\n{r.output}"
    assert fake.calls == [], "nothing may be sent for an invalid manifest"
    assert not (ws / ".jobrunner" / "state.json").exists()


# -- provider answers to a create ------------------------------------------------------------

def _problem(status: int, title: str, detail: str) -> httpx.Response:
    return httpx.Response(status, json={"title": title, "detail": detail, "status": status},
                          headers={"content-type": "application/problem+json"})


REFUSED = [  # (id, answer to the create, what the message must say); nothing is created
    ("401", httpx.Response(401, json=P401), ["HTTP 401", "You did not pass a valid authentication token",
                                             "REPLICATE_API_TOKEN"]),
    ("402", _problem(402, "Payment required", "You have insufficient credit to run this model."),
     ["HTTP 402", "insufficient credit"]),
    ("404", _problem(404, "Not found", "The requested resource could not be found."), ["HTTP 404", "not be found"]),
    ("422", httpx.Response(422, json=P422), ["HTTP 422", "Additional property signal is not allowed"]),
]


@pytest.mark.parametrize("answer,says", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_a_refused_create_is_a_clear_error_never_retried(answer: httpx.Response, says: list[str], ws: Path) -> None:
    fake = FakeReplicate(create=answer, commit=False)
    r = run_against(fake, "apply", "--auto-approve", "m.yaml")
    assert r.code == 1, r.output
    for text in says:
        assert text in r.output, r.output
    assert fake.posts == 1
    st = state_doc(ws)["addresses"].get("PredictionBatch/hostile[a]")
    assert st is None or st.get("remote_id") is None
    # state unharmed: a healthy provider afterwards converges with one create
    healthy = FakeReplicate()
    r = run_against(healthy, "apply", "--auto-approve", "m.yaml")
    assert r.code == 0 and healthy.posts == 1, r.output


FAILED_5XX = [
    ("500", _problem(500, "Internal server error", "Something went wrong"), ["HTTP 500", "Something went wrong"]),
    ("502-html", httpx.Response(502, text=HTML_502, headers={"content-type": "text/html"}),
     ["HTTP 502", "Bad Gateway"]),
]


@pytest.mark.slow  # waits out real retry and lookup delays
@pytest.mark.parametrize("answer,says", [c[1:] for c in FAILED_5XX], ids=[c[0] for c in FAILED_5XX])
def test_a_5xx_create_is_looked_up_before_every_resend_then_reported(answer: httpx.Response, says: list[str],
                                                                    ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each re-send waits out the lookup window first (a lagging list, tested in test_lookups.py);
    # one second keeps this test about the order of requests rather than about waiting.
    monkeypatch.setenv("JOBRUNNER_LOOKUP_WINDOW", "1")
    fake = FakeReplicate(create=answer, commit=False)
    r = run_against(fake, "apply", "--auto-approve", "m.yaml")
    assert r.code == 1, r.output
    for text in says:
        assert text in r.output, r.output
    assert "<html" not in r.output and "<center>" not in r.output
    posts = [i for i, c in enumerate(fake.calls) if c.startswith("POST")]
    for i in posts[1:]:
        assert fake.calls[i - 1] == "GET /v1/predictions", f"re-sent without looking first: {fake.calls}"
    # the intent is kept: the next run looks before sending, and converges with one more create
    assert state_doc(ws)["addresses"]["PredictionBatch/hostile[a]"]["intent"] is not None
    healthy = FakeReplicate()
    r = run_against(healthy, "apply", "--auto-approve", "m.yaml")
    assert r.code == 0 and healthy.posts == 1 and healthy.calls[0] == "GET /v1/predictions", healthy.calls


COMMITTED = [  # the create reached the provider, but its answer is unusable: adopt, never re-send
    ("500-after-commit", _problem(500, "Internal server error", "upstream timeout")),
    ("502-html-after-commit", httpx.Response(502, text=HTML_502, headers={"content-type": "text/html"})),
    ("truncated-json", httpx.Response(201, text=json.dumps(PREDICTION)[:60],
                                      headers={"content-type": "application/json"})),
    ("empty-body", httpx.Response(201, text="", headers={"content-type": "application/json"})),
    ("wrong-content-type", httpx.Response(201, text="<html>Welcome to nginx</html>",
                                          headers={"content-type": "text/html"})),
]


@pytest.mark.parametrize("answer", [c[1] for c in COMMITTED], ids=[c[0] for c in COMMITTED])
def test_an_unusable_answer_to_a_committed_create_is_adopted_not_resent(answer: httpx.Response, ws: Path) -> None:
    fake = FakeReplicate(create=answer, commit="always")
    r = run_against(fake, "apply", "--auto-approve", "m.yaml")
    assert r.code == 0, r.output
    assert fake.posts == 1, fake.calls
    assert "adopted" in r.output
    st = state_doc(ws)["addresses"]["PredictionBatch/hostile[a]"]
    assert st["remote_id"] == PREDICTION["id"] and st["status"] == "succeeded" and st["intent"] is None


@pytest.mark.slow  # waits out real retry and lookup delays
def test_429_bursts_honour_retry_after_then_create_once(ws: Path) -> None:
    throttled = _problem(429, "Too many requests", "Request was throttled. Expected available in 1 second.")
    throttled.headers["Retry-After"] = "1"
    fake = FakeReplicate(create=[throttled, throttled, None], commit=False)
    r = run_against(fake, "apply", "--auto-approve", "m.yaml")
    assert r.code == 0, r.output
    assert fake.posts == 3 and len(fake.committed) == 1


# -- provider answers while waiting and planning ---------------------------------------------

def test_replicate_aborted_is_a_failed_job_exit_5(ws: Path) -> None:
    fake = FakeReplicate(get=["aborted"])
    r = run_against(fake, "apply", "--auto-approve", "m.yaml")
    assert r.code == 5, r.output
    assert "aborted" in r.output
    assert state_doc(ws)["addresses"]["PredictionBatch/hostile[a]"]["status"] == "aborted"


@pytest.mark.slow  # waits out real retry and lookup delays
def test_a_future_replicate_status_is_waited_on_not_crashed_on(ws: Path) -> None:
    fake = FakeReplicate(get=["quarantined"])
    r = run_against(fake, "apply", "--auto-approve", "--timeout", "2s", "m.yaml")
    assert r.code == 6, r.output
    st = state_doc(ws)["addresses"]["PredictionBatch/hostile[a]"]
    assert st["remote_id"] == PREDICTION["id"] and st["intent"] is None
    r = run_against(FakeReplicate(get=["quarantined"]), "status")
    assert r.code == 0 and ("quarantined" in r.output.lower() or "unknown" in r.output.lower()), r.output
    # when the provider settles, apply resumes waiting and converges without a second create
    healthy = FakeReplicate()
    r = run_against(healthy, "apply", "--auto-approve", "m.yaml")
    assert r.code == 0 and healthy.posts == 0, r.output


def test_polls_through_transient_html_502s(ws: Path) -> None:
    bad = httpx.Response(502, text=HTML_502, headers={"content-type": "text/html"})
    fake = FakeReplicate(get=[bad, bad, "processing", None])
    r = run_against(fake, "apply", "--auto-approve", "m.yaml")
    assert r.code == 0, r.output
    assert fake.posts == 1


@pytest.mark.parametrize("answer,says", [
    (httpx.Response(401, json=P401), ["HTTP 401", "REPLICATE_API_TOKEN"]),
    (httpx.Response(200, text='{"id": "gm3q', headers={"content-type": "application/json"}), ["truncated JSON"]),
    (httpx.Response(200, text="", headers={"content-type": "application/json"}), ["empty body"]),
], ids=["401", "truncated", "empty"])
def test_plan_refresh_failures_are_clear_and_leave_state_untouched(answer: httpx.Response, says: list[str],
                                                                   ws: Path) -> None:
    r = run_against(FakeReplicate(), "apply", "--auto-approve", "--no-wait", "m.yaml")
    assert r.code == 0, r.output
    before = (ws / ".jobrunner" / "state.json").read_bytes()
    fake = FakeReplicate(get=[answer])
    for command in (["plan", "m.yaml"], ["apply", "--auto-approve", "m.yaml"]):
        r = run_against(fake, *command)
        assert r.code == 1, r.output
        for text in says:
            assert text in r.output, r.output
    assert (ws / ".jobrunner" / "state.json").read_bytes() == before
    assert fake.posts == 0


@pytest.mark.slow  # waits out real retry and lookup delays
def test_an_emissary_status_the_sdk_does_not_know(ws: Path) -> None:
    (ws / "m.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: Training\nmetadata: {name: tune}\nspec:\n  provider: emissary\n"
        "  project_id: ms-12345\n  base_model: Llama-3.2-1B-Instruct\n  train_dataset_id: ds-12345\n")
    detail = EMISSARY["get"]["response"]["body"]
    seen: list[str] = []

    def fake(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.method == "POST":
            return httpx.Response(201, json={k: detail[k] for k in ("id", "name", "base_model", "created_by",
                                                                     "created_at", "updated_at")}
                                  | {"status": "Pending", "progress": 0})
        if request.url.path.endswith("/training-jobs"):
            return httpx.Response(200, json=[{k: v for k, v in detail.items() if k in (
                "id", "name", "base_model", "progress", "created_by", "created_at", "updated_at")}
                | {"status": "QueuedForReview"}])
        return httpx.Response(200, json=detail | {"status": "QueuedForReview"})

    r = run_against(fake, "apply", "--auto-approve", "--timeout", "2s", "m.yaml", host_port=8)
    assert r.code == 6, r.output
    assert sum(1 for s in seen if s.startswith("POST")) == 1
    st = state_doc(ws)["addresses"]["Training/tune"]
    assert st["remote_id"] == "tr-12345" and st["intent"] is None
