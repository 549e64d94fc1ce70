"""The broker part of the checklist: DNS, TCP, TLS with verification and the certificate, then an
MQTT login with the gateway's credentials and a disconnect.  Nothing is published, because the
cloud watches the gateway's status topic."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from edge.check.items import Checklist, Status
from edge.config import LoadedGateway
from edge.outbox import lock_path
from wire import processlock
from wire.configfile import ConfigError, resolve
from wire.mqttconf import MqttConfig, read_password, tls_context

CERT_EXPIRY_WARN_DAYS = 14
AUTH_REFUSED = frozenset({0x86, 0x87, 0x8A, 0x8C})  # bad credentials, not authorized, banned, bad method


async def check_broker_steps(loaded: LoadedGateway, timeout: float, out: Checklist) -> None:
    cfg = loaded.config.mqtt
    host, port = cfg.host, cfg.port
    skip_rest = ["TCP connect", "TLS handshake" if cfg.use_tls else "TLS", "login"]

    def skip(names: list[str], why: str) -> None:
        for name in names:
            out.add("broker", name, Status.SKIP, f"not tried: {why}")

    try:
        address = await _resolve(host, port, timeout)
    except OSError as exc:
        out.add("broker", "DNS", Status.FAIL, _dns_problem(host, exc, timeout))
        skip(skip_rest, "the host name does not resolve")
        return
    shown = "is an IP address (no lookup needed)" if address == host else f"resolves to {address}"
    out.add("broker", "DNS", Status.PASS, f"{host} {shown}")

    try:
        took = await asyncio.to_thread(_tcp_connect, address, port, timeout)
    except OSError as exc:
        out.add("broker", "TCP connect", Status.FAIL, _tcp_problem(address, port, exc, timeout))
        skip(skip_rest[1:], "no TCP connection")
        return
    out.add("broker", "TCP connect", Status.PASS, f"{address}:{port} answered in {took * 1000:.0f} ms")

    context: ssl.SSLContext | None = None
    if cfg.use_tls:
        try:
            context = tls_context(cfg.tls, loaded.path)
        except ConfigError as exc:
            out.add("broker", "TLS handshake", Status.FAIL, exc.message)
            skip(["login"], "TLS is not set up")
            return
        try:
            seen = await asyncio.to_thread(_tls_handshake, context, address, host, port, timeout)
        except (OSError, ssl.SSLError) as exc:
            out.add("broker", "TLS handshake", Status.FAIL, _tls_problem(exc, cfg, loaded.path, timeout))
            skip(["login"], "the TLS handshake failed")
            return
        status, detail = _judge_certificate(seen, cfg)
        out.add("broker", "TLS handshake", status, detail)
    else:
        out.add(
            "broker",
            "TLS",
            Status.WARN,
            "plain mqtt:// (allow_insecure): the password and all data cross the link in clear; use "
            "mqtts:// in the field",
        )

    try:
        password = read_password(cfg, loaded.path)
    except ConfigError:
        skip(["login"], "the password file cannot be used (see secrets above)")
        return
    outbox = loaded.resolve(loaded.config.outbox.path)
    if processlock.held_by_another(lock_path(outbox)):
        # The broker makes a gateway's login its client id, so logging in now would disconnect the
        # running agent and publish its Last Will ("offline") to the status topic the cloud watches.
        who = processlock.holder(lock_path(outbox))
        out.add(
            "broker",
            "login",
            Status.SKIP,
            f"not tried: the agent is running ({who} holds {outbox}); a login with its identity would "
            "disconnect it. Its health message says whether it is connected; to test the login here, "
            "stop it first (systemctl stop bosai-agent)",
        )
        return
    client_id = _check_client_id(cfg, loaded)
    result = await asyncio.to_thread(_mqtt_login, cfg, host, port, password, context, client_id, timeout)
    out.add("broker", "login", *result)


async def _resolve(host: str, port: int, timeout: float) -> str:
    """The first address of `host` (an IP literal is returned as it is); OSError."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return host
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise OSError("timed out") from None
    address = infos[0][4][0]
    assert isinstance(address, str)
    return address


def _dns_problem(host: str, exc: OSError, timeout: float) -> str:
    why = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
    return (
        f"cannot resolve {host} ({why}, {timeout:g} s allowed): check the uplink (is the mobile modem "
        "connected?) and the DNS server ('resolvectl status')"
    )


def _tcp_connect(address: str, port: int, timeout: float) -> float:
    start = time.monotonic()
    with socket.create_connection((address, port), timeout=timeout):
        return time.monotonic() - start


def _tcp_problem(address: str, port: int, exc: OSError, timeout: float) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {address}:{port}: the broker is down, or listens on another port"
    if isinstance(exc, TimeoutError):
        return (
            f"no answer from {address}:{port} within {timeout:g} s: the uplink is down, or a firewall "
            f"(or the mobile operator) blocks port {port}"
        )
    return f"cannot connect to {address}:{port}: {exc.strerror or exc}"


@dataclass(frozen=True)
class _Handshake:
    version: str
    cert: dict[str, object]  # getpeercert(): empty when not verified


def _tls_handshake(context: ssl.SSLContext, address: str, host: str, port: int, timeout: float) -> _Handshake:
    with (
        socket.create_connection((address, port), timeout=timeout) as sock,
        context.wrap_socket(sock, server_hostname=host) as tls,
    ):
        return _Handshake(tls.version() or "TLS", dict(tls.getpeercert() or {}))


