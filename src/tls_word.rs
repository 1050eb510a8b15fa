//! The thread's record word (`hazard/pool.rs`): the one thread-local the invoke
//! fast path reads, kept where reading it costs the least.
//!
//! A Rust `thread_local!` in position-independent code is reached through
//! `__tls_get_addr`, an ordinary call as far as the compiler knows: every
//! value the invoke path holds must then live in a saved register or on the
//! stack across it, which costs more than the read itself (about 12 of the
//! path's instructions). On x86-64 Linux the word is instead defined here
//! and read with the TLS descriptor sequence (`lea x@TLSDESC`, `call
//! [rax + x@TLSCALL]`), whose resolver preserves every register but `rax`:
//! the linker turns it into one `mov` in an executable, and in a shared
//! library the dynamic loader's resolver is two instructions when the
//! library got static TLS space, which it does when loaded at start-up or
//! when space is left. Older glibc resolvers for the remaining case (a
//! library opened late, with no static TLS space left) did not preserve
//! vector registers, so the blocks below declare them clobbered; nothing on
//! the paths that read the word is held in one.
//!
//! Everywhere else (and under loom) the word is a `thread_local!` cell.
//!
//! The word always holds an address: of the thread's record, or of a
//! placeholder first cell for a thread without one, so the fast path reads
//! through it with no test (`hazard::fast_record`). The first placeholder,
//! the word's initial value, is defined here (`NONE_YET`), so the word
//! depends on nothing; `hazard/pool.rs` keeps the other.
//!
//! The Python adapter keeps a second word the same way (`python_word`): a
//! native thread's pointer to its kept-state record, read on each of its
//! calls into Python.

use crate::sync::{global, AtomicUsize};

/// What a placeholder's first cell holds to keep the invoke fast path away
/// (`hazard/record.rs`): never a slot's address and never 0.
pub(crate) const BLOCKED: usize = 1;

global! {
    /// Where the record word points before the thread's first invoke (its
    /// initial value): a first cell that holds `BLOCKED`.
    pub(crate) static NONE_YET: AtomicUsize = AtomicUsize::new(BLOCKED);
}

/// The word of a thread with no record yet.
pub(crate) fn none_yet_word() -> usize {
    let cell: &AtomicUsize = &NONE_YET;
    cell as *const AtomicUsize as usize
}

/// `cbreg_<v>_<name>`, where `<v>` is the compatible part of the crate
/// version (`0_1` for 0.1.x, `2` for 2.x.y), so two incompatible copies
/// linked into one object never share a word. build.rs derives it from
/// `version` in Cargo.toml, so a release renames nothing here. Only the
/// assembly words have names.
#[cfg_attr(
    not(all(target_arch = "x86_64", target_os = "linux", not(loom), not(miri))),
    allow(unused_macros)
)]
macro_rules! versioned {
    ($name:literal) => {
        concat!("cbreg_", env!("CBREG_SYMBOL_VERSION"), "_", $name)
    };
}

#[cfg(all(target_arch = "x86_64", target_os = "linux", not(loom), not(miri)))]
mod imp {
    // The word itself: 8 bytes of initialised TLS, starting as the address
    // of `NONE_YET` (a relocated value in the TLS image, which the
    // loader fills in before any thread copies it). Hidden, so each copy of
    // the library (a static copy in a plugin, say) has its own; the name
    // carries the crate's compatible version (`versioned!`).
    std::arch::global_asm!(
        concat!(".pushsection .tdata.", versioned!("record_word"), ",\"awT\",@progbits"),
        ".p2align 3",
        concat!(".globl ", versioned!("record_word")),
        concat!(".hidden ", versioned!("record_word")),
        concat!(".type ", versioned!("record_word"), ",@object"),
        concat!(".size ", versioned!("record_word"), ",8"),
        concat!(versioned!("record_word"), ":"),
        ".quad {none_yet}",
        ".popsection",
        none_yet = sym super::NONE_YET,
    );

    /// The descriptor call for the word named `$word`, then `$access` on
    /// `fs:[rax]`. The resolver preserves every register but rax; the
    /// vector registers are declared clobbered for older resolvers (see the
    /// module doc). It may use the stack, which `asm!` without `nostack`
    /// allows.
    macro_rules! with_tls_word {
        ($word:expr, $access:literal, $($operands:tt)*) => {
            std::arch::asm!(
                concat!("lea rax, [rip + ", $word, "@TLSDESC]"),
                concat!("call qword ptr [rax + ", $word, "@TLSCALL]"),
                $access,
                $($operands)*
                out("rax") _,
                out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
                out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
                out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
                out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
            )
        };
    }

