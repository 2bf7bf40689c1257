"""The exception tree of fasttito.

Every error fasttito raises is a :class:`FasttitoError`. Each leaf also subclasses the nearest
builtin (orjson's habit), so ``except ValueError`` keeps working for callers who do not know
fasttito. The Rust core raises these same classes (``rust/py/errors.rs`` imports them).
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "ConfigError",
    "DeadlineExceededError",
    "EventLoopError",
    "FasttitoError",
    "IdBufferError",
    "IdIndexError",
    "MessageError",
    "OverlongPromptError",
    "RequestTimeoutError",
    "ResponseParseError",
    "ResponseTooLargeError",
    "RolloutLimitError",
    "ServerError",
    "TemplateError",
    "TemplateLimitError",
    "TokenizationError",
    "TokenizerLoadError",
    "TransportError",
    "UnsupportedRouteError",
]


class FasttitoError(Exception):
    """Base class of every error fasttito raises."""


class TokenizerLoadError(FasttitoError, OSError):
    """A model folder could not be loaded: a file is missing, too large or malformed."""


class TemplateError(FasttitoError, ValueError):
    """A chat template failed to compile or render, or rejected the conversation.

    Raised where ``transformers.apply_chat_template`` raises. When the template itself calls
    ``raise_exception(message)``, the exception's text is the template's own message.
    """


class TemplateLimitError(TemplateError):
    """A chat template exceeded its render budget (time and memory fuel, or recursion).

    Templates are untrusted input: one that loops or allocates without bound stops here instead
    of hanging the process. Raise ``template_fuel`` in ``Tokenizer.from_dir`` only for
    conversations that are legitimately that large.
    """


class MessageError(TemplateError, TypeError):
    """Messages, tools or template variables are not the JSON-like data a template takes.

    For example a message that is not a dict or Pydantic model, a dict key that is not a string,
    or a float that JSON cannot hold (NaN, infinity).
    """


class TokenizationError(FasttitoError, ValueError):
    """Encoding or decoding failed, e.g. an id outside the vocabulary."""


class ResponseParseError(FasttitoError, ValueError):
    """A server response is malformed: not JSON, too large or too deep, token ids missing or out
    of range, or logprobs not 1:1 with the ids. Never a shorter list or a silent default."""


class ResponseTooLargeError(ResponseParseError):
    """A response body is longer than ``max_body_bytes``; it was not read to the end."""


class RolloutLimitError(FasttitoError, ValueError):
    """A rollout grew past a configured bound: more messages than ``max_rollout_messages`` or a
    prompt longer than ``max_rollout_tokens`` ids. Raised before anything is sent.

    Attributes:
        limit: the name of the setting that was exceeded (``"max_rollout_messages"`` or
            ``"max_rollout_tokens"``), as accepted by ``Client`` and ``Rollout``.
        value: what the rollout had.
        maximum: the configured bound.
    """

    def __init__(self, message: str, *, limit: str, value: int, maximum: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value
        self.maximum = maximum

    def __reduce__(self) -> tuple[object, ...]:
        return (_make_rollout_limit, (str(self), self.limit, self.value, self.maximum))


def _make_rollout_limit(message: str, limit: str, value: int, maximum: int) -> RolloutLimitError:
    return RolloutLimitError(message, limit=limit, value=value, maximum=maximum)


class ArgumentError(FasttitoError, ValueError):
    """An argument of a fasttito call has the wrong type, shape or value (a ``sampling`` that is
    not a dict, a request kind fasttito does not write, a ``TokenIds`` lookup of an id it does
    not hold...). The message names the argument and what is accepted."""


class IdIndexError(FasttitoError, IndexError):
    """A ``TokenIds`` index out of range (raised like ``list``'s: the sequence protocol holds)."""


class IdBufferError(FasttitoError, BufferError):
    """A writable buffer was asked of a read-only ``TokenIds``."""


class EventLoopError(FasttitoError, RuntimeError):
    """A ``fasttito.Client`` was used from an event loop other than the one its HTTP session
    was opened on: create one Client per event loop."""


class ConfigError(FasttitoError, ValueError):
    """A client setting is invalid: an unknown transport name, a transport that needs a local
    tokenizer without one, a malformed ``base_url``... The message lists what is accepted."""


class TransportError(FasttitoError, ConnectionError):
    """The HTTP exchange failed below the protocol: connection refused or reset, the server
    closed the connection, or the body ended early. Raised after ``max_retries`` retries."""


class RequestTimeoutError(TransportError, TimeoutError):
    """An HTTP attempt took longer than ``timeout`` seconds. Raised after ``max_retries``
    retries.

    Attributes (set when the Client raises it; 0 and ``""`` when a bare Poster does):
        attempt: the attempt that timed out, from 1.
        attempts: the most attempts the request could make (``max_retries + 1``).
        waiting_for: what that attempt was waiting for when its time ran out:
            ``"connection"`` (a free pooled connection or a new one), ``"headers"`` (the
            status line and headers; with httpx this includes the connection), ``"body"``
            (the rest of the body after the headers), ``"response"`` (a Poster that does not
            say), or, for :class:`DeadlineExceededError` only, ``"backoff"`` (the pause before
            a retry), ``"start"`` (the call's earlier requests used its time up) and
            ``"probe"`` / ``"model_info"`` (another call's ``transport="auto"`` probe or
            ``GET /v1/models``, which this call waited on).
    """

    def __init__(
        self, message: str, *, attempt: int = 0, attempts: int = 0, waiting_for: str = ""
    ) -> None:
        super().__init__(message)
        self.attempt = attempt
        self.attempts = attempts
        self.waiting_for = waiting_for

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _make_request_timeout,
            (type(self), str(self), self.attempt, self.attempts, self.waiting_for),
        )


