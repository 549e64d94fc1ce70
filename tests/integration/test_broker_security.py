"""The broker's side of provisioning in a real Mosquitto 2.0.11 started with the config, password
file, ACL and certificates that provision/ generates: TLS only, no anonymous access, a gateway
writes only its own topics and reads only its own config, revocation and rotation by reload,
client certificates with a CRL, and failed logins reported from the broker's log.

What Mosquitto really does, found here and asserted below:
- a refused publish gets an MQTT 5 PUBACK "not authorized" (0x87) and reaches no subscriber;
- a subscription the ACL does not allow is GRANTED (SUBACK QoS 1): Mosquitto 2.0's acl_file
  checks every delivery instead, so the subscriber receives nothing it may not read;
- a reload (SIGHUP) disconnects clients whose password is no longer in the password file and
  keeps the others connected; a client-certificate session survives a CRL revocation (only new
  handshakes are checked), but loses every right when its ACL block is removed.
"""

from __future__ import annotations

import itertools
import os
import pwd
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from cloud.brokerlog import AUTH_FAILED, BrokerLogFollower, SecurityEvent
from provision import pki
from provision.mosquitto import (
    GatewayAccess,
    PasswordFile,
    acl_text,
    broker_conf,
    config_topic,
    gateway_username,
    new_password,
)
from tests.servers import GeneratedMosquitto, free_port
from tests.waiting import wait_for
from wire import topics

pytestmark = pytest.mark.integration

TIMEOUT = 10.0
NOT_AUTHORIZED = 0x87
ACCEPTED = (0x00, 0x10)  # PUBACK "success" and "no matching subscribers"
CLOUD = "bosai-cloud"
GATEWAYS = (GatewayAccess("t1", "gwa"), GatewayAccess("t1", "gwb"), GatewayAccess("t2", "gwa"))
GWA, GWB, OTHER_TENANT_GWA = GATEWAYS


@dataclass
class Broker:
    server: GeneratedMosquitto
    etc: Path
    tmp: Path
    port: int
    cert_port: int
    cloud_port: int
    ca: pki.Issued
    passwords: dict[str, str]
    gateways: list[GatewayAccess]
    revoked: list[tuple[int, datetime]] = field(default_factory=list)

    @property
    def password_file(self) -> Path:
        return self.etc / "passwords"

    def write_acl(self) -> None:
        (self.etc / "acl").write_text(acl_text(self.gateways, cloud_users=[CLOUD]))

    def write_crl(self) -> None:
        (self.etc / "crl.pem").write_bytes(pki.build_crl(self.ca, self.revoked))

    def client_cert(self, issued: pki.Issued, name: str) -> tuple[Path, Path]:
        cert, key = self.tmp / f"{name}.crt", self.tmp / f"{name}.key"
        cert.write_bytes(issued.cert_pem)
        key.write_bytes(issued.key_pem)
        key.chmod(0o600)
        return cert, key


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    etc = tmp_path / "etc"
    etc.mkdir()
    ca = pki.create_ca("bosai test CA")
    server_cert = pki.issue_server_cert(ca, ["127.0.0.1", "localhost"])
    (etc / "ca.crt").write_bytes(ca.cert_pem)
    (etc / "server.crt").write_bytes(server_cert.cert_pem)
    (etc / "server.key").write_bytes(server_cert.key_pem)
    (etc / "server.key").chmod(0o600)
    passwords = {gw.username: new_password() for gw in GATEWAYS} | {CLOUD: new_password()}
    password_file = PasswordFile.load(etc / "passwords")
    for user, password in passwords.items():
        password_file.set(user, password)
    password_file.save(etc / "passwords")

    workdir = tmp_path / "broker"
    port, cert_port, cloud_port = free_port(), free_port(), free_port()
    conf = broker_conf(
        etc_dir=str(etc),
        port=port,
        cert_port=cert_port,
        cloud_port=cloud_port,
        bind_address="127.0.0.1",
        persistence_dir=str(tmp_path / "data"),
        log_file=str(GeneratedMosquitto.log_file(workdir)),
        # Started as root, Mosquitto would drop to user "mosquitto", who cannot read tmp_path.
        run_as_user=pwd.getpwuid(os.getuid()).pw_name,
        log_acl_denials=True,  # the only way Mosquitto reports ACL denials (test 8 reads them)
    )
    (tmp_path / "data").mkdir()
    state = Broker(
        GeneratedMosquitto(workdir, conf, port),
        etc,
        tmp_path,
        port,
        cert_port,
        cloud_port,
        ca,
        passwords,
        list(GATEWAYS),
    )
    state.write_acl()
    state.write_crl()
    with state.server:
        yield state


