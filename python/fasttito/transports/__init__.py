"""One module per transport (docs/transports.md); ``TRANSPORT_CLASSES`` maps each id to
its class. ``auto`` is resolved by :meth:`fasttito.Client.probe`."""

from __future__ import annotations

from fasttito.transports._base import Transport, Turn
from fasttito.transports.chat import ChatTransport
from fasttito.transports.dynamo_nvext import DynamoNvextTransport
from fasttito.transports.vllm_chat_tokens import VllmChatTokensTransport
from fasttito.transports.vllm_generate import VllmGenerateTransport

__all__ = [
    "TRANSPORT_CLASSES",
    "ChatTransport",
    "DynamoNvextTransport",
    "Transport",
    "Turn",
    "VllmChatTokensTransport",
    "VllmGenerateTransport",
]

TRANSPORT_CLASSES: dict[str, type[Transport]] = {
    "vllm-generate": VllmGenerateTransport,
    "vllm-chat-tokens": VllmChatTokensTransport,
    "dynamo-nvext": DynamoNvextTransport,
    "chat": ChatTransport,
}
