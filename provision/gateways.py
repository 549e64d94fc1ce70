"""Provisioning operations: create the authority, provision, rotate and revoke gateways.

Each operation checks everything first (sheet, profiles, generated gateway config, registry with
the new fragment) and only then writes, so a mistake in a sheet changes nothing.  Every new bundle
carries fresh credentials: the authority keeps only password hashes, so a config update is also
a rotation, and an old bundle is both rolled back (older version) and useless (old password).
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import msgspec
import yaml

from cloud.registry import RegistryFile, RegistryFragment, load_registry
from edge.config import load_gateway
from edge.profiles import Profile, load_profiles, points_of
from provision import mosquitto, pki
from provision.authority import (
    Authority,
    AuthorityError,
    GatewayRecord,
    Settings,
    now_iso,
    private_dir,
    write_public_file,
    write_secret_file,
)
from provision.sheet import Sheet, gateway_config, load_sheet, mqtt_section, registry_fragment, without_nulls
from wire import bundle, configfile
from wire.configfile import ConfigError
from wire.mqttconf import MqttConfig, check_url

CA_NAME = "bosai provisioning CA"


@dataclass(frozen=True)
class Issued:
    """What an operation produced, for the CLI to report."""

    record: GatewayRecord
    bundle_path: Path
    broker_reloaded: bool


def init_authority(
    root: Path,
    *,
    broker_hosts: Sequence[str],
    registry: Path,
    port: int = 8883,
    cert_port: int | None = 8884,
    cloud_port: int | None = 8885,
    cloud_bind_address: str = "127.0.0.1",
    reload_command: list[str] | None = None,
    cloud_user: str = mosquitto.DEFAULT_CLOUD_USER,
    log_file: str | None = None,
    run_as_user: str | None = None,
    persistence_dir: str = "/var/lib/mosquitto/",
    log_acl_denials: bool = False,
) -> Authority:
    """A new authority: CA, broker certificate, signing key, the consumer's credentials and the
    broker's config with no gateway yet.  Refuses to overwrite an existing one."""
    if (root / "authority.yaml").exists():
        raise AuthorityError(f"{root} already holds an authority; refusing to overwrite its keys")
    if not broker_hosts:
        raise AuthorityError("give the broker's host name(s) (--broker-host), as gateways will reach it")
    try:
        mosquitto.check_listeners(port, cert_port, cloud_port, cloud_bind_address)
    except ValueError as exc:
        raise AuthorityError(str(exc)) from None
    settings = Settings(
        broker_url=f"mqtts://{broker_hosts[0]}:{port}",
        cert_broker_url=f"mqtts://{broker_hosts[0]}:{cert_port}" if cert_port else None,
        registry=str(registry.resolve()),
        cloud_users=[cloud_user],
        cloud_broker_url=f"mqtts://{_url_host(cloud_bind_address)}:{cloud_port}" if cloud_port else None,
        reload_command=reload_command,
    )
    private_dir(root)
    ca = pki.create_ca(CA_NAME)
    write_public_file(private_dir(root / "ca") / "ca.crt", ca.cert_pem)
    write_secret_file(root / "ca" / "ca.key", ca.key_pem)
    signing_private, signing_public = bundle.generate_signing_key()
    write_secret_file(private_dir(root / "signing") / "signing.key", signing_private)
    write_public_file(root / "signing" / "signing.pub", signing_public)

    broker = root / "broker"
    broker.mkdir(parents=True, exist_ok=True)
    # The consumer verifies the broker by the cloud listener's address, so it is in the certificate.
    cloud_hosts = [cloud_bind_address] if cloud_port and cloud_bind_address not in broker_hosts else []
    server = pki.issue_server_cert(ca, [*broker_hosts, *cloud_hosts])
    write_public_file(broker / "ca.crt", ca.cert_pem)
    write_public_file(broker / "server.crt", server.cert_pem)
    write_secret_file(broker / "server.key", server.key_pem)
    conf = mosquitto.broker_conf(
        etc_dir=str(broker.resolve()),
        port=port,
        cert_port=cert_port,
        cloud_port=cloud_port,
        cloud_bind_address=cloud_bind_address,
        log_file=log_file,
        run_as_user=run_as_user,
        persistence_dir=persistence_dir,
        log_acl_denials=log_acl_denials,
    )
    write_public_file(broker / "mosquitto.conf", conf.encode())

    cloud_password = mosquitto.new_password()
    passwords = mosquitto.PasswordFile.load(broker / "passwords")
    passwords.set(cloud_user, cloud_password)
    passwords.save(broker / "passwords")
    write_secret_file(private_dir(root / "cloud") / "mqtt-password", (cloud_password + "\n").encode())
    write_public_file(root / "cloud" / "ca.crt", ca.cert_pem)
    write_public_file(root / "authority.yaml", yaml.safe_dump(msgspec.to_builtins(settings)).encode())
    authority = Authority(root)
    _write_acl_and_crl(authority)
    return authority


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address  # an IPv6 address in a URL


