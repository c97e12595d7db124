"""The embedded local platform behind `provider: local` and `jobrunner serve`.

A real HTTP server (starlette app served by uvicorn, state in SQLite under the data directory)
that speaks the Replicate v1 wire format (and, through `emissary_api`, the Emissary one) and runs
small built-in models for real in worker processes. Module map:

- `app`: `create_app(data_dir, token, **options)`, the ASGI app and its middleware.
- `platform`: the `Platform` object handed to every route module (db, runner, jobs, config, clock).
- `db`: SQLite persistence (jobs, models, versions, files).
- `jobs`: the Replicate job lifecycle (create, events from the runner, cancel, deadlines, waiting).
- `runner` / `worker`: the job runner and its worker processes.
- `models/`: the built-in model engines (echo, ngram, sleep) and their catalog (fixed version ids).
- `replicate_api`: the Replicate v1 routes and serializers.
- `problems`: problem+json errors and the deliberate connection drop.
- `faults`, `security`, `multipart`, `clock`: small helpers.
- `server`, `autostart`: running the app with uvicorn, and finding/starting one per workspace.
"""
from __future__ import annotations
