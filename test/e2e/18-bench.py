# SPDX-License-Identifier: MIT
"""build/lunamq-bench against a real broker: what it reports must match what the broker
saw (its own counters through lunamq-ctl). Counts, loss, latency order, the broker's
CPU and memory figures, the rate limit, TLS with client certificates, idle connections
from several source addresses, and its refusals. Short runs (1-2 s): correctness, not
speed; the speed figures are `make bench`'s."""

import json
import os
import subprocess

from lqtest import BIN, CTL, conf, pki_dir, wait_for

BENCH = os.path.join(os.path.dirname(BIN), "lunamq-bench")
MTLS = ("listener {tls_port} 127.0.0.1", "cafile {pki}/ca.crt", "certfile {pki}/server.crt",
        "keyfile {pki}/server.key", "require_certificate true")


def bench(b, *args, port=None, check=True, timeout=90):
    cmd = [BENCH, *args, "-p", str(port or b.port), "--pid", str(b.proc.pid), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, (cmd, r.returncode, r.stderr)
        return json.loads(r.stdout)
    return r


def stats(b):
    r = subprocess.run([CTL, "-s", b.admin, "--json", "stats"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def sane_latency(res):
    assert 0 < res["latency_p50_us"] <= res["latency_p99_us"] <= res["latency_max_us"], res
    assert res["latency_max_us"] < 30e6, res  # microseconds, not nanoseconds


def test_fanin_qos1_reports_what_the_broker_received_and_delivered(b):
    res = bench(b, "fanin", "-n", "3", "-q", "1", "-s", "100", "-r", "3000", "-d", "1")
    st = stats(b)
    assert res["sent"] > 0 and res["errors"] == 0, res
    assert st["messages_received"] == res["sent"], (st, res)
    # QoS 1: nothing lost. "delivered" counts what arrived within the run, "lost"
    # what had not arrived 1 s after it
    assert res["lost"] == 0 and 0 < res["delivered"] <= res["sent"], res
    assert st["messages_sent"] == res["sent"], (st, res)
    sane_latency(res)
    assert res["broker_cpu_us_per_msg"] > 0 and res["broker_peak_rss_kb"] > 1000, res


def test_rate_is_a_ceiling_for_fanout_and_pairs(b):
    # -r is the total rate: a 1 s run sends at most about rate messages (the first
    # burst included), whatever the machine's speed
    res = bench(b, "fanout", "-n", "5", "-q", "1", "-r", "500", "-d", "1")
    assert 0 < res["sent"] <= 600, res
    assert res["lost"] == 0 and 0 < res["delivered"] <= 5 * res["sent"], res
    assert stats(b)["messages_sent"] == 5 * res["sent"]
    sent_before = stats(b)["messages_sent"]
    res = bench(b, "pairs", "-n", "10", "-q", "0", "-r", "1000", "-d", "1", "-V", "4")
    assert 0 < res["sent"] <= 1200, res
    assert res["lost"] == 0 and 0 < res["delivered"] <= res["sent"], res
    assert stats(b)["messages_sent"] - sent_before == res["sent"]
    sane_latency(res)


def test_loss_is_what_the_broker_did_not_deliver(b):
    """A hook drops every other message: the loss lunamq-bench reports is exactly
    what the broker says it dropped."""
    src = ('local n = 0\nreturn {topics = {"bench/#"}, on_publish = function(m)\n'
           '  n = n + 1\n  if n % 2 == 0 then return nil end\n  return m\nend}\n')
    tmp = os.path.join(b.scripts, ".drop.tmp")
    with open(tmp, "w") as f:
        f.write(src)
    os.rename(tmp, os.path.join(b.scripts, "10-drop.lua"))
    assert wait_for(lambda: "hook 10-drop.lua: loaded" in b.output(), 5)
    res = bench(b, "fanin", "-n", "1", "-q", "1", "-r", "1000", "-d", "1")
    st = stats(b)
    assert res["sent"] > 10, res
    assert res["lost"] == st["dropped_hook"] == res["sent"] // 2, (res, st)
    assert st["messages_sent"] == res["sent"] - res["lost"], (res, st)


@conf(*MTLS)
def test_connection_storm_with_client_certificates(b):
    d = pki_dir()
    tls = ["--cafile", d + "/ca.crt", "--cert", d + "/dev1.crt", "--key", d + "/dev1.key"]
    res = bench(b, "conn", "-n", "2", "-d", "1", *tls, port=b.tls_port)
    assert res["connections_per_s"] > 0 and res["errors"] == 0, res
    assert res["broker_cpu_us_per_msg"] > 0, res  # per connection in this scenario
    assert stats(b)["connections_total"] >= res["connections_per_s"] * 0.9, res
    # without a client certificate the broker refuses every handshake: errors, no count
    r = bench(b, "conn", "-n", "1", "-d", "1", "--cafile", d + "/ca.crt", port=b.tls_port,
              check=False)
    assert r.returncode != 0 or json.loads(r.stdout)["errors"] > 0, (r.stdout, r.stderr)
    assert "lunamq-bench:" in r.stderr and "TLS" in r.stderr, r.stderr


def test_idle_connections_from_several_source_addresses(b):
    p = subprocess.Popen([BENCH, "idle", "-n", "300", "--sources", "3", "-d", "3", "-p",
                          str(b.port), "--pid", str(b.proc.pid), "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: stats(b)["clients_connected"] == 300, 20), stats(b)
        r = subprocess.run([CTL, "-s", b.admin, "--json", "clients", "bench-*"],
                           capture_output=True, text=True, timeout=10)
        clients = json.loads(r.stdout)
        addrs = {c["address"].rsplit(":", 1)[0] for c in clients}
        assert addrs == {"127.0.0.2", "127.0.0.3", "127.0.0.4"}, addrs
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    res = json.loads(out)
    assert 0 < res["broker_kb_per_idle_conn"] < 20, res


def test_refuses_targets_off_loopback_and_bad_arguments(b):
    before = stats(b)["connections_total"]  # the harness's port probe counts as one
    for host in ("10.1.2.3", "192.168.0.1", "localhost.example"):
        r = subprocess.run([BENCH, "fanin", "-h", host, "-p", str(b.port), "-d", "1"],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode != 0 and r.stdout == "", (host, r)
        assert "lunamq-bench:" in r.stderr, r.stderr
    for args in (["nosuch"], ["fanin", "-q", "3"], ["fanin", "-V", "6"], []):
        r = subprocess.run([BENCH, *args, "-p", str(b.port), "-d", "1"], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode != 0 and "usage" in r.stderr, (args, r)
    assert stats(b)["connections_total"] == before  # nothing reached the broker


@conf("persistence true", "persistence_location {dir}")
def test_persistent_subscribers_make_the_broker_write_their_messages(b):
    # without --persistent the subscriber's session ends with its connection: nothing
    # of its messages is written; with it (clean start 0, session expiry) every message
    # is, and the run waits until the queues are empty
    res = bench(b, "fanin", "-n", "2", "-q", "1", "-r", "2000", "-d", "1", "-V", "5")
    assert res["errors"] == 0 and res["lost"] == 0, res
    assert stats(b)["persistence_journal_records"] < 10, stats(b)
    res = bench(b, "fanin", "-n", "2", "-q", "1", "-r", "2000", "-d", "1", "-V", "5",
                "--persistent")
    assert res["errors"] == 0 and res["lost"] == 0 and res["sent"] > 0, res
    assert stats(b)["persistence_journal_records"] >= res["sent"], (stats(b), res)
    assert 0 < res["ack_p50_us"] <= res["ack_p99_us"] < 30e6, res
    st = stats(b)
    assert st["queued"] == 0 and st.get("inflight", 0) == 0, st  # drained


def test_v5_publishers_stay_within_the_brokers_receive_maximum(b):
    # the broker says Receive Maximum 20 (max_inflight_messages); a v5 publisher that
    # keeps 100 QoS 1 messages in flight is disconnected (0x93)
    res = bench(b, "fanin", "-n", "2", "-q", "1", "-d", "1", "-V", "5")
    assert res["errors"] == 0 and res["lost"] == 0 and res["sent"] > 100, res
