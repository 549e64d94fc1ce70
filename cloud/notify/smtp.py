"""E-mail channel: one UTF-8 text/plain mail per alert event, through an SMTP relay.

One connection per mail (alerts are rare; a kept-open connection would go stale between them
and need its own health checks): connect, STARTTLS (or implicit TLS), AUTH if configured,
send, QUIT.  Every socket operation is bounded by `timeout_s`.

Threading: the mail of an episode's `raised` event gets a Message-ID derived from the episode id
(`<bosai.DIGEST@sender-domain>`), later events refer to it with In-Reply-To and References, so
mail clients show an episode as one conversation.  Message-IDs are deterministic, so a mail sent
again after a lost reply has the same id and clients can drop the copy.

The outcome of an attempt, for the dispatcher: a 5xx reply (recipient or sender refused,
authentication failed, message rejected) is permanent; 4xx (greylisting, try later), a dropped
connection, a timeout or a TLS failure is worth retrying.  When the relay takes the mail for some
recipients and refuses others, sending again would duplicate it for the first ones, so that is
permanent too.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import re
import smtplib
import socket
import ssl
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

from cloud.notify import text
from cloud.notify.base import NotifyError
from cloud.notify.config import SmtpConfig, is_loopback, tls_context, zone
from wire.alerts import Alert
from wire.configfile import ConfigError, read_secret

FALLBACK_DOMAIN = "bosai.invalid"
_DOMAIN = re.compile(
    r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)


class SmtpNotifier:
    def __init__(self, config: SmtpConfig, config_path: Path, where: str) -> None:
        self.id = config.id
        self.config = config
        self.tz = zone(config.timezone, config_path, where)
        self.ack = text.ack_command(config_path)
        if not config.host.strip():
            raise ConfigError(config_path, f"{where}: field 'host'", "is empty")
        if config.security == "none" and not is_loopback(config.host):
            raise ConfigError(
                config_path,
                f"{where}: field 'security'",
                f"'none' would send alert contents (and the password) to {config.host} in clear text; "
                "use starttls or ssl ('none' is only allowed to 127.0.0.1, ::1 or localhost)",
            )
        self.password: str | None = None
        if config.username is not None and config.password_file is None:
            raise ConfigError(config_path, f"{where}: field 'password_file'", "needed with username")
        if config.password_file is not None:
            if config.username is None:
                raise ConfigError(config_path, f"{where}: field 'username'", "needed with password_file")
            self.password = read_secret(config_path, f"{where}: field 'password_file'", config.password_file)
        self.sender = _address(config.sender, config_path, f"{where}: field 'sender'")
        self.recipients = [_address(a, config_path, f"{where}: field 'to'") for a in config.to]
        domain = self.sender.rpartition("@")[2].lower()
        self.domain = domain if _DOMAIN.match(domain) else FALLBACK_DOMAIN
        self._tls: ssl.SSLContext | None = None
        if config.security != "none":
            self._tls = tls_context(config.ca_file, config_path, where)
        self.target = f"{config.host}:{config.port}"
        self._helo_name: str | None = None  # looked up on first use, off the caller's thread

    def __repr__(self) -> str:
        return f"SmtpNotifier(id={self.id!r}, target={self.target!r}, security={self.config.security!r})"

    def accepts(self, alert: Alert) -> bool:
        return self.config.accepts(alert)

    def message(self, alert: Alert) -> EmailMessage:
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["Subject"] = text.subject(alert)
        msg["From"] = self.config.sender
        msg["To"] = ", ".join(self.config.to)
        msg["Date"] = email.utils.format_datetime(datetime.now(self.tz))
        root = thread_root_id(alert.id, self.domain)
        if alert.event == "raised":
            msg["Message-ID"] = root
        else:
            msg["Message-ID"] = event_message_id(alert, self.domain)
            msg["In-Reply-To"] = root
            msg["References"] = root
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to the alert robot
        msg["X-Bosai-Alert-Id"] = alert.id
        msg["X-Bosai-Event"] = alert.event
        msg.set_content(text.body(alert, self.tz, ack=self.ack), charset="utf-8", cte="quoted-printable")
        return msg

    def send(self, alert: Alert) -> None:
        msg = self.message(alert)
        try:
            smtp = self._connect()
        except smtplib.SMTPNotSupportedError:
            raise NotifyError(f"{self.target} does not offer STARTTLS", permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise self._error(exc) from None
        try:
            if self.config.username is not None and self.password is not None:
                smtp.login(self.config.username, self.password)
            refused = smtp.send_message(msg, from_addr=self.sender, to_addrs=self.recipients)
        except (smtplib.SMTPException, OSError) as exc:
            smtp.close()  # no QUIT: the connection is in an unknown state and QUIT could hang too
            raise self._error(exc) from None
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()  # the mail is accepted; a failed goodbye must not cause a duplicate
        if refused:
            who = ", ".join(f"{addr} ({code} {_reply(reply)})" for addr, (code, reply) in refused.items())
            raise NotifyError(f"{self.target} took the mail but refused {who}", permanent=True)

    def _connect(self) -> smtplib.SMTP:
        if self._helo_name is None:
            self._helo_name = socket.getfqdn()
        host, port, timeout = self.config.host, self.config.port, self.config.timeout_s
        if self.config.security == "ssl":
            return smtplib.SMTP_SSL(
                host, port, local_hostname=self._helo_name, timeout=timeout, context=self._tls
            )
        smtp = smtplib.SMTP(host, port, local_hostname=self._helo_name, timeout=timeout)
        if self.config.security == "starttls":
            try:
                smtp.ehlo()
                smtp.starttls(context=self._tls)
                smtp.ehlo()
            except BaseException:
                smtp.close()
                raise
        return smtp

    def _error(self, exc: BaseException) -> NotifyError:
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = [code for code, _ in exc.recipients.values()]
            who = ", ".join(f"{a} ({c} {_reply(r)})" for a, (c, r) in exc.recipients.items())
            permanent = bool(codes) and all(500 <= c < 600 for c in codes)
            return NotifyError(f"{self.target} refused every recipient: {who}", permanent=permanent)
        if isinstance(exc, smtplib.SMTPResponseException):
            permanent = 500 <= exc.smtp_code < 600
            return NotifyError(
                f"{self.target} answered {exc.smtp_code} {_reply(exc.smtp_error)}", permanent=permanent
            )
        if isinstance(exc, smtplib.SMTPNotSupportedError):  # e.g. AUTH not offered
            return NotifyError(f"{self.target}: {exc}", permanent=True)
        if isinstance(exc, TimeoutError):
            return NotifyError(f"{self.target}: no answer within {self.config.timeout_s:g} s")
        return NotifyError(f"{self.target}: {str(exc) or exc.__class__.__name__}")


def thread_root_id(episode_id: str, domain: str) -> str:
    """The Message-ID of an episode's `raised` mail, which its later mails refer to.

    A digest of the episode id rather than the id itself: ids may hold characters a Message-ID
    cannot, and a short id keeps the header on one line (some parsers keep the folding space)."""
    return f"<bosai.{_digest(episode_id, 20)}@{domain}>"


def event_message_id(alert: Alert, domain: str) -> str:
    event = f"{alert.id}|{alert.event}|{alert.level}|{alert.notify_tier}|{alert.ts.isoformat()}"
    return f"<bosai.{_digest(alert.id, 20)}.{_digest(event, 12)}@{domain}>"


def _digest(value: str, length: int) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:length]


def _address(value: str, config_path: Path, where: str) -> str:
    """The bare address of `Name <addr@host>` or `addr@host`, or ConfigError."""
    if "\n" in value or "\r" in value:
        raise ConfigError(config_path, where, "contains a line break")
    _, addr = email.utils.parseaddr(value)
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or " " in addr:
        raise ConfigError(config_path, where, f"{value!r} is not an e-mail address")
    return addr


def _reply(reply: bytes | str) -> str:
    decoded = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(decoded.split())
