"""Notifiers: filters, config errors, message text, payload shapes, e-mail headers, and the
dispatcher (order, retries with backoff, give-up, queue bound, isolation) with stub notifiers.

Real HTTP and SMTP servers are in tests/integration/test_notifiers.py."""

from __future__ import annotations

import email
import email.policy
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from cloud.notify import (
    Dispatcher,
    NotifierConfig,
    NotifyError,
    WebhookConfig,
    build_notifiers,
)
from cloud.notify import text as notify_text
from cloud.notify.base import safe_target
from cloud.notify.smtp import SmtpNotifier, thread_root_id
from cloud.notify.webhook import WebhookNotifier, parse_retry_after, payload, slack_message, teams_message
from tests.alert_samples import EPISODE, T0, river_alert
from wire import configfile
from wire.alerts import Alert, Forecast, alert_decoder
from wire.configfile import ConfigError


def make_alert(**changes: Any) -> Alert:
    return river_alert(**changes)


MAINTENANCE = {
    "condition": "flatline",
    "category": "maintenance",
    "level": 1,
    "peak_level": 1,
    "level_name": "",
    "level_name_ja": "",
    "threshold": None,
    "rate": None,
    "rate_unit": "",
    "forecast": None,
    "reason": "river_level stuck at 2.41 m for 6 h",
}


# -- filters -----------------------------------------------------------------------------------


def webhook_filters(**fields: Any) -> WebhookConfig:
    return msgspec.convert(
        {"type": "webhook", "id": "w", "url": "http://127.0.0.1:1/", **fields}, WebhookConfig
    )


@pytest.mark.parametrize(
    ("channel_tier", "notify_tier", "accepted"),
    [(0, 0, True), (1, 0, False), (0, 1, True), (1, 1, True), (2, 1, False), (1, 2, True)],
)
def test_tier_everyone_involved_hears_the_news(channel_tier: int, notify_tier: int, accepted: bool) -> None:
    cfg = webhook_filters(tier=channel_tier)
    assert cfg.accepts(make_alert(notify_tier=notify_tier, event="handover")) is accepted


def test_tenant_filter() -> None:
    assert webhook_filters().accepts(make_alert(tenant="other-city"))
    only = webhook_filters(tenants=["demo-city"])
    assert only.accepts(make_alert())
    assert not only.accepts(make_alert(tenant="other-city"))


def test_category_filter() -> None:
    disaster_only = webhook_filters(categories=["disaster"])
    assert disaster_only.accepts(make_alert())
    assert not disaster_only.accepts(make_alert(**MAINTENANCE))
    assert webhook_filters().accepts(make_alert(**MAINTENANCE))  # both by default


def test_min_level_compares_the_episode_peak() -> None:
    cfg = webhook_filters(min_level=3)
    assert cfg.accepts(make_alert(level=3, peak_level=3))
    assert not cfg.accepts(make_alert(level=2, peak_level=2))
    # the resolve (level 0) and a deescalation of a level-3 episode reach a level-3 channel
    assert cfg.accepts(make_alert(event="resolved", status="resolved", level=0, peak_level=3))
    assert cfg.accepts(make_alert(event="deescalated", level=2, previous_level=3, peak_level=3))
    assert not cfg.accepts(make_alert(event="resolved", status="resolved", level=0, peak_level=2))


def test_event_filter() -> None:
    cfg = webhook_filters(events=["raised", "escalated", "resolved"])
    assert cfg.accepts(make_alert(event="raised"))
    assert cfg.accepts(make_alert(event="resolved", status="resolved", level=0))
    assert not cfg.accepts(make_alert(event="reminder"))
    assert webhook_filters().accepts(make_alert(event="reminder"))


def test_silenced_alerts_are_not_notified() -> None:
    assert not webhook_filters().accepts(make_alert(silenced=True))


def test_built_notifier_uses_its_filters(tmp_path: Path) -> None:
    (notifier,) = build(tmp_path, {"type": "webhook", "id": "w", "url": "http://localhost/", "min_level": 4})
    assert not notifier.accepts(make_alert())
    assert notifier.accepts(make_alert(level=4, peak_level=4))


# -- config errors -----------------------------------------------------------------------------


class Holder(msgspec.Struct, forbid_unknown_fields=True):
    notifiers: list[NotifierConfig] = []


