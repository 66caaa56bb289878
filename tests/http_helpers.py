"""An HTTP server on 127.0.0.1 in a thread, for the stream tests (loopback only, shut down by the test)."""

from __future__ import annotations

import http.server
import threading


class LocalServer:
    """Serves with `handler` (a BaseHTTPRequestHandler factory) on a free port of 127.0.0.1; `url` is its base."""

    def __init__(self, handler):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
