"""Conversations recovered from ids alone (``/inference/v1/generate``, SGLang's ``/generate``).

Every full completion (any route) is stored (LRU, ``--prefix-store-size``) as
``prompt_ids + completion_ids`` -> (conversation incl. the scripted assistant, tools, template
kwargs). An ids-only request is resolved by:

1. the longest stored sequence that prefixes ``token_ids`` (looked up only at positions right
   after a stop token); the rest is decoded and matched against the template's render of the
   allowed tails (the tool results of the stored assistant's calls, optionally then one user
   message; or one user message), with placeholder contents turned into regex groups, which
   recovers the new messages and their text;
2. otherwise the whole prompt is matched the same way against ``[user]`` and ``[system, user]``
   rendered with the script's ``tools`` (default ``[get_weather]``) or no tools, and the script's
   ``chat_template_kwargs``.

Anything else (e.g. a truncated previous turn, an unknown tool list) is a 500
``ids_not_understood`` naming what to set. Supported: the tool-agent loop for history-stable
templates (see ``docs/models.md``: qwen2.5, llama-3.2 single calls, qwen3 with reasoning on every
turn, mistral-nemo tool-only tails).
"""

from __future__ import annotations

import hashlib
import re
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from fasttito.testing.vllm_engine.errors import script_error
from fasttito.testing.vllm_engine.model import Model, TemplateFailure
from fasttito.testing.vllm_engine.script import DEFAULT_TOOL, Script, function_of

__all__ = ["PrefixStore", "StoredTurn", "resolve_ids"]

MARKER = "QQMARK{}QQ"
MARKER_RE = re.compile(r"QQMARK(\d+)QQ")


@dataclass
class StoredTurn:
    conv: list[dict[str, Any]]  # ends with the scripted assistant message
    tools: list[Any] | None
    ctk: dict[str, Any]


def _digest_at_cuts(ids: list[int], cuts: list[int]) -> list[bytes]:
    """blake2b digests of ids[:cut] for every cut (ascending), in one pass over the ids."""
    h = hashlib.blake2b(digest_size=16)
    out, done = [], 0
    for cut in cuts:
        h.update(array("q", ids[done:cut]).tobytes())
        done = cut
        out.append(h.copy().digest())
    return out


class PrefixStore:
    """prompt + completion ids (as a digest) -> the conversation they render; LRU-bounded."""

    def __init__(self, stop_set: frozenset[int], max_entries: int = 8192) -> None:
        self.stop_set = stop_set
        self.entries: OrderedDict[bytes, StoredTurn] = OrderedDict()
        self.max_entries = max_entries

    def add(self, ids: list[int], turn: StoredTurn) -> None:
        if not ids or ids[-1] not in self.stop_set or self.max_entries <= 0:
            return  # truncated turns are never bridged from
        key = _digest_at_cuts(ids, [len(ids)])[0]
        self.entries[key] = turn
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)

    def lookup(self, ids: list[int]) -> tuple[int, StoredTurn] | None:
        cuts = [i + 1 for i, t in enumerate(ids[:-1]) if t in self.stop_set]
        for cut, key in reversed(list(zip(cuts, _digest_at_cuts(ids, cuts), strict=True))):
            hit = self.entries.get(key)
            if hit is not None:
                self.entries.move_to_end(key)
                return cut, hit
        return None

    def clear(self) -> None:
        self.entries.clear()


def _pattern(template_text: str) -> re.Pattern[str]:
    parts = MARKER_RE.split(template_text)
    out, seen = [], set()
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(re.escape(part))
        elif part in seen:
            out.append(f"(?P=m{part})")
        else:
            seen.add(part)
            out.append(f"(?P<m{part}>.*?)")
    return re.compile("".join(out), re.DOTALL)


def _fill(tail: list[dict[str, Any]], match: re.Match[str]) -> list[dict[str, Any]]:
    out = []
    for m in tail:
        m = dict(m)
        found = MARKER_RE.fullmatch(str(m.get("content", "")))
        if found:
            m["content"] = match.group(f"m{found.group(1)}")
        out.append(m)
    return out


def resolve_ids(
    model: Model, store: PrefixStore, script: Script, ids: list[int]
) -> tuple[list[dict[str, Any]], list[Any] | None, dict[str, Any], dict[str, Any]]:
    """(conversation, tools, template kwargs, how) for a prompt given as ids only."""
    hit = store.lookup(ids)
    if hit is not None:
        cut, prev = hit
        bridge = model.decode(ids[cut:])
        try:
            before = model.render(prev.conv, prev.tools, add_generation_prompt=False, ctk=prev.ctk)
        except TemplateFailure as exc:
            raise script_error(
                "ids_not_understood", f"stored conversation re-render: {exc}"
            ) from exc
        stop_str = model.stop_strs.get(ids[cut - 1], "")
        anchor = before.rfind(stop_str) + len(stop_str) if stop_str in before else -1
        last = prev.conv[-1]
        call_ids = [tc.get("id") for tc in last.get("tool_calls") or []]
        tails: list[list[dict[str, Any]]] = []
        if call_ids:
            tools_tail = [
                {"role": "tool", "tool_call_id": cid, "content": MARKER.format(i)}
                for i, cid in enumerate(call_ids)
            ]
            tails.append(tools_tail)
            tails.append([*tools_tail, {"role": "user", "content": MARKER.format(len(call_ids))}])
        tails.append([{"role": "user", "content": MARKER.format(0)}])
        if anchor >= 0:
            for tail in tails:
                try:
                    full = model.render(
                        prev.conv + tail, prev.tools, add_generation_prompt=True, ctk=prev.ctk
                    )
                except TemplateFailure:
                    continue
                if not full.startswith(before[:anchor]):
                    continue
                m = _pattern(full[anchor:]).fullmatch(bridge)
                if m:
                    how = {
                        "from": "prefix",
                        "prefix_len": cut,
                        "tail_roles": [t["role"] for t in tail],
                    }
                    return prev.conv + _fill(tail, m), prev.tools, prev.ctk, how
        raise script_error(
            "ids_not_understood",
            f"token_ids[:{cut}] is a previous completion of this engine, but the remaining "
            f"{len(ids) - cut} ids ({bridge[:120]!r}...) are not the template's rendering of "
            f"tool results for {call_ids} (optionally + one user message) or of one user message",
        )
    text = model.decode(ids)
    tool_options = [script.tools if script.tools is not None else [DEFAULT_TOOL], None]
    convs = [
        [{"role": "user", "content": MARKER.format(0)}],
        [
            {"role": "system", "content": MARKER.format(0)},
            {"role": "user", "content": MARKER.format(1)},
        ],
    ]
    for tools in tool_options:
        for conv in convs:
            try:
                full = model.render(
                    conv, tools, add_generation_prompt=True, ctk=script.chat_template_kwargs
                )
            except TemplateFailure:
                continue
            m = _pattern(full).fullmatch(text)
            if m:
                how = {"from": "fresh", "tail_roles": [c["role"] for c in conv]}
                how["tools"] = (
                    None if tools is None else [(function_of(t) or {}).get("name") for t in tools]
                )
                return _fill(conv, m), tools, dict(script.chat_template_kwargs), how
    raise script_error(
        "ids_not_understood",
        "no previous completion of this engine prefixes token_ids (looked up after each stop "
        "token), and the decoded prompt is not [user] or [system, user] rendered with the "
        'script\'s tools or no tools; set POST /_admin/script {"tools": [...], '
        '"chat_template_kwargs": {...}} to what the client renders with. Decoded prompt '
        f"starts {text[:160]!r}",
    )
