"""Signed config bundles: only an untouched bundle from a trusted key, for this gateway, not older
than the installed one, is accepted; its files land with the right modes; secrets stay hidden."""

from __future__ import annotations

import base64
import json
import os
import stat
import string
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wire.bundle import (
    FORMAT,
    MAX_BUNDLE_BYTES,
    BundleError,
    BundleFile,
    InstalledState,
    Manifest,
    RollbackRefused,
    TamperedBundle,
    UnsignedBundle,
    UntrustedSigner,
    WrongGateway,
    bundle_digest,
    check_update,
    generate_signing_key,
    key_id,
    load_state,
    load_trusted_keys,
    read_bundle,
    read_bundle_file,
    save_state,
    sign_bundle,
    unpack,
    utc_timestamp,
)

PASSWORD = b"s3cret-password-Zq8x"
PRIVATE, PUBLIC = generate_signing_key()
OTHER_PRIVATE, OTHER_PUBLIC = generate_signing_key()


def manifest(version: int = 1, *, gateway: str = "gw01", files: list[BundleFile] | None = None) -> Manifest:
    return Manifest(
        format=FORMAT,
        tenant="demo-city",
        gateway=gateway,
        version=version,
        created="2025-01-31T09:00:00Z",
        files=files
        if files is not None
        else [
            BundleFile("gateway.yaml", b"gateway: gw01\n"),
            BundleFile("ca.crt", b"-----BEGIN CERTIFICATE-----\n"),
            BundleFile("mqtt-password", PASSWORD, secret=True),
            BundleFile("profiles/river-level.yaml", b"model: x\n"),
        ],
    )


