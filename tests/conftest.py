"""Shared fixtures for the parity tests: where the model folders are, and cached tokenizers.

Model folders
    * ``FASTTITO_MODELS`` (env), else the repository's own ``models/``: every subfolder holding
      a ``tokenizer.json`` is a complete model (``_incomplete/`` is ignored). ``scripts/test``
      points the variable at the full model matrix (docs/models.md) when it sits beside the
      repository. If the folder is missing or empty, the parity matrix FAILS (one loud test)
      unless ``FASTTITO_ALLOW_NO_SHARED_MODELS=1``; then that one test is skipped with a reason.
    * ``models/qwen2.5`` inside the repository (vendored, same files as the matrix's qwen2.5),
      tested as ``vendored-qwen2.5`` when the matrix is another folder, so parity is checked
      whatever ``FASTTITO_MODELS`` says.

Parametrization (``pytest_generate_tests`` below) gives the tests readable ids:
    ``parity_case``   (ModelRef, Shape) for every model x every applicable shape,
                      id ``qwen3-parallel_tool_calls_dict_args``
    ``pydantic_case`` (ModelRef, Shape) for the shapes tagged ``pydantic``
    ``text_case``     (ModelRef, sample name) for the encode/decode samples
    ``model``         ModelRef, for per-model tests
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Before anything can import transformers / huggingface_hub: never touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The local engines the tests start (fasttito.testing) render with transformers, the oracle
# independent of fasttito; never silently with fasttito's own tokenizer.
os.environ["FASTTITO_ENGINE_RENDERER"] = "transformers"

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:  # `import conversations` under any pytest import mode
    sys.path.insert(0, str(TESTS_DIR))

import conversations  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED_MODELS = REPO_ROOT / "models"
VENDORED_MODEL_DIR = REPO_ROOT / "models" / "qwen2.5"
MISSING_SHARED = "shared-models-missing"
MISSING_VENDORED = "vendored-qwen2.5-missing"


def shared_models_dir() -> Path:
    env = os.environ.get("FASTTITO_MODELS")
    return Path(env).expanduser().resolve() if env else DEFAULT_SHARED_MODELS


def complete_model_folders(models_dir: Path) -> list[Path]:
    """Subfolders with a tokenizer.json, in a stable order (``_incomplete``, hidden: skipped)."""
    if not models_dir.is_dir():
        return []
    found = [
        p
        for p in models_dir.iterdir()
        if p.is_dir() and not p.name.startswith(("_", ".")) and (p / "tokenizer.json").is_file()
    ]
    order = {name: i for i, name in enumerate(conversations.FAMILIES)}
    return sorted(found, key=lambda p: (order.get(p.name, len(order)), p.name))


def allow_no_shared_models() -> bool:
    return os.environ.get("FASTTITO_ALLOW_NO_SHARED_MODELS", "") not in ("", "0", "false", "False")


@dataclass(frozen=True)
class ModelRef:
    """One model folder under test. ``path`` is None for a missing-folder sentinel."""

    id: str
    family: str
    path: Path | None

    def __str__(self) -> str:  # shows up in assertion messages
        return self.id


def model_refs() -> list[ModelRef]:
    refs = [ModelRef(p.name, p.name, p) for p in complete_model_folders(shared_models_dir())]
    if not refs:
        refs.append(ModelRef(MISSING_SHARED, MISSING_SHARED, None))
    if any(r.path is not None and r.path.resolve() == VENDORED_MODEL_DIR.resolve() for r in refs):
        pass  # the matrix is the repository's models/: the vendored folder is already in it
    elif (VENDORED_MODEL_DIR / "tokenizer.json").is_file():
        refs.append(ModelRef("vendored-qwen2.5", "qwen2.5", VENDORED_MODEL_DIR))
    else:
        refs.append(ModelRef(MISSING_VENDORED, MISSING_VENDORED, None))
    return refs


def require_folder(model: ModelRef) -> Path:
    """The model's folder, or a loud failure (a skip only where explicitly allowed)."""
    if model.path is not None:
        return model.path
    if model.id == MISSING_SHARED:
        msg = (
            f"shared model folder not found or empty: {shared_models_dir()} "
            "(set FASTTITO_MODELS to a folder of model subfolders with tokenizer.json; "
            "see docs/models.md)"
        )
        if allow_no_shared_models():
            pytest.skip(msg + "; allowed by FASTTITO_ALLOW_NO_SHARED_MODELS=1")
        pytest.fail(
            msg + ". Set FASTTITO_ALLOW_NO_SHARED_MODELS=1 to run without it.", pytrace=False
        )
    pytest.fail(
        f"vendored model folder missing: "
        f"{VENDORED_MODEL_DIR.relative_to(REPO_ROOT)}/tokenizer.json "
        "(the repository must vendor the qwen2.5 tokenizer files)",
        pytrace=False,
    )
    raise AssertionError("unreachable")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    refs = model_refs()
    names = metafunc.fixturenames
    if "parity_case" in names:
        cases = [
            (m, s)
            for m in refs
            if m.path is not None
            for s in conversations.SHAPES
            if s.applies_to(m.family)
        ]
        # A missing folder gets one case only: one loud failure, not hundreds.
        cases += [(m, None) for m in refs if m.path is None]
        metafunc.parametrize("parity_case", cases, ids=[_case_id(m, s) for m, s in cases])
    if "pydantic_case" in names:
        tagged = [s for s in conversations.SHAPES if "pydantic" in s.tags]
        cases = [
            (m, s) for m in refs if m.path is not None for s in tagged if s.applies_to(m.family)
        ]
        cases += [(m, None) for m in refs if m.path is None]
        metafunc.parametrize("pydantic_case", cases, ids=[_case_id(m, s) for m, s in cases])
    if "text_case" in names:
        cases = [(m, n) for m in refs if m.path is not None for n in conversations.TEXT_SAMPLES]
        cases += [(m, None) for m in refs if m.path is None]
        metafunc.parametrize(
            "text_case", cases, ids=[f"{m.id}-{n}" if n else m.id for m, n in cases]
        )
    if "model" in names:
        metafunc.parametrize("model", refs, ids=[m.id for m in refs])


