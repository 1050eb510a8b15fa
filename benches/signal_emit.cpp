// Emit to 1, 8 and 64 subscribers: cbreg's signal beside libsigc++,
// GLib's g_signal_emit and boost.signals2, and cbreg's own invoke (the
// per-subscriber baseline) in the same run. Every subscriber is the same
// callback of a few instructions (a volatile read), every emit carries one
// f64 (440.0).
//
//   signal_emit rows [CALLS]   print what each row is, then run each once
//                              (the mode benches/callgrind_rows.py counts)
//   signal_emit ns [CALLS]     time every row, best of several rounds, and
//                              print JSON rows (benches/signal_report.py)
//
// A row is a `run_<row>` function that never inlines, so callgrind's
// inclusive count of it is the row's whole cost, loop included. A row of
// N subscribers runs CALLS / N emits (at least 1000), so every row makes
// about as many callback calls; its operations are its emits.

#include "cbreg.h"
#include "cbreg.hpp"

#include <glib-object.h>
#include <sigc++/sigc++.h>

#include <boost/signals2.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if defined(__GNUC__) && !defined(__clang__)
#define ROW __attribute__((noipa))
#else
#define ROW __attribute__((noinline))
#endif

namespace {

constexpr long kDefaultCalls = 1000000;
constexpr int kRounds = 7;
constexpr int kSizes[] = {1, 8, 64};

int callback_flag = 1;

uint32_t cbreg_callback(void* ctx, const cbreg_value*, size_t, cbreg_value*) {
    return *static_cast<volatile int*>(ctx) ? CBREG_STATUS_OK : CBREG_STATUS_OK;
}
void plain_callback(double) { (void)*static_cast<volatile int*>(&callback_flag); }
void glib_callback(GObject*, double, gpointer data) { (void)*static_cast<volatile int*>(data); }

// A GObject type with one signal, "tick", carrying a double.
guint tick_signal = 0;
GType tick_type() {
    static GType type = 0;
    if (type == 0) {
        GTypeInfo info{};
        info.class_size = sizeof(GObjectClass);
        info.instance_size = sizeof(GObject);
        type = g_type_register_static(G_TYPE_OBJECT, "CbregBenchTick", &info, GTypeFlags(0));
        tick_signal = g_signal_new("tick", type, G_SIGNAL_RUN_LAST, 0, nullptr, nullptr,
                                   g_cclosure_marshal_VOID__DOUBLE, G_TYPE_NONE, 1, G_TYPE_DOUBLE);
    }
    return type;
}

struct Peers {
    cbreg_registry reg{0};
    uint64_t id = 0;
    cbreg_site site{};
    cbreg_signal cbreg_sig[3]{};
    sigc::signal<void(double)> sigc_sig[3];
    GObject* glib_obj[3]{};
    boost::signals2::signal<void(double)> boost_sig[3];
    cbreg_value arg = cbreg::value::f64(440.0);
};

Peers* peers = nullptr;

long emits_of(long calls, int size) { return calls / size < 1000 ? 1000 : calls / size; }

ROW void run_cbreg_invoke(long n) {
    for (long i = 0; i < n; i++) (void)cbreg_invoke(peers->reg, peers->id, &peers->arg, 1, nullptr);
}
ROW void run_cbreg_site(long n) {
    for (long i = 0; i < n; i++) (void)cbreg_site_invoke(&peers->site, &peers->arg, 1, nullptr);
}

#define EMIT_ROWS(k, size)                                                                  \
    ROW void run_cbreg_emit_##size(long n) {                                                \
        for (long i = 0; i < n; i++)                                                        \
            (void)cbreg_signal_emit(peers->cbreg_sig[k], &peers->arg, 1, nullptr);          \
    }                                                                                       \
    ROW void run_sigc_emit_##size(long n) {                                                 \
        for (long i = 0; i < n; i++) peers->sigc_sig[k].emit(440.0);                        \
    }                                                                                       \
    ROW void run_glib_emit_##size(long n) {                                                 \
        for (long i = 0; i < n; i++) g_signal_emit(peers->glib_obj[k], tick_signal, 0, 440.0); \
    }                                                                                       \
    ROW void run_boost_emit_##size(long n) {                                                \
        for (long i = 0; i < n; i++) peers->boost_sig[k](440.0);                            \
    }

