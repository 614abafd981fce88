/* SPDX-License-Identifier: MIT
 *
 * The key-value store: set, get, replace, delete; binary keys in byte order and prefix
 * listings; the byte bound; expiry; recovery; what on_change reports; and a long random
 * run checked against a sorted array. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "suites.h"

#define E(k, v) ((size_t)(k) + (v) + KV_ENTRY_OVERHEAD) /* an entry's accounted size */

static enum kv_rc
set(struct kv *kv, const char *key, const char *value, int64_t expires_ms)
{
    return kv_set(kv, key, strlen(key), value, strlen(value), expires_ms);
}

/* The value as a C string, "-" when absent. */
static const char *
get(struct kv *kv, const char *key, int64_t now_ms)
{
    static char buf[256];
    const char *v;
    size_t vlen;
    if (!kv_get(kv, key, strlen(key), now_ms, &v, &vlen)) return "-";
    ck_assert_uint_lt(vlen, sizeof(buf));
    memcpy(buf, v, vlen);
    buf[vlen] = '\0';
    return buf;
}

static struct kv_stats
stats(const struct kv *kv)
{
    struct kv_stats st;
    kv_get_stats(kv, &st);
    return st;
}

/* ---- listings: keys joined by spaces, bytes outside [!-~] as \xNN ---- */

struct listing {
    char buf[8192];
    size_t len;
    size_t calls, stop_after; /* stop_after 0: never stop */
};

static bool
collect(void *arg, const char *key, size_t klen, const char *value, size_t vlen, int64_t expires_ms)
{
    struct listing *l = arg;
    (void)value, (void)vlen, (void)expires_ms;
    if (l->len) l->buf[l->len++] = ' ';
    for (size_t i = 0; i < klen; i++) {
        unsigned char c = (unsigned char)key[i];
        ck_assert_uint_lt(l->len + 5, sizeof(l->buf));
        if (c > ' ' && c <= '~')
            l->buf[l->len++] = (char)c;
        else
            l->len += (size_t)snprintf(l->buf + l->len, 5, "\\x%02x", c);
    }
    l->buf[l->len] = '\0';
    return ++l->calls != l->stop_after;
}

static struct listing *
list_prefix(const struct kv *kv, const char *prefix, size_t plen, int64_t now_ms, size_t max,
            size_t stop_after)
{
    static struct listing l;
    memset(&l, 0, sizeof(l));
    l.stop_after = stop_after;
    size_t n = kv_each(kv, prefix, plen, now_ms, max, collect, &l);
    ck_assert_uint_eq(n, l.calls); /* returns what it visited */
    return &l;
}

static const char *
keys(const struct kv *kv, const char *prefix, int64_t now_ms)
{
    return list_prefix(kv, prefix, strlen(prefix), now_ms, SIZE_MAX, 0)->buf;
}

static const char *
keys_after(const struct kv *kv, const char *after, size_t alen, size_t max)
{
    static struct listing l;
    memset(&l, 0, sizeof(l));
    ck_assert_uint_eq(kv_each_after(kv, after, alen, 0, max, collect, &l), l.calls);
    return l.buf;
}

/* ---- on_change, recorded ---- */

struct change {
    char key[32], value[32]; /* value "-": deleted */
    int64_t expires_ms;
    bool in_store; /* at the call, kv_get saw what was reported */
};

struct changes {
    struct kv *kv; /* NULL: do not look into the store */
    int64_t now_ms;
    int n;
    struct change c[64];
};

static void
record(void *ud, const char *key, size_t klen, const char *value, size_t vlen, int64_t expires_ms)
{
    struct changes *r = ud;
    ck_assert_int_lt(r->n, 64);
    ck_assert_uint_lt(klen, 32);
    struct change *c = &r->c[r->n++];
    memcpy(c->key, key, klen);
    c->key[klen] = '\0';
    if (value) {
        ck_assert_uint_lt(vlen, 32);
        memcpy(c->value, value, vlen);
        c->value[vlen] = '\0';
    } else {
        strcpy(c->value, "-");
        ck_assert_int_eq(expires_ms, 0);
    }
    c->expires_ms = expires_ms;
    if (r->kv) c->in_store = strcmp(get(r->kv, c->key, r->now_ms), c->value) == 0;
}

static void
assert_change(const struct changes *r, int i, const char *key, const char *value,
              int64_t expires_ms)
{
    ck_assert_int_lt(i, r->n);
    ck_assert_str_eq(r->c[i].key, key);
    ck_assert_str_eq(r->c[i].value, value);
    ck_assert_int_eq(r->c[i].expires_ms, expires_ms);
}

/* ---- basics ---- */

