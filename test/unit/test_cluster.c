/* SPDX-License-Identifier: MIT
 *
 * The cluster's topic <-> NATS subject mapping (broker/cluster/subject.c): fixed
 * escapes, refused subjects, buffer bounds, and random topics and filters whose NATS
 * match must agree with topic_matches(). */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../broker/cluster/cluster_int.h"
#include "suites.h"
#include "topic.h"

#define P    "lq.c1.m"
#define PLEN (sizeof(P) - 1)

/* topic (n bytes) maps to P "." tokens, and back to the same bytes */
static void
maps_n(const char *topic, size_t n, const char *tokens)
{
    char out[512], back[512];
    size_t len = cluster_subject_of_topic(P, topic, n, out, sizeof(out));
    ck_assert_uint_eq(len, PLEN + 1 + strlen(tokens));
    ck_assert_uint_eq(strlen(out), len);
    ck_assert(memcmp(out, P ".", PLEN + 1) == 0);
    ck_assert_str_eq(out + PLEN + 1, tokens);
    long got = cluster_topic_of_subject(out + PLEN + 1, len - PLEN - 1, back, sizeof(back));
    ck_assert_int_eq(got, (long)n);
    ck_assert(memcmp(back, topic, n) == 0);
}

static void
maps(const char *topic, const char *tokens)
{
    maps_n(topic, strlen(topic), tokens);
}

START_TEST(test_topic_escapes)
{
    maps("a", "a");
    maps("sport/tennis/player1", "sport.tennis.player1");
    maps("a.b", "a%2Eb");
    maps("a b", "a%20b");
    maps("a*", "a%2A");
    maps("*", "%2A");
    maps(">", "%3E");
    maps("a/>/b", "a.%3E.b");
    maps("%", "%25");
    maps("%-", "%25-"); /* not the empty level */
    maps("100%/%2E", "100%25.%252E");
    maps("\t\n\r", "%09%0A%0D");
    maps("\x01\x1f\x7f!~", "%01%1F%7F!~"); /* '!' (0x21) and '~' pass */
    maps_n("a\0b", 3, "a%00b");            /* U+0000 is the codec's to refuse */
    maps("-_:;,=@&?\"'()[]{}<", "-_:;,=@&?\"'()[]{}<");
    /* empty levels */
    maps("a//b", "a.%-.b");
    maps("/", "%-.%-");
    maps("/a", "%-.a");
    maps("a/", "a.%-");
    maps("//", "%-.%-.%-");
    /* '$' escaped only where it begins a level */
    maps("$SYS/x", "%24SYS.x");
    maps("a/$b", "a.%24b");
    maps("a$/b$c", "a$.b$c");
    maps("$$", "%24$");
    maps("$", "%24");
    /* UTF-8 passes unchanged */
    maps("caf\xc3\xa9/\xe6\x97\xa5\xe6\x9c\xac", "caf\xc3\xa9.\xe6\x97\xa5\xe6\x9c\xac");
    maps("\xf0\x9f\x8c\x99.x", "\xf0\x9f\x8c\x99%2Ex");
}
END_TEST

/* filter maps to want[0] (and want[1]), each P "." tokens */
static void
filter_maps(const char *filter, const char *want0, const char *want1)
{
    char a[512], b[512], w[512];
    char *out[2] = {a, b};
    int n = cluster_subjects_of_filter(P, filter, strlen(filter), out, sizeof(a));
    ck_assert_int_eq(n, want1 ? 2 : 1);
    snprintf(w, sizeof(w), P ".%s", want0);
    ck_assert_str_eq(a, w);
    if (!want1) return;
    snprintf(w, sizeof(w), P ".%s", want1);
    ck_assert_str_eq(b, w);
}

START_TEST(test_filter_subjects)
{
    filter_maps("a/b", "a.b", NULL);
    filter_maps("+", "*", NULL);
    filter_maps("a/+/c", "a.*.c", NULL);
    filter_maps("+/+", "*.*", NULL);
    filter_maps("#", ">", NULL);
    filter_maps("a/#", "a", "a.>");
    filter_maps("+/#", "*", "*.>");
    filter_maps("a/+/#", "a.*", "a.*.>");
    filter_maps("/#", "%-", "%-.>");
    filter_maps("//#", "%-.%-", "%-.%-.>");
    filter_maps("/", "%-.%-", NULL);
    filter_maps("+//+", "*.%-.*", NULL);
    filter_maps("$SYS/#", "%24SYS", "%24SYS.>");
    filter_maps("a/$b/+", "a.%24b.*", NULL);
    filter_maps("a.b/*/>", "a%2Eb.%2A.%3E", NULL); /* not wildcards in MQTT */
    filter_maps("%/a b/#", "%25.a%20b", "%25.a%20b.>");
}
END_TEST