def build(tmp_path: Path, *items: dict[str, Any]) -> list[Any]:
    config_path = tmp_path / "consumer.yaml"
    holder = configfile.convert({"notifiers": list(items)}, Holder, config_path)
    return build_notifiers(holder.notifiers, config_path)


def secret_file(tmp_path: Path, name: str, content: str, mode: int = 0o600) -> str:
    path = tmp_path / name
    path.write_text(content + "\n", encoding="utf-8")
    path.chmod(mode)
    return name


def config_error(tmp_path: Path, *items: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build(tmp_path, *items)
    assert info.value.path == str(tmp_path / "consumer.yaml")
    return info.value


SLACK_TOKEN = "Xq7TOKENz9"
SLACK_URL = f"https://hooks.slack.com/services/T000/B000/{SLACK_TOKEN}"
SMTP = {
    "type": "smtp",
    "id": "mail",
    "host": "smtp.example.jp",
    "sender": "bosai@example.jp",
    "to": ["d@x.jp"],
}


def test_missing_url_file(tmp_path: Path) -> None:
    err = config_error(
        tmp_path, {"type": "webhook", "id": "slack", "url_file": "nope.url", "format": "slack"}
    )
    assert err.where == "alerts: notifiers[0] (id 'slack'): field 'url_file'"
    assert "not found" in err.message and "nope.url" in err.message


def test_url_and_url_file_exactly_one(tmp_path: Path) -> None:
    name = secret_file(tmp_path, "slack.url", SLACK_URL)
    err = config_error(tmp_path, {"type": "webhook", "id": "slack", "url": SLACK_URL, "url_file": name})
    assert err.where.endswith("(id 'slack'): field 'url_file'") and "not both" in err.message
    err = config_error(tmp_path, {"type": "webhook", "id": "slack"})
    assert err.where.endswith("(id 'slack'): field 'url'") and "url_file" in err.message


def test_group_readable_secret_file_is_refused(tmp_path: Path) -> None:
    name = secret_file(tmp_path, "slack.url", SLACK_URL, mode=0o644)
    err = config_error(tmp_path, {"type": "webhook", "id": "slack", "url_file": name, "format": "slack"})
    assert err.where.endswith("field 'url_file'")
    assert f"chmod 600 {tmp_path / name}" in err.message
    assert SLACK_TOKEN not in err.message  # the URL itself is never shown


def test_url_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    name = secret_file(tmp_path, "secrets/slack.url", SLACK_URL)
    (notifier,) = build(tmp_path, {"type": "webhook", "id": "slack", "url_file": name, "format": "slack"})
    assert isinstance(notifier, WebhookNotifier)
    assert notifier.url == SLACK_URL
    assert notifier.target == "https://hooks.slack.com"
    assert SLACK_TOKEN not in repr(notifier)


def test_duplicate_ids(tmp_path: Path) -> None:
    err = config_error(
        tmp_path,
        {"type": "webhook", "id": "dup", "url": "https://a.example/"},
        {**SMTP, "id": "dup"},
    )
    assert err.where == "alerts: notifiers[1] (id 'dup'): field 'id'"
    assert "duplicate" in err.message


@pytest.mark.parametrize("url", ["http://hooks.example.jp/x", "http://192.0.2.7:8080/x", "ftp://x/y"])
def test_plain_http_to_another_host_is_refused(tmp_path: Path, url: str) -> None:
    err = config_error(tmp_path, {"type": "webhook", "id": "w", "url": url})
    assert err.where.endswith("(id 'w'): field 'url'")
    assert "https://" in err.message


def test_plain_http_url_in_a_file_is_refused_without_showing_it(tmp_path: Path) -> None:
    name = secret_file(tmp_path, "t.url", "http://hooks.example.jp/secret-token")
    err = config_error(tmp_path, {"type": "webhook", "id": "w", "url_file": name, "format": "teams"})
    assert err.where.endswith("field 'url_file'") and "https://" in err.message
    assert "secret-token" not in str(err)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "http://[::1]:8080/hook", "http://localhost/hook"]
)
def test_plain_http_to_loopback_is_allowed(tmp_path: Path, url: str) -> None:
    (notifier,) = build(tmp_path, {"type": "webhook", "id": "w", "url": url})
    assert notifier.id == "w"


