/* SPDX-License-Identifier: MIT
 *
 * Hooks without a broker: files in a temporary scripts_dir, messages run through
 * hooks_run with a host that records broker.publish, and the per-hook counters the
 * admin CLI will show. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hooks.h"
#include "lq.h"
#include "msg.h"
#include "suites.h"

static char dir[64];
static struct msg *published[16];
static int npublished;

static void
record_publish(void *ud, struct msg *m, const struct hook *from)
{
    (void)ud;
    (void)from;
    if (npublished < 16) published[npublished++] = msg_ref(m);
}

static void
write_hook(const char *name, const char *src)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(src, f);
    fclose(f);
}

static void
setup(void)
{
    strcpy(dir, "/tmp/lunamq-hooks-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    npublished = 0;
}

static struct hooks *
start(uint64_t instructions, size_t memory, bool drop)
{
    struct hooks_conf c = {.dir = dir,
                           .instruction_limit = instructions,
                           .memory_limit = memory,
                           .drop_on_error = drop};
    struct hook_host host = {.publish = record_publish};
    return hooks_new(NULL, &c, &host);
}

static void
teardown(struct hooks *hs)
{
    hooks_free(hs);
    for (int i = 0; i < npublished; i++) msg_unref(published[i]);
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static struct msg *
message(const char *topic, const char *payload)
{
    struct msg_init in = {.topic = topic,
                          .topic_len = strlen(topic),
                          .payload = (const uint8_t *)payload,
                          .payload_len = strlen(payload),
                          .qos = 1};
    return msg_new(&in);
}

/* Run one message; returns the number of messages out, the first in *first. */
static size_t
run(struct hooks *hs, const char *topic, const char *payload, char *first, uint8_t *refuse)
{
    struct msg *m = message(topic, payload);
    struct hook_verdict v = {0};
    bool matched = hooks_run(hs, m, NULL, NULL, &v);
    size_t n = matched ? v.n : 1;
    if (first) {
        first[0] = '\0';
        struct msg *o = matched ? (v.n ? v.out[0] : NULL) : m;
        if (o) snprintf(first, 128, "%s %.*s", o->topic, (int)o->payload_len, o->payload);
    }
    if (refuse) *refuse = v.refuse;
    hook_verdict_clear(&v);
    msg_unref(m);
    return n;
}

static struct hook_stats
stats_of(struct hooks *hs, const char *name)
{
    struct hook_info hi;
    for (size_t i = 0; hooks_info(hs, i, &hi); i++)
        if (strcmp(hi.name, name) == 0) return hi.stats;
    ck_abort_msg("no hook %s", name);
    return hi.stats;
}

