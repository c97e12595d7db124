"""Providers: the I/O edge that talks to Replicate, Emissary and the local platform."""
from __future__ import annotations
