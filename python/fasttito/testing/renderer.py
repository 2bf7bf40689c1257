"""The tokenizer a test engine renders with: transformers when it can be imported, else fasttito.

The engines in :mod:`fasttito.testing` need a small part of a ``transformers`` tokenizer:
``apply_chat_template(..., tokenize=False)``, calling it on text, ``decode``,
``convert_ids_to_tokens``, the added vocabulary and the special ids. :func:`load_renderer`
returns one:

* ``"transformers"``: ``AutoTokenizer.from_pretrained(model_dir)``, the independent oracle that
  fasttito's own tests use (an engine that rendered with fasttito could not catch fasttito's
  rendering bugs);
* ``"fasttito"``: :class:`FasttitoRenderer`, the same surface over :class:`fasttito.Tokenizer`
  (byte-identical renders for the supported model families, proven by the parity suite), so
  ``fasttito demo`` and users' own tests run from an installed wheel without transformers;
* ``"auto"`` (the default, or the ``FASTTITO_ENGINE_RENDERER`` environment variable):
  transformers when importable, else fasttito.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RENDERERS", "RENDERER_ENV", "FasttitoRenderer", "load_renderer", "resolve_renderer"]

RENDERERS = ("auto", "transformers", "fasttito")
RENDERER_ENV = "FASTTITO_ENGINE_RENDERER"


def resolve_renderer(name: str | None = None) -> str:
    """``"transformers"`` or ``"fasttito"``: ``name`` (or ``$FASTTITO_ENGINE_RENDERER``, or
    ``"auto"``) with ``auto`` resolved by whether transformers can be imported."""
    name = name or os.environ.get(RENDERER_ENV) or "auto"
    if name not in RENDERERS:
        raise ValueError(f"renderer must be one of {', '.join(RENDERERS)}, got {name!r}")
    if name == "auto":
        try:  # imported, not just found: a broken install falls back too
            import transformers  # noqa: F401
        except ImportError:
            return "fasttito"
        return "transformers"
    return name


def load_renderer(model_dir: str | os.PathLike[str], name: str | None = None) -> tuple[Any, str]:
    """``(tokenizer, renderer name)`` for ``model_dir``; see the module docstring."""
    chosen = resolve_renderer(name)
    if chosen == "transformers":
        import transformers

        transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        return transformers.AutoTokenizer.from_pretrained(str(model_dir)), chosen
    return FasttitoRenderer(model_dir), chosen


@dataclass(frozen=True)
class AddedToken:
    """What an engine reads of ``tokenizer.added_tokens_decoder[id]``."""

    content: str
    special: bool


class FasttitoRenderer:
    """The part of a ``transformers`` tokenizer the test engines use, over
    ``fasttito.Tokenizer``."""

    def __init__(self, model_dir: str | os.PathLike[str]) -> None:
        from fasttito import Tokenizer

        self._tok = Tokenizer.from_dir(model_dir)
        self.name_or_path = str(model_dir)
        # The added tokens, as tokenizer.json lists them (transformers' get_added_vocab()).
        raw = json.loads((Path(model_dir) / "tokenizer.json").read_text(encoding="utf-8"))
        self.added_tokens_decoder: dict[int, AddedToken] = {
            int(t["id"]): AddedToken(str(t["content"]), bool(t.get("special", False)))
            for t in raw.get("added_tokens") or []
        }
        self.eos_token: str | None = self._tok.eos_token
        self.eos_token_id: int | None = (
            self._tok.token_to_id(self.eos_token) if self.eos_token is not None else None
        )
        named = [self._tok.token_to_id(t) for t in self._tok.special_tokens.values()]
        self.all_special_ids: list[int] = sorted({i for i in named if i is not None})

    def __len__(self) -> int:
        return self._tok.vocab_size

    def get_added_vocab(self) -> dict[str, int]:
        return {t.content: i for i, t in self.added_tokens_decoder.items()}

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": self._tok.encode(text, add_special_tokens=add_special_tokens)}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self._tok.encode(text, add_special_tokens=add_special_tokens)

    def decode(
        self,
        ids: Sequence[int],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool = False,
    ) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> Any:
        if isinstance(ids, int):
            return self._tok.id_to_token(ids)
        return [self._tok.id_to_token(i) for i in ids]

    def apply_chat_template(
        self,
        conversation: list[dict[str, Any]],
        tools: list[Any] | None = None,
        *,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        tokenize: bool = True,
        **kwargs: Any,
    ) -> Any:
        if tokenize:
            return self._tok.apply_chat_template(
                conversation,
                tools=tools,
                add_generation_prompt=add_generation_prompt,
                continue_final_message=continue_final_message,
                **kwargs,
            )
        return self._tok.apply_chat_template(
            conversation,
            tools=tools,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message,
            tokenize=False,
            **kwargs,
        )
