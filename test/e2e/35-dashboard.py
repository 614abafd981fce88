# SPDX-License-Identifier: MIT
"""The dashboard (issue 21): the http_listener serves one page at / and its figures at
/api/dashboard, the same figures `lunamq-ctl --json stats` and `hooks` give. Read only,
loopback unless asked, a login against the password_file beyond that or when anonymous
clients are not allowed. A real browser (Debian's headless Chromium) loads the page
while traffic flows and its figures move."""

import atexit
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

from lqtest import install_hook as install, CTL, conf, free_port
from mqttraw import connected

HTTP = free_port()  # one port for the module: run.py runs these tests one at a time
H = "http_listener %d" % HTTP
BASE = "http://127.0.0.1:%d" % HTTP
FILES = tempfile.mkdtemp(prefix="lunamq-e2e-dash-")
atexit.register(shutil.rmtree, FILES, True)
PASSWD = os.path.join(FILES, "passwd")
subprocess.run(["mosquitto_passwd", "-c", "-b", PASSWD, "ops", "opspass"], check=True)


def get(path, *extra):
    r = subprocess.run(["curl", "-s", "-i", *extra, BASE + path], capture_output=True,
                       timeout=20)
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, head.decode(errors="replace"), body


def ctl_json(b, *args):
    r = subprocess.run([CTL, "-s", b.admin, "--json", *args], capture_output=True, text=True,
                       timeout=10)
    return json.loads(r.stdout)


@conf(H)
def test_page_and_figures_are_the_ctl_figures(b):
    st, head, body = get("/")
    assert st == 200 and "text/html" in head and b"<title>lunamq</title>" in body
    assert b"/api/dashboard" in body and "X-Frame-Options: DENY" in head
    install(b, "10-pass.lua", 'return {topics = {"t/#"}, on_publish = function(m) return m end}')
    p = connected(b.port, "talker")
    for i in range(50):
        p.publish("t/x", b"x" * 1000, qos=0)
    q = connected(b.port, "quiet")
    time.sleep(0.3)
    st, head, body = get("/api/dashboard")
    assert st == 200 and "application/json" in head
    d = json.loads(body)
    assert set(d) == {"stats", "hooks", "busiest"}
    ctl = ctl_json(b, "stats")
    assert set(d["stats"]) == set(ctl), set(d["stats"]) ^ set(ctl)  # one source of truth
    assert d["stats"]["messages_received"] >= 50
    assert [h["name"] for h in d["hooks"]] == ["10-pass.lua"] and d["hooks"][0]["calls"] == 50
    assert d["busiest"][0]["id"] == "talker" and d["busiest"][0]["traffic_bytes"] > 50000
    assert "quiet" in [c["id"] for c in d["busiest"]]
    assert get("/", "-X", "POST")[0] == 405  # read only
    q.close()


@conf(H, "allow_anonymous false", "password_file " + PASSWD)
def test_login_against_the_password_file(b):
    st, head, _ = get("/")
    assert st == 401 and "WWW-Authenticate: Basic" in head
    assert get("/api/dashboard", "-u", "ops:wrong")[0] == 401
    assert get("/api/dashboard", "-u", "ops:opspass")[0] == 200
    assert get("/", "-u", "ops:opspass")[0] == 200


def chromium(url, *args):
    profile = tempfile.mkdtemp(prefix="lunamq-chromium-", dir=FILES)
    return subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                           "--user-data-dir=" + profile, "--window-size=1280,860", *args, url],
                          capture_output=True, text=True, timeout=120)


@conf(H)
def test_a_browser_shows_figures_that_move(b):
    """Headless Chromium loads the page while a client publishes; after a few of the
    page's one-second refreshes its messages-per-second figure is not 0, and its
    table lists the client. The screenshot of this run is what the README shows."""
    install(b, "20-enrich.lua", 'return {topics = {"plant/#"}, on_publish = function(m) '
                                'm.properties.user[1] = {"site", "Lyon"} return m end}')
    stop = threading.Event()

    viewer = connected(b.port, "line1-display")
    viewer.subscribe(1, [("plant/#", 0)])

    def read():  # a subscriber that keeps up
        viewer.sock.settimeout(0.2)
        while not stop.is_set():
            try:
                viewer.sock.recv(1 << 16)
            except OSError:
                pass

    def traffic():
        p = connected(b.port, "sensor-17")
        while not stop.is_set():
            for _ in range(200):
                p.publish("plant/line1/temp", b"21.5", qos=0)
            time.sleep(0.05)

    t = threading.Thread(target=traffic, daemon=True)
    t.start()
    r_thread = threading.Thread(target=read, daemon=True)
    r_thread.start()
    png = os.environ.get("LUNAMQ_DASHBOARD_PNG")  # the README's screenshot: more history
    try:
        time.sleep(1.5)  # the broker's rates are per second
        r = chromium(BASE + "/", "--virtual-time-budget=4000", "--dump-dom")
        shot = os.path.join(b.dir, "dashboard.png")
        chromium(BASE + "/", "--virtual-time-budget=%d" % (60000 if png else 4000),
                 "--screenshot=" + shot)
    finally:
        stop.set()
        t.join(5)
        r_thread.join(5)
    dom = r.stdout
    assert 'id="charts"' in dom, r.stderr[-2000:]
    m = re.search(r'data-label="in">in <b>([0-9.]+[kMG]?)</b>', dom)
    assert m and m.group(1) != "0", dom[:3000]
    assert 'id="error"></span>' in dom, re.search(r'id="error">[^<]*', dom).group(0)
    assert "sensor-17" in dom, dom[dom.find('id="busiest"'):][:1500]
    assert os.path.getsize(shot) > 10000
    if png:
        shutil.copy(shot, png)
