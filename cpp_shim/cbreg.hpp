// cbreg.hpp: header-only C++17 shim over the cbreg C ABI (include/cbreg.h).
//
// It translates and adds no policy: when a release runs, what a one-shot or
// a closed registry does, which input is invalid, is all decided by the core
// and comes back as its status. What the shim adds is C++ ownership: RAII
// registries and subscriptions, any callable as a callback, and a boundary
// that turns exceptions into CBREG_STATUS_CALLBACK_FAILED so nothing unwinds
// through the C ABI.
//
//     cbreg::registry reg;
//     cbreg::subscription sub = reg.subscribe([gain](cbreg::args a) {
//         return a.get<double>(0) * gain;          // becomes the return value
//     });
//     cbreg::result r;
//     cbreg::status s = reg.invoke_into(r, sub.id(), 440.0, "A4");  // a status
//     double y = reg.call(sub.id(), 440.0, "A4").as<double>();      // throws
//
// Callbacks may run on several threads at once, so a callable is invoked
// through a const reference: a `mutable` lambda is refused at compile time.

#ifndef CBREG_HPP
#define CBREG_HPP

#include "cbreg.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

// glibc ends threads (pthread_exit, pthread_cancel) with a forced unwind
// that a catch-all must rethrow.
#if defined(__GLIBCXX__) && __has_include(<cxxabi.h>)
#include <cxxabi.h>
#define CBREG_HAS_FORCED_UNWIND 1
#else
#define CBREG_HAS_FORCED_UNWIND 0
#endif

namespace cbreg {

// ---- statuses ----

// Mirrors cbreg_status.
enum class status : std::uint32_t {
    ok = CBREG_STATUS_OK,
    not_found = CBREG_STATUS_NOT_FOUND,
    closed = CBREG_STATUS_CLOSED,
    invalid_argument = CBREG_STATUS_INVALID_ARGUMENT,
    invalid_registry = CBREG_STATUS_INVALID_REGISTRY,
    callback_failed = CBREG_STATUS_CALLBACK_FAILED,
    would_deadlock = CBREG_STATUS_WOULD_DEADLOCK,
    no_memory = CBREG_STATUS_NO_MEMORY,
    internal = CBREG_STATUS_INTERNAL,
    full = CBREG_STATUS_FULL,
    invalid_signal = CBREG_STATUS_INVALID_SIGNAL,
};
static_assert(static_cast<std::uint32_t>(status::invalid_signal) + 1 == CBREG_STATUS_COUNT,
              "cbreg::status misses a status that cbreg.h defines");

// The core's description of `s` (static storage).
inline const char* to_string(status s) noexcept {
    return cbreg_status_str(static_cast<std::uint32_t>(s));
}

// What the throwing convenience methods throw; what() is cbreg_status_str.
class error : public std::runtime_error {
public:
    explicit error(status s) : std::runtime_error(to_string(s)), code_(s) {}
    status code() const noexcept { return code_; }

private:
    status code_;
};

namespace detail {
inline status from_c(cbreg_status s) noexcept { return static_cast<status>(s); }
inline void throw_unless_ok(status s) {
    if (s != status::ok) throw error(s);
}
template <class> inline constexpr bool always_false = false;
}  // namespace detail

// `flags` for subscribe.
inline constexpr std::uint32_t persistent = 0;
inline constexpr std::uint32_t once = CBREG_ONCE;

// ---- values ----

// Mirrors cbreg_tag.
enum class tag : std::uint32_t {
    none = CBREG_TAG_NONE,
    boolean = CBREG_TAG_BOOL,
    i64 = CBREG_TAG_I64,
    f64 = CBREG_TAG_F64,
    str = CBREG_TAG_STR,
    bytes = CBREG_TAG_BYTES,
    i64_array = CBREG_TAG_I64_ARRAY,
    f64_array = CBREG_TAG_F64_ARRAY,
    ptr = CBREG_TAG_PTR,
};

// A read-only view of `size()` elements of type T (std::span is C++20).
template <class T>
class span {
public:
    constexpr span() noexcept = default;
    constexpr span(const T* p, std::size_t n) noexcept : data_(p), size_(n) {}
    // Any contiguous container of T (std::vector, std::array, ...).
    template <class C, class = std::enable_if_t<std::is_convertible_v<
                           decltype(std::declval<const C&>().data()), const T*>>>
    constexpr span(const C& c) noexcept : data_(c.data()), size_(c.size()) {}

