"""Provisioning on files: the authority, the three example site sheets, rotation, revocation,
and installing bundles on a gateway (rollback, tampering, trust).  The broker's side against a
real Mosquitto is tests/integration/test_provisioned_gateway.py."""

from __future__ import annotations

import ipaddress
import os
import pwd
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import yaml
from cryptography import x509

from bosai.cli import main
from bosai.paths import PROFILES_DIR, REPO_ROOT
from cloud.registry import load_registry
from edge.bundled import accept, install
from provision import mosquitto, pki
from provision.authority import Authority, AuthorityError
from provision.gateways import init_authority, provision, revoke, rotate
from wire import bundle
from wire.bundle import BundleError, RollbackRefused, TamperedBundle, UnsignedBundle, WrongGateway
from wire.configfile import ConfigError

SHEETS = REPO_ROOT / "firmware_configs" / "sites"
REGISTRY = """\
tenants:
  - {id: demo-city, name: デモ市}
  - {id: other-town, name: 隣町}
sites: []
gateways: []
sensors: []
include: ["gateways.d/*/*.yaml"]
"""


@pytest.fixture
def authority(tmp_path: Path) -> Iterator[Authority]:
    registry = tmp_path / "cloud" / "registry.yaml"
    registry.parent.mkdir()
    registry.write_text(REGISTRY, encoding="utf-8")
    yield init_authority(tmp_path / "authority", broker_hosts=["broker.example.jp"], registry=registry)


def issue(
    authority: Authority, sheet: str | Path, tmp_path: Path, **kw: object
) -> tuple[Path, bundle.Manifest]:
    path = SHEETS / sheet if isinstance(sheet, str) else sheet
    issued = provision(authority, path, out=tmp_path / f"{path.stem}.bundle", profiles_dir=PROFILES_DIR, **kw)  # type: ignore[arg-type]
    return issued.bundle_path, read(authority, issued.bundle_path)


def read(authority: Authority, path: Path) -> bundle.Manifest:
    return bundle.read_bundle_file(path, [authority.signing_public_path.read_bytes()])[0]


def password_of(manifest: bundle.Manifest) -> str:
    f = manifest.file("mqtt-password")
    assert f is not None and f.secret
    return f.data.decode().strip()


def two_versions(authority: Authority, tmp_path: Path) -> tuple[Path, Path]:
    """The river gateway provisioned (v1, kept as a thief might) and rotated (v2)."""
    v1, _ = issue(authority, "river-site.yaml", tmp_path)
    kept_v1 = tmp_path / "kept-v1.bundle"
    shutil.copy2(v1, kept_v1)
    rotated = rotate(authority, "gw-river-01", None, out=tmp_path / "v2.bundle", profiles_dir=PROFILES_DIR)
    return kept_v1, rotated.bundle_path