def provision(
    authority: Authority,
    sheet_path: Path,
    *,
    out: Path | None,
    profiles_dir: Path,
    certificate: bool = False,
    update: bool = False,
) -> Issued:
    sheet = load_sheet(sheet_path)
    existing = authority.record(sheet.tenant, sheet.gateway)
    if existing is not None and not update:
        raise AuthorityError(
            f"gateway {sheet.gateway!r} of tenant {sheet.tenant!r} is already provisioned "
            f"(bundle version {existing.version}); to change its sensors use --update, "
            "for new credentials only use `bosai gateway rotate`"
        )
    if existing is not None and existing.revoked:
        raise AuthorityError(f"gateway {sheet.gateway!r} was revoked on {existing.revoked}; give it a new id")
    if existing is None and update:
        raise AuthorityError(f"gateway {sheet.gateway!r} of tenant {sheet.tenant!r} is not provisioned yet")
    return _issue(
        authority, sheet, sheet_path, existing, out=out, profiles_dir=profiles_dir, certificate=certificate
    )


def rotate(
    authority: Authority, gateway: str, tenant: str | None, *, out: Path | None, profiles_dir: Path
) -> Issued:
    """New credentials (and a new bundle) for one gateway; nobody else is touched."""
    record = authority.find(gateway, tenant)
    if record.revoked:
        raise AuthorityError(f"gateway {gateway!r} was revoked on {record.revoked}; it cannot be rotated")
    sheet_path = authority.sheet_path(record.tenant, record.gateway)
    return _issue(
        authority,
        load_sheet(sheet_path),
        sheet_path,
        record,
        out=out,
        profiles_dir=profiles_dir,
        certificate=record.auth == "certificate",
    )


def revoke(authority: Authority, gateway: str, tenant: str | None) -> tuple[GatewayRecord, bool]:
    """Remove the gateway's login and ACL, list its certificate in the CRL, mark it revoked in
    the registry (its data stays; anything arriving under its name is refused), reload the broker."""
    record = authority.find(gateway, tenant)
    if record.revoked:
        raise AuthorityError(f"gateway {gateway!r} was already revoked on {record.revoked}")
    when = now_iso()
    passwords = mosquitto.PasswordFile.load(authority.broker_dir / "passwords")
    passwords.remove(record.username)
    passwords.save(authority.broker_dir / "passwords")
    revoked = msgspec.structs.replace(record, revoked=when, updated=when)
    authority.save_record(revoked)
    fragment_path = authority.fragment_path(record.tenant, record.gateway)
    if fragment_path.exists():
        fragment = msgspec.convert(
            yaml.safe_load(fragment_path.read_text(encoding="utf-8")), RegistryFragment
        )
        gateways = [msgspec.structs.replace(g, revoked=when) for g in fragment.gateways]
        _write_fragment(fragment_path, msgspec.structs.replace(fragment, gateways=gateways))
    _write_acl_and_crl(authority)
    return revoked, _reload(authority)


# ----------------------------------------------------------------------------------------------


