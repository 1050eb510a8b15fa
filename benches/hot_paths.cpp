// The hot paths of cbreg through C and C++, beside the peers a C or C++
// codebase would use instead, all with one callback and one argument.
//
//   hot_paths rows [CALLS [GROUP]]   run every row once (CALLS operations)
//                                    after printing what each row is; this is
//                                    the mode callgrind counts
//                                    (benches/callgrind_rows.py)
//   hot_paths ns [CALLS [THREADS]]   time every row, best of several rounds,
//                                    and print JSON rows (benches/report.py);
//                                    the invoke rows also on THREADS threads
//                                    at once (at most the cores)
//
// A row is a `run_<row>` function that never inlines, so callgrind's
// inclusive count of it is the row's whole cost, loop included, and one line
// in `rows()`. Every invoke row calls the same callback (a volatile read and
// a return) with the same f64 argument, in a structure holding the same
// number of other entries.

#include "cbreg.h"
#include "cbreg.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

// noipa (GCC): no inlining, cloning or folding of identical bodies, so each
// row keeps a symbol of its own.
#if defined(__GNUC__) && !defined(__clang__)
#define ROW __attribute__((noipa))
#else
#define ROW __attribute__((noinline))
#endif

namespace {

constexpr long kDefaultCalls = 1000000;
constexpr long kClearEntries = 1000000;
constexpr int kRounds = 9;
constexpr int kThreadRounds = 5;
// Other entries in every structure, so that no lookup hits a one-entry table.
constexpr int kNeighbours = 63;

int callback_flag = 1;

// The callback of every row: a few instructions the compiler cannot drop.
uint32_t tiny_callback(void* ctx, const cbreg_value*, size_t, cbreg_value*) {
    return *static_cast<volatile int*>(ctx) ? CBREG_STATUS_OK : CBREG_STATUS_OK;
}

// What a C++ codebase writes without cbreg: a mutex around a map from id to
// function pointer and context.
class MutexMap {
public:
    uint64_t add(cbreg_call_fn fn, void* ctx) {
        std::lock_guard<std::mutex> lock(mu_);
        uint64_t id = next_id_++;
        entries_.emplace(id, Entry{fn, ctx});
        return id;
    }
    bool remove(uint64_t id) {
        std::lock_guard<std::mutex> lock(mu_);
        return entries_.erase(id) != 0;
    }
    void clear() {
        std::lock_guard<std::mutex> lock(mu_);
        entries_.clear();
    }
    // Safe against a concurrent remove; a callback that touches the map
    // deadlocks.
    uint32_t invoke_under_lock(uint64_t id, const cbreg_value* args, size_t n, cbreg_value* ret) {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = entries_.find(id);
        if (it == entries_.end()) return CBREG_STATUS_NOT_FOUND;
        return it->second.fn(it->second.ctx, args, n, ret);
    }
    // Callbacks may touch the map; a concurrent remove may free the context
    // while the call runs.
    uint32_t invoke_copy_out(uint64_t id, const cbreg_value* args, size_t n, cbreg_value* ret) {
        Entry e;
        {
            std::lock_guard<std::mutex> lock(mu_);
            auto it = entries_.find(id);
            if (it == entries_.end()) return CBREG_STATUS_NOT_FOUND;
            e = it->second;
        }
        return e.fn(e.ctx, args, n, ret);
    }

private:
    struct Entry {
        cbreg_call_fn fn;
        void* ctx;
    };
    std::mutex mu_;
    std::unordered_map<uint64_t, Entry> entries_;
    uint64_t next_id_ = 1;
};

// Another thread that has invoked (so it holds a hazard record) and stays
// alive, idle, until stopped.
class IdleInvoker {
public:
    void start(cbreg_registry reg, uint64_t id) {
        thread_ = std::thread([this, reg, id] {
            cbreg_value arg = cbreg::value::f64(440.0);
            (void)cbreg_invoke(reg, id, &arg, 1, nullptr);
            std::unique_lock<std::mutex> lock(mu_);
            ready_ = true;
            cv_.notify_all();
            cv_.wait(lock, [this] { return stop_; });
        });
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return ready_; });
    }
    void stop() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        thread_.join();
        ready_ = stop_ = false;
    }

