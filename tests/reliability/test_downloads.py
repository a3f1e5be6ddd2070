"""Issue 18, trustworthy downloads: damaged first downloads, wrong registry entries, stalled
servers and full disks, each against a local HTTP server on 127.0.0.1 that the test starts."""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import crane.data.download as download_module
from crane.data.checksums import ChecksumRegistry
from crane.data.download import ChecksumMismatch, DownloadError, RetryPolicy, download

FAST = RetryPolicy(retries=2, backoff=0.01, max_backoff=0.02, timeout=5)
REVIEWS = "".join(json.dumps({"reviewerID": f"U{i}", "asin": f"B{i % 97:09d}", "overall": 5.0,
                              "reviewText": "fine " * (i % 13)}) + "\n"
                  for i in range(2000)).encode()
# Amazon 2014 metadata: one Python dict literal per line (single quotes), not JSON.
META_2014 = "".join(repr({"asin": f"B{i:09d}", "title": f"item {i}", "categories": [["Baby"]]})
                    + "\n" for i in range(500)).encode()
TRICKLE_INTERVAL = 0.2  # seconds between the bytes of a trickling response
TRICKLE_BYTES = 40  # bounds a trickling response to about 8 s, even if nothing stops it


class LocalServer(ThreadingHTTPServer):
    """Serves `routes[path] = (behaviour, body)`: "file" sends the body at once, "trickle"
    announces it whole and sends one byte every TRICKLE_INTERVAL seconds."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, tuple[str, bytes]] = {}
        self.hits: dict[str, int] = {}

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: LocalServer

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.hits[self.path] = self.server.hits.get(self.path, 0) + 1
        if self.path not in self.server.routes:
            self.send_error(404, "Not Found")
            return
        behaviour, body = self.server.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if behaviour == "file":
            self.wfile.write(body)
            return
        for byte in body[:TRICKLE_BYTES]:
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:  # the client gave up
                return
            time.sleep(TRICKLE_INTERVAL)


@pytest.fixture
def server():
    local = LocalServer()
    thread = threading.Thread(target=local.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    try:
        yield local
    finally:
        local.shutdown()
        local.server_close()


def _registry_entries(registry: ChecksumRegistry) -> dict:
    return json.loads(registry.path.read_text()) if registry.path.exists() else {}


def _fetch(server, name: str, tmp_path, registry=None, policy=FAST):
    return download(server.url(f"/files/{name}"), tmp_path / "raw" / name, registry=registry,
                    policy=policy, progress=False)


# Probe 1: a damaged first download must not be accepted and registered.

def test_truncated_first_download_is_refused_and_not_registered(server, tmp_path):
    """Probe 1: a truncated .json.gz (no registry entry yet) is refused, not registered."""
    name = "reviews_Baby_5.json.gz"
    server.routes[f"/files/{name}"] = ("file", gzip.compress(REVIEWS)[:-200])
    registry = ChecksumRegistry(tmp_path / "checksums.json")
    with pytest.raises(DownloadError) as error:
        _fetch(server, name, tmp_path, registry)
    message = str(error.value)
    assert server.url(f"/files/{name}") in message
    assert "gzip" in message and "truncated" in message
    assert not (tmp_path / "raw" / name).exists()
    assert not (tmp_path / "raw" / f"{name}.part").exists()
    assert _registry_entries(registry) == {}


def test_bit_flipped_first_download_is_refused_and_not_registered(server, tmp_path):
    """Probe 1: a .json.gz with one flipped bit (no registry entry yet) is refused."""
    name = "reviews_Sports_and_Outdoors_5.json.gz"
    damaged = bytearray(gzip.compress(REVIEWS, mtime=0))
    damaged[len(damaged) // 2] ^= 0x10
    server.routes[f"/files/{name}"] = ("file", bytes(damaged))
    registry = ChecksumRegistry(tmp_path / "checksums.json")
    with pytest.raises(DownloadError, match="corrupt or truncated gzip") as error:
        _fetch(server, name, tmp_path, registry)
    assert server.url(f"/files/{name}") in str(error.value)
    assert not (tmp_path / "raw" / name).exists()
    assert not (tmp_path / "raw" / f"{name}.part").exists()
    assert _registry_entries(registry) == {}


def test_first_download_that_is_not_json_lines_is_refused(server, tmp_path):
    """Probe 1: an error page served under a .json.gz name does not parse as records."""
    name = "meta_Baby.json.gz"
    server.routes[f"/files/{name}"] = ("file", b"<html><body>Service moved</body></html>\n")
    registry = ChecksumRegistry(tmp_path / "checksums.json")
    with pytest.raises(DownloadError, match="malformed") as error:
        _fetch(server, name, tmp_path, registry)
    assert server.url(f"/files/{name}") in str(error.value)
    assert not (tmp_path / "raw" / name).exists()
    assert _registry_entries(registry) == {}


def test_first_download_of_loose_json_and_json_lines_is_registered(server, tmp_path):
    """Probe 1: sound files (2014 Python-literal metadata, JSON lines) are accepted."""
    registry = ChecksumRegistry(tmp_path / "checksums.json")
    bodies = {"meta_Baby.json.gz": gzip.compress(META_2014),
              "reviews_Baby_5.json.gz": gzip.compress(REVIEWS),
              "ratings_Baby.csv": b"U1,B1,5.0,1400000000\n"}
    for name, body in bodies.items():
        server.routes[f"/files/{name}"] = ("file", body)
        _fetch(server, name, tmp_path, registry)
        assert (tmp_path / "raw" / name).read_bytes() == body
    assert _registry_entries(registry) == {
        server.url(f"/files/{name}"): {"sha256": hashlib.sha256(body).hexdigest(),
                                       "size": len(body)}
        for name, body in bodies.items()}


# Probe 2: a mismatch against the registry says which entry and what to do.

def test_registry_mismatch_names_registry_entry_and_remedy(server, tmp_path):
    """Probe 2: a refused download names the registry file, the entry and the remedy."""
    name = "reviews_Baby_5.json.gz"
    body = gzip.compress(REVIEWS)
    server.routes[f"/files/{name}"] = ("file", body)
    registry = ChecksumRegistry(tmp_path / "config" / "checksums.json")
    registry.path.parent.mkdir()
    # recorded once from a damaged (half-size) copy: the registry itself is wrong
    registry.path.write_text(json.dumps({name: {"sha256": "ab" * 32, "size": len(body) // 2}}))
    with pytest.raises(ChecksumMismatch) as error:
        _fetch(server, name, tmp_path, registry)
    message = str(error.value)
    assert f"size {len(body)} bytes, expected {len(body) // 2}" in message
    assert str(registry.path) in message
    assert repr(name) in message  # the entry's key
    assert "delete" in message and "re-download" in message


# Probe 3: a server that trickles bytes cannot hold a download forever.

def test_trickling_server_hits_overall_deadline(server, tmp_path):
    """Probe 3: one byte every few tenths of a second stops at the per-file deadline."""
    name = "meta_Baby.json.gz"
    server.routes[f"/files/{name}"] = ("trickle", b"x" * 1000)
    policy = RetryPolicy(retries=2, backoff=0.01, max_backoff=0.02, timeout=5, deadline=1.0)
    started = time.monotonic()
    with pytest.raises(DownloadError) as error:
        _fetch(server, name, tmp_path, policy=policy)
    elapsed = time.monotonic() - started
    message = str(error.value)
    assert server.url(f"/files/{name}") in message
    assert "deadline" in message and "1 s" in message
    assert elapsed < 1.0 + 3 * TRICKLE_INTERVAL + 1.0
    assert not (tmp_path / "raw" / name).exists()


def test_deadline_is_a_download_option_with_a_size_dependent_default():
    """Probe 3: `download.deadline` is accepted; the default grows with the file size."""
    assert RetryPolicy.from_spec({"deadline": 30}).deadline == 30
    assert RetryPolicy().deadline is None
    small, large = (download_module.default_deadline(size) for size in (10, 50 * 2 ** 30))
    assert small >= 3600 and large > small


# A full disk or an unwritable folder names the path and what was being done.

def test_disk_full_while_writing_names_path_and_operation(server, tmp_path, monkeypatch):
    """Disk full (ENOSPC) while writing a download names the file and the operation."""
    name = "reviews_Baby_5.json.gz"
    server.routes[f"/files/{name}"] = ("file", gzip.compress(REVIEWS))

    class FullDisk:
        def __init__(self, path, mode):
            self.file = open(path, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(download_module, "open", FullDisk, raising=False)
    with pytest.raises(DownloadError) as error:
        _fetch(server, name, tmp_path)
    message = str(error.value)
    assert str(tmp_path / "raw" / f"{name}.part") in message
    assert "write" in message and os.strerror(errno.ENOSPC) in message
    assert server.url(f"/files/{name}") in message
    assert server.hits[f"/files/{name}"] == 1  # a full disk is not retried


def test_unwritable_destination_names_path_and_operation(server, tmp_path):
    """A destination folder that cannot be created names the folder and the operation."""
    name = "reviews_Baby_5.json.gz"
    server.routes[f"/files/{name}"] = ("file", gzip.compress(REVIEWS))
    (tmp_path / "raw").write_text("a file where the raw folder should be")
    with pytest.raises(DownloadError, match="cannot create the folder") as error:
        _fetch(server, name, tmp_path)
    assert str(tmp_path / "raw") in str(error.value)


def test_unwritable_registry_names_path_and_operation(server, tmp_path):
    """A checksum registry that cannot be written names the registry file and the step."""
    name = "reviews_Baby_5.json.gz"
    server.routes[f"/files/{name}"] = ("file", gzip.compress(REVIEWS))
    (tmp_path / "config").write_text("a file where the config folder should be")
    registry = ChecksumRegistry(tmp_path / "config" / "checksums.json")
    with pytest.raises(ValueError, match="cannot record") as error:
        _fetch(server, name, tmp_path, registry)
    assert str(registry.path) in str(error.value)
