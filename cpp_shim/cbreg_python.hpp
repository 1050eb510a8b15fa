// cbreg_python.hpp: the CPython side that the nanobind and pybind11 adapters
// share (cbreg_nanobind.hpp, cbreg_pybind11.hpp), in the raw CPython API so
// that both translate through one copy. It holds no rules of its own: which
// Python object becomes which cbreg_value and back, and which exception a
// status raises, are the Rust adapter's (src/python/), reached through the
// C ABI (cbreg_py_args_new, cbreg_py_value_to_object, cbreg_py_set_error).
// Header-only, C++17; include it through one of the adapters.
//
// Every function here reports failure with a Python exception set (GIL
// held) and a null or false result; none throws a binding library's
// exception type. The ones that call into a callback are not noexcept and
// catch nothing: CPython ends a daemon thread inside a callback at exit with
// a forced unwind, which must pass through them.

#ifndef CBREG_PYTHON_HPP
#define CBREG_PYTHON_HPP

// The Python adapter's part of the C ABI is the generated header's own:
// cbreg.h declares it where CBREG_PYTHON is defined, also when it was
// included before (that part has a guard of its own), so any include order
// works.
#ifndef CBREG_PYTHON
#define CBREG_PYTHON 1
#endif
#include "cbreg.h"
#include "cbreg.hpp"

#include <Python.h>

#include <cstdint>
#include <utility>

namespace cbreg {
namespace cpython {

// Sets the Python exception for `s` (GIL held), unless one is already
// pending: a callback's own, or cbreg's reason for refusing. The class is
// the `cbreg` package's (cbreg.NotFound, cbreg.Closed, ...) when it is
// importable, RuntimeError otherwise.
inline void set_error(status s) noexcept { cbreg_py_set_error(static_cast<std::uint32_t>(s)); }

// Whether `s` (with whatever a callback left pending) is a failure; if so,
// the Python exception for it is set.
inline bool failed(status s) noexcept {
    if (s == status::ok && !PyErr_Occurred()) return false;
    set_error(s == status::ok ? status::callback_failed : s);
    return true;
}

// Python arguments as a cbreg_value vector (the Rust adapter converts them).
// Borrows: the items (and the str and bytes buffers inside them) must
// outlive it; it holds no Python reference, so unwinding past it touches no
// Python object. fill() returns false with the Python exception set
// (TypeError, OverflowError, MemoryError, ...). Move-only.
class arg_pack {
public:
    arg_pack() noexcept = default;
    arg_pack(const arg_pack&) = delete;
    arg_pack& operator=(const arg_pack&) = delete;
    arg_pack(arg_pack&& o) noexcept
        : owner_(std::exchange(o.owner_, nullptr)), values_(o.values_), size_(o.size_) {}
    ~arg_pack() { cbreg_py_args_free(owner_); }

    bool fill(PyObject* const* items, std::size_t n) noexcept {
        cbreg_py_args_free(std::exchange(owner_, nullptr));
        const cbreg_value* values = nullptr;
        owner_ = cbreg_py_args_new(reinterpret_cast<void* const*>(items), n, &values);
        if (!owner_) return false;
        values_ = values;
        size_ = n;
        return true;
    }
    // The items of a tuple.
    bool fill_tuple(PyObject* tuple) noexcept {
        if (!PyTuple_Check(tuple)) {
            PyErr_SetString(PyExc_TypeError, "cbreg: arguments must be a tuple");
            return false;
        }
        return fill(&PyTuple_GET_ITEM(tuple, 0), static_cast<std::size_t>(PyTuple_GET_SIZE(tuple)));
    }
    const cbreg_value* data() const noexcept { return size_ ? values_ : nullptr; }
    std::size_t size() const noexcept { return size_; }

private:
    void* owner_ = nullptr;
    const cbreg_value* values_ = nullptr;
    std::size_t size_ = 0;
};

// A cbreg_value as a new Python object (GIL held); null with the exception
// set on failure.
inline PyObject* to_python(const cbreg_value& v) noexcept {
    return static_cast<PyObject*>(cbreg_py_value_to_object(&v));
}

// Invokes `id` in `reg` with the Python arguments `items` on this thread
// (GIL held: a Python callback runs here and its exception propagates,
// unless it was subscribed unraisable: then cbreg.CallbackFailed) and
// returns the callback's return value as a new reference; null with the
// exception set on failure. The Rust adapter converts both ways
// (cbreg_py_invoke). No C++ handler runs around the call into the
// callback, so CPython can end a daemon thread inside it at exit (a forced
// unwind).
inline PyObject* invoke(cbreg_registry reg, std::uint64_t id, PyObject* const* items,
                        std::size_t n) {
    return static_cast<PyObject*>(
        cbreg_py_invoke(reg, id, reinterpret_cast<void* const*>(items), n));
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
