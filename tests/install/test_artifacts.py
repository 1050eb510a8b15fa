"""What the released source artifacts hold, and how a build from the sdist
fails without Rust.

The crate (`cargo package --list`) and the sdist each carry the license
files and what a build from them reads, and none of the repository's tests,
benchmarks, tooling or CI; the sdist's metadata names the licenses in SPDX
form (PEP 639) and takes its version from Cargo.toml. Building the sdist
with no cargo anywhere stops at configure with a message that says to
install Rust.

Run by `make install-test` with the project venv (scikit-build-core, cmake,
ninja, nanobind)."""
import email.parser
import os
import pathlib
import re
import subprocess
import sys
import tarfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
LICENSES = {"LICENSE-MIT", "LICENSE-APACHE"}
# Top-level entries neither artifact may carry.
REPO_ONLY = {"tests", "tools", "mk", "docs", "examples", ".ci", "Makefile", "BENCHMARKS.md", ".gitignore"}


def cargo_version():
    text = (ROOT / "Cargo.toml").read_text()
    return re.search(r'(?m)^version = "([^"]+)"', text).group(1)


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    out = tmp_path_factory.mktemp("sdist")
    subprocess.run(
        [sys.executable, "-c", "import sys; from scikit_build_core.build import build_sdist; build_sdist(sys.argv[1])", str(out)],
        cwd=ROOT, check=True, capture_output=True, timeout=300,
    )
    (path,) = out.glob("cbreg-*.tar.gz")
    return path


def sdist_members(path):
    with tarfile.open(path) as tar:
        names = [m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()]
        pkg_info = tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("/PKG-INFO"))).read()
    return names, email.parser.BytesParser().parsebytes(pkg_info)


def test_the_crate_holds_the_licenses_and_sources_and_no_repository_tooling():
    out = subprocess.run(["cargo", "package", "--list", "--allow-dirty"], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=300).stdout.split()
    top = {name.split("/")[0] for name in out}
    assert LICENSES <= top
    assert {"src/lib.rs", "build.rs", "Cargo.toml", "include/cbreg.h", "README.md"} <= set(out)
    assert not top & REPO_ONLY, sorted(top & REPO_ONLY)
    assert not top & {"python", "benches", "cmake"}, sorted(top)


def test_the_sdist_holds_the_licenses_and_what_the_build_reads_and_no_repository_tooling(sdist):
    names, _ = sdist_members(sdist)
    top = {name.split("/")[0] for name in names}
    assert LICENSES <= top
    for needed in ["Cargo.toml", "Cargo.lock", "build.rs", "src/lib.rs", "include/cbreg.h", "cpp_shim/cbreg.hpp",
                   "python/CMakeLists.txt", "python/src/_core.cpp", "python/cbreg/__init__.py",
                   "python/pyo3-config.txt", "cmake/cbregConfig.cmake", "pyproject.toml", "README.md"]:
        assert needed in names, needed
    assert not top & REPO_ONLY, sorted(top & REPO_ONLY)
    assert not any(n.startswith("benches/") and not n.endswith(".rs") for n in names)


def test_the_sdist_metadata_names_the_licenses_in_spdx_form_and_the_crate_version(sdist):
    _, meta = sdist_members(sdist)
    assert meta["Metadata-Version"] >= "2.4"
    assert meta["License-Expression"] == "MIT OR Apache-2.0"
    assert set(meta.get_all("License-File")) == LICENSES
    assert meta["Version"] == cargo_version()
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert urls["Repository"] == "https://github.com/cbreg/cbreg"


def test_building_the_sdist_without_cargo_says_to_install_rust(sdist, tmp_path):
    venv_bin = pathlib.Path(sys.executable).parent
    # No cargo on PATH, and none where CMake looks besides (CARGO_HOME, HOME).
    path = os.pathsep.join(p for p in [str(venv_bin), "/usr/local/bin", "/usr/bin", "/bin"]
                           if not (pathlib.Path(p) / "cargo").exists())
    env = {"PATH": path, "HOME": str(tmp_path), "CARGO_HOME": str(tmp_path / "cargo"), "LANG": "C.UTF-8"}
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "-w", str(tmp_path / "out"), str(sdist)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    # CMake wraps the message where it likes.
    assert "install Rust" in " ".join(out.split()), out[-4000:]


def test_the_crate_in_the_unpacked_sdist_type_checks(sdist, tmp_path):
    """What the sdist holds is enough for cargo: every target Cargo.toml
    names has its source there (cargo refuses a build whose manifest names
    a missing benchmark file, which only a build notices)."""
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path)
    (root,) = tmp_path.glob("cbreg-*")
    target = ROOT / "build" / "install-client" / "sdist-check"
    r = subprocess.run(["cargo", "check", "--lib", "--offline", "--target-dir", str(target)], cwd=root,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
