"""CLI commands, one module per area; each stays thin and calls into the library."""
from __future__ import annotations
