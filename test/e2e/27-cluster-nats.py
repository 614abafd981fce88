# SPDX-License-Identifier: MIT
"""Issue 16: how lunamq nodes reach NATS. TLS to nats-server (client certificates it
requires), its user and password, a credentials file, and a NATS cluster of three
routed servers that a node fails over within. Each test starts its own nats-servers
(Debian's) on loopback and free ports, with the test PKI of examples/certs, and stops
them by PID.

A node NATS refuses (no client certificate, another CA, a wrong password) stays
unconnected, says why in its log, and serves its local clients all the while."""

import base64
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

# Debian's python3-cryptography (make deps installs it): NKeys are Ed25519
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import lqtest
from mqttraw import PUBLISH, connected

_spec = importlib.util.spec_from_file_location(
    "cluster26", os.path.join(os.path.dirname(os.path.abspath(__file__)), "26-cluster.py"))
cluster26 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cluster26)
stats, drain, wait_route, NATS = (cluster26.stats, cluster26.drain, cluster26.wait_route,
                                  cluster26.NATS)


class Nats:
    """One nats-server on 127.0.0.1: config is the text of its config file after
    `listen`; args are more command-line arguments."""

    def __init__(self, config="", args=(), monitor=False):
        self.port = lqtest.free_port()
        self.dir = tempfile.mkdtemp(prefix="lunamq-nats-")
        self.url = "nats://127.0.0.1:%d" % self.port
        path = os.path.join(self.dir, "nats.conf")
        with open(path, "w") as f:
            f.write("listen: 127.0.0.1:%d\n%s\n" % (self.port, config))
        cmd = [NATS, "-c", path, "-l", os.path.join(self.dir, "nats.log")] + list(args)
        self.monitor = lqtest.free_port() if monitor else None
        if monitor:
            cmd += ["-m", str(self.monitor)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not lqtest.wait_port(self.port, proc=self.proc):
            self.stop()
            raise AssertionError("nats-server did not start")

    def routes(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/routez" % self.monitor,
                                    timeout=2) as r:
            return json.load(r)["num_routes"]

    def log(self):
        with open(os.path.join(self.dir, "nats.log"), errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, True)


def node(name, url, *lines):
    """A started lunamq node of cluster t."""
    b = lqtest.Broker(["cluster_name t", "cluster_node_id " + name, "cluster_nats_url " + url]
                      + list(lines))
    b.start()
    return b


def stop_all(nodes, servers):
    for b in nodes:
        b.stop(timeout=5)
    for n in servers:
        n.stop()


def wait_connected(b, timeout=10):
    assert lqtest.wait_for(lambda: stats(b)["cluster_connected"] == 1, timeout), \
        "node not connected to NATS:\n" + b.output()[-2000:]


def assert_refused(b, why):
    """b tried, was refused (its log says why), is not connected, and serves its own
    clients: a subscriber gets what a publisher on the same node sends."""
    assert b.wait_log("cannot connect to NATS", 10), b.output()[-2000:]
    assert why in b.output(), b.output()[-2000:]
    assert stats(b)["cluster_connected"] == 0
    sub = connected(b.port, "local-sub")
    sub.subscribe(1, [("local/#", 1)])  # the SUBACK does not wait for a NATS it lacks
    pub = connected(b.port, "local-pub")
    pub.publish("local/x", b"here")
    assert drain(sub, 0.3) == [("local/x", b"here", [])]
    assert stats(b)["cluster_connected"] == 0


def crosses(a, b, topic="x/y"):
    """A message published on node a reaches a subscriber on node b, once."""
    sub = connected(b.port, "cross-sub-%d" % time.monotonic_ns())
    sub.subscribe(1, [(topic, 1)])
    pub = connected(a.port, "cross-pub-%d" % time.monotonic_ns())
    pub.publish(topic, b"crossed")
    return drain(sub, 0.5) == [(topic, b"crossed", [])]


def test_tls_with_client_certificates(_b):
    """nats-server requires TLS and a client certificate of the test CA: two nodes with
    cafile, certfile and keyfile connect and a message crosses; a node without a client
    certificate, and one that trusts another CA (the server's certificate fails its
    check), are not connected and serve local traffic."""
    pki = lqtest.pki_dir()
    nats = Nats("tls {\n cert_file: \"%s/server.crt\"\n key_file: \"%s/server.key\"\n"
                " ca_file: \"%s/ca.crt\"\n verify: true\n timeout: 2\n}" % (pki, pki, pki))
    nodes = []
    try:
        for name, dev in (("n1", "dev1"), ("n2", "dev2")):
            nodes.append(node(name, nats.url, "cluster_nats_cafile %s/ca.crt" % pki,
                              "cluster_nats_certfile %s/%s.crt" % (pki, dev),
                              "cluster_nats_keyfile %s/%s.key" % (pki, dev)))
        no_cert = node("n3", nats.url, "cluster_nats_cafile %s/ca.crt" % pki)
        other_ca = node("n4", nats.url, "cluster_nats_cafile %s/other-ca.crt" % pki,
                        "cluster_nats_certfile %s/dev3.crt" % pki,
                        "cluster_nats_keyfile %s/dev3.key" % pki)
        nodes += [no_cert, other_ca]
        n1, n2 = nodes[:2]
        wait_connected(n1)
        wait_connected(n2)
        assert "NATS at %s (TLS)" % nats.url in n1.output()
        assert crosses(n1, n2) and crosses(n2, n1, "z")
        assert_refused(no_cert, "cannot connect to NATS at " + nats.url)
        assert_refused(other_ca, "unable to get local issuer certificate")
        assert "TLS handshake error" in nats.log()  # the node without a certificate
        assert stats(n1)["cluster_connected"] == 1  # the refused ones changed nothing
    finally:
        stop_all(nodes, [nats])


def test_user_and_password(_b):
    """nats-server requires a user and password: two nodes with the right ones connect
    and a message crosses; a node with a wrong password is not connected, says so, serves
    local traffic, and keeps trying (libnats gives a refused connection up: lunamq makes
    a new one)."""
    nats = Nats("authorization {\n user: lq\n password: s3cret\n}")
    nodes = []
    try:
        for name in ("n1", "n2"):
            nodes.append(node(name, nats.url, "cluster_nats_username lq",
                              "cluster_nats_password s3cret"))
        wrong = node("n3", nats.url, "cluster_nats_username lq", "cluster_nats_password nope")
        nodes.append(wrong)
        n1, n2 = nodes[:2]
        wait_connected(n1)
        wait_connected(n2)
        assert crosses(n1, n2)
        assert_refused(wrong, "Authorization Violation")
        tries = nats.log().count("authentication error")
        assert lqtest.wait_for(lambda: nats.log().count("authentication error") > tries, 5), \
            "the refused node stopped trying"
        assert wrong.output().count("cannot connect to NATS") == 1, wrong.output()[-2000:]
        assert stats(wrong)["cluster_connected"] == 0
    finally:
        stop_all(nodes, [nats])


# ---- NATS operator mode, made here (no nsc): NKeys and the JWTs they sign ----

NKEY_PREFIX = {"operator": 14 << 3, "account": 0, "user": 20 << 3}
NKEY_SEED = 18 << 3


def crc16(data):  # CRC-16/XMODEM, as NKeys end with
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def nkey_text(raw):
    return base64.b32encode(raw + crc16(raw).to_bytes(2, "little")).decode().rstrip("=")


class NKey:
    """An Ed25519 key as NATS writes it: public key and seed, each with its kind."""

    def __init__(self, kind):
        self.key = Ed25519PrivateKey.generate()
        pub = self.key.public_key().public_bytes(serialization.Encoding.Raw,
                                                 serialization.PublicFormat.Raw)
        raw = self.key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                     serialization.NoEncryption())
        p = NKEY_PREFIX[kind]
        self.public = nkey_text(bytes([p]) + pub)
        self.seed = nkey_text(bytes([NKEY_SEED | p >> 5, (p & 31) << 3]) + raw)


