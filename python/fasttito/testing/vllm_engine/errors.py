"""The vLLM engine's errors, answered in vLLM's ``ErrorResponse`` shape
``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from typing import Any

__all__ = ["ApiError", "bad_request", "script_error"]


class ApiError(Exception):
    """An HTTP error answered in vLLM's ``ErrorResponse`` shape."""

    def __init__(
        self, status: int, message: str, type_: str = "BadRequestError", **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.extra = extra

    def payload(self) -> dict[str, Any]:
        err = {"message": self.message, "type": self.type, "param": None, "code": self.status}
        err.update(self.extra)
        return {"error": err}


def script_error(reason: str, message: str) -> ApiError:
    """The scripted completion cannot be built without lying about the ids."""
    return ApiError(500, f"test engine: {message}", "TestEngineError", reason=reason)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, "BadRequestError")