START_TEST(test_set_get_replace_delete)
{
    struct kv *kv = kv_new(1 << 20);
    ck_assert_str_eq(get(kv, "a", 0), "-");
    ck_assert_int_eq(set(kv, "a", "one", 0), KV_OK);
    ck_assert_int_eq(set(kv, "b", "two", 0), KV_OK);
    ck_assert_str_eq(get(kv, "a", 0), "one");
    ck_assert_str_eq(get(kv, "b", 0), "two");
    ck_assert_int_eq(set(kv, "a", "a longer one", 0), KV_OK); /* replaces */
    ck_assert_str_eq(get(kv, "a", 0), "a longer one");
    ck_assert_uint_eq(stats(kv).keys, 2);
    ck_assert_uint_eq(stats(kv).bytes, E(1, 12) + E(1, 3));
    ck_assert_int_eq(set(kv, "a", "", 0), KV_OK); /* an empty value is a value */
    ck_assert_str_eq(get(kv, "a", 0), "");
    ck_assert_uint_eq(stats(kv).bytes, E(1, 0) + E(1, 3));
    ck_assert(kv_del(kv, "a", 1));
    ck_assert(!kv_del(kv, "a", 1));
    ck_assert(!kv_del(kv, "zz", 2));
    ck_assert_str_eq(get(kv, "a", 0), "-");
    ck_assert_str_eq(get(kv, "b", 0), "two");
    ck_assert(kv_del(kv, "b", 1));
    struct kv_stats st = stats(kv);
    ck_assert_uint_eq(st.keys, 0);
    ck_assert_uint_eq(st.bytes, 0);
    ck_assert_uint_eq(st.max_bytes, 1 << 20);
    ck_assert_uint_eq(st.sets, 4);
    ck_assert_uint_eq(st.deletes, 2);
    ck_assert_uint_eq(st.gets, 7);
    ck_assert_uint_eq(st.hits, 5);
    ck_assert_str_eq(keys(kv, "", 0), "");
    ck_assert_int_eq(set(kv, "c", "again", 0), KV_OK); /* an emptied tree grows again */
    ck_assert_str_eq(keys(kv, "", 0), "c");
    kv_free(kv);
    kv_free(NULL);
}
END_TEST

START_TEST(test_binary_keys_and_values)
{
    struct kv *kv = kv_new(1 << 20);
    static const char k1[] = "a\0b", k2[] = "a\0", k3[] = "a", k4[] = "\0", k5[] = "\xff";
    static const char v[] = "x\0y\0";
    ck_assert_int_eq(kv_set(kv, k1, 3, v, 4, 0), KV_OK);
    ck_assert_int_eq(kv_set(kv, k2, 2, "2", 1, 0), KV_OK);
    ck_assert_int_eq(kv_set(kv, k3, 1, "3", 1, 0), KV_OK);
    ck_assert_int_eq(kv_set(kv, k4, 1, "\0", 1, 0), KV_OK);
    ck_assert_int_eq(kv_set(kv, k5, 1, NULL, 0, 0), KV_OK);
    ck_assert_uint_eq(stats(kv).keys, 5);
    const char *got;
    size_t glen;
    ck_assert(kv_get(kv, k1, 3, 0, &got, &glen));
    ck_assert_uint_eq(glen, 4);
    ck_assert(memcmp(got, v, 4) == 0);
    ck_assert(kv_get(kv, k2, 2, 0, &got, &glen) && glen == 1 && got[0] == '2');
    ck_assert(kv_get(kv, k3, 1, 0, &got, &glen) && glen == 1 && got[0] == '3');
    ck_assert(kv_get(kv, k4, 1, 0, &got, &glen) && glen == 1 && got[0] == '\0');
    ck_assert(kv_get(kv, k5, 1, 0, &got, &glen) && glen == 0);
    ck_assert(!kv_get(kv, "a\0c", 3, 0, &got, &glen));
    ck_assert(!kv_get(kv, "a\0b\0", 4, 0, &got, &glen));
    /* byte order, unsigned, a key before the keys it prefixes */
    ck_assert_str_eq(keys(kv, "", 0), "\\x00 a a\\x00 a\\x00b \\xff");
    ck_assert_str_eq(list_prefix(kv, "a\0", 2, 0, SIZE_MAX, 0)->buf, "a\\x00 a\\x00b");
    ck_assert(kv_del(kv, k2, 2));
    ck_assert(kv_get(kv, k1, 3, 0, &got, &glen) && glen == 4); /* its neighbour stays */
    ck_assert_str_eq(keys(kv, "", 0), "\\x00 a a\\x00b \\xff");
    kv_free(kv);
}
END_TEST

/* ---- order and prefixes ---- */

static struct kv *
sample(void)
{
    static const char *const ks[] = {"b", "abd", "a", "ac", "abc", "ab", "b/1", "\x7f", "ba"};
    struct kv *kv = kv_new(1 << 20);
    for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++)
        ck_assert_int_eq(set(kv, ks[i], "v", 0), KV_OK);
    return kv;
}

START_TEST(test_order_and_prefix)
{
    struct kv *kv = sample();
    ck_assert_str_eq(keys(kv, "", 0), "a ab abc abd ac b b/1 ba \\x7f");
    ck_assert_str_eq(keys(kv, "a", 0), "a ab abc abd ac");
    ck_assert_str_eq(keys(kv, "ab", 0), "ab abc abd");
    ck_assert_str_eq(keys(kv, "abc", 0), "abc"); /* the prefix is a whole key */
    ck_assert_str_eq(keys(kv, "abcd", 0), "");   /* longer than the key it extends */
    ck_assert_str_eq(keys(kv, "abe", 0), "");
    ck_assert_str_eq(keys(kv, "aa", 0), "");
    ck_assert_str_eq(keys(kv, "c", 0), "");
    ck_assert_str_eq(keys(kv, "0", 0), "");
    ck_assert_str_eq(keys(kv, "b", 0), "b b/1 ba");
    ck_assert_str_eq(keys(kv, "b/", 0), "b/1");
    ck_assert_str_eq(list_prefix(kv, "a", 1, 0, 2, 0)->buf, "a ab"); /* max */
    ck_assert_str_eq(list_prefix(kv, "", 0, 0, 0, 0)->buf, "");
    ck_assert_str_eq(list_prefix(kv, "a", 1, 0, 5, 0)->buf, "a ab abc abd ac");
    struct listing *l = list_prefix(kv, "", 0, 0, SIZE_MAX, 3); /* fn stops at the third */
    ck_assert_str_eq(l->buf, "a ab abc");
    ck_assert_uint_eq(l->calls, 3);
    ck_assert(kv_del(kv, "ab", 2)); /* an inner key goes, its extensions stay */
    ck_assert_str_eq(keys(kv, "ab", 0), "abc abd");
    ck_assert(kv_del(kv, "a", 1));
    ck_assert_str_eq(keys(kv, "", 0), "abc abd ac b b/1 ba \\x7f");
    kv_free(kv);
}
END_TEST

