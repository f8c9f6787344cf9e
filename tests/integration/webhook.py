"""A webhook receiver for the notification tests (integration and fault
suites): an HTTP server in the test's process, on a free loopback port,
recording every POST it accepts."""

import http.server
import json
import socket
import threading
import time
import urllib.parse


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A webhook endpoint: records every POST (headers and body) and answers
    `status` (200 by default); stop()/start() take it down and back on the
    same port."""

    def __init__(self):
        self.port = free_port()
        self.requests = []
        self.status = 200
        self.delay = 0
        self.reject = None      # reject(headers, body) -> a status to answer instead of accepting, or None
        self.lock = threading.Lock()
        self.server = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self):
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                if rec.delay:
                    time.sleep(rec.delay)
                with rec.lock:
                    status = rec.status
                    if status == 200 and rec.reject:
                        status = rec.reject(dict(self.headers), body) or 200
                    if status == 200:
                        rec.requests.append((dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def events(self):
        """[(delivery id, record)] of every accepted POST."""
        with self.lock:
            return [(h.get("X-Cairn-Delivery"), json.loads(b)["Records"][0]) for h, b in self.requests]

    def keys(self):
        return [urllib.parse.unquote_plus(r["s3"]["object"]["key"]) for _, r in self.events()]
