// Control extension: the callback pattern from docs/contract.md section 1, kept
// wrong on purpose. The subprocess exit-code tests run the same scenarios
// against this module and against cbreg; this one must exit non-zero, which
// proves those tests can fail. Do not "fix" anything here.
#include <nanobind/nanobind.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <unordered_map>

namespace nb = nanobind;

// The bug: a C++ static that owns Python references. Its destructor runs
// after Py_Finalize, so it decrefs objects of a dead interpreter.
static std::unordered_map<int, nb::callable> g_callbacks;

static nb::callable lookup(int id) {
    auto it = g_callbacks.find(id);
    if (it == g_callbacks.end())
        throw nb::key_error(std::to_string(id).c_str());
    return it->second;
}

// Calls in flight (fire, and the engine's calls): a careful native registry
// waits for them before it destroys what they use. Done naively, at process
// exit: with NAIVE_EXT_WAIT_AT_EXIT=S set, a static destructor (run after
// Py_Finalize, before g_callbacks' own) waits for every call to have
// returned. From CPython 3.14 a thread that takes the GIL back during
// finalization is parked for ever instead of being ended, so a call that
// was inside a callback then never returns: after S seconds the destructor
// says so and ends the process with status 3 (a bounded stand-in for the
// hang, so the control does not wait for the test runner's time limit).
static std::atomic<int> g_in_flight{0};

struct InFlight {
    InFlight() { g_in_flight.fetch_add(1); }
    ~InFlight() { g_in_flight.fetch_sub(1); }
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;
};

struct WaitForCallsAtExit {
    ~WaitForCallsAtExit() {
        const char* v = std::getenv("NAIVE_EXT_WAIT_AT_EXIT");
        if (!v || !*v) return;
        const double limit = std::atof(v);
        const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(limit);
        while (g_in_flight.load() != 0 && std::chrono::steady_clock::now() < end)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        if (int n = g_in_flight.load()) {
            std::fprintf(stderr, "naive_ext: %d calls still in flight %.1f s into the exit: "
                         "their threads never came back\n", n, limit);
            std::fflush(stderr);
            std::_Exit(3);
        }
    }
};
static WaitForCallsAtExit g_wait_for_calls_at_exit;

// The kept-thread-state pattern done naively (JNI's AttachCurrentThread,
// with the detach in a thread_local destructor): a native thread makes a
// thread state once and keeps it; the detach runs whenever the thread
// exits, here when a static destructor joins it after Py_Finalize, on a
// thread state finalization has already freed.
struct NaiveKept {
    PyThreadState* ts = nullptr;
    ~NaiveKept() {
        if (ts) {
            PyEval_RestoreThread(ts);
            PyThreadState_Clear(ts);
            PyThreadState_DeleteCurrent();
        }
    }
};
static thread_local NaiveKept t_kept;

struct NaiveJoined {
    std::thread thread;
    std::atomic<bool> stop{false};
    ~NaiveJoined() {
        stop.store(true);
        if (thread.joinable()) thread.join();
    }
};
static NaiveJoined g_naive_joined;
static PyObject* g_kept_callback = nullptr;  // leaked: not the bug under test

NB_MODULE(naive_ext, m) {
    m.doc() = "Naive callback registry (control for the exit-code tests).";

    // NAIVE_EXT_NO_LEAK_WARNINGS=1 turns nanobind's exit-time leak report
    // off, to check whether it changes the outcome.
    if (const char *v = std::getenv("NAIVE_EXT_NO_LEAK_WARNINGS"); v && *v == '1')
        nb::set_leak_warnings(false);

    m.def("register", [](int id, nb::callable cb) { g_callbacks[id] = std::move(cb); },
          nb::arg("id"), nb::arg("callback"));

    m.def("unregister", [](int id) { return g_callbacks.erase(id) != 0; }, nb::arg("id"));

    m.def("clear", [] { g_callbacks.clear(); });

    m.def("fire", [](int id, nb::args args) {
        InFlight call;
        return lookup(id)(*args);
    }, nb::arg("id"), nb::arg("args"));

    m.def("count", [] { return g_callbacks.size(); });

    // A careless audio engine: a detached native thread that fires the
    // callback `hz` times per second forever, taking the GIL for each call,
    // with no check that the interpreter is still alive. The callback gets
    // (tick, time_seconds). Only the lookup and the copy of the callable are
    // done under the GIL, so refcounts themselves never race here; what
    // fails is the exit path.
    m.def(
        "start_engine",
        [](int id, double hz) {
            using clock = std::chrono::steady_clock;
            auto period = std::chrono::duration_cast<clock::duration>(
                std::chrono::duration<double>(hz > 0 ? 1.0 / hz : 0.0));
            std::thread([id, period] {
                const auto t0 = clock::now();
                for (long long tick = 0;; ++tick) {
                    {
                        InFlight call;
                        nb::gil_scoped_acquire gil;
                        auto it = g_callbacks.find(id);
                        if (it != g_callbacks.end()) {
                            nb::callable cb = it->second;
                            double t = std::chrono::duration<double>(clock::now() - t0).count();
                            try {
                                cb(tick, t);
                            } catch (nb::python_error &e) {
                                e.discard_as_unraisable("naive_ext engine callback");
                            }
                        }
                    }
                    if (period.count() > 0)
                        std::this_thread::sleep_for(period);
                }
            }).detach();
        },
        nb::arg("id"), nb::arg("hz"));

    // A native thread that keeps a thread state (see NaiveKept), fires
    // `callback()` `hz` times per second, and is joined at process exit.
    m.def(
        "start_kept_joined_at_exit",
        [](nb::callable callback, double hz) {
            g_kept_callback = callback.inc_ref().ptr();
            PyInterpreterState* interp = PyInterpreterState_Get();
            auto period = std::chrono::duration<double>(hz > 0 ? 1.0 / hz : 0.0);
            g_naive_joined.thread = std::thread([interp, period] {
                while (!g_naive_joined.stop.load()) {
                    if (!t_kept.ts) t_kept.ts = PyThreadState_New(interp);
                    PyEval_RestoreThread(t_kept.ts);
                    PyObject* r = PyObject_CallNoArgs(g_kept_callback);
                    if (r) Py_DECREF(r); else PyErr_Clear();
                    PyEval_SaveThread();
                    std::this_thread::sleep_for(period);
                }
            });
        },
        nb::arg("callback"), nb::arg("hz"));
}
