"""The Replicate wire's errors: RFC 7807 problem+json bodies, raised as `ApiError` from route code."""
from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.title:
            out["title"] = self.title
        out["detail"] = self.detail
        out["status"] = self.status
        out.update(self.extra)
        return out


def problem_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def not_found() -> ApiError:
    return ApiError(404, "The requested resource could not be found.")


def invalid_fields(problems: list[tuple[str, str, str]], title: str = "Input validation failed") -> ApiError:
    """422 with Replicate's `invalid_fields`: each problem is (type, field, description)."""
    detail = "".join(f"- {field + ': ' if field else ''}{desc}\n" for _, field, desc in problems)
    return ApiError(
        422,
        detail,
        title=title,
        invalid_fields=[{"type": t, "field": f, "description": d} for t, f, d in problems],
    )


def error_response(
    status: int, detail: str, *, title: str | None = None, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    """An `ApiError`'s answer built outside route code (the app's gate: auth, size limit, faults)."""
    return problem_response(status, ApiError(status, detail, title=title, **extra).body(), headers)
