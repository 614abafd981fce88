/* SPDX-License-Identifier: MIT
 *
 * Topic syntax and matching (every example of section 4.7), shared subscription
 * names (4.8.2), and the subscription tree with its $share groups. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "suites.h"
#include "topic.h"

#define S(x) x, strlen(x)

START_TEST(test_names_and_filters)
{
    ck_assert(topic_name_is_valid(S("sport/tennis/player1")));
    ck_assert(topic_name_is_valid(S("/")));
    ck_assert(!topic_name_is_valid(S("")));        /* [MQTT-4.7.3-1] */
    ck_assert(!topic_name_is_valid(S("sport/+"))); /* [MQTT-4.7.0-1] */
    ck_assert(!topic_name_is_valid(S("sport/#")));
    ck_assert(topic_filter_is_valid(S("sport/tennis/player1/#")));
    ck_assert(topic_filter_is_valid(S("#")));
    ck_assert(topic_filter_is_valid(S("+")));
    ck_assert(topic_filter_is_valid(S("+/tennis/#")));
    ck_assert(topic_filter_is_valid(S("sport/+/player1")));
    ck_assert(topic_filter_is_valid(S("/+")));
    ck_assert(!topic_filter_is_valid(S("sport/tennis#")));          /* [MQTT-4.7.1-1] */
    ck_assert(!topic_filter_is_valid(S("sport/tennis/#/ranking"))); /* [MQTT-4.7.1-1] */
    ck_assert(!topic_filter_is_valid(S("sport+")));                 /* [MQTT-4.7.1-2] */
    ck_assert(!topic_filter_is_valid(S("")));
}
END_TEST

/* issue 12.1: the $SYS tree is the broker's; "$SYSTEM" and "a/$SYS" are not in it. */
START_TEST(test_sys_topics)
{
    ck_assert(topic_is_sys(S("$SYS")));
    ck_assert(topic_is_sys(S("$SYS/")));
    ck_assert(topic_is_sys(S("$SYS/broker/version")));
    ck_assert(!topic_is_sys(S("$SYSTEM/x")));
    ck_assert(!topic_is_sys(S("$SY")));
    ck_assert(!topic_is_sys(S("a/$SYS")));
    ck_assert(!topic_is_sys(S("$sys/x")));
}
END_TEST

START_TEST(test_shared_names)
{
    const char *g, *f;
    size_t gl, fl;
    ck_assert_int_eq(topic_parse_shared(S("$share/grp/a/+"), &g, &gl, &f, &fl), 1);
    ck_assert_uint_eq(gl, 3);
    ck_assert_int_eq(strncmp(g, "grp", 3), 0);
    ck_assert_uint_eq(fl, 3);
    ck_assert_int_eq(strncmp(f, "a/+", 3), 0);
    ck_assert_int_eq(topic_parse_shared(S("a/b"), &g, &gl, &f, &fl), 0);
    ck_assert_int_eq(topic_parse_shared(S("$share/grp"), &g, &gl, &f, &fl),
                     -1); /* no filter [MQTT-4.8.2-1] */
    ck_assert_int_eq(topic_parse_shared(S("$share//a"), &g, &gl, &f, &fl), -1); /* empty group */
    ck_assert_int_eq(topic_parse_shared(S("$share/g+/a"), &g, &gl, &f, &fl),
                     -1); /* [MQTT-4.8.2-2] */
    ck_assert_int_eq(topic_parse_shared(S("$share/g/a#"), &g, &gl, &f, &fl), -1);
}
END_TEST

