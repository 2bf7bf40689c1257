"""Fault-injection soak: many concurrent multi-turn rollouts through one ``fasttito.Client``
against the local vLLM-compatible test engine, with faults injected at a set rate.

Run it (the README's figures come from the full run)::

    .venv/bin/python tests/soak.py              # 1,000 concurrent x 8 turns, 2,000 rollouts
    .venv/bin/python tests/soak.py --rollouts 100 --concurrency 50 --fault-rate 0.1
    .venv/bin/python tests/soak.py --transport sglang-generate   # against the SGLang engine

It starts the engine (``fasttito.testing.vllm_engine``, ``models/qwen2.5``) on 127.0.0.1, turns
on its random faults (``/_admin/faults`` ``random``), drives ``--rollouts`` tool-agent rollouts of
``--turns`` turns with at most ``--concurrency`` in flight over one Client (transport
``vllm-generate``: TITO from turn 2, local bridge and local decoding), stops the engine, prints
a report (JSON with ``--json``) and exits 1 if a pass criterion fails. ``--transport
sglang-generate`` drives the same rollouts through SGLang's native ``/generate`` against
``fasttito.testing.sglang_engine`` instead (its fault modes: ``missing_output_ids`` and
``wrong_logprob_id`` among the malformed bodies, ``abort`` raised as ``EngineAbortError``, and
every turn must report ``cached_tokens``). On both routes a ``null`` logprob is a malformed body:
a sampled token's logprob must be finite.

* no crash (any exception other than fasttito's typed errors fails the run), no hang: every
  ``rollout.generate`` call ends within its bound, ``Client.max_call_seconds`` (``timeout *
  (max_retries + 1)`` plus the backoff sum) plus ``--slack`` seconds of local work, and the run
  within ``--deadline``. Every call's wall time is measured; a call over the bound is reported
  with each of its HTTP attempts (route, duration, outcome, what a timed-out attempt was
  waiting for and the fault that explains it) and the worst event-loop lag seen during it.
  A timer cannot fire while the event loop is busy with other calls' work (at 1,000 calls whose
  timeouts fire together, that is a burst of up to a second on a 2-core machine), so each
  timer of the call (its attempts, and its return) may run late by the worst loop lag measured
  during the call: a call is a violation when it ends later than the bound + ``--slack`` + that
  allowance; the calls over the plain bound + slack are counted apart (``over_bound_raw``);
* every returned turn is sound: logprobs 1:1 with the completion ids and each equal to the value
  the engine computes for that id at that position (so ids and logprobs are in step), every id
  in the vocabulary, a TITO prompt that starts with the previous turn's prompt + completion, and
  a prompt that carries this rollout's own marker and no other rollout's;
* every injected fault is accounted for: retried (a retry log record), raised as a typed error,
  or counted (a missing stop token as the next turn's ``stop_token_missing`` fallback, or seen
  on a rollout's last turn). Slow answers within
  the timeout (``delay``) need no handling and are reported apart;
* client RSS: the peak of the second half of the run is less than 10% above the first half's.

A turn that raises a typed error is tried again (same messages) up to ``--turn-attempts`` times,
as an RL runner would; the rollout's state is untouched by a failed turn.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextvars
import json
import logging
import math
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

import fasttito  # noqa: E402
from fasttito.http import AiohttpPoster, HttpResponse, current_attempt  # noqa: E402
from fasttito.testing.launch import start_engine, start_sglang  # noqa: E402
from fasttito.testing.vllm_engine import fake_logprob  # noqa: E402

#: Faults the client must see and handle, and how: retried below the protocol or on 502-504,
#: raised as a parse error, or counted in the turn.
RETRIED = ("http_502", "http_503", "http_504", "reset", "drop", "stall")
NOT_RETRIED_STATUS = ("http_500",)
PARSE = (
    "truncated_json",
    "malformed_json",
    "missing_token_ids",
    "short_logprobs",
    "long_logprobs",
    "oov_token_id",
    "null_logprob",  # a sampled token's logprob must be finite on the generate routes
)
COUNTED = ("no_stop_token",)
SLOW = ("delay",)
DEFAULT_MODES = RETRIED + NOT_RETRIED_STATUS + PARSE + COUNTED + SLOW
#: The SGLang engine's malformed bodies (fasttito.testing.sglang_engine.faults), and its abort.
SGLANG_PARSE = (
    "truncated_json",
    "malformed_json",
    "missing_output_ids",
    "short_logprobs",
    "long_logprobs",
    "oov_token_id",
    "wrong_logprob_id",
    "null_logprob",  # a sampled token's logprob must be finite
)
SGLANG_MODES = RETRIED + NOT_RETRIED_STATUS + SGLANG_PARSE + ("no_stop_token",) + SLOW + ("abort",)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
MARKER_RE = re.compile(r"soak-rollout-(\d+)-end")

#: The HTTP attempts of the ``rollout.generate`` call running in this task.
ATTEMPTS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "soak_attempts", default=None
)


def probable_fault(outcome: str, waiting_for: str = "") -> str:
    """The injected fault (or load) an attempt's outcome points to."""
    if outcome == "timeout":
        return {
            "body": "stall",
            "headers": "delay or engine queueing",
            "connection": "pool/connect",
        }.get(waiting_for, "?")
    if "ServerDisconnected" in outcome:
        return "drop"
    if "Payload" in outcome or "reset" in outcome.lower():
        return "reset"
    if outcome.startswith("HTTP 5"):
        return "http_" + outcome[5:8]
    return ""


