"""fasttito: exact, fast multi-turn token-in/token-out (TITO) LLM requests for RL rollouts."""

from __future__ import annotations

from fasttito._core import Tokenizer as Tokenizer
from fasttito._core import __version__ as __version__
from fasttito.errors import FasttitoError as FasttitoError
from fasttito.errors import MessageError as MessageError
from fasttito.errors import TemplateError as TemplateError
from fasttito.errors import TemplateLimitError as TemplateLimitError
from fasttito.errors import TokenizationError as TokenizationError
from fasttito.errors import TokenizerLoadError as TokenizerLoadError

__all__ = [
    "FasttitoError",
    "MessageError",
    "TemplateError",
    "TemplateLimitError",
    "TokenizationError",
    "Tokenizer",
    "TokenizerLoadError",
    "__version__",
]