def test_smtp_security_none_only_to_loopback(tmp_path: Path) -> None:
    err = config_error(tmp_path, {**SMTP, "security": "none", "port": 25})
    assert err.where == "alerts: notifiers[0] (id 'mail'): field 'security'"
    assert "clear text" in err.message
    (notifier,) = build(tmp_path, {**SMTP, "host": "127.0.0.1", "security": "none", "port": 25})
    assert isinstance(notifier, SmtpNotifier)


def test_smtp_password_file_checks(tmp_path: Path) -> None:
    err = config_error(tmp_path, {**SMTP, "username": "bosai", "password_file": "missing.pw"})
    assert err.where.endswith("field 'password_file'") and "not found" in err.message
    name = secret_file(tmp_path, "smtp.pw", "hunter2", mode=0o640)
    err = config_error(tmp_path, {**SMTP, "username": "bosai", "password_file": name})
    assert "chmod 600" in err.message and "hunter2" not in str(err)
    err = config_error(tmp_path, {**SMTP, "username": "bosai"})
    assert err.where.endswith("field 'password_file'") and "username" in err.message
    secret_file(tmp_path, "smtp.pw", "hunter2", mode=0o600)
    err = config_error(tmp_path, {**SMTP, "password_file": name})
    assert err.where.endswith("field 'username'")
    (notifier,) = build(tmp_path, {**SMTP, "username": "bosai", "password_file": name})
    assert isinstance(notifier, SmtpNotifier) and notifier.password == "hunter2"


@pytest.mark.parametrize(
    ("field", "value"), [("sender", "not an address"), ("to", ["duty@example.jp", "nobody"])]
)
def test_smtp_addresses_are_checked(tmp_path: Path, field: str, value: Any) -> None:
    err = config_error(tmp_path, {**SMTP, field: value})
    assert err.where.endswith(f"field '{field}'") and "not an e-mail address" in err.message


def test_schema_errors_name_the_field(tmp_path: Path) -> None:
    err = config_error(tmp_path, {**SMTP, "to": []})
    assert err.where == "notifiers[0] (id 'mail'): field 'to'"
    err = config_error(
        tmp_path, {"type": "webhook", "id": "w", "url": "https://x.example/", "format": "discord"}
    )
    assert err.where == "notifiers[0] (id 'w'): field 'format'"
    err = config_error(tmp_path, {"type": "webhook", "id": "w", "url": "https://x.example/", "colour": "red"})
    assert err.where == "notifiers[0] (id 'w'): field 'colour'"


def test_unknown_timezone_and_bad_ca_file(tmp_path: Path) -> None:
    err = config_error(tmp_path, {**SMTP, "timezone": "Asia/Sapporo"})
    assert err.where.endswith("field 'timezone'")
    err = config_error(
        tmp_path, {"type": "webhook", "id": "w", "url": "https://x.example/", "ca_file": "no.pem"}
    )
    assert err.where.endswith("field 'ca_file'")


# -- text --------------------------------------------------------------------------------------


def test_subject_of_a_disaster_alert() -> None:
    assert notify_text.subject(make_alert()) == (
        "[bosai] 避難判断水位 evacuation judgement (level 3) — 石狩川 旭橋 river-radar-01: raised"
    )


def test_subject_of_a_maintenance_alert() -> None:
    assert notify_text.subject(make_alert(**MAINTENANCE)) == (
        "[bosai] maintenance: flatline — river-radar-01 (石狩川 旭橋)"
    )
    resolved = make_alert(**{**MAINTENANCE, "event": "resolved", "status": "resolved", "level": 0})
    assert (
        notify_text.subject(resolved)
        == "[bosai] maintenance: flatline — river-radar-01 (石狩川 旭橋): resolved"
    )
    gateway = make_alert(
        **{
            **MAINTENANCE,
            "condition": "gateway_offline",
            "sensor": "",
            "site": "",
            "site_name": "",
            "kind": "",
        }
    )
    assert notify_text.subject(gateway) == "[bosai] maintenance: gateway_offline — gateway gw01"


