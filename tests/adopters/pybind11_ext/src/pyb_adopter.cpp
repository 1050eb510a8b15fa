// An extension that adopts cbreg the pybind11 way: subscribe Python
// callables, fire ids from a native thread, read the registry's counters.
#include <pybind11/pybind11.h>

#include "cbreg_pybind11.hpp"

#include <string>
#include <thread>

namespace py = pybind11;

PYBIND11_MODULE(pyb_adopter, m) {
    cbreg::py::install_atexit();
    m.def("subscribe", [](py::function fn) { return cbreg::py::subscribe(fn).release(); });
    m.def("invoke", [](std::uint64_t id, py::args args) { return cbreg::py::invoke(id, args); });
    m.def("fire_on_thread", [](std::uint64_t id, double freq, std::string name) {
        std::uint32_t status = 0;
        py::gil_scoped_release unlocked;
        std::thread([&] {
            cbreg_value args[2] = {cbreg::value::f64(freq), cbreg::value::str(name)};
            status = cbreg_invoke(cbreg_default(), id, args, 2, nullptr);
        }).join();
        return status;
    });
    m.def("unregister", [](std::uint64_t id) { return cbreg_unregister(cbreg_default(), id) == CBREG_STATUS_OK; });
    m.def("live", [] {
        cbreg_stats s{};
        cbreg::py::check(static_cast<cbreg::status>(cbreg_stats_get(cbreg_default(), &s)));
        return s.live;
    });
}