START_TEST(test_counters)
{
    setup();
    write_hook("10-gate.lua", "return {topics = {'t/#'}, on_publish = function(m)\n"
                              "  if m.payload == 'drop' then return nil end\n"
                              "  if m.payload == 'deny' then return false, 0x87 end\n"
                              "  if m.payload == 'fan' then return {{topic='a', payload='1'},\n"
                              "    {topic='b', payload='2'}, {topic='c', payload='3'}} end\n"
                              "  if m.payload == 'up' then m.payload = 'UP' end\n"
                              "  if m.payload == 'pub' then broker.publish('x/y', 'z') end\n"
                              "  if m.payload == 'err' then error('boom') end\n"
                              "  if m.payload == 'slow' then local x = 0\n"
                              "    for i = 1, 100000 do x = x + i end end\n"
                              "  return m\nend}\n");
    struct hooks *hs = start(1000000, 16 << 20, false);
    ck_assert_uint_eq(hooks_count(hs), 1);
    char first[128];
    uint8_t refuse;
    ck_assert_uint_eq(run(hs, "t/1", "same", first, NULL), 1);
    ck_assert_str_eq(first, "t/1 same");
    ck_assert_uint_eq(run(hs, "t/1", "up", first, NULL), 1);
    ck_assert_str_eq(first, "t/1 UP");
    ck_assert_uint_eq(run(hs, "t/1", "drop", NULL, &refuse), 0);
    ck_assert_uint_eq(refuse, 0);
    ck_assert_uint_eq(run(hs, "t/1", "deny", NULL, &refuse), 0);
    ck_assert_uint_eq(refuse, 0x87);
    ck_assert_uint_eq(run(hs, "t/1", "fan", first, NULL), 3);
    ck_assert_str_eq(first, "a 1");
    ck_assert_uint_eq(run(hs, "t/1", "pub", NULL, NULL), 1);
    ck_assert_int_eq(npublished, 1);
    ck_assert_str_eq(published[0]->topic, "x/y");
    ck_assert_uint_eq(run(hs, "t/1", "err", first, NULL), 1); /* hook_on_error pass */
    ck_assert_str_eq(first, "t/1 err");
    ck_assert_uint_eq(run(hs, "other", "x", first, NULL), 1); /* no hook: untouched */
    struct hook_stats s = stats_of(hs, "10-gate.lua");
    ck_assert_uint_eq(s.calls, 7);
    ck_assert_uint_eq(s.passed, 2); /* same, pub */
    ck_assert_uint_eq(s.rewritten, 1);
    ck_assert_uint_eq(s.dropped, 2);
    ck_assert_uint_eq(s.fanned_out, 3);
    ck_assert_uint_eq(s.published, 1);
    ck_assert_uint_eq(s.errors, 1);
    ck_assert_uint_eq(s.budget_overruns, 0);
    /* issue 12.20: on_publish times 1 call in 16 and counts it 16 times, so 16 slow
     * calls (each well over 50 us) time at least one; before that nothing may be */
    for (int i = 0; i < 16; i++) ck_assert_uint_eq(run(hs, "t/1", "slow", NULL, NULL), 1);
    s = stats_of(hs, "10-gate.lua");
    ck_assert_uint_ge(s.max_us, 50);
    ck_assert_uint_ge(s.total_us, 16 * s.max_us);
    teardown(hs);
}
END_TEST

/* issue 12.22: the message table is made, and a returned table read, outside
 * on_publish's protected call. With the memory cap lowered to a byte, making the table
 * fails: a hook failure (counted, hook_on_error applies), not a Lua panic that aborts
 * the process. */
START_TEST(test_out_of_memory_around_the_call)
{
    setup();
    write_hook("10-any.lua", "return {topics = {'t/#'}, on_publish = function(m)\n"
                             "  return {topic = 't/out', payload = 1.5} end}\n");
    struct hooks *hs = start(1000000, 16 << 20, false);
    ck_assert_uint_eq(hooks_count(hs), 1);
    struct hooks_conf c = {.dir = dir, .instruction_limit = 1000000, .memory_limit = 1};
    hooks_configure(hs, &c);
    char first[128];
    for (int i = 0; i < 3; i++) {
        ck_assert_uint_eq(run(hs, "t/1", "x", first, NULL), 1);
        ck_assert_str_eq(first, "t/1 x"); /* hook_on_error pass: on unchanged */
    }
    ck_assert_uint_ge(stats_of(hs, "10-any.lua").memory_overruns, 3);
    c.memory_limit = 16 << 20;
    hooks_configure(hs, &c);
    ck_assert_uint_eq(run(hs, "t/1", "x", first, NULL), 1);
    ck_assert_str_eq(first, "t/out 1.5"); /* the state recovered */
    teardown(hs);
}
END_TEST