@pytest.mark.parametrize(
    ("changes", "ending"),
    [
        (
            {"event": "escalated", "level": 4, "level_name": "danger", "level_name_ja": "氾濫危険水位"},
            "escalated from level 2",
        ),
        ({"event": "acknowledged", "status": "acknowledged", "acked_by": "tanaka"}, "acknowledged by tanaka"),
        ({"event": "reminder"}, "reminder, not acknowledged"),
        ({"event": "handover", "notify_tier": 1}, "handover to tier 1, not acknowledged"),
        (
            {"event": "resolved", "status": "resolved", "level": 0, "level_name": "", "level_name_ja": ""},
            "resolved",
        ),
        ({"event": "resolved", "status": "resolved", "level": 0, "resolved_by": "sato"}, "resolved by sato"),
    ],
)
def test_subject_says_what_happened(changes: dict[str, Any], ending: str) -> None:
    subject = notify_text.subject(make_alert(**changes))
    assert subject.endswith(f": {ending}"), subject
    assert "\n" not in subject


def test_subject_after_resolution_names_the_peak() -> None:
    alert = make_alert(event="resolved", status="resolved", level=0, level_name="", level_name_ja="")
    assert (
        notify_text.subject(alert)
        == "[bosai] threshold (peak level 3) — 石狩川 旭橋 river-radar-01: resolved"
    )


def test_body_carries_the_evidence_in_tokyo_time() -> None:
    body = notify_text.body(make_alert())
    assert "避難判断水位 evacuation judgement (level 3)" in body
    assert "理由 reason: river_level 3.02 m reached 避難判断水位" in body
    assert "値 value: 3.02 m" in body
    assert "基準値 threshold: 3 m" in body
    assert "変化率 rate: +0.12 m/h" in body
    assert "level 4 (3.8 m) at 2025-07-01 14:05 (13:50-14:30) JST (+09:00), in 1 h 03 min" in body
    assert "発生 raised at: 2025-07-01 13:02:05 JST (+09:00)" in body
    assert "地点 site: 石狩川 旭橋 (ishikari-asahibashi)" in body
    assert f"ID: {EPISODE}" in body
    assert "https://grafana.example.jp/d/river?var-site=ishikari-asahibashi&from=now-6h" in body
    assert f"bosai alerts ack {EPISODE}" in body


def test_body_of_an_acknowledged_alert_says_who_and_drops_the_ack_hint() -> None:
    acked = make_alert(
        event="acknowledged", status="acknowledged", acked_by="tanaka", acked_at=T0 + timedelta(minutes=5)
    )
    body = notify_text.body(acked)
    assert "確認 acknowledged: tanaka, 2025-07-01 13:07:05 JST (+09:00)" in body
    assert "bosai alerts ack" not in body


def test_failure_forecast_band_across_midnight() -> None:
    eta = datetime(2025, 7, 1, 14, 50, tzinfo=UTC)  # 23:50 JST
    alert = make_alert(
        condition="failure_forecast",
        kind="tilt_x",
        forecast=Forecast(
            kind="failure",
            eta=eta,
            earliest=eta - timedelta(minutes=20),
            latest=eta + timedelta(minutes=25),  # 00:15 the next day
        ),
    )
    body = notify_text.body(alert)
    assert "崩壊予測 failure forecast: failure at 2025-07-01 23:50 (23:30-07-02 00:15) JST (+09:00)" in body


def test_other_time_zone() -> None:
    body = notify_text.body(make_alert(), ZoneInfo("UTC"))
    assert "発生 raised at: 2025-07-01 04:02:05 UTC (+00:00)" in body


def test_naive_acked_at_is_taken_as_utc() -> None:
    alert = make_alert(
        event="acknowledged", status="acknowledged", acked_by="x", acked_at=datetime(2025, 7, 1, 4, 10)
    )
    assert "13:10:00 JST" in notify_text.body(alert)


# -- payloads ----------------------------------------------------------------------------------


def test_generic_payload_is_the_alert_json() -> None:
    alert = make_alert()
    data, content_type = payload(alert, "generic")
    assert content_type == "application/json"
    assert alert_decoder.decode(data) == alert