class RecordingPoster:
    """fasttito's default Poster (aiohttp), recording every attempt of the current call:
    route, start and duration (seconds from the call's start), outcome, and for an attempt the
    Client's timeout cut, what it was waiting for."""

    def __init__(self) -> None:
        self.inner = AiohttpPoster(max_connections=4096)

    async def request(self, method: str, url: str, body: bytes | None, **kw: Any) -> HttpResponse:
        log = ATTEMPTS.get()
        t0 = time.monotonic()
        outcome = "?"
        try:
            resp = await self.inner.request(method, url, body, **kw)
            outcome = f"HTTP {resp.status}"
            return resp
        except asyncio.CancelledError:
            outcome = "timeout"
            raise
        except Exception as exc:
            outcome = type(exc).__name__ + ": " + str(exc)[:80]
            raise
        finally:
            if log is not None:
                phase = current_attempt()
                what = f" waiting for {phase.describe()}" if outcome == "timeout" else ""
                fault = probable_fault(outcome, phase.phase)
                path = "/" + url.split("/", 3)[-1]
                log.append(
                    f"{method} {path} {time.monotonic() - t0:.2f}s: {outcome}{what}"
                    + (f" [{fault}]" if fault else "")
                )

    async def aclose(self) -> None:
        await self.inner.aclose()


