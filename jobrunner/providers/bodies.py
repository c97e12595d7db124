"""Reading provider answers with a byte cap, and keeping job logs short while they stream in.

A provider answer is read chunk by chunk (never `response.read()` whole), so its size is known
before it is held: an answer over `max_body_bytes` is refused as a protocol error instead of
growing memory without bound. Job logs are the one legitimately huge part of an answer (a
Replicate prediction carries its whole log in the JSON `logs` field, and a training's can reach
hundreds of MB): `LogTrimmer` rewrites the JSON document as it streams, keeping only the last
`keep` bytes of every string member named `logs` behind a visible marker. The dropped bytes are
never held, so three jobs with 50 MB logs cost a few MB, not hundreds.

The trimmer is a small JSON scanner: it follows strings (with their escapes), objects and arrays
just far enough to know when a string is the value of a `logs` member. It never parses numbers or
literals and never reorders anything, so the output is the input minus the dropped log bytes.
"""
from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import AsyncIterator

from jobrunner.providers.logmarker import LOG_TRUNCATED_PREFIX, truncation_marker

KiB = 1024
MiB = 1024 * KiB

_STRUCTURE = re.compile(rb'["{}\[\],:]')
# A quote after a byte that is not a backslash and an even run of backslashes: unescaped.
_CLOSING_QUOTE = re.compile(rb'[^\\](?:\\\\)*"')
_LOW_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_LOG_KEY = b"logs"


class BodyTooLarge(Exception):
    """An answer grew past the byte cap while being read."""

    def __init__(self, size: int, cap: int) -> None:
        super().__init__(f"{size} > {cap}")
        self.size = size
        self.cap = cap


def _trailing_backslashes(data: bytes, start: int, end: int) -> int:
    """How many backslashes end data[start:end]."""
    n = 0
    i = end - 1
    while i >= start and data[i] == 0x5C:
        n += 1
        i -= 1
    return n


def _escape_start(data: bytes, i: int) -> bool:
    """Is data[i] a backslash that starts an escape (data[0] starts outside any escape)?"""
    run = 0
    while i >= 0 and data[i] == 0x5C:
        run += 1
        i -= 1
    return run % 2 == 1


def _safe_cut(data: bytes, p: int, *, split_at_end: bool = False) -> int:
    """The first position >= p that does not split an escape (`\\x` or `\\uXXXX`) of JSON string data.

    With `split_at_end`, an escape that runs past the end of `data` (it continues in the next
    chunk) gives its start instead, which is <= p.
    """
    for start in range(max(0, p - 5), p):
        if data[start] == 0x5C and _escape_start(data, start):
            length = 6 if start + 1 < len(data) and data[start + 1] == 0x75 else 2
            if start + 1 == len(data):
                length = 2  # a lone backslash at the very end: its escape continues in the next chunk
            if start + length > p:
                if start + length > len(data) and split_at_end:
                    return start
                return min(len(data), start + length)
    return p


