"""The exception tree of fasttito.

Every error fasttito raises is a :class:`FasttitoError`. Each leaf also subclasses the nearest
builtin (orjson's habit), so ``except ValueError`` keeps working for callers who do not know
fasttito. The Rust core raises these same classes (``rust/py/errors.rs`` imports them).
"""

from __future__ import annotations

__all__ = [
    "FasttitoError",
    "MessageError",
    "ResponseParseError",
    "TemplateError",
    "TemplateLimitError",
    "TokenizationError",
    "TokenizerLoadError",
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
