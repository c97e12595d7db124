"""`jobrunner serve`: run the local platform in the foreground, stop one, or list the running ones.

The platform speaks the Replicate v1 and Emissary v1 wire formats on loopback, with its SQLite
state, token and files in the data directory (default: the one auto-start uses for this workspace,
see `jobrunner.local.autostart`). Fault flags turn on latency, error rates, rate limits and
dropped connections for tests and benchmarks; `--idle-stop` makes it stop itself when unused.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from jobrunner.errors import ConfigError, UsageError
from jobrunner.providers.adapters.replicate import REPLICATE

if TYPE_CHECKING:
    from jobrunner.local.autostart import PlatformHandle


def _default_data_dir() -> Path:
    from jobrunner.providers.local import platform_data_dir
    from jobrunner.workspace import find_workspace

    return platform_data_dir(find_workspace())


def _parse_idle_stop(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from jobrunner.durations import DurationError, parse_duration

    if value is None or value.strip().lower() in ("never", "off", "0"):
        return None
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise click.BadParameter(str(exc)) from None


def _print_status() -> int:
    """`serve --status`: one line per running platform of this user, oldest first; one of another
    jobrunner build than this CLI's is marked STALE."""
    import time

    from jobrunner.durations import format_duration
    from jobrunner.local.autostart import describe_idle, find_data_dir, running_platforms

    platforms = running_platforms()
    if not platforms:
        click.echo("No local platform is running.")
        return 0
    click.echo(f"{len(platforms)} local platform{'s' if len(platforms) != 1 else ''} running:")
    for p in platforms:
        age = format_duration(max(1.0, time.time() - p.started_at))
        idle = "never stops by itself" if p.idle_stop is None else f"stops after {describe_idle(p.idle_stop)} idle"
        # stale: the next command that needs it replaces it once idle, or refuses while it runs jobs
        stale = f"  STALE: started by another jobrunner build{_jobs_of(find_data_dir(p.data_dir))}" if p.stale else ""
        click.echo(f"  pid {p.pid}  {p.url}  up {age}  {idle}  data: {p.data_dir}{stale}")
    return 0


def _jobs_of(handle: PlatformHandle | None) -> str:
    """`, 2 jobs queued or running` as the platform reports it (nothing when it does not say)."""
    count = handle.running_jobs if handle is not None else None
    return "" if count is None else f", {count} job{'' if count == 1 else 's'} queued or running"


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, metavar="HOST",
              help="Address to bind (loopback unless --allow-remote).")
