"""A small multipart/form-data parser on the standard library (`email`), for uploads.

Bodies are already size-limited by the app, so parsing in memory is fine. Returns one `Part` per
field; file names are only informational: no client-given name ever reaches the filesystem.
"""
from __future__ import annotations

from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP


class MultipartError(ValueError):
    """The body is not valid multipart/form-data."""


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def parse_multipart(body: bytes, content_type: str) -> dict[str, Part]:
    if "multipart/form-data" not in content_type.lower() or "boundary=" not in content_type.lower():
        raise MultipartError("expected a multipart/form-data body with a boundary")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise MultipartError("malformed multipart/form-data body")
    parts: dict[str, Part] = {}
    for sub in message.iter_parts():
        disposition = sub.get("Content-Disposition", "")
        if not disposition:
            continue
        name = sub.get_param("name", header="content-disposition")
        if not name:
            continue
        filename = sub.get_filename()
        decoded = sub.get_payload(decode=True)
        if isinstance(decoded, bytes):
            payload = decoded
        else:  # not transfer-encoded: the text as it came
            raw = sub.get_payload()
            payload = raw.encode("utf-8") if isinstance(raw, str) else b""
        ctype = sub.get("Content-Type")
        parts[str(name)] = Part(str(name), filename, sub.get_content_type() if ctype else None, payload)
    return parts
