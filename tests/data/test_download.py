"""Downloads against a local HTTP server: full, resumed, 404, 500, checksum failures, the
verification of first downloads."""

from __future__ import annotations

import gzip
import hashlib
import json
import os

import pytest

from crane.data import image_features_b
from crane.data.checksums import ChecksumRegistry
from crane.data.download import (
    ChecksumMismatch, DamagedDownload, DownloadError, RetryPolicy, download)

FAST = RetryPolicy(retries=3, backoff=0.01, max_backoff=0.02, timeout=5)
# several read chunks, not a round size; not starting with the gzip magic bytes, so that a
# first download of "file.gz" is not read as a (broken) gzip stream
BODY = b"raw bytes " + os.urandom(3 * (1 << 20) + 12345)
SHA = hashlib.sha256(BODY).hexdigest()


def test_full_download_verifies_and_fills_registry(http_server, tmp_path):
    http_server.routes["/data/file.gz"] = ("file", BODY)
    registry = ChecksumRegistry(tmp_path / "checksums.json")
    dest = tmp_path / "raw" / "file.gz"
    record = download(http_server.url("/data/file.gz"), dest, registry=registry, policy=FAST,
                      progress=False)
    assert dest.read_bytes() == BODY
    assert (record.sha256, record.size) == (SHA, len(BODY))
    assert not dest.with_name("file.gz.part").exists()
    entries = json.loads((tmp_path / "checksums.json").read_text())
    assert entries == {http_server.url("/data/file.gz"): {"sha256": SHA, "size": len(BODY)}}


def test_complete_file_is_not_fetched_again(http_server, tmp_path):
    http_server.routes["/f"] = ("file", BODY)
    registry = ChecksumRegistry(tmp_path / "checksums.json")
    download(http_server.url("/f"), tmp_path / "f", registry=registry, policy=FAST,
             progress=False)
    download(http_server.url("/f"), tmp_path / "f", registry=registry, policy=FAST,
             progress=False)
    assert http_server.hits["/f"] == 1


def test_resume_after_connection_drop_uses_range(http_server, tmp_path):
    http_server.routes["/big"] = ("drop_once", BODY)
    record = download(http_server.url("/big"), tmp_path / "big", sha256=SHA, policy=FAST,
                      progress=False)
    assert (tmp_path / "big").read_bytes() == BODY
    assert record.sha256 == SHA
    assert http_server.hits["/big"] == 2
    first, second = http_server.ranges["/big"]
    assert first is None
    assert second == f"bytes={len(BODY) // 2}-"  # asked only for the missing half


def test_resume_from_existing_part_file(http_server, tmp_path):
    http_server.routes["/p"] = ("file", BODY)
    (tmp_path / "p.part").write_bytes(BODY[:1000])
    download(http_server.url("/p"), tmp_path / "p", sha256=SHA, policy=FAST, progress=False)
    assert (tmp_path / "p").read_bytes() == BODY
    assert http_server.ranges["/p"] == ["bytes=1000-"]


def test_server_ignoring_range_restarts_cleanly(http_server, tmp_path):
    http_server.routes["/n"] = ("drop_no_range", BODY)
    download(http_server.url("/n"), tmp_path / "n", sha256=SHA, policy=FAST, progress=False)
    assert (tmp_path / "n").read_bytes() == BODY


def test_404_is_not_retried(http_server, tmp_path):
    http_server.routes["/missing"] = ("404", b"")
    with pytest.raises(DownloadError, match=r"/missing: HTTP 404"):
        download(http_server.url("/missing"), tmp_path / "m", policy=FAST, progress=False)
    assert http_server.hits["/missing"] == 1
    assert not (tmp_path / "m").exists()


def test_500_is_retried_then_fails_clearly(http_server, tmp_path):
    http_server.routes["/broken"] = ("500", b"")
    with pytest.raises(DownloadError, match=r"/broken: giving up after 3 retries: HTTP 500"):
        download(http_server.url("/broken"), tmp_path / "b", policy=FAST, progress=False)
    assert http_server.hits["/broken"] == FAST.retries + 1
    assert not (tmp_path / "b").exists()


def test_transient_500_recovers(http_server, tmp_path):
    http_server.routes["/flaky"] = ("500x2", BODY)
    download(http_server.url("/flaky"), tmp_path / "flaky", policy=FAST, progress=False)
    assert (tmp_path / "flaky").read_bytes() == BODY
    assert http_server.hits["/flaky"] == 3