struct slices {
    struct listing l;
    char last[8];
    size_t last_len;
};

static bool
collect_slice(void *arg, const char *key, size_t klen, const char *value, size_t vlen,
              int64_t expires_ms)
{
    struct slices *sl = arg;
    ck_assert_uint_le(klen, sizeof(sl->last));
    memcpy(sl->last, key, klen);
    sl->last_len = klen;
    return collect(&sl->l, key, klen, value, vlen, expires_ms);
}

START_TEST(test_each_after)
{
    struct kv *kv = sample();
    ck_assert_str_eq(keys_after(kv, "", 0, SIZE_MAX), "a ab abc abd ac b b/1 ba \\x7f");
    ck_assert_str_eq(keys_after(kv, "ab", 2, SIZE_MAX), "abc abd ac b b/1 ba \\x7f");
    ck_assert_str_eq(keys_after(kv, "abb", 3, SIZE_MAX), "abc abd ac b b/1 ba \\x7f");
    ck_assert_str_eq(keys_after(kv, "abz", 3, SIZE_MAX), "ac b b/1 ba \\x7f");
    ck_assert_str_eq(keys_after(kv, "a\0", 2, SIZE_MAX), "ab abc abd ac b b/1 ba \\x7f");
    ck_assert_str_eq(keys_after(kv, "abcd", 4, SIZE_MAX), "abd ac b b/1 ba \\x7f");
    ck_assert_str_eq(keys_after(kv, "0", 1, SIZE_MAX), "a ab abc abd ac b b/1 ba \\x7f");
    ck_assert_str_eq(keys_after(kv, "b/0", 3, SIZE_MAX), "b/1 ba \\x7f");
    ck_assert_str_eq(keys_after(kv, "c", 1, SIZE_MAX), "\\x7f");
    ck_assert_str_eq(keys_after(kv, "\x7f", 1, SIZE_MAX), "");
    ck_assert_str_eq(keys_after(kv, "\xff", 1, SIZE_MAX), "");
    ck_assert_str_eq(keys_after(kv, "abc", 3, 2), "abd ac");
    ck_assert_str_eq(keys_after(kv, "abc", 3, 0), "");
    ck_assert_int_eq(set(kv, "abd", "v", 10), KV_OK);
    ck_assert_str_eq(list_prefix(kv, "", 0, 10, SIZE_MAX, 0)->buf, "a ab abc ac b b/1 ba \\x7f");
    static struct listing l;
    ck_assert_uint_eq(kv_each_after(kv, "abc", 3, 10, 1, collect, &l), 1); /* skips expired */
    ck_assert_str_eq(l.buf, "ac");
    /* a walk in slices of two, each resuming after the last key seen (the snapshot's) */
    static struct slices sl;
    while (kv_each_after(kv, sl.last, sl.last_len, 0, 2, collect_slice, &sl) == 2) continue;
    ck_assert_str_eq(sl.l.buf, "a ab abc abd ac b b/1 ba \\x7f");
    kv_free(kv);
    kv = kv_new(10);
    ck_assert_uint_eq(kv_each_after(kv, "a", 1, 0, 5, collect, &l), 0); /* empty */
    ck_assert_uint_eq(kv_each_after(kv, "", 0, 0, 5, collect, &l), 0);
    kv_free(kv);
}
END_TEST

static bool
next_longer(void *arg, const char *key, size_t klen, const char *value, size_t vlen,
            int64_t expires_ms)
{
    size_t *last = arg, stored;
    (void)key, (void)expires_ms;
    ck_assert_uint_eq(klen, *last + 1);
    ck_assert_uint_eq(vlen, sizeof(stored));
    memcpy(&stored, value, sizeof(stored));
    ck_assert_uint_eq(stored, klen);
    *last = klen;
    return true;
}

