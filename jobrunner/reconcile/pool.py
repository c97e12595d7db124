"""One provider client per provider name for the duration of a command, closed at the end."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any


class ProviderPool:
    def __init__(self, config: Any, root: Path) -> None:
        self.config = config
        self.root = root
        self._providers: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        if name not in self._providers:
            from jobrunner.providers.registry import get_provider

            self._providers[name] = get_provider(name, self.config, self.root)
        return self._providers[name]

    async def aclose(self) -> None:
        for provider in self._providers.values():
            close = getattr(provider, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):  # closing must never mask the command's own outcome
                    await close()
        self._providers.clear()