static void
refused(const char *tokens)
{
    char out[64];
    ck_assert_msg(cluster_topic_of_subject(tokens, strlen(tokens), out, sizeof(out)) == -1,
                  "\"%s\" was taken", tokens);
}

START_TEST(test_subject_refused)
{
    /* empty tokens */
    refused("");
    refused(".");
    refused("a.");
    refused(".a");
    refused("a..b");
    /* wildcard tokens, and the bytes the mapping escapes */
    refused("*");
    refused(">");
    refused("a.*");
    refused("a.>");
    refused("a*");
    refused("a>b");
    refused("a b");
    refused("a\tb");
    refused("\x7f");
    refused("$SYS.x");
    refused("a.$b");
    /* no topic name holds these in a level */
    refused("a/b");
    refused("a+");
    refused("+");
    refused("#");
    refused("a.#");
    /* escapes: short, not hex, lower case, not the mapping's spelling */
    refused("%");
    refused("a%");
    refused("%2");
    refused("a%2.b");
    refused("%2G");
    refused("%G2");
    refused("%2e");
    refused("%7f");
    refused("%41");  /* 'A' is written as itself */
    refused("%2F");  /* '/' separates levels */
    refused("a%24"); /* '$' escaped only where it begins a level */
    refused("%24%24");
    refused("%-a"); /* "%-" is a whole token */
    refused("a%-");
    refused("%-%-");
    refused("%-.-%"); /* the empty level is fine, "-%" is not */

    /* taken: the spellings the mapping writes */
    char out[16];
    ck_assert_int_eq(cluster_topic_of_subject("a$", 2, out, sizeof(out)), 2);
    ck_assert_int_eq(cluster_topic_of_subject("%24", 3, out, sizeof(out)), 1);
    ck_assert_int_eq(out[0], '$');
    ck_assert_int_eq(cluster_topic_of_subject("%00", 3, out, sizeof(out)), 1);
    ck_assert_int_eq(out[0], '\0');
    ck_assert_int_eq(cluster_topic_of_subject("%-", 2, out, sizeof(out)), 0); /* "" */
    ck_assert_int_eq(cluster_topic_of_subject("%-.%-", 5, out, sizeof(out)), 1);
    ck_assert_int_eq(out[0], '/');
    /* out too small; len bytes suffice */
    ck_assert_int_eq(cluster_topic_of_subject("a.b", 3, out, 2), -1);
    ck_assert_int_eq(cluster_topic_of_subject("a.b", 3, out, 3), 3);
    ck_assert_int_eq(cluster_topic_of_subject("%2E", 3, out, 0), -1);
    ck_assert_int_eq(cluster_topic_of_subject("%2E", 3, out, 1), 1);
}
END_TEST

/* Every cap below what the subject needs gives 0 and writes nothing past cap. */
START_TEST(test_buffer_bounds)
{
    const char *topic = "a.b/$c//%";
    char full[64], out[64];
    size_t need = cluster_subject_of_topic(P, topic, strlen(topic), full, sizeof(full));
    ck_assert_uint_gt(need, 0);
    for (size_t cap = 0; cap <= need + 1; cap++) {
        memset(out, 'X', sizeof(out));
        size_t n = cluster_subject_of_topic(P, topic, strlen(topic), out, cap);
        ck_assert_uint_eq(n, cap > need ? need : 0);
        for (size_t i = cap; i < sizeof(out); i++) ck_assert_int_eq(out[i], 'X');
    }
    ck_assert_str_eq(out, full);

    const char *filter = "a.b/+/#"; /* "P.a%2Eb.*" and "P.a%2Eb.*.>" */
    char a[64], b[64];
    char *two[2] = {a, b};
    for (size_t cap = 0; cap <= strlen(P ".a%2Eb.*.>") + 1; cap++) {
        memset(a, 'X', sizeof(a));
        memset(b, 'X', sizeof(b));
        int n = cluster_subjects_of_filter(P, filter, strlen(filter), two, cap);
        ck_assert_int_eq(n, cap > strlen(P ".a%2Eb.*.>") ? 2 : 0);
        for (size_t i = cap; i < sizeof(a); i++) {
            ck_assert_int_eq(a[i], 'X');
            ck_assert_int_eq(b[i], 'X');
        }
    }
    ck_assert_str_eq(b, P ".a%2Eb.*.>");
}
END_TEST

