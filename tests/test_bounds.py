"""Every ``rollout.generate`` call ends within its bound (docs/reliability-bounds.md).

The suspects of issue 18, each reproduced on purpose: a body that stalls after its headers or
drips a byte at a time, headers that never come, a request queued for a pooled connection, a
Poster that ignores its timeout, aiohttp rounding a timeout of 5 s or more up to the next
second, a reset during a retry, the backoff, and the requests a call shares with others or
makes on top of its completion (``GET /v1/models``, the ``auto`` probe, remote ``/tokenize``).
Then ``deadline=``, the typed error it raises, and the CI version of the soak's bound check:
1,000 concurrent rollouts through one Client against the fault-injecting engine, every call's
wall time measured against :attr:`fasttito.Client.max_call_seconds`.

The misbehaving servers are tiny asyncio servers on 127.0.0.1 in the test's own event loop, or
the local vLLM-compatible engine's fault knobs (``fasttito.testing.vllm_engine``).
"""

from __future__ import annotations

import asyncio
import math
import pickle
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import fasttito
import pytest
import soak
from conftest import VENDORED_MODEL_DIR
from fasttito.testing.launch import EngineProcess, start_engine

MODEL = "bounds-model"
USER = [{"role": "user", "content": "hi"}]
GEN = "/inference/v1/generate"
#: Local work on top of the bound (rendering, parsing, the event loop on a busy 2-core machine)
SLACK = 0.5


# --------------------------------------------------------------------------- a misbehaving server

Behaviour = Callable[[asyncio.StreamWriter], Awaitable[None]]
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"


async def silent(writer: asyncio.StreamWriter) -> None:
    """Reads the request, never answers."""
    await asyncio.sleep(3600)


async def stall_after_headers(writer: asyncio.StreamWriter) -> None:
    """Headers and 10 of the 100 bytes the headers promise, then nothing."""
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    writer.write(b'{"id": "x"')
    await writer.drain()
    await asyncio.sleep(3600)


async def drip(writer: asyncio.StreamWriter) -> None:
    """Headers, then one byte every 50 ms, forever: never idle long enough for a per-read
    (``sock_read``, httpx ``read``) timeout, only a total one ends it."""
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 99999\r\n\r\n"
    )
    while True:
        writer.write(b" ")
        await writer.drain()
        await asyncio.sleep(0.05)


@asynccontextmanager
async def raw_server(behaviour: Behaviour) -> AsyncIterator[str]:
    """An HTTP/1.1 server on 127.0.0.1 answering every request with ``behaviour``; yields its
    ``/v1`` URL and stops (its handlers cancelled) on exit."""
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                await behaviour(writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the server stops
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.close()
        for t in handlers:
            t.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def chat_client(url: str, poster: str = "aiohttp", **kw: Any) -> fasttito.Client:
    """A ``chat``-transport Client (no tokenizer, no length check: one request per turn)."""
    kw.setdefault("backoff", 0.01)
    if poster == "httpx":
        import httpx

        kw["http_client"] = httpx.AsyncClient
    return fasttito.Client(url, MODEL, transport="chat", check_prompt_length=False, **kw)


async def timed(aw: Awaitable[Any]) -> tuple[float, Any]:
    """(wall seconds, the result or the exception raised)."""
    t0 = time.monotonic()
    try:
        out: Any = await aw
    except Exception as exc:  # the test inspects it
        out = exc
    return time.monotonic() - t0, out


# --------------------------------------------------------------------------- the bound itself


def test_max_call_seconds_is_attempts_times_timeout_plus_the_capped_backoff() -> None:
    c = fasttito.Client("http://127.0.0.1:9/v1", MODEL, transport="chat")
    assert c.max_call_seconds == 600 * 3 + 0.5 + 1.0  # the defaults: 1801.5 s
    c = fasttito.Client(
        "http://127.0.0.1:9/v1", MODEL, transport="chat", timeout=10, max_retries=4, backoff=1
    )
    assert c.max_call_seconds == 10 * 5 + (1 + 2 + 4 + 8)
    # backoff_max caps each pause: 1, 2, 3, 3
    c = fasttito.Client(
        "http://127.0.0.1:9/v1",
        MODEL,
        transport="chat",
        timeout=2,
        max_retries=4,
        backoff=1,
        backoff_max=3,
    )
    assert c.max_call_seconds == 2 * 5 + (1 + 2 + 3 + 3)
    c = fasttito.Client("http://127.0.0.1:9/v1", MODEL, transport="chat", max_retries=0)
    assert c.max_call_seconds == 600


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, "5", True])
def test_deadline_must_be_a_positive_number(bad: Any) -> None:
    async def go() -> None:
        c = chat_client("http://127.0.0.1:9/v1")
        await c.rollout().generate(USER, deadline=bad)

    with pytest.raises(fasttito.ConfigError, match="deadline must be a positive number"):
        asyncio.run(go())