def b64url(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def nats_jwt(issuer, subject, nats):
    claims = {"iat": int(time.time()), "iss": issuer.public, "sub": subject.public,
              "name": subject.public[:8], "nats": dict(nats, version=2)}
    claims["jti"] = base64.b32encode(
        hashlib.sha256(json.dumps(claims).encode()).digest()).decode().rstrip("=")
    signed = b64url(b'{"typ":"JWT","alg":"ed25519-nkey"}') + "." + \
        b64url(json.dumps(claims).encode())
    return signed + "." + b64url(issuer.key.sign(signed.encode()))


def operator_mode(d):
    """nats-server config lines for an operator with one account (in memory), and
    d/user.creds of a user of it, d/stranger.creds of a user of an account NATS does
    not know."""
    op, acc, other = NKey("operator"), NKey("account"), NKey("account")
    unlimited = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                 "wildcards": True, "conn": -1, "leaf": -1}
    config = "operator: %s\nresolver: MEMORY\nresolver_preload: {\n %s: %s\n}\n" % (
        nats_jwt(op, op, {"type": "operator"}), acc.public,
        nats_jwt(op, acc, {"type": "account", "limits": unlimited}))
    for name, account in (("user", acc), ("stranger", other)):
        user = NKey("user")
        with open(os.path.join(d, name + ".creds"), "w") as f:
            f.write("-----BEGIN NATS USER JWT-----\n%s\n------END NATS USER JWT------\n\n"
                    "-----BEGIN USER NKEY SEED-----\n%s\n------END USER NKEY SEED------\n"
                    % (nats_jwt(account, user, {"type": "user", "subs": -1, "data": -1,
                                                "payload": -1}), user.seed))
    return config


