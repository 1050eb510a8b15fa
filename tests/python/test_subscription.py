"""The Python handle's rules: what dropping a `cbreg.Subscription` does (it
does not unregister: the registry holds the callable until it is
unregistered, cleared or Python exits; the `with` form unregisters), and
that "stop calling me" from inside the callback takes effect, with or
without `wait=True` (the wait is left out there: it would wait for itself).
"""
import gc

import pytest

import cbreg


def test_a_dropped_subscription_stays_registered():
    calls = []
    sub = cbreg.register(lambda *args: calls.append(args))
    id = sub.id
    del sub
    gc.collect()
    try:
        cbreg.invoke(id, 1)
        assert calls == [(1,)]
    finally:
        assert cbreg.unregister(id)


def test_the_with_form_unregisters_on_leaving_the_block():
    with cbreg.register(print) as sub:
        pass
    with pytest.raises(cbreg.NotFound):
        cbreg.invoke(sub.id)


@pytest.mark.parametrize("how", ["sub.unregister()", "sub.unregister(wait=True)",
                                 "cbreg.unregister(sub.id)", "cbreg.unregister(sub.id, wait=True)"])
def test_unregistering_from_inside_its_own_callback_takes_effect(how):
    calls = []
    results = []

    def callback(n):
        calls.append(n)
        results.append(eval(how, {"cbreg": cbreg, "sub": sub}))

    sub = cbreg.register(callback)
    cbreg.invoke(sub.id, 1)
    with pytest.raises(cbreg.NotFound):
        cbreg.invoke(sub.id, 2)
    assert calls == [1]
    assert results == [True]
