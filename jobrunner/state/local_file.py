"""State in a JSON file under the workspace (`.jobrunner/state.json` by default), with a journal.

A save that names the addresses it changed (apply's saves, through `reconcile.statewriter`)
appends one checksummed record of just those addresses to `state.json.journal` and fsyncs it
(jobrunner.state.journal); loading reads the snapshot and replays the journal. Any other save
writes the whole document as a new snapshot and removes the journal (compaction); apply does that
too when the journal outgrows the snapshot, and once at its end. So a save costs what it changed,
and a finished command leaves a plain `state.json` as before.

Snapshot writes never leave a half-written file: the new document goes to a temporary file in the same
directory, is fsynced, and replaces the old one with an atomic rename, after which the directory
is fsynced so the rename itself survives a power cut. Before each write the previous good document
is copied to `state.json.bak` (a copy, never a hard link: see `_keep_backup`). A corrupt
or truncated file is reported with the way back (the backup), never silently replaced by an empty
state, because an empty state would make the next apply create every job again. The way back is
`jobrunner state restore-backup` (jobrunner.commands.state_restore), never a plain copy.

A crash inside a write can leave its temporary file (`.state.json.*.tmp`) behind. The lock holder
sweeps those away, once on taking the lock and once on its first save: with the lock held no other
jobrunner is writing, and a file older than this process and open in no process is nobody's.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import tempfile
import time
import uuid
import zlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobrunner.crashpoints import armed, crash_point
from jobrunner.errors import StateError
from jobrunner.state import loadcache
from jobrunner.state.applied import lost_state_error, note_applied
from jobrunner.state.gcpause import collector_paused, keep_out_of_collections
from jobrunner.state.identity import UNCHECKED, _Unchecked, check_identity
from jobrunner.state.journal import (
    JOURNAL_SUFFIX,
    JournalDamaged,
    header_line,
    record_line,
    scan,
    snapshot_digest,
)
from jobrunner.state.lock import FileLock
from jobrunner.state.model import STATE_FORMAT_VERSION, AddressState, StateDoc
from jobrunner.state.serialize import iter_chunks
from jobrunner.state.textcache import AddressTexts
from jobrunner.timestamps import to_rfc3339, utcnow

BACKUP_SUFFIX = ".bak"
LOCK_SUFFIX = ".lock"
# Temporary files this process may make are all newer than this (it is set when state is imported).
_PROCESS_START = time.time()
# A journal is compacted into a new snapshot once it is larger than the snapshot and than this:
# journal bytes are then at most about twice the state, and each address is rewritten O(1) times
# per change on average.
COMPACT_MIN_BYTES = 4 * 1024 * 1024
# Tests set a smaller floor (even 0) to compact in the middle of a small apply, e.g. the crash suite.
COMPACT_ENV = "JOBRUNNER_TEST_COMPACT_BYTES"


@dataclass(frozen=True)
class Spool:
    """A snapshot serialized into a temporary file beside the state (not fsynced yet): the document
    goes to disk as it is serialized, so a save never holds it whole (about 100 MB at 100,000
    addresses, held while the writer thread wrote it)."""

    path: str
    crc: int  # crc32 and length of its bytes: the snapshot digest a journal header names
    size: int


@dataclass(frozen=True)
class PreparedSave:
    """A serialized document ready to be written (`LocalFileStore.prepare` / `write_prepared`):
    a snapshot in its spool file, or a journal record of the changed addresses."""

    spool: Spool | None
    lineage: str
    serial: int
    record: bytes | None = None
    tracks_jobs: bool = False  # the document holds addresses (see jobrunner.state.applied)
    workspace_id: str | None = None

    @property
    def text(self) -> str:
        """The snapshot's text (tests)."""
        if self.spool is None:
            return ""
        with open(self.spool.path, encoding="utf-8") as fh:
            return fh.read()[:-1]  # without the final newline, as serialize() gives it


