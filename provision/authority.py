"""The provisioning authority: one directory holding the project CA, the bundle-signing key, the
broker's generated files and a record per gateway.

    DIR/authority.yaml           settings (broker URL, registry, cloud users, reload command)
    DIR/ca/ca.crt, ca.key        project CA (key 0600): broker and gateway client certificates
    DIR/signing/signing.key      Ed25519 key signing config bundles (0600); signing.pub goes to gateways
    DIR/broker/                  what Mosquitto reads: mosquitto.conf, passwords (0600), acl,
                                 ca.crt, server.crt, server.key (0600), crl.pem
    DIR/cloud/                   the consumer's MQTT password (0600) and the CA to verify the broker
    DIR/gateways/T/G.json        one record per gateway: version, credentials' ids, revocation
    DIR/sheets/T/G.yaml          the site sheet each gateway was last provisioned from

Gateway passwords are never stored here, only their hashes in broker/passwords: a bundle is
written once, to the technician, and a lost bundle is replaced by rotating.  The directory is
0700; keep it on the cloud host next to the broker (or an offline machine) and back it up.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import msgspec

from provision import pki
from provision.mosquitto import write_atomically
from wire import bundle, configfile
from wire.configfile import ConfigError

SETTINGS_FILE = "authority.yaml"


class AuthorityError(Exception):
    """Provisioning cannot go on; str() is the message for the operator."""


class Settings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    broker_url: str  # what gateways connect to: mqtts://host:8883 (password login)
    registry: str  # the consumer's main registry file (relative to this file, or absolute)
    cert_broker_url: str | None = None  # the client-certificate listener: mqtts://host:8884
    cloud_users: list[str] = msgspec.field(default_factory=lambda: ["bosai-cloud"])
    # What the cloud consumer connects to: its own listener on the cloud's network, where each
    # shard keeps its client id (mqtts://127.0.0.1:8885); None: the password listener.
    cloud_broker_url: str | None = None
    # Run after the broker's files changed, e.g. [systemctl, reload, mosquitto] (Mosquitto
    # re-reads its password file, ACL and CRL on SIGHUP).  None: the operator is told to do it.
    reload_command: list[str] | None = None
    fragments_dir: str = "gateways.d"  # next to the registry; its main file must include it


class GatewayRecord(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    tenant: str
    gateway: str
    username: str
    version: int  # of the last bundle issued; the next one is version + 1
    auth: Literal["password", "certificate"]
    created: str
    updated: str
    cert_serial: int | None = None
    # Certificates replaced by a rotation: listed in the CRL with the revoked gateways' ones.
    retired_serials: list[int] = []
    revoked: str | None = None


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Authority:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.settings_path = root / SETTINGS_FILE
        try:
            self.settings = configfile.load(self.settings_path, Settings)
        except ConfigError as exc:
            raise AuthorityError(
                f"{exc}\n(create the authority first: bosai gateway init-authority --authority {root} ...)"
            ) from None

    # -- paths ---------------------------------------------------------------------------------
    @property
    def broker_dir(self) -> Path:
        return self.root / "broker"

    @property
    def registry_path(self) -> Path:
        return configfile.resolve(self.settings_path, self.settings.registry)

    def fragment_path(self, tenant: str, gateway: str) -> Path:
        return self.registry_path.parent / self.settings.fragments_dir / tenant / f"{gateway}.yaml"

    def record_path(self, tenant: str, gateway: str) -> Path:
        return self.root / "gateways" / tenant / f"{gateway}.json"

    def sheet_path(self, tenant: str, gateway: str) -> Path:
        return self.root / "sheets" / tenant / f"{gateway}.yaml"

    @property
    def signing_public_path(self) -> Path:
        return self.root / "signing" / "signing.pub"

    # -- key material --------------------------------------------------------------------------
    def ca(self) -> pki.Issued:
        return pki.load_issued(
            (self.root / "ca" / "ca.crt").read_bytes(), (self.root / "ca" / "ca.key").read_bytes()
        )

    def signing_key(self) -> bytes:
        return (self.root / "signing" / "signing.key").read_bytes()

    def signing_key_id(self) -> str:
        return bundle.key_id(self.signing_public_path.read_bytes())

    # -- records -------------------------------------------------------------------------------
    def record(self, tenant: str, gateway: str) -> GatewayRecord | None:
        path = self.record_path(tenant, gateway)
        if not path.exists():
            return None
        return msgspec.json.decode(path.read_bytes(), type=GatewayRecord)

    def records(self) -> list[GatewayRecord]:
        return [
            msgspec.json.decode(p.read_bytes(), type=GatewayRecord)
            for p in sorted((self.root / "gateways").glob("*/*.json"))
        ]

    def find(self, gateway: str, tenant: str | None) -> GatewayRecord:
        """The record of `gateway` (in `tenant`, required when the id exists in several)."""
        found = [r for r in self.records() if r.gateway == gateway and tenant in (None, r.tenant)]
        if not found:
            where = f" in tenant {tenant!r}" if tenant else ""
            raise AuthorityError(f"no provisioned gateway {gateway!r}{where} (see: bosai gateway list)")
        if len(found) > 1:
            tenants = ", ".join(r.tenant for r in found)
            raise AuthorityError(f"gateway {gateway!r} exists in several tenants ({tenants}): give --tenant")
        return found[0]

    def save_record(self, record: GatewayRecord) -> None:
        write_public_file(
            self.record_path(record.tenant, record.gateway),
            msgspec.json.format(msgspec.json.encode(record)) + b"\n",
        )


def write_public_file(path: Path, data: bytes) -> None:
    """Atomic write, mode 0644 (certificates, ACL, config: nothing secret)."""
    write_atomically(path, data, 0o644)


def write_secret_file(path: Path, data: bytes) -> None:
    """Atomic write, mode 0600 (keys, passwords, bundles)."""
    write_atomically(path, data, 0o600)


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path
