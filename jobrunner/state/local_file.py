"""State in a JSON file under the workspace (`.jobrunner/state.json` by default).

Writes never leave a half-written file: the new document goes to a temporary file in the same
directory, is fsynced, and replaces the old one with an atomic rename, after which the directory
is fsynced so the rename itself survives a power cut. Before each write the previous good document
is copied to `state.json.bak` (a copy, never a hard link: see `_keep_backup`). A corrupt
or truncated file is reported with the way back (the backup), never silently replaced by an empty
state, because an empty state would make the next apply create every job again. The way back is
`jobrunner state restore-backup` (jobrunner.commands.state_restore), never a plain copy. A state
file lost together with its backup is noticed through a marker kept outside the workspace
(jobrunner.state.applied), and the way back is `jobrunner state recover`.

A crash inside a write can leave its temporary file (`.state.json.*.tmp`) behind. The lock holder
sweeps those away, once on taking the lock and once on its first save: with the lock held no other
jobrunner is writing, and a file older than this process and open in no process is nobody's.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobrunner.crashpoints import armed, crash_point
from jobrunner.errors import StateError
from jobrunner.state.applied import lost_state_error, note_applied
from jobrunner.state.identity import UNCHECKED, _Unchecked, check_identity
from jobrunner.state.lock import FileLock
from jobrunner.state.model import STATE_FORMAT_VERSION, StateDoc
from jobrunner.state.serialize import IncrementalSerializer
from jobrunner.timestamps import to_rfc3339, utcnow

BACKUP_SUFFIX = ".bak"
LOCK_SUFFIX = ".lock"
# Temporary files this process may make are all newer than this (it is set when state is imported).
_PROCESS_START = time.time()


@dataclass(frozen=True)
class PreparedSave:
    """A serialized document ready to be written (`LocalFileStore.prepare` / `write_prepared`)."""

    text: str
    lineage: str
    serial: int
    tracks_jobs: bool = False  # the document holds addresses (see jobrunner.state.applied)
    workspace_id: str | None = None


class LocalFileStore:
    """A `StateStore` backed by one JSON file; see the module docstring."""

    def __init__(self, path: Path, *, workspace_id: "str | None | _Unchecked" = UNCHECKED) -> None:
        self.path = Path(path)
        # The workspace config's id, checked against the one the state records on every load
        # (jobrunner.state.identity); UNCHECKED for a store built outside a workspace.
        self.workspace_id = workspace_id
        self.backup_path = self.path.with_name(self.path.name + BACKUP_SUFFIX)
        self._lock = FileLock(self.path.with_name(self.path.name + LOCK_SUFFIX))
        # (inode, size, mtime_ns) of the file last read or written by us: known good, so it can
        # become the backup without being parsed again.
        self._known_good: tuple[int, int, int] | None = None
        # Apply saves the same document many times while a few addresses change: reuse the
        # serialized lines of the unchanged ones (see jobrunner.state.serialize).
        self._serializer = IncrementalSerializer()
        self._swept = False  # stray temporary files removed since this store was made
        self._noted_lineage: str | None = None  # lineage whose applied-marker this store has left

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
        try:
            raw = self.path.read_bytes()
            st = os.stat(self.path)
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
            lost = lost_state_error(self.path, self.backup_path)
            if lost is not None:  # both files gone after this workspace tracked jobs
                raise lost from None
            return self.empty_doc()
        except OSError as exc:
            raise StateError(f"cannot read state file {self.path}: {exc.strerror}") from None
        doc = self._parse(raw, self.path)
        doc.workspace_id = self._checked_identity(doc.workspace_id)
        self._known_good = _stat_key(st)
        return doc

    def empty_doc(self) -> StateDoc:
        """A fresh, empty state of a new lineage (what a workspace that never applied starts from)."""
        doc = StateDoc(format_version=STATE_FORMAT_VERSION, serial=0, lineage=str(uuid.uuid4()))
        doc.workspace_id = self._checked_identity(None)
        return doc

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

    def save(self, doc: StateDoc) -> None:
        prepared = self.prepare(doc)
        try:
            self.write_prepared(prepared)
        except StateError:
            doc.serial -= 1
            raise

    def prepare(self, doc: StateDoc) -> "PreparedSave":
        """The CPU half of `save`: bump the serial and serialize, where the document lives.

        Together with `write_prepared` it lets the apply engine serialize on its event loop (the
        document is never seen mid-change) and do the disk I/O in a worker thread.
        """
        if not doc.lineage:
            doc.lineage = str(uuid.uuid4())
        doc.serial += 1
        try:
            text = self._serializer.serialize(doc)
        except (TypeError, ValueError) as exc:
            doc.serial -= 1
            raise StateError(f"cannot write state: a value is not JSON ({exc})") from None
        return PreparedSave(text=text, lineage=doc.lineage, serial=doc.serial, tracks_jobs=bool(doc.addresses),
                            workspace_id=doc.workspace_id)

    def write_prepared(self, prepared: "PreparedSave") -> None:
        """The I/O half of `save`: backup, temporary file, fsync, rename. Touches no document.

        Calls must not overlap (the apply engine runs them one at a time, in order).
        """
        text = prepared.text
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._keep_backup(prepared)
            crash_point("state.backup_kept")
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    if armed("state.tmp_partial"):  # crash tests: leave a torn temporary file behind
                        fh.write(text[: len(text) // 2])
                        fh.flush()
                        os.fsync(fh.fileno())
                        crash_point("state.tmp_partial")
                        fh.seek(0)
                        fh.truncate()
                    fh.write(text)
                    fh.write("\n")
                    fh.flush()
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
            if not self._swept:
                self.sweep_temporary_files()
            if prepared.tracks_jobs and self._noted_lineage != prepared.lineage:
                note_applied(self.path, prepared.lineage, prepared.workspace_id, to_rfc3339(utcnow()))
                self._noted_lineage = prepared.lineage
        except OSError as exc:
            raise StateError(
                f"cannot write state file {self.path}: {exc.strerror or exc}",
                hint="check free disk space and permissions of the .jobrunner directory",
            ) from None

    def _keep_backup(self, doc: "StateDoc | PreparedSave") -> None:
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
        tmp = self.backup_path.with_name(f".{self.backup_path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(raw)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.backup_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

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

    def unlock(self, force: bool) -> str:  # type: ignore[override]
        """Free a lock left behind; returns a sentence saying what was done, for the CLI."""
        return self._lock.force_release(force)

    def lock_holder(self) -> Any:
        """Who holds (or last held) the lock, as a `LockInfo`, or None."""
        return self._lock.holder()

    @property
    def lock_path(self) -> Path:
        return self._lock.path


def _serialize(doc: StateDoc) -> str:
    """Compact JSON with one address per line: small and quick to parse at 10,000 addresses, and
    still readable with grep and diff."""
    data = doc.to_json()
    addresses = data.pop("addresses")
    head = json.dumps(data, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    if not addresses:
        return head[:-1] + ',"addresses":{}}'
    lines = [
        json.dumps(k, ensure_ascii=False) + ":"
        + json.dumps(v, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        for k, v in addresses.items()
    ]
    return head[:-1] + ',"addresses":{\n' + ",\n".join(lines) + "\n}}"


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


__all__ = ["LocalFileStore", "PreparedSave", "BACKUP_SUFFIX", "LOCK_SUFFIX"]
