// cbreg_engine: a native test "audio engine" built outside the cbreg package
// against its libcbreg.so. Its threads call cbreg_invoke on the default
// registry and never touch Python themselves; cbreg decides whether and how
// Python is entered. It also offers the naive_ext API (register, fire,
// start_engine, ...) over cbreg, so the exit-time scenarios that crash the
// naive control run unchanged against cbreg.
#include "cbreg_nanobind.hpp"

#include <nanobind/stl/string.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

namespace nb = nanobind;
using clock_type = std::chrono::steady_clock;

namespace {

// Plain atomics only: nothing here owns a Python object, so nothing can
// outlive the interpreter.
std::array<std::atomic<std::uint64_t>, 256> g_ids{};  // naive_ext id -> cbreg id
std::atomic<bool> g_stop{false};
std::atomic<int> g_running{0};
std::atomic<std::uint64_t> g_fired{0}, g_ok{0}, g_closed{0}, g_not_found{0}, g_failed{0};
std::atomic<std::uint64_t> g_native_calls{0};  // calls of the native counter entries

// A native entry: counts its calls, owns nothing.
std::uint32_t count_native(void*, const cbreg_value*, std::size_t, cbreg_value*) {
    g_native_calls.fetch_add(1, std::memory_order_relaxed);
    return CBREG_STATUS_OK;
}

cbreg_registry registry_of(std::uint64_t handle) { return cbreg_registry{handle}; }

std::uint32_t python_flags(bool once, bool unraisable) {
    return (once ? cbreg::once : cbreg::persistent) | (unraisable ? cbreg::nb::unraisable : 0);
}

cbreg_registry reg() { return cbreg_default(); }

std::atomic<std::uint64_t>& slot(int id) {
    if (id < 0 || id >= static_cast<int>(g_ids.size())) throw nb::index_error("id must be in [0, 256)");
    return g_ids[static_cast<std::size_t>(id)];
}

void count(cbreg_status s) {
    g_fired.fetch_add(1, std::memory_order_relaxed);
    switch (s) {
        case CBREG_STATUS_OK: g_ok.fetch_add(1, std::memory_order_relaxed); break;
        case CBREG_STATUS_CLOSED: g_closed.fetch_add(1, std::memory_order_relaxed); break;
        case CBREG_STATUS_NOT_FOUND: g_not_found.fetch_add(1, std::memory_order_relaxed); break;
        default: g_failed.fetch_add(1, std::memory_order_relaxed); break;
    }
}

clock_type::duration period_of(double hz) {
    return std::chrono::duration_cast<clock_type::duration>(
        std::chrono::duration<double>(hz > 0 ? 1.0 / hz : 0.0));
}

// One engine thread: fires `args_of(tick, t)` at `hz` (0: flat out) until
// stop(), or forever if left running at exit. `id_of()` is re-read per tick.
template <class IdOf, class Fire>
void spawn(IdOf id_of, double hz, Fire fire) {
    auto period = period_of(hz);
    g_running.fetch_add(1);
    std::thread([=] {
        const auto t0 = clock_type::now();
        for (std::int64_t tick = 0; !g_stop.load(std::memory_order_relaxed); ++tick) {
            double t = std::chrono::duration<double>(clock_type::now() - t0).count();
            count(fire(id_of(), tick, t));
            if (period.count() > 0) std::this_thread::sleep_for(period);
        }
        g_running.fetch_sub(1);
    }).detach();
}

// A native thread that fires, then parks holding whatever cbreg kept for
// it, and fires again or exits on demand (the kept-thread-state tests).
struct Parked {
    std::atomic<int> phase{0};  // 0 none, 1 firing, 2 parked, 3 exited
    std::atomic<int> command{0};  // 0 wait, 1 fire once more, 2 exit
    std::atomic<std::uint32_t> last{0};
    std::atomic<std::uint64_t> other{0};  // park_fire's id, if not the parked one
    // Joined by park_exit(wait=True), so its thread-exit work is done too.
    // Never destroyed: a thread left parked at exit (or one that exists only
    // in the parent of a forked child) is simply left.
    std::thread* thread = nullptr;
};

Parked g_parked;

void end_parked(bool wait) {
    if (!g_parked.thread) return;
    if (wait) g_parked.thread->join();
    else g_parked.thread->detach();
    delete g_parked.thread;
    g_parked.thread = nullptr;
}

// A native thread owned by a static object: its destructor (after the
// interpreter has finalized) stops it and joins it, so the thread exits,
// with whatever cbreg kept for it, when Python is long gone.
struct JoinedAtExit {
    std::thread thread;
    std::atomic<bool> stop{false};
    ~JoinedAtExit() {
        stop.store(true);
        if (thread.joinable()) thread.join();
    }
};
JoinedAtExit g_joined;
std::atomic<std::uint64_t> g_joined_fired{0};

// A wait that native code makes at process exit, after the interpreter has
// finalized (a C++ static destructor; a C atexit handler runs at the same
// point): `cbreg_unregister_wait` of an entry, or `cbreg_registry_free` of
// a registry, while a thread may still be inside an invocation of it.
// Prints what it returned, how long it took, and the leaked count of the
// default registry (a registry freed has none left to read).
struct WaitAtExit {
    std::atomic<int> kind{0};  // 0 none, 1 unregister_wait, 2 registry_free
    std::uint64_t handle = 0, id = 0;
    ~WaitAtExit() {
        const int k = kind.load();
        if (k == 0) return;
        const auto t0 = clock_type::now();
        const cbreg_registry r = handle ? registry_of(handle) : reg();
        const cbreg_status s = k == 1 ? cbreg_unregister_wait(r, id) : cbreg_registry_free(r);
        const double took = std::chrono::duration<double>(clock_type::now() - t0).count();
        cbreg_stats st{};
        (void)cbreg_stats_get(reg(), &st);
        std::printf("wait_at_exit: %s -> %s after %.3f s, default registry leaked %llu\n",
                    k == 1 ? "unregister_wait" : "registry_free", cbreg_status_str(s), took,
                    static_cast<unsigned long long>(st.leaked));
        std::fflush(stdout);
    }
};
WaitAtExit g_wait_at_exit;

}  // namespace

