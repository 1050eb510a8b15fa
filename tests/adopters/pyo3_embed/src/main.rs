//! A Rust program that embeds Python and adds cbreg with its `python`
//! feature: a callable registered through the `cbreg` Python package and
//! one registered through the crate's adapter both fire from a native
//! thread of the program, and both sides count the same live entries (one
//! registry for the program's copy of cbreg and the package's).
//!
//! `CBREG_EMBED_SITE` names the site-packages that holds the `cbreg`
//! package. Prints the calls and exits 0, or panics.

use cbreg::{Arg, Registry, Status};
use pyo3::prelude::*;
use pyo3::types::PyDict;

const SETUP: &std::ffi::CStr = c"
import site
site.addsitedir(site_dir)
import cbreg
calls = []
sub = cbreg.register(lambda *args: calls.append(('package',) + args))
by_crate = lambda *args: calls.append(('crate',) + args)
";

fn main() {
    let site = std::env::var("CBREG_EMBED_SITE")
        .expect("CBREG_EMBED_SITE: the site-packages that holds cbreg");
    let (ns, ids) = Python::attach(|py| -> PyResult<_> {
        let ns = PyDict::new(py);
        ns.set_item("site_dir", &site)?;
        py.run(SETUP, Some(&ns), None)?;
        let from_package: u64 = ns.get_item("sub")?.expect("sub").getattr("id")?.extract()?;
        let by_crate = ns.get_item("by_crate")?.expect("by_crate");
        let mut from_crate = 0;
        // SAFETY: the GIL is held (`py`), `by_crate` is a live object and
        // `from_crate` a valid place for the id.
        let status = unsafe {
            cbreg::python::cbreg_py_register(
                cbreg::ffi::cbreg_default(),
                by_crate.as_ptr().cast(),
                0,
                &mut from_crate,
            )
        };
        assert_eq!(status, Status::Ok, "cbreg_py_register");
        Ok((ns.unbind(), [from_package, from_crate]))
    })
    .expect("setting up in Python");

    // No GIL held here: the native thread takes it for each call.
    let statuses = std::thread::spawn(move || {
        ids.map(|id| Registry::global().call(id, &[Arg::f64(440.0), Arg::str("A4")]))
    })
    .join()
    .expect("the native thread");
    assert_eq!(statuses, [Status::Ok, Status::Ok]);

    Python::attach(|py| -> PyResult<()> {
        let ns = ns.bind(py);
        let calls = ns.get_item("calls")?.expect("calls");
        println!("calls: {calls}");
        assert_eq!(calls.len()?, 2);
        let live: u64 = py.eval(c"cbreg.stats().live", Some(ns), None)?.extract()?;
        println!(
            "live: package {live}, crate {}",
            Registry::global().stats().live
        );
        assert_eq!(live, Registry::global().stats().live);
        for id in ids {
            assert_eq!(Registry::global().unregister(id), Status::Ok);
        }
        Ok(())
    })
    .expect("checking in Python");
}