class LoopLag:
    """Samples how late the event loop wakes a 50 ms sleeper (starvation shows here)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (when, lag)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            t = time.monotonic()
            await asyncio.sleep(0.05)
            self.samples.append((t, time.monotonic() - t - 0.05))

    def worst(self, start: float, end: float) -> float:
        """The worst lag of the samples taken from ``start`` to ``end`` (a bisection: this runs
        on the event loop for every slow call, and must not lag it itself)."""
        lo = bisect.bisect_left(self.samples, (start, -1.0))
        hi = bisect.bisect_right(self.samples, (end, math.inf))
        return max((lag for _, lag in self.samples[lo:hi]), default=0.0)


class Timed:
    """Awaits a coroutine and adds up the CPU time (``thread_time``) of its own steps: the work
    a turn does on the event-loop thread (rendering, request building, parsing, the HTTP
    client's code run in the task), without other tasks' steps interleaved between them."""

    __slots__ = ("coro", "cpu")

    def __init__(self, coro: Any) -> None:
        self.coro = coro
        self.cpu = 0.0

    def __await__(self) -> Generator[Any, Any, Any]:
        it = self.coro.__await__()
        value: Any = None
        exc: BaseException | None = None
        while True:
            t0 = time.thread_time()
            try:
                yielded = it.throw(exc) if exc is not None else it.send(value)
            except StopIteration as stop:
                self.cpu += time.thread_time() - t0
                return stop.value
            except BaseException:
                self.cpu += time.thread_time() - t0
                raise
            self.cpu += time.thread_time() - t0
            value, exc = None, None
            try:
                value = yield yielded
            except BaseException as e:  # cancellation and the like go into the coroutine
                exc = e


class RetryLog(logging.Handler):
    """Counts fasttito's retry records by reason (``HTTP 503``, ``TransportError``...)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.by_reason: Counter[str] = Counter()
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        self.records.append(text)
        m = re.search(r"failed \((.+?)\); retry \d+/\d+", text)
        if m:
            self.by_reason[m.group(1)] += 1


@dataclass
class Stats:
    turns: int = 0
    tito_turns: int = 0
    rollouts_done: int = 0
    rollouts_failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    fallbacks: Counter[str] = field(default_factory=Counter)
    null_logprobs: int = 0
    final_turn_no_stop: int = 0
    violations: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    turn_cpu: list[float] = field(default_factory=list)
    turn_wall_max: float = 0.0
    call_walls: list[float] = field(default_factory=list)
    slow_calls: list[dict[str, Any]] = field(default_factory=list)  # over the bound
    over_bound_raw: int = 0  # over bound + slack, before the loop-lag allowance
    lag: LoopLag = field(default_factory=LoopLag)
    rss: list[tuple[float, int]] = field(default_factory=list)
    bound: tuple[float, float] = (0.0, 0.0)  # (Client.max_call_seconds, --slack)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, fasttito.ServerError):
        return f"ServerError({exc.status_code})"
    return type(exc).__name__


def check_turn(
    stats: Stats,
    rid: int,
    turn: Any,
    prev: tuple[list[int], list[int]] | None,
    tok: fasttito.Tokenizer,
) -> None:
    """Record a violation for anything a sound turn cannot have."""
    ids = turn.completion_ids.tolist()
    prompt = turn.prompt_ids.tolist() if turn.prompt_ids is not None else None
    lps = turn.completion_logprobs
    where = f"rollout {rid} turn {turn.turn}"
    if prompt is None:
        stats.violations.append(f"{where}: no prompt ids")
        return
    if lps is None or len(lps) != len(ids):
        stats.violations.append(f"{where}: {len(lps or [])} logprobs for {len(ids)} ids")
        return
    vocab = tok.vocab_size
    if any(t >= vocab for t in ids) or any(t >= vocab for t in prompt):
        stats.violations.append(f"{where}: an id outside the vocabulary")
    for i, (t, lp) in enumerate(zip(ids, lps, strict=True)):
        want = fake_logprob(t, len(prompt) + i)
        if math.isnan(lp):
            continue  # a null the engine sent, counted in turn.null_logprobs
        if abs(lp - want) > 1e-6:
            stats.violations.append(
                f"{where}: logprob {i} is {lp}, the engine's for id {t} at that position is {want}"
            )
            break
    if turn.mode == "tito":
        if prev is None:
            stats.violations.append(f"{where}: TITO without a previous turn")
        else:
            head = prev[0] + prev[1]
            if prompt[: len(head)] != head:
                stats.violations.append(f"{where}: TITO prompt does not start with the last turn")
    if turn.transport == "sglang-generate" and turn.cached_tokens is None:
        stats.violations.append(f"{where}: no cached_tokens on an SGLang turn")
    markers = {int(m) for m in MARKER_RE.findall(tok.decode(prompt))}
    if markers != {rid}:
        stats.violations.append(f"{where}: prompt carries rollout markers {sorted(markers)}")


async def one_rollout(
    client: fasttito.Client,
    rid: int,
    turns: int,
    attempts: int,
    turn_bound: float,
    stats: Stats,
) -> None:
    """``turn_bound``: the most seconds one ``rollout.generate`` call may take."""
    tok = client.tokenizer
    assert tok is not None
    stop_ids = set(tok.stop_token_ids)
    rollout = client.rollout()
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a weather agent."},
        {"role": "user", "content": f"Weather in city {rid}? soak-rollout-{rid}-end"},
    ]
    prev: tuple[list[int], list[int]] | None = None
    for k in range(turns):
        turn = None
        for _ in range(attempts):
            timed = Timed(rollout.generate(messages, tools=TOOLS, max_tokens=200))
            log: list[str] = []
            token = ATTEMPTS.set(log)
            outcome = "turn"
            t0 = time.monotonic()
            try:
                turn = await timed
            except fasttito.FasttitoError as exc:
                outcome = f"{error_kind(exc)}: {str(exc)[:300]}"
                stats.errors[error_kind(exc)] += 1
                continue
            finally:
                t1 = time.monotonic()
                ATTEMPTS.reset(token)
                wall = t1 - t0
                stats.call_walls.append(wall)
                stats.turn_wall_max = max(stats.turn_wall_max, wall)
                if wall > turn_bound:
                    stats.over_bound_raw += 1
                    lag = stats.lag.worst(t0, t1)
                    if wall > turn_bound + lag * (len(log) + 1):
                        stats.slow_calls.append(
                            {
                                "call": f"rollout {rid} turn {k + 1}",
                                "wall_s": round(wall, 2),
                                "bound_s": round(turn_bound, 2),
                                "ended_with": outcome,
                                "attempts": log,
                                "loop_lag_max_s": round(lag, 2),
                            }
                        )
            stats.turn_cpu.append(timed.cpu)
            break
        if turn is None:
            stats.rollouts_failed += 1
            return
        stats.turns += 1
        stats.tito_turns += turn.mode == "tito"
        stats.null_logprobs += turn.null_logprobs
        if turn.fallback_reason is not None and turn.turn > 1:
            stats.fallbacks[turn.fallback_reason] += 1
        check_turn(stats, rid, turn, prev, tok)
        ids = turn.completion_ids.tolist()
        if (
            k == turns - 1
            and turn.finish_reason != "length"
            and (not ids or ids[-1] not in stop_ids)
        ):
            stats.final_turn_no_stop += 1
        prev = (turn.prompt_ids.tolist() if turn.prompt_ids is not None else [], ids)
        msg = turn.message()
        messages.append(msg)
        if msg.get("tool_calls"):
            for call in msg["tool_calls"]:
                messages.append(
                    {"role": "tool", "tool_call_id": call["id"], "content": f"{15 + k} C in {rid}"}
                )
        else:
            messages.append({"role": "user", "content": f"And tomorrow ({k})?"})
    stats.rollouts_done += 1