START_TEST(test_matching_spec_examples)
{
    /* 4.7.1.2 */
    ck_assert(topic_matches(S("sport/tennis/player1/#"), S("sport/tennis/player1")));
    ck_assert(topic_matches(S("sport/tennis/player1/#"), S("sport/tennis/player1/ranking")));
    ck_assert(
        topic_matches(S("sport/tennis/player1/#"), S("sport/tennis/player1/score/wimbledon")));
    ck_assert(topic_matches(S("sport/#"), S("sport")));
    ck_assert(topic_matches(S("#"), S("a/b/c")));
    /* 4.7.1.3 */
    ck_assert(topic_matches(S("sport/tennis/+"), S("sport/tennis/player1")));
    ck_assert(topic_matches(S("sport/tennis/+"), S("sport/tennis/player2")));
    ck_assert(!topic_matches(S("sport/tennis/+"), S("sport/tennis/player1/ranking")));
    ck_assert(!topic_matches(S("sport/+"), S("sport")));
    ck_assert(topic_matches(S("sport/+"), S("sport/")));
    ck_assert(topic_matches(S("+/+"), S("/finance")));
    ck_assert(topic_matches(S("/+"), S("/finance")));
    ck_assert(!topic_matches(S("+"), S("/finance")));
    /* 4.7.2 [MQTT-4.7.2-1] */
    ck_assert(!topic_matches(S("#"), S("$SYS/broker/uptime")));
    ck_assert(!topic_matches(S("+/monitor/Clients"), S("$SYS/monitor/Clients")));
    ck_assert(topic_matches(S("$SYS/#"), S("$SYS/monitor/Clients")));
    ck_assert(topic_matches(S("$SYS/monitor/+"), S("$SYS/monitor/Clients")));
    /* case and spaces are significant (4.7.3) */
    ck_assert(!topic_matches(S("ACCOUNTS"), S("Accounts")));
    ck_assert(topic_matches(S("Accounts payable"), S("Accounts payable")));
}
END_TEST

struct hits {
    int n;
    void *owners[64];
    struct sub_group *groups[8];
    int ngroups;
};

static void
collect(void *owner, const struct sub_opts *o, struct sub_group *g, void *arg)
{
    (void)o;
    struct hits *h = arg;
    if (g) {
        h->groups[h->ngroups++] = g;
        return;
    }
    h->owners[h->n++] = owner;
}

static int
count_matches(struct topic_tree *t, const char *topic)
{
    struct hits h = {0};
    topic_tree_match(t, S(topic), collect, &h);
    return h.n + h.ngroups;
}

static int a, b, c;
static const struct sub_opts q1 = {.qos = 1};

START_TEST(test_tree_wildcards)
{
    struct topic_tree *t = topic_tree_new();
    ck_assert_int_eq(topic_tree_add(t, S("a/+/c"), NULL, 0, &a, &q1), 1);
    ck_assert_int_eq(topic_tree_add(t, S("a/#"), NULL, 0, &b, &q1), 1);
    ck_assert_int_eq(topic_tree_add(t, S("#"), NULL, 0, &c, &q1), 1);
    ck_assert_int_eq(count_matches(t, "a/b/c"), 3);
    ck_assert_int_eq(count_matches(t, "a/b/x/c"), 2);
    ck_assert_int_eq(count_matches(t, "a"), 2); /* a/# matches the parent */
    ck_assert_int_eq(count_matches(t, "x"), 1);
    ck_assert_int_eq(count_matches(t, "$SYS/x"), 0); /* [MQTT-4.7.2-1] */
    ck_assert_int_eq(topic_tree_add(t, S("$SYS/#"), NULL, 0, &a, &q1), 1);
    ck_assert_int_eq(count_matches(t, "$SYS/x"), 1);
    ck_assert_uint_eq(topic_tree_count(t), 4);
    topic_tree_free(t);
}
END_TEST

START_TEST(test_tree_replace_remove_prune)
{
    struct topic_tree *t = topic_tree_new();
    struct sub_opts q2 = {.qos = 2};
    ck_assert_int_eq(topic_tree_add(t, S("x/y"), NULL, 0, &a, &q1), 1);
    ck_assert_int_eq(topic_tree_add(t, S("x/y"), NULL, 0, &a, &q2),
                     0); /* replaced [MQTT-3.8.4-3] */
    ck_assert_uint_eq(topic_tree_count(t), 1);
    ck_assert_int_eq(topic_tree_add(t, S("x/y"), NULL, 0, &b, &q1), 1);
    /* overlapping subscriptions of one owner: one callback each (merging is the caller's) */
    ck_assert_int_eq(topic_tree_add(t, S("x/+"), NULL, 0, &a, &q1), 1);
    ck_assert_int_eq(count_matches(t, "x/y"), 3);
    ck_assert_int_eq(topic_tree_remove(t, S("x/y"), NULL, 0, &a), 0);
    ck_assert_int_eq(topic_tree_remove(t, S("x/y"), NULL, 0, &a), -1);
    ck_assert_int_eq(topic_tree_remove(t, S("nope"), NULL, 0, &a), -1);
    ck_assert_int_eq(count_matches(t, "x/y"), 2);
    ck_assert_int_eq(topic_tree_remove(t, S("x/y"), NULL, 0, &b), 0);
    ck_assert_int_eq(topic_tree_remove(t, S("x/+"), NULL, 0, &a), 0);
    ck_assert_uint_eq(topic_tree_count(t), 0);
    ck_assert_int_eq(count_matches(t, "x/y"), 0);
    topic_tree_free(t); /* ASan: pruned nodes are not leaked */
}
END_TEST

