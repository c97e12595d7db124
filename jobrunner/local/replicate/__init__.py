"""The Replicate v1 wire of the local platform, in the same shape as `jobrunner.local.emissary`.

- `catalog`: the built-in models (`jobrunner/echo`, `jobrunner/ngram`, `jobrunner/sleep`) and their
  FIXED version ids and Cog-style schemas (part of the public contract: manifests pin them).
- `store`: its tables (jobs, models, versions, files) in the platform's SQLite file.
- `service`: `ReplicateService`, the job lifecycle, files, seeding, input checks, webhooks.
- `serializers`: wire shapes out (jobs, models, versions, files, pages) and request fields in.
- `errors`: problem+json errors (`ApiError`).
- `routes`: `ReplicateRoutes(service).routes()`, the starlette route table.
"""
