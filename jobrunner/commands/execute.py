"""Running the executor for `apply` and `destroy`: Ctrl-C handling and the command deadline.

The first Ctrl-C stops submitting new jobs and stops waiting (state is saved, jobs keep running);
a second one quits at once. After `apply --timeout` passes, provider requests still in flight get
TIMEOUT_GRACE seconds more, so the command ends in bounded time.
"""
from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from jobrunner.reconcile.report import ApplyReport

# After `apply --timeout` passes, provider requests still in flight (a create being answered, a
# poll) get this much longer before they are cut, so an answer that is arriving gets recorded.
TIMEOUT_GRACE = 10.0


def _rows_to_keep(planned: Any) -> Any:
    """The batch rows validation read, if a job may need them: they serve only to expand a job again
    once its upstream ran (references known after apply). With no such job they are let go for the
    run (100,000 rows: ~20 MB); an expansion without them reads the inputs files again: slower,
    never different."""
    rows = planned.items if any(j.fingerprint is None for j in planned.desired) else None
    planned.items = rows or {}
    return rows


async def execute(ws: Any, pool: Any, doc: Any, planned: Any, *, wait: bool, deadline: float | None,
                  parallelism: int, destroy: bool = False, why: str = "", progress: Any = None) -> ApplyReport:
    """Run the executor with Ctrl-C handling: the first stops submitting and waiting.

    `deadline` (time.monotonic()) is when waiting stops (`--timeout`); provider requests still in
    flight then are cut TIMEOUT_GRACE seconds later, so the command ends in bounded time.
    """
    from jobrunner.providers.http import command_deadline
    from jobrunner.reconcile.context import ApplyOptions
    from jobrunner.reconcile.executor import Executor
    from jobrunner.reconcile.statewriter import StateWriter
    from jobrunner.render.progress import make_progress
    from jobrunner.spec import expand

    progress = progress or make_progress(sys.stdout)
    progress.begin(planned.plan)
    resources = planned.resources
    writer = StateWriter(ws.store, doc)
    rows = _rows_to_keep(planned)
    if planned.recovery_marked:
        # Saved with the first save, whichever address that one is for: that save also records
        # the recovered flag that planning cleared (jobrunner.state.recovery).
        writer.touch(*planned.recovery_marked)
    executor = Executor(
        planned.plan,
        desired=planned.desired,
        resources=resources,
        writer=writer,
        pool=pool,
        root=ws.root,
        expand=lambda: expand(resources, ws.root, state=doc, items=rows),
        progress=progress,
        options=ApplyOptions(wait=wait, deadline=deadline, parallelism=parallelism, destroy=destroy),
    )
    loop = asyncio.get_running_loop()
    interrupts = 0

    def on_sigint() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            progress.note("Interrupt received: submitting no new jobs, saving state; running jobs keep running. "
                          "Press Ctrl-C again to quit at once.")
            executor.interrupt()
        else:
            loop.remove_signal_handler(signal.SIGINT)
            raise KeyboardInterrupt

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
        installed = True
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (e.g. some test runners)
        installed = False
    try:
        with command_deadline(deadline + TIMEOUT_GRACE if deadline is not None else None, why):
            return await executor.run()
    finally:
        progress.close()
        if installed:
            loop.remove_signal_handler(signal.SIGINT)