def test_timeout_errors_keep_their_fields_through_pickle() -> None:
    e = fasttito.DeadlineExceededError(
        "m", attempt=2, attempts=3, waiting_for="body", deadline=1.5, elapsed=1.5
    )
    assert isinstance(e, fasttito.RequestTimeoutError) and isinstance(e, TimeoutError)
    assert isinstance(e, fasttito.FasttitoError)
    back = pickle.loads(pickle.dumps(e))
    assert (type(back), str(back), back.attempt, back.waiting_for, back.deadline) == (
        fasttito.DeadlineExceededError,
        "m",
        2,
        "body",
        1.5,
    )
    r = pickle.loads(pickle.dumps(fasttito.RequestTimeoutError("t", attempt=1, attempts=2)))
    assert (type(r), r.attempt, r.attempts, r.waiting_for) == (
        fasttito.RequestTimeoutError,
        1,
        2,
        "",
    )


# --------------------------------------------------------------------------- one attempt


@pytest.mark.parametrize("poster", ["aiohttp", "httpx"])
@pytest.mark.parametrize(
    ("behaviour", "waiting_for"),
    [(silent, "headers"), (stall_after_headers, "body"), (drip, "body")],
    ids=["no-headers", "stall-after-headers", "drip"],
)
def test_an_attempt_ends_at_its_timeout_whatever_it_waits_for(
    poster: str, behaviour: Behaviour, waiting_for: str
) -> None:
    async def go() -> tuple[float, Any, float]:
        async with raw_server(behaviour) as url:
            c = chat_client(url, poster, timeout=0.5, max_retries=1)
            try:
                wall, err = await timed(c.rollout().generate(USER))
            finally:
                await c.aclose()
            return wall, err, c.max_call_seconds

    wall, err, bound = asyncio.run(go())
    assert isinstance(err, fasttito.RequestTimeoutError), err
    assert not isinstance(err, fasttito.DeadlineExceededError)
    assert (err.attempt, err.attempts, err.waiting_for) == (2, 2, waiting_for)
    assert f"attempt 2 of 2, waiting for the response {waiting_for}" in str(err)
    assert "took longer than timeout=0.5s" in str(err) and "(after 1 retries)" in str(err)
    assert 1.0 <= wall <= bound + SLACK


def test_waiting_for_a_pooled_connection_is_inside_the_timeout() -> None:
    """max_connections=1 and the one connection held by a slow request: the next request's
    attempt times out in the pool, at its timeout, and says so."""

    async def go() -> tuple[float, Any]:
        async with raw_server(silent) as url:
            c = chat_client(url, timeout=0.5, max_retries=0, max_connections=1)
            try:
                # holds the only connection for 30 s (a request of another kind, longer timeout)
                hog = asyncio.create_task(
                    c._poster.request(
                        "POST",
                        url + "/chat/completions",
                        b"{}",
                        headers={},
                        timeout=30,
                        max_bytes=1 << 20,
                        max_error_bytes=1 << 10,
                    )
                )
                await asyncio.sleep(0.2)
                wall, err = await timed(c.rollout().generate(USER))
                hog.cancel()
                await asyncio.gather(hog, return_exceptions=True)
            finally:
                await c.aclose()
            return wall, err

    wall, err = asyncio.run(go())
    assert isinstance(err, fasttito.RequestTimeoutError), err
    assert err.waiting_for == "connection"
    assert "all max_connections=1 were in use" in str(err)
    assert 0.5 <= wall <= 0.5 + SLACK


