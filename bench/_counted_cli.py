"""`python bench/_counted_cli.py OUT ARGS...`: run `jobrunner ARGS` and write, at exit, how many
state writes it made (journal records, snapshots) to the JSON file OUT. For bench/scale.py only:
the counts come from wrapping the local state store's write method, nothing in jobrunner changes.
"""
from __future__ import annotations

import atexit
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobrunner.state.local_file import LocalFileStore  # noqa: E402

COUNTS = {"journal_records": 0, "snapshots": 0}


def _counted(method):  # type: ignore[no-untyped-def]
    def write_prepared(self, prepared):  # type: ignore[no-untyped-def]
        method(self, prepared)
        COUNTS["journal_records" if prepared.record is not None else "snapshots"] += 1

    return write_prepared


def main() -> None:
    out = Path(sys.argv[1])
    LocalFileStore.write_prepared = _counted(LocalFileStore.write_prepared)  # type: ignore[method-assign]
    atexit.register(lambda: out.write_text(json.dumps(COUNTS)))
    from jobrunner.cli import main as cli_main

    sys.argv = ["jobrunner", *sys.argv[2:]]
    cli_main()


if __name__ == "__main__":
    main()
