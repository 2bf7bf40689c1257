"""Writes the seed corpora of the fuzz targets into fuzz/seeds/<target>/ from real shapes kept
in the repository: the recorded response fixtures (rust/tests/fixtures), the chat templates of
the model folders, and completions of the repository's Qwen2.5 tokenizer. The seeds are
committed; run this again (from the repo root, with fasttito installed) only to refresh them,
with ``FASTTITO_MODELS`` naming the model matrix to seed the templates of every family. Seeds
named ``regress_*`` (inputs that once crashed a target) are kept:

    FASTTITO_MODELS=DIR .venv/bin/python fuzz/make_seeds.py
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import fasttito

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"
FIXTURES = ROOT / "rust" / "tests" / "fixtures"
# the vendored folder, and the model matrix when FASTTITO_MODELS names it (docs/models.md)
MATRIX = os.environ.get("FASTTITO_MODELS")
MODELS = [ROOT / "models" / "qwen2.5", *(sorted(Path(MATRIX).glob("*/")) if MATRIX else [])]
WIRES = {"vllm_chat": 0, "vllm_generate": 1, "dynamo": 2, "sglang": 3, "chat": 4}

CONVERSATION = {
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call00001",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call00001", "content": '{"temp_c": 21}'},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather of a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ],
    "add_generation_prompt": True,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "date_string": "25 Nov 2026",
}


def write(target: str, name: str, data: bytes) -> None:
    folder = SEEDS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def template_of(folder: Path) -> str | None:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    config = folder / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text()).get("chat_template")
        return template if isinstance(template, str) else None
    return None


def main() -> None:
    # regenerated seeds go; the regress_* seeds (inputs that once crashed, added by hand) stay
    for target in SEEDS.glob("*/"):
        for seed in target.iterdir():
            if not seed.name.startswith("regress_"):
                seed.unlink()
    for path in sorted(FIXTURES.glob("*.json")):
        body = path.read_bytes()
        if path.name.startswith("sglang"):
            wire = "sglang"
        elif path.name.startswith(("dynamo", "wire_c2")):
            wire = "dynamo"
        elif "openai" in path.name:
            wire = "chat"
        elif "generate" in path.name or "b2" in path.name:
            wire = "vllm_generate"
        else:
            wire = "vllm_chat"
        write("parse_response", path.stem, bytes([WIRES[wire]]) + body)
        if wire in ("vllm_chat", "dynamo"):
            # the chat wire reads any OpenAI-shaped answer: vLLM's and Dynamo's too
            write("parse_response", f"chat_{path.stem}", bytes([WIRES["chat"]]) + body)

    context = json.dumps(CONVERSATION).encode()
    seen: set[str] = set()
    for folder in MODELS:
        template = template_of(folder)
        if template is None or template in seen:
            continue
        seen.add(template)
        write("template_render", folder.name, template.encode() + b"\0" + context)

    tiny = {
        "version": "1.0",
        "added_tokens": [
            {
                "id": 5,
                "content": "<|im_end|>",
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            },
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {
            "type": "WordLevel",
            "vocab": {"[UNK]": 0, "hello": 1, "world": 2, "hi": 3, "user": 4, "<|im_end|>": 5},
            "unk_token": "[UNK]",
        },
    }
    qwen_template = template_of(ROOT / "models" / "qwen2.5")
    config = {"eos_token": "<|im_end|>", "chat_template": qwen_template}
    sep = b"\n--8<--\n"
    write(
        "tokenizer_load",
        "wordlevel_qwen_template",
        sep.join(
            [
                json.dumps(tiny).encode(),
                json.dumps(config).encode(),
                json.dumps({"eos_token": "<|im_end|>"}).encode(),
                json.dumps({"eos_token_id": [5]}).encode(),
                b"",
            ]
        ),
    )
    write(
        "tokenizer_load",
        "wordlevel_jinja_file",
        sep.join(
            [
                json.dumps(tiny).encode(),
                b"{}",
                b"",
                b'{"eos_token_id": 5}',
                b"{% for m in messages %}{{ m.role }} {{ m.content }}<|im_end|>{% endfor %}",
            ]
        ),
    )

    tok = fasttito.Tokenizer.from_dir(ROOT / "models" / "qwen2.5")
    vocab = tok.vocab_size
    completions = [
        "The weather is fine.<|im_end|>",
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
        "</tool_call><|im_end|>",
        "<think>\nshort\n</think>\n\nDone.<|im_end|>",
        '[TOOL_CALLS][{"name": "f", "arguments": {"a": 1}, "id": "abcdefghi"}]</s>',
        '{"name": "f", "parameters": {"a": 1}}<|eot_id|>',
        "<tool_call>\n<function=f>\n<parameter=a>\n1\n</parameter>\n</function>\n</tool_call>",
        "<|channel|>analysis<|message|>hm<|end|><|start|>assistant<|channel|>final<|message|>ok",
    ]
    for i, text in enumerate(completions):
        ids = tok.encode(text)
        words = []
        for t in ids:
            if t >= vocab - 64:
                words.append(vocab - 1 - t)
            elif t < 49152:
                words.append(t + 16384)
        for family in range(7):
            write(
                "decode_completion",
                f"c{i}_f{family}",
                bytes([family]) + struct.pack(f"<{len(words)}H", *words),
            )

    tool = CONVERSATION["tools"]
    first = [{"role": "user", "content": "Weather in Paris?"}]
    tails = [
        [{"role": "tool", "tool_call_id": "call_0", "content": "21C"}],
        [{"role": "user", "content": "And Rome?"}],
        [
            {"role": "tool", "content": "a"},
            {"role": "tool", "content": "b"},
            {"role": "user", "content": [{"type": "text", "text": "multi"}]},
        ],
        [{"role": "assistant", "content": "again"}],
    ]
    for i, tail in enumerate(tails):
        write("chat_prepare", f"tail{i}", json.dumps([first, tail]).encode())
        write("chat_prepare", f"tail{i}_tools", json.dumps([first, tail, tool, {"x": 1}]).encode())

    samplings = [
        {"temperature": 0.7, "max_tokens": 64, "__salt": "step-7", "__priority": 3},
        {"extra_body": {"top_k": 20, "cache_salt": "s"}, "logprobs": 5, "stop": None},
        {
            "nvext": {"extra_fields": ["worker_id"], "cache_salt": ""},
            "priority": 2,
            "return_token_ids": True,
            "__ctk": {"enable_thinking": False},
        },
        {"max_completion_tokens": 8, "top_logprobs": 2, "__messages": first, "__tools": tool},
    ]
    for i, sampling in enumerate(samplings):
        for kind in range(6):
            head = bytes([kind | 0xC0, 7, 13, 2])
            write("request_body", f"s{i}_k{kind}", head + json.dumps(sampling).encode())

    for i, message in enumerate([*CONVERSATION["messages"], *tails[2]]):
        write("message_hash", f"m{i}", json.dumps(message).encode())
    write(
        "message_hash",
        "flat_tool_call",
        json.dumps(
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "name": "f", "arguments": '{"a": 1.0}'}],
            }
        ).encode(),
    )


if __name__ == "__main__":
    main()
