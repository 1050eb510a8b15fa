// cbreg_nanobind.hpp: the nanobind adapter over cbreg's Python entries.
//
// Header-only, C++17. Python callables become registry entries through the
// core's Python adapter (cbreg_py_register, feature `python`), so the table
// that owns them is Rust's and never destroyed at exit. This header only
// translates: Python arguments to cbreg_value, statuses to Python
// exceptions. Include it before or after cbreg.h / cbreg.hpp.
//
//     NB_MODULE(my_ext, m) {
//         cbreg::nb::install_atexit();        // once per interpreter, however many modules
//         m.def("on_tick", [](nanobind::callable cb) {
//             return cbreg::nb::subscribe(cb).release();   // an id for the audio thread
//         });
//     }
//
// Status exceptions: if the `cbreg` Python package is importable, its
// exception classes (cbreg.NotFound, cbreg.Closed, ...) are raised;
// otherwise RuntimeError. A Python exception already pending (a callback
// fired from Python raised, or cbreg said why it refused) is raised as is.
//
// Exceptions of callbacks that native code fires on a thread holding the
// GIL (an engine's run() called from Python) are left pending with
// CALLBACK_FAILED, for that code to raise with check(); subscribe with
// cbreg::nb::unraisable to send them to sys.unraisablehook instead.

#ifndef CBREG_NANOBIND_HPP
#define CBREG_NANOBIND_HPP

#include "cbreg.hpp"

#include <nanobind/nanobind.h>

#include <cstdint>
#include <new>
#include <optional>
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
namespace nb {

// `flags` for subscribe, with cbreg::persistent or cbreg::once.
inline constexpr std::uint32_t unraisable = CBREG_PY_UNRAISABLE;

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

// Sets the Python exception for a failing status (GIL held), unless one is
// already pending: a callback's own, or cbreg's reason for refusing.
inline void set_error(status s) noexcept {
    if (!PyErr_Occurred()) detail::set_error(s);
}

// Raises the Python exception for a failing status (GIL held).
[[noreturn]] inline void raise(status s) {
    set_error(s);
    throw ::nanobind::python_error();
}

// Raises unless `s` is OK, and also when a Python exception is pending
// after an OK (a native callback between swallowed a Python one's status).
inline void check(status s) {
    if (s != status::ok || PyErr_Occurred()) raise(s == status::ok ? status::callback_failed : s);
}

// Registers `callable` (GIL held) in the calling interpreter: the entry
// holds a strong reference until its release. `flags`: cbreg::persistent or
// cbreg::once, optionally | cbreg::nb::unraisable. Raises on failure
// (cbreg.Closed once the interpreter's exit hook has run).
inline subscription subscribe(::nanobind::handle callable, std::uint32_t flags = persistent,
                              cbreg_registry reg = cbreg_default()) {
    std::uint64_t id = 0;
    check(static_cast<status>(cbreg_py_register(reg, callable.ptr(), flags, &id)));
    return subscription(reg, id);
}

// The one line for NB_MODULE: installs the exit hook (once per interpreter).
inline void install_atexit() { check(static_cast<status>(cbreg_py_install_atexit())); }

// Python arguments converted to a cbreg_value vector. Borrows: the items
// (and the str and bytes buffers inside them) must outlive it; it holds no
// Python reference, so unwinding past it touches no Python object. None,
// bool, int, float, str, bytes, and lists of ints or floats (a list with
// any float becomes an f64 array, copied). Throws python_error
// (TypeError, OverflowError, ...) with the Python exception set.
class arg_pack {
public:
    arg_pack(PyObject* const* items, std::size_t n) { fill(items, n); }
    // The items of a tuple (nanobind::args is one).
    explicit arg_pack(::nanobind::handle tuple) {
        if (!PyTuple_Check(tuple.ptr())) throw ::nanobind::type_error("cbreg: arguments must be a tuple");
        fill(&PyTuple_GET_ITEM(tuple.ptr(), 0), static_cast<std::size_t>(PyTuple_GET_SIZE(tuple.ptr())));
    }
    const cbreg_value* data() const noexcept { return values_.empty() ? nullptr : values_.data(); }
    std::size_t size() const noexcept { return values_.size(); }

private:
    [[noreturn]] static void fail(PyObject* type, const char* what) {
        PyErr_SetString(type, what);
        throw ::nanobind::python_error();
    }

    void fill(PyObject* const* items, std::size_t n) {
        values_.reserve(n);
        for (std::size_t i = 0; i < n; ++i) values_.push_back(convert(items[i]));
    }

    cbreg_value convert(PyObject* p) {
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
        fail(PyExc_TypeError,
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
                fail(PyExc_TypeError, "cbreg: a list argument must hold only ints or floats");
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
// Python callback runs on this thread and its exception propagates (unless
// it was subscribed unraisable: then cbreg.CallbackFailed).
inline ::nanobind::object invoke(std::uint64_t id, ::nanobind::handle args,
                                 cbreg_registry reg = cbreg_default()) {
    arg_pack pack(args);
    result ret;
    check(static_cast<status>(cbreg_invoke(reg, id, pack.data(), pack.size(), ret.out())));
    return to_python(ret.get());
}

// The same as a CPython METH_FASTCALL function, invoke(id, *args), for
// modules that add it with PyModule_AddFunctions or PyCFunction_New. It
// runs no C++ handler around the call into the callback, so CPython can end
// a daemon thread that is inside the callback at exit (a forced unwind that
// a nanobind-bound function's catch-all would turn into an abort).
inline PyObject* invoke_fastcall(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "invoke(id, *args): missing the id");
        return nullptr;
    }
    const unsigned long long id = PyLong_AsUnsignedLongLong(args[0]);
    if (id == static_cast<unsigned long long>(-1) && PyErr_Occurred()) return nullptr;
    std::optional<arg_pack> pack;
    try {
        pack.emplace(args + 1, static_cast<std::size_t>(nargs - 1));
    } catch (::nanobind::python_error& e) {
        e.restore();
        return nullptr;
    } catch (const std::bad_alloc&) {
        return PyErr_NoMemory();
    }
    result ret;
    const status s = static_cast<status>(
        cbreg_invoke(cbreg_default(), id, pack->data(), pack->size(), ret.out()));
    if (s != status::ok || PyErr_Occurred()) {
        set_error(s == status::ok ? status::callback_failed : s);
        return nullptr;
    }
    try {
        return to_python(ret.get()).release().ptr();
    } catch (::nanobind::python_error& e) {
        e.restore();
        return nullptr;
    } catch (const std::bad_alloc&) {
        return PyErr_NoMemory();
    }
}

}  // namespace nb
}  // namespace cbreg

#endif  // CBREG_NANOBIND_HPP
