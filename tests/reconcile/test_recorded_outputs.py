"""What state records of a finished prediction (`reconcile.outputs.outputs_of`): the answer's
output and metrics, secret-named fields redacted, sharing key strings across items."""
from __future__ import annotations

import json

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
