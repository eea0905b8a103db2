"""``python flaky_http.py PORT DIR``: ``http.server`` serving DIR on 127.0.0.1 that drops the first
request of every chunk (a path whose last part is a number): it sends the headers and half the body,
then closes the connection. The next request of that chunk is served whole. Used by the remote-volume
tests (a dropped connection must give a retry, never zeros or a torn cached chunk)."""

from __future__ import annotations

import functools
import http.server
import os
import sys
import threading

_seen: set[str] = set()
_lock = threading.Lock()


class DroppingHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.translate_path(self.path)
        with _lock:
            first = self.path.rstrip("/").rsplit("/", 1)[-1].isdigit() and self.path not in _seen
            _seen.add(self.path)
        if not (first and os.path.isfile(path)):
            return super().do_GET()
        data = open(path, "rb").read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(2)


if __name__ == "__main__":
    port, root = int(sys.argv[1]), sys.argv[2]
    handler = functools.partial(DroppingHandler, directory=root)
    http.server.ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()