def test_slack_payload_shape() -> None:
    alert = make_alert(reason="level <3> & rising")
    message = json.loads(payload(alert, "slack")[0])
    assert message == slack_message(alert)
    assert message["text"] == notify_text.subject(alert)
    (section,) = message["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert section["text"]["text"].startswith(f"*{notify_text.subject(alert)}*\n")
    assert "level &lt;3&gt; &amp; rising" in section["text"]["text"]  # mrkdwn control characters escaped
    assert "color" not in json.dumps(message)


def test_slack_section_stays_within_slacks_limit() -> None:
    message = slack_message(make_alert(reason="長い理由 " * 1000))
    assert len(message["blocks"][0]["text"]["text"]) <= 3000


def test_teams_payload_is_a_workflows_adaptive_card() -> None:
    alert = make_alert()
    message = json.loads(payload(alert, "teams")[0])
    assert message == json.loads(json.dumps(teams_message(alert)))
    assert message["type"] == "message"
    (attachment,) = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    title, factset, ack = card["body"]
    assert title == {
        "type": "TextBlock",
        "text": notify_text.subject(alert),
        "weight": "Bolder",
        "size": "Medium",
        "wrap": True,
    }
    facts = {f["title"]: f["value"] for f in factset["facts"]}
    assert factset["type"] == "FactSet"
    assert facts["値 value"] == "3.02 m"
    assert facts["到達予測 forecast"].startswith("level 4 (3.8 m) at 2025-07-01 14:05 (13:50-14:30)")
    assert ack["text"].endswith(f"bosai alerts ack {EPISODE}")
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "ダッシュボード dashboard", "url": alert.links[0]}
    ]


def test_teams_card_without_links_has_no_actions_and_resolved_no_ack_hint() -> None:
    alert = make_alert(event="resolved", status="resolved", level=0, links=[])
    card = teams_message(alert)["attachments"][0]["content"]
    assert "actions" not in card
    assert [b["type"] for b in card["body"]] == ["TextBlock", "FactSet"]