def test_credentials_file(_b):
    """NATS in operator mode (JWTs, no passwords): two nodes with a .creds file of a user
    of its account connect and a message crosses; a node whose user belongs to an account
    NATS does not know is refused and serves local traffic."""
    d = tempfile.mkdtemp(prefix="lunamq-creds-")
    nats = Nats(operator_mode(d))
    nodes = []
    try:
        for name in ("n1", "n2"):
            nodes.append(node(name, nats.url, "cluster_nats_credentials %s/user.creds" % d))
        stranger = node("n3", nats.url, "cluster_nats_credentials %s/stranger.creds" % d)
        nodes.append(stranger)
        n1, n2 = nodes[:2]
        wait_connected(n1)
        wait_connected(n2)
        assert "(credentials file)" in n1.output()
        assert crosses(n1, n2)
        assert_refused(stranger, "Authorization Violation")
    finally:
        stop_all(nodes, [nats])
        shutil.rmtree(d, True)


def refuses_to_start(lines, why):
    b = lqtest.Broker(["cluster_name t", "cluster_nats_url nats://127.0.0.1:1"] + lines)
    try:
        assert not b.start_or_exit(), "started with " + repr(lines)
        assert b.proc.returncode != 0
        assert why in b.output(), b.output()
    finally:
        b.stop()
        shutil.rmtree(b.dir, True)


