"""Notifiers against real servers: an HTTP server (http.server.ThreadingHTTPServer, plain and
TLS with a throwaway CA) standing in for Slack / Teams / a generic receiver, and a real SMTP server
(aiosmtpd) in plain, STARTTLS and implicit-TLS modes with AUTH checked against a password file.

The HTTP server answers each path from a script (500 then 200, 429 with Retry-After, 400, or
hang past the client's timeout) and records every request; the SMTP server records every mail
with whether it came over TLS and who authenticated.  Everything goes through the Dispatcher,
as the alert manager uses it.
"""

from __future__ import annotations

import email
import email.policy
import json
import logging
import ssl
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import msgspec
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from cloud.notify import Dispatcher, NotifierConfig, build_notifiers
from cloud.notify import text as notify_text
from cloud.notify.smtp import thread_root_id
from tests.alert_samples import T0, river_alert
from tests.servers import TlsFiles, free_port, make_tls_files
from wire import configfile
from wire.alerts import Alert, alert_decoder

pytestmark = [
    pytest.mark.integration,
    # AUTH over a plain connection is what the loopback relay test does on purpose
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
]

TIMEOUT = 20.0  # generous: every wait below normally ends in well under a second
SECRET = "B0SAIt0ken42"  # the secret part of the Slack-style URL; must never reach a log


def make_alert(**changes: Any) -> Alert:
    return river_alert(
        **{
            "id": "demo-city.river-radar-01.river_level.level.1",
            "links": ["https://grafana.example.jp/d/river"],
            **changes,
        }
    )


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


# -- HTTP ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived


Reply = tuple[int, dict[str, str], bytes] | Literal["hang"]
OK: Reply = (200, {}, b"ok")


class HookServer:
    """A real HTTP server recording POSTs; each path answers from its script, then 200 "ok"."""

    def __init__(self, tls: TlsFiles | None = None) -> None:
        self.requests: list[Request] = []
        self.scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self.lock = threading.Lock()
        self.release = threading.Event()  # ends every hanging request
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with hook.lock:
                    hook.requests.append(Request(self.path, dict(self.headers), body, time.monotonic()))
                    script = hook.scripts[self.path]
                    reply = script.popleft() if script else OK
                if reply == "hang":
                    hook.release.wait(TIMEOUT)
                    self.close_connection = True
                    return
                status, headers, content = reply
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.base = f"{scheme}://localhost:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="hook-server", daemon=True)
        self.thread.start()

    def plan(self, path: str, *replies: Reply) -> None:
        with self.lock:
            self.scripts[path].extend(replies)

    def received(self, path: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, path: str, count: int) -> list[Request]:
        wait_until(lambda: len(self.received(path)) >= count)
        return self.received(path)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks() -> Iterator[HookServer]:
    server = HookServer()
    yield server
    server.close()


# -- SMTP ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool
    user: str | None


class MailServer:
    """aiosmtpd on a free loopback port; records mails; optional AUTH, STARTTLS or implicit TLS."""

    def __init__(
        self,
        mode: Literal["plain", "starttls", "ssl"] = "plain",
        *,
        users: dict[str, str] | None = None,
        tls: TlsFiles | None = None,
        refuse: frozenset[str] = frozenset(),
        port: int | None = None,
    ) -> None:
        self.mails: list[Mail] = []
        self.refuse = refuse
        self.users = users or {}
        kwargs: dict[str, Any] = {}
        if users is not None:
            kwargs.update(
                authenticator=self._authenticate, auth_required=True, auth_require_tls=mode != "plain"
            )
        if mode != "plain":
            assert tls is not None
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
            if mode == "starttls":
                kwargs.update(tls_context=ctx, require_starttls=True)
            else:
                kwargs.update(ssl_context=ctx)
        self.port = port or free_port()
        self.controller = Controller(
            self, hostname="127.0.0.1", port=self.port, server_hostname="mx.bosai.test", **kwargs
        )
        self.controller.start()

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            user = data.login.decode()
            if self.users.get(user) == data.password.decode():
                return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        user = session.auth_data if session.authenticated else None
        # session.ssl is set by STARTTLS; an implicit-TLS connection shows on the transport
        tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message, tls, user))
        return "250 Message accepted for delivery"

    def wait_for(self, count: int) -> list[Mail]:
        wait_until(lambda: len(self.mails) >= count)
        return list(self.mails)

    def close(self) -> None:
        self.controller.stop()


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "tls", hosts=("localhost", "127.0.0.1"))


# -- wiring ----------------------------------------------------------------------------------


