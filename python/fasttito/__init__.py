"""fasttito: exact, fast multi-turn token-in/token-out (TITO) LLM requests for RL rollouts."""

from __future__ import annotations

from fasttito._core import PendingBridge as PendingBridge
from fasttito._core import Plan as Plan
from fasttito._core import ParsedResponse as ParsedResponse
from fasttito._core import Tokenizer as Tokenizer
from fasttito._core import parse_response as parse_response
from fasttito._core import __version__ as __version__
from fasttito.errors import FasttitoError as FasttitoError
from fasttito.errors import MessageError as MessageError
from fasttito.errors import ResponseParseError as ResponseParseError
from fasttito.errors import TemplateError as TemplateError
from fasttito.errors import TemplateLimitError as TemplateLimitError
from fasttito.errors import TokenizationError as TokenizationError
from fasttito.errors import TokenizerLoadError as TokenizerLoadError
from fasttito.metrics import metrics as metrics
from fasttito.metrics import reset_metrics as reset_metrics
from fasttito.rollout import Rollout as Rollout
from fasttito.tokens import TokenIds as TokenIds
from fasttito.trajectory import TrajectoryRollouts as TrajectoryRollouts

__all__ = [
    "FasttitoError",
    "MessageError",
    "ParsedResponse",
    "PendingBridge",
    "Plan",
    "ResponseParseError",
    "Rollout",
    "TemplateError",
    "TemplateLimitError",
    "TokenizationError",
    "TokenIds",
    "Tokenizer",
    "TokenizerLoadError",
    "TrajectoryRollouts",
    "__version__",
    "metrics",
    "parse_response",
    "reset_metrics",
]
