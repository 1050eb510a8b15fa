//! Safe argument access: a Rust callback reads every kind of argument
//! without `unsafe`, whether a Rust caller or a C caller built the vector.

use std::mem::{align_of, size_of};
use std::ptr::null_mut;

use cbreg::ffi::{cbreg_invoke, CBREG_MAX_ARGS};
use cbreg::{Arg, Registry, Status, Tag, Value};

// An `&[Value]` from C is read as an `&[Arg]` in place.
const _: () = assert!(size_of::<Arg>() == size_of::<Value>());
const _: () = assert!(align_of::<Arg>() == align_of::<Value>());

fn is_send_sync<T: Send + Sync>() {}

#[test]
fn arg_is_plain_shareable_data() {
    is_send_sync::<Arg>();
    let a = Arg::str("A4");
    let b = a; // Copy
    assert_eq!(a.as_str(), b.as_str());
    assert_eq!(format!("{a:?}"), r#"Str("A4")"#);
}

#[test]
fn a_callback_reads_strings_bytes_and_arrays_without_unsafe() {
    let reg = Registry::new().unwrap();
    let sub = reg
        .register(|a: &[Arg], ret: &mut Value| {
            assert_eq!(a.len(), 9);
            assert_eq!(a[0].tag(), Tag::None);
            assert_eq!(a[1].as_bool(), Some(true));
            assert_eq!(a[2].as_i64(), Some(-7));
            assert_eq!(a[3].as_f64(), Some(440.0));
            assert_eq!(a[4].as_str(), Some("A4"));
            assert_eq!(a[4].as_bytes(), Some(&b"A4"[..]));
            assert_eq!(a[5].as_bytes(), Some(&[0u8, 255][..]));
            assert_eq!(a[5].as_str(), None, "bytes are not a string");
            assert_eq!(a[6].as_i64s(), Some(&[1i64, 2, 3][..]));
            assert_eq!(a[7].as_f64s(), Some(&[0.5f64][..]));
            assert_eq!(a[7].as_i64s(), None);
            assert_eq!(a[8].as_ptr(), Some(8usize as *mut std::ffi::c_void));
            *ret = Value::i64(a[6].as_i64s().unwrap_or_default().iter().sum());
            Ok(())
        })
        .unwrap();
    let name = String::from("A4");
    let args = [
        Arg::none(),
        Arg::bool(true),
        Arg::i64(-7),
        Arg::f64(440.0),
        Arg::str(&name),
        Arg::bytes(&[0, 255]),
        Arg::i64_array(&[1, 2, 3]),
        Arg::f64_array(&[0.5]),
        Arg::ptr(8usize as *mut _),
    ];
    assert_eq!(reg.invoke(sub.id(), &args).unwrap().as_i64(), Some(6));
}

#[test]
fn empty_strings_bytes_and_arrays_read_as_empty() {
    let reg = Registry::new().unwrap();
    let sub = reg
        .register(|a: &[Arg], _: &mut Value| {
            assert_eq!(a[0].as_str(), Some(""));
            assert_eq!(a[1].as_bytes(), Some(&[][..]));
            assert_eq!(a[2].as_i64s(), Some(&[][..]));
            assert_eq!(a[3].as_f64s(), Some(&[][..]));
            Ok(())
        })
        .unwrap();
    let args = [
        Arg::str(""),
        Arg::bytes(&[]),
        Arg::i64_array(&[]),
        Arg::f64_array(&[]),
    ];
    assert_eq!(reg.call(sub.id(), &args), Status::Ok);
}

#[test]
fn invalid_utf8_from_c_is_no_str_but_still_bytes() {
    let reg = Registry::new().unwrap();
    let sub = reg
        .register(|a: &[Arg], _: &mut Value| {
            assert_eq!(a[0].tag(), Tag::Str);
            assert_eq!(a[0].as_str(), None);
            assert_eq!(a[0].as_bytes(), Some(&[b'A', 0xff][..]));
            Ok(())
        })
        .unwrap();
    let raw = [b'A', 0xff];
    let mut not_utf8 = Value::bytes(&raw);
    not_utf8.tag = Tag::Str as u32; // what a C caller may pass
    let handle = cbreg::ffi::RegistryHandle {
        handle: reg.handle(),
    };
    assert_eq!(
        // SAFETY: one value at `&not_utf8`, whose bytes `raw` outlives the call; a NULL `ret`.
        unsafe { cbreg_invoke(handle, sub.id(), &not_utf8, 1, null_mut()) },
        Status::Ok
    );
}

#[test]
fn a_callback_passes_its_arguments_on_to_another_invoke() {
    let reg = std::sync::Arc::new(Registry::new().unwrap());
    let inner = reg
        .register(|a: &[Arg], ret: &mut Value| {
            *ret = Value::i64(a[0].as_str().map_or(-1, |s| s.len() as i64));
            Ok(())
        })
        .unwrap();
    let (r, inner_id) = (reg.clone(), inner.id());
    let outer = reg
        .register(move |a: &[Arg], ret: &mut Value| {
            *ret = r.invoke(inner_id, a)?;
            Ok(())
        })
        .unwrap();
    let text = String::from("forwarded");
    let got = reg.invoke(outer.id(), &[Arg::str(&text)]).unwrap();
    assert_eq!(got.as_i64(), Some(9));
}

#[test]
fn more_than_the_argument_bound_is_refused() {
    let reg = Registry::new().unwrap();
    let sub = reg.register(|_: &[Arg], _: &mut Value| Ok(())).unwrap();
    let many = vec![Arg::i64(1); CBREG_MAX_ARGS + 1];
    assert_eq!(reg.call(sub.id(), &many), Status::InvalidArgument);
    assert_eq!(reg.call(sub.id(), &many[..CBREG_MAX_ARGS]), Status::Ok);
}

#[test]
fn arg_views_values_an_adapter_vouches_for() {
    let text = String::from("from an adapter");
    let values = [Value::str(&text), Value::i64(3)];
    // SAFETY: both values are well formed and `text` outlives the view.
    let args = unsafe { Arg::from_values(&values) };
    assert_eq!(args[0].as_str(), Some("from an adapter"));
    assert_eq!(args[1].as_i64(), Some(3));
    assert_eq!(args[0].as_value().len, text.len());
    assert_eq!(Arg::as_values(args).len(), 2);
}
