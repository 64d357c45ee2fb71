"""The wire format of ``harness serve``: query bodies in, JSON answers out.

A query (``POST /query``, header ``X-Client-Id: NAME``) carries a batch
``(n, *input_shape)`` in one of three encodings, chosen by ``Content-Type`` (required: a
request without one is refused with 415):

- ``application/octet-stream``: raw little-endian float32 values in C order, with the
  batch shape in the header ``X-Shape: n,c,h,w`` (``X-Dtype: float64`` for float64).
  The cheapest to encode and decode; what :class:`HttpOracle` sends.
- ``application/x-npy``: the bytes of ``numpy.save`` (no pickles).
- ``application/json``: ``{"inputs": [[...], ...]}`` for small requests (curl, scripts);
  nested at most :data:`MAX_JSON_DEPTH` levels (deeper is a 400, never a server error).

The answer is JSON: ``outputs`` (probability rows, or labels), ``admitted``,
``server_compute_s`` (the server's own wall time for the batch, for diagnostics),
``queries_used`` and ``budget_left``. Refused rows are ``null`` (probs) or -1
(labels). Nothing else about the victim (exits, thresholds) is ever sent.
"""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

CLIENT_HEADER = "x-client-id"
SHAPE_HEADER = "x-shape"
DTYPE_HEADER = "x-dtype"
OCTET = "application/octet-stream"
NPY = "application/x-npy"
JSON = "application/json"
FORMATS = (OCTET, NPY, JSON)
DTYPES = {"float32": np.dtype("<f4"), "float64": np.dtype("<f8")}
CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
PROTOCOL = 1
"""Version of this wire format (reported by ``GET /health``)."""
MAX_JSON_DEPTH = 8
"""Deepest list nesting a JSON batch may have (the batch axis plus up to 7 input axes)."""


@dataclass(frozen=True)
class WireError(Exception):
    """A request the server refuses before it reaches the oracle: HTTP status + reason."""

    status: int
    message: str

    def __str__(self) -> str:
        return self.message


def check_client_id(raw: str | None) -> str:
    """The client id of a request; 400 when it is missing or malformed."""
    if raw is None:
        raise WireError(400, f"missing header X-Client-Id; send X-Client-Id: NAME "
                             f"({CLIENT_ID.pattern}); each client id has its own budget")
    if not CLIENT_ID.fullmatch(raw):
        raise WireError(400, f"X-Client-Id {raw[:80]!r} is not allowed; use 1-64 characters "
                             "of letters, digits, '.', '_' or '-'")
    return raw


def _parse_shape(raw: str | None) -> tuple[int, ...]:
    if raw is None:
        raise WireError(400, "an application/octet-stream body needs the header X-Shape: "
                             "n,d1,d2,... (the batch shape, e.g. X-Shape: 1,1,8,8)")
    try:
        shape = tuple(int(p) for p in raw.split(","))
    except ValueError:
        raise WireError(400, f"X-Shape {raw[:80]!r} is not a comma-separated list of "
                             "integers; e.g. X-Shape: 1,1,8,8") from None
    if not shape or min(shape) < 0:
        raise WireError(400, f"X-Shape {raw[:80]!r} must list non-negative sizes")
    return shape


def _decode_octet(body: bytes, headers: dict[str, str]) -> np.ndarray:
    shape = _parse_shape(headers.get(SHAPE_HEADER))
    name = headers.get(DTYPE_HEADER, "float32").strip().lower()
    if name not in DTYPES:
        raise WireError(400, f"X-Dtype {name[:40]!r} is not allowed; send float32 (default) "
                             "or float64")
    dtype = DTYPES[name]
    expected = math.prod(shape) * dtype.itemsize
    if len(body) != expected:
        raise WireError(400, f"body has {len(body)} bytes but X-Shape {','.join(map(str, shape))}"
                             f" of {name} needs {expected}; send the array's raw C-order bytes")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def _decode_npy(body: bytes) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, EOFError, UnpicklingError...
        raise WireError(400, f"body is not a readable .npy array ({type(exc).__name__}); send "
                             "the bytes numpy.save writes, without pickled objects") from None
    if not isinstance(array, np.ndarray):
        raise WireError(400, "a .npy body must hold one array")
    return array