/* Keys that are prefixes of each other, as deep as keys go, inserted out of order. */
START_TEST(test_chain_of_prefixes)
{
    struct kv *kv = kv_new(SIZE_MAX);
    static char key[KV_MAX_KEY];
    memset(key, 'x', sizeof(key));
    /* every length once, in a scrambled order: 389 is prime to 1024 */
    for (size_t i = 0; i < KV_MAX_KEY; i++) {
        size_t l = (i * 389) % KV_MAX_KEY + 1;
        ck_assert_int_eq(kv_set(kv, key, l, (const char *)&l, sizeof(l), 0), KV_OK);
    }
    ck_assert_uint_eq(stats(kv).keys, KV_MAX_KEY);
    size_t last = 999; /* the keys of 1000 bytes and more, shortest first */
    ck_assert_uint_eq(kv_each(kv, key, 1000, 0, SIZE_MAX, next_longer, &last), KV_MAX_KEY - 999);
    ck_assert_uint_eq(last, KV_MAX_KEY);
    last = 0;
    ck_assert_uint_eq(kv_each(kv, key, 0, 0, SIZE_MAX, next_longer, &last), KV_MAX_KEY);
    const char *got;
    size_t glen;
    for (size_t i = 1; i <= KV_MAX_KEY; i++) {
        ck_assert(kv_get(kv, key, i, 0, &got, &glen));
        size_t stored;
        memcpy(&stored, got, sizeof(stored));
        ck_assert_uint_eq(stored, i);
    }
    for (size_t i = 1; i <= KV_MAX_KEY; i += 2) ck_assert(kv_del(kv, key, i));
    ck_assert_uint_eq(stats(kv).keys, KV_MAX_KEY / 2);
    ck_assert(!kv_get(kv, key, 511, 0, &got, &glen));
    ck_assert(kv_get(kv, key, 512, 0, &got, &glen));
    kv_free(kv); /* a deep tree, freed without recursion */
}
END_TEST

/* ---- the byte bound ---- */

START_TEST(test_byte_bound)
{
    struct kv *kv = kv_new(3 * E(1, 10));
    ck_assert_int_eq(set(kv, "a", "0123456789", 0), KV_OK);
    ck_assert_int_eq(set(kv, "b", "0123456789", 0), KV_OK);
    ck_assert_int_eq(set(kv, "c", "0123456789", 0), KV_OK); /* exactly full */
    ck_assert_uint_eq(stats(kv).bytes, 3 * E(1, 10));
    ck_assert_int_eq(set(kv, "d", "", 0), KV_FULL);
    ck_assert_int_eq(set(kv, "a", "0123456789x", 0), KV_FULL); /* a replace that grows */
    ck_assert_str_eq(get(kv, "a", 0), "0123456789");           /* refused: unchanged */
    ck_assert_str_eq(get(kv, "d", 0), "-");
    ck_assert_int_eq(set(kv, "a", "9876543210", 0), KV_OK); /* same size */
    ck_assert_int_eq(set(kv, "a", "012345", 0), KV_OK);     /* shrinks: 4 bytes free */
    ck_assert_int_eq(set(kv, "b", "0123456789abcd", 0), KV_OK);
    ck_assert_int_eq(set(kv, "b", "0123456789abcde", 0), KV_FULL);
    ck_assert_uint_eq(stats(kv).refused_full, 3);
    ck_assert_uint_eq(stats(kv).bytes, 3 * E(1, 10));

    kv_set_max_bytes(kv, 2 * E(1, 10)); /* below what is stored: nothing is evicted */
    ck_assert_uint_eq(stats(kv).keys, 3);
    ck_assert_uint_eq(stats(kv).max_bytes, 2 * E(1, 10));
    ck_assert_int_eq(set(kv, "a", "012345", 0), KV_FULL); /* even the same size */
    ck_assert_int_eq(set(kv, "a", "0", 0), KV_FULL);      /* still over after shrinking */
    ck_assert(kv_del(kv, "c", 1));
    ck_assert_int_eq(set(kv, "a", "0123456", 0), KV_FULL); /* one byte over */
    ck_assert_int_eq(set(kv, "a", "abcdef", 0), KV_OK);    /* fits exactly */
    ck_assert_uint_eq(stats(kv).refused_full, 6);
    ck_assert_uint_eq(stats(kv).bytes, 2 * E(1, 10));
    kv_free(kv);
}
END_TEST

START_TEST(test_too_large)
{
    static char big[KV_MAX_VALUE + 1];
    struct kv *kv = kv_new(4 * KV_MAX_VALUE);
    ck_assert_int_eq(kv_set(kv, "", 0, "v", 1, 0), KV_TOO_LARGE);
    ck_assert_int_eq(kv_set(kv, big, KV_MAX_KEY + 1, "v", 1, 0), KV_TOO_LARGE);
    ck_assert_int_eq(kv_set(kv, "k", 1, big, KV_MAX_VALUE + 1, 0), KV_TOO_LARGE);
    ck_assert_uint_eq(stats(kv).keys, 0);
    ck_assert_int_eq(kv_set(kv, big, KV_MAX_KEY, "v", 1, 0), KV_OK);
    ck_assert_int_eq(kv_set(kv, "k", 1, big, KV_MAX_VALUE, 0), KV_OK);
    ck_assert_uint_eq(stats(kv).bytes, E(KV_MAX_KEY, 1) + E(1, KV_MAX_VALUE));
    kv_set_max_bytes(kv, 10);
    ck_assert_int_eq(kv_set(kv, "", 0, "v", 1, 0), KV_TOO_LARGE); /* before the bound */
    ck_assert_uint_eq(stats(kv).refused_full, 0);
    ck_assert_uint_eq(stats(kv).sets, 2);
    kv_free(kv);
}
END_TEST

/* ---- expiry ---- */

