"""The one `format_version` of every JSON document jobrunner prints.

`plan --json`, `validate --json`, `status --json`, `outputs --json` and each event of
`apply`/`destroy --json` carry the same "MAJOR.MINOR" string (Terraform's rule for its `-json`
output): a minor bump only adds fields or event types, a major bump changes or removes something a
consumer may read. Files jobrunner keeps for itself (the state file, saved plan files) have their
own integer versions; they are not output.
"""
from __future__ import annotations

FORMAT_VERSION = "1.0"

__all__ = ["FORMAT_VERSION"]
