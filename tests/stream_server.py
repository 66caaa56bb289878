"""An HTTP/1.0 server on 127.0.0.1 in a thread, serving the files of a folder the ways live-scoring tests need."""

from __future__ import annotations

import functools
import http.server
import time
from pathlib import Path

from http_helpers import LocalServer


class StreamServer:
    """Files from `folder` at /NAME (SimpleHTTPRequestHandler: with a Content-Length), and without a length,
    closing the connection at the end (HTTP/1.0):

        /whole/NAME     the whole file
        /half/NAME      its first half, every time
        /cut/NAME       its first half once, then 503
        /paced/NAME     the whole file in `parts` parts, `seconds` apart: a source that delivers in real time
    """

    def __init__(self, folder: Path, parts: int = 25, seconds: float = 0.04):
        served: dict[str, int] = {}

        class Handler(http.server.SimpleHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *_args):
                pass

            def do_GET(self):
                mode, _, name = self.path.strip("/").partition("/")
                if mode not in ("whole", "half", "cut", "paced"):
                    return super().do_GET()
                served[self.path] = served.get(self.path, 0) + 1
                if mode == "cut" and served[self.path] > 1:
                    self.send_error(503)
                    return
                data = (folder / name).read_bytes()
                self.send_response(200)
                self.end_headers()
                if mode == "paced":
                    try:
                        for part in range(parts):
                            self.wfile.write(data[part * len(data) // parts: (part + 1) * len(data) // parts])
                            self.wfile.flush()
                            time.sleep(seconds)
                    except (BrokenPipeError, ConnectionResetError):  # the client stopped reading
                        pass
                else:
                    self.wfile.write(data if mode == "whole" else data[: len(data) // 2])
                self.close_connection = True

        self.server = LocalServer(functools.partial(Handler, directory=str(folder)))
        self.url = self.server.url

    def close(self) -> None:
        self.server.close()
