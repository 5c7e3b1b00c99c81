"""HTTP: /metrics, /healthz."""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.exposition import choose_encoder

log = logging.getLogger("celery_stack_metrics.http")


def make_server(host, port, registry, health):
    class Handler(BaseHTTPRequestHandler):
        server_version = "celery-stack-metrics"

        def _send(self, code, body: bytes, ctype: str):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, ctype = choose_encoder(self.headers.get("Accept"))
                try:
                    body = encoder(registry)
                except Exception:
                    log.exception("metrics collection failed")
                    self._send(500, b"collection failed\n", "text/plain")
                    return
                self._send(200, body, ctype)
            elif path == "/healthz":
                ok, detail = health()
                self._send(200 if ok else 503, json.dumps(detail).encode() + b"\n", "application/json")
            elif path == "/":
                self._send(
                    200,
                    b"celery-stack-metrics: /metrics /healthz\n",
                    "text/plain; charset=utf-8",
                )
            else:
                self._send(404, b"not found\n", "text/plain")

        do_HEAD = do_GET

        def log_message(self, fmt, *args):
            log.debug("http %s", fmt % args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
