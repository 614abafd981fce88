# SPDX-License-Identifier: MIT
"""MQTT over WebSockets with real clients: MQTT.js (Node, test/e2e/js/mqttjs-client.js)
and python3-paho-mqtt over ws:// and wss://, and MQTT.js's browser bundle in headless
Chromium (test/e2e/js/browser.js driving ws-page.html). Each exchanges messages in
both directions with mosquitto_pub/mosquitto_sub on the broker's plain TCP port: a
`protocol websockets` listener, the http_listener's /mqtt, MQTT 5 and 3.1.1, and wss
with a client certificate whose identity is the username an acl_file sees.

MQTT.js and puppeteer-core are in test/e2e/js/node_modules, which `make deps`
installs (npm ci); without them these tests fail and say so."""

import atexit
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

from lqtest import ROOT, conf, pki_dir, serial, wait_for

HOST = "127.0.0.1"
JS = os.path.join(ROOT, "test", "e2e", "js")
CLIENT = os.path.join(JS, "mqttjs-client.js")
BROWSER = os.path.join(JS, "browser.js")
CHROMIUM = "/usr/bin/chromium"

FILES = tempfile.mkdtemp(prefix="lunamq-e2e-ws-")
atexit.register(shutil.rmtree, FILES, True)
ACL = os.path.join(FILES, "acl")
with open(ACL, "w") as _f:
    # anonymous (the TCP clients of the tests): wss/#; the certificate CN=dev1: its own
    _f.write("topic readwrite wss/#\n\nuser dev1\ntopic readwrite wss/dev1/#\n")

# one extra port a test: {tls_port} (the harness gives each test its own, and waits
# for it to open), here a WebSocket or an HTTP listener
WS = ("listener {tls_port} 127.0.0.1", "protocol websockets")
WSS = WS + ("cafile {pki}/ca.crt", "certfile {pki}/server.crt", "keyfile {pki}/server.key",
            "require_certificate true", "use_identity_as_username true", "acl_file " + ACL)
HTTP = ("http_listener {tls_port}",)


def need_js(browser=False):
    """Fail, saying what to do, when MQTT.js or puppeteer-core (or node) is missing."""
    if shutil.which("node") is None:
        raise AssertionError("node is not installed: run `make deps`")
    for m in ("mqtt", "puppeteer-core") if browser else ("mqtt",):
        if not os.path.isfile(os.path.join(JS, "node_modules", m, "package.json")):
            raise AssertionError("%s is not installed in test/e2e/js/node_modules: run "
                                 "`make deps` (it runs npm ci there)" % m)
    if browser and not os.access(CHROMIUM, os.X_OK):
        raise AssertionError(CHROMIUM + " is missing: run `make deps` (Debian's chromium)")


