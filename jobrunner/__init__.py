"""jobrunner: infrastructure-as-config for ML jobs (trainings and prediction batches)."""
from __future__ import annotations

__version__ = "0.1.0"
