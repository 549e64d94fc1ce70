"""`bosai gateway ...`: provisioning (operator side) and install/check (on the gateway).

Only argparse at import time: `install` and `check` run on a gateway installed with `.[edge]`,
the other commands on the machine holding the provisioning authority.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only argparse at import time: a gateway has no cloud extras
    from provision.authority import Authority
    from provision.gateways import Issued

from bosai.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, Handler

DEFAULT_AUTHORITY = Path(os.environ.get("BOSAI_AUTHORITY", "/etc/bosai-authority"))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gw = sub.add_parser(
        "gateway",
        help="provision, install, check, rotate and revoke gateways",
        description="Bring a gateway online securely: the authority (CA, signing key, broker files) "
        "provisions it from a site sheet into a signed config bundle; on site the technician "
        "installs and checks the bundle.  See docs/provisioning.md.",
    )
    cmds = gw.add_subparsers(dest="gateway_command", metavar="COMMAND", required=True)

    def authority_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--authority",
            type=Path,
            default=DEFAULT_AUTHORITY,
            metavar="DIR",
            help=f"provisioning authority folder (default: $BOSAI_AUTHORITY or {DEFAULT_AUTHORITY})",
        )

    init = cmds.add_parser(
        "init-authority",
        help="create the provisioning authority (once per cloud)",
        description="Create the provisioning authority: a project CA, the broker's TLS certificate, "
        "the bundle-signing key, the cloud consumer's MQTT credentials, and the broker's config, "
        "password file and ACL (anonymous access off, TLS only).  Refuses to overwrite an existing one.",
    )
    authority_arg(init)
    init.add_argument(
        "--broker-host",
        action="append",
        required=True,
        metavar="HOST",
        help="name or IP gateways use to reach the broker (repeat for more; the first is used in URLs)",
    )
    init.add_argument(
        "--registry",
        type=Path,
        required=True,
        metavar="FILE",
        help="the consumer's registry; it must include gateways.d/*/*.yaml",
    )
    init.add_argument(
        "--port", type=int, default=8883, help="TLS listener with password login (default 8883)"
    )
    init.add_argument(
        "--cert-port",
        type=int,
        default=8884,
        help="TLS listener with client-certificate login (default 8884)",
    )
    init.add_argument("--no-cert-listener", action="store_true", help="password login only")
    init.add_argument(
        "--cloud-port",
        type=int,
        default=8885,
        help="TLS listener of the cloud consumer, where each shard keeps its client id (default 8885)",
    )
    init.add_argument(
        "--cloud-bind",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="the cloud listener's address: loopback (default) or a private one, never public",
    )
    init.add_argument(
        "--reload-command",
        metavar="CMD",
        help="run after the broker's files change, e.g. 'systemctl reload mosquitto'",
    )
    init.add_argument(
        "--log-acl-denials",
        action="store_true",
        help="have Mosquitto log ACL denials (only its debug log does: a line per message)",
    )
    init.set_defaults(handler=_init)

    prov = cmds.add_parser(
        "provision",
        help="provision a gateway from a site sheet into a signed bundle",
        description="Register a gateway, its sites and sensors (with thresholds) from a site sheet, "
        "give it unique credentials (a 256-bit password, or a client certificate with "
        "--client-cert), update the broker's password file and ACL, and write its signed config "
        "bundle (0600).  Everything is checked before anything is written.  Exit 0, 2 on a sheet "
        "or config error, 1 on another failure.",
    )
    authority_arg(prov)
    prov.add_argument(
        "--sheet",
        type=Path,
        required=True,
        metavar="FILE",
        help="site sheet (examples: firmware_configs/sites/)",
    )
    prov.add_argument("--tenant", help="must match the sheet (a guard against the wrong sheet)")
    prov.add_argument("--gateway", help="must match the sheet")
    prov.add_argument(
        "--out", type=Path, metavar="FILE", help="bundle file (default: TENANT-GATEWAY-vN.bundle here)"
    )
    prov.add_argument("--client-cert", action="store_true", help="log in with an X.509 client certificate")
    prov.add_argument(
        "--update",
        action="store_true",
        help="re-provision an existing gateway from a changed sheet (new bundle, new credentials)",
    )
    prov.add_argument(
        "--profiles", type=Path, metavar="DIR", help="sensor profiles (default: the shipped ones)"
    )
    prov.set_defaults(handler=_provision)

    rot = cmds.add_parser(
        "rotate",
        help="new credentials and bundle for one gateway",
        description="Give one gateway new credentials and a new bundle (version + 1); the old "
        "password or certificate stops working when the broker reloads.  No other gateway is touched.",
    )
    authority_arg(rot)
    rot.add_argument("gateway", metavar="GATEWAY")
    rot.add_argument("--tenant", help="needed when the gateway id exists in several tenants")
    rot.add_argument("--out", type=Path, metavar="FILE", help="bundle file")
    rot.add_argument(
        "--profiles", type=Path, metavar="DIR", help="sensor profiles (default: the shipped ones)"
    )
    rot.set_defaults(handler=_rotate)

    rev = cmds.add_parser(
        "revoke",
        help="revoke a gateway (stolen, retired)",
        description="Revoke one gateway: its login and ACL are removed, its certificate is listed in "
        "the CRL, the registry marks it revoked (its data stays; anything still arriving under its "
        "name is refused as a security event), and the broker reloads.  No other gateway is touched.",
    )
    authority_arg(rev)
    rev.add_argument("gateway", metavar="GATEWAY")
    rev.add_argument("--tenant", help="needed when the gateway id exists in several tenants")
    rev.set_defaults(handler=_revoke)

    ls = cmds.add_parser("list", help="list provisioned gateways", description="List provisioned gateways.")
    authority_arg(ls)
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(handler=_list)

    inst = cmds.add_parser(
        "install",
        help="(on the gateway) install a bundle for the agent",
        description="Verify a bundle (signature by the trusted authority key, not older than the "
        "installed one, same gateway) and install it for the agent: /etc/bosai/gateway.bundle (0600) "
        "and, on the first install, the authority's public key.  Restart the agent afterwards.",
    )
    inst.add_argument("bundle", type=Path, metavar="BUNDLE")
    inst.add_argument(
        "--trust-key", type=Path, metavar="FILE", help="the authority's signing.pub (first install only)"
    )
    inst.add_argument(
        "--etc", type=Path, default=Path("/etc/bosai"), metavar="DIR", help="default /etc/bosai"
    )
    inst.add_argument(
        "--state-dir", type=Path, default=Path("/var/lib/bosai"), metavar="DIR", help="default /var/lib/bosai"
    )
    inst.add_argument(
        "--agent-user",
        metavar="USER",
        help="hand the bundle and state folder to the agent's user (default when run as root: bosai)",
    )
    inst.add_argument(
        "--new-identity",
        action="store_true",
        help="accept a bundle for another gateway id (re-purposing this box)",
    )
    inst.set_defaults(handler=_install)

    from edge.cli import register_check

    register_check(cmds, gateway_form=True)


def _profiles(args: argparse.Namespace) -> Path:
    from bosai.paths import PROFILES_DIR

    return args.profiles or PROFILES_DIR


def _guarded(fn: Handler) -> Handler:
    """Map the operator-facing errors to messages and exit codes."""

    def run(args: argparse.Namespace) -> int:
        from provision.authority import AuthorityError
        from provision.pki import PkiError
        from wire.bundle import BundleError
        from wire.configfile import ConfigError

        try:
            result: int = fn(args)
            return result
        except ConfigError as exc:
            print(f"config error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        except (AuthorityError, BundleError, PkiError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILURE

    return run


@_guarded
def _init(args: argparse.Namespace) -> int:
    import shlex

    from provision.gateways import init_authority
    from provision.mosquitto import check_listeners

    cert_port = None if args.no_cert_listener else args.cert_port
    try:
        check_listeners(args.port, cert_port, args.cloud_port, args.cloud_bind)
    except ValueError as exc:  # a usage error: nothing is created
        print(f"bosai gateway init-authority: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    authority = init_authority(
        args.authority,
        broker_hosts=args.broker_host,
        registry=args.registry,
        port=args.port,
        cert_port=cert_port,
        cloud_port=args.cloud_port,
        cloud_bind_address=args.cloud_bind,
        reload_command=shlex.split(args.reload_command) if args.reload_command else None,
        log_acl_denials=args.log_acl_denials,
    )
    print(f"authority created in {args.authority}")
    conf = authority.broker_dir / "mosquitto.conf"
    print(f"  broker config     {conf} (the whole /etc/mosquitto/mosquitto.conf: link or copy it there)")
    cloud_password = args.authority / "cloud" / "mqtt-password"
    print(f"  consumer login    user {authority.settings.cloud_users[0]}, password file {cloud_password}")
    print(f"  consumer broker   {authority.settings.cloud_broker_url} (mqtt: url in consumer.yaml)")
    print(f"  signing key       {authority.signing_key_id()}")
    print(f"  trust anchor      {authority.signing_public_path} (goes to every gateway)")
    return EXIT_OK


@_guarded
def _provision(args: argparse.Namespace) -> int:
    from provision.authority import Authority, AuthorityError
    from provision.gateways import provision
    from provision.sheet import load_sheet

    sheet = load_sheet(args.sheet)
    for flag, given, actual in (
        ("--tenant", args.tenant, sheet.tenant),
        ("--gateway", args.gateway, sheet.gateway),
    ):
        if given is not None and given != actual:
            raise AuthorityError(
                f"{flag} {given} does not match the sheet {args.sheet} ({actual}): wrong sheet?"
            )
    authority = Authority(args.authority)
    issued = provision(
        authority,
        args.sheet,
        out=args.out,
        profiles_dir=_profiles(args),
        certificate=args.client_cert,
        update=args.update,
    )
    _report(authority, issued, "provisioned")
    return EXIT_OK


@_guarded
def _rotate(args: argparse.Namespace) -> int:
    from provision.authority import Authority
    from provision.gateways import rotate

    authority = Authority(args.authority)
    issued = rotate(authority, args.gateway, args.tenant, out=args.out, profiles_dir=_profiles(args))
    _report(authority, issued, "rotated")
    return EXIT_OK


@_guarded
def _revoke(args: argparse.Namespace) -> int:
    from provision.authority import Authority
    from provision.gateways import revoke

    authority = Authority(args.authority)
    record, reloaded = revoke(authority, args.gateway, args.tenant)
    print(f"revoked {record.tenant}/{record.gateway} at {record.revoked}")
    print(
        "  broker: login removed from the password file and ACL"
        + (", CRL updated" if record.cert_serial else "")
    )
    print(f"  registry: marked revoked in {authority.fragment_path(record.tenant, record.gateway)}")
    print(
        "  broker reloaded"
        if reloaded
        else "  now reload the broker (systemctl reload mosquitto) and restart the consumer"
    )
    return EXIT_OK


@_guarded
def _list(args: argparse.Namespace) -> int:
    import msgspec

    from provision.authority import Authority

    records = Authority(args.authority).records()
    if args.json:
        print(msgspec.json.encode(records).decode())
        return EXIT_OK
    rows = [("TENANT", "GATEWAY", "VERSION", "LOGIN", "UPDATED", "STATE")]
    for r in records:
        rows.append(
            (
                r.tenant,
                r.gateway,
                str(r.version),
                r.auth,
                r.updated,
                f"revoked {r.revoked}" if r.revoked else "active",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK


@_guarded
def _install(args: argparse.Namespace) -> int:
    from edge.bundled import install

    owner = args.agent_user or ("bosai" if os.geteuid() == 0 else None)
    accepted = install(
        args.bundle, args.trust_key, args.etc, args.state_dir, new_identity=args.new_identity, owner=owner
    )
    m = accepted.manifest
    before = f" (was version {accepted.previous.version})" if accepted.previous else " (first install)"
    print(f"installed bundle of {m.tenant}/{m.gateway}, version {m.version}{before}")
    print(f"  signed by {accepted.key_id}; {len(accepted.gateway.config.sensors)} sensors")
    print("  next: bosai gateway check, then systemctl restart bosai-agent")
    return EXIT_OK


def _report(authority: Authority, issued: Issued, verb: str) -> None:
    r = issued.record
    print(f"{verb} {r.tenant}/{r.gateway}: bundle version {r.version}, login {r.auth} as {r.username!r}")
    print(f"  bundle      {issued.bundle_path} (0600: it holds the credentials; delete it once installed)")
    print(f"  registry    {authority.fragment_path(r.tenant, r.gateway)}")
    print(f"  broker      {authority.broker_dir / 'passwords'}, {authority.broker_dir / 'acl'}")
    print(f"  signed by   {authority.signing_key_id()}")
    if issued.broker_reloaded:
        print("  broker reloaded; restart the consumer to load the registry")
    else:
        print("  now reload the broker (systemctl reload mosquitto) and restart the consumer")
    print("  on the gateway: bosai gateway install BUNDLE --trust-key signing.pub && bosai gateway check")
