"""What an apply appended to a batch's output file, kept so the end's ordered rewrite copies those
rows instead of making each one again.

A batch's output file is appended to as items end (`outputfiles.OutputAppender`), and rewritten in
manifest order at the end of the run. Making a row costs a redaction check, sorted copies of its
output and metrics and an encode: about 3% of a 10,000-item apply's CPU went into making every row
a second time for that rewrite. The rows appended in this run are already the bytes the rewrite
would write, as long as nothing they come from changed since. So each `AppendedFile` remembers, for
its open descriptor, the addresses of its lines in file order (a reference per row, not the rows),
where the appended ones begin, and the file's inode, size and time when closed; the rewrite reads the lines back
(`reused_lines`) and makes a row only for an item that has none.

A copied line is only trusted when everything still matches: the file is the one this run wrote
(same inode, size and modification time), the known secrets are the ones every row was scrubbed with, no item ended
twice, and each line starts with its item's key. Anything else raises `Stale` and the caller
writes every row afresh, as before.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from jobrunner.reconcile.outputs import row_line


class Stale(Exception):
    """The file no longer holds what this run wrote: make every row again."""


class AppendedFile:
    """One batch's output file as this run writes it: opened once for appending, every row one
    `write` of a whole line (a killed apply leaves only whole rows)."""

    def __init__(self, path: Path, kept: list[str], secrets: Any) -> None:
        self.path = path
        self.kept = kept  # addresses of the rows written at the start, in manifest order
        self.appended: list[str] = []  # addresses of the rows appended since, in file order
        self.kept_set = set(kept)  # the same two, to look up
        self.appended_set: set[str] = set()
        self.secrets = secrets  # what every row was scrubbed with
        self.reusable = True
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        st = os.fstat(self._fd)
        self.inode, self.kept_end = st.st_ino, st.st_size
        self.size = st.st_size
        self._closed: tuple[int, int, int] | None = None  # (inode, size, mtime) when closed

    def append(self, address: str, data: bytes, secrets: Any) -> None:
        if self._fd is None:  # an item ending after `close` (an interrupted run's last tasks)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self.reusable = False
        if secrets is not self.secrets:
            self.reusable = False
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self.appended.append(address)
        self.appended_set.add(address)
        self.size += len(data)

    def holds(self, address: str) -> bool:
        """Whether the file has the address's row (kept at the start, or appended)."""
        return address in self.kept_set or address in self.appended_set

    def close(self) -> None:
        """Close the file, noting what it is now: the rewrite copies from it only while it still is."""
        if self._fd is None:
            return
        try:
            st = os.fstat(self._fd)
            if st.st_nlink == 0 or (st.st_ino, st.st_size) != (self.inode, self.size):
                self.reusable = False  # removed, or written by someone else meanwhile
            self._closed = _stat_key(st)
        finally:
            os.close(self._fd)
            self._fd = None

    def check(self, secrets: Any) -> None:
        """Raise `Stale` unless the file on disk is still exactly what this run wrote."""
        try:
            st = os.stat(self.path)
        except OSError:
            raise Stale("gone") from None
        if not self.reusable or secrets is not self.secrets or _stat_key(st) != self._closed:
            raise Stale("changed")


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns


class _Cursor:
    """Lines of one region of the file, handed out by address; lines read ahead of the one asked
    for wait in `pending` (items end a little out of order, so it stays small)."""

    def __init__(self, fh: Any, start: int, order: list[str]) -> None:
        fh.seek(start)
        self._lines = iter(fh)
        self._order = iter(order)
        self._pending: dict[str, bytes] = {}

    def take(self, address: str) -> bytes:
        line = self._pending.pop(address, None)
        while line is None:
            at, got = next(self._order, None), next(self._lines, None)
            if at is None or got is None:
                raise Stale("short")
            if at == address:
                line = got
            else:
                self._pending[at] = got
        return line


def key_prefix(key: str) -> bytes:
    """How the row of `key` starts, as `row_line` writes it (the key comes first)."""
    return row_line({"key": key})[:-2].encode("utf-8") + b", "


def reused_lines(appended: AppendedFile, addresses: list[str], keys: list[str],
                 make_line: Callable[[int], str]) -> Iterator[bytes]:
    """The file's lines for `addresses` in that order: copied when this run wrote one for the
    address, else `make_line(index)`. Raises `Stale` when a copied line is not its item's."""
    kept, new = appended.kept_set, appended.appended_set
    with open(appended.path, "rb") as fk, open(appended.path, "rb") as fa:
        kept_lines, new_lines = _Cursor(fk, 0, appended.kept), _Cursor(fa, appended.kept_end, appended.appended)
        for i, address in enumerate(addresses):
            cursor = new_lines if address in new else kept_lines if address in kept else None
            if cursor is None:
                yield make_line(i).encode("utf-8")
                continue
            line = cursor.take(address)
            if not line.startswith(key_prefix(keys[i])) or not line.endswith(b"\n"):
                raise Stale("not its row")
            yield line


__all__ = ["AppendedFile", "Stale", "key_prefix", "reused_lines"]
