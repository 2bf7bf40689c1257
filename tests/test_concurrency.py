"""Concurrency safety of the Rust core: one ``Tokenizer`` and many rollouts shared across
threads give exactly the results of a single-threaded run, and every entry point that does real
work releases the GIL while it works (``py.detach`` in ``rust/py/``).

How the GIL is checked, without timing anything: with ``sys.setswitchinterval(1.0)`` a thread
that holds the GIL keeps it for a second, so a second Python thread runs *during* a shorter call
only if the call released the GIL. A worker thread flags that it is inside the call; the main thread
spins a counter; iterations counted while the flag is set prove the release. The calls used are
large enough to last far longer than it takes the main thread to be scheduled once.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import fasttito
import pytest
from conftest import VENDORED_MODEL_DIR
from fasttito import _core

FIXTURES = Path(__file__).resolve().parent.parent / "rust" / "tests" / "fixtures"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture(scope="module")
def tok() -> fasttito.Tokenizer:
    return fasttito.Tokenizer.from_dir(VENDORED_MODEL_DIR)


# --------------------------------------------------------------------------- shared across threads


def agent_rollout(tok: fasttito.Tokenizer, rid: int, turns: int = 6) -> list[tuple[Any, ...]]:
    """A tool-agent rollout with locally made completions: what each turn planned."""
    rollout = fasttito.Rollout(tok)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": f"Agent {rid}."},
        {"role": "user", "content": f"Weather in city number {rid}?"},
    ]
    out: list[tuple[Any, ...]] = []
    for k in range(turns):
        plan = rollout.prepare(messages, tools=TOOLS)
        assert plan.prompt_ids is not None
        out.append((plan.mode, plan.fallback_reason, plan.prompt_ids.tolist()))
        if k % 3 == 2:
            text = f"It is {rid + k} C."
            message: dict[str, Any] = {"role": "assistant", "content": text}
        else:
            args = json.dumps({"city": f"c{rid}-{k}"})
            text = f'<tool_call>\n{{"name": "get_weather", "arguments": {args}}}\n</tool_call>'
            message = {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": f"call{k}",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": args},
                    }
                ],
            }
        completion = [*tok.encode(text), *tok.stop_token_ids[:1]]
        decoded = tok.decode_completion(completion)
        out.append((decoded["content"], len(decoded["tool_calls"])))
        rollout.record(plan, completion, message, "stop")
        messages.append(message)
        if message.get("tool_calls"):
            messages.append({"role": "tool", "tool_call_id": f"call{k}", "content": f"{k} C"})
        else:
            messages.append({"role": "user", "content": f"And tomorrow ({k})?"})
    return out


def test_shared_tokenizer_and_rollouts_across_threads_equal_serial(tok: fasttito.Tokenizer) -> None:
    n = 24
    serial = [agent_rollout(tok, rid) for rid in range(n)]
    assert sum(mode == "tito" for r in serial for (mode, *_rest) in r[::2]) >= n * 4
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(lambda rid: agent_rollout(tok, rid), range(n)))
    assert threaded == serial


def test_one_rollout_shared_by_threads_stays_consistent(tok: fasttito.Tokenizer) -> None:
    """Many threads planning on the same rollout at once (what a careless caller does) get the
    plan a single thread gets: prepare only reads the rollout's turns."""
    rollout = fasttito.Rollout(tok)
    first = [{"role": "user", "content": "hi"}]
    plan = rollout.prepare(first)
    completion = [*tok.encode("Hello!"), *tok.stop_token_ids[:1]]
    reply = {"role": "assistant", "content": "Hello!"}
    rollout.record(plan, completion, reply, "stop")
    follow = [*first, reply, {"role": "user", "content": "More?"}]
    want = rollout.prepare(follow).prompt_ids
    assert want is not None

    def plan_ids(_: int) -> list[int]:
        p = rollout.prepare(follow)
        assert p.mode == "tito" and p.prompt_ids is not None
        return p.prompt_ids.tolist()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(plan_ids, range(64)))
    assert all(r == want.tolist() for r in results)


def test_encode_decode_render_parse_across_threads(tok: fasttito.Tokenizer) -> None:
    texts = [
        f"Sample {i}: naïve café, 日本語, emoji 🎉 and code `x = {i}`" * (1 + i % 5)
        for i in range(64)
    ]
    convs = [[{"role": "user", "content": t}] for t in texts]
    bodies = [(p, p.read_bytes()) for p in sorted(FIXTURES.glob("*.json"))]

    def work(i: int) -> tuple[Any, ...]:
        ids = tok.encode(texts[i])
        wire = "dynamo" if "dynamo" in bodies[i % len(bodies)][0].name else None
        parsed = (
            fasttito.parse_response(bodies[i % len(bodies)][1], wire).completion_ids.tolist()
            if wire
            else None
        )
        body = _core.request_body("vllm-generate", "m", token_ids=ids, max_tokens=8)
        return (
            ids,
            tok.decode(ids),
            tok.apply_chat_template(convs[i], add_generation_prompt=True),
            parsed,
            body,
        )

    serial = [work(i) for i in range(64)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(work, range(64))) == serial


