//! Python objects to the JSON values the core renders, as transformers'
//! `_plain_template_data` does: exact JSON scalars kept, `str`/`int`/`float` subclasses (enums,
//! numpy scalars) reduced to the base type, mappings, lists and tuples walked, dataclasses read
//! field by field, Pydantic models through `model_dump()`, anything else replaced by a
//! placeholder naming its type (`"<ndarray>"`), so a template only ever sees plain data.
//!
//! Where JSON cannot hold a value exactly (a dict key that is not a string, an integer beyond 64
//! bits, a NaN or infinite float), the conversion fails with `MessageError` instead of changing it.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple};
use serde_json::{Map, Number, Value as Json};

use super::errors::MessageError;

/// Deepest nesting accepted in messages, tools and template variables.
const MAX_DEPTH: usize = 128;

/// Converts `obj` to JSON; `what` names it in errors (e.g. "messages[3]").
pub fn to_json(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Json> {
    convert(obj, what, 0)
}

fn too_deep(what: &str) -> PyErr {
    MessageError::new_err(format!(
        "{what} is nested more than {MAX_DEPTH} levels deep; chat data this deep is not accepted"
    ))
}

fn convert(obj: &Bound<'_, PyAny>, what: &str, depth: usize) -> PyResult<Json> {
    if depth > MAX_DEPTH {
        return Err(too_deep(what));
    }
    let py = obj.py();
    if obj.is_none() {
        return Ok(Json::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Json::Bool(b.is_true()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Json::String(text(s, what)?));
    }
    if let Ok(i) = obj.cast::<PyInt>() {
        if let Ok(v) = i.extract::<i64>() {
            return Ok(Json::Number(v.into()));
        }
        if let Ok(v) = i.extract::<u64>() {
            return Ok(Json::Number(v.into()));
        }
        return Err(MessageError::new_err(format!(
            "{what} is the integer {i}, outside the 64-bit range chat data can hold"
        )));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        return Number::from_f64(v).map(Json::Number).ok_or_else(|| {
            MessageError::new_err(format!(
                "{what} is the float {v}, which JSON cannot hold; pass a finite number or a string"
            ))
        });
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut map = Map::with_capacity(d.len());
        for (k, v) in d.iter() {
            let key = dict_key(&k, what)?;
            let value = convert(&v, what, depth + 1)?;
            map.insert(key, value);
        }
        return Ok(Json::Object(map));
    }
    if let Ok(l) = obj.cast::<PyList>() {
        let mut items = Vec::with_capacity(l.len());
        for item in l.iter() {
            items.push(convert(&item, what, depth + 1)?);
        }
        return Ok(Json::Array(items));
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        let mut items = Vec::with_capacity(t.len());
        for item in t.iter() {
            items.push(convert(&item, what, depth + 1)?);
        }
        return Ok(Json::Array(items));
    }
    if let Ok(m) = obj.cast::<PyMapping>() {
        let mut map = Map::new();
        for pair in m.items()?.iter() {
            let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair.extract()?;
            let key = dict_key(&k, what)?;
            map.insert(key, convert(&v, what, depth + 1)?);
        }
        return Ok(Json::Object(map));
    }
    let ty = obj.get_type();
    let module: String = ty
        .getattr(intern!(py, "__module__"))?
        .extract()
        .unwrap_or_default();
    if module == "numpy" && obj.hasattr(intern!(py, "item"))? {
        let item = obj.call_method0(intern!(py, "item"))?;
        return convert(&item, what, depth + 1);
    }
    if obj.hasattr(intern!(py, "__dataclass_fields__"))?
        && !obj.is_instance_of::<pyo3::types::PyType>()
    {
        let dataclasses = py.import(intern!(py, "dataclasses"))?;
        let fields = dataclasses.call_method1(intern!(py, "fields"), (obj,))?;
        let mut map = Map::new();
        for field in fields.try_iter()? {
            let name: String = field?.getattr(intern!(py, "name"))?.extract()?;
            let value = obj.getattr(name.as_str())?;
            map.insert(name, convert(&value, what, depth + 1)?);
        }
        return Ok(Json::Object(map));
    }
    if let Ok(dump) = obj.getattr(intern!(py, "model_dump")) {
        if dump.is_callable() {
            return convert(&dump.call0()?, what, depth + 1);
        }
    }
    let name: String = ty.name()?.extract()?;
    Ok(Json::String(format!("<{name}>")))
}

/// The UTF-8 text of a Python string; a lone surrogate (not text) is a `MessageError`.
fn text(s: &Bound<'_, PyString>, what: &str) -> PyResult<String> {
    s.to_str().map(str::to_owned).map_err(|_| {
        MessageError::new_err(format!(
            "{what} holds a string with a lone surrogate (e.g. '\\ud800'), which is not valid \
             text and cannot be tokenized; decode the source with errors='replace'"
        ))
    })
}

fn dict_key(key: &Bound<'_, PyAny>, what: &str) -> PyResult<String> {
    match key.cast::<PyString>() {
        Ok(s) => text(s, what),
        Err(_) => Err(MessageError::new_err(format!(
            "{what} has the dict key {}, but chat data keys must be strings",
            key.repr()
                .map(|r| r.to_string())
                .unwrap_or_else(|_| "?".into())
        ))),
    }
}

/// Converts a list-like argument (`tools`, `documents`) to a list of JSON values.
pub fn to_json_list(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<Json>> {
    match to_json(obj, what)? {
        Json::Array(items) => Ok(items),
        other => Err(MessageError::new_err(format!(
            "{what} must be a list, found {}",
            match other {
                Json::Object(_) => "a dict",
                Json::String(_) => "a string",
                _ => "a scalar",
            }
        ))),
    }
}

/// A JSON value as Python data (dict, list, str, int, float, bool, None).
pub(super) fn json_to_py(py: Python<'_>, value: &Json) -> PyResult<Py<PyAny>> {
    Ok(match value {
        Json::Null => py.None(),
        Json::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.into_pyobject(py)?.into_any().unbind(),
            (None, Some(u), _) => u.into_pyobject(py)?.into_any().unbind(),
            (_, _, Some(f)) => f.into_pyobject(py)?.into_any().unbind(),
            _ => py.None(),
        },
        Json::String(s) => PyString::new(py, s).into_any().unbind(),
        Json::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any().unbind()
        }
        Json::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, json_to_py(py, v)?)?;
            }
            dict.into_any().unbind()
        }
    })
}
