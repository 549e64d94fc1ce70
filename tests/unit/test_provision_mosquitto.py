"""The broker's side of provisioning: password hashes exactly as Mosquitto 2.0 writes them, the
password file edited without disturbing other entries, the ACL and the broker config.  Real
Mosquitto runs these files in tests/integration/test_broker_security.py."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest

from bosai.paths import REPO_ROOT
from provision.mosquitto import (
    GatewayAccess,
    PasswordFile,
    acl_text,
    broker_conf,
    deploy_examples,
    gateway_username,
    hash_password,
    new_password,
    verify_password,
)

# Written by /usr/bin/mosquitto_passwd 2.0.11: `mosquitto_passwd -b FILE demo-city/gw01 'secret pw'`.
MOSQUITTO_PASSWD_LINE = (
    "demo-city/gw01:$7$101$xnE6Ocnhmy6UzsaH$"
    "NrF9mNhAYxjNFCMODRTi8ZjC+87imk2hWl66R6RK+Ov3nnY+RCBQCMkFkSCwuPLt9lrz3ihPYWZNRbVaNXx2AQ=="
)


def test_gateway_username_is_tenant_slash_gateway() -> None:
    assert gateway_username("demo-city", "gw01") == "demo-city/gw01"
    for tenant, gateway in [("a/b", "gw"), ("t", "g/w"), ("t", "+"), ("#", "g"), ("", "g"), ("t", "g w")]:
        with pytest.raises(ValueError, match="not a valid id"):
            gateway_username(tenant, gateway)
    with pytest.raises(ValueError, match="reserved"):
        gateway_username("t", "alerts")


def test_new_password_is_256_random_bits_safe_for_the_password_file() -> None:
    passwords = {new_password() for _ in range(100)}
    assert len(passwords) == 100
    for password in passwords:
        assert len(base64.urlsafe_b64decode(password + "=")) == 32
        assert ":" not in password and not any(c.isspace() for c in password)


def test_hash_is_exactly_what_mosquitto_passwd_writes() -> None:
    hashed = MOSQUITTO_PASSWD_LINE.split(":", 1)[1]
    salt = base64.b64decode(hashed.split("$")[3])
    assert hash_password("secret pw", salt=salt) == hashed
    assert verify_password(hashed, "secret pw")
    assert not verify_password(hashed, "secret pw ")


def test_hash_format() -> None:
    _, kind, iterations, salt, digest = hash_password("x").split("$")
    assert (kind, iterations) == ("7", "101")
    assert len(base64.b64decode(salt)) == 12 and len(base64.b64decode(digest)) == 64
    assert hash_password("x") != hash_password("x")  # a fresh salt each time
    assert hash_password("x", iterations=1000).split("$")[2] == "1000"
    with pytest.raises(ValueError):
        hash_password("x", iterations=0)


def test_verify_rejects_malformed_hashes_and_accepts_mosquitto_1_hashes() -> None:
    for bad in ["", "plain", "$7$", "$7$x$AAAA$AAAA", "$7$0$AAAA$AAAA", "$7$101$!!$AAAA", "$8$1$AA$AA"]:
        assert not verify_password(bad, "pw"), bad
    salt = b"0123456789ab"
    digest = hashlib.sha512(b"pw" + salt).digest()
    old = f"$6${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert verify_password(old, "pw") and not verify_password(old, "PW")


def test_password_file_keeps_other_entries_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "passwords"
    path.write_text(f"# operator's note\n\n{MOSQUITTO_PASSWD_LINE}\nops:$7$101$abc$def\nnot a valid line\n")
    pwfile = PasswordFile.load(path)
    assert pwfile.users() == ["demo-city/gw01", "ops"]
    pwfile.set("demo-city/gw02", "new")
    pwfile.set("demo-city/gw01", "rotated")  # replaced where it was
    pwfile.save(path)
    lines = path.read_text().splitlines()
    assert lines[:2] == ["# operator's note", ""]
    assert lines[2].startswith("demo-city/gw01:$7$101$") and lines[2] != MOSQUITTO_PASSWD_LINE
    assert lines[3:] == ["ops:$7$101$abc$def", "not a valid line", lines[5]]
    assert lines[5].startswith("demo-city/gw02:$7$")
    again = PasswordFile.load(path)
    assert again.check("demo-city/gw01", "rotated") and not again.check("demo-city/gw01", "secret pw")
    assert again.check("demo-city/gw02", "new") and not again.check("nobody", "new")


def test_password_file_remove_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "passwords"
    path.write_text("a:$7$1$x$y\nb:$7$1$x$y\na:$7$1$x$z\n")
    pwfile = PasswordFile.load(path)
    pwfile.set("a", "pw")
    assert pwfile.users() == ["a", "b"]  # a stale duplicate would come back to life on removal
    assert pwfile.remove("a") and not pwfile.remove("a")
    assert pwfile.users() == ["b"]


def test_missing_password_file_is_empty_and_save_is_private_and_atomic(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "passwords"
    pwfile = PasswordFile.load(path)
    assert pwfile.users() == []
    pwfile.set("t/g", new_password())
    pwfile.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["passwords"]  # no temporary file left
    path.chmod(0o644)
    pwfile.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_save_keeps_the_owner_the_broker_needs(tmp_path: Path) -> None:
    path = tmp_path / "passwords"
    path.write_text("")
    os.chown(path, 4321, 4322)  # e.g. user and group "mosquitto"
    pwfile = PasswordFile.load(path)
    pwfile.set("t/g", "pw")
    pwfile.save(path)
    st = path.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4321, 4322, 0o600)


@pytest.mark.parametrize("username", ["", "a:b", "a\nb", " a"])
def test_password_file_refuses_usernames_it_cannot_store(username: str) -> None:
    with pytest.raises(ValueError):
        PasswordFile().set(username, "pw")


def test_acl_has_one_explicit_block_per_gateway() -> None:
    text = acl_text([GatewayAccess("demo-city", "gw02"), GatewayAccess("demo-city", "gw01")])
    assert text.startswith("# ")
    assert "GENERATED by `bosai gateway provision`" in text and "do not edit by hand" in text
    assert "\npattern" not in text and not text.startswith("pattern")
    assert (
        "user demo-city/gw01\n"
        "topic write bosai/v1/demo-city/gw01/telemetry\n"
        "topic write bosai/v1/demo-city/gw01/status\n"
        "topic write bosai/v1/demo-city/gw01/health\n"
        "topic read bosai/v1/demo-city/gw01/config\n"
    ) in text
    assert (
        text.index("user demo-city/gw01") < text.index("user demo-city/gw02") < text.index("user bosai-cloud")
    )
    assert (
        "user bosai-cloud\n"
        "topic read bosai/v1/+/+/telemetry\n"
        "topic read bosai/v1/+/+/status\n"
        "topic read bosai/v1/+/+/health\n"
        "topic readwrite bosai/v1/+/alerts/#\n"
        "topic write bosai/v1/+/quarantine\n"
        "topic write bosai/v1/+/+/config\n"
    ) in text


def test_acl_is_deterministic_and_rejects_bad_ids() -> None:
    gws = [GatewayAccess("b", "g"), GatewayAccess("a", "g"), GatewayAccess("a", "g")]
    assert acl_text(gws) == acl_text(list(reversed(gws)))
    assert acl_text(gws).count("user a/g\n") == 1
    assert acl_text([], cloud_users=["c2", "c1"]).index("user c1") < acl_text(
        [], cloud_users=["c2", "c1"]
    ).index("user c2")
    assert "user bosai-cloud" not in acl_text([], cloud_users=[])
    with pytest.raises(ValueError):
        acl_text([GatewayAccess("t", "#")])
    with pytest.raises(ValueError):
        acl_text([], cloud_users=["two words"])


def directives(conf: str) -> list[str]:
    return [line for line in conf.splitlines() if line and not line.startswith("#")]


def test_broker_conf_is_tls_only_without_anonymous_access() -> None:
    conf = directives(broker_conf())
    assert conf[:4] == [
        "per_listener_settings false",
        "allow_anonymous false",
        "password_file /etc/mosquitto/bosai/passwords",
        "acl_file /etc/mosquitto/bosai/acl",
    ]
    listeners = [i for i, line in enumerate(conf) if line.startswith("listener ")]
    assert [conf[i] for i in listeners] == ["listener 8883", "listener 8884", "listener 8885 127.0.0.1"]
    for start, end in zip(listeners, [*listeners[1:], len(conf)], strict=True):
        block = conf[start:end]
        for line in (
            "cafile /etc/mosquitto/bosai/ca.crt",
            "certfile /etc/mosquitto/bosai/server.crt",
            "keyfile /etc/mosquitto/bosai/server.key",
            "tls_version tlsv1.2",
        ):
            assert line in block, (conf[start], line)
    blocks = [directives(block) for block in broker_conf().split("\n\n")]
    password_block, cert_block, cloud_block = [b for b in blocks if b and b[0].startswith("listener ")]
    for line in (
        "require_certificate true",
        "use_identity_as_username true",
        "crlfile /etc/mosquitto/bosai/crl.pem",
    ):
        assert line in cert_block
    assert "require_certificate true" not in password_block + cloud_block
    # a gateway's client id is its username on both gateway listeners; the consumer's shards keep theirs
    assert "use_username_as_clientid true" in password_block and "use_username_as_clientid true" in cert_block
    assert "use_username_as_clientid true" not in cloud_block
    for line in ("connection_messages true", "log_type notice", "log_type error"):
        assert line in conf
    assert "log_type debug" not in conf  # a line per message: only on request
    assert "log_type debug" in directives(broker_conf(log_acl_denials=True))
    assert not any(line.startswith(("log_dest", "user ")) for line in conf)
    for line in (
        "persistence true",
        "persistence_location /var/lib/mosquitto/",
        "max_queued_messages 1000000",
    ):
        assert line in conf


def test_broker_conf_options() -> None:
    conf = directives(
        broker_conf(
            etc_dir="/srv/bosai/",
            port=18883,
            cert_port=None,
            cloud_port=None,
            bind_address="127.0.0.1",
            persistence_dir="/tmp/data",
            log_file="/tmp/m.log",
            run_as_user="me",
        )
    )
    assert [line for line in conf if line.startswith("listener")] == ["listener 18883 127.0.0.1"]
    assert "password_file /srv/bosai/passwords" in conf and "cafile /srv/bosai/ca.crt" in conf
    assert not any("crlfile" in line or "require_certificate" in line for line in conf)
    assert {"persistence_location /tmp/data/", "log_dest file /tmp/m.log", "user me"} <= set(conf)
    with pytest.raises(ValueError):
        broker_conf(port=8883, cert_port=8883)
    with pytest.raises(ValueError):
        broker_conf(port=8883, cloud_port=8883)
    with pytest.raises(ValueError):
        broker_conf(cloud_bind_address=" ")
    cloud = directives(broker_conf(cloud_port=18885, cloud_bind_address="10.0.0.5"))
    assert "listener 18885 10.0.0.5" in cloud
    assert [line for line in directives(broker_conf(cloud_port=None)) if line.startswith("listener")] == [
        "listener 8883",
        "listener 8884",
    ]


def test_every_directive_has_a_comment_saying_why() -> None:
    blocks = broker_conf(run_as_user="x").split("\n\n")
    for block in blocks:
        assert block.lstrip().startswith("#"), block


def test_shipped_examples_are_what_the_code_writes() -> None:
    deploy = REPO_ROOT / "deploy" / "mosquitto"
    for name, text in deploy_examples().items():
        assert (deploy / name).read_text() == text, (
            f"deploy/mosquitto/{name} differs from the generator: run `python -m provision.mosquitto`"
        )