def test_bad_files_refuse_start(_b):
    """A credentials file, CA, certificate or key that cannot be read or used, and a
    certificate without its key, stop the broker at start with what is wrong (not a
    connection that fails later in the background)."""
    pki = lqtest.pki_dir()
    d = tempfile.mkdtemp(prefix="lunamq-creds-")
    try:
        junk = os.path.join(d, "junk.creds")
        with open(junk, "w") as f:
            f.write("not a credentials file\n")
        refuses_to_start(["cluster_nats_credentials %s/missing.creds" % d],
                         "cluster_nats_credentials %s/missing.creds: cannot read: No such file"
                         % d)
        refuses_to_start(["cluster_nats_credentials " + junk],
                         "cluster_nats_credentials %s: not a NATS credentials file" % junk)
        refuses_to_start(["cluster_nats_cafile %s/missing.crt" % d],
                         "cluster_nats_cafile %s/missing.crt: cannot read" % d)
        refuses_to_start(["cluster_nats_cafile " + junk], "cluster: NATS cluster_nats_cafile: ")
        refuses_to_start(["cluster_nats_cafile %s/ca.crt" % pki,
                          "cluster_nats_certfile %s/dev1.crt" % pki,
                          "cluster_nats_keyfile %s/missing.key" % d],
                         "cluster_nats_keyfile %s/missing.key: cannot read" % d)
        refuses_to_start(["cluster_nats_certfile %s/dev1.crt" % pki,
                          "cluster_nats_keyfile %s/dev2.key" % pki],
                         "cluster: NATS cluster_nats_certfile/keyfile: ")
        refuses_to_start(["cluster_nats_certfile %s/dev1.crt" % pki],
                         "cluster_nats_certfile and cluster_nats_keyfile go together")
    finally:
        shutil.rmtree(d, True)


def test_three_routed_nats_servers_and_failover(_b):
    """Three nats-servers routed into one NATS cluster, a node on each listing its own
    server first: a message published on node 1 reaches a '#' and an exact-topic
    subscriber on nodes 2 and 3 once each. Then node 1's server stops: node 1 reconnects
    to the next server of its list and messages cross again, both ways."""
    cports = [lqtest.free_port() for _ in range(3)]
    servers, nodes = [], []
    try:
        for i in range(3):
            routes = ",".join("nats://127.0.0.1:%d" % p for j, p in enumerate(cports) if j != i)
            servers.append(Nats(args=["--cluster_name", "lqtest", "--cluster",
                                      "nats://127.0.0.1:%d" % cports[i], "--routes", routes],
                                monitor=True))
        assert lqtest.wait_for(lambda: all(s.routes() == 2 for s in servers), 10, 0.1), \
            "routes did not form: %r" % [s.routes() for s in servers]
        for i in range(3):
            urls = [servers[i].url] + [s.url for j, s in enumerate(servers) if j != i]
            # a NATS cluster without JetStream: its requests time out rather than say
            # "no responders"; this test is about routes, so no JetStream is asked for
            nodes.append(node("n%d" % (i + 1), ",".join(urls), "cluster_sessions local",
                              "cluster_retained local"))
        for b in nodes:
            wait_connected(b)
        n1, n2, n3 = nodes
        subs = []
        for b in (n2, n3):
            for f in ("#", "plant/line1/temp"):
                s = connected(b.port, "s%d-%s" % (b.port, "all" if f == "#" else "exact"))
                s.subscribe(1, [(f, 1)])
                subs.append(s)
        pub = connected(n1.port, "pub")
        pub.publish("plant/line1/temp", b"21.5", qos=1, pid=1)
        for s in subs:
            assert drain(s, 0.5) == [("plant/line1/temp", b"21.5", [])]
        back = connected(n1.port, "back")
        back.subscribe(1, [("$reply/#", 1)])  # not matched by "#"
        before = stats(n1)["cluster_reconnects"]
        servers[0].stop()  # node 1's server
        assert lqtest.wait_for(lambda: stats(n1)["cluster_reconnects"] > before
                               and stats(n1)["cluster_connected"] == 1, 10), \
            "node 1 did not reconnect:\n" + n1.output()[-2000:]
        pub.publish("plant/line1/temp", b"22.0", qos=1, pid=2)
        for s in subs:
            assert drain(s, 0.5) == [("plant/line1/temp", b"22.0", [])]
        # node 1's subscription, made again on the new server, reaches the others too
        wait_route(connected(n2.port, "probe"), back, "$reply/x")
        connected(n3.port, "p3").publish("$reply/x", b"ok")
        assert drain(back, 0.5) == [("$reply/x", b"ok", [])]
        for s in subs:  # nothing more, nothing twice
            assert drain(s, 0.2) == []
    finally:
        stop_all(nodes, servers)
