// cbreg_nanobind.hpp: the nanobind adapter over cbreg's Python entries.
//
// Header-only, C++17. Python callables become registry entries through the
// core's Python adapter (cbreg_py_register, feature `python`), so the table
// that owns them is Rust's and never destroyed at exit. This header only
// translates: Python arguments to cbreg_value, statuses to Python
// exceptions.
//
//     NB_MODULE(my_ext, m) {
//         cbreg::nb::install_atexit();        // once per process, however many modules
//         m.def("on_tick", [](nanobind::callable cb) {
//             return cbreg::nb::subscribe(cb).release();   // an id for the audio thread
//         });
//     }
//
// Status exceptions: if the `cbreg` Python package is importable, its
// exception classes (cbreg.NotFound, cbreg.Closed, ...) are raised;
// otherwise RuntimeError. CALLBACK_FAILED with a Python exception pending
// (a callback fired from Python raised) re-raises that exception.

#ifndef CBREG_NANOBIND_HPP
#define CBREG_NANOBIND_HPP

#if defined(CBREG_H) && !defined(CBREG_PYTHON)
#error "cbreg_nanobind.hpp: include it before cbreg.h / cbreg.hpp, or define CBREG_PYTHON"
#endif
#ifndef CBREG_PYTHON
#define CBREG_PYTHON 1
#endif

#include "cbreg.hpp"

#include <nanobind/nanobind.h>

#include <cstdint>
#include <vector>

namespace cbreg {
namespace nb {

namespace detail {

// Sets the Python exception for `s` (GIL held).
inline void set_error(status s) noexcept {
    PyObject* type = PyExc_RuntimeError;
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
    PyErr_SetString(type, to_string(s));
}

}  // namespace detail

// Raises the Python exception for a failing status (GIL held). A pending
// Python exception with CALLBACK_FAILED is the callback's own: re-raised.
[[noreturn]] inline void raise(status s) {
    if (!(s == status::callback_failed && PyErr_Occurred())) {
        PyErr_Clear();
        detail::set_error(s);
    }
    throw ::nanobind::python_error();
}

inline void check(status s) {
    if (s != status::ok) raise(s);
}

// Registers `callable` (GIL held): the entry holds a strong reference until
// its release. `flags`: cbreg::persistent or cbreg::once. Raises on failure
// (cbreg.Closed once the atexit hook has run).
inline subscription subscribe(::nanobind::handle callable, std::uint32_t flags = persistent,
                              cbreg_registry reg = cbreg_default()) {
    std::uint64_t id = 0;
    check(static_cast<status>(cbreg_py_register(reg, callable.ptr(), flags, &id)));
    return subscription(reg, id);
}

// The one line for NB_MODULE: installs the atexit hook (once per process).
inline void install_atexit() { check(static_cast<status>(cbreg_py_install_atexit())); }

// Python arguments converted to a cbreg_value vector. Borrows str and bytes
// buffers from the objects, which must outlive it (the args tuple does).
// None, bool, int, float, str, bytes, and lists of ints or floats (a list
// with any float becomes an f64 array). Raises TypeError/OverflowError.
class arg_pack {
public:
    explicit arg_pack(::nanobind::handle seq) {
        const Py_ssize_t n = PySequence_Size(seq.ptr());
        if (n < 0) throw ::nanobind::python_error();
        values_.reserve(static_cast<std::size_t>(n));
        i64s_.reserve(static_cast<std::size_t>(n));
        f64s_.reserve(static_cast<std::size_t>(n));
        for (Py_ssize_t i = 0; i < n; ++i) {
            ::nanobind::object item = ::nanobind::steal(PySequence_GetItem(seq.ptr(), i));
            if (!item.is_valid()) throw ::nanobind::python_error();
            items_.push_back(item);
            values_.push_back(convert(item));
        }
    }
    const cbreg_value* data() const noexcept { return values_.empty() ? nullptr : values_.data(); }
    std::size_t size() const noexcept { return values_.size(); }

private:
    cbreg_value convert(::nanobind::handle o) {
        PyObject* p = o.ptr();
        if (p == Py_None) return value::none();
        if (PyBool_Check(p)) return value::boolean(p == Py_True);
        if (PyLong_Check(p)) {
            long long x = PyLong_AsLongLong(p);
            if (x == -1 && PyErr_Occurred()) throw ::nanobind::python_error();
            return value::i64(x);
        }
        if (PyFloat_Check(p)) return value::f64(PyFloat_AS_DOUBLE(p));
        if (PyUnicode_Check(p)) {
            Py_ssize_t len = 0;
            const char* s = PyUnicode_AsUTF8AndSize(p, &len);
            if (!s) throw ::nanobind::python_error();  // lone surrogates
            return value::str(std::string_view(s, static_cast<std::size_t>(len)));
        }
        if (PyBytes_Check(p))
            return value::bytes(PyBytes_AS_STRING(p), static_cast<std::size_t>(PyBytes_GET_SIZE(p)));
        if (PyList_Check(p)) return convert_list(p);
        throw ::nanobind::type_error(
            "cbreg: arguments must be None, bool, int, float, str, bytes or a list of numbers");
    }

