"""cbreg scenario: builtins, lambdas, bound methods and closures are still
registered (persistent and one-shot, some never fired) when Python exits."""
import cbreg

sink = []
subs = [
    cbreg.register(print),
    cbreg.register(len),
    cbreg.register(lambda *a: sink.append(a)),
    cbreg.register(sink.append),
    cbreg.register(lambda: None, once=True),  # one-shot still pending at exit
    cbreg.register(dict().__setitem__),
]
cbreg.invoke(subs[0].id, "cbreg_builtins_lambdas: fired once")
cbreg.invoke(subs[2].id, 1, 2.0, "three")
assert sink == [(1, 2.0, "three")]
assert cbreg.stats().live == len(subs)