START_TEST(test_tree_many_children)
{
    struct topic_tree *t = topic_tree_new();
    static int owners[10000];
    char f[64];
    for (int i = 0; i < 10000; i++) {
        snprintf(f, sizeof(f), "devices/%d/telemetry", i);
        ck_assert_int_eq(topic_tree_add(t, S(f), NULL, 0, &owners[i], &q1), 1);
    }
    struct hits h = {0};
    topic_tree_match(t, S("devices/4242/telemetry"), collect, &h);
    ck_assert_int_eq(h.n, 1);
    ck_assert_ptr_eq(h.owners[0], &owners[4242]);
    for (int i = 0; i < 10000; i += 2) {
        snprintf(f, sizeof(f), "devices/%d/telemetry", i);
        ck_assert_int_eq(topic_tree_remove(t, S(f), NULL, 0, &owners[i]), 0);
    }
    ck_assert_int_eq(count_matches(t, "devices/4242/telemetry"), 0);
    ck_assert_int_eq(count_matches(t, "devices/4243/telemetry"), 1);
    topic_tree_free(t);
}
END_TEST

START_TEST(test_tree_deep)
{
    /* a topic of 20,000 levels and a filter as deep: no recursion to overflow */
    static char deep[40000];
    for (int i = 0; i < 20000; i++) {
        deep[2 * i] = 'a';
        deep[2 * i + 1] = '/';
    }
    deep[39999] = '\0';
    struct topic_tree *t = topic_tree_new();
    ck_assert_int_eq(topic_tree_add(t, S(deep), NULL, 0, &a, &q1), 1);
    deep[39998] = '+';
    ck_assert_int_eq(topic_tree_add(t, S(deep), NULL, 0, &b, &q1), 1);
    deep[39998] = 'a';
    ck_assert_int_eq(count_matches(t, deep), 2);
    topic_tree_free(t);
}
END_TEST

static bool
not_b(void *owner, void *arg)
{
    (void)arg;
    return owner != &b;
}

START_TEST(test_shared_groups)
{
    struct topic_tree *t = topic_tree_new();
    ck_assert_int_eq(topic_tree_add(t, S("job/+"), S("g"), &a, &q1), 1);
    ck_assert_int_eq(topic_tree_add(t, S("job/+"), S("g"), &b, &q1), 1);
    ck_assert_int_eq(topic_tree_add(t, S("job/+"), S("g"), &c, &q1), 1);
    ck_assert_int_eq(topic_tree_add(t, S("job/+"), S("h"), &a, &q1), 1);
    ck_assert_int_eq(topic_tree_add(t, S("job/+"), NULL, 0, &a, &q1), 1); /* plain, separate */
    struct hits h = {0};
    topic_tree_match(t, S("job/1"), collect, &h);
    ck_assert_int_eq(h.n, 1);
    ck_assert_int_eq(h.ngroups, 2); /* each group reported once */
    /* round robin over the members */
    struct sub_group *g = h.groups[0];
    void *seen[6];
    const struct sub_opts *o;
    for (int i = 0; i < 6; i++) ck_assert(sub_group_pick(g, NULL, NULL, &seen[i], &o));
    ck_assert_ptr_ne(seen[0], seen[1]);
    ck_assert_ptr_ne(seen[1], seen[2]);
    ck_assert_ptr_eq(seen[0], seen[3]);
    /* unusable members are skipped */
    for (int i = 0; i < 6; i++) {
        void *w;
        ck_assert(sub_group_pick(g, not_b, NULL, &w, &o));
        ck_assert_ptr_ne(w, &b);
    }
    /* found by its exact filter and name, as a node's NATS queue group names it */
    ck_assert_ptr_eq(topic_tree_group(t, S("job/+"), S("g")), g);
    ck_assert_ptr_null(topic_tree_group(t, S("job/1"), S("g"))); /* matches, not the filter */
    ck_assert_ptr_null(topic_tree_group(t, S("job/+"), S("gg")));
    ck_assert_ptr_null(topic_tree_group(t, S("job/+/x"), S("g")));
    ck_assert_int_eq(topic_tree_remove(t, S("job/+"), S("g"), &b), 0);
    ck_assert_int_eq(topic_tree_remove(t, S("job/+"), S("g"), &b), -1);
    ck_assert_int_eq(topic_tree_remove(t, S("job/+"), S("x"), &a), -1);
    ck_assert_uint_eq(topic_tree_count(t), 4);
    topic_tree_free(t);
}
END_TEST

