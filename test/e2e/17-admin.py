# SPDX-License-Identifier: MIT
"""lunamq-ctl against a running broker: known traffic, then every `stats` counter
(--json parsed), clients / client / subscriptions / retained, kick, hooks counters
after a hook dropped and rewrote known numbers of messages, hooks test offline,
reload, and the errors (no socket, no broker, permission)."""

import json
import os
import shutil
import socket
import stat
import subprocess
import time

from lqtest import CTL, ROOT, conf, may_exit, wait_for
from mqttraw import DISCONNECT, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, connected


def ctl(b, *args, check=True):
    r = subprocess.run([CTL, "-s", b.admin, *args], capture_output=True, text=True, timeout=10)
    if check:
        assert r.returncode == 0, (args, r.returncode, r.stderr)
    return r


def ctl_json(b, *args):
    return json.loads(ctl(b, "--json", *args).stdout)


def install(b, name, src):
    before = b.output().count("hook %s: loaded" % name)
    tmp = os.path.join(b.scripts, ".tmp")
    with open(tmp, "w") as f:
        f.write(src)
    os.rename(tmp, os.path.join(b.scripts, name))
    assert wait_for(lambda: b.output().count("hook %s: loaded" % name) > before, 5)


def test_stats_after_known_traffic(b):
    s5 = connected(b.port, "sub5", username="ops")
    s5.subscribe(1, [("t/#", 2), ("other", 0)])
    s3 = connected(b.port, "sub3", version=4)
    s3.subscribe(1, [("t/+", 1)])
    p = connected(b.port, "pub")
    for i in range(5):
        p.publish("t/a", b"q0-%d" % i)
    for i in range(3):
        p.publish("t/b", b"q1", qos=1, pid=10 + i)
        assert p.expect(PUBACK).rc == 0
    p.publish("t/c", b"q2", qos=2, pid=20)
    p.expect(PUBREC)
    p.ack(PUBREL, 20)
    p.expect(PUBCOMP)
    p.publish("nobody/listens", b"x")
    p.publish("keep/1", b"r1", retain=True, qos=1, pid=30)
    p.expect(PUBACK)
    p.publish("keep/2", b"r2", retain=True, qos=1, pid=31)
    p.expect(PUBACK)
    # subscribers: 9 messages each on t/#, t/+ (QoS capped by the subscription)
    for c, n in ((s5, 9), (s3, 9)):
        for _ in range(n):
            m = c.expect(PUBLISH)
            if m.qos == 1:
                c.ack(PUBACK, m.pid)
            elif m.qos == 2:
                c.ack(PUBREC, m.pid)
                c.expect(PUBREL)
                c.ack(PUBCOMP, m.pid)
    time.sleep(0.2)
    st = ctl_json(b, "stats")
    assert st["clients_connected"] == 3 and st["sessions_online"] == 3
    assert st["clients_v5"] == 2 and st["clients_v311"] == 1 and st["clients_tls"] == 0
    assert st["messages_received"] == 12
    assert (st["messages_received_qos0"], st["messages_received_qos1"],
            st["messages_received_qos2"]) == (6, 5, 1)
    assert st["messages_sent"] == 18
    assert st["messages_sent_qos0"] == 10 and st["messages_sent_qos2"] == 1
    assert st["messages_sent_qos1"] == 7
    assert st["dropped_no_subscriber"] == 3  # nobody/listens, keep/1, keep/2
    assert st["retained"] == 2 and st["subscriptions"] == 3
    assert st["bytes_received"] > 12 * 5 and st["bytes_sent"] > 18 * 5
    assert st["bytes_received_qos0"] == 5 * (2 + 2 + 3 + 1 + 4) + (2 + 2 + 14 + 1 + 1)  # t/a, nobody
    assert st["bytes_sent_qos2"] > 0 and st["bytes_received_qos1"] > 0
    assert st["uptime_s"] >= 0 and st["memory_rss_bytes"] > 1 << 20
    assert st["inflight"] == 0 and st["queued"] == 0
    text = ctl(b, "stats").stdout
    assert "messages_received            12" in text, text