class Proc:
    """A child whose stdout is read line by line by a thread, so that every wait on it
    is bounded; stopped by its PID."""

    def __init__(self, args, stdin=False, env=None):
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.args = args
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  cwd=JS, env=full_env)
        self.lines = []  # stdout, as read so far by wait_line and finish
        self.err = []
        self.eof = False
        self.q = queue.Queue()
        self.readers = [threading.Thread(target=self._read, args=(self.p.stdout, self.q.put),
                                         daemon=True),
                        threading.Thread(target=self._read, args=(self.p.stderr, self.err.append),
                                         daemon=True)]
        for t in self.readers:
            t.start()

    @staticmethod
    def _read(f, put):
        for line in f:
            put(line.rstrip("\n"))
        put(None)  # the end

    def said(self):
        return "%s\nstdout:\n%s\nstderr:\n%s" % (" ".join(self.args[:3]), "\n".join(self.lines),
                                                 "\n".join(l for l in self.err if l)[-3000:])

    def wait_line(self, pred, timeout):
        """The first line (from here on) pred accepts; fails after timeout or at its end."""
        end = time.time() + timeout
        while not self.eof:
            try:
                line = self.q.get(timeout=max(0.01, end - time.time()))
            except queue.Empty:
                raise AssertionError("nothing expected within %.0f s from %s"
                                     % (timeout, self.said()))
            if line is None:
                self.eof = True
                break
            self.lines.append(line)
            if pred(line):
                return line
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        raise AssertionError("output ended (exit status %s) first: %s"
                             % (self.p.returncode, self.said()))

    def send(self, text):
        try:
            self.p.stdin.write(text)
            self.p.stdin.flush()
        except OSError:  # it has gone: say what it said
            self.finish(5)
            raise AssertionError("exited %s before its input: %s" % (self.p.returncode,
                                                                     self.said()))

    def finish(self, timeout):
        """Its exit status, once it exits by itself within timeout (else killed: fails)."""
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError("still running after %.0f s: %s" % (timeout, self.said()))
        for t in self.readers:
            t.join(5)
        while not self.q.empty():
            line = self.q.get()
            if line is not None:
                self.lines.append(line)
        self.eof = True
        return self.p.returncode

    def stop(self):
        """SIGTERM by PID (node and puppeteer clean up on it), then SIGKILL."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        for f in (self.p.stdin, self.p.stdout, self.p.stderr):
            if f:
                try:
                    f.close()
                except OSError:
                    pass


class JsClient(Proc):
    """mqttjs-client.js: one JSON event a line."""

    def __init__(self, *args, stdin=False):
        super().__init__(["node", CLIENT, *args], stdin=stdin)

    def event(self, name, timeout=30):
        line = self.wait_line(lambda l: l.startswith("{") and json.loads(l)["event"] in
                              (name, "error"), timeout)
        ev = json.loads(line)
        assert ev["event"] == name, "%s instead of %s: %s" % (line, name, self.said())
        return ev

    def events(self, name=None):
        evs = [json.loads(l) for l in self.lines if l.startswith("{")]
        return [e for e in evs if name is None or e["event"] == name]


def js_run(*args, timeout=30):
    """mqttjs-client.js to its end: (exit status, its events)."""
    c = JsClient(*args, "--timeout", str(timeout - 5))
    try:
        rc = c.finish(timeout)
    finally:
        c.stop()
    return rc, c.events(), c.said()


def mosq_sub(b, topic, count, version="mqttv5"):
    return subprocess.Popen(["mosquitto_sub", "-h", HOST, "-p", str(b.port), "-V", version,
                             "-t", topic, "-q", "1", "-C", str(count), "-W", "25", "-v"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def sub_lines(s):
    try:
        out, err = s.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        s.kill()
        out, err = s.communicate(timeout=5)
    assert s.returncode == 0, "mosquitto_sub exited %s: %s %s" % (s.returncode, out, err)
    return out.splitlines()


def mosq_pub(b, topic, msg, qos=1, version="mqttv5"):
    r = subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(b.port), "-V", version, "-t",
                        topic, "-m", msg, "-q", str(qos)], capture_output=True, text=True,
                       timeout=15)
    assert r.returncode == 0, r.stderr


def wait_sub(b, topic_filter, n=1):
    """Until the broker has logged n grants of topic_filter."""
    needle = 'subscribe "%s" qos' % topic_filter
    assert wait_for(lambda: b.output().count(needle) >= n, 15), b.output()[-3000:]


def connect_line(b, client_id):
    lines = [ln for ln in b.output().splitlines()
             if 'client "%s"' % client_id in ln and ": connected (" in ln]
    assert lines, b.output()[-3000:]
    return lines[-1]


# ---- MQTT.js (Node) ----

def mqttjs_both_ways(b, url, version, tag, tls=()):
    """MQTT.js at url: it receives QoS 0, 1, 2 from mosquitto_pub on TCP, and its three
    QoS 1 publishes reach a mosquitto_sub on TCP."""
    need_js()
    mversion = "mqttv5" if version == "5" else "mqttv311"
    sub = mosq_sub(b, tag + "/from-js/#", 3, mversion)
    js = None
    try:
        wait_sub(b, tag + "/from-js/#")
        js = JsClient("--url", url, *tls, "--protocol-version", version, "--client-id",
                      "js-" + tag.replace("/", "-"), "--sub", tag + "/to-js/#", "--sub-qos", "2",
                      "--expect", "3", "--wait-stdin", "--pub", tag + "/from-js/m", "--payload",
                      "js says {n}", "--qos", "1", "--count", "3", "--timeout", "40", stdin=True)
        assert js.event("subscribed")["granted"] == [2]
        js.event("ready")
        for q in (0, 1, 2):
            mosq_pub(b, "%s/to-js/q%d" % (tag, q), "to js %d" % q, q, mversion)
        js.send("go\n")  # now MQTT.js publishes
        assert js.finish(45) == 0, js.said()
        got = sorted((m["topic"], m["payload"], m["qos"]) for m in js.events("message"))
        assert got == [("%s/to-js/q%d" % (tag, q), "to js %d" % q, q) for q in (0, 1, 2)], got
        assert js.events("published") == [{"event": "published", "count": 3}], js.said()
        assert sorted(sub_lines(sub)) == ["%s/from-js/m js says %d" % (tag, n) for n in (1, 2, 3)]
    finally:
        if js:
            js.stop()
        if sub.poll() is None:
            sub.kill()
            sub.wait(5)
    line = connect_line(b, "js-" + tag.replace("/", "-"))
    assert "connected (MQTT %s" % ("5.0" if version == "5" else "3.1.1") in line, line
    return line


@conf(*WS)
def test_mqttjs_ws_v5_with_mosquitto_on_tcp(b):
    """MQTT.js over ws:// (MQTT 5) and mosquitto_pub/mosquitto_sub over TCP, both ways."""
    mqttjs_both_ways(b, "ws://127.0.0.1:%d/mqtt" % b.tls_port, "5", "ws5")


