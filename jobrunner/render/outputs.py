"""What `status` and `outputs` print, and the outputs part of apply's summary.

Pure functions of the state document (and the time, for ages): the commands load state, refresh
it, and print what these return, so the text and JSON forms always show the same facts.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from jobrunner.durations import format_age
from jobrunner.providers.base import ABORTED, CANCELED, FAILED, GONE, PENDING, RUNNING, SUCCEEDED
from jobrunner.render.formats import FORMAT_VERSION
from jobrunner.resources import resource_of
from jobrunner.state.model import StateDoc
from jobrunner.timestamps import parse_rfc3339

STATUS_HEADERS = ("ADDRESS", "PROVIDER", "REMOTE ID", "STATUS", "AGE", "ATTEMPTS")


# --- status ----------------------------------------------------------------------------------


def status_rows(doc: StateDoc, now: datetime) -> list[dict[str, Any]]:
    """One row per tracked address; age counts from the creation of the job it tracks now."""
    return list(_status_rows(doc, now))


def _status_rows(doc: StateDoc, now: datetime) -> Iterator[dict[str, Any]]:
    for addr, st in sorted(doc.addresses.items()):
        attempt = st.attempt_of(st.remote_id)
        created = parse_rfc3339(attempt.created_at) if attempt is not None else None
        age = (now - created).total_seconds() if created else None
        yield {"address": addr, "provider": st.provider, "remote_id": st.remote_id, "status": st.status,
               "age_seconds": round(age, 1) if age is not None else None, "attempts": st.attempts,
               "file": st.file, "pending_intent": st.intent is not None}


def status_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps({"format_version": FORMAT_VERSION, "addresses": rows}, indent=2)


def status_json_chunks(doc: StateDoc, now: datetime, *, rows_per_chunk: int = 1000) -> Iterator[str]:
    """`status_json(status_rows(doc, now))` in pieces, some rows at a time (100,000 rows and their
    indented text were held whole: 360 MB)."""
    empty = json.dumps({"format_version": FORMAT_VERSION, "addresses": []}, indent=2)
    yield from _json_filled(empty, "[]", (_STATUS_JSON(rows) for rows in _batched(_status_rows(doc, now),
                                                                                  rows_per_chunk)))


_STATUS_JSON = json.JSONEncoder(indent=2).encode


def _batched(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _json_filled(empty: str, hole: str, parts: Iterator[str]) -> Iterator[str]:
    """The indented document `empty` (indent 2, its last member the empty container `hole`, `[]`
    or `{}`) with the members of `parts` put in the hole: the text of encoding the filled document
    whole. Each part is a non-empty container of the hole's kind encoded alone with indent 2; its
    members move one level deeper, and as JSON strings hold no raw newline, every newline in it is
    a line break to indent once more."""
    cut = empty.rindex(hole)
    none = True
    for text in parts:  # "[\n  member,\n  member\n]": the members are text[4:-2]
        yield (empty[:cut + 1] + "\n    " if none else ",\n    ") + text[4:-2].replace("\n", "\n  ")
        none = False
    yield empty if none else "\n  " + empty[cut + 1:]


def status_text(rows: list[dict[str, Any]]) -> str:
    """An aligned table (no trailing newline), or a hint when nothing is tracked."""
    if not rows:
        return "No tracked jobs. Run `jobrunner apply` to create some."
    table = [(r["address"], r["provider"], r["remote_id"] or "-",
              (r["status"] or "-") + (" (intent pending)" if r["pending_intent"] else ""),
              format_age(r["age_seconds"]) if r["age_seconds"] is not None else "-", str(r["attempts"]))
             for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(STATUS_HEADERS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(STATUS_HEADERS, widths, strict=True)).rstrip()]
    lines.extend("  ".join(c.ljust(w) for c, w in zip(t, widths, strict=True)).rstrip() for t in table)
    lines.append(status_summary(rows))
    return "\n".join(lines)


def status_text_chunks(doc: StateDoc, now: datetime, *, lines_per_chunk: int = 2000) -> Iterator[str]:
    """`status_text(status_rows(doc, now)) + "\n"`, in pieces, without the rows.

    For 100,000 addresses the rows, their table and the joined text were as big as the state
    itself; here each row is one tuple of strings the document (or a small cache) already holds,
    and lines are made and handed out a chunk at a time.
    """
    if not doc.addresses:
        yield status_text([]) + "\n"
        return
    table, counts = _status_table(doc, now)
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(STATUS_HEADERS)]
    row = "  ".join(f"{{:<{w}}}" for w in widths).format  # each cell left-justified, as str.ljust
    chunk = [row(*STATUS_HEADERS).rstrip()]
    for cells in table:
        chunk.append(row(*cells).rstrip())
        if len(chunk) >= lines_per_chunk:
            yield "\n".join(chunk) + "\n"
            chunk = []
    chunk.append(_summary_line(len(table), counts))
    yield "\n".join(chunk) + "\n"


def _status_table(doc: StateDoc, now: datetime) -> tuple[list[tuple[str, ...]], dict[str, int]]:
    """The cells of `status_text`'s rows (shared strings: ages and counts repeat) and the status counts."""
    table: list[tuple[str, ...]] = []
    counts: dict[str, int] = {}
    shared: dict[str, str] = {}
    for addr, st in sorted(doc.addresses.items()):
        attempt = st.attempt_of(st.remote_id)
        created = parse_rfc3339(attempt.created_at) if attempt is not None else None
        age = "-" if created is None else format_age(round((now - created).total_seconds(), 1))
        state = (st.status or "-") + (" (intent pending)" if st.intent is not None else "")
        attempts = str(st.attempts)
        table.append((addr, st.provider, st.remote_id or "-", shared.setdefault(state, state),
                      shared.setdefault(age, age), shared.setdefault(attempts, attempts)))
        key = st.status or "not created"
        counts[key] = counts.get(key, 0) + 1
    return table, counts