def test_retry_after_parsing() -> None:
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = datetime.now(UTC) + timedelta(seconds=30)
    seconds = parse_retry_after(later.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    assert seconds is not None and 20 < seconds <= 31
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_safe_target_drops_the_secret_path() -> None:
    assert safe_target(SLACK_URL) == "https://hooks.slack.com"
    assert safe_target("http://[::1]:8080/x?token=1") == "http://[::1]:8080"


def test_webhook_errors_never_echo_the_url(tmp_path: Path) -> None:
    name = secret_file(tmp_path, "hook.url", "http://127.0.0.1:9/services/T1/B2/topsecret?sig=abc")
    (notifier,) = build(tmp_path, {"type": "webhook", "id": "w", "url_file": name})
    assert isinstance(notifier, WebhookNotifier)
    redacted = notifier._redact("Cannot POST /services/T1/B2/topsecret?sig=abc (sig=abc)")
    assert "topsecret" not in redacted and "abc" not in redacted


# -- e-mail ------------------------------------------------------------------------------------


def smtp_notifier(tmp_path: Path, **fields: Any) -> SmtpNotifier:
    (notifier,) = build(tmp_path, {**SMTP, "sender": "防災 <bosai@example.jp>", **fields})
    assert isinstance(notifier, SmtpNotifier)
    return notifier


def reparse(msg: EmailMessage) -> EmailMessage:
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_mail_is_utf8_text_with_an_encoded_subject(tmp_path: Path) -> None:
    alert = make_alert()
    notifier = smtp_notifier(tmp_path)
    msg = notifier.message(alert)
    raw = msg.as_bytes()
    raw.decode("ascii")  # headers encoded (RFC 2047), body quoted-printable: 7-bit clean
    parsed = reparse(msg)
    assert parsed["Subject"] == notify_text.subject(alert)
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content_charset() == "utf-8"
    content = parsed.get_content().replace("\r\n", "\n")  # SMTP lines end in CRLF
    assert content == notify_text.body(alert, ack=notifier.ack)
    # the ack command names the consumer's config file, as `bosai alerts` needs it
    config = (tmp_path / "consumer.yaml").resolve()
    assert f"bosai alerts --config {config} ack {EPISODE}" in content
    assert parsed["From"] == "防災 <bosai@example.jp>"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["X-Bosai-Alert-Id"] == EPISODE


def test_mail_threading_headers(tmp_path: Path) -> None:
    notifier = smtp_notifier(tmp_path)
    raised = reparse(notifier.message(make_alert()))
    escalated = reparse(notifier.message(make_alert(event="escalated", level=4, ts=T0 + timedelta(hours=1))))
    resolved = reparse(notifier.message(make_alert(event="resolved", level=0, ts=T0 + timedelta(hours=3))))
    root = thread_root_id(EPISODE, "example.jp")
    assert raised["Message-ID"] == root and raised["In-Reply-To"] is None
    for later in (escalated, resolved):
        assert later["In-Reply-To"] == root and later["References"] == root
        assert later["Message-ID"] != root
    assert escalated["Message-ID"] != resolved["Message-ID"]
    # the same event sent again (after a lost reply) keeps its id, so clients can drop the copy
    assert reparse(notifier.message(make_alert()))["Message-ID"] == root


@pytest.mark.parametrize("episode", ["a.b", "..x..", "x y/z", "東京", "a@b<c>", "", "x" * 300])
def test_message_ids_are_short_valid_dot_atoms(episode: str) -> None:
    mid = thread_root_id(episode, "city.example.jp")
    local = mid[1:-1].rpartition("@")[0]
    assert ".." not in local and not local.endswith(".")
    assert all(c.isascii() and (c.isalnum() or c == ".") for c in local), mid
    assert len(f"In-Reply-To: {mid}") <= 78  # one line, never folded
    assert thread_root_id(episode + "-2", "city.example.jp") != mid


# -- dispatcher --------------------------------------------------------------------------------


Outcome = NotifyError | Exception | None


class StubNotifier:
    """Records what it was sent and when; fails according to `outcomes` (None = delivered)."""

    def __init__(
        self,
        id: str,
        outcomes: list[Outcome] | None = None,
        *,
        accepts: Callable[[Alert], bool] = lambda a: True,
        gate: threading.Event | None = None,
    ) -> None:
        self.id = id
        self.outcomes = list(outcomes or [])
        self._accepts = accepts
        self.gate = gate  # send() waits for it: a hanging server
        self.attempts: list[tuple[float, str]] = []
        self.delivered: list[Alert] = []
        self.lock = threading.Lock()

    def accepts(self, alert: Alert) -> bool:
        return self._accepts(alert)

    def send(self, alert: Alert) -> None:
        if self.gate is not None:
            self.gate.wait()
        with self.lock:
            self.attempts.append((time.monotonic(), alert.id))
            outcome = self.outcomes.pop(0) if self.outcomes else None
            if outcome is None:
                self.delivered.append(alert)
        if outcome is not None:
            raise outcome


def numbered(n: int, **changes: Any) -> Alert:
    return make_alert(id=f"ep-{n}", **changes)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


@pytest.fixture
def dispatchers() -> Iterator[list[Dispatcher]]:
    """Dispatchers made by a test, closed afterwards even when it fails."""
    made: list[Dispatcher] = []
    yield made
    for d in made:
        d.close(timeout=0.5)


def started(dispatchers: list[Dispatcher], notifiers: list[Any], **options: Any) -> Dispatcher:
    d = Dispatcher(notifiers, **{"retry_initial_s": 0.01, "retry_max_s": 0.05, **options})
    dispatchers.append(d)
    d.start()
    return d


def test_order_is_kept_per_notifier(dispatchers: list[Dispatcher]) -> None:
    stub = StubNotifier("a", [NotifyError("flaky"), None, NotifyError("flaky")])
    d = started(dispatchers, [stub])
    for n in range(50):
        d.submit(numbered(n))
    wait_for(lambda: d.stats()["a"].sent == 50)  # counted just after send() returns
    assert [a.id for a in stub.delivered] == [f"ep-{n}" for n in range(50)]
    stats = d.stats()["a"]
    assert (stats.sent, stats.attempts_failed, stats.given_up, stats.pending) == (50, 2, 0, 0)
    assert stats.last_error == "flaky"


def test_only_accepting_notifiers_receive(dispatchers: list[Dispatcher]) -> None:
    everything = StubNotifier("all")
    disaster = StubNotifier("disaster", accepts=lambda a: a.category == "disaster")
    d = started(dispatchers, [everything, disaster])
    d.submit(numbered(1, **MAINTENANCE))
    d.submit(numbered(2))
    wait_for(lambda: len(everything.delivered) == 2 and len(disaster.delivered) == 1)
    assert disaster.delivered[0].id == "ep-2"


def test_retry_backoff_doubles_up_to_the_maximum(dispatchers: list[Dispatcher]) -> None:
    stub = StubNotifier("a", [NotifyError("down")] * 5)
    d = started(dispatchers, [stub], retry_initial_s=0.05, retry_max_s=0.2)
    d.submit(numbered(1))
    wait_for(lambda: d.stats()["a"].sent == 1)
    times = [t for t, _ in stub.attempts]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 5
    # waits of 0.05, 0.1, 0.2, 0.2 (capped), 0.2 s; a loaded machine only makes them longer
    for gap, expected in zip(gaps, [0.05, 0.1, 0.2, 0.2, 0.2], strict=True):
        assert gap >= expected * 0.95, gaps
    assert d.stats()["a"].attempts_failed == 5 and d.stats()["a"].sent == 1


def test_retry_after_is_honoured(dispatchers: list[Dispatcher]) -> None:
    stub = StubNotifier("a", [NotifyError("429", retry_after=0.4)])
    d = started(dispatchers, [stub], retry_initial_s=0.01)
    d.submit(numbered(1))
    wait_for(lambda: len(stub.delivered) == 1)
    (first, _), (second, _) = stub.attempts
    assert second - first >= 0.4 * 0.95


def test_backoff_carries_over_between_events_until_a_success(dispatchers: list[Dispatcher]) -> None:
    down = NotifyError("down")
    stub = StubNotifier("a", [down, down, NotifyError("bad", permanent=True), down, None, down])
    d = started(dispatchers, [stub], retry_initial_s=0.05, retry_max_s=1.0)
    for n in (1, 2, 3):
        d.submit(numbered(n))
    wait_for(lambda: len(stub.delivered) == 2)
    assert d.stats()["a"].given_up == 1  # ep-1, after two retries
    assert [a.id for a in stub.delivered] == ["ep-2", "ep-3"]
    times = [t for t, _ in stub.attempts]
    # ep-2's first failure is the notifier's third in a row: it waits 0.2 s, not 0.05 s;
    # after ep-2's success, ep-3's failure starts again from 0.05 s
    assert [alert_id for _, alert_id in stub.attempts] == ["ep-1"] * 3 + ["ep-2"] * 2 + ["ep-3"] * 2
    assert times[4] - times[3] >= 0.2 * 0.95
    assert times[6] - times[5] >= 0.05 * 0.95


def test_permanent_error_is_not_retried(
    dispatchers: list[Dispatcher], caplog: pytest.LogCaptureFixture
) -> None:
    stub = StubNotifier("a", [NotifyError("HTTP 400 invalid_payload", permanent=True)])
    d = started(dispatchers, [stub])
    with caplog.at_level(logging.INFO, logger="cloud.notify"):
        d.submit(numbered(1))
        d.submit(numbered(2))
        wait_for(lambda: d.stats()["a"].sent == 1)
    assert [alert_id for _, alert_id in stub.attempts] == ["ep-1", "ep-2"]
    stats = d.stats()["a"]
    assert (stats.sent, stats.attempts_failed, stats.given_up) == (1, 1, 1)
    assert "gave up alert ep-1" in caplog.text and "HTTP 400 invalid_payload" in caplog.text


def test_give_up_after_the_deadline(dispatchers: list[Dispatcher]) -> None:
    stub = StubNotifier("a", [NotifyError("down")] * 1000)
    d = started(dispatchers, [stub], retry_initial_s=0.02, retry_max_s=0.05, give_up_after_s=0.3)
    submitted = time.monotonic()
    d.submit(numbered(1))
    wait_for(lambda: d.stats()["a"].given_up == 1)
    assert len(stub.attempts) >= 3
    assert stub.attempts[-1][0] - submitted >= 0.3  # the last attempt falls on the deadline
    wait_for(lambda: d.stats()["a"].pending == 0)
    stub.outcomes.clear()
    d.submit(numbered(2))
    wait_for(lambda: len(stub.delivered) == 1)


def test_unexpected_exception_is_retried(dispatchers: list[Dispatcher]) -> None:
    stub = StubNotifier("a", [RuntimeError("bug")])
    d = started(dispatchers, [stub])
    d.submit(numbered(1))
    wait_for(lambda: len(stub.delivered) == 1)
    assert d.stats()["a"].last_error == "RuntimeError: bug"


def test_failing_is_logged_once_and_recovery_once(
    dispatchers: list[Dispatcher], caplog: pytest.LogCaptureFixture
) -> None:
    stub = StubNotifier("a", [NotifyError("connection refused")] * 6)
    d = started(dispatchers, [stub])
    with caplog.at_level(logging.DEBUG, logger="cloud.notify"):
        for n in range(3):
            d.submit(numbered(n))
        wait_for(lambda: len(stub.delivered) == 3)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("cloud.notify")]
    assert len([m for m in messages if "delivery failing" in m]) == 1
    assert len([m for m in messages if "delivering again" in m]) == 1
    assert len(messages) == 2, messages


