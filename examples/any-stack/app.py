#!/usr/bin/env python3
"""A small web application that keeps its sessions in oidc-logout's session index through the
sessions API, so that a logout at the OP, an admin revoke or a SCIM deactivation ends them.

After its OpenID Connect login (done with any library; here `POST /login` takes the `sub`, `sid`
and `auth_time` the ID token gave, to keep the example short) it registers the session; on each
request it asks the API whether the session is still live; its logout button ends it.
Standard library only.

    APP_PORT=8001 SESSIONS_API=http://127.0.0.1:8081 APP_TOKEN=… python3 examples/any-stack/app.py
"""

import json
import os
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API = os.environ.get("SESSIONS_API", "http://127.0.0.1:8081").rstrip("/")
TOKEN = os.environ["APP_TOKEN"]
LIFETIME = 8 * 3600


def api(method, path, body=None):
    """One call to the sessions API: (status, JSON answer)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(API + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read() or b"{}")


class App(BaseHTTPRequestHandler):
    def session_id(self):
        for part in self.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == "app_session":
                return value
        return None

    def do_POST(self):
        if self.path.startswith("/login"):
            length = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            sub, sid = form["sub"][0], form.get("sid", [None])[0]
            auth_time = int(form.get("auth_time", [time.time()])[0])
            session_id = secrets.token_urlsafe(32)
            status, answer = api("POST", "/v1/sessions", {
                "sub": sub, "sid": sid, "auth_time": auth_time,
                "session_id": session_id, "lifetime_secs": LIFETIME,
            })
            if status != 201:
                # 409: a logout already covers this login (log in again); else the API failed.
                self.answer(401, {"error": answer.get("error", "not logged in")})
                return
            self.answer(200, {"logged_in_as": sub},
                        cookie=f"app_session={session_id}; Path=/; HttpOnly; SameSite=Lax")
        elif self.path == "/logout":
            session_id = self.session_id()
            if session_id:
                api("DELETE", f"/v1/sessions/{urllib.parse.quote(session_id, safe='')}")
            self.answer(200, {"logged_out": True}, cookie="app_session=; Path=/; Max-Age=0")
        else:
            self.answer(404, {})

    def do_GET(self):
        if self.path != "/me":
            self.answer(404, {})
            return
        session_id = self.session_id()
        if not session_id:
            self.answer(401, {"error": "not logged in"})
            return
        status, answer = api("GET", f"/v1/sessions/{urllib.parse.quote(session_id, safe='')}")
        if status == 200 and answer.get("state") == "live":
            self.answer(200, {"session": "live"})
        elif status == 200:
            self.answer(401, {"error": "logged out", "state": answer.get("state")})
        else:
            # The API cannot say: fail closed.
            self.answer(503, {"error": "cannot check the session"})

    def answer(self, status, body, cookie=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if cookie:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(os.environ.get("APP_PORT", "8001"))
    server = ThreadingHTTPServer(("127.0.0.1", port), App)
    print(f"app listening on http://127.0.0.1:{port}", flush=True)
    server.serve_forever()