private:
    std::thread thread_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool ready_ = false;
    bool stop_ = false;
};

struct Fixture {
    cbreg_value arg = cbreg::value::f64(440.0);
    double x = 440.0;
    void* ctx = &callback_flag;
    cbreg_call_fn direct_fn = tiny_callback;

    cbreg::registry reg;  // the invoke rows' registry
    uint64_t id = 0;
    cbreg_site site{};
    MutexMap map;
    uint64_t map_id = 0;

    cbreg::registry churn;  // register + unregister; the idle invoker's
    uint64_t churn_id = 0;
    IdleInvoker invoker;
    MutexMap churn_map;

    cbreg_registry big{0};  // clear of a million entries
    MutexMap big_map;
};

// ---- invoke rows ----

ROW void run_direct(Fixture& fx, long n) {
    cbreg_call_fn volatile f = fx.direct_fn;  // reloaded every call
    void* ctx = fx.ctx;
    const cbreg_value* arg = &fx.arg;
    for (long i = 0; i < n; i++) f(ctx, arg, 1, nullptr);
}

ROW void run_cpp_mutex_map_under_lock(Fixture& fx, long n) {
    MutexMap& map = fx.map;
    uint64_t id = fx.map_id;
    const cbreg_value* arg = &fx.arg;
    for (long i = 0; i < n; i++) map.invoke_under_lock(id, arg, 1, nullptr);
}

ROW void run_cpp_mutex_map_copy_out(Fixture& fx, long n) {
    MutexMap& map = fx.map;
    uint64_t id = fx.map_id;
    const cbreg_value* arg = &fx.arg;
    for (long i = 0; i < n; i++) map.invoke_copy_out(id, arg, 1, nullptr);
}

ROW void run_cbreg_site(Fixture& fx, long n) {
    const cbreg_site* site = &fx.site;
    const cbreg_value* arg = &fx.arg;
    for (long i = 0; i < n; i++) cbreg_site_invoke(site, arg, 1, nullptr);
}

ROW void run_cbreg_c_abi(Fixture& fx, long n) {
    cbreg_registry reg = fx.reg.handle();
    uint64_t id = fx.id;
    const cbreg_value* arg = &fx.arg;
    for (long i = 0; i < n; i++) cbreg_invoke(reg, id, arg, 1, nullptr);
}

ROW void run_cbreg_cpp_shim(Fixture& fx, long n) {
    const cbreg::registry& reg = fx.reg;
    uint64_t id = fx.id;
    double x = fx.x;
    for (long i = 0; i < n; i++) (void)reg.invoke(id, x);
}

// ---- writer rows ----

ROW void run_cpp_mutex_map_insert_erase(Fixture& fx, long n) {
    MutexMap& map = fx.churn_map;
    for (long i = 0; i < n; i++) map.remove(map.add(tiny_callback, fx.ctx));
}

inline void register_unregister(cbreg_registry reg, void* ctx, long n) {
    for (long i = 0; i < n; i++) {
        uint64_t id = 0;
        cbreg_register(reg, tiny_callback, ctx, nullptr, 0, &id);
        cbreg_unregister(reg, id);
    }
}

ROW void run_cbreg_register_unregister(Fixture& fx, long n) {
    register_unregister(fx.churn.handle(), fx.ctx, n);
}

ROW void run_cbreg_register_unregister_invoker_alive(Fixture& fx, long n) {
    register_unregister(fx.churn.handle(), fx.ctx, n);
}

ROW void run_cbreg_clear_1m(Fixture& fx, long) {
    size_t cleared = 0;
    cbreg_clear(fx.big, &cleared);
    if (cleared != static_cast<size_t>(kClearEntries)) std::abort();
}

ROW void run_cpp_mutex_map_clear_1m(Fixture& fx, long) { fx.big_map.clear(); }