def _issue(
    authority: Authority,
    sheet: Sheet,
    sheet_path: Path,
    previous: GatewayRecord | None,
    *,
    out: Path | None,
    profiles_dir: Path,
    certificate: bool,
) -> Issued:
    settings = authority.settings
    username = mosquitto.gateway_username(sheet.tenant, sheet.gateway)
    broker_url = sheet.broker_url or (settings.cert_broker_url if certificate else settings.broker_url)
    if broker_url is None:
        raise AuthorityError("this authority has no client-certificate listener (cert_broker_url)")
    url_problem = check_url(MqttConfig(url=broker_url))
    if url_problem:
        raise ConfigError(sheet_path, "field 'broker_url'", url_problem)

    profiles = load_profiles(profiles_dir)
    _check_channels(sheet, sheet_path, profiles)
    registry = load_registry(authority.registry_path)
    sites = {site_id for (tenant, site_id) in registry.sites if tenant == sheet.tenant}
    fragment_path = authority.fragment_path(sheet.tenant, sheet.gateway)
    fragment = registry_fragment(sheet, sheet_path, sites - _own_sites(fragment_path))
    if previous is None and (sheet.tenant, sheet.gateway) in registry.gateways:
        raise AuthorityError(
            f"gateway {sheet.gateway!r} is already in the registry {authority.registry_path} "
            "(written by hand?); remove it there or give this gateway another id"
        )

    # Credentials: fresh, and unique (a password shared with any other login is refused).
    passwords = mosquitto.PasswordFile.load(authority.broker_dir / "passwords")
    password = mosquitto.new_password()
    if any(passwords.check(user, password) for user in passwords.users() if user != username):
        raise AuthorityError("generated credentials collide with another login; refusing (run again)")
    client: pki.Issued | None = None
    if certificate:
        client = pki.issue_client_cert(authority.ca(), username)

    version = (previous.version if previous else 0) + 1
    mqtt = mqtt_section(
        sheet, broker_url=broker_url, username=username, password=not certificate, certificate=certificate
    )
    gw_yaml = yaml.safe_dump(gateway_config(sheet, mqtt), allow_unicode=True, sort_keys=False)
    files = [
        bundle.BundleFile("gateway.yaml", gw_yaml.encode()),
        bundle.BundleFile("ca.crt", authority.ca().cert_pem),
    ]
    for model in sorted({s.profile for s in sheet.sensors}):
        files.append(
            bundle.BundleFile(f"profiles/{model}.yaml", (profiles_dir / f"{model}.yaml").read_bytes())
        )
    if client is not None:
        files += [
            bundle.BundleFile("client.crt", client.cert_pem),
            bundle.BundleFile("client.key", client.key_pem, secret=True),
        ]
    else:
        files.append(bundle.BundleFile("mqtt-password", (password + "\n").encode(), secret=True))
    manifest = bundle.Manifest(
        format=bundle.FORMAT,
        tenant=sheet.tenant,
        gateway=sheet.gateway,
        version=version,
        created=now_iso(),
        files=files,
    )
    _check_gateway_config(manifest, sheet_path)
    _check_registry_with(authority, fragment_path, fragment)
    signed = bundle.sign_bundle(manifest, authority.signing_key())

    # Everything checked: write.  The registry first (the consumer must know the gateway before
    # it can connect), then the broker's files, then the record and the bundle.
    _write_fragment(fragment_path, fragment)
    if client is None:
        passwords.set(username, password)
    else:
        passwords.remove(username)  # certificate login only: no password accepted
    passwords.save(authority.broker_dir / "passwords")
    when = now_iso()
    retired = list(previous.retired_serials) if previous else []
    if previous is not None and previous.cert_serial is not None:
        retired.append(previous.cert_serial)
    record = GatewayRecord(
        tenant=sheet.tenant,
        gateway=sheet.gateway,
        username=username,
        version=version,
        auth="certificate" if client else "password",
        created=previous.created if previous else when,
        updated=when,
        cert_serial=client.serial if client else None,
        retired_serials=retired,
    )
    authority.save_record(record)
    if sheet_path.resolve() != authority.sheet_path(sheet.tenant, sheet.gateway).resolve():
        write_public_file(authority.sheet_path(sheet.tenant, sheet.gateway), sheet_path.read_bytes())
    _write_acl_and_crl(authority)
    bundle_path = out or Path(f"{sheet.tenant}-{sheet.gateway}-v{version}.bundle")
    write_secret_file(bundle_path, signed)
    return Issued(record, bundle_path, _reload(authority))


