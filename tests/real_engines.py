"""The real engines for the tests: upstream vLLM 0.32 (CPU build) and NVIDIA Dynamo 1.6.1 with its
own vLLM 0.31 worker, as ``scripts/install-vllm.sh`` installs them.

Where they are comes from the environment (``scripts/test`` sets it from the install script's
output): ``FASTTITO_VLLM`` (the vLLM 0.32 venv), ``FASTTITO_DYNAMO_VLLM`` (the Dynamo + vLLM 0.31
venv) and ``FASTTITO_SMOL`` (the SmolLM2-135M-Instruct folder). ``FASTTITO_REQUIRE_VLLM=1`` turns
a missing install into a failure instead of a skip.

Every server process is started through this file's ``guard`` sub-command: it runs the server in
a process group of its own, on 127.0.0.1 only, and kills that group when the test process is gone
(or when it is itself terminated), so a crashed test run leaves nothing behind. ``stop()`` ends a
server by the guard's PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

SERVED = "smol"


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def require(*names: str) -> list[Path]:
    """The folders the named variables point to; skips the test when one is missing, or fails
    under ``FASTTITO_REQUIRE_VLLM=1`` (as ``scripts/test`` runs)."""
    out = []
    for name in names:
        path = _env_path(name)
        if path is None or not path.exists():
            why = (
                f"{name} is not set or does not exist: the real engines are not installed "
                "(scripts/install-vllm.sh; scripts/test sets the variables)"
            )
            if os.environ.get("FASTTITO_REQUIRE_VLLM") == "1":
                pytest.fail(why, pytrace=False)
            pytest.skip(why)
        out.append(path)
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Server:
    """One guarded server process (or several sharing a run dir)."""

    def __init__(self, name: str, run_dir: Path, port: int) -> None:
        self.name = name
        self.run_dir = run_dir
        self.port = port
        self.guards: list[subprocess.Popen[bytes]] = []

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    def spawn(self, label: str, cmd: Sequence[str], env: Mapping[str, str]) -> None:
        log = open(self.run_dir / f"{label}.log", "wb")  # the child process owns it
        self.guards.append(
            subprocess.Popen(
                [sys.executable, __file__, "guard", str(os.getpid()), "--", *cmd],
                env=dict(env),
                cwd=self.run_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        log.close()

    def logs(self, tail: int = 6000) -> str:
        out = []
        for path in sorted(self.run_dir.glob("*.log")):
            text = path.read_text(errors="replace")
            out.append(f"--- {path.name}\n{text[-tail:]}")
        return "\n".join(out)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for g in self.guards:
                if g.poll() is not None:
                    raise RuntimeError(f"{self.name} exited while starting:\n{self.logs()}")
            with contextlib.suppress(OSError):
                status, body = get(self.base_url + "/models", timeout=2.0)
                if status == 200 and SERVED.encode() in body:
                    return
            time.sleep(1.0)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.logs()}")

    def metrics(self) -> dict[str, float]:
        """vLLM's Prometheus counters, summed over labels (``vllm:prefix_cache_hits_total``...)."""
        status, body = get(self.root_url + "/metrics", timeout=5.0)
        assert status == 200, body[:200]
        out: dict[str, float] = {}
        for line in body.decode().splitlines():
            m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+([-+0-9.eE]+|NaN)$", line)
            if m:
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
        return out

    def stop(self) -> None:
        for g in self.guards:
            if g.poll() is None:
                g.terminate()
        for g in self.guards:
            try:
                g.wait(timeout=30)
            except subprocess.TimeoutExpired:
                g.kill()
                g.wait(timeout=10)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _base_env(venv: Path, run_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FASTTITO_", "VIRTUAL_ENV", "PYTHON"))
    }
    home = run_dir / "home"
    home.mkdir(exist_ok=True)
    env.update(
        {
            "PATH": f"{venv / 'bin'}:{env.get('PATH', '')}",
            "HOME": str(home),
            "TMPDIR": str(run_dir),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "VLLM_HOST_IP": "127.0.0.1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "PYTHONUNBUFFERED": "1",
            # Intel OpenMP, as vLLM's CPU docs ask (the venv ships it)
            "LD_PRELOAD": str(venv / "lib" / "libiomp5.so"),
        }
    )
    return env