@conf(*WS)
def test_mqttjs_ws_v311_with_mosquitto_on_tcp(b):
    """The same in MQTT 3.1.1."""
    mqttjs_both_ways(b, "ws://127.0.0.1:%d/mqtt" % b.tls_port, "4", "ws4")


@conf(*HTTP)
def test_mqttjs_on_the_http_listener(b):
    """The http_listener's /mqtt: MQTT.js over ws:// both ways; another path is no
    WebSocket."""
    base = "ws://127.0.0.1:%d" % b.tls_port
    mqttjs_both_ways(b, base + "/mqtt", "5", "http")
    rc, evs, said = js_run("--url", base + "/elsewhere", "--pub", "http/x", "--payload", "x")
    assert rc == 1 and not [e for e in evs if e["event"] == "connected"], said


@conf(*WSS)
def test_mqttjs_wss_client_certificate_and_acl(b):
    """wss:// with the certificate of dev1 (use_identity_as_username: the acl_file's user
    dev1): its own topics go through both ways; a topic outside its rules is refused
    (MQTT 5: PUBACK and SUBACK 0x87) and not delivered (3.1.1: dropped silently);
    without a client certificate, or with one of another CA, no connection."""
    need_js()
    d = pki_dir()
    url = "wss://127.0.0.1:%d/mqtt" % b.tls_port
    ca = ["--ca", d + "/ca.crt"]
    dev1 = ca + ["--cert", d + "/dev1.crt", "--key", d + "/dev1.key"]
    watch = mosq_sub(b, "wss/#", 2)  # anonymous, on TCP
    try:
        wait_sub(b, "wss/#")
        rc, evs, said = js_run("--url", url, *dev1, "--pub", "wss/dev2/t", "--payload",
                               "denied v5", "--qos", "1")
        assert rc == 1 and evs[-1]["event"] == "error", said
        assert evs[-1]["code"] == 0x87 and "Not authorized" in evs[-1]["message"], said
        rc, evs, said = js_run("--url", url, *dev1, "--protocol-version", "4", "--pub",
                               "wss/dev2/t", "--payload", "denied v311", "--qos", "1")
        assert rc == 0, said  # 3.1.1 cannot say no: PUBACK, and the message is dropped
        rc, evs, said = js_run("--url", url, *dev1, "--sub", "wss/dev2/#")
        assert rc == 1 and "Subscribe error: Not authorized" in evs[-1]["message"], said
        # its own topics, both ways
        mqttjs_both_ways(b, url, "5", "wss/dev1", tls=dev1)
        # the denied messages reached nobody: the TCP watcher's first two are later ones
        assert sorted(sub_lines(watch)) == ["wss/dev1/to-js/q0 to js 0",
                                            "wss/dev1/to-js/q1 to js 1"]
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait(5)
    log = b.output()
    assert log.count('subscribe "wss/dev2/#" refused') == 1, log[-3000:]
    line = connect_line(b, "js-wss-dev1")
    assert "MQTT 5.0 over TLS" in line and 'username "dev1"' in line, line
    # no client certificate; a certificate of another CA
    rc, evs, said = js_run("--url", url, *ca, "--pub", "wss/dev1/x", "--payload", "x")
    assert rc == 1 and not [e for e in evs if e["event"] == "connected"], said
    assert b.wait_log("Certificate was missing", 5), b.output()[-3000:]
    rc, evs, said = js_run("--url", url, *ca, "--cert", d + "/stranger.crt", "--key",
                           d + "/stranger.key", "--pub", "wss/dev1/x", "--payload", "x")
    assert rc == 1 and not [e for e in evs if e["event"] == "connected"], said
    assert b.wait_log("not correctly signed by the trusted CA", 5), b.output()[-3000:]
    assert b.output().count(": connected (") == log.count(": connected (")