class Holder(msgspec.Struct, forbid_unknown_fields=True):
    notifiers: list[NotifierConfig]


@pytest.fixture
def dispatch(tmp_path: Path) -> Iterator[Callable[..., Dispatcher]]:
    """dispatch(*notifier config dicts, **Dispatcher options): a started Dispatcher, closed after."""
    made: list[Dispatcher] = []

    def make(*items: dict[str, Any], **options: Any) -> Dispatcher:
        config_path = tmp_path / "consumer.yaml"
        holder = configfile.convert({"notifiers": list(items)}, Holder, config_path)
        d = Dispatcher(build_notifiers(holder.notifiers, config_path), **{"retry_initial_s": 0.2, **options})
        d.start()
        made.append(d)
        return d

    yield make
    for d in made:
        d.close(timeout=1.0)


def secret_file(tmp_path: Path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content + "\n", encoding="utf-8")
    path.chmod(0o600)
    return name


# -- webhook tests ---------------------------------------------------------------------------


def test_generic_slack_and_teams_payloads_arrive(
    hooks: HookServer, tmp_path: Path, dispatch: Callable[..., Dispatcher]
) -> None:
    slack_path = f"/services/T000/B000/{SECRET}"
    d = dispatch(
        {"type": "webhook", "id": "generic", "url": f"{hooks.base}/generic"},
        {"type": "webhook", "id": "slack", "format": "slack",
         "url_file": secret_file(tmp_path, "slack.url", hooks.base + slack_path)},
        {"type": "webhook", "id": "teams", "format": "teams",
         "url_file": secret_file(tmp_path, "teams.url", f"{hooks.base}/workflows/run?sig={SECRET}")},
    )  # fmt: skip
    hooks.plan("/workflows/run?sig=" + SECRET, (202, {}, b""))  # Teams Workflows answers 202
    alert = make_alert()
    d.submit(alert)

    (generic,) = hooks.wait_for("/generic", 1)
    assert generic.headers["Content-Type"] == "application/json"
    assert alert_decoder.decode(generic.body) == alert

    (slack,) = hooks.wait_for(slack_path, 1)
    message = json.loads(slack.body)
    assert message["text"] == notify_text.subject(alert)
    assert message["text"].startswith("[bosai] 避難判断水位 evacuation judgement (level 3) — 石狩川 旭橋")
    assert message["blocks"][0]["text"]["type"] == "mrkdwn"
    assert "14:05 (13:50-14:30) JST (+09:00)" in message["blocks"][0]["text"]["text"]

    (teams,) = hooks.wait_for(f"/workflows/run?sig={SECRET}", 1)
    card = json.loads(teams.body)["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["type"] == "AdaptiveCard" and card["content"]["version"] == "1.4"
    facts = {f["title"]: f["value"] for f in card["content"]["body"][1]["facts"]}
    assert facts["値 value"] == "3.02 m" and facts["地点 site"] == "石狩川 旭橋 (ishikari-asahibashi)"

    wait_until(lambda: all(s.sent == 1 for s in d.stats().values()))
    assert all(s.attempts_failed == 0 and s.pending == 0 for s in d.stats().values())


def test_500_is_retried_until_delivered(hooks: HookServer, dispatch: Callable[..., Dispatcher]) -> None:
    hooks.plan("/flaky", (500, {}, b"internal error"), (503, {}, b"unavailable"))
    d = dispatch({"type": "webhook", "id": "w", "url": f"{hooks.base}/flaky"})
    d.submit(make_alert())
    d.submit(make_alert(event="resolved", status="resolved", level=0))
    requests = hooks.wait_for("/flaky", 4)
    events = [json.loads(r.body)["event"] for r in requests]
    assert events == ["raised", "raised", "raised", "resolved"]  # order kept through the retries
    wait_until(lambda: d.stats()["w"].sent == 2)
    stats = d.stats()["w"]
    assert stats.attempts_failed == 2 and stats.given_up == 0
    port = hooks.server.server_address[1]
    assert stats.last_error == f"http://localhost:{port} answered HTTP 503: unavailable"
    assert requests[2].at - requests[1].at >= 0.4 * 0.95  # the second wait doubled (0.2 s, 0.4 s)


def test_429_retry_after_is_honoured(hooks: HookServer, dispatch: Callable[..., Dispatcher]) -> None:
    hooks.plan("/limited", (429, {"Retry-After": "1"}, b"rate_limited"))
    d = dispatch({"type": "webhook", "id": "w", "url": f"{hooks.base}/limited"}, retry_initial_s=0.05)
    d.submit(make_alert())
    first, second = hooks.wait_for("/limited", 2)
    assert second.at - first.at >= 0.95
    wait_until(lambda: d.stats()["w"].sent == 1)


def test_400_is_given_up_and_the_secret_url_never_logged(
    hooks: HookServer, tmp_path: Path, dispatch: Callable[..., Dispatcher], caplog: pytest.LogCaptureFixture
) -> None:
    path = f"/services/T000/B000/{SECRET}"
    # Like some frameworks' error pages, the server echoes the path it was asked for.
    hooks.plan(path, (400, {}, f"invalid_payload for POST {path}".encode()))
    url_file = secret_file(tmp_path, "slack.url", hooks.base + path)
    with caplog.at_level(logging.DEBUG):
        d = dispatch({"type": "webhook", "id": "slack", "format": "slack", "url_file": url_file})
        d.submit(make_alert())
        d.submit(make_alert(event="resolved", status="resolved", level=0))
        wait_until(lambda: d.stats()["slack"].sent == 1)
    assert len(hooks.received(path)) == 2  # the 400 was not retried
    stats = d.stats()["slack"]
    assert (stats.given_up, stats.attempts_failed) == (1, 1)
    assert "HTTP 400: invalid_payload" in stats.last_error
    assert "gave up alert" in caplog.text
    assert SECRET not in caplog.text and SECRET not in stats.last_error


def test_https_webhook_with_a_private_ca(tls_files: TlsFiles, dispatch: Callable[..., Dispatcher]) -> None:
    server = HookServer(tls=tls_files)
    try:
        d = dispatch(
            {"type": "webhook", "id": "w", "url": f"{server.base}/tls", "ca_file": str(tls_files.ca_file)}
        )
        d.submit(make_alert())
        (request,) = server.wait_for("/tls", 1)
        assert alert_decoder.decode(request.body).id == make_alert().id
        wait_until(lambda: d.stats()["w"].sent == 1)
    finally:
        server.close()


def test_untrusted_certificate_is_an_error_not_a_delivery(
    tls_files: TlsFiles, dispatch: Callable[..., Dispatcher]
) -> None:
    server = HookServer(tls=tls_files)
    try:
        d = dispatch({"type": "webhook", "id": "w", "url": f"{server.base}/tls"})  # system CAs only
        d.submit(make_alert())
        wait_until(lambda: d.stats()["w"].attempts_failed >= 1)
        assert "CERTIFICATE_VERIFY_FAILED" in d.stats()["w"].last_error
        assert server.received("/tls") == [] and d.stats()["w"].sent == 0
    finally:
        server.close()


# -- e-mail tests ----------------------------------------------------------------------------


def smtp_config(server: MailServer, **fields: Any) -> dict[str, Any]:
    return {
        "type": "smtp",
        "id": "mail",
        "host": "127.0.0.1",
        "port": server.port,
        "security": "none",
        "sender": "防災システム <bosai@city.example.jp>",
        "to": ["duty@city.example.jp", "river@city.example.jp"],
        "timeout_s": 5.0,
        **fields,
    }


def test_mail_with_auth_and_episode_threading(tmp_path: Path, dispatch: Callable[..., Dispatcher]) -> None:
    server = MailServer(users={"bosai": "s3cret pass"})
    try:
        password_file = secret_file(tmp_path, "smtp.password", "s3cret pass")
        d = dispatch(smtp_config(server, username="bosai", password_file=password_file))
        raised = make_alert()
        resolved = make_alert(event="resolved", status="resolved", level=0, ts=T0 + timedelta(hours=2))
        d.submit(raised)
        d.submit(resolved)
        first, second = server.wait_for(2)
    finally:
        server.close()
    assert first.user == "bosai" and not first.tls
    assert first.mail_from == "bosai@city.example.jp"
    assert first.rcpt_tos == ["duty@city.example.jp", "river@city.example.jp"]
    msg = first.message
    assert msg["Subject"] == notify_text.subject(raised)
    assert msg["From"] == "防災システム <bosai@city.example.jp>"
    assert msg.get_content_type() == "text/plain" and msg.get_content_charset() == "utf-8"
    body = msg.get_content()
    assert "避難判断水位 evacuation judgement (level 3)" in body
    assert "到達予測 forecast: level 4 (3.8 m) at 2025-07-01 14:05 (13:50-14:30) JST (+09:00)" in body
    assert f"bosai alerts --config {(tmp_path / 'consumer.yaml').resolve()} ack {raised.id}" in body
    root = thread_root_id(raised.id, "city.example.jp")
    assert msg["Message-ID"] == root
    assert second.message["Subject"].endswith(": resolved")
    assert second.message["In-Reply-To"] == root and second.message["References"] == root
    wait_until(lambda: d.stats()["mail"].sent == 2)  # counted once the server's reply is read


def test_mail_over_starttls_with_auth(
    tmp_path: Path, tls_files: TlsFiles, dispatch: Callable[..., Dispatcher]
) -> None:
    server = MailServer("starttls", users={"bosai": "pw"}, tls=tls_files)
    try:
        d = dispatch(
            smtp_config(
                server,
                host="localhost",
                security="starttls",
                username="bosai",
                password_file=secret_file(tmp_path, "smtp.password", "pw"),
                ca_file=str(tls_files.ca_file),
            )
        )
        d.submit(make_alert())
        (mail,) = server.wait_for(1)
    finally:
        server.close()
    assert mail.tls and mail.user == "bosai"
    assert mail.message["Subject"] == notify_text.subject(make_alert())


def test_mail_over_implicit_tls(tls_files: TlsFiles, dispatch: Callable[..., Dispatcher]) -> None:
    server = MailServer("ssl", tls=tls_files)
    try:
        d = dispatch(smtp_config(server, host="localhost", security="ssl", ca_file=str(tls_files.ca_file)))
        d.submit(make_alert())
        (mail,) = server.wait_for(1)
    finally:
        server.close()
    assert mail.tls


def test_wrong_password_is_given_up(tmp_path: Path, dispatch: Callable[..., Dispatcher]) -> None:
    server = MailServer(users={"bosai": "right"})
    try:
        password_file = secret_file(tmp_path, "smtp.password", "wrong")
        d = dispatch(smtp_config(server, username="bosai", password_file=password_file))
        d.submit(make_alert())
        wait_until(lambda: d.stats()["mail"].given_up == 1)
        assert server.mails == []
    finally:
        server.close()
    stats = d.stats()["mail"]
    assert stats.attempts_failed == 1 and stats.last_error.startswith(f"127.0.0.1:{server.port} answered 535")
    assert "wrong" not in stats.last_error


def test_refused_recipient_is_given_up(dispatch: Callable[..., Dispatcher]) -> None:
    server = MailServer(refuse=frozenset({"duty@city.example.jp", "river@city.example.jp"}))
    try:
        d = dispatch(smtp_config(server))
        d.submit(make_alert())
        wait_until(lambda: d.stats()["mail"].given_up == 1)
    finally:
        server.close()
    assert "550" in d.stats()["mail"].last_error and d.stats()["mail"].attempts_failed == 1


def test_mail_is_retried_while_the_server_is_down(dispatch: Callable[..., Dispatcher]) -> None:
    port = free_port()  # nothing listens here yet
    d = dispatch(
        {
            "type": "smtp", "id": "mail", "host": "127.0.0.1", "port": port, "security": "none",
            "sender": "bosai@city.example.jp", "to": ["duty@city.example.jp"], "timeout_s": 5.0,
        },
        retry_initial_s=0.1,
        retry_max_s=0.3,
    )  # fmt: skip
    d.submit(make_alert())
    wait_until(lambda: d.stats()["mail"].attempts_failed >= 2)
    server = MailServer(port=port)
    try:
        (mail,) = server.wait_for(1)
        wait_until(lambda: d.stats()["mail"].sent == 1)
    finally:
        server.close()
    assert mail.message["X-Bosai-Event"] == "raised"


# -- isolation -------------------------------------------------------------------------------


def test_a_hanging_webhook_does_not_delay_the_mail(
    hooks: HookServer, dispatch: Callable[..., Dispatcher]
) -> None:
    hooks.plan("/hang", "hang")
    server = MailServer()
    try:
        d = dispatch(
            {"type": "webhook", "id": "hook", "url": f"{hooks.base}/hang", "timeout_s": 3.0},
            smtp_config(server),
        )
        start = time.monotonic()
        d.submit(make_alert())
        assert time.monotonic() - start < 0.5  # submit returned at once
        hooks.wait_for("/hang", 1)
        server.wait_for(1)
        wait_until(lambda: d.stats()["mail"].sent == 1)
        # the mail went out while the webhook was still waiting for its answer
        assert d.stats()["hook"].attempts_failed == 0 and d.stats()["hook"].pending == 1
        # the webhook's attempt times out, is retried, and the retry is answered
        second = hooks.wait_for("/hang", 2)[1]
        assert second.at - start >= 3.0
        wait_until(lambda: d.stats()["hook"].sent == 1)
        assert "no answer within 3 s" in d.stats()["hook"].last_error
    finally:
        server.close()
