//! fasttito's Rust core: chat-template rendering and tokenization identical to transformers,
//! for multi-turn token-in/token-out (TITO) LLM requests.
//!
//! The core modules never touch Python: they take and return plain Rust values, so `cargo test`
//! needs no interpreter. The PyO3 binding lives in [`py`] behind the `python` feature.

pub mod attribute;
pub mod bridge;
pub mod chat;
pub mod decode;
pub mod error;
pub mod messages;
pub mod metrics;
pub mod parse;
pub mod pyfmt;
pub mod render_cache;
pub mod request;
pub mod rollout;
pub mod rope;
pub mod segments;
pub mod template;
pub mod tokenizer;

#[cfg(feature = "python")]
mod py;

pub use error::{Error, ErrorKind, Result};
pub use tokenizer::{LoadOptions, Tokenizer};
