// cbreg_pybind11.hpp: the pybind11 adapter over cbreg's Python entries, the
// same shape as cbreg_nanobind.hpp.
//
// Header-only, C++17. Python callables become registry entries through the
// core's Python adapter (cbreg_py_register, feature `python`), so the table
// that owns them is Rust's and never destroyed at exit. This header only
// translates between pybind11 and cbreg_python.hpp (shared with the
// nanobind adapter). Include it before or after cbreg.h / cbreg.hpp; link
// cbreg::cbreg from the package's CMake config (`python -m cbreg
// --cmake_dir`).
//
//     PYBIND11_MODULE(my_ext, m) {
//         cbreg::py::install_atexit();        // once per interpreter, however many modules
//         m.def("on_tick", [](pybind11::function cb) {
//             return cbreg::py::subscribe(cb).release();   // an id for the audio thread
//         });
//     }
//
// Status exceptions: the `cbreg` package's classes (cbreg.NotFound,
// cbreg.Closed, ...) when it is importable, RuntimeError otherwise; a
// Python exception already pending is raised as is. Exceptions of callbacks
// fired on a thread holding the GIL are left pending with CALLBACK_FAILED
// for check() to raise; subscribe with cbreg::py::unraisable to send them to
// sys.unraisablehook instead.

#ifndef CBREG_PYBIND11_HPP
#define CBREG_PYBIND11_HPP

#include <pybind11/pybind11.h>

#include "cbreg_python.hpp"

#include <cstddef>
#include <cstdint>

namespace cbreg {
namespace py {

// `flags` for subscribe, with cbreg::persistent or cbreg::once.
inline constexpr std::uint32_t unraisable = CBREG_PY_UNRAISABLE;

// Sets the Python exception for a failing status (GIL held), unless one is
// already pending.
inline void set_error(status s) noexcept { cpython::set_error(s); }

// Raises the Python exception for a failing status (GIL held).
[[noreturn]] inline void raise(status s) {
    set_error(s);
    throw ::pybind11::error_already_set();
}

// Raises unless `s` is OK, and also when a Python exception is pending
// after an OK.
inline void check(status s) {
    if (cpython::failed(s)) throw ::pybind11::error_already_set();
}

// Registers `callable` (GIL held) in the calling interpreter: the entry
// holds a strong reference until its release. `flags`: cbreg::persistent or
// cbreg::once, optionally | cbreg::py::unraisable. Raises on failure
// (cbreg.Closed once the interpreter's exit hook has run).
inline subscription subscribe(::pybind11::handle callable, std::uint32_t flags = persistent,
                              cbreg_registry reg = cbreg_default()) {
    std::uint64_t id = 0;
    check(static_cast<status>(cbreg_py_register(reg, callable.ptr(), flags, &id)));
    return subscription(reg, id);
}

// The one line for PYBIND11_MODULE: installs the exit hook (once per
// interpreter).
inline void install_atexit() { check(static_cast<status>(cbreg_py_install_atexit())); }

// Invokes `id` with Python arguments and returns the callback's return
// value; raises per status. The GIL stays held, so a Python callback runs
// on this thread and its exception propagates (unless it was subscribed
// unraisable: then cbreg.CallbackFailed).
inline ::pybind11::object invoke(std::uint64_t id, const ::pybind11::args& args,
                                 cbreg_registry reg = cbreg_default()) {
    PyObject* o = cpython::invoke(reg, id, &PyTuple_GET_ITEM(args.ptr(), 0),
                                  static_cast<std::size_t>(PyTuple_GET_SIZE(args.ptr())));
    if (!o) throw ::pybind11::error_already_set();
    return ::pybind11::reinterpret_steal<::pybind11::object>(o);
}

// invoke(id, *args) as a CPython METH_FASTCALL function, with no C++
// handler around the call into the callback (pybind11's dispatcher catches
// everything, which would turn CPython ending a daemon thread inside a
// callback at exit into an abort). Add it with PyModule_AddFunctions.
inline PyObject* invoke_fastcall(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    return cpython::invoke_fastcall(self, args, nargs);
}

}  // namespace py
}  // namespace cbreg

#endif  // CBREG_PYBIND11_HPP
