"""`apply --json` / `destroy --json`: a newline-delimited, versioned stream of events for machines.

One JSON object per line, each with `format_version`, `type`, `timestamp` (RFC 3339, UTC) and the
fields of its type (docs/json-events.md; JSON Schema in jobrunner/schemas/events.schema.json):
`plan` first, then per job `create`, `status`, `retry`, `error` and (after the run) `output`,
`note` for messages about no single job, and `summary` last. Every line is scrubbed of secret
values, and outputs are redacted exactly as `jobrunner outputs` shows them.

`format_version` is the one scheme of every JSON document jobrunner prints (jobrunner.render.formats).
"""
from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TextIO

from jobrunner.redact import scrub_data, scrub_text
from jobrunner.render.events import classify
from jobrunner.render.formats import FORMAT_VERSION

if TYPE_CHECKING:
    from jobrunner.plan_types import Plan
    from jobrunner.state.model import StateDoc


Operation = Literal["apply", "destroy"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonEvents:
    """The `ProgressSink` of `--json`, plus the plan, output and summary events the commands send."""

    def __init__(self, operation: Operation, stream: TextIO | None = None) -> None:
        self.operation = operation
        self.stream = stream or sys.stdout

    def emit(self, type_: str, **fields: Any) -> None:
        line = {"format_version": FORMAT_VERSION, "type": type_, "timestamp": _now(), "operation": self.operation,
                **{k: v for k, v in fields.items() if v is not None}}
        self.stream.write(json.dumps(scrub_data(line), ensure_ascii=False, default=str) + "\n")
        self.stream.flush()

    # ---- the plan ------------------------------------------------------------------------

    def plan(self, plan: Plan) -> None:
        """What will run: counts by action, every change that is not converged, and the estimated
        duration and cost (the JSON plan's `estimate`; null when nothing was estimated)."""
        from jobrunner.render.plan_costs import plan_json

        self.emit("plan", has_changes=plan.has_changes, summary=plan.counts(),
                  changes=[{"address": c.address, "action": c.action, "reason": scrub_text(c.reason)}
                           for c in plan.changes if not c.quiet],
                  estimate=plan_json(plan.estimate))

    # ---- ProgressSink --------------------------------------------------------------------

    def begin(self, plan: Plan) -> None:
        """Nothing: the command sends the `plan` event itself, before any prompt or converged exit."""

    def event(self, address: str, what: str, detail: str = "") -> None:
        ev = classify(address, what, detail)
        fields: dict[str, Any] = {"address": ev.address, "status": ev.status}
        if ev.kind == "create":
            fields.update(remote_id=ev.remote_id, attempt=ev.attempt, adopted=what == "adopted")
        elif ev.kind == "retry":
            fields.update(attempt=ev.attempt, max_attempts=ev.max_attempts, message=ev.detail)
        elif ev.kind == "error":
            fields.update(message=ev.detail or ev.status)
        else:
            fields.update(remote_id=ev.remote_id, detail=ev.detail or None, progress=ev.progress)
        self.emit(ev.kind, **fields)

    def note(self, text: str) -> None:
        self.emit("note", message=text)

    def close(self) -> None:
        """Nothing: `summary` is the last event, sent by the command with its exit code."""

    # ---- after the run -------------------------------------------------------------------

    def outputs(self, doc: StateDoc, addresses: list[str]) -> None:
        """One `output` event per address that succeeded in this run, redacted as `outputs` shows it."""
        from jobrunner.render.outputs import recorded_outputs

        for address, values in recorded_outputs(doc, addresses).items():
            if address in addresses:
                self.emit("output", address=address, outputs=values)

    def summary(self, exit_code: int, message: str, report: Any | None = None) -> None:
        """The last event: the outcome counts of the run, its exit code and the human summary line."""
        counts: dict[str, int] = {}
        failures: list[dict[str, str]] = []
        files: list[str] = []
        if report is not None:
            for o in report.outcomes.values():
                counts[o.outcome] = counts.get(o.outcome, 0) + 1
            failures = [{"address": o.address, "outcome": o.outcome, "message": o.detail}
                        for o in sorted(report.failed, key=lambda o: o.address)]
            files = list(report.files_written)
        self.emit("summary", exit_code=int(exit_code), message=message, outcomes=counts,
                  created=getattr(report, "created", 0), adopted=getattr(report, "adopted", 0),
                  failures=failures, files_written=files,
                  interrupted=bool(getattr(report, "interrupted", False)),
                  timed_out=bool(getattr(report, "timed_out", False)))


__all__ = ["FORMAT_VERSION", "JsonEvents", "Operation"]