async def sample_rss(stats: Stats, stop: asyncio.Event, every: float) -> None:
    start = time.monotonic()
    while not stop.is_set():
        stats.rss.append((time.monotonic() - start, rss_bytes()))
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            pass
    stats.rss.append((time.monotonic() - start, rss_bytes()))


async def drive(args: argparse.Namespace, base_url: str, stats: Stats, log: RetryLog) -> float:
    client = fasttito.Client(
        base_url=base_url,
        model="soak-model",
        transport=args.transport,
        tokenizer=str(REPO_ROOT / "models" / "qwen2.5"),
        timeout=args.timeout,
        max_retries=args.max_retries,
        backoff=0.05,
        backoff_max=0.5,
        check_prompt_length=False,
        http_client=RecordingPoster(),
    )
    turn_bound = client.max_call_seconds + args.slack
    stats.bound = (client.max_call_seconds, args.slack)
    sem = asyncio.Semaphore(args.concurrency)

    async def guarded(rid: int) -> None:
        async with sem:
            try:
                await one_rollout(client, rid, args.turns, args.turn_attempts, turn_bound, stats)
            except Exception as exc:  # anything untyped is a crash of the client
                stats.crashes.append(f"rollout {rid}: {exc!r}")

    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(stats, stop, 0.25))
    lag = asyncio.create_task(stats.lag.run(stop))
    t0 = time.monotonic()
    async with client:
        try:
            await asyncio.wait_for(
                asyncio.gather(*(guarded(r) for r in range(args.rollouts))), args.deadline
            )
        except TimeoutError:
            stats.crashes.append(f"hang: the run did not finish within --deadline {args.deadline}s")
    elapsed = time.monotonic() - t0
    stop.set()
    await sampler
    await lag
    return elapsed


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def account(
    injected: dict[str, int], stats: Stats, log: RetryLog, transport: str = "vllm-generate"
) -> dict[str, Any]:
    """Match every injected fault with what the client did about it."""
    sglang = transport == "sglang-generate"
    inj = Counter(injected)
    status_retries = sum(n for r, n in log.by_reason.items() if r.startswith("HTTP "))
    transport_retries = sum(n for r, n in log.by_reason.items() if not r.startswith("HTTP "))
    e = stats.errors
    final_5xx = sum(
        n for k, n in e.items() if k in ("ServerError(502)", "ServerError(503)", "ServerError(504)")
    )
    final_transport = e["TransportError"] + e["RequestTimeoutError"] + e["DeadlineExceededError"]
    rows = {
        "retried_status (http_502/503/504)": (
            sum(inj[m] for m in ("http_502", "http_503", "http_504")),
            status_retries + final_5xx,
        ),
        "retried_transport (reset/drop/stall)": (
            sum(inj[m] for m in ("reset", "drop", "stall")),
            transport_retries + final_transport,
        ),
        "http_500 -> ServerError(500)": (inj["http_500"], e["ServerError(500)"]),
        "malformed bodies -> ResponseParseError": (
            sum(inj[m] for m in (SGLANG_PARSE if sglang else PARSE)),
            e["ResponseParseError"],
        ),
        "no_stop_token -> stop_token_missing fallback / last turn": (
            inj["no_stop_token"],
            stats.fallbacks["stop_token_missing"] + stats.final_turn_no_stop,
        ),
    }
    if sglang:  # aborts are typed
        rows["abort -> EngineAbortError"] = (inj["abort"], e["EngineAbortError"])
    # accounted > injected: retries or errors no fault caused (e.g. a healthy request that
    # queued past the timeout); accounted < injected: a fault the client never saw as such
    return {k: {"injected": a, "accounted": b, "ok": a == b} for k, (a, b) in rows.items()}


