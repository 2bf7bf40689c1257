"""Start a test engine as a subprocess on 127.0.0.1, wait until it answers, stop it by PID.

From a pytest fixture::

    from fasttito.testing import start_engine

    @pytest.fixture(scope="module")
    def engine():
        with start_engine("models/qwen2.5", served_model_name="test-model") as eng:
            yield eng  # eng.base_url = "http://127.0.0.1:PORT", eng.v1_url = base_url + "/v1"

    def test_x(engine):
        engine.script(mode="tool_agent", tool_calls=2)
        engine.faults({"mode": "http_503", "count": 1})
        ...
        assert engine.requests()[-1]["path"] == "/v1/chat/completions/tokens"

The engine also stops itself after ``idle_timeout`` seconds without requests and when the
process that started it dies, so a crashed test run leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENGINE_MODULE = "fasttito.testing.vllm_engine"
SGLANG_MODULE = "fasttito.testing.sglang_engine"


class EngineStartError(RuntimeError):
    pass


@dataclass
class EngineProcess:
    """A running engine. ``stop()`` (or leaving the ``with`` block) ends it."""

    proc: subprocess.Popen[bytes]
    port: int
    model: str
    log_path: Path
    api_key: str | None = None
    renderer: str = ""
    _stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def v1_url(self) -> str:
        return f"{self.base_url}/v1"

    # -- admin helpers (plain urllib; no auth needed) -----------------------------------------
    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, Any]:
        """(status, parsed JSON or text) of one request to the engine."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return status, raw.decode("utf-8", errors="replace")

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        status, out = self.call(method, path, body)
        if status != 200:
            raise RuntimeError(f"{method} {path} -> {status}: {out}")
        return out

    def script(self, **script: Any) -> dict[str, Any]:
        """Replace the completion script (keys as documented in vllm_engine/script.py)."""
        out: dict[str, Any] = self._admin("POST", "/_admin/script", script)["script"]
        return out

    def faults(self, *faults: dict[str, Any], replace: bool = False) -> list[dict[str, Any]]:
        """Queue faults, e.g. ``faults({"mode": "http_503", "count": 2})``."""
        body = {"faults": list(faults), "replace": replace}
        out: list[dict[str, Any]] = self._admin("POST", "/_admin/faults", body)["faults"]
        return out

    def requests(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self._admin("GET", "/_admin/requests")["requests"]
        return out

    def reset(self) -> None:
        self._admin("POST", "/_admin/reset", {})

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # -- lifetime -----------------------------------------------------------------------------
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the engine's PID, SIGKILL it after ``timeout``; returns its exit code."""
        return stop_engine(self, timeout)

    def __enter__(self) -> EngineProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_engine(
    model_dir: str | os.PathLike[str],
    *,
    served_model_name: str | None = None,
    max_model_len: int = 32768,
    idle_timeout: float = 300.0,
    api_key: str | None = None,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 60.0,
    python: str | None = None,
    env: dict[str, str] | None = None,
    renderer: str | None = None,
    module: str = ENGINE_MODULE,
) -> EngineProcess:
    """Start ``fasttito.testing.vllm_engine`` (or another engine ``module`` taking the same
    flags, see :func:`start_sglang`) on 127.0.0.1 with a free port and wait until it answers.

    ``model_dir`` is a model folder (a relative path is taken from the current directory).
    ``extra_args`` go to the engine's command line (``--disable-route``,
    ``--scheduling-policy``, ``--stop-token-id``...). ``renderer``: ``"transformers"``,
    ``"fasttito"`` or ``"auto"`` (default: ``$FASTTITO_ENGINE_RENDERER``, else auto; see
    :mod:`fasttito.testing.renderer`). The engine's stderr goes to a temporary log file
    (``log_path``), quoted in any start error and deleted by ``stop()`` unless
    ``FASTTITO_KEEP_ENGINE_LOGS`` is set.
    """
    path = Path(model_dir).resolve()
    if not (path / "tokenizer.json").is_file() and not (path / "tokenizer_config.json").is_file():
        raise EngineStartError(f"no tokenizer files in {path}: pass a model folder")
    cmd = [
        python or sys.executable,
        "-m",
        module,
        "--model",
        str(path),
        "--port",
        "0",
        "--max-model-len",
        str(max_model_len),
        "--idle-timeout",
        str(idle_timeout),
        "--parent-pid",
        str(os.getpid()),
    ]
    if served_model_name:
        cmd += ["--served-model-name", served_model_name]
    if api_key:
        cmd += ["--api-key", api_key]
    if renderer:
        cmd += ["--renderer", renderer]
    cmd += list(extra_args)
    full_env = dict(os.environ if env is None else env)
    full_env["HF_HUB_OFFLINE"] = "1"
    full_env["TRANSFORMERS_OFFLINE"] = "1"
    log_fd, log_name = tempfile.mkstemp(prefix=module.rsplit(".", 1)[-1] + "_", suffix=".log")
    log_path = Path(log_name)
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_fd,
            env=full_env,
        )
    finally:
        os.close(log_fd)
    assert proc.stdout is not None
    deadline = time.monotonic() + startup_timeout
    line = b""
    try:
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise EngineStartError(f"engine did not start in {startup_timeout:g}s")
            ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    raise EngineStartError(f"engine exited with code {proc.wait(5)}")
                line += chunk
            elif proc.poll() is not None:
                raise EngineStartError(f"engine exited with code {proc.returncode}")
        info = json.loads(line.split(b"\n", 1)[0])
        eng = EngineProcess(
            proc=proc,
            port=int(info["port"]),
            model=info["model"],
            log_path=log_path,
            api_key=api_key,
            renderer=str(info.get("renderer", "")),
        )
        while True:  # answers on HTTP (bounded by the same deadline)
            try:
                status, _ = eng.call("GET", "/health", timeout=2.0)
                if status == 200:
                    return eng
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise EngineStartError("engine printed ready but /health does not answer")
            time.sleep(0.05)
    except BaseException as exc:
        _kill(proc.pid, proc, 5.0)
        try:
            tail = log_path.read_text(errors="replace")[-4000:]
        except OSError:
            tail = ""
        if isinstance(exc, EngineStartError):
            raise EngineStartError(f"{exc}; command {cmd}; log:\n{tail}") from None
        raise


