//! One mapping from core errors to the Python exception tree of `fasttito/errors.py`.

use pyo3::PyErr;

use crate::error::{Error, ErrorKind};

pyo3::import_exception!(fasttito.errors, TokenizerLoadError);
pyo3::import_exception!(fasttito.errors, TemplateError);
pyo3::import_exception!(fasttito.errors, TemplateLimitError);
pyo3::import_exception!(fasttito.errors, MessageError);
pyo3::import_exception!(fasttito.errors, TokenizationError);
pyo3::import_exception!(fasttito.errors, ResponseParseError);
pyo3::import_exception!(fasttito.errors, ArgumentError);
pyo3::import_exception!(fasttito.errors, IdIndexError);
pyo3::import_exception!(fasttito.errors, IdBufferError);

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        let text = err.text().to_owned();
        match err.kind() {
            ErrorKind::Load => TokenizerLoadError::new_err(text),
            ErrorKind::Template => TemplateError::new_err(text),
            ErrorKind::TemplateLimit => TemplateLimitError::new_err(text),
            ErrorKind::Message => MessageError::new_err(text),
            ErrorKind::Tokenize => TokenizationError::new_err(text),
            ErrorKind::Parse => ResponseParseError::new_err(text),
        }
    }
}