def _make_request_timeout(
    cls: type[RequestTimeoutError], message: str, attempt: int, attempts: int, waiting_for: str
) -> RequestTimeoutError:
    return cls(message, attempt=attempt, attempts=attempts, waiting_for=waiting_for)


class DeadlineExceededError(RequestTimeoutError):
    """A call ran out of its time: the ``deadline=`` given to ``rollout.generate``, or the
    Client's own bound :attr:`fasttito.Client.max_call_seconds` (``timeout * (max_retries +
    1)`` plus the backoff sum), which a call of several requests (remote ``/tokenize``, the
    ``auto`` probe, ``GET /v1/models``) shares. Raised at the deadline, whatever the call was
    doing: an attempt in flight is abandoned (its connection closed), a backoff cut short.
    Also a :class:`RequestTimeoutError` and so a ``TimeoutError``.

    Attributes (besides ``attempt``, ``attempts`` and ``waiting_for``):
        deadline: the seconds the call was allowed.
        elapsed: the seconds the call had run when it stopped.
    """

    def __init__(
        self,
        message: str,
        *,
        attempt: int = 0,
        attempts: int = 0,
        waiting_for: str = "",
        deadline: float = 0.0,
        elapsed: float = 0.0,
    ) -> None:
        super().__init__(message, attempt=attempt, attempts=attempts, waiting_for=waiting_for)
        self.deadline = deadline
        self.elapsed = elapsed

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _make_deadline,
            (
                str(self),
                self.attempt,
                self.attempts,
                self.waiting_for,
                self.deadline,
                self.elapsed,
            ),
        )


def _make_deadline(
    message: str, attempt: int, attempts: int, waiting_for: str, deadline: float, elapsed: float
) -> DeadlineExceededError:
    return DeadlineExceededError(
        message,
        attempt=attempt,
        attempts=attempts,
        waiting_for=waiting_for,
        deadline=deadline,
        elapsed=elapsed,
    )


class ServerError(FasttitoError):
    """The server answered with an HTTP error status.

    Attributes:
        status_code: the HTTP status.
        transport: the fasttito transport that sent the request.
        url: the URL, without credentials or query string.
        body: the start of the response body (at most 2000 characters), with any credential the
            client was configured with replaced by ``<redacted>``.

    4xx answers are never retried (the request itself is wrong); 502/503/504 are retried
    ``max_retries`` times first.
    """

    def __init__(
        self, message: str, *, status_code: int, transport: str, url: str = "", body: str = ""
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.transport = transport
        self.url = url
        self.body = body

    def __reduce__(self) -> tuple[object, ...]:  # picklable with its keyword-only fields
        return (
            _make_server_error,
            (str(self), self.status_code, self.transport, self.url, self.body),
        )


class UnsupportedRouteError(ServerError):
    """The server has no such route, or has it switched off: a 404 or 405, or vLLM's 403 on
    ``/inference/v1/generate`` when it was started without ``--enable-scale-out``. The message
    names the flag to start the server with, or the transport to use instead."""

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _make_unsupported_route,
            (str(self), self.status_code, self.transport, self.url, self.body),
        )


def _make_unsupported_route(
    message: str, status_code: int, transport: str, url: str, body: str
) -> UnsupportedRouteError:
    return UnsupportedRouteError(
        message, status_code=status_code, transport=transport, url=url, body=body
    )


def _make_server_error(
    message: str, status_code: int, transport: str, url: str, body: str
) -> ServerError:
    return ServerError(message, status_code=status_code, transport=transport, url=url, body=body)


class OverlongPromptError(FasttitoError, ValueError):
    """The prompt has ``prompt_tokens`` >= the server's ``max_model_len`` (from ``GET
    /v1/models``); raised before sending, since the server would reject it (vLLM: a 400)."""

    def __init__(self, message: str, *, prompt_tokens: int, max_model_len: int) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.max_model_len = max_model_len

    def __reduce__(self) -> tuple[object, ...]:
        return (_make_overlong, (str(self), self.prompt_tokens, self.max_model_len))


def _make_overlong(message: str, prompt_tokens: int, max_model_len: int) -> OverlongPromptError:
    return OverlongPromptError(message, prompt_tokens=prompt_tokens, max_model_len=max_model_len)