def test_a_poster_that_ignores_its_timeout_is_cut_at_it() -> None:
    class Stuck:
        async def request(self, method: str, url: str, body: bytes | None, **kw: Any) -> Any:
            await asyncio.sleep(3600)

        async def aclose(self) -> None:
            pass

    async def go() -> tuple[float, Any]:
        c = fasttito.Client(
            "http://127.0.0.1:9/v1",
            MODEL,
            transport="chat",
            http_client=Stuck(),
            timeout=0.3,
            max_retries=1,
            backoff=0.01,
        )
        return await timed(c.rollout().generate(USER))

    wall, err = asyncio.run(go())
    assert isinstance(err, fasttito.RequestTimeoutError), err
    assert (err.attempt, err.waiting_for) == (2, "response")
    assert 0.6 <= wall <= 0.61 + SLACK


def test_a_timeout_of_5s_or_more_is_not_rounded_up() -> None:
    """aiohttp rounds a total timeout of 5 s or more up to the next whole second of the loop
    clock (``ceil_threshold``): alone, a 5 s attempt started at x.1 s ended at x+5.9 s (and
    three 10 s attempts could take 33 s). The Client's own guard ends it at 5 s."""

    async def go() -> tuple[float, Any]:
        async with raw_server(silent) as url:
            c = chat_client(url, timeout=5.0, max_retries=0)
            loop = asyncio.get_running_loop()
            try:
                # start just past a whole second, where rounding up costs the most
                await asyncio.sleep((1.05 - loop.time() % 1.0) % 1.0)
                return await timed(c.rollout().generate(USER))
            finally:
                await c.aclose()

    wall, err = asyncio.run(go())
    assert isinstance(err, fasttito.RequestTimeoutError), err
    assert 5.0 <= wall < 5.5


# --------------------------------------------------------------------------- retries, backoff


@pytest.fixture(scope="module")
def eng() -> Iterator[EngineProcess]:
    with start_engine(VENDORED_MODEL_DIR, served_model_name=MODEL) as e:
        yield e


@pytest.fixture
def tok() -> fasttito.Tokenizer:
    return fasttito.Tokenizer.from_dir(VENDORED_MODEL_DIR)


@pytest.fixture
def clean(eng: EngineProcess) -> EngineProcess:
    eng.reset()
    eng.script(mode="text")
    return eng


def gen_client(eng: EngineProcess, tok: Any, **kw: Any) -> fasttito.Client:
    kw.setdefault("transport", "vllm-generate")
    kw.setdefault("backoff", 0.01)
    kw.setdefault("check_prompt_length", False)
    return fasttito.Client(eng.v1_url, MODEL, tokenizer=tok, **kw)


def run_turn(c: fasttito.Client, **gen: Any) -> tuple[float, Any]:
    async def go() -> tuple[float, Any]:
        try:
            return await timed(c.rollout().generate(USER, **gen))
        finally:
            await c.aclose()

    return asyncio.run(go())


def test_a_reset_during_a_retry_stays_within_the_bound(
    clean: EngineProcess, tok: fasttito.Tokenizer
) -> None:
    stall = {"mode": "stall", "seconds": 5.0, "path": GEN}
    clean.faults(stall, {"mode": "reset", "path": GEN})
    c = gen_client(clean, tok, timeout=0.5, max_retries=2)
    wall, turn = run_turn(c)
    assert isinstance(turn, fasttito.Turn), turn
    assert [r["status"] for r in clean.requests() if r["path"] == GEN] == ["stall", "reset", 200]
    assert wall <= c.max_call_seconds + SLACK
    # and when every attempt fails: a typed error, still within the bound
    clean.faults(stall, {"mode": "reset", "path": GEN}, stall)
    c = gen_client(clean, tok, timeout=0.5, max_retries=2)
    wall, err = run_turn(c)
    assert isinstance(err, fasttito.RequestTimeoutError), err
    assert (err.attempt, err.attempts, err.waiting_for) == (3, 3, "body")
    assert wall <= c.max_call_seconds + SLACK


def test_the_backoff_is_capped_and_a_deadline_does_not_sleep_past_itself(
    clean: EngineProcess, tok: fasttito.Tokenizer
) -> None:
    clean.faults({"mode": "http_503", "count": 3, "path": GEN})
    # backoff 5 s capped at 0.2 s: two pauses of at most 0.2 s
    c = gen_client(clean, tok, max_retries=2, backoff=5.0, backoff_max=0.2)
    assert c.max_call_seconds == pytest.approx(600 * 3 + 0.4)
    wall, err = run_turn(c)
    assert isinstance(err, fasttito.ServerError) and err.status_code == 503, err
    assert wall <= 0.4 + SLACK
    # a pause that would end past the deadline: the call stops at once, not at the deadline
    clean.faults({"mode": "http_503", "count": 3, "path": GEN})
    c = gen_client(clean, tok, max_retries=2, backoff=30.0, backoff_max=30.0)
    wall, err = run_turn(c, deadline=10.0)
    assert isinstance(err, fasttito.DeadlineExceededError), err
    assert (err.attempt, err.waiting_for, err.deadline) == (1, "backoff", 10.0)
    assert "deadline=10s" in str(err) and "HTTP 503" in str(err)
    assert wall <= SLACK


