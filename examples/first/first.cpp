#include <cstdio>
#include "cbreg.hpp"

int main() {
    cbreg::registry reg;   // a registry of its own, freed at the end of scope
    auto sub = reg.subscribe([](cbreg::args a) {
        std::string_view name = a.get<std::string_view>(1);
        std::printf("%.1f Hz %.*s\n", a.get<double>(0), (int)name.size(), name.data());
    });
    cbreg::status s = reg.invoke(sub.id(), 440.0, "A4");   // from any thread
    cbreg::site site = reg.site(sub.id());                 // resolved once, for a hot loop
    site(880.0, "A5");
    return s == cbreg::status::ok ? 0 : 1;
}   // `sub` unregisters first, then `reg` is freed
