"""`jobrunner init`: make a directory a workspace root by writing its `jobrunner.yaml`.

Like `terraform init`, it pins where the workspace is: every command run in that directory or any
directory below it then finds this `jobrunner.yaml` first and uses the same state, so `cd` never
changes what a plan compares against. It writes nothing else: state appears on the first apply.
It refuses to split an existing workspace (a directory below one that already has a config or
state), because jobs tracked there would then plan as new here and run twice.
"""
from __future__ import annotations

from pathlib import Path

import click

CONFIG_TEMPLATE = """\
# jobrunner workspace config. This directory is the workspace root: jobrunner commands run here or
# in any directory below it use the state and settings below. Every key is optional.
# Reference: docs/cli.md (init, workspaces) and docs/manifests.md (workspace).
workspace:
  id: {workspace_id}   # recorded in state and checked by every command; commit it (docs/ci.md)
state:
  backend: local                  # local (a JSON file) | postgres (then set url:)
  path: .jobrunner/state.json     # relative to this directory
# parallelism: 10                 # default for apply --parallelism
# providers:
#   local: {url: http://127.0.0.1:8765}   # use a running platform instead of auto-starting one
#   emissary: {base_url: local}           # provider: emissary on the local platform (no key needed)
# prices: {gpu-a100-large: 0.0014}  # USD per second per hardware SKU, over the shipped list (docs/costs.md)
# policy:                           # plan and apply refuse plans over these (--allow-over-budget overrides)
#   max_cost_per_apply: 50          # USD, estimated; jobs of unknown cost are refused too
#   max_creates_per_apply: 1000     # jobs created by one apply
"""


@click.command("init")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True,
              help="Create a workspace even inside another one (jobs tracked there are not seen from here).")
def init(directory: Path | None, force: bool) -> int:
    """Make DIRECTORY (default: the current directory) a workspace: write its jobrunner.yaml.

    Commands run in that directory or below it find this file and share one state. Nothing else is
    written; an existing jobrunner.yaml is left as it is.

    \b
    Examples:
      jobrunner init
      jobrunner init ml-jobs/ && cd ml-jobs/ && jobrunner validate
    """
    from jobrunner.errors import UsageError
    from jobrunner.workspace import CONFIG_FILE, locate_workspace

    root = (directory or Path.cwd()).resolve()
    config = root / CONFIG_FILE
    if config.is_file():
        click.echo(f"{root} is already a workspace ({CONFIG_FILE} exists); nothing changed.")
        return 0
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root} is not a directory")
    enclosing, how = locate_workspace(root)
    if how != "cwd" and enclosing != root and not force:
        marker = CONFIG_FILE if how == "config" else ".jobrunner/state.json"
        raise UsageError(
            f"{root} is inside the workspace {enclosing} (it holds {marker}); a workspace here would start "
            "with empty state, so jobs tracked there that are defined below here would be planned as new",
            hint=f"run jobrunner from anywhere below {enclosing} as it is, or pass --force for a separate workspace",
        )
    root.mkdir(parents=True, exist_ok=True)
    config.write_text(CONFIG_TEMPLATE.replace("{workspace_id}", _workspace_id(root)), encoding="utf-8")
    click.echo(f"Initialized the workspace {root}: wrote {CONFIG_FILE}.")
    click.echo("jobrunner commands run in this directory or below it now use its state (.jobrunner/state.json, "
               "created by the first apply).")
    return 0


def _workspace_id(root: Path) -> str:
    """The id the local state here already records (it was written by this workspace), else a new one."""
    import json

    from jobrunner.state.identity import is_valid_workspace_id, new_workspace_id
    from jobrunner.workspace import DEFAULT_STATE_PATH

    try:
        recorded = json.loads((root / DEFAULT_STATE_PATH).read_text(encoding="utf-8")).get("workspace_id")
    except (OSError, ValueError, AttributeError):
        recorded = None
    return recorded if is_valid_workspace_id(recorded) else new_workspace_id(root)