START_TEST(test_ttl_hides_at_once)
{
    struct kv *kv = kv_new(1 << 20);
    ck_assert_int_eq(set(kv, "a", "1", 1000), KV_OK);
    ck_assert_int_eq(set(kv, "b", "2", 0), KV_OK);
    ck_assert_int_eq(set(kv, "c", "3", 2000), KV_OK);
    ck_assert_str_eq(get(kv, "a", 999), "1");
    ck_assert_str_eq(get(kv, "a", 1000), "-"); /* expired at its time */
    ck_assert_str_eq(get(kv, "b", 1000000), "2");
    ck_assert_str_eq(keys(kv, "", 999), "a b c");
    ck_assert_str_eq(keys(kv, "", 1000), "b c");
    ck_assert_str_eq(keys(kv, "", 2000), "b");
    ck_assert_str_eq(keys(kv, "c", 2000), "");
    ck_assert_str_eq(list_prefix(kv, "", 0, 1000, 1, 0)->buf, "b"); /* max counts visible */
    ck_assert_uint_eq(stats(kv).keys, 3);                           /* hidden, not removed */
    ck_assert_uint_eq(stats(kv).hits, 2);
    ck_assert_uint_eq(stats(kv).gets, 3);
    kv_free(kv);
}
END_TEST

START_TEST(test_expire_in_batches)
{
    struct kv *kv = kv_new(1 << 20);
    struct changes r = {0};
    kv_on_change(kv, record, &r);
    char k[16];
    for (int i = 9; i >= 0; i--) { /* expiries 100..109, set out of order */
        snprintf(k, sizeof(k), "t%d", (i * 7) % 10);
        ck_assert_int_eq(set(kv, k, "v", 100 + (i * 7) % 10), KV_OK);
    }
    ck_assert_int_eq(set(kv, "forever", "v", 0), KV_OK);
    r.n = 0;
    ck_assert_uint_eq(kv_expire(kv, 99, 100), 0);
    ck_assert_uint_eq(kv_expire(kv, 105, 0), 0);
    ck_assert_uint_eq(kv_expire(kv, 105, 4), 4); /* 6 are due: a bounded batch */
    ck_assert_uint_eq(kv_expire(kv, 105, 4), 2); /* resumes with the rest */
    ck_assert_uint_eq(kv_expire(kv, 105, 4), 0);
    ck_assert_int_eq(r.n, 6);
    for (int i = 0; i < 6; i++) { /* earliest first, each reported as a delete */
        snprintf(k, sizeof(k), "t%d", i);
        assert_change(&r, i, k, "-", 0);
    }
    ck_assert_str_eq(keys(kv, "", 0), "forever t6 t7 t8 t9");
    ck_assert_uint_eq(kv_expire(kv, INT64_MAX, 100), 4);
    ck_assert_str_eq(keys(kv, "", 0), "forever");
    struct kv_stats st = stats(kv);
    ck_assert_uint_eq(st.expired, 10);
    ck_assert_uint_eq(st.deletes, 0);
    ck_assert_uint_eq(st.keys, 1);
    ck_assert_uint_eq(st.bytes, E(7, 1));
    kv_free(kv);
}
END_TEST

START_TEST(test_replace_moves_expiry)
{
    struct kv *kv = kv_new(1 << 20);
    ck_assert_int_eq(set(kv, "a", "1", 100), KV_OK);
    ck_assert_int_eq(set(kv, "a", "2", 0), KV_OK); /* no TTL any more */
    ck_assert_int_eq(set(kv, "b", "1", 100), KV_OK);
    ck_assert_int_eq(set(kv, "b", "2", 300), KV_OK); /* later */
    ck_assert_int_eq(set(kv, "c", "1", 0), KV_OK);
    ck_assert_int_eq(set(kv, "c", "2", 200), KV_OK); /* a TTL now */
    ck_assert_int_eq(set(kv, "d", "1", 150), KV_OK);
    ck_assert(kv_del(kv, "d", 1)); /* leaves the heap too */
    ck_assert_uint_eq(kv_expire(kv, 199, 100), 0);
    ck_assert_str_eq(get(kv, "a", 1000), "2");
    ck_assert_str_eq(get(kv, "b", 299), "2");
    ck_assert_uint_eq(kv_expire(kv, 200, 100), 1);
    ck_assert_str_eq(keys(kv, "", 0), "a b");
    ck_assert_uint_eq(kv_expire(kv, 1000, 100), 1);
    ck_assert_str_eq(keys(kv, "", 0), "a");
    ck_assert_uint_eq(kv_expire(kv, INT64_MAX, 100), 0);
    kv_free(kv);
}
END_TEST

/* ---- recovery ---- */

START_TEST(test_restore)
{
    struct kv *kv = kv_new(2 * E(1, 1));
    struct changes r = {0};
    kv_on_change(kv, record, &r);
    kv_restore(kv, "a", 1, "1", 1, 0, 500);
    kv_restore(kv, "b", 1, "1", 1, 1000, 500);
    kv_restore(kv, "c", 1, "1", 1, 0, 500);   /* past the bound: kept */
    kv_restore(kv, "d", 1, "1", 1, 500, 500); /* already expired: not stored */
    kv_restore(kv, "a", 1, "22", 2, 0, 500);  /* replaces */
    kv_restore(kv, "", 0, "1", 1, 0, 500);    /* no set could have written it */
    ck_assert_int_eq(r.n, 0);
    ck_assert_str_eq(keys(kv, "", 0), "a b c");
    ck_assert_str_eq(get(kv, "a", 0), "22");
    ck_assert_uint_eq(stats(kv).bytes, E(1, 2) + 2 * E(1, 1));
    ck_assert_uint_eq(stats(kv).sets, 0);
    ck_assert_int_eq(set(kv, "c", "", 0), KV_FULL); /* until it fits again */
    ck_assert(kv_del(kv, "a", 1));
    ck_assert_int_eq(set(kv, "c", "", 0), KV_OK);
    /* a set, then a replacing set whose TTL passed before the restart: neither is left */
    kv_restore(kv, "c", 1, "2", 1, 400, 500);
    ck_assert_str_eq(get(kv, "c", 0), "-");
    ck_assert_uint_eq(stats(kv).keys, 1);
    r.n = 0;
    ck_assert_uint_eq(kv_expire(kv, 1000, 10), 1); /* b's TTL survived the restore */
    assert_change(&r, 0, "b", "-", 0);
    ck_assert_uint_eq(stats(kv).keys, 0);
    kv_free(kv);
}
END_TEST