EMIT_ROWS(0, 1)
EMIT_ROWS(1, 8)
EMIT_ROWS(2, 64)

struct Row {
    const char* name;  // the function is run_<name>
    void (*run)(long);
    int subscribers;   // 0: an invoke row (one call per operation)
};

const std::vector<Row>& rows() {
    static const std::vector<Row> table = {
        {"cbreg_invoke", run_cbreg_invoke, 0},
        {"cbreg_site", run_cbreg_site, 0},
#define ROWS_OF(size)                                                               \
    {"cbreg_emit_" #size, run_cbreg_emit_##size, size},                             \
        {"sigc_emit_" #size, run_sigc_emit_##size, size},                           \
        {"glib_emit_" #size, run_glib_emit_##size, size},                           \
        {"boost_emit_" #size, run_boost_emit_##size, size},
        ROWS_OF(1) ROWS_OF(8) ROWS_OF(64)
#undef ROWS_OF
    };
    return table;
}

long ops_of(const Row& row, long calls) {
    return row.subscribers == 0 ? calls : emits_of(calls, row.subscribers);
}

void setup(Peers& p) {
    if (cbreg_registry_new(&p.reg)) std::abort();
    if (cbreg_register(p.reg, cbreg_callback, &callback_flag, nullptr, 0, &p.id)) std::abort();
    if (cbreg_site_resolve(p.reg, p.id, &p.site)) std::abort();
    GType type = tick_type();
    for (int k = 0; k < 3; k++) {
        if (cbreg_signal_new(p.reg, &p.cbreg_sig[k])) std::abort();
        p.glib_obj[k] = static_cast<GObject*>(g_object_new(type, nullptr));
        for (int i = 0; i < kSizes[k]; i++) {
            uint64_t id = 0;
            if (cbreg_register(p.reg, cbreg_callback, &callback_flag, nullptr, 0, &id)) std::abort();
            if (cbreg_signal_subscribe(p.cbreg_sig[k], id)) std::abort();
            p.sigc_sig[k].connect(sigc::ptr_fun(plain_callback));
            g_signal_connect(p.glib_obj[k], "tick", G_CALLBACK(glib_callback), &callback_flag);
            p.boost_sig[k].connect(plain_callback);
        }
    }
    // This thread's hazard record is claimed here, not inside a row.
    if (cbreg_invoke(p.reg, p.id, &p.arg, 1, nullptr)) std::abort();
    cbreg_emit_report report{};
    if (cbreg_signal_emit(p.cbreg_sig[2], &p.arg, 1, &report) || report.called != 64) std::abort();
}

double seconds_of(const Row& row, long ops) {
    auto t0 = std::chrono::steady_clock::now();
    row.run(ops);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int run_rows(long calls) {
    for (const Row& row : rows())
        std::printf("row run_%s emit %s %ld\n", row.name, row.name, ops_of(row, calls));
    std::fflush(stdout);
    for (const Row& row : rows()) (void)seconds_of(row, ops_of(row, calls));
    return 0;
}

int time_rows(long calls) {
    bool first = true;
    for (const Row& row : rows()) {
        long ops = ops_of(row, calls);
        double best = 1e300;
        for (int r = 0; r < kRounds; r++) {
            double s = seconds_of(row, ops);
            best = s < best ? s : best;
        }
        std::printf("%s\n  {\"group\": \"emit\", \"row\": \"%s\", \"metric\": \"ns\", \"value\": %.6g}",
                    first ? "[" : ",", row.name, best * 1e9 / ops);
        first = false;
    }
    std::printf("\n]\n");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::string mode = argc > 1 ? argv[1] : "";
    long calls = argc > 2 ? std::atol(argv[2]) : kDefaultCalls;
    if (calls <= 0 || (mode != "rows" && mode != "ns")) {
        std::fprintf(stderr, "usage: %s rows|ns [CALLS]\n", argv[0]);
        return 2;
    }
    Peers p;
    peers = &p;
    setup(p);
    return mode == "rows" ? run_rows(calls) : time_rows(calls);
}
