// cbreg_python.hpp: the CPython side that the nanobind and pybind11 adapters
// share (cbreg_nanobind.hpp, cbreg_pybind11.hpp), in the raw CPython API so
// that both translate through one copy: the Python adapter's part of the C
// ABI, statuses as Python exceptions, Python arguments as cbreg_value and
// back. Header-only, C++17; include it through one of the adapters.
//
// Every function here reports failure with a Python exception set (GIL
// held) and a null or false result; none throws a binding library's
// exception type. The ones that call into a callback are not noexcept and
// catch nothing: CPython ends a daemon thread inside a callback at exit with
// a forced unwind, which must pass through them.

#ifndef CBREG_PYTHON_HPP
#define CBREG_PYTHON_HPP

#include "cbreg.hpp"

#include <Python.h>

#include <cstdint>
#include <new>
#include <vector>

// The Python adapter's part of the C ABI, as cbreg.h declares it with
// CBREG_PYTHON defined; repeated here so that the include order does not
// matter (identical redeclarations are fine, and a drift fails to compile).
extern "C" {
cbreg_status cbreg_py_register(struct cbreg_registry reg, void *callable, uint32_t flags,
                               uint64_t *out_id);
cbreg_status cbreg_py_atexit_clear(void);
cbreg_status cbreg_py_install_atexit(void);
bool cbreg_py_is_closed(void);
}
#ifndef CBREG_PY_UNRAISABLE
#define CBREG_PY_UNRAISABLE 2
#endif

namespace cbreg {
namespace cpython {

// Sets the Python exception for `s` (GIL held), unless one is already
// pending: a callback's own, or cbreg's reason for refusing. The class is
// the `cbreg` package's (cbreg.NotFound, cbreg.Closed, ...) when it is
// importable, RuntimeError otherwise.
inline void set_error(status s) noexcept {
    if (PyErr_Occurred()) return;
    PyObject* errors = PyImport_ImportModule("cbreg._errors");
    PyObject* by_status = nullptr;
    if (errors) {
        by_status = PyObject_GetAttrString(errors, "BY_STATUS");
        Py_DECREF(errors);
    }
    if (by_status) {
        PyObject* cls = PySequence_GetItem(by_status, static_cast<Py_ssize_t>(s));
        Py_DECREF(by_status);
        if (cls) {
            PyErr_SetString(cls, to_string(s));
            Py_DECREF(cls);
            return;
        }
    }
    PyErr_Clear();
    PyErr_SetString(PyExc_RuntimeError, to_string(s));
}

// Whether `s` (with whatever a callback left pending) is a failure; if so,
// the Python exception for it is set.
inline bool failed(status s) noexcept {
    if (s == status::ok && !PyErr_Occurred()) return false;
    set_error(s == status::ok ? status::callback_failed : s);
    return true;
}

// Python arguments as a cbreg_value vector. Borrows: the items (and the str
// and bytes buffers inside them) must outlive it; it holds no Python
// reference, so unwinding past it touches no Python object. None, bool,
// int, float, str, bytes, and lists of ints or floats (a list with any
// float becomes an f64 array, copied). fill() returns false with the
// Python exception set (TypeError, OverflowError, MemoryError, ...).
class arg_pack {
public:
    bool fill(PyObject* const* items, std::size_t n) noexcept {
        try {
            values_.reserve(n);
            for (std::size_t i = 0; i < n; ++i) {
                cbreg_value v{};
                if (!convert(items[i], v)) return false;
                values_.push_back(v);
            }
            return true;
        } catch (const std::bad_alloc&) {
            PyErr_NoMemory();
            return false;
        }
    }
    // The items of a tuple.
    bool fill_tuple(PyObject* tuple) noexcept {
        if (!PyTuple_Check(tuple)) {
            PyErr_SetString(PyExc_TypeError, "cbreg: arguments must be a tuple");
            return false;
        }
        return fill(&PyTuple_GET_ITEM(tuple, 0), static_cast<std::size_t>(PyTuple_GET_SIZE(tuple)));
    }
    const cbreg_value* data() const noexcept { return values_.empty() ? nullptr : values_.data(); }
    std::size_t size() const noexcept { return values_.size(); }

private:
    static bool fail(PyObject* type, const char* what) {
        PyErr_SetString(type, what);
        return false;
    }

    bool convert(PyObject* p, cbreg_value& out) {
        if (p == Py_None) return out = value::none(), true;
        if (PyBool_Check(p)) return out = value::boolean(p == Py_True), true;
        if (PyLong_Check(p)) {
            long long x = PyLong_AsLongLong(p);
            if (x == -1 && PyErr_Occurred()) return false;
            return out = value::i64(x), true;
        }
        if (PyFloat_Check(p)) return out = value::f64(PyFloat_AS_DOUBLE(p)), true;
        if (PyUnicode_Check(p)) {
            Py_ssize_t len = 0;
            const char* s = PyUnicode_AsUTF8AndSize(p, &len);
            if (!s) return false;  // lone surrogates
            return out = value::str(std::string_view(s, static_cast<std::size_t>(len))), true;
        }
        if (PyBytes_Check(p)) {
            out = value::bytes(PyBytes_AS_STRING(p), static_cast<std::size_t>(PyBytes_GET_SIZE(p)));
            return true;
        }
        if (PyList_Check(p)) return convert_list(p, out);
        return fail(PyExc_TypeError,
                    "cbreg: arguments must be None, bool, int, float, str, bytes or a list of numbers");
    }

