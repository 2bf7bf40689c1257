"""The vLLM engine's state: its settings, the script, the prefix store, the faults and the
recorded requests, and the request checks every route shares."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from fasttito.testing.engine_core.faults import FaultBook
from fasttito.testing.engine_core.http import RequestLog
from fasttito.testing.vllm_engine.completion import Completion
from fasttito.testing.vllm_engine.errors import ApiError, bad_request
from fasttito.testing.vllm_engine.faults import fault_book
from fasttito.testing.vllm_engine.model import Model
from fasttito.testing.vllm_engine.prefix import PrefixStore
from fasttito.testing.vllm_engine.script import Script

__all__ = ["Engine", "ScriptedState", "Settings"]


class ScriptedState:
    """What every engine answering with scripted completions holds: the script, the prefix
    store of finished turns, the faults and the recorded requests (the admin API's state)."""

    script: Script
    store: PrefixStore
    faults: FaultBook
    log: RequestLog
    last_activity: float

    def set_script(self, body: Any) -> None:
        self.script = Script.from_json(body)

    def script_json(self) -> dict[str, Any]:
        return self.script.to_json()

    def reset(self) -> None:
        """Back to the start: default script, no stored turns, no faults, no records."""
        self.script = Script()
        self.store.clear()
        self.faults.reset()
        self.log.clear()


@dataclass
class Settings:
    served_names: list[str]
    max_model_len: int
    api_key: str | None
    scheduling_policy: str
    disabled_routes: set[str]
    version: str
    max_recorded: int
    prefix_store_size: int
    # vLLM >= 0.32 answers 403 on /inference/v1/generate unless started with --enable-scale-out
    scale_out: bool = True
    # "tokens": vLLM 0.32's logprob entries ({"token_id", "logprob", "rank", "top_logprobs"}),
    # prompt ids echoed only with return_token_ids; "labels": prime-rl's and older vLLM's
    # ({"token": "token_id:N", ...}), prompt ids always echoed
    generate_shape: str = "tokens"


class Engine(ScriptedState):
    def __init__(self, model: Model, settings: Settings) -> None:
        self.model = model
        self.s = settings
        self.script = Script()
        self.store = PrefixStore(model.stop_set, settings.prefix_store_size)
        self.faults = fault_book()
        self.log = RequestLog(settings.max_recorded)
        self.last_activity = time.monotonic()
        self.created = int(time.time())

    # -- shared validation --------------------------------------------------------------------
    def check_model(self, body: dict[str, Any]) -> str:
        name = body.get("model")
        if name is None:
            return self.s.served_names[0]
        if name not in self.s.served_names:
            raise ApiError(404, f"The model `{name}` does not exist.", "NotFoundError")
        return str(name)

    def check_common(self, body: dict[str, Any]) -> None:
        salt = body.get("cache_salt")
        if salt is not None and (not isinstance(salt, str) or not salt):
            raise bad_request("Parameter 'cache_salt' must be a non-empty string if provided.")
        prio = body.get("priority", 0)
        if prio is None:
            prio = 0
        if not isinstance(prio, int) or isinstance(prio, bool):
            raise bad_request("'priority' must be an integer")
        if prio != 0 and self.s.scheduling_policy != "priority":
            raise bad_request(f"Got priority {prio} but Priority scheduling is not enabled.")
        if body.get("stream"):
            raise bad_request("stream=true is not supported by the test engine")

    def check_ids(self, ids: Any, name: str) -> list[int]:
        if not isinstance(ids, list) or not ids:
            raise bad_request(f"'{name}' must be a non-empty list of token ids")
        for t in ids:
            if not isinstance(t, int) or isinstance(t, bool):
                raise bad_request(f"'{name}' must contain integers only")
        top = max(ids)
        if top >= self.model.vocab_size or min(ids) < 0:
            bad = top if top >= self.model.vocab_size else min(ids)
            raise bad_request(f"Token id {bad} is out of vocabulary")
        return list(ids)

    def max_tokens(self, requested: Any, prompt_len: int) -> int:
        if prompt_len >= self.s.max_model_len:
            raise bad_request(
                f"This model's maximum context length is {self.s.max_model_len} tokens. "
                f"However, your request has {prompt_len} input tokens. Please reduce the length "
                "of the input messages.",
            )
        room = self.s.max_model_len - prompt_len
        if requested is None:
            return room
        if not isinstance(requested, int) or isinstance(requested, bool) or requested < 1:
            raise bad_request(f"max_tokens must be at least 1, got {requested}.")
        return min(requested, room)

    @staticmethod
    def stop_ids(value: Any) -> set[int]:
        if value is None:
            return set()
        if not isinstance(value, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in value
        ):
            raise bad_request("'stop_token_ids' must be a list of integers")
        return set(value)

    def finish(
        self, comp: Completion, max_tokens: int, extra_stops: set[int]
    ) -> tuple[list[int], str, int | None, bool]:
        """(ids, finish_reason, stop_reason, complete) after stop ids and max_tokens."""
        ids = list(comp.ids)
        stop_reason: int | None = None
        early = False
        for i, t in enumerate(ids[:-1]):
            if t in extra_stops:
                ids, stop_reason, early = ids[: i + 1], t, True
                break
        if len(ids) > max_tokens:
            return ids[:max_tokens], "length", None, False
        if early:
            return ids, "stop", stop_reason, False
        return ids, "tool_calls" if comp.message.get("tool_calls") else "stop", None, True

    # -- records and admin --------------------------------------------------------------------
    def record(self, request: web.Request, body: Any) -> dict[str, Any]:
        """A new record of ``request`` (``GET /_admin/requests``), with vLLM's auth fields."""
        auth = request.headers.get("Authorization")
        return self.log.add(
            request.method,
            request.path,
            request.headers,
            body,
            query=request.query_string,
            authorization_present=auth is not None,
            authorization_valid=(
                None if self.s.api_key is None else auth == f"Bearer {self.s.api_key}"
            ),
        )