/* ---- on_change ---- */

START_TEST(test_on_change_sequence)
{
    struct kv *kv = kv_new(3 * E(1, 1));
    struct changes r = {.kv = kv, .now_ms = 50};
    ck_assert_int_eq(set(kv, "z", "0", 0), KV_OK); /* before a callback: not reported */
    kv_on_change(kv, record, &r);
    ck_assert_int_eq(set(kv, "a", "1", 0), KV_OK);
    ck_assert_int_eq(set(kv, "a", "2", 100), KV_OK);
    ck_assert_int_eq(set(kv, "b", "3", 0), KV_OK);
    ck_assert_int_eq(set(kv, "c", "4", 0), KV_FULL); /* refused: not reported */
    ck_assert_int_eq(kv_set(kv, "", 0, "4", 1, 0), KV_TOO_LARGE);
    ck_assert(kv_del(kv, "b", 1));
    ck_assert(!kv_del(kv, "b", 1)); /* nothing removed: not reported */
    ck_assert_str_eq(get(kv, "a", 99), "2");
    ck_assert_uint_eq(kv_expire(kv, 99, 10), 0);
    ck_assert_uint_eq(kv_expire(kv, 100, 10), 1);
    ck_assert_int_eq(r.n, 5);
    assert_change(&r, 0, "a", "1", 0);
    assert_change(&r, 1, "a", "2", 100);
    assert_change(&r, 2, "b", "3", 0);
    assert_change(&r, 3, "b", "-", 0);
    assert_change(&r, 4, "a", "-", 0);
    for (int i = 0; i < r.n; i++) ck_assert_msg(r.c[i].in_store, "change %d before the store", i);
    kv_on_change(kv, NULL, NULL);
    ck_assert(kv_del(kv, "z", 1));
    ck_assert_int_eq(r.n, 5);
    kv_free(kv);
}
END_TEST

/* ---- random operations against a sorted array ---- */

#define MKEY 4
#define MVAL 24
#define MCAP 400 /* 4 + 16 + 64 + 256 keys of 1 to 4 bytes over a 4-letter alphabet */

struct ment {
    char key[MKEY], val[MVAL];
    size_t klen, vlen;
    int64_t expires_ms;
};

struct model {
    struct ment e[MCAP];
    size_t n, bytes;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t
rnd(uint32_t n)
{
    rng_state ^= rng_state << 13; /* xorshift64 */
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32) % n;
}

static size_t
rnd_key(char *key, size_t min)
{
    static const char alphabet[] = {'a', 'b', '\0', '\xff'};
    size_t len = min + rnd(MKEY + 1 - (uint32_t)min);
    for (size_t i = 0; i < len; i++) key[i] = alphabet[rnd(4)];
    return len;
}

static int
mcmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c) return c;
    return alen < blen ? -1 : alen > blen;
}

/* The index of key, or where it would go (*found false). */
static size_t
mfind(const struct model *m, const char *key, size_t klen, bool *found)
{
    size_t i = 0;
    while (i < m->n && mcmp(m->e[i].key, m->e[i].klen, key, klen) < 0) i++;
    *found = i < m->n && mcmp(m->e[i].key, m->e[i].klen, key, klen) == 0;
    return i;
}

static void
mdel(struct model *m, const char *key, size_t klen)
{
    bool found;
    size_t i = mfind(m, key, klen, &found);
    if (!found) return;
    m->bytes -= E(m->e[i].klen, m->e[i].vlen);
    memmove(&m->e[i], &m->e[i + 1], (m->n - i - 1) * sizeof(m->e[0]));
    m->n--;
}

static void
mset(struct model *m, const struct ment *x)
{
    mdel(m, x->key, x->klen);
    bool found;
    size_t i = mfind(m, x->key, x->klen, &found);
    ck_assert_uint_lt(m->n, MCAP);
    memmove(&m->e[i + 1], &m->e[i], (m->n - i) * sizeof(m->e[0]));
    m->e[i] = *x;
    m->n++;
    m->bytes += E(x->klen, x->vlen);
}

static bool
mexpired(const struct ment *e, int64_t now_ms)
{
    return e->expires_ms != 0 && e->expires_ms <= now_ms;
}

struct seq {
    struct ment e[MCAP];
    size_t n, stop_after;
};

static bool
seq_add(void *arg, const char *key, size_t klen, const char *value, size_t vlen, int64_t expires_ms)
{
    struct seq *s = arg;
    ck_assert_uint_lt(s->n, MCAP);
    ck_assert_uint_le(klen, MKEY);
    ck_assert_uint_le(vlen, MVAL);
    struct ment *e = &s->e[s->n++];
    memcpy(e->key, key, klen);
    memcpy(e->val, value, vlen);
    e->klen = klen;
    e->vlen = vlen;
    e->expires_ms = expires_ms;
    return s->n != s->stop_after;
}

