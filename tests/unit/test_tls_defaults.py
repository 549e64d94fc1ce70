"""Secure by default on the MQTT link: TLS 1.2+ with verification, insecure modes only with an
explicit flag and a warning, private keys as private as passwords."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest

from provision import pki
from wire.configfile import ConfigError
from wire.mqttconf import MqttConfig, TlsConfig, check_url, tls_context


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