    constexpr const T* data() const noexcept { return data_; }
    constexpr std::size_t size() const noexcept { return size_; }
    constexpr bool empty() const noexcept { return size_ == 0; }
    constexpr const T* begin() const noexcept { return data_; }
    constexpr const T* end() const noexcept { return data_ + size_; }
    constexpr const T& operator[](std::size_t i) const noexcept { return data_[i]; }

private:
    const T* data_ = nullptr;
    std::size_t size_ = 0;
};

// Building a cbreg_value (borrowed: it must not outlive what it points at)
// and reading one back (the accessors throw error(invalid_argument) on a
// tag mismatch; inside a callback that surfaces as CALLBACK_FAILED).
namespace value {

inline cbreg_value none() noexcept {
    cbreg_value v{};
    v.tag = CBREG_TAG_NONE;
    return v;
}
inline cbreg_value boolean(bool b) noexcept {
    cbreg_value v = none();
    v.tag = CBREG_TAG_BOOL;
    v.as.b = b;
    return v;
}
inline cbreg_value i64(std::int64_t x) noexcept {
    cbreg_value v = none();
    v.tag = CBREG_TAG_I64;
    v.as.i64 = x;
    return v;
}
inline cbreg_value f64(double x) noexcept {
    cbreg_value v = none();
    v.tag = CBREG_TAG_F64;
    v.as.f64 = x;
    return v;
}
// UTF-8 text; no NUL needed. The core checks UTF-8 where it matters (Python).
inline cbreg_value str(std::string_view s) noexcept {
    cbreg_value v = none();
    v.tag = CBREG_TAG_STR;
    v.len = s.size();
    v.as.str = reinterpret_cast<const std::uint8_t*>(s.data());
    return v;
}
inline cbreg_value bytes(const void* p, std::size_t n) noexcept {
    cbreg_value v = none();
    v.tag = CBREG_TAG_BYTES;
    v.len = n;
    v.as.bytes = static_cast<const std::uint8_t*>(p);
    return v;
}
inline cbreg_value bytes(span<std::uint8_t> b) noexcept { return bytes(b.data(), b.size()); }
inline cbreg_value i64s(span<std::int64_t> a) noexcept {
    cbreg_value v = none();
    v.tag = CBREG_TAG_I64_ARRAY;
    v.len = a.size();
    v.as.i64s = a.data();
    return v;
}
inline cbreg_value f64s(span<double> a) noexcept {
    cbreg_value v = none();
    v.tag = CBREG_TAG_F64_ARRAY;
    v.len = a.size();
    v.as.f64s = a.data();
    return v;
}
inline cbreg_value ptr(void* p) noexcept {
    cbreg_value v = none();
    v.tag = CBREG_TAG_PTR;
    v.as.ptr = p;
    return v;
}

namespace detail {
template <class C, class = void>
struct element_of {
    using type = void;
};
template <class C>
struct element_of<C, std::void_t<decltype(std::declval<const C&>().data()),
                                 decltype(std::declval<const C&>().size())>> {
    using type = std::remove_cv_t<
        std::remove_pointer_t<decltype(std::declval<const C&>().data())>>;
};
template <class E>
inline constexpr bool is_byte_v = std::is_same_v<E, unsigned char> || std::is_same_v<E, char> ||
                                  std::is_same_v<E, std::byte>;
}  // namespace detail

// The borrowed cbreg_value for a C++ value: bool; any integer (as int64_t,
// wrapping above INT64_MAX); float or double; anything convertible to
// std::string_view (STR; a null char pointer is the empty string); nullptr
// and object pointers (PTR); a C array or contiguous container of int64_t,
// double or bytes (the array tags, BYTES); a cbreg_value as it is.
template <class T>
cbreg_value from(const T& x) noexcept {
    using U = std::decay_t<T>;
    if constexpr (std::is_same_v<U, cbreg_value>) {
        return x;
    } else if constexpr (std::is_same_v<U, bool>) {
        return boolean(x);
    } else if constexpr (std::is_integral_v<U>) {
        return i64(static_cast<std::int64_t>(x));
    } else if constexpr (std::is_floating_point_v<U>) {
        return f64(static_cast<double>(x));
    } else if constexpr (std::is_same_v<U, std::nullptr_t>) {
        return ptr(nullptr);  // before string_view, which nullptr converts to
    } else if constexpr (std::is_array_v<T>) {
        using E = std::remove_cv_t<std::remove_extent_t<T>>;
        if constexpr (std::is_same_v<E, char>) {
            return str(std::string_view(x));  // a literal: up to its NUL
        } else {
            return from(span<E>(x, std::extent_v<T>));
        }
    } else if constexpr (std::is_same_v<U, const char*> || std::is_same_v<U, char*>) {
        return str(x ? std::string_view(x) : std::string_view());
    } else if constexpr (std::is_convertible_v<const T&, std::string_view>) {
        return str(x);
    } else if constexpr (std::is_pointer_v<U> && !std::is_function_v<std::remove_pointer_t<U>>) {
        return ptr(const_cast<void*>(static_cast<const void*>(x)));
    } else {
        using E = typename detail::element_of<U>::type;
        if constexpr (std::is_same_v<E, std::int64_t>) {
            return i64s({x.data(), x.size()});
        } else if constexpr (std::is_same_v<E, double>) {
            return f64s({x.data(), x.size()});
        } else if constexpr (detail::is_byte_v<E>) {
            return bytes(x.data(), x.size());
        } else {
            static_assert(cbreg::detail::always_false<T>, "cbreg::value::from: no cbreg_value for this type");
            return none();
        }
    }
}

// A value that owns its storage: `c` (std::string or a std::vector of
// int64_t, double or bytes) moves to the heap and the value's drop/owner
// free it when the receiver calls cbreg_value_drop (cbreg::result does).
template <class C>
cbreg_value owned(C c) {
    using E = typename detail::element_of<C>::type;
    static_assert(std::is_same_v<C, std::string> ||
                      (std::is_same_v<C, std::vector<E>> &&
                       (std::is_same_v<E, std::int64_t> || std::is_same_v<E, double> ||
                        detail::is_byte_v<E>)),
                  "cbreg::value::owned takes a std::string or a std::vector of int64_t, double or bytes");
    auto holder = std::make_unique<C>(std::move(c));
    cbreg_value v = from(*holder);
    v.drop = [](void* owner) { delete static_cast<C*>(owner); };
    v.owner = holder.release();
    return v;
}

inline tag tag_of(const cbreg_value& v) noexcept { return static_cast<tag>(v.tag); }

namespace detail {
inline void expect(const cbreg_value& v, tag t) {
    if (tag_of(v) != t) throw error(status::invalid_argument);
}
}  // namespace detail

inline bool as_bool(const cbreg_value& v) {
    detail::expect(v, tag::boolean);
    return v.as.b;
}
inline std::int64_t as_i64(const cbreg_value& v) {
    detail::expect(v, tag::i64);
    return v.as.i64;
}
inline double as_f64(const cbreg_value& v) {
    detail::expect(v, tag::f64);
    return v.as.f64;
}
// The bytes of a STR, unchecked for UTF-8.
inline std::string_view as_str(const cbreg_value& v) {
    detail::expect(v, tag::str);
    if (v.len == 0) return {};
    return {reinterpret_cast<const char*>(v.as.str), v.len};
}
// The bytes of a BYTES or a STR (as the Rust API does).
inline span<std::uint8_t> as_bytes(const cbreg_value& v) {
    if (tag_of(v) != tag::str) detail::expect(v, tag::bytes);
    return {v.as.bytes, v.len};
}
inline span<std::int64_t> as_i64s(const cbreg_value& v) {
    detail::expect(v, tag::i64_array);
    return {v.as.i64s, v.len};
}
inline span<double> as_f64s(const cbreg_value& v) {
    detail::expect(v, tag::f64_array);
    return {v.as.f64s, v.len};
}
inline void* as_ptr(const cbreg_value& v) {
    detail::expect(v, tag::ptr);
    return v.as.ptr;
}

// as<T>: the accessor above for T in bool, int64_t, double, string_view,
// span<uint8_t>, span<int64_t>, span<double>, void*.
template <class T>
T as(const cbreg_value& v) {
    if constexpr (std::is_same_v<T, bool>) return as_bool(v);
    else if constexpr (std::is_same_v<T, std::int64_t>) return as_i64(v);
    else if constexpr (std::is_same_v<T, double>) return as_f64(v);
    else if constexpr (std::is_same_v<T, std::string_view>) return as_str(v);
    else if constexpr (std::is_same_v<T, span<std::uint8_t>>) return as_bytes(v);
    else if constexpr (std::is_same_v<T, span<std::int64_t>>) return as_i64s(v);
    else if constexpr (std::is_same_v<T, span<double>>) return as_f64s(v);
    else if constexpr (std::is_same_v<T, void*>) return as_ptr(v);
    else static_assert(cbreg::detail::always_false<T>, "cbreg::value::as: unsupported type");
}

}  // namespace value

// The argument vector a callback receives (borrowed for the call).
class args {
public:
    constexpr args(const cbreg_value* v, std::size_t n) noexcept : data_(v), size_(n) {}