def _case_id(model: ModelRef, shape: Any) -> str:
    return f"{model.id}-{shape.name}" if shape is not None else model.id


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """``FASTTITO_MODELS``, else the repository's ``models/``."""
    return shared_models_dir()


@pytest.fixture(scope="session")
def model_folders(models_dir: Path) -> list[Path]:
    """The complete model folders (those with a tokenizer.json)."""
    folders = complete_model_folders(models_dir)
    if not folders:
        require_folder(ModelRef(MISSING_SHARED, MISSING_SHARED, None))
    return folders


@pytest.fixture(scope="session")
def vendored_model_dir() -> Path:
    """``models/qwen2.5`` inside the repository."""
    return require_folder(
        ModelRef(
            "vendored-qwen2.5",
            "qwen2.5",
            VENDORED_MODEL_DIR if VENDORED_MODEL_DIR.is_dir() else None,
        )
    )


@pytest.fixture(scope="session")
def fasttito_module() -> Any:
    try:
        import fasttito
    except ImportError as exc:  # a broken build must fail the parity suite, never skip it
        pytest.fail(
            f"cannot import fasttito ({exc}); build it with `maturin develop`", pytrace=False
        )
    return fasttito


@pytest.fixture(scope="session")
def hf_tokenizer_for() -> Callable[[ModelRef], Any]:
    """``transformers.AutoTokenizer`` per folder, loaded once per session."""
    cache: dict[Path, Any] = {}

    def get(model: ModelRef) -> Any:
        folder = require_folder(model)
        if folder not in cache:
            import transformers

            transformers.logging.set_verbosity_error()
            cache[folder] = transformers.AutoTokenizer.from_pretrained(str(folder))
        return cache[folder]

    return get


@pytest.fixture(scope="session")
def ft_tokenizer_for(fasttito_module: Any) -> Callable[[ModelRef], Any]:
    """``fasttito.Tokenizer`` per folder, loaded once per session (its segment cache is shared)."""
    cache: dict[Path, Any] = {}

    def get(model: ModelRef) -> Any:
        folder = require_folder(model)
        if folder not in cache:
            cache[folder] = fasttito_module.Tokenizer.from_dir(str(folder))
        return cache[folder]

    return get


@pytest.fixture(scope="session")
def require_dynamo() -> None:
    """For fixtures that start the real Dynamo frontend: skips when ai-dynamo is not installed,
    fails instead when ``FASTTITO_REQUIRE_DYNAMO`` is set (``scripts/test`` sets it)."""
    from fasttito.testing.dynamo_launch import dynamo_importable

    if dynamo_importable():
        return
    if os.environ.get("FASTTITO_REQUIRE_DYNAMO", "") not in ("", "0", "false"):
        pytest.fail(
            f"FASTTITO_REQUIRE_DYNAMO is set but ai-dynamo is not importable in {sys.executable}"
        )
    pytest.skip("ai-dynamo is not installed (scripts/install-dynamo.sh)")


@pytest.fixture(scope="session")
def real_vllm() -> Iterator[Any]:
    """Upstream vLLM 0.32 (CPU) serving SmolLM2-135M-Instruct as ``smol`` with
    ``--enable-scale-out``: started once per test session (about a minute), stopped by PID."""
    from real_engines import require, start_vllm

    venv, model = require("FASTTITO_VLLM", "FASTTITO_SMOL")
    server = start_vllm(venv, model)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def smol_dir() -> Path:
    """The SmolLM2-135M-Instruct folder the real engines serve (its tokenizer and template)."""
    from real_engines import require

    (model,) = require("FASTTITO_SMOL")
    return model


@pytest.fixture(scope="session")
def real_dynamo() -> Iterator[Any]:
    """NVIDIA Dynamo 1.6.1's frontend with its own vLLM 0.31 worker (``python -m dynamo.vllm``)
    serving SmolLM2-135M-Instruct as ``smol``: started once per session, stopped by PID."""
    from real_engines import require, start_dynamo_vllm

    venv, model = require("FASTTITO_DYNAMO_VLLM", "FASTTITO_SMOL")
    server = start_dynamo_vllm(venv, model)
    yield server
    server.stop()
