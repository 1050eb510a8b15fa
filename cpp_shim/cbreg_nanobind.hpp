// cbreg_nanobind.hpp: the nanobind adapter over cbreg's Python entries.
//
// Header-only, C++17. Python callables become registry entries through the
// core's Python adapter (cbreg_py_register, feature `python`), so the table
// that owns them is Rust's and never destroyed at exit. This header only
// translates between nanobind and cbreg_python.hpp (shared with the
// pybind11 adapter), which turns Python arguments into cbreg_value and
// statuses into Python exceptions. Include it before or after cbreg.h /
// cbreg.hpp. Link cbreg::cbreg from the package's CMake config
// (`python -m cbreg --cmake_dir`).
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

#include <nanobind/nanobind.h>

#include "cbreg_python.hpp"

#include <cstdint>
#include <cstddef>

namespace cbreg {
namespace nb {

// `flags` for subscribe, with cbreg::persistent or cbreg::once.
inline constexpr std::uint32_t unraisable = CBREG_PY_UNRAISABLE;

// Sets the Python exception for a failing status (GIL held), unless one is
// already pending: a callback's own, or cbreg's reason for refusing.
inline void set_error(status s) noexcept { cpython::set_error(s); }

// Raises the Python exception for a failing status (GIL held).
[[noreturn]] inline void raise(status s) {
    set_error(s);
    throw ::nanobind::python_error();
}

// Raises unless `s` is OK, and also when a Python exception is pending
// after an OK (a native callback between swallowed a Python one's status).
inline void check(status s) {
    if (cpython::failed(s)) throw ::nanobind::python_error();
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

// Python arguments converted to a cbreg_value vector (cbreg_python.hpp's
// rules; borrows the items). Throws python_error (TypeError,
// OverflowError, ...) with the Python exception set.
class arg_pack : public cpython::arg_pack {
public:
    arg_pack(PyObject* const* items, std::size_t n) {
        if (!fill(items, n)) throw ::nanobind::python_error();
    }
    // The items of a tuple (nanobind::args is one).
    explicit arg_pack(::nanobind::handle tuple) {
        if (!fill_tuple(tuple.ptr())) throw ::nanobind::python_error();
    }
};

// A cbreg_value as a new Python object (GIL held).
inline ::nanobind::object to_python(const cbreg_value& v) {
    PyObject* o = cpython::to_python(v);
    if (!o) throw ::nanobind::python_error();
    return ::nanobind::steal(o);
}

// Invokes `id` with Python arguments and returns the callback's return
// value as a Python object; raises per status. The GIL stays held, so a
// Python callback runs on this thread and its exception propagates (unless
// it was subscribed unraisable: then cbreg.CallbackFailed).
inline ::nanobind::object invoke(std::uint64_t id, ::nanobind::handle args,
                                 cbreg_registry reg = cbreg_default()) {
    if (!PyTuple_Check(args.ptr())) throw ::nanobind::type_error("cbreg: arguments must be a tuple");
    PyObject* o = cpython::invoke(reg, id, &PyTuple_GET_ITEM(args.ptr(), 0),
                                  static_cast<std::size_t>(PyTuple_GET_SIZE(args.ptr())));
    if (!o) throw ::nanobind::python_error();
    return ::nanobind::steal(o);
}

// The same as a CPython METH_FASTCALL function, invoke(id, *args), for
// modules that add it with PyModule_AddFunctions or PyCFunction_New. It
// runs no C++ handler around the call into the callback, so CPython can end
// a daemon thread that is inside the callback at exit (a forced unwind that
// a nanobind-bound function's catch-all would turn into an abort).
inline PyObject* invoke_fastcall(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    return cpython::invoke_fastcall(self, args, nargs);
}

}  // namespace nb
}  // namespace cbreg

#endif  // CBREG_NANOBIND_HPP