# --------------------------------------------------------------------------- deadline=


def test_deadline_caps_the_call_and_leaves_the_rollout_unchanged(
    clean: EngineProcess, tok: fasttito.Tokenizer
) -> None:
    clean.faults({"mode": "delay", "seconds": 3.0, "path": GEN})

    async def go() -> tuple[float, Any, int, fasttito.Turn]:
        c = gen_client(clean, tok, timeout=30, max_retries=2)
        try:
            rollout = c.rollout()
            wall, err = await timed(rollout.generate(USER, deadline=0.5))
            n = len(rollout)
            turn = await rollout.generate(USER, deadline=10)  # tried again: fine
        finally:
            await c.aclose()
        return wall, err, n, turn

    wall, err, n, turn = asyncio.run(go())
    assert isinstance(err, fasttito.DeadlineExceededError), err
    assert isinstance(err, TimeoutError) and isinstance(err, fasttito.FasttitoError)
    assert (err.attempt, err.attempts, err.waiting_for, err.deadline) == (1, 3, "headers", 0.5)
    assert 0.5 <= err.elapsed <= 0.5 + SLACK
    assert "deadline=0.5s" in str(err)
    # what is left of the deadline after the call's earlier requests (GET /v1/models)
    assert re.search(r"on attempt 1 of 3 \(given the 0\.\d+s left of its timeout=30s\)", str(err))
    assert str(err).endswith("waiting for the response headers")
    assert 0.5 <= wall <= 0.5 + SLACK
    assert n == 0 and turn.turn == 1


# --------------------------------------------------------------------------- several requests


def test_a_call_waiting_on_another_calls_model_info_stays_within_its_own_bound(
    clean: EngineProcess, tok: fasttito.Tokenizer
) -> None:
    """``GET /v1/models`` (the length check's) is fetched once for all calls; before, a call
    queued behind a slow fetch waited for all of it and then ran its own attempts."""
    clean.faults({"mode": "delay", "seconds": 5.0, "path": "/v1/models", "count": 3})

    async def go() -> tuple[float, list[tuple[float, Any]]]:
        c = gen_client(clean, tok, timeout=1.0, max_retries=0, check_prompt_length=True)
        try:
            first = asyncio.create_task(timed(c.rollout().generate(USER)))
            await asyncio.sleep(0.5)  # the first call holds the fetch; these wait on it
            rest = await asyncio.gather(*(timed(c.rollout().generate(USER)) for _ in range(3)))
            return c.max_call_seconds, [await first, *rest]
        finally:
            await c.aclose()

    bound, results = asyncio.run(go())
    assert bound == 1.0
    for wall, out in results:
        assert wall <= bound + SLACK, results
        assert isinstance(out, fasttito.RequestTimeoutError), out
    first, waiters = results[0][1], [out for _, out in results[1:]]
    assert "/v1/models" in str(first) and first.waiting_for == "headers"
    assert all(isinstance(w, fasttito.DeadlineExceededError) for w in waiters), waiters
    # one waiter took over the fetch when the first gave up, the others waited on it
    assert sorted(w.waiting_for for w in waiters) == ["headers", "model_info", "model_info"]
    assert "waiting for GET /v1/models, which another call was sending" in str(
        next(w for w in waiters if w.waiting_for == "model_info")
    )


