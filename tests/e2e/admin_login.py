"""Log in to SEEK as the administrator the seek role created, over the ingress, and read the site URL.

  python -m tests.e2e.admin_login --url http://127.0.0.1:18080 --host seek.test --login admin
      --password-file ARTIFACTS/seek-admin-password --site-url http://seek.test

molecule/full/verify.yml calls it. The steps are SEEK's own sign-in (seek4science/seek v1.18.1, read
there): GET /login renders the sign-in form (app/views/gadgets/_sign_in.html.erb: a form to
/session with login, password and Rails' authenticity_token) unless SEEK has no user at all, when
SessionsController sends the visitor to /signup (redirect_to_sign_up_when_no_user: the hole the
seek-settings Job closes); POST /session with the session cookie signs in
(SessionsController#password_authentication): success redirects away from the login page, failure
back to it; GET /admin/settings is for administrators only (AdminController before_action
is_user_admin_auth redirects anyone else to the root) and shows Seek::Config.site_base_host in the
text field site_base_host (app/views/admin/settings.html.erb, admin_text_setting). The password is
read from a file, never taken on the command line. Exits 1 naming every problem."""

from __future__ import annotations

import argparse
import html
import http.client
import re
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

_CSRF = re.compile(r'<input[^>]*name="authenticity_token"[^>]*value="([^"]+)"')
_CSRF_META = re.compile(r'<meta[^>]*name="csrf-token"[^>]*content="([^"]+)"')
_INPUT = re.compile(r"<input\b[^>]*>")
_ATTR = re.compile(r'([a-zA-Z_:-]+)="([^"]*)"')


@dataclass
class Response:
    """What one request returned: status, Location header, body."""

    status: int
    location: str
    body: str


@dataclass
class Browser:
    """A minimal cookie-keeping client that sends every request to ``url`` with the Host header
    the ingress routes by."""

    url: str
    host: str
    timeout: float = 30.0
    cookies: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> Response:
        """One request, without following redirects; Set-Cookie headers are kept."""
        parts = urllib.parse.urlsplit(self.url)
        connection_class = (http.client.HTTPSConnection if parts.scheme == "https"
                            else http.client.HTTPConnection)
        connection = connection_class(parts.hostname, parts.port, timeout=self.timeout)
        headers = {"Host": self.host}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            for header in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = header.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
            return Response(response.status, response.getheader("Location") or "",
                            response.read().decode("utf-8", "replace"))
        finally:
            connection.close()


def input_value(page: str, name: str) -> str | None:
    """The value of the <input name=...> of ``page`` (HTML-unescaped), None when there is none."""
    for tag in _INPUT.findall(page):
        attrs = dict(_ATTR.findall(tag))
        if attrs.get("name") == name:
            return html.unescape(attrs.get("value", ""))
    return None


def _path(location: str) -> str:
    return urllib.parse.urlsplit(location).path or "/"


def admin_login_problems(browser: Browser, login: str, password: str, site_url: str) -> list[str]:
    """Sign in as ``login`` and check the site URL SEEK has; the problems, empty when all holds."""
    page = browser.request("GET", "/login")
    if page.status in (301, 302, 303) and _path(page.location).startswith("/signup"):
        return ["GET /login sends visitors to /signup: SEEK has no user, so whoever registers first "
                "becomes its administrator (the seek-settings Job did not create one)"]
    if page.status != 200:
        return [f"GET /login answered HTTP {page.status} (Location {page.location!r})"]
    match = _CSRF.search(page.body) or _CSRF_META.search(page.body)
    if not match:
        return ["the sign-in page has no authenticity_token (is it SEEK's sign-in form?)"]
    signed_in = browser.request("POST", "/session", {
        "login": login, "password": password, "authenticity_token": html.unescape(match.group(1))})
    if signed_in.status not in (302, 303) or _path(signed_in.location).startswith(("/login", "/session")):
        return [f"signing in as {login} failed: POST /session answered HTTP {signed_in.status} "
                f"(Location {signed_in.location!r})"]
    settings = browser.request("GET", "/admin/settings")
    if settings.status != 200:
        return [f"{login} signed in but GET /admin/settings answered HTTP {settings.status} "
                f"(Location {settings.location!r}): {login} is not an administrator"]
    value = input_value(settings.body, "site_base_host")
    if value is None:
        return ["/admin/settings has no site_base_host field"]
    if value != site_url:
        return [f"SEEK's site_base_host is {value!r}, expected {site_url!r}"]
    return []


def main(argv: list[str] | None = None) -> int:
    """Retry until the checks hold or the timeout passes (the ingress may still be settling)."""
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.admin_login", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:18080", help="where the ingress listens")
    parser.add_argument("--host", default="seek.test", help="Host header the ingress routes by")
    parser.add_argument("--login", default="admin")
    parser.add_argument("--password-file", required=True)
    parser.add_argument("--site-url", required=True, help="the seek_site_base_host SEEK must have")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    password = Path(args.password_file).read_text().strip()
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            problems = admin_login_problems(Browser(args.url, args.host), args.login, password, args.site_url)
        except OSError as error:
            problems = [f"{args.url}: {type(error).__name__}: {error}"]
        if not problems:
            print(f"admin-login: signed in as {args.login}; site_base_host is {args.site_url}", flush=True)
            return 0
        if time.monotonic() >= deadline:
            for problem in problems:
                print(f"admin-login: PROBLEM: {problem}", file=sys.stderr, flush=True)
            return 1
        time.sleep(10)


if __name__ == "__main__":
    sys.exit(main())
