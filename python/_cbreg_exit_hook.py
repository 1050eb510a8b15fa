"""Runs cbreg's exit hook after every other atexit handler.

Imported at interpreter start-up by cbreg-exit-hook.pth (installed with the
cbreg package), so its handler is registered before any program's own and
runs last. It does nothing unless cbreg was imported. It exists for one
case: cbreg imported for the first time inside another atexit handler, when
a handler registered then would never run. Kept tiny: it is imported by
every interpreter of the environment, and imports nothing else.
"""
import atexit as _atexit
import sys as _sys


def _run_cbreg_exit_hook():
    core = _sys.modules.get("cbreg._core")
    if core is not None:
        core.atexit_clear()


_atexit.register(_run_cbreg_exit_hook)
