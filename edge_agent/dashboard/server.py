"""The dashboard's web server: one page, its static files, and the fleet as a stream of
Server-Sent Events. Standard library only: a ThreadingHTTPServer gives each connection a
thread, and a page holds one for its stream, which is what a handful of viewers need.

Read-only by construction: only GET and HEAD are answered (anything else is 405), no query
string is read, and the only resources are the files shipped in static/ (held in memory, so
no request ever names a path on disk) and the stream. With a password every request needs
it (HTTP Basic, any user name). Without one the server listens on loopback only, and
requests whose Host is not a loopback name are refused, so a web site that points its own
name at 127.0.0.1 (DNS rebinding) cannot read the fleet through the visitor's browser.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import socket
import threading
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from edge_agent.config import is_loopback
from edge_agent.dashboard.fleet import Fleet

log = logging.getLogger("edge_agent.dashboard")

STREAM_PATH = "/events"
HEARTBEAT_S = 15.0  # a comment line keeps proxies and the browser from timing out
RETRY_MS = 2000  # how soon a page reconnects after losing its stream
MAX_STREAMS = 32
MAX_QUEUED = 20_000  # deltas waiting for one slow page before it is dropped (it reconnects)
SOCKET_TIMEOUT_S = 30.0
REALM = "edge-agent dashboard"

# URL path -> (file in the package, Content-Type)
FILES = {
    "/": ("static/index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("static/app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("static/style.css", "text/css; charset=utf-8"),
    "/static/favicon.svg": ("static/favicon.svg", "image/svg+xml"),
    "/static/uplot/uPlot.iife.min.js": (
        "static/uplot/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
    ),
    "/static/uplot/uPlot.min.css": ("static/uplot/uPlot.min.css", "text/css; charset=utf-8"),
    "/static/uplot/LICENSE": ("static/uplot/LICENSE", "text/plain; charset=utf-8"),
}

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def load_files() -> dict[str, tuple[bytes, str]]:
    package = resources.files("edge_agent.dashboard")
    return {
        path: (package.joinpath(name).read_bytes(), kind) for path, (name, kind) in FILES.items()
    }


class Stream:
    """The deltas waiting for one page. `put` runs under the fleet's lock, so it only
    appends; a page that falls MAX_QUEUED behind is marked to be dropped instead."""

    def __init__(self) -> None:
        self._items: deque[bytes] = deque()
        self._ready = threading.Condition()
        self.overflowed = False

    def put(self, data: bytes) -> None:
        with self._ready:
            if len(self._items) >= MAX_QUEUED:
                self.overflowed = True
            else:
                self._items.append(data)
            self._ready.notify()

    def take(self, timeout: float) -> list[bytes]:
        with self._ready:
            self._ready.wait_for(lambda: self._items or self.overflowed, timeout)
            items = list(self._items)
            self._items.clear()
            return items


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True  # a page's stream must not keep the process alive at exit

    def __init__(self, address: tuple[str, int], fleet: Fleet, password: str | None) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.fleet = fleet
        self.password = password
        self.files = load_files()
        self.streams = 0
        self.streams_lock = threading.Lock()
        self.closing = threading.Event()
        super().__init__(address, Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def server_close(self) -> None:
        self.closing.set()
        super().server_close()


class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "edge-agent-dashboard"
    sys_version = ""

    def version_string(self) -> str:
        return self.server_version

    timeout = SOCKET_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _refuse_method(self) -> None:
        self._plain(
            HTTPStatus.METHOD_NOT_ALLOWED,
            "read-only: GET and HEAD only",
            headers={"Allow": "GET, HEAD"},
        )

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse_method

    def _answer(self, *, body: bool) -> None:
        if not self._allowed():
            return
        path = self.path.split("?", 1)[0]
        if path == STREAM_PATH and body:
            self._stream()
            return
        if path == STREAM_PATH:
            self._plain(HTTPStatus.OK, "", body=False, content_type="text/event-stream")
            return
        found = self.server.files.get(path)
        if found is None:
            self._plain(HTTPStatus.NOT_FOUND, "not found")
            return
        data, kind = found
        self.send_response(HTTPStatus.OK)
        self._headers(kind, len(data))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _allowed(self) -> bool:
        password = self.server.password
        if password is None:
            host = (self.headers.get("Host") or "").strip()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if not is_loopback(name.strip("[]")):
                self._plain(HTTPStatus.FORBIDDEN, "this dashboard answers loopback names only")
                return False
            return True
        given = _password_of(self.headers.get("Authorization"))
        if given is not None and hmac.compare_digest(given.encode(), password.encode()):
            return True
        self._plain(
            HTTPStatus.UNAUTHORIZED,
            "password required",
            headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
        )
        return False

    def _headers(self, content_type: str, length: int | None) -> None:
        self.send_header("Content-Type", content_type)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)

    def _plain(
        self,
        status: HTTPStatus,
        text: str,
        *,
        body: bool = True,
        content_type: str = "text/plain; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        data = (text + "\n").encode() if text else b""
        self.send_response(status)
        self._headers(content_type, len(data))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(data)

    def _stream(self) -> None:
        with self.server.streams_lock:
            if self.server.streams >= MAX_STREAMS:
                self._plain(HTTPStatus.SERVICE_UNAVAILABLE, "too many open pages")
                return
            self.server.streams += 1
        # Small writes go out at once: Nagle's algorithm would hold a delta for the ACK of
        # the one before (tens of ms with the browser's delayed ACKs).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream = Stream()
        snapshot = self.server.fleet.attach(stream.put)
        try:
            self.send_response(HTTPStatus.OK)
            self._headers("text/event-stream", None)
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(b"retry: %d\n\nevent: snapshot\ndata: %s\n\n" % (RETRY_MS, snapshot))
            self.wfile.flush()
            while not self.server.closing.is_set() and not stream.overflowed:
                items = stream.take(HEARTBEAT_S)
                chunk = b"".join(b"data: %s\n\n" % item for item in items) or b": alive\n\n"
                self.wfile.write(chunk)
                self.wfile.flush()
        except OSError:  # the page went away (closed, reloaded, network gone)
            pass
        finally:
            self.server.fleet.detach(stream.put)
            with self.server.streams_lock:
                self.server.streams -= 1
        self.close_connection = True


def _password_of(header: str | None) -> str | None:
    """The password of an `Authorization: Basic ...` header; None when absent or malformed."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _user, colon, password = decoded.partition(":")
    return password if colon else None
