"""Short content hashes used as cache keys and as weight fingerprints.

Every hash here is a hex prefix of a standard digest; the lengths are part of the keys already
written to disk, so callers pass the length their files were written with.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch


def add_weights(h, module: torch.nn.Module) -> None:
    """Feed a module's state dict into the hash object h: each tensor's name and bytes, by name."""
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())


def weights_hash(module: torch.nn.Module, length: int = 16) -> str:
    """sha256 of a module's weights (names and values): equal weights, equal hash."""
    h = hashlib.sha256()
    add_weights(h, module)
    return h.hexdigest()[:length]


def arrays_hash(*arrays: np.ndarray, length: int = 16) -> str:
    """sha1 of the bytes of arrays, in order (shapes and types are not hashed)."""
    h = hashlib.sha1()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:length]


def json_hash(value, length: int = 20) -> str:
    """sha1 of a JSON-able value written with sorted keys (str() for anything JSON cannot write).

    >>> json_hash({"b": 1, "a": [2]}, length=8) == json_hash({"a": [2], "b": 1}, length=8)
    True
    >>> len(json_hash("x"))
    20
    """
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:length]