/* kv_each over prefix, or with after set kv_each_after over the keys after prefix */
static void
check_listing(const struct kv *kv, const struct model *m, const char *prefix, size_t plen,
              int64_t now_ms, size_t max, size_t stop_after, bool after)
{
    static struct seq got;
    got.n = 0;
    got.stop_after = stop_after;
    size_t visited = after ? kv_each_after(kv, prefix, plen, now_ms, max, seq_add, &got)
                           : kv_each(kv, prefix, plen, now_ms, max, seq_add, &got);
    ck_assert_uint_eq(visited, got.n);
    size_t want = 0;
    for (size_t i = 0; i < m->n && want < max && (!stop_after || want < stop_after); i++) {
        const struct ment *e = &m->e[i];
        bool in = after ? mcmp(e->key, e->klen, prefix, plen) > 0
                        : e->klen >= plen && memcmp(e->key, prefix, plen) == 0;
        if (!in || mexpired(e, now_ms)) continue;
        ck_assert_uint_lt(want, got.n);
        const struct ment *g = &got.e[want++];
        ck_assert(mcmp(g->key, g->klen, e->key, e->klen) == 0);
        ck_assert(mcmp(g->val, g->vlen, e->val, e->vlen) == 0);
        ck_assert_int_eq(g->expires_ms, e->expires_ms);
    }
    ck_assert_uint_eq(got.n, want);
}

struct removed {
    size_t n, sets;
    struct ment e[8];
};

static void
note_change(void *ud, const char *key, size_t klen, const char *value, size_t vlen,
            int64_t expires_ms)
{
    struct removed *r = ud;
    if (value) {
        r->sets++;
        return;
    }
    ck_assert_uint_lt(r->n, 8);
    memcpy(r->e[r->n].key, key, klen);
    r->e[r->n].klen = klen;
    (void)vlen, (void)expires_ms;
    r->n++;
}

/* kv_expire took only expired entries, as many as allowed, the earliest first. */
static void
check_expire(struct kv *kv, struct model *m, int64_t now_ms, size_t max)
{
    struct removed r = {0};
    kv_on_change(kv, note_change, &r);
    size_t n = kv_expire(kv, now_ms, max);
    kv_on_change(kv, NULL, NULL);
    size_t due = 0;
    for (size_t i = 0; i < m->n; i++) due += mexpired(&m->e[i], now_ms);
    ck_assert_uint_eq(n, due < max ? due : max);
    ck_assert_uint_eq(r.n, n);
    int64_t latest = INT64_MIN;
    for (size_t i = 0; i < r.n; i++) {
        bool found;
        size_t at = mfind(m, r.e[i].key, r.e[i].klen, &found);
        ck_assert(found && mexpired(&m->e[at], now_ms));
        if (m->e[at].expires_ms > latest) latest = m->e[at].expires_ms;
        mdel(m, r.e[i].key, r.e[i].klen);
    }
    for (size_t i = 0; i < m->n; i++) /* what is still due expires no earlier */
        if (mexpired(&m->e[i], now_ms)) ck_assert_int_ge(m->e[i].expires_ms, latest);
}

static struct ment
rnd_entry(int64_t now_ms)
{
    struct ment x;
    x.klen = rnd_key(x.key, 1);
    x.vlen = rnd(MVAL + 1);
    for (size_t i = 0; i < x.vlen; i++) x.val[i] = (char)rnd(256);
    x.expires_ms = rnd(3) ? 0 : now_ms - 20 + rnd(200);
    return x;
}

START_TEST(test_random_against_model)
{
    static struct model m;
    struct kv *kv = kv_new(6000);
    size_t max_bytes = 6000, full = 0, hits = 0;
    int64_t now = 1000;
    rng_state = 0x9e3779b97f4a7c15u;
    for (int op = 0; op < 20000; op++) {
        uint32_t what = rnd(100);
        if (what < 40) {
            struct ment x = rnd_entry(now);
            bool found;
            size_t i = mfind(&m, x.key, x.klen, &found);
            size_t old = found ? E(m.e[i].klen, m.e[i].vlen) : 0;
            bool fits = m.bytes - old + E(x.klen, x.vlen) <= max_bytes;
            ck_assert_int_eq(kv_set(kv, x.key, x.klen, x.val, x.vlen, x.expires_ms),
                             fits ? KV_OK : KV_FULL);
            if (fits)
                mset(&m, &x);
            else
                full++;
        } else if (what < 55) {
            char key[MKEY];
            size_t klen = rnd_key(key, 1);
            bool found;
            mfind(&m, key, klen, &found);
            ck_assert_int_eq(kv_del(kv, key, klen), found);
            mdel(&m, key, klen);
        } else if (what < 70) {
            char key[MKEY];
            size_t klen = rnd_key(key, 1), vlen;
            const char *v;
            bool found;
            size_t i = mfind(&m, key, klen, &found);
            bool live = found && !mexpired(&m.e[i], now);
            ck_assert_int_eq(kv_get(kv, key, klen, now, &v, &vlen), live);
            if (live) {
                hits++;
                ck_assert(mcmp(v, vlen, m.e[i].val, m.e[i].vlen) == 0);
            }
        } else if (what < 80) {
            char prefix[MKEY];
            size_t plen = rnd_key(prefix, 0);
            size_t max = rnd(2) ? SIZE_MAX : rnd(20);
            check_listing(kv, &m, prefix, plen, now, max, rnd(4) ? 0 : 1 + rnd(10), rnd(2));
        } else if (what < 90) {
            now += rnd(30);
            check_expire(kv, &m, now, rnd(6));
        } else if (what < 95) {
            struct ment x = rnd_entry(now);
            kv_restore(kv, x.key, x.klen, x.val, x.vlen, x.expires_ms, now);
            if (mexpired(&x, now))
                mdel(&m, x.key, x.klen);
            else
                mset(&m, &x);
        } else {
            max_bytes = 1500 + rnd(9000);
            kv_set_max_bytes(kv, max_bytes);
        }
        struct kv_stats st = stats(kv);
        ck_assert_uint_eq(st.keys, m.n);
        ck_assert_uint_eq(st.bytes, m.bytes);
        ck_assert_uint_eq(st.refused_full, full);
        ck_assert_uint_eq(st.hits, hits);
        if (op % 256 == 0) check_listing(kv, &m, "", 0, INT64_MIN, SIZE_MAX, 0, false);
    }
    ck_assert_uint_gt(full, 100); /* the bound was exercised */
    ck_assert_uint_gt(stats(kv).expired, 100);
    check_listing(kv, &m, "", 0, INT64_MIN, SIZE_MAX, 0, false);
    check_listing(kv, &m, "", 0, INT64_MIN, SIZE_MAX, 0, true);
    kv_free(kv);
}
END_TEST

