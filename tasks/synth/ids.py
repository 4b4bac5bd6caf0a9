"""Deterministic seeds and LabelBox-style track ids."""

from __future__ import annotations

import hashlib

import numpy as np

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
# LabelBox cuids start "c" + base36 millisecond timestamp; anchor ours in early 2022 like
# the real annotations (e.g. ckz3v9nzv00033867jsekqdcl).
_EPOCH_MS = 1_643_000_000_000


def stable_int(*parts: object) -> int:
    """A 64-bit integer from the parts, stable across processes and Python versions."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def rng_for(seed: int, *parts: object) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFFFFFF, stable_int(seed, *parts)])


def _b36(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, r = divmod(value, 36)
        chars.append(_B36[r])
    return "".join(reversed(chars))


def track_id(seed: int, source: str, index: int) -> str:
    """25-char cuid: c + timestamp(8) + counter(4) + fingerprint(4) + random(8).

    The random part hashes (seed, source, index), so ids are unique across the dataset
    in practice; the generator still checks uniqueness before finishing.
    """
    ts = _EPOCH_MS + stable_int(seed, source) % 10_000_000_000 + index * 7919
    fingerprint = stable_int("fp", seed, source) % 36**4
    rand = stable_int("rnd", seed, source, index) % 36**8
    tid = "c" + _b36(ts, 8) + _b36(index % 36**4, 4) + _b36(fingerprint, 4) + _b36(rand, 8)
    assert len(tid) == 25
    return tid
