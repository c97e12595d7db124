"""`jobrunner validate` and `jobrunner schema`: offline checks of manifests, and the schemas behind them."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from jobrunner.commands.output_options import json_option, pick_format

if TYPE_CHECKING:
    from jobrunner.errors import Diagnostic


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text", show_default=True,
              help="Output format; json follows `terraform validate -json`; github prints GitHub Actions "
                   "annotations.")
@json_option("the diagnostics")
def validate(paths: tuple[Path, ...], fmt: str, json_out: bool) -> int:
    """Check manifests offline: schemas, references, inputs and files.

    PATHS are manifest files or directories (default: the current directory). Every problem in every file is
    reported at once as `file:line:col: Kind/name: $.json.path: message`. Exit 0 when valid, 1 when not.

    \b
    Examples:
      jobrunner validate
      jobrunner validate specs/train.yaml specs/eval.yaml
      jobrunner validate --format github specs/      # annotations in a GitHub Actions run
    """
    from jobrunner.render.diagnostics import render_github, render_json, render_text
    from jobrunner.workspace import workspaces_for

    fmt = pick_format(fmt, json_out)
    groups = workspaces_for(list(paths))
    result, root = _validate_group(*groups[0])
    if len(groups) > 1:  # several workspaces, each with its config; files named from here
        result, root = _merged([_validate_group(r, g) for r, g in groups]), Path.cwd()
    if fmt == "json":
        click.echo(render_json(result.diagnostics, files=result.files))
    elif fmt == "github":
        click.echo(render_github(_repo_relative(result.diagnostics, root), files=len(result.files),
                                 resources=len(result.resources)))
    else:
        click.echo(render_text(result.diagnostics, files=len(result.files), resources=len(result.resources)))
    return 0 if result.ok else 1


def _validate_group(root: Path, paths: list[Path]) -> tuple[Any, Path]:
    """The ValidationResult of `paths` (default: the current directory) in the workspace at `root`."""
    from jobrunner.validate import validate_paths
    from jobrunner.workspace import load_config

    load_config(root)  # a broken jobrunner.yaml is reported here too (ConfigError, exit 1)
    result = validate_paths(paths or [Path.cwd()], root)
    _check_moved_list(result, root)
    return result, root


def _merged(results: list[tuple[Any, Path]]) -> Any:
    """One result of several workspaces' (validated apart), its file names relative to the current
    directory: `specs/a.yaml` of two workspaces must not read as one file."""
    import dataclasses
    import os

    from jobrunner.validate import ValidationResult

    def here(root: Path, file: str) -> str:
        return os.path.relpath(root / file)

    out = ValidationResult()
    for result, root in results:
        out.resources += result.resources
        out.files += [here(root, f) for f in result.files]
        out.diagnostics += [dataclasses.replace(d, file=here(root, d.file)) for d in result.diagnostics]
    return out


def _check_moved_list(result: object, root: Path) -> None:
    """Add the problems of jobrunner.yaml's `moved` list (declared renames) to `result`."""
    from jobrunner.moves import check_moves, read_moves

    moves, diags = read_moves(root)
    items = result.items  # type: ignore[attr-defined]
    keys = {res: [i.key for i in rows] for res, rows in items.items()}
    diags += check_moves(moves, result.resources, keys)  # type: ignore[attr-defined]
    if diags:
        result.diagnostics = sorted([*result.diagnostics, *diags],  # type: ignore[attr-defined]
                                    key=lambda d: d.sort_key())


def _repo_relative(diagnostics: list[Diagnostic], root: Path) -> list[Diagnostic]:
    """Annotations are matched to files relative to the checkout ($GITHUB_WORKSPACE), not the workspace."""
    import dataclasses
    import os

    checkout = os.environ.get("GITHUB_WORKSPACE")
    if not checkout:
        return diagnostics
    base = Path(checkout).resolve()
    out: list[Diagnostic] = []
    for d in diagnostics:
        path = (root / d.file).resolve()
        try:
            out.append(dataclasses.replace(d, file=path.relative_to(base).as_posix()))
        except ValueError:
            out.append(d)
    return out


@click.command()
@click.option("--kind", default=None, metavar="KIND",
              help="Only this kind: Training, PredictionBatch, Model or Deployment.")
@click.option("--name", "name", default=None, metavar="FILE",
              help="A schema file by name (see --list), e.g. replicate.schemas_training_request.json.")
@click.option("--list", "list_", is_flag=True, help="List the shipped schema files.")
def schema(kind: str | None, name: str | None, list_: bool) -> int:
    """Print the JSON Schema (draft-07) of jobrunner manifests.

    Point an editor at it with the modeline
    `# yaml-language-server: $schema=<path to manifest.schema.json>`, or save it with
    `jobrunner schema > manifest.schema.json`.

    \b
    Examples:
      jobrunner schema > manifest.schema.json
      jobrunner schema --kind Training
      jobrunner schema --list
    """
    from jobrunner.errors import UsageError
    from jobrunner.schema import kind_schema_name, schema_names, schema_text

    if list_:
        click.echo("\n".join(schema_names()))
        return 0
    if kind and name:
        raise UsageError("give --kind or --name, not both")
    click.echo(schema_text(name or kind_schema_name(kind)), nl=False)
    return 0
