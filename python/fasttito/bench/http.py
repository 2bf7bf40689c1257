"""Benchmark: HTTP at scale, whole ``rollout.generate`` turns against bare HTTP clients.

One client process, release build; the server runs in another process on 127.0.0.1 and answers
every ``POST /inference/v1/generate`` with one recorded vLLM generate response (a Qwen2.5
tool call ending in ``<|im_end|>``, with ``token_id:N`` logprobs), so the server costs the same
for every candidate and nothing here measures an engine. N concurrent rollouts each run T turns
(a system + user prompt of about 300 ids, then one tool result per turn):

* ``fasttito``: ``fasttito.Client(transport="vllm-generate")`` and ``rollout.generate`` per turn:
  bridge + stitch in Rust, the request body written in Rust, POST on fasttito's aiohttp session,
  bounded read, parse + alignment checks + completion decoding in Rust;
* ``aiohttp``: a bare ``aiohttp.ClientSession`` POST of the same request bytes (recorded from a
  fasttito run) + ``await resp.read()``: the floor of any aiohttp-based client;
* ``httpx``: the same loop on ``httpx.AsyncClient`` 0.28.1 (``Limits`` sized to N).

The column "of it without HTTP" runs the fasttito candidate again with a Poster that answers at
once with the server's bodies: fasttito's own work per turn, at the same concurrency, so that
``fasttito ~ bare aiohttp + own work`` shows where a turn's time goes.

Client CPU per turn is ``time.process_time()`` over the whole run divided by the number of turns
(rounds repeat until about ``REQUESTS`` turns ran), garbage collector on. A fasttito turn makes
two calls into Rust (``Rollout.plan_turn`` before the POST, ``Rollout.complete`` after), so
what it costs above the bare POST is that Rust work (the bridge render, the body, the parse
and decode) plus the Client's retry, budget and timeout path. Goals, printed with pass or
miss: at 1,000 concurrent rollouts a fasttito turn at most 1.10x a bare aiohttp POST + read,
and flat from 50 to 1,000 rollouts (within 1.2x).

Run: ``fasttito bench http`` (``--quick``: 20 and 200 rollouts of 2 turns). The server is
``python -m fasttito.bench.http --serve``: loopback only, it exits when this process closes its
stdin or after an hour, and is stopped by PID.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from typing import Any

from fasttito.bench._timing import model_folder

TITLE = "HTTP at scale: client CPU per whole turn, fasttito against bare aiohttp and httpx"
SERVED = "bench-model"
REQUESTS = 4000

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather of a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "The city name."}},
                "required": ["city"],
            },
        },
    }
]
SYSTEM = (
    "You are a careful assistant that answers questions about the weather. Use the tools you are "
    "given whenever a question needs live data, call one tool at a time, and keep answers short. "
) * 6
CALL = (
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>'
)


def _response(completion_ids: list[int]) -> bytes:
    body = {
        "request_id": "gen-bench",
        "choices": [
            {
                "index": 0,
                "logprobs": {
                    "content": [
                        {"token": f"token_id:{t}", "logprob": -0.25} for t in completion_ids
                    ]
                },
                "finish_reason": "stop",
                "token_ids": completion_ids,
            }
        ],
        "prompt_logprobs": None,
        "kv_transfer_params": None,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _models() -> bytes:
    return json.dumps(
        {
            "object": "list",
            "data": [
                {"id": SERVED, "object": "model", "owned_by": "vllm", "max_model_len": 1 << 20}
            ],
        }
    ).encode()


def serve(completion_ids: list[int], lifetime: float) -> None:
    """The server process: static answers on 127.0.0.1, the port printed on stdout; exits when
    stdin closes (its parent went away) or after ``lifetime`` seconds."""
    from aiohttp import web

    body = _response(completion_ids)
    models = _models()

    async def generate(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/json")

    async def list_models(request: web.Request) -> web.Response:
        return web.Response(body=models, content_type="application/json")

    async def main() -> None:
        app = web.Application(client_max_size=1 << 26)
        app.router.add_post("/inference/v1/generate", generate)
        app.router.add_get("/v1/models", list_models)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[None] = loop.create_future()

        def on_stdin() -> None:
            if not closed.done():
                closed.set_result(None)

        loop.add_reader(sys.stdin.fileno(), on_stdin)
        try:
            await asyncio.wait_for(closed, lifetime)
        except TimeoutError:
            pass
        await runner.cleanup()

    asyncio.run(main())


class Server:
    """The server in its own process (started here, stopped by PID)."""

    def __init__(self, completion_ids: list[int], lifetime: float = 3600.0) -> None:
        ids = ",".join(map(str, completion_ids))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fasttito.bench.http", "--serve", ids, str(lifetime)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError(f"the benchmark server did not start (it printed {line!r})")
        self.url = f"http://127.0.0.1:{line}"

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _tool_result(turn: int) -> dict[str, Any]:
    return {
        "role": "tool",
        "tool_call_id": f"call_{turn}",
        "content": f'{{"temperature": {12 + turn}, "sky": "clear"}}',
    }


class _Recorder:
    """A Poster that keeps every request body it sends (to replay the same bytes bare)."""

    def __init__(self) -> None:
        from fasttito.http import AiohttpPoster

        self.inner = AiohttpPoster()
        self.bodies: list[bytes] = []

    async def request(self, method: str, url: str, body: bytes | None, **kw: Any) -> Any:
        if body is not None and url.endswith("/generate"):
            self.bodies.append(body)
        return await self.inner.request(method, url, body, **kw)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _rollout(client: Any, turns: int) -> None:
    r = client.rollout()
    messages: list[Any] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    for k in range(turns):
        turn = await r.generate(messages, tools=TOOLS, max_tokens=64)
        if turn.mode != ("tito" if k else "mito"):
            raise AssertionError(f"turn {k + 1} went as {turn.mode} ({turn.fallback_reason})")
        messages += [turn.message(), _tool_result(k)]


async def _record(url: str, tok: Any, turns: int) -> list[bytes]:
    import fasttito

    recorder = _Recorder()
    async with fasttito.Client(
        url, SERVED, transport="vllm-generate", tokenizer=tok, http_client=recorder
    ) as client:
        await _rollout(client, turns)
    return recorder.bodies


class _Canned:
    """A Poster that answers with the server's bodies without any HTTP, once every other
    rollout had its turn (as while a POST is out): a turn through it costs fasttito's own work
    alone (plan, body, retry and deadline path, parse, decode, record), at the same
    concurrency and with the same interleaving of rollouts."""

    def __init__(self, completion_ids: list[int]) -> None:
        from fasttito.http import HttpResponse

        self.generate = HttpResponse(200, _response(completion_ids))
        self.models = HttpResponse(200, _models())

    async def request(self, method: str, url: str, body: bytes | None, **kw: Any) -> Any:
        await asyncio.sleep(0)  # the other rollouts run in between, as while a POST is out
        return self.models if url.endswith("/models") else self.generate

    async def aclose(self) -> None:
        pass


async def _fasttito(
    url: str, tok: Any, n: int, turns: int, rounds: int, poster: Any = None
) -> float:
    import fasttito

    async with fasttito.Client(
        url, SERVED, transport="vllm-generate", tokenizer=tok, http_client=poster
    ) as client:
        await _rollout(client, turns)  # warm: the session, /v1/models, caches
        gc.collect()
        t0 = time.process_time()
        for _ in range(rounds):
            await asyncio.gather(*(_rollout(client, turns) for _ in range(n)))
        return time.process_time() - t0


async def _heap_per_rollout(url: str, tok: Any, n: int, turns: int) -> float:
    """Python heap (``tracemalloc``) that ``n`` finished rollouts hold, kept with their
    messages and turns, per rollout."""
    import tracemalloc

    import fasttito

    async def one(client: Any) -> tuple[Any, list[Any], list[Any]]:
        r = client.rollout()
        messages: list[Any] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Weather in Paris?"},
        ]
        kept = []
        for k in range(turns):
            turn = await r.generate(messages, tools=TOOLS, max_tokens=64)
            kept.append(turn)
            messages += [turn.message(), _tool_result(k)]
        return r, messages, kept

    async with fasttito.Client(url, SERVED, transport="vllm-generate", tokenizer=tok) as client:
        await one(client)
        gc.collect()
        tracemalloc.start()
        try:
            start = tracemalloc.get_traced_memory()[0]
            held = await asyncio.gather(*(one(client) for _ in range(n)))
            gc.collect()
            used = tracemalloc.get_traced_memory()[0] - start
        finally:
            tracemalloc.stop()
        del held
        return used / n


async def _aiohttp(url: str, bodies: list[bytes], n: int, rounds: int) -> float:
    import aiohttp

    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    target = url + "/inference/v1/generate"

    async def one(session: aiohttp.ClientSession) -> None:
        for body in bodies:
            async with session.post(target, data=body, headers=headers) as resp:
                data = await resp.read()
                if resp.status != 200 or not data:
                    raise AssertionError(resp.status)

    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await one(session)
        gc.collect()
        t0 = time.process_time()
        for _ in range(rounds):
            await asyncio.gather(*(one(session) for _ in range(n)))
        return time.process_time() - t0


async def _httpx(url: str, bodies: list[bytes], n: int, rounds: int) -> float:
    import httpx

    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    target = url + "/inference/v1/generate"

    async def one(client: httpx.AsyncClient) -> None:
        for body in bodies:
            resp = await client.post(target, content=body, headers=headers)
            if resp.status_code != 200 or not resp.content:
                raise AssertionError(resp.status_code)

    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(600.0)) as client:
        await one(client)
        gc.collect()
        t0 = time.process_time()
        for _ in range(rounds):
            await asyncio.gather(*(one(client) for _ in range(n)))
        return time.process_time() - t0


def versions() -> str:
    import aiohttp

    from fasttito import _core

    try:
        import httpx

        httpx_version = httpx.__version__
    except ImportError:
        httpx_version = "not installed"
    return (
        f"fasttito {_core.__version__} ({_core.build_profile}), aiohttp {aiohttp.__version__}, "
        f"httpx {httpx_version}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )


def measure(quick: bool) -> list[dict[str, Any]]:
    """One row per number of concurrent rollouts: client CPU per turn of each candidate and
    the ratios (httpx is "not installed" when it is not)."""
    import fasttito

    tok = fasttito.Tokenizer.from_dir(model_folder("qwen2.5"))
    completion = tok.encode(CALL)
    levels, turns, total = ((20, 200), 2, 400) if quick else ((50, 1000), 4, REQUESTS)
    try:
        import httpx  # noqa: F401

        have_httpx = True
    except ImportError:
        have_httpx = False
    server = Server(completion)
    rows: list[dict[str, Any]] = []
    try:
        for n in levels:
            rounds = max(1, total // (n * turns))
            count = n * turns * rounds
            bodies = asyncio.run(_record(server.url, tok, turns))
            ours = asyncio.run(_fasttito(server.url, tok, n, turns, rounds)) / count
            own = (
                asyncio.run(_fasttito(server.url, tok, n, turns, rounds, _Canned(completion)))
                / count
            )
            bare = asyncio.run(_aiohttp(server.url, bodies, n, rounds)) / count
            other = (
                asyncio.run(_httpx(server.url, bodies, n, rounds)) / count if have_httpx else None
            )
            rows.append(
                {
                    "concurrent rollouts": f"{n:,}",
                    "turns timed": f"{count:,}",
                    "request body": f"{sum(map(len, bodies)) / len(bodies) / 1e3:.1f} kB",
                    "fasttito rollout.generate": _ms(ours),
                    "of it without HTTP": _ms(own),
                    "bare aiohttp POST + read": _ms(bare),
                    "httpx POST + read": _ms(other),
                    "fasttito / aiohttp": f"{ours / bare:.2f}x",
                    "httpx / fasttito": f"{other / ours:.1f}x" if other is not None else "-",
                    "_fasttito": ours,
                    "_aiohttp": bare,
                    "_rollouts": n,
                }
            )
        heap = asyncio.run(_heap_per_rollout(server.url, tok, 200, turns))
        rows[-1]["_heap"] = (heap, turns)
    finally:
        server.stop()
    return rows


#: fasttito / bare aiohttp per turn at the most concurrent rollouts, at most.
GOAL_VS_AIOHTTP = 1.10
#: fasttito per turn at the most vs the fewest concurrent rollouts, at most.
GOAL_FLAT = 1.20


def summary(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    last = rows[-1]
    ratio = last["_fasttito"] / last["_aiohttp"]
    lines = [
        f"goal: fasttito / bare aiohttp at {last['_rollouts']:,} rollouts <= "
        f"{GOAL_VS_AIOHTTP:.2f}x: {ratio:.2f}x ({_verdict(ratio <= GOAL_VS_AIOHTTP)})"
    ]
    if len(rows) >= 2:
        flat = last["_fasttito"] / rows[0]["_fasttito"]
        lines.append(
            f"goal: fasttito per-turn CPU at {last['_rollouts']:,} vs {rows[0]['_rollouts']:,} "
            f"rollouts <= {GOAL_FLAT:.2f}x: {flat:.2f}x ({_verdict(flat <= GOAL_FLAT)})"
        )
    if "_heap" in last:
        heap, turns = last["_heap"]
        lines.append(
            f"Python heap per finished rollout ({turns} turns, kept with its messages and "
            f"turns; tracemalloc): {heap / 1024:.1f} KiB"
        )
    return lines


def _verdict(ok: bool) -> str:
    return "pass" if ok else "miss"


def _ms(s: float | None) -> str:
    return "not installed" if s is None else f"{s * 1e3:.2f} ms"


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    serve([int(t) for t in sys.argv[2].split(",")], float(sys.argv[3]))