    constexpr std::size_t size() const noexcept { return size_; }
    constexpr bool empty() const noexcept { return size_ == 0; }
    constexpr const cbreg_value* data() const noexcept { return data_; }
    constexpr const cbreg_value* begin() const noexcept { return data_; }
    constexpr const cbreg_value* end() const noexcept { return data_ + size_; }
    constexpr const cbreg_value& operator[](std::size_t i) const noexcept { return data_[i]; }
    // Throws error(invalid_argument) past the end.
    const cbreg_value& at(std::size_t i) const {
        if (i >= size_) throw error(status::invalid_argument);
        return data_[i];
    }
    // value::as<T>(at(i)): throws on a missing argument or a tag mismatch.
    template <class T>
    T get(std::size_t i) const {
        return value::as<T>(at(i));
    }

private:
    const cbreg_value* data_;
    std::size_t size_;
};

// A return value received from invoke: owns what the callback handed over
// and calls cbreg_value_drop on destruction. Move-only.
class result {
public:
    result() noexcept : v_(value::none()) {}
    result(result&& o) noexcept : v_(std::exchange(o.v_, value::none())) {}
    result& operator=(result&& o) noexcept {
        if (this != &o) {
            cbreg_value_drop(&v_);
            v_ = std::exchange(o.v_, value::none());
        }
        return *this;
    }
    result(const result&) = delete;
    result& operator=(const result&) = delete;
    ~result() { cbreg_value_drop(&v_); }

