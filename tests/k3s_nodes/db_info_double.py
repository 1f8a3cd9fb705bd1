"""A test double of k3s's `GET /db/info`: the etcd member list over HTTPS, in k3s's shape.

k3s's supervisor answers `/db/info` on its https port with `{"members": [...]}`, each member as
etcd's `Member` message encodes to JSON: `ID`, `name`, `peerURLs`, `clientURLs`, and `isLearner`
only when true (k3s main-line pkg/etcd/etcd.go `infoHandler`, `Members`; etcdserverpb's JSON
tags use omitempty). A loopback client needs no credentials (pkg/server/auth/auth.go
`IsLocalOrHasRole`), so neither does this double. It is not k3s: the test changes its member
list (as k3s's member controller would) and reads which requests came.

The server certificate is signed by a throw-away CA (tests/backup_tools/servers.py `make_tls`),
the CA file standing for `<data-dir>/server/tls/server-ca.crt`.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.backup_tools.servers import make_tls


def member(name: str, address: str, member_id: int, learner: bool = False) -> dict:
    """One etcd member as k3s's /db/info lists it."""
    entry = {"ID": member_id, "name": name, "peerURLs": [f"https://{address}:2380"],
             "clientURLs": [f"https://{address}:2379"]}
    if learner:
        entry["isLearner"] = True
    return entry


class DbInfoDouble:
    """An HTTPS server on 127.0.0.1 serving `/db/info` from a member list the test controls."""

    def __init__(self, certdir: Path, members: list[dict]) -> None:
        self._lock = threading.Lock()
        self._members = list(members)
        self.requests = 0
        # (wall-clock time, member names answered) per request.
        self.log: list[tuple[float, list[str]]] = []
        tls = make_tls(certdir)
        self.ca: Path = tls["ca.crt"]
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path != "/db/info":
                    self.send_error(404)
                    return
                with double._lock:
                    double.requests += 1
                    double.log.append((time.time(), [m["name"] for m in double._members]))
                    body = json.dumps({"members": double._members}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls["server.crt"], tls["server.key"])
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}/db/info"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def names(self) -> list[str]:
        """The member names it lists now."""
        with self._lock:
            return [m["name"] for m in self._members]

    def remove(self, name: str) -> None:
        """Drop a member, as etcd does on MemberRemove."""
        with self._lock:
            self._members = [m for m in self._members if m["name"] != name]

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
