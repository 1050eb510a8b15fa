// An extension that adopts cbreg the nanobind way: subscribe Python
// callables, fire ids from a native thread, read the registry's counters.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include "cbreg_nanobind.hpp"

#include <string>
#include <thread>

namespace nb = nanobind;

NB_MODULE(nb_adopter, m) {
    cbreg::nb::install_atexit();
    m.def("subscribe", [](nb::callable fn) { return cbreg::nb::subscribe(fn).release(); });
    m.def("invoke", [](std::uint64_t id, nb::args args) { return cbreg::nb::invoke(id, args); });
    m.def("fire_on_thread", [](std::uint64_t id, double freq, std::string name) {
        std::uint32_t status = 0;
        nb::gil_scoped_release unlocked;
        std::thread([&] {
            cbreg_value args[2] = {cbreg::value::f64(freq), cbreg::value::str(name)};
            status = cbreg_invoke(cbreg_default(), id, args, 2, nullptr);
        }).join();
        return status;
    });
    m.def("unregister", [](std::uint64_t id) { return cbreg_unregister(cbreg_default(), id) == CBREG_STATUS_OK; });
    m.def("live", [] {
        cbreg_stats s{};
        cbreg::nb::check(static_cast<cbreg::status>(cbreg_stats_get(cbreg_default(), &s)));
        return s.live;
    });
}
