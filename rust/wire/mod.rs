//! The wires: for each engine route, the request body fasttito writes and the response parser
//! that reads its answer, side by side in one module per wire (`docs/wire.md`).
//!
//! | module | route | request | response |
//! |---|---|---|---|
//! | [`vllm_generate`] | vLLM `/inference/v1/generate` | [`vllm_generate_body`] | [`Wire::VllmGenerate`] |
//! | [`vllm_chat`] | prime-rl `/v1/chat/completions/tokens` | [`chat_tokens_body`] | [`Wire::VllmChat`] |
//! | [`chat`] | `/v1/chat/completions` (messages: turn 1, MITO) | [`chat_body`] | [`Wire::VllmChat`], [`Wire::Dynamo`], [`Wire::Chat`] (any OpenAI server) |
//! | [`nvext`] | Dynamo `/v1/chat/completions` with `nvext` | [`dynamo_body`] | [`Wire::Dynamo`] |
//! | [`sglang`] | SGLang native `/generate` | [`sglang_generate_body`] | [`Wire::Sglang`] |
//!
//! What the wires share sits in [`body`] (the JSON writer and the caller-argument rules every
//! request keeps) and [`parse`] (limits, errors, and the id and logprob readers every parser
//! keeps); `scan` is the JSON scanner the parsers read their hot fields with.

use std::fmt;

pub mod body;
pub mod chat;
pub mod nvext;
pub mod parse;
pub(crate) mod scan;
pub mod sglang;
pub mod vllm_chat;
pub mod vllm_generate;

pub use body::RequestOptions;
pub use chat::{chat_body, ChatTarget};
pub use nvext::{dynamo_body, DYNAMO_DROP_KEYS};
pub use parse::{
    parse_response, ParseOptions, Parsed, ParsedToolCall, PromptTokensDetails, StopReason,
    TopLogprobs, Usage, IDS_NOT_SENT, SERDE_JSON_MAX_DEPTH,
};
pub use sglang::{sglang_generate_body, SGLANG_SAMPLING_KEYS};
pub use vllm_chat::chat_tokens_body;
pub use vllm_generate::vllm_generate_body;

/// The response shape to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wire {
    /// A vLLM chat completion with `return_token_ids` (docs/wire.md A.3): also what prime-rl's
    /// `/v1/chat/completions/tokens` returns.
    VllmChat,
    /// A vLLM `/inference/v1/generate` response (docs/wire.md B.2).
    VllmGenerate,
    /// A Dynamo chat completion whose token data sits in `nvext` (docs/wire.md C.2).
    Dynamo,
    /// An SGLang native `/generate` response (docs/wire.md S).
    Sglang,
    /// Any OpenAI-compatible chat completion (docs/wire.md A.4): ids and logprobs only where the
    /// server sent them ([`chat`]).
    Chat,
}

impl Wire {
    /// Every wire, in a stable order.
    pub const ALL: [Wire; 5] = [
        Wire::VllmChat,
        Wire::VllmGenerate,
        Wire::Dynamo,
        Wire::Sglang,
        Wire::Chat,
    ];

    /// The wire's name: `"vllm_chat"`, `"vllm_generate"`, `"dynamo"`, `"sglang"` or `"chat"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Wire::VllmChat => "vllm_chat",
            Wire::VllmGenerate => "vllm_generate",
            Wire::Dynamo => "dynamo",
            Wire::Sglang => "sglang",
            Wire::Chat => "chat",
        }
    }

    /// A human name of the response, for error messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Wire::VllmChat => "vLLM chat completion",
            Wire::VllmGenerate => "vLLM /inference/v1/generate",
            Wire::Dynamo => "Dynamo chat completion",
            Wire::Sglang => "SGLang /generate",
            Wire::Chat => "OpenAI chat completion",
        }
    }

    /// What the response should look like and what to check, for error messages.
    pub(crate) fn advice(self) -> &'static str {
        match self {
            Wire::VllmChat => {
                "Expected a non-streaming vLLM chat completion (docs/wire.md A.3); check that the \
                 server is vLLM or prime-rl and that the request is not streamed"
            }
            Wire::VllmGenerate => {
                "Expected a non-streaming vLLM /inference/v1/generate response (docs/wire.md B.2); \
                 check that the server is vLLM >= 0.20 and that the URL is the generate route"
            }
            Wire::Dynamo => {
                "Expected a non-streaming Dynamo chat completion with `nvext` (docs/wire.md C.2); \
                 check that the server is a Dynamo frontend and that the request is not streamed"
            }
            Wire::Sglang => {
                "Expected a non-streaming SGLang /generate response {\"output_ids\", \
                 \"meta_info\"} (docs/wire.md S); check that the server is SGLang and that the URL \
                 is its native /generate route"
            }
            Wire::Chat => {
                "Expected a non-streaming OpenAI-compatible chat completion {\"choices\": \
                 [{\"message\": ...}]} (docs/wire.md A.3, A.4); check that the URL is the \
                 server's /v1/chat/completions route and that the request is not streamed"
            }
        }
    }
}

impl fmt::Display for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
