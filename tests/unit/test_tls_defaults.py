"""Secure by default on the MQTT link: TLS 1.2+ with verification, insecure modes only with an
explicit flag and a warning, private keys as private as passwords."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from pathlib import Path

import pytest

from provision import pki
from wire.configfile import ConfigError
from wire.mqttconf import MqttConfig, TlsConfig, check_url, probe_broker, tls_context


def test_the_default_verifies_the_broker_with_tls_1_2_or_later(tmp_path: Path) -> None:
    ctx = tls_context(TlsConfig(), tmp_path / "gw.yaml")
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2


def test_switching_verification_off_needs_the_flag_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        ctx = tls_context(TlsConfig(insecure_skip_verify=True), tmp_path / "gw.yaml")
    assert ctx.verify_mode is ssl.CERT_NONE
    assert "VERIFICATION IS OFF" in caplog.text


def test_plain_mqtt_needs_allow_insecure_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    assert "in clear" in (check_url(MqttConfig(url="mqtt://broker:1883")) or "")
    assert check_url(MqttConfig(url="mqtts://broker:8883")) is None
    assert caplog.text == ""
    with caplog.at_level(logging.WARNING):
        assert check_url(MqttConfig(url="mqtt://broker:1883", allow_insecure=True)) is None
    assert "in clear" in caplog.text


def test_a_client_key_others_can_read_is_refused(tmp_path: Path) -> None:
    ca = pki.create_ca("test CA")
    client = pki.issue_client_cert(ca, "demo-city/gw01")
    (tmp_path / "client.crt").write_bytes(client.cert_pem)
    key = tmp_path / "client.key"
    key.write_bytes(client.key_pem)
    key.chmod(0o640)
    tls = TlsConfig(cert_file="client.crt", key_file="client.key")
    with pytest.raises(ConfigError, match=r"key_file.*chmod 600"):
        tls_context(tls, tmp_path / "gw.yaml")
    key.chmod(0o600)
    tls_context(tls, tmp_path / "gw.yaml")


class TlsListener:
    """A loopback TLS server (thread) presenting `server`'s certificate; answers one handshake at a time."""

    def __init__(self, server: pki.Issued, tmp: Path) -> None:
        (tmp / "server.pem").write_bytes(server.cert_pem)
        (tmp / "server.key").write_bytes(server.key_pem)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(tmp / "server.pem", tmp / "server.key")
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                with contextlib.suppress(OSError), self.context.wrap_socket(conn, server_side=True):
                    pass


def test_probe_says_why_the_broker_cannot_be_reached(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as plain:
        port = plain.getsockname()[1]
        assert probe_broker("127.0.0.1", port, None).startswith("TCP and TLS work now")
    assert "refused" in probe_broker("127.0.0.1", port, None).lower()  # closed now

    ca, other_ca = pki.create_ca("Test CA"), pki.create_ca("Another CA")
    listener = TlsListener(pki.issue_server_cert(ca, ["127.0.0.1"]), tmp_path)
    try:
        (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
        (tmp_path / "other.pem").write_bytes(other_ca.cert_pem)
        trusting = tls_context(TlsConfig(ca_file="ca.pem"), tmp_path / "gw.yaml")
        wrong_ca = tls_context(TlsConfig(ca_file="other.pem"), tmp_path / "gw.yaml")
        assert probe_broker("127.0.0.1", listener.port, trusting).startswith("TCP and TLS work now")
        assert "certificate verify failed" in probe_broker("127.0.0.1", listener.port, wrong_ca)
    finally:
        listener.sock.close()
