"""Calling from Python (docs/contract.md 4.5, 4.6): cbreg.invoke and Subscription go
straight to the adapter, which converts by the one set of rules: exact
None, bool, int, float, str and bytes reach a Python callback as the very
objects (their conversion gives equal objects back), subclasses and lists
are converted; a result comes back as itself only when its conversion would
give it back."""
import enum

import pytest

import cbreg


class Text(str):
    pass


class Number(enum.IntEnum):
    A = 7


class Real(float):
    pass


def received(*args):
    got = []
    with cbreg.register(lambda *a: got.append(a)) as sub:
        sub(*args)
    return got[0]


def returned(value):
    with cbreg.register(lambda: value) as sub:
        return cbreg.invoke(sub.id)


def test_exact_immutable_arguments_reach_the_callback_as_they_are():
    args = (None, True, 10**12, 2.5, "A4 ♪" * 10, b"\x00raw")
    got = received(*args)
    assert all(a is b for a, b in zip(got, args)), got


def test_subclass_arguments_are_converted_to_their_base_type():
    got = received(Text("t"), Number.A, Real(1.5))
    assert [type(x) for x in got] == [str, int, float]
    assert got == ("t", 7, 1.5)


def test_list_arguments_are_copies_and_mixed_lists_become_floats():
    ints, mixed = [1, 2, 3], [1, 2.5]
    got = received(ints, mixed)
    assert got == ([1, 2, 3], [1.0, 2.5]) and got[0] is not ints
    assert [type(x) for x in got[1]] == [float, float]


def test_results_that_convert_back_come_back_as_they_are():
    for value in (None, True, 10**12, 2.5, "text ♪" * 10, b"raw"):
        assert returned(value) is value


def test_results_without_a_value_form_come_back_as_none():
    assert returned([1, 2]) is None
    assert returned(2**70) is None          # no 64-bit form
    assert returned("\udcff") is None       # no UTF-8 form
    assert returned(object()) is None


def test_subclass_results_come_back_as_their_base_type():
    for value, base in ((Text("t"), str), (Number.A, int), (Real(1.5), float)):
        got = returned(value)
        assert type(got) is base and got == value


def test_invoke_is_the_native_function_with_its_doc():
    assert type(cbreg.invoke).__name__ == "builtin_function_or_method"
    assert "Invokes entry ``id``" in cbreg.invoke.__doc__
    with pytest.raises(TypeError):
        cbreg.invoke()
    with pytest.raises(OverflowError):
        cbreg.invoke(-1)
    with cbreg.register(lambda *a: len(a)) as sub:
        assert cbreg.invoke(sub.id, *range(64)) == 64
        with pytest.raises(cbreg.InvalidArgument):
            cbreg.invoke(sub.id, *range(65))


def test_subscription_is_a_native_callable_type():
    sub = cbreg.register(lambda *a: a, once=True)
    assert isinstance(sub, cbreg.Subscription) and sub.once and sub.id != 0
    assert repr(sub) == f"Subscription(id={sub.id:#x}, once=True)"
    with pytest.raises(AttributeError):
        sub.id = 1
    with pytest.raises(TypeError):
        sub(1, key=2)
    assert sub(1, "x") is None              # a tuple has no value form
    assert not sub.unregister(wait=True)    # ran once: gone
    with pytest.raises(TypeError):
        sub.unregister(True)
    with pytest.raises(TypeError):
        sub.unregister(later=True)
    same = cbreg.Subscription(sub.id)
    assert same.id == sub.id and not same.once
    with cbreg.register(lambda: 5) as live:
        assert live() == 5
        assert cbreg.Subscription(live.id, once=False)() == 5
    with pytest.raises(cbreg.NotFound):
        live()
