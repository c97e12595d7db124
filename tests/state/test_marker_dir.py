"""Where the lost-state markers live: beside the rest of the per-user jobrunner directory."""
from __future__ import annotations

from pathlib import Path

from jobrunner.state.applied import marker_dir


def test_an_explicit_marker_dir_wins() -> None:
    env = {"JOBRUNNER_MARKER_DIR": "/m", "JOBRUNNER_HOME": "/h", "XDG_STATE_HOME": "/x", "HOME": "/home/u"}
    assert marker_dir(env) == Path("/m")


def test_markers_follow_jobrunner_home_like_the_local_platform() -> None:
    env = {"JOBRUNNER_HOME": "/h", "XDG_STATE_HOME": "/x", "HOME": "/home/u"}
    assert marker_dir(env) == Path("/h/workspaces")


def test_without_jobrunner_home_the_xdg_state_directory_is_used() -> None:
    assert marker_dir({"XDG_STATE_HOME": "/x", "HOME": "/home/u"}) == Path("/x/jobrunner/workspaces")
    assert marker_dir({"HOME": "/home/u"}) == Path("/home/u/.local/state/jobrunner/workspaces")