def snapshot(*roots: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_authority_keeps_its_keys_private_and_the_broker_closed(authority: Authority) -> None:
    root = authority.root
    assert mode(root) == 0o700
    for secret in (
        "ca/ca.key",
        "signing/signing.key",
        "broker/server.key",
        "broker/passwords",
        "cloud/mqtt-password",
    ):
        assert mode(root / secret) == 0o600, secret
    conf = (root / "broker" / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf
    assert "tls_version tlsv1.2" in conf
    assert "bosai-cloud" in mosquitto.PasswordFile.load(root / "broker" / "passwords").users()
    # The consumer has its own listener on loopback, and the broker's certificate names that address.
    assert "listener 8885 127.0.0.1" in conf
    assert authority.settings.cloud_broker_url == "mqtts://127.0.0.1:8885"
    san = x509.load_pem_x509_certificate((root / "broker" / "server.crt").read_bytes()).extensions
    names = san.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert "broker.example.jp" in names.get_values_for_type(x509.DNSName)
    with pytest.raises(AuthorityError, match="already holds an authority"):
        init_authority(root, broker_hosts=["x"], registry=authority.registry_path)


def test_the_three_example_sheets_provision_into_signed_bundles_and_registry_entries(
    authority: Authority, tmp_path: Path
) -> None:
    passwords = []
    for sheet in ("river-site.yaml", "snow-site.yaml", "slope-site.yaml"):
        path, manifest = issue(authority, sheet, tmp_path)
        assert mode(path) == 0o600
        assert manifest.version == 1
        username = mosquitto.gateway_username(manifest.tenant, manifest.gateway)
        password = password_of(manifest)
        assert len(password) >= 43  # 32 random bytes in URL-safe base64: 256 bits
        assert mosquitto.PasswordFile.load(authority.broker_dir / "passwords").check(username, password)
        passwords.append(password)
        # The bundle unpacks into a config the agent loads as it is.
        accepted = accept(path, authority.signing_public_path, tmp_path / "gw" / manifest.gateway)
        cfg = accepted.gateway.config
        assert cfg.mqtt.username == username and cfg.mqtt.url == "mqtts://broker.example.jp:8883"
        assert cfg.mqtt.tls.ca_file == "ca.crt" and not cfg.mqtt.tls.insecure_skip_verify
        assert f"user {username}\n" in (authority.broker_dir / "acl").read_text()
    assert len(set(passwords)) == 3
    registry = load_registry(authority.registry_path)
    assert sorted(g for _, g in registry.gateways) == ["gw-river-01", "gw-slope-01", "gw-snow-01"]
    radar = registry.sensor_for("demo-city", "gw-river-01", "river-radar-01")
    assert radar is not None
    assert [t.name_ja for t in radar.channels["river_level"].thresholds][2] == "避難判断水位"
    assert registry.sensor_for("demo-city", "gw-snow-01", "river-radar-01") is None


def test_a_bad_sheet_names_file_and_field_and_changes_nothing(authority: Authority, tmp_path: Path) -> None:
    issue(authority, "river-site.yaml", tmp_path)
    before = snapshot(authority.root, authority.registry_path.parent)
    raw = yaml.safe_load((SHEETS / "snow-site.yaml").read_text(encoding="utf-8"))
    del raw["sensors"][0]["channels"]["sensor_temperature"]
    bad = tmp_path / "bad-snow.yaml"
    bad.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match="sensors\\[0\\] \\(id 'snow-laser-01'\\): field 'channels'") as err:
        issue(authority, bad, tmp_path)
    assert err.value.path == str(bad) and "sensor_temperature" in err.value.message

    raw = yaml.safe_load((SHEETS / "snow-site.yaml").read_text(encoding="utf-8"))
    raw["sensors"][1]["bus"] = "no-such-bus"
    bad.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match="field 'bus'"):
        issue(authority, bad, tmp_path)
    assert snapshot(authority.root, authority.registry_path.parent) == before
    assert not (tmp_path / "bad-snow.bundle").exists()


def test_provisioning_twice_is_refused_and_update_rotates(authority: Authority, tmp_path: Path) -> None:
    _, first = issue(authority, "river-site.yaml", tmp_path)
    with pytest.raises(AuthorityError, match="already provisioned"):
        issue(authority, "river-site.yaml", tmp_path)
    _, second = issue(authority, "river-site.yaml", tmp_path, update=True)
    assert second.version == 2
    passwords = mosquitto.PasswordFile.load(authority.broker_dir / "passwords")
    assert passwords.check("demo-city/gw-river-01", password_of(second))
    assert not passwords.check("demo-city/gw-river-01", password_of(first))