def test_remote_tokenize_and_the_completion_share_the_call_bound(
    clean: EngineProcess,
) -> None:
    """``vllm-chat-tokens`` without a local tokenizer: a TITO turn makes two ``/tokenize``
    requests and the completion, each with its own retries; together they stay within one
    call's bound (before: up to three times it)."""

    async def go() -> tuple[float, list[tuple[float, Any]]]:
        c = fasttito.Client(
            clean.v1_url,
            MODEL,
            transport="vllm-chat-tokens",
            timeout=1.0,
            max_retries=1,
            backoff=0.01,
            check_prompt_length=False,
        )
        try:
            rollout = c.rollout()
            messages: list[Any] = [*USER]
            turn = await rollout.generate(messages)
            messages += [turn.message(), {"role": "user", "content": "and then?"}]
            # the first /tokenize times out once, the completion twice: before, 3 s in all
            stall = {"mode": "stall", "seconds": 5.0}
            clean.faults(
                {**stall, "path": "/tokenize"},
                {**stall, "path": "/v1/chat/completions/tokens", "count": 2},
            )
            out = [await timed(rollout.generate(messages))]
            return c.max_call_seconds, out
        finally:
            await c.aclose()

    bound, [(wall, err)] = asyncio.run(go())
    paths = [r["path"] for r in clean.requests()][-4:]
    assert paths == ["/tokenize"] * 3 + ["/v1/chat/completions/tokens"]
    assert isinstance(err, fasttito.DeadlineExceededError), err
    # where the shared budget runs out (the completion's body, or the pause before its retry)
    # depends on how late the loop's timers fire on a loaded machine; that it runs out does not
    assert err.waiting_for in ("body", "backoff"), err
    assert err.deadline == bound and "max_call_seconds=2.01s" in str(err)
    assert wall <= bound + SLACK


def test_calls_waiting_on_the_auto_probe_keep_their_deadline(clean: EngineProcess) -> None:
    """``transport="auto"`` without ``async with``: the first call probes (``GET /v1/models``
    first), the others wait on it within their own deadline."""
    clean.faults({"mode": "delay", "seconds": 5.0, "path": "/v1/models"})

    async def go() -> tuple[float, list[tuple[float, Any]]]:
        c = fasttito.Client(
            clean.v1_url, MODEL, timeout=1.0, max_retries=0, check_prompt_length=False
        )
        try:
            prober = asyncio.create_task(timed(c.rollout().generate(USER)))
            await asyncio.sleep(0.2)
            waiters = [timed(c.rollout().generate(USER, deadline=0.3)) for _ in range(3)]
            return c.max_call_seconds, [*await asyncio.gather(*waiters), await prober]
        finally:
            await c.aclose()

    bound, results = asyncio.run(go())
    *waiters, (prober_wall, prober) = results
    assert isinstance(prober, fasttito.RequestTimeoutError), prober
    assert "/v1/models" in str(prober) and prober_wall <= bound + SLACK
    for wall, err in waiters:
        assert isinstance(err, fasttito.DeadlineExceededError), err
        assert (err.waiting_for, err.deadline) == ("probe", 0.3)
        assert "waiting for the transport probe" in str(err)
        assert 0.3 <= wall <= 0.3 + SLACK


# --------------------------------------------------------------------------- at scale


def test_a_thousand_concurrent_rollouts_end_within_the_bound() -> None:
    """The CI version of the soak's bound check (tests/soak.py): 1,000 rollouts of 2 turns at
    once through one Client (``timeout=2``, ``max_retries=1``), 15% of requests faulted
    (stalls past the timeout, resets, drops, 5xx, slow answers, malformed bodies): every
    call's wall time is measured and none may exceed ``max_call_seconds`` + 1 s of local work
    + the event-loop lag measured during it (soak.py's docstring says why)."""
    args = soak.parse_args(
        [
            "--rollouts",
            "1000",
            "--concurrency",
            "1000",
            "--turns",
            "2",
            "--fault-rate",
            "0.15",
            "--modes",
            "stall",
            "reset",
            "drop",
            "http_503",
            "http_500",
            "delay",
            "truncated_json",
            "--timeout",
            "2",
            "--max-retries",
            "1",
            "--stall",
            "30",
            "--turn-attempts",
            "2",
            "--deadline",
            "120",
            # the bound is what is tested here, not the engine's renders: the fast renderer
            # lets more turns complete within the short timeout
            "--engine-renderer",
            "fasttito",
        ]
    )
    result = soak.run(args)
    b = result["bound"]
    print("bound check:", b)
    assert sum(result["injected"].values()) > 100, result  # faults were in fact injected
    assert b["calls"] >= 2000, b
    assert result["injected"].get("stall", 0) > 0, result
    assert not result["crashes"], result["crashes"]
    assert b["violations"] == [], b