    const cbreg_value& get() const noexcept { return v_; }
    tag type() const noexcept { return value::tag_of(v_); }
    template <class T>
    T as() const {
        return value::as<T>(v_);
    }
    // Drops the current value and returns the slot for a C call to fill.
    cbreg_value* out() noexcept {
        cbreg_value_drop(&v_);
        return &v_;
    }

private:
    cbreg_value v_;
};

// ---- the callback boundary ----

namespace detail {

template <class R>
inline constexpr bool is_status_v =
    std::is_same_v<R, status> || std::is_same_v<R, cbreg_status>;

// Raw signature: the C one minus ctx. Returns void or a status.
template <class F>
inline constexpr bool takes_raw_v =
    std::is_invocable_v<const F&, const cbreg_value*, std::size_t, cbreg_value*>;
template <class F>
inline constexpr bool takes_args_v = std::is_invocable_v<const F&, args>;
template <class F>
inline constexpr bool takes_nothing_v = std::is_invocable_v<const F&>;
template <class F>
inline constexpr bool is_callback_v = takes_raw_v<F> || takes_args_v<F> || takes_nothing_v<F>;

// What a callable's result becomes: void is OK, a status is that status,
// anything else is the return value (owned if it is a string or vector).
template <class R>
std::uint32_t finish(R&& r, cbreg_value* ret) {
    using U = std::remove_cv_t<std::remove_reference_t<R>>;
    if constexpr (is_status_v<U>) {
        return static_cast<std::uint32_t>(r);
    } else {
        static_assert(!std::is_convertible_v<const U&, std::string_view> ||
                          std::is_same_v<U, std::string>,
                      "cbreg: a callback may not return a borrowed string (it would dangle); "
                      "return std::string, or a cbreg_value built with cbreg::value::str");
        static_assert(!std::is_pointer_v<U> || std::is_same_v<U, void*>,
                      "cbreg: return a void* (PTR) or a cbreg_value, not a typed pointer");
        if constexpr (std::is_same_v<U, std::string> ||
                      std::is_same_v<U, std::vector<typename value::detail::element_of<U>::type>>) {
            *ret = value::owned(U(std::forward<R>(r)));
        } else {
            *ret = value::from(r);
        }
        return CBREG_STATUS_OK;
    }
}

template <class F, class... A>
std::uint32_t run_with(const F& f, cbreg_value* ret, A&&... a) {
    using R = std::invoke_result_t<const F&, A...>;
    if constexpr (std::is_void_v<R>) {
        std::invoke(f, std::forward<A>(a)...);
        return CBREG_STATUS_OK;
    } else {
        return finish(std::invoke(f, std::forward<A>(a)...), ret);
    }
}

template <class F>
std::uint32_t run(const F& f, const cbreg_value* argv, std::size_t n, cbreg_value* ret) {
    if constexpr (takes_raw_v<F>) {
        using R = std::invoke_result_t<const F&, const cbreg_value*, std::size_t, cbreg_value*>;
        static_assert(std::is_void_v<R> || is_status_v<R>,
                      "cbreg: a (const cbreg_value*, size_t, cbreg_value*) callback returns "
                      "void or a status and fills *ret itself");
        return run_with(f, ret, argv, n, ret);
    } else if constexpr (takes_args_v<F>) {
        return run_with(f, ret, args(argv, n));
    } else {
        return run_with(f, ret);
    }
}

// ctx is a heap-moved F; `call` and `release` are what the core stores.
// Not noexcept, and no catch-all that swallows a forced unwind: a runtime
// may end the thread inside a callback (CPython's pthread_exit when a thread
// takes the GIL back during finalization), and that unwind must pass (the
// core's callback type is C-unwind). Every other exception stops here.
template <class F>
struct entry {
    static std::uint32_t call(void* ctx, const cbreg_value* argv, std::size_t n,
                              cbreg_value* ret) {
        cbreg_value scratch = value::none();
        std::uint32_t code;
        try {
            code = run(*static_cast<const F*>(ctx), argv, n, ret ? ret : &scratch);
        }
#if CBREG_HAS_FORCED_UNWIND
        catch (abi::__forced_unwind&) {
            throw;
        }
#endif
        catch (...) {
            code = CBREG_STATUS_CALLBACK_FAILED;
        }
        cbreg_value_drop(&scratch);
        return code;
    }
    static void release(void* ctx) {
        try {
            delete static_cast<F*>(ctx);
        }
#if CBREG_HAS_FORCED_UNWIND
        catch (abi::__forced_unwind&) {
            throw;
        }
#endif
        catch (...) {
        }
    }
};

}  // namespace detail

// ---- subscriptions ----

// Owns one registered entry: unregisters it on destruction (not waiting
// for invocations in flight on other threads; see unregister_wait). The
// entry's release then runs where the core decides. Move-only.
class [[nodiscard]] subscription {
public:
    subscription() noexcept = default;
    // Adopts entry `id` of `reg` (e.g. an id from release() or from C).
    subscription(cbreg_registry reg, std::uint64_t id) noexcept : reg_(reg), id_(id) {}
    subscription(subscription&& o) noexcept : reg_(o.reg_), id_(std::exchange(o.id_, 0)) {}
    subscription& operator=(subscription&& o) noexcept {
        if (this != &o) {
            reset();
            reg_ = o.reg_;
            id_ = std::exchange(o.id_, 0);
        }
        return *this;
    }
    subscription(const subscription&) = delete;
    subscription& operator=(const subscription&) = delete;
    ~subscription() { reset(); }

