# SPDX-License-Identifier: MIT
"""Access control (issue 14): mosquitto's password_file and acl_file, read unchanged;
where the rules apply (CONNECT, PUBLISH, SUBSCRIBE, delivery, retained messages);
reload; per_listener_settings; password checks off the event loop; lunamq-ctl acl check
and passwd; the same files in Debian's mosquitto."""

import atexit
import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time

import lqtest
from lqtest import CTL, HOST, Broker, conf, free_port, wait_for, wait_port
from mqttraw import PUBACK, PUBLISH, Client, Probe, connected

FILES = tempfile.mkdtemp(prefix="lunamq-e2e-access-")
atexit.register(shutil.rmtree, FILES, True)
PASSWD = os.path.join(FILES, "passwd")  # made by Debian's mosquitto_passwd
ACL = os.path.join(FILES, "acl")

ACL_TEXT = """# rules before any user line: anonymous clients
topic read public/#

user dev
topic readwrite devices/dev/#
topic read fleet/#
topic deny fleet/secret/#

user admin
topic readwrite #

# every client: its own inbox, by client id and by username
pattern readwrite inbox/%c/#
pattern write outbox/%u
"""


def _files():
    subprocess.run(["mosquitto_passwd", "-c", "-b", PASSWD, "dev", "devpass"], check=True)
    subprocess.run(["mosquitto_passwd", "-b", PASSWD, "admin", "adminpass"], check=True)
    subprocess.run(["mosquitto_passwd", "-H", "sha512", "-b", PASSWD, "old", "oldpass"],
                   check=True)  # the older $6$ form
    with open(ACL, "w") as f:
        f.write(ACL_TEXT)


_files()
AUTH = ("allow_anonymous false", "password_file " + PASSWD)
BOTH = AUTH + ("acl_file " + ACL,)


def ctl(b, *args):
    return subprocess.run([CTL, "-s", b.admin, "--json", *args], capture_output=True, text=True,
                          timeout=10)


def stats(b):
    return json.loads(ctl(b, "stats").stdout)


# ---- password_file ----

@conf(*AUTH)
def test_mosquitto_passwd_file_works_unchanged(b):
    """$7$ (PBKDF2-SHA512) and $6$ entries made by Debian's mosquitto_passwd: the right
    password lets in, a wrong one or an unknown user gets 0x86 (v5) / 4 (3.1.1)
    [MQTT-3.1.4-2] [MQTT-4.13.2-1]; no username, allow_anonymous false: 0x87 / 5."""
    assert Client(b.port).connect("d1", username="dev", password=b"devpass").rc == 0
    assert Client(b.port).connect("d2", username="old", password=b"oldpass").rc == 0
    c = Client(b.port)
    assert c.connect("d3", username="dev", password=b"wrong").rc == 0x86
    assert c.closed(2)
    assert Client(b.port).connect("d4", username="nobody", password=b"x").rc == 0x86
    assert Client(b.port).connect("d5", username="dev").rc == 0x86  # no password
    assert Client(b.port, version=4).connect("d6", username="dev", password=b"no").rc == 4
    assert Client(b.port, version=4).connect("d7", username="dev", password=b"devpass").rc == 0
    assert Client(b.port).connect("anon").rc == 0x87
    assert Client(b.port, version=4).connect("anon4").rc == 5
    s = stats(b)
    assert s["auth_bad_password"] >= 4 and s["auth_anonymous_refused"] == 2, s
    assert "devpass" not in b.output() and "wrong" not in b.output()  # never logged


@conf(*AUTH)
def test_real_clients_with_passwords(b):
    """mosquitto_pub/sub and paho with -u/-P."""
    sub = subprocess.Popen(["mosquitto_sub", "-h", HOST, "-p", str(b.port), "-u", "admin", "-P",
                            "adminpass", "-t", "real/#", "-C", "1", "-W", "10"],
                           stdout=subprocess.PIPE, text=True)
    assert b.wait_log("subscribe", 5)
    r = subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(b.port), "-u", "dev", "-P", "nope",
                        "-t", "real/x", "-m", "bad"], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(b.port), "-u", "admin", "-P",
                    "adminpass", "-t", "real/x", "-m", "good"], check=True, timeout=10)
    assert sub.communicate(timeout=10)[0].strip() == "good"
    import paho.mqtt.client as mqtt
    got = []
    c = mqtt.Client(client_id="paho-auth", protocol=mqtt.MQTTv5)
    c.username_pw_set("dev", "wrong")
    c.on_connect = lambda cl, ud, flags, rc, props=None: got.append(rc)
    c.connect(HOST, b.port)
    c.loop_start()
    assert wait_for(lambda: got, 5)
    c.loop_stop()
    assert got[0].value == 0x86