class LogTrimmer:
    """Streams a JSON document through, keeping the last `keep` bytes of each `logs` string member."""

    def __init__(self, keep: int) -> None:
        self.keep = max(0, keep)
        self.truncated = 0  # log fields that lost bytes
        self._stack: list[int] = []  # ord("{") / ord("[") of the open containers
        self._expect_key = False  # the next string in the current object is a member name
        self._pending_key: bytes | None = None  # the member name just read (first bytes only)
        self._value_key: bytes | None = None  # the member whose value comes next (after ':')
        self._in_string = False
        self._string_is_key = False
        self._key = bytearray()
        self._run = 0  # backslashes ending the string data seen so far (escape parity across chunks)
        self._in_log = False
        self._pieces: deque[bytes] = deque()
        self._kept = 0
        self._total = 0
        self._carry = b""  # an escape-start backslash held back to keep pieces escape-complete

    # -- the copy scanner ------------------------------------------------------------------

    def feed(self, chunk: bytes) -> bytes:
        """The bytes of `chunk` to keep (log bytes beyond the cap are dropped)."""
        out = bytearray()
        i, n = 0, len(chunk)
        while i < n:
            if self._in_log:
                i = self._feed_log(chunk, i, out)
                continue
            if self._in_string:
                end = self._string_end(chunk, i)
                if end < 0:
                    if self._string_is_key and len(self._key) <= 8:
                        self._key += chunk[i:i + 9]
                    out += chunk[i:]
                    return bytes(out)
                if self._string_is_key:
                    self._key += chunk[i:end]
                    self._pending_key = bytes(self._key[:8])
                    self._expect_key = False
                out += chunk[i:end + 1]
                self._in_string = False
                i = end + 1
                continue
            match = _STRUCTURE.search(chunk, i)
            if match is None:
                out += chunk[i:]
                return bytes(out)
            j = match.start()
            out += chunk[i:j]
            i = j + 1
            char = chunk[j]
            if char == 0x22:  # '"'
                self._run = 0
                in_object = bool(self._stack) and self._stack[-1] == 0x7B
                if in_object and self._expect_key:
                    self._in_string, self._string_is_key = True, True
                    self._key = bytearray()
                    out.append(char)
                elif self._value_key == _LOG_KEY:
                    self._value_key = None
                    self._start_log()
                else:
                    self._value_key = None
                    self._in_string, self._string_is_key = True, False
                    out.append(char)
                continue
            out.append(char)
            if char in (0x7B, 0x5B):  # '{' '['
                self._stack.append(char)
                self._expect_key = char == 0x7B
                self._value_key = None
            elif char in (0x7D, 0x5D):  # '}' ']'
                if self._stack:
                    self._stack.pop()
                self._expect_key = False
                self._value_key = None
            elif char == 0x2C:  # ','
                self._expect_key = bool(self._stack) and self._stack[-1] == 0x7B
                self._value_key = None
            elif char == 0x3A:  # ':'
                self._value_key = self._pending_key
                self._pending_key = None
        return bytes(out)

    def _string_end(self, chunk: bytes, start: int) -> int:
        """Index of the closing quote of the open string in chunk[start:], or -1 (updates `_run`).

        A quote closes the string when an even number of backslashes precede it. Backslashes at
        the very start of the chunk continue the run the previous chunk ended with (`_run`);
        after the first other byte, the regex finds the closing quote in C, whatever the log.
        """
        n = len(chunk)
        lead = start
        while lead < n and chunk[lead] == 0x5C:
            lead += 1
        if lead == n:
            self._run += n - start
            return -1
        if chunk[lead] == 0x22 and (lead - start + self._run) % 2 == 0:
            return lead
        # Most chunks of a log hold no quote at all: memchr says so at once.
        match = _CLOSING_QUOTE.search(chunk, lead) if chunk.find(b'"', lead) >= 0 else None
        if match is not None:
            return match.end() - 1
        self._run = _trailing_backslashes(chunk, lead, n)
        return -1

    # -- the log field ---------------------------------------------------------------------

    def _start_log(self) -> None:
        self._in_log = True
        self._pieces.clear()
        self._kept = self._total = 0
        self._carry = b""

    def _feed_log(self, chunk: bytes, i: int, out: bytearray) -> int:
        end = self._string_end(chunk, i)
        data = self._carry + chunk[i:] if end < 0 else self._carry + chunk[i:end]
        self._carry = b""
        if end < 0:
            # The piece may end inside an escape: hold that escape's start for the next piece, so a
            # piece that ends up first after trimming never starts in the middle of one.
            split = _safe_cut(data, len(data), split_at_end=True)
            data, self._carry = data[:split], data[split:]
        if data:
            self._total += len(data)
            if len(data) > self.keep:
                # This piece alone holds more than is kept: everything before its end goes.
                self._pieces.clear()
                data = data[_safe_cut(data, len(data) - self.keep):]
                self._kept = 0
            self._pieces.append(data)
            self._kept += len(data)
            while self._pieces and self._kept - len(self._pieces[0]) >= self.keep:
                self._kept -= len(self._pieces.popleft())
        if end < 0:
            return len(chunk)
        self._in_log = False
        out += self._log_value()
        return end + 1

    def _log_value(self) -> bytes:
        body = b"".join(self._pieces)
        self._pieces.clear()
        if len(body) > self.keep:
            # The pieces are network chunks of any size, so the oldest kept one may reach far past
            # the cap: cut to the cap itself, or how much is kept would depend on chunk timing.
            body = body[_safe_cut(body, len(body) - self.keep):]
        if len(body) == self._total:
            return b'"' + body + b'"'
        self.truncated += 1
        # The first kept piece may start inside a UTF-8 character or between the two halves of a
        # surrogate pair: drop those partial bytes so the result still decodes.
        body = body.lstrip(bytes(range(0x80, 0xC0)))
        if _LOW_SURROGATE_ESCAPE.match(body):
            body = body[6:]
        # Start at a whole line when one begins soon (just after the bytes `\n` is never
        # inside an escape: hex digits have no `n`).
        newline = body.find(b"\\n", 0, 4 * KiB)
        if newline >= 0:
            body = body[newline + 2:]
        marker = json.dumps(truncation_marker(self._total - len(body), len(body)))[1:-1].encode()
        return b'"' + marker + body + b'"'

    def finish(self) -> bytes:
        """What is still held at the end of the document (only an unterminated log string)."""
        if self._in_log:
            self._in_log = False
            return b'"' + self._carry + b"".join(self._pieces)
        return b""


async def read_capped(chunks: AsyncIterator[bytes], *, max_bytes: int, trimmer: LogTrimmer | None,
                      progress: list[int] | None = None) -> bytes:
    """The whole body from `chunks`, through `trimmer`; BodyTooLarge once it exceeds `max_bytes`.

    `progress[0]` counts the bytes received (before trimming), for timeout messages.
    """
    out = bytearray()
    # The trimmer only starts once the body outgrows what it keeps of a log (or the cap): a
    # shorter body has no log to cut, so scanning it would hand back the same bytes. Nearly
    # every answer (a create, a poll, a list page) is such a body; the scanner is fed what was
    # held when it starts, so a longer body comes out as if it had been scanned from its start.
    hold = min(trimmer.keep, max_bytes) if trimmer is not None else -1
    async for chunk in chunks:
        if progress is not None:
            progress[0] += len(chunk)
        if trimmer is None:
            out += chunk
        elif hold < 0:
            out += trimmer.feed(chunk)
        else:
            out += chunk
            if len(out) > hold:
                out, hold = bytearray(trimmer.feed(bytes(out))), -1
        if len(out) > max_bytes:
            raise BodyTooLarge(len(out), max_bytes)
    if trimmer is not None and hold < 0:
        out += trimmer.finish()
    return bytes(out)


__all__ = ["BodyTooLarge", "KiB", "LOG_TRUNCATED_PREFIX", "LogTrimmer", "MiB", "read_capped", "truncation_marker"]
