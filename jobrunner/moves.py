"""Declared renames: the `moved:` list of jobrunner.yaml, checked, resolved against state, applied.

Renaming a batch, or giving its rows `key`s, changes job addresses. Without a word from the user,
the plan can only see an address that disappeared (cancel the running job) and a new one (create it
again): paid work lost and redone. A `moved:` entry says "this is the same job":

    moved:
      - {from: PredictionBatch/old, to: PredictionBatch/new}          # every item of the batch
      - {from: PredictionBatch/eval[3f2a9c1b0d4e], to: PredictionBatch/eval[moon]}   # one item
      - {from: Training/poems, to: Training/poems-v2}

The list lives in jobrunner.yaml (one place per workspace, like Terraform's `moved` blocks living
beside the configuration), so a manifest can be renamed, split or merged freely.

Three stages, all pure apart from `read_moves` (which reads jobrunner.yaml):

- `check_moves`: every entry on its own and against the manifests (file:line diagnostics): known
  kinds, same kind on both sides, no chains or cycles, two entries never onto one address, `from`
  no longer defined, an item `to` that names an item its batch has;
- `resolve_moves`: the item-level moves that state calls for now (`from` recorded, `to` not); a move
  onto an address state already holds is a PlanError; a move already made is simply done;
- `apply_moves`: re-key the state document in memory. The plan is then computed as usual at the
  new addresses (the fingerprint is compared there), and apply saves the moves with its first save.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobrunner.errors import ConfigError, Diagnostic, PlanError
from jobrunner.resources import Position, Resource, resource_of
from jobrunner.state.model import StateDoc

CONFIG_FILE = "jobrunner.yaml"
MOVABLE_KINDS = ("Training", "PredictionBatch")
# Kind/name or Kind/name[key]; names are DNS labels, keys anything but brackets.
_ADDRESS_RE = re.compile(r"(?P<kind>[A-Za-z]+)/(?P<name>[^\s/\[\]]+)(?:\[(?P<key>[^\[\]]+)\])?\Z")


@dataclass(frozen=True)
class Move:
    """One `moved:` entry, with where it was written."""

    source: str  # from
    target: str  # to
    file: str
    line: int
    column: int
    index: int  # position in the list, for $.moved[i]

    @property
    def json_path(self) -> str:
        return f"$.moved[{self.index}]"

    @property
    def is_item(self) -> bool:
        return "[" in self.source


def _diag(move_or_file: Any, message: str, json_path: str = "$.moved", pos: Position | None = None) -> Diagnostic:
    if isinstance(move_or_file, Move):
        m = move_or_file
        return Diagnostic("error", m.file, m.line, m.column, message, None, m.json_path)
    line, col = (pos.line, pos.column) if pos else (1, 1)
    return Diagnostic("error", str(move_or_file), line, col, message, None, json_path)


# --- reading -------------------------------------------------------------------------------------


def moves_from_config(data: Any, positions: Mapping[str, Position], file: str = CONFIG_FILE
                      ) -> tuple[list[Move], list[Diagnostic]]:
    """The `moved` list of a parsed jobrunner.yaml (data + positions by JSON path), and its shape errors."""
    if not isinstance(data, dict) or data.get("moved") is None:
        return [], []
    raw = data["moved"]

    def at(path: str) -> Position:
        return positions.get(path) or positions.get("$.moved") or Position(1, 1)

    if not isinstance(raw, list):
        return [], [_diag(file, "`moved` must be a list of {from: ADDRESS, to: ADDRESS}", "$.moved", at("$.moved"))]
    moves: list[Move] = []
    diags: list[Diagnostic] = []
    for i, entry in enumerate(raw):
        path = f"$.moved[{i}]"
        pos = at(path)
        if not isinstance(entry, dict) or set(entry) != {"from", "to"}:
            extra = sorted(set(entry) - {"from", "to"}) if isinstance(entry, dict) else []
            why = f" (unknown key {', '.join(map(str, extra))})" if extra else ""
            diags.append(_diag(file, f"each moved entry is a mapping with exactly `from` and `to`{why}, "
                                     "e.g. {from: PredictionBatch/old, to: PredictionBatch/new}", path, pos))
            continue
        if not all(isinstance(entry[k], str) and entry[k] for k in ("from", "to")):
            diags.append(_diag(file, "`from` and `to` must be addresses such as PredictionBatch/name or "
                                     "PredictionBatch/name[key]", path, pos))
            continue
        moves.append(Move(entry["from"].strip(), entry["to"].strip(), file, pos.line, pos.column, i))
    return moves, diags


def read_moves(root: Path) -> tuple[list[Move], list[Diagnostic]]:
    """The `moved` list of `<root>/jobrunner.yaml` (none when the file does not exist)."""
    from jobrunner.loader import decode, load_text

    path = root / CONFIG_FILE
    if not path.is_file():
        return [], []
    try:
        text, bad = decode(path.read_bytes(), CONFIG_FILE)
    except OSError as exc:
        raise ConfigError(f"{CONFIG_FILE}: cannot read: {exc.strerror}") from None
    if bad is not None:
        return [], [bad]
    loaded = load_text(text or "", CONFIG_FILE)
    if loaded.diagnostics or not loaded.documents:
        return [], list(loaded.diagnostics)  # load_config reports these too
    doc = loaded.documents[0]
    return moves_from_config(doc.data, doc.positions, CONFIG_FILE)


# --- checking ------------------------------------------------------------------------------------


def _address_problem(address: str) -> str | None:
    m = _ADDRESS_RE.match(address)
    if not m:
        return f"{address!r} is not an address (Kind/name or PredictionBatch/name[key])"
    kind = m.group("kind")
    if kind == "Model":
        return ("Model addresses are not moved: a renamed Model resource finds its model on the provider "
                "(owner/name) and adopts it")
    if kind not in MOVABLE_KINDS:
        return f"unknown kind {kind!r} in {address}; moved entries name Training or PredictionBatch addresses"
    if m.group("key") is not None and kind != "PredictionBatch":
        return f"{address}: only PredictionBatch addresses have [key] items"
    return None


def check_moves(moves: list[Move], resources: Iterable[Resource] | None = None,
                item_keys: Mapping[str, Iterable[str]] | None = None) -> list[Diagnostic]:
    """Problems with the moved list, each at its entry's file:line.

    `resources` (the manifests read) and `item_keys` (batch address -> its item keys) enable the
    checks against the manifests; a batch not read (planning a subset of the files) is not judged.
    """
    diags: list[Diagnostic] = []
    good: list[Move] = []
    for m in moves:
        problem = _address_problem(m.source) or _address_problem(m.target)
        if problem is None and m.source == m.target:
            problem = f"moves {m.source} onto itself"
        if problem is None and m.source.split("/", 1)[0] != m.target.split("/", 1)[0]:
            kinds = (m.source.split("/", 1)[0], m.target.split("/", 1)[0])
            problem = f"cannot move a {kinds[0]} to a {kinds[1]} ({m.source} -> {m.target})"
        if problem is None and m.is_item != ("[" in m.target):
            problem = ("a whole batch moves to a whole batch and an item to an item "
                       f"({m.source} -> {m.target})")
        if problem is not None:
            diags.append(_diag(m, problem))
        else:
            good.append(m)
    diags.extend(_conflicts(good))
    if resources is not None:
        diags.extend(_against_manifests(good, list(resources), item_keys or {}))
    return diags


def _covers(a: str, b: str) -> bool:
    """True when address `a` is `b` or the batch that holds item `b` (or the other way round)."""
    return a == b or resource_of(a) == b or resource_of(b) == a


def _conflicts(moves: list[Move]) -> list[Diagnostic]:
    diags = []
    for i, m in enumerate(moves):
        for earlier in moves[:i]:
            if _covers(m.target, earlier.target):
                diags.append(_diag(m, f"{m.source} and {earlier.source} would both move onto {m.target} "
                                      f"(line {earlier.line}); an address holds one job"))
            elif _covers(m.source, earlier.source):
                diags.append(_diag(m, f"{m.source} is already moved by the entry at line {earlier.line}"))
        for other in moves:
            if other is not m and _covers(m.target, other.source):
                kind = "cycle" if _covers(other.target, m.source) else "chain"
                diags.append(_diag(m, f"{kind}: {m.source} -> {m.target} -> {other.target} (line {other.line}); "
                                      f"write one entry per old address straight to its final address"))
                break
    return diags


def _against_manifests(moves: list[Move], resources: list[Resource],
                       item_keys: Mapping[str, Iterable[str]]) -> list[Diagnostic]:
    by_addr = {r.address: r for r in resources}
    keys = {res: set(ks) for res, ks in item_keys.items()}
    diags = []
    for m in moves:
        src_res = by_addr.get(resource_of(m.source))
        if src_res is not None and (not m.is_item or m.source.split("[", 1)[1][:-1] in keys.get(src_res.address, ())):
            diags.append(_diag(m, f"{m.source} is still defined ({src_res.file}:{src_res.line}); `from` names the old "
                                  "address, which no manifest defines any more"))
        dst_res = by_addr.get(resource_of(m.target))
        if m.is_item and dst_res is not None and dst_res.address in keys:
            key = m.target.split("[", 1)[1][:-1]
            if key not in keys[dst_res.address]:
                diags.append(_diag(m, f"{dst_res.address} ({dst_res.file}:{dst_res.line}) has no item with key "
                                      f"{key!r}; `to` names the item's new address"))
    return diags


# --- resolving against state ----------------------------------------------------------------------


def resolve_moves(moves: list[Move], state: StateDoc, defined: Mapping[str, str],
                  planned_files: set[str]) -> dict[str, str]:
    """{old address: new address} for the records this plan moves (pure).

    `defined`: resource address -> manifest file of every resource this plan read. A move whose
    `from` has no record is done already (or never ran): nothing to do. A move onto an address that
    state already holds is an error: two jobs cannot share one address. A move whose `to` this plan
    did not read is an error when the old record's file was planned (otherwise its job would be
    canceled as removed), and is left for a later plan when it was not.
    """
    out: dict[str, str] = {}
    errors: list[str] = []
    for m in moves:
        if m.is_item:
            pairs = [(m.source, m.target)] if m.source in state.addresses else []
        else:
            prefix = m.source + "["
            pairs = [(a, m.target + a[len(m.source):]) for a in sorted(state.addresses)
                     if a == m.source or a.startswith(prefix)]
        if not pairs:
            continue
        if resource_of(m.target) not in defined:
            if any(state.addresses[a].file in planned_files for a, _ in pairs):
                errors.append(f"{m.file}:{m.line}: moved {m.source} -> {m.target}: {resource_of(m.target)} is not "
                              "defined in the manifests this plan read")
            continue
        taken = [new for _, new in pairs if new in state.addresses]
        if taken:
            errors.append(f"{m.file}:{m.line}: moved {m.source} -> {m.target}: state already holds "
                          f"{', '.join(taken[:3])}{' …' if len(taken) > 3 else ''}")
            continue
        out.update(pairs)
    if errors:
        raise PlanError(
            "the moved list of jobrunner.yaml cannot be applied:\n" + "\n".join(f"  {e}" for e in errors),
            hint="fix the moved entries (`jobrunner state list` shows the recorded addresses); nothing was sent",
        )
    return out


def apply_moves(state: StateDoc, moves: Mapping[str, str], files: Mapping[str, str]) -> None:
    """Re-key `state` in memory: each old address's whole record (remote ids, history, fingerprint,
    outputs, intent) now lives at its new address, defined by the manifest file `files[resource]`."""
    for old, new in moves.items():
        st = state.addresses.pop(old)
        st.address = new
        st.file = files.get(resource_of(new), st.file)
        state.addresses[new] = st


__all__ = ["Move", "MOVABLE_KINDS", "apply_moves", "check_moves", "moves_from_config", "read_moves",
           "resolve_moves"]
