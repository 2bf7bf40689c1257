"""What the vLLM and SGLang test engines share (fasttito.testing.engine_core), in process: the
fault book (queue before random draw, path rules, counting), the request log, and the command
line both engines take. The engines' HTTP behaviour is pinned in test_vllm_engine.py,
test_sglang.py and test_soak.py."""

from __future__ import annotations

import os
from typing import Any

import pytest
from fasttito.testing.engine_core.faults import FaultError, parse_random
from fasttito.testing.engine_core.http import RequestLog
from fasttito.testing.engine_core.lifecycle import (
    common_settings,
    parent_alive,
    settings_from_args,
)
from fasttito.testing.sglang_engine import faults as sgl_faults
from fasttito.testing.sglang_engine import server as sgl_server
from fasttito.testing.sglang_engine.state import Settings as SglSettings
from fasttito.testing.vllm_engine import faults as vllm_faults
from fasttito.testing.vllm_engine import server as vllm_server
from fasttito.testing.vllm_engine.state import Settings as VllmSettings

GENERATE = "/inference/v1/generate"


def test_a_queued_fault_is_taken_once_then_the_request_is_clean() -> None:
    book = vllm_faults.fault_book()
    state = book.configure({"mode": "http_503", "count": 2})
    assert [f["mode"] for f in state["faults"]] == ["http_503"]
    assert book.take("/v1/chat/completions") == {
        "mode": "http_503",
        "count": 1,
        "path": None,
        "status": 503,
        "body": None,
    }
    assert book.take("/tokenize") is not None
    assert book.take("/tokenize") is None
    assert book.queue == []
    assert book.to_json()["injected"] == {"http_503": 2}


def test_body_faults_skip_routes_whose_bodies_they_do_not_rewrite() -> None:
    book = vllm_faults.fault_book()
    book.configure({"faults": [{"mode": "missing_token_ids"}, {"mode": "delay"}]})
    # /tokenize has no completion body: the body fault waits, the delay applies anywhere
    assert book.take("/tokenize") == {"mode": "delay", "count": 0, "path": None, "seconds": 1.0}
    assert book.take("/tokenize") is None
    taken = book.take(GENERATE)
    assert taken is not None and taken["mode"] == "missing_token_ids"

    sgl = sgl_faults.fault_book()
    sgl.configure([{"mode": "crash"}, {"mode": "oov_token_id"}])
    assert sgl.take("/v1/models") is None  # neither crash nor a body fault leaves /generate
    taken = [sgl.take("/generate"), sgl.take("/generate")]
    assert [f["mode"] for f in taken if f is not None] == ["crash", "oov_token_id"]


def test_a_path_restricts_a_fault_to_one_route() -> None:
    book = vllm_faults.fault_book()
    book.configure({"mode": "http_500", "path": "/tokenize"})
    assert book.take("/v1/chat/completions") is None
    assert book.take("/tokenize") is not None


def test_replace_empties_the_queue_and_reset_forgets_everything() -> None:
    book = sgl_faults.fault_book()
    book.configure({"mode": "drop", "count": 5})
    book.configure({"faults": [{"mode": "reset"}], "replace": True})
    assert [f["mode"] for f in book.queue] == ["reset"]
    book.configure({"random": {"rate": 1.0, "modes": ["delay"]}})
    assert book.to_json()["random"] == {"rate": 1.0, "modes": ["delay"], "seed": 0}
    book.reset()
    assert book.to_json() == {"ok": True, "faults": [], "random": None, "injected": {}}


def test_random_faults_come_after_the_queue_and_repeat_with_the_seed() -> None:
    def draws() -> list[str | None]:
        book = vllm_faults.fault_book()
        book.configure({"random": {"rate": 0.5, "modes": ["reset", "stall"], "seed": 7}})
        book.configure({"mode": "http_502"})
        out = []
        for _ in range(40):
            f = book.take(GENERATE)
            out.append(f["mode"] if f else None)
        return out

    first = draws()
    assert first[0] == "http_502"
    assert first == draws()
    assert {"reset", "stall", None} == set(first[1:])


def test_random_stall_and_delay_take_their_own_seconds() -> None:
    rnd = parse_random(
        {"rate": 1, "modes": ["delay", "stall"], "seconds": 3, "delay_seconds": 0.5},
        vllm_faults.parse_fault,
    )
    assert rnd is not None
    assert [t["seconds"] for t in rnd["templates"]] == [0.5, 3.0]