// ---- the row table ----

// How a row's time is reported: per operation, operations per second, or
// the whole run in milliseconds.
enum class Timing { ns_per_op, pairs_per_s, ms };

struct Row {
    const char* group;
    const char* name;  // the function is run_<name>
    void (*run)(Fixture&, long);
    Timing timing;
    bool fixed_ops;  // runs kClearEntries operations whatever CALLS says
    void (*before)(Fixture&) = nullptr;
    void (*after)(Fixture&) = nullptr;
};

void fill_big(Fixture& fx) {
    if (cbreg_registry_new(&fx.big)) std::abort();
    for (long i = 0; i < kClearEntries; i++) {
        uint64_t id = 0;
        if (cbreg_register(fx.big, tiny_callback, fx.ctx, nullptr, 0, &id)) std::abort();
    }
}
void free_big(Fixture& fx) { cbreg_registry_free(fx.big); }
void fill_big_map(Fixture& fx) {
    for (long i = 0; i < kClearEntries; i++) fx.big_map.add(tiny_callback, fx.ctx);
}
void start_invoker(Fixture& fx) { fx.invoker.start(fx.churn.handle(), fx.churn_id); }
void stop_invoker(Fixture& fx) { fx.invoker.stop(); }

const std::vector<Row>& rows() {
    static const std::vector<Row> table = {
        {"invoke", "direct", run_direct, Timing::ns_per_op, false},
        {"invoke", "cpp_mutex_map_under_lock", run_cpp_mutex_map_under_lock, Timing::ns_per_op, false},
        {"invoke", "cpp_mutex_map_copy_out", run_cpp_mutex_map_copy_out, Timing::ns_per_op, false},
        {"invoke", "cbreg_c_abi", run_cbreg_c_abi, Timing::ns_per_op, false},
        {"invoke", "cbreg_site", run_cbreg_site, Timing::ns_per_op, false},
        {"invoke", "cbreg_cpp_shim", run_cbreg_cpp_shim, Timing::ns_per_op, false},
        {"writers", "cpp_mutex_map_insert_erase", run_cpp_mutex_map_insert_erase, Timing::pairs_per_s, false},
        {"writers", "cbreg_register_unregister", run_cbreg_register_unregister, Timing::pairs_per_s, false},
        {"writers", "cbreg_register_unregister_invoker_alive", run_cbreg_register_unregister_invoker_alive,
         Timing::pairs_per_s, false, start_invoker, stop_invoker},
        {"writers", "cpp_mutex_map_clear_1m", run_cpp_mutex_map_clear_1m, Timing::ms, true, fill_big_map},
        {"writers", "cbreg_clear_1m", run_cbreg_clear_1m, Timing::ms, true, fill_big, free_big},
    };
    return table;
}

void setup(Fixture& fx) {
    for (int i = 0; i < kNeighbours; i++) {
        (void)fx.reg.subscribe_raw(tiny_callback, fx.ctx, nullptr).release();
        (void)fx.map.add(tiny_callback, fx.ctx);
    }
    fx.id = fx.reg.subscribe_raw(tiny_callback, fx.ctx, nullptr).release();
    if (cbreg_site_resolve(fx.reg.handle(), fx.id, &fx.site)) std::abort();
    fx.map_id = fx.map.add(tiny_callback, fx.ctx);
    for (int i = 0; i < kNeighbours; i++) {
        (void)fx.reg.subscribe_raw(tiny_callback, fx.ctx, nullptr).release();
        (void)fx.map.add(tiny_callback, fx.ctx);
    }
    fx.churn_id = fx.churn.subscribe_raw(tiny_callback, fx.ctx, nullptr).release();
    // This thread's hazard record is claimed here, not inside a row.
    if (cbreg_invoke(fx.reg.handle(), fx.id, &fx.arg, 1, nullptr)) std::abort();
    if (cbreg_invoke(fx.churn.handle(), fx.churn_id, &fx.arg, 1, nullptr)) std::abort();
}

