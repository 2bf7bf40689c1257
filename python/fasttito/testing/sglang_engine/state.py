"""The SGLang engine's state: its settings, its prefix cache (a radix tree over token ids, as
SGLang's ``RadixCache`` keeps one) and the recorded requests."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fasttito.testing.engine_core.faults import FaultBook
from fasttito.testing.engine_core.http import RequestLog
from fasttito.testing.sglang_engine.faults import fault_book
from fasttito.testing.vllm_engine.model import Model
from fasttito.testing.vllm_engine.prefix import PrefixStore
from fasttito.testing.vllm_engine.script import Script
from fasttito.testing.vllm_engine.state import ScriptedState

__all__ = ["EngineState", "RadixCache", "Settings"]


@dataclass
class Settings:
    served_names: list[str]
    context_length: int
    max_total_tokens: int
    skip_tokenizer_init: bool
    enable_return_routed_experts: bool
    hide_max_model_len: bool
    bad_id_behaviour: str
    disabled_routes: set[str]
    version: str
    max_recorded: int
    prefix_store_size: int
    num_layers: int = 2
    topk: int = 2
    num_experts: int = 8

    @property
    def max_req_input_len(self) -> int:
        """SGLang: ``min(context_len - 1, max_total_num_tokens - 1)``."""
        return min(self.context_length - 1, self.max_total_tokens - 1)


class _Node:
    __slots__ = ("children", "key", "last_access", "parent")

    def __init__(self, key: list[int], parent: _Node | None) -> None:
        self.key = key
        self.parent = parent
        self.children: dict[int, _Node] = {}
        self.last_access = 0


class RadixCache:
    """Token sequences seen so far, as a radix tree (edges labelled by id runs).

    ``match`` is the longest common prefix of a prompt with every sequence inserted before
    it (SGLang's ``match_prefix``); ``insert`` adds a finished request's prompt + output (the
    ids whose KV exists: the last sampled id has none yet). Least recently used leaves are
    evicted when more than ``capacity`` ids are held. One tree per ``namespace`` (SGLang keys
    its cache by ``extra_key``/``cache_salt``, so salted prompts never share).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.roots: dict[str, _Node] = {}
        self.size = 0
        self._clock = itertools.count(1)

    def _root(self, namespace: str) -> _Node:
        root = self.roots.get(namespace)
        if root is None:
            root = self.roots[namespace] = _Node([], None)
        return root

    def match(self, ids: list[int], namespace: str = "") -> int:
        node = self.roots.get(namespace)
        n = 0
        tick = next(self._clock)
        while node is not None and n < len(ids):
            child = node.children.get(ids[n])
            if child is None:
                break
            key = child.key
            k = _common(key, ids, n)
            child.last_access = tick
            n += k
            if k < len(key):
                break
            node = child
        return n

    def insert(self, ids: list[int], namespace: str = "") -> None:
        node = self._root(namespace)
        n = 0
        tick = next(self._clock)
        while n < len(ids):
            child = node.children.get(ids[n])
            if child is None:
                leaf = _Node(ids[n:], node)
                leaf.last_access = tick
                node.children[ids[n]] = leaf
                self.size += len(ids) - n
                break
            k = _common(child.key, ids, n)
            if k < len(child.key):  # split the edge at k
                mid = _Node(child.key[:k], node)
                mid.last_access = tick
                node.children[ids[n]] = mid
                child.key = child.key[k:]
                child.parent = mid
                mid.children[child.key[0]] = child
                child = mid
            child.last_access = tick
            n += k
            node = child
        self._evict()

    def _evict(self) -> None:
        while self.size > self.capacity:
            leaves = [node for root in self.roots.values() for node in _leaves(root)]
            if not leaves:
                return
            leaves.sort(key=lambda node: node.last_access)
            for leaf in leaves:
                parent = leaf.parent
                assert parent is not None
                del parent.children[leaf.key[0]]
                self.size -= len(leaf.key)
                if self.size <= self.capacity:
                    return

    def clear(self) -> None:
        self.roots.clear()
        self.size = 0


def _common(key: list[int], ids: list[int], start: int) -> int:
    """How many leading ids of ``key`` equal ``ids[start:]``."""
    m = min(len(key), len(ids) - start)
    if key[:m] == ids[start : start + m]:
        return m
    lo, hi = 0, m  # binary search on slice equality: C-speed compares
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if key[:mid] == ids[start : start + mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _leaves(root: _Node) -> list[_Node]:
    out, stack = [], list(root.children.values())
    while stack:
        node = stack.pop()
        if node.children:
            stack.extend(node.children.values())
        else:
            out.append(node)
    return out


@dataclass
class EngineState(ScriptedState):
    model: Model
    s: Settings
    script: Script = field(default_factory=Script)
    store: PrefixStore = field(init=False)
    cache: RadixCache = field(init=False)
    faults: FaultBook = field(default_factory=fault_book)
    log: RequestLog = field(init=False)
    last_activity: float = field(default_factory=time.monotonic)
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        self.store = PrefixStore(self.model.stop_set, self.s.prefix_store_size)
        self.cache = RadixCache(self.s.max_total_tokens)
        self.log = RequestLog(self.s.max_recorded)

    def record(self, request: web.Request, body: Any) -> dict[str, Any]:
        """A new record of ``request`` (``GET /_admin/requests``), with ``cached_tokens``."""
        return self.log.add(request.method, request.path, request.headers, body, cached_tokens=None)

    def reset(self) -> None:
        super().reset()
        self.cache.clear()
