// Tests of the C++ shim (cpp_shim/cbreg.hpp) against the real library.
// Plain C++17: one line per test, then "N passed, M failed"; exit 1 on any
// failure. Build and run with `make cpp-test` (or `make cpp-test-asan`).

#include "cbreg.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace {

std::atomic<int> g_checks_failed{0};  // in the running test (CHECKs may run on helper threads)

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            std::printf("    %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            ++g_checks_failed;                                                   \
        }                                                                        \
    } while (0)

#define CHECK_STATUS(expr, want)                                                   \
    do {                                                                           \
        const cbreg::status got_ = (expr);                                         \
        if (got_ != (want)) {                                                      \
            std::printf("    %s:%d: %s gave \"%s\", want \"%s\"\n", __FILE__, __LINE__, \
                        #expr, cbreg::to_string(got_), cbreg::to_string(want));   \
            ++g_checks_failed;                                                     \
        }                                                                          \
    } while (0)

using cbreg::status;

// A capture whose destructor counts: tells whether (and how often) the
// entry's release destroyed the callable. Move-only on purpose.
struct drop_counter {
    std::atomic<int>* drops;
    explicit drop_counter(std::atomic<int>& d) : drops(&d) {}
    drop_counter(drop_counter&& o) noexcept : drops(std::exchange(o.drops, nullptr)) {}
    drop_counter(const drop_counter&) = delete;
    drop_counter& operator=(const drop_counter&) = delete;
    drop_counter& operator=(drop_counter&&) = delete;
    ~drop_counter() {
        if (drops) ++*drops;
    }
};

struct cbreg_stats stats_of(const cbreg::registry& r) {
    struct cbreg_stats s{};
    CHECK_STATUS(r.stats(s), status::ok);
    return s;
}

// ---- the tests, one behaviour each ----

void lambda_with_captures_gets_typed_args_and_returns_a_value() {
    cbreg::registry reg;
    const std::string expected_note = "A4";
    const double gain = 2.0;
    std::atomic<int> calls{0};
    auto sub = reg.subscribe([expected_note, gain, &calls](cbreg::args a) {
        ++calls;
        if (a.size() != 2 || a.get<std::string_view>(1) != expected_note)
            throw std::runtime_error("unexpected arguments");
        return a.get<double>(0) * gain;
    });
    CHECK(sub.id() != 0);

    cbreg::result r;
    CHECK_STATUS(reg.invoke_into(r, sub.id(), 440.0, "A4"), status::ok);
    CHECK(r.type() == cbreg::tag::f64);
    CHECK(r.as<double>() == 880.0);

    CHECK(reg.call(sub.id(), 220.0, std::string("A4")).as<double>() == 440.0);
    CHECK_STATUS(reg.invoke(sub.id(), 110.0, std::string_view("A4")), status::ok);
    CHECK(calls == 3);
}

void callback_can_return_an_owned_string() {
    cbreg::registry reg;
    auto sub = reg.subscribe([](cbreg::args a) {
        return std::string(a.get<std::string_view>(0)) + " at " +
               std::to_string(a.get<std::int64_t>(1)) + " Hz, padded past any small-string buffer";
    });
    cbreg::result r = reg.call(sub.id(), "A4", 440);
    CHECK(r.type() == cbreg::tag::str);
    CHECK(r.as<std::string_view>() == "A4 at 440 Hz, padded past any small-string buffer");
    CHECK(r.get().drop != nullptr);  // the result frees it (ASan checks)
    CHECK_STATUS(reg.invoke(sub.id(), "discarded", 1), status::ok);  // freed by the shim
}

status sum_i64s(const cbreg_value* argv, std::size_t n, cbreg_value* ret) {
    if (n != 1 || cbreg::value::tag_of(argv[0]) != cbreg::tag::i64_array)
        return status::invalid_argument;
    std::int64_t total = 0;
    for (std::int64_t x : cbreg::value::as_i64s(argv[0])) total += x;
    *ret = cbreg::value::i64(total);
    return status::ok;
}

void raw_signature_function_pointer_and_std_function_are_accepted() {
    cbreg::registry reg;
    auto by_pointer = reg.subscribe(&sum_i64s);
    const std::vector<std::int64_t> xs{1, 2, 3, 4};
    CHECK(reg.call(by_pointer.id(), xs).as<std::int64_t>() == 10);
    // A callback's own status is a failure; its code is kept apart.
    CHECK_STATUS(reg.invoke(by_pointer.id(), 1.5), status::callback_failed);
    CHECK(cbreg_last_callback_code() == CBREG_STATUS_INVALID_ARGUMENT);

    std::function<bool(cbreg::args)> fn = [](cbreg::args a) {
        auto bytes = a.get<cbreg::span<std::uint8_t>>(0);
        return bytes.size() == 3 && bytes[2] == 0xff;
    };
    auto by_function = reg.subscribe(fn);
    const std::vector<std::uint8_t> raw{0x00, 0x7f, 0xff};
    CHECK(reg.call(by_function.id(), raw).as<bool>() == true);

    int anchor = 0;
    auto nullary = reg.subscribe([&anchor] { return static_cast<void*>(&anchor); });
    CHECK(reg.call(nullary.id()).as<void*>() == &anchor);
}

void values_convert_by_type_and_read_back_by_tag() {
    cbreg::registry reg;
    int anchor = 0;
    const char* null_text = nullptr;
    const std::vector<double> f64s{0.5, 1.5};
    const std::int64_t i64s[] = {7, 8, 9};
    const std::vector<std::uint8_t> bytes{1, 2};
    const std::uint16_t u16 = 65535;
    auto sub = reg.subscribe([&anchor](cbreg::args a) {
        using cbreg::span;
        const auto f = a.get<span<double>>(3);
        const auto i = a.get<span<std::int64_t>>(4);
        return a.size() == 10 && a.get<void*>(0) == nullptr && a.get<std::string_view>(1).empty() &&
               a.get<std::string_view>(2) == "lit" && f.size() == 2 && f[1] == 1.5 &&
               i.size() == 3 && i[2] == 9 && a.get<span<std::uint8_t>>(5).size() == 2 &&
               a.get<std::int64_t>(6) == 65535 && a.get<double>(7) == 0.25 &&
               a.get<bool>(8) && a.get<void*>(9) == &anchor;
    });
    CHECK(reg.call(sub.id(), nullptr, null_text, "lit", f64s, i64s, bytes, u16, 0.25f, true, &anchor)
              .as<bool>());

    bool caught = false;
    try {
        (void)cbreg::value::as_i64(cbreg::value::f64(1.0));
    } catch (const cbreg::error& e) {
        caught = e.code() == status::invalid_argument;
    }
    CHECK(caught);
    CHECK(cbreg::value::as_bytes(cbreg::value::str("ab")).size() == 2);  // STR reads as bytes
}

void exception_in_callback_becomes_callback_failed() {
    cbreg::registry reg;
    auto throwing = reg.subscribe([](cbreg::args) -> void { throw std::runtime_error("boom"); });
    CHECK_STATUS(reg.invoke(throwing.id()), status::callback_failed);

    bool caught = false;
    try {
        (void)reg.call(throwing.id());
    } catch (const cbreg::error& e) {
        caught = e.code() == status::callback_failed &&
                 std::string_view(e.what()) == cbreg_status_str(CBREG_STATUS_CALLBACK_FAILED);
    }
    CHECK(caught);

    // A tag mismatch in an accessor throws inside the callback: same outcome.
    auto wants_f64 = reg.subscribe([](cbreg::args a) { return a.get<double>(0); });
    CHECK_STATUS(reg.invoke(wants_f64.id(), "not a number"), status::callback_failed);
    CHECK_STATUS(reg.invoke(wants_f64.id()), status::callback_failed);  // missing argument
    CHECK_STATUS(reg.invoke(wants_f64.id(), 1.0), status::ok);  // entry still fine
}

void subscription_unregisters_on_destruction_and_runs_the_deleter() {
    cbreg::registry reg;
    std::atomic<int> drops{0};
    std::uint64_t id = 0;
    {
        auto sub = reg.subscribe([d = drop_counter(drops)] {});
        id = sub.id();
        CHECK_STATUS(reg.invoke(id), status::ok);
        CHECK(drops == 0);
    }
    CHECK(drops == 1);
    CHECK_STATUS(reg.invoke(id), status::not_found);
    struct cbreg_stats s = stats_of(reg);
    CHECK(s.live == 0 && s.registered == 1 && s.released == 1 && s.pending == 0);
}

void subscription_moves_transfer_ownership() {
    cbreg::registry reg;
    std::atomic<int> drops_a{0}, drops_b{0};
    cbreg::subscription a = reg.subscribe([d = drop_counter(drops_a)] {});
    const std::uint64_t id_a = a.id();

    cbreg::subscription moved = std::move(a);
    CHECK(!a && a.id() == 0);
    CHECK(moved.id() == id_a);
    a.reset();  // empty: nothing to do
    CHECK_STATUS(reg.invoke(id_a), status::ok);

    cbreg::subscription b = reg.subscribe([d = drop_counter(drops_b)] {});
    const std::uint64_t id_b = b.id();
    b = std::move(moved);  // b's old entry goes
    CHECK(drops_b == 1 && drops_a == 0);
    CHECK_STATUS(reg.invoke(id_b), status::not_found);
    CHECK_STATUS(reg.invoke(id_a), status::ok);

    const std::uint64_t detached = b.release();
    CHECK(detached == id_a && !b);
    b = cbreg::subscription();
    CHECK(drops_a == 0);
    CHECK_STATUS(reg.invoke(detached), status::ok);
    CHECK_STATUS(reg.unregister(detached), status::ok);
    CHECK(drops_a == 1);

    auto c = reg.subscribe([] {});
    const std::uint64_t id_c = c.id();
    CHECK_STATUS(c.unregister(), status::ok);
    CHECK(!c);
    CHECK_STATUS(reg.invoke(id_c), status::not_found);
}

void registry_moves_transfer_ownership() {
    std::atomic<int> drops{0};
    cbreg::registry a;
    const cbreg_registry handle = a.handle();
    auto sub = a.subscribe([d = drop_counter(drops)] {});

    cbreg::registry b = std::move(a);
    CHECK(!a.owns() && a.handle().handle == 0);
    CHECK_STATUS(a.invoke(sub.id()), status::invalid_registry);
    CHECK(b.owns() && b.handle().handle == handle.handle);
    CHECK_STATUS(b.invoke(sub.id()), status::ok);

    cbreg::registry c;
    const cbreg_registry old_c = c.handle();
    c = std::move(b);  // c's own registry is destroyed
    CHECK_STATUS(cbreg::registry::borrow(old_c).collect(), status::invalid_registry);
    CHECK_STATUS(c.invoke(sub.id()), status::ok);
    CHECK(drops == 0);
    CHECK_STATUS(c.destroy(), status::ok);  // runs every release
    CHECK(drops == 1);
    CHECK_STATUS(c.invoke(sub.id()), status::invalid_registry);
}

void one_shot_flag_runs_once_then_releases() {
    cbreg::registry reg;
    std::atomic<int> calls{0}, drops{0};
    auto sub = reg.subscribe([&calls, d = drop_counter(drops)] { ++calls; }, cbreg::once);
    CHECK_STATUS(reg.invoke(sub.id()), status::ok);
    CHECK_STATUS(reg.invoke(sub.id()), status::not_found);
    CHECK(calls == 1);
    CHECK(drops == 1);
    CHECK_STATUS(sub.unregister(), status::not_found);
}

void site_invokes_its_entry_until_it_is_gone_and_never_the_next() {
    cbreg::registry reg;
    std::atomic<int> calls{0}, later{0};
    auto sub = reg.subscribe([&calls](cbreg::args a) { return a.get<double>(0) * 2.0; });
    const cbreg::site site = reg.site(sub.id());
    cbreg::result r;
    CHECK_STATUS(site.invoke_into(r, 220.0), status::ok);
    CHECK(r.as<double>() == 440.0);
    const cbreg::site copy = site;  // plain data
    CHECK_STATUS(copy(1.0), status::ok);
    CHECK_STATUS(sub.unregister(), status::ok);
    CHECK_STATUS(site(1.0), status::not_found);
    auto next = reg.subscribe([&later] { ++later; });  // may take the slot
    CHECK_STATUS(site(1.0), status::not_found);
    CHECK(later == 0);
    cbreg::site unresolved;
    CHECK_STATUS(unresolved(), status::invalid_argument);
    cbreg::site s2;
    CHECK_STATUS(reg.resolve(sub.id(), s2), status::not_found);
    (void)calls;
}

void second_thread_invokes_while_main_thread_clears() {
    cbreg::registry reg;
    for (int round = 0; round < 20; ++round) {
        std::atomic<int> calls{0}, drops{0};
        auto sub = reg.subscribe([&calls, d = drop_counter(drops)](cbreg::args a) {
            if (a.get<double>(0) != 1.0) throw std::logic_error("bad argument");
            ++calls;
        });
        const std::uint64_t id = sub.id();
        std::atomic<int> other_statuses{0};
        std::thread invoker([&] {
            for (;;) {
                status s = reg.invoke(id, 1.0);
                if (s == status::not_found) break;
                if (s != status::ok) ++other_statuses;
            }
        });
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (calls < 200 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
        CHECK(calls >= 200);
        std::size_t cleared = 0;
        CHECK_STATUS(reg.clear(&cleared), status::ok);
        CHECK(cleared == 1);
        invoker.join();
        CHECK(other_statuses == 0);
        CHECK(drops == 1);  // exactly once, on whichever thread was last
        CHECK_STATUS(sub.unregister(), status::not_found);
    }
    struct cbreg_stats s = stats_of(reg);
    CHECK(s.live == 0 && s.pending == 0 && s.released == s.registered);
    auto after = reg.subscribe([] {});  // clear is not close
    CHECK_STATUS(reg.invoke(after.id()), status::ok);
}

void destroyed_registry_reports_invalid_registry() {
    std::atomic<int> drops{0}, refused_drops{0};
    cbreg::subscription sub;
    cbreg_registry handle{0};
    {
        cbreg::registry reg;
        handle = reg.handle();
        sub = reg.subscribe([d = drop_counter(drops)] {});
    }
    CHECK(drops == 1);  // destroying the registry ran the release
    const auto gone = cbreg::registry::borrow(handle);
    CHECK_STATUS(gone.invoke(sub.id()), status::invalid_registry);
    CHECK_STATUS(gone.clear(), status::invalid_registry);
    struct cbreg_stats s{};
    CHECK_STATUS(gone.stats(s), status::invalid_registry);

    bool caught = false;
    try {
        auto never = gone.subscribe([d = drop_counter(refused_drops)] {});
    } catch (const cbreg::error& e) {
        caught = e.code() == status::invalid_registry;
    }
    CHECK(caught);
    CHECK(refused_drops == 1);  // refused: the shim destroyed the callable

    cbreg::registry successor;  // may reuse the slot: the old handle stays dead
    CHECK_STATUS(gone.invoke(sub.id()), status::invalid_registry);
    CHECK_STATUS(sub.unregister(), status::invalid_registry);
}

void realtime_scope_defers_release_until_collect_on_another_thread() {
    cbreg::registry reg;
    std::atomic<int> drops{0}, once_drops{0};
    auto sub = reg.subscribe([d = drop_counter(drops)] {});
    auto one_shot = reg.subscribe([d = drop_counter(once_drops)] {}, cbreg::once);
    std::size_t collected_on_rt = 99;
    std::thread audio([&] {
        cbreg::realtime_scope rt;
        CHECK_STATUS(reg.invoke(sub.id()), status::ok);
        CHECK_STATUS(sub.unregister(), status::ok);
        CHECK_STATUS(reg.invoke(one_shot.id()), status::ok);
        CHECK_STATUS(reg.collect(&collected_on_rt), status::ok);
    });
    audio.join();
    CHECK(collected_on_rt == 0);
    CHECK(drops == 0 && once_drops == 0);
    CHECK(stats_of(reg).pending == 2);

    std::size_t collected = 0;
    CHECK_STATUS(reg.collect(&collected), status::ok);
    CHECK(collected == 2);
    CHECK(drops == 1 && once_drops == 1);
    CHECK(stats_of(reg).pending == 0);
}

void unregister_wait_from_inside_own_callback_would_deadlock() {
    cbreg::registry reg;
    std::atomic<std::uint64_t> self{0};
    std::atomic<int> inner{-1};
    auto sub = reg.subscribe([&reg, &self, &inner] {
        inner = static_cast<int>(reg.unregister_wait(self.load()));
    });
    self = sub.id();
    CHECK_STATUS(reg.invoke(sub.id()), status::ok);
    CHECK(inner == static_cast<int>(status::would_deadlock));
    CHECK_STATUS(reg.invoke(sub.id()), status::ok);  // nothing changed
    CHECK_STATUS(sub.unregister_wait(), status::ok);
}

void closed_registry_refuses_subscribe_and_the_callable_is_destroyed() {
    cbreg::registry reg;
    std::atomic<int> drops{0};
    std::size_t cleared = 99;
    CHECK_STATUS(reg.close(&cleared), status::ok);
    CHECK(cleared == 0);
    bool caught = false;
    try {
        auto never = reg.subscribe([d = drop_counter(drops)] {});
    } catch (const cbreg::error& e) {
        caught = e.code() == status::closed;
    }
    CHECK(caught);
    CHECK(drops == 1);
}

void core_decides_bad_input() {
    cbreg::registry reg;
    auto sub = reg.subscribe([] {});
    cbreg_value bad = cbreg::value::none();
    bad.tag = 99;
    CHECK_STATUS(reg.invoke(sub.id(), bad), status::invalid_argument);
    CHECK_STATUS(reg.invoke(0), status::not_found);
    CHECK_STATUS(reg.unregister(0), status::not_found);
    bool caught = false;
    try {
        auto never = reg.subscribe([] {}, 0x80u);
    } catch (const cbreg::error& e) {
        caught = e.code() == status::invalid_argument;
    }
    CHECK(caught);
}

void global_view_shares_the_default_registry_and_never_destroys_it() {
    std::atomic<int> calls{0};
    cbreg::subscription sub;
    {
        auto global = cbreg::registry::global();
        CHECK(!global.owns());
        sub = global.subscribe([&calls] { ++calls; });
    }
    const auto again = cbreg::registry::borrow(cbreg_default());
    CHECK_STATUS(again.invoke(sub.id()), status::ok);
    CHECK(calls == 1);
    sub.reset();
    CHECK_STATUS(again.invoke(sub.id()), status::not_found);  // id 0 after reset
}

void post_is_delivered_by_a_pump_the_host_drains() {
    cbreg::registry reg;
    cbreg::pump pump;
    std::vector<std::string> seen;
    auto sub = reg.subscribe([&seen](cbreg::args a) {
        seen.push_back(std::string(a.get<std::string_view>(1)) + "@" +
                       std::to_string(a.get<double>(0)));
    });
    CHECK_STATUS(reg.set_target(sub.id(), pump.target()), status::ok);
    CHECK(pump.fd() >= 0 || pump.fd() == -1);
    {
        std::string note = "A4";
        CHECK_STATUS(reg.post(sub.id(), 440.0, note), status::ok);
    }  // copied at post time
    CHECK_STATUS(reg.post_flags(CBREG_POST_COALESCE, sub.id(), 1.0, "x"), status::ok);
    CHECK_STATUS(reg.post_flags(CBREG_POST_COALESCE, sub.id(), 2.0, "y"), status::ok);
    CHECK(seen.empty());
    CHECK(pump.drain() == 3);
    CHECK(seen.size() == 2);
    CHECK(seen[0] == "A4@440.000000" && seen[1] == "y@2.000000");
    cbreg_post_stats st{};
    CHECK_STATUS(pump.stats(st), status::ok);
    CHECK(st.posted == 3 && st.delivered == 2 && st.coalesced == 1);
    CHECK_STATUS(reg.post(0), status::not_found);
    // The moved-to pump owns the target; the moved-from one frees nothing.
    cbreg::pump moved = std::move(pump);
    CHECK_STATUS(cbreg::post_reserve(moved.target()), status::ok);
    CHECK_STATUS(reg.post(sub.id(), 3.0, "z"), status::ok);
    CHECK(moved.drain() == 1 && seen.size() == 3);
}

struct test_case {
    const char* name;
    void (*run)();
};

#define TEST(name) test_case{#name, name}

const test_case k_tests[] = {
    TEST(lambda_with_captures_gets_typed_args_and_returns_a_value),
    TEST(callback_can_return_an_owned_string),
    TEST(raw_signature_function_pointer_and_std_function_are_accepted),
    TEST(values_convert_by_type_and_read_back_by_tag),
    TEST(exception_in_callback_becomes_callback_failed),
    TEST(subscription_unregisters_on_destruction_and_runs_the_deleter),
    TEST(subscription_moves_transfer_ownership),
    TEST(registry_moves_transfer_ownership),
    TEST(one_shot_flag_runs_once_then_releases),
    TEST(site_invokes_its_entry_until_it_is_gone_and_never_the_next),
    TEST(second_thread_invokes_while_main_thread_clears),
    TEST(destroyed_registry_reports_invalid_registry),
    TEST(realtime_scope_defers_release_until_collect_on_another_thread),
    TEST(unregister_wait_from_inside_own_callback_would_deadlock),
    TEST(closed_registry_refuses_subscribe_and_the_callable_is_destroyed),
    TEST(core_decides_bad_input),
    TEST(global_view_shares_the_default_registry_and_never_destroys_it),
    TEST(post_is_delivered_by_a_pump_the_host_drains),
};

}  // namespace

int main() {
    int passed = 0, failed = 0;
    for (const test_case& t : k_tests) {
        g_checks_failed = 0;
        try {
            t.run();
        } catch (const std::exception& e) {
            std::printf("    unexpected exception: %s\n", e.what());
            ++g_checks_failed;
        }
        const bool ok = g_checks_failed == 0;
        std::printf("%s %s\n", ok ? "ok  " : "FAIL", t.name);
        std::fflush(stdout);
        (ok ? passed : failed) += 1;
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
