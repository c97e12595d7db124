"""The workspace identity in the local state file and in jobrunner.yaml (jobrunner.state.identity)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobrunner.errors import ConfigError
from jobrunner.exitcodes import ExitCode, for_error
from jobrunner.state.identity import WorkspaceMismatchError, is_valid_workspace_id, new_workspace_id
from jobrunner.state.local_file import LocalFileStore
from jobrunner.state.model import AddressState, StateDoc
from jobrunner.state.store import open_store
from jobrunner.workspace import WorkspaceConfig, load_config


def _save_one(store: LocalFileStore) -> StateDoc:
    doc = store.load()
    doc.addresses["Training/a"] = AddressState(address="Training/a", kind="Training", job_kind="training",
                                               provider="local", file="jobs.yaml", remote_id="r1")
    store.save(doc)
    return doc


def test_the_first_write_records_the_configured_id_and_later_loads_check_it(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    _save_one(LocalFileStore(path, workspace_id="ml-1"))
    assert json.loads(path.read_text())["workspace_id"] == "ml-1"
    assert LocalFileStore(path, workspace_id="ml-1").load().workspace_id == "ml-1"
    with pytest.raises(WorkspaceMismatchError) as info:
        LocalFileStore(path, workspace_id="other-2").load()
    err = info.value
    assert for_error(err) == ExitCode.ERROR
    assert str(path) in str(err) and "'ml-1'" in str(err) and "'other-2'" in str(err)
    assert "workspace: {id: ml-1}" in err.hint and "state.path" in err.hint
    with pytest.raises(WorkspaceMismatchError, match="names no workspace id"):
        LocalFileStore(path, workspace_id=None).load()
    assert LocalFileStore(path).load().workspace_id == "ml-1"  # a store outside a workspace checks nothing


def test_a_state_without_an_id_is_claimed_and_without_ids_nothing_is_recorded(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    _save_one(LocalFileStore(path, workspace_id=None))
    assert "workspace_id" not in json.loads(path.read_text())  # the document reads as before
    doc = LocalFileStore(path, workspace_id="ml-1").load()
    assert doc.workspace_id == "ml-1" and "Training/a" in doc.addresses
    LocalFileStore(path, workspace_id="ml-1").save(doc)
    assert json.loads(path.read_text())["workspace_id"] == "ml-1"


def test_open_store_passes_the_configured_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBRUNNER_STATE_URL", raising=False)
    _save_one(open_store(WorkspaceConfig(workspace_id="ml-1"), tmp_path))  # type: ignore[arg-type]
    with pytest.raises(WorkspaceMismatchError):
        open_store(WorkspaceConfig(workspace_id="ml-2"), tmp_path).load()


def test_jobrunner_yaml_workspace_id(tmp_path: Path) -> None:
    (tmp_path / "jobrunner.yaml").write_text("workspace: {id: nlp-models-3f2a9c1e}\n")
    assert load_config(tmp_path).workspace_id == "nlp-models-3f2a9c1e"
    (tmp_path / "jobrunner.yaml").write_text("parallelism: 2\n")
    assert load_config(tmp_path).workspace_id is None
    for bad, where in (("workspace: nlp\n", "1:1: $.workspace"), ("workspace: {id: 'a b'}\n", "$.workspace.id"),
                       ("workspace: {id: x, name: y}\n", "$.workspace"), ("workspace: {id: 7}\n", "$.workspace.id")):
        (tmp_path / "jobrunner.yaml").write_text(bad)
        with pytest.raises(ConfigError) as info:
            load_config(tmp_path)
        assert where in str(info.value), bad


def test_new_workspace_ids_are_valid_and_distinct(tmp_path: Path) -> None:
    root = tmp_path / "My ML repo!"
    root.mkdir()
    ids = {new_workspace_id(root) for _ in range(20)}
    assert len(ids) == 20 and all(is_valid_workspace_id(i) and i.startswith("My-ML-repo-") for i in ids)
    assert not is_valid_workspace_id("-x") and not is_valid_workspace_id("") and not is_valid_workspace_id(None)
