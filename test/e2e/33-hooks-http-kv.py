# SPDX-License-Identifier: MIT
"""Hooks that reach out (issue 20): broker.kv (the key-value store hooks share and
lunamq-ctl kv fills, in the journal with persistence true) and broker.http.request
(libcurl on the broker's loop). An HTTP server started by the test plays the outside
world: a collector, a slow endpoint, a dead one and a huge answer; a Probe client
measures its own round trips meanwhile, because a hook's HTTP must never slow anyone."""

import json
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lqtest import install_hook as install, CTL, ROOT, conf, free_port, pki_dir, rss_kb, serial, wait_for
from mqttraw import PUBACK, PUBLISH, USER_PROPERTY, Probe, connected

EXAMPLES = os.path.join(ROOT, "examples", "hooks")
PORT = free_port()  # the test HTTP server's, in the hook_http_allow lines below: one
# port for the module, so its tests run one at a time (SERIAL_FILES in run.py)
URL = "http://127.0.0.1:%d" % PORT


class Server:
    """An HTTP server on 127.0.0.1:PORT, on its own threads: records every request;
    /slow answers after 10 s, /huge sends 5 MB, /status/N answers N, anything else 200
    with a small JSON echo."""

    def __init__(self, port=PORT):
        self.requests = []
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _any(self):
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                with outer.lock:
                    outer.requests.append((self.command, self.path, dict(self.headers), body))
                if self.path.startswith("/slow"):
                    time.sleep(10)
                if self.path.startswith("/huge"):
                    out = b"x" * (5 << 20)
                    code = 200
                elif self.path.startswith("/status/"):
                    code = int(self.path.split("/")[2])
                    out = b"status"
                else:
                    code = 200
                    out = json.dumps({"method": self.command, "path": self.path,
                                      "len": len(body)}).encode()
                try:
                    self.send_response(code)
                    self.send_header("content-type", "application/json")
                    self.send_header("x-test", "yes")
                    self.send_header("content-length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = _any

        self.srv = ThreadingHTTPServer(("127.0.0.1", port), H)
        self.srv.daemon_threads = True
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *a):
        self.srv.shutdown()
        self.srv.server_close()

    def paths(self, method=None):
        with self.lock:
            return [r[1] for r in self.requests if method is None or r[0] == method]


def ctl(b, *args, check=True):
    r = subprocess.run([CTL, "-s", b.admin, *args], capture_output=True, text=True, timeout=30)
    if check:
        assert r.returncode == 0, (args, r.returncode, r.stderr)
    return r


def hook_stats(b, name):
    hooks = json.loads(ctl(b, "--json", "hooks").stdout)
    return [h for h in hooks if h["name"] == name][0]


def stats(b):
    return json.loads(ctl(b, "--json", "stats").stdout)


def install_example(b, name, replace=()):
    with open(os.path.join(EXAMPLES, name)) as f:
        src = f.read()
    for old, new in replace:
        assert old in src, old
        src = src.replace(old, new)
    install(b, name, src)


def sub(b, topic, cid="s"):
    c = connected(b.port, cid)
    c.subscribe(1, [(topic, 1)])
    return c


def got(c, timeout=5.0):
    p = c.expect(PUBLISH, timeout)
    if p.qos:
        c.ack(PUBACK, p.pid)
    return p


# ---- broker.kv and lunamq-ctl kv ----

