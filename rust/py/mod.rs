//! The PyO3 binding: the only module that knows about Python.
//!
//! Pattern (tiktoken, polars): extract owned Rust values from Python objects, release the GIL
//! (`py.detach`) around real work (render, encode, decode), convert the result back.

mod convert;
mod errors;
mod ids;
mod renderer;
mod rollout;
mod tokenizer;
mod turn;
mod wire;

use pyo3::prelude::*;

/// The extension's Rust heap. Under thousands of live rollouts glibc's malloc spent about a fifth
/// of `Rollout.prepare` in `malloc`/`free`/`malloc_consolidate` (perf, bench/bench_http.py shapes);
/// mimalloc's per-size free lists do not. Python's own objects keep Python's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `fasttito._core`: the compiled half of fasttito.
#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add(
        "build_profile",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    )?;
    m.add_class::<tokenizer::PyTokenizer>()?;
    m.add_class::<ids::TokenIds>()?;
    m.add_class::<ids::TokenIdsIter>()?;
    m.add_class::<rollout::PyRollout>()?;
    m.add_class::<rollout::PyPlan>()?;
    m.add_class::<rollout::PyPendingBridge>()?;
    m.add_class::<wire::PyParsed>()?;
    m.add_class::<turn::TurnData>()?;
    m.add_function(wrap_pyfunction!(turn::parse_turn, m)?)?;
    m.add_function(wrap_pyfunction!(rollout::complete_turn, m)?)?;
    m.add_function(wrap_pyfunction!(rollout::plan_ids, m)?)?;
    m.add_function(wrap_pyfunction!(wire::parse_response, m)?)?;
    m.add_function(wrap_pyfunction!(wire::request_body, m)?)?;
    m.add_function(wrap_pyfunction!(decode_completion, m)?)?;
    m.add_function(wrap_pyfunction!(metrics, m)?)?;
    m.add_function(wrap_pyfunction!(renderer::attribute, m)?)?;
    m.add_function(wrap_pyfunction!(renderer::lone_bridge, m)?)?;
    m.add_function(wrap_pyfunction!(reset_metrics, m)?)?;
    Ok(())
}

/// The TITO engine's counters: turns, tito, mito, tokens reused/bridged/rendered, verify
/// mismatches, and `fallback.<reason>` for every reason.
#[pyfunction]
fn metrics() -> Vec<(String, u64)> {
    crate::tito::metrics::snapshot()
}

/// Recovers the assistant message from completion ids with `tokenizer`'s model family; the same
/// as `tokenizer.decode_completion(ids, family)`.
#[pyfunction]
#[pyo3(signature = (tokenizer, ids, family = None))]
fn decode_completion<'py>(
    py: Python<'py>,
    tokenizer: &Bound<'py, tokenizer::PyTokenizer>,
    ids: &Bound<'py, PyAny>,
    family: Option<&str>,
) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
    tokenizer.get().decode_completion(py, ids, family)
}

/// Sets every counter to zero.
#[pyfunction]
fn reset_metrics() {
    crate::tito::metrics::reset();
}