@conf("allow_anonymous true", "password_file " + PASSWD)
def test_anonymous_allowed_but_a_username_is_checked(b):
    assert Client(b.port).connect("anon").rc == 0
    assert Client(b.port).connect("named", username="dev", password=b"bad").rc == 0x86


def _slow_entry(user, password, iterations):
    salt = os.urandom(12)
    h = hashlib.pbkdf2_hmac("sha512", password, salt, iterations)
    return "%s:$7$%d$%s$%s\n" % (user, iterations, base64.b64encode(salt).decode(),
                                 base64.b64encode(h).decode())


SLOW = os.path.join(FILES, "slow-passwd")
with open(SLOW, "w") as _f:
    _f.write(_slow_entry("slow", b"right", 60000))  # tens of ms a check


@conf("allow_anonymous true", "password_file " + SLOW)
def test_password_flood_does_not_stall_others(b):
    """Checks run off the event loop: 40 CONNECTs with a wrong password, each tens of
    ms of PBKDF2, while a second client measures its own round trips; then the right
    password still gets in."""
    with Probe(b.port) as p:
        cs = []
        for i in range(40):
            c = Client(b.port)
            c.connect("flood%d" % i, username="slow", password=b"wrong", expect=False)
            cs.append(c)
        for c in cs:
            ca = c.recv(30)
            assert ca is not None and ca.rc == 0x86, ca
    p.check(0.3)
    assert Client(b.port).connect("ok", username="slow", password=b"right").rc == 0


@conf(*AUTH)
def test_packets_after_connect_wait_for_the_check(b):
    """A client may send before its CONNACK: what follows the CONNECT is handled after
    the answer (and not at all when refused)."""
    c = Client(b.port)
    c.connect("early", username="admin", password=b"adminpass", expect=False)
    c.subscribe(1, [("early/t", 1)], expect=False)
    c.publish("early/t", b"hi", qos=1, pid=2)
    got = [c.recv(5) for _ in range(4)]
    types = [p.type for p in got if p]
    assert types[0] == 2 and got[0].rc == 0  # CONNACK first
    assert PUBLISH in types and PUBACK in types, got
    bad = Client(b.port)
    bad.connect("early-bad", username="admin", password=b"no", expect=False)
    bad.publish("early/t", b"must not pass", qos=0)
    assert bad.recv(5).rc == 0x86
    listener = connected(b.port, "watch", username="admin", password=b"adminpass")
    listener.subscribe(1, [("early/#", 0)])
    listener.expect_none(0.3)


# ---- acl_file ----

@conf(*BOTH)
def test_publish_needs_write_access(b):
    """v5: PUBACK/PUBREC 0x87 and nothing routed; 3.1.1: acknowledged and dropped (as
    mosquitto); QoS 0 dropped; counted."""
    watch = connected(b.port, "watch", username="admin", password=b"adminpass")
    watch.subscribe(1, [("#", 0)])
    dev = connected(b.port, "dev1", username="dev", password=b"devpass")
    dev.publish("fleet/x", b"no", qos=1, pid=7)
    a = dev.expect(PUBACK)
    assert a.pid == 7 and a.rc == 0x87
    dev.publish("fleet/x", b"no", qos=2, pid=8)
    assert dev.recv().rc == 0x87
    dev.publish("fleet/x", b"no", qos=0)
    dev.publish("devices/dev/temp", b"yes", qos=1, pid=9)
    assert dev.expect(PUBACK).rc == 0
    p = watch.expect(PUBLISH)
    assert p.topic == "devices/dev/temp"
    watch.expect_none(0.3)
    dev3 = connected(b.port, "dev3", version=4, username="dev", password=b"devpass")
    dev3.publish("fleet/y", b"no", qos=1, pid=3)
    assert dev3.expect(PUBACK).pid == 3
    watch.expect_none(0.3)
    assert stats(b)["acl_denied_publish"] == 4


@conf(*BOTH)
def test_subscribe_refused_when_nothing_is_readable(b):
    """A filter that can match no readable topic: SUBACK 0x87 (v5) / 0x80 (3.1.1) for
    that filter, the others granted."""
    dev = connected(b.port, "dev2", username="dev", password=b"devpass")
    assert dev.subscribe(1, [("admin/#", 1), ("fleet/#", 1), ("fleet/secret/x", 0)]).codes == \
        [0x87, 1, 0x87]
    dev3 = connected(b.port, "dev3s", version=4, username="dev", password=b"devpass")
    assert dev3.subscribe(1, [("admin/#", 1), ("devices/dev/+", 1)]).codes == [0x80, 1]


