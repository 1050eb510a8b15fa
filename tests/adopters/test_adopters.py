"""Extensions built outside this repository with their ecosystems' own
tools (nanobind and pybind11 by scikit-build-core under pip's build
isolation, repaired by auditwheel; PyO3 by maturin, on the oldest, a middle
and the newest pyo3 cbreg's `python` feature accepts), installed in one venv
beside the cbreg wheel: one registry for all of them. And a Rust program
that embeds Python and adds cbreg: it links libpython, the extensions do not.

Run by `make adopters-test` in build/adopters/venv; CBREG_ADOPTER_WHEELS
names the repaired wheels, CBREG_WHEELHOUSE the directory of the cbreg
wheel, CBREG_EMBED_BIN the embedding program."""
import glob
import importlib
import os
import subprocess
import sys
import sysconfig
import zipfile

import pytest

import cbreg

# pyo3_adopter is on the newest pyo3; the _0_NN copies on older ones.
ADOPTERS = ["nb_adopter", "pyb_adopter", "pyo3_adopter", "pyo3_adopter_0_23", "pyo3_adopter_0_26"]
OK = 0
WHEELS = os.environ.get("CBREG_ADOPTER_WHEELS", "")
WHEELHOUSE = os.environ.get("CBREG_WHEELHOUSE", "")
EMBED_BIN = os.environ.get("CBREG_EMBED_BIN", "")


def modules():
    return {name: importlib.import_module(name) for name in ADOPTERS}


def registrars():
    """Every way to register a Python callable: the cbreg package and each
    adopter."""
    mods = modules()
    out = {"cbreg": lambda fn: cbreg.register(fn).id}
    out.update({name: mod.subscribe for name, mod in mods.items()})
    return out


def invokers():
    """Every way to fire an id with (440.0, "A4"): from Python through each
    module, and from a native thread of each adopter."""
    mods = modules()
    out = {"cbreg.invoke": lambda id: cbreg.invoke(id, 440.0, "A4")}
    for name, mod in mods.items():
        out[name + ".invoke"] = lambda id, mod=mod: mod.invoke(id, 440.0, "A4")
        out[name + ".thread"] = lambda id, mod=mod: _ok(mod.fire_on_thread(id, 440.0, "A4"))
    return out


def _ok(status):
    assert status == OK, f"native invoke returned status {status}"


def live_counts():
    counts = {name: mod.live() for name, mod in modules().items()}
    counts["cbreg"] = cbreg.stats().live
    return counts


@pytest.mark.parametrize("registrar", ["cbreg"] + ADOPTERS)
def test_a_callback_registered_through_one_fires_from_every_other(registrar):
    calls = []
    id = registrars()[registrar](lambda *args: calls.append(args))
    try:
        fired = []
        for name, fire in invokers().items():
            before = len(calls)
            fire(id)
            fired.append((name, len(calls) - before))
        assert fired == [(name, 1) for name in invokers()]
        assert set(calls) == {(440.0, "A4")}
    finally:
        assert cbreg.unregister(id)


def test_every_side_counts_the_same_live_entries():
    base = live_counts()
    assert len(set(base.values())) == 1, base
    ids = [register(print) for register in registrars().values()]
    after = live_counts()
    assert set(after.values()) == {base["cbreg"] + len(ids)}, after
    # Unregistered through a module other than the one that registered each.
    unregisters = [m.unregister for m in modules().values()] + [cbreg.unregister]
    for i, id in enumerate(ids):
        assert unregisters[(i + 1) % len(unregisters)](id)
    assert live_counts() == base


