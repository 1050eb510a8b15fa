"""cbreg scenario (CPython 3.11 subinterpreters): subinterpreters ended,
one after another, while native engine threads fire their callbacks flat
out.

`_xxsubinterpreters.destroy` checks that the interpreter has a single
thread state ("more than one thread" otherwise) and then ends it on the
first state of its list, holding the GIL from the check to the pick. A
native thread that made its per-call state there without the GIL could do
so between the two: the interpreter would be ended on that thread's state
(a crash), and a thread making states flat out would keep the check
failing for ever. cbreg makes a subinterpreter's per-call state only once
the thread holds the GIL, so while another thread holds it the
subinterpreter's states do not change: each round counts them while
holding the GIL, then ends the interpreter under fire.

More rounds than cbreg's interpreter records (64): the record of an ended
interpreter is reused."""
import os
import sys

import _xxsubinterpreters as si

from _timing import end_of_work

EXT_DIR = os.environ["CBREG_TEST_EXT_DIR"]
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, EXT_DIR)
import cbreg  # noqa: E402,F401
import cbreg_engine as ext  # noqa: E402

ROUNDS = int(os.environ.get("CBREG_DESTROY_ROUNDS", "80"))
ENGINES = 2
read_fd, write_fd = os.pipe()
retries = 0
most_states = 0
for round_ in range(ROUNDS):
    x = si.create()
    si.run_string(x, f"""
import os, sys
sys.path[:0] = [{EXT_DIR!r}, {HERE!r}]
import cbreg
def on_tick(*args):
    pass
sub = cbreg.register(on_tick)
os.write({write_fd}, str(sub.id).encode().ljust(24))
""")
    entry = int(os.read(read_fd, 24))
    for _ in range(ENGINES):
        ext.start(entry, 0.0)
    most_states = max(most_states, ext.states_while_holding_gil(int(x), 5.0))
    while True:
        try:
            si.destroy(x)  # the engines are still firing its callback
            break
        except RuntimeError:  # a thread is inside its callback, GIL let go
            retries += 1
    ext.stop()
print(f"subinterp_destroy_race: {ROUNDS} ended under fire, most states seen {most_states}, "
      f"{retries} retries", flush=True)
end_of_work()
