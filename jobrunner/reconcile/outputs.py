"""What a finished job leaves behind: outputs recorded in state, and a batch's `output_file`.

Training outputs are the new version (`owner/name:id`) and weights URL (and `metrics.predict_time`
when the provider reports it, for duration estimates); a batch item's are its output and metrics;
a Model's are its `owner/name`; a ready Deployment's its name, URL and status.
`resource_outputs` folds per-address state into the `Kind/name -> outputs` map that
`${Kind.name.output.field}` references resolve against.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jobrunner.providers.base import SUCCEEDED, RemoteJob
from jobrunner.resources import JOB_DEPLOYMENT, JOB_PREDICTION, JOB_TRAINING, resource_of
from jobrunner.state.model import AddressState, StateDoc


def outputs_of(job_kind: str, remote: RemoteJob) -> dict[str, Any]:
    """Outputs worth recording for a terminal job (empty unless it succeeded)."""
    if remote.status != SUCCEEDED:
        return {}
    if job_kind == JOB_TRAINING:
        out = remote.output if isinstance(remote.output, dict) else {}
        recorded = {"id": remote.id, **{k: v for k, v in out.items() if v is not None}}
        for key in ("checkpoint", "model_download_url"):  # Emissary's outputs
            if remote.extra.get(key) and key not in recorded:
                recorded[key] = remote.extra[key]
        predict_time = (remote.metrics or {}).get("predict_time")
        if predict_time is not None:
            # How long it ran: the next plan's duration estimate for trainings of this version.
            recorded["metrics"] = {"predict_time": predict_time}
        if "version" not in recorded and remote.project_id is None:
            # Emissary: the fine-tuned model is named in extra fields (e.g. output_model).
            for key in ("fine_tuned_model", "output_model", "model_name"):
                if remote.extra.get(key):
                    recorded["version"] = remote.extra[key]
                    break
        return recorded
    if job_kind == JOB_PREDICTION:
        from jobrunner.redact import known_secrets, redact_unless_clear

        # Models may echo their input: secret-named fields never reach state or output files.
        # (shared_keys copies: an output with nothing to hide is not copied by redaction first.)
        output = redact_unless_clear(remote.output, known_secrets())
        return {"output": shared_keys(output), "metrics": shared_keys(remote.metrics or {})}
    if job_kind == JOB_DEPLOYMENT:  # ready: what RemoteDeployment.outputs() said (name, url, version...)
        outs = remote.extra.get("outputs")
        return dict(outs) if isinstance(outs, dict) else {"id": remote.id}
    return {}


def shared_keys(value: Any) -> Any:
    """A copy of `value` whose dict keys are interned strings. Each answer is decoded on its own, so
    every item of a big batch would hold its own "predict_time", "total_time" and output key
    strings for the whole run (some 23 MB at 100,000 items); interned, all items share one of each,
    as they do once state is reloaded (the loader decodes many addresses at once)."""
    if isinstance(value, dict):
        return {(sys.intern(k) if type(k) is str else k): shared_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shared_keys(v) for v in value]
    return value


def record_adoption(doc: StateDoc, job: Any, remote: RemoteJob, st: AddressState | None = None) -> AddressState:
    """Record `remote` (checked to match desired `job`) as the address's first attempt, in `doc`.

    `st` is the address's existing state to update (its history is kept), or None for a fresh one.
    Used by `import` and `import --discover`, which adopt jobs jobrunner did not create.
    """
    from jobrunner.spec import recorded_inputs
    from jobrunner.state.model import Attempt
    from jobrunner.timestamps import to_rfc3339, utcnow

    if st is None:
        st = AddressState(address=job.address, kind=job.resource_address.split("/", 1)[0], job_kind=job.job_kind,
                          provider=job.provider, file=job.file)
    doc.claim_remote_id(job.address, remote.id)  # one remote job, one address
    st.remote_id, st.project_id, st.status = remote.id, remote.project_id, remote.status
    st.fingerprint, st.attempts, st.intent = job.fingerprint, 1, None
    st.inputs = recorded_inputs(job)
    st.outputs = outputs_of(job.job_kind, remote)
    st.error = remote.error
    st.file = job.file
    st.updated_at = to_rfc3339(utcnow())
    st.history.append(Attempt(remote_id=remote.id, fingerprint=job.fingerprint, attempt=1,
                              created_at=to_rfc3339(remote.created_at or utcnow()), status=remote.status,
                              project_id=remote.project_id))
    doc.addresses[job.address] = st
    return st


def batch_key(address: str) -> str | None:
    """`PredictionBatch/x[key]` -> key."""
    if address.endswith("]") and "[" in address:
        return address[address.index("[") + 1:-1]
    return None


def resource_outputs(doc: StateDoc, output_files: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """`Kind/name -> outputs` for succeeded addresses (the names of `references.KNOWN_OUTPUTS`).

    A batch's outputs are `count` (items succeeded) and `output_file` (from `output_files`,
    resource address -> path as written in the manifest); its items keep their own outputs.
    """
    out: dict[str, dict[str, Any]] = {}
    for address, st in doc.addresses.items():
        if st.status != SUCCEEDED:
            continue
        res = resource_of(address)
        if st.job_kind == JOB_PREDICTION:
            entry = out.setdefault(res, {"count": 0})
            entry["count"] += 1
            if output_files and res in output_files:
                entry["output_file"] = output_files[res]
        else:
            out[res] = dict(st.outputs)
    return out


def _sorted(value: Any) -> Any:
    """Dicts with sorted keys at every level: rows are byte-identical whether state was reloaded or not."""
    if isinstance(value, dict):
        keys = sorted(value, key=str) if not _all_str(value) else sorted(value)  # the same order for str keys
        # Scalars are taken as they are, without a call each (a big batch's file is checked per row).
        return {k: _sorted(v) if isinstance(v := value[k], (dict, list)) else v for k in keys}
    if isinstance(value, list):
        return [_sorted(v) if isinstance(v, (dict, list)) else v for v in value]
    return value


def _all_str(keys: Any) -> bool:
    for k in keys:  # a loop, not all(): called for every row's output and metrics
        if type(k) is not str:
            break
    else:
        return True
    return False


def output_rows(items: list[tuple[str, dict[str, Any], AddressState | None]]) -> list[dict[str, Any]]:
    """One JSONL row per batch item, in the given (manifest) order."""
    rows = []
    for key, redacted_input, st in items:
        rows.append({
            "key": key,
            "input": redacted_input,
            "status": st.status if st else None,
            "output": _sorted(st.outputs.get("output")) if st else None,
            "metrics": _sorted(st.outputs.get("metrics", {})) if st else {},
            **({"error": st.error} if st is not None and st.error else {}),
        })
    return rows


# One encoder for every row (`json.dumps` with options builds one per call): a big batch's file
# is 100,000 rows, written or checked on every apply.
_ROW_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=False, default=str)


def row_line(row: dict[str, Any]) -> str:
    """One row of an output file as `write_jsonl` writes it (what `json.dumps(row, ensure_ascii=False,
    default=str)` gives), with its newline."""
    return _ROW_ENCODER.encode(row) + "\n"


def scrubbed_row_line(row: dict[str, Any], secrets: Any) -> str:
    """`row_line(scrub_data(row, secrets=secrets))`, encoding the row once: its text is written as it
    is when it shows no known secret (the usual case), else the row is scrubbed and encoded again."""
    from jobrunner.redact import SecretSet, known_secrets, scrub_data

    if secrets is None:
        secrets = known_secrets()
    line = row_line(row)
    if not secrets or (isinstance(secrets, SecretSet) and secrets.absent_from_json(line)):
        return line
    return row_line(scrub_data(row, secrets=secrets))


def write_lines(path: Path, lines: Iterable[bytes]) -> None:
    """Atomically (temp + rename) write `lines` (encoded, each with its newline); an exception from
    `lines` leaves the file as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.writelines(lines)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Atomically (temp + rename) write rows as JSON Lines (rows are consumed one at a time)."""
    from jobrunner.redact import known_secrets

    # The file boundary: a row's output or error that quotes a secret value (a model echoing a
    # sensitive input) is written scrubbed, like its input.
    secrets = known_secrets()
    write_lines(path, (scrubbed_row_line(row, secrets).encode("utf-8") for row in rows))
