"""State: what jobrunner knows it created, persisted atomically behind a pluggable backend."""
from __future__ import annotations
