"""The embedded local platform behind `provider: local` and `jobrunner serve`.

A real HTTP server (starlette app served by uvicorn, state in SQLite under the data directory)
that speaks two wire formats, Replicate v1 and Emissary (SDK 0.4.4), and runs small built-in
models for real in worker processes. Layers, each importing only those below it (see
docs/architecture.md, checked by tests/local/test_layout.py):

- composition: `app` (`create_app(data_dir, token, **options)`, the ASGI app), `gate` (wire
  selection, auth, size limit, faults, request counting), `server` (uvicorn, `jobrunner serve`),
  `autostart` (finding/starting one platform per workspace).
- wires, one package each with the same modules: `replicate/` and `emissary/`, each with
  `catalog`, `store`, `service`, `serializers`, `errors`, `routes`.
- `engines/`: the code that runs a job (echo, sleep, ngram, ngram_finetune).
- core, naming neither wire: `platform` (the `Platform` both services build on), `db`, `runner` /
  `worker` (engine processes), `webhooks` (signed delivery), `faults`, `security`, `clock`,
  `multipart`, `drop`.
"""
