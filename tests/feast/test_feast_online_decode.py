"""`ValueDecoder` (the SQLite read's fast path) against Feast's own proto parse."""

from __future__ import annotations

import math
import struct

import pytest
from feast.protos.feast.types.Value_pb2 import DoubleList, Null
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from features.store.online import ValueDecoder, _proto_value

VALUES = [
    ValueProto(double_val=1.5),
    ValueProto(double_val=0.0),
    ValueProto(double_val=-0.0),
    ValueProto(double_val=1e-300),
    ValueProto(double_val=-123456.789),
    ValueProto(double_val=math.inf),
    ValueProto(double_val=-math.inf),
    ValueProto(int64_val=3),
    ValueProto(int64_val=300),
    ValueProto(int64_val=-1),
    ValueProto(int64_val=2**62),
    ValueProto(int32_val=-7),
    ValueProto(float_val=0.1),
    ValueProto(bool_val=True),
    ValueProto(bool_val=False),
    ValueProto(string_val="mobile"),
    ValueProto(string_val=""),
    ValueProto(string_val="é" * 5),  # nine bytes once encoded: not a double
    ValueProto(bytes_val=b"\x29" + bytes(8)),  # a bytes value that looks like a double's tag
    ValueProto(unix_timestamp_val=1_700_000_000),
    ValueProto(null_val=Null.NULL),
    ValueProto(),
]


def _feast(blob: bytes):
    return _proto_value(ValueProto.FromString(blob))


@pytest.mark.parametrize("proto", VALUES, ids=lambda v: v.WhichOneof("val") or "unset")
def test_decodes_every_kind_as_feast_does(proto) -> None:
    blob = proto.SerializeToString()
    decoder = ValueDecoder()
    for _ in range(2):  # parsed, then from the cache
        got = decoder.decode(blob)
        want = _feast(blob)
        assert type(got) is type(want)
        assert got == want or (math.isnan(got) and math.isnan(want))
        if isinstance(want, float):
            assert struct.pack("<d", got) == struct.pack("<d", want)  # sign of zero too


def test_nan_and_missing() -> None:
    decoder = ValueDecoder()
    assert math.isnan(decoder.decode(ValueProto(double_val=math.nan).SerializeToString()))
    assert decoder.decode(None) is None


def test_lists_are_never_shared_between_reads() -> None:
    blob = ValueProto(double_list_val=DoubleList(val=[1.0, 2.0])).SerializeToString()
    decoder = ValueDecoder()
    first, second = decoder.decode(blob), decoder.decode(blob)
    assert list(first.val) == list(second.val) == [1.0, 2.0]
    assert first is not second


def test_the_cache_is_bounded() -> None:
    decoder = ValueDecoder(max_cached=3)
    for i in range(10):
        assert decoder.decode(ValueProto(int64_val=i).SerializeToString()) == i
    assert len(decoder._scalars) == 3