@pytest.mark.parametrize("first", ADOPTERS)
def test_an_adopter_works_before_cbreg_is_imported(first):
    """Imported first, alone, an adopter serves its own callbacks; the
    modules imported after it (cbreg last) join the same registry; the
    process exits cleanly with Python callbacks of every copy registered."""
    others = [m for m in ADOPTERS if m != first]
    code = f"""
import sys, {first}
calls = []
id = {first}.subscribe(lambda *a: calls.append(a))
assert {first}.fire_on_thread(id, 440.0, "A4") == 0, "own callback"
assert "cbreg" not in sys.modules
import {", ".join(others)}, cbreg
for m in ({", ".join(others)},):
    assert m.fire_on_thread(id, 440.0, "A4") == 0
    m.subscribe(print)
cbreg.invoke(id, 440.0, "A4")
assert len(calls) == {2 + len(others)}, calls
lives = {{{first}.live(), cbreg.stats().live, *(m.live() for m in ({", ".join(others)},))}}
assert lives == {{{1 + len(others)}}}, lives
print("ok")
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout.strip()) == (0, "ok"), p.stderr


@pytest.mark.skipif(not WHEELS, reason="CBREG_ADOPTER_WHEELS not set")
@pytest.mark.parametrize("adopter", ADOPTERS)
def test_repaired_wheel_carries_no_cbreg_library(adopter):
    """cbreg is inside each extension: the repair found nothing to vendor,
    and the module needs no libcbreg at run time."""
    (wheel,) = glob.glob(os.path.join(WHEELS, adopter + "-*.whl"))
    assert "manylinux" in os.path.basename(wheel)
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert not [n for n in names if ".libs/" in n or "libcbreg" in n], names
    needed = needed_libraries(extension_file(adopter))
    assert not [n for n in needed if "libcbreg" in n], needed


def extension_file(module):
    """The shared object of an extension module (maturin installs it inside
    a package of the same name)."""
    path = importlib.import_module(module).__file__
    if path.endswith(".py"):
        (path,) = glob.glob(os.path.join(os.path.dirname(path), "*.so"))
    return path


def needed_libraries(path):
    out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
    return [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


@pytest.mark.parametrize("module", ["cbreg._core"] + ADOPTERS)
def test_an_extension_module_does_not_link_libpython(module):
    """cbreg's `python` feature leaves linking libpython to the final
    artifact: no extension module (maturin's, CMake's) needs it."""
    needed = needed_libraries(extension_file(module))
    assert not [n for n in needed if n.startswith("libpython")], needed


@pytest.mark.skipif(not EMBED_BIN, reason="CBREG_EMBED_BIN not set")
def test_a_program_that_embeds_python_adds_cbreg_and_shares_the_registry_with_the_package():
    """pyo3 with `auto-initialize` plus cbreg's `python` feature links
    libpython and runs: callables registered through the cbreg package and
    through the crate fire from the program's native thread, and both count
    the same live entries."""
    assert [n for n in needed_libraries(EMBED_BIN) if n.startswith("libpython")]
    env = dict(os.environ, CBREG_EMBED_SITE=sysconfig.get_paths()["purelib"])
    # The libpython of the interpreter this venv (and the program) was made with.
    env["LD_LIBRARY_PATH"] = sysconfig.get_config_var("LIBDIR")
    p = subprocess.run([EMBED_BIN], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "calls: [('package', 440.0, 'A4'), ('crate', 440.0, 'A4')]" in p.stdout, p.stdout


@pytest.mark.skipif(not WHEELHOUSE, reason="CBREG_WHEELHOUSE not set")
def test_the_cbreg_wheel_is_manylinux_and_carries_the_licenses_and_spdx_metadata():
    (wheel,) = glob.glob(os.path.join(WHEELHOUSE, "cbreg-*.whl"))
    assert "manylinux" in os.path.basename(wheel)
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        text = z.read(metadata).decode()
    licenses = {n.rsplit("/", 1)[1] for n in names if ".dist-info/licenses/" in n and not n.endswith("/")}
    assert licenses == {"LICENSE-MIT", "LICENSE-APACHE"}, names
    assert "License-Expression: MIT OR Apache-2.0" in text
    assert "cbreg/_version.py" in names
    # The repair found nothing to vendor.
    assert not [n for n in names if ".libs/" in n], names