def test_full_queue_drops_maintenance_first_then_oldest(dispatchers: list[Dispatcher]) -> None:
    gate = threading.Event()
    stub = StubNotifier("a", gate=gate)
    d = started(dispatchers, [stub], max_pending=3)
    d.submit(numbered(0))  # taken by the worker, which then hangs in send()
    wait_for(lambda: d.stats()["a"].pending == 1 and len(d._channels[0].queue) == 0)
    d.submit(numbered(1))
    d.submit(numbered(2, **MAINTENANCE))
    d.submit(numbered(3))
    d.submit(numbered(4))  # full: maintenance ep-2 goes
    d.submit(numbered(5))  # full, only disaster left: the oldest, ep-1, goes
    stats = d.stats()["a"]
    assert stats.dropped == 2 and stats.pending == 4  # three queued and one in flight
    gate.set()
    wait_for(lambda: len(stub.delivered) == 4)
    assert [a.id for a in stub.delivered] == ["ep-0", "ep-3", "ep-4", "ep-5"]


def test_a_hanging_notifier_blocks_neither_submit_nor_the_others(dispatchers: list[Dispatcher]) -> None:
    gate = threading.Event()
    hanging = StubNotifier("mail", gate=gate)
    webhook = StubNotifier("webhook")
    d = started(dispatchers, [hanging, webhook])
    start = time.monotonic()
    for n in range(200):
        d.submit(numbered(n))
    assert time.monotonic() - start < 1.0  # 200 submits, no waiting on anyone
    wait_for(lambda: len(webhook.delivered) == 200)
    assert hanging.delivered == [] and d.stats()["mail"].pending == 200
    gate.set()
    wait_for(lambda: len(hanging.delivered) == 200)
    assert [a.id for a in hanging.delivered] == [a.id for a in webhook.delivered]


