"""``fasttito doctor MODEL_DIR``: is token-in/token-out safe for this model's chat template?

For each conversation shape an agent produces (a tool result after a tool call, a tool result
then a user message, parallel calls, reasoning in the history, ``enable_thinking`` on and off
where the template has it), the doctor plays two turns through :class:`fasttito.Rollout` in
verify mode, the way an engine would serve them:

1. turn 1 is rendered with the generation prompt; the "sampled" completion is the assistant
   turn exactly as the template renders it, up to and including its stop token;
2. turn 2 appends the shape's new messages; the rollout matches turn 1, renders the bridge
   (the dual render of a dummy assistant with and without the new messages) and stitches
   ``turn-1 prompt + completion + gap + bridge``;
3. the stitched ids are compared with the template's full render of the whole conversation.

Outcomes per shape:

* ``exact``: stitched ids equal the full render;
* ``rewrites history``: they differ inside the earlier turns only (the template renders an
  earlier turn differently once more messages follow, e.g. Qwen3 drops old reasoning), while
  the new messages are rendered as the template renders them. TITO is right here (the engine
  sees exactly what it sampled); a trainer that re-renders would see other ids;
* ``falls back``: the rollout refuses TITO for this shape and sends messages (MITO), counted
  under its reason: safe, but no token reuse;
* ``unsupported``: the template itself rejects the shape;
* ``WRONG``: the stitched ids differ from the full render in the bridge: the new messages
  would reach the model as tokens its template never produces.

Exit code: 0 when TITO is safe for every shape, 1 when it would be wrong for one (or, with
``--strict``, when the template rewrites history), 2 when the folder cannot be loaded.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import fasttito
from fasttito import _core
from fasttito.cli._output import progress, text_table
from fasttito.cli._sample import TOOLS
from fasttito.errors import FasttitoError, TemplateError

__all__ = ["Shape", "ShapeResult", "add_parser", "diagnose", "run"]

SYSTEM = {"role": "system", "content": "You are a weather assistant."}
USER = {"role": "user", "content": "What is the weather in Paris and in Tokyo?"}
FOLLOW_UP = {"role": "user", "content": "Thanks. And in Lima?"}
REASONING = "The user wants the weather; I should call the tool."


def bridge_error(
    rollout: fasttito.Rollout, tok: fasttito.Tokenizer, conv: list[Any], ctk: dict[str, Any]
) -> str:
    """Why the bridge of ``conv`` could not be rendered: the template's own error on the two
    conversations fasttito renders for it (a dummy assistant turn, then the new messages)."""
    pending = rollout.begin(conv, TOOLS, ctk or None)
    if not isinstance(pending, fasttito.PendingBridge):
        return ""
    for messages, gen in ((pending.full_messages, True), (pending.base_messages, False)):
        try:
            tok.apply_chat_template(messages, tools=TOOLS, add_generation_prompt=gen, **ctk)
        except FasttitoError as exc:
            return f"; the template fails on the bridge: {type(exc).__name__}: {exc}"
    return ""


def _call(i: int, city: str) -> dict[str, Any]:
    # 9 alphanumerics: Mistral's template rejects other tool-call ids
    return {
        "id": f"call{i:05d}",
        "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": city}},
    }


def _result(i: int, city: str) -> dict[str, Any]:
    return {
        "role": "tool",
        "tool_call_id": f"call{i:05d}",
        "name": "get_weather",
        "content": json.dumps({"city": city, "temp_c": 18, "sky": "clear"}),
    }


@dataclass(frozen=True)
class Shape:
    """Turn 1's conversation, the assistant turn the engine samples, and turn 2's new messages."""

    name: str
    assistant: dict[str, Any]
    tail: list[dict[str, Any]]
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    system: bool = True


def shapes(template_text: str) -> list[Shape]:
    one_call = {"role": "assistant", "content": "", "tool_calls": [_call(1, "Paris")]}
    two_calls = {
        "role": "assistant",
        "content": "",
        "tool_calls": [_call(1, "Paris"), _call(2, "Tokyo")],
    }
    answer = {"role": "assistant", "content": "Paris: 18 C and clear."}
    out = [
        Shape("tool tail", one_call, [_result(1, "Paris")]),
        Shape("tool + user tail", one_call, [_result(1, "Paris"), FOLLOW_UP]),
        Shape("user tail after an answer", answer, [FOLLOW_UP]),
        Shape("parallel calls", two_calls, [_result(1, "Paris"), _result(2, "Tokyo")]),
        Shape(
            "reasoning, tool tail",
            {**one_call, "reasoning_content": REASONING},
            [_result(1, "Paris")],
        ),
        Shape(
            "reasoning, user tail",
            {**answer, "reasoning_content": REASONING},
            [FOLLOW_UP],
        ),
        # Mistral's template moves the system prompt to the last user turn
        Shape("tool tail, no system message", one_call, [_result(1, "Paris")], system=False),
        Shape("user tail, no system message", answer, [FOLLOW_UP], system=False),
    ]
    if "enable_thinking" in template_text:
        for on in (True, False):
            asst = {**one_call, "reasoning_content": REASONING} if on else one_call
            out.append(
                Shape(
                    f"enable_thinking={on}, tool tail",
                    asst,
                    [_result(1, "Paris")],
                    {"enable_thinking": on},
                )
            )
    return out


@dataclass
class ShapeResult:
    shape: str
    status: str  # exact | rewrites history | falls back | unsupported | WRONG
    mode: str | None = None
    fallback_reason: str | None = None
    prompt_tokens: int | None = None
    reused: int | None = None
    bridge: int | None = None
    gap: int | None = None
    deduped: bool | None = None
    first_diff: int | None = None
    stitched_context: str | None = None
    rendered_context: str | None = None
    detail: str = ""


def _template_text(model_dir: Path) -> str:
    parts = []
    for name in ("chat_template.jinja", "tokenizer_config.json", "chat_template.json"):
        path = model_dir / name
        if path.is_file() and path.stat().st_size < 64 << 20:
            parts.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(parts)


def _string_arguments(message: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(message)
    for call in out.get("tool_calls") or []:
        call["function"]["arguments"] = json.dumps(call["function"]["arguments"])
    return out


def diagnose_shape(
    tok: fasttito.Tokenizer, shape: Shape, stop_token_ids: list[int] | None = None
) -> ShapeResult:
    """Two turns of ``shape`` through a verify-mode rollout (see the module docstring)."""
    res = ShapeResult(shape.name, "unsupported")
    ctk = shape.chat_template_kwargs
    conv = [SYSTEM, USER] if shape.system else [USER]
    assistant = shape.assistant
    try:
        prefix = tok.apply_chat_template(
            conv, tools=TOOLS, add_generation_prompt=True, tokenize=False, **ctk
        )
        try:
            full = tok.apply_chat_template([*conv, assistant], tools=TOOLS, tokenize=False, **ctk)
        except TemplateError:
            if not assistant.get("tool_calls"):
                raise
            # DeepSeek's templates want the arguments as a JSON string
            assistant = _string_arguments(assistant)
            full = tok.apply_chat_template([*conv, assistant], tools=TOOLS, tokenize=False, **ctk)
        conv2 = [*conv, assistant, *shape.tail]
        rendered = tok.apply_chat_template(conv2, tools=TOOLS, add_generation_prompt=True, **ctk)
    except TemplateError as exc:
        res.detail = f"the template rejects this conversation: {exc}"
        return res
    if not full.startswith(prefix):
        at = next(
            (i for i, (a, b) in enumerate(zip(prefix, full, strict=False)) if a != b),
            min(len(prefix), len(full)),
        )
        res.status = "rewrites history"
        res.stitched_context = prefix[max(0, at - 40) : at] + "⟦" + prefix[at : at + 40] + "⟧"
        res.rendered_context = full[max(0, at - 40) : at] + "⟦" + full[at : at + 40] + "⟧"
        res.detail = (
            f"the template renders turn 1's prompt differently once the assistant's turn "
            f"follows (first difference at character {at}); TITO keeps the prompt the engine "
            "saw. The bridge was not checked: no engine output can be simulated for a prompt "
            "the template does not continue"
        )
        return res
    # The sampled completion: the template's rendering of the turn, up to its stop token.
    turn_text = full[len(prefix) :]
    stop_ids = stop_token_ids or tok.stop_token_ids
    stops = {s: i for i in stop_ids if (s := tok.id_to_token(i))}
    ends = [(turn_text.find(s), s) for s in stops if s in turn_text]
    if ends:
        at, stop = min(ends)
        turn_text = turn_text[: at + len(stop)]
    prefix_ids = tok.apply_chat_template(conv, tools=TOOLS, add_generation_prompt=True, **ctk)
    joined = tok.encode(prefix + turn_text)
    if joined[: len(prefix_ids)] == prefix_ids:
        completion = joined[len(prefix_ids) :]
    else:
        completion = tok.encode(turn_text)
    if not ends:
        res.detail = (
            f"the template ends the assistant turn without any of the stop tokens "
            f"{sorted(stops)} (it ends in {tok.decode(completion[-1:])!r}); an engine would "
            "not stop there unless that token is among the client's stop_token_ids. "
        )
    finish = "tool_calls" if assistant.get("tool_calls") else "stop"

    rollout = fasttito.Rollout(tok, stop_token_ids=stop_token_ids, verify=True)
    plan1 = rollout.prepare(conv, TOOLS, ctk or None)
    rollout.record(plan1, completion, assistant, finish_reason=finish)
    plan = rollout.prepare(conv2, TOOLS, ctk or None)
    res.mode, res.fallback_reason = plan.mode, plan.fallback_reason
    res.prompt_tokens = len(rendered)
    if plan.mode != "tito":
        res.status = "falls back"
        res.detail += f"TITO refused ({plan.fallback_reason}); the turn is sent as messages"
        if plan.fallback_reason == "tokenization_failed":
            res.detail += bridge_error(rollout, tok, conv2, ctk)
        return res
    stitched = plan.prompt_ids.tolist() if plan.prompt_ids is not None else []
    res.reused, res.bridge, res.gap, res.deduped = (
        plan.tokens_reused,
        plan.bridge_tokens,
        plan.gap,
        plan.deduped,
    )
    res.prompt_tokens = len(stitched)
    if stitched == rendered:
        res.status = "exact"
        res.detail += "stitched ids equal the full render"
        return res
    report = plan.verify or {}
    diff = next(
        (i for i, (a, b) in enumerate(zip(stitched, rendered, strict=False)) if a != b),
        min(len(stitched), len(rendered)),
    )
    res.first_diff = diff
    res.stitched_context = report.get("stitched_context")
    res.rendered_context = report.get("rendered_context")
    bridge = stitched[plan.tokens_reused :]
    bridge_as_rendered = (
        len(rendered) >= len(bridge) and rendered[len(rendered) - len(bridge) :] == bridge
    )
    if diff < plan.tokens_reused and bridge_as_rendered:
        res.status = "rewrites history"
        res.detail += (
            f"the full render differs at token {diff}, inside the earlier turns; the new "
            "messages are rendered as the template renders them"
        )
    else:
        res.status = "WRONG"
        where = "in the bridge" if diff >= plan.tokens_reused else "in the earlier turns"
        res.detail += (
            f"the stitched ids differ from the full render at token {diff} ({where}) and the "
            "bridge is not the template's rendering of the new messages"
        )
    return res


@dataclass
class Report:
    model: str
    stop_token_ids: list[int]
    stop_tokens: list[str]
    shapes: list[ShapeResult]
    problems: list[str]
    verdict: str
    exit_code: int


def diagnose(
    model_dir: str | Path, *, strict: bool = False, stop_token_ids: list[int] | None = None
) -> Report:
    """The doctor's report for ``model_dir`` (raises :class:`fasttito.TokenizerLoadError`)."""
    model = Path(model_dir)
    tok = fasttito.Tokenizer.from_dir(model)
    # verify mode logs each difference; the report shows them, so keep the log quiet meanwhile
    log = logging.getLogger("fasttito")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return _diagnose(model, tok, strict, stop_token_ids)
    finally:
        log.setLevel(level)


