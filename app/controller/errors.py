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
    502: "server_error",
    503: "server_error",
}


def error_body(message: str, status: int, *, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": _TYPES.get(status, "server_error"), "param": param, "code": code}}


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    retry_after: int | None = None,
) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.json_response(error_body(message, status, code=code, param=param), status=status, headers=headers)


class ApiError(Exception):
    """Raised inside a handler; the error middleware turns it into an OpenAI-shaped response."""

    def __init__(
        self, status: int, message: str, *, code: str | None = None, param: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.retry_after = retry_after

    def response(self) -> web.Response:
        return error_response(
            self.status, self.message, code=self.code, param=self.param, retry_after=self.retry_after
        )