def test_clients_client_subscriptions_retained(b):
    c = connected(b.port, "dev-1", username="alice", keepalive=30)
    c.subscribe(1, [("a/#", 1), ("$share/g/b", 0)])
    keep = [connected(b.port, "dev-2"), connected(b.port, "tool")]  # stay connected
    p = connected(b.port, "pub")
    p.publish("keep/x", b"12345", retain=True, qos=1, pid=1)
    p.expect(PUBACK)
    ids = sorted(x["id"] for x in ctl_json(b, "clients", "dev-*"))
    assert ids == ["dev-1", "dev-2"]
    one = ctl_json(b, "client", "dev-1")
    assert one["online"] and one["username"] == "alice" and one["keepalive"] == 30
    assert one["protocol"] == "5.0" and one["address"].startswith("127.0.0.1:")
    assert one["subscriptions"] == 2 and one["bytes_in"] > 0 and one["connected_since"] > 0
    assert sorted(s["filter"] for s in one["subscription_list"]) == ["a/#", "b"]
    subs = ctl_json(b, "subscriptions", "a/#")
    assert [(s["client"], s["filter"], s["qos"]) for s in subs] == [("dev-1", "a/#", 1)]
    shared = [s for s in ctl_json(b, "subscriptions") if s["share_group"]]
    assert shared[0]["share_group"] == "g"
    ret = ctl_json(b, "retained", "keep/#")
    assert [(r["topic"], r["size"]) for r in ret] == [("keep/x", 5)]
    assert ret[0]["age_s"] >= 0
    r = ctl(b, "client", "nobody", check=False)
    assert r.returncode == 1 and "no such client" in r.stderr
    assert len(keep) == 2


def test_kick(b):
    c = connected(b.port, "victim")
    out = ctl_json(b, "kick", "victim")
    assert out == {"kicked": "victim"}
    c.expect_disconnect(0x98)
    assert "kicked by the administrator" in b.output()
    assert ctl(b, "kick", "victim", check=False).returncode == 1


def test_arguments_with_tabs_newlines_and_empty_ones(b):
    """Client ids may hold any character but U+0000: a TAB or a newline in one must not
    split or end the request lunamq-ctl sends, and an empty argument stays one."""
    odd = "dev\tA\nB\\C\x1b[2J"
    c = connected(b.port, odd)
    assert [x["id"] for x in ctl_json(b, "clients", "dev*")] == [odd]
    assert ctl_json(b, "client", odd)["id"] == odd
    text = ctl(b, "clients", "dev*").stdout  # for people: control characters escaped
    assert "dev\\tA\\nB\\C" in text and "\x1b" not in text, text
    assert len([ln for ln in text.splitlines() if ln.strip()]) == 1, text
    assert ctl_json(b, "kick", odd) == {"kicked": odd}
    c.expect_disconnect(0x98)
    r = ctl(b, "client", "", check=False)
    assert r.returncode == 1 and "no such client" in r.stderr, r.stderr


def test_hooks_counters(b):
    install(b, "10-count.lua", '''
return {topics = {"h/#"}, on_publish = function(m)
  if m.payload == "drop" then return nil end
  if m.payload == "up" then m.payload = "UP" return m end
  if m.payload == "two" then return {{topic = "h/1", payload = "1"}, {topic = "h/2", payload = "2"}} end
  if m.payload == "err" then error("bad") end
  return m
end}''')
    p = connected(b.port, "p")
    for payload, n in (("drop", 3), ("up", 2), ("two", 1), ("err", 1), ("same", 4)):
        for _ in range(n):
            p.publish("h/x", payload.encode(), qos=1, pid=1)
            p.expect(PUBACK)
    hooks = ctl_json(b, "hooks")
    h = [x for x in hooks if x["name"] == "10-count.lua"][0]
    assert h["state"] == "loaded" and h["topics"] == "h/#"
    # the fanned-out messages do not go through the hook that made them
    assert (h["calls"], h["dropped"], h["rewritten"], h["fanned_out"], h["errors"],
            h["passed"]) == (11, 3, 2, 2, 1, 4), h
    st = ctl_json(b, "stats")
    assert st["hooks_loaded"] == 1 and st["hook_dropped"] == 3 and st["dropped_hook"] == 3
    # hooks reload picks up a broken file and reports it
    with open(os.path.join(b.scripts, "20-broken.lua"), "w") as f:
        f.write("return 42")
    names = {x["name"]: x for x in ctl_json(b, "hooks", "reload")}
    assert names["20-broken.lua"]["state"] == "failed"
    assert "must return a table" in names["20-broken.lua"]["error"]


