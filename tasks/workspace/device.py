"""Which device a step runs on: `auto` is the first GPU when there is one, else the CPU."""

from __future__ import annotations


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "0" if torch.cuda.is_available() else "cpu"
