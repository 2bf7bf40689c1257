"""The model folder as the test engines use it: tokenizer, chat template, stop ids, with
caches of renders and encodings.

Rendering is ``apply_chat_template(tokenize=False)`` then ``tokenizer(text,
add_special_tokens=False)``, identical to ``tokenize=True``; it uses ``transformers`` when that
is importable (``--renderer``, see ``fasttito.testing.renderer``), so that no fasttito code
produces what the engine answers, and ``fasttito.Tokenizer`` otherwise.
"""

from __future__ import annotations

import argparse
import copy
import json
from collections import OrderedDict
from typing import Any

__all__ = ["KNOWN_STOP_STRINGS", "LRU", "Model", "TemplateFailure"]

KNOWN_STOP_STRINGS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<|call|>",
    "<|return|>",
    "</s>",
)
RESERVED_TEMPLATE_KWARGS = (
    "add_generation_prompt",
    "continue_final_message",
    "tokenize",
    "tools",
    "conversation",
    "messages",
    "documents",
    "return_dict",
)


class LRU:
    def __init__(self, size: int) -> None:
        self.size = size
        self.data: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:
        try:
            self.data.move_to_end(key)
            return self.data[key]
        except KeyError:
            return None

    def put(self, key: Any, value: Any) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.size:
            self.data.popitem(last=False)


class TemplateFailure(Exception):
    """apply_chat_template raised (raise_exception, undefined variable, type error...)."""


class Model:
    def __init__(
        self, model_dir: str, stop_token_ids: list[int] | None = None, renderer: str | None = None
    ) -> None:
        from fasttito.testing.renderer import load_renderer

        self.dir = model_dir
        self.tok, self.renderer = load_renderer(model_dir, renderer)
        self.vocab_size = len(self.tok)
        added = self.tok.get_added_vocab()
        if stop_token_ids:
            stops = list(stop_token_ids)
        else:
            stops = []
            if self.tok.eos_token_id is not None:
                stops.append(int(self.tok.eos_token_id))
            for s in KNOWN_STOP_STRINGS:
                if s in added and added[s] not in stops:
                    stops.append(int(added[s]))
        if not stops:
            raise SystemExit(f"{model_dir}: no eos token; pass --stop-token-id")
        self.stop_ids: list[int] = stops
        self.stop_set = frozenset(stops)
        self.stop_strs = {i: str(self.tok.convert_ids_to_tokens(i)) for i in stops}
        self._render_cache = LRU(4096)
        self._encode_cache = LRU(4096)
        self._tokstr: dict[int, str] = {}

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Model:
        """The model of an engine's command line (``--model``, ``--stop-token-id``,
        ``--renderer``)."""
        return cls(args.model, args.stop_token_id, args.renderer)

    # -- text <-> ids -------------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        key = (text, add_special_tokens)
        hit = self._encode_cache.get(key)
        if hit is None:
            hit = list(self.tok(text, add_special_tokens=add_special_tokens)["input_ids"])
            self._encode_cache.put(key, hit)
        return list(hit)

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return str(
            self.tok.decode(
                ids, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False
            )
        )

    def token_text(self, token_id: int) -> str:
        s = self._tokstr.get(token_id)
        if s is None:
            s = self.decode([token_id]) if 0 <= token_id < self.vocab_size else ""
            self._tokstr[token_id] = s
        return s

    # -- chat template ------------------------------------------------------------------------
    def render(
        self,
        messages: list[dict[str, Any]],
        tools: list[Any] | None,
        *,
        add_generation_prompt: bool,
        continue_final_message: bool = False,
        ctk: dict[str, Any] | None = None,
    ) -> str:
        kwargs = {k: v for k, v in (ctk or {}).items() if k not in RESERVED_TEMPLATE_KWARGS}
        key = json.dumps(
            [messages, tools, add_generation_prompt, continue_final_message, kwargs],
            sort_keys=True,
            default=str,
        )
        hit = self._render_cache.get(key)
        if hit is not None:
            if isinstance(hit, TemplateFailure):
                raise hit
            return str(hit)
        try:
            text = self.tok.apply_chat_template(
                copy.deepcopy(messages),
                tools=copy.deepcopy(tools) if tools is not None else None,
                add_generation_prompt=add_generation_prompt,
                continue_final_message=continue_final_message,
                tokenize=False,
                **kwargs,
            )
        except Exception as exc:  # jinja errors, raise_exception, TypeError ...
            failure = TemplateFailure(f"{type(exc).__name__}: {exc}")
            self._render_cache.put(key, failure)
            raise failure from exc
        if not isinstance(text, str):
            raise TemplateFailure(f"apply_chat_template returned {type(text).__name__}")
        self._render_cache.put(key, text)
        return text
