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

Client CPU per turn is ``time.process_time()`` over the whole run divided by the number of turns
(rounds repeat until about ``REQUESTS`` turns ran). Goals (issue 9): at 1,000 concurrent
rollouts fasttito within 1.5x of bare aiohttp and at least 15x below httpx; fasttito flat from
50 to 1,000 rollouts (within 1.3x).

Run: ``.venv/bin/python bench/bench_http.py`` (``--quick`` for a short run).
"""

from __future__ import annotations

import asyncio
import gc
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "qwen2.5"
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
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>'


def _response(completion_ids: list[int]) -> bytes:
    body = {
        "request_id": "gen-bench",
        "choices": [
            {
                "index": 0,
                "logprobs": {"content": [{"token": f"token_id:{t}", "logprob": -0.25} for t in completion_ids]},
                "finish_reason": "stop",
                "token_ids": completion_ids,
            }
        ],
        "prompt_logprobs": None,
        "kv_transfer_params": None,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _serve(body: bytes, conn: Any, lifetime: float) -> None:
    """The server process: static answers, loopback only, exits on its own after ``lifetime``
    seconds or when the parent closes the pipe."""
    from aiohttp import web

    models = json.dumps(
        {"object": "list", "data": [{"id": SERVED, "object": "model", "owned_by": "vllm", "max_model_len": 1 << 20}]}
    ).encode()

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
        port = runner.addresses[0][1]
        conn.send(port)
        loop = asyncio.get_running_loop()
        closed = loop.create_future()
        loop.add_reader(conn.fileno(), lambda: closed.done() or closed.set_result(None))
        try:
            await asyncio.wait_for(closed, lifetime)
        except asyncio.TimeoutError:
            pass
        await runner.cleanup()

    asyncio.run(main())


class Server:
    def __init__(self, body: bytes, lifetime: float = 3600.0) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(body, child, lifetime), daemon=True)
        self.proc.start()
        child.close()
        if not self._conn.poll(60):
            self.stop()
            raise RuntimeError("the benchmark server did not start within 60 s")
        self.url = f"http://127.0.0.1:{self._conn.recv()}"

    def stop(self) -> None:
        self._conn.close()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def _tool_result(turn: int) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": f"call_{turn}", "content": f'{{"temperature": {12 + turn}, "sky": "clear"}}'}


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
    messages: list[Any] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Weather in Paris?"}]
    for k in range(turns):
        turn = await r.generate(messages, tools=TOOLS, max_tokens=64)
        if turn.mode != ("tito" if k else "mito"):
            raise AssertionError(f"turn {k + 1} went as {turn.mode} ({turn.fallback_reason})")
        messages += [turn.message(), _tool_result(k)]


async def _record(url: str, tok: Any, turns: int) -> list[bytes]:
    import fasttito

    recorder = _Recorder()
    async with fasttito.Client(url, SERVED, transport="vllm-generate", tokenizer=tok, http_client=recorder) as client:
        await _rollout(client, turns)
    return recorder.bodies


async def _fasttito(url: str, tok: Any, n: int, turns: int, rounds: int) -> float:
    import fasttito

    async with fasttito.Client(url, SERVED, transport="vllm-generate", tokenizer=tok) as client:
        await _rollout(client, turns)  # warm: the session, /v1/models, caches
        gc.collect()
        t0 = time.process_time()
        for _ in range(rounds):
            await asyncio.gather(*(_rollout(client, turns) for _ in range(n)))
        return time.process_time() - t0


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


def measure(quick: bool = False) -> list[dict[str, Any]]:
    """Client CPU per turn (seconds) for each candidate and concurrency; one row per
    concurrency level with keys ``rollouts``, ``turns``, ``fasttito``, ``aiohttp``, ``httpx``
    (``httpx`` is None when httpx is not installed)."""
    import fasttito

    tok = fasttito.Tokenizer.from_dir(MODEL_DIR)
    completion = tok.encode(CALL)
    turns = 4
    total = 800 if quick else REQUESTS
    try:
        import httpx  # noqa: F401

        have_httpx = True
    except ImportError:
        have_httpx = False
    server = Server(_response(completion))
    rows = []
    try:
        for n in (50, 1000):
            rounds = max(1, total // (n * turns))
            bodies = asyncio.run(_record(server.url, tok, turns))
            cpu = asyncio.run(_fasttito(server.url, tok, n, turns, rounds))
            count = n * turns * rounds
            row: dict[str, Any] = {"rollouts": n, "turns": count, "fasttito": cpu / count,
                                   "request_bytes": sum(map(len, bodies)) // len(bodies)}
            row["aiohttp"] = asyncio.run(_aiohttp(server.url, bodies, n, rounds)) / count
            row["httpx"] = asyncio.run(_httpx(server.url, bodies, n, rounds)) / count if have_httpx else None
            rows.append(row)
    finally:
        server.stop()
    return rows


def _ms(s: float | None) -> str:
    return "not installed" if s is None else f"{s * 1e3:.2f} ms"


def main() -> int:
    from fasttito import _core

    if _core.build_profile != "release":
        print("error: benchmark a release build", file=sys.stderr)
        return 1
    import aiohttp

    try:
        import httpx

        httpx_version = httpx.__version__
    except ImportError:
        httpx_version = "not installed"
    quick = "--quick" in sys.argv[1:]
    print(f"fasttito {_core.__version__} ({_core.build_profile}), aiohttp {aiohttp.__version__}, httpx {httpx_version}, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    rows = measure(quick)
    print("| concurrent rollouts | turns timed | request body | fasttito `rollout.generate` | bare aiohttp POST + read "
          "| httpx POST + read | fasttito / aiohttp | httpx / fasttito |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        vs_httpx = f"{r['httpx'] / r['fasttito']:.1f}x" if r["httpx"] is not None else "-"
        print(f"| {r['rollouts']:,} | {r['turns']:,} | {r['request_bytes'] / 1e3:.1f} kB | {_ms(r['fasttito'])} "
              f"| {_ms(r['aiohttp'])} | {_ms(r['httpx'])} | {r['fasttito'] / r['aiohttp']:.2f}x | {vs_httpx} |")
    flat = rows[-1]["fasttito"] / rows[0]["fasttito"]
    print(f"\nfasttito per-turn CPU at {rows[-1]['rollouts']:,} vs {rows[0]['rollouts']:,} rollouts: {flat:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