def _check_channels(sheet: Sheet, sheet_path: Path, profiles: dict[str, Profile]) -> None:
    """Every kind a sensor's profile measures needs a channel (range, thresholds) in the sheet:
    the cloud refuses readings of a kind it does not know."""
    for i, s in enumerate(sheet.sensors):
        where = f"sensors[{i}] (id {s.id!r})"
        prof = profiles.get(s.profile)
        if prof is None:
            raise ConfigError(sheet_path, f"{where}: field 'profile'", f"no profile {s.profile!r}")
        kinds = [p.kind for p in points_of(prof)]
        missing = [k for k in kinds if k not in s.channels]
        if missing:
            raise ConfigError(
                sheet_path,
                f"{where}: field 'channels'",
                f"profile {s.profile!r} measures {', '.join(kinds)}; add a channel for "
                f"{', '.join(missing)} (unit, range, thresholds)",
            )


def _check_gateway_config(manifest: bundle.Manifest, sheet_path: Path) -> None:
    """Unpack into a private temporary folder and load it as the agent will."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "bundle"
        bundle.unpack(manifest, target)
        try:
            load_gateway(target / "gateway.yaml")
        except ConfigError as exc:
            raise ConfigError(
                sheet_path, exc.where, f"{exc.message} (in the generated gateway config)"
            ) from None


def _own_sites(fragment_path: Path) -> set[str]:
    """Sites this gateway's own earlier fragment created (an --update may change them)."""
    if not fragment_path.exists():
        return set()
    fragment = msgspec.convert(yaml.safe_load(fragment_path.read_text(encoding="utf-8")), RegistryFragment)
    return {s.id for s in fragment.sites}


def _check_registry_with(authority: Authority, fragment_path: Path, fragment: RegistryFragment) -> None:
    """Load the registry as the consumer will, with the new fragment in place of the old one."""
    main = authority.registry_path
    pattern = f"{authority.settings.fragments_dir}/*/*.yaml"
    data = configfile.load(main, RegistryFile)
    if pattern not in data.include:
        raise AuthorityError(
            f'{main} does not include the provisioned gateways: add `include: ["{pattern}"]` to it'
        )
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / main.name
        copy.write_bytes(main.read_bytes())
        src = main.parent / authority.settings.fragments_dir
        dst = Path(tmp) / authority.settings.fragments_dir
        for f in src.glob("*/*.yaml"):
            if f.resolve() != fragment_path.resolve():
                (dst / f.parent.name).mkdir(parents=True, exist_ok=True)
                (dst / f.parent.name / f.name).write_bytes(f.read_bytes())
        new = dst / fragment_path.parent.name / fragment_path.name
        new.parent.mkdir(parents=True, exist_ok=True)
        _write_fragment(new, fragment)
        # Main-file references (other include patterns) are resolved from the copy's folder too;
        # those beyond the fragments folder are not part of what provisioning changes.
        try:
            load_registry(copy)
        except ConfigError as exc:
            raise ConfigError(fragment_path, exc.where, exc.message) from None


def _write_fragment(path: Path, fragment: RegistryFragment) -> None:
    header = (
        "# GENERATED by `bosai gateway provision` from the gateway's site sheet; edit the sheet\n"
        "# and run `bosai gateway provision --update` instead of editing this file.\n"
    )
    raw = {k: v for k, v in without_nulls(msgspec.to_builtins(fragment)).items() if v}
    body = yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)
    write_public_file(path, (header + body).encode("utf-8"))


def _write_acl_and_crl(authority: Authority) -> None:
    records = authority.records()
    active = [mosquitto.GatewayAccess(r.tenant, r.gateway) for r in records if not r.revoked]
    acl = mosquitto.acl_text(active, cloud_users=authority.settings.cloud_users)
    write_public_file(authority.broker_dir / "acl", acl.encode())
    revoked: list[tuple[int, datetime]] = []
    for r in records:
        serials = list(r.retired_serials) + ([r.cert_serial] if r.revoked and r.cert_serial else [])
        revoked += [(serial, datetime.fromisoformat(r.updated)) for serial in serials]
    crl = pki.build_crl(authority.ca(), revoked)
    write_public_file(authority.broker_dir / "crl.pem", crl)


def _reload(authority: Authority) -> bool:
    cmd = authority.settings.reload_command
    if not cmd:
        return False
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise AuthorityError(
            f"the files are written, but reloading the broker failed ({' '.join(cmd)} exited "
            f"{result.returncode}: {result.stderr.strip()[:200]}); reload it by hand"
        )
    return True
