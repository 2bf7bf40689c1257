//! The PyO3 binding: the only module that knows about Python.
//!
//! Pattern (tiktoken, polars): extract owned Rust values from Python objects, release the GIL
//! (`py.detach`) around real work (render, encode, decode), convert the result back.

mod convert;
mod errors;
mod tokenizer;

use pyo3::prelude::*;

/// `fasttito._core`: the compiled half of fasttito.
#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("build_profile", if cfg!(debug_assertions) { "debug" } else { "release" })?;
    m.add_class::<tokenizer::PyTokenizer>()?;
    Ok(())
}
