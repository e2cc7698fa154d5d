"""The plain-data wire: exact round trips, and nothing but WireError from hostile input."""

from __future__ import annotations

import json
import math
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from megatron_rrtf.sandbox.wire import (
    WireError,
    decode_value,
    encode_value,
    messages_in,
    read_message,
    write_message,
)

scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
           | st.complex_numbers(allow_nan=False) | st.text() | st.binary())
hashables = st.recursive(scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner),
                         max_leaves=8)
values = st.recursive(
    scalars,
    lambda inner: (st.lists(inner) | st.tuples(inner, inner) | st.sets(hashables)
                   | st.frozensets(hashables) | st.dictionaries(hashables, inner)),
    max_leaves=20)


def same(a, b) -> bool:
    """Equal and of exactly the same types all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


@settings(deadline=None)  # the machine is shared: time per example is not the property
@given(values)
def test_round_trip_is_exact(value):
    assert same(decode_value(json.loads(json.dumps(encode_value(value)))), value)


def test_nan_and_signed_zero_survive():
    nan, negzero = decode_value(encode_value(float("nan"))), decode_value(encode_value(-0.0))
    assert math.isnan(nan) and math.copysign(1, negzero) == -1


@pytest.mark.parametrize("value", [object(), print, (x for x in ()), type("I", (int,), {})(3),
                                   type("S", (str,), {})("x"), range(3)])
def test_anything_but_plain_data_is_refused(value):
    with pytest.raises(WireError):
        encode_value(value)


def test_depth_is_bounded():
    deep: list = []
    for _ in range(500):
        deep = [deep]
    with pytest.raises(WireError):
        encode_value(deep)


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=4), max_leaves=12))
def test_hostile_encodings_raise_only_wire_error(obj):
    try:
        decode_value(obj)
    except WireError:
        pass


def test_frames_round_trip_over_a_pipe_and_partial_frames_are_dropped():
    r, w = os.pipe()
    write_message(w, {"a": 1})
    write_message(w, {"b": [2]})
    os.close(w)
    assert read_message(r) == {"a": 1} and read_message(r) == {"b": [2]}
    assert read_message(r) is None
    os.close(r)
    r, w = os.pipe()
    write_message(w, {"c": 3})
    os.close(w)
    data = os.read(r, 1000)
    os.close(r)
    assert messages_in(data) == [{"c": 3}] and messages_in(data[:-1]) == []
