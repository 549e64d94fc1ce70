"""A small project certificate authority: the broker's server certificate, gateway client
certificates and the revocation list, made with the `cryptography` package.

Keys are EC P-256 and signatures ECDSA-SHA256: small enough for a slow gateway, accepted by
Mosquitto 2.0 with OpenSSL 3 at its default security level.  The extensions follow common
practice (basicConstraints, keyUsage, extendedKeyUsage, subject/authority key identifiers) so
that OpenSSL's chain building and CRL checks find what they look for.

Private keys are returned as unencrypted PKCS8 PEM; the caller writes them with mode 0600.
Nothing here logs or formats a private key.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Certificates start being valid a little in the past, so that a gateway whose clock is a few
# minutes behind (no NTP yet at first boot) does not reject a certificate issued just now.
CLOCK_SKEW = timedelta(minutes=5)
# X.509 (RFC 5280 ub-common-name) allows at most 64 characters in a common name.
MAX_COMMON_NAME = 64


class PkiError(Exception):
    """A certificate or key cannot be made or used.  `str(err)` is the message for the operator."""


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)  # PKCS8, unencrypted: never shown in a repr or a log
    serial: int
    not_after: datetime  # aware, UTC


# --------------------------------------------------------------------------------------------
# Issuing


def create_ca(common_name: str, *, days: int = 3650) -> Issued:
    """A self-signed CA that can sign end-entity certificates and CRLs, but no sub-CAs."""
    _check_days(days)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    not_before, not_after = _validity(days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _issued(cert, key)


def load_issued(cert_pem: bytes, key_pem: bytes) -> Issued:
    """An Issued from PEM files, after checking that the key belongs to the certificate."""
    cert = _load_cert(cert_pem)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        # The exception text of a key parser could quote key material: give the kind only.
        raise PkiError(f"private key is not an unencrypted PEM key ({exc.__class__.__name__})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError("private key is not an EC key (the project CA uses EC P-256)")
    if key.public_key() != cert.public_key():
        raise PkiError(f"private key does not belong to certificate {cert_summary(cert_pem)}")
    return _issued(cert, key)


def issue_server_cert(ca: Issued, hosts: Sequence[str], *, days: int = 825) -> Issued:
    """A TLS server certificate for `hosts` (DNS names and/or IP addresses); CN is hosts[0]."""
    hosts = list(hosts)
    if not hosts or any(not h.strip() for h in hosts):
        raise PkiError("a server certificate needs at least one host name or IP address, none empty")
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return _issue(
        ca,
        hosts[0],
        days,
        ExtendedKeyUsageOID.SERVER_AUTH,
        extra=[x509.SubjectAlternativeName(names)],
    )


def issue_client_cert(ca: Issued, common_name: str, *, days: int = 825) -> Issued:
    """A TLS client certificate; the broker takes its CN as the MQTT username (e.g. "demo-city/gw01")."""
    return _issue(ca, common_name, days, ExtendedKeyUsageOID.CLIENT_AUTH, extra=[])


def build_crl(ca: Issued, revoked: Iterable[tuple[int, datetime]], *, days: int = 30) -> bytes:
    """A PEM CRL signed by `ca` listing (serial, revocation time) pairs.

    The broker refuses every client while its CRL is past its next update, so the operator must
    re-issue the CRL within `days` even when nothing new was revoked.
    """
    _check_days(days)
    ca_cert, ca_key = _ca_parts(ca)
    now = datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - CLOCK_SKEW)
        .next_update(now + timedelta(days=days))
        # A CRL number that grows with time: later CRLs supersede earlier ones without a counter file.
        .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    seen: set[int] = set()
    for serial, when in revoked:
        if serial in seen:
            continue
        seen.add(serial)
        if when.tzinfo is None:
            raise PkiError(f"revocation time of serial {serial:x} has no time zone")
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    crl = builder.sign(ca_key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.PEM)


# --------------------------------------------------------------------------------------------
# Describing


def fingerprint(cert_pem: bytes) -> str:
    """The SHA-256 fingerprint of the DER certificate, "SHA256:AB:CD:...", as OpenSSL shows it."""
    digest = _load_cert(cert_pem).fingerprint(hashes.SHA256())
    return "SHA256:" + ":".join(f"{b:02X}" for b in digest)


def cert_summary(cert_pem: bytes) -> str:
    """A line for humans: "CN=demo-city/gw01, expires 2029-03-01"."""
    cert = _load_cert(cert_pem)
    return f"CN={_common_name(cert)}, expires {cert.not_valid_after_utc:%Y-%m-%d}"


# --------------------------------------------------------------------------------------------
# Helpers


def _issue(
    ca: Issued,
    common_name: str,
    days: int,
    usage: x509.ObjectIdentifier,
    extra: list[x509.ExtensionType],
) -> Issued:
    _check_days(days)
    ca_cert, ca_key = _ca_parts(ca)
    key = ec.generate_private_key(ec.SECP256R1())
    not_before, not_after = _validity(days)
    # A certificate cannot usefully outlive the CA that vouches for it: verification would fail
    # at the CA's expiry anyway, so say the true date.
    not_after = min(not_after, ca_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # digitalSignature is all ECDHE with an EC key needs; keyEncipherment is RSA-only.
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)
    return _issued(builder.sign(ca_key, hashes.SHA256()), key)


def _ca_parts(ca: Issued) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    issued = load_issued(ca.cert_pem, ca.key_pem)  # the key matches and is EC
    cert = _load_cert(issued.cert_pem)
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise PkiError(f"{cert_summary(ca.cert_pem)} is not a CA certificate; it cannot sign")
    key = serialization.load_pem_private_key(issued.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)  # checked by load_issued
    return cert, key


def _issued(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Issued:
    return Issued(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        serial=cert.serial_number,
        not_after=cert.not_valid_after_utc,
    )


def _load_cert(cert_pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise PkiError(f"not a PEM certificate: {exc}") from None


def _name(common_name: str) -> x509.Name:
    if not common_name or len(common_name) > MAX_COMMON_NAME:
        raise PkiError(f"common name {common_name!r} must be 1 to {MAX_COMMON_NAME} characters (X.509 limit)")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _common_name(cert: x509.Certificate) -> str:
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = values[0].value if values else ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _validity(days: int) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - CLOCK_SKEW, now + timedelta(days=days)


def _check_days(days: int) -> None:
    if days < 1:
        raise PkiError(f"validity must be at least 1 day, got {days}")


def _key_usage(*, digital_signature: bool = False, key_cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=key_cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