class LocalFileStore:
    """A `StateStore` backed by one JSON file; see the module docstring."""

    def __init__(self, path: Path, *, workspace_id: str | None | _Unchecked = UNCHECKED) -> None:
        self.path = Path(path)
        # The workspace config's id, checked against the one the state records on every load
        # (jobrunner.state.identity); UNCHECKED for a store built outside a workspace.
        self.workspace_id = workspace_id
        self.backup_path = self.path.with_name(self.path.name + BACKUP_SUFFIX)
        self._lock = FileLock(self.path.with_name(self.path.name + LOCK_SUFFIX))
        # (inode, size, mtime_ns) of the file last read or written by us: known good, so it can
        # become the backup without being parsed again.
        self._known_good: tuple[int, int, int] | None = None
        self.journal_path = self.path.with_name(self.path.name + JOURNAL_SUFFIX)
        self._swept = False  # stray temporary files removed since this store was made
        self._noted_lineage: str | None = None  # lineage whose applied-marker this store has left
        # The snapshot on disk as last read or written by us: serial, lineage, size and digest
        # (what a journal header names), None before that.
        self._snapshot: tuple[int, str, int, str] | None = None
        # The journal on disk: length of its whole records (0: none, or stale and to be replaced)
        # and its (inode, size) as we last left it (None: not looked at, or absent).
        self._journal_len = 0
        self._journal_key: tuple[int, int] | None = None
        self._journal_seen = False  # the journal was read (or written) by this store: ours to remove
        self._backup_is_snapshot = False  # state.json.bak is a copy of the current snapshot
        # Decided where saves are prepared (apply's event loop): journal bytes planned since the
        # last planned snapshot, None when the next save must be a snapshot.
        self._planned_journal: int | None = None
        self._planned_snapshot_size = 0
        self._compact_min = _compact_min()
        self.journal_records = 0  # records appended by this store (benchmarks, tests)
        self.snapshots = 0  # snapshots written by this store
        self._texts = AddressTexts()  # each address's text as the last save encoded it

    def describe(self) -> str:
        return f"local file {self.path}"

    def __repr__(self) -> str:
        return f"LocalFileStore({str(self.path)!r})"

    @property
    def warnings(self) -> list[str]:
        """Warnings from taking over a stale lock, for the CLI to print."""
        return self._lock.warnings

    # -- reading ---------------------------------------------------------------------------

    def load(self) -> StateDoc:
        with collector_paused():  # see jobrunner.state.gcpause
            doc = self._load()
            # Frozen before the collector is back on: otherwise its first pass walks the whole
            # new document once (0.3 s at 100,000 addresses).
            keep_out_of_collections(len(doc.addresses))
        return doc

    def _load(self) -> StateDoc:
        try:
            with open(self.path, "rb") as fh:
                st = os.fstat(fh.fileno())
                cached = _read_cached(self.path, fh, st.st_size)
                streamed = cached or _read_by_line(fh)
                raw = b"" if streamed is not None else fh.read()
        except FileNotFoundError:
            if self.backup_path.is_file():
                # Saves replace the file atomically, so it never goes missing once written: someone
                # removed it. Read as empty, the next apply would create every job again.
                raise StateError(
                    f"state file {self.path} is missing, but its backup {self.backup_path.name} is there; "
                    "refusing to start from empty state (every tracked job would be created again)",
                    hint="run `jobrunner state restore-backup`: it restores the backup and the next apply looks up "
                         "on the provider every job created since, instead of creating it again. To start from "
                         f"empty state on purpose, move {self.backup_path.name} aside first.",
                ) from None
            if self.journal_path.is_file():
                raise StateError(
                    f"state file {self.path} is missing, but its journal {self.journal_path.name} is there; "
                    "refusing to start from empty state (every tracked job would be created again)",
                    hint=f"put the state file back; to start from empty state on purpose, move "
                         f"{self.journal_path.name} aside first.",
                ) from None
            lost = lost_state_error(self.path, self.backup_path)
            if lost is not None:  # both files gone after this workspace tracked jobs
                raise lost from None
            return self.empty_doc()
        except OSError as exc:
            raise StateError(f"cannot read state file {self.path}: {exc.strerror}") from None
        if streamed is not None:
            head, addresses, size, digest = streamed
            doc = self._parse(head, self.path)
            doc.addresses = addresses
            if cached is None and len(addresses) >= loadcache.MIN_ADDRESSES:
                # Before the journal is replayed on them: the copy is of the snapshot alone.
                loadcache.write_cached(self.path, addresses, int(digest.split(":")[0], 16), size)
        else:  # not in the layout jobrunner writes (or damaged): parse it whole, for the exact error
            doc = self._parse(raw, self.path)
            size, digest = len(raw), snapshot_digest(raw)
        self._known_good = _stat_key(st)
        self._snapshot = (doc.serial, doc.lineage, size, digest)
        self._replay_journal(doc)
        doc.workspace_id = self._checked_identity(doc.workspace_id)
        return doc

    def leave_decoded_copy(self) -> dict[str, AddressState] | None:
        """After this store wrote a big snapshot (an apply; `_LEAVE_COPY_TIMES`), decode it once
        and leave its decoded copy (jobrunner.state.loadcache), so the next command's load reads
        that instead of paying the decoding and the copy's writing itself. Returns the snapshot's
        addresses as every later load builds them (packed outputs and all) when it wrote the copy,
        else None. Changes nothing this store knows; never raises."""
        if not self.snapshots:
            return None
        with collector_paused():
            try:
                with open(self.path, "rb") as fh:
                    size = os.fstat(fh.fileno()).st_size
                    if size < _LEAVE_COPY_TIMES * _CACHED_MIN_BYTES or _read_cached(self.path, fh, size) is not None:
                        return None
                    streamed = _read_by_line(fh)
            except OSError:
                return None
            if streamed is None or len(streamed[1]) < loadcache.MIN_ADDRESSES:
                return None
            _, addresses, size, digest = streamed
            loadcache.write_cached(self.path, addresses, int(digest.split(":")[0], 16), size)
            return addresses

    def empty_doc(self) -> StateDoc:
        """A fresh, empty state of a new lineage (what a workspace that never applied starts from)."""
        doc = StateDoc(format_version=STATE_FORMAT_VERSION, serial=0, lineage=str(uuid.uuid4()))
        doc.workspace_id = self._checked_identity(None)
        self._planned_journal = None
        return doc

    def _replay_journal(self, doc: StateDoc) -> None:
        """Apply the journal's records to the snapshot just read (see jobrunner.state.journal)."""
        assert self._snapshot is not None
        try:
            raw = self.journal_path.read_bytes()
            st = os.stat(self.journal_path)
        except FileNotFoundError:
            self._journal_len, self._journal_key, self._journal_seen = 0, None, True
            self._planned_journal = 0
            return
        except OSError as exc:
            raise StateError(f"cannot read state journal {self.journal_path}: {exc.strerror}") from None
        try:
            found = scan(raw, lineage=doc.lineage, serial=doc.serial, digest=self._snapshot[3])
            for record in found.records:
                _apply_record(doc, record)
        except JournalDamaged as exc:
            raise StateError(
                f"state journal {self.journal_path} is damaged at {exc}: a save that was acknowledged "
                "cannot be read back",
                hint="run `jobrunner state restore-backup --force`: it restores the last snapshot and keeps the "
                     "damaged files beside it; the next `jobrunner apply` looks up on the provider every job "
                     "created since, instead of creating it again",
            ) from None
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise StateError(f"state journal {self.journal_path} has an invalid entry ({exc})",
                             hint="run `jobrunner state restore-backup --force`") from None
        self._journal_len = 0 if found.stale else found.good_length
        self._journal_key = (st.st_ino, st.st_size)
        self._journal_seen = True
        self._planned_journal = self._journal_len
        self._planned_snapshot_size = self._snapshot[2]

    def _checked_identity(self, recorded: str | None) -> str | None:
        return check_identity(
            recorded, self.workspace_id, f"state file {self.path}",
            separate_hint="point `state.path` in jobrunner.yaml (or JOBRUNNER_STATE_URL) at a state file of "
            "its own; a state file copied from another checkout must not be used",
        )

    def _parse(self, raw: bytes, where: Path) -> StateDoc:
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            what = "is empty" if not raw.strip() else f"is corrupt or truncated ({_short_reason(exc)})"
            raise self._corrupt(f"state file {where} {what}") from None
        if not isinstance(data, dict) or "format_version" not in data:
            raise self._corrupt(f"state file {where} is not a jobrunner state document")
        version = data.get("format_version")
        if not isinstance(version, int) or version < 1:
            raise self._corrupt(f"state file {where} has an invalid format_version {version!r}")
        if version > STATE_FORMAT_VERSION:
            raise StateError(
                f"state file {where} has format version {version}, newer than this jobrunner understands "
                f"(up to {STATE_FORMAT_VERSION})",
                hint="a newer jobrunner wrote it; upgrade jobrunner (pip install -U jobrunner) to use this workspace",
            )
        try:
            return StateDoc.from_json(data)
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise self._corrupt(f"state file {where} has an invalid entry ({exc})") from None

    def _corrupt(self, message: str) -> StateError:
        backup = self._backup_summary()
        if backup:
            # Not `cp`: jobs created after the backup was taken are not in it, and only a restore
            # that marks the state recovered makes the next apply look them up instead of creating
            # them again (jobrunner.state.recovery).
            hint = (
                f"restore the last good copy ({backup}) with `jobrunner state restore-backup`, then run "
                "`jobrunner apply`: jobs created since the backup are looked up on the provider and "
                "adopted, not created again (the command keeps the damaged file beside the restored one)"
            )
        else:
            hint = (
                f"no usable backup ({self.backup_path}); fix the file by hand, or move it (and any backup) "
                "aside and run `jobrunner state recover`: it looks every address up on its provider and "
                "records the jobs it finds, so none is created again"
            )
        return StateError(message, hint=hint)

    def _backup_summary(self) -> str | None:
        try:
            data = json.loads(self.backup_path.read_text(encoding="utf-8"))
            return f"serial {int(data['serial'])}, {len(data.get('addresses', {}))} addresses"
        except Exception:  # missing or also broken: no usable backup
            return None

    # -- writing ---------------------------------------------------------------------------

    def save(self, doc: StateDoc, changed: Collection[str] | None = None) -> None:
        """Write `doc` (serial bumped). `changed`: the only addresses changed since the last save,
        appended to the journal; None writes the whole document as a new snapshot."""
        prepared = self.prepare(doc, changed)
        try:
            self.write_prepared(prepared)
        except StateError:
            doc.serial -= 1
            raise

    def prepare(self, doc: StateDoc, changed: Collection[str] | None = None) -> PreparedSave:
        """The CPU half of `save`: bump the serial and serialize, where the document lives.

        Together with `write_prepared` it lets the apply engine serialize on its event loop (the
        document is never seen mid-change) and do the disk I/O in a worker thread. Only the
        `changed` addresses are serialized, unless a snapshot is due (none yet, the lineage
        changed, or the journal outgrew the snapshot).
        """
        if not doc.lineage:
            doc.lineage = str(uuid.uuid4())
        doc.serial += 1
        self._texts.begin(doc, changed)
        try:
            if changed is not None and self._journal_due(doc):
                record = _record(doc, changed, self._texts)
                assert self._planned_journal is not None
                self._planned_journal += len(record)
                return PreparedSave(spool=None, lineage=doc.lineage, serial=doc.serial, record=record,
                                    tracks_jobs=bool(doc.addresses), workspace_id=doc.workspace_id)
            spool = self._spool(doc)
        except (TypeError, ValueError) as exc:
            doc.serial -= 1
            raise StateError(f"cannot write state: a value is not JSON ({exc})") from None
        except OSError as exc:
            doc.serial -= 1
            raise StateError(f"cannot write state file {self.path}: {exc.strerror or exc}",
                             hint="check free disk space and permissions of the .jobrunner directory") from None
        self._planned_journal, self._planned_snapshot_size = 0, spool.size
        return PreparedSave(spool=spool, lineage=doc.lineage, serial=doc.serial, tracks_jobs=bool(doc.addresses),
                            workspace_id=doc.workspace_id)

    def _spool(self, doc: StateDoc) -> Spool:
        """Serialize `doc` into a new temporary file beside the state, a piece at a time (not fsynced:
        `_write_snapshot` does that once the backup is kept). Removed again if serializing fails."""
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                crc, size = _write_chunks(fh, itertools.chain(iter_chunks(doc, self._texts.text), ["\n"]))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return Spool(tmp, crc, size)

    def _journal_due(self, doc: StateDoc) -> bool:
        planned = self._planned_journal
        if planned is None or self._snapshot is None or self._snapshot[1] != doc.lineage:
            return False
        return planned <= max(self._compact_min, self._planned_snapshot_size)

    def write_prepared(self, prepared: PreparedSave) -> None:
        """The I/O half of `save`: a journal append, or a snapshot write. Touches no document.

        Calls must not overlap (the apply engine runs them one at a time, in order).
        """
        try:
            if prepared.record is not None:
                self._append(prepared)
            else:
                self._write_snapshot(prepared)
            if prepared.tracks_jobs and self._noted_lineage != prepared.lineage:
                note_applied(self.path, prepared.lineage, prepared.workspace_id, to_rfc3339(utcnow()))
                self._noted_lineage = prepared.lineage
        except OSError as exc:
            raise StateError(
                f"cannot write state file {self.path}: {exc.strerror or exc}",
                hint="check free disk space and permissions of the .jobrunner directory",
            ) from None

    # -- the journal -------------------------------------------------------------------------

    def _append(self, prepared: PreparedSave) -> None:
        """Append one record (fsynced before returning), starting a journal on the snapshot if
        there is none; see jobrunner.state.journal."""
        assert prepared.record is not None and self._snapshot is not None
        self._check_unchanged(prepared)
        data = prepared.record
        fresh = self._journal_len == 0
        if fresh:
            # The journal starts: the snapshot it extends becomes the last good copy.
            self._backup_snapshot()
            serial, lineage, _, digest = self._snapshot
            data = header_line(lineage, serial, digest) + data
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if fresh else 0)
        fd = os.open(self.journal_path, flags, 0o600)
        try:
            if not fresh and os.fstat(fd).st_size != self._journal_len:
                os.ftruncate(fd, self._journal_len)  # a torn last record, dropped on load
            os.lseek(fd, self._journal_len, os.SEEK_SET)
            if armed("journal.partial"):  # crash tests: leave a torn last record behind
                _write_all(fd, data[: len(data) - len(prepared.record) // 2])
                os.fsync(fd)
                crash_point("journal.partial")
                os.ftruncate(fd, self._journal_len)  # not this time: write the whole record instead
                os.lseek(fd, self._journal_len, os.SEEK_SET)
            _write_all(fd, data)
            os.fsync(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if fresh:
            _fsync_dir(self.path.parent)  # the new journal's directory entry
        crash_point("journal.appended")
        self._journal_len += len(data)
        self._journal_key = (st.st_ino, st.st_size)
        self._journal_seen = True
        self.journal_records += 1

    def _check_unchanged(self, prepared: PreparedSave) -> None:
        """Refuse to append when another process wrote the snapshot or the journal since we did."""
        try:
            snap = _stat_key(os.stat(self.path))
        except FileNotFoundError:
            snap = None
        try:
            jst = os.stat(self.journal_path)
            journal: tuple[int, int] | None = (jst.st_ino, jst.st_size)
        except FileNotFoundError:
            journal = None
        ours = self._journal_key if self._journal_len else None
        if snap != self._known_good or (self._journal_len and journal != ours):
            raise StateError(
                f"state file {self.path} (or its journal) was written by another process since this one read "
                f"it; not writing serial {prepared.serial}",
                hint="run the command again; state-writing commands take the state lock to avoid this",
            )

    def _backup_snapshot(self) -> None:
        if self._backup_is_snapshot:
            return
        with open(self.path, "rb") as src:  # streamed: a big snapshot is never held whole
            _atomic_copy(src, self.backup_path)
        self._backup_is_snapshot = True

    def _retire_journal(self) -> None:
        """After a new snapshot: remove the journal it includes. A journal this store never read
        (e.g. beside a snapshot restored from its backup) is kept aside, never deleted unread."""
        try:
            if self._journal_seen:
                crash_point("state.compacted")
                os.unlink(self.journal_path)
            else:
                os.replace(self.journal_path, self.journal_path.with_name(
                    f"{self.journal_path.name}.old-{time.strftime('%Y%m%dT%H%M%S')}"))
        except FileNotFoundError:
            pass
        else:
            _fsync_dir(self.path.parent)
        self._journal_len, self._journal_key, self._journal_seen = 0, None, True

    # -- snapshots ---------------------------------------------------------------------------

    def _write_snapshot(self, prepared: PreparedSave) -> None:
        """Backup, fsync the spooled temporary file, rename, fsync the directory; then retire the journal."""
        spool = prepared.spool
        assert spool is not None
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            if self._backup_is_snapshot and _stat_key_or_none(self.path) == self._known_good:
                pass  # the backup already is a copy of the snapshot being replaced
            else:
                self._keep_backup(prepared)
        except BaseException:  # refused (another writer) or failed: the spool is never renamed
            with contextlib.suppress(OSError):
                os.unlink(spool.path)
            raise
        crash_point("state.backup_kept")
        tmp, crc, size = spool.path, spool.crc, spool.size
        try:
            with open(tmp, "rb+") as fh:
                if armed("state.tmp_partial"):  # crash tests: leave a torn temporary file behind
                    _torn_for_crash_test(fh, size)
                os.fsync(fh.fileno())
            crash_point("state.tmp_written")
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        crash_point("state.renamed")
        _fsync_dir(directory)
        self._known_good = _stat_key(os.stat(self.path))
        self._snapshot = (prepared.serial, prepared.lineage, size, f"{crc:08x}:{size}")
        self._backup_is_snapshot = False
        self.snapshots += 1
        self._retire_journal()
        if not self._swept:
            self.sweep_temporary_files()

    def _keep_backup(self, doc: StateDoc | PreparedSave) -> None:
        """Copy the current file (if it is good) to the backup, atomically.

        A copy, never a hard link: with a link, a write that fails or is killed after keeping the
        backup leaves `state.json` and `state.json.bak` as one inode, and any later in-place damage
        to the state file destroys the backup with it. The copy goes to a temporary file that is
        fsynced and renamed over the backup, so the backup is always a whole document too.

        A file changed since this store last read or wrote it is parsed first: only a good document
        may become the backup, and one with the same lineage and a serial at least as new as the
        one being written means another process wrote state meanwhile: refuse to overwrite it.
        """
        try:
            raw = self.path.read_bytes()
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        if _stat_key(st) != self._known_good:
            try:
                on_disk = self._parse(raw, self.path)
            except StateError:
                return
            if on_disk.lineage == doc.lineage and on_disk.serial >= doc.serial:
                raise StateError(
                    f"state file {self.path} was written by another process (serial {on_disk.serial}) "
                    f"since this one read it; not overwriting it with serial {doc.serial}",
                    hint="run the command again; state-writing commands take the state lock to avoid this",
                )
        _atomic_copy(raw, self.backup_path)

    # -- locking ---------------------------------------------------------------------------

    def lock(self, command: str) -> contextlib.AbstractContextManager[None]:
        return self._held(command)

    @contextlib.contextmanager
    def _held(self, command: str) -> Any:
        with self._lock.held(command):
            self.sweep_temporary_files()
            yield

    def sweep_temporary_files(self) -> list[Path]:
        """Remove temporary files that crashed writes left beside the state; returns those removed.

        Only files older than this process and open in no process are removed (see the module
        docstring); failing to remove one is harmless, as they are never read.
        """
        self._swept = True
        try:
            candidates = [p for p in self.path.parent.glob(f".{self.path.name}.*.tmp")
                          if _older_than_process(p)]
        except OSError:
            return []
        if not candidates:
            return []
        held = _open_files()
        removed = []
        for path in candidates:
            if held is not None and _file_key(path) in held:
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
        return removed

    def unlock(self, force: bool) -> str:
        """Free a lock left behind; returns a sentence saying what was done, for the CLI."""
        return self._lock.force_release(force)

    def lock_holder(self) -> Any:
        """Who holds (or last held) the lock, as a `LockInfo`, or None."""
        return self._lock.holder()

    @property
    def lock_path(self) -> Path:
        return self._lock.path


def _record(doc: StateDoc, changed: Collection[str], texts: AddressTexts) -> bytes:
    """The journal record bringing the snapshot-plus-journal to `doc`, for `changed` addresses
    (encoded through `texts`, which keeps them for the next compacting snapshot)."""
    addresses = doc.addresses
    present = {a: texts.text(a, addresses[a]) for a in changed if a in addresses}
    deleted = [a for a in changed if a not in doc.addresses]
    head = {"workspace_id": doc.workspace_id, "recovered_at": doc.recovered_at}
    return record_line(doc.serial, head, present, deleted)


def _apply_record(doc: StateDoc, record: dict[str, Any]) -> None:
    doc.serial = record["serial"]
    head = record.get("head") or {}
    if head.get("workspace_id") is not None:  # a recorded workspace id is never dropped
        doc.workspace_id = head["workspace_id"]
    doc.recovered_at = head.get("recovered_at")
    for address, data in record["set"].items():
        doc.addresses[address] = AddressState.from_json(data, pack=True)
    for address in record["del"]:
        doc.addresses.pop(address, None)


def read_state_json(path: Path) -> dict[str, Any]:
    """The state at `path` as JSON, its journal replayed: what `load` sees, for tools and tests
    that look at the document itself (raises StateError like `load`)."""
    return LocalFileStore(path).load().to_json()


_ADDRESSES_OPEN = b',"addresses":{\n'


_Streamed = tuple[bytes, dict[str, AddressState], int, str]


def _read_by_line(fh: Any) -> _Streamed | None:
    """Read a snapshot in the layout jobrunner writes (the head, then one address per line) a
    block of lines at a time: (the head as a JSON document without addresses, the addresses, size,
    digest).

    At 100,000 addresses this holds one block at a time instead of the whole file, its text and
    its parsed tree at once (455 MB -> 282 MB peak). A block of lines is decoded by one `json.loads`
    (as one object), so the keys every address repeats are one string each within it and the
    decoder's per-call work is paid once per block, not once per line (about half the CPU of
    decoding line by line). None when the file is not in that layout or anything in it does not
    parse: the caller then parses it whole, which names the problem.

    Blocks are cut after the last `,` + newline of each read: those two bytes end a member (a JSON
    string holds no raw newline), so a block is a run of whole members of some object. When that
    object is not the addresses (a member written over several lines), the block does not decode,
    and the whole parse takes over; a block that decodes is read exactly as the whole parse reads it.
    """
    first = fh.readline()
    if not first.endswith(_ADDRESSES_OPEN):
        return _rewind(fh)
    crc, size = zlib.crc32(first), len(first)
    addresses: dict[str, AddressState] = {}
    rest = bytearray()  # read, not decoded yet: the members after the last cut
    try:
        while chunk := fh.read(_BLOCK_BYTES):
            crc, size = zlib.crc32(chunk, crc), size + len(chunk)
            rest += chunk
            cut = rest.rfind(b",\n")
            if cut >= 0:
                _decode_block(rest[:cut], addresses)
                del rest[:cut + 2]
        if not rest.endswith(b"}}\n"):
            return _rewind(fh)
        last = rest[:-3].rstrip(b"\n")
        if last:
            _decode_block(last, addresses)
        elif addresses or size != len(first) + len(rest):  # `,` then the end: not JSON
            return _rewind(fh)
    except (UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError):
        return _rewind(fh)
    head = first[: -len(_ADDRESSES_OPEN)] + b',"addresses":{}}'
    return head, addresses, size, f"{crc:08x}:{size}"


def _read_cached(path: Path, fh: Any, size: int) -> _Streamed | None:
    """`_read_by_line`'s result from the snapshot's decoded copy (jobrunner.state.loadcache), when
    there is one of these very bytes; None otherwise (`fh` back at its start)."""
    if size < _CACHED_MIN_BYTES:
        return None
    first = fh.readline()
    fh.seek(0)
    if not first.endswith(_ADDRESSES_OPEN):
        return None
    found = loadcache.read_cached(path, fh, size)
    if found is None:
        return None
    addresses, crc = found
    head = first[: -len(_ADDRESSES_OPEN)] + b',"addresses":{}}'
    return head, addresses, size, f"{crc:08x}:{size}"


# Below this a snapshot is decoded quickly enough: no decoded copy is looked for.
_CACHED_MIN_BYTES = 1 << 22
# An apply leaves a decoded copy (`leave_decoded_copy`) only of a snapshot this many times
# `_CACHED_MIN_BYTES` (32 MB, some 30,000 addresses): leaving it means decoding the snapshot again
# after the run, while whoever ran the apply waits. A smaller one (10,000 addresses: 10 MB, a
# quarter of a second) is decoded by the next load, which leaves the copy then, as any load of a
# snapshot of MIN_ADDRESSES does.
_LEAVE_COPY_TIMES = 8


# About 1 MiB of address lines per `json.loads` (some 1,000 addresses).
_BLOCK_BYTES = 1 << 20


def _decode_block(members: bytes | bytearray, addresses: dict[str, AddressState]) -> None:
    """Decode `"address": {...}` members (comma-separated) as one JSON object into `addresses`
    (in file order; raises ValueError when they are not that)."""
    decoded = json.loads(b"{" + members + b"}")
    from_json = AddressState.from_json
    for address, data in decoded.items():
        st = from_json(data, share_keys=False, pack=True)
        if st.address == address:
            st.address = address  # one string for the key and the field (80 bytes an address)
        addresses[address] = st


def _rewind(fh: Any) -> _Streamed | None:
    """Back to the start, for a whole read; None (the file is not read line by line)."""
    fh.seek(0)
    return None


def _compact_min() -> int:
    try:
        return max(0, int(os.environ[COMPACT_ENV]))
    except (KeyError, ValueError):
        return COMPACT_MIN_BYTES


def _atomic_copy(raw: bytes | Any, target: Path) -> None:
    """Write `raw` (bytes, or a binary file to copy) to `target` through an fsynced temporary file
    and a rename (never torn)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            if isinstance(raw, bytes):
                fh.write(raw)
            else:
                shutil.copyfileobj(raw, fh, 1 << 20)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _torn_for_crash_test(fh: Any, size: int) -> None:
    """Crash tests (`state.tmp_partial`): cut the spooled file to half, fsynced, and crash there;
    when this hit is not the one to crash at, put the rest back."""
    fh.seek(0)
    whole = fh.read()
    fh.seek(size // 2)
    fh.truncate()
    fh.flush()
    os.fsync(fh.fileno())
    crash_point("state.tmp_partial")
    fh.seek(0)
    fh.write(whole)
    fh.flush()


def _write_chunks(fh: Any, chunks: Iterable[str]) -> tuple[int, int]:
    """Write `chunks` encoded, in batches of about 1 MiB; (crc32, length) of what was written,
    the same as `journal.snapshot_digest` of the whole file."""
    crc, size = 0, 0
    batch: list[str] = []
    pending = 0

    def flush() -> None:
        nonlocal crc, size, batch, pending
        data = "".join(batch).encode("utf-8")
        fh.write(data)
        crc, size = zlib.crc32(data, crc), size + len(data)
        batch, pending = [], 0

    for chunk in chunks:
        batch.append(chunk)
        pending += len(chunk)
        if pending >= 1 << 20:
            flush()
    flush()
    return crc, size


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _stat_key_or_none(path: Path) -> tuple[int, int, int] | None:
    try:
        return _stat_key(os.stat(path))
    except FileNotFoundError:
        return None


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _older_than_process(path: Path) -> bool:
    try:
        return os.stat(path).st_mtime < _PROCESS_START
    except OSError:
        return False


def _file_key(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _open_files() -> set[tuple[int, int]] | None:
    """(device, inode) of every file any visible process holds open, from /proc; None without it.

    Only read when stray temporary files exist, which is after a crash, so its cost is rare.
    """
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return None
    held: set[tuple[int, int]] = set()
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            fds = list((pid_dir / "fd").iterdir())
        except OSError:  # gone, or not ours to look at
            continue
        for fd in fds:
            try:
                st = os.stat(fd)
            except OSError:
                continue
            held.add((st.st_dev, st.st_ino))
    return held


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


def _short_reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg}: line {exc.lineno} column {exc.colno}"  # msg may end in "at"
    return str(exc)


__all__ = ["LocalFileStore", "PreparedSave", "BACKUP_SUFFIX", "LOCK_SUFFIX", "read_state_json"]