def test_example_kv_enrich_with_ctl_kv_load(b):
    r = ctl(b, "kv", "load", os.path.join(EXAMPLES, "devices.json"))
    assert "loaded  3" in r.stdout, r.stdout
    value = json.loads(ctl(b, "--json", "kv", "get", "enrich/device/m17").stdout)["value"]
    assert json.loads(value) == {"site": "Lyon", "owner": "ops"}  # an object: its JSON text
    install_example(b, "kv-enrich.lua")
    s = sub(b, "devices/#")
    p = connected(b.port, "p")
    p.publish("devices/m17/telemetry", b"21.5", qos=1, pid=1)
    p.expect(PUBACK)
    m = got(s)
    assert m.props[USER_PROPERTY] == [("site", "Lyon"), ("owner", "ops")], m.props
    p.publish("devices/zz/telemetry", b"1", qos=1, pid=2)
    assert got(s).props[USER_PROPERTY] == [("site", "unknown")]
    # the operator changes a device: the next message carries the new value
    ctl(b, "kv", "set", "enrich/device/zz", '{"site": "Oslo", "owner": "lab"}')
    p.publish("devices/zz/telemetry", b"2", qos=1, pid=3)
    assert got(s).props[USER_PROPERTY] == [("site", "Oslo"), ("owner", "lab")]
    keys = [k["key"] for k in json.loads(ctl(b, "--json", "kv", "list", "enrich/device/").stdout)]
    assert keys == ["enrich/device/m17", "enrich/device/m18", "enrich/device/t4",
                    "enrich/device/zz"], keys
    assert json.loads(ctl(b, "--json", "kv", "del", "enrich/device/zz").stdout)["deleted"] is True
    r = ctl(b, "kv", "get", "enrich/device/zz", check=False)
    assert r.returncode == 1 and "no such key" in r.stderr


def test_ctl_kv_ttl_and_errors(b):
    ctl(b, "kv", "set", "t/short", "v", "0.3")
    assert json.loads(ctl(b, "--json", "kv", "get", "t/short").stdout)["value"] == "v"
    assert wait_for(lambda: ctl(b, "kv", "get", "t/short", check=False).returncode == 1, 3)
    assert wait_for(lambda: stats(b)["kv_expired"] >= 1, 3)  # the sweep reclaimed it
    bad = os.path.join(b.dir, "bad.json")
    with open(bad, "w") as f:
        f.write("[1, 2")
    r = ctl(b, "kv", "load", bad, check=False)
    assert r.returncode == 1 and "not a JSON object" in r.stderr, r.stderr
    r = ctl(b, "kv", "set", "x" * 2000, "v", check=False)
    assert r.returncode == 1 and "1 to 1024" in r.stderr
    r = ctl(b, "kv", "set", "k", "v", "-1", check=False)
    assert r.returncode == 1 and "TTL" in r.stderr


KV_HOOK = '''
return {topics = {"kv/#"}, on_publish = function(m)
  local op, key = m.topic:match("^kv/(%w+)/(.*)$")
  local out
  if op == "set" then
    local ok, err = broker.kv.set("h/" .. key, m.payload)
    out = tostring(ok) .. " " .. tostring(err)
  elseif op == "get" then
    out = tostring(broker.kv.get("h/" .. key))
  elseif op == "del" then
    out = tostring(broker.kv.delete("h/" .. key))
  elseif op == "keys" then
    out = table.concat(broker.kv.keys("h/" .. key), ",")
  elseif op == "ttl" then
    out = tostring(broker.kv.set("h/" .. key, m.payload, 0.2))
  end
  broker.publish("out/" .. op, out)
  return nil
end}'''


@conf("kv_max_bytes 2000")
def test_hook_kv_functions_and_the_bound(b):
    install(b, "kv.lua", KV_HOOK)
    s = sub(b, "out/#")
    p = connected(b.port, "p")

    def ask(topic, payload=b""):
        p.publish(topic, payload, qos=0)
        return got(s).payload.decode()

    assert ask("kv/set/b", b"2") == "true nil"
    assert ask("kv/set/a", b"1") == "true nil"
    assert ask("kv/set/ab", b"12") == "true nil"
    assert ask("kv/get/a") == "1"
    assert ask("kv/keys/a") == "h/a,h/ab"
    assert ask("kv/keys/") == "h/a,h/ab,h/b"
    assert ask("kv/del/a") == "true"
    assert ask("kv/del/a") == "false"
    assert ask("kv/get/a") == "nil"
    assert ask("kv/set/big", b"x" * 3000) == "nil full"
    assert stats(b)["kv_refused_full"] >= 1
    assert ask("kv/ttl/t", b"soon") == "true"
    assert ask("kv/get/t") == "soon"
    time.sleep(0.4)
    assert ask("kv/get/t") == "nil"
    # the operator sees what hooks wrote
    assert json.loads(ctl(b, "--json", "kv", "get", "h/ab").stdout)["value"] == "12"