def test_sha_mismatch_names_file_and_both_hashes(http_server, tmp_path):
    http_server.routes["/x/file.json.gz"] = ("file", BODY)
    url = http_server.url("/x/file.json.gz")
    registry = ChecksumRegistry(tmp_path / "checksums.json")
    wrong = "0" * 64
    (tmp_path / "checksums.json").write_text(json.dumps({url: {"sha256": wrong,
                                                                "size": len(BODY)}}))
    with pytest.raises(ChecksumMismatch) as error:
        download(url, tmp_path / "file.json.gz", registry=registry, policy=FAST,
                 progress=False)
    message = str(error.value)
    assert "file.json.gz" in message and wrong in message and SHA in message
    assert not (tmp_path / "file.json.gz").exists()
    assert not (tmp_path / "file.json.gz.part").exists()


def test_size_mismatch_is_reported(http_server, tmp_path):
    http_server.routes["/s"] = ("file", BODY)
    with pytest.raises(ChecksumMismatch, match=rf"size {len(BODY)} bytes, expected 10"):
        download(http_server.url("/s"), tmp_path / "s", size=10, policy=FAST, progress=False)


def test_registry_lookup_by_file_name_and_no_silent_replacement(tmp_path):
    registry = ChecksumRegistry(tmp_path / "checksums.json")
    assert registry.lookup("http://host/a/meta_Baby.json.gz") is None
    (tmp_path / "checksums.json").write_text(json.dumps(
        {"meta_Baby.json.gz": {"sha256": "ab" * 32, "size": 5}}))
    assert registry.lookup("http://mirror/b/meta_Baby.json.gz")["size"] == 5
    registry.record("http://host/x", "cd" * 32, 7)
    registry.record("http://host/x", "cd" * 32, 7)  # same content: fine
    with pytest.raises(ValueError, match="refusing to replace"):
        registry.record("http://host/x", "ef" * 32, 7)
    assert len(json.loads((tmp_path / "checksums.json").read_text())) == 2


def test_present_file_without_entry_is_verified_before_it_is_registered(http_server, tmp_path):
    body = gzip.compress(b'{"asin": "B1"}\n' * 50)
    http_server.routes["/meta.json.gz"] = ("file", body)
    (tmp_path / "meta.json.gz").write_bytes(body[:-30])  # an earlier, truncated copy
    registry = ChecksumRegistry(tmp_path / "checksums.json")
    record = download(http_server.url("/meta.json.gz"), tmp_path / "meta.json.gz",
                      registry=registry, policy=FAST, progress=False)
    assert (tmp_path / "meta.json.gz").read_bytes() == body
    assert http_server.hits["/meta.json.gz"] == 1
    assert registry.lookup(http_server.url("/meta.json.gz"))["sha256"] == record.sha256


def test_first_download_of_image_features_with_a_partial_record_is_refused(http_server,
                                                                            tmp_path):
    record_size = image_features_b.record_dtype().itemsize
    http_server.routes["/image_features_Baby.b"] = ("file", b"\0" * (2 * record_size + 7))
    with pytest.raises(DamagedDownload, match="truncated record at byte offset"):
        download(http_server.url("/image_features_Baby.b"), tmp_path / "image_features_Baby.b",
                 policy=FAST, progress=False)
    assert not (tmp_path / "image_features_Baby.b").exists()


def test_registry_find_names_the_matching_key(tmp_path):
    registry = ChecksumRegistry(tmp_path / "checksums.json")
    (tmp_path / "checksums.json").write_text(json.dumps(
        {"meta_Baby.json.gz": {"sha256": "ab" * 32, "size": 5},
         "http://host/a/meta_Baby.json.gz": {"sha256": "cd" * 32, "size": 6},
         "broken.gz": {"size": 1}}))
    assert registry.find("http://host/a/meta_Baby.json.gz")[0] == \
        "http://host/a/meta_Baby.json.gz"
    assert registry.find("http://mirror/meta_Baby.json.gz")[0] == "meta_Baby.json.gz"
    assert registry.find("http://mirror/other.gz") is None
    with pytest.raises(ValueError, match=r"entry 'broken.gz' needs 'sha256' and 'size'"):
        registry.find("http://mirror/broken.gz")
