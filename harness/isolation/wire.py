"""The byte format every isolated process speaks: a JSON header plus named arrays.

Nothing that crosses a process boundary towards the evaluator is unpickled: a message
is ``MAGIC | header length | JSON header | raw array bytes``, each array described in
the header by name, dtype (numeric kinds only) and shape. So a hostile attack or
defense can send wrong *values*, which the evaluator checks, but never code. Messages have a size limit.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAGIC = b"HXW2"
NUMERIC_KINDS = "biuf"
"""Array kinds allowed on the wire: bool, signed and unsigned integers, floats."""
MAX_MESSAGE_BYTES = 1 << 31
"""Largest message accepted (2 GiB): a CIFAR-size state dict or query batch fits."""


class WireError(ValueError):
    """A message that is malformed, too large, or of an unexpected kind."""


@dataclass(frozen=True)
class Message:
    """One request or reply: a kind, JSON metadata and named numeric arrays."""

    kind: str
    meta: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def encode(message: Message) -> bytes:
    """Serialise a message (JSON metadata must be finite; arrays must be numeric)."""
    specs, chunks = [], []
    for name, value in message.arrays.items():
        array = np.asarray(value)
        if not array.flags.c_contiguous:
            array = array.copy(order="C")
        if array.dtype.kind not in NUMERIC_KINDS:
            raise WireError(f"array {name!r} has dtype {array.dtype}; send numeric arrays only")
        specs.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape)})
        chunks.append(array.tobytes())
    header = json.dumps({"kind": message.kind, "meta": message.meta, "arrays": specs},
                        sort_keys=True, allow_nan=False).encode()
    return b"".join([MAGIC, struct.pack("<Q", len(header)), header, *chunks])


def _arrays(specs: Any, body: memoryview) -> dict[str, np.ndarray]:
    if not isinstance(specs, list):
        raise WireError("message header has the wrong types")
    arrays, offset = {}, 0
    for spec in specs:
        try:
            dtype = np.dtype(str(spec["dtype"]))
            shape = tuple(int(d) for d in spec["shape"])
            name = str(spec["name"])
        except (KeyError, TypeError, ValueError) as exc:
            raise WireError(f"unreadable array description: {exc}") from None
        if dtype.kind not in NUMERIC_KINDS or any(d < 0 for d in shape):
            raise WireError(f"array {name!r}: dtype {dtype} or shape {shape} is not allowed")
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if offset + size > len(body):
            raise WireError(f"array {name!r} is truncated")
        arrays[name] = np.frombuffer(body[offset:offset + size], dtype=dtype).reshape(shape).copy()
        offset += size
    if offset != len(body):
        raise WireError("message has trailing bytes")
    return arrays


def decode(blob: bytes, expected: tuple[str, ...] | None = None) -> Message:
    """Parse a message without unpickling anything; ``expected`` limits its kind."""
    if len(blob) > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {len(blob)} bytes exceeds the limit of {MAX_MESSAGE_BYTES}")
    if len(blob) < len(MAGIC) + 8 or not blob.startswith(MAGIC):
        raise WireError("not a harness wire message (bad magic)")
    (size,) = struct.unpack("<Q", blob[len(MAGIC):len(MAGIC) + 8])
    start = len(MAGIC) + 8
    if size > len(blob) - start:
        raise WireError("truncated message header")
    try:
        header = json.loads(blob[start:start + size])
        kind, meta, specs = header["kind"], header["meta"], header["arrays"]
    except (ValueError, KeyError, TypeError) as exc:
        raise WireError(f"unreadable message header: {exc}") from None
    if not isinstance(kind, str) or not isinstance(meta, dict):
        raise WireError("message header has the wrong types")
    if expected is not None and kind not in expected:
        raise WireError(f"unexpected message kind {kind!r}; expected one of {list(expected)}")
    return Message(kind, meta, _arrays(specs, memoryview(blob)[start + size:]))


def send(conn: Any, message: Message) -> None:
    """Write one message to a :class:`multiprocessing.connection.Connection`."""
    conn.send_bytes(encode(message))


def receive(conn: Any, expected: tuple[str, ...] | None = None) -> Message:
    """Read one message from a connection (never unpickles)."""
    return decode(conn.recv_bytes(MAX_MESSAGE_BYTES), expected)