NB_MODULE(cbreg_engine, m) {
    m.doc() = "Native test engine over cbreg's default registry.";
    cbreg::nb::install_atexit();

    // ---- the engine proper: cbreg ids ----
    m.def("subscribe", [](nb::callable cb, bool once, bool unraisable) {
        return cbreg::nb::subscribe(cb, python_flags(once, unraisable)).release();
    }, nb::arg("callback"), nb::arg("once") = false, nb::arg("unraisable") = false,
       "Registers through this module's own link to libcbreg.so; returns the cbreg id.");

    m.def("subscribe_native", [] {
        std::uint64_t id = 0;
        cbreg::nb::check(static_cast<cbreg::status>(
            cbreg_register(reg(), count_native, nullptr, nullptr, 0, &id)));
        return id;
    }, "Registers a native entry (a C++ counter) in the default registry; returns its id.");

    m.def("new_registry", [] {
        cbreg_registry h{0};
        cbreg::nb::check(static_cast<cbreg::status>(cbreg_registry_new(&h)));
        return h.handle;
    }, "Creates a registry of its own (never freed); returns its handle.");

    m.def("subscribe_native_in", [](std::uint64_t handle) {
        std::uint64_t id = 0;
        cbreg::nb::check(static_cast<cbreg::status>(
            cbreg_register(registry_of(handle), count_native, nullptr, nullptr, 0, &id)));
        return id;
    }, nb::arg("handle"), "A native counter entry in registry `handle`.");

    m.def("subscribe_in", [](std::uint64_t handle, nb::callable cb) {
        return cbreg::nb::subscribe(cb, cbreg::persistent, registry_of(handle)).release();
    }, nb::arg("handle"), nb::arg("callback"), "Registers a Python callable in registry `handle`.");

    m.def("native_calls", [] { return g_native_calls.load(); });

    m.def("fire_in_on_thread", [](std::uint64_t handle, std::uint64_t id) {
        cbreg_status s = CBREG_STATUS_OK;
        nb::gil_scoped_release unlocked;
        std::thread([&] { s = cbreg_invoke(registry_of(handle), id, nullptr, 0, nullptr); }).join();
        return static_cast<std::uint32_t>(s);
    }, nb::arg("handle"), nb::arg("id"), "Invokes `id` of registry `handle` from a fresh native thread.");

    m.def("unregister_wait", [](std::uint64_t id) {
        // The GIL stays held, as in any bound method that does not release it.
        return static_cast<std::uint32_t>(cbreg_unregister_wait(reg(), id));
    }, nb::arg("id"), "cbreg_unregister_wait called with the GIL held; returns the status.");

    m.def("run_sync", [](std::uint64_t id, int n) {
        // An engine's run(): fires on this thread, GIL held. A Python
        // exception left pending with CALLBACK_FAILED is re-raised.
        nb::list statuses;
        for (int i = 0; i < n; ++i) {
            const cbreg_value arg = cbreg::value::i64(i);
            cbreg_status s = cbreg_invoke(reg(), id, &arg, 1, nullptr);
            if (s == CBREG_STATUS_CALLBACK_FAILED && PyErr_Occurred()) throw nb::python_error();
            statuses.append(static_cast<std::uint32_t>(s));
        }
        return nb::make_tuple(statuses, PyErr_Occurred() != nullptr);
    }, nb::arg("id"), nb::arg("n") = 1,
       "Fires `id` n times on this thread with the GIL held; returns (statuses, exception_pending).");

    m.def("start", [](std::uint64_t id, double hz) {
        g_stop.store(false);
        spawn([id] { return id; }, hz, [](std::uint64_t id, std::int64_t tick, double) {
            static const char note[] = "A4";
            const cbreg_value args[3] = {cbreg::value::i64(tick), cbreg::value::f64(440.0),
                                         cbreg::value::str(note)};
            return cbreg_invoke(reg(), id, args, 3, nullptr);
        });
    }, nb::arg("id"), nb::arg("hz") = 0.0,
       "Starts a native thread firing cbreg entry `id` with (tick, 440.0, 'A4').");

    m.def("start_shim", [](std::uint64_t id, double hz) {
        g_stop.store(false);
        spawn([id] { return id; }, hz, [](std::uint64_t id, std::int64_t tick, double) {
            return static_cast<cbreg_status>(
                cbreg::registry::global().invoke(id, tick, 440.0, std::string_view("A4")));
        });
    }, nb::arg("id"), nb::arg("hz") = 0.0,
       "As start, firing through the C++ shim's cbreg::registry::invoke.");

    m.def("stop", [] {
        g_stop.store(true);
        nb::gil_scoped_release unlocked;
        while (g_running.load() != 0) std::this_thread::sleep_for(std::chrono::microseconds(100));
    }, "Stops every engine thread and waits for them.");

    m.def("engine_stats", [] {
        nb::dict d;
        d["fired"] = g_fired.load();
        d["ok"] = g_ok.load();
        d["closed"] = g_closed.load();
        d["not_found"] = g_not_found.load();
        d["failed"] = g_failed.load();
        d["running"] = g_running.load();
        return d;
    });

    m.def("fire_on_thread", [](std::uint64_t id, nb::args args) {
        cbreg::nb::arg_pack pack(args);
        cbreg_status s = CBREG_STATUS_OK;
        nb::gil_scoped_release unlocked;
        std::thread([&] { s = cbreg_invoke(reg(), id, pack.data(), pack.size(), nullptr); }).join();
        return static_cast<std::uint32_t>(s);
    }, nb::arg("id"), nb::arg("args"),
       "Invokes `id` once from a fresh native thread; returns the raw status code.");

    m.def("fire_raw_str", [](std::uint64_t id, nb::bytes raw) {
        cbreg_value v = cbreg::value::none();
        v.tag = CBREG_TAG_STR;  // whatever bytes, claimed to be UTF-8
        v.len = raw.size();
        v.as.str = reinterpret_cast<const std::uint8_t*>(raw.c_str());
        const auto status = static_cast<std::uint32_t>(cbreg_invoke(reg(), id, &v, 1, nullptr));
        return nb::make_tuple(status, cbreg_last_callback_code());
    }, nb::arg("id"), nb::arg("raw"),
       "Invokes `id` with a STR argument holding `raw`; returns (status, the "
       "callback's own code).");

    // ---- kept thread states ----
    m.def("fire_n_on_thread", [](std::uint64_t id, int n) {
        std::uint64_t ok = 0;
        nb::gil_scoped_release unlocked;
        std::thread([&] {
            for (int i = 0; i < n; ++i) {
                const cbreg_value arg = cbreg::value::i64(i);
                ok += cbreg_invoke(reg(), id, &arg, 1, nullptr) == CBREG_STATUS_OK;
            }
        }).join();
        return ok;
    }, nb::arg("id"), nb::arg("n"),
       "A fresh native thread fires `id` n times with (i,), then exits; returns how many were OK.");

    m.def("park", [](std::uint64_t id, int n) {
        if (g_parked.phase.load() == 1 || g_parked.phase.load() == 2)
            throw nb::value_error("a parked thread is already running");
        end_parked(true);  // one that exited (phase 3): joined at once
        g_parked.command.store(0);
        g_parked.phase.store(1);
        g_parked.thread = new std::thread([id, n] {
            auto fire = [id](std::int64_t i) {
                const cbreg_value arg = cbreg::value::i64(i);
                g_parked.last.store(static_cast<std::uint32_t>(cbreg_invoke(reg(), id, &arg, 1, nullptr)));
            };
            for (int i = 0; i < n; ++i) fire(i);
            g_parked.phase.store(2);
            for (;;) {
                int c = g_parked.command.exchange(0);
                if (c == 1) {
                    const std::uint64_t other = g_parked.other.exchange(0);
                    const cbreg_value arg = cbreg::value::i64(-1);
                    g_parked.last.store(static_cast<std::uint32_t>(
                        cbreg_invoke(reg(), other ? other : id, &arg, 1, nullptr)));
                    g_parked.phase.store(2);
                } else if (c == 2) {
                    break;
                }
                std::this_thread::sleep_for(std::chrono::microseconds(200));
            }
            g_parked.phase.store(3);
        });
    }, nb::arg("id"), nb::arg("n"),
       "Starts a native thread that fires `id` n times, then parks (see park_fire, park_exit).");

    m.def("park_wait", [] {
        nb::gil_scoped_release unlocked;
        while (g_parked.phase.load() == 1) std::this_thread::sleep_for(std::chrono::microseconds(100));
        return g_parked.last.load();
    }, "Waits until the parked thread has parked; returns its last status.");

    m.def("park_fire", [](std::uint64_t other) {
        nb::gil_scoped_release unlocked;
        g_parked.other.store(other);
        g_parked.phase.store(1);
        g_parked.command.store(1);
        while (g_parked.phase.load() == 1) std::this_thread::sleep_for(std::chrono::microseconds(100));
        return g_parked.last.load();
    }, nb::arg("other") = 0,
       "Has the parked thread fire once more with (-1,), its own id or `other`; returns the status.");

    m.def("park_exit", [](bool wait) {
        g_parked.command.store(2);
        // Joined, not just seen to leave its loop: what the thread does as
        // it exits (cbreg gives its kept thread state back, taking the GIL)
        // is done when this returns.
        nb::gil_scoped_release unlocked;
        end_parked(wait);
    }, nb::arg("wait") = true, "Ends the parked thread (waits for it to have exited).");

    m.def("ensure_between_calls_on_thread", [](std::uint64_t id) {
        // A fresh native thread: fires, then takes the GIL itself the way
        // other code on the thread would (PyGILState_Ensure), then fires
        // again. Returns (a PyGILState state exists after the first call,
        // Ensure used that very state, it is still the thread's after the
        // second call, statuses OK).
        bool bound = false, same_during = false, same_after = false, ok = true;
        {
        nb::gil_scoped_release unlocked;
        std::thread([&] {
            const cbreg_value arg = cbreg::value::i64(0);
            ok &= cbreg_invoke(reg(), id, &arg, 1, nullptr) == CBREG_STATUS_OK;
            PyThreadState* kept = PyGILState_GetThisThreadState();
            bound = kept != nullptr;
            PyGILState_STATE g = PyGILState_Ensure();
            same_during = PyThreadState_Get() == kept;
            PyObject* r = PyObject_CallNoArgs(reinterpret_cast<PyObject*>(&PyLong_Type));
            Py_XDECREF(r);
            PyGILState_Release(g);
            ok &= cbreg_invoke(reg(), id, &arg, 1, nullptr) == CBREG_STATUS_OK;
            same_after = PyGILState_GetThisThreadState() == kept;
        }).join();
        }
        return nb::make_tuple(bound, same_during, same_after, ok);
    }, nb::arg("id"));

    m.def("fire_inside_ensure_on_thread", [](std::uint64_t id) {
        // A fresh native thread: fires (cbreg keeps a state for it), takes
        // the GIL itself with PyGILState_Ensure (the kept state) and fires
        // while holding it, gives it back and fires again. Returns (statuses
        // OK, the call inside Ensure ran on that same state, no exception
        // left set there).
        bool ok = true, same = false, clean = false;
        {
        nb::gil_scoped_release unlocked;
        std::thread([&] {
            const cbreg_value arg = cbreg::value::i64(0);
            ok &= cbreg_invoke(reg(), id, &arg, 1, nullptr) == CBREG_STATUS_OK;
            PyGILState_STATE g = PyGILState_Ensure();
            PyThreadState* held = PyThreadState_Get();
            ok &= cbreg_invoke(reg(), id, &arg, 1, nullptr) == CBREG_STATUS_OK;
            same = PyThreadState_Get() == held && PyGILState_GetThisThreadState() == held;
            clean = PyErr_Occurred() == nullptr;
            PyGILState_Release(g);
            ok &= cbreg_invoke(reg(), id, &arg, 1, nullptr) == CBREG_STATUS_OK;
        }).join();
        }
        return nb::make_tuple(ok, same, clean);
    }, nb::arg("id"));

    m.def("states_while_holding_gil", [](std::int64_t interp_id, double ms) {
        // Holds the GIL for `ms` milliseconds without ever giving it up,
        // counting interpreter `interp_id`'s thread states every 50 us;
        // returns the most it saw. A thread that makes a state there only
        // while holding the GIL cannot add one during the hold.
        PyInterpreterState* interp = nullptr;
        for (auto* i = PyInterpreterState_Head(); i; i = PyInterpreterState_Next(i))
            if (PyInterpreterState_GetID(i) == interp_id) interp = i;
        if (!interp) throw nb::value_error("no such interpreter");
        std::size_t most = 0;
        const auto end = clock_type::now() + std::chrono::duration<double, std::milli>(ms);
        while (clock_type::now() < end) {
            std::size_t n = 0;
            for (auto* t = PyInterpreterState_ThreadHead(interp); t; t = PyThreadState_Next(t)) ++n;
            most = std::max(most, n);
            std::this_thread::sleep_for(std::chrono::microseconds(50));
        }
        return most;
    }, nb::arg("interp_id"), nb::arg("ms"));

    m.def("gilstate_roundtrip", [] {
        // Called from a callback (GIL held): PyGILState_Ensure/Release as
        // an extension would; returns whether the thread state stayed.
        PyThreadState* before = PyThreadState_Get();
        PyGILState_STATE g = PyGILState_Ensure();
        bool same = PyThreadState_Get() == before;
        PyGILState_Release(g);
        return same && PyThreadState_Get() == before;
    });

    m.def("start_joined_at_exit", [](std::uint64_t id, double hz) {
        if (g_joined.thread.joinable()) throw nb::value_error("already started");
        auto period = period_of(hz);
        g_joined.thread = std::thread([id, period] {
            for (std::int64_t tick = 0; !g_joined.stop.load(); ++tick) {
                const cbreg_value arg = cbreg::value::i64(tick);
                (void)cbreg_invoke(reg(), id, &arg, 1, nullptr);
                g_joined_fired.fetch_add(1);
                if (period.count() > 0) std::this_thread::sleep_for(period);
            }
        });
    }, nb::arg("id"), nb::arg("hz") = 0.0,
       "Starts a native thread firing `id` that a static destructor stops and joins at process exit.");

    m.def("joined_fired", [] { return g_joined_fired.load(); });

    m.def("start_in", [](std::uint64_t handle, std::uint64_t id, double hz) {
        g_stop.store(false);
        spawn([id] { return id; }, hz, [handle](std::uint64_t id, std::int64_t tick, double) {
            const cbreg_value arg = cbreg::value::i64(tick);
            return cbreg_invoke(registry_of(handle), id, &arg, 1, nullptr);
        });
    }, nb::arg("handle"), nb::arg("id"), nb::arg("hz") = 0.0,
       "Starts a native thread firing entry `id` of registry `handle` with (tick,).");

    m.def("wait_at_exit", [](const std::string& kind, std::uint64_t handle, std::uint64_t id) {
        if (kind != "unregister_wait" && kind != "registry_free")
            throw nb::value_error("unregister_wait or registry_free");
        g_wait_at_exit.handle = handle;
        g_wait_at_exit.id = id;
        g_wait_at_exit.kind.store(kind == "unregister_wait" ? 1 : 2);
    }, nb::arg("kind"), nb::arg("handle"), nb::arg("id") = 0,
       "At process exit, after finalization, a static destructor calls "
       "cbreg_unregister_wait(handle, id) or cbreg_registry_free(handle) (handle 0: the "
       "default registry) and prints the outcome.");

    m.def("park_exit_holding_gil", [] {
        // The parked thread is told to exit and joined with the GIL held,
        // as a bound method that does not release it (or an engine's
        // destructor run by `del engine`) would.
        g_parked.command.store(2);
        end_parked(true);
    }, "Ends the parked thread and joins it without releasing the GIL.");

    // ---- the naive_ext API, over cbreg ----
    m.def("register", [](int id, nb::callable cb) {
        std::uint64_t fresh = cbreg::nb::subscribe(cb).release();
        std::uint64_t old = slot(id).exchange(fresh);
        if (old) (void)cbreg_unregister(reg(), old);
    }, nb::arg("id"), nb::arg("callback"));

    m.def("unregister", [](int id) {
        std::uint64_t old = slot(id).exchange(0);
        return old != 0 && cbreg_unregister(reg(), old) == CBREG_STATUS_OK;
    }, nb::arg("id"));

    m.def("clear", [] {
        for (auto& s : g_ids)
            if (std::uint64_t old = s.exchange(0)) (void)cbreg_unregister(reg(), old);
    });

    m.def("count", [] {
        std::size_t n = 0;
        for (auto& s : g_ids) n += s.load() != 0;
        return n;
    });

    m.def("fire", [](int id, nb::args args) { return cbreg::nb::invoke(slot(id).load(), args); },
          nb::arg("id"), nb::arg("args"));

    m.def("start_engine", [](int id, double hz) {
        g_stop.store(false);
        std::atomic<std::uint64_t>* s = &slot(id);
        spawn([s] { return s->load(std::memory_order_relaxed); }, hz,
              [](std::uint64_t cid, std::int64_t tick, double t) {
                  const cbreg_value args[2] = {cbreg::value::i64(tick), cbreg::value::f64(t)};
                  return cbreg_invoke(reg(), cid, args, 2, nullptr);
              });
    }, nb::arg("id"), nb::arg("hz"),
       "naive_ext.start_engine over cbreg: fires (tick, t) forever from a native thread.");
}
