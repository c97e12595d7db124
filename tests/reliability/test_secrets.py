"""Secrets never leave the process: sentinel credentials and secret-looking inputs must appear in
no output (text, JSON, Markdown plans; status, outputs, logs, state commands), no file jobrunner
writes (state, its backup, saved plans, batch output files, anything under .jobrunner/) and no
error message, even when a provider echoes them back.

Two runs: one against Replicate and Emissary played by respx on loopback addresses (the provider
echoes inputs and, in errors, the credential, as real services do), one against the real local
platform whose token is a sentinel.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from tests.reliability.harness import ECHO, REPO, SLEEP, make_workspace, run_cli, serve_platform

FIXTURES = REPO / "tests" / "providers" / "fixtures"
PREDICTION = json.loads((FIXTURES / "replicate" / "prediction_get_succeeded.json").read_text())
VERSION = PREDICTION["version"]

REPLICATE_TOKEN = "r8_SentinelReplicateToken0123456789ab"
EMISSARY_KEY = "em-sentinel-emissary-key-0123456789"
LOCAL_TOKEN = "jrl_sentinel_local_token_0123456789abcdef"
INPUT_SECRETS = {
    "api_key": "sentinel-api-key-value-4242",
    "hf_token": "hf_sentinelHuggingFaceToken4242",
    "password": "sentinel-password-4242",
    "customer_email": "sentinel.customer@example.org",  # listed under spec.sensitive
}
WEBHOOK_SECRETS = {"sig": "sentinelSignature0a1b2c3d", "code": "sentinel-code-4242-zz"}
ALL = [REPLICATE_TOKEN, EMISSARY_KEY, LOCAL_TOKEN, *INPUT_SECRETS.values(), *WEBHOOK_SECRETS.values()]

MANIFEST = f"""apiVersion: jobrunner/v1
kind: PredictionBatch
metadata: {{name: secrets}}
spec:
  provider: replicate
  version: {VERSION}
  sensitive: [customer_email]
  webhook: https://example.com/hook?sig={WEBHOOK_SECRETS['sig']}&code={WEBHOOK_SECRETS['code']}
  input_defaults: {{api_key: {INPUT_SECRETS['api_key']}, hf_token: {INPUT_SECRETS['hf_token']}}}
  inputs:
    - {{key: a, text: Alice, password: {INPUT_SECRETS['password']}, customer_email: {INPUT_SECRETS['customer_email']}}}
    - {{key: b, text: Bob, password: {INPUT_SECRETS['password']}, customer_email: {INPUT_SECRETS['customer_email']}}}
    - {{key: c, text: Carol, password: {INPUT_SECRETS['password']}, customer_email: {INPUT_SECRETS['customer_email']}}}
    - {{key: d, text: Dave, password: {INPUT_SECRETS['password']}, customer_email: {INPUT_SECRETS['customer_email']}}}
  output_file: out/secrets.jsonl
---
apiVersion: jobrunner/v1
kind: Training
metadata: {{name: tune}}
spec:
  provider: emissary
  project_id: ms-12345
  base_model: Llama-3.2-1B-Instruct
  train_dataset_id: ds-12345
