"""The only language the test process and the candidate process share: plain data, framed.

Values cross between the trusted test process and the untrusted candidate process as tagged JSON
that decodes into *built-in* types only (None, bool, int, float, complex, str, bytes, list, tuple,
dict, set, frozenset). Whatever the candidate sends, the test side rebuilds fresh built-in objects,
so a returned object cannot carry code (no `__eq__` that always says True, no `__del__`). Types
are checked exactly (`type(v) is int`), never with isinstance, so subclasses are refused.

This module is imported by the sandbox's child processes: standard library only.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from typing import Any

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""A frame larger than this is a protocol error (the peer is lying or the value is absurd)."""
MAX_DEPTH = 200
"""Deeper nesting than this is refused on both sides (no recursion bombs)."""

_HEADER = struct.Struct("!I")


class WireError(Exception):
    """A value cannot be encoded as plain data, or a frame/value received is malformed."""


def encode_value(value: Any, depth: int = 0) -> Any:
    """A JSON-able tagged form of a plain value; raises WireError for anything else."""
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    t = type(value)
    if value is None:
        return ["N"]
    if t is bool:
        return ["b", value]
    if t is int:
        return ["i", int.__repr__(value) if -(10**15) < value < 10**15 else hex(value)]
    if t is float:
        return ["f", float.hex(value)]
    if t is complex:
        return ["c", float.hex(value.real), float.hex(value.imag)]
    if t is str:
        return ["s", value]
    if t is bytes:
        return ["y", base64.b64encode(value).decode("ascii")]
    if t is list or t is tuple or t is set or t is frozenset:
        tag = {list: "l", tuple: "t", set: "S", frozenset: "F"}[t]
        return [tag, [encode_value(v, depth + 1) for v in value]]
    if t is dict:
        return ["d", [[encode_value(k, depth + 1), encode_value(v, depth + 1)]
                      for k, v in dict.items(value)]]
    raise WireError(f"cannot send a value of type {t.__name__!r}: only plain data crosses")


def decode_value(obj: Any, depth: int = 0) -> Any:
    """Rebuild a plain value from encode_value's form; raises WireError on anything malformed."""
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if type(obj) is not list or not obj or type(obj[0]) is not str:
        raise WireError("malformed value")
    tag = obj[0]
    try:
        if tag == "N" and len(obj) == 1:
            return None
        if tag == "b" and type(obj[1]) is bool:
            return obj[1]
        if tag == "i" and type(obj[1]) is str:
            text = obj[1]
            return int(text, 16) if "x" in text else int(text)
        if tag == "f" and type(obj[1]) is str:
            return float.fromhex(obj[1])
        if tag == "c" and type(obj[1]) is str and type(obj[2]) is str:
            return complex(float.fromhex(obj[1]), float.fromhex(obj[2]))
        if tag == "s" and type(obj[1]) is str:
            return obj[1]
        if tag == "y" and type(obj[1]) is str:
            return base64.b64decode(obj[1], validate=True)
        if tag in ("l", "t", "S", "F") and type(obj[1]) is list:
            items = [decode_value(v, depth + 1) for v in obj[1]]
            return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
        if tag == "d" and type(obj[1]) is list:
            out = {}
            for pair in obj[1]:
                if type(pair) is not list or len(pair) != 2:
                    raise WireError("malformed dict item")
                out[decode_value(pair[0], depth + 1)] = decode_value(pair[1], depth + 1)
            return out
    except (ValueError, TypeError, IndexError, OverflowError) as exc:  # e.g. unhashable key
        raise WireError(f"malformed value: {exc}") from None
    raise WireError(f"malformed value with tag {tag!r}")


def write_message(fd: int, message: dict) -> None:
    """Write one length-prefixed JSON frame to a file descriptor."""
    payload = json.dumps(message, separators=(",", ":")).encode("utf-8")
    if len(payload) > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {len(payload)} bytes exceeds {MAX_MESSAGE_BYTES}")
    data = _HEADER.pack(len(payload)) + payload
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, remaining = [], n
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_message(fd: int) -> dict | None:
    """Read one frame; None at a clean end of stream; WireError on a malformed frame."""
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_MESSAGE_BYTES:
        raise WireError(f"frame of {size} bytes exceeds {MAX_MESSAGE_BYTES}")
    payload = _read_exact(fd, size)
    if payload is None:
        raise WireError("stream ended inside a frame")
    try:
        message = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"frame is not JSON: {exc}") from None
    if type(message) is not dict:
        raise WireError("frame is not a JSON object")
    return message


def messages_in(data: bytes) -> list[dict]:
    """Every complete, well-formed frame in a byte string (a cut-off last frame is dropped)."""
    messages, offset = [], 0
    while offset + _HEADER.size <= len(data):
        (size,) = _HEADER.unpack_from(data, offset)
        end = offset + _HEADER.size + size
        if end > len(data):
            break
        try:
            message = json.loads(data[offset + _HEADER.size:end])
        except ValueError:
            break
        if type(message) is dict:
            messages.append(message)
        offset = end
    return messages
