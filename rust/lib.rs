//! fasttito's Rust core: chat-template rendering and tokenization identical to transformers,
//! for multi-turn token-in/token-out (TITO) LLM requests.
//!
//! The core modules never touch Python: they take and return plain Rust values, so `cargo test`
//! needs no interpreter. The PyO3 binding lives in [`py`] behind the `python` feature.

pub mod decode;
pub mod error;
pub mod template;
pub mod tito;
pub mod wire;

#[cfg(feature = "python")]
mod py;

pub use error::{Error, ErrorKind, Result};
pub use template::tokenizer::{LoadOptions, Tokenizer};
