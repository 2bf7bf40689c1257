"""A real verifiers ``ToolEnv`` (a small tool, written here) runs multi-turn rollouts through
``fasttito.verifiers.OpenAIChatCompletionsTokenClient``, against the local vLLM-compatible test
engine (``/v1/chat/completions/tokens``) and the real NVIDIA Dynamo frontend
(``nvext.token_data``). Every turn after the first is token-in, and the engine received the
stitched ids: the previous turn's prompt + completion ids verbatim, then the bridge.

The client is built the way verifiers builds it (``ClientConfig`` -> ``AsyncOpenAI`` over its own
httpx client), so the api key and extra headers reach the server through the caller's client.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fasttito.testing.dynamo_launch import DynamoHandle, start_dynamo
from fasttito.testing.launch import EngineProcess, start_engine

REPO = Path(__file__).resolve().parents[1]
MODEL_DIR = REPO / "models" / "qwen2.5"
SERVED = "qwen2.5-vf"
API_KEY = "sk-verifiers-test-key"
TOOL_TURNS = 3


def step_info(step: int) -> str:
    """Describe one step of the plan.

    Args:
        step: the step number.
    """
    return f"step {step} is done"


def make_env() -> Any:
    import verifiers as vf
    from datasets import Dataset

    dataset = Dataset.from_list(
        [{"question": "Run the plan, one step per tool call.", "answer": "done"}]
    )
    return vf.ToolEnv(dataset=dataset, tools=[step_info], max_turns=TOOL_TURNS + 3)


def rollout_input() -> dict[str, Any]:
    return {
        "prompt": [{"role": "user", "content": "Run the plan, one step per tool call."}],
        "example_id": 0,
        "answer": "done",
    }


def run_rollouts(client: Any, model: str, n: int, sampling_args: dict[str, Any]) -> list[Any]:
    env = make_env()

    async def go() -> list[Any]:
        states = await asyncio.gather(
            *(env.rollout(rollout_input(), client, model, dict(sampling_args)) for _ in range(n))
        )
        await client.close()
        return list(states)

    return asyncio.run(go())


def check_stitched(state: Any, prompts_seen: list[list[int]]) -> None:
    """Every step after the first was sent as the previous step's ids + a bridge, and the engine
    generated from exactly those ids."""
    assert state.get("error") is None, state.get("error")
    trajectory = state["trajectory"]
    assert len(trajectory) == TOOL_TURNS + 1, [s["completion"] for s in trajectory]
    for k, step in enumerate(trajectory):
        tokens = step["tokens"]
        assert tokens is not None, f"turn {k + 1} carries no tokens"
        assert len(tokens["completion_logprobs"]) == len(tokens["completion_ids"])
        if k == 0:
            continue
        prev = trajectory[k - 1]["tokens"]
        stitched = prev["prompt_ids"] + prev["completion_ids"]
        assert tokens["prompt_ids"][: len(stitched)] == stitched, f"turn {k + 1}"
        assert len(tokens["prompt_ids"]) > len(stitched)
        assert tokens["prompt_ids"] in prompts_seen, f"turn {k + 1}: engine saw other ids"
    last = trajectory[-1]["completion"][-1]
    assert last.role == "assistant" and not last.tool_calls
    calls = [s["completion"][-1].tool_calls for s in trajectory[:-1]]
    assert all(c and c[0].name == "step_info" for c in calls)


# --------------------------------------------------------------------------- vLLM test engine


@pytest.fixture(scope="module")
def engine() -> Iterator[EngineProcess]:
    with start_engine(MODEL_DIR, served_model_name=SERVED, api_key=API_KEY) as eng:
        yield eng


def vf_config(base_url: str, **extra: Any) -> Any:
    from verifiers.legacy.types import ClientConfig

    return ClientConfig(
        client_type="openai_chat_completions_token",
        api_base_url=base_url,
        api_key_var="FASTTITO_TEST_VF_KEY",
        extra_headers={"X-Team": "rl-infra"},
        max_retries=0,
        **extra,
    )


def test_tool_env_rollouts_are_tito_on_vllm(
    engine: EngineProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fasttito
    from fasttito.verifiers import OpenAIChatCompletionsTokenClient

    monkeypatch.setenv("FASTTITO_TEST_VF_KEY", API_KEY)
    engine.reset()
    engine.script(mode="tool_agent", tool_calls=TOOL_TURNS)
    fasttito.reset_metrics()
    config = vf_config(engine.v1_url, extra_headers_from_state={"X-Rollout": "trajectory_id"})
    client = OpenAIChatCompletionsTokenClient(config)
    sampling = {"max_tokens": 256, "temperature": 1.0, "extra_body": {"cache_salt": "policy-3"}}
    states = run_rollouts(client, SERVED, 2, sampling)
    # the token route went through fasttito's HTTP over verifiers' own httpx client
    assert client._http is not None

    requests = engine.requests()
    assert all(r["authorization_valid"] for r in requests)
    assert all(r["headers"].get("x-team") == "rl-infra" for r in requests)
    by_path: dict[str, int] = {}
    for r in requests:
        by_path[r["path"]] = by_path.get(r["path"], 0) + 1
    # turn 1 as messages; turns 2..4 token-in, each after two /tokenize calls (no local tokenizer)
    assert by_path == {
        "/v1/chat/completions": 2,
        "/v1/chat/completions/tokens": 2 * TOOL_TURNS,
        "/tokenize": 2 * 2 * TOOL_TURNS,
    }
    token_requests = [r for r in requests if r["path"] == "/v1/chat/completions/tokens"]
    rollout_ids = {s["trajectory_id"] for s in states}
    for r in token_requests:
        assert r["status"] == 200 and r["body"]["tokens"] == r["prompt_ids"]
        assert r["body"]["logprobs"] is True and r["body"]["return_token_ids"] is True
        assert r["body"]["max_completion_tokens"] == 256
        assert r["body"]["cache_salt"] == "policy-3"
        assert r["headers"].get("x-rollout") in rollout_ids  # verifiers' per-state header
    seen = [r["prompt_ids"] for r in requests if r["prompt_ids"]]
    for state in states:
        check_stitched(state, seen)
        for step in state["trajectory"][1:]:  # the vf.Response fasttito built from Rust parsing
            response, tokens = step["response"], step["tokens"]
            assert response.id.startswith("chatcmpl") and response.model == SERVED
            assert response.usage.prompt_tokens == len(tokens["prompt_ids"])
            assert response.usage.completion_tokens == len(tokens["completion_ids"])
            assert tokens["prompt_mask"] == [0] * len(tokens["prompt_ids"])
            assert tokens["completion_mask"] == [1] * len(tokens["completion_ids"])
            assert all(isinstance(x, float) and x <= 0 for x in tokens["completion_logprobs"])
    metrics = fasttito.metrics()
    assert metrics.get("tito") == 2 * TOOL_TURNS, metrics


def test_tool_env_with_local_bridges_sends_no_tokenize(engine: EngineProcess) -> None:
    """The client handed an ``AsyncOpenAI`` object (openai's default HTTP client) and a local
    tokenizer: no ``/tokenize`` calls, the same stitched ids."""
    import openai
    from fasttito.verifiers import OpenAIChatCompletionsTokenClient

    engine.reset()
    engine.script(mode="tool_agent", tool_calls=TOOL_TURNS)
    oai = openai.AsyncOpenAI(
        base_url=engine.v1_url, api_key=API_KEY, default_headers={"X-Team": "rl-infra"}
    )
    client = OpenAIChatCompletionsTokenClient(oai, renderer_transport="vllm", tokenizer=MODEL_DIR)
    (state,) = run_rollouts(client, SERVED, 1, {"max_tokens": 256})
    assert client._http is not None
    requests = engine.requests()
    assert all(r["authorization_valid"] for r in requests)
    assert all(r["headers"].get("x-team") == "rl-infra" for r in requests)
    assert [r["path"] for r in requests] == ["/v1/chat/completions"] + [
        "/v1/chat/completions/tokens"
    ] * TOOL_TURNS
    check_stitched(state, [r["prompt_ids"] for r in requests])


def test_server_errors_reach_verifiers_typed(
    engine: EngineProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong key on the token route is openai's AuthenticationError (verifiers re-raises
    auth errors unwrapped); a prompt over max_model_len is vf.OverlongPromptError, which ends
    the rollout as truncated."""
    import fasttito
    import openai
    import verifiers as vf
    from fasttito.verifiers import OpenAIChatCompletionsTokenClient

    engine.reset()
    engine.script(mode="tool_agent", tool_calls=TOOL_TURNS)
    monkeypatch.setenv("FASTTITO_TEST_VF_KEY", API_KEY)
    client = OpenAIChatCompletionsTokenClient(vf_config(engine.v1_url), tokenizer=MODEL_DIR)
    env = make_env()

    async def two_turns(break_key: bool) -> Any:
        state = await env.init_state(rollout_input(), client, SERVED, {"max_tokens": 64})
        messages = await env.get_prompt_messages(state)
        response = await env.get_model_response(state, messages)
        await env.add_model_response(state, messages, response)
        messages = await env.get_prompt_messages(state)
        if break_key:
            client.client.api_key = "wrong"
            client._http = None  # the fast path reads the key when first used
        return await env.get_model_response(state, messages)

    with pytest.raises(openai.AuthenticationError) as err:
        asyncio.run(two_turns(break_key=True))
    assert isinstance(err.value.__cause__, fasttito.ServerError)  # sent by fasttito, mapped
    assert "wrong" not in str(err.value)
    last = engine.requests()[-1]
    assert last["path"] == "/v1/chat/completions/tokens" and last["status"] == 401

    engine.faults(
        {
            "mode": "status",
            "status": 400,
            "count": 1,
            "path": "/v1/chat/completions/tokens",
            "body": "This model's maximum context length is 16 tokens",
        }
    )
    client = OpenAIChatCompletionsTokenClient(vf_config(engine.v1_url), tokenizer=MODEL_DIR)
    with pytest.raises(vf.OverlongPromptError):
        asyncio.run(two_turns(break_key=False))


# --------------------------------------------------------------------------- transport classes


@pytest.mark.parametrize("renderer_transport", ["vllm", "vllm_generate"])
@pytest.mark.parametrize("own_prompt_ids", [True, False])
def test_token_turns_run_on_the_transport_classes(
    engine: EngineProcess,
    monkeypatch: pytest.MonkeyPatch,
    renderer_transport: str,
    own_prompt_ids: bool,
) -> None:
    """A token-in turn of the verifiers client is the transport class's steps (the class
    ``fasttito.Client`` runs): ``send`` then ``complete`` without recording. Its calls into
    ``_core`` are the plan (shared with ``get_prompt_ids``), the transport's body, the
    transport's parse/check/decode and the count, and none of the wire functions by hand; with
    a replacement ``get_prompt_ids`` the plan of its ids and the completion. Nothing is recorded
    twice: the trajectory's rollout holds exactly the steps verifiers recorded, and a turn
    counts once in the metrics."""
    import fasttito
    import openai
    from fasttito.transports import TRANSPORT_CLASSES, Transport
    from fasttito.verifiers import OpenAIChatCompletionsTokenClient
    from test_calls import core_calls

    engine.reset()
    engine.script(mode="text", content="It is sunny.")
    steps: list[tuple[str, str, bool]] = []
    send, complete = Transport.send, Transport.complete

    async def spy_send(self: Transport, state: Any, plan: Any) -> bytes:
        steps.append((type(self).__name__, "send", plan.sends_ids))
        return await send(self, state, plan)

    def spy_complete(self: Transport, *args: Any, record: bool = True, **kw: Any) -> Any:
        steps.append((type(self).__name__, "complete", record))
        return complete(self, *args, record=record, **kw)

    monkeypatch.setattr(Transport, "send", spy_send)
    monkeypatch.setattr(Transport, "complete", spy_complete)

    class Replaced(OpenAIChatCompletionsTokenClient):  # type: ignore[misc]
        async def get_prompt_ids(  # type: ignore[no-untyped-def]
            self, state, prompt_messages, oai_tools, chat_template_kwargs=None
        ):
            ids = await super().get_prompt_ids(state, prompt_messages, oai_tools)
            return None if ids is None else list(ids)

    cls = OpenAIChatCompletionsTokenClient if own_prompt_ids else Replaced
    oai = openai.AsyncOpenAI(base_url=engine.v1_url, api_key=API_KEY)
    client = cls(oai, renderer_transport=renderer_transport, tokenizer=MODEL_DIR)
    name = TRANSPORT_CLASSES[client.transport].__name__
    sampling = {"max_tokens": 32}

    async def main() -> tuple[Any, Any, Any]:
        state: dict[str, Any] = {"model": SERVED, "trajectory": []}
        prompt: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
        first = await client.from_native_response(
            await client.get_native_response(prompt, SERVED, sampling, None, state=state)
        )
        reply = {"role": "assistant", "content": first.message.content}
        state["trajectory"].append(
            {
                "prompt": prompt,
                "completion": [reply],
                "tokens": first.message.tokens.model_dump(),
                "response": first,
            }
        )
        prompt = [*prompt, reply, {"role": "user", "content": "And in Rome?"}]
        fasttito.reset_metrics()
        steps.clear()
        task, calls = core_calls(
            lambda: client.get_native_response(prompt, SERVED, sampling, None, state=state)
        )
        native = await task
        second = await client.from_native_response(native)
        await client.close()
        return state, (native, second), calls

    state, (native, second), calls = asyncio.run(main())
    assert native.mode == "tito" and second.message.content == "It is sunny."
    with pytest.warns(DeprecationWarning, match="TokenChatResponse.turn"):
        assert native.parsed is native.turn  # the old name of the turn's data
    assert steps == [(name, "send", True), (name, "complete", False)]
    hand_written = {"request_body", "parse_response", "decode_completion", "Rollout.complete"}
    assert not hand_written & set(calls), calls
    # verifiers' step is ingested once (its record), the turn planned, written, completed
    want = {"Rollout.ingest": 1, "Rollout.prepare": 1, "complete_turn": 1}
    if own_prompt_ids:
        want |= {"Rollout.plan_body": 1, "Plan.count": 1}
    else:  # the replacement's ids (planned by the own method it calls), never counted
        want |= {"plan_ids": 1}
    assert dict(calls) == want, calls
    # the engine generated from the previous step's ids verbatim + the bridge
    head = state["trajectory"][0]["tokens"]
    stitched = head["prompt_ids"] + head["completion_ids"]
    sent = engine.requests()[-1]
    assert sent["prompt_ids"][: len(stitched)] == stitched
    assert second.message.tokens.prompt_ids == sent["prompt_ids"]
    # nothing recorded by fasttito: the rollout holds the one step verifiers recorded
    (rollouts,) = client._by_tokenizer.values()
    assert len(rollouts.rollout_for(state["trajectory"])) == 1
    metrics = fasttito.metrics()
    assert (metrics["tito"], metrics["turns"]) == ((1, 1) if own_prompt_ids else (0, 0)), metrics


# --------------------------------------------------------------------------- Dynamo frontend


@pytest.fixture(scope="module")
def dynamo(require_dynamo: None) -> Iterator[DynamoHandle]:
    with start_dynamo(MODEL_DIR, SERVED, control={"max_tool_calls": TOOL_TURNS}) as handle:
        yield handle


def test_tool_env_rollouts_are_tito_on_dynamo(
    dynamo: DynamoHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fasttito
    from fasttito.transports import DynamoNvextTransport
    from fasttito.verifiers import OpenAIChatCompletionsTokenClient
    from transformers import AutoTokenizer
    from verifiers.legacy.types import ClientConfig

    completed: list[bool] = []  # every turn on the transport class, none recorded by fasttito
    complete = DynamoNvextTransport.complete

    def spy(self: Any, *args: Any, record: bool = True, **kw: Any) -> Any:
        completed.append(record)
        return complete(self, *args, record=record, **kw)

    monkeypatch.setattr(DynamoNvextTransport, "complete", spy)

    dynamo.set_control(max_tool_calls=TOOL_TURNS, echo_request=True)
    config = ClientConfig(
        client_type="openai_chat_completions_token",
        api_base_url=dynamo.openai_base_url,
        api_key_var="FASTTITO_TEST_UNSET_KEY",
        renderer_model_name=str(MODEL_DIR),
        max_retries=0,
    )
    fasttito.reset_metrics()
    client = OpenAIChatCompletionsTokenClient(config, renderer_transport="dynamo")
    states = run_rollouts(
        client,
        SERVED,
        2,
        {"max_tokens": 256, "extra_body": {"cache_salt": "policy-3", "priority": 2}},
    )
    oracle = AutoTokenizer.from_pretrained(str(MODEL_DIR))
    tools = [t.model_dump(exclude_none=True) for t in make_env().tool_defs]
    native_tools = [{"type": "function", "function": t} for t in tools]
    for state in states:
        trajectory = state["trajectory"]
        # the prompt ids are nvext.engine_data's: what the engine received
        check_stitched(state, [s["tokens"]["prompt_ids"] for s in trajectory])
        for step in trajectory[1:]:
            # and they are what transformers renders for the whole conversation (qwen2.5 keeps
            # its history stable for tool tails), so the stitching lost nothing
            messages, _ = asyncio.run(client.to_native_prompt(step["prompt"]))
            rendered = oracle.apply_chat_template(
                [_plain(m) for m in messages],
                tools=native_tools,
                add_generation_prompt=True,
                tokenize=True,
                return_dict=False,
            )
            assert step["tokens"]["prompt_ids"] == list(rendered)
    metrics = fasttito.metrics()
    assert metrics.get("tito") == 2 * TOOL_TURNS, metrics
    assert completed == [False] * 2 * (TOOL_TURNS + 1)


def _plain(message: Any) -> dict[str, Any]:
    """A native prompt message as transformers takes it: no None values, parsed arguments."""
    out = {k: v for k, v in dict(message).items() if v is not None}
    for call in out.get("tool_calls") or []:
        call["function"] = dict(call["function"])
        call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    return out
