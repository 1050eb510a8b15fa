//! Names the crate's compatible version for symbol names
//! (`CBREG_SYMBOL_VERSION`, read by `src/tls_word.rs`), and generates the C
//! header from the doc-commented C ABI in `src/` when the `header` feature
//! is on (this repository's own build; dependents get the
//! committed `include/cbreg.h` and never build cbindgen).
//!
//! The header goes to `$OUT_DIR/cbreg.h`; the `header_is_current` test
//! compares it with the committed `include/cbreg.h`. With
//! `CBREG_WRITE_HEADER=1` (`make header`) it also replaces the committed one.

fn main() {
    symbol_version();
    #[cfg(feature = "header")]
    header();
}

/// `CBREG_SYMBOL_VERSION`: what of `version` in Cargo.toml two copies must
/// share to be compatible (Cargo's rule): `0_1` for 0.1.x, `0_0_3` for
/// 0.0.3, `2` for 2.x.y. A release changes `version` only.
fn symbol_version() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap();
    let parts: Vec<&str> = version.split(['.', '-', '+']).take(3).collect();
    let keep = match parts.as_slice() {
        ["0", "0", _] => 3,
        ["0", _, _] => 2,
        _ => 1,
    };
    println!(
        "cargo:rustc-env=CBREG_SYMBOL_VERSION={}",
        parts[..keep].join("_")
    );
    println!("cargo:rerun-if-changed=build.rs");
}

#[cfg(feature = "header")]
fn header() {
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
    let mut text = Vec::new();
    bindings.write(&mut text);
    let text = python_part_after_the_guard(&String::from_utf8(text).expect("UTF-8 header"));
    std::fs::write(&out, &text).expect("write the header");
    if std::env::var_os("CBREG_WRITE_HEADER").is_some() {
        std::fs::write(crate_dir.join("include/cbreg.h"), &text).expect("write include/cbreg.h");
    }
}

/// cbindgen guards the whole header with `CBREG_H`, so a file that included
/// cbreg.h before `CBREG_PYTHON` was defined could never see the Python
/// adapter's part. That part (cbindgen's `#if defined(CBREG_PYTHON)`
/// blocks) goes after the guard, under a guard of its own: cbreg.h included
/// again with `CBREG_PYTHON` defined declares it, whatever came first (the
/// C++ adapters, `cpp_shim/cbreg_python.hpp`, do exactly that).
#[cfg(feature = "header")]
fn python_part_after_the_guard(header: &str) -> String {
    const OPEN: &str = "#if defined(CBREG_PYTHON)";
    let (mut core, mut python) = (String::new(), String::new());
    let mut lines = header.lines().peekable();
    while let Some(line) = lines.next() {
        if line != OPEN {
            core.push_str(line);
            core.push('\n');
            continue;
        }
        for inner in lines.by_ref() {
            assert!(!inner.starts_with("#if"), "a nested #if in the Python part");
            if inner.starts_with("#endif") {
                break;
            }
            python.push_str(inner);
            python.push('\n');
        }
        python.push('\n');
        if lines.peek() == Some(&"") {
            lines.next();
        }
    }
    if python.is_empty() {
        return core;
    }
    format!(
        "{core}\n// The Python adapter's part (the `python` feature): declared once\n\
         // CBREG_PYTHON is defined, even where cbreg.h was included before.\n\
         #if defined(CBREG_PYTHON) && !defined(CBREG_PYTHON_PART)\n\
         #define CBREG_PYTHON_PART\n\n\
         #ifdef __cplusplus\nextern \"C\" {{\n#endif  // __cplusplus\n\n\
         {python}\
         #ifdef __cplusplus\n}}  // extern \"C\"\n#endif  // __cplusplus\n\n\
         #endif  /* CBREG_PYTHON_PART */\n"
    )
}
