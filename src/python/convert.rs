//! Values and Python objects, both ways: the one place the rules live.
//! Callbacks' arguments become objects (`to_python`), Python callers'
//! arguments become values (`arg_value`, `PyArgs` for the C++ adapters),
//! results go back (`store_result`, `result_comes_back_as_is`), and a
//! failing status becomes the `cbreg` package's exception (`set_error`).
//! Types are told apart through functions CPython exports (`kind_and_exact`),
//! never by reading an object's header, so one code serves the GIL and the
//! free-threaded layouts. Everything here runs with the GIL held; the
//! Python suite (tests/python) checks these rules through the package.

use std::ffi::{c_char, c_void};
use std::ptr::null_mut;

use pyo3_ffi as py;

use super::attach::with_python;
use super::interp::Interp;
use super::PyObj;
use crate::{Status, Tag, Value};

/// A new reference for `v`, or `Err` (no Python error left set). Floats
/// and ints, an engine's usual arguments, are made here without a call.
///
/// # Safety
/// The GIL is held.
#[inline]
pub(super) unsafe fn to_python(v: &Value) -> Result<PyObj, Status> {
    // SAFETY: the GIL is held (the caller's promise), and `v`'s payload is read
    // as its tag says.
    unsafe {
        let obj = if v.tag == Tag::F64 as u32 {
            py::PyFloat_FromDouble(v.r#as.f64)
        } else if v.tag == Tag::I64 as u32 {
            py::PyLong_FromLongLong(v.r#as.i64)
        } else {
            return any_to_python(v);
        };
        if obj.is_null() {
            py::PyErr_Clear();
            return Err(Status::NoMemory);
        }
        Ok(obj)
    }
}

/// `to_python` for every tag.
///
/// # Safety
/// The GIL is held.
#[inline(never)]
pub(super) unsafe fn any_to_python(v: &Value) -> Result<PyObj, Status> {
    // SAFETY: the GIL is held (the caller's promise); `v`'s payload is read
    // as its tag says, its buffers through `Value`'s checked accessors.
    unsafe {
        let obj = match v.tag().ok_or(Status::InvalidArgument)? {
            Tag::None => {
                let none = py::Py_None();
                py::Py_IncRef(none);
                none
            }
            Tag::Bool => py::PyBool_FromLong(v.as_bool().ok_or(Status::InvalidArgument)? as _),
            Tag::I64 => py::PyLong_FromLongLong(v.r#as.i64),
            Tag::F64 => py::PyFloat_FromDouble(v.r#as.f64),
            Tag::Str => {
                let text = v.as_bytes().unwrap_or_default();
                if std::str::from_utf8(text).is_err() {
                    return Err(Status::InvalidArgument);
                }
                py::PyUnicode_FromStringAndSize(text.as_ptr().cast(), text.len() as _)
            }
            Tag::Bytes => {
                let b = v.as_bytes().unwrap_or_default();
                py::PyBytes_FromStringAndSize(b.as_ptr().cast(), b.len() as _)
            }
            Tag::I64Array => list_of(v.as_i64s().unwrap_or_default(), |x| {
                py::PyLong_FromLongLong(*x)
            })?,
            Tag::F64Array => list_of(v.as_f64s().unwrap_or_default(), |x| {
                py::PyFloat_FromDouble(*x)
            })?,
            Tag::Ptr => py::PyLong_FromVoidPtr(v.r#as.ptr),
        };
        if obj.is_null() {
            py::PyErr_Clear();
            return Err(Status::NoMemory);
        }
        Ok(obj)
    }
}

/// # Safety
/// The GIL is held.
pub(super) unsafe fn list_of<T>(items: &[T], make: impl Fn(&T) -> PyObj) -> Result<PyObj, Status> {
    // SAFETY: the GIL is held (the caller's promise); `list` is checked
    // non-null, and each item before `PyList_SetItem` steals it.
    unsafe {
        let list = py::PyList_New(items.len() as _);
        if list.is_null() {
            py::PyErr_Clear();
            return Err(Status::NoMemory);
        }
        for (i, x) in items.iter().enumerate() {
            let item = make(x);
            if item.is_null() {
                py::PyErr_Clear();
                py::Py_DecRef(list);
                return Err(Status::NoMemory);
            }
            py::PyList_SetItem(list, i as _, item); // steals `item`
        }
        Ok(list)
    }
}

/// What a Python object is, for conversion. Found through functions the
/// interpreter exports (`PyObject_Type`, `PyType_GetFlags`,
/// `PyType_IsSubtype`), never by reading an object's header, so the same
/// code is right for the GIL and the free-threaded object layouts (the
/// `Py*_Check` helpers of pyo3-ffi read `ob_type` at a fixed offset).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    None,
    Bool,
    Int,
    Float,
    Str,
    Bytes,
    List,
    Other,
}

/// # Safety
/// The GIL is held; `obj` is a live object.
pub(super) unsafe fn kind_of(obj: PyObj) -> Kind {
    // SAFETY: as `kind_and_exact`.
    unsafe { kind_and_exact(obj).0 }
}

/// What `obj` is, and whether it is of that very type (not a subclass):
/// then converting it to a value and back gives an equal object of its
/// type (for an int that fits and a str with a UTF-8 form).
///
/// # Safety
/// The GIL is held; `obj` is a live object.
pub(super) unsafe fn kind_and_exact(obj: PyObj) -> (Kind, bool) {
    // SAFETY: the GIL is held and `obj` is live (the caller's promise); the
    // type objects named are CPython's own statics, alive for ever.
    unsafe {
        if obj == py::Py_None() {
            return (Kind::None, true);
        }
        let ty = py::PyObject_Type(obj);
        if ty.is_null() {
            py::PyErr_Clear();
            return (Kind::Other, false);
        }
        let ty_ptr = ty.cast::<py::PyTypeObject>();
        let flags = py::PyType_GetFlags(ty_ptr);
        let exactly = |base: *mut py::PyTypeObject| ty_ptr == base;
        let is =
            |base: *mut py::PyTypeObject| exactly(base) || py::PyType_IsSubtype(ty_ptr, base) != 0;
        let found = if exactly(std::ptr::addr_of_mut!(py::PyBool_Type)) {
            (Kind::Bool, true)
        } else if flags & py::Py_TPFLAGS_LONG_SUBCLASS != 0 {
            (Kind::Int, exactly(std::ptr::addr_of_mut!(py::PyLong_Type)))
        } else if is(std::ptr::addr_of_mut!(py::PyFloat_Type)) {
            (
                Kind::Float,
                exactly(std::ptr::addr_of_mut!(py::PyFloat_Type)),
            )
        } else if flags & py::Py_TPFLAGS_UNICODE_SUBCLASS != 0 {
            (
                Kind::Str,
                exactly(std::ptr::addr_of_mut!(py::PyUnicode_Type)),
            )
        } else if flags & py::Py_TPFLAGS_BYTES_SUBCLASS != 0 {
            (
                Kind::Bytes,
                exactly(std::ptr::addr_of_mut!(py::PyBytes_Type)),
            )
        } else if flags & py::Py_TPFLAGS_LIST_SUBCLASS != 0 {
            (Kind::List, false)
        } else {
            (Kind::Other, false)
        };
        py::Py_DecRef(ty);
        found
    }
}

/// Python objects converted to a value vector (`cbreg_py_args_new`):
/// borrows the objects' str and bytes buffers; owns the arrays made from
/// lists.
pub(super) struct PyArgs {
    pub(super) values: Vec<Value>,
    pub(super) lists: Lists,
}

/// The arrays made from list arguments, owned while their values are used.
#[derive(Default)]
pub(super) struct Lists {
    pub(super) i64s: Vec<Vec<i64>>,
    pub(super) f64s: Vec<Vec<f64>>,
}

/// The value for the argument `obj` (the one place these rules live), and
/// whether the value converts back to an object equal to `obj` of its very
/// type (`kind_and_exact`); `None` with a Python exception set.
///
/// # Safety
/// The GIL is held; `obj` is a live object, kept alive as long as the
/// value is used (a str's or bytes' value borrows its buffer).
pub(super) unsafe fn arg_value(obj: PyObj, lists: &mut Lists) -> Option<(Value, bool)> {
    // SAFETY: the GIL is held and `obj` is live (the caller's promise); each
    // conversion is the one for the kind found, and the buffers borrowed
    // (a bytes object's) live as long as `obj`.
    unsafe {
        let (kind, exact) = kind_and_exact(obj);
        let v = match kind {
            Kind::None => Value::none(),
            Kind::Bool => Value::bool(obj == py::Py_True()),
            Kind::Int => {
                let x = py::PyLong_AsLongLong(obj);
                if x == -1 && !py::PyErr_Occurred().is_null() {
                    return None;
                }
                Value::i64(x)
            }
            Kind::Float => {
                let x = py::PyFloat_AsDouble(obj);
                if x == -1.0 && !py::PyErr_Occurred().is_null() {
                    return None;
                }
                Value::f64(x)
            }
            Kind::Str => Value::str(utf8_of(obj)?),
            Kind::Bytes => {
                let mut p: *mut c_char = std::ptr::null_mut();
                let mut len: py::Py_ssize_t = 0;
                if py::PyBytes_AsStringAndSize(obj, &mut p, &mut len) != 0 {
                    return None;
                }
                Value::bytes(std::slice::from_raw_parts(p.cast(), len as usize))
            }
            Kind::List => lists.list(obj)?,
            Kind::Other => return type_error(
                b"cbreg: arguments must be None, bool, int, float, str, bytes or a list of numbers\0",
            ),
        };
        Some((v, exact))
    }
}

impl PyArgs {
    /// One argument; `None` with a Python exception set.
    ///
    /// # Safety
    /// As `arg_value`.
    pub(super) unsafe fn push(&mut self, obj: PyObj) -> Option<()> {
        // SAFETY: as `arg_value`.
        unsafe {
            let (v, _) = arg_value(obj, &mut self.lists)?;
            self.values.push(v);
            Some(())
        }
    }
}

impl Lists {
    /// A list of ints (an i64 array) or of numbers with a float among them
    /// (an f64 array), copied.
    ///
    /// # Safety
    /// The GIL is held; `list` is a live list object.
    pub(super) unsafe fn list(&mut self, list: PyObj) -> Option<Value> {
        // SAFETY: the GIL is held and `list` is a live list (the caller's
        // promise); indexes stay below its size, read once.
        unsafe {
            let n = py::PyList_Size(list).max(0) as usize;
            let item = |i: usize| py::PyList_GetItem(list, i as py::Py_ssize_t);
            let mut any_float = false;
            for i in 0..n {
                match kind_of(item(i)) {
                    Kind::Float => any_float = true,
                    Kind::Int => {}
                    _ => {
                        return type_error(
                            b"cbreg: a list argument must hold only ints or floats\0",
                        )
                    }
                }
            }
            if any_float {
                self.f64s.push(numbers(n, item, py::PyFloat_AsDouble)?);
                Some(Value::f64_array(self.f64s.last()?))
            } else {
                self.i64s.push(numbers(n, item, py::PyLong_AsLongLong)?);
                Some(Value::i64_array(self.i64s.last()?))
            }
        }
    }
}

/// The `n` objects `item(0..n)` read with `read`, a CPython conversion
/// that answers -1 with an exception set when it fails; `None` then.
///
/// # Safety
/// The GIL is held; `item` gives live objects that `read` accepts.
unsafe fn numbers<T: Copy + PartialEq + From<i8>>(
    n: usize,
    item: impl Fn(usize) -> PyObj,
    read: unsafe extern "C" fn(PyObj) -> T,
) -> Option<Vec<T>> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY: the GIL is held and the object live (the caller's
        // promise).
        let x = unsafe { read(item(i)) };
        // SAFETY: the GIL is held.
        if x == T::from(-1) && unsafe { !py::PyErr_Occurred().is_null() } {
            return None;
        }
        v.push(x);
    }
    Some(v)
}

/// The UTF-8 form of the str `obj`, which CPython keeps in the object: it
/// lives as long as `obj` does, which the caller sees to. `None` with a
/// `UnicodeEncodeError` set when there is none (lone surrogates).
///
/// # Safety
/// The GIL is held; `obj` is a live str object.
unsafe fn utf8_of<'a>(obj: PyObj) -> Option<&'a str> {
    // SAFETY: the GIL is held and `obj` a live str (the caller's promise); on
    // success CPython returns `len` bytes of valid UTF-8.
    unsafe {
        let mut len: py::Py_ssize_t = 0;
        let p = py::PyUnicode_AsUTF8AndSize(obj, &mut len);
        if p.is_null() {
            return None;
        }
        Some(std::str::from_utf8_unchecked(std::slice::from_raw_parts(
            p.cast(),
            len as usize,
        )))
    }
}

/// # Safety
/// The GIL is held; `message` ends in NUL.
pub(super) unsafe fn type_error<T>(message: &[u8]) -> Option<T> {
    // SAFETY: the GIL is held (the caller's promise); `message` ends in NUL.
    unsafe {
        py::PyErr_SetString(py::PyExc_TypeError, message.as_ptr().cast());
        None
    }
}

/// Sets the Python exception for `status` (GIL held) unless one is pending:
/// the `cbreg` package's class for it (cbreg.NotFound, ...) when that is
/// importable, RuntimeError otherwise.
///
/// # Safety
/// The GIL is held.
pub(super) unsafe fn set_error(status: Status) {
    // SAFETY: the GIL is held (the caller's promise); every object used is
    // checked non-null first and released once.
    unsafe {
        if !py::PyErr_Occurred().is_null() {
            return;
        }
        let message = status.message().as_ptr().cast();
        let errors = py::PyImport_ImportModule(b"cbreg._errors\0".as_ptr().cast());
        let by_status = if errors.is_null() {
            std::ptr::null_mut()
        } else {
            let table = py::PyObject_GetAttrString(errors, b"BY_STATUS\0".as_ptr().cast());
            py::Py_DecRef(errors);
            table
        };
        if !by_status.is_null() {
            let class = py::PySequence_GetItem(by_status, status as u32 as py::Py_ssize_t);
            py::Py_DecRef(by_status);
            if !class.is_null() {
                py::PyErr_SetString(class, message);
                py::Py_DecRef(class);
                return;
            }
        }
        py::PyErr_Clear();
        py::PyErr_SetString(py::PyExc_RuntimeError, message);
    }
}

/// The owner of a returned str/bytes: the object and its interpreter.
pub(super) struct Returned {
    pub(super) obj: PyObj,
    pub(super) interp: &'static Interp,
}

/// Drops a returned str/bytes (`owner` is a `Returned`).
///
/// # Safety
/// `owner` came from `store_result` and is dropped once (`cbreg_value`'s
/// drop contract).
pub(super) unsafe extern "C-unwind" fn drop_returned(owner: *mut c_void) {
    // SAFETY: made by `store_result` with Box::into_raw, dropped once.
    let owner = unsafe { Box::from_raw(owner.cast::<Returned>()) };
    let obj = owner.obj;
    // Finalizing or ended: the object is left to the interpreter.
    // SAFETY: attached to the object's interpreter; the reference is ours.
    let _ = with_python(owner.interp, true, |_| unsafe { py::Py_DecRef(obj) });
}

/// Whether converting the callback's result `result` to a value and back
/// gives an equal object of its very type: then a Python caller
/// (`cbreg_py_invoke`) gets the object itself.
///
/// # Safety
/// The GIL is held; `result` is a live object.
pub(super) unsafe fn result_comes_back_as_is(result: PyObj) -> bool {
    // SAFETY: the GIL is held and `result` is live (the caller's promise).
    unsafe {
        match kind_and_exact(result) {
            (Kind::None | Kind::Bool | Kind::Float | Kind::Bytes, exact) => exact,
            (Kind::Int, true) => {
                let mut overflow = 0;
                let n = py::PyLong_AsLongLongAndOverflow(result, &mut overflow);
                let failed = n == -1 && !py::PyErr_Occurred().is_null();
                py::PyErr_Clear();
                overflow == 0 && !failed
            }
            (Kind::Str, true) => {
                let utf8 = utf8_of(result).is_some();
                py::PyErr_Clear(); // lone surrogates: no UTF-8 form
                utf8
            }
            _ => false,
        }
    }
}

/// Stores the callback's result in `*ret`; takes ownership of `result`.
/// Types with no `cbreg_value` form leave `*ret` none.
///
/// # Safety
/// The GIL is held in `interp`; `result` is a live object, a reference
/// the caller gives up.
pub(super) unsafe fn store_result(result: PyObj, ret: &mut Value, interp: &'static Interp) {
    // SAFETY: the GIL is held and `result` is live and ours (the caller's
    // promise); a str's or bytes' buffer lives as long as the object,
    // which `ret` then owns.
    unsafe {
        let mut keep = false;
        match kind_of(result) {
            Kind::Bool => *ret = Value::bool(result == py::Py_True()),
            Kind::Int => {
                let mut overflow = 0;
                let n = py::PyLong_AsLongLongAndOverflow(result, &mut overflow);
                let failed = n == -1 && !py::PyErr_Occurred().is_null();
                if overflow == 0 && !failed {
                    *ret = Value::i64(n);
                }
                py::PyErr_Clear();
            }
            Kind::Float => *ret = Value::f64(py::PyFloat_AsDouble(result)),
            Kind::Str => match utf8_of(result) {
                Some(text) => {
                    *ret = Value::str(text);
                    keep = true;
                }
                None => py::PyErr_Clear(), // lone surrogates: no UTF-8 form
            },
            Kind::Bytes => {
                let mut p: *mut c_char = null_mut();
                let mut len: py::Py_ssize_t = 0;
                if py::PyBytes_AsStringAndSize(result, &mut p, &mut len) == 0 {
                    *ret = Value::bytes(std::slice::from_raw_parts(p.cast(), len as usize));
                    keep = true;
                } else {
                    py::PyErr_Clear();
                }
            }
            // None, lists and other types have no return form: none.
            Kind::None | Kind::List | Kind::Other => {}
        }
        if keep {
            ret.drop = Some(drop_returned);
            ret.owner = Box::into_raw(Box::new(Returned {
                obj: result,
                interp,
            }))
            .cast();
        } else {
            py::Py_DecRef(result);
        }
    }
}