# ---- paho-mqtt (Python) ----

class Paho:
    """A python3-paho-mqtt 1.6 client over WebSockets, its callbacks into a queue."""

    def __init__(self, client_id, port, protocol, tls=None):
        self.q = queue.Queue()
        self.c = mqtt.Client(client_id=client_id, transport="websockets", protocol=protocol)
        self.c.ws_set_options(path="/mqtt")
        if tls:
            self.c.tls_set(**tls)
        code = lambda rc: getattr(rc, "value", rc)  # noqa: E731 (5: ReasonCodes; 3.1.1: int)
        self.c.on_connect = lambda cl, ud, flags, rc, *props: self.q.put(("connect", code(rc)))
        self.c.on_subscribe = lambda cl, ud, mid, granted, *props: self.q.put(
            ("subscribe", [code(g) for g in granted]))
        self.c.on_message = lambda cl, ud, m: self.q.put(("message", m.topic, m.payload, m.qos))
        self.c.connect(HOST, port, keepalive=30)
        self.c.loop_start()

    def get(self, kind, timeout=15):
        end = time.time() + timeout
        while True:
            try:
                item = self.q.get(timeout=max(0.01, end - time.time()))
            except queue.Empty:
                raise AssertionError("paho: no %s within %.0f s" % (kind, timeout))
            if item[0] == kind:
                return item[1:]

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def paho_both_ways(b, port, protocol, tag, tls=None):
    mversion = "mqttv5" if protocol == mqtt.MQTTv5 else "mqttv311"
    cid = "paho-" + tag.replace("/", "-")
    sub = mosq_sub(b, tag + "/from-paho/#", 1, mversion)
    p = None
    try:
        wait_sub(b, tag + "/from-paho/#")
        p = Paho(cid, port, protocol, tls)
        assert p.get("connect") == (0,)
        p.c.subscribe(tag + "/to-paho/#", qos=1)
        assert p.get("subscribe") == ([1],)
        mosq_pub(b, tag + "/to-paho/x", "to paho", 1, mversion)
        assert p.get("message") == (tag + "/to-paho/x", b"to paho", 1)
        info = p.c.publish(tag + "/from-paho/x", b"from paho", qos=1)
        info.wait_for_publish(15)
        assert info.is_published()
        assert sub_lines(sub) == [tag + "/from-paho/x from paho"]
    finally:
        if p:
            p.close()
        if sub.poll() is None:
            sub.kill()
            sub.wait(5)
    return connect_line(b, cid)