    /// `get` and `set` of the word named `$word` (defined in assembly, with
    /// its initial value: `$initial` serves the cell of other targets).
    macro_rules! word_access {
        ($word:expr, $initial:expr) => {
            #[inline(always)]
            pub(crate) fn get() -> usize {
                let word: usize;
                // SAFETY: reads this thread's own word (see `with_tls_word`).
                unsafe {
                    with_tls_word!(
                        $word,
                        "mov {word}, qword ptr fs:[rax]",
                        word = lateout(reg) word,
                        options(readonly, preserves_flags),
                    )
                };
                word
            }

            #[inline(always)]
            pub(crate) fn set(word: usize) {
                // SAFETY: writes this thread's own word (see `with_tls_word`).
                unsafe {
                    with_tls_word!(
                        $word,
                        "mov qword ptr fs:[rax], {word}",
                        word = in(reg) word,
                        options(preserves_flags),
                    )
                };
            }
        };
    }
    #[cfg_attr(not(feature = "python"), allow(unused_imports))]
    pub(super) use {with_tls_word, word_access};

    word_access!(versioned!("record_word"), super::none_yet_word());
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(loom), not(miri))))]
mod imp {
    /// `get` and `set` of a `thread_local!` cell set to `$initial` on
    /// first use (not a constant: the record word starts as the address of
    /// `NONE_YET`, which a constant cannot take), so each read
    /// checks whether it was set.
    macro_rules! word_access {
        ($word:expr, $initial:expr) => {
            #[cfg(not(loom))]
            std::thread_local! { static WORD: std::cell::Cell<usize> = std::cell::Cell::new($initial); }
            #[cfg(loom)]
            loom::thread_local! { static WORD: std::cell::Cell<usize> = std::cell::Cell::new($initial); }

            #[inline(always)]
            pub(crate) fn get() -> usize {
                WORD.with(|w| w.get())
            }

            #[inline(always)]
            pub(crate) fn set(word: usize) {
                WORD.with(|w| w.set(word))
            }
        };
    }
    #[cfg_attr(not(feature = "python"), allow(unused_imports))]
    pub(super) use word_access;

    word_access!(versioned!("record_word"), super::none_yet_word());
}

pub(crate) use imp::{get, set};

/// The Python adapter's word: this thread's kept-state record
/// (`python/kept.rs`), 0 while it keeps none.
#[cfg(feature = "python")]
pub(crate) mod python_word {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", not(loom), not(miri)))]
    use super::imp::with_tls_word;

    // 8 bytes of initialised TLS starting at 0, hidden as the record word
    // is.
    #[cfg(all(target_arch = "x86_64", target_os = "linux", not(loom), not(miri)))]
    std::arch::global_asm!(
        concat!(
            ".pushsection .tdata.",
            versioned!("python_word"),
            ",\"awT\",@progbits"
        ),
        ".p2align 3",
        concat!(".globl ", versioned!("python_word")),
        concat!(".hidden ", versioned!("python_word")),
        concat!(".type ", versioned!("python_word"), ",@object"),
        concat!(".size ", versioned!("python_word"), ",8"),
        concat!(versioned!("python_word"), ":"),
        ".quad 0",
        ".popsection",
    );

    super::imp::word_access!(versioned!("python_word"), 0);
}

/// `post`'s word: the ring this thread last posted through
/// (`post/push.rs`), `post::NO_RING` while it has none (so the post path
/// reads through it with no test); read on each post.
pub(crate) mod post_word {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", not(loom)))]
    use super::imp::with_tls_word;

    // 8 bytes of initialised TLS starting as the address of
    // `post::NO_RING` (relocated, as the record word's first value is),
    // hidden as the record word is.
    #[cfg(all(target_arch = "x86_64", target_os = "linux", not(loom)))]
    std::arch::global_asm!(
        concat!(
            ".pushsection .tdata.",
            versioned!("post_word"),
            ",\"awT\",@progbits"
        ),
        ".p2align 3",
        concat!(".globl ", versioned!("post_word")),
        concat!(".hidden ", versioned!("post_word")),
        concat!(".type ", versioned!("post_word"), ",@object"),
        concat!(".size ", versioned!("post_word"), ",8"),
        concat!(versioned!("post_word"), ":"),
        ".quad {no_ring}",
        ".popsection",
        no_ring = sym crate::post::NO_RING,
    );

    super::imp::word_access!(versioned!("post_word"), crate::post::no_ring_word());
}
