// cbreg._core: the nanobind extension behind the `cbreg` package. Thin: every
// function forwards to the C ABI through cpp_shim/cbreg_nanobind.hpp; the
// Python-facing API lives in cbreg/__init__.py, which re-exports invoke and
// Subscription from here (their docs are here).
#include "cbreg_nanobind.hpp"

#include <nanobind/stl/string.h>
#include <structmember.h>

#include <cstdio>

// Test diagnostics of the Python adapter (src/python/testing.rs): exported
// for this module's own tests, kept out of the public header.
extern "C" {
cbreg_status cbreg_py_thread_states(size_t *kept, size_t *in_interpreter);
bool cbreg_py_interpreter_guards(void);
}

namespace nb = nanobind;

namespace {

cbreg_registry reg() { return cbreg_default(); }

// invoke(id, *args) and Subscription are plain CPython objects, not
// nanobind-bound ones: nanobind's dispatcher catches everything, which
// would turn CPython ending a daemon thread inside a callback (a forced
// unwind) into an abort, and a plain METH_FASTCALL function or vectorcall
// goes straight to the adapter (cbreg_py_invoke) with no layer between.
PyMethodDef invoke_def[] = {
    {"invoke", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&cbreg::nb::invoke_fastcall)),
     METH_FASTCALL,
     "invoke($module, id, /, *args)\n--\n\n"
     "Invokes entry ``id`` on this thread and returns its return value. An\n"
     "exception raised by a Python callback propagates (registered with\n"
     "``errors=\"unraisable\"``: it goes to :func:`sys.unraisablehook` and this\n"
     "raises :class:`CallbackFailed`); other failures raise the :class:`Error`\n"
     "subclass for the status (e.g. :class:`NotFound`)."},
    {nullptr, nullptr, 0, nullptr},
};

// Unregisters `id`: False if it was already gone, True if it was live.
// With `wait`, where the wait would deadlock (inside the entry's own
// callback, which would wait for itself, or a cycle of waits) the core
// changes nothing; the entry is then unregistered without the wait, so
// "stop calling me" from inside the callback takes effect.
PyObject* unregister_id(std::uint64_t id, bool wait) {
    auto s = static_cast<cbreg::status>(wait ? cbreg_unregister_wait(reg(), id)
                                             : cbreg_unregister(reg(), id));
    if (wait && s == cbreg::status::would_deadlock)
        s = static_cast<cbreg::status>(cbreg_unregister(reg(), id));
    if (s == cbreg::status::not_found) Py_RETURN_FALSE;
    if (cbreg::cpython::failed(s)) return nullptr;
    Py_RETURN_TRUE;
}

// ---- cbreg.Subscription ----

struct Subscription {
    PyObject_HEAD
    vectorcallfunc vectorcall;  // sub_call, for every instance
    unsigned long long id;
    char once;
};

Subscription* as_sub(PyObject* self) { return reinterpret_cast<Subscription*>(self); }

PyObject* sub_call(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
    if (kwnames && PyTuple_GET_SIZE(kwnames) != 0) {
        PyErr_SetString(PyExc_TypeError, "a Subscription takes no keyword arguments");
        return nullptr;
    }
    return cbreg::cpython::invoke(reg(), as_sub(self)->id, args,
                                  static_cast<std::size_t>(PyVectorcall_NARGS(nargsf)));
}

PyObject* sub_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
    static const char* names[] = {"id", "once", nullptr};
    PyObject* id_obj = nullptr;
    int once = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|p:Subscription", const_cast<char**>(names),
                                     &id_obj, &once))
        return nullptr;
    const unsigned long long id = PyLong_AsUnsignedLongLong(id_obj);
    if (id == static_cast<unsigned long long>(-1) && PyErr_Occurred()) return nullptr;
    PyObject* self = type->tp_alloc(type, 0);
    if (!self) return nullptr;
    as_sub(self)->vectorcall = sub_call;
    as_sub(self)->id = id;
    as_sub(self)->once = static_cast<char>(once != 0);
    return self;
}

void sub_dealloc(PyObject* self) {
    PyTypeObject* type = Py_TYPE(self);
    type->tp_free(self);
    Py_DECREF(type);
}

PyObject* sub_repr(PyObject* self) {
    char text[80];
    std::snprintf(text, sizeof text, "Subscription(id=%#llx%s)", as_sub(self)->id,
                  as_sub(self)->once ? ", once=True" : "");
    return PyUnicode_FromString(text);
}

// unregister(*, wait=False)
PyObject* sub_unregister(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    if (nargs != 0) {
        PyErr_SetString(PyExc_TypeError, "unregister() takes no positional arguments");
        return nullptr;
    }
    bool wait = false;
    const Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; ++i) {
        if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, i), "wait") != 0) {
            PyErr_Format(PyExc_TypeError, "unregister() got an unexpected keyword argument %R",
                         PyTuple_GET_ITEM(kwnames, i));
            return nullptr;
        }
        const int truth = PyObject_IsTrue(args[i]);
        if (truth < 0) return nullptr;
        wait = truth != 0;
    }
    return unregister_id(as_sub(self)->id, wait);
}

PyObject* sub_enter(PyObject* self, PyObject*) {
    Py_INCREF(self);
    return self;
}

PyObject* sub_exit(PyObject* self, PyObject* const*, Py_ssize_t) {
    PyObject* done = unregister_id(as_sub(self)->id, false);
    if (!done) return nullptr;
    Py_DECREF(done);
    Py_RETURN_NONE;
}