    bool convert_list(PyObject* list, cbreg_value& out) {
        const Py_ssize_t n = PyList_GET_SIZE(list);
        bool any_float = false;
        for (Py_ssize_t i = 0; i < n; ++i) {
            PyObject* x = PyList_GET_ITEM(list, i);
            if (PyFloat_Check(x))
                any_float = true;
            else if (!PyLong_Check(x) || PyBool_Check(x))
                return fail(PyExc_TypeError, "cbreg: a list argument must hold only ints or floats");
        }
        if (any_float) {
            std::vector<double>& v = f64s_.emplace_back(static_cast<std::size_t>(n));
            for (Py_ssize_t i = 0; i < n; ++i) {
                v[i] = PyFloat_AsDouble(PyList_GET_ITEM(list, i));
                if (v[i] == -1.0 && PyErr_Occurred()) return false;
            }
            out = value::f64s(v);
            return true;
        }
        std::vector<std::int64_t>& v = i64s_.emplace_back(static_cast<std::size_t>(n));
        for (Py_ssize_t i = 0; i < n; ++i) {
            v[i] = PyLong_AsLongLong(PyList_GET_ITEM(list, i));
            if (v[i] == -1 && PyErr_Occurred()) return false;
        }
        out = value::i64s(v);
        return true;
    }

    std::vector<cbreg_value> values_;
    std::vector<std::vector<std::int64_t>> i64s_;
    std::vector<std::vector<double>> f64s_;
};

// A list of `n` items made by `make(i)` (new references), or null.
template <class Make>
PyObject* list_of(std::size_t n, Make make) noexcept {
    PyObject* l = PyList_New(static_cast<Py_ssize_t>(n));
    if (!l) return nullptr;
    for (std::size_t i = 0; i < n; ++i) {
        PyObject* item = make(i);
        if (!item) {
            Py_DECREF(l);
            return nullptr;
        }
        PyList_SET_ITEM(l, static_cast<Py_ssize_t>(i), item);
    }
    return l;
}

// A cbreg_value as a new Python object (GIL held); null with the exception
// set on failure.
inline PyObject* to_python(const cbreg_value& v) noexcept {
    switch (value::tag_of(v)) {
        case tag::none: Py_INCREF(Py_None); return Py_None;
        case tag::boolean: return PyBool_FromLong(v.as.b ? 1 : 0);
        case tag::i64: return PyLong_FromLongLong(v.as.i64);
        case tag::f64: return PyFloat_FromDouble(v.as.f64);
        case tag::str:
            return PyUnicode_DecodeUTF8(reinterpret_cast<const char*>(v.as.str),
                                        static_cast<Py_ssize_t>(v.len), "strict");
        case tag::bytes:
            return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(v.as.bytes),
                                             static_cast<Py_ssize_t>(v.len));
        case tag::i64_array:
            return list_of(v.len, [&](std::size_t i) { return PyLong_FromLongLong(v.as.i64s[i]); });
        case tag::f64_array:
            return list_of(v.len, [&](std::size_t i) { return PyFloat_FromDouble(v.as.f64s[i]); });
        case tag::ptr: return PyLong_FromVoidPtr(v.as.ptr);
    }
    set_error(status::invalid_argument);
    return nullptr;
}

// Invokes `id` in `reg` with the Python arguments `items` on this thread
// (GIL held: a Python callback runs here and its exception propagates,
// unless it was subscribed unraisable: then cbreg.CallbackFailed) and
// returns the callback's return value as a new reference; null with the
// exception set on failure. No C++ handler runs around the call into the
// callback, so CPython can end a daemon thread inside it at exit (a forced
// unwind).
inline PyObject* invoke(cbreg_registry reg, std::uint64_t id, PyObject* const* items,
                        std::size_t n) {
    arg_pack pack;
    if (!pack.fill(items, n)) return nullptr;
    result ret;
    const status s = static_cast<status>(cbreg_invoke(reg, id, pack.data(), pack.size(), ret.out()));
    if (failed(s)) return nullptr;
    return to_python(ret.get());
}

// invoke(id, *args) as a CPython METH_FASTCALL function on the default
// registry, for modules that add it with PyModule_AddFunctions or
// PyCFunction_New.
inline PyObject* invoke_fastcall(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "invoke(id, *args): missing the id");
        return nullptr;
    }
    const unsigned long long id = PyLong_AsUnsignedLongLong(args[0]);
    if (id == static_cast<unsigned long long>(-1) && PyErr_Occurred()) return nullptr;
    return invoke(cbreg_default(), id, args + 1, static_cast<std::size_t>(nargs - 1));
}

}  // namespace cpython
}  // namespace cbreg

#endif  // CBREG_PYTHON_HPP