# Lifecycle order for the summary's counts; statuses not listed follow, alphabetically.
# ("starting" and "processing", Replicate's words for pending and running, rank with them if a
# state holds them.)
_STATUS_ORDER = (PENDING, "starting", RUNNING, "processing", SUCCEEDED, FAILED, CANCELED, ABORTED, GONE)


def status_summary(rows: list[dict[str, Any]]) -> str:
    """`200 tracked: 180 succeeded, 15 running, 5 failed.`: the line a long table needs at its end."""
    counts: dict[str, int] = {}
    for r in rows:
        key = r["status"] or "not created"
        counts[key] = counts.get(key, 0) + 1
    return _summary_line(len(rows), counts)


def _summary_line(total: int, counts: dict[str, int]) -> str:
    order = {s: i for i, s in enumerate(_STATUS_ORDER)}
    ranked = sorted(counts, key=lambda s: (order.get(s, len(order)), s))
    return f"{total} tracked: " + ", ".join(f"{counts[s]} {s}" for s in ranked) + "."


# --- outputs ---------------------------------------------------------------------------------


def recorded_outputs(doc: StateDoc, addresses: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Redacted outputs per address, for the given addresses or resources (all when none given)."""
    return dict(_recorded(doc, addresses))


def _recorded(doc: StateDoc, addresses: Iterable[str] = (), *,
              redacted: bool = True) -> Iterator[tuple[str, dict[str, Any]]]:
    """(address, outputs) in address order; `redacted=False`: as recorded, for the caller to redact."""
    from jobrunner.redact import known_secrets, redact

    wanted = set(addresses)
    secrets = known_secrets()  # once, not once per address
    for addr, st in sorted(doc.addresses.items()):
        if wanted and addr not in wanted and resource_of(addr) not in wanted:
            continue
        outputs = st.peek_outputs()  # not kept unpacked: each address is read once
        if not outputs:
            continue
        yield addr, redact(outputs, secrets=secrets) if redacted else outputs


def outputs_text_chunks(doc: StateDoc, addresses: Iterable[str] = (), *,
                        lines_per_chunk: int = 2000) -> Iterator[str]:
    """`outputs_text(recorded_outputs(doc, addresses)) + "\n"` in pieces, one address redacted
    at a time: 100,000 batch items' outputs are never copied all at once."""
    from jobrunner.redact import known_secrets, redact, redacts_nothing

    secrets = known_secrets()
    chunk: list[str] = []
    any_output = False
    for addr, outs in _recorded(doc, addresses, redacted=False):
        any_output = True
        lines = list(_output_lines(addr, outs))
        if not redacts_nothing("\n".join(lines), secrets):  # the lines hold every key and string
            lines = list(_output_lines(addr, redact(outs, secrets=secrets)))
        chunk.extend(lines)
        if len(chunk) >= lines_per_chunk:
            yield "\n".join(chunk) + "\n"
            chunk = []
    if chunk:
        yield "\n".join(chunk) + "\n"
    elif not any_output:
        yield outputs_text({}) + "\n"


def outputs_json(data: dict[str, dict[str, Any]]) -> str:
    return json.dumps({"format_version": FORMAT_VERSION, "outputs": data}, indent=2, sort_keys=True, default=str)


def outputs_json_chunks(doc: StateDoc, addresses: Iterable[str] = (), *, per_chunk: int = 1000) -> Iterator[str]:
    """`outputs_json(recorded_outputs(doc, addresses))` in pieces, some addresses at a time (in
    address order, as sort_keys orders them)."""
    from jobrunner.redact import known_secrets, redact, redacts_nothing

    secrets = known_secrets()

    def parts() -> Iterator[str]:
        for batch in _batched(_recorded(doc, addresses, redacted=False), per_chunk):
            text = _OUTPUTS_JSON(dict(batch))
            # Redacted only when the piece may hold something to hide. The encoder escapes non-ASCII
            # as \uXXXX, which would hide a look-alike key (a Kelvin-sign "key") from the check.
            if "\\u" in text or not redacts_nothing(text, secrets):
                text = _OUTPUTS_JSON({addr: redact(outs, secrets=secrets) for addr, outs in batch})
            yield text

    yield from _json_filled(outputs_json({}), "{}", parts())


_OUTPUTS_JSON = json.JSONEncoder(indent=2, sort_keys=True, default=str).encode


def outputs_text(data: dict[str, dict[str, Any]]) -> str:
    """`address.key = value` lines (no trailing newline), or a note when there are none."""
    if not data:
        return "No outputs recorded yet."
    lines: list[str] = []
    for addr, outs in data.items():
        lines.extend(_output_lines(addr, outs))
    return "\n".join(lines)


# json.dumps(value, sort_keys=True, default=str, ensure_ascii=False), without building an encoder
# per value (two values per batch item).
_OUTPUT_JSON = json.JSONEncoder(sort_keys=True, default=str, ensure_ascii=False).encode


def _output_lines(addr: str, outs: dict[str, Any]) -> Iterator[str]:
    for key, value in sorted(outs.items()):
        # One line per output: strings as they are unless multi-line, anything else as JSON.
        plain = isinstance(value, str) and "\n" not in value
        text = value if plain else _OUTPUT_JSON(value)
        yield f"{addr}.{key} = {text}"


def summary_outputs_lines(doc: StateDoc, resources: set[str] | None, files_written: list[str]) -> list[str]:
    """The `Outputs:` lines after apply: single jobs' outputs, a count per batch, files written."""
    from jobrunner.resources import JOB_PREDICTION

    lines = []
    batches: dict[str, list[Any]] = {}
    for addr, st in sorted(doc.addresses.items()):
        if resources is not None and resource_of(addr) not in resources:
            continue
        if st.job_kind == JOB_PREDICTION:
            batches.setdefault(resource_of(addr), []).append(st)
            continue
        for key, value in sorted(st.outputs.items()):
            if key in ("id", "metrics"):  # metrics: a training's run time, for estimates only
                continue
            lines.append(f"  {addr}.{key} = {value}")
    for res, items in sorted(batches.items()):
        ok = sum(1 for s in items if s.status == SUCCEEDED)
        lines.append(f"  {res}: {ok}/{len(items)} item(s) succeeded")
    for f in files_written:
        lines.append(f"  wrote {f}")
    return lines


__all__ = ["status_rows", "status_json", "status_json_chunks", "status_text", "status_text_chunks", "recorded_outputs",
           "outputs_json", "outputs_json_chunks", "outputs_text", "outputs_text_chunks", "summary_outputs_lines"]