    std::uint64_t id() const noexcept { return id_; }
    cbreg_registry registry_handle() const noexcept { return reg_; }
    explicit operator bool() const noexcept { return id_ != 0; }

    // Unregisters now (status ignored: NOT_FOUND after a one-shot ran or a
    // clear, INVALID_REGISTRY after the registry went) and becomes empty.
    void reset() noexcept {
        if (id_ != 0) (void)cbreg_unregister(reg_, std::exchange(id_, 0));
    }
    // As reset, returning the core's status.
    status unregister() noexcept {
        return detail::from_c(cbreg_unregister(reg_, std::exchange(id_, 0)));
    }
    // Unregisters and waits for invocations in flight. WOULD_DEADLOCK from
    // inside this entry's own callback: then nothing changed, and this
    // subscription still owns the entry.
    status unregister_wait() noexcept {
        status s = detail::from_c(cbreg_unregister_wait(reg_, id_));
        if (s != status::would_deadlock) id_ = 0;
        return s;
    }
    // Detaches: the entry stays registered; returns its id.
    [[nodiscard]] std::uint64_t release() noexcept { return std::exchange(id_, 0); }

private:
    cbreg_registry reg_{0};
    std::uint64_t id_ = 0;
};

// ---- registries ----

// A resolved call site (registry::site): one entry, invoked again and again
// with less work than by id; what an audio thread keeps per event. Plain
// data: copy it, share it between threads. Once the entry is unregistered
// (or its registry destroyed) calls return not_found (invalid_registry),
// never another entry. A default-constructed site answers invalid_argument.
class site {
public:
    site() noexcept = default;
    explicit site(const cbreg_site& s) noexcept : s_(s) {}

    // cbreg_site_invoke as is. The invoke functions throw nothing, yet are
    // not noexcept: a runtime may end the thread inside the callback with a
    // forced unwind (CPython's pthread_exit when a thread takes the GIL back
    // during finalization), which must pass, as through the core.
    status invoke_raw(const cbreg_value* argv, std::size_t n, cbreg_value* ret = nullptr) const {
        return detail::from_c(cbreg_site_invoke(&s_, argv, n, ret));
    }
    // Invokes with arguments converted by value::from (on the stack, no
    // allocation); any return value is discarded.
    template <class... A>
    status operator()(const A&... a) const {
        return invoke_with(nullptr, a...);
    }
    // As operator(), keeping the return value in `ret`.
    template <class... A>
    status invoke_into(result& ret, const A&... a) const {
        return invoke_with(ret.out(), a...);
    }
    const cbreg_site& raw() const noexcept { return s_; }

private:
    template <class... A>
    status invoke_with(cbreg_value* ret, const A&... a) const {
        if constexpr (sizeof...(A) == 0) {
            return invoke_raw(nullptr, 0, ret);
        } else {
            const cbreg_value argv[] = {value::from(a)...};
            return invoke_raw(argv, sizeof...(A), ret);
        }
    }

    cbreg_site s_{};
};

// A registry of its own (default constructor; destroyed with
// cbreg_registry_free, which closes, waits and releases everything), or a
// non-owning view of one (global(), borrow()). Move-only; a moved-from
// registry holds handle 0, which the core answers with INVALID_REGISTRY.
class registry {
public:
    // Creates a registry; throws error on failure.
    registry() {
        cbreg_registry h{0};
        detail::throw_unless_ok(detail::from_c(cbreg_registry_new(&h)));
        reg_ = h;
        owned_ = true;
    }
    // The process-wide default registry (never destroyed).
    static registry global() noexcept { return registry(cbreg_default(), false); }
    // A view of a registry someone else owns.
    static registry borrow(cbreg_registry h) noexcept { return registry(h, false); }