def start_vllm(
    venv: Path, model: Path, *, scale_out: bool = True, extra: Sequence[str] = ()
) -> Server:
    """``python -m vllm.entrypoints.openai.api_server`` serving ``model`` as ``smol``."""
    run_dir = Path(tempfile.mkdtemp(prefix="fasttito-vllm-"))
    server = Server("vLLM 0.32", run_dir, free_port())
    cmd = [
        str(venv / "bin" / "python"),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--served-model-name",
        SERVED,
        "--host",
        "127.0.0.1",
        "--port",
        str(server.port),
        "--dtype",
        "float32",
        "--enforce-eager",
        "--max-model-len",
        "2048",
        "--max-num-seqs",
        "8",
        *(["--enable-scale-out"] if scale_out else []),
        *extra,
    ]
    server.spawn("vllm", cmd, _base_env(venv, run_dir))
    server.wait_ready(timeout=420)
    return server


def start_dynamo_vllm(venv: Path, model: Path, *, extra: Sequence[str] = ()) -> Server:
    """Dynamo 1.6.1's own vLLM worker (``python -m dynamo.vllm``) and its frontend, with file
    discovery, the TCP request plane and the zmq event plane, all on 127.0.0.1."""
    run_dir = Path(tempfile.mkdtemp(prefix="fasttito-dynamo-vllm-"))
    server = Server("Dynamo 1.6.1 + vLLM 0.31", run_dir, free_port())
    (run_dir / "kv").mkdir()
    env = _base_env(venv, run_dir)
    env.update(
        {
            "DYN_DISCOVERY_BACKEND": "file",
            "DYN_FILE_KV": str(run_dir / "kv"),
            "DYN_REQUEST_PLANE": "tcp",
            "DYN_EVENT_PLANE": "zmq",
            "DYN_TCP_RPC_HOST": "127.0.0.1",
            "DYN_TCP_RESPONSE_STREAM_HOST": "127.0.0.1",
            "DYN_EVENT_PLANE_HOST": "127.0.0.1",
            "DYN_SYSTEM_HOST": "127.0.0.1",
            "DYN_HTTP_HOST": "127.0.0.1",
            "DYN_SELF_HOST_METADATA": "0",
            "DYN_GRACEFUL_SHUTDOWN_GRACE_PERIOD_SECS": "0",
            "DYN_LOG": "info",
            "DYN_SDK_DISABLE_ANSI_LOGGING": "1",
            "NO_COLOR": "1",
        }
    )
    python = str(venv / "bin" / "python")
    worker = [
        python,
        "-m",
        "dynamo.vllm",
        "--model",
        str(model),
        "--served-model-name",
        SERVED,
        "--discovery-backend",
        "file",
        "--request-plane",
        "tcp",
        "--event-plane",
        "zmq",
        "--dtype",
        "float32",
        "--enforce-eager",
        "--max-model-len",
        "2048",
        "--max-num-seqs",
        "4",
        *extra,
    ]
    frontend = [
        python,
        "-m",
        "dynamo.frontend",
        "--http-host",
        "127.0.0.1",
        "--http-port",
        str(server.port),
        "--discovery-backend",
        "file",
    ]
    server.spawn("worker", worker, env)
    frontend_env = {k: v for k, v in env.items() if k != "LD_PRELOAD"}
    server.spawn("frontend", frontend, frontend_env)
    server.wait_ready(timeout=480)
    return server


def request_json(url: str, body: Any, timeout: float = 120.0) -> tuple[int, Any]:
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


# ------------------------------------------------------------------------------------ guard


def _guard(argv: list[str]) -> int:
    """``python real_engines.py guard PARENT_PID -- cmd...``: runs ``cmd`` in a new process group
    and kills the group when PARENT_PID is gone, when ``cmd`` exits, or on SIGTERM/SIGINT."""
    parent = int(argv[0])
    cmd = argv[2:] if argv[1:2] == ["--"] else argv[1:]
    child = subprocess.Popen(cmd, start_new_session=True)
    stopping = False

    def kill_group(sig: int) -> None:
        with contextlib.suppress(OSError):
            os.killpg(child.pid, sig)

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while child.poll() is None and not stopping:
        try:
            os.kill(parent, 0)
        except OSError:
            break
        time.sleep(0.5)
    kill_group(signal.SIGTERM)
    deadline = time.monotonic() + 15
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    kill_group(signal.SIGKILL)  # whatever the server forked, even after it exited itself
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=5)
    return child.returncode or 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "guard":
        raise SystemExit(_guard(sys.argv[2:]))
    print(__doc__)
    raise SystemExit(2)
