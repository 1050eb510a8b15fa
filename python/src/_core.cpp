// cbreg._core: the nanobind extension behind the `cbreg` package. Thin: every
// function forwards to the C ABI through cpp_shim/cbreg_nanobind.hpp; the
// Python-facing API and its docs live in cbreg/__init__.py.
#include "cbreg_nanobind.hpp"

#include <nanobind/stl/string.h>

namespace nb = nanobind;

namespace {

cbreg_registry reg() { return cbreg_default(); }

cbreg_stats stats_of() {
    cbreg_stats s{};
    cbreg::nb::check(static_cast<cbreg::status>(cbreg_stats_get(reg(), &s)));
    return s;
}

}  // namespace

NB_MODULE(_core, m) {
    m.doc() = "Native core of the cbreg package (use the cbreg module instead).";
    cbreg::nb::install_atexit();

    m.def("register", [](nb::callable fn, bool once) {
        return cbreg::nb::subscribe(fn, once ? cbreg::once : cbreg::persistent).release();
    }, nb::arg("fn"), nb::arg("once") = false);

    m.def("invoke", [](std::uint64_t id, nb::args args) { return cbreg::nb::invoke(id, args); },
          nb::arg("id"), nb::arg("args"));

    m.def("unregister", [](std::uint64_t id) {
        auto s = static_cast<cbreg::status>(cbreg_unregister(reg(), id));
        if (s == cbreg::status::not_found) return false;
        cbreg::nb::check(s);
        return true;
    }, nb::arg("id"));

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
    m.def("atexit_clear", [] { cbreg::nb::check(static_cast<cbreg::status>(cbreg_py_atexit_clear())); });
    m.def("status_str", [](std::uint32_t s) { return std::string(cbreg_status_str(s)); });
}
