//! The C ABI from Rust: every bad input gets its status, and the committed
//! header matches what cbindgen generates.

use std::ffi::{c_void, CStr};
use std::ptr::{null, null_mut};

use cbreg::ffi::*;
use cbreg::{Stats, Status, Value};

unsafe extern "C-unwind" fn add_one(
    _ctx: *mut c_void,
    args: *const Value,
    nargs: usize,
    ret: *mut Value,
) -> u32 {
    // SAFETY: the registry passes `nargs` values at `args`, valid for the
    // call.
    let args = unsafe { std::slice::from_raw_parts(args, nargs) };
    if !ret.is_null() {
        // SAFETY: a non-null `ret` is storage for a value.
        unsafe { *ret = Value::i64(args[0].as_i64().unwrap() + 1) };
    }
    0
}

unsafe extern "C-unwind" fn returns_unknown_code(
    _: *mut c_void,
    _: *const Value,
    _: usize,
    _: *mut Value,
) -> u32 {
    999
}

fn registered(reg: RegistryHandle) -> u64 {
    let mut id = 0;
    assert_eq!(
        // SAFETY: `add_one` is sound with any ctx from any thread; `out_id` points to a local.
        unsafe { cbreg_register(reg, Some(add_one), null_mut(), None, 0, &mut id) },
        Status::Ok
    );
    id
}

#[test]
#[cfg(feature = "header")]
fn header_is_current() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/cbreg.h"));
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/cbreg.h")).unwrap();
    assert!(
        generated == committed,
        "include/cbreg.h is stale: run `make header` and commit it"
    );
}

#[test]
fn every_status_has_a_message() {
    for code in 0..9u32 {
        // SAFETY: `cbreg_status_str` returns a static NUL-terminated string for any code.
        let msg = unsafe { CStr::from_ptr(cbreg_status_str(code)) }
            .to_str()
            .unwrap();
        assert!(!msg.is_empty() && msg != "unknown status", "code {code}");
    }
    // SAFETY: `cbreg_status_str` returns a static NUL-terminated string for any code.
    let msg = unsafe { CStr::from_ptr(cbreg_status_str(1234)) };
    assert_eq!(msg.to_str().unwrap(), "unknown status");
}

#[test]
fn register_rejects_bad_input() {
    let reg = cbreg_default();
    let mut id = 0;
    assert_eq!(
        // SAFETY: `out_id` points to a local; the NULL call is rejected before any use.
        unsafe { cbreg_register(reg, None, null_mut(), None, 0, &mut id) },
        Status::InvalidArgument,
        "null call"
    );
    assert_eq!(
        // SAFETY: `add_one` is sound from any thread; the NULL `out_id` is rejected before any write.
        unsafe { cbreg_register(reg, Some(add_one), null_mut(), None, 0, null_mut()) },
        Status::InvalidArgument,
        "null out_id"
    );
    assert_eq!(
        // SAFETY: `add_one` is sound from any thread; `out_id` points to a local.
        unsafe { cbreg_register(reg, Some(add_one), null_mut(), None, 0x80, &mut id) },
        Status::InvalidArgument,
        "unknown flag"
    );
    let bogus = RegistryHandle { handle: 0 };
    assert_eq!(
        // SAFETY: `add_one` is sound from any thread; `out_id` points to a local.
        unsafe { cbreg_register(bogus, Some(add_one), null_mut(), None, 0, &mut id) },
        Status::InvalidRegistry
    );
    let unknown = RegistryHandle {
        handle: 7 << 32 | 4000,
    };
    assert_eq!(
        // SAFETY: `add_one` is sound from any thread; `out_id` points to a local.
        unsafe { cbreg_register(unknown, Some(add_one), null_mut(), None, 0, &mut id) },
        Status::InvalidRegistry
    );
    assert_eq!(id, 0, "nothing written on failure");
}