    registry(registry&& o) noexcept
        : reg_(std::exchange(o.reg_, cbreg_registry{0})), owned_(std::exchange(o.owned_, false)) {}
    registry& operator=(registry&& o) noexcept {
        if (this != &o) {
            (void)destroy();
            reg_ = std::exchange(o.reg_, cbreg_registry{0});
            owned_ = std::exchange(o.owned_, false);
        }
        return *this;
    }
    registry(const registry&) = delete;
    registry& operator=(const registry&) = delete;
    // Status ignored: from inside one of its own callbacks the core refuses
    // (WOULD_DEADLOCK) and that registry stays alive, unowned (so too when
    // move-assigning over it there).
    ~registry() { (void)destroy(); }

    // Owner: destroys the registry now and forgets it, unless the core
    // refuses (WOULD_DEADLOCK: nothing changed). A view just forgets.
    status destroy() noexcept {
        status s = owned_ ? detail::from_c(cbreg_registry_free(reg_)) : status::ok;
        if (s != status::would_deadlock) {
            reg_ = cbreg_registry{0};
            owned_ = false;
        }
        return s;
    }

    cbreg_registry handle() const noexcept { return reg_; }
    bool owns() const noexcept { return owned_; }

    // Registers any callable invocable as const with one of
    //   (const cbreg_value* args, size_t n, cbreg_value* ret) -> void | status
    //   (cbreg::args) -> void | status | a value (std::string, vectors owned)
    //   ()            -> likewise
    // It is moved to the heap and destroyed by the entry's release. Throws
    // error with the core's status (the callable is then destroyed here).
    template <class F>
    subscription subscribe(F&& f, std::uint32_t flags = persistent) const {
        using Fn = std::decay_t<F>;
        static_assert(detail::is_callback_v<Fn>,
                      "cbreg::registry::subscribe: the callable must be invocable as const with "
                      "(const cbreg_value*, size_t, cbreg_value*), (cbreg::args) or (); a "
                      "`mutable` lambda is refused because invocations can run concurrently");
        auto ctx = std::make_unique<Fn>(std::forward<F>(f));
        std::uint64_t id = 0;
        detail::throw_unless_ok(detail::from_c(cbreg_register(
            reg_, &detail::entry<Fn>::call, ctx.get(), &detail::entry<Fn>::release, flags, &id)));
        ctx.release();  // the entry owns it now
        return subscription(reg_, id);
    }
    // A C-style entry. Throws error on failure; `ctx` is then still yours.
    subscription subscribe_raw(cbreg_call_fn fn, void* ctx, cbreg_release_fn release,
                               std::uint32_t flags = persistent) const {
        std::uint64_t id = 0;
        detail::throw_unless_ok(detail::from_c(cbreg_register(reg_, fn, ctx, release, flags, &id)));
        return subscription(reg_, id);
    }

    // cbreg_invoke as is. Throws nothing, yet not noexcept (nor are the
    // other invoke functions): see site::invoke_raw.
    status invoke_raw(std::uint64_t id, const cbreg_value* argv, std::size_t n,
                      cbreg_value* ret = nullptr) const {
        return detail::from_c(cbreg_invoke(reg_, id, argv, n, ret));
    }
    // Invokes with arguments converted by value::from (on the stack, no
    // allocation); any return value is discarded.
    template <class... A>
    status invoke(std::uint64_t id, const A&... a) const {
        return invoke_with(nullptr, id, a...);
    }
    // As invoke, keeping the return value in `ret`.
    template <class... A>
    status invoke_into(result& ret, std::uint64_t id, const A&... a) const {
        return invoke_with(ret.out(), id, a...);
    }
    // As invoke_into, returning the value; throws error unless OK.
    template <class... A>
    result call(std::uint64_t id, const A&... a) const {
        result r;
        detail::throw_unless_ok(invoke_into(r, id, a...));
        return r;
    }

    // Resolves entry `id` to a call site (not_found unless it is live).
    status resolve(std::uint64_t id, cbreg::site& out) const noexcept {
        cbreg_site s{};
        status st = detail::from_c(cbreg_site_resolve(reg_, id, &s));
        if (st == status::ok) out = cbreg::site(s);
        return st;
    }
    // As resolve; throws error unless OK.
    cbreg::site site(std::uint64_t id) const {
        cbreg::site out;
        detail::throw_unless_ok(resolve(id, out));
        return out;
    }

