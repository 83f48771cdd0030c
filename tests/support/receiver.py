"""A caller's webhook endpoint on 127.0.0.1: records every POST, and fails the first ones on request."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Records every POST (headers lower-cased, raw body); answers 500 to the first ``fail_first``, then 204."""

    def __init__(self, fail_first: int = 0) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(500 if len(receiver.calls) <= receiver.fail_first else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 30) -> list[tuple[dict[str, str], bytes]]:
        """The calls once there are at least ``count`` (or whatever arrived by ``timeout``)."""
        deadline = time.monotonic() + timeout
        while len(self.calls) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return list(self.calls)

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