def envelope(payload: bytes, private_pem: bytes = PRIVATE, **override: str) -> bytes:
    """A bundle made by hand, signing whatever payload (sign_bundle refuses bad manifests)."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fields = {
        "format": FORMAT,
        "key_id": key_id(public),
        "payload": base64.b64encode(payload).decode(),
        "signature": base64.b64encode(key.sign(payload)).decode(),
    }
    fields.update(override)
    return json.dumps(fields).encode()


def state(version: int, digest: str = "sha256:aa", gateway: str = "gw01") -> InstalledState:
    return InstalledState("demo-city", gateway, version, digest, key_id(PUBLIC), "2025-01-31T09:00:00Z")


BUNDLE = sign_bundle(manifest(), PRIVATE)


# --------------------------------------------------------------------------------------------
# Signing and verifying


def test_round_trip() -> None:
    assert json.loads(BUNDLE)["format"] == FORMAT
    got = read_bundle(BUNDLE, [PUBLIC])
    assert got == manifest()
    password = got.file("mqtt-password")
    assert password is not None and password.data == PASSWORD and password.secret
    assert got.file("missing") is None


def test_signing_is_deterministic_so_the_same_bundle_has_the_same_digest() -> None:
    assert sign_bundle(manifest(), PRIVATE) == BUNDLE


def test_key_id_format() -> None:
    assert len(key_id(PUBLIC)) == len("ed25519:") + 16 and key_id(PUBLIC).startswith("ed25519:")
    assert key_id(PUBLIC) != key_id(OTHER_PUBLIC)
    assert json.loads(BUNDLE)["key_id"] == key_id(PUBLIC)


def test_tampered_payload_is_refused() -> None:
    doc = json.loads(BUNDLE)
    payload = bytearray(base64.b64decode(doc["payload"]))
    payload[payload.index(b"gw01")] ^= 0x01  # "fw01": still valid JSON, different meaning
    doc["payload"] = base64.b64encode(bytes(payload)).decode()
    with pytest.raises(TamperedBundle, match="altered or damaged"):
        read_bundle(json.dumps(doc).encode(), [PUBLIC])


def test_removed_signature_is_unsigned() -> None:
    doc = json.loads(BUNDLE)
    for change in ({"signature": ""}, {"key_id": ""}):
        with pytest.raises(UnsignedBundle, match="not signed"):
            read_bundle(json.dumps(doc | change).encode(), [PUBLIC])
    del doc["signature"]
    with pytest.raises(UnsignedBundle):
        read_bundle(json.dumps(doc).encode(), [PUBLIC])


@pytest.mark.parametrize("data", [b"", b"gateway: gw01\n", b"[]", b'{"format": "zip"}', b"\xff\xfe"])
def test_not_a_bundle_at_all_is_unsigned(data: bytes) -> None:
    with pytest.raises(UnsignedBundle, match="not a bosai bundle"):
        read_bundle(data, [PUBLIC])


def test_newer_format_asks_for_an_agent_update() -> None:
    doc = json.loads(BUNDLE) | {"format": "bosai-bundle/2"}
    with pytest.raises(BundleError, match="update the agent"):
        read_bundle(json.dumps(doc).encode(), [PUBLIC])


def test_untrusted_signer_is_refused() -> None:
    other = sign_bundle(manifest(), OTHER_PRIVATE)
    with pytest.raises(UntrustedSigner, match=key_id(OTHER_PUBLIC)):
        read_bundle(other, [PUBLIC])
    assert read_bundle(other, [PUBLIC, OTHER_PUBLIC]) == manifest()


def test_signature_by_another_key_under_a_trusted_key_id_is_tampered() -> None:
    forged = envelope(msgspec.json.encode(manifest()), OTHER_PRIVATE, key_id=key_id(PUBLIC))
    with pytest.raises(TamperedBundle):
        read_bundle(forged, [PUBLIC])


def test_signed_payload_that_is_not_a_manifest_is_tampered() -> None:
    with pytest.raises(TamperedBundle):
        read_bundle(envelope(b"not json"), [PUBLIC])


@pytest.mark.parametrize(
    "name", ["../x", "/etc/x", "profiles/../../x", "a/b", "..", ".hidden", "gateway.yaml\n", ""]
)
def test_path_traversal_names_are_refused_even_when_signed(name: str) -> None:
    files = [BundleFile("gateway.yaml", b"x"), BundleFile(name, b"evil")]
    payload = msgspec.json.encode(manifest(files=files))
    with pytest.raises(BundleError, match="is not allowed"):
        read_bundle(envelope(payload), [PUBLIC])
    with pytest.raises(BundleError, match="is not allowed"):
        sign_bundle(manifest(files=files), PRIVATE)
    with pytest.raises(BundleError, match="is not allowed"):
        unpack(manifest(files=files), Path("/nonexistent/never-written"))


def test_duplicate_names_and_missing_gateway_yaml_are_refused() -> None:
    twice = [BundleFile("gateway.yaml", b"a"), BundleFile("gateway.yaml", b"b")]
    with pytest.raises(BundleError, match="appears twice"):
        read_bundle(envelope(msgspec.json.encode(manifest(files=twice))), [PUBLIC])
    without = [BundleFile("ca.crt", b"a")]
    with pytest.raises(BundleError, match=r"no gateway\.yaml"):
        read_bundle(envelope(msgspec.json.encode(manifest(files=without))), [PUBLIC])


def test_invalid_manifest_fields_are_refused_at_signing() -> None:
    for bad in (
        msgspec.structs.replace(manifest(), version=0),
        msgspec.structs.replace(manifest(), created="31/01/2025"),
        msgspec.structs.replace(manifest(), created="2025-13-01T00:00:00Z"),
        msgspec.structs.replace(manifest(), gateway="gw/01"),
        msgspec.structs.replace(manifest(), gateway="gw01\n"),
        msgspec.structs.replace(manifest(), format="bosai-bundle/0"),
    ):
        with pytest.raises(BundleError, match="manifest"):
            sign_bundle(bad, PRIVATE)


def test_unknown_manifest_field_is_refused() -> None:
    raw = json.loads(msgspec.json.encode(manifest())) | {"extra": 1}
    with pytest.raises(BundleError, match="content is invalid"):
        read_bundle(envelope(json.dumps(raw).encode()), [PUBLIC])


def test_oversize_bundle_is_refused_before_parsing() -> None:
    huge = b"{" + b" " * MAX_BUNDLE_BYTES + b"}"
    with pytest.raises(BundleError, match="4 MiB") as info:
        read_bundle(huge, [PUBLIC])
    assert type(info.value) is BundleError
    big = manifest(files=[BundleFile("gateway.yaml", b"x" * MAX_BUNDLE_BYTES)])
    with pytest.raises(BundleError, match="4 MiB"):
        sign_bundle(big, PRIVATE)


def test_wrong_key_type_is_refused() -> None:
    with pytest.raises(BundleError, match="not an unencrypted PEM key"):
        sign_bundle(manifest(), b"nonsense")
    ec_public = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(BundleError, match=r"trusted signing key.*not an Ed25519 public key"):
        read_bundle(BUNDLE, [ec_public])
    with pytest.raises(BundleError, match=r"trusted signing key.*not a PEM public key"):
        read_bundle(BUNDLE, [b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    position=st.integers(min_value=0, max_value=len(BUNDLE) - 1), mask=st.integers(min_value=1, max_value=255)
)
def test_no_single_byte_change_ever_verifies(position: int, mask: int) -> None:
    flipped = bytearray(BUNDLE)
    flipped[position] ^= mask
    with pytest.raises(BundleError):
        read_bundle(bytes(flipped), [PUBLIC])


def test_every_bit_of_the_signature_and_the_last_base64_characters_matter() -> None:
    """The exhaustive counterpart of the random test, where base64 is subtle: the last character
    carries unused bits, so a lax decoder maps several spellings to the same signature."""
    doc = json.loads(BUNDLE)
    for field in ("signature", "payload"):
        text = doc[field].rstrip("=")
        for i in (len(text) - 1, len(text) - 2, 0):
            for replacement in string.ascii_letters + string.digits + "+/":
                if replacement == text[i]:
                    continue
                changed = doc | {field: text[:i] + replacement + doc[field][i + 1 :]}
                with pytest.raises(BundleError):
                    read_bundle(json.dumps(changed).encode(), [PUBLIC])


# --------------------------------------------------------------------------------------------
# Bundle files and trusted keys


def write_bundle(tmp_path: Path, data: bytes = BUNDLE, mode: int = 0o600) -> Path:
    path = tmp_path / "gw01-v1.bundle"
    path.write_bytes(data)
    path.chmod(mode)
    return path


def test_read_bundle_file_returns_the_digest_of_the_signed_content(tmp_path: Path) -> None:
    got, digest = read_bundle_file(write_bundle(tmp_path), [PUBLIC])
    assert got == manifest()
    payload = base64.b64decode(json.loads(BUNDLE)["payload"])
    assert digest == bundle_digest(payload) and digest.startswith("sha256:") and len(digest) == 7 + 64
    # An editor saving the file with a final newline does not make it another bundle.
    _, resaved = read_bundle_file(write_bundle(tmp_path, BUNDLE + b"\n"), [PUBLIC])
    assert resaved == digest


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_group_or_world_readable_bundle_file_is_refused(tmp_path: Path, mode: int) -> None:
    path = write_bundle(tmp_path, mode=mode)
    with pytest.raises(BundleError, match=f"chmod 600 {path}"):
        read_bundle_file(path, [PUBLIC])


def test_bundle_file_errors_name_the_file(tmp_path: Path) -> None:
    path = write_bundle(tmp_path, sign_bundle(manifest(), OTHER_PRIVATE))
    with pytest.raises(UntrustedSigner, match=f"bundle {path} is signed by"):
        read_bundle_file(path, [PUBLIC])
    with pytest.raises(BundleError, match="not found"):
        read_bundle_file(tmp_path / "missing.bundle", [PUBLIC])
    path.write_bytes(b" " * (MAX_BUNDLE_BYTES + 1))
    with pytest.raises(BundleError, match="4 MiB"):
        read_bundle_file(path, [PUBLIC])


def test_load_trusted_keys_from_a_file_or_a_directory(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "a.pub").write_bytes(PUBLIC)
    (keys / "b.pub").write_bytes(OTHER_PUBLIC)
    (keys / "notes.txt").write_text("ignored")
    assert load_trusted_keys(keys) == [PUBLIC, OTHER_PUBLIC]
    assert load_trusted_keys(keys / "a.pub") == [PUBLIC]
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="no trusted signing keys"):
        load_trusted_keys(tmp_path / "empty")
    with pytest.raises(BundleError, match="not found"):
        load_trusted_keys(tmp_path / "missing.pub")
    (keys / "bad.pub").write_bytes(PRIVATE)
    with pytest.raises(BundleError, match=r"bad\.pub"):
        load_trusted_keys(keys)


# --------------------------------------------------------------------------------------------
# Updates: rollback and identity


def test_first_install_is_accepted() -> None:
    check_update(manifest(1), "sha256:aa", None)


def test_newer_version_is_accepted() -> None:
    check_update(manifest(6), "sha256:bb", state(5))


def test_older_version_is_a_rollback() -> None:
    with pytest.raises(RollbackRefused) as info:
        check_update(manifest(3), "sha256:bb", state(5), source="bundle gw01-v3.bundle")
    assert str(info.value) == (
        "bundle gw01-v3.bundle is older (version 3) than the one this gateway runs (version 5): "
        "refusing a rollback; ask for a new bundle from provisioning"
    )


def test_same_version_other_content_is_refused_same_digest_is_a_restart() -> None:
    with pytest.raises(RollbackRefused, match="same version"):
        check_update(manifest(5), "sha256:bb", state(5, "sha256:aa"))
    check_update(manifest(5), "sha256:aa", state(5, "sha256:aa"))


def test_bundle_for_another_gateway_is_refused_unless_new_identity() -> None:
    with pytest.raises(WrongGateway, match=r"demo-city/gw02.*this gateway is demo-city/gw01"):
        check_update(manifest(9, gateway="gw02"), "sha256:bb", state(5))
    # A new identity starts its own version count: version 1 is fine.
    check_update(manifest(1, gateway="gw02"), "sha256:bb", state(5), new_identity=True)
    with pytest.raises(RollbackRefused):
        check_update(manifest(1), "sha256:bb", state(5), new_identity=True)


def test_state_round_trip_is_private(tmp_path: Path) -> None:
    path = tmp_path / "installed.json"
    assert load_state(path) is None
    save_state(path, state(5))
    assert load_state(path) == state(5)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    save_state(path, state(6))
    assert load_state(path) == state(6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["installed.json"]  # no temporary files left


def test_corrupt_state_is_an_error_not_a_first_install(tmp_path: Path) -> None:
    path = tmp_path / "installed.json"
    path.write_text('{"tenant": "demo-city"')
    with pytest.raises(BundleError, match=f"{path} is corrupt"):
        load_state(path)


def test_utc_timestamp_is_a_valid_created_value() -> None:
    stamp = utc_timestamp()
    assert stamp.endswith("Z") and len(stamp) == len("2025-01-31T09:00:00Z")
    sign_bundle(msgspec.structs.replace(manifest(), created=stamp), PRIVATE)


# --------------------------------------------------------------------------------------------
# Unpacking


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_unpack_writes_files_with_their_modes(tmp_path: Path) -> None:
    target = tmp_path / "config"
    old_umask = os.umask(0o022)
    try:
        unpack(manifest(), target)
    finally:
        os.umask(old_umask)
    assert mode_of(target) == 0o700
    assert (target / "gateway.yaml").read_bytes() == b"gateway: gw01\n"
    assert mode_of(target / "gateway.yaml") == 0o644
    assert (target / "mqtt-password").read_bytes() == PASSWORD
    assert mode_of(target / "mqtt-password") == 0o600
    assert (target / "profiles" / "river-level.yaml").read_bytes() == b"model: x\n"
    assert mode_of(target / "profiles") == 0o700
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config"]


def test_unpack_replaces_an_existing_directory_whole(tmp_path: Path) -> None:
    target = tmp_path / "config"
    unpack(manifest(), target)
    (target / "stale.yaml").write_text("from an old bundle")
    files = [BundleFile("gateway.yaml", b"gateway: v2\n")]
    unpack(manifest(2, files=files), target)
    assert sorted(p.name for p in target.iterdir()) == ["gateway.yaml"]
    assert (target / "gateway.yaml").read_bytes() == b"gateway: v2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config"]


def test_unpack_recovers_from_a_crash_between_the_renames(tmp_path: Path) -> None:
    target = tmp_path / "config"
    unpack(manifest(), target)
    target.rename(tmp_path / "config.old")  # as if the agent died right after the first rename
    (tmp_path / "config.new").mkdir()
    (tmp_path / "config.new" / "half").write_text("x")
    unpack(manifest(2, files=[BundleFile("gateway.yaml", b"v2")]), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config"]
    assert (target / "gateway.yaml").read_bytes() == b"v2"


def test_unpack_failure_names_the_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BundleError, match="cannot write the bundle's files into"):
        unpack(manifest(), blocker / "config")


# --------------------------------------------------------------------------------------------
# Secrets stay out of reprs and messages


def test_repr_shows_name_and_size_never_the_data() -> None:
    secret = BundleFile("mqtt-password", PASSWORD, secret=True)
    assert repr(secret) == f"BundleFile(name='mqtt-password', size={len(PASSWORD)}, secret=True)"
    assert PASSWORD.decode() not in repr(manifest())
    assert PASSWORD.decode() not in str([secret])
    assert "s3cret" not in repr(dict(secret.__rich_repr__()))


def test_error_messages_never_contain_file_contents() -> None:
    doc = json.loads(BUNDLE)
    raw = bytearray(base64.b64decode(doc["payload"]))
    raw[-2] ^= 0x01
    doc["payload"] = base64.b64encode(bytes(raw)).decode()
    for data in (json.dumps(doc).encode(), sign_bundle(manifest(), OTHER_PRIVATE)):
        with pytest.raises(BundleError) as info:
            read_bundle(data, [PUBLIC])
        assert "s3cret" not in str(info.value)
        assert base64.b64encode(PASSWORD).decode() not in str(info.value)
