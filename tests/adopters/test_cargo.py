"""What Cargo makes of cbreg as a dependency, checked on copies of the crate
(no build of the adopters needed): a second version of the crate in one
dependency graph is refused with a message, and the next version builds
with nothing but `version` in Cargo.toml changed.

Run by `make adopters-test`; needs cargo on PATH."""
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# What a packaged crate holds of the sources, enough to resolve and build.
CRATE_FILES = ["Cargo.toml", "Cargo.lock", "build.rs", "src", "include", "benches", "cbindgen.toml", "README.md"]


def crate_copy(dest, version):
    """The crate at `dest`, its version changed to `version`."""
    dest.mkdir(parents=True)
    for name in CRATE_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        elif src.exists():
            shutil.copy(src, dest / name)
    manifest = dest / "Cargo.toml"
    text = manifest.read_text()
    current = next(line for line in text.splitlines() if line.startswith("version = "))
    manifest.write_text(text.replace(current, f'version = "{version}"', 1))
    return dest


def cargo(*args, cwd):
    env = dict(os.environ)
    env.pop("CARGO_TARGET_DIR", None)
    return subprocess.run(["cargo", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_two_versions_of_the_crate_in_one_build_are_refused_with_a_message(tmp_path):
    next_version = crate_copy(tmp_path / "next", "0.99.0")
    app = tmp_path / "app"
    (app / "src").mkdir(parents=True)
    (app / "src" / "main.rs").write_text("fn main() {}\n")
    (app / "Cargo.toml").write_text(
        '[package]\nname = "app"\nversion = "0.0.0"\nedition = "2021"\n'
        "[dependencies]\n"
        f'cbreg = {{ path = "{ROOT}" }}\n'
        f'cbreg_next = {{ package = "cbreg", path = "{next_version}" }}\n'
    )
    r = cargo("metadata", "--format-version", "1", cwd=app)
    assert r.returncode != 0, "two versions of cbreg resolved into one build"
    assert 'links = "cbreg"' in r.stderr, r.stderr


@pytest.mark.parametrize("version", ["0.2.0", "1.0.0"])
def test_a_version_bump_builds_with_only_the_version_changed(tmp_path, version):
    crate = crate_copy(tmp_path / "crate", version)
    # One target directory for both versions: the dependencies are shared.
    target = ROOT / "build" / "adopters" / "version-bump-target"
    r = cargo("check", "--lib", "--features", "python", "--target-dir", str(target), cwd=crate)
    assert r.returncode == 0, r.stderr