def test_client_rollouts_from_threads_each_with_its_own_loop(tok: fasttito.Tokenizer) -> None:
    """asyncio tasks on several event loops (one per thread) share the Tokenizer; each
    thread's Rollout objects stay its own."""

    async def many(offset: int) -> list[list[int]]:
        async def one(rid: int) -> list[int]:
            await asyncio.sleep(0)
            r = fasttito.Rollout(tok)
            plan = r.prepare([{"role": "user", "content": f"q{rid}"}])
            assert plan.prompt_ids is not None
            return plan.prompt_ids.tolist()

        return list(await asyncio.gather(*(one(offset + i) for i in range(20))))

    serial = [asyncio.run(many(t * 100)) for t in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda t: asyncio.run(many(t * 100)), range(4)))
    assert threaded == serial


# --------------------------------------------------------------------------- the GIL is released


@pytest.fixture
def long_switch_interval() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def runs_python_meanwhile(call: Callable[[], Any]) -> int:
    """How many times the main thread ran Python while ``call`` ran in another thread."""
    inside = threading.Event()
    done = threading.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            inside.set()
            call()
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()

    t = threading.Thread(target=worker)
    t.start()
    inside.wait()
    spins = 0
    while not done.is_set():
        spins += 1
    t.join()
    if errors:
        raise errors[0]
    return spins


def python_ran_meanwhile(call: Callable[[], Any], attempts: int = 5) -> int:
    """The most times the main thread ran Python during one of up to ``attempts`` calls.

    A call that releases the GIL can still show 0 on a busy machine: the worker may take the GIL
    back before the main thread is scheduled. A call that holds the GIL shows 0 every time, so
    trying a few times keeps the check able to fail while making it stable."""
    best = 0
    for _ in range(attempts):
        best = max(best, runs_python_meanwhile(call))
        if best:
            break
    return best


def big_conversation(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        out.append({"role": "user", "content": f"Question {i}: " + "lorem ipsum dolor " * 40})
        out.append({"role": "assistant", "content": f"Answer {i}: " + "sit amet " * 40})
    out.append({"role": "user", "content": "last"})
    return out


def test_gil_released_around_real_work(tok: fasttito.Tokenizer, long_switch_interval: None) -> None:
    conv = big_conversation(200)
    text = "The quick brown fox jumps over the lazy dog. " * 20_000
    ids = tok.encode(text)
    body = json.dumps(
        {
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "token_ids": ids[:200_000],
                    "logprobs": {"content": [{"logprob": -0.5} for _ in ids[:200_000]]},
                    "message": {"role": "assistant", "content": "x"},
                }
            ],
            "prompt_token_ids": ids[:200_000],
        }
    ).encode()
    # Renders through a tokenizer without chunk reuse: with it, a repeated render is cache hits
    # and its GIL-free part (about 1 ms) can end before the main thread is scheduled once.
    uncached = fasttito.Tokenizer.from_dir(VENDORED_MODEL_DIR, cache_bytes=0)
    calls: dict[str, Callable[[], Any]] = {
        "Tokenizer.from_dir": lambda: fasttito.Tokenizer.from_dir(VENDORED_MODEL_DIR),
        "Tokenizer.encode": lambda: tok.encode(text),
        "Tokenizer.decode": lambda: tok.decode(ids),
        "Tokenizer.apply_chat_template": lambda: uncached.apply_chat_template(conv),
        "Tokenizer.decode_completion": lambda: tok.decode_completion(ids[:300_000]),
        "parse_response": lambda: fasttito.parse_response(body, "vllm-chat"),
        "request_body": lambda: _core.request_body("vllm-generate", "m", token_ids=ids * 8),
        "Rollout.prepare": lambda: fasttito.Rollout(uncached).prepare(conv),
    }
    held = {name: n for name, call in calls.items() if (n := python_ran_meanwhile(call)) == 0}
    assert not held, f"these calls held the GIL while working: {held}"


def test_the_gil_check_detects_a_held_gil(long_switch_interval: None) -> None:
    """The check above can fail: pure-Python work, and a Rust call that must hold the GIL
    (reading a Python list of ints into a TokenIds buffer), let the main thread run not once
    while they last."""

    def busy() -> None:
        x = 0
        for i in range(3_000_000):
            x += i

    big = list(range(3_000_000))
    assert python_ran_meanwhile(busy) == 0
    assert python_ran_meanwhile(lambda: fasttito.TokenIds(big)) == 0
