"""The Emissary wire (SDK 0.4.4) of the local platform, in the same shape as `jobrunner.local.replicate`.

- `catalog`: the base models (`jobrunner-ngram`) and the engine each trains with.
- `store`: its tables (`emissary_*`: projects, datasets, training jobs, checkpoints, deployments).
- `service`: `EmissaryService`, training jobs on the runner, timeouts, deployments and inference.
- `serializers`: wire shapes out and request fields in.
- `errors`: `{"status", "error"}` errors (`EmissaryError`).
- `routes`: `EmissaryRoutes(service).routes()`, the starlette route table.
"""
