"""The `jobrunner` command line: a thin shell over the library.

Each command lives in `jobrunner.commands.<area>` and only parses options, calls the library and
hands finished values to a renderer. This module wires them into one click group and turns every
`JobrunnerError` into a message, a hint and the documented exit code (`jobrunner.exitcodes`), never
a traceback.
"""
from __future__ import annotations

import importlib
import sys

import click

from jobrunner import __version__
from jobrunner.errors import JobrunnerError
from jobrunner.exitcodes import ExitCode, for_error

# command name -> "module:attribute"; imported lazily so `jobrunner validate` never pays for
# starting the HTTP stack or the local platform.
COMMANDS: dict[str, str] = {
    "validate": "jobrunner.commands.validate:validate",
    "schema": "jobrunner.commands.validate:schema",
    "serve": "jobrunner.commands.serve:serve",
    "plan": "jobrunner.commands.plan:plan",
    "apply": "jobrunner.commands.apply:apply",
    "destroy": "jobrunner.commands.destroy:destroy",
    "status": "jobrunner.commands.status:status",
    "logs": "jobrunner.commands.logs:logs",
    "outputs": "jobrunner.commands.outputs:outputs",
    "import": "jobrunner.commands.importing:import_",
    "init": "jobrunner.commands.init:init",
    "state": "jobrunner.commands.state:state",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # a command whose module has not landed yet
            if exc.name == module_name:
                return None
            raise
        return getattr(module, attr, None)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jobrunner")
def cli() -> None:
    """Validate, plan and apply ML trainings and prediction batches declared in YAML manifests.

    \b
    Quick start (offline, on the embedded local platform):
      jobrunner validate specs/
      jobrunner plan specs/examples/
      jobrunner apply --auto-approve specs/examples/
    """


def report_error(err: JobrunnerError) -> None:
    """Print a JobrunnerError the way every command does: message, then `hint:` line."""
    click.echo(f"Error: {err}", err=True)
    if err.hint:
        click.echo(f"hint: {err.hint}", err=True)


def main(argv: list[str] | None = None) -> None:
    # Each command knows its own secrets (the environment's, its manifests'), none left from an
    # earlier command run in the same process; everything it prints is scrubbed of them.
    from jobrunner.redact import SECRETS
    from jobrunner.render.guard import guarded_output

    SECRETS.clear()
    with guarded_output():
        _main(argv)


def _main(argv: list[str] | None) -> None:
    """Run one command and exit with the code `jobrunner.exitcodes` decides.

    Commands return their exit code (an int) or raise; click's own usage errors (unknown option,
    command or choice, missing argument) keep click's message but exit 1, not click's 2, which CI
    reads as "changes present" after `plan --detailed-exitcode`.
    """
    code: int  # an ExitCode, or click's own for --help/--version
    try:
        rv = cli.main(args=argv, prog_name="jobrunner", standalone_mode=False)
    except JobrunnerError as err:
        report_error(err)
        code = for_error(err)
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        click.echo("Interrupted.", err=True)
        code = for_error(exc)
    except RuntimeError as exc:
        if not isinstance(exc.__cause__, KeyboardInterrupt):
            raise
        # A second Ctrl-C that lands while a module defining a dataclass is first imported (the
        # report's, after an interrupted apply) comes wrapped: Python reports what __set_name__
        # raises as a RuntimeError. It is still an interrupt, not a crash with a traceback.
        click.echo("Interrupted.", err=True)
        code = for_error(exc.__cause__)
    except click.ClickException as exc:
        exc.show()
        code = for_error(exc)
    except click.exceptions.Exit as exc:  # --help, --version
        code = exc.exit_code
    else:
        code = rv if isinstance(rv, int) else ExitCode.OK
    sys.exit(int(code))


if __name__ == "__main__":
    main()