def start_sglang(
    model_dir: str | os.PathLike[str],
    *,
    served_model_name: str | None = None,
    context_length: int = 32768,
    idle_timeout: float = 300.0,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 60.0,
    python: str | None = None,
    env: dict[str, str] | None = None,
    renderer: str | None = None,
) -> EngineProcess:
    """Start ``fasttito.testing.sglang_engine`` (SGLang 0.5.23's ``/generate`` wire, a real
    prefix cache, faults) on 127.0.0.1 and wait until it answers; stopped like
    :func:`start_engine`'s. ``extra_args``: ``--skip-tokenizer-init``,
    ``--enable-return-routed-experts``, ``--hide-max-model-len``, ``--bad-id-behaviour``,
    ``--max-total-tokens``..."""
    return start_engine(
        model_dir,
        served_model_name=served_model_name,
        max_model_len=context_length,
        idle_timeout=idle_timeout,
        extra_args=extra_args,
        startup_timeout=startup_timeout,
        python=python,
        env=env,
        renderer=renderer,
        module=SGLANG_MODULE,
    )


def _kill(pid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> int | None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    if proc is None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return None
            time.sleep(0.05)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return None
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return proc.wait(timeout)


def stop_engine(engine: EngineProcess | int, timeout: float = 10.0) -> int | None:
    """Stop an engine by PID (an ``EngineProcess`` or a bare pid); its exit code if known."""
    if isinstance(engine, int):
        return _kill(engine, None, timeout)
    if engine._stopped:
        return engine.proc.returncode
    engine._stopped = True
    code = _kill(engine.pid, engine.proc, timeout)
    if engine.proc.stdout is not None:
        engine.proc.stdout.close()
    if not os.environ.get("FASTTITO_KEEP_ENGINE_LOGS"):
        engine.log_path.unlink(missing_ok=True)
    return code
