"""Run the jobrunner CLI, but SIGKILL the process right after the first create reached the provider.

This is the worst moment for a crash: the provider has the job, state has only the intent. Used
by test_exactly_once as `python crash_after_create.py apply ...`.
"""
from __future__ import annotations

import os
import signal
import sys

from jobrunner.providers.replicate import ReplicateProvider

_real_create = ReplicateProvider.create


async def _create_then_die(self, req):
    await _real_create(self, req)
    os.kill(os.getpid(), signal.SIGKILL)


ReplicateProvider.create = _create_then_die  # type: ignore[method-assign]

if __name__ == "__main__":
    from jobrunner.cli import main

    main(sys.argv[1:])
