// cbreg_peer: a second extension module, built separately; like cbreg_engine
// and the cbreg package it holds its own static copy of cbreg. Entries
// registered by any of them are visible to all: one process-wide default
// registry.
#include "cbreg_nanobind.hpp"

namespace nb = nanobind;

NB_MODULE(cbreg_peer, m) {
    m.doc() = "Second module sharing cbreg's default registry.";
    cbreg::nb::install_atexit();  // a second call in the process: a no-op

    m.def("subscribe", [](nb::callable cb) { return cbreg::nb::subscribe(cb).release(); },
          nb::arg("callback"));
    m.def("invoke", [](std::uint64_t id, nb::args args) { return cbreg::nb::invoke(id, args); },
          nb::arg("id"), nb::arg("args"));
    m.def("live", [] {
        cbreg_stats s{};
        cbreg_stats_get(cbreg_default(), &s);
        return s.live;
    });
}
