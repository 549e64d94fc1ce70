"""Signed gateway config bundles: everything one gateway needs, in one file, signed with Ed25519.

A technician carries the bundle to the site (laptop, USB stick); the gateway agent installs it
only if it is signed by a trusted provisioning key, is meant for this gateway, and is not older
than what the gateway runs.  A stolen or altered bundle therefore cannot downgrade a gateway to
old (revoked) credentials or point it at another broker.

The file is JSON shaped like a JWS, so nothing has to be canonicalised before verifying: the
signature covers the payload bytes exactly as they sit in the file.

    {"format": "bosai-bundle/1", "key_id": "ed25519:<16 hex>",
     "payload": "<base64 of the manifest JSON>", "signature": "<base64 Ed25519 signature of it>"}

Bundles hold secrets (MQTT password, client key).  No exception message or repr here ever
contains file contents; a BundleFile shows its name and size only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from wire.ids import Ident

FORMAT = "bosai-bundle/1"
MAX_BUNDLE_BYTES = 4 * 1024 * 1024
REQUIRED_FILE = "gateway.yaml"
# fullmatch, not `$`: a `$` pattern also accepts a trailing newline.
_FILE_NAME_RE = re.compile(r"(profiles/)?[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_IDENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CREATED_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")
_ASK = "ask for a new bundle from provisioning"


class BundleError(Exception):
    """A bundle cannot be installed.  `str(err)` is the message for the technician."""


class UnsignedBundle(BundleError):
    """No or empty signature, or not a bundle at all."""


class TamperedBundle(BundleError):
    """The signature does not verify, or the signed payload cannot be decoded."""


class UntrustedSigner(BundleError):
    """Signed by a key this gateway does not trust."""


class RollbackRefused(BundleError):
    """Older than the installed bundle, or the same version with other content."""


class WrongGateway(BundleError):
    """Made for another tenant or gateway than the one installed."""


class BundleFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str  # "gateway.yaml", "ca.crt", "mqtt-password", "client.key", "profiles/x.yaml"
    data: bytes  # base64 in JSON
    secret: bool = False  # secret files are written 0600, others 0644

    # The data may be a password or a private key: never let it reach a log, traceback or
    # assertion message.
    def __repr__(self) -> str:
        return f"BundleFile(name={self.name!r}, size={len(self.data)}, secret={self.secret})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return [("name", self.name), ("size", len(self.data)), ("secret", self.secret)]


class Manifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: str  # FORMAT
    tenant: Ident
    gateway: Ident
    version: int  # >= 1, strictly increasing per gateway; the provisioning authority counts
    created: str  # ISO 8601 UTC with Z, see utc_timestamp()
    files: list[BundleFile]

    def file(self, name: str) -> BundleFile | None:
        return next((f for f in self.files if f.name == name), None)


class InstalledState(msgspec.Struct, frozen=True):
    """What the gateway last accepted: the reference for the rollback and identity checks."""

    tenant: str
    gateway: str
    version: int
    digest: str  # "sha256:<hex>" of the bundle file
    key_id: str
    installed: str  # ISO 8601 UTC with Z


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    format: str
    key_id: str = ""
    payload: str = ""
    signature: str = ""


# --------------------------------------------------------------------------------------------
# Keys


def generate_signing_key() -> tuple[bytes, bytes]:
    """A new provisioning key: (private PEM PKCS8, public PEM SubjectPublicKeyInfo)."""
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def key_id(public_pem: bytes) -> str:
    """The key's id: "ed25519:" + the first 16 hex digits of SHA-256 of the raw 32-byte key."""
    raw = _public_key(public_pem).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def load_trusted_keys(path: Path) -> list[bytes]:
    """The public keys in a .pub file, or in every *.pub file of a directory."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.pub") if p.is_file())
    elif path.is_file():
        files = [path]
    else:
        raise BundleError(f"trusted signing key {path} not found: install the provisioning public key there")
    keys: list[bytes] = []
    for file in files:
        try:
            pem = file.read_bytes()
        except OSError as exc:
            raise BundleError(f"cannot read trusted signing key {file}: {exc.strerror}") from None
        try:
            key_id(pem)
        except BundleError as exc:
            raise BundleError(f"trusted signing key {file}: {exc}") from None
        keys.append(pem)
    if not keys:
        raise BundleError(
            f"no trusted signing keys (*.pub) in {path}: no bundle can be accepted; "
            "install the provisioning public key there"
        )
    return keys


# --------------------------------------------------------------------------------------------
# Signing and reading


def utc_timestamp(when: datetime | None = None) -> str:
    """`when` (default now) as the manifest's `created` / the state's `installed` format."""
    moment = (when or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def bundle_digest(data: bytes) -> str:
    """The "sha256:<hex>" of a bundle's signed payload, as recorded in InstalledState.digest."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sign_bundle(manifest: Manifest, private_pem: bytes) -> bytes:
    """The bundle file bytes for `manifest`, signed with the provisioning key.

    Refuses a manifest the agent would refuse, so a bad bundle fails at the office, not on site.
    """
    _check_manifest(manifest, "bundle")
    try:
        key = serialization.load_pem_private_key(private_pem, password=None)
    except (ValueError, TypeError) as exc:
        # A key parser's message could quote key material: name the kind of problem only.
        raise BundleError(f"signing key is not an unencrypted PEM key ({exc.__class__.__name__})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError("signing key is not an Ed25519 key")
    payload = msgspec.json.encode(manifest)
    try:  # what the agent will decode must decode, Ident constraints included
        msgspec.json.decode(payload, type=Manifest)
    except msgspec.ValidationError as exc:
        raise BundleError(f"bundle content is invalid: {exc}") from None
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    envelope = _Envelope(
        format=FORMAT,
        key_id=key_id(public_pem),
        payload=base64.b64encode(payload).decode("ascii"),
        signature=base64.b64encode(key.sign(payload)).decode("ascii"),
    )
    # No trailing newline or other whitespace: every byte of the file is then covered by a check.
    data = msgspec.json.encode(envelope)
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(
            f"bundle would be {len(data)} bytes, more than the {_mib(MAX_BUNDLE_BYTES)} a gateway "
            "accepts: leave out unused profiles"
        )
    return data


def read_bundle(data: bytes, trusted_public_pems: Sequence[bytes], *, source: str = "bundle") -> Manifest:
    """The verified manifest of a bundle, or a BundleError subclass saying why not.

    `source` names the bundle in messages (read_bundle_file passes "bundle PATH").
    """
    return _verify(data, trusted_public_pems, source)[0]


def signer_of(data: bytes) -> str:
    """The key id a bundle claims to be signed by ("" if none); meaningful once it verified."""
    try:
        return msgspec.json.decode(data, type=_Envelope).key_id
    except msgspec.DecodeError:
        return ""


def _verify(data: bytes, trusted_public_pems: Sequence[bytes], source: str) -> tuple[Manifest, bytes]:
    """(manifest, signed payload bytes) of a verified bundle."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(
            f"{source} is {len(data)} bytes, more than the {_mib(MAX_BUNDLE_BYTES)} limit: "
            f"it is not a bundle from provisioning; {_ASK}"
        )
    try:
        envelope = msgspec.json.decode(data, type=_Envelope)
    except msgspec.DecodeError:
        raise UnsignedBundle(f"{source} is not a bosai bundle (not a signed bundle file at all)") from None
    if envelope.format != FORMAT:
        if envelope.format.startswith("bosai-bundle/"):
            raise BundleError(
                f"{source} has format {_short(envelope.format)!r}, which this agent does not know "
                f"(it reads {FORMAT!r}): update the agent or {_ASK} in the older format"
            )
        raise UnsignedBundle(f"{source} is not a bosai bundle (format {_short(envelope.format)!r})")
    if not envelope.signature or not envelope.key_id:
        raise UnsignedBundle(f"{source} is not signed: refusing it; {_ASK}")
    trusted: dict[str, bytes] = {}
    for i, pem in enumerate(trusted_public_pems):
        try:
            trusted[key_id(pem)] = pem
        except BundleError as exc:
            raise BundleError(f"trusted signing key #{i + 1} is unusable: {exc}") from None
    if envelope.key_id not in trusted:
        raise UntrustedSigner(
            f"{source} is signed by key {_short(envelope.key_id)}, which this gateway does not trust "
            f"(trusted: {', '.join(sorted(trusted)) or 'none'}): refusing it; {_ASK}"
        )
    tampered = f"{source} has been altered or damaged since it was signed: refusing it; {_ASK}"
    try:
        signature = _strict_b64decode(envelope.signature)
        payload = _strict_b64decode(envelope.payload)
        _public_key(trusted[envelope.key_id]).verify(signature, payload)
    except (ValueError, InvalidSignature):
        raise TamperedBundle(tampered) from None
    try:
        manifest = msgspec.json.decode(payload, type=Manifest)
    except msgspec.ValidationError as exc:
        raise BundleError(f"{source} content is invalid: {exc}; {_ASK}") from None
    except msgspec.DecodeError:
        raise TamperedBundle(tampered) from None
    _check_manifest(manifest, source)
    return manifest, payload


def read_bundle_file(path: Path, trusted_public_pems: Sequence[bytes]) -> tuple[Manifest, str]:
    """(verified manifest, its digest) of a bundle file.  The digest covers the signed content,
    not the file's bytes, so a copy an editor re-saved with a trailing newline is the same bundle.

    Also refuses a file that group or others can read: it holds the gateway's credentials.
    """
    path = Path(path)
    source = f"bundle {path}"
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BundleError(f"{source} not found") from None
    except OSError as exc:
        raise BundleError(f"cannot read {source}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(f"{source} is not a regular file")
    if st.st_mode & 0o077:
        raise BundleError(
            f"{source} can be read by group or others (mode {stat.filemode(st.st_mode)}) and it holds "
            f"the gateway's credentials: run `chmod 600 {path}` and try again"
        )
    if st.st_size > MAX_BUNDLE_BYTES:
        raise BundleError(f"{source} is {st.st_size} bytes, more than the {_mib(MAX_BUNDLE_BYTES)} limit")
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BUNDLE_BYTES + 1)  # the file may grow after stat()
    except OSError as exc:
        raise BundleError(f"cannot read {source}: {exc.strerror}") from None
    manifest, payload = _verify(data, trusted_public_pems, source)
    return manifest, bundle_digest(payload)


# --------------------------------------------------------------------------------------------
# Installing


def check_update(
    manifest: Manifest,
    digest: str,
    state: InstalledState | None,
    *,
    new_identity: bool = False,
    source: str = "this bundle",
) -> None:
    """Raise WrongGateway or RollbackRefused unless `manifest` may replace what is installed.

    Re-installing the very same bundle (same version, same digest) is fine: that is a restart.
    With `new_identity` the box may become another gateway; version numbers belong to one
    gateway, so they are not compared across identities.
    """
    if state is None:
        return
    same_identity = (manifest.tenant, manifest.gateway) == (state.tenant, state.gateway)
    if not same_identity:
        if new_identity:
            return
        raise WrongGateway(
            f"{source} is for gateway {manifest.tenant}/{manifest.gateway}, but this gateway is "
            f"{state.tenant}/{state.gateway}: refusing it; use the bundle made for "
            f"{state.tenant}/{state.gateway} (to turn this box into another gateway, install with "
            "the explicit new-identity option)"
        )
    if manifest.version < state.version:
        raise RollbackRefused(
            f"{source} is older (version {manifest.version}) than the one this gateway runs "
            f"(version {state.version}): refusing a rollback; {_ASK}"
        )
    if manifest.version == state.version and digest != state.digest:
        raise RollbackRefused(
            f"{source} has the same version ({manifest.version}) as the one this gateway runs but "
            f"other content (a version number is never re-used): refusing it; {_ASK}"
        )


def load_state(path: Path) -> InstalledState | None:
    """The installed-bundle record, or None if there is none yet (first install)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BundleError(f"cannot read installed-bundle record {path}: {exc.strerror}") from None
    try:
        return msgspec.json.decode(data, type=InstalledState)
    except msgspec.DecodeError as exc:
        raise BundleError(
            f"installed-bundle record {path} is corrupt ({exc}); it guards against rollbacks, so "
            "nothing is installed: restore it from a backup, or remove it and install the newest bundle"
        ) from None


def save_state(path: Path, state: InstalledState) -> None:
    """Write the record atomically (temporary file, fsync, rename), mode 0600."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(msgspec.json.encode(state))
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def unpack(manifest: Manifest, directory: Path) -> None:
    """Write the bundle's files into `directory`, replacing it as a whole.

    The files are built in `directory.new` (mode 0700; secret files 0600, others 0644) and
    fsynced; then the old directory is renamed away, the new one renamed in, and the old one
    removed.  A crash leaves either the old or the new directory complete; a crash between the
    two renames leaves `directory.old`, which the next unpack puts back before starting.
    """
    directory = Path(directory)
    _check_files(manifest.files, "bundle")  # the manifest may not come from read_bundle
    new = directory.with_name(directory.name + ".new")
    old = directory.with_name(directory.name + ".old")
    try:
        if new.exists() or new.is_symlink():
            _remove(new)
        if old.exists():
            if directory.exists():
                _remove(old)
            else:
                os.rename(old, directory)
        _make_dir(new)
        try:
            for bundle_file in manifest.files:
                target = new / bundle_file.name
                if not target.parent.exists():
                    _make_dir(target.parent)
                _write_file(target, bundle_file.data, 0o600 if bundle_file.secret else 0o644)
            if (new / "profiles").exists():
                _fsync_dir(new / "profiles")
            _fsync_dir(new)
        except BaseException:
            shutil.rmtree(new, ignore_errors=True)
            raise
        if directory.exists() or directory.is_symlink():
            os.rename(directory, old)
            os.rename(new, directory)
            _fsync_dir(directory.parent)
            _remove(old)
        else:
            os.rename(new, directory)
            _fsync_dir(directory.parent)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise BundleError(
            f"cannot write the bundle's files into {directory}{where}: {exc.strerror}"
        ) from None


# --------------------------------------------------------------------------------------------
# Helpers


def _check_manifest(manifest: Manifest, source: str) -> None:
    if manifest.format != FORMAT:
        raise BundleError(f"{source} manifest has format {manifest.format!r}, expected {FORMAT!r}")
    for field, value in (("tenant", manifest.tenant), ("gateway", manifest.gateway)):
        if not _IDENT_RE.fullmatch(value):
            raise BundleError(f"{source} manifest: field {field!r}: {value!r} is not a valid identifier")
    if manifest.version < 1:
        raise BundleError(f"{source} manifest: field 'version' must be at least 1, got {manifest.version}")
    if not _valid_created(manifest.created):
        raise BundleError(
            f"{source} manifest: field 'created' must be an ISO 8601 UTC time like "
            f"2025-01-31T09:00:00Z, got {manifest.created!r}"
        )
    _check_files(manifest.files, source)


def _check_files(files: Sequence[BundleFile], source: str) -> None:
    seen: set[str] = set()
    for i, bundle_file in enumerate(files):
        if not _FILE_NAME_RE.fullmatch(bundle_file.name):
            raise BundleError(
                f"{source} manifest: files[{i}]: file name {bundle_file.name!r} is not allowed "
                "(a plain name, or profiles/NAME): refusing the bundle"
            )
        if bundle_file.name in seen:
            raise BundleError(f"{source} manifest: files[{i}]: file {bundle_file.name!r} appears twice")
        seen.add(bundle_file.name)
    if REQUIRED_FILE not in seen:
        raise BundleError(f"{source} manifest has no {REQUIRED_FILE}")


def _valid_created(value: str) -> bool:
    if not _CREATED_RE.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:  # e.g. month 13
        return False
    return True


def _public_key(public_pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(public_pem)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"not a PEM public key ({exc.__class__.__name__})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError("not an Ed25519 public key")
    return key


def _strict_b64decode(text: str) -> bytes:
    """Standard base64, refusing anything but its one canonical spelling.

    The last character of a base64 string can carry unused bits; without the round-trip check a
    changed character there would decode to the same bytes and the altered file would still verify.
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("not canonical base64")
    return raw


def _make_dir(path: Path) -> None:
    os.mkdir(path, 0o700)
    os.chmod(path, 0o700)  # mkdir's mode is reduced by the umask


def _write_file(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        os.fchmod(fd, mode)  # exactly `mode`, whatever the umask
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _short(unsigned_text: str) -> str:
    """Envelope fields are not covered by the signature: keep what a message quotes of them short."""
    return unsigned_text if len(unsigned_text) <= 40 else unsigned_text[:40] + "..."


def _mib(size: int) -> str:
    return f"{size // (1024 * 1024)} MiB"
