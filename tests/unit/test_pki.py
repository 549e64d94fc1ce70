"""The project CA: certificates OpenSSL accepts for TLS with client certificates, and a CRL it honours."""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provision.pki import (
    CLOCK_SKEW,
    Issued,
    PkiError,
    build_crl,
    cert_summary,
    create_ca,
    fingerprint,
    issue_client_cert,
    issue_server_cert,
    load_issued,
)

E = TypeVar("E", bound=x509.ExtensionType)


@pytest.fixture(scope="module")
def ca() -> Issued:
    return create_ca("bosai test project CA")


def cert(issued: Issued) -> x509.Certificate:
    return x509.load_pem_x509_certificate(issued.cert_pem)


def ext(c: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return c.extensions.get_extension_for_class(kind)


def common_name(c: x509.Certificate) -> str:
    return str(c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_ca_is_an_ec_p256_ca_that_cannot_make_sub_cas(ca: Issued) -> None:
    c = cert(ca)
    key = c.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    constraints = ext(c, x509.BasicConstraints)
    assert constraints.critical and constraints.value == x509.BasicConstraints(ca=True, path_length=0)
    usage = ext(c, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert c.issuer == c.subject
    c.verify_directly_issued_by(c)
    ski = ext(c, x509.SubjectKeyIdentifier).value
    assert ext(c, x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest
    assert ca.serial == c.serial_number and ca.serial.bit_length() > 64
    assert ca.not_after == c.not_valid_after_utc and ca.not_after.tzinfo is not None


def test_validity_starts_before_now_for_clock_skew(ca: Issued) -> None:
    now = datetime.now(UTC)
    c = cert(issue_client_cert(ca, "demo-city/gw01", days=10))
    assert now - CLOCK_SKEW - timedelta(seconds=30) < c.not_valid_before_utc < now - CLOCK_SKEW / 2
    assert abs(c.not_valid_after_utc - (now + timedelta(days=10))) < timedelta(minutes=1)


def test_server_cert_names_dns_and_ip_hosts(ca: Issued) -> None:
    server = issue_server_cert(ca, ["broker.example.jp", "127.0.0.1", "::1", "localhost"])
    c = cert(server)
    c.verify_directly_issued_by(cert(ca))
    assert common_name(c) == "broker.example.jp"
    san = ext(c, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["broker.example.jp", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert list(ext(c, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert ext(c, x509.BasicConstraints).value.ca is False
    usage = ext(c, x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    assert (
        ext(c, x509.AuthorityKeyIdentifier).value.key_identifier
        == ext(cert(ca), x509.SubjectKeyIdentifier).value.digest
    )


def test_client_cert_carries_the_mqtt_username_and_verifies_against_the_ca(ca: Issued) -> None:
    client = issue_client_cert(ca, "demo-city/gw01")
    c = cert(client)
    c.verify_directly_issued_by(cert(ca))
    assert common_name(c) == "demo-city/gw01"
    assert list(ext(c, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert client.serial == c.serial_number
    assert load_issued(client.cert_pem, client.key_pem) == client


def test_certificate_signed_by_another_ca_does_not_verify(ca: Issued) -> None:
    other = create_ca("someone else")
    with pytest.raises((ValueError, TypeError)):
        cert(issue_client_cert(other, "demo-city/gw01")).verify_directly_issued_by(cert(ca))


def test_crl_lists_the_revoked_serials_and_is_signed_by_the_ca(ca: Issued) -> None:
    revoked_a, revoked_b, kept = (issue_client_cert(ca, f"t/gw{i}") for i in range(3))
    when = datetime(2025, 1, 31, 9, 0, tzinfo=UTC)
    pem = build_crl(
        ca, [(revoked_a.serial, when), (revoked_b.serial, when), (revoked_a.serial, when)], days=7
    )
    crl = x509.load_pem_x509_crl(pem)
    assert crl.is_signature_valid(cert(ca).public_key())  # type: ignore[arg-type]
    assert crl.issuer == cert(ca).subject
    assert sorted(r.serial_number for r in crl) == sorted([revoked_a.serial, revoked_b.serial])
    entry = crl.get_revoked_certificate_by_serial_number(revoked_a.serial)
    assert entry is not None and entry.revocation_date_utc == when
    assert crl.get_revoked_certificate_by_serial_number(kept.serial) is None
    assert crl.next_update_utc is not None
    assert timedelta(days=6) < crl.next_update_utc - datetime.now(UTC) <= timedelta(days=7)


def test_an_empty_crl_is_valid(ca: Issued) -> None:
    crl = x509.load_pem_x509_crl(build_crl(ca, []))
    assert len(crl) == 0
    assert crl.is_signature_valid(cert(ca).public_key())  # type: ignore[arg-type]


def test_fingerprint_and_summary(ca: Issued) -> None:
    client = issue_client_cert(ca, "demo-city/gw01", days=30)
    fp = fingerprint(client.cert_pem)
    assert re.fullmatch(r"SHA256(:[0-9A-F]{2}){32}", fp)
    assert (
        fp.replace(":", "").removeprefix("SHA256") == cert(client).fingerprint(hashes.SHA256()).hex().upper()
    )
    expires = (datetime.now(UTC) + timedelta(days=30)).date()
    assert cert_summary(client.cert_pem) == f"CN=demo-city/gw01, expires {expires:%Y-%m-%d}"


def test_certificate_never_outlives_its_ca() -> None:
    short_ca = create_ca("short-lived CA", days=30)
    client = issue_client_cert(short_ca, "t/gw", days=825)
    assert client.not_after == short_ca.not_after


def test_private_key_is_not_in_the_repr(ca: Issued) -> None:
    assert b"PRIVATE KEY" in ca.key_pem
    assert "PRIVATE" not in repr(ca) and ca.key_pem.decode() not in repr(ca)


def test_mistakes_are_refused_with_a_reason(ca: Issued) -> None:
    client = issue_client_cert(ca, "t/gw")
    with pytest.raises(PkiError, match="does not belong"):
        load_issued(client.cert_pem, ca.key_pem)
    with pytest.raises(PkiError, match="not a CA"):
        issue_client_cert(client, "t/other")
    with pytest.raises(PkiError, match="at least one host"):
        issue_server_cert(ca, [])
    with pytest.raises(PkiError, match="1 to 64 characters"):
        issue_client_cert(ca, "x" * 65)
    with pytest.raises(PkiError, match="at least 1 day"):
        issue_client_cert(ca, "t/gw", days=0)
    with pytest.raises(PkiError, match="not a PEM certificate"):
        fingerprint(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    with pytest.raises(PkiError, match="not an unencrypted PEM key") as info:
        load_issued(ca.cert_pem, b"garbage")
    assert "garbage" not in str(info.value)


# --------------------------------------------------------------------------------------------
# OpenSSL itself (through the ssl module) accepts the certificates for mutual TLS and honours
# the CRL: the same library Mosquitto uses.


def write(directory: Path, name: str, data: bytes) -> str:
    path = directory / name
    path.write_bytes(data)
    return str(path)


def handshake(tmp_path: Path, ca: Issued, client: Issued, crl_pem: bytes | None) -> str | None:
    """Mutual TLS over a socket pair; the server's verification error, or None if it accepted."""
    server = issue_server_cert(ca, ["localhost", "127.0.0.1"])
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    server_ctx.load_cert_chain(
        write(tmp_path, "s.crt", server.cert_pem), write(tmp_path, "s.key", server.key_pem)
    )
    server_ctx.load_verify_locations(write(tmp_path, "ca.crt", ca.cert_pem))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    if crl_pem is not None:
        server_ctx.load_verify_locations(write(tmp_path, "ca.crl", crl_pem))
        server_ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    client_ctx.load_cert_chain(
        write(tmp_path, "c.crt", client.cert_pem), write(tmp_path, "c.key", client.key_pem)
    )

    a, b = socket.socketpair()
    a.settimeout(10)
    b.settimeout(10)
    outcome: list[str | None] = []

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(a, server_side=True) as tls:
                tls.recv(1)
                outcome.append(None)
        except (ssl.SSLError, OSError) as exc:
            outcome.append(str(exc))

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(b, server_hostname="localhost") as tls:
            tls.sendall(b"x")
            tls.recv(1)  # the server closes; a refusal arrives here as an alert (TLS 1.3)
    except (ssl.SSLError, OSError):
        pass
    thread.join(10)
    return outcome[0]


def test_openssl_accepts_server_and_client_certificates(tmp_path: Path, ca: Issued) -> None:
    client = issue_client_cert(ca, "demo-city/gw01")
    assert handshake(tmp_path, ca, client, crl_pem=None) is None
    assert handshake(tmp_path, ca, client, crl_pem=build_crl(ca, [])) is None


def test_openssl_refuses_a_revoked_client_certificate(tmp_path: Path, ca: Issued) -> None:
    client = issue_client_cert(ca, "demo-city/gw01")
    crl = build_crl(ca, [(client.serial, datetime.now(UTC))])
    error = handshake(tmp_path, ca, client, crl_pem=crl)
    assert error is not None and "revoked" in error
