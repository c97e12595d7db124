"""Output renderers: turn finished values (diagnostics, plans, statuses) into text, JSON or markdown.

Renderers are pure functions of their input; commands print what they return. Keeping output apart
from the core lets every format show the same facts.
"""
from __future__ import annotations
