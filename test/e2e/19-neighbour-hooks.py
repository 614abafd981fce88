# SPDX-License-Identifier: MIT
"""Noisy neighbours through Lua hooks (issue 11, "one client cannot hurt the others"):
a hook that a hostile payload drives into a backtracking pattern (11.5), a hook whose
objects carry a __gc that loops (11.6), and a hook that fills its state up to the
memory cap (11.11). In each, a well-behaved Probe client keeps measuring its own round
trips through the broker, and the hook's counters (`lunamq-ctl --json hooks`) must show
what happened."""

import json
import os
import subprocess
import time

from lqtest import install_hook as install, CTL, conf, rss_kb, wait_for
from mqttraw import PUBACK, PUBLISH, Probe, connected


def hook_stats(b, name):
    r = subprocess.run([CTL, "-s", b.admin, "--json", "hooks"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    return [h for h in json.loads(r.stdout) if h["name"] == name][0]


NO_SUBSCRIBERS = 0x10  # accepted, but nobody subscribes to these topics (issue 12.7)


def publish_timed(c, topic, payload, pid):
    """QoS 1 publish; returns (reason code, seconds until the PUBACK); a message that went
    through (0x10: no subscriber) is reported as 0."""
    t0 = time.time()
    c.publish(topic, payload, qos=1, pid=pid)
    rc = c.expect(PUBACK, 10).rc
    return (0 if rc == NO_SUBSCRIBERS else rc), time.time() - t0


CSV = '''
return {topics = {"csv/#"}, on_publish = function(m)
  local a, b, c, d = m.payload:match("^(.-),(.-),(.-),(.-);$")
  if not a then return false, 0x99 end
  return m
end}'''


def test_pattern_backtracking_is_cut_by_the_budget(b):
    """issue 11.5: a CSV hook's pattern on 300 commas backtracked for 6.9 s inside one C
    call, with no overrun counted and time_max_us=0. Now the matcher's steps are charged
    to the instruction budget (default 1 000 000): the call is cut in milliseconds,
    counted as an overrun, and its time shows even though it was not a sampled call."""
    install(b, "10-csv.lua", CSV)
    p = connected(b.port, "csv-pub")
    assert publish_timed(p, "csv/ok", b"1,2,3,4;", 1)[0] == 0
    rss0 = rss_kb(b.proc.pid)
    with Probe(b.port) as probe:
        time.sleep(0.1)
        worst = 0.0
        for i in range(5):
            rc, took = publish_timed(p, "csv/bad", b"," * 300, 10 + i)
            assert rc == 0, rc  # hook_on_error pass: the message goes on
            worst = max(worst, took)
        time.sleep(0.1)
    probe.check(0.1)
    assert worst < 0.2, "a hostile payload held its publisher %.3f s" % worst
    st = hook_stats(b, "10-csv.lua")
    assert st["budget_overruns"] == 5, st
    assert st["time_max_us"] > 0, st
    assert rss_kb(b.proc.pid) < rss0 + 20000
    assert "hook 10-csv.lua: on_publish: instruction budget: 10-csv.lua:3: instruction " \
        "budget of 1000000 exceeded" in b.output()


GC = '''
local kept = {}
return {topics = {"gc/#"}, on_publish = function(m)
  kept[#kept + 1] = setmetatable({}, {__gc = function() while true do end end})
  return m
end}'''

MSG_META = '''
return {topics = {"gc/message"}, on_publish = function(m)
  getmetatable(m).__gc = function() while true do end end  -- a finalizer on every message
  return m
end}'''


def test_gc_finalizers_are_refused_and_reload_does_not_hang(b):
    """issue 11.6: Lua runs __gc with hooks off: a finalizer that loops hung the broker
    for good, at a collection or when lua_close ran it on reload. setmetatable now
    refuses a metatable with __gc (an error, counted), the message metatable cannot be
    reached, and reloading and removing the hook return at once."""
    install(b, "10-gc.lua", GC)
    install(b, "20-msgmeta.lua", MSG_META)
    p = connected(b.port, "gc-pub")
    s = connected(b.port, "gc-sub")
    s.subscribe(1, [("gc/#", 0)])
    with Probe(b.port) as probe:
        for i, topic in enumerate(("gc/a", "gc/message", "gc/b")):
            assert publish_timed(p, topic, b"x", 1 + i)[0] == 0
        assert [s.expect(PUBLISH).topic for _ in range(3)] == ["gc/a", "gc/message", "gc/b"]
        assert hook_stats(b, "10-gc.lua")["errors"] == 3
        assert hook_stats(b, "20-msgmeta.lua")["errors"] == 1
        install(b, "10-gc.lua", GC + "\n-- v2")        # reload: lua_close of the old state
        assert publish_timed(p, "gc/c", b"x", 4)[0] == 0
        os.unlink(os.path.join(b.scripts, "10-gc.lua"))  # unload
        assert wait_for(lambda: "hook 10-gc.lua: file removed: unloaded" in b.output(), 5)
        assert publish_timed(p, "gc/d", b"x", 5)[0] == 0
    probe.check(0.1)
    log = b.output()
    assert "hook 10-gc.lua: on_publish: error: 10-gc.lua:4: setmetatable: __gc is not " \
        "allowed in hooks" in log, log
    assert "hook 20-msgmeta.lua: on_publish: error: 20-msgmeta.lua:3: attempt to index a " \
        "boolean value" in log, log  # getmetatable(msg) is false


TABLES = '''
return {topics = {"tables/#"}, on_publish = function(m)
  local t = {}
  for i = 1, tonumber(m.payload) do t[i] = {} end
  return m
end}'''


@conf("hook_instruction_limit 100000000")
def test_state_near_its_memory_cap_ends_every_call(b):
    """issue 11.11: on_publish building 200 000 empty tables fits the default 16 MiB cap
    and leaves the state full of garbage; on the next message the broker never returned
    from lua_pcall (with the collector's pause at 100%, every allocation ran a whole
    collection). The budget is raised here so that memory is what bites: 200 000 tables
    pass, 300 000 (over the cap) are cut as memory overruns, each call ends."""
    install(b, "10-tables.lua", TABLES)
    p = connected(b.port, "tables-pub")
    with Probe(b.port, limit=5.0) as probe:
        for i, n in enumerate((200000, 200000, 300000, 200000, 300000)):
            rc, took = publish_timed(p, "tables/x", str(n).encode(), 1 + i)
            assert rc == 0 and took < 2.0, (n, rc, took)
    assert probe.alive and probe.count > 0, probe.error
    st = hook_stats(b, "10-tables.lua")
    assert (st["calls"], st["passed"], st["memory_overruns"]) == (5, 3, 2), st
    assert st["time_max_us"] > 0, st
    assert rss_kb(b.proc.pid) < 200000
    with Probe(b.port, "probe2") as probe:  # and it serves as before
        time.sleep(0.3)
    probe.check(0.1)