START_TEST(test_limits_cannot_be_caught)
{
    setup();
    write_hook("10-loop.lua", "return {topics = {'loop'}, on_publish = function(m)\n"
                              "  pcall(function() while true do end end)\n"
                              "  m.payload = 'escaped' return m end}\n");
    write_hook("20-hog.lua", "return {topics = {'hog'}, on_publish = function(m)\n"
                             "  pcall(function() local t = {} for i = 1, 1e9 do\n"
                             "    t[i] = string.rep('x', 64) .. i end end)\n"
                             "  m.payload = 'escaped' return m end}\n");
    struct hooks *hs = start(100000, 1 << 20, true); /* hook_on_error drop */
    ck_assert_uint_eq(run(hs, "loop", "x", NULL, NULL), 0);
    ck_assert_uint_eq(run(hs, "hog", "x", NULL, NULL), 0);
    ck_assert_uint_eq(run(hs, "hog", "x", NULL, NULL), 0); /* and again after recovery */
    ck_assert_uint_eq(stats_of(hs, "10-loop.lua").budget_overruns, 1);
    ck_assert_uint_eq(stats_of(hs, "20-hog.lua").memory_overruns, 2);
    struct hook_info hi;
    ck_assert(hooks_info(hs, 1, &hi));
    ck_assert_uint_le(hi.memory, 1 << 20);
    teardown(hs);
}
END_TEST

/* A hook that keeps over half its memory cap live and makes garbage must not be cut:
 * when the cap is reached, Lua collects and retries, and only a retry that still does
 * not fit is a memory overrun. */
START_TEST(test_garbage_near_the_cap_is_collected_not_cut)
{
    setup();
    write_hook("10-big.lua", "local keep = {}\n"
                             "for i = 1, 9000 do keep[i] = string.rep('k', 100) .. i end\n"
                             "return {topics = {'big'}, on_publish = function(m)\n"
                             "  local s = ''\n"
                             "  for i = 1, 40 do s = string.rep('g', 1000 * i) end\n"
                             "  m.payload = #keep .. ' ' .. #s return m end}\n");
    struct hooks *hs = start(10000000, 2 << 20, true);
    char first[128];
    for (int i = 0; i < 50; i++) {
        ck_assert_uint_eq(run(hs, "big", "x", first, NULL), 1);
        ck_assert_str_eq(first, "big 9000 40000");
    }
    ck_assert_uint_eq(stats_of(hs, "10-big.lua").memory_overruns, 0);
    ck_assert_uint_eq(stats_of(hs, "10-big.lua").errors, 0);
    teardown(hs);
}
END_TEST

START_TEST(test_chain_and_failed_reload)
{
    setup();
    write_hook("20-b.lua", "return {topics = {'c/#'}, on_publish = function(m)\n"
                           "  m.payload = m.payload .. 'b' return m end}\n");
    write_hook("10-a.lua", "return {topics = {'c/#', 'c/x'}, on_publish = function(m)\n"
                           "  m.payload = m.payload .. 'a' return m end}\n");
    write_hook("30-bad.lua", "return {topics = {'c/#'}, on_publish = 42}\n");
    struct hooks *hs = start(1000000, 16 << 20, false);
    char first[128];
    ck_assert_uint_eq(run(hs, "c/x", "", first, NULL), 1);
    ck_assert_str_eq(first, "c/x ab"); /* each hook once, in file-name order */
    struct hook_info hi;
    ck_assert(hooks_info(hs, 2, &hi));
    ck_assert_str_eq(hi.name, "30-bad.lua");
    ck_assert(!hi.loaded);
    ck_assert_str_eq(hi.error, "'on_publish' is not a function");
    /* a broken new version keeps the old one */
    sleep(1); /* a new mtime */
    write_hook("10-a.lua", "return {topics = {'c/#'}, on_publish = function(m) syntax error");
    hooks_rescan(hs);
    ck_assert_uint_eq(run(hs, "c/x", "", first, NULL), 1);
    ck_assert_str_eq(first, "c/x ab");
    ck_assert(hooks_info(hs, 0, &hi));
    ck_assert(hi.loaded && hi.error && strstr(hi.error, "10-a.lua:1:"));
    teardown(hs);
}
END_TEST

Suite *
suite_hooks(void)
{
    Suite *s = suite_create("hooks");
    TCase *tc = tcase_create("hooks");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_counters);
    tcase_add_test(tc, test_out_of_memory_around_the_call);
    tcase_add_test(tc, test_limits_cannot_be_caught);
    tcase_add_test(tc, test_chain_and_failed_reload);
    tcase_add_test(tc, test_garbage_near_the_cap_is_collected_not_cut);
    suite_add_tcase(s, tc);
    return s;
}