def _diagnose(
    model: Path, tok: fasttito.Tokenizer, strict: bool, stop_token_ids: list[int] | None
) -> Report:
    problems: list[str] = []
    stops = stop_token_ids or tok.stop_token_ids
    names = [tok.id_to_token(i) or f"<id {i}>" for i in stops]
    if not stops:
        problems.append(
            "no stop token ids (no eos_token, no generation_config.json eos_token_id): a "
            "turn's end cannot be recognised"
        )
    try:
        tok.apply_chat_template([USER], add_generation_prompt=True)
    except TemplateError as exc:
        problems.append(f"the template does not render a single user message: {exc}")
    results = (
        [diagnose_shape(tok, s, stop_token_ids) for s in shapes(_template_text(model))]
        if not problems
        else []
    )
    wrong = [r.shape for r in results if r.status == "WRONG"]
    rewrites = [r.shape for r in results if r.status == "rewrites history"]
    falls = [r.shape for r in results if r.status == "falls back"]
    exact = [r.shape for r in results if r.status == "exact"]
    if problems:
        verdict, code = "TITO cannot be used with this model folder: " + "; ".join(problems), 1
    elif wrong:
        verdict = (
            f"TITO would be WRONG for this template ({', '.join(wrong)}): the bridge does not "
            "match the template's own rendering of the new messages. Use the chat transport "
            "(messages) for this model, or fix the template."
        )
        code = 1
    elif not exact and not rewrites:
        verdict = "TITO is never used for this template: every shape falls back or is unsupported"
        code = 0
    else:
        verdict = f"TITO is safe for this template ({len(exact)} of {len(results)} shapes exact"
        if rewrites:
            verdict += (
                f"; the template rewrites history in {', '.join(rewrites)}: TITO keeps what the "
                "engine sampled, a re-render would differ"
            )
        if falls:
            verdict += f"; falls back to messages in {', '.join(falls)}"
        verdict += ")"
        code = 1 if strict and rewrites else 0
        if code:
            verdict += "; --strict: history rewrites count as failures"
    return Report(str(model), list(stops), names, results, problems, verdict, code)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "doctor",
        help="check whether token-in/token-out is safe for a model folder's chat template",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder with tokenizer.json + template")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--stop-token-id",
        type=int,
        action="append",
        help="the ids your engine stops on (repeatable; default: the folder's eos and "
        "generation_config.json ids), e.g. gpt-oss's <|call|> 200012",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 also when the template rewrites history (stitched ids != a re-render)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        with progress(f"loading {args.model_dir} and playing two turns per conversation shape"):
            report = diagnose(args.model_dir, strict=args.strict, stop_token_ids=args.stop_token_id)
    except FasttitoError as exc:
        if args.json:
            print(
                json.dumps(
                    {
                        "model": args.model_dir,
                        "error": f"{type(exc).__name__}: {exc}",
                        "exit_code": 2,
                    }
                )
            )
        else:
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(asdict(report), indent=2, ensure_ascii=False))
        return report.exit_code
    print(f"fasttito {fasttito.__version__} ({_core.build_profile} build) doctor: {report.model}")
    stops = ", ".join(
        f"{n} ({i})" for n, i in zip(report.stop_tokens, report.stop_token_ids, strict=True)
    )
    print(f"stop tokens: {stops or 'none'}")
    for problem in report.problems:
        print(f"problem: {problem}")
    if not report.problems:
        print("the template renders: ok")
    if report.shapes:
        print()
        headers = (
            "shape",
            "result",
            "mode / reason",
            "reused",
            "bridge",
            "gap",
            "dedupe",
            "first diff",
        )
        rows = [
            [
                r.shape,
                r.status,
                r.fallback_reason or r.mode,
                r.reused,
                r.bridge,
                r.gap,
                r.deduped,
                r.first_diff,
            ]
            for r in report.shapes
        ]
        print(text_table(headers, rows))
        print()
        for r in report.shapes:
            print(f"{r.shape}: {r.status}: {r.detail}")
            if r.stitched_context is not None:
                print(f"    stitched: {r.stitched_context!r}")
                print(f"    rendered: {r.rendered_context!r}")
    print()
    print(("OK: " if report.exit_code == 0 else "FAIL: ") + report.verdict)
    return report.exit_code
