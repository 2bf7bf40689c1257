//! `fasttito.TokenIds`: token ids that stay in Rust, seen from Python as a read-only sequence.
//!
//! A 64-turn prompt is ~100k ids; building a Python list of them costs milliseconds per turn,
//! more than the TITO step itself. `TokenIds` keeps the ids in one Rust buffer and exposes them
//! without copying: the buffer protocol (format `"I"`, uint32) for `memoryview`/numpy, and the
//! sequence protocol (`len`, indexing, slicing, iteration, `==` with any sequence of ints).
//! `.tolist()` builds a list for callers that need one.

use std::ffi::{c_int, c_void};
use std::sync::Arc;

use super::errors::{ArgumentError, IdBufferError, IdIndexError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyList, PySlice};

/// Token ids held in Rust.
#[pyclass(frozen, sequence, module = "fasttito._core", name = "TokenIds")]
pub struct TokenIds {
    ids: Arc<[u32]>,
    shape: isize,
    stride: isize,
}

impl TokenIds {
    /// Wraps `ids`.
    pub fn new(ids: impl Into<Arc<[u32]>>) -> Self {
        let ids: Arc<[u32]> = ids.into();
        let shape = ids.len() as isize;
        Self {
            ids,
            shape,
            stride: 4,
        }
    }

    /// The ids.
    pub fn as_slice(&self) -> &[u32] {
        &self.ids
    }

    /// The shared buffer.
    pub fn shared(&self) -> Arc<[u32]> {
        self.ids.clone()
    }

    /// How many ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
}

/// The iterator of a [`TokenIds`]: shares its buffer and yields one id at a time.
#[pyclass(frozen, module = "fasttito._core", name = "TokenIdsIterator")]
pub struct TokenIdsIter {
    ids: Arc<[u32]>,
    at: std::sync::atomic::AtomicUsize,
}

#[pymethods]
impl TokenIdsIter {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self) -> Option<u32> {
        let i = self.at.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.ids.get(i).copied()
    }

    fn __length_hint__(&self) -> usize {
        let at = self.at.load(std::sync::atomic::Ordering::Relaxed);
        self.ids.len().saturating_sub(at)
    }
}

/// Token ids from Python without per-item PyO3 conversion: a `TokenIds` is shared (no copy); a
/// list is read with the C API (an id outside `0..2**32` or a non-int is a `ValueError` naming
/// its position); any other sequence of ints goes through the generic path.
pub fn ids_from_py(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Arc<[u32]>> {
    if let Ok(t) = obj.cast::<TokenIds>() {
        return Ok(t.get().ids.clone());
    }
    if let Ok(list) = obj.cast::<PyList>() {
        let n = list.len();
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            // SAFETY: `i < len` of a list we hold a reference to; the item is borrowed and used
            // before anything can mutate the list (no Python code runs in between).
            let value = unsafe {
                let item = ffi::PyList_GetItem(list.as_ptr(), i as ffi::Py_ssize_t);
                if item.is_null() || ffi::PyLong_Check(item) == 0 {
                    u64::MAX
                } else {
                    let v = ffi::PyLong_AsUnsignedLongLong(item);
                    if v == u64::MAX && !ffi::PyErr_Occurred().is_null() {
                        ffi::PyErr_Clear();
                    }
                    v
                }
            };
            match u32::try_from(value) {
                Ok(id) => out.push(id),
                Err(_) => {
                    return Err(ArgumentError::new_err(format!(
                        "{what}[{i}] is {}, but token ids are ints in 0..2**32",
                        list.get_item(i)
                            .map(|v| v.repr().map(|r| r.to_string()).unwrap_or_default())
                            .unwrap_or_default()
                    )))
                }
            }
        }
        return Ok(out.into());
    }
    obj.extract::<Vec<u32>>().map(Into::into).map_err(|_| {
        ArgumentError::new_err(format!(
            "{what} must be a list of token ids (ints in 0..2**32)"
        ))
    })
}

/// Reads a sequence of ints from Python: a `TokenIds`, or any iterable of ints.
fn extract_ids(other: &Bound<'_, PyAny>) -> Option<Vec<u32>> {
    if let Ok(t) = other.cast::<TokenIds>() {
        return Some(t.get().ids.to_vec());
    }
    other.extract::<Vec<u32>>().ok()
}

