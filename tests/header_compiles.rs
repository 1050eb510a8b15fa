//! The committed header compiles as strict C99 and as C++17, with and
//! without the Python section, using the platform compiler that `cc` finds.

use std::path::PathBuf;
use std::process::Command;

fn compiler(cpp: bool) -> cc::Tool {
    let target = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    cc::Build::new()
        .cpp(cpp)
        .target(&target)
        .host(&target)
        .opt_level(0)
        .cargo_metadata(false)
        .get_compiler()
}

fn compiles(cpp: bool, flags: &[&str]) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("cbreg-header-{}-{}", std::process::id(), cpp));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(if cpp { "use.cpp" } else { "use.c" });
    // Every type and a few functions, so a clash or a bad declaration fails.
    std::fs::write(
        &src,
        "#include \"cbreg.h\"\n\
         int main(void) {\n\
           cbreg_registry reg = cbreg_default();\n\
           cbreg_stats stats;\n\
           const cbreg_value *value = 0;\n\
           cbreg_call_fn call = 0; cbreg_release_fn release = 0; cbreg_value_drop_fn drop = 0;\n\
           cbreg_status status = cbreg_stats_get(reg, &stats);\n\
           (void)value; (void)call; (void)release; (void)drop;\n\
           return status == CBREG_STATUS_OK && cbreg_status_str(status) != 0 ? 0 : 1;\n\
         }\n",
    )
    .unwrap();
    let mut cmd: Command = compiler(cpp).to_command();
    cmd.args(flags)
        .arg("-Wall")
        .arg("-Wextra")
        .arg("-Werror")
        .arg("-pedantic")
        .arg("-fsyntax-only")
        .arg("-I")
        .arg(root.join("include"))
        .arg(&src);
    let out = cmd.output().expect("run the C compiler");
    assert!(
        out.status.success(),
        "{:?} {:?} failed:\n{}",
        cmd.get_program(),
        cmd.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn header_compiles_as_c99() {
    compiles(false, &["-std=c99"]);
}

#[test]
fn header_compiles_as_c99_with_the_python_section() {
    compiles(false, &["-std=c99", "-DCBREG_PYTHON"]);
}

#[test]
fn header_compiles_as_cpp17() {
    compiles(true, &["-std=c++17"]);
}
