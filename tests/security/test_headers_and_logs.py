"""Headers, cookies and logs, against ``chatkeep serve`` as deployed (its own uvicorn set-up):

- every response says ``nosniff``, a ``Referrer-Policy`` and may not be framed; the page's CSP
  runs no inline script and no script from elsewhere;
- the sign-in cookie is HttpOnly and SameSite, and ``Secure`` when the request is HTTPS — which
  behind a proxy only a *trusted* proxy may say (``CHATKEEP_TRUSTED_PROXIES``); a client that
  sends ``X-Forwarded-Proto``/``-For`` itself is ignored;
- after a full run (set-up, sign-ins right and wrong, keys, chats, turns that succeed and fail,
  an upstream key), the server's log holds no password, no API key and no message content.

Clients reach the server from 127.0.0.1 (untrusted) and from 127.0.0.2 (the "proxy"): both are
loopback on Linux, so nothing leaves the machine.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from support.fake_upstream import FakeUpstream, run_fake_upstream
from support.server import ServerProcess

PROXY = "127.0.0.2"
UPSTREAM_KEY = "sk-upstream-" + secrets.token_hex(12)


@dataclass
class Deployed:
    server: ServerProcess
    log: Path
    fake: FakeUpstream


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    tmp = tmp_path_factory.mktemp("deployed")
    with run_fake_upstream() as fake:
        env = {
            "CHATKEEP_DATA_DIR": str(tmp / "data"),
            "CHATKEEP_DATABASE_URL": "",
            "CHATKEEP_OPENAI_BASE_URL": fake.base_url,
            "CHATKEEP_OPENAI_API_KEY": UPSTREAM_KEY,
            "CHATKEEP_DEMO_MODEL": "false",
            "CHATKEEP_DEFAULT_MODEL": "fake-model",
            "CHATKEEP_OLLAMA_AUTODETECT": "false",
            "CHATKEEP_TRUSTED_PROXIES": json.dumps([PROXY]),
        }
        server = ServerProcess(env, workers=1, log_path=tmp / "server.log").start(timeout=60)
        try:
            yield Deployed(server, tmp / "server.log", fake)
        finally:
            server.stop()


def client(url: str, source: str = "127.0.0.1", **kwargs: object) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=url, transport=transport, timeout=30, **kwargs)  # type: ignore[arg-type]


PASSWORD = "correct horse " + secrets.token_hex(8)


@pytest.fixture(scope="module")
def admin(deployed: Deployed) -> dict[str, str]:
    with client(deployed.server.url) as http:
        made = http.post("/api/auth/setup", json={"name": "root", "password": PASSWORD})
        assert made.status_code == 201, made.text
        csrf = made.json()["csrf_token"]
        key = http.post("/api/auth/keys", json={"name": "main"}, headers={"X-CSRF-Token": csrf})
        assert key.status_code == 201, key.text
        return {"key": key.json()["key"], "csrf": csrf}


def set_cookies(response: httpx.Response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


def test_every_response_carries_the_security_headers(
    deployed: Deployed, admin: dict[str, str]
) -> None:
    auth = {"Authorization": f"Bearer {admin['key']}"}
    with client(deployed.server.url) as http:
        responses = {
            "page": http.get("/"),
            "chat page": http.get("/c/" + secrets.token_hex(4)),
            "module": http.get("/static/js/main.js"),
            "api": http.get("/api/sessions", headers=auth),
            "problem": http.get("/api/sessions"),
            "not found": http.get("/nothing-here"),
            "health": http.get("/healthz"),
            "docs": http.get("/docs"),
        }
    for name, response in responses.items():
        headers = response.headers
        assert headers.get("x-content-type-options") == "nosniff", name
        assert headers.get("referrer-policy") in {"same-origin", "no-referrer"}, name
        csp = headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp, (name, csp)
        assert "strict-transport-security" not in headers, name  # plain HTTP: no HSTS
    page_csp = responses["page"].headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in page_csp.split(";") if d.strip())
    assert directives["script-src"] == "'self'", page_csp  # no unsafe-inline, no other origin
    assert "unsafe-inline" not in page_csp and "unsafe-eval" not in page_csp
    assert directives["object-src"] == "'none'"
    api_csp = responses["api"].headers["content-security-policy"]
    assert "default-src 'none'" in api_csp  # JSON and blobs never render as a document


def sign_in(http: httpx.Client, **headers: str) -> httpx.Response:
    response = http.post(
        "/api/auth/login", json={"name": "root", "password": PASSWORD}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response


def test_the_session_cookie_is_httponly_samesite_and_secure_only_over_https(
    deployed: Deployed, admin: dict[str, str]
) -> None:
    url = deployed.server.url
    with client(url) as http:
        plain = set_cookies(sign_in(http))
        # A client cannot claim HTTPS for itself: it is not a trusted proxy.
        claimed = set_cookies(sign_in(http, **{"X-Forwarded-Proto": "https"}))
    with client(url, PROXY) as via_proxy:
        proxied = sign_in(via_proxy, **{"X-Forwarded-Proto": "https"})
        over_https = set_cookies(proxied)
    session = plain["chatkeep_session"].lower()
    assert "httponly" in session and "samesite=lax" in session and "path=/" in session
    assert "secure" not in session
    assert "samesite=strict" in plain["chatkeep_csrf"].lower()
    assert "secure" not in claimed["chatkeep_session"].lower()
    for cookie in over_https.values():
        assert "; secure" in cookie.lower(), cookie
    assert "httponly" in over_https["chatkeep_session"].lower()
    assert proxied.headers["strict-transport-security"].startswith("max-age=")


def test_forwarded_for_counts_only_from_a_trusted_proxy(
    deployed: Deployed, admin: dict[str, str]
) -> None:
    """The per-address sign-in limit keys on the client address: a client that writes its own
    ``X-Forwarded-For`` cannot spread its guesses over made-up addresses; a trusted proxy's
    header tells real clients apart (so one client's lock-out is not everyone's)."""
    url = deployed.server.url
    with client(url) as http:
        statuses = [
            http.post(
                "/api/auth/login",
                json={"name": f"nobody{i}", "password": "wrong password!"},  # one try per name
                headers={"X-Forwarded-For": f"10.9.{i}.{i}"},
            ).status_code
            for i in range(40)
        ]
    assert 429 in statuses, statuses  # made-up addresses did not reset the limit
    with client(url, PROXY) as via_proxy:
        elsewhere = via_proxy.post(
            "/api/auth/login",
            json={"name": "root", "password": PASSWORD},
            headers={"X-Forwarded-For": "203.0.113.7"},
        )
    assert elsewhere.status_code == 200, elsewhere.text


def test_the_log_of_a_full_run_holds_no_secret(deployed: Deployed, admin: dict[str, str]) -> None:
    url, fake = deployed.server.url, deployed.fake
    secrets_: set[str] = {PASSWORD, admin["key"], UPSTREAM_KEY, admin["csrf"]}
    auth = {"Authorization": f"Bearer {admin['key']}"}
    with client(url, headers=auth) as http:
        for i in range(3):
            sid = _uuid()
            text = f"my private thought {i} {secrets.token_hex(6)}"
            secrets_.add(text)
            fake.set(fail_status=500 if i == 1 else None, cut_after_chunks=1 if i == 2 else None)
            body = {"message": {"id": _uuid(), "content": text}, "session": {"title": text}}
            with http.stream("POST", f"/api/sessions/{sid}/turns", json=body) as stream:
                for _ in stream.iter_lines():
                    pass
            secrets_.add(f"Echo: {text}")
            http.put(
                f"/api/sessions/{sid}/messages/{_uuid()}", json={"role": "user", "content": text}
            )
            http.put(
                f"/api/sessions/{sid}/messages/{_uuid()}", json={"role": "bogus", "content": text}
            )
        fake.reset()
        new = http.post("/api/auth/keys", json={"name": "second"})
        secrets_.add(new.json()["key"])
        http.delete(f"/api/auth/keys/{new.json()['prefix']}")
        http.get("/api/sessions", headers={"Authorization": f"Bearer {new.json()['key']}"})
    with client(url, PROXY, headers={"X-Forwarded-For": "198.51.100.9"}) as browser:
        browser.post("/api/auth/login", json={"name": "root", "password": PASSWORD + "x"})
        sign_in(browser)
    deployed.server.stop()  # flush and close: the whole log, shut-down included
    log = deployed.log.read_text(errors="replace")
    assert "chatkeep is running" in log  # it is the server's log
    found = {s for s in secrets_ if s in log}
    assert not found, f"the server log shows {found}"


def _uuid() -> str:
    return str(uuid.uuid4())
