"""What every encoder type returns, and how encoders read their config values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class EncodedItems:
    """What an encoder made of the items: rows aligned with item_id."""

    features: np.ndarray  # float32 (n_items, dim); rows with present=False are filled later
    present: np.ndarray  # bool (n_items,)
    problems: dict[int, str] = field(default_factory=dict)  # item_id -> why it has no vector
    info: dict[str, Any] = field(default_factory=dict)  # weights hash, preprocessing, ...


def cfg_int(cfg: dict[str, Any], key: str, default: int, minimum: int, encoder: str) -> int:
    """An integer config value (absent or null: `default`), or an error naming the key."""
    value = cfg.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{encoder}: `{key}` must be an integer >= {minimum}, got {value!r}")
    return value