/* The longest topic, with the documented bound (strlen(prefix) + 3 * tlen + 4) met
 * exactly by 65535 '/' (65536 empty levels) and one byte short of it refused. */
START_TEST(test_longest_topic)
{
    enum { TLEN = 65535 };
    size_t bound = PLEN + 3 * (size_t)TLEN + 4;
    char *topic = malloc(TLEN), *out = malloc(bound), *back = malloc(TLEN);
    ck_assert(topic && out && back);

    memset(topic, '/', TLEN);
    ck_assert_uint_eq(cluster_subject_of_topic(P, topic, TLEN, out, bound), bound - 1);
    ck_assert_uint_eq(cluster_subject_of_topic(P, topic, TLEN, out, bound - 1), 0);
    ck_assert_int_eq(cluster_topic_of_subject(out + PLEN + 1, bound - 2 - PLEN, back, TLEN), TLEN);
    ck_assert(memcmp(back, topic, TLEN) == 0);

    memset(topic, '.', TLEN); /* one level, every byte escaped */
    size_t need = PLEN + 1 + 3 * (size_t)TLEN;
    ck_assert_uint_eq(cluster_subject_of_topic(P, topic, TLEN, out, need + 1), need);
    ck_assert_uint_eq(cluster_subject_of_topic(P, topic, TLEN, out, need), 0);
    ck_assert_uint_eq(cluster_subject_of_topic(P, topic, TLEN, out, 100), 0);

    static const char mix[] = "ab/.$% *>\xc3\xa9-";
    for (size_t i = 0; i < TLEN; i++) topic[i] = mix[i % (sizeof(mix) - 1)];
    size_t n = cluster_subject_of_topic(P, topic, TLEN, out, bound);
    ck_assert_uint_gt(n, 0);
    ck_assert_int_eq(cluster_topic_of_subject(out + PLEN + 1, n - PLEN - 1, back, TLEN), TLEN);
    ck_assert(memcmp(back, topic, TLEN) == 0);
    ck_assert_int_eq(cluster_topic_of_subject(out + PLEN + 1, n - PLEN - 1, back, TLEN - 1), -1);
    free(topic);
    free(out);
    free(back);
}
END_TEST

/* NATS subject matching: '*' is one token, a last '>' one or more. */
static bool
nats_matches(const char *filter, const char *subject)
{
    const char *f = filter, *s = subject;
    for (;;) {
        size_t fl = strcspn(f, "."), sl = strcspn(s, ".");
        bool flast = f[fl] == '\0', slast = s[sl] == '\0';
        if (fl == 1 && f[0] == '>' && flast) return true;
        if (!(fl == 1 && f[0] == '*') && (fl != sl || memcmp(f, s, fl) != 0)) return false;
        if (flast || slast) return flast && slast;
        f += fl + 1;
        s += sl + 1;
    }
}

static uint64_t rng_state;

static uint32_t
rng(uint32_t below)
{
    rng_state ^= rng_state << 13; /* xorshift64 */
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32) % below;
}

/* A level: mostly from a few that collide often, sometimes random bytes. */
static size_t
put_random_level(char *p)
{
    static const char *const pool[] = {
        "a", "b", "", ".", " ", "*", ">", "%", "%-", "%2E", "$", "$a", "a$", "a.b", "\xc3\xa9", "-",
    };
    static const char bytes[] = "ab.*>%$- \x7f\xc3\xa9";
    if (rng(4)) {
        const char *l = pool[rng(sizeof(pool) / sizeof(pool[0]))];
        memcpy(p, l, strlen(l));
        return strlen(l);
    }
    size_t n = 1 + rng(3);
    for (size_t i = 0; i < n; i++) p[i] = bytes[rng(sizeof(bytes) - 1)];
    return n;
}