def test_submit_never_raises(dispatchers: list[Dispatcher]) -> None:
    def broken(alert: Alert) -> bool:
        raise ValueError("bug in a filter")

    bad = StubNotifier("bad", accepts=broken)
    good = StubNotifier("good")
    d = started(dispatchers, [bad, good])
    d.submit(numbered(1))
    wait_for(lambda: len(good.delivered) == 1)


def test_close_delivers_what_is_pending(dispatchers: list[Dispatcher]) -> None:
    stub = StubNotifier("a", [NotifyError("once")])
    d = Dispatcher([stub], retry_initial_s=0.05)
    for n in range(5):
        d.submit(numbered(n))  # before start: queued
    d.start()
    d.close(timeout=10)
    assert len(stub.delivered) == 5
    d.submit(numbered(6))  # after close: counted, not queued
    assert d.stats()["a"].dropped == 1


def test_close_gives_up_at_its_timeout(dispatchers: list[Dispatcher]) -> None:
    gate = threading.Event()
    hanging = StubNotifier("hanging", gate=gate)
    retrying = StubNotifier("retrying", [NotifyError("down")] * 1000)
    d = Dispatcher([hanging, retrying], retry_initial_s=0.05, retry_max_s=0.05)
    d.start()
    for n in range(3):
        d.submit(numbered(n))
    start = time.monotonic()
    d.close(timeout=0.5)
    assert time.monotonic() - start < 3.0
    gate.set()
    wait_for(lambda: not any(ch.thread and ch.thread.is_alive() for ch in d._channels))
    assert d.stats()["retrying"].dropped == 3 and d.stats()["retrying"].sent == 0
    assert d.stats()["hanging"].dropped == 2  # the one in flight when the gate opened was sent
