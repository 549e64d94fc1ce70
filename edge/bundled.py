"""A gateway run from a signed config bundle (what provisioning hands the technician).

Installed layout (the systemd unit's defaults, deploy/systemd/bosai-agent.service):

    /etc/bosai/gateway.bundle     the bundle, 0600 (it holds the gateway's credentials)
    /etc/bosai/signing.pub        the provisioning authority's public key: the trust anchor
    /var/lib/bosai/bundle-state.json   tenant, gateway, version and digest last accepted (0600)
    /var/lib/bosai/config/        the bundle unpacked: gateway.yaml, profiles/, secrets 0600

At every start the agent verifies the bundle again (signature by a trusted key, not older than
what it accepted before, same gateway), unpacks it afresh and only then records it as accepted.
A bundle swapped for an older or tampered one therefore stops the agent with a clear message
instead of running with old credentials or thresholds.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from edge.config import LoadedGateway, load_gateway
from wire import bundle
from wire.bundle import BundleError, InstalledState, Manifest

log = logging.getLogger(__name__)

ETC_DIR = Path("/etc/bosai")
STATE_DIR = Path("/var/lib/bosai")
BUNDLE_NAME = "gateway.bundle"
TRUST_NAME = "signing.pub"
STATE_NAME = "bundle-state.json"
CONFIG_DIR_NAME = "config"


@dataclass(frozen=True)
class Accepted:
    manifest: Manifest
    digest: str
    key_id: str
    previous: InstalledState | None
    gateway: LoadedGateway


def accept(
    bundle_path: Path,
    trust: Path,
    state_dir: Path,
    *,
    new_identity: bool = False,
    config_dir: Path | None = None,
) -> Accepted:
    """Verify `bundle_path`, unpack it into `state_dir/config` and load the gateway config.

    Raises BundleError (refused bundle) or ConfigError (the config inside does not load).  The
    accepted version is recorded only after the config loaded, so a bad bundle does not raise
    the rollback floor.  With `config_dir` (the on-site check) the bundle is verified against
    the state but unpacked there and nothing is recorded.
    """
    record = config_dir is None
    keys = bundle.load_trusted_keys(trust)
    manifest, digest = bundle.read_bundle_file(bundle_path, keys)
    state_path = state_dir / STATE_NAME
    previous = bundle.load_state(state_path)
    bundle.check_update(manifest, digest, previous, new_identity=new_identity, source=str(bundle_path))
    if config_dir is None:
        state_dir.mkdir(parents=True, exist_ok=True)
        config_dir = state_dir / CONFIG_DIR_NAME
    bundle.unpack(manifest, config_dir)
    gateway = load_gateway(config_dir / "gateway.yaml")
    signer = bundle.signer_of(bundle_path.read_bytes())
    if record:
        bundle.save_state(
            state_path,
            InstalledState(
                tenant=manifest.tenant,
                gateway=manifest.gateway,
                version=manifest.version,
                digest=digest,
                key_id=signer,
                installed=bundle.utc_timestamp(),
            ),
        )
    return Accepted(manifest, digest, signer, previous, gateway)


def install(
    bundle_path: Path,
    trust_key: Path | None,
    etc_dir: Path,
    state_dir: Path,
    *,
    new_identity: bool = False,
    owner: str | None = None,
) -> Accepted:
    """Put a bundle in place for the agent (first install or update).

    `owner`: the agent's user (the systemd unit runs it as `bosai`); when given, the bundle and
    the state folder are handed to it, since the agent must read its 0600 secrets.

    The trust anchor is installed from `trust_key` on the first install only; later bundles must
    be signed by a key the gateway already trusts (a different key is refused, so a stolen laptop
    with another authority's bundle cannot take the gateway over).
    """
    installed_trust = etc_dir / TRUST_NAME
    if installed_trust.exists():
        trust = installed_trust
        if trust_key is not None and trust_key.read_bytes() != installed_trust.read_bytes():
            raise BundleError(
                f"{installed_trust} already trusts another signing key than {trust_key}; this gateway "
                "only accepts bundles from the authority it was first installed with (to change it, "
                f"remove {installed_trust} by hand, deliberately)"
            )
    elif trust_key is None:
        raise BundleError(
            f"no trusted signing key yet ({installed_trust}): give the authority's signing.pub with "
            "--trust-key on the first install, and compare its fingerprint with the one provisioning printed"
        )
    else:
        trust = trust_key
    accepted = accept(bundle_path, trust, state_dir, new_identity=new_identity)
    etc_dir.mkdir(parents=True, exist_ok=True)
    if not installed_trust.exists():
        shutil.copyfile(trust, installed_trust)
        installed_trust.chmod(0o644)
    target = etc_dir / BUNDLE_NAME
    if bundle_path.resolve() != target.resolve():
        tmp = target.with_name(f".{BUNDLE_NAME}.tmp")
        tmp.write_bytes(b"")
        tmp.chmod(0o600)
        tmp.write_bytes(bundle_path.read_bytes())
        tmp.replace(target)
    if owner is not None:
        _hand_over([target, state_dir, *state_dir.rglob("*")], owner)
    return accepted


def _hand_over(paths: list[Path], owner: str) -> None:
    import pwd

    try:
        user = pwd.getpwnam(owner)
    except KeyError:
        raise BundleError(
            f"no user {owner!r} on this gateway "
            "(create it: systemd-sysusers deploy/systemd/bosai.sysusers.conf)"
        ) from None
    for path in paths:
        os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
