"""Image fetching against a local HTTP server: ok, 404, a 500 that recovers, truncation."""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from _features_data import make_items, png_bytes

from crane.data.download import RetryPolicy
from crane.features.image_fetch import fetch_images
from crane.features.image_files import find_cached_images, open_rgb

FAST = RetryPolicy(retries=2, backoff=0.01, max_backoff=0.05, timeout=5.0)
RED_PNG, BLUE_PNG = png_bytes((200, 0, 0)), png_bytes((0, 0, 200))


class ImageServer(BaseHTTPRequestHandler):
    hits: Counter = Counter()

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.hits[self.path] += 1
        if self.path == "/img/red.png":
            self._send(200, RED_PNG)
        elif self.path == "/img/blue":  # no suffix in the url
            self._send(200, BLUE_PNG)
        elif self.path == "/img/flaky.png" and self.hits[self.path] == 1:
            self._send(500, b"try again")
        elif self.path == "/img/flaky.png":
            self._send(200, RED_PNG)
        elif self.path == "/img/truncated.png":  # announces more than it sends
            self.send_response(200)
            self.send_header("Content-Length", str(len(RED_PNG)))
            self.end_headers()
            self.wfile.write(RED_PNG[:20])
            self.close_connection = True
        elif self.path == "/img/text.png":
            self._send(200, b"<html>not an image</html>")
        else:
            self._send(404, b"not found")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def server():
    ImageServer.hits = Counter()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ImageServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_fetch_downloads_retries_lists_failures_and_resumes(tmp_path, server):
    asins = ["RED0000001", "BLUE000001", "FLAKY00001", "MISSING001", "TRUNC00001",
             "TEXT000001", "NOURL00001"]
    urls = [f"{server}/img/red.png", f"{server}/img/blue", f"{server}/img/flaky.png",
            f"{server}/img/gone.png", f"{server}/img/truncated.png", f"{server}/img/text.png",
            None]
    items = make_items(asins, image_url=urls)
    image_dir = tmp_path / "raw" / "images"

    report = fetch_images(items, image_dir, workers=3, policy=FAST, progress=False)

    assert sorted(report.downloaded) == ["BLUE000001", "FLAKY00001", "RED0000001"]
    assert report.no_url == ["NOURL00001"]
    assert set(report.failed) == {"MISSING001", "TRUNC00001", "TEXT000001"}
    assert "404" in report.failed["MISSING001"]
    assert "not a readable image" in report.failed["TEXT000001"]
    assert ImageServer.hits["/img/flaky.png"] == 2  # the 500 was retried
    assert ImageServer.hits["/img/gone.png"] == 1  # a 404 is not
    # retried, and bounded (a try that gained bytes resets crane.data.download's count once)
    assert 1 < ImageServer.hits["/img/truncated.png"] <= 2 + FAST.retries

    cached = find_cached_images(image_dir)
    assert set(cached) == {"RED0000001", "BLUE000001", "FLAKY00001"}
    assert cached["RED0000001"].name == "RED0000001.png"
    assert cached["BLUE000001"].name == "BLUE000001.img"
    assert open_rgb(cached["BLUE000001"]).getpixel((0, 0)) == (0, 0, 200)
    leftovers = [p.name for p in image_dir.iterdir() if p.name not in
                 {c.name for c in cached.values()}]
    assert all(name.endswith(".part") for name in leftovers)  # never a half file under its name

    # resume: cached images are not fetched again, failures are retried
    before = Counter(ImageServer.hits)
    again = fetch_images(items, image_dir, workers=2, policy=FAST, progress=False)
    assert sorted(again.cached) == ["BLUE000001", "FLAKY00001", "RED0000001"]
    assert again.downloaded == []
    assert ImageServer.hits["/img/red.png"] == before["/img/red.png"]
    assert ImageServer.hits["/img/gone.png"] == before["/img/gone.png"] + 1
    assert again.as_json()["failed"].keys() == report.as_json()["failed"].keys()


def test_unsafe_asin_is_not_used_as_a_file_name(tmp_path, server):
    items = make_items(["../escape01"], image_url=[f"{server}/img/red.png"])
    report = fetch_images(items, tmp_path / "images", policy=FAST, progress=False)
    assert "not usable as a file name" in report.failed["../escape01"]
    assert not (tmp_path / "escape01.png").exists()


def test_fetch_images_command_writes_cache_and_report(tmp_path, server, processed_dir):
    import json

    from crane.cli import main

    data_dir = processed_dir(make_items(["RED0000001", "MISSING001"],
                                        image_url=[f"{server}/img/red.png",
                                                   f"{server}/img/gone.png"]))
    report = tmp_path / "fetch.json"
    assert main(["fetch-images", "--data", str(data_dir), "--raw", str(tmp_path / "raw"),
                 "--workers", "2", "--retries", "0", "--report", str(report)]) == 0
    assert (tmp_path / "raw" / "images" / "RED0000001.png").read_bytes() == RED_PNG
    written = json.loads(report.read_text())
    assert written["downloaded"] == 1 and list(written["failed"]) == ["MISSING001"]