def test_rotation_and_revocation_touch_one_gateway_only(authority: Authority, tmp_path: Path) -> None:
    issue(authority, "river-site.yaml", tmp_path)
    _, snow = issue(authority, "snow-site.yaml", tmp_path)
    snow_entry = [
        line for line in (authority.broker_dir / "passwords").read_text().splitlines() if "gw-snow-01" in line
    ]
    rotated = rotate(authority, "gw-river-01", None, out=tmp_path / "r2.bundle", profiles_dir=PROFILES_DIR)
    assert rotated.record.version == 2 and read(authority, rotated.bundle_path).version == 2
    record, reloaded = revoke(authority, "gw-river-01", "demo-city")
    assert record.revoked and not reloaded  # no reload command configured
    passwords = mosquitto.PasswordFile.load(authority.broker_dir / "passwords")
    assert "demo-city/gw-river-01" not in passwords.users()
    assert passwords.check("demo-city/gw-snow-01", password_of(snow))
    assert [line for line in passwords.text().splitlines() if "gw-snow-01" in line] == snow_entry
    acl = (authority.broker_dir / "acl").read_text()
    assert "gw-river-01" not in acl and "user demo-city/gw-snow-01" in acl
    registry = load_registry(authority.registry_path)
    assert registry.revoked == {("demo-city", "gw-river-01")}
    assert registry.sensor_for("demo-city", "gw-river-01", "river-radar-01") is None
    assert registry.sensor_for("demo-city", "gw-snow-01", "snow-laser-01") is not None
    with pytest.raises(AuthorityError, match="revoked"):
        rotate(authority, "gw-river-01", None, out=tmp_path / "r3.bundle", profiles_dir=PROFILES_DIR)


