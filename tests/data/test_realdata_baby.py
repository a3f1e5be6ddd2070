"""Real Amazon 2014 Baby pairs (../shared/data/amazon2014-baby): the literature's numbers.

Skipped when the folder is absent (it is not part of the repository)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crane.data.kcore import EmptyDatasetError, KCore, apply_kcore, drop_duplicates, drop_missing
from crane.data.prepare import prepare_dataset
from crane.data.sources import acquire, pairs_csv

BABY = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "amazon2014-baby"
pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not (BABY / "pairs.csv.gz").exists(),
                       reason=f"real data not available at {BABY}"),
]
SPEC = {"source": {"type": "pairs_csv", "path": str(BABY / "pairs.csv.gz")}, "kcore": 5,
        "split": {"method": "mmrec_random", "seed": 2024}}


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory):
    raw = tmp_path_factory.mktemp("baby") / "raw"
    acquire("baby", SPEC, raw, progress=False)
    return raw


@pytest.fixture(scope="module")
def pairs(raw_dir):
    frame = pairs_csv.load_interactions(SPEC["source"], raw_dir, 0.001)
    return drop_duplicates(drop_missing(frame))


def _counts(frame):
    return frame["user"].nunique(), frame["item"].nunique(), len(frame)


def test_5core_keeps_the_published_baby_statistics(pairs):
    assert _counts(apply_kcore(pairs, KCore(5, 5), "baby")) == (19_445, 7_050, 160_792)


def test_6core(pairs):
    assert _counts(apply_kcore(pairs, KCore(6, 6), "baby")) == (11_772, 4_948, 113_715)


def test_10core_is_empty_with_a_clear_error(pairs):
    with pytest.raises(EmptyDatasetError,
                       match=r"empty after filtering: 10-core of baby leaves 0 users"):
        apply_kcore(pairs, KCore(10, 10), "baby")


def test_mmrec_random_split_reproduces_the_reference_row_for_row(raw_dir, tmp_path):
    stats = prepare_dataset("baby", SPEC, raw_dir, tmp_path / "data")
    assert (stats["train"], stats["valid"], stats["test"]) == (118_551, 20_559, 21_682)
    reference = BABY / "mmrec-split"
    for name in ("baby.inter", "u_id_mapping.csv", "i_id_mapping.csv"):
        assert (tmp_path / "data" / name).read_bytes() == (reference / name).read_bytes(), name
    assert np.isclose(stats["sparsity"], 1 - 160_792 / (19_445 * 7_050))
