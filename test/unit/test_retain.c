/* SPDX-License-Identifier: MIT
 *
 * The retained store: set, replace, clear with an empty payload, and the walk of
 * a filter with wildcards and the '$' rule. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "msg.h"
#include "retain.h"
#include "suites.h"

static struct msg *
mk(const char *topic, const char *payload)
{
    struct msg_init in = {.topic = topic,
                          .topic_len = strlen(topic),
                          .payload = (const uint8_t *)payload,
                          .payload_len = strlen(payload),
                          .qos = 1,
                          .retain = true};
    return msg_new(&in);
}

struct seen {
    int n;
    char topics[16][32];
    char payloads[16][32];
};

static void
collect(struct msg *m, void *arg)
{
    struct seen *s = arg;
    strncpy(s->topics[s->n], m->topic, 31);
    snprintf(s->payloads[s->n], 32, "%.*s", (int)m->payload_len, (const char *)m->payload);
    s->n++;
}

static int
matches(struct retain *r, const char *filter)
{
    struct seen s = {0};
    retain_match(r, filter, strlen(filter), collect, &s);
    return s.n;
}

static void
put(struct retain *r, const char *topic, const char *payload)
{
    struct msg *m = mk(topic, payload);
    retain_set(r, m);
    msg_unref(m); /* the store keeps its own reference */
}

START_TEST(test_set_replace_clear)
{
    struct retain *r = retain_new();
    put(r, "a/b", "1");
    put(r, "a/b", "2"); /* replaces [MQTT-3.3.1-5] */
    ck_assert_uint_eq(retain_count(r), 1);
    struct seen s = {0};
    retain_match(r, "a/b", 3, collect, &s);
    ck_assert_int_eq(s.n, 1);
    ck_assert_str_eq(s.payloads[0], "2"); /* the replacing message is stored (issue 12.20) */
    struct msg *got = retain_get(r, "a/b", 3);
    ck_assert(got && got->payload_len == 1 && got->payload[0] == '2');
    ck_assert_ptr_null(retain_get(r, "a", 1)); /* a level on the way holds none */
    put(r, "a/b", "");                         /* empty payload clears [MQTT-3.3.1-6] */
    ck_assert_uint_eq(retain_count(r), 0);
    ck_assert_ptr_null(retain_get(r, "a/b", 3));
    ck_assert_int_eq(matches(r, "a/b"), 0);
    put(r, "x", ""); /* and is never stored [MQTT-3.3.1-7] */
    ck_assert_uint_eq(retain_count(r), 0);
    retain_free(r);
}
END_TEST

START_TEST(test_wildcard_walk)
{
    struct retain *r = retain_new();
    put(r, "sport/tennis/player1", "x");
    put(r, "sport/tennis/player2", "x");
    put(r, "sport/tennis/player1/ranking", "x");
    put(r, "sport", "x");
    put(r, "/finance", "x");
    put(r, "$SYS/uptime", "x");
    ck_assert_int_eq(matches(r, "sport/tennis/+"), 2);
    ck_assert_int_eq(matches(r, "sport/#"), 4); /* includes "sport" itself */
    ck_assert_int_eq(matches(r, "#"), 5);       /* not $SYS [MQTT-4.7.2-1] */
    ck_assert_int_eq(matches(r, "+/+"), 1);     /* /finance */
    ck_assert_int_eq(matches(r, "+/tennis/#"), 3);
    ck_assert_int_eq(matches(r, "$SYS/#"), 1);
    ck_assert_int_eq(matches(r, "+/uptime"), 0);
    ck_assert_int_eq(matches(r, "nothing/#"), 0);
    retain_clear(r, "sport", 5);
    ck_assert_int_eq(matches(r, "sport/#"), 3);
    retain_free(r);
}
END_TEST

/* Issue 13: the snapshot walks the store in slices while it changes. Every message
 * present from begin to end is returned once; one cleared before the cursor reaches it
 * is not; clearing the node the cursor points at does not lose the rest. */
START_TEST(test_iteration_survives_changes)
{
    struct retain *r = retain_new();
    char t[16];
    for (int i = 0; i < 10; i++) {
        snprintf(t, sizeof(t), "t/%d", i);
        put(r, t, "v");
    }
    retain_iter_begin(r);
    struct msg *m = retain_iter_next(r);
    ck_assert_str_eq(m->topic, "t/0");
    retain_clear(r, "t/1", 3); /* the cursor's node: the walk goes on after it */
    put(r, "t/5", "replaced"); /* replaced in place: still once */
    put(r, "t/6", "");         /* cleared ahead of the cursor: not returned */
    put(r, "new", "v");        /* set meanwhile: at the end */
    int seen[10] = {0}, others = 0, n = 1;
    seen[0] = 1;
    while ((m = retain_iter_next(r))) {
        n++;
        int k;
        if (sscanf(m->topic, "t/%d", &k) == 1)
            seen[k]++;
        else
            others++;
    }
    for (int i = 0; i < 10; i++) ck_assert_int_eq(seen[i], i == 1 || i == 6 ? 0 : 1);
    ck_assert_int_eq(others, 1);
    ck_assert_int_eq(n, 9);
    retain_free(r);
}
END_TEST

Suite *
suite_retain(void)
{
    Suite *s = suite_create("retain");
    TCase *tc = tcase_create("store");
    tcase_add_test(tc, test_set_replace_clear);
    tcase_add_test(tc, test_wildcard_walk);
    tcase_add_test(tc, test_iteration_survives_changes);
    suite_add_tcase(s, tc);
    return s;
}