#[test]
fn invoke_rejects_bad_input() {
    let reg = cbreg_default();
    let id = registered(reg);
    let mut ret = Value::none();
    assert_eq!(
        // SAFETY: no arguments (NULL, 0); `ret` points to a local.
        unsafe { cbreg_invoke(reg, 0, null(), 0, &mut ret) },
        Status::NotFound,
        "id 0"
    );
    let mut two = Value::bool(true);
    two.r#as.i64 = 2;
    assert_eq!(
        // SAFETY: one value at `&two`, valid for the call; `ret` points to a local.
        unsafe { cbreg_invoke(reg, id, &two, 1, &mut ret) },
        Status::InvalidArgument,
        "BOOL byte 2"
    );
    let many = vec![Value::i64(1); CBREG_MAX_ARGS + 1];
    assert_eq!(
        // SAFETY: `many` holds `many.len()` values, valid for the call; `ret` points to a local.
        unsafe { cbreg_invoke(reg, id, many.as_ptr(), many.len(), &mut ret) },
        Status::InvalidArgument,
        "nargs over CBREG_MAX_ARGS"
    );
    assert_eq!(
        // SAFETY: the count is checked against CBREG_MAX_ARGS before any value is read; `ret` points to a local.
        unsafe { cbreg_invoke(reg, id, many.as_ptr(), usize::MAX, &mut ret) },
        Status::InvalidArgument,
        "absurd nargs"
    );
    assert_eq!(
        // SAFETY: NULL with a nonzero count is rejected before any read; `ret` points to a local.
        unsafe { cbreg_invoke(reg, id, null(), 1, &mut ret) },
        Status::InvalidArgument,
        "null args"
    );
    let mut bad = Value::i64(1);
    bad.tag = 77;
    assert_eq!(
        // SAFETY: one value at `&bad`, valid for the call; `ret` points to a local.
        unsafe { cbreg_invoke(reg, id, &bad, 1, &mut ret) },
        Status::InvalidArgument,
        "bad tag"
    );
    let mut dangling = Value::str("x");
    dangling.r#as.str = null();
    assert_eq!(
        // SAFETY: one value at `&dangling`, whose NULL string is rejected before any read; `ret` points to a local.
        unsafe { cbreg_invoke(reg, id, &dangling, 1, &mut ret) },
        Status::InvalidArgument,
        "null str"
    );
    assert_eq!(
        // SAFETY: no arguments (NULL, 0); `ret` points to a local.
        unsafe { cbreg_invoke(reg, 12345 << 32 | 3, null(), 0, &mut ret) },
        Status::NotFound,
        "unknown id"
    );
    assert_eq!(
        // SAFETY: no arguments (NULL, 0); `ret` points to a local.
        unsafe { cbreg_invoke(reg, 1 << 32 | 0xFFFF_FFF0, null(), 0, &mut ret) },
        Status::NotFound,
        "index past capacity"
    );
    let arg = Value::i64(41);
    assert_eq!(
        // SAFETY: one value at `&arg`, valid for the call; `ret` points to a local.
        unsafe { cbreg_invoke(reg, id, &arg, 1, &mut ret) },
        Status::Ok
    );
    assert_eq!(ret.as_i64(), Some(42));
    assert_eq!(
        // SAFETY: one value at `&arg`, valid for the call; `ret` may be NULL.
        unsafe { cbreg_invoke(reg, id, &arg, 1, null_mut()) },
        Status::Ok,
        "ret may be NULL"
    );
    assert_eq!(cbreg_unregister(reg, id), Status::Ok);
}

#[test]
fn unknown_callback_codes_become_callback_failed() {
    let reg = cbreg_default();
    let mut id = 0;
    assert_eq!(
        // SAFETY: `returns_unknown_code` touches nothing and is sound from any thread; `out_id` points to a local.
        unsafe {
            cbreg_register(
                reg,
                Some(returns_unknown_code),
                null_mut(),
                None,
                0,
                &mut id,
            )
        },
        Status::Ok
    );
    assert_eq!(
        // SAFETY: no arguments (NULL, 0) and a NULL `ret`.
        unsafe { cbreg_invoke(reg, id, null(), 0, null_mut()) },
        Status::CallbackFailed
    );
    assert_eq!(cbreg_unregister(reg, id), Status::Ok);
}

unsafe extern "C-unwind" fn returns_code_in_ctx(
    ctx: *mut c_void,
    _: *const Value,
    _: usize,
    _: *mut Value,
) -> u32 {
    ctx as usize as u32
}

#[test]
fn a_callbacks_own_codes_are_callback_failed_and_kept_apart() {
    let reg = cbreg_default();
    for code in [1u32, 4, 6, 7, 8, 9] {
        let mut id = 0;
        let ctx = code as usize as *mut c_void;
        assert_eq!(
            // SAFETY: `returns_code_in_ctx` only reads `ctx` as an integer, sound from any thread; `out_id` points to a local.
            unsafe { cbreg_register(reg, Some(returns_code_in_ctx), ctx, None, 0, &mut id) },
            Status::Ok
        );
        assert_eq!(
            // SAFETY: no arguments (NULL, 0) and a NULL `ret`.
            unsafe { cbreg_invoke(reg, id, null(), 0, null_mut()) },
            Status::CallbackFailed,
            "callback code {code}"
        );
        assert_eq!(cbreg_last_callback_code(), code);
        assert_eq!(cbreg_unregister(reg, id), Status::Ok);
        assert_eq!(
            // SAFETY: no arguments (NULL, 0) and a NULL `ret`.
            unsafe { cbreg_invoke(reg, id, null(), 0, null_mut()) },
            Status::NotFound
        );
    }
}

#[test]
fn a_callback_reporting_its_runtime_closed_passes_closed_through() {
    let reg = cbreg_default();
    let mut id = 0;
    let ctx = Status::Closed as usize as *mut c_void;
    assert_eq!(
        // SAFETY: `returns_code_in_ctx` only reads `ctx` as an integer, sound from any thread; `out_id` points to a local.
        unsafe { cbreg_register(reg, Some(returns_code_in_ctx), ctx, None, 0, &mut id) },
        Status::Ok
    );
    assert_eq!(
        // SAFETY: no arguments (NULL, 0) and a NULL `ret`.
        unsafe { cbreg_invoke(reg, id, null(), 0, null_mut()) },
        Status::Closed
    );
    assert_eq!(cbreg_unregister(reg, id), Status::Ok);
}