    status unregister(std::uint64_t id) const noexcept {
        return detail::from_c(cbreg_unregister(reg_, id));
    }
    status unregister_wait(std::uint64_t id) const noexcept {
        return detail::from_c(cbreg_unregister_wait(reg_, id));
    }
    // `count`, `released` (may be null): as the C out-parameters.
    status clear(std::size_t* count = nullptr) const noexcept {
        return detail::from_c(cbreg_clear(reg_, count));
    }
    status close(std::size_t* count = nullptr) const noexcept {
        return detail::from_c(cbreg_close(reg_, count));
    }
    status collect(std::size_t* released = nullptr) const noexcept {
        return detail::from_c(cbreg_collect(reg_, released));
    }
    // Posts an event for entry `id` (cbreg_post): the arguments, converted
    // by value::from, are copied into the calling thread's queue to the
    // entry's target, which invokes the entry later. Returns at once: no
    // lock, no allocation; status::full when the queue has no room.
    template <class... A>
    status post(std::uint64_t id, const A&... a) const noexcept {
        return post_flags(0, id, a...);
    }
    // As post, with CBREG_POST_NO_WAKE and/or CBREG_POST_COALESCE.
    template <class... A>
    status post_flags(std::uint32_t flags, std::uint64_t id, const A&... a) const noexcept {
        if constexpr (sizeof...(A) == 0) {
            return detail::from_c(cbreg_post(reg_, id, nullptr, 0, flags));
        } else {
            const cbreg_value argv[] = {value::from(a)...};
            return detail::from_c(cbreg_post(reg_, id, argv, sizeof...(A), flags));
        }
    }
    // Where entry `id`'s events go (cbreg_entry_set_target).
    status set_target(std::uint64_t id, cbreg_target target) const noexcept {
        return detail::from_c(cbreg_entry_set_target(reg_, id, target));
    }

    status stats(struct cbreg_stats& out) const noexcept {
        return detail::from_c(cbreg_stats_get(reg_, &out));
    }
    // Throws error unless OK.
    struct cbreg_stats stats() const {
        struct cbreg_stats s {};
        detail::throw_unless_ok(stats(s));
        return s;
    }

private:
    registry(cbreg_registry h, bool owned) noexcept : reg_(h), owned_(owned) {}

    template <class... A>
    status invoke_with(cbreg_value* ret, std::uint64_t id, const A&... a) const {
        if constexpr (sizeof...(A) == 0) {
            return invoke_raw(id, nullptr, 0, ret);
        } else {
            const cbreg_value argv[] = {value::from(a)...};
            return invoke_raw(id, argv, sizeof...(A), ret);
        }
    }

    cbreg_registry reg_{0};
    bool owned_ = false;
};

// cbreg's native dispatcher thread: every entry's target until set.
inline constexpr cbreg_target dispatcher{0};

// Claims the calling thread's queue to `target` ahead of time (call it
// before the thread goes real-time): cbreg_post_reserve.
inline status post_reserve(cbreg_target target = dispatcher) noexcept {
    return detail::from_c(cbreg_post_reserve(target));
}

// A target the host drains from its own loop (cbreg_pump_new): poll fd()
// for reading, call drain() when it is readable. Move-only; freed on
// destruction (events still queued are dropped and counted as closed).
class pump {
public:
    // Throws error on failure.
    explicit pump(const cbreg_post_config* config = nullptr) {
        detail::throw_unless_ok(detail::from_c(cbreg_pump_new(config, &t_)));
        owned_ = true;
    }
    pump(pump&& o) noexcept : t_(o.t_), owned_(std::exchange(o.owned_, false)) {}
    pump& operator=(pump&& o) noexcept {
        if (this != &o) {
            reset();
            t_ = o.t_;
            owned_ = std::exchange(o.owned_, false);
        }
        return *this;
    }
    pump(const pump&) = delete;
    pump& operator=(const pump&) = delete;
    ~pump() { reset(); }

    cbreg_target target() const noexcept { return t_; }
    // The descriptor that is readable while events wait (-1 where none).
    int fd() const noexcept {
        int fd = -1;
        (void)cbreg_pump_fd(t_, &fd);
        return fd;
    }
    // Delivers up to `max` events on this thread; returns how many it took.
    // Not noexcept: the callbacks run here (see site::invoke_raw).
    std::size_t drain(std::size_t max = SIZE_MAX) const {
        std::size_t n = 0;
        (void)cbreg_pump_drain(t_, max, &n);
        return n;
    }
    status stats(struct cbreg_post_stats& out) const noexcept {
        return detail::from_c(cbreg_post_stats_get(t_, &out));
    }

private:
    void reset() noexcept {
        if (owned_) (void)cbreg_pump_free(t_);
        owned_ = false;
    }
    cbreg_target t_{0};
    bool owned_ = false;
};

// ---- signals ----

// One subscription to a signal, owned: disconnects on destruction (as
// boost::signals2::scoped_connection), which unregisters the subscriber's
// entry; no emit calls it after that, one running on another thread
// included. Move-only; release() keeps the subscription and returns its id.
class [[nodiscard]] connection {
public:
    connection() noexcept = default;
    // Adopts subscription `id` of `sig`.
    connection(cbreg_signal sig, std::uint64_t id) noexcept : sig_(sig), id_(id) {}
    connection(connection&& o) noexcept : sig_(o.sig_), id_(std::exchange(o.id_, 0)) {}
    connection& operator=(connection&& o) noexcept {
        if (this != &o) {
            disconnect();
            sig_ = o.sig_;
            id_ = std::exchange(o.id_, 0);
        }
        return *this;
    }
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;
    ~connection() { disconnect(); }