def report(
    args: argparse.Namespace,
    stats: Stats,
    log: RetryLog,
    injected: dict[str, int],
    elapsed: float,
    cpu: float,
) -> dict[str, Any]:
    half = elapsed / 2
    first = [r for t, r in stats.rss if t <= half] or [0]
    second = [r for t, r in stats.rss if t > half] or [0]
    growth = (max(second) - max(first)) / max(first) if max(first) else float("nan")
    accounting = account(injected, stats, log, args.transport)
    expected_turns = args.rollouts * args.turns
    result = {
        "config": {
            "transport": args.transport,
            "rollouts": args.rollouts,
            "concurrency": args.concurrency,
            "turns": args.turns,
            "fault_rate": args.fault_rate,
            "modes": args.modes,
            "timeout_s": args.timeout,
            "max_retries": args.max_retries,
            "build": fasttito._core.build_profile,
        },
        "elapsed_s": round(elapsed, 1),
        "turns_completed": stats.turns,
        "turns_expected": expected_turns,
        "tito_turns": stats.tito_turns,
        "rollouts_completed": stats.rollouts_done,
        "rollouts_abandoned": stats.rollouts_failed,
        "retries": dict(log.by_reason),
        "typed_errors": dict(stats.errors),
        "fallbacks_after_turn_1": dict(stats.fallbacks),
        "injected": dict(injected),
        "slow_within_timeout": sum(injected.get(m, 0) for m in SLOW),
        "accounting": accounting,
        "rss_peak_mb": round(max(r for _, r in stats.rss) / 2**20, 1),
        "rss_first_half_peak_mb": round(max(first) / 2**20, 1),
        "rss_second_half_peak_mb": round(max(second) / 2**20, 1),
        "rss_growth": round(growth, 4),
        "cpu_per_turn_ms": {
            "p50": round(percentile(stats.turn_cpu, 0.5) * 1e3, 3),
            "p99": round(percentile(stats.turn_cpu, 0.99) * 1e3, 3),
            "mean_process": round(cpu / max(stats.turns, 1) * 1e3, 3),
        },
        "turn_wall_max_s": round(stats.turn_wall_max, 2),
        "bound": {
            "bound_s": round(stats.bound[0], 3),
            "slack_s": stats.bound[1],
            "calls": len(stats.call_walls),
            "max_s": round(max(stats.call_walls, default=0.0), 3),
            "p99_s": round(percentile(stats.call_walls, 0.99), 3),
            "p50_s": round(percentile(stats.call_walls, 0.5), 3),
            "over_bound_raw": stats.over_bound_raw,
            "over_bound": len(stats.slow_calls),
            "loop_lag_max_s": round(max((lag for _, lag in stats.lag.samples), default=0.0), 3),
            "violations": sorted(stats.slow_calls, key=lambda c: -c["wall_s"])[:10],
        },
        "crashes": stats.crashes[:20],
        "violations": stats.violations[:20],
        "violation_count": len(stats.violations),
    }
    checks = {
        "no crash or hang": not stats.crashes,
        "every call within its bound": not stats.slow_calls,
        "every turn sound": not stats.violations,
        "every fault accounted for": all(r["ok"] for r in accounting.values()),
        "rss growth < 10%": growth < 0.10,
        "most turns completed": stats.turns >= 0.9 * expected_turns,
    }
    result["checks"] = checks
    result["passed"] = all(checks.values())
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    stats = Stats()
    log = RetryLog()
    logger = logging.getLogger("fasttito")
    logger.addHandler(log)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    # the engine has its own process: its CPU is not the client's
    start = start_sglang if args.transport == "sglang-generate" else start_engine
    with start(
        REPO_ROOT / "models" / "qwen2.5",
        served_model_name="soak-model",
        renderer=args.engine_renderer,
        idle_timeout=max(300.0, args.deadline + 60),
        extra_args=[
            "--max-recorded-requests",
            "16",
            "--prefix-store-size",
            str(max(4096, args.concurrency * 4)),
        ],
    ) as engine:
        engine.script(mode="tool_agent", tool_calls=args.turns // 2)
        status, out = engine.call(
            "POST",
            "/_admin/faults",
            {
                "random": {
                    "rate": args.fault_rate,
                    "modes": args.modes,
                    "seed": args.seed,
                    "seconds": args.stall,
                    "delay_seconds": min(1.0, args.timeout / 4),
                }
            },
        )
        if status != 200:
            raise RuntimeError(f"cannot set random faults: {out}")
        cpu0 = time.process_time()
        try:
            elapsed = asyncio.run(drive(args, engine.v1_url, stats, log))
        finally:
            logger.removeHandler(log)
            logger.setLevel(old_level)
        cpu = time.process_time() - cpu0
        injected = engine.call("GET", "/_admin/faults")[1]["injected"]
    return report(args, stats, log, injected, elapsed, cpu)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rollouts", type=int, default=2000, help="rollouts in all (default 2000)")
    p.add_argument(
        "--concurrency", type=int, default=1000, help="rollouts in flight (default 1000)"
    )
    p.add_argument("--turns", type=int, default=8)
    p.add_argument("--fault-rate", type=float, default=0.05, help="per request (default 0.05)")
    p.add_argument(
        "--transport",
        choices=("vllm-generate", "sglang-generate"),
        default="vllm-generate",
        help="vllm-generate against the vLLM engine, or sglang-generate against the SGLang one",
    )
    p.add_argument(
        "--modes", nargs="+", default=None, help="fault modes (default: every mode the engine has)"
    )
    # The timeout must exceed the queueing delay of a healthy request at this concurrency (a
    # single-process engine serving 1,000 rollouts queues for tens of seconds at peaks), or
    # healthy requests time out too and the fault accounting counts retries no fault caused.
    p.add_argument("--timeout", type=float, default=120.0, help="Client timeout per attempt (s)")
    p.add_argument(
        "--stall",
        type=float,
        default=130.0,
        help="seconds a stall lasts (past --timeout, so the client times out)",
    )
    p.add_argument("--max-retries", type=int, default=2)
    p.add_argument(
        "--engine-renderer",
        choices=["transformers", "fasttito", "auto"],
        default=None,
        help="who renders in the engine (default: $FASTTITO_ENGINE_RENDERER, else auto)",
    )
    p.add_argument(
        "--slack",
        type=float,
        default=1.0,
        help="seconds of local work allowed on top of Client.max_call_seconds (default 1)",
    )
    p.add_argument("--turn-attempts", type=int, default=4, help="tries of a turn that raises")
    p.add_argument("--deadline", type=float, default=1800.0, help="bound of the whole run (s)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", action="store_true", help="print the report as JSON only")
    args = p.parse_args(argv)
    if args.modes is None:
        modes = SGLANG_MODES if args.transport == "sglang-generate" else DEFAULT_MODES
        args.modes = list(modes)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k}: {json.dumps(v)}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
