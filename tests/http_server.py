"""A loopback HTTP server for download tests: in-memory files, Range requests and injected faults.

Tests must never reach the internet, yet the download code has to be exercised against real
sockets (cut connections, 503s, resumes). This server listens on 127.0.0.1 on a free port,
serves bytes registered with `add`, and records every request so tests can assert on them.

    with LoopbackServer() as server:
        url = server.add("/file.zip", data, fail_first=2)       # 503 twice, then the file
        url = server.add("/cut.zip", data, cut_after=1000)     # first response stops after 1000 bytes
        ...
        assert server.requests_for("/cut.zip")[1].range == "bytes=1000-"
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclasses.dataclass
class Resource:
    """One served path and the faults to inject on it."""

    body: bytes
    status: int | None = None  # always answer with this status (e.g. 404) instead of the body
    fail_first: int = 0  # answer the first K requests with fail_status
    fail_status: int = 503
    cut_after: int | None = None  # first body response: full Content-Length, N bytes, then close
    stall_first: int = 0  # the first K requests wait stall_s before answering (to trigger timeouts)
    stall_s: float = 1.0
    honor_range: bool = True  # False: ignore Range and always send 200 with the whole body
    hits: int = 0
    body_responses: int = 0


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    range: str | None
    user_agent: str | None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read `requests` instead
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        with owner.lock:
            owner.requests.append(
                RecordedRequest("GET", path, self.headers.get("Range"), self.headers.get("User-Agent"))
            )
            resource = owner.files.get(path)
            if resource is not None:
                resource.hits += 1
                hit = resource.hits
        if resource is None:
            self._send_status(404)
            return
        if hit <= resource.stall_first:
            time.sleep(resource.stall_s)
        if resource.status is not None:
            self._send_status(resource.status)
            return
        if hit <= resource.fail_first:
            self._send_status(resource.fail_status)
            return
        self._send_body(resource)

    def _send_status(self, code: int) -> None:
        message = f"{code}\n".encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(message)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(message)
        self.close_connection = True

    def _send_body(self, resource: Resource) -> None:
        body, size = resource.body, len(resource.body)
        start, end, code = 0, size - 1, 200
        range_header = self.headers.get("Range")
        if range_header and resource.honor_range:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
            if match:
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
                if start >= size or start > end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    return
                code = 206
        payload = body[start : end + 1]
        with self.server.owner.lock:
            resource.body_responses += 1
            cut = resource.cut_after if resource.body_responses == 1 else None
        self.send_response(code)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Accept-Ranges", "bytes" if resource.honor_range else "none")
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Connection", "close")
        self.end_headers()
        if cut is not None:
            self.wfile.write(payload[:cut])
            self.wfile.flush()
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)  # cut the connection mid-body
        else:
            self.wfile.write(payload)
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: LoopbackServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out or hang up on purpose are part of the tests, not errors


class LoopbackServer:
    """Threaded HTTP server on 127.0.0.1 (a free port), used as a context manager."""

    def __init__(self) -> None:
        self.files: dict[str, Resource] = {}
        self.requests: list[RecordedRequest] = []
        self.lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def add(self, path: str, body: bytes = b"", **faults: Any) -> str:
        """Serve `body` at `path` (with optional faults, see Resource) and return its URL."""
        if not path.startswith("/"):
            path = "/" + path
        with self.lock:
            self.files[path] = Resource(body=body, **faults)
        return self.url(path)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server is not running; use it as a context manager")
        return self._server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path if path.startswith('/') else '/' + path}"

    def requests_for(self, path: str) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def __enter__(self) -> LoopbackServer:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
