"""Import the extension under test for the exit-time scenarios.

CBREG_TEST_EXT_DIR: directory holding the built module (default build/naive).
CBREG_TEST_EXT_MODULE: module name (default naive_ext). Any module with the
naive_ext API (register, fire, start_engine) can be run through the same
scenarios, so the cbreg-backed twin is checked by the very same programs.
"""
import importlib
import os
import sys

_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
EXT_DIR = os.environ.get("CBREG_TEST_EXT_DIR", os.path.join(_ROOT, "build", "naive"))
MODULE = os.environ.get("CBREG_TEST_EXT_MODULE", "naive_ext")

sys.path.insert(0, EXT_DIR)
ext = importlib.import_module(MODULE)