#[test]
fn removal_calls_reject_bad_input() {
    let reg = cbreg_default();
    assert_eq!(cbreg_unregister(reg, 0), Status::NotFound, "id 0");
    assert_eq!(cbreg_unregister_wait(reg, 0), Status::NotFound, "id 0");
    assert_eq!(cbreg_unregister(reg, 99 << 32 | 1), Status::NotFound);
    assert_eq!(cbreg_unregister_wait(reg, 99 << 32 | 1), Status::NotFound);
    assert_eq!(
        // SAFETY: a NULL `out` is rejected before any write.
        unsafe { cbreg_stats_get(reg, null_mut()) },
        Status::InvalidArgument
    );
    assert_eq!(
        // SAFETY: a NULL `out` is rejected before any write.
        unsafe { cbreg_registry_new(null_mut()) },
        Status::InvalidArgument
    );
    assert_eq!(
        cbreg_registry_free(reg),
        Status::InvalidArgument,
        "the default registry is never freed"
    );
}

#[test]
fn destroyed_registry_gets_invalid_registry_everywhere() {
    let mut reg = RegistryHandle { handle: 0 };
    // SAFETY: `reg` is a local handle to write.
    assert_eq!(unsafe { cbreg_registry_new(&mut reg) }, Status::Ok);
    let id = registered(reg);
    assert_eq!(cbreg_registry_free(reg), Status::Ok);
    let mut stats = Stats::default();
    assert_eq!(
        // SAFETY: no arguments (NULL, 0) and a NULL `ret`.
        unsafe { cbreg_invoke(reg, id, null(), 0, null_mut()) },
        Status::InvalidRegistry
    );
    assert_eq!(cbreg_unregister(reg, id), Status::InvalidRegistry);
    assert_eq!(cbreg_unregister_wait(reg, id), Status::InvalidRegistry);
    assert_eq!(
        // SAFETY: a NULL count pointer is allowed.
        unsafe { cbreg_clear(reg, null_mut()) },
        Status::InvalidRegistry
    );
    assert_eq!(
        // SAFETY: a NULL count pointer is allowed.
        unsafe { cbreg_close(reg, null_mut()) },
        Status::InvalidRegistry
    );
    assert_eq!(
        // SAFETY: a NULL count pointer is allowed.
        unsafe { cbreg_collect(reg, null_mut()) },
        Status::InvalidRegistry
    );
    assert_eq!(
        // SAFETY: `stats` is a local.
        unsafe { cbreg_stats_get(reg, &mut stats) },
        Status::InvalidRegistry
    );
    assert_eq!(cbreg_registry_free(reg), Status::InvalidRegistry);
}

#[test]
fn returned_values_are_freed_by_value_drop() {
    unsafe extern "C-unwind" fn free_box(owner: *mut c_void) {
        // SAFETY: `owner` is the `Box<String>` that `greet` leaked, freed
        // once by the value's drop.
        drop(unsafe { Box::from_raw(owner as *mut String) });
        FREED.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    static FREED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    unsafe extern "C-unwind" fn greet(
        _: *mut c_void,
        _: *const Value,
        _: usize,
        ret: *mut Value,
    ) -> u32 {
        let s = Box::new(String::from("hello"));
        let mut v = Value::str(&s);
        v.owner = Box::into_raw(s) as *mut c_void;
        v.drop = Some(free_box);
        // SAFETY: `ret` is storage for a value (the test passes a local).
        unsafe { *ret = v };
        0
    }
    let reg = cbreg_default();
    let mut id = 0;
    assert_eq!(
        // SAFETY: `greet` writes only through `ret` and is sound from any thread; `out_id` points to a local.
        unsafe { cbreg_register(reg, Some(greet), null_mut(), None, 0, &mut id) },
        Status::Ok
    );
    let mut ret = Value::none();
    assert_eq!(
        // SAFETY: no arguments (NULL, 0); `ret` points to a local.
        unsafe { cbreg_invoke(reg, id, null(), 0, &mut ret) },
        Status::Ok
    );
    // SAFETY: `ret` holds the string `greet` returned, alive until `cbreg_value_drop`.
    assert_eq!(unsafe { ret.as_str() }, Some("hello"));
    // SAFETY: `ret` holds a value the registry returned, dropped once here.
    unsafe { cbreg_value_drop(&mut ret) };
    assert!(FREED.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(ret.tag, 0, "reset to none");
    // SAFETY: NULL is allowed and does nothing.
    unsafe { cbreg_value_drop(null_mut()) };
    assert_eq!(cbreg_unregister(reg, id), Status::Ok);
}
