//! The thread's record word (`hazard.rs`): the one thread-local the invoke
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
//! The word always holds an address: of the thread's record, or of one of
//! the placeholders `hazard.rs` keeps for a thread without one, so the fast
//! path reads through it with no test (`hazard::fast_record`).

#[cfg(all(target_arch = "x86_64", target_os = "linux", not(loom)))]
mod imp {
    // The word itself: 8 bytes of initialised TLS, starting as the address
    // of `hazard::NONE_YET` (a relocated value in the TLS image, which the
    // loader fills in before any thread copies it). Hidden, so each copy of
    // the library (a static copy in a plugin, say) has its own; the name
    // carries the crate version.
    std::arch::global_asm!(
        ".pushsection .tdata.cbreg_0_1_record_word,\"awT\",@progbits",
        ".p2align 3",
        ".globl cbreg_0_1_record_word",
        ".hidden cbreg_0_1_record_word",
        ".type cbreg_0_1_record_word,@object",
        ".size cbreg_0_1_record_word,8",
        "cbreg_0_1_record_word:",
        ".quad {none_yet}",
        ".popsection",
        none_yet = sym crate::hazard::NONE_YET,
    );

    // The symbol above names the crate version it was written for.
    const _: () = assert!(matches!(
        env!("CARGO_PKG_VERSION").as_bytes(),
        [b'0', b'.', b'1', b'.', ..]
    ));

    /// The descriptor call, then `$access` on `fs:[rax]`. The resolver
    /// preserves every register but rax; the vector registers are declared
    /// clobbered for older resolvers (see the module doc). It may use the
    /// stack, which `asm!` without `nostack` allows.
    macro_rules! with_word {
        ($access:literal, $($operands:tt)*) => {
            std::arch::asm!(
                "lea rax, [rip + cbreg_0_1_record_word@TLSDESC]",
                "call qword ptr [rax + cbreg_0_1_record_word@TLSCALL]",
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

    #[inline(always)]
    pub(crate) fn get() -> usize {
        let word: usize;
        // SAFETY: reads this thread's own word (see `with_word`).
        unsafe {
            with_word!(
                "mov {word}, qword ptr fs:[rax]",
                word = lateout(reg) word,
                options(readonly, preserves_flags),
            )
        };
        word
    }

    #[inline(always)]
    pub(crate) fn set(word: usize) {
        // SAFETY: writes this thread's own word (see `with_word`).
        unsafe {
            with_word!(
                "mov qword ptr fs:[rax], {word}",
                word = in(reg) word,
                options(preserves_flags),
            )
        };
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(loom))))]
mod imp {
    // Set on first use, to the address of `hazard::NONE_YET` (which a
    // constant cannot take), so reading it checks whether it was set.
    #[cfg(not(loom))]
    std::thread_local! { static WORD: std::cell::Cell<usize> = std::cell::Cell::new(crate::hazard::none_yet_word()); }
    #[cfg(loom)]
    loom::thread_local! { static WORD: std::cell::Cell<usize> = std::cell::Cell::new(crate::hazard::none_yet_word()); }

    #[inline(always)]
    pub(crate) fn get() -> usize {
        WORD.with(|w| w.get())
    }

    #[inline(always)]
    pub(crate) fn set(word: usize) {
        WORD.with(|w| w.set(word))
    }
}

pub(crate) use imp::{get, set};
