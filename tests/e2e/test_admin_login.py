"""The `full` scenario's administrator sign-in check, against a local stand-in of SEEK's sign-in.

The stand-in answers as SEEK v1.18.1 does (tests/e2e/admin_login.py names the files read): /login
redirects to /signup while there is no user, else renders a form with an authenticity_token and
sets a session cookie; POST /session needs the token and the cookie, and redirects to / on success
and to /login on failure; /admin/settings is served to a signed-in administrator only (others are
redirected to /), with site_base_host in a text field. It is reached through a real HTTP server
that routes by Host header, as the ingress does."""

from __future__ import annotations

import http.server
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e import admin_login

HOST = "seek.test"
TOKEN = "tok+en/=="


@dataclass
class Seek:
    """What the stand-in knows: its users, admins and site_base_host."""

    users: dict[str, str] = field(default_factory=dict)
    admins: set[str] = field(default_factory=set)
    site_base_host: str = "http://seek.test"
    sessions: dict[str, str | None] = field(default_factory=dict)


def _server(seek: Seek) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep pytest's output clean
            pass

        def _session(self) -> str | None:
            for part in (self.headers.get("Cookie") or "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == "_seek_session" and value in seek.sessions:
                    return value
            return None

        def _answer(self, status: int, body: str = "", location: str = "", cookie: str = "") -> None:
            self.send_response(status)
            if location:
                self.send_header("Location", f"http://{HOST}{location}")
            if cookie:
                self.send_header("Set-Cookie", f"_seek_session={cookie}; path=/; HttpOnly")
            data = body.encode()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.headers.get("Host") != HOST:
                return self._answer(404, "default backend")
            session = self._session()
            if self.path == "/login":
                if not seek.users:
                    return self._answer(302, location="/signup")
                session = session or f"s{len(seek.sessions)}"
                seek.sessions.setdefault(session, None)
                return self._answer(200, f'<form action="/session" method="post"><input type="hidden" '
                                         f'name="authenticity_token" value="{TOKEN.replace("+", "&#43;")}" '
                                         'autocomplete="off" /><input type="text" name="login" id="login" /></form>',
                                    cookie=session)
            if self.path == "/admin/settings":
                if session is None or seek.sessions.get(session) not in seek.admins:
                    return self._answer(302, location="/")
                value = seek.site_base_host.replace("&", "&amp;")
                return self._answer(200, '<form><input type="text" name="site_base_host" id="site_base_host" '
                                         f'value="{value}" class="form-control" /></form>')
            return self._answer(404)

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            session = self._session()
            if self.path != "/session" or session is None or form.get("authenticity_token") != TOKEN:
                return self._answer(422, "InvalidAuthenticityToken")
            if seek.users.get(form.get("login", "")) == form.get("password"):
                seek.sessions[session] = form["login"]
                return self._answer(302, location="/")
            return self._answer(302, location="/login?return_to=")

    return http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def seek() -> Iterator[tuple[Seek, str]]:
    state = Seek(users={"admin": "a-long-password"}, admins={"admin"})
    server = _server(state)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _problems(url: str, login: str = "admin", password: str = "a-long-password",
              site: str = "http://seek.test", host: str = HOST) -> list[str]:
    return admin_login.admin_login_problems(admin_login.Browser(url, host), login, password, site)


def test_admin_signs_in_and_finds_the_site_url(seek: tuple[Seek, str]) -> None:
    _, url = seek
    assert _problems(url) == []


def test_no_user_means_the_first_visitor_would_become_admin(seek: tuple[Seek, str]) -> None:
    state, url = seek
    state.users.clear()
    (problem,) = _problems(url)
    assert "/signup" in problem and "whoever registers first" in problem


def test_wrong_password_is_a_failed_sign_in(seek: tuple[Seek, str]) -> None:
    _, url = seek
    (problem,) = _problems(url, password="not-the-password")
    assert problem.startswith("signing in as admin failed") and "/login" in problem
    assert "not-the-password" not in problem


def test_a_user_who_is_not_admin_is_refused_the_settings(seek: tuple[Seek, str]) -> None:
    state, url = seek
    state.users["someone"] = "another-password"
    (problem,) = _problems(url, login="someone", password="another-password")
    assert "is not an administrator" in problem


def test_another_site_url_is_named(seek: tuple[Seek, str]) -> None:
    state, url = seek
    state.site_base_host = "http://localhost:3000"
    (problem,) = _problems(url)
    assert "'http://localhost:3000'" in problem and "'http://seek.test'" in problem


def test_wrong_host_header_does_not_reach_seek(seek: tuple[Seek, str]) -> None:
    _, url = seek
    (problem,) = _problems(url, host="other.test")
    assert "HTTP 404" in problem


def test_command_line_reads_the_password_from_a_file(seek: tuple[Seek, str], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    _, url = seek
    secret = tmp_path / "seek-admin-password"
    secret.write_text("a-long-password\n")
    args = ["--url", url, "--host", HOST, "--password-file", str(secret), "--site-url", "http://seek.test",
            "--timeout", "0"]
    assert admin_login.main(args) == 0
    secret.write_text("wrong-password\n")
    assert admin_login.main(args) == 1
    captured = capsys.readouterr()
    assert "PROBLEM: signing in as admin failed" in captured.err
    assert "wrong-password" not in captured.out + captured.err
