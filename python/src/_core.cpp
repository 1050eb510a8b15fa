// cbreg._core: the nanobind extension behind the `cbreg` package. Thin: every
// function forwards to the C ABI through cpp_shim/cbreg_nanobind.hpp; the
// Python-facing API and its docs live in cbreg/__init__.py.
#include "cbreg_nanobind.hpp"

#include <nanobind/stl/string.h>

namespace nb = nanobind;

namespace {

cbreg_registry reg() { return cbreg_default(); }

// invoke(id, *args) is a plain CPython function, not a nanobind-bound one:
// nanobind's dispatcher catches everything, which would turn CPython ending
// a daemon thread inside a callback (a forced unwind) into an abort.
PyMethodDef invoke_def[] = {
    {"invoke", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&cbreg::nb::invoke_fastcall)),
     METH_FASTCALL, "invoke(id, *args): invokes entry `id` on this thread."},
    {nullptr, nullptr, 0, nullptr},
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

    // With `wait`, the GIL stays held here: the core's wait gives it up.
    m.def("unregister", [](std::uint64_t id, bool wait) {
        auto s = static_cast<cbreg::status>(wait ? cbreg_unregister_wait(reg(), id)
                                                 : cbreg_unregister(reg(), id));
        if (s == cbreg::status::not_found) return false;
        cbreg::nb::check(s);
        return true;
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
    m.def("status_str", [](std::uint32_t s) { return std::string(cbreg_status_str(s)); });
}