_client_numbers = itertools.count(1)


class Client:
    """A paho MQTT 5 client over TLS verifying the broker with the project CA, recording every
    acknowledgement it gets.  Never reconnects by itself: each test decides when to."""

    def __init__(
        self,
        broker: Broker,
        username: str | None = None,
        password: str | None = None,
        *,
        cert: tuple[Path, Path] | None = None,
        tls: bool = True,
        port: int | None = None,
        client_id: str = "",
    ) -> None:
        """`port` defaults to the certificate listener with `cert`, else the password listener."""
        self.port = port or (broker.cert_port if cert else broker.port)
        self.mqtt = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            # Unique ids: a second client with the same id would take the first one's session over.
            client_id=client_id or f"{(username or 'anonymous').replace('/', '-')}-{next(_client_numbers)}",
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        if tls:
            certfile, keyfile = cert or (None, None)
            self.mqtt.tls_set(
                ca_certs=str(broker.etc / "ca.crt"),
                certfile=str(certfile) if certfile else None,
                keyfile=str(keyfile) if keyfile else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        if username is not None:
            self.mqtt.username_pw_set(username, password)
        self.connacks: list[ReasonCode] = []
        self.disconnects: list[ReasonCode] = []
        self.errors: list[Exception] = []
        self.pubacks: dict[int, ReasonCode] = {}
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.local_port = 0
        self._lock = threading.Lock()
        self.mqtt.on_connect = lambda _c, _u, _f, rc, _p: self.connacks.append(rc)
        self.mqtt.on_disconnect = lambda _c, _u, _f, rc, _p: self.disconnects.append(rc)
        self.mqtt.on_publish = lambda _c, _u, mid, rc, _p: self.pubacks.__setitem__(mid, rc)
        self.mqtt.on_subscribe = lambda _c, _u, mid, rcs, _p: self.subacks.__setitem__(mid, rcs)
        self.mqtt.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload)))

    def connect(self) -> bool:
        """Whether the broker accepted the connection (CONNACK success)."""
        try:
            self.mqtt.connect("127.0.0.1", self.port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:  # a handshake refused while connecting
            self.errors.append(exc)
            return False
        sock = self.mqtt.socket()
        if isinstance(sock, socket.socket):  # an ssl.SSLSocket is one too
            self.local_port = sock.getsockname()[1]
        self.mqtt.loop_start()
        wait_for(lambda: bool(self.connacks or self.disconnects), "CONNACK or disconnection", TIMEOUT)
        accepted = bool(self.connacks) and not self.connacks[0].is_failure and not self.disconnects
        if not accepted:
            self.close()
        return accepted

    @property
    def connected(self) -> bool:
        return self.mqtt.is_connected()

    def publish(self, topic: str, payload: bytes = b"{}") -> ReasonCode:
        """QoS 1 publish; the PUBACK's reason code."""
        info = self.mqtt.publish(topic, payload, qos=1)
        wait_for(lambda: info.mid in self.pubacks, f"PUBACK for {topic}", TIMEOUT)
        return self.pubacks[info.mid]

    def subscribe(self, topic_filter: str) -> list[ReasonCode]:
        _, mid = self.mqtt.subscribe(topic_filter, qos=1)
        assert mid is not None
        wait_for(lambda: mid in self.subacks, f"SUBACK for {topic_filter}", TIMEOUT)
        return self.subacks[mid]

    def topics_received(self) -> list[str]:
        return [t for t, _ in list(self.messages)]

    def close(self) -> None:
        if self.mqtt.is_connected():
            self.mqtt.disconnect()
        self.mqtt.loop_stop()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    """Every client a test makes, closed at the end even when the test fails."""
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


def connected(clients: list[Client], broker: Broker, username: str, **kwargs: Any) -> Client:
    if "cert" in kwargs:  # the certificate's CN is the username; the client sends none itself
        client = Client(broker, client_id=f"{username.replace('/', '-')}-cert", **kwargs)
    else:
        client = Client(broker, username, broker.passwords[username], **kwargs)
    clients.append(client)
    assert client.connect(), (username, client.connacks, client.disconnects, client.errors)
    return client


def refused(
    clients: list[Client], broker: Broker, username: str | None, password: str | None, **kwargs: Any
) -> Client:
    client = Client(broker, username, password, **kwargs)
    clients.append(client)
    assert not client.connect(), f"{username} was let in"
    assert not any(not rc.is_failure for rc in client.connacks), client.connacks
    return client


def cloud_watching_telemetry(clients: list[Client], broker: Broker) -> Client:
    cloud = connected(clients, broker, CLOUD, port=broker.cloud_port)
    assert not cloud.subscribe(topics.telemetry_filter())[0].is_failure
    return cloud


def test_provisioned_gateway_publishes_over_tls_and_the_cloud_receives(
    broker: Broker, clients: list[Client]
) -> None:
    cloud = cloud_watching_telemetry(clients, broker)
    gw = connected(clients, broker, GWA.username)
    topic = topics.telemetry(GWA.tenant, GWA.gateway)
    assert not gw.publish(topic, b'{"seq": 1}').is_failure
    wait_for(lambda: (topic, b'{"seq": 1}') in cloud.messages, "the cloud receives the telemetry", TIMEOUT)
    assert gw.publish(topics.status(GWA.tenant, GWA.gateway)).value in ACCEPTED
    assert gw.publish(topics.health(GWA.tenant, GWA.gateway)).value in ACCEPTED


def test_anonymous_wrong_password_unknown_user_and_plain_tcp_are_refused(
    broker: Broker, clients: list[Client]
) -> None:
    for client in (
        refused(clients, broker, None, None),
        refused(clients, broker, GWA.username, broker.passwords[GWB.username]),
        refused(clients, broker, "t1/intruder", new_password()),
        refused(clients, broker, GWA.username, ""),
    ):
        assert [rc.value for rc in client.connacks] == [NOT_AUTHORIZED], client.connacks
    # MQTT in clear text to the TLS port: the broker drops it without a CONNACK.
    plain = refused(clients, broker, GWA.username, broker.passwords[GWA.username], tls=False)
    assert plain.connacks == []


def tls_handshake(broker: Broker, version: ssl.TLSVersion) -> str:
    """The TLS version the broker agreed to, with a client offering only `version`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(broker.etc / "ca.crt"))
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # so that the client at least offers old versions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1_1 is deprecated in Python
        ctx.minimum_version = ctx.maximum_version = version
    with (
        socket.create_connection(("127.0.0.1", broker.port), timeout=TIMEOUT) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return str(tls.version())


def test_tls_1_2_is_the_minimum(broker: Broker) -> None:
    assert tls_handshake(broker, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert tls_handshake(broker, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    # The broker itself answers an older client with a protocol_version alert.
    with pytest.raises(ssl.SSLError, match="ALERT_PROTOCOL_VERSION"):
        tls_handshake(broker, ssl.TLSVersion.TLSv1_1)


def test_gateway_cannot_publish_to_another_gateways_or_tenants_topics(
    broker: Broker, clients: list[Client]
) -> None:
    cloud = cloud_watching_telemetry(clients, broker)
    gw = connected(clients, broker, GWA.username)
    forged = [
        topics.telemetry(GWB.tenant, GWB.gateway),  # same tenant, another gateway
        topics.telemetry(OTHER_TENANT_GWA.tenant, OTHER_TENANT_GWA.gateway),  # same gateway id, other tenant
        topics.status(GWB.tenant, GWB.gateway),
        topics.alert(GWA.tenant, "site-1", "sensor-1", "river_level", "level"),  # alert state is the cloud's
        config_topic(GWB.tenant, GWB.gateway),
        config_topic(GWA.tenant, GWA.gateway),  # its own config is read-only for it
    ]
    for topic in forged:
        assert gw.publish(topic).value == NOT_AUTHORIZED, topic
    own = topics.telemetry(GWA.tenant, GWA.gateway)
    assert not gw.publish(own, b"marker").is_failure
    # The marker comes after the forged messages: once it has arrived, they would have too.
    wait_for(lambda: (own, b"marker") in cloud.messages, "the marker reaches the cloud", TIMEOUT)
    assert cloud.topics_received() == [own]
    assert gw.connected  # denied publishes do not disconnect an MQTT 5 client


def test_gateway_subscribing_to_everything_or_another_gateway_receives_nothing_it_may_not_read(
    broker: Broker, clients: list[Client]
) -> None:
    snoop = connected(clients, broker, GWA.username)
    for topic_filter in ("#", f"{topics.PREFIX}/{GWB.tenant}/{GWB.gateway}/#", f"{topics.PREFIX}/+/+/config"):
        # Mosquitto 2.0's acl_file grants any subscription (SUBACK QoS 1) and checks every delivery.
        assert [rc.value for rc in snoop.subscribe(topic_filter)] == [1], topic_filter
    other = connected(clients, broker, GWB.username)
    cloud = connected(clients, broker, CLOUD, port=broker.cloud_port)
    assert not other.publish(topics.telemetry(GWB.tenant, GWB.gateway)).is_failure
    assert not other.publish(topics.status(GWB.tenant, GWB.gateway)).is_failure
    assert not cloud.publish(
        topics.alert(GWB.tenant, "site-1", "sensor-1", "river_level", "level")
    ).is_failure
    assert not cloud.publish(config_topic(GWB.tenant, GWB.gateway), b"gwb config").is_failure
    assert not cloud.publish(config_topic(OTHER_TENANT_GWA.tenant, OTHER_TENANT_GWA.gateway)).is_failure
    # Its own config is the one thing it may read; sent last, it shows the others were routed.
    own_config = config_topic(GWA.tenant, GWA.gateway)
    assert not cloud.publish(own_config, b"gwa config").is_failure
    wait_for(lambda: (own_config, b"gwa config") in snoop.messages, "the gateway's own config", TIMEOUT)
    # Subscribed through three filters, the one message it may read arrives once per filter that
    # matches ("#" and ".../+/+/config"); nothing else arrives.
    assert set(snoop.messages) == {(own_config, b"gwa config")}, snoop.messages


def test_revoked_gateway_is_cut_off_while_others_keep_working(broker: Broker, clients: list[Client]) -> None:
    revoked = connected(clients, broker, GWA.username)
    kept = connected(clients, broker, GWB.username)
    password_file = PasswordFile.load(broker.password_file)
    assert password_file.remove(GWA.username)
    password_file.save(broker.password_file)
    broker.gateways.remove(GWA)
    broker.write_acl()
    broker.server.reload()

    # Mosquitto re-checks connected clients on reload: the revoked one is disconnected at once.
    wait_for(lambda: bool(revoked.disconnects), "the revoked gateway is disconnected", TIMEOUT)
    refused(clients, broker, GWA.username, broker.passwords[GWA.username])
    assert kept.connected and kept.disconnects == []
    assert not kept.publish(topics.telemetry(GWB.tenant, GWB.gateway)).is_failure
    kept.close()
    again = connected(clients, broker, GWB.username)
    assert not again.publish(topics.telemetry(GWB.tenant, GWB.gateway)).is_failure


def test_rotated_password_replaces_the_old_one(broker: Broker, clients: list[Client]) -> None:
    old = broker.passwords[GWA.username]
    connected(clients, broker, GWA.username).close()
    new = new_password()
    password_file = PasswordFile.load(broker.password_file)
    password_file.set(GWA.username, new)
    password_file.save(broker.password_file)
    broker.server.reload()

    refused(clients, broker, GWA.username, old)
    broker.passwords[GWA.username] = new
    gw = connected(clients, broker, GWA.username)
    assert not gw.publish(topics.telemetry(GWA.tenant, GWA.gateway)).is_failure
    connected(clients, broker, GWB.username)  # the other gateways' passwords are untouched


def test_a_gateways_login_cannot_take_another_gateways_session_over(
    broker: Broker, clients: list[Client]
) -> None:
    victim = connected(clients, broker, GWA.username, client_id="bosai-t1-gwa")
    # GWB's credentials sending GWA's client id, or GWA's username as one: the gateway listener
    # makes the username the client id, so the intruder gets its own session and GWA keeps its.
    for stolen_id in ("bosai-t1-gwa", GWA.username):
        intruder = connected(clients, broker, GWB.username, client_id=stolen_id)
        assert not intruder.publish(topics.telemetry(GWB.tenant, GWB.gateway)).is_failure
        intruder.close()
    cert = broker.client_cert(pki.issue_client_cert(broker.ca, GWB.username), "gwb-id")
    intruder = connected(clients, broker, GWB.username, cert=cert)  # the certificate listener too
    intruder.close()
    assert victim.connected and victim.disconnects == []
    assert not victim.publish(topics.telemetry(GWA.tenant, GWA.gateway)).is_failure

    # It is the username that is the id there: the same login twice is one session, the newer wins.
    first = connected(clients, broker, GWB.username, client_id="first")
    connected(clients, broker, GWB.username, client_id="second")
    wait_for(lambda: bool(first.disconnects), "the first GWB connection to be taken over", TIMEOUT)

    # The cloud listener keeps the client id: two shards of one consumer login, two sessions.
    shards = [
        connected(clients, broker, CLOUD, port=broker.cloud_port, client_id=f"bosai-cloud-s{i}of2")
        for i in range(2)
    ]
    for shard in shards:
        assert not shard.subscribe(topics.telemetry_filter())[0].is_failure
    assert all(shard.connected and shard.disconnects == [] for shard in shards)


def test_client_certificate_listener(broker: Broker, clients: list[Client]) -> None:
    cert_gw = GatewayAccess("t1", "gwc")
    broker.gateways.append(cert_gw)
    broker.write_acl()
    broker.server.reload()
    issued = pki.issue_client_cert(broker.ca, gateway_username(cert_gw.tenant, cert_gw.gateway))
    cert = broker.client_cert(issued, "gwc")

    gw = connected(clients, broker, cert_gw.username, cert=cert)
    # The certificate's CN is its username, so its ACL block applies and only that one.
    assert not gw.publish(topics.telemetry(cert_gw.tenant, cert_gw.gateway)).is_failure
    assert gw.publish(topics.telemetry(GWA.tenant, GWA.gateway)).value == NOT_AUTHORIZED

    refused(clients, broker, None, None, port=broker.cert_port)  # no certificate
    foreign_ca = pki.create_ca("someone else's CA")
    foreign = broker.client_cert(pki.issue_client_cert(foreign_ca, cert_gw.username), "foreign")
    refused(clients, broker, None, None, cert=foreign)
    # A certificate cannot be used on the password listener to skip the password either.
    refused(clients, broker, None, None, cert=cert, port=broker.port)

    # Revocation: CRL plus removal of the ACL block, then reload.
    broker.revoked.append((issued.serial, datetime.now(UTC)))
    broker.write_crl()
    broker.gateways.remove(cert_gw)
    broker.write_acl()
    broker.server.reload()
    refused(clients, broker, None, None, cert=cert)
    # The session opened before the revocation is not dropped by Mosquitto (the CRL is checked
    # at the handshake only), but without its ACL block it can no longer publish anything.
    assert gw.publish(topics.telemetry(cert_gw.tenant, cert_gw.gateway)).value == NOT_AUTHORIZED
    # Another certificate from the same CA still works.
    other = pki.issue_client_cert(broker.ca, GWB.username)
    still = connected(clients, broker, GWB.username, cert=broker.client_cert(other, "gwb"))
    assert not still.publish(topics.telemetry(GWB.tenant, GWB.gateway)).is_failure


def test_failed_login_is_reported_from_the_broker_log_with_its_source(
    broker: Broker, clients: list[Client]
) -> None:
    events: list[SecurityEvent] = []
    follower = BrokerLogFollower(broker.server.log_path, events.append, poll_s=0.05)
    follower.start()
    try:
        wrong = "not-the-password-" + new_password()
        client = refused(clients, broker, GWA.username, wrong)
        source = f"127.0.0.1:{client.local_port}"
        wait_for(
            lambda: any(e.kind == AUTH_FAILED and e.source == source for e in events),
            f"an auth_failed event from {source}",
            5.0,
        )
        # A publish the ACL denies is reported too, with who sent it.
        gw = connected(clients, broker, GWA.username)
        assert gw.publish(topics.telemetry(GWB.tenant, GWB.gateway)).value == NOT_AUTHORIZED
        wait_for(lambda: any(e.kind == "acl_denied" for e in events), "an acl_denied event", 5.0)
    finally:
        follower.stop()
    denied = next(e for e in events if e.kind == "acl_denied")
    assert (denied.username, denied.source) == (GWA.username, f"127.0.0.1:{gw.local_port}")
    for event in events:
        for value in (event.client_id, event.source, event.username, event.detail, event.describe()):
            assert wrong not in value and broker.passwords[GWA.username] not in value
    assert wrong not in broker.server.log_path.read_text()
