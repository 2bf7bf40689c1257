"""Start the real NVIDIA Dynamo frontend + the scripted engine (``dynamo_engine.py``) for tests.

    from fasttito.testing import start_dynamo

    with start_dynamo(Path("models/qwen2.5"), "qwen2.5") as h:
        h.base_url          # "http://127.0.0.1:PORT"  (the OpenAI routes are under /v1)
        h.openai_base_url   # "http://127.0.0.1:PORT/v1"
        h.set_control(error="exception", fail_next=1)   # fault injection, see dynamo_engine.py
        h.clear_control()

    h = start_dynamo(...); ...; h.stop()                 # the same without ``with``

Both processes run from the current interpreter (``sys.executable``; it must have
``ai-dynamo==1.6.1``, see ``scripts/install-dynamo.sh``) on 127.0.0.1 only, each in its own
process group, with everything they write in a fresh temp dir:

* ``model/``: the model folder as Dynamo wants it: the tokenizer files symlinked from
  ``model_dir``, plus a ``config.json`` (``vocab_size`` = ``len(tokenizer)``, tiny llama
  geometry) and a ``generation_config.json`` (``eos_token_id``) when ``model_dir`` has none;
  the frontend refuses a folder without an eos id or chat template.
* ``kv/``: file-based discovery (``DYN_FILE_KV``); no etcd, no NATS.
* ``home/``: ``HOME`` (the frontend caches model cards in ``$HOME/.cache/dynamo``).
* ``engine.log``, ``frontend.log``; ``control.json`` (the engine's control file).

``stop()`` sends SIGTERM to both process groups, SIGKILLs what is left after ``grace`` seconds
and removes the temp dir. If the test process dies without calling it, both children exit by
themselves: the engine has a watchdog on ``os.getppid()`` and the frontend is started through
this file's ``frontend`` sub-command, which runs it in-process with the same watchdog.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

ENGINE_MODULE = "fasttito.testing.dynamo_engine"
LAUNCH_MODULE = "fasttito.testing.dynamo_launch"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "chat_template.json",
    "special_tokens_map.json",
    "generation_config.json",
    "config.json",
)


class DynamoStartError(RuntimeError):
    pass


def dynamo_importable(python: str | None = None) -> bool:
    """True when ``python`` (default: this interpreter) can import the Dynamo frontend."""
    if python is None or Path(python) == Path(sys.executable):
        import importlib.util

        return importlib.util.find_spec("dynamo") is not None and (
            importlib.util.find_spec("dynamo.frontend") is not None
        )
    r = subprocess.run([python, "-c", "import dynamo.frontend"], capture_output=True)
    return r.returncode == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _eos_token_id(model_dir: Path) -> int:
    cfg = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    eos = cfg.get("eos_token")
    if isinstance(eos, dict):
        eos = eos.get("content")
    if not isinstance(eos, str):
        raise DynamoStartError(f"{model_dir}: no eos_token in tokenizer_config.json")
    for tid, added in (cfg.get("added_tokens_decoder") or {}).items():
        if added.get("content") == eos:
            return int(tid)
    tok = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    for added in tok.get("added_tokens") or []:
        if added.get("content") == eos:
            return int(added["id"])
    vocab = (tok.get("model") or {}).get("vocab") or {}
    if isinstance(vocab, dict) and eos in vocab:
        return int(vocab[eos])
    raise DynamoStartError(f"{model_dir}: eos token {eos!r} not found in the tokenizer")


def _vocab_size(model_dir: Path) -> int:
    tok = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = (tok.get("model") or {}).get("vocab") or {}
    n = len(vocab)
    ids = [int(a["id"]) for a in tok.get("added_tokens") or []]
    if isinstance(vocab, dict) and vocab:
        n = max(n, max(vocab.values()) + 1)
    return max([n, *(i + 1 for i in ids)])


def prepare_model_dir(model_dir: Path, dest: Path) -> Path:
    """Lay out ``dest`` as a model folder the Dynamo frontend accepts (see module doc)."""
    model_dir = model_dir.resolve()
    if not (model_dir / "tokenizer.json").is_file():
        raise DynamoStartError(f"{model_dir}: no tokenizer.json")
    dest.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (model_dir / name).is_file():
            (dest / name).symlink_to(model_dir / name)
    if not (dest / "generation_config.json").exists():
        gen = {"eos_token_id": _eos_token_id(model_dir)}
        (dest / "generation_config.json").write_text(json.dumps(gen), encoding="utf-8")
    if not (dest / "config.json").exists():
        cfg = {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": _vocab_size(model_dir),
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "max_position_embeddings": 32768,
            "eos_token_id": _eos_token_id(model_dir),
        }
        (dest / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return dest


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # started with start_new_session: pgid == pid


class DynamoHandle:
    """A running frontend + engine pair. Use as a context manager or call ``stop()``."""

    def __init__(
        self,
        *,
        run_dir: Path,
        model_dir: Path,
        served_name: str,
        port: int,
        engine: subprocess.Popen[bytes],
        frontend: subprocess.Popen[bytes],
        keep_run_dir: bool,
    ) -> None:
        self.run_dir = run_dir
        self.model_dir = model_dir
        self.served_name = served_name
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.openai_base_url = f"{self.base_url}/v1"
        self.engine = engine
        self.frontend = frontend
        self.control_path = run_dir / "control.json"
        self._keep = keep_run_dir
        self._stopped = False
        self._lock = threading.Lock()

    # -- control of the engine (read per request; see dynamo_engine.py for the knobs)

    def set_control(self, **knobs: Any) -> None:
        """Replace the engine's control file with ``knobs`` (atomic rename)."""
        tmp = self.control_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(knobs), encoding="utf-8")
        os.replace(tmp, self.control_path)

    def clear_control(self) -> None:
        self.set_control()

    # -- introspection

    @property
    def pids(self) -> tuple[int, int]:
        return self.frontend.pid, self.engine.pid

    def alive(self) -> bool:
        return self.frontend.poll() is None and self.engine.poll() is None

    def logs(self, tail: int = 4000) -> str:
        out = []
        for name in ("frontend.log", "engine.log"):
            p = self.run_dir / name
            text = p.read_text(encoding="utf-8", errors="replace") if p.exists() else "(none)"
            out.append(f"--- {name} (last {tail} chars)\n{text[-tail:]}")
        return "\n".join(out)

    # -- lifecycle

    def stop(self, grace: float = 2.0) -> None:
        """SIGTERM both groups, SIGKILL after ``grace`` s, reap, remove the temp dir."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        procs = [self.frontend, self.engine]
        for p in procs:
            _kill_group(p, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
        for p in procs:
            _kill_group(p, signal.SIGKILL)
            # the group leader may be gone while other group members live on
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5.0)
        if not self._keep:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> DynamoHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"DynamoHandle({self.base_url}, model={self.served_name!r}, pids={self.pids})"


def _models(base_url: str, timeout: float = 1.0) -> list[str]:
    with urllib.request.urlopen(f"{base_url}/v1/models", timeout=timeout) as r:
        body = json.loads(r.read())
    return [m.get("id") for m in body.get("data") or []]


def start_dynamo(
    model_dir: Path | str,
    served_name: str,
    *,
    python: str | None = None,
    port: int | None = None,
    control: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    engine_args: Sequence[str] = (),
    frontend_args: Sequence[str] = (),
    timeout: float = 45.0,
    keep_run_dir: bool = False,
) -> DynamoHandle:
    """Start the Dynamo frontend + scripted engine; return once ``/v1/models`` lists the model.

    ``control``: initial engine knobs (written to the control file before start). ``env``: extra
    environment for both processes (e.g. ``FASTTITO_DYN_STRIP_STOP="true"``, or Dynamo's own
    ``DYN_*`` settings). Raises ``DynamoStartError`` (with both logs) if the stack is not ready
    within ``timeout`` seconds; nothing is left running then.
    """
    python = python or sys.executable
    run_dir = Path(tempfile.mkdtemp(prefix="fasttito-dynamo-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        served_dir = prepare_model_dir(Path(model_dir), run_dir / "model")
        (run_dir / "kv").mkdir()
        (run_dir / "home").mkdir()
        control_path = run_dir / "control.json"
        control_path.write_text(json.dumps(dict(control or {})), encoding="utf-8")
        port = port or free_port()
        child_env = dict(os.environ)
        child_env.update(
            {
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
                "PYTHONUNBUFFERED": "1",
                "HOME": str(run_dir / "home"),
                "DYN_DISCOVERY_BACKEND": "file",
                "DYN_FILE_KV": str(run_dir / "kv"),
                "DYN_REQUEST_PLANE": "tcp",
                "DYN_EVENT_PLANE": "zmq",
                "DYN_TCP_RPC_HOST": "127.0.0.1",
                "DYN_TCP_RESPONSE_STREAM_HOST": "127.0.0.1",
                "DYN_EVENT_PLANE_HOST": "127.0.0.1",
                "DYN_SYSTEM_HOST": "127.0.0.1",
                "DYN_SELF_HOST_METADATA": "0",
                "DYN_HTTP_HOST": "127.0.0.1",
                # the engine's Rust worker otherwise waits 5 s after SIGTERM before draining
                "DYN_GRACEFUL_SHUTDOWN_GRACE_PERIOD_SECS": "0",
                "DYN_LOG": "info",
                "DYN_SDK_DISABLE_ANSI_LOGGING": "1",
                "NO_COLOR": "1",
                "FASTTITO_DYN_CONTROL": str(control_path),
                "FASTTITO_DYN_PARENT_PID": str(os.getpid()),
                "FASTTITO_DYN_RUN_DIR": str(run_dir),
            }
        )
        child_env.update(env or {})
        with open(run_dir / "engine.log", "wb") as elog:
            procs.append(
                subprocess.Popen(
                    [
                        python,
                        "-m",
                        ENGINE_MODULE,
                        "--model-path",
                        str(served_dir),
                        "--served-model-name",
                        served_name,
                        "--discovery-backend",
                        "file",
                        *engine_args,
                    ],
                    cwd=run_dir,
                    env=child_env,
                    stdin=subprocess.DEVNULL,
                    stdout=elog,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        with open(run_dir / "frontend.log", "wb") as flog:
            procs.append(
                subprocess.Popen(
                    [
                        python,
                        "-m",
                        LAUNCH_MODULE,
                        "frontend",
                        "--",
                        "--http-host",
                        "127.0.0.1",
                        "--http-port",
                        str(port),
                        "--discovery-backend",
                        "file",
                        "--request-plane",
                        "tcp",
                        *frontend_args,
                    ],
                    cwd=run_dir,
                    env=child_env,
                    stdin=subprocess.DEVNULL,
                    stdout=flog,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        handle = DynamoHandle(
            run_dir=run_dir,
            model_dir=served_dir,
            served_name=served_name,
            port=port,
            engine=procs[0],
            frontend=procs[1],
            keep_run_dir=keep_run_dir,
        )
    except BaseException:
        for p in procs:
            _kill_group(p, signal.SIGKILL)
            p.wait()
        shutil.rmtree(run_dir, ignore_errors=True)
        raise

    deadline = time.monotonic() + timeout
    try:
        while True:
            for name, p in (("engine", handle.engine), ("frontend", handle.frontend)):
                if p.poll() is not None:
                    raise DynamoStartError(
                        f"the Dynamo {name} exited with {p.returncode} during start\n"
                        + handle.logs()
                    )
            try:
                if served_name in _models(handle.base_url):
                    return handle
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise DynamoStartError(
                    f"Dynamo did not list {served_name!r} within {timeout:.0f} s\n{handle.logs()}"
                )
            time.sleep(0.1)
    except BaseException:
        handle.stop(grace=0.0)
        raise


@contextlib.contextmanager
def dynamo_server(model_dir: Path | str, served_name: str, **kwargs: Any) -> Iterator[DynamoHandle]:
    """``with dynamo_server(dir, name) as h:`` — same as ``with start_dynamo(...) as h``."""
    handle = start_dynamo(model_dir, served_name, **kwargs)
    try:
        yield handle
    finally:
        handle.stop()


# --------------------------------------------------------------------------- frontend wrapper


def _frontend_main(argv: list[str]) -> None:
    """``python -m fasttito.testing.dynamo_launch frontend -- <dynamo.frontend args>``: the
    frontend, in this process, with a watchdog that SIGKILLs the process group when the parent pid
    changes."""
    import runpy

    if argv and argv[0] == "--":
        argv = argv[1:]
    want = os.environ.get("FASTTITO_DYN_PARENT_PID")
    if want:
        ppid = int(want)

        def watch() -> None:
            while True:
                if os.getppid() != ppid:
                    # the test process is gone and cannot clean up: drop the temp dir too
                    run_dir = os.environ.get("FASTTITO_DYN_RUN_DIR", "")
                    if Path(run_dir).name.startswith("fasttito-dynamo-"):
                        shutil.rmtree(run_dir, ignore_errors=True)
                    with contextlib.suppress(OSError):
                        os.killpg(os.getpgid(0), signal.SIGKILL)
                    os._exit(3)
                time.sleep(0.25)

        threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
    sys.argv = ["dynamo.frontend", *argv]
    runpy.run_module("dynamo.frontend", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "frontend":
        _frontend_main(sys.argv[2:])
    else:
        print(__doc__)
        sys.exit(2)