@click.option("--port", default=8123, show_default=True, type=click.IntRange(0, 65535), metavar="PORT",
              help="Port; 0 picks a free one.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="State directory [default: the one auto-start uses: providers.local.data_dir, "
                   "else $JOBRUNNER_HOME/local].")
@click.option("--token", envvar="JOBRUNNER_LOCAL_TOKEN", metavar="TOKEN",
              help="API token [default: generated once, stored 0600 in the data dir]. Env: JOBRUNNER_LOCAL_TOKEN.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), metavar="N",
              help="Worker processes running models.")
@click.option("--allow-remote", is_flag=True, help="Allow binding a non-loopback address (requires --token).")
@click.option("--stop", is_flag=True, help="Stop the platform running for this data directory and exit.")
@click.option("--status", "show_status", is_flag=True,
              help="List the local platforms running for this user (pid, URL, uptime, idle stop, data directory) "
                   "and exit.")
@click.option("--idle-stop", metavar="DURATION", callback=_parse_idle_stop,
              help="Stop after this long with no API request and no queued or running job (e.g. 15m; `never`) "
                   "[default: never; auto-started platforms use providers.local.idle_stop, 15m].")
@click.option("--latency-ms", type=float, metavar="MS", help="Fault: add this much latency to every request.")
@click.option("--error-rate", type=float, metavar="FRACTION",
              help="Fault: answer this fraction of requests (0..1) with 500/503.")
@click.option("--rate-limit", type=click.Choice([REPLICATE.name, "off"]),
              help="Fault: 429 with Retry-After, Replicate's documented limits.")
@click.option("--drop-after-create", type=float, metavar="FRACTION",
              help="Fault: drop the connection after this fraction (0..1) of committed creates.")
@click.option("--list-lag", "list_lag_s", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Fault: list endpoints hide jobs younger than this many seconds (a lagging index).")
@click.option("--max-body-bytes", type=click.IntRange(1), metavar="BYTES",
              help="Reject larger request bodies with 413 [default: 100 MiB].")
@click.option("--faults", "faults_spec", metavar="NAME=VALUE,...",
              help='More fault knobs, "name=value,..." (same names as JOBRUNNER_LOCAL_FAULTS).')
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              help="How much the server logs (to stderr; serve.log for an auto-started one).")
def serve(
    host: str,
    port: int,
    data_dir: Path | None,
    token: str | None,
    workers: int,
    allow_remote: bool,
    stop: bool,
    show_status: bool,
    idle_stop: float | None,
    latency_ms: float | None,
    error_rate: float | None,
    rate_limit: str | None,
    drop_after_create: float | None,
    list_lag_s: float | None,
    max_body_bytes: int | None,
    faults_spec: str | None,
    log_level: str,
) -> int:
    """Run the local platform (Replicate- and Emissary-compatible) in the foreground.

    \b
    Examples:
      jobrunner serve --port 8123                 # foreground; Ctrl-C stops it
      jobrunner serve --status                    # list the running platforms
      jobrunner serve --stop                      # stop the one this workspace uses
    """
    from jobrunner.local.autostart import register, stop_data_dir
    from jobrunner.local.security import SecurityError
    from jobrunner.local.server import AlreadyRunning, ServeOptions, StartupFailed
    from jobrunner.local.server import serve as run_server

    if show_status:
        return _print_status()
    directory = (data_dir or _default_data_dir()).resolve()
    if stop:
        if stop_data_dir(directory):
            click.echo(f"Stopped the local platform of {directory}.")
        else:
            click.echo(f"No local platform is running for {directory}.")
        return 0
    faults = _faults(faults_spec, rate_limit, latency_ms=latency_ms, error_rate=error_rate,
                     drop_after_create=drop_after_create, list_lag_s=list_lag_s, max_body_bytes=max_body_bytes)

    unregister: list[Any] = []

    def ready(info: dict[str, Any]) -> None:
        unregister.append(register(info, directory, idle_stop))
        click.echo(f"jobrunner local platform listening on {info['url']} (data: {directory})", err=True)
        click.echo(f"token: stored in {directory / 'token'}; REPLICATE_BASE_URL={info['url']}", err=True)

    options = ServeOptions(
        data_dir=directory, host=host, port=port, token=token, workers=workers,
        allow_remote=allow_remote, faults=faults, log_level=log_level, idle_stop=idle_stop,
    )
    try:
        run_server(options, on_ready=ready)
    except SecurityError as exc:
        raise UsageError(str(exc)) from None
    except AlreadyRunning as exc:
        raise ConfigError(str(exc), hint="stop it with `jobrunner serve --stop` or use another --data-dir") from None
    except StartupFailed as exc:
        raise ConfigError(str(exc), hint="pick another --port, or --port 0 for a free one") from None
    except KeyboardInterrupt:
        pass
    finally:
        for remove in unregister:
            remove()
    return 0


def _faults(faults_spec: str | None, rate_limit: str | None, **flags: float | None) -> dict[str, Any]:
    """The fault knobs of `--faults` and the single-fault flags, checked before anything binds."""
    from jobrunner.local.faults import FaultConfigError, FaultState, parse_faults

    try:
        faults: dict[str, Any] = parse_faults(faults_spec)
    except FaultConfigError as exc:
        raise UsageError(f"--faults: {exc}") from None
    faults.update({name: value for name, value in flags.items() if value is not None})
    if rate_limit is not None:
        faults["rate_limit"] = None if rate_limit == "off" else rate_limit
    try:
        FaultState().update(faults)  # validate before binding anything
    except FaultConfigError as exc:
        raise UsageError(str(exc)) from None
    return faults