def _tls_problem(exc: BaseException, cfg: MqttConfig, config_path: str, timeout: float) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = exc.verify_message or str(exc)
        lowered = message.lower()
        ca = resolve(config_path, cfg.tls.ca_file) if cfg.tls.ca_file else None
        if "hostname mismatch" in lowered or "ip address mismatch" in lowered:
            hint = (
                f"the certificate is not valid for {cfg.host}: use the name the broker's certificate was "
                "issued for in mqtt.url"
            )
        elif "expired" in lowered:
            hint = "the broker's certificate has expired (or this gateway's clock is wrong: see clock above)"
        elif "not yet valid" in lowered:
            hint = (
                "the certificate is not valid yet: this gateway's clock is probably wrong (see clock above)"
            )
        elif ca is not None:
            hint = (
                f"the broker's certificate is not signed by the CA in {ca}: the bundle's CA file does not "
                "belong to this broker (or something on the path intercepts TLS)"
            )
        else:
            hint = (
                "the broker's certificate is not signed by a CA in the system trust store: the config "
                "should name the project CA in mqtt.tls.ca_file"
            )
        return f"certificate verify failed: {message}: {hint}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no TLS answer within {timeout:g} s: is port {cfg.port} the broker's TLS port?"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        return f"TLS handshake failed ({reason}): is port {cfg.port} the broker's TLS (mqtts) port?"
    return f"the connection broke during the TLS handshake: {exc}"


def _judge_certificate(seen: _Handshake, cfg: MqttConfig) -> tuple[Status, str]:
    if cfg.tls.insecure_skip_verify:
        return Status.WARN, (
            f"{seen.version}, but the certificate is NOT verified (insecure_skip_verify): anyone on the "
            "path can impersonate the broker and read the credentials; remove it after the bench test"
        )
    subject = _name(seen.cert.get("subject"))
    issuer = _name(seen.cert.get("issuer"))
    not_after = seen.cert.get("notAfter")
    expiry = ""
    status = Status.PASS
    if isinstance(not_after, str):
        ends = ssl.cert_time_to_seconds(not_after)
        days = (ends - time.time()) / 86400
        expiry = f", valid until {datetime.fromtimestamp(ends, UTC):%Y-%m-%d} ({days:.0f} days)"
        if days < CERT_EXPIRY_WARN_DAYS:
            status = Status.WARN
            expiry += ": renew the broker's certificate soon"
    return status, f"{seen.version}, verified: certificate {subject} issued by {issuer}{expiry}"


def _name(rdns: object) -> str:
    """`CN=broker.example.jp, O=...` from getpeercert()'s nested tuples."""
    parts: list[str] = []
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C"}
    if isinstance(rdns, tuple):
        for rdn in rdns:
            for key, value in rdn:
                parts.append(f"{short.get(key, key)}={value}")
    return ", ".join(parts) or "(no subject)"


def _check_client_id(cfg: MqttConfig, loaded: LoadedGateway) -> str:
    # Not the agent's own client id, for brokers that keep the client's: if the agent were still
    # connected, the broker would drop it for ours and publish its Last Will ("offline").  (The
    # generated Mosquitto config replaces it by the login anyway: see the running-agent check.)
    base = cfg.client_id or f"bosai-{loaded.config.tenant}-{loaded.config.gateway}"
    return f"{base}-check"


def _mqtt_login(
    cfg: MqttConfig,
    host: str,
    port: int,
    password: str | None,
    context: ssl.SSLContext | None,
    client_id: str,
    timeout: float,
) -> tuple[Status, str]:
    """CONNECT with the gateway's credentials, wait for CONNACK, DISCONNECT.  Publishes nothing
    (and sets no Last Will).  Blocking: run it in a thread."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
    from paho.mqtt.reasoncodes import ReasonCode

    v5 = cfg.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    )
    if cfg.username is not None or password is not None:
        client.username_pw_set(cfg.username, password)
    if context is not None:
        client.tls_set_context(context)
    client.connect_timeout = timeout
    answers: list[ReasonCode] = []
    client.on_connect = lambda _c, _u, _f, rc, _p: answers.append(rc)
    who = f"as {cfg.username!r}" if cfg.username is not None else "without a user name"
    try:
        client.connect(host, port, keepalive=cfg.keepalive)
        deadline = time.monotonic() + timeout
        while not answers and time.monotonic() < deadline:
            if client.loop(timeout=0.1) not in (MQTTErrorCode.MQTT_ERR_SUCCESS,):
                break
    except (OSError, ssl.SSLError) as exc:
        return Status.FAIL, f"the MQTT connection failed: {exc}"
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
            client.loop(timeout=0.1)
    if not answers:
        return Status.FAIL, (
            f"no CONNACK within {timeout:g} s (the broker closed the connection or stayed silent): "
            "is this an MQTT broker, and does it accept this client id?"
        )
    rc = answers[0]
    said = rc.getName()
    if not rc.is_failure:
        return Status.PASS, f"logged in {who} (MQTT {cfg.protocol}), then disconnected without publishing"
    if rc.value in AUTH_REFUSED:
        return Status.FAIL, (
            "broker refused the login (not authorized): the credentials may be revoked or mistyped; ask "
            f"provisioning for a new bundle (broker said: {said}; user {cfg.username!r})"
        )
    return Status.FAIL, f"broker refused the connection: {said}"
