"""cbreg scenario: instances with __del__ (one referencing the cbreg module
in its __del__) are still registered at exit. Their __del__ must run while
Python is whole (the atexit hook releases them) or not at all; never crash."""
import cbreg


class Listener:
    def __init__(self, name):
        self.name = name

    def __call__(self, *args):
        return len(args)

    def __del__(self):
        # Touches Python and cbreg during teardown on purpose.
        print(f"cbreg_instance_del: {self.name}.__del__ closed={cbreg.is_closed()}", flush=True)


subs = [cbreg.register(Listener(f"L{i}")) for i in range(8)]
assert cbreg.invoke(subs[0].id, 1, 2) == 2
