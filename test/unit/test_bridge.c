/* SPDX-License-Identifier: MIT
 *
 * bridge: topic remapping with mosquitto's prefix rules (the table of mosquitto.conf(5)),
 * the local filters a bridge's session subscribes to, and the names it derives. No
 * connection is made: bridge_start is never called. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "bridge.h"
#include "conf.h"
#include "suites.h"

static uint32_t
no_waiting(void *sess)
{
    (void)sess;
    return 0;
}

static const struct bridge_ops ops = {.waiting = no_waiting};

struct fixture {
    struct event_base *base;
    struct bridges *bs;
    struct lq_conf c;
    struct bridge *br;
};

static void
setup(struct fixture *f, const char *block)
{
    char path[] = "/tmp/lunamq-bridge-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *fp = fdopen(fd, "w");
    fprintf(fp, "connection cloud\naddress 127.0.0.1:1\n%s\n", block);
    fclose(fp);
    char err[512] = "";
    conf_init(&f->c);
    int rc = conf_load(&f->c, path, err, sizeof(err));
    unlink(path);
    ck_assert_msg(rc == 0, "%s", err);
    f->base = event_base_new();
    f->bs = bridges_new(f->base, 100);
    ck_assert_ptr_nonnull(f->bs);
    f->br = bridge_new(f->bs, f->c.bridges, &ops, NULL, err, sizeof(err));
    ck_assert_msg(f->br != NULL, "%s", err);
}

static void
teardown(struct fixture *f)
{
    bridge_free(f->br);
    bridges_free(f->bs);
    event_base_free(f->base);
    conf_fini(&f->c);
}

/* The mapping of t going out (out = true) or coming in, or "(none)". */
static const char *
map(struct fixture *f, bool out, const char *t)
{
    static char buf[512];
    size_t n;
    const char *r =
        out ? bridge_map_out(f->br, t, strlen(t), &n) : bridge_map_in(f->br, t, strlen(t), &n);
    if (!r) return "(none)";
    snprintf(buf, sizeof(buf), "%.*s", (int)n, r);
    return buf;
}

START_TEST(test_prefix_table)
{
    struct fixture f;
    /* the rows of mosquitto.conf(5)'s table that are valid */
    setup(&f, "topic a/# both 1 L/ R/\n"
              "topic b out 0 L/ \"\"\n"
              "topic c out 0 \"\" R/\n"
              "topic d out 0 \"\" \"\"\n"
              "topic \"\" both 0 local/one remote/one\n");
    ck_assert_str_eq(map(&f, true, "L/a/x"), "R/a/x");
    ck_assert_str_eq(map(&f, false, "R/a/x/y"), "L/a/x/y");
    ck_assert_str_eq(map(&f, true, "L/a"), "R/a"); /* "a/#" matches its parent */
    ck_assert_str_eq(map(&f, true, "L/b"), "b");
    ck_assert_str_eq(map(&f, true, "c"), "R/c");
    ck_assert_str_eq(map(&f, true, "d"), "d");
    ck_assert_str_eq(map(&f, true, "local/one"), "remote/one");
    ck_assert_str_eq(map(&f, false, "remote/one"), "local/one");
    /* not bridged: no topic line matches, or not in that direction */
    ck_assert_str_eq(map(&f, true, "a/x"), "(none)");
    ck_assert_str_eq(map(&f, false, "b"), "(none)");
    ck_assert_str_eq(map(&f, true, "local/two"), "(none)");
    teardown(&f);
}
END_TEST

START_TEST(test_no_prefix_is_the_topic_itself)
{
    struct fixture f;
    setup(&f, "topic # both 2");
    const char *t = "x/y";
    size_t n;
    ck_assert_ptr_eq(bridge_map_out(f.br, t, 3, &n), t);
    ck_assert_uint_eq(n, 3);
    ck_assert_ptr_eq(bridge_map_in(f.br, t, 3, &n), t);
    /* '#' does not match $ topics [MQTT-4.7.2-1]: $SYS stays home */
    ck_assert_str_eq(map(&f, true, "$SYS/broker/uptime"), "(none)");
    teardown(&f);
}
END_TEST

START_TEST(test_first_line_wins_and_directions)
{
    struct fixture f;
    setup(&f, "topic s/# in 1 in/ up/\n"
              "topic s/+ out 1 \"\" first/\n"
              "topic s/# out 2 \"\" second/\n");
    ck_assert_str_eq(map(&f, true, "s/1"), "first/s/1");
    ck_assert_str_eq(map(&f, true, "s/1/2"), "second/s/1/2");
    ck_assert_str_eq(map(&f, false, "up/s/9"), "in/s/9");
    /* the session subscribes to the out lines only, with their QoS */
    const char *filter;
    uint8_t qos;
    ck_assert(bridge_local_filter(f.br, 0, &filter, &qos));
    ck_assert_str_eq(filter, "s/+");
    ck_assert_uint_eq(qos, 1);
    ck_assert(bridge_local_filter(f.br, 1, &filter, &qos));
    ck_assert_str_eq(filter, "s/#");
    ck_assert_uint_eq(qos, 2);
    ck_assert(!bridge_local_filter(f.br, 2, &filter, &qos));
    teardown(&f);
}
END_TEST

START_TEST(test_names_and_counters)
{
    struct fixture f;
    setup(&f, "topic t/# out 1");
    char host[256] = "", want[300];
    gethostname(host, sizeof(host) - 1);
    struct bridge_info bi;
    bridge_info(f.br, &bi);
    snprintf(want, sizeof(want), "%s.cloud", host); /* mosquitto's <hostname>.<name> */
    ck_assert_str_eq(bi.remote_id, want);
    snprintf(want, sizeof(want), "local.%s.cloud", host);
    ck_assert_str_eq(bridge_local_id(f.br), want);
    ck_assert_str_eq(bi.state, "idle");
    ck_assert_str_eq(bi.address, "127.0.0.1:1");
    ck_assert(bridge_keeps_local_session(f.br)); /* cleansession false by default */
    ck_assert(!bi.tls);
    size_t n;
    bridge_map_out(f.br, "t/1", 3, &n);
    bridge_map_out(f.br, "u/1", 3, &n); /* not bridged: not counted */
    bridge_info(f.br, &bi);
    ck_assert_uint_eq(bi.msgs_out, 1);
    teardown(&f);
}
END_TEST

START_TEST(test_ids_given_and_cleansession)
{
    struct fixture f;
    setup(&f, "topic t/# out 1\nremote_clientid edge-7\nlocal_clientid here\ncleansession true\n"
              "notification_topic edge/state");
    struct bridge_info bi;
    bridge_info(f.br, &bi);
    ck_assert_str_eq(bi.remote_id, "edge-7");
    ck_assert_str_eq(bridge_local_id(f.br), "here");
    ck_assert(!bridge_keeps_local_session(f.br)); /* local_cleansession follows it */
    teardown(&f);
}
END_TEST

Suite *
suite_bridge(void)
{
    Suite *s = suite_create("bridge");
    TCase *tc = tcase_create("topics");
    tcase_add_test(tc, test_prefix_table);
    tcase_add_test(tc, test_no_prefix_is_the_topic_itself);
    tcase_add_test(tc, test_first_line_wins_and_directions);
    tcase_add_test(tc, test_names_and_counters);
    tcase_add_test(tc, test_ids_given_and_cleansession);
    suite_add_tcase(s, tc);
    return s;
}
