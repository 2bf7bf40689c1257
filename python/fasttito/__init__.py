"""fasttito: exact, fast multi-turn token-in/token-out (TITO) LLM requests for RL rollouts."""

from __future__ import annotations

from fasttito._core import ParsedResponse as ParsedResponse
from fasttito._core import PendingBridge as PendingBridge
from fasttito._core import Plan as Plan
from fasttito._core import Tokenizer as Tokenizer
from fasttito._core import __version__ as __version__
from fasttito._core import parse_response as parse_response
from fasttito.client import Client as Client
from fasttito.client import ClientRollout as ClientRollout
from fasttito.client import Turn as Turn
from fasttito.errors import ArgumentError as ArgumentError
from fasttito.errors import ConfigError as ConfigError
from fasttito.errors import DeadlineExceededError as DeadlineExceededError
from fasttito.errors import EngineAbortError as EngineAbortError
from fasttito.errors import EventLoopError as EventLoopError
from fasttito.errors import FasttitoError as FasttitoError
from fasttito.errors import IdBufferError as IdBufferError
from fasttito.errors import IdIndexError as IdIndexError
from fasttito.errors import InvalidTokenIdError as InvalidTokenIdError
from fasttito.errors import MessageError as MessageError
from fasttito.errors import OverlongPromptError as OverlongPromptError
from fasttito.errors import RequestTimeoutError as RequestTimeoutError
from fasttito.errors import ResponseParseError as ResponseParseError
from fasttito.errors import ResponseTooLargeError as ResponseTooLargeError
from fasttito.errors import RolloutLimitError as RolloutLimitError
from fasttito.errors import ServerError as ServerError
from fasttito.errors import TemplateError as TemplateError
from fasttito.errors import TemplateLimitError as TemplateLimitError
from fasttito.errors import TokenizationError as TokenizationError
from fasttito.errors import TokenizerLoadError as TokenizerLoadError
from fasttito.errors import TransportError as TransportError
from fasttito.errors import UnsupportedRouteError as UnsupportedRouteError
from fasttito.metrics import metrics as metrics
from fasttito.metrics import reset_metrics as reset_metrics
from fasttito.rollout import Rollout as Rollout
from fasttito.rollout import Sample as Sample
from fasttito.rollout import TrajectoryError as TrajectoryError
from fasttito.tokens import TokenIds as TokenIds
from fasttito.trajectory import TrajectoryRollouts as TrajectoryRollouts

__all__ = [
    "ArgumentError",
    "Client",
    "ClientRollout",
    "ConfigError",
    "DeadlineExceededError",
    "EngineAbortError",
    "EventLoopError",
    "FasttitoError",
    "IdBufferError",
    "IdIndexError",
    "InvalidTokenIdError",
    "MessageError",
    "OverlongPromptError",
    "ParsedResponse",
    "PendingBridge",
    "Plan",
    "RequestTimeoutError",
    "ResponseParseError",
    "ResponseTooLargeError",
    "Rollout",
    "RolloutLimitError",
    "Sample",
    "ServerError",
    "TemplateError",
    "TemplateLimitError",
    "TokenIds",
    "TokenizationError",
    "Tokenizer",
    "TokenizerLoadError",
    "TrajectoryError",
    "TrajectoryRollouts",
    "TransportError",
    "Turn",
    "UnsupportedRouteError",
    "__version__",
    "metrics",
    "parse_response",
    "reset_metrics",
]
