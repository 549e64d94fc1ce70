"""The words of a notification, shared by every channel: subject, facts and plain-text body.

Duty officers read these on a phone at night, so the subject alone must say what, where and
what happened (`[bosai] 避難判断水位 evacuation judgement (level 3) — 石狩川 旭橋 river-radar-01:
raised`), and the body gives the evidence (value, threshold, rate, forecast with its band) and
what to do next (`bosai alerts --config FILE ack ID`, naming the consumer's config file: the
command needs it).  Labels are Japanese and English: staff read the Japanese names of the stage
thresholds, vendors and auditors may not.

Times are shown in the channel's time zone (Asia/Tokyo by default) with the zone's name and
offset, since a bare "14:05" in an alert relayed to another office is a trap.

Nothing here knows about a transport: Slack, Teams and e-mail format `facts()` / `body()` their
own way.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from wire.alerts import Alert, Forecast


def _tokyo() -> tzinfo:
    try:
        return ZoneInfo("Asia/Tokyo")
    except ZoneInfoNotFoundError:  # no tz database (slim containers); Japan has no DST
        return timezone(timedelta(hours=9), "JST")


JST = _tokyo()

CONDITION_NAMES: dict[str, tuple[str, str]] = {  # condition -> (Japanese, English)
    "level": ("基準超過", "threshold"),
    "rate": ("変化率超過", "rate of change"),
    "snow_dispatch": ("除雪出動", "snow plowing dispatch"),
    "failure_forecast": ("崩壊予測", "failure forecast"),
    "suspect_data": ("異常値", "suspect data"),
    "flatline": ("値の固着", "flatline"),
    "out_of_range": ("測定範囲外", "out of range"),
    "sensor_failing": ("センサー異常", "sensor failing"),
    "stale": ("データ途絶", "stale"),
    "gateway_offline": ("ゲートウェイ停止", "gateway offline"),
}
EVENT_NAMES_JA = {
    "raised": "発報",
    "escalated": "レベル上昇",
    "deescalated": "レベル低下",
    "acknowledged": "確認済み",
    "reminder": "再通知",
    "handover": "引き継ぎ",
    "resolved": "解除",
}
CATEGORY_NAMES_JA = {"disaster": "災害", "maintenance": "保守"}
ACK_COMMAND = "bosai alerts ack"  # when the consumer's config file is not known


def ack_command(config_path: Path | None) -> str:
    """`bosai alerts --config /etc/bosai/consumer.yaml ack`: ready to paste on the cloud host."""
    if config_path is None:
        return ACK_COMMAND
    return f"bosai alerts --config {shlex.quote(str(config_path.resolve()))} ack"


def subject(alert: Alert) -> str:
    """One line: what, where, what happened.  Maintenance alerts say so first."""
    if alert.category == "maintenance":
        text = f"[bosai] maintenance: {alert.condition} — {_where_maintenance(alert)}"
        if alert.event != "raised":
            text += f": {event_summary(alert)}"
    else:
        text = f"[bosai] {headline(alert)} — {_where(alert)}: {event_summary(alert)}"
    return _one_line(text)


def headline(alert: Alert) -> str:
    """`避難判断水位 evacuation judgement (level 3)`; after resolution the peak level instead."""
    if alert.level > 0:
        names = " ".join(n for n in (alert.level_name_ja, alert.level_name) if n)
        return f"{names or condition_name(alert.condition)} (level {alert.level})"
    return f"{condition_name(alert.condition)} (peak level {alert.peak_level})"


def event_summary(alert: Alert) -> str:
    match alert.event:
        case "escalated" | "deescalated":
            return f"{alert.event} from level {alert.previous_level}"
        case "acknowledged":
            return f"acknowledged by {alert.acked_by}" if alert.acked_by else "acknowledged"
        case "reminder":
            return "reminder, not acknowledged"
        case "handover":
            return f"handover to tier {alert.notify_tier}, not acknowledged"
        case "resolved":
            return f"resolved by {alert.resolved_by}" if alert.resolved_by else "resolved"
        case _:
            return alert.event


def condition_name(condition: str) -> str:
    return CONDITION_NAMES.get(condition, ("", condition))[1]


def facts(alert: Alert, tz: tzinfo = JST) -> list[tuple[str, str]]:
    """(label, value) pairs of the evidence, in reading order; absent values are left out."""
    out: list[tuple[str, str]] = [("理由 reason", alert.reason)]
    ja, en = CONDITION_NAMES.get(alert.condition, ("", alert.condition))
    category = f"{CATEGORY_NAMES_JA.get(alert.category, '')} {alert.category}".strip()
    out.append(("種別 condition", f"{' '.join(n for n in (ja, en) if n)} ({category})"))
    if alert.site or alert.site_name:
        site = alert.site_name or alert.site
        out.append(("地点 site", f"{site} ({alert.site})" if alert.site and site != alert.site else site))
    if alert.sensor:
        out.append(("センサー sensor", f"{alert.sensor} ({alert.kind})" if alert.kind else alert.sensor))
    if alert.gateway:
        out.append(("ゲートウェイ gateway", alert.gateway))
    if alert.value is not None:
        out.append(("値 value", _quantity(alert.value, alert.unit)))
    if alert.threshold is not None:
        out.append(("基準値 threshold", _quantity(alert.threshold, alert.unit)))
    if alert.rate is not None:
        out.append(("変化率 rate", f"{alert.rate:+.6g} {alert.rate_unit}".rstrip()))
    if alert.forecast is not None:
        out.append(forecast_fact(alert.forecast, alert, tz))
    out.append(("発生 raised at", format_time(alert.raised_at, tz)))
    if alert.event != "raised":
        out.append(("時刻 event at", format_time(alert.ts, tz)))
    if alert.acked_by or alert.acked_at is not None:
        when = format_time(alert.acked_at, tz) if alert.acked_at is not None else ""
        out.append(("確認 acknowledged", ", ".join(p for p in (alert.acked_by, when) if p)))
    if alert.resolved_by:
        out.append(("解除 resolved by", alert.resolved_by))
    out.append(("状態 status", alert.status))
    out.append(("テナント tenant", alert.tenant))
    out.append(("ID", alert.id))
    return out


def forecast_fact(forecast: Forecast, alert: Alert, tz: tzinfo = JST) -> tuple[str, str]:
    """`予測 forecast`: `level 4 (3.8 m) at 2025-07-01 14:05 (13:50-14:30) JST (+09:00), in 1 h 03 min`."""
    when = format_band(forecast.eta, forecast.earliest, forecast.latest, tz)
    lead = forecast.eta - alert.ts
    if lead > timedelta(0):
        when += f", in {format_duration(lead)}"
    if forecast.kind == "failure":
        return ("崩壊予測 failure forecast", f"failure at {when}")
    target = f"level {forecast.target_level}" if forecast.target_level is not None else "next level"
    if forecast.target_value is not None:
        target += f" ({_quantity(forecast.target_value, alert.unit)})"
    return ("到達予測 forecast", f"{target} at {when}")


def body(alert: Alert, tz: tzinfo = JST, *, with_headline: bool = True, ack: str = ACK_COMMAND) -> str:
    """Plain text for e-mail and chat: the headline, the facts, the links and how to ack.

    Chat messages that show the subject just above pass `with_headline=False`."""
    lines: list[str] = []
    if with_headline:
        if alert.category == "maintenance":
            top = f"保守 maintenance: {condition_name(alert.condition)}"
            if alert.level > 0:
                top += f" (level {alert.level})"
        else:
            top = headline(alert)
        lines += [f"{top} — {EVENT_NAMES_JA.get(alert.event, '')} {event_summary(alert)}".rstrip(), ""]
    lines += [f"{label}: {value}" for label, value in facts(alert, tz)]
    if alert.links:
        lines.append("リンク links:")
        lines += [f"  {link}" for link in alert.links]
    if alert.status == "active":
        lines += ["", f"確認するには / to acknowledge:  {ack} {alert.id}"]
    return "\n".join(lines) + "\n"


def format_time(t: datetime, tz: tzinfo = JST) -> str:
    """`2025-07-01 13:02:05 JST (+09:00)`."""
    local = _aware(t).astimezone(tz)
    return f"{local:%Y-%m-%d %H:%M:%S} {_zone_label(local)}"


def format_band(eta: datetime, earliest: datetime, latest: datetime, tz: tzinfo = JST) -> str:
    """`2025-07-01 14:05 (13:50-14:30) JST (+09:00)`; band ends on another day carry their date."""
    at = _aware(eta).astimezone(tz)

    def short(t: datetime) -> str:
        local = _aware(t).astimezone(tz)
        return f"{local:%H:%M}" if local.date() == at.date() else f"{local:%m-%d %H:%M}"

    return f"{at:%Y-%m-%d %H:%M} ({short(earliest)}-{short(latest)}) {_zone_label(at)}"


def format_duration(d: timedelta) -> str:
    """`1 h 03 min`, `12 min`, `2 d 4 h`."""
    minutes = int(d.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins:02d} min"
    return f"{mins} min"


def _zone_label(local: datetime) -> str:
    offset = local.strftime("%z")  # +0900
    offset = f"{offset[:3]}:{offset[3:]}" if len(offset) == 5 else offset
    name = local.tzname() or ""
    return f"{name} ({offset})" if name and name != f"UTC{offset}" else offset


def _aware(t: datetime) -> datetime:
    # Alert.acked_at may come without a zone from a hand-written source: it is UTC then.
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _quantity(value: float, unit: str) -> str:
    return f"{value:.6g} {unit}".rstrip()


def _where(alert: Alert) -> str:
    if alert.sensor or alert.site or alert.site_name:
        return " ".join(p for p in (alert.site_name or alert.site, alert.sensor) if p)
    return f"gateway {alert.gateway}"


def _where_maintenance(alert: Alert) -> str:
    site = alert.site_name or alert.site
    if alert.sensor:
        return f"{alert.sensor} ({site})" if site else alert.sensor
    return f"gateway {alert.gateway}" + (f" ({site})" if site else "")


def _one_line(text: str) -> str:
    # A subject is a mail header and a chat notification line: names must not break it.
    return " ".join(text.split())