@conf(*WS)
def test_paho_ws_v5_and_v311_with_mosquitto_on_tcp(b):
    """paho-mqtt with transport="websockets" (path /mqtt), MQTT 5 and 3.1.1, both ways
    with mosquitto_pub/mosquitto_sub on TCP."""
    line = paho_both_ways(b, b.tls_port, mqtt.MQTTv5, "paho5")
    assert "connected (MQTT 5.0," in line, line
    line = paho_both_ways(b, b.tls_port, mqtt.MQTTv311, "paho4")
    assert "connected (MQTT 3.1.1," in line, line


@conf(*HTTP)
def test_paho_on_the_http_listener(b):
    line = paho_both_ways(b, b.tls_port, mqtt.MQTTv5, "phttp")
    assert "connected (MQTT 5.0," in line, line


@conf(*WSS)
def test_paho_wss_client_certificate(b):
    """paho-mqtt over wss:// with dev1's certificate (tls_set), both ways."""
    d = pki_dir()
    tls = {"ca_certs": d + "/ca.crt", "certfile": d + "/dev1.crt", "keyfile": d + "/dev1.key"}
    line = paho_both_ways(b, b.tls_port, mqtt.MQTTv5, "wss/dev1/paho", tls)
    assert "MQTT 5.0 over TLS" in line and 'username "dev1"' in line, line
    line = paho_both_ways(b, b.tls_port, mqtt.MQTTv311, "wss/dev1/paho4", tls)
    assert "MQTT 3.1.1 over TLS" in line and 'username "dev1"' in line, line


# ---- a browser ----

@serial  # Chromium loads the machine for a few seconds: not beside timing-bound tests
@conf(*WS)
def test_browser_mqttjs_over_websockets(b):
    """Headless Chromium loads ws-page.html, whose MQTT.js (the browser bundle) connects
    over WebSockets and subscribes; a message from mosquitto_pub on TCP shows in the
    page, and the page's own publish reaches a mosquitto_sub on TCP."""
    need_js(browser=True)
    sub = mosq_sub(b, "web/from-page/#", 1)
    shot = os.path.join(b.dir, "ws-page.png")
    br = None
    try:
        wait_sub(b, "web/from-page/#")
        # TMPDIR: Chromium's profile goes under the test's directory (removed with it)
        br = Proc(["node", BROWSER, "--url", "ws://127.0.0.1:%d/mqtt" % b.tls_port,
                   "--topic", "web/to-page/#", "--publish-topic", "web/from-page/hello",
                   "--publish-payload", "hello from chromium", "--client-id", "chromium-page",
                   "--timeout", "40", "--screenshot", shot], env={"TMPDIR": b.dir})
        br.wait_line(lambda l: l == "READY", 50)
        wait_sub(b, "web/to-page/#")
        mosq_pub(b, "web/to-page/news", "hello browser", 1)
        got = br.wait_line(lambda l: l.startswith("GOT "), 50)
        assert got == "GOT hello browser", br.said()
        assert br.finish(50) == 0, br.said()
        assert "PUBLISHED" in br.lines and "DONE" in br.lines, br.said()
        assert 'MESSAGES ["web/to-page/news hello browser"]' in br.lines, br.said()
        assert not [l for l in br.lines if l.startswith(("PAGEERROR", "CONSOLE error"))], \
            br.said()
        assert sub_lines(sub) == ["web/from-page/hello hello from chromium"]
    finally:
        if br:
            br.stop()
            stop_chromium(br)
        if sub.poll() is None:
            sub.kill()
            sub.wait(5)
    line = connect_line(b, "chromium-page")
    assert "connected (MQTT 5.0," in line, line
    with open(shot, "rb") as f:
        png = f.read()
    assert png.startswith(b"\x89PNG") and len(png) > 5000, len(png)


def stop_chromium(br):
    """browser.js closes Chromium itself; if it could not (killed, hung), Chromium's
    process group, by the PID browser.js printed."""
    pids = [int(l.split()[1]) for l in br.lines if l.startswith("CHROMIUM ")]
    for pid in pids:
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass  # gone already, as it should be
