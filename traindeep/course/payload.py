"""Raw data out of a student's kernel, and back into Python on the trusted side.

A probe's `call` runs in the student's kernel; `emit` turns its result into
plain JSON (arrays and tensors as base64 bytes, modules as their weights and
flags) and displays it under a MIME type of its own. `decode` turns that text
back into Python values with NumPy arrays, and executes nothing: the text is
untrusted, so it is read as data only, with a whitelist of array types and
sizes checked against shapes.
"""

from __future__ import annotations

import base64
import json
import math

PROBE_MIME = "application/vnd.traindeep.probe"
MAX_CHARS = 32 << 20
DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "float16", "float32", "float64")


class PayloadError(ValueError):
    """A payload that is not what `encode` writes."""


def encode(value, depth: int = 0):
    """Plain JSON for `value`: numbers, strings, lists, dicts, arrays and modules."""
    import numpy as np

    if depth > 30:
        raise ValueError("the value is nested more than 30 levels deep")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**63 else float(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, np.generic):
        return encode(value.item(), depth + 1)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(value, torch.nn.Module):
        return {"__module__": {
            "repr": str(value)[:5000], "training": value.training,
            "state": {k: encode(v, depth + 1) for k, v in value.state_dict().items()},
            "requires_grad": {k: p.requires_grad for k, p in value.named_parameters()}}}
    if torch is not None and isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        value = value.numpy()
    if isinstance(value, np.ndarray):
        if value.dtype.name not in DTYPES:
            value = value.astype(np.float64)
        return {"__ndarray__": base64.b64encode(np.ascontiguousarray(value).tobytes()).decode("ascii"),
                "dtype": value.dtype.name, "shape": list(value.shape)}
    if isinstance(value, dict):
        return {"__dict__": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [encode(v, depth + 1) for v in value]
    return {"__repr__": repr(value)[:300]}


def emit(index: int, call) -> None:
    """Run a probe's call (in the student's kernel) and display its encoded result or its error."""
    from IPython.display import publish_display_data

    try:
        text = json.dumps({"probe": index, "value": encode(call())})
        if len(text) > MAX_CHARS:
            text = json.dumps({"probe": index, "error": f"the result is larger than {MAX_CHARS >> 20} MB"})
    except BaseException as error:  # a probe's failure is the student's answer failing, not the run's
        text = json.dumps({"probe": index, "error": f"{type(error).__name__}: {error}"[:300]})
    publish_display_data({PROBE_MIME: text})


def decode(obj, depth: int = 0):
    """The Python value of an encoded payload (arrays as NumPy arrays); raises PayloadError."""
    import numpy as np

    if depth > 40:
        raise PayloadError("nested too deeply")
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, list):
        return [decode(v, depth + 1) for v in obj]
    if not isinstance(obj, dict) or len(obj) not in (1, 3):
        raise PayloadError(f"unexpected {type(obj).__name__} in a payload")
    if "__ndarray__" in obj:
        dtype, shape = obj.get("dtype"), obj.get("shape")
        if dtype not in DTYPES or not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0
                                                                         for n in shape):
            raise PayloadError("an array with an unexpected dtype or shape")
        raw = base64.b64decode(obj["__ndarray__"], validate=True)
        if len(raw) != math.prod(shape) * np.dtype(dtype).itemsize:
            raise PayloadError("an array whose size does not match its shape")
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    (key, inner), = obj.items()
    if key == "__float__" and inner in ("nan", "inf", "-inf"):
        return float(inner)
    if key == "__dict__" and isinstance(inner, list):
        pairs = [decode(pair, depth + 1) for pair in inner]
        if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise PayloadError("a dict entry that is not a pair")
        try:
            return {_hashable(k): v for k, v in pairs}
        except TypeError as error:
            raise PayloadError(f"a dict key that cannot be a key: {error}") from None
    if key == "__module__" and isinstance(inner, dict):
        return {"repr": str(inner.get("repr", "")), "training": bool(inner.get("training")),
                "state": decode({"__dict__": [[k, v] for k, v in inner.get("state", {}).items()]}, depth + 1),
                "requires_grad": {str(k): bool(v) for k, v in inner.get("requires_grad", {}).items()}}
    if key == "__repr__":
        return {"repr": str(inner)[:300]}
    raise PayloadError(f"unknown payload marker {key!r}")


def _hashable(key):
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def parse(text: str):
    """(probe index, decoded value or None, error or None) from one emitted payload."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise PayloadError(f"not JSON: {str(error)[:80]}") from None
    if not isinstance(message, dict) or not isinstance(message.get("probe"), int):
        raise PayloadError("not a probe payload")
    if "error" in message:
        return message["probe"], None, str(message["error"])[:300]
    try:
        return message["probe"], decode(message.get("value")), None
    except RecursionError:
        raise PayloadError("nested too deeply") from None


def plain(value, depth: int = 0):
    """A value computed on the trusted side, as JSON-able Python (for the grader and its reports)."""
    import numpy as np

    if depth > 40:
        raise ValueError("nested too deeply")
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [plain(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    return repr(value)[:200]
