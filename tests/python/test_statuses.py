"""The Python status classes against the C ABI's own list: one class per
failing status, at its code, and none that the library does not define
(python/cbreg/_errors.py is written by hand; this keeps it true)."""

import ctypes

import cbreg
from cbreg import _errors


def status_str():
    lib = ctypes.CDLL(cbreg.get_library())
    f = lib.cbreg_status_str
    f.argtypes = [ctypes.c_uint32]
    f.restype = ctypes.c_char_p
    return f


def defined_codes():
    describe = status_str()
    unknown = describe(0xFFFFFFFF)
    codes = []
    while describe(len(codes)) != unknown:
        codes.append(len(codes))
    return codes, describe


def test_every_failing_status_has_its_class_at_its_code():
    codes, describe = defined_codes()
    assert codes, "cbreg_status_str describes no status"
    assert len(_errors.BY_STATUS) == len(codes), (
        "python/cbreg/_errors.py lists %d statuses, cbreg_status_str knows %d"
        % (len(_errors.BY_STATUS), len(codes)))
    for code in codes[1:]:
        cls = _errors.BY_STATUS[code]
        assert cls.status == code, (cls, describe(code))
        assert issubclass(cls, cbreg.Error)
        assert getattr(cbreg, cls.__name__) is cls, "cbreg exports %s" % cls.__name__


def test_ok_has_no_class_of_its_own():
    assert describe_ok() == b"ok"
    assert _errors.BY_STATUS[0] is cbreg.Error


def describe_ok():
    return status_str()(0)
