"""Template-exact completions: the scripted assistant turn as the chat template renders it.

For the conversation ``conv`` the script chooses an assistant message ``asst``; then::

    prefix = render(conv, add_generation_prompt=True)
    full   = render(conv + [asst], add_generation_prompt=False)
    require full.startswith(prefix)
    turn   = full[len(prefix):] up to and including the first stop-token string
    ids    = encode(prefix + turn)[len(encode(prefix)):]      (checked to extend encode(prefix))

so the completion is the assistant turn exactly as the template renders it, ending in the stop
token (the eos token, plus ``<|im_end|> <|endoftext|> <|eot_id|> <|eom_id|> <|end_of_text|>
<|call|> <|return|> </s>`` where they are added tokens; ``--stop-token-id`` overrides). When an
assumption fails the engine answers 500 ``{"error": {..., "type": "TestEngineError",
"reason": R}}`` rather than wrong ids; R is one of ``template_rejected_scripted_message``,
``not_prefix_stable``, ``no_stop_token_in_rendered_turn``, ``token_boundary_merge``,
``history_unstable`` (only with ``strict_stability``), ``ids_not_understood`` (ids-only
routes, ``fasttito.testing.vllm_engine.prefix``). Every completion is also checked for
history stability (the next turn's render must start with ``prefix + turn``); the result is in
``/_admin/requests`` (``history_stable``).

Logprobs are deterministic pseudo-random negative floats of (token id, absolute position)
(``fake_logprob``); ``top_logprobs`` lists the sampled token first.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from fasttito.testing.vllm_engine.errors import bad_request, script_error
from fasttito.testing.vllm_engine.model import Model, TemplateFailure
from fasttito.testing.vllm_engine.script import Script

__all__ = ["Completion", "build_completion", "fake_logprob"]


@dataclass
class Completion:
    ids: list[int]
    message: dict[str, Any]  # render form (arguments are objects)
    stable: bool
    stable_detail: str | None


def _first_difference(a: str, b: str) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _next_messages(asst: dict[str, Any]) -> list[dict[str, Any]]:
    """What could follow ``asst`` in a TITO loop (used for the stability check)."""
    calls = asst.get("tool_calls") or []
    if calls:
        return [
            {"role": "tool", "tool_call_id": tc.get("id", f"call{i:05d}"), "content": "ok"}
            for i, tc in enumerate(calls)
        ]
    return [{"role": "user", "content": "ok"}]


def build_completion(
    model: Model,
    script: Script,
    conv: list[dict[str, Any]],
    tools: list[Any] | None,
    ctk: dict[str, Any] | None,
) -> Completion:
    asst = script.choose(conv, tools)
    try:
        prefix = model.render(conv, tools, add_generation_prompt=True, ctk=ctk)
    except TemplateFailure as exc:
        raise bad_request(f"chat template failed on the request messages: {exc}") from exc
    try:
        full = model.render([*conv, asst], tools, add_generation_prompt=False, ctk=ctk)
    except TemplateFailure as exc:
        raise script_error(
            "template_rejected_scripted_message",
            f"the chat template raised on the scripted assistant message {asst!r}: {exc}",
        ) from exc
    if not full.startswith(prefix):
        i = _first_difference(prefix, full)
        raise script_error(
            "not_prefix_stable",
            "render(conv + [assistant]) does not start with render(conv, "
            f"add_generation_prompt=True); first difference at char {i}: "
            f"prompt {prefix[max(0, i - 40) : i + 40]!r} vs full {full[max(0, i - 40) : i + 40]!r}",
        )
    turn = full[len(prefix) :]
    ends = [(turn.find(s), s) for s in model.stop_strs.values() if s and turn.find(s) >= 0]
    if not ends:
        raise script_error(
            "no_stop_token_in_rendered_turn",
            f"the rendered assistant turn {turn[:200]!r} contains no stop token "
            f"{sorted(model.stop_strs.values())}",
        )
    pos, stop_str = min(ends)
    turn = turn[: pos + len(stop_str)]
    ids_prefix = model.encode(prefix)
    ids_all = model.encode(prefix + turn)
    if ids_all[: len(ids_prefix)] != ids_prefix:
        raise script_error(
            "token_boundary_merge",
            "encode(prompt + turn) does not extend encode(prompt): a BPE merge crosses the "
            f"prompt/turn boundary at {turn[:40]!r}",
        )
    ids = ids_all[len(ids_prefix) :]
    if not ids or ids[-1] not in model.stop_set:
        raise script_error(
            "no_stop_token_in_rendered_turn",
            f"the encoded turn does not end in a stop id {model.stop_ids}: {ids[-5:]}",
        )
    stable, detail = True, None
    nxt = [*conv, asst, *_next_messages(asst)]
    try:
        again = model.render(nxt, tools, add_generation_prompt=True, ctk=ctk)
        if not again.startswith(prefix + turn):
            i = _first_difference(prefix + turn, again)
            stable = False
            detail = (
                f"the next turn re-renders this one differently at char {i}: "
                f"{(prefix + turn)[max(0, i - 30) : i + 30]!r} vs "
                f"{again[max(0, i - 30) : i + 30]!r}"
            )
    except TemplateFailure as exc:
        stable, detail = False, f"the next turn does not render: {exc}"
    if not stable and script.strict_stability:
        raise script_error("history_unstable", detail or "history unstable")
    return Completion(ids=ids, message=asst, stable=stable, stable_detail=detail)


def fake_logprob(token_id: int, position: int) -> float:
    h = hashlib.blake2b(f"{token_id}:{position}".encode(), digest_size=8).digest()
    u = int.from_bytes(h, "little") / 2.0**64
    return -round(0.0005 + 3.0 * u**3, 6)