#[pymethods]
impl TokenIds {
    #[new]
    fn py_new(ids: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self::new(ids_from_py(ids, "ids")?))
    }

    fn __len__(&self) -> usize {
        self.ids.len()
    }

    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        index: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Ok(slice) = index.cast::<PySlice>() {
            let idx = slice.indices(self.ids.len() as isize)?;
            let mut out = Vec::with_capacity(idx.slicelength);
            let mut i = idx.start;
            for _ in 0..idx.slicelength {
                out.push(self.ids[i as usize]);
                i += idx.step;
            }
            return Ok(PyList::new(py, out)?.into_any());
        }
        let i: isize = index.extract()?;
        let n = self.ids.len() as isize;
        let j = if i < 0 { i + n } else { i };
        if !(0..n).contains(&j) {
            return Err(IdIndexError::new_err(format!(
                "TokenIds index {i} out of range for {n} ids"
            )));
        }
        Ok(self.ids[j as usize].into_pyobject(py)?.into_any())
    }

    /// Iterates over the shared buffer: no list of the ids is built first.
    fn __iter__(&self) -> TokenIdsIter {
        TokenIdsIter {
            ids: self.ids.clone(),
            at: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn __contains__(&self, id: i64) -> bool {
        u32::try_from(id).is_ok_and(|id| self.ids.contains(&id))
    }

    /// How many times `id` occurs.
    fn count(&self, id: i64) -> usize {
        u32::try_from(id).map_or(0, |id| self.ids.iter().filter(|x| **x == id).count())
    }

    /// The first position of `id`.
    fn index(&self, id: i64) -> PyResult<usize> {
        u32::try_from(id)
            .ok()
            .and_then(|id| self.ids.iter().position(|x| *x == id))
            .ok_or_else(|| ArgumentError::new_err(format!("{id} is not in TokenIds")))
    }

    /// The largest id, or `None` when empty (a vocabulary-bound check without a list).
    fn max(&self) -> Option<u32> {
        self.ids.iter().copied().max()
    }

    /// The ids as a new list.
    fn tolist<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.ids.iter())
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        if let Ok(t) = other.cast::<TokenIds>() {
            return *t.get().ids == *self.ids; // two buffers: compared as slices, no copy
        }
        extract_ids(other).is_some_and(|ids| *ids == *self.ids)
    }

    fn __ne__(&self, other: &Bound<'_, PyAny>) -> bool {
        !self.__eq__(other)
    }

    fn __add__<'py>(
        &self,
        py: Python<'py>,
        other: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let rest = extract_ids(other)
            .ok_or_else(|| ArgumentError::new_err("can only add a sequence of ids"))?;
        PyList::new(py, self.ids.iter().copied().chain(rest))
    }

    fn __radd__<'py>(
        &self,
        py: Python<'py>,
        other: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let mut first = extract_ids(other)
            .ok_or_else(|| ArgumentError::new_err("can only add a sequence of ids"))?;
        first.extend_from_slice(&self.ids);
        PyList::new(py, first)
    }

    fn __repr__(&self) -> String {
        let head: Vec<String> = self.ids.iter().take(8).map(u32::to_string).collect();
        let more = if self.ids.len() > 8 { ", ..." } else { "" };
        format!(
            "TokenIds([{}{more}], len={})",
            head.join(", "),
            self.ids.len()
        )
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(IdBufferError::new_err("view is null"));
        }
        if (flags & ffi::PyBUF_WRITABLE) == ffi::PyBUF_WRITABLE {
            return Err(IdBufferError::new_err("TokenIds is read-only"));
        }
        let this = slf.get();
        let buf = this.ids.as_ptr() as *mut c_void;
        let len = (this.ids.len() * 4) as isize;
        let shape = &this.shape as *const isize as *mut isize;
        let stride = &this.stride as *const isize as *mut isize;
        // SAFETY: `view` is a valid Py_buffer supplied by the interpreter; the data, shape and
        // stride live inside `slf`, which the view keeps alive through `obj`, and are never
        // written while shared (the class is frozen and the buffer read-only).
        unsafe {
            (*view).obj = slf.into_any().into_ptr();
            (*view).buf = buf;
            (*view).len = len;
            (*view).readonly = 1;
            (*view).itemsize = 4;
            (*view).format = if (flags & ffi::PyBUF_FORMAT) == ffi::PyBUF_FORMAT {
                c"I".as_ptr() as *mut _
            } else {
                std::ptr::null_mut()
            };
            (*view).ndim = 1;
            (*view).shape = if (flags & ffi::PyBUF_ND) == ffi::PyBUF_ND {
                shape
            } else {
                std::ptr::null_mut()
            };
            (*view).strides = if (flags & ffi::PyBUF_STRIDES) == ffi::PyBUF_STRIDES {
                stride
            } else {
                std::ptr::null_mut()
            };
            (*view).suboffsets = std::ptr::null_mut();
            (*view).internal = std::ptr::null_mut();
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}