    cbreg_value convert_list(PyObject* list) {
        const Py_ssize_t n = PyList_GET_SIZE(list);
        bool any_float = false;
        for (Py_ssize_t i = 0; i < n; ++i) {
            PyObject* x = PyList_GET_ITEM(list, i);
            if (PyFloat_Check(x))
                any_float = true;
            else if (!PyLong_Check(x) || PyBool_Check(x))
                throw ::nanobind::type_error("cbreg: a list argument must hold only ints or floats");
        }
        if (any_float) {
            std::vector<double>& v = f64s_.emplace_back(static_cast<std::size_t>(n));
            for (Py_ssize_t i = 0; i < n; ++i) {
                v[i] = PyFloat_AsDouble(PyList_GET_ITEM(list, i));
                if (v[i] == -1.0 && PyErr_Occurred()) throw ::nanobind::python_error();
            }
            return value::f64s(v);
        }
        std::vector<std::int64_t>& v = i64s_.emplace_back(static_cast<std::size_t>(n));
        for (Py_ssize_t i = 0; i < n; ++i) {
            v[i] = PyLong_AsLongLong(PyList_GET_ITEM(list, i));
            if (v[i] == -1 && PyErr_Occurred()) throw ::nanobind::python_error();
        }
        return value::i64s(v);
    }

    std::vector<cbreg_value> values_;
    std::vector<::nanobind::object> items_;  // keeps list copies' sources alive
    std::vector<std::vector<std::int64_t>> i64s_;
    std::vector<std::vector<double>> f64s_;
};

// A cbreg_value as a new Python object (GIL held).
inline ::nanobind::object to_python(const cbreg_value& v) {
    namespace n = ::nanobind;
    switch (value::tag_of(v)) {
        case tag::none: return n::none();
        case tag::boolean: return n::bool_(v.as.b);
        case tag::i64: return n::int_(v.as.i64);
        case tag::f64: return n::float_(v.as.f64);
        case tag::str: {
            PyObject* s = PyUnicode_DecodeUTF8(reinterpret_cast<const char*>(v.as.str),
                                               static_cast<Py_ssize_t>(v.len), "strict");
            if (!s) throw n::python_error();
            return n::steal(s);
        }
        case tag::bytes: return n::bytes(reinterpret_cast<const char*>(v.as.bytes), v.len);
        case tag::i64_array: {
            n::list l;
            for (std::size_t i = 0; i < v.len; ++i) l.append(n::int_(v.as.i64s[i]));
            return l;
        }
        case tag::f64_array: {
            n::list l;
            for (std::size_t i = 0; i < v.len; ++i) l.append(n::float_(v.as.f64s[i]));
            return l;
        }
        case tag::ptr: return n::steal(PyLong_FromVoidPtr(v.as.ptr));
    }
    raise(status::invalid_argument);
}

// Invokes `id` with Python arguments and returns the callback's return
// value as a Python object; raises per status. The GIL stays held, so a
// Python callback runs on this thread and its exception propagates.
inline ::nanobind::object invoke(std::uint64_t id, ::nanobind::handle args,
                                 cbreg_registry reg = cbreg_default()) {
    arg_pack pack(args);
    result ret;
    status s = static_cast<status>(cbreg_invoke(reg, id, pack.data(), pack.size(), ret.out()));
    check(s);
    return to_python(ret.get());
}

}  // namespace nb
}  // namespace cbreg

#endif  // CBREG_NANOBIND_HPP
