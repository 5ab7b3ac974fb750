"""A real network camera on 127.0.0.1 for the capture and daemon tests."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2


class MjpegCamera:
    """A real network camera on 127.0.0.1: multipart MJPEG over HTTP, like most IP cameras.

    Each connection gets `frames` JPEGs at `fps`; then it `stall`s (keeps the connection
    open, sending nothing) or closes it. `release()` ends every stall.
    """

    def __init__(
        self, video: Path, *, frames: int = 40, fps: float = 24.0, stall: bool = True
    ) -> None:
        capture = cv2.VideoCapture(str(video))
        self.jpegs = []
        for _ in range(frames):
            ok, image = capture.read()
            assert ok
            self.jpegs.append(cv2.imencode(".jpg", image)[1].tobytes())
        capture.release()
        self.fps, self.stall = fps, stall
        self.connections = 0
        self.sent = 0
        self.released = threading.Event()
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                camera.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for jpeg in camera.jpegs:
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(jpeg)
                        )
                        self.wfile.write(jpeg + b"\r\n")
                        self.wfile.flush()
                        camera.sent += 1
                        if camera.released.wait(1.0 / camera.fps):
                            return
                except OSError:
                    return
                if camera.stall:
                    camera.released.wait(60)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/cam.mjpg"

    def __enter__(self) -> MjpegCamera:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