def _decode_json(body: bytes) -> np.ndarray:
    try:
        doc = json.loads(body)
    except RecursionError:
        raise WireError(400, f"JSON nested deeper than this server parses; a batch needs "
                             f"at most {MAX_JSON_DEPTH} levels: "
                             '{"inputs": [[...], ...]}') from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(400, f"body is not valid JSON ({exc}); send "
                             '{"inputs": [[...], ...]}') from None
    if not isinstance(doc, dict) or "inputs" not in doc:
        raise WireError(400, 'a JSON body must be an object {"inputs": [...]} holding the '
                             "batch (n, *input_shape) as nested lists of numbers")
    if _depth(doc["inputs"]) > MAX_JSON_DEPTH:
        raise WireError(400, f'"inputs" is nested more than {MAX_JSON_DEPTH} levels deep; send '
                             "the batch (n, *input_shape) as nested lists of numbers")
    try:
        array = np.array(doc["inputs"], dtype=np.float64)
    except (TypeError, ValueError, RecursionError):
        raise WireError(400, '"inputs" must be nested lists of numbers of one rectangular '
                             "shape (n, *input_shape)") from None
    return array


def _depth(value: object) -> int:
    """Nesting depth of lists (the first element of each level: a ragged batch is refused
    later by numpy), without recursion."""
    depth = 0
    while isinstance(value, list):
        depth += 1
        if depth > MAX_JSON_DEPTH or not value:
            break
        value = value[0]
    return depth


def decode_query(body: bytes, headers: dict[str, str]) -> np.ndarray:
    """The batch a request body carries (no validation of its shape or values yet)."""
    if "content-type" not in headers:
        raise WireError(415, f"missing header Content-Type; send one of {', '.join(FORMATS)} "
                             "(application/octet-stream with X-Shape is the cheapest)")
    media = headers["content-type"].split(";")[0].strip().lower()
    if media == OCTET:
        return _decode_octet(body, headers)
    if media == NPY:
        return _decode_npy(body)
    if media == JSON:
        return _decode_json(body)
    raise WireError(415, f"Content-Type {media[:60]!r} is not accepted; send one of "
                         f"{', '.join(FORMATS)}")


def encode_octet(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """Body and headers for a float32 batch in the octet-stream encoding."""
    array = np.ascontiguousarray(x, dtype="<f4")
    return array.tobytes(), {"Content-Type": OCTET,
                             SHAPE_HEADER: ",".join(str(s) for s in array.shape)}


def _finite_or_none(values: np.ndarray) -> list[Any]:
    return [None if not math.isfinite(v) else v for v in values.tolist()]


def answer_json(outputs: np.ndarray, admitted: np.ndarray, server_compute_s: float,
                queries_used: int, budget_left: int) -> dict[str, Any]:
    """The JSON answer to a query (NaN rows of refused queries become ``null``)."""
    if outputs.ndim == 2:
        rows = [_finite_or_none(r) if ok else None
                for r, ok in zip(outputs, admitted.tolist(), strict=True)]
    else:
        rows = [int(v) for v in outputs.tolist()]
    return {"outputs": rows, "admitted": [bool(a) for a in admitted.tolist()],
            "server_compute_s": float(server_compute_s), "queries_used": int(queries_used),
            "budget_left": int(budget_left)}


def read_answer(doc: dict[str, Any], n: int, num_classes: int,
                output: str) -> tuple[np.ndarray, np.ndarray]:
    """(outputs, admitted) of a JSON answer, as the in-process oracle returns them."""
    admitted = np.array(doc["admitted"], dtype=bool)
    if output == "label":
        outputs = np.array(doc["outputs"], dtype=np.int64)
    else:
        outputs = np.full((n, num_classes), np.nan)
        for i, row in enumerate(doc["outputs"]):
            if row is not None:
                outputs[i] = np.array([np.nan if v is None else v for v in row], dtype=np.float64)
    if len(admitted) != n or len(outputs) != n:
        raise ValueError(f"the server answered {len(outputs)} rows for {n} queries")
    return outputs, admitted