/* A filter: the topic's levels with some '+', a mutation, a cut with '#'; or random. */
static size_t
random_filter(char *f, const char *t, size_t tlen)
{
    size_t n = 0;
    if (rng(2)) {
        size_t cut = rng(3) ? SIZE_MAX : rng(6); /* levels kept before a '#' */
        size_t level = 0, i = 0;
        while (i <= tlen && level < cut) {
            size_t end = i;
            while (end < tlen && t[end] != '/') end++;
            if (level) f[n++] = '/';
            uint32_t r = rng(8);
            if (r < 2) {
                f[n++] = '+';
            } else if (r == 2) {
                n += put_random_level(f + n);
            } else {
                memcpy(f + n, t + i, end - i);
                n += end - i;
            }
            level++;
            i = end + 1;
        }
        if (cut != SIZE_MAX) {
            if (level) f[n++] = '/';
            f[n++] = '#';
        }
        return n;
    }
    size_t levels = 1 + rng(4);
    for (size_t l = 0; l < levels; l++) {
        if (l) f[n++] = '/';
        uint32_t r = rng(5);
        if (r == 0) {
            f[n++] = '+';
        } else if (r == 1 && l == levels - 1) {
            f[n++] = '#';
        } else {
            n += put_random_level(f + n);
        }
    }
    return n;
}

/* For topics not under '$': MQTT matches exactly when NATS does. For '$' topics NATS
 * may match more (wildcard-first filters); it never matches less. */
START_TEST(test_random_equivalence)
{
    const char *env = getenv("LUNAMQ_TEST_SEED");
    uint64_t seed =
        env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;
    rng_state = seed ? seed : 1;
    unsigned matched = 0, dollar_extra = 0;
    for (int k = 0; k < 20000; k++) {
        char t[64], f[128], ts[512], a[512], b[512], back[64];
        size_t tlen = 0, levels = 1 + rng(5);
        for (size_t l = 0; l < levels; l++) {
            if (l) t[tlen++] = '/';
            tlen += put_random_level(t + tlen);
        }
        size_t flen = random_filter(f, t, tlen);
        if (tlen == 0 || flen == 0) continue; /* not a topic name, not a filter */
        ck_assert_msg(topic_name_is_valid(t, tlen) && topic_filter_is_valid(f, flen),
                      "seed %llu: bad case %.*s %.*s", (unsigned long long)seed, (int)tlen, t,
                      (int)flen, f);

        size_t n = cluster_subject_of_topic(P, t, tlen, ts, sizeof(ts));
        ck_assert_msg(n > 0, "seed %llu: topic %.*s", (unsigned long long)seed, (int)tlen, t);
        ck_assert_msg(cluster_topic_of_subject(ts + PLEN + 1, n - PLEN - 1, back, sizeof(back)) ==
                              (long)tlen &&
                          memcmp(back, t, tlen) == 0,
                      "seed %llu: round trip of %.*s", (unsigned long long)seed, (int)tlen, t);

        char *subjects[2] = {a, b};
        int ns = cluster_subjects_of_filter(P, f, flen, subjects, sizeof(a));
        ck_assert_msg(ns == 1 || ns == 2, "seed %llu: filter %.*s", (unsigned long long)seed,
                      (int)flen, f);
        bool nats = nats_matches(a, ts) || (ns == 2 && nats_matches(b, ts));
        bool mqtt = topic_matches(f, flen, t, tlen);
        bool ok = t[0] == '$' ? !mqtt || nats : mqtt == nats;
        ck_assert_msg(ok, "seed %llu: filter \"%.*s\" topic \"%.*s\": MQTT %d, NATS %d (%s | %s)",
                      (unsigned long long)seed, (int)flen, f, (int)tlen, t, mqtt, nats, a,
                      ns == 2 ? b : "-");
        matched += mqtt;
        dollar_extra += nats && !mqtt;
    }
    /* the generator reaches both sides and the '$' rule */
    ck_assert_msg(matched > 4000 && dollar_extra > 100, "seed %llu: %u matched, %u '$' extra",
                  (unsigned long long)seed, matched, dollar_extra);
}
END_TEST

Suite *
suite_cluster(void)
{
    Suite *s = suite_create("cluster");
    TCase *tc = tcase_create("subject");
    tcase_add_test(tc, test_topic_escapes);
    tcase_add_test(tc, test_filter_subjects);
    tcase_add_test(tc, test_subject_refused);
    tcase_add_test(tc, test_buffer_bounds);
    tcase_add_test(tc, test_longest_topic);
    tcase_add_test(tc, test_random_equivalence);
    suite_add_tcase(s, tc);
    return s;
}
