"""The encoded text of each address as the last save wrote it, so a compacting snapshot in the
middle of an apply encodes only the addresses that changed since.

Apply appends each save's changed addresses to the journal, and compacts the journal into a new
snapshot whenever it outgrows the snapshot; a 10,000-item apply wrote about 13,600 addresses into
such snapshots, each encoded again although most had not changed since their journal record was
encoded (about 3% of the apply's CPU). A save that names its changed addresses (`changed`) is the
contract the journal already rests on: an address it does not name did not change since it was
last saved. So the text encoded for an address's last record stays its text until a save names it
again, and a snapshot made by such a save copies it. A snapshot of a save that names nothing
(the end of an apply, moves, any other command) encodes every address afresh, as before, and
drops the texts.

The texts are only trusted for the document they were made from, under the secrets known when
they were encoded (a secret learned later must be scrubbed from the next snapshot), and are kept
up to `limit` bytes: at 100,000 addresses all of them would be about 100 MB, more than apply's
memory budget allows; beyond the limit an address is simply encoded again.
"""
from __future__ import annotations

import weakref
from collections.abc import Collection

from jobrunner.state.model import AddressState, StateDoc
from jobrunner.state.serialize import address_json

# Enough for every address of a 10,000-item batch (about 1 KB each).
TEXTS_LIMIT_BYTES = 16 * 1024 * 1024
_OVERHEAD = 64  # a str object's header and its dict entry, roughly


class AddressTexts:
    def __init__(self, limit: int = TEXTS_LIMIT_BYTES) -> None:
        self.limit = limit
        self._texts: dict[str, str] = {}
        self._bytes = 0
        # The document the texts are of, not kept alive by them: once apply lets its state go,
        # the decoded copy it leaves reuses that memory (commands.apply._leave_decoded_copy).
        self._doc: weakref.ref[StateDoc] | None = None
        self._secrets: object = None
        self._keeping = False  # whether this save keeps what it encodes
        self.encoded = 0  # addresses encoded through this cache (tests, benchmarks)

    def begin(self, doc: StateDoc, changed: Collection[str] | None) -> None:
        """Start a save of `doc` naming `changed` (None: unknown). Texts of other documents, of
        other secrets or of a save that named nothing are dropped; those of `changed` too. A save
        naming nothing keeps none of its texts: it ends an apply or is another command's only
        save, and a 100,000-address snapshot would fill the cache for no later use."""
        from jobrunner.redact import known_secrets

        secrets = known_secrets()
        self._keeping = changed is not None
        known = self._doc() if self._doc is not None else None
        if changed is None or doc is not known or secrets is not self._secrets:
            self._texts.clear()
            self._bytes = 0
            self._doc, self._secrets = weakref.ref(doc), secrets
            return
        for address in changed:
            self._drop(address)

    def text(self, address: str, st: AddressState) -> str:
        """The address's text: the kept one, else encoded now (and kept while there is room)."""
        text = self._texts.get(address)
        if text is not None:
            return text
        text = address_json(st, self._secrets)  # the secrets `begin` checked, taken once per save
        self.encoded += 1
        size = len(text) + _OVERHEAD
        if self._keeping and self._bytes + size <= self.limit:
            self._texts[address] = text
            self._bytes += size
        return text

    def _drop(self, address: str) -> None:
        text = self._texts.pop(address, None)
        if text is not None:
            self._bytes -= len(text) + _OVERHEAD


__all__ = ["TEXTS_LIMIT_BYTES", "AddressTexts"]
