"""A workspace whose N batch items are recorded as succeeded, without running N predictions.

The read-only commands (`plan`, a no-change `apply`, `status`, `outputs`) over 100,000 succeeded
items are worth measuring often, but a real 100,000-item apply costs minutes of CPU. This writes
what such an apply leaves behind, in the same shapes (state as the reconciler records it, the
output file as `write_jsonl` writes it, the output file's and the batch's marks, the snapshot's
decoded copy), using jobrunner's own expansion for the fingerprints.

    python bench/_synthetic.py DIR ITEMS [URL]
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import batch_workspace  # noqa: E402


class _Quiet:
    def note(self, _text: str) -> None:
        pass


def build_succeeded(root: Path, items: int, url: str = "http://127.0.0.1:9") -> Path:
    """`batch_workspace(root, items, url)` plus state and an output file recording every item succeeded."""
    from jobrunner.reconcile.outputfiles import write_output_files
    from jobrunner.reconcile.settledmarks import prime_output_marks, record_settled
    from jobrunner.spec import expand, recorded_inputs
    from jobrunner.state.local_file import LocalFileStore
    from jobrunner.state.model import AddressState, Attempt, StateDoc
    from jobrunner.validate import validate_paths

    batch_workspace(root, items, url, tag=f"s{items}-")
    result = validate_paths([root], root)
    assert result.ok, [d.format() for d in result.diagnostics]
    (res,) = result.resources
    doc = StateDoc(lineage="bench-synthetic", serial=1)
    jobs = list(expand(result.resources, root, items=result.items))
    for i, job in enumerate(jobs):
        rid = f"{i:08d}" + (job.fingerprint or "")[:18]
        at = f"2026-01-01T00:{i // 6000 % 60:02d}:{i // 100 % 60:02d}.{i % 100:02d}0000Z"
        prompt_input = job.request["input"]
        st = AddressState(
            address=job.address, kind=res.kind, job_kind=job.job_kind, provider=job.provider, file=job.file,
            fingerprint=job.fingerprint, remote_id=rid, status="succeeded", attempts=1,
            outputs={"metrics": {"predict_time": 0.000452, "total_time": 0.00097}, "output": dict(prompt_input)},
            inputs=recorded_inputs(job), updated_at=at,
            history=[Attempt(remote_id=rid, fingerprint=job.fingerprint or "", attempt=1, created_at=at,
                             status="succeeded")],
        )
        doc.addresses[job.address] = st
    store = LocalFileStore(root / ".jobrunner" / "state.json")
    store.save(doc)
    decoded = store.leave_decoded_copy()  # as the apply leaves it once its run is over (state.loadcache)
    # As the apply that ran them writes it: the file, and its mark (so a no-change apply skips the
    # row-by-row check, as after a real apply; run with the commands' environment, whose secrets
    # the mark covers).
    write_output_files(root, {res.address: res}, jobs, doc, {res.address}, _Quiet())
    # And the batch's settled mark, as that apply leaves it (so `plan` need not read the rows).
    record_settled(root, [res], jobs, doc, frozenset())
    if decoded is not None:  # and, as that apply ends, the output file's mark found by its quick digest
        prime_output_marks(root, [res], decoded)
    return root


if __name__ == "__main__":
    build_succeeded(Path(sys.argv[1]), int(sys.argv[2]), *(sys.argv[3:4]))