/* issue 11.3: topic_is_too_deep counts levels ('/' + 1); 0 is no limit. */
START_TEST(test_topic_levels_limit)
{
    ck_assert(!topic_is_too_deep(S("a/b/c"), 3));
    ck_assert(topic_is_too_deep(S("a/b/c/d"), 3));
    ck_assert(topic_is_too_deep(S("///"), 3)); /* four empty levels */
    ck_assert(!topic_is_too_deep(S("//"), 3));
    ck_assert(!topic_is_too_deep(S("a/b/c/d"), 0));
    static char deep[65536];
    memset(deep, '/', sizeof(deep) - 1);
    ck_assert(topic_is_too_deep(deep, sizeof(deep) - 1, 200));
    ck_assert(!topic_is_too_deep(deep, 199, 200));
    ck_assert(topic_is_too_deep(deep, 200, 200));
}
END_TEST

static void
count_groups(void *owner, const struct sub_opts *o, struct sub_group *g, void *arg)
{
    (void)owner;
    (void)o;
    if (g) ++*(int *)arg;
}

/* issue 11.3/11.4: the bytes the tree holds go back to where they were when what
 * was added is removed; 20 000 groups on one filter are indexed (found in O(1)). */
START_TEST(test_tree_bytes_and_many_groups)
{
    struct topic_tree *t = topic_tree_new();
    size_t empty = topic_tree_bytes(t);
    char f[64], g[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(f, sizeof(f), "a/%d/+/x/#", i);
        ck_assert_int_eq(topic_tree_add(t, S(f), NULL, 0, &a, &q1), 1);
    }
    size_t full = topic_tree_bytes(t);
    ck_assert_uint_gt(full, empty + 1000 * 4 * 80);
    for (int i = 0; i < 20000; i++) {
        snprintf(g, sizeof(g), "g%d", i);
        ck_assert_int_eq(topic_tree_add(t, S("s/x"), S(g), &b, &q1), 1);
    }
    int ngroups = 0;
    topic_tree_match(t, S("s/x"), count_groups, &ngroups);
    ck_assert_int_eq(ngroups, 20000);
    for (int i = 0; i < 20000; i++) {
        snprintf(g, sizeof(g), "g%d", i);
        ck_assert_int_eq(topic_tree_remove(t, S("s/x"), S(g), &b), 0);
    }
    ck_assert_uint_eq(topic_tree_bytes(t), full);
    for (int i = 0; i < 1000; i++) {
        snprintf(f, sizeof(f), "a/%d/+/x/#", i);
        ck_assert_int_eq(topic_tree_remove(t, S(f), NULL, 0, &a), 0);
    }
    ck_assert_uint_eq(topic_tree_bytes(t), empty);
    topic_tree_free(t);
}
END_TEST

Suite *
suite_topic(void)
{
    Suite *s = suite_create("topic");
    TCase *tc = tcase_create("syntax");
    tcase_add_test(tc, test_names_and_filters);
    tcase_add_test(tc, test_sys_topics);
    tcase_add_test(tc, test_shared_names);
    tcase_add_test(tc, test_matching_spec_examples);
    tcase_add_test(tc, test_topic_levels_limit);
    suite_add_tcase(s, tc);
    tc = tcase_create("tree");
    tcase_add_test(tc, test_tree_wildcards);
    tcase_add_test(tc, test_tree_replace_remove_prune);
    tcase_add_test(tc, test_tree_many_children);
    tcase_add_test(tc, test_tree_deep);
    tcase_add_test(tc, test_shared_groups);
    tcase_add_test(tc, test_tree_bytes_and_many_groups);
    suite_add_tcase(s, tc);
    return s;
}
