"""Control for the fork scenarios (free-threaded CPython): a Python thread
stops the interpreter's world over and over (`sys.setrecursionlimit` does)
while the program forks, as a native thread making its first thread state
may. A fork that meets such a thread mid-way leaves the child hung in the
stop-the-world of its finalization. Prints "child hung" and leaves at once
when one does (the parent's own exit can hang the same way)."""
import os
import sys
import threading
import time
import warnings

warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
FORKS = 10


def stop_the_world_again_and_again():
    limit = sys.getrecursionlimit()
    while True:
        sys.setrecursionlimit(limit)


threading.Thread(target=stop_the_world_again_and_again, daemon=True).start()
time.sleep(0.05)
for i in range(FORKS):
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        raise SystemExit(0)
    while not os.waitpid(pid, os.WNOHANG)[0]:
        if time.monotonic() > t0 + 5:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            print(f"fork_while_stopping_world: child hung (fork {i})", flush=True)
            os._exit(1)
        time.sleep(0.002)
print("fork_while_stopping_world: every child exited", flush=True)
os._exit(0)
