#!/usr/bin/env python3
"""A small API behind a gateway that asks oidc-logout's forward-auth check about every request.

It trusts the identity headers the gateway sets from the check's answer (X-Auth-Sub, X-Auth-Sid,
X-Auth-Issuer): the gateway refuses a missing, invalid or revoked access token before the
request gets here, so the API itself never sees one. Standard library only.

    API_PORT=8000 python3 examples/any-stack/api.py
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Api(BaseHTTPRequestHandler):
    def do_GET(self):
        sub = self.headers.get("X-Auth-Sub")
        if not sub:
            # Reached without the gateway (or the gateway is misconfigured): refuse.
            self.answer(401, {"error": "no identity from the gateway"})
            return
        self.answer(200, {"orders_of": sub, "sid": self.headers.get("X-Auth-Sid")})

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(os.environ.get("API_PORT", "8000"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Api)
    print(f"api listening on http://127.0.0.1:{port}", flush=True)
    server.serve_forever()