@conf("persistence true", "persistence_location {dir}/data")
def test_kv_survives_restart_snapshot_and_kill(b):
    install(b, "kv.lua", KV_HOOK)
    ctl(b, "kv", "set", "op/one", "1")
    ctl(b, "kv", "set", "op/gone", "x")
    ctl(b, "kv", "set", "op/ttl", "t", "0.5")
    p = connected(b.port, "p")
    p.publish("kv/set/from-hook", b"h", qos=1, pid=1)
    p.expect(PUBACK)
    ctl(b, "kv", "del", "op/gone")
    b.stop()  # SIGTERM: the journal is flushed
    b.start()
    kv = {k["key"] for k in json.loads(ctl(b, "--json", "kv", "list").stdout)}
    assert {"op/one", "h/from-hook"} <= kv and "op/gone" not in kv, kv
    # compacted: the keys are in the snapshot now
    ctl(b, "kv", "set", "op/two", "2")
    ctl(b, "persistence", "snapshot")
    assert wait_for(lambda: stats(b)["persistence_last_snapshot_at"] > 0, 10)
    ctl(b, "kv", "set", "op/three", "3")  # after the snapshot: in the journal only
    time.sleep(0.5)  # made durable within milliseconds
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait(10)
    b.start()
    kv = {k["key"]: k for k in json.loads(ctl(b, "--json", "kv", "list").stdout)}
    assert {"op/one", "op/two", "op/three", "h/from-hook"} <= set(kv), kv
    assert "op/ttl" not in kv  # expired while the broker was down, or since
    assert json.loads(ctl(b, "--json", "kv", "get", "op/three").stdout)["value"] == "3"


# ---- broker.http.request ----

CALLER = '''
return {topics = {"call/#"}, on_publish = function(m)
  local path = m.topic:match("^call/(.*)$")
  local ok, err = broker.http.request{
    method = m.properties.content_type or "POST",
    url = "%s/" .. path,
    headers = {["x-from"] = "hook"},
    body = m.payload,
    timeout = 2,
    on_response = function(status, headers, body)
      if status then
        broker.publish("resp/" .. path, status .. " " .. tostring(headers["x-test"]) .. " " .. body)
      else
        broker.publish("resp/" .. path, "error " .. headers .. " " .. tostring(body))
      end
    end,
  }
  if not ok then broker.publish("resp/" .. path, "refused " .. err) end
  return m
end}''' % URL


@conf("hook_http_allow %s/" % URL)
def test_http_request_body_headers_and_on_response(b):
    with Server() as srv:
        install(b, "call.lua", CALLER)
        s = sub(b, "resp/#")
        p = connected(b.port, "p")
        p.publish("call/ingest", b'{"v": 1}', qos=1, pid=1)
        assert p.expect(PUBACK).rc in (0, 0x10)
        m = got(s)
        assert m.topic == "resp/ingest"
        status, xtest, body = m.payload.decode().split(" ", 2)
        assert status == "200" and xtest == "yes" and json.loads(body)["len"] == 8, m.payload
        method, path, headers, rbody = srv.requests[0]
        assert (method, path, rbody) == ("POST", "/ingest", b'{"v": 1}')
        assert headers.get("x-from") == "hook"
        p.publish("call/status/503", b"", qos=0)
        assert got(s).payload.startswith(b"503 ")
        st = hook_stats(b, "call.lua")
        assert st["http_requests"] == 2 and st["http_ok"] == 2 and st["response_calls"] == 2, st


METRICS = free_port()


@conf("hook_http_allow %s/" % URL, "metrics_listener %d" % METRICS, "sys_interval 1")
def test_http_counters_in_metrics_and_sys(b):
    with Server():
        install(b, "call.lua", CALLER)
        s = sub(b, "resp/#")
        p = connected(b.port, "p")
        p.publish("call/x", b"", qos=0)
        got(s)
        page = subprocess.run(["curl", "-s", "http://127.0.0.1:%d/metrics" % METRICS],
                              capture_output=True, text=True, timeout=10).stdout
        assert 'lunamq_hook_http_requests_total{hook="call.lua"} 1' in page, page[-2000:]
        assert 'lunamq_hook_http_ok_total{hook="call.lua"} 1' in page
        s.subscribe(2, [("$SYS/broker/hooks/call.lua/http_ok", 0)])
        seen = [s.expect(PUBLISH, 5).payload for _ in range(2)]  # retained, then a tick
        assert seen[-1] == b"1", seen


