"""Errors in the OpenAI shape: ``{"error": {"message", "type", "param", "code"}}`` with a fitting status."""

from __future__ import annotations

from aiohttp import web

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    502: "server_error",
    503: "server_error",
}


def error_body(message: str, status: int, *, code: str | None = None, param: str | None = None,
               type: str | None = None) -> dict:
    kind = type or _TYPES.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    retry_after: int | None = None,
    type: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    headers = dict(headers or {})
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return web.json_response(error_body(message, status, code=code, param=param, type=type), status=status,
                             headers=headers or None)


class ApiError(Exception):
    """Raised inside a handler; the error middleware turns it into an OpenAI-shaped response."""

    def __init__(
        self, status: int, message: str, *, code: str | None = None, param: str | None = None,
        retry_after: int | None = None, type: str | None = None, headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.retry_after = retry_after
        self.type = type
        self.headers = headers

    def response(self) -> web.Response:
        return error_response(self.status, self.message, code=self.code, param=self.param,
                              retry_after=self.retry_after, type=self.type, headers=self.headers)