@conf(*BOTH)
def test_wide_subscription_does_not_leak_denied_topics(b):
    """A granted `#` (or `fleet/#` over a deny) delivers only what the subscriber may
    read, retained messages on subscribe included."""
    admin = connected(b.port, "adm", username="admin", password=b"adminpass")
    admin.publish("fleet/secret/plan", b"s", qos=1, pid=1, retain=True)
    admin.expect(PUBACK)
    admin.publish("fleet/open", b"o", qos=1, pid=2, retain=True)
    admin.expect(PUBACK)
    dev = connected(b.port, "devw", username="dev", password=b"devpass")
    assert dev.subscribe(1, [("fleet/#", 0)]).codes == [0]
    p = dev.expect(PUBLISH)
    assert p.topic == "fleet/open"
    dev.expect_none(0.3)
    admin.publish("fleet/secret/new", b"s", qos=0)
    admin.publish("fleet/open2", b"o", qos=0)
    assert dev.expect(PUBLISH).topic == "fleet/open2"
    dev.expect_none(0.3)
    assert stats(b)["acl_denied_delivery"] >= 2


@conf(*BOTH)
def test_patterns_and_anonymous_rules(b):
    """pattern %c / %u for every client; rules before the first user line are the
    anonymous clients' (here none: allow_anonymous false)."""
    dev = connected(b.port, "box7", username="dev", password=b"devpass")
    assert dev.subscribe(1, [("inbox/box7/#", 1), ("inbox/other/#", 1)]).codes == [1, 0x87]
    dev.publish("outbox/dev", b"x", qos=1, pid=1)
    assert dev.expect(PUBACK).rc == 0x10  # allowed, nobody subscribed
    dev.publish("outbox/admin", b"x", qos=1, pid=2)
    assert dev.expect(PUBACK).rc == 0x87


@conf("allow_anonymous true", "acl_file " + ACL)
def test_anonymous_clients_get_the_rules_before_any_user(b):
    c = connected(b.port, "anon")
    assert c.subscribe(1, [("public/#", 0), ("devices/#", 0)]).codes == [0, 0x87]
    c.publish("public/x", b"x", qos=1, pid=1)
    assert c.expect(PUBACK).rc == 0x87  # read only


@conf(*BOTH)
def test_acl_check_command(b):
    r = json.loads(ctl(b, "acl", "check", "dev", "d", "fleet/secret/a", "read").stdout)
    assert r["access"] == "denied" and r["rule"].endswith(":7"), r  # topic deny fleet/secret/#
    r = json.loads(ctl(b, "acl", "check", "dev", "d", "fleet/a", "read").stdout)
    assert r["access"] == "allowed" and r["rule"].endswith(":6"), r
    r = json.loads(ctl(b, "acl", "check", "dev", "box", "inbox/box/1", "write").stdout)
    assert r["access"] == "allowed" and r["rule"].endswith(":13"), r
    r = json.loads(ctl(b, "acl", "check", "", "a", "public/x", "write").stdout)
    assert r["access"] == "denied", r
    assert ctl(b, "acl", "check", "dev").returncode != 0


def test_reload_keeps_rules_when_a_file_is_broken(_b):
    """SIGHUP re-reads both files; one that does not parse is logged and the previous
    rules stay; new rules apply to connected clients from their next packet."""
    acl = os.path.join(FILES, "acl-reload")
    with open(acl, "w") as f:
        f.write("user dev\ntopic readwrite a/#\n")
    b = Broker(conf_lines=AUTH + ("acl_file " + acl,))
    b.start()
    try:
        dev = connected(b.port, "rl", username="dev", password=b"devpass")
        dev.publish("a/1", b"x", qos=1, pid=1)
        assert dev.expect(PUBACK).rc == 0x10
        with open(acl, "w") as f:
            f.write("user dev\ntopic readwrite b/#\nbogus line\n")
        b.send_signal(1)
        assert b.wait_log("the previous password and ACL rules stay", 5), b.output()
        assert "acl-reload:3" in b.output()
        dev.publish("a/1", b"x", qos=1, pid=2)
        assert dev.expect(PUBACK).rc == 0x10  # old rules
        with open(acl, "w") as f:
            f.write("user dev\ntopic readwrite b/#\n")
        b.send_signal(1)
        assert b.wait_log("acl_file: 1 rules", 5) or wait_for(
            lambda: "configuration reloaded" in b.output(), 5)
        time.sleep(0.2)
        dev.publish("a/1", b"x", qos=1, pid=3)
        assert dev.expect(PUBACK).rc == 0x87  # new rules, same connection
        dev.publish("b/1", b"x", qos=1, pid=4)
        assert dev.expect(PUBACK).rc == 0x10
    finally:
        b.stop()