HTTPS_HOOK = CALLER.replace("%s/" % URL, "https://localhost:%d/" % PORT)


def https_server():
    import ssl
    srv = Server()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(pki_dir(), "server.crt"), os.path.join(pki_dir(), "server.key"))
    srv.srv.socket = ctx.wrap_socket(srv.srv.socket, server_side=True)
    return srv


@conf("hook_http_allow https://localhost:%d/" % PORT, "hook_http_cafile {pki}/ca.crt")
def test_https_verified_against_hook_http_cafile(b):
    with https_server() as srv:
        install(b, "call.lua", HTTPS_HOOK)
        s = sub(b, "resp/#")
        p = connected(b.port, "p")
        p.publish("call/secure", b"x", qos=0)
        assert got(s).payload.startswith(b"200 ")
        assert srv.paths() == ["/secure"]


@conf("hook_http_allow https://localhost:%d/" % PORT)
def test_https_unknown_ca_is_a_tls_error(b):
    with https_server() as srv:
        install(b, "call.lua", HTTPS_HOOK)
        s = sub(b, "resp/#")
        p = connected(b.port, "p")
        p.publish("call/secure", b"x", qos=0)
        assert got(s).payload.startswith(b"error tls "), "the test CA is not the system's"
        assert hook_stats(b, "call.lua")["http_tls_errors"] == 1
        assert srv.paths() == []


@conf("hook_http_allow %s/allowed/" % URL)
def test_http_allow_list_refuses_the_rest(b):
    with Server() as srv:
        install(b, "call.lua", CALLER)
        s = sub(b, "resp/#")
        p = connected(b.port, "p")
        for i, path in enumerate(["other", "allowed/../secret", "allowedx"]):
            p.publish("call/" + path, b"", qos=0)
            m = got(s)
            assert m.payload.startswith(b"refused not in hook_http_allow"), (path, m.payload)
        p.publish("call/allowed/ok", b"", qos=0)
        assert got(s).payload.startswith(b"200 ")
        assert srv.paths() == ["/allowed/ok"]
        st = hook_stats(b, "call.lua")
        assert st["http_denied"] == 3 and st["http_requests"] == 1, st


def test_http_without_allow_list_nothing_is_reachable(b):
    with Server() as srv:
        install(b, "call.lua", CALLER)
        s = sub(b, "resp/#")
        p = connected(b.port, "p")
        p.publish("call/x", b"", qos=0)
        assert got(s).payload.startswith(b"refused not in hook_http_allow")
        assert srv.paths() == []


@serial
@conf("hook_http_allow %s/" % URL, "hook_http_allow http://127.0.0.1:1/",
      "hook_http_max_concurrent 4", "hook_http_max_queue 8", "hook_http_max_response 100000",
      "hook_http_timeout 1")