def test_hooks_test_offline(b):
    ex = os.path.join(ROOT, "examples", "hooks")
    r = subprocess.run([CTL, "hooks", "test", os.path.join(ex, "temp-range.lua"), "--topic",
                        "sensors/a/temp", "--payload", '{"temp": 999}'],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and r.stdout.strip() == "dropped", (r.stdout, r.stderr)
    r = subprocess.run([CTL, "hooks", "test", os.path.join(ex, "legacy-rewrite.lua"), "--topic",
                        "legacy/m1/data", "--payload", "7", "--qos", "1"],
                       capture_output=True, text=True, timeout=10)
    assert r.stdout.strip() == "publish devices/m1/telemetry qos=1 retain=false payload=7", r
    r = subprocess.run([CTL, "hooks", "test", os.path.join(ex, "temp-range.lua"), "--topic",
                        "sensors/a/temp", "--payload", "nope"], capture_output=True, text=True,
                       timeout=10)
    assert r.stdout.strip() == "refused with reason code 0x99"
    bad = os.path.join(b.dir, "bad.lua")
    with open(bad, "w") as f:
        f.write("return {topics = {}}")
    r = subprocess.run([CTL, "hooks", "test", bad, "--topic", "x"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1 and "does not load" in r.stderr


def test_reload_and_version(b):
    assert ctl_json(b, "version")["version"] == "0.1.0"
    assert ctl_json(b, "reload")["reloaded"] == b.conf_path
    assert b.wait_log("configuration reloaded", 3)


def test_watch_refreshes(b):
    r = subprocess.run(["timeout", "2.5", CTL, "-s", b.admin, "stats", "--watch", "1"],
                       capture_output=True, text=True)
    assert r.stdout.count("messages_received_per_s") >= 2, r.stdout


def test_socket_is_private_and_errors_are_clear(b):
    mode = stat.S_IMODE(os.stat(b.admin).st_mode)
    assert mode == 0o600, oct(mode)
    r = subprocess.run([CTL, "-s", os.path.join(b.dir, "nothing.sock"), "stats"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "no such socket" in r.stderr
    stale = os.path.join(b.dir, "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(stale)
    s.close()  # a socket file nobody listens on
    r = subprocess.run([CTL, "-s", stale, "stats"], capture_output=True, text=True)
    assert r.returncode == 1 and "the broker is not running" in r.stderr
    os.chmod(b.dir, 0o755)  # let nobody reach the directory; the socket itself stays 0600
    # nobody runs a copy: the checkout may sit in a directory only root can enter (a CI
    # clone into `mktemp -d`, mode 0700), which would fail before the socket is tried
    ctl = os.path.join(b.dir, "lunamq-ctl")
    shutil.copy(CTL, ctl)
    os.chmod(ctl, 0o755)
    r = subprocess.run(["runuser", "-u", "nobody", "--", ctl, "-s", b.admin, "stats"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "permission denied" in r.stderr, r.stderr
    r = subprocess.run([CTL, "-s", b.admin, "frobnicate"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown command" in r.stderr


@conf("admin_socket none")
def test_admin_socket_none(b):
    assert not os.path.exists(b.admin)


def traffic(b, n):
    s = connected(b.port, "watcher")
    s.subscribe(1, [("load/#", 0)])
    p = connected(b.port, "loader")
    for i in range(n):
        p.publish("load/x", b"%d" % i)
    for i in range(n):
        s.expect(PUBLISH)
    return s, p


@conf("sys_interval 1")
def test_sys_topics_with_mosquitto_names(b):
    install(b, "10-h.lua", 'return {topics = {"load/#"}, on_publish = function(m) return m end}')
    keep = traffic(b, 7)
    time.sleep(1.3)
    r = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(b.port), "-t",
                        "$SYS/broker/#", "-v", "-W", "2"], capture_output=True, text=True)
    sys = {}
    for line in r.stdout.splitlines():
        k, _, v = line.partition(" ")
        sys.setdefault(k, v)  # the retained value, published before mosquitto_sub connected
    assert sys["$SYS/broker/version"] == "lunamq version 0.1.0"
    assert sys["$SYS/broker/uptime"].endswith(" seconds")
    assert sys["$SYS/broker/clients/connected"] == "2"
    assert sys["$SYS/broker/messages/received"] == "7"
    assert sys["$SYS/broker/messages/sent"] == "7"
    assert int(sys["$SYS/broker/bytes/received"]) > 7
    assert float(sys["$SYS/broker/load/messages/received/1min"]) > 0
    assert sys["$SYS/broker/subscriptions/count"] == "1"
    assert sys["$SYS/broker/hooks/10-h.lua/calls"] == "7"
    assert sys["$SYS/broker/hooks/10-h.lua/passed"] == "7"
    assert ctl_json(b, "stats")["dropped_no_subscriber"] == 0  # $SYS does not count
    assert len(keep) == 2


@conf("metrics_listener {tls_port}")
def test_prometheus_metrics(b):
    install(b, "10-m.lua", 'return {topics = {"load/#"}, on_publish = function(m) return nil end}')
    keep = traffic(b, 0)
    p = connected(b.port, "p2")
    for i in range(5):
        p.publish("load/y", b"x")
    time.sleep(0.3)
    url = "http://127.0.0.1:%d/metrics" % b.tls_port
    r = subprocess.run(["curl", "-s", "-D", "-", url], capture_output=True, text=True, timeout=10)
    head, _, body = r.stdout.partition("\n\n")  # text mode turned CRLF into LF
    assert "200 OK" in head and "text/plain; version=0.0.4" in head, head
    values, types = {}, []
    for line in body.splitlines():
        if line.startswith("# TYPE "):
            types.append(line.split()[2])
        elif line and not line.startswith("#"):
            name, _, v = line.rpartition(" ")
            values[name] = float(v)
    assert len(types) == len(set(types)), "a metric family is declared twice"
    assert values["lunamq_messages_received_total"] == 5
    assert values["lunamq_clients_connected"] == 3
    assert values["lunamq_dropped_hook_total"] == 5
    assert values['lunamq_hook_dropped_total{hook="10-m.lua"}'] == 5
    assert values['lunamq_hook_calls_total{hook="10-m.lua"}'] == 5
    code = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                           url.replace("/metrics", "/")], capture_output=True, text=True).stdout
    assert code == "404"
    assert len(keep) == 2


def test_log_type_and_log_dest_file(b):
    # a broker of its own, without -v, so that log_type decides
    from lqtest import BIN, free_port, wait_port
    port = free_port()
    logf = os.path.join(b.dir, "own.log")
    path = os.path.join(b.dir, "own.conf")
    with open(path, "w") as f:
        f.write("listener %d 127.0.0.1\nallow_anonymous true\nlog_dest file %s\nlog_type notice\n"
                "log_type information\n"
                "admin_socket none\nscripts_dir %s\n" % (port, logf, b.scripts))
    proc = subprocess.Popen([BIN, "-c", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_port(port)
        c = connected(port, "logged-client")
        c.subscribe(1, [("x", 0)])
        c.disconnect()
        c.close()
        assert wait_for(lambda: "disconnected" in open(logf).read(), 5)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    text = open(logf).read()
    lines = [ln for ln in text.splitlines() if "logged-client" in ln]
    # time, level, client id and address
    assert any(ln[:4].isdigit() and " info: client \"logged-client\" 127.0.0.1:" in ln
               for ln in lines), text
    assert "subscribe: " not in text and "debug: " not in text  # types not selected
    assert out == b"" and err == b""  # nothing on stderr with log_dest file only


def test_log_dest_syslog(b):
    """log_dest syslog: lines reach the syslog socket with the daemon facility, the
    level as priority and lunamq[PID] as tag. The test listens on /dev/log itself: it
    creates the socket when the machine has none (and removes it after), or runs the
    broker in a mount namespace with its socket bound over the machine's."""
    from lqtest import BIN, free_port, wait_port
    port = free_port()
    path = os.path.join(b.dir, "syslog.conf")
    with open(path, "w") as f:
        f.write("listener %d 127.0.0.1\nallow_anonymous true\nlog_dest syslog\nlog_type notice\n"
                "log_type information\n"
                "admin_socket none\nscripts_dir %s\n" % (port, b.scripts))
    own = not os.path.exists("/dev/log")
    sock_path = "/dev/log" if own else os.path.join(b.dir, "log.sock")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(sock_path)
    sink.settimeout(5)
    cmd = [BIN, "-c", path]
    if not own:
        cmd = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /dev/log && exec "$@"',
               sock_path] + cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got = []
    try:
        assert wait_port(port)
        c = connected(port, "syslogged-client")
        c.disconnect()
        c.close()
        end = time.time() + 5
        while time.time() < end and not any(b"disconnected" in g for g in got):
            got.append(sink.recv(4096))
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
        sink.close()
        if own:
            os.unlink("/dev/log")
    tag = b"lunamq[%d]: " % proc.pid  # unshare and sh exec: the same process
    assert any(g.startswith(b"<29>") and tag + b"listening on 127.0.0.1:%d" % port in g
               for g in got), got  # LOG_DAEMON | LOG_NOTICE
    assert any(g.startswith(b"<30>") and b'client "syslogged-client" 127.0.0.1:' in g
               and b"connected (MQTT 5.0" in g for g in got), got  # LOG_DAEMON | LOG_INFO
    assert out == b"" and err == b""  # syslog only: nothing on stderr


def test_hooks_test_json(b):
    """issue 12.9: `--json hooks test` prints one JSON document, even with stderr merged
    into stdout: the hook's log lines are a field of it."""
    ex = os.path.join(ROOT, "examples", "hooks")
    hook = os.path.join(b.dir, "noisy.lua")
    with open(hook, "w") as f:
        f.write('print("loading noisy")\n'
                'return {topics = {"n/#"}, on_publish = function(m)\n'
                '  broker.log("info", "seen " .. m.topic)\n'
                '  broker.publish("copy/" .. m.topic, m.payload)\n'
                '  m.payload = "up" return m end}\n')
    r = subprocess.run([CTL, "--json", "hooks", "test", hook, "--topic", "n/1", "--payload", "p"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=10)
    assert r.returncode == 0, r.stdout
    doc = json.loads(r.stdout)
    assert doc["result"] == "published", doc
    assert [(m["kind"], m["topic"], m["payload"]) for m in doc["messages"]] == [
        ("broker.publish", "copy/n/1", "p"), ("publish", "n/1", "up")], doc
    assert "loading noisy" in doc["log"] and "seen n/1" in doc["log"], doc
    for args, result in ((["--payload", '{"temp": 999}'], "dropped"),
                         (["--payload", "nope"], "refused")):
        r = subprocess.run([CTL, "hooks", "test", os.path.join(ex, "temp-range.lua"), "--topic",
                            "sensors/a/temp", *args, "--json"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=10)
        doc = json.loads(r.stdout)
        assert doc["result"] == result, doc
    assert doc["reason_code"] == 0x99
    r = subprocess.run([CTL, "--json", "hooks", "test", hook, "--topic", "other"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=10)
    assert json.loads(r.stdout)["result"] == "no match", r.stdout
    bad = os.path.join(b.dir, "bad.lua")
    with open(bad, "w") as f:
        f.write("return {topics = {}}")
    r = subprocess.run([CTL, "--json", "hooks", "test", bad, "--topic", "x"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=10)
    doc = json.loads(r.stdout)
    assert r.returncode == 1 and doc["result"] == "does not load" and doc["error"], doc


def test_watch_rejects_bad_intervals(b):
    """issue 12.10: --watch 0, -1, abc (and a missing or trailing-junk value) are usage
    errors, status 2, instead of a silent 1 s."""
    for bad in ("0", "-1", "abc", "1x", "0.05"):
        r = subprocess.run(["timeout", "3", CTL, "-s", b.admin, "stats", "--watch", bad],
                           capture_output=True, text=True)
        assert r.returncode == 2 and "--watch" in r.stderr, (bad, r.returncode, r.stderr)


def test_watch_json_lines(b):
    """issue 12.10: with --json, --watch prints one JSON object per line, no headers."""
    r = subprocess.run(["timeout", "2.5", CTL, "-s", b.admin, "--json", "stats", "--watch",
                        "0.5"], capture_output=True, text=True)
    lines = r.stdout.splitlines()
    assert len(lines) >= 3, r.stdout
    for line in lines:
        assert json.loads(line)["version"] == "0.1.0", line


def test_reload_reports_restart_only_changes(b):
    """issue 12.13: a reload that cannot apply a change (a new listener, another
    admin_socket or metrics_listener) says so in its reply and in the log."""
    from lqtest import free_port, wait_port
    port, mport = free_port(), free_port()
    with open(b.conf_path, "a") as f:
        f.write("listener %d 127.0.0.1\nmetrics_listener %d\nmax_inflight_messages 7\n"
                % (port, mport))
    rep = ctl_json(b, "reload")
    assert rep["reloaded"] == b.conf_path
    assert rep["needs_restart"] == "listener, metrics_listener", rep
    assert b.wait_log("reload: listener, metrics_listener changed: not applied until restart")
    text = ctl(b, "reload").stdout
    assert "needs_restart" in text and "listener, metrics_listener" in text, text
    assert not wait_port(port, 0.3)
    assert connected(b.port, "after").connack.props[0x21] == 7  # the rest was applied
    # the admin socket keeps its path, and says so
    with open(b.conf_path, "a") as f:
        f.write("admin_socket %s\n" % os.path.join(b.dir, "other.sock"))
    assert ctl_json(b, "reload")["needs_restart"] == "listener, admin_socket, metrics_listener"
    # an unchanged file needs nothing
    text = open(b.conf_path).read()
    with open(b.conf_path, "w") as f:
        f.write(text.split("listener %d" % port)[0])
    assert ctl_json(b, "reload")["needs_restart"] is None


def test_subscribers_of_a_topic(b):
    """issue 12.15: `subscribers TOPIC` lists who a message on TOPIC reaches (the
    tree's matching, '$' rule included) and, per share group, its members and the one
    the next message would go to."""
    a = connected(b.port, "a")
    a.subscribe(1, [("s/+/x", 1), ("s/#", 0), ("other", 0)])
    c = connected(b.port, "c")
    c.subscribe(1, [("#", 0)])
    g = [connected(b.port, m) for m in ("g1", "g2")]
    for m in g:
        m.subscribe(1, [("$share/grp/s/1/x", 1)])
    subs = ctl_json(b, "subscribers", "s/1/x")
    plain = sorted((x["client"], x["filter"]) for x in subs if not x["share_group"])
    assert plain == [("a", "s/#"), ("a", "s/+/x"), ("c", "#")], subs
    grp = [x for x in subs if x["share_group"]]
    assert len(grp) == 1 and grp[0]["filter"] == "s/1/x" and grp[0]["share_group"] == "grp"
    assert grp[0]["members"] == "g1 g2" and grp[0]["client"] == "g1", grp
    text = ctl(b, "subscribers", "s/1/x").stdout
    assert "group grp: one of g1, g2 (next: g1)" in text, text
    # the next message goes to g1, then the group points at g2
    p = connected(b.port, "p")
    p.publish("s/1/x", b"m", qos=1, pid=1)
    assert g[0].expect(PUBLISH).payload == b"m"
    assert ctl_json(b, "subscribers", "s/1/x")[-1]["client"] == "g2"
    # '#' does not match $SYS topics; a filter is not a topic
    assert ctl_json(b, "subscribers", "$SYS/x") == []
    r = ctl(b, "subscribers", "s/+/x", check=False)
    assert r.returncode == 1 and "not a topic name" in r.stderr
    assert ctl(b, "subscribers", check=False).returncode == 1


@conf("sys_interval 1", "metrics_listener {tls_port}")
def test_counts_agree_in_stats_sys_and_metrics(b):
    """issue 12.15: `retained` and `clients_total` mean the same in stats, $SYS and
    /metrics: retained messages clients published (not the broker's own $SYS ones), and
    sessions (online and offline); connections accepted are `connections_total`."""
    p = connected(b.port, "keeper")
    p.publish("keep/1", b"r", retain=True, qos=1, pid=1)
    p.expect(PUBACK)
    off = connected(b.port, "offline", clean=False, properties=[(0x11, 300)])
    off.close()
    connected(b.port, "brief").close()
    time.sleep(2.3)  # $SYS published (and retained) twice
    st = ctl_json(b, "stats")
    assert st["retained"] == 1 and st["retained_sys"] > 10, st
    assert len(ctl_json(b, "retained")) == st["retained"]
    assert st["clients_total"] == 2 and st["connections_total"] >= 3, st
    r = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(b.port), "-t",
                        "$SYS/broker/#", "-v", "-W", "2"], capture_output=True, text=True)
    sys = {}
    for line in r.stdout.splitlines():
        k, _, v = line.rpartition(" ")  # "retained messages/count" holds a space
        sys.setdefault(k, v)
    assert sys["$SYS/broker/retained messages/count"] == "1", sys
    assert sys["$SYS/broker/clients/total"] == "2"
    body = subprocess.run(["curl", "-s", "http://127.0.0.1:%d/metrics" % b.tls_port],
                          capture_output=True, text=True, timeout=10).stdout
    values = dict(l.rsplit(" ", 1) for l in body.splitlines() if l and not l.startswith("#"))
    assert float(values["lunamq_retained"]) == 1
    assert float(values["lunamq_clients_total"]) == 2
    assert float(values["lunamq_connections_total"]) >= 4
    assert "# TYPE lunamq_clients_total gauge" in body


@may_exit
def test_admin_socket_on_a_regular_file_refused(b):
    """issue 12.14: an admin_socket path naming a regular file is neither deleted at
    start nor at exit: the broker refuses to start (status 3); a stale socket is
    replaced as before."""
    from lqtest import BIN, free_port, wait_port
    victim = os.path.join(b.dir, "precious.txt")
    with open(victim, "w") as f:
        f.write("keep me")
    conf_path = os.path.join(b.dir, "own.conf")
    with open(conf_path, "w") as f:
        f.write("listener %d 127.0.0.1\nadmin_socket %s\nscripts_dir %s\n"
                % (free_port(), victim, b.scripts))
    r = subprocess.run([BIN, "-c", conf_path], capture_output=True, text=True, timeout=10)
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert "admin_socket %s: exists and is not a socket" % victim in r.stderr, r.stderr
    assert open(victim).read() == "keep me"
    # a stale socket (a broker that did not stop cleanly) is replaced
    stale = os.path.join(b.dir, "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(stale)
    s.close()
    port = free_port()
    with open(conf_path, "w") as f:
        f.write("listener %d 127.0.0.1\nadmin_socket %s\nscripts_dir %s\n"
                % (port, stale, b.scripts))
    p = subprocess.Popen([BIN, "-c", conf_path], stderr=subprocess.DEVNULL)
    try:
        assert wait_port(port)
        assert ctl_json(type("B", (), {"admin": stale}), "version")["version"] == "0.1.0"
    finally:
        p.terminate()
        assert p.wait(10) == 0
    assert not os.path.exists(stale)
