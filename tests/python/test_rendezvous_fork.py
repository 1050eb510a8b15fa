"""One owner per process image, as a Python program meets it: a forked
child (a multiprocessing worker, say) that is the first to import cbreg and
ends with os._exit leaves nothing for the parent to adopt, and the parent's
own import then owns the registries, shared with every other copy it loads
(the C side of the same guarantees: tests/c/rendezvous/lifecycle.c)."""

from conftest import run_python

CHILD_IMPORTS_FIRST = r"""
import os
pid = os.fork()
if pid == 0:
    import cbreg
    sub = cbreg.register(lambda: 1)
    os._exit(0 if cbreg.invoke(sub.id) == 1 else 1)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, "the child failed on its own side"

# Other libraries first, so the package lands elsewhere than in the child
# (whichever of them this interpreter was built with).
import importlib
for name in ("ctypes", "ssl", "decimal", "sqlite3"):
    try:
        importlib.import_module(name)
    except ImportError:
        pass
import ctypes
import cbreg

calls = []
sub = cbreg.register(lambda *args: calls.append(args))
cbreg.invoke(sub.id, 1)

# Another copy of cbreg in this process reaches the same entry.
class Registry(ctypes.Structure):
    _fields_ = [("handle", ctypes.c_uint64)]
lib = ctypes.CDLL(cbreg.get_library())
lib.cbreg_default.restype = Registry
lib.cbreg_invoke.restype = ctypes.c_uint32
lib.cbreg_invoke.argtypes = [Registry, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t,
                             ctypes.c_void_p]
status = lib.cbreg_invoke(lib.cbreg_default(), sub.id, None, 0, None)
assert status == 0, status
assert calls == [(1,), ()], calls
print("ok")
"""


def test_a_forked_child_that_imports_cbreg_first_leaves_the_parent_its_own_owner():
    assert run_python(CHILD_IMPORTS_FIRST, timeout=60).strip().endswith("ok")