    std::uint64_t id() const noexcept { return id_; }
    explicit operator bool() const noexcept { return id_ != 0; }

    // Unsubscribes now (status ignored: NOT_FOUND once a one-shot ran) and
    // becomes empty.
    void disconnect() noexcept {
        if (id_ != 0) (void)cbreg_signal_unsubscribe(sig_, std::exchange(id_, 0));
    }
    // As disconnect, returning the core's status.
    status unsubscribe() noexcept {
        return detail::from_c(cbreg_signal_unsubscribe(sig_, std::exchange(id_, 0)));
    }
    // Keeps the subscription; returns its id.
    [[nodiscard]] std::uint64_t release() noexcept { return std::exchange(id_, 0); }

private:
    cbreg_signal sig_{0};
    std::uint64_t id_ = 0;
};

// A signal: emit calls every subscriber once, in subscription order, from
// any thread, without a lock or an allocation. Subscribers are entries of
// the registry the signal was made over. Freed on destruction (every
// subscriber is unregistered). Move-only.
class signal {
public:
    // Throws error on failure.
    explicit signal(const registry& reg = registry::global()) : reg_(reg.handle()) {
        detail::throw_unless_ok(detail::from_c(cbreg_signal_new(reg_, &sig_)));
    }
    signal(signal&& o) noexcept : sig_(std::exchange(o.sig_, cbreg_signal{0})), reg_(o.reg_) {}
    signal& operator=(signal&& o) noexcept {
        if (this != &o) {
            (void)cbreg_signal_free(sig_);
            sig_ = std::exchange(o.sig_, cbreg_signal{0});
            reg_ = o.reg_;
        }
        return *this;
    }
    signal(const signal&) = delete;
    signal& operator=(const signal&) = delete;
    ~signal() { (void)cbreg_signal_free(sig_); }

    cbreg_signal handle() const noexcept { return sig_; }

    // Subscribes any callable registry::subscribe takes (flags: persistent
    // or once). Throws error with the core's status.
    template <class F>
    connection connect(F&& f, std::uint32_t flags = persistent) const {
        subscription entry = registry::borrow(reg_).subscribe(std::forward<F>(f), flags);
        detail::throw_unless_ok(detail::from_c(cbreg_signal_subscribe(sig_, entry.id())));
        return connection(sig_, entry.release());
    }
    // Subscribes an existing entry of the signal's registry; throws error
    // on failure (the entry then stays registered).
    connection connect_id(std::uint64_t id) const {
        detail::throw_unless_ok(detail::from_c(cbreg_signal_subscribe(sig_, id)));
        return connection(sig_, id);
    }

    // cbreg_signal_emit as is: ok, or the first failure's status (the
    // others still ran); `report` (may be null) gets the counts.
    status emit_raw(const cbreg_value* argv, std::size_t n,
                    cbreg_emit_report* report = nullptr) const {
        return detail::from_c(cbreg_signal_emit(sig_, argv, n, report));
    }
    // Emits with arguments converted by value::from (on the stack).
    template <class... A>
    status operator()(const A&... a) const {
        return emit_with(nullptr, a...);
    }
    // As operator(), filling `report`.
    template <class... A>
    status emit_into(cbreg_emit_report& report, const A&... a) const {
        return emit_with(&report, a...);
    }
    // Live subscribers now (0 for a freed signal).
    std::size_t size() const noexcept {
        std::size_t n = 0;
        (void)cbreg_signal_count(sig_, &n);
        return n;
    }

private:
    template <class... A>
    status emit_with(cbreg_emit_report* report, const A&... a) const {
        if constexpr (sizeof...(A) == 0) {
            return emit_raw(nullptr, 0, report);
        } else {
            const cbreg_value argv[] = {value::from(a)...};
            return emit_raw(argv, sizeof...(A), report);
        }
    }

    cbreg_signal sig_{0};
    cbreg_registry reg_{0};
};

// Marks the calling thread real-time for the scope's lifetime: the core then
// never runs a release on it (they wait for a collect on another thread).
// Scopes nest: each restores the mark it found.
class realtime_scope {
public:
    realtime_scope() noexcept : was_(cbreg_thread_is_realtime()) { (void)cbreg_thread_set_realtime(true); }
    ~realtime_scope() { (void)cbreg_thread_set_realtime(was_); }
    realtime_scope(const realtime_scope&) = delete;
    realtime_scope& operator=(const realtime_scope&) = delete;

private:
    bool was_;
};

}  // namespace cbreg

#endif  // CBREG_HPP