"""


def _leaks(text: str) -> list[str]:
    return [s for s in ALL if s in text]


def _files(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    out = {}
    for path in root.rglob("*"):
        if path.is_file() and not any(part in skip for part in path.parts):
            out[str(path.relative_to(root))] = path.read_bytes().decode("utf-8", errors="replace")
    return out


class Providers:
    """Replicate echoes the input it got (as the real API does), logs it, and its model returns it
    as output (row a, b); for row c the job fails with an error quoting the password, for row d the
    create is refused with a 422 whose detail quotes the sensitive email. Emissary refuses the key
    and quotes it back in its error, the worst a server can do."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}

    def replicate(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            body = json.loads(request.content)
            given = body["input"]
            if given.get("text") == "Dave":
                return httpx.Response(422, json={
                    "detail": f"- input.customer_email: {given.get('customer_email')} is not allowed\n",
                    "status": 422, "title": "Input validation failed"})
            rid = f"sec{len(self.jobs):023d}"
            failed = given.get("text") == "Carol"
            self.jobs[rid] = PREDICTION | {
                "id": rid, "input": given, "status": "failed" if failed else "succeeded",
                "output": None if failed else {"echo": given, "note": f"mailed {given.get('customer_email')}"},
                "error": f"login refused for password {given.get('password')!r}" if failed else None,
                "logs": f"running with {given}\n"}
            return httpx.Response(201, json=self.jobs[rid] | {"status": "starting"})
        if request.url.path.endswith("/predictions"):
            return httpx.Response(200, json={"next": None, "previous": None, "results": list(self.jobs.values())})
        rid = request.url.path.rsplit("/", 1)[-1]
        return httpx.Response(200, json=self.jobs.get(rid, PREDICTION))

    def emissary(self, request: httpx.Request) -> httpx.Response:
        key = request.headers.get("x-api-key", "")
        return httpx.Response(401, json={"status": 401, "error": f"Unauthorized: API key {key} is not valid"})


def test_no_secret_reaches_any_output_file_or_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "jobrunner.yaml").write_text("providers: {local: {data_dir: .jobrunner/local}}\n")
    (root / "m.yaml").write_text(MANIFEST)
    monkeypatch.chdir(root)
    monkeypatch.setenv("REPLICATE_API_TOKEN", REPLICATE_TOKEN)
    monkeypatch.setenv("REPLICATE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("EMISSARY_CLIENT_API_KEY", EMISSARY_KEY)
    monkeypatch.setenv("EMISSARY_SERVER_URL", "http://127.0.0.1:8")
    monkeypatch.setenv("JOBRUNNER_LOCAL_TOKEN", LOCAL_TOKEN)
    monkeypatch.delenv("JOBRUNNER_STATE_URL", raising=False)
    fake = Providers()
    outputs: dict[str, str] = {}
    commands = [
        ["validate"], ["plan"], ["plan", "--format", "json"], ["plan", "--format", "markdown"],
        ["plan", "--out", "saved.plan"], ["apply", "--auto-approve"], ["status"], ["status", "--format", "json"],
        ["outputs"], ["outputs", "--format", "json"], ["logs", "PredictionBatch/secrets[a]"], ["state", "list"],
        ["state", "show", "PredictionBatch/secrets[a]"], ["state", "show", "Training/tune"],
        ["plan", "--format", "json"], ["plan", "--format", "markdown"], ["apply", "saved.plan"],
    ]
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1", port=9).mock(side_effect=fake.replicate)
        mock.route(host="127.0.0.1", port=8).mock(side_effect=fake.emissary)
        for args in commands:
            r = run_cli(*args)
            outputs[" ".join(args)] = r.output
            assert "Traceback" not in r.output, r.output
    assert fake.jobs, "the predictions really ran"
    assert "HTTP 401" in outputs["apply --auto-approve"], "the Emissary refusal is reported"
    assert "422" in outputs["apply --auto-approve"] and "is not allowed" in outputs["apply --auto-approve"]
    assert "login refused for password" in outputs["apply --auto-approve"]
    assert "login refused for password" in outputs["plan --format json"], "the next plan explains the failure"
    assert "mailed (sensitive)" in outputs["outputs"], "an echoed sensitive value is hidden, the rest shown"
    assert "(sensitive)" in outputs["plan --format json"] + outputs["state show PredictionBatch/secrets[a]"]
    leaks = {name: _leaks(text) for name, text in {**outputs, **_files(root)}.items() if name != "m.yaml"}
    assert not any(leaks.values()), {k: v for k, v in leaks.items() if v}


def test_the_local_platform_token_stays_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve_platform(tmp_path / "platform", token=LOCAL_TOKEN, workers=1) as platform:
        root = make_workspace(tmp_path / "ws", platform)
        (root / "m.yaml").write_text(
            "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: echo}\nspec:\n  provider: local\n"
            f"  version: {ECHO}\n  inputs:\n    - {{key: a, text: hello}}\n  output_file: out/echo.jsonl\n")
        monkeypatch.chdir(root)
        monkeypatch.setenv("JOBRUNNER_LOCAL_TOKEN", LOCAL_TOKEN)
        outputs = {}
        for args in (["plan", "--format", "json"], ["apply", "--auto-approve"], ["status"], ["outputs"],
                     ["logs", "PredictionBatch/echo[a]"]):
            r = run_cli(*args)
            assert r.code == 0 and "Traceback" not in r.output, r.output
            outputs[" ".join(args)] = r.output
        # a wrong token: the refusal must not quote what was sent
        monkeypatch.setenv("JOBRUNNER_LOCAL_TOKEN", LOCAL_TOKEN[::-1])
        (root / "m.yaml").write_text((root / "m.yaml").read_text().replace("hello", "again"))
        r = run_cli("apply", "--auto-approve")
        assert r.code == 1 and "401" in r.output, r.output
        outputs["wrong token"] = r.output
        leaks = {
            k: [s for s in (LOCAL_TOKEN, LOCAL_TOKEN[::-1]) if s in v] for k, v in {**outputs, **_files(root)}.items()
        }
        assert not any(leaks.values()), {k: v for k, v in leaks.items() if v}
        # the platform's own files (database, logs, uploads) keep it at most in its 0600 token file
        platform_files = _files(platform.data_dir)
        holders = [name for name, text in platform_files.items() if LOCAL_TOKEN in text]
        assert set(holders) <= {"token"}, holders


def test_an_auto_started_platform_keeps_its_token_out_of_its_log_and_every_output(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No `providers.local.url`: the CLI starts `jobrunner serve` in the background, which writes
    `serve.log` and generates its token. Only the 0600 token file may hold it."""
    from jobrunner.local.autostart import stop_platform

    root = tmp_path / "ws"
    root.mkdir()
    (root / "jobrunner.yaml").write_text("providers: {local: {data_dir: .jobrunner/local}}\n")
    (root / "m.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: echo}\nspec:\n  provider: local\n"
        f"  version: {ECHO}\n  inputs:\n    - {{key: a, text: hello}}\n")
    monkeypatch.chdir(root)
    for var in ("JOBRUNNER_LOCAL_TOKEN", "REPLICATE_API_TOKEN", "EMISSARY_CLIENT_API_KEY", "JOBRUNNER_STATE_URL"):
        monkeypatch.delenv(var, raising=False)
    try:
        outputs = {}
        for args in (["apply", "--auto-approve"], ["status"], ["logs", "PredictionBatch/echo[a]"]):
            r = run_cli(*args)
            assert r.code == 0 and "Traceback" not in r.output, r.output
            outputs[" ".join(args)] = r.output
        token_file = root / ".jobrunner" / "local" / "token"
        token = token_file.read_text().strip()
        assert len(token) > 20 and token_file.stat().st_mode & 0o777 == 0o600
        url = json.loads((root / ".jobrunner" / "local" / "server.json").read_text())["url"]
        with httpx.Client(base_url=url, timeout=10) as c:  # refusals must not echo what was sent
            assert c.get("/v1/predictions", headers={"Authorization": f"Bearer {token}x"}).status_code == 401
        holders = [k for k, v in {**outputs, **_files(root)}.items() if token in v]
        assert holders == [".jobrunner/local/token"], holders
        assert (root / ".jobrunner" / "local" / "serve.log").exists()
    finally:
        stop_platform(root)


# --- secrets by value: the real CLI on an auto-started local platform ---------------------------

BY_VALUE = {
    # listed under spec.sensitive; quotes and a slash, so JSON escapes it and URLs encode it
    "sensitive": 'sentinel "cust"/email+7f3a@example.org',
    "secret_named": "sentinel-api-key-9d41c0",  # input `api_key`
    "env_token": "r8_SentinelEnvToken0123456789abcdefXYZ",  # REPLICATE_API_TOKEN, pasted into an input
    "webhook_code": "sentinelWebhookCode4242",  # ?code=
    "webhook_path": "T0SENTINEL1234567890abcdef",  # a token-shaped webhook path segment
    "fail_message": "sentinel-fail-message-5e6f",  # quoted back in the failed job's error
}


def _encodings(value: str) -> set[str]:
    """How a value may be written: raw, JSON-escaped, URL-encoded."""
    from urllib.parse import quote, quote_plus

    return {value, json.dumps(value)[1:-1], quote(value, safe=""), quote_plus(value), quote(value)}


def _by_value_leaks(text: str) -> list[str]:
    return sorted(name for name, value in BY_VALUE.items() if any(e in text for e in _encodings(value)))


def test_secret_values_never_leave_whatever_echoes_or_quotes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The echo model returns its input (so its output holds every secret input), the sleep model
    fails quoting a sensitive input in its error, a webhook URL carries a `?code=` and a token in its
    path, and a provider token from the environment is pasted into an ordinary input. Every command
    a user runs, every file in the workspace (state, backup, saved plan, output file, the platform's
    serve.log) and every stdout/stderr is then searched for each value, raw, JSON-escaped and
    URL-encoded: zero hits. Only the platform's own job database may hold the inputs: it is the
    provider, which has to run them."""
    from jobrunner.local.autostart import stop_platform

    s = BY_VALUE
    sensitive_yaml = json.dumps(s["sensitive"])
    hook = f"https://hooks.example.com/services/{s['webhook_path']}?code={s['webhook_code']}&event=completed"
    root = tmp_path / "ws"
    root.mkdir()
    (root / "jobrunner.yaml").write_text("providers: {local: {data_dir: .jobrunner/local}}\n")
    (root / "m.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: echo}\nspec:\n  provider: local\n"
        f"  version: {ECHO}\n  sensitive: [customer_email]\n  webhook: {hook}\n"
        f"  input_defaults: {{api_key: {s['secret_named']}}}\n  inputs:\n"
        f"    - {{key: a, text: hello, customer_email: {sensitive_yaml}, note: 'token {s['env_token']}'}}\n"
        "  output_file: out/echo.jsonl\n"
        "---\n"
        "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: fails}\nspec:\n  provider: local\n"
        f"  version: {SLEEP}\n  sensitive: [message]\n  inputs:\n"
        f"    - {{key: x, seconds: 0, fail: true, message: {s['fail_message']}}}\n"
        "  output_file: out/fails.jsonl\n")
    monkeypatch.chdir(root)
    for var in ("JOBRUNNER_LOCAL_TOKEN", "EMISSARY_CLIENT_API_KEY", "JOBRUNNER_STATE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("REPLICATE_API_TOKEN", s["env_token"])
    commands = [
        ["validate"], ["plan"], ["plan", "--format", "json"], ["plan", "--format", "markdown"],
        ["plan", "--out", "saved.plan"], ["apply", "saved.plan"], ["status"], ["status", "--format", "json"],
        ["outputs"], ["outputs", "--format", "json"], ["logs", "PredictionBatch/echo[a]"],
        ["logs", "PredictionBatch/fails[x]"], ["state", "list"], ["state", "show", "PredictionBatch/echo[a]"],
        ["state", "show", "PredictionBatch/fails[x]"], ["plan"], ["plan", "--format", "json"],
        ["plan", "--format", "markdown"], ["apply", "--auto-approve"], ["status"],
    ]
    outputs: dict[str, str] = {}
    try:
        for i, args in enumerate(commands):
            r = run_cli(*args)
            assert "Traceback" not in r.output, r.output
            outputs[f"{i}: jobrunner {' '.join(args)}"] = r.output
        # the jobs really ran: the echo job succeeded with its output recorded, the other failed
        state = json.loads((root / ".jobrunner" / "state.json").read_text())["addresses"]
        assert state["PredictionBatch/echo[a]"]["status"] == "succeeded"
        assert state["PredictionBatch/echo[a]"]["outputs"]["output"]["text"] == "hello"
        assert state["PredictionBatch/fails[x]"]["status"] == "failed"
        assert "failed on request" in state["PredictionBatch/fails[x]"]["error"]
        assert (root / "out" / "echo.jsonl").exists() and (root / "saved.plan").exists()
        assert (root / ".jobrunner" / "state.json.bak").exists()
        assert "(sensitive)" in outputs["8: jobrunner outputs"]
        assert "failed on request" in outputs["5: jobrunner apply saved.plan"]
        log = root / ".jobrunner" / "local" / "serve.log"
        assert "hooks.example.com" in log.read_text(), "the refused webhook was logged"
        platform_db = {".jobrunner/local/" + n for n in ("platform.db", "platform.db-wal", "platform.db-shm")}
        files = {k: v for k, v in _files(root).items() if k != "m.yaml" and k not in platform_db
                 and not k.startswith(".jobrunner/local/files/")}
        leaks = {name: _by_value_leaks(text) for name, text in {**outputs, **files}.items()}
        assert not any(leaks.values()), {k: v for k, v in leaks.items() if v}
    finally:
        stop_platform(root)


def test_validation_errors_that_quote_a_secret_value_show_it_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message that quotes a bad value (wrong type against the model's input schema, a field
    given the secret by mistake) names the place and the problem, never the value."""
    from jobrunner.local.autostart import stop_platform

    root = tmp_path / "ws"
    root.mkdir()
    (root / "jobrunner.yaml").write_text("providers: {local: {data_dir: .jobrunner/local}}\n")
    monkeypatch.chdir(root)
    monkeypatch.delenv("JOBRUNNER_LOCAL_TOKEN", raising=False)
    head = "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: b}\nspec:\n  provider: local\n"
    try:
        (root / "m.yaml").write_text(
            head + f"  version: {ECHO}\n  sensitive: [email]\n"
            "  inputs:\n    - {key: a, api_key: sentinel-key-31337, email: sentinel-mail-31337}\n"
            "  timeout: sentinel-key-31337\n  output_file: [sentinel-mail-31337]\n"
        )
        r = run_cli("validate")
        assert r.code == 1 and "$.spec.timeout" in r.output and "$.spec.output_file" in r.output, r.output
        assert "31337" not in r.output and "(sensitive)" in r.output, r.output
        (root / "m.yaml").write_text(head + f"  version: {SLEEP}\n  sensitive: [message]\n"
                                     "  inputs:\n    - {key: a, seconds: 0, message: 987654321}\n")
        r = run_cli("plan")
        assert r.code == 1 and "inputs[0].message" in r.output and "expected a string" in r.output, r.output
        assert "987654321" not in r.output, r.output
    finally:
        stop_platform(root)


@pytest.mark.slow  # waits for a 3-second job
def test_status_records_a_failure_that_quotes_a_sensitive_input_without_reading_the_manifests(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`apply --no-wait`, then `status` (which reads no manifest) sees the job fail with an error
    quoting its sensitive input: the value is learnt from the provider's copy of the input at the
    places state hides, so neither state nor the status output holds it."""
    from jobrunner.local.autostart import stop_platform

    secret = "sentinel-late-failure-8c2d"
    root = tmp_path / "ws"
    root.mkdir()
    (root / "jobrunner.yaml").write_text("providers: {local: {data_dir: .jobrunner/local}}\n")
    (root / "m.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: late}\nspec:\n  provider: local\n"
        f"  version: {SLEEP}\n  sensitive: [message]\n  inputs:\n"
        f"    - {{key: x, seconds: 3, fail: true, message: {secret}}}\n")
    monkeypatch.chdir(root)
    monkeypatch.delenv("JOBRUNNER_LOCAL_TOKEN", raising=False)
    state_file = root / ".jobrunner" / "state.json"
    try:
        r = run_cli("apply", "--auto-approve", "--no-wait")
        assert r.code == 0, r.output
        (root / "m.yaml").unlink()  # status must manage on its own
        outputs = [r.output]
        for _ in range(60):
            r = run_cli("status")
            outputs.append(r.output)
            if json.loads(state_file.read_text())["addresses"]["PredictionBatch/late[x]"]["status"] == "failed":
                break
            time.sleep(0.5)
        st = json.loads(state_file.read_text())["addresses"]["PredictionBatch/late[x]"]
        assert st["status"] == "failed" and st["error"] == "sleep: failed on request (fail=true): (sensitive)", st
        outputs.append(run_cli("status", "--format", "json").output)
        outputs.append(run_cli("state", "show", "PredictionBatch/late[x]").output)
        holders = [name for name, text in {**{str(i): o for i, o in enumerate(outputs)}, **_files(root)}.items()
                   if secret in text and not name.startswith(".jobrunner/local/platform.db")]
        assert not holders, holders
    finally:
        stop_platform(root)


def test_logs_follow_never_prints_a_secret_in_two_halves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model prints its password while `logs --follow` polls: one poll sees the line cut in the
    middle of the value, the next sees it whole. Scrubbed chunk by chunk, neither half would be
    recognised and the terminal would show the value whole; a line is printed once it has ended."""
    secret = INPUT_SECRETS["password"]
    full = f"boot\nlogin with {secret} ok\n"
    cut = full.index(secret) + 8
    root = tmp_path / "ws"
    root.mkdir()
    (root / "jobrunner.yaml").write_text("providers: {local: {data_dir: .jobrunner/local}}\n")
    (root / "m.yaml").write_text(
        f"apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {{name: f}}\nspec:\n  provider: replicate\n"
        f"  version: {VERSION}\n  inputs:\n    - {{key: a, text: Alice, password: {secret}}}\n")
    monkeypatch.chdir(root)
    monkeypatch.setenv("REPLICATE_API_TOKEN", REPLICATE_TOKEN)
    monkeypatch.setenv("REPLICATE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.delenv("JOBRUNNER_STATE_URL", raising=False)
    job: dict[str, Any] = {}
    gets = {"n": 0}

    def replicate(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            job.update(PREDICTION | {"id": "follow0000000000000000000", "input": json.loads(request.content)["input"],
                                     "status": "starting", "output": None, "logs": ""})
            return httpx.Response(201, json=job)
        if request.url.path.endswith("/predictions"):
            return httpx.Response(200, json={"next": None, "previous": None, "results": [job]})
        gets["n"] += 1
        # until the 4th GET of `logs`: still running, the log line cut in the middle of the value
        done = gets["n"] >= 4
        return httpx.Response(200, json=job | {"status": "succeeded" if done else "processing",
                                               "logs": full if done else full[:cut]})

    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1", port=9).mock(side_effect=replicate)
        assert run_cli("apply", "--auto-approve", "--no-wait").code == 0
        gets["n"] = 0
        r = run_cli("logs", "--follow", "PredictionBatch/f[a]")
    assert r.code == 0 and "Traceback" not in r.output, r.output
    assert "boot\nlogin with (sensitive) ok\n" in r.stdout, r.output
    assert secret not in r.output, r.output


KEY_FILE = "-----BEGIN KEY-----\nsentinelKeyFileLine0123456789abcdef\n-----END KEY-----\n"
NOTES_FILE = "sentinel-notes-file-contents-77aa\n"
PLAIN_FILE = "plain-data-visible-1234\n"


class FileEchoingReplicate:
    """Replicate that keeps uploaded files and fails each prediction with an error quoting the
    contents of every file its input names, as a model that cannot parse its input does."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self.jobs: dict[str, dict[str, Any]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path.endswith("/files"):
            content = request.content.decode("utf-8", errors="replace")
            url = f"https://files.example/f{len(self.files)}"
            self.files[url] = next(text for text in (KEY_FILE, NOTES_FILE, PLAIN_FILE) if text in content)
            return httpx.Response(201, json={"id": url.rsplit("/", 1)[-1], "urls": {"get": url}})
        if request.method == "POST":
            given = json.loads(request.content)["input"]
            quoted = " | ".join(self.files[v] for v in given.values() if v in self.files)
            rid = f"fil{len(self.jobs):023d}"
            self.jobs[rid] = PREDICTION | {"id": rid, "input": given, "status": "failed", "output": None,
                                           "error": f"cannot parse input: {quoted}", "logs": f"read {quoted}"}
            return httpx.Response(201, json=self.jobs[rid] | {"status": "starting"})
        if path.endswith("/predictions"):
            return httpx.Response(200, json={"next": None, "previous": None, "results": list(self.jobs.values())})
        return httpx.Response(200, json=self.jobs.get(path.rsplit("/", 1)[-1], PREDICTION))


def test_the_contents_of_sensitive_file_inputs_are_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `{$file}` input under a secret-named key or listed in `spec.sensitive` is a secret by its
    contents: a job error quoting them is scrubbed from every output and file. A file input that is
    not sensitive stays visible."""
    root = tmp_path / "ws"
    (root / "keys").mkdir(parents=True)
    (root / "keys" / "service.key").write_text(KEY_FILE)
    (root / "keys" / "notes.txt").write_text(NOTES_FILE)
    (root / "plain.txt").write_text(PLAIN_FILE)
    (root / "jobrunner.yaml").write_text("providers: {}\n")
    (root / "m.yaml").write_text(
        f"apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {{name: files}}\nspec:\n  provider: replicate\n"
        f"  version: {VERSION}\n  sensitive: [notes]\n  inputs:\n"
        "    - {key: a, text: one, service_key: {$file: keys/service.key}}\n"
        "    - {key: b, text: two, notes: {$file: keys/notes.txt}, data: {$file: plain.txt}}\n")
    monkeypatch.chdir(root)
    monkeypatch.setenv("REPLICATE_API_TOKEN", REPLICATE_TOKEN)
    monkeypatch.setenv("REPLICATE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.delenv("JOBRUNNER_STATE_URL", raising=False)
    fake = FileEchoingReplicate()
    outputs: dict[str, str] = {}
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1", port=9).mock(side_effect=fake)
        for args in (["apply", "--auto-approve"], ["status"], ["status", "--format", "json"],
                     ["state", "show", "PredictionBatch/files[a]"], ["state", "show", "PredictionBatch/files[b]"],
                     ["logs", "PredictionBatch/files[a]"], ["plan", "--format", "json"]):
            r = run_cli(*args)
            assert "Traceback" not in r.output, r.output
            outputs[" ".join(args)] = r.output
    assert len(fake.jobs) == 2 and len(fake.files) == 3, "both rows ran, with their files uploaded"
    assert "cannot parse input" in outputs["apply --auto-approve"]
    assert "plain-data-visible-1234" in outputs["apply --auto-approve"], "a file that is not sensitive stays visible"
    sentinels = ["sentinelKeyFileLine0123456789abcdef", "sentinel-notes-file-contents-77aa"]
    texts = {**outputs, **_files(root, skip=("keys",))}
    leaks = {name: [s for s in sentinels if s in text] for name, text in texts.items()}
    assert not any(leaks.values()), {k: v for k, v in leaks.items() if v}