/* The heap stays ordered through deletes and replaces from its middle: every sweep
 * takes exactly the entries due by then. */
struct due {
    int64_t exp[2000], now_ms;
    size_t n;
};

static void
note_due(void *ud, const char *key, size_t klen, const char *value, size_t vlen, int64_t expires_ms)
{
    struct due *d = ud;
    unsigned i;
    char buf[16];
    (void)vlen, (void)expires_ms;
    ck_assert_ptr_null(value);
    ck_assert_uint_lt(klen, sizeof(buf));
    memcpy(buf, key, klen);
    buf[klen] = '\0';
    ck_assert_int_eq(sscanf(buf, "k%u", &i), 1);
    ck_assert_int_eq(d->exp[i], d->now_ms); /* not earlier, not later */
    d->exp[i] = 0;
    d->n++;
}

START_TEST(test_expiry_order_after_churn)
{
    static struct due d;
    struct kv *kv = kv_new(SIZE_MAX);
    char k[16];
    rng_state = 42;
    for (unsigned i = 0; i < 2000; i++) {
        snprintf(k, sizeof(k), "k%u", i);
        d.exp[i] = 1 + rnd(1000);
        ck_assert_int_eq(set(kv, k, "v", d.exp[i]), KV_OK);
    }
    for (unsigned i = 0; i < 2000; i++) {
        snprintf(k, sizeof(k), "k%u", i);
        uint32_t what = rnd(4);
        if (what == 0) { /* gone */
            ck_assert(kv_del(kv, k, strlen(k)));
            d.exp[i] = 0;
        } else if (what == 1) { /* another time, or none */
            d.exp[i] = rnd(2) ? 1 + rnd(1000) : 0;
            ck_assert_int_eq(set(kv, k, "w", d.exp[i]), KV_OK);
        }
    }
    kv_on_change(kv, note_due, &d);
    for (d.now_ms = 1; d.now_ms <= 1000; d.now_ms++) {
        size_t want = 0;
        for (unsigned i = 0; i < 2000; i++) want += d.exp[i] == d.now_ms;
        d.n = 0;
        ck_assert_uint_eq(kv_expire(kv, d.now_ms, SIZE_MAX), want);
        ck_assert_uint_eq(d.n, want);
    }
    ck_assert_uint_gt(stats(kv).expired, 1000);
    ck_assert_uint_eq(stats(kv).keys, 2000 - stats(kv).expired - stats(kv).deletes);
    kv_free(kv);
}
END_TEST

Suite *
suite_kv(void)
{
    Suite *s = suite_create("kv");
    TCase *tc = tcase_create("store");
    tcase_add_test(tc, test_set_get_replace_delete);
    tcase_add_test(tc, test_binary_keys_and_values);
    tcase_add_test(tc, test_too_large);
    suite_add_tcase(s, tc);
    tc = tcase_create("order");
    tcase_add_test(tc, test_order_and_prefix);
    tcase_add_test(tc, test_chain_of_prefixes);
    tcase_add_test(tc, test_each_after);
    suite_add_tcase(s, tc);
    tc = tcase_create("bound");
    tcase_add_test(tc, test_byte_bound);
    suite_add_tcase(s, tc);
    tc = tcase_create("expiry");
    tcase_add_test(tc, test_ttl_hides_at_once);
    tcase_add_test(tc, test_expire_in_batches);
    tcase_add_test(tc, test_replace_moves_expiry);
    tcase_add_test(tc, test_expiry_order_after_churn);
    suite_add_tcase(s, tc);
    tc = tcase_create("journal");
    tcase_add_test(tc, test_restore);
    tcase_add_test(tc, test_on_change_sequence);
    suite_add_tcase(s, tc);
    tc = tcase_create("random");
    tcase_add_test(tc, test_random_against_model);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