long ops_of(const Row& row, long calls) { return row.fixed_ops ? kClearEntries : calls; }

double seconds_of(Fixture& fx, const Row& row, long ops) {
    if (row.before) row.before(fx);
    auto t0 = std::chrono::steady_clock::now();
    row.run(fx, ops);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (row.after) row.after(fx);
    return s;
}

// Seconds for `ops` operations on each of `threads` threads started
// together: the slowest thread's.
double seconds_on_threads(Fixture& fx, const Row& row, long ops, int threads) {
    std::atomic<int> arrived{0};
    std::vector<double> elapsed(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; t++) {
        pool.emplace_back([&, t] {
            row.run(fx, 1000);  // warm up; claims this thread's hazard record
            arrived.fetch_add(1);
            while (arrived.load() < threads) std::this_thread::yield();
            auto t0 = std::chrono::steady_clock::now();
            row.run(fx, ops);
            elapsed[t] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        });
    }
    for (auto& th : pool) th.join();
    double worst = 0;
    for (double e : elapsed) worst = e > worst ? e : worst;
    return worst;
}

void print_json_row(bool& first, const Row& row, const char* metric, double value, int threads) {
    std::printf("%s\n  {\"group\": \"%s\", \"row\": \"%s\", \"metric\": \"%s\", \"value\": %.6g",
                first ? "[" : ",", row.group, row.name, metric, value);
    if (threads > 1) std::printf(", \"threads\": %d", threads);
    std::printf("}");
    first = false;
}

int run_rows(Fixture& fx, long calls, const char* group) {
    for (const Row& row : rows()) {
        if (group && std::strcmp(group, row.group) != 0) continue;
        std::printf("row run_%s %s %s %ld\n", row.name, row.group, row.name, ops_of(row, calls));
    }
    std::fflush(stdout);
    for (const Row& row : rows()) {
        if (group && std::strcmp(group, row.group) != 0) continue;
        (void)seconds_of(fx, row, ops_of(row, calls));
    }
    return 0;
}

int time_rows(Fixture& fx, long calls, int threads) {
    bool first = true;
    for (const Row& row : rows()) {
        long ops = ops_of(row, calls);
        int rounds = row.fixed_ops ? 3 : kRounds;
        double best = 1e300;
        for (int r = 0; r < rounds; r++) {
            double s = seconds_of(fx, row, ops);
            best = s < best ? s : best;
        }
        switch (row.timing) {
        case Timing::ns_per_op:
            print_json_row(first, row, "ns", best * 1e9 / ops, 1);
            break;
        case Timing::pairs_per_s:
            print_json_row(first, row, "pairs_per_s", ops / best, 1);
            break;
        case Timing::ms:
            print_json_row(first, row, "ms", best * 1e3, 1);
            break;
        }
        if (row.timing == Timing::ns_per_op && threads > 1) {
            double best_mt = 1e300;
            for (int r = 0; r < kThreadRounds; r++) {
                double s = seconds_on_threads(fx, row, ops, threads);
                best_mt = s < best_mt ? s : best_mt;
            }
            print_json_row(first, row, "ns", best_mt * 1e9 / ops, threads);
        }
    }
    std::printf("\n]\n");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::string mode = argc > 1 ? argv[1] : "";
    long calls = argc > 2 ? std::atol(argv[2]) : kDefaultCalls;
    if (calls <= 0 || (mode != "rows" && mode != "ns")) {
        std::fprintf(stderr, "usage: %s rows [CALLS [GROUP]] | ns [CALLS [THREADS]]\n", argv[0]);
        return 2;
    }
    Fixture fx;
    setup(fx);
    if (mode == "rows") return run_rows(fx, calls, argc > 3 ? argv[3] : nullptr);
    // More threads than cores would time the scheduler, not the rows.
    int threads = argc > 3 ? std::atoi(argv[3]) : 1;
    int cores = static_cast<int>(std::thread::hardware_concurrency());
    return time_rows(fx, calls, cores > 0 && threads > cores ? cores : threads);
}
