"""Allow `python -m jobrunner`."""
from __future__ import annotations

from jobrunner.cli import main

if __name__ == "__main__":
    main()