def test_per_listener_settings(_b):
    """Devices on one listener with passwords, a back-end on another anonymous."""
    p1, p2 = free_port(), free_port()
    b = Broker(listeners=False, port=p1, conf_lines=(
        "per_listener_settings true",
        "listener %d %s" % (p1, HOST), "password_file " + PASSWD, "allow_anonymous false",
        "listener %d %s" % (p2, HOST), "allow_anonymous true"))
    b.start()
    try:
        wait_port(p2)
        assert Client(p1).connect("x").rc == 0x87
        assert Client(p1).connect("y", username="dev", password=b"devpass").rc == 0
        assert Client(p2).connect("z").rc == 0
        assert Client(p2).connect("w", username="dev", password=b"anything").rc == 0
    finally:
        b.stop()


# ---- lunamq-ctl passwd, both ways with Debian's mosquitto ----

def test_ctl_passwd_file_works_in_mosquitto_and_lunamq(_b):
    path = os.path.join(FILES, "ctl-passwd")
    subprocess.run([CTL, "passwd", "-c", "-b", path, "alice", "wonder"], check=True, timeout=10)
    subprocess.run([CTL, "passwd", "-b", path, "bob", "builder"], check=True, timeout=10)
    subprocess.run([CTL, "passwd", "-D", path, "bob"], check=True, timeout=10)
    text = open(path).read()
    assert text.startswith("alice:$7$") and "bob" not in text
    port = free_port()
    d = tempfile.mkdtemp(prefix="lunamq-e2e-mosq-", dir=FILES)
    with open(os.path.join(d, "m.conf"), "w") as f:
        # root: it would drop to user mosquitto, who cannot read the files here
        f.write("user root\nlistener %d %s\nallow_anonymous false\npassword_file %s\n"
                "acl_file %s\n" % (port, HOST, path, ACL))
    m = subprocess.Popen(["/usr/sbin/mosquitto", "-c", os.path.join(d, "m.conf")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port, proc=m)
        assert Client(port).connect("a", username="alice", password=b"wonder").rc == 0
        assert Client(port).connect("b", username="alice", password=b"x").rc in (0x86, 0x87)
    finally:
        m.terminate()
        m.wait(10)
    b = Broker(conf_lines=("allow_anonymous false", "password_file " + path))
    b.start()
    try:
        assert Client(b.port).connect("a", username="alice", password=b"wonder").rc == 0
        assert Client(b.port).connect("b", username="bob", password=b"builder").rc == 0x86
    finally:
        b.stop()


# ---- Lua on_connect / on_subscribe ----

GATE = """
return {
  on_connect = function(client)
    if client.username == "vip" then return true end          -- no password asked
    if client.username == "banned" then return false, 0x8A end
    if client.id == "boom" then error("broken hook") end      -- fails closed
    -- nil: the password_file decides
  end,
  on_subscribe = function(client, filter, qos)
    if filter == "cap/#" then return 0 end                    -- granted at QoS 0
    if filter:match("^secret") then return false end
  end,
}
"""


@conf(*BOTH)
def test_hooks_decide_first_then_the_files(b):
    """The chain: on_connect hooks, then password_file, then allow_anonymous; the first
    definite answer wins; a hook error refuses (fail closed), counted."""
    lqtest.install_hook(b, "00-gate.lua", GATE)
    assert Client(b.port).connect("v", username="vip", password=b"whatever").rc == 0
    assert Client(b.port).connect("x", username="banned", password=b"devpass").rc == 0x8A
    assert Client(b.port, version=4).connect("x4", username="banned").rc == 5
    assert Client(b.port).connect("boom", username="dev", password=b"devpass").rc == 0x87
    assert Client(b.port).connect("d", username="dev", password=b"devpass").rc == 0
    assert Client(b.port).connect("e", username="dev", password=b"no").rc == 0x86
    s = stats(b)
    assert s["auth_hook_refused"] == 3 and s["auth_bad_password"] == 1, s
    dev = connected(b.port, "dsub", username="dev", password=b"devpass")
    # cap/# : the hook grants QoS 0 (the ACL still filters what it delivers);
    # secret: the hook refuses; devices/dev/#: no opinion, the ACL grants
    assert dev.subscribe(1, [("cap/#", 2), ("secret/x", 1), ("devices/dev/#", 1)]).codes == \
        [0, 0x87, 1]
    h = json.loads(ctl(b, "hooks").stdout)
    gate = [x for x in h["hooks"] if x["name"] == "00-gate.lua"][0] if isinstance(h, dict) \
        else [x for x in h if x["name"] == "00-gate.lua"][0]
    assert gate["connect_refused"] == 3 and gate["subscribe_refused"] == 1, gate


def test_example_tenant_hook(_b):
    """examples/hooks/tenant.lua: usernames tenant:device, confined to tenants/<tenant>/#."""
    b = Broker(conf_lines=("allow_anonymous true",))
    b.start()
    try:
        src = open(os.path.join(lqtest.ROOT, "examples", "hooks", "tenant.lua")).read()
        lqtest.install_hook(b, "tenant.lua", src)
        assert Client(b.port).connect("n", username="nocolon").rc == 0x86
        c = connected(b.port, "t1", username="acme:dev1")
        assert c.subscribe(1, [("tenants/acme/#", 1), ("tenants/other/#", 1), ("#", 0)]).codes \
            == [1, 0x87, 0x87]
    finally:
        b.stop()


def test_example_acl_file(_b):
    """examples/acl reads in lunamq and in Debian's mosquitto, and means what it says."""
    path = os.path.join(lqtest.ROOT, "examples", "acl")
    b = Broker(conf_lines=("allow_anonymous true", "acl_file " + path))
    b.start()
    try:
        assert b.wait_log("acl_file: 7 rules", 5), b.output()
        for user, cid, topic, want in (("sensor-7", "s7", "devices/sensor-7/t", "write"),
                                       ("dashboard", "d", "commands/x", "write"),
                                       ("", "c9", "commands/c9", "read"),
                                       ("cn-42", "x", "devices/cn-42/a", "write")):
            r = json.loads(ctl(b, "acl", "check", user, cid, topic, want).stdout)
            assert r["access"] == "allowed", (user, topic, r)
        r = json.loads(ctl(b, "acl", "check", "dashboard", "d", "$SYS/broker/uptime",
                           "read").stdout)
        assert r["access"] == "denied", r
    finally:
        b.stop()
    port = free_port()
    conf_path = os.path.join(FILES, "mosq-example.conf")
    with open(conf_path, "w") as f:
        f.write("user root\nlistener %d %s\nallow_anonymous true\nacl_file %s\n"
                % (port, HOST, path))
    m = subprocess.Popen(["/usr/sbin/mosquitto", "-c", conf_path], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc=m)
        assert m.poll() is None
    finally:
        m.terminate()
        m.wait(10)


CERT_ACL = os.path.join(FILES, "cert-acl")
with open(CERT_ACL, "w") as _f:
    _f.write("topic read devices/#\npattern readwrite devices/%u/#\n")


@conf("listener {tls_port} 127.0.0.1", "cafile {pki}/ca.crt", "certfile {pki}/server.crt",
      "keyfile {pki}/server.key", "require_certificate true", "use_identity_as_username true",
      "acl_file " + CERT_ACL)
def test_certificate_cn_selects_its_acl(b):
    """Mutual TLS with use_identity_as_username: the certificate's CN is the username the
    ACL rules see (pattern devices/%u/#)."""
    watch = connected(b.port, "watch")  # anonymous: may read devices/#
    assert watch.subscribe(1, [("devices/#", 0)]).codes == [0]
    d = lqtest.pki_dir()
    for topic in ("devices/dev1/t", "devices/dev2/t"):
        subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(b.tls_port), "--cafile",
                        d + "/ca.crt", "--cert", d + "/dev1.crt", "--key", d + "/dev1.key",
                        "-t", topic, "-m", "x", "-q", "1"], capture_output=True, timeout=15)
    p = watch.expect(PUBLISH)
    assert p.topic == "devices/dev1/t"
    watch.expect_none(0.3)
    assert stats(b)["acl_denied_publish"] == 1


def test_broken_files_stop_start_up_with_file_and_line(_b):
    """A password_file or acl_file that does not parse stops start-up (exit status 3)
    with FILE:LINE and why."""
    for name, text, option, want in (
            ("bad-acl", "user dev\ntopic readwrite a/#\nbogus\n", "acl_file", ":3: unknown"),
            ("bad-pw", "dev:$7$xx\n", "password_file", ":1: the iteration count")):
        path = os.path.join(FILES, name)
        with open(path, "w") as f:
            f.write(text)
        conf_path = path + ".conf"
        with open(conf_path, "w") as f:
            f.write("listener %d %s\n%s %s\nadmin_socket none\n" % (free_port(), HOST, option,
                                                                   path))
        r = subprocess.run([lqtest.BIN, "-c", conf_path], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 3, (r.returncode, r.stderr)
        assert path + want in r.stderr, r.stderr
