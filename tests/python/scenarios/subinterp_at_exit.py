"""cbreg scenario (CPython 3.11 subinterpreters, shared GIL): the package is
imported first in a subinterpreter A, which registers a callback that a
native engine thread then fires for ever. A second subinterpreter B
registers a callback, checks a native thread calls it inside B, and ends:
its entry is released inside B, and the main interpreter can still
register afterwards. A is ended while the engine still fires its callback
(CPython 3.11 aborts at exit if a subinterpreter is left alive; ending one
is refused with RuntimeError while another thread is in it, so it is
retried). The program exits with the engine firing the main interpreter's
callback and A's dead id. Each callback reports the interpreter it ran in."""
import time
import os
import sys

import _xxsubinterpreters as si

from _timing import end_of_work

EXT_DIR = os.environ["CBREG_TEST_EXT_DIR"]
HERE = os.path.dirname(os.path.abspath(__file__))
PRELUDE = f"""
import os, sys
import _xxsubinterpreters as si
sys.path[:0] = [{EXT_DIR!r}, {HERE!r}]
import cbreg
import cbreg_engine as ext
OK = 0
seen = []
def on_tick(*args):
    seen.append(si.get_current())
"""

a = si.create()
si.run_string(a, PRELUDE + """
sub = cbreg.register(on_tick)
assert ext.fire_on_thread(sub.id, 1) == OK
assert seen == [si.get_current()], (seen, si.get_current())
ext.start(sub.id, 2000.0)
print("subinterp_at_exit: A fires in A", flush=True)
""")

read_fd, write_fd = os.pipe()
b = si.create()
si.run_string(b, PRELUDE + f"""
class Held:
    def __call__(self, *args):
        seen.append(si.get_current())
    def __del__(self):
        print(f"subinterp_at_exit: B entry released in B={{si.get_current() == {int(b)}}}", flush=True)
sub = cbreg.register(Held())
assert ext.fire_on_thread(sub.id, 1) == OK
assert seen == [si.get_current()], (seen, si.get_current())
os.write({write_fd}, str(sub.id).encode())
print("subinterp_at_exit: B fires in B", flush=True)
""")
b_id = int(os.read(read_fd, 64))
si.destroy(b)

import cbreg  # noqa: E402
sys.path.insert(0, EXT_DIR)
import cbreg_engine as ext  # noqa: E402

NOT_FOUND = 1
main_seen = []
main_sub = cbreg.register(lambda *a: main_seen.append(si.get_current()))  # not closed by B's end
assert ext.fire_on_thread(main_sub.id, 1) == 0
assert main_seen == [si.get_main()], main_seen
status_b = ext.fire_on_thread(b_id, 1)
print(f"subinterp_at_exit: B's id after B ended: {status_b}", flush=True)
ext.start(main_sub.id, 0.0)
for attempt in range(1000):
    try:
        si.destroy(a)  # the engine is still firing A's callback
        break
    except RuntimeError:  # "interpreter has more than one thread": one is inside
        time.sleep(0.001)
else:
    raise SystemExit("subinterp_at_exit: A could not be ended")
print("subinterp_at_exit: A ended while fired", flush=True)
print("subinterp_at_exit: main fires in main, exiting", flush=True)
end_of_work()