@pytest.mark.parametrize(
    ("book", "body", "message"),
    [
        (vllm_faults.fault_book, {"mode": "crash"}, "fault mode 'crash' unknown"),
        (sgl_faults.fault_book, {"mode": "no_such"}, "fault mode 'no_such' unknown"),
        (vllm_faults.fault_book, {"mode": "drop", "count": 0}, "count must be an integer >= 1"),
        (vllm_faults.fault_book, {"mode": "status", "status": 200}, "an int in 400..599"),
        (vllm_faults.fault_book, {"mode": "http_503", "body": 3}, "body must be a string"),
        (vllm_faults.fault_book, {"mode": "delay", "seconds": -1}, "seconds must be a number"),
        (vllm_faults.fault_book, {"faults": {"mode": "drop"}}, "'faults' must be a list"),
        (vllm_faults.fault_book, {"random": {"rate": 2, "modes": ["drop"]}}, "rate must be"),
        (vllm_faults.fault_book, {"random": {"rate": 1, "modes": ["status"]}}, "(not 'status')"),
        (
            sgl_faults.fault_book,
            {"random": {"rate": 1, "modes": ["crash"]}},
            "(not 'status', 'crash')",
        ),
    ],
)
def test_malformed_fault_requests_say_what_is_expected(
    book: Any, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(FaultError, match=message.replace("(", r"\(").replace(")", r"\)")):
        book().configure(body)


def test_an_sglang_abort_fault_carries_its_message_and_status() -> None:
    fault = sgl_faults.parse_fault({"mode": "abort", "status_code": 429})
    assert fault["message"] == "Abort in waiting queue (injected)."
    assert fault["abort_status"] == 429


def test_the_request_log_redacts_secrets_and_keeps_the_last_records() -> None:
    log = RequestLog(2)
    headers = {"Authorization": "Bearer k", "X-Api-Key": "k", "Content-Type": "application/json"}
    for i in range(3):
        rec = log.add("POST", f"/p{i}", headers, {"i": i}, cached_tokens=None)
    assert rec["headers"] == {
        "authorization": "<redacted>",
        "x-api-key": "<redacted>",
        "content-type": "application/json",
    }
    out = log.to_json()
    assert out["count"] == 2
    assert [r["seq"] for r in out["requests"]] == [2, 3]
    assert out["requests"][-1]["cached_tokens"] is None
    log.clear()
    assert log.add("GET", "/x", {}, None)["seq"] == 4  # the sequence runs on after a reset

    none = RequestLog(0)
    none.add("GET", "/x", {}, None)
    assert none.to_json() == {"count": 0, "requests": []}


def test_both_engines_take_the_common_options_with_the_same_meaning() -> None:
    argv = ["--model", "models/qwen2.5", "--disable-route", "/a", "--served-model-name", "m"]
    vllm = vllm_server.parse_args(argv)
    sgl = sgl_server.parse_args(argv)
    common = ("port", "idle_timeout", "parent_pid", "port_file", "renderer", "stop_token_id")
    assert {k: getattr(vllm, k) for k in common} == {k: getattr(sgl, k) for k in common}
    assert common_settings(vllm) | {"version": None} == common_settings(sgl) | {"version": None}
    assert common_settings(vllm)["disabled_routes"] == {"/a"}
    assert (vllm.version_string, sgl.version_string) == ("0.20.0", "0.5.23")
    # without --served-model-name the model folder's name is served
    bare = vllm_server.parse_args(["--model", "models/qwen2.5"])
    assert common_settings(bare)["served_names"] == ["qwen2.5"]


def test_parent_alive_follows_the_named_pid_or_the_parent() -> None:
    assert parent_alive(os.getpid(), 0)
    assert parent_alive(None, os.getppid())
    assert not parent_alive(None, os.getppid() + 1)
    assert not parent_alive(1 << 30, 0)  # above Linux's pid_max: no such process


def test_each_engine_setting_comes_from_its_option() -> None:
    vllm = vllm_server.parse_args(
        "--model m --max-model-len 99 --api-key k --no-scale-out --scheduling-policy fcfs "
        "--generate-shape labels --version-string v".split()
    )
    assert settings_from_args(VllmSettings, vllm) == VllmSettings(
        served_names=["m"],
        max_model_len=99,
        api_key="k",
        scheduling_policy="fcfs",
        disabled_routes=set(),
        version="v",
        max_recorded=10_000,
        prefix_store_size=8192,
        scale_out=False,
        generate_shape="labels",
    )
    sgl = sgl_server.parse_args(
        "--model-path m --context-length 64 --max-total-tokens 50 --skip-tokenizer-init "
        "--hide-max-model-len --bad-id-behaviour 400 --max-recorded-requests 3 "
        "--prefix-store-size 0".split()
    )
    settings = settings_from_args(SglSettings, sgl)
    assert settings == SglSettings(
        served_names=["m"],
        context_length=64,
        max_total_tokens=50,
        skip_tokenizer_init=True,
        enable_return_routed_experts=False,
        hide_max_model_len=True,
        bad_id_behaviour="400",
        disabled_routes=set(),
        version="0.5.23",
        max_recorded=3,
        prefix_store_size=0,
    )
    assert settings.max_req_input_len == 49


def test_a_taken_fault_is_noted_in_the_request_record() -> None:
    book = vllm_faults.fault_book()
    book.configure({"mode": "reset"})
    rec: dict[str, Any] = {}
    book.take("/tokenize", rec)
    assert rec == {"fault": "reset"}
    book.take("/tokenize", rec)
    assert rec == {"fault": None}
