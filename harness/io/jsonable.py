"""Values made JSON-safe: what a plugin returns (diagnostics, details) before it is written.

One converter for every place a component's free-form values enter a result or a message:
numpy arrays and scalars become lists and numbers, tuples lists, dict keys strings, and
non-finite floats ``null`` (results are strict JSON). Anything else raises ``TypeError``
naming its type, which the caller reports as the component's fault.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values (see the module docstring); raises ``TypeError``."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, str | int | float):
        return obj
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")
