"""Workspace discovery, config parsing and manifest discovery."""
from __future__ import annotations

from pathlib import Path

import pytest

from jobrunner.errors import ConfigError, UsageError
from jobrunner.workspace import (
    WorkspaceConfig,
    discover_manifest_files,
    find_workspace,
    find_workspace_for,
    load_config,
    locate_workspace,
)


def test_find_workspace_nearest_parent_with_config(tmp_path: Path) -> None:
    (tmp_path / "jobrunner.yaml").write_text("parallelism: 3\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_workspace(deep) == tmp_path.resolve()


def test_find_workspace_defaults_to_start(tmp_path: Path) -> None:
    assert find_workspace(tmp_path) == tmp_path.resolve()


def test_load_config_defaults_without_file(tmp_path: Path) -> None:
    assert load_config(tmp_path) == WorkspaceConfig()


def test_load_config_reads_everything(tmp_path: Path) -> None:
    (tmp_path / "jobrunner.yaml").write_text(
        "state: {backend: postgres, url: 'postgresql://db/jobs'}\n"
        "parallelism: 4\n"
        "providers:\n"
        "  replicate: {base_url: 'http://127.0.0.1:9', rate_limits: {create_per_minute: 60}}\n"
        "  local: {url: 'http://127.0.0.1:8'}\n"
    )
    cfg = load_config(tmp_path)
    assert cfg.state_backend == "postgres" and cfg.state_url == "postgresql://db/jobs"
    assert cfg.state_path == ".jobrunner/state.json"
    assert cfg.parallelism == 4
    assert cfg.providers["replicate"]["rate_limits"] == {"create_per_minute": 60}


def test_load_config_flat_state_keys(tmp_path: Path) -> None:
    (tmp_path / "jobrunner.yaml").write_text("state_path: custom/state.json\n")
    assert load_config(tmp_path).state_path == "custom/state.json"


@pytest.mark.parametrize("text, words", [
    ("parallelism: 0\n", "positive integer"),
    ("paralelism: 3\n", "unknown key"),
    ("state: [1]\n", "must be a mapping"),
    ("a: [\n", "invalid YAML"),
    ("- 1\n", "mapping at the top level"),
])
def test_load_config_errors(tmp_path: Path, text: str, words: str) -> None:
    (tmp_path / "jobrunner.yaml").write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path)
    assert words in str(exc.value)


