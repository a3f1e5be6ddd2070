"""Which torch device a run uses: `auto` means CUDA when present, else CPU."""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """`auto` | `cpu` | `cuda` | `cuda:N` -> torch.device; an unavailable CUDA is an error."""
    if isinstance(name, torch.device):
        return name
    name = str(name).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine")
    if device.type not in {"cpu", "cuda"}:
        raise ValueError(f"device {name!r}: expected auto, cpu, cuda or cuda:N")
    return device


def describe(device: torch.device) -> str:
    """Human-readable device name for manifests (GPU model when CUDA)."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return "cpu"
