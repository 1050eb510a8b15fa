"""What the installed cbreg package gives other builds: a libcbreg.so that a
plain C program links (no Python), the CMake package and headers, and
`python -m cbreg`; extensions built with it carry their own copy."""
import glob
import os
import shutil
import subprocess
import sys

import pytest

import cbreg
from conftest import ENGINE_DIR, ROOT, need_engine

CC = os.environ.get("CC", "cc")


def run(*cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


def cbreg_main(*flags):
    p = run(sys.executable, "-m", "cbreg", *flags)
    assert p.returncode == 0, p.stderr
    return p.stdout.splitlines()


@pytest.mark.skipif(shutil.which(CC) is None, reason="no C compiler")
def test_library_links_a_plain_c_program(tmp_path):
    """tests/install/client.c, linked with the package's libcbreg.so by a C
    compiler with no Python flags, runs on its own."""
    libdir = os.path.dirname(cbreg.get_library())
    exe = tmp_path / "client"
    p = run(CC, "-std=c99", "-Wall", "-Werror", os.path.join(ROOT, "tests", "install", "client.c"),
            "-I" + cbreg.get_include(), "-L" + libdir, "-lcbreg", "-Wl,-rpath," + libdir,
            "-o", str(exe))
    assert p.returncode == 0, p.stderr
    p = run(str(exe), env={"PATH": os.environ.get("PATH", "")})
    assert (p.returncode, p.stdout.strip()) == (0, "installed cbreg: ok"), p.stderr


@pytest.mark.skipif(shutil.which("nm") is None, reason="no nm")
def test_library_needs_nothing_from_python():
    p = run("nm", "-D", "--undefined-only", cbreg.get_library())
    assert p.returncode == 0, p.stderr
    python_symbols = [line.split()[-1] for line in p.stdout.splitlines() if " Py" in line or " _Py" in line]
    assert python_symbols == []


def test_helper_prints_the_cmake_package():
    (cmake_dir,) = cbreg_main("--cmake_dir")
    assert cmake_dir == cbreg.get_cmake_dir()
    for name in ("cbregConfig.cmake", "cbregConfigVersion.cmake"):
        assert os.path.isfile(os.path.join(cmake_dir, name)), name


def test_helper_prints_the_headers():
    (include_dir,) = cbreg_main("--include_dir")
    assert include_dir == cbreg.get_include()
    for name in ("cbreg.h", "cbreg.hpp", "cbreg_nanobind.hpp", "cbreg_pybind11.hpp"):
        assert os.path.isfile(os.path.join(include_dir, name)), name


def test_helper_prints_extension_link_arguments():
    (libs,) = cbreg_main("--libs")
    first, *rest = libs.split()
    assert first == cbreg.get_static_library() and os.path.isfile(first)
    assert "-Wl,--exclude-libs,libcbreg_python.a" in rest


def test_helper_prints_the_version():
    assert cbreg_main("--version") == [cbreg.__version__]


def test_helper_without_a_flag_prints_usage_and_fails():
    p = run(sys.executable, "-m", "cbreg")
    assert p.returncode == 2 and "--cmake_dir" in p.stdout


@need_engine
@pytest.mark.skipif(shutil.which("readelf") is None, reason="no readelf")
def test_extensions_built_with_the_cmake_package_need_no_cbreg_library():
    """cbreg::cbreg links a static copy: nothing to find at run time, and no
    cbreg symbol exported from the module."""
    modules = glob.glob(os.path.join(ENGINE_DIR, "cbreg_*.so"))
    assert modules
    for path in modules:
        needed = run("readelf", "-d", path).stdout
        assert "libcbreg" not in needed, path
        exported = run("nm", "-D", "--defined-only", path).stdout
        assert " cbreg_" not in exported, path
