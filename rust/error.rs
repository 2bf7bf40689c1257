//! The core's one error type.
//!
//! Every fallible core function returns [`Error`]; the PyO3 layer maps each variant to exactly one
//! class of the Python exception tree (`python/fasttito/errors.py`) in one place
//! (`rust/py/errors.rs`). Messages say what was expected, what was found and what to do.

use std::fmt;

/// What went wrong, by kind. Each kind is one Python exception class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A model folder could not be loaded (missing or malformed file). Python: `TokenizerLoadError`.
    Load,
    /// A chat template failed to compile or render, or called `raise_exception`. Python: `TemplateError`.
    Template,
    /// A chat template ran out of its render budget (fuel or recursion). Python: `TemplateError`.
    TemplateLimit,
    /// The messages, tools or template variables are not the JSON-like data a template takes.
    /// Python: `MessageError` (a `TemplateError`, since transformers raises there too).
    Message,
    /// Encoding or decoding failed (for example an id outside the vocabulary). Python: `TokenizationError`.
    Tokenize,
    /// A server response is malformed: Python `ResponseParseError`.
    Parse,
    /// The engine aborted the request and said so in its response (SGLang `finish_reason`
    /// `{"type": "abort", "message"}`). Python: `EngineAbortError`.
    Abort,
}

/// The core's error: a kind plus a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// A new error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Shorthand for [`ErrorKind::Load`].
    pub fn load(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Load, message)
    }

    /// Shorthand for [`ErrorKind::Template`].
    pub fn template(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Template, message)
    }

    /// Shorthand for [`ErrorKind::Message`].
    pub fn message(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Message, message)
    }

    /// Shorthand for [`ErrorKind::Tokenize`].
    pub fn tokenize(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Tokenize, message)
    }

    /// Shorthand for [`ErrorKind::Parse`].
    pub fn parse(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Parse, message)
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message of this error.
    pub fn text(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
