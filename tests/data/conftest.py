"""Fixtures of the data-layer tests: a local HTTP server with scripted failures, and one
generated demo category shared by the tests that only read it."""

from __future__ import annotations

import collections
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


class ScriptedServer(ThreadingHTTPServer):
    """Serves `routes[path] = (behaviour, body)`; counts requests and records Range headers.

    behaviours: "file" (Range aware), "drop_once" (first response stops half way),
    "drop_no_range" (drops half way once, then ignores Range and sends 200), "404",
    "500" (always), "500x2" (two 500s, then the file).
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, tuple[str, bytes]] = {}
        self.hits: collections.Counter = collections.Counter()
        self.ranges: dict[str, list[str | None]] = collections.defaultdict(list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base_url + path


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedServer

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        server = self.server
        server.hits[self.path] += 1
        server.ranges[self.path].append(self.headers.get("Range"))
        if self.path not in server.routes:
            self.send_error(404, "Not Found")
            return
        behaviour, body = server.routes[self.path]
        hit = server.hits[self.path]
        if behaviour == "404":
            self.send_error(404, "Not Found")
        elif behaviour == "500" or (behaviour == "500x2" and hit <= 2):
            self.send_error(500, "Internal Server Error")
        elif behaviour in ("drop_once", "drop_no_range") and hit == 1:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif behaviour == "drop_no_range":
            self._send(body, honour_range=False)
        else:
            self._send(body, honour_range=True)

    def _send(self, body: bytes, honour_range: bool) -> None:
        requested = self.headers.get("Range")
        if honour_range and requested and requested.startswith("bytes="):
            start = int(requested[len("bytes="):].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            self.wfile.write(body[start:])
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def http_server():
    server = ScriptedServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def demo_raw(tmp_path_factory) -> tuple[Path, object]:
    """The default demo category, generated once: (raw folder, DemoSummary)."""
    from crane.data.demo import generate_demo

    raw_dir = tmp_path_factory.mktemp("demo") / "raw"
    return raw_dir, generate_demo(raw_dir)


@pytest.fixture(scope="session")
def demo_processed(demo_raw, tmp_path_factory) -> tuple[Path, dict]:
    """The default demo, acquired manifest written and preprocessed as config.yaml does."""
    from crane.data.prepare import prepare_dataset

    raw_dir, _ = demo_raw
    spec = {"source": {"type": "demo"}, "kcore": 5,
            "split": {"method": "mmrec_random", "seed": 2024}}
    out_dir = tmp_path_factory.mktemp("demo_data") / "data"
    return out_dir, prepare_dataset("demo", spec, raw_dir, out_dir)
