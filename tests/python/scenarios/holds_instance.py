"""Scenario (b): an instance of a Python class with __del__ is still
registered when Python exits."""
from _ext import ext


class Listener:
    def __init__(self):
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1

    def __del__(self):
        # Runs only if something drops the last reference while Python is alive.
        print("holds_instance: Listener.__del__", flush=True)


ext.register(1, Listener())
ext.fire(1, "fired once")