def test_slow_dead_and_huge_endpoints_do_not_slow_others(b):
    """A slow endpoint (10 s), a dead one and a 5 MB answer, each hit by a flood of
    messages through the hook: the probe's round trips stay short, the hook's counters
    say what happened, busy past 4 + 8 requests, and the broker's memory stays flat."""
    dead = '''
return {topics = {"dead/#"}, on_publish = function(m)
  broker.http.request{url = "http://127.0.0.1:1/x", on_response = function() end}
  return m
end}'''
    with Server() as srv:
        install(b, "call.lua", CALLER)
        install(b, "dead.lua", dead)
        s = sub(b, "resp/#")
        p = connected(b.port, "p")
        rss0 = rss_kb(b.pid)
        with Probe(b.port) as probe:
            for i in range(300):
                p.publish("call/slow", b"x" * 1000, qos=0)
                p.publish("call/huge", b"", qos=0)
                p.publish("dead/x", b"", qos=0)
                if i % 50 == 0:
                    time.sleep(0.05)
            assert wait_for(lambda: hook_stats(b, "call.lua")["http_timeouts"] >= 4, 5)
            assert wait_for(lambda: hook_stats(b, "dead.lua")["http_connect_errors"] >= 10, 5)
            time.sleep(1.5)
        probe.check(0.1)
        st = hook_stats(b, "call.lua")
        assert st["http_busy"] > 0 and st["http_too_large"] >= 1, st
        assert st["http_requests"] + st["http_busy"] + st["http_denied"] == 600, st
        # every accepted request ends: answered, timed out or too large
        assert wait_for(lambda: hook_stats(b, "call.lua")["http_in_flight"] == 0, 5)
        d = hook_stats(b, "dead.lua")
        assert d["http_connect_errors"] + d["http_busy"] == 300, d
        assert rss_kb(b.pid) - rss0 < 20000, (rss0, rss_kb(b.pid))
        kinds = set()
        while True:  # on_response saw each failure with its kind
            m = s.recv(0.2)
            if m is None:
                break
            if m.type == PUBLISH:
                kinds.add(m.payload.split(b" ")[:2] == [b"error", b"timeout"] and "timeout" or
                          m.payload.split(b" ")[:2] == [b"error", b"too_large"] and "too_large" or
                          "other")
        assert {"timeout", "too_large"} <= kinds, kinds


@conf("hook_http_allow %s/" % URL)
def test_reload_cancels_the_old_versions_requests(b):
    with Server() as srv:
        install(b, "call.lua", CALLER)
        s = sub(b, "resp/#")
        p = connected(b.port, "p")
        p.publish("call/slow", b"", qos=0)
        assert wait_for(lambda: srv.paths() == ["/slow"], 5)
        install(b, "call.lua", CALLER + "\n-- v2")
        s.expect_none(0.5)  # the old version's on_response never runs
        assert hook_stats(b, "call.lua")["http_in_flight"] == 0
        p.publish("call/fast", b"", qos=0)
        assert got(s).payload.startswith(b"200 ")


# ---- the examples ----

@conf("hook_http_allow %s/ingest" % URL)
def test_example_http_batch_posts_aggregates(b):
    with Server() as srv:
        install_example(b, "http-batch.lua", [("http://127.0.0.1:8080/ingest", URL + "/ingest"),
                                              ("interval = 5", "interval = 0.5")])
        p = connected(b.port, "p")
        for v in (1, 5, 3):
            p.publish("metrics/d1/temp", str(v).encode(), qos=0)
        p.publish("metrics/d2/hum", b"40", qos=0)
        assert wait_for(lambda: srv.paths("POST") == ["/ingest"], 5)
        body = json.loads(srv.requests[0][3])
        assert body["count"] == 4
        assert body["series"]["d1/temp"] == {"n": 3, "sum": 9, "min": 1, "max": 5}
        assert body["series"]["d2/hum"]["n"] == 1
        time.sleep(1.2)
        assert srv.paths("POST") == ["/ingest"]  # nothing new: nothing sent


@conf("hook_http_allow %s/archive/" % URL)
def test_example_http_forward_writes_without_delaying_delivery(b):
    with Server() as srv:
        install_example(b, "http-forward.lua",
                        [("http://127.0.0.1:9000/archive/", URL + "/archive/")])
        s = sub(b, "archive/#")
        p = connected(b.port, "p")
        t0 = time.time()
        for i in range(20):
            p.publish("archive/line 1/%d" % i, b"payload %d" % i, qos=1, pid=i + 1)
            p.expect(PUBACK)
        msgs = [got(s) for _ in range(20)]
        assert time.time() - t0 < 2
        assert [m.payload for m in msgs] == [b"payload %d" % i for i in range(20)]
        assert wait_for(lambda: len(srv.paths("PUT")) == 20, 5)
        put = sorted(srv.requests, key=lambda r: r[3])[0]
        assert put[1].startswith("/archive/archive/line%201/0/") and put[3] == b"payload 0"
