//! Generates the C header from the doc-commented C ABI in `src/`, when the
//! `header` feature is on (this repository's own build; dependents get the
//! committed `include/cbreg.h` and never build cbindgen).
//!
//! The header goes to `$OUT_DIR/cbreg.h`; the `header_is_current` test
//! compares it with the committed `include/cbreg.h`. With
//! `CBREG_WRITE_HEADER=1` (`make header`) it also replaces the committed one.

#[cfg(not(feature = "header"))]
fn main() {}

#[cfg(feature = "header")]
fn main() {
    use std::path::PathBuf;
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=CBREG_WRITE_HEADER");
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("cbreg.h");
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header");
    bindings.write_to_file(&out);
    if std::env::var_os("CBREG_WRITE_HEADER").is_some() {
        bindings.write_to_file(crate_dir.join("include/cbreg.h"));
    }
}
