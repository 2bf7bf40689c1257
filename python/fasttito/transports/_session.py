"""The one seam between a transport and whoever drives it.

A transport needs a handful of things from its caller: where to send (the configuration's URLs
and limits), what to send with (the model name, the tokenizer, the stop ids), how to send (one
POST that returns the success body or raises a typed error) and the server's prompt-length
check. :class:`Session` names exactly those. :class:`fasttito.Client` hands its transports a
session over its own HTTP client and retries; ``fasttito.verifiers`` hands the same transport
classes a session over the verifiers client's HTTP path. Nothing else of either caller is
visible to a transport.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from fasttito import _core
    from fasttito.config import ClientConfig

__all__ = ["Session"]


class Session(Protocol):
    """What a transport reads and calls: see the module documentation."""

    @property
    def config(self) -> ClientConfig:
        """URLs (``root_url``, ``v1_url``), body and depth limits, rollout bounds, and the
        transport settings (``dynamo_first_turn``)."""

    @property
    def model(self) -> str:
        """The served model name written into every body."""

    @property
    def tokenizer(self) -> _core.Tokenizer | None:
        """The local tokenizer (renders prompts and bridges; checks ids against its vocabulary),
        or None."""

    @property
    def stop_token_ids(self) -> list[int] | None:
        """The ids a turn may end on, sent where the wire takes them."""

    @property
    def verify(self) -> bool:
        """Re-render every TITO prompt in full and compare (costs a render per turn)."""

    @property
    def chat_target(self) -> str:
        """Which keys a plain chat body may carry: ``"vllm"``, ``"dynamo"`` or ``"openai"``."""

    async def post(
        self, url: str, body: bytes, transport: str, headers: Mapping[str, str] | None
    ) -> bytes:
        """POST ``body`` (JSON bytes, sent as they are) with the conversation's ``headers``
        added; the success body, or a typed :class:`fasttito.errors.FasttitoError`."""

    async def prompt_limit(self) -> int | None:
        """The server's context length when the length check is on and the server reports one."""

    async def check_prompt_length(self, n: int, transport: str) -> None:
        """Raise :class:`fasttito.errors.OverlongPromptError` when ``n`` prompt ids would not fit
        the server's context, before anything is sent."""
