"""The live view as a person sees it: the real CLI in a real pseudo-terminal (tmux), on the local platform.

Each run happens in a detached tmux session of a fixed size (80x20 and 200x50). While it runs, every
captured screen must fit the terminal and show a well-formed bar; at the end the whole scrollback
must hold exactly one frame (the view redraws in place, it never scrolls copies of itself) whose
bar counts match what happened. The Ctrl-C test drives the confirmation prompt through pexpect.
"""
from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.conftest import REPO, copy_examples
from tests.acceptance.test_exit_codes import SLEEP, write
from tests.platform_fixture import LivePlatform, serve_platform

# Each case drives a real terminal (tmux, pexpect) around a subprocess: slow tier.
pytestmark = [pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux"), pytest.mark.slow]

ITEMS = 24
FAILING = {"k05", "k17"}
BAR = re.compile(r"PredictionBatch/snap\S*\s+\S+\s+(\d+)/(\d+)\s+(\d+)%")


@pytest.fixture(scope="module")
def live_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlatform]:
    token = "jrl_live_" + secrets.token_hex(8)
    with serve_platform(tmp_path_factory.mktemp("platform"), token, workers=4) as live:
        yield live


def snap_workspace(root: Path, platform: LivePlatform) -> Path:
    """The example training (with its model and batch) and a 24-item sleep batch, two items failing."""
    root.mkdir()
    (root / "jobrunner.yaml").write_text(f"providers:\n  local:\n    url: {platform.url}\n", encoding="utf-8")
    copy_examples(root)
    rows = "\n".join(
        f"    - {{key: k{i:02d}, seconds: 0.4"
        + (", fail: true, message: broke" if f"k{i:02d}" in FAILING else "")
        + "}"
        for i in range(ITEMS)
    )
    write(root, "snap.yaml", f"""
apiVersion: jobrunner/v1
kind: PredictionBatch
metadata: {{name: snap}}
spec:
  provider: local
  version: {SLEEP}
  inputs:
{rows}
""")
    return root


class Tmux:
    """One detached tmux session of a fixed size on a private server socket."""

    def __init__(self, width: int, height: int, cwd: Path, env: dict[str, str], argv: list[str]) -> None:
        self.socket = f"jr-live-{os.getpid()}-{secrets.token_hex(4)}"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        inner = f"cd {shlex.quote(str(cwd))} && env -u NO_COLOR {exports} {shlex.join(argv)}; echo __EXIT=$?; sleep 300"
        self._tmux("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), inner)
        self._tmux("set-option", "-t", "t", "history-limit", "50000")

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True).stdout

    def screen(self) -> list[str]:
        return self._tmux("capture-pane", "-p", "-t", "t").rstrip("\n").split("\n")

    def scrollback(self) -> str:
        return self._tmux("capture-pane", "-p", "-J", "-S", "-", "-E", "-", "-t", "t")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, check=False)


def watch(term: Tmux, width: int, height: int, timeout: float = 120) -> tuple[str, int]:
    """Check every screen while the apply runs; return the scrollback and the exit code."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = term.screen()
        assert len(screen) <= height and all(len(line) <= width for line in screen), screen
        for done, total, pct in BAR.findall("\n".join(screen)):
            assert int(done) <= int(total) == ITEMS and int(pct) == 100 * int(done) // int(total), screen
        found = re.search(r"__EXIT=(\d+)", "\n".join(screen))
        if found:
            return term.scrollback(), int(found.group(1))
        time.sleep(0.2)
    raise AssertionError("apply did not finish:\n" + "\n".join(term.screen()))


@pytest.mark.parametrize("width,height", [(80, 20), (200, 50)])
def test_live_view_is_one_steady_frame_with_the_right_counts(live_platform: LivePlatform, tmp_path: Path,
                                                             width: int, height: int) -> None:
    root = snap_workspace(tmp_path / "ws", live_platform)
    env = {"PYTHONPATH": str(REPO), "JOBRUNNER_LOCAL_TOKEN": live_platform.token, "TERM": "xterm-256color"}
    term = Tmux(width, height, root, env, [sys.executable, "-m", "jobrunner", "apply", "--auto-approve"])
    try:
        text, code = watch(term, width, height)
    finally:
        term.close()
    assert code == 5, text  # two items failed
    assert "Traceback" not in text
    # one frame in the whole scrollback: the view redrew in place
    assert text.count("Elapsed ") == 1, text
    assert re.search(r"Elapsed \d+:\d\d · 30/30 jobs done · 2 did not succeed", text), text
    bars = BAR.findall(text)
    assert bars == [(str(ITEMS), str(ITEMS), "100")], text
    assert re.search(rf"\b{ITEMS - len(FAILING)} succeeded · {len(FAILING)} failed\b", text), text
    assert "PredictionBatch/poems-eval" in text and re.search(r"4/4\s+100%", text), text
    # the latest failures with their errors, and the training's final status with its elapsed time
    for key in FAILING:
        assert re.search(rf"✗ \[{key}\] failed: sleep: failed on request", text), text
    assert re.search(r"Training/poems-ngram\s+succeeded\s+\d+:\d\d", text), text
    assert re.search(r"Model/poems\s+succeeded", text), text  # created, or adopted on a re-run
    # (the model exists on the shared platform after the first run: adopted, not created, then)
    assert re.search(r"Apply finished: \d+ created, (1 adopted, )?28 succeeded, 2 failed\.", text), text


def test_no_color_degrades_to_one_line_per_event(live_platform: LivePlatform, tmp_path: Path) -> None:
    root = snap_workspace(tmp_path / "ws", live_platform)
    env = {"PYTHONPATH": str(REPO), "JOBRUNNER_LOCAL_TOKEN": live_platform.token, "TERM": "xterm-256color"}
    term = Tmux(80, 20, root, env, [sys.executable, "-m", "jobrunner", "apply", "--auto-approve", "--no-color",
                                    "specs/examples"])
    try:
        text, code = watch(term, 80, 20)
    finally:
        term.close()
    assert code == 0, text
    assert "Elapsed " not in text and "\x1b" not in text
    assert re.search(r"\[\s*\d+\.\ds\] Training/poems-ngram: succeeded", text), text


def test_first_ctrl_c_at_the_prompt_interrupts(live_platform: LivePlatform, tmp_path: Path) -> None:
    import pexpect

    root = snap_workspace(tmp_path / "ws", live_platform)
    env = {**os.environ, "PYTHONPATH": str(REPO), "JOBRUNNER_LOCAL_TOKEN": live_platform.token}
    env.pop("NO_COLOR", None)
    child = pexpect.spawn(sys.executable, ["-m", "jobrunner", "apply", "specs/examples"], cwd=str(root), env=env,
                          encoding="utf-8", timeout=60, dimensions=(20, 80))
    try:
        child.expect("Enter a value:")
        child.sendintr()
        child.expect("Interrupted.", timeout=10)
        child.expect(pexpect.EOF, timeout=10)
    finally:
        child.close(force=True)
    assert child.exitstatus == 130
    assert not (root / ".jobrunner" / "state.json").exists() or '"addresses": {}' in (
        root / ".jobrunner" / "state.json").read_text()