PyMethodDef sub_methods[] = {
    {"unregister", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&sub_unregister)),
     METH_FASTCALL | METH_KEYWORDS,
     "unregister($self, /, *, wait=False)\n--\n\n"
     "Unregisters; False if it was already gone (ran once, cleared).\n"
     "``wait=True``: as :func:`cbreg.unregister` (from inside this\n"
     "callback it unregisters without waiting)."},
    {"__enter__", sub_enter, METH_NOARGS, "__enter__($self, /)\n--\n\nReturns the subscription."},
    {"__exit__", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&sub_exit)), METH_FASTCALL,
     "__exit__($self, /, *exc)\n--\n\nUnregisters."},
    {nullptr, nullptr, 0, nullptr},
};

PyMemberDef sub_members[] = {
    {"id", T_ULONGLONG, offsetof(Subscription, id), READONLY,
     "The entry id (nonzero, never reused); pass it to native code."},
    {"once", T_BOOL, offsetof(Subscription, once), READONLY, "Whether this is a one-shot entry."},
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(Subscription, vectorcall), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

const char sub_doc[] =
    "Subscription(id, once=False)\n--\n\n"
    "A registered callback. Use it as a context manager, or call\n"
    ":meth:`unregister` (from inside the callback too). Dropping the object,\n"
    "or its garbage collection, does *not* unregister: the registry holds\n"
    "the callable until it is unregistered, cleared or Python exits, and\n"
    "native code may fire the id after the last Python reference is gone.\n"
    "Calling it is the same as ``invoke(self.id, *args)``.";

PyType_Slot sub_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(&sub_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(&sub_dealloc)},
    {Py_tp_call, reinterpret_cast<void*>(&PyVectorcall_Call)},
    {Py_tp_repr, reinterpret_cast<void*>(&sub_repr)},
    {Py_tp_methods, sub_methods},
    {Py_tp_members, sub_members},
    {Py_tp_doc, const_cast<char*>(sub_doc)},
    {0, nullptr},
};

#ifndef Py_TPFLAGS_IMMUTABLETYPE
#define Py_TPFLAGS_IMMUTABLETYPE 0  // before 3.10
#endif

PyType_Spec sub_spec = {
    "cbreg.Subscription", sizeof(Subscription), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_IMMUTABLETYPE,
    sub_slots,
};

cbreg_stats stats_of() {
    cbreg_stats s{};
    cbreg::nb::check(static_cast<cbreg::status>(cbreg_stats_get(reg(), &s)));
    return s;
}

}  // namespace

NB_MODULE(_core, m) {
    m.doc() = "Native core of the cbreg package (use the cbreg module instead).";
    cbreg::nb::install_atexit();

    m.def("register", [](nb::callable fn, bool once, bool unraisable) {
        std::uint32_t flags = (once ? cbreg::once : cbreg::persistent) |
                              (unraisable ? cbreg::nb::unraisable : 0);
        return cbreg::nb::subscribe(fn, flags).release();
    }, nb::arg("fn"), nb::arg("once") = false, nb::arg("unraisable") = false);

    if (PyModule_AddFunctions(m.ptr(), invoke_def) != 0) throw nb::python_error();
    PyObject* sub_type = PyType_FromSpec(&sub_spec);
    if (!sub_type || PyModule_AddObject(m.ptr(), "Subscription", sub_type) != 0) {
        Py_XDECREF(sub_type);
        throw nb::python_error();
    }

    // With `wait`, the GIL stays held here: the core's wait gives it up.
    m.def("unregister", [](std::uint64_t id, bool wait) {
        PyObject* done = unregister_id(id, wait);
        if (!done) throw nb::python_error();
        return nb::steal<nb::bool_>(done);
    }, nb::arg("id"), nb::arg("wait") = false);

    m.def("clear", [] {
        size_t n = 0;
        cbreg::nb::check(static_cast<cbreg::status>(cbreg_clear(reg(), &n)));
        return n;
    });

    m.def("close", [] {
        size_t n = 0;
        cbreg::nb::check(static_cast<cbreg::status>(cbreg_close(reg(), &n)));
        return n;
    });

    m.def("collect", [] {
        size_t n = 0;
        cbreg::nb::check(static_cast<cbreg::status>(cbreg_collect(reg(), &n)));
        return n;
    });

    m.def("stats", [] {
        cbreg_stats s = stats_of();
        nb::dict d;
        d["live"] = s.live;
        d["registered"] = s.registered;
        d["invoked"] = s.invoked;
        d["released"] = s.released;
        d["deferred"] = s.deferred;
        d["pending"] = s.pending;
        d["leaked"] = s.leaked;
        return d;
    });

    m.def("is_closed", [] { return cbreg_py_is_closed(); });
    m.def("atexit_clear", [] { cbreg::nb::check(static_cast<cbreg::status>(cbreg_py_atexit_clear())); },
          "Runs this interpreter's exit hook now (idempotent).");
    m.def("_thread_states", [] {
        size_t kept = 0, in_interpreter = 0;
        cbreg::nb::check(static_cast<cbreg::status>(cbreg_py_thread_states(&kept, &in_interpreter)));
        return nb::make_tuple(kept, in_interpreter);
    }, "For tests: (thread states kept for native threads, thread states of this interpreter).");
    m.def("_interpreter_guards", [] { return cbreg_py_interpreter_guards(); },
          "For tests: whether threads attach here under PEP 788 interpreter guards.");
    m.def("status_str", [](std::uint32_t s) { return std::string(cbreg_status_str(s)); });
}