def test_client_certificates_are_listed_in_the_crl_when_replaced_or_revoked(
    authority: Authority, tmp_path: Path
) -> None:
    from cryptography import x509

    _, manifest = issue(authority, "slope-site.yaml", tmp_path, certificate=True)
    assert manifest.file("mqtt-password") is None
    cert, key = manifest.file("client.crt"), manifest.file("client.key")
    assert cert is not None and key is not None and key.secret and not cert.secret
    assert pki.cert_summary(cert.data).startswith("CN=demo-city/gw-slope-01")
    first_serial = x509.load_pem_x509_certificate(cert.data).serial_number
    assert (
        "demo-city/gw-slope-01" not in mosquitto.PasswordFile.load(authority.broker_dir / "passwords").users()
    )
    rotate(authority, "gw-slope-01", None, out=tmp_path / "s2.bundle", profiles_dir=PROFILES_DIR)
    crl = x509.load_pem_x509_crl((authority.broker_dir / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(first_serial) is not None
    second = authority.find("gw-slope-01", None).cert_serial
    assert second is not None and crl.get_revoked_certificate_by_serial_number(second) is None
    revoke(authority, "gw-slope-01", None)
    crl = x509.load_pem_x509_crl((authority.broker_dir / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(second) is not None


def test_installing_on_the_gateway_refuses_rollback_tampering_and_foreign_keys(
    authority: Authority, tmp_path: Path
) -> None:
    kept_v1, v2 = two_versions(authority, tmp_path)
    etc, state = tmp_path / "gw" / "etc", tmp_path / "gw" / "state"
    with pytest.raises(BundleError, match="--trust-key"):
        install(v2, None, etc, state)
    accepted = install(v2, authority.signing_public_path, etc, state)
    assert accepted.manifest.version == 2 and mode(etc / "gateway.bundle") == 0o600
    assert mode(state / "config" / "mqtt-password") == 0o600
    install(v2, None, etc, state)  # the same bundle again: fine (a restart does this)
    with pytest.raises(RollbackRefused, match="older"):
        install(kept_v1, None, etc, state)

    data = bytearray((etc / "gateway.bundle").read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered = tmp_path / "tampered.bundle"
    tampered.write_bytes(bytes(data))
    tampered.chmod(0o600)
    with pytest.raises((TamperedBundle, BundleError)):
        install(tampered, None, etc, state)

    raw = msgspec.json.decode((etc / "gateway.bundle").read_bytes())
    raw["signature"] = ""
    unsigned = tmp_path / "unsigned.bundle"
    unsigned.write_bytes(msgspec.json.encode(raw))
    unsigned.chmod(0o600)
    with pytest.raises(UnsignedBundle):
        install(unsigned, None, etc, state)

    other_key = tmp_path / "other.pub"
    other_key.write_bytes(bundle.generate_signing_key()[1])
    with pytest.raises(BundleError, match="already trusts another signing key"):
        install(v2, other_key, etc, state)

    snow, _ = issue(authority, "snow-site.yaml", tmp_path)
    with pytest.raises(WrongGateway):
        install(snow, None, etc, state)
    assert install(snow, None, etc, state, new_identity=True).manifest.gateway == "gw-snow-01"

    v2.chmod(0o640)
    with pytest.raises(BundleError, match="chmod 600"):
        accept(v2, etc / "signing.pub", tmp_path / "elsewhere")


def test_the_cli_exit_codes_and_output_never_show_the_password(
    authority: Authority, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "river.bundle"
    argv = ["gateway", "provision", "--authority", str(authority.root), "--out", str(out)]
    assert main([*argv, "--sheet", str(SHEETS / "river-site.yaml"), "--gateway", "gw-x"]) == 1
    assert main([*argv, "--sheet", str(tmp_path / "missing.yaml")]) == 2
    assert main([*argv, "--sheet", str(SHEETS / "river-site.yaml")]) == 0
    assert main(["gateway", "list", "--authority", str(authority.root)]) == 0
    assert main(["gateway", "rotate", "gw-nope", "--authority", str(authority.root)]) == 1
    etc, state = tmp_path / "etc", tmp_path / "state"
    trust = str(authority.signing_public_path)
    install_argv = [
        "gateway",
        "install",
        str(out),
        "--trust-key",
        trust,
        "--etc",
        str(etc),
        "--state-dir",
        str(state),
    ]
    me = pwd.getpwuid(os.getuid()).pw_name  # as root the default would be the agent's user `bosai`
    assert main([*install_argv, "--agent-user", me]) == 0
    printed = capsys.readouterr()
    assert "gw-river-01" in printed.out and "version 1" in printed.out
    password = password_of(read(authority, out))
    assert password not in printed.out + printed.err


def test_the_agent_refuses_to_start_from_an_older_or_altered_bundle(
    authority: Authority, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kept_v1, v2 = two_versions(authority, tmp_path)
    state = tmp_path / "state"
    trust = str(authority.signing_public_path)
    accept(v2, authority.signing_public_path, state)  # what `bosai gateway install` leaves behind

    def run(bundle_path: Path) -> int:
        return main(
            ["edge", "run", "--bundle", str(bundle_path), "--trust-key", trust, "--state-dir", str(state)]
        )

    assert run(kept_v1) == 2
    assert "is older (version 1) than the one this gateway runs (version 2)" in capsys.readouterr().err
    altered = tmp_path / "altered.bundle"
    data = bytearray(v2.read_bytes())
    data[-40] ^= 0x04
    altered.write_bytes(bytes(data))
    altered.chmod(0o600)
    assert run(altered) == 2
    assert "bundle refused" in capsys.readouterr().err
    v2.chmod(0o644)
    assert run(v2) == 2
    assert "chmod 600" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["river-site.yaml", "snow-site.yaml", "slope-site.yaml"])
def test_committed_example_gateway_configs_are_what_the_sheets_generate(name: str) -> None:
    from edge.config import load_gateway
    from provision.sheet import example_gateway_yaml, load_sheet

    committed = REPO_ROOT / "firmware_configs" / "gateways" / name
    assert committed.read_text(encoding="utf-8") == example_gateway_yaml(load_sheet(SHEETS / name), name), (
        "regenerate with: python -m provision.sheet"
    )
    gateway = load_gateway(committed)
    assert (
        gateway.config.mqtt.url.startswith("mqtts://")
        and gateway.config.mqtt.password_file == "mqtt-password"
    )


def test_listeners_on_one_port_are_a_usage_error_and_create_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "registry.yaml"
    registry.write_text(REGISTRY, encoding="utf-8")
    argv = ["gateway", "init-authority", "--authority", str(tmp_path / "a"), "--broker-host", "b.example.jp"]
    argv += ["--registry", str(registry)]
    assert main([*argv, "--cloud-port", "8883"]) == 2
    assert "--port and --cloud-port are both 8883" in capsys.readouterr().err
    assert main([*argv, "--cert-port", "70000"]) == 2
    assert "--cert-port 70000 is not a TCP port" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    assert main([*argv, "--cloud-bind", "10.0.0.5", "--cloud-port", "18885"]) == 0
    assert "consumer broker   mqtts://10.0.0.5:18885" in capsys.readouterr().out
    assert "listener 18885 10.0.0.5" in (tmp_path / "a" / "broker" / "mosquitto.conf").read_text()