def test_discovery_keeps_only_our_manifests(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("apiVersion: jobrunner/v1\nkind: Model\n")
    (tmp_path / "b.yml").write_text("{apiVersion: 'jobrunner/v1', kind: Model}\n")
    (tmp_path / "k8s.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\n")
    (tmp_path / "notes.txt").write_text("apiVersion: jobrunner/v1\n")
    (tmp_path / "jobrunner.yaml").write_text("parallelism: 2\n")
    hidden = tmp_path / ".jobrunner"
    hidden.mkdir()
    (hidden / "x.yaml").write_text("apiVersion: jobrunner/v1\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "c.yaml").write_text("apiVersion: jobrunner/v1\n")
    found = [p.relative_to(tmp_path.resolve()).as_posix() for p in discover_manifest_files([tmp_path], tmp_path)]
    assert found == ["a.yaml", "b.yml", "sub/c.yaml"]


def test_discovery_keeps_explicit_files(tmp_path: Path) -> None:
    (tmp_path / "k8s.yaml").write_text("apiVersion: apps/v1\n")
    assert discover_manifest_files([tmp_path / "k8s.yaml"], tmp_path) == [(tmp_path / "k8s.yaml").resolve()]


def test_discovery_missing_path(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        discover_manifest_files([tmp_path / "nope"], tmp_path)


def test_config_errors_are_positioned(tmp_path: Path) -> None:
    (tmp_path / "jobrunner.yaml").write_text("parallelism: 3\nparalelism: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path)
    assert str(exc.value) == "jobrunner.yaml:2:1: $.paralelism: unknown key `paralelism` (did you mean `parallelism`?)"
    (tmp_path / "jobrunner.yaml").write_text("parallelism: 3\nparallelism: 4\n")
    with pytest.raises(ConfigError, match="duplicate key `parallelism`"):
        load_config(tmp_path)


def test_ignore_marker_skips_a_directory_unless_named(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / ".jobrunnerignore").write_text("")
    (corpus / "bad.yaml").write_text("apiVersion: jobrunner/v1\n")
    (tmp_path / "good.yaml").write_text("apiVersion: jobrunner/v1\n")
    assert [p.name for p in discover_manifest_files([tmp_path], tmp_path)] == ["good.yaml"]
    assert [p.name for p in discover_manifest_files([corpus], tmp_path)] == ["bad.yaml"]


def test_find_workspace_from_below_finds_default_state(tmp_path: Path) -> None:
    """No jobrunner.yaml: the nearest directory holding .jobrunner/state.json is the root."""
    (tmp_path / ".jobrunner").mkdir()
    (tmp_path / ".jobrunner" / "state.json").write_text("{}")
    deep = tmp_path / "specs" / "examples"
    deep.mkdir(parents=True)
    assert locate_workspace(deep) == (tmp_path.resolve(), "state")
    # A lock or platform data alone (no state file) marks nothing.
    other = tmp_path / "other"
    (other / ".jobrunner").mkdir(parents=True)
    (other / ".jobrunner" / "state.json.lock").write_text("")
    assert locate_workspace(other / ".jobrunner") == (tmp_path.resolve(), "state")


def test_a_config_above_wins_over_nearer_state(tmp_path: Path) -> None:
    (tmp_path / "jobrunner.yaml").write_text("{}\n")
    sub = tmp_path / "sub"
    (sub / ".jobrunner").mkdir(parents=True)
    (sub / ".jobrunner" / "state.json").write_text("{}")
    assert locate_workspace(sub) == (tmp_path.resolve(), "config")


def test_nothing_above_is_the_start_directory(tmp_path: Path) -> None:
    assert locate_workspace(tmp_path) == (tmp_path.resolve(), "cwd")


def test_this_repository_is_one_workspace_from_any_directory() -> None:
    repo = Path(__file__).resolve().parents[2]
    assert find_workspace(repo / "specs" / "examples" / "data") == repo
    cfg = load_config(repo)  # the committed config (written by `jobrunner init`) spells out the defaults
    assert (cfg.state_backend, cfg.state_path, cfg.parallelism) == ("local", ".jobrunner/state.json", 10)
    assert cfg.workspace_id and cfg.workspace_id.startswith("jobrunner-")


@pytest.mark.parametrize("line", [
    "apiVersion: jobrunner/v2", "apiVersion: jobrunner/V1", "apiVersion jobrunner/v1", "apiVersion: 'JobRunner/v1'",
    "{apiVersion: \"jobrunner/v3\", kind: Model}", "apiversion: jobrunner/v1",
])
def test_discovery_keeps_files_with_a_misspelled_api_version(tmp_path: Path, line: str) -> None:
    """A typo in the apiVersion line must make a file an error, not invisible to a directory scan."""
    (tmp_path / "m.yaml").write_text(line + "\nkind: Model\n")
    assert [p.name for p in discover_manifest_files([tmp_path], tmp_path)] == ["m.yaml"]


def test_manifests_named_from_outside_any_workspace_use_their_own(tmp_path: Path) -> None:
    """`cd /tmp && jobrunner apply ~/proj/specs` uses ~/proj's workspace, never /tmp."""
    proj, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    (proj / "specs").mkdir(parents=True)
    elsewhere.mkdir()
    # Nothing marks a workspace: the manifests' directory, not the current one.
    assert find_workspace_for([proj / "specs"], elsewhere) == (proj / "specs").resolve()
    (proj / ".jobrunner").mkdir()
    (proj / ".jobrunner" / "state.json").write_text("{}")
    assert find_workspace_for([proj / "specs"], elsewhere) == proj.resolve()
    (proj / "jobrunner.yaml").write_text("{}\n")
    assert find_workspace_for([proj / "specs" / "a.yaml"], elsewhere) == proj.resolve()
    # Inside a workspace, or with paths below the current directory, the current directory decides.
    assert find_workspace_for([Path("specs")], proj) == proj.resolve()
    (elsewhere / "m").mkdir()
    assert find_workspace_for([Path("m")], elsewhere) == elsewhere.resolve()
    assert find_workspace_for([], elsewhere) == elsewhere.resolve()


def test_a_workspace_between_an_unmarked_cwd_and_the_manifests_is_theirs(tmp_path: Path) -> None:
    """`cd /tmp && jobrunner plan proj/specs` with proj marked and /tmp not: proj's state, never a
    new workspace at /tmp that would plan every job of proj again."""
    proj = tmp_path / "proj"
    (proj / "specs" / "deep").mkdir(parents=True)
    (proj / ".jobrunner").mkdir()
    (proj / ".jobrunner" / "state.json").write_text("{}")
    for named in (Path("proj/specs"), proj / "specs", Path("proj/specs/deep/a.yaml"), Path("proj")):
        assert find_workspace_for([named], tmp_path) == proj.resolve(), named
    # Unmarked manifests next to the marked ones do not change that; only marked ones count.
    (tmp_path / "loose").mkdir()
    assert find_workspace_for([Path("loose"), Path("proj/specs")], tmp_path) == proj.resolve()
    assert find_workspace_for([Path("loose")], tmp_path) == tmp_path.resolve()


def test_manifests_of_another_workspace_are_a_usage_error(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "specs").mkdir(parents=True)
        (root / "jobrunner.yaml").write_text("{}\n")
    with pytest.raises(UsageError) as exc:
        find_workspace_for([b / "specs"], a)
    assert (f"belongs to the workspace at {b.resolve()}, but this command uses the workspace at {a.resolve()}"
            in str(exc.value))
    assert f"cd {b.resolve()}" in (exc.value.hint or "")
    # From an unmarked directory, two workspaces at once are refused the same way.
    with pytest.raises(UsageError, match="belongs to the workspace at"):
        find_workspace_for([Path("a/specs"), Path("b/specs")], tmp_path)
    # A nested workspace is its own: named from the outer one, it is refused too.
    (a / "specs" / "inner").mkdir()
    (a / "specs" / "inner" / "jobrunner.yaml").write_text("{}\n")
    with pytest.raises(UsageError):
        find_workspace_for([Path("specs/inner")], a)
    assert find_workspace_for([Path("specs")], a) == a.resolve()


@pytest.mark.parametrize("value", ["locall", "api.replicate.com", "''", "3"])
def test_a_mistyped_base_url_is_named_where_it_is_written(tmp_path: Path, value: str) -> None:
    (tmp_path / "jobrunner.yaml").write_text(f"providers:\n  replicate: {{}}\n  emissary:\n    base_url: {value}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path)
    assert str(exc.value).startswith("jobrunner.yaml:4:5: $.providers.emissary.base_url: "), str(exc.value)
    assert "is not an http(s) URL or `local`" in str(exc.value) and "`local`" in (exc.value.hint or "")


@pytest.mark.parametrize("value", ["local", "https://api.withemissary.com", "http://127.0.0.1:8000/v1/"])
def test_a_base_url_that_is_a_url_or_local_loads(tmp_path: Path, value: str) -> None:
    (tmp_path / "jobrunner.yaml").write_text(f"providers:\n  emissary:\n    base_url: {value}\n")
    assert load_config(tmp_path).providers["emissary"]["base_url"] == value


def test_validate_and_plan_name_a_mistyped_base_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, only apply named it (when it built the Emissary client); `validate` and `plan` passed."""
    from tests.helpers.cli import run_cli

    (tmp_path / "jobrunner.yaml").write_text("providers:\n  emissary:\n    base_url: locall\n")
    model = "spec: {provider: local, owner: me, name: m, visibility: private, hardware: cpu}\n"
    (tmp_path / "m.yaml").write_text("apiVersion: jobrunner/v1\nkind: Model\nmetadata: {name: m}\n" + model)
    monkeypatch.chdir(tmp_path)
    for command in ("validate", "plan"):
        result = run_cli(command)
        assert result.code == 1, result.output
        assert "jobrunner.yaml:3:5: $.providers.emissary.base_url: 'locall' is not an http(s) URL" in result.stderr
        assert "Traceback" not in result.output


@pytest.mark.parametrize("name", ["jobrunner.yml", ".jobrunner.yaml", "Jobrunner.yaml"])
def test_a_misnamed_config_is_an_error_not_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   name: str) -> None:
    """Ignored, `jobrunner.yml` with `state: {path: ...}` or a postgres backend would leave the
    workspace on default state, where every job looks new. Every command names the file instead."""
    from tests.helpers.cli import run_cli

    (tmp_path / "specs").mkdir()
    (tmp_path / name).write_text("state: {path: shared/state.json}\n")
    model = "spec: {provider: local, owner: me, name: m, visibility: private, hardware: cpu}\n"
    (tmp_path / "specs" / "m.yaml").write_text("apiVersion: jobrunner/v1\nkind: Model\nmetadata: {name: m}\n" + model)
    with pytest.raises(ConfigError) as exc:
        locate_workspace(tmp_path / "specs")
    assert str(exc.value).startswith(f"{tmp_path / name}: jobrunner reads its workspace config only from")
    assert f"mv {tmp_path / name} {tmp_path / 'jobrunner.yaml'}" in (exc.value.hint or "")
    monkeypatch.chdir(tmp_path / "specs")
    for command in ("validate", "plan"):
        result = run_cli(command)
        assert result.code == 1, result.output
        assert f"{tmp_path / name}: jobrunner reads its workspace config only from" in result.stderr
        assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "specs"])
    # Renamed, it is the workspace's config.
    (tmp_path / name).rename(tmp_path / "jobrunner.yaml")
    assert locate_workspace(tmp_path / "specs") == (tmp_path.resolve(), "config")


def test_paths_grouped_by_workspace_for_validate(tmp_path: Path) -> None:
    from jobrunner.workspace import workspaces_for

    a, b, loose = tmp_path / "a", tmp_path / "b", tmp_path / "loose"
    for root in (a, b):
        (root / "specs").mkdir(parents=True)
        (root / "jobrunner.yaml").write_text("{}\n")
    loose.mkdir()
    groups = workspaces_for([Path("a/specs"), Path("b/specs"), Path("a/specs/x.yaml")], tmp_path)
    assert groups == [(a.resolve(), [Path("a/specs"), Path("a/specs/x.yaml")]), (b.resolve(), [Path("b/specs")])]
    # An unmarked path goes where it would alone: the current directory's workspace when it has one.
    assert workspaces_for([Path("../loose"), Path("specs")], a) == [(a.resolve(), [Path("../loose"), Path("specs")])]
    assert workspaces_for([], a) == [(a.resolve(), [])]
