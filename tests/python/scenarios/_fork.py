"""The fork scenarios' check of a forked child."""
import os
import time


HANG_LIMIT = float(os.environ.get("CBREG_HANG_LIMIT", "30"))


def child_lifetime(pid, started, scenario, limit=HANG_LIMIT):
    """Waits for the child `pid`, forked at `started` (time.monotonic()), to
    exit 0 and returns how long it lived. A child still running after
    `limit` seconds (CBREG_HANG_LIMIT, as the test runner's) is hung: it is
    killed, and the scenario fails."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > started + limit:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise SystemExit(f"{scenario}: a child still running after {limit:g} s")
        time.sleep(0.002)
    if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
        raise SystemExit(f"{scenario}: child status {status}")
    return time.monotonic() - started
