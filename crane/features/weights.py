"""Hashes that identify encoder weights, recorded in every feature manifest."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from crane import files

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".h5", ".msgpack")


def folder_weights_sha256(folder: str | os.PathLike) -> str:
    """sha256 over a model folder's weight files (relative path + file hash, in path order)."""
    folder = Path(folder)
    weight_files = sorted(p for p in folder.rglob("*")
                          if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not weight_files:
        raise FileNotFoundError(f"{folder}: no weight files ({', '.join(WEIGHT_SUFFIXES)})")
    digest = hashlib.sha256()
    for path in weight_files:
        digest.update(f"{path.relative_to(folder).as_posix()}\0{files.sha256_file(path)}\n"
                      .encode())
    return digest.hexdigest()


def state_dict_sha256(module: torch.nn.Module) -> str:
    """sha256 over a loaded module's tensors: identifies weights that came without a file."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        # raw bytes: works for dtypes numpy lacks (bfloat16)
        digest.update(memoryview(flat.view(torch.uint8).numpy()))
    return digest.hexdigest()
