"""What state records of a finished prediction (`reconcile.outputs.outputs_of`): the answer's
output and metrics, secret-named fields redacted, sharing key strings across items."""
from __future__ import annotations

import json
from typing import Any

from jobrunner.providers.base import JobStatus, RemoteJob
from jobrunner.reconcile.outputs import outputs_of


def test_recorded_outputs_of_separately_decoded_answers_share_their_key_strings() -> None:
    """Each answer is decoded on its own; what state records of a prediction's output and metrics
    is equal to what was answered (secret-named fields redacted), with one string per key name
    shared by every item (a big batch holds 100,000 of them for the whole run)."""
    def answered(i: int) -> RemoteJob:
        data = json.loads(json.dumps({"output": {"text": f"t{i}", "parts": [{"n": i}], "api_key": "k"},
                                      "metrics": {"predict_time": 0.5 + i, "total_time": 1.0}}))
        return RemoteJob(id=f"r{i}", job_kind="prediction", status=JobStatus.SUCCEEDED, output=data["output"],
                         metrics=data["metrics"])

    first, second = outputs_of("prediction", answered(1)), outputs_of("prediction", answered(2))
    assert first == {"output": {"text": "t1", "parts": [{"n": 1}], "api_key": "(sensitive)"},
                     "metrics": {"predict_time": 1.5, "total_time": 1.0}}
    for a, b in ((first["output"], second["output"]), (first["metrics"], second["metrics"]),
                 (first["output"]["parts"][0], second["output"]["parts"][0])):
        assert [id(k) for k in a] == [id(k) for k in b]


def test_an_output_row_is_written_as_the_scrubbed_row_encodes_with_or_without_a_secret_in_it() -> None:
    """A row is encoded once and written as it is when its text shows no known secret; a row that
    quotes one (a model echoing a sensitive input, a secret that JSON escapes) is scrubbed first."""
    from jobrunner.reconcile.outputs import row_line, scrubbed_row_line
    from jobrunner.redact import SecretSet, scrub_data

    secrets = SecretSet(["s3cr3t-value-123", 'quo"ted-secret-456'])
    rows: list[dict[str, Any]] = [
        {"key": "a", "input": {"prompt": "hello"}, "status": "succeeded", "output": "hi", "metrics": {}},
        {"key": "b", "input": {"prompt": "x"}, "status": "succeeded", "output": "echo s3cr3t-value-123", "metrics": {}},
        {"key": "c", "input": {}, "status": "failed", "output": None, "metrics": {},
         "error": 'it said quo"ted-secret-456'},
        {"key": "d", "input": {"n": 1.5, "uni": "héllo \u2028"}, "status": "succeeded", "output": [1, {"k": "v"}],
         "metrics": {"predict_time": 0.1}},
    ]
    for row in rows:
        for known in (secrets, SecretSet(), None):
            assert scrubbed_row_line(row, known) == row_line(scrub_data(row, secrets=known))
    assert "s3cr3t" not in scrubbed_row_line(rows[1], secrets)
    assert "quo" not in scrubbed_row_line(rows[2], secrets)
