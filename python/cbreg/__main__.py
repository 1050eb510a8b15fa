"""``python -m cbreg --cmake_dir | --include_dir | --libs | --version``:
where a build finds cbreg (as ``python -m nanobind --cmake_dir`` does).

    cmake -Dcbreg_DIR="$(python -m cbreg --cmake_dir)" ...
    c++ -shared ... -I"$(python -m cbreg --include_dir)" $(python -m cbreg --libs)
"""
import argparse
import sys

from . import __version__, get_cmake_dir, get_include, get_static_library

# What the static library needs from the system (Linux; as cbreg::cbreg).
_SYSTEM_LIBS = ["-lpthread", "-ldl", "-lm", "-lrt", "-lutil", "-lgcc_s"]


def libs() -> str:
    """Linker arguments for an extension module: the static copy of cbreg
    with its Python adapter, its symbols kept inside the module."""
    return " ".join([get_static_library(), "-Wl,--exclude-libs,libcbreg_python.a"] + _SYSTEM_LIBS)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cbreg", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--cmake_dir", action="store_true",
                        help="the directory of cbreg's CMake package (cbreg_DIR)")
    parser.add_argument("--include_dir", action="store_true",
                        help="the directory of cbreg.h and the C++ headers")
    parser.add_argument("--libs", action="store_true",
                        help="linker arguments for an extension module")
    args = parser.parse_args(argv)
    if not (args.cmake_dir or args.include_dir or args.libs):
        parser.print_help()
        return 2
    if args.cmake_dir:
        print(get_cmake_dir())
    if args.include_dir:
        print(get_include())
    if args.libs:
        print(libs())
    return 0


if __name__ == "__main__":
    sys.exit(main())
