/* SPDX-License-Identifier: MIT
 *
 * kvcmd: lunamq-ctl kv, the operator's side of the hooks' key-value store:
 * get, set, del, list, and mset (what `kv load FILE.json` sends, in batches that
 * each take the loop for about a millisecond). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_int.h"
#include "kv.h"
#include "lq.h"
#include "sbuf.h"

#define LIST_MAX 100000 /* keys one `kv list` shows */

static int64_t
now_ms(void)
{
    return (int64_t)(lq_wall_time() * 1000.0);
}

static void
reply_expiry(struct reply *r, int64_t expires_ms, int64_t now)
{
    if (expires_ms)
        reply_dbl(r, "expires_in", (double)(expires_ms - now) / 1000.0);
    else
        reply_str(r, "expires_in", NULL);
}

static const char *
set_error(struct kv *kv, enum kv_rc rc, char *buf, size_t len)
{
    if (rc == KV_TOO_LARGE) return "key of 1 to 1024 bytes and value of at most 1 MiB, please";
    struct kv_stats st;
    kv_get_stats(kv, &st);
    snprintf(buf, len, "kv_max_bytes reached: %llu of %llu bytes used",
             (unsigned long long)st.bytes, (unsigned long long)st.max_bytes);
    return buf;
}

static bool
list_one(void *arg, const char *key, size_t klen, const char *value, size_t vlen,
         int64_t expires_ms)
{
    (void)value;
    struct reply *r = arg;
    char *k = lq_xmalloc(klen + 1);
    memcpy(k, key, klen);
    k[klen] = '\0';
    reply_object(r);
    reply_str(r, "key", k);
    reply_u64(r, "bytes", vlen);
    reply_expiry(r, expires_ms, now_ms());
    reply_end_object(r);
    free(k);
    return true;
}

/* "3:abc,5:hello," pairs of key and value: the next netstring of *p, or false. */
static bool
netstring(const char **p, const char *end, const char **s, size_t *n)
{
    char *colon;
    unsigned long long len = strtoull(*p, &colon, 10);
    if (colon == *p || colon >= end || *colon != ':' || len > (size_t)(end - colon - 2) ||
        colon[1 + len] != ',')
        return false;
    *s = colon + 1;
    *n = (size_t)len;
    *p = colon + 2 + len;
    return true;
}

static const char *
kv_mset(struct kv *kv, struct reply *r, const char *arg, char *buf, size_t len)
{
    const char *p = arg, *end = arg + strlen(arg), *k, *v;
    size_t kl, vl;
    uint64_t n = 0;
    while (p < end) {
        if (!netstring(&p, end, &k, &kl) || !netstring(&p, end, &v, &vl))
            return "kv mset: malformed request";
        enum kv_rc rc = kv_set(kv, k, kl, v, vl, 0);
        if (rc != KV_OK) {
            char why[160];
            snprintf(buf, len, "%s (after %llu keys of this batch)",
                     set_error(kv, rc, why, sizeof(why)), (unsigned long long)n);
            return buf;
        }
        n++;
    }
    reply_object(r);
    reply_u64(r, "set", n);
    reply_end_object(r);
    return NULL;
}

const char *
cmd_kv(struct kv *kv, struct reply *r, int argc, char **argv, char *buf, size_t len)
{
    static const char usage[] =
        "usage: kv get KEY | set KEY VALUE [TTL] | del KEY | list [PREFIX] | load FILE.json";
    if (argc < 2) return usage;
    const char *op = argv[1];
    int64_t now = now_ms();
    if (strcmp(op, "get") == 0 && argc == 3) {
        const char *v;
        size_t vl;
        if (!kv_get(kv, argv[2], strlen(argv[2]), now, &v, &vl)) return "no such key";
        char *value = lq_xmalloc(vl + 1);
        memcpy(value, v, vl);
        value[vl] = '\0';
        reply_object(r);
        reply_str(r, "key", argv[2]);
        reply_str(r, "value", value);
        reply_end_object(r);
        free(value);
        return NULL;
    }
    if (strcmp(op, "set") == 0 && (argc == 4 || argc == 5)) {
        int64_t expires = 0;
        if (argc == 5) {
            char *e;
            double ttl = strtod(argv[4], &e);
            if (*e || !(ttl > 0 && ttl <= 1e9)) return "TTL: a number of seconds above 0";
            expires = now + (int64_t)(ttl * 1000.0 + 0.5);
        }
        enum kv_rc rc = kv_set(kv, argv[2], strlen(argv[2]), argv[3], strlen(argv[3]), expires);
        if (rc != KV_OK) return set_error(kv, rc, buf, len);
        reply_object(r);
        reply_str(r, "set", argv[2]);
        reply_expiry(r, expires, now);
        reply_end_object(r);
        return NULL;
    }
    if (strcmp(op, "del") == 0 && argc == 3) {
        reply_object(r);
        reply_bool(r, "deleted", kv_del(kv, argv[2], strlen(argv[2])));
        reply_end_object(r);
        return NULL;
    }
    if (strcmp(op, "list") == 0 && argc <= 3) {
        const char *prefix = argc == 3 ? argv[2] : "";
        reply_list(r, NULL);
        kv_each(kv, prefix, strlen(prefix), now, LIST_MAX, list_one, r);
        reply_end_list(r);
        return NULL;
    }
    if (strcmp(op, "mset") == 0 && argc == 3) return kv_mset(kv, r, argv[2], buf, len);
    return usage;
}
