"""Scenario (a): a builtin (`print`) is still registered when Python exits."""
from _ext import ext

ext.register(1, print)
ext.fire(1, "holds_print: fired once")
# Falls off the end with the registration still held.
