"""The plan as a pull-request comment (GitHub-flavoured Markdown), always under 60,000 characters.

Layout: a hidden marker (`<!-- jobrunner-plan -->`) so a workflow can find and update one sticky
comment, the estimated cost table (per resource, provider and in all, with sources; at most
render.plan_costs.MAX_MARKDOWN_ROWS rows), the summary counts, a table of every address that changes
(action and reason), then the per-job input diffs (redacted) in collapsed `<details>` sections.
Order is the plan's (stable).

GitHub refuses comments over 65,536 characters. When the plan is too big, the table stays and the
details are cut, with a pointer to the JSON plan artifact; if even the table does not fit, its tail
is replaced by a row saying how many rows were cut.
"""
from __future__ import annotations

import html
import re

from jobrunner.plan_types import ACTIONS, DELETE, DESTRUCTIVE, MOVED, NOOP, UPDATE, WAIT, Plan, PlannedChange
from jobrunner.redact import Secrets, known_secrets, scrub_text
from jobrunner.render.plan_common import (
    destructive_line,
    diff_lines,
    no_changes_line,
    resource_of,
    summary_line,
    visible,
)
from jobrunner.render.plan_costs import markdown_table

MARKER = "<!-- jobrunner-plan -->"
MAX_CHARS = 60_000
DEFAULT_ARTIFACT = "the JSON plan artifact (`jobrunner plan --out plan.json`)"
_DIFF_VALUE_LIMIT = 300
_MAX_DIFF_LINES = 50


def _cell(text: str, secrets: Secrets | None = None) -> str:
    """Table-cell safe: one line, no pipes, no HTML."""
    text = " ".join(scrub_text(text, secrets=secrets).split())
    return html.escape(text, quote=False).replace("|", "\\|")


def _fence(body: str) -> str:
    runs = [len(m.group(0)) for m in re.finditer(r"`+", body)]
    return "`" * max(3, max(runs, default=0) + 1)


def _row(change: PlannedChange, secrets: Secrets) -> str:
    action = f"**{change.action}** (destructive)" if change.action in DESTRUCTIVE else change.action
    return f"| `{change.address}` | {action} | {_cell(change.reason, secrets)} |\n"


def _details(change: PlannedChange, secrets: Secrets) -> str | None:
    lines = diff_lines(change, _DIFF_VALUE_LIMIT, secrets=secrets)
    if not lines:
        return None
    cut = len(lines) - _MAX_DIFF_LINES
    lines = lines[:_MAX_DIFF_LINES]
    body_lines = []
    for sign, text in lines:
        if sign == "~":
            key, _, rest = text.partition(": ")
            before, _, after = rest.partition(" -> ")
            body_lines.append(f"- {key}: {before}")
            body_lines.append(f"+ {key}: {after}")
        else:
            body_lines.append(f"{sign} {text}")
    if cut > 0:
        body_lines.append(f"# … {cut} more changed keys (see the JSON plan)")
    body = scrub_text("\n".join(body_lines), secrets=secrets)
    fence = _fence(body)
    summary = f"<code>{html.escape(change.address)}</code>: {change.action}"
    return f"<details><summary>{summary}</summary>\n\n{fence}diff\n{body}\n{fence}\n\n</details>\n"


def _per_resource(shown: list[PlannedChange]) -> str:
    """One row per batch, so a reviewer sees every batch even when the address table is cut:
    `| PredictionBatch/eval | 9,998 create, 2 replace |`. Omitted for small plans."""
    if len(shown) <= 10:
        return ""
    groups: dict[str, dict[str, int]] = {}
    for c in shown:
        if "[" in c.address:
            counts = groups.setdefault(resource_of(c.address), {})
            counts[c.action] = counts.get(c.action, 0) + 1
    if not groups:
        return ""
    rows = ["| Batch | Items |\n", "|---|---|\n"]
    rows += [f"| `{r}` | " + ", ".join(f"{n:,} {a}" for a, n in g.items()) + " |\n" for r, g in groups.items()]
    return "".join(rows) + "\n"


def render(plan: Plan, *, artifact: str = DEFAULT_ARTIFACT, max_chars: int = MAX_CHARS) -> str:
    counts = plan.counts()
    secrets = known_secrets()
    head = [MARKER, "\n### jobrunner plan\n\n"]
    for warning in plan.warnings:
        head.append(f"> **Warning:** {_cell(warning)}\n")
    if plan.warnings:
        head.append("\n")
    head.append(markdown_table(plan.estimate))  # what it will cost, first: reviewers read it first
    # The moved column only when something moves; it counts every moved address, also replaced ones.
    # Update and delete (deployments) only when the plan has some.
    optional = {MOVED: bool(plan.moves), UPDATE: bool(counts[UPDATE]), DELETE: bool(counts[DELETE])}
    columns = [a for a in ACTIONS if a != NOOP and optional.get(a, True)]
    counts[MOVED] = len(plan.moves)
    head.append("| " + " | ".join(columns) + " | unchanged |\n")
    head.append("|" + "---:|" * (len(columns) + 1) + "\n")
    head.append("| " + " | ".join(str(counts[a]) for a in columns) + f" | {counts[NOOP]} |\n\n")
    head.append(f"**{summary_line(plan) if plan.has_changes else no_changes_line(plan)}**\n\n")
    doomed = destructive_line(plan)
    if doomed:
        head.append(f"> **Destructive:** {_cell(doomed)}\n\n")
    header = "".join(head)

    shown = [c for c in plan.changes if visible(c)]
    hidden = len(plan.changes) - len(shown)
    header += _per_resource(shown)
    footer = f"\n<sub>{hidden} converged job{'s' if hidden != 1 else ''} not listed.</sub>\n" if hidden else ""
    if not shown:
        return header + footer.lstrip("\n")

    # Room for the notes that may be added when something is cut.
    reserve = 400 + len(artifact) * 2
    budget = max_chars - len(header) - len(footer) - reserve
    table = ["| Address | Action | Reason |\n", "|---|---|---|\n"]
    used = sum(map(len, table))
    rows_cut = 0
    for i, change in enumerate(shown):
        row = _row(change, secrets)
        if used + len(row) > budget:
            rows_cut = len(shown) - i
            break
        table.append(row)
        used += len(row)
    if rows_cut:
        table.append(f"| … | | **{rows_cut} more rows not shown** (comment size limit): see {artifact} |\n")
    out = [header, "".join(table), "\n"]
    used = sum(map(len, out)) + len(footer)

    details_cut = 0
    with_details = [c for c in shown if c.action != WAIT] if not rows_cut else []
    blocks: list[str] = []
    for i, change in enumerate(with_details):
        block = _details(change, secrets)
        if block is None:
            continue
        if used + len(block) > max_chars - reserve:
            details_cut = sum(1 for c in with_details[i:] if c.input_diff)
            break
        blocks.append(block)
        used += len(block)
    if blocks:
        out.append("#### Input changes\n\n")
        out.extend(blocks)
        out.append("\n")
    if details_cut:
        out.append(f"_Input details of {details_cut} more job{'s' if details_cut != 1 else ''} were cut to keep "
                   f"this comment under {max_chars:,} characters: see {artifact}._\n")
    elif rows_cut:
        out.append(f"_Input details are omitted for a plan this large: see {artifact}._\n")
    out.append(footer)
    text = "".join(out)
    if len(text) > max_chars:  # a safety net only: the budget above keeps well clear of it
        note = f"\n\n_Cut at {max_chars:,} characters: see {artifact}._\n"
        text = text[: max_chars - len(note)] + note
    return text


__all__ = ["MARKER", "MAX_CHARS", "render"]
