/* SPDX-License-Identifier: MIT
 *
 * kv: the key-value store hooks share (broker.kv) and operators fill (lunamq-ctl kv).
 * Binary-safe string keys and values in memory, ordered by key so that a prefix
 * listing costs the keys it returns, not the size of the store. An entry may expire:
 * its expiry is a wall-clock time (ms since the epoch), so it means the same after a
 * restart. Expired entries are invisible at once and their memory is reclaimed by
 * kv_expire, a bounded sweep the caller runs on a timer.
 *
 * The whole store is bounded by max_bytes (key + value + a fixed overhead per entry,
 * KV_ENTRY_OVERHEAD): a set that would pass it is refused, nothing is evicted.
 *
 * The store knows nothing of the journal: every change made through kv_set/kv_del
 * (and every expiry kv_expire reclaims) is reported to the on_change callback, which
 * the session layer turns into journal records; kv_restore loads an entry at recovery
 * without reporting it. Loop thread only.
 */
#ifndef LUNAMQ_KV_H
#define LUNAMQ_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KV_ENTRY_OVERHEAD 64 /* bytes counted per entry besides key and value */
#define KV_MAX_KEY        1024
#define KV_MAX_VALUE      (1u << 20)

struct kv;

/* A change: value NULL means deleted (or expired). expires_ms 0: never. */
typedef void (*kv_change_fn)(void *ud, const char *key, size_t klen, const char *value, size_t vlen,
                             int64_t expires_ms);

struct kv *kv_new(size_t max_bytes);
void kv_free(struct kv *kv); /* NULL is a no-op */
/* A smaller bound than what is stored refuses further sets until deletes free room. */
void kv_set_max_bytes(struct kv *kv, size_t max_bytes);
void kv_on_change(struct kv *kv, kv_change_fn fn, void *ud);

enum kv_rc {
    KV_OK,
    KV_FULL,      /* max_bytes would be passed */
    KV_TOO_LARGE, /* key empty or over KV_MAX_KEY, or value over KV_MAX_VALUE */
};
/* Insert or replace. expires_ms: absolute wall-clock time, 0: never. */
enum kv_rc kv_set(struct kv *kv, const char *key, size_t klen, const char *value, size_t vlen,
                  int64_t expires_ms);
/* The value (not NUL-terminated; valid until the next change of the store), or false
 * when absent or expired at now_ms. */
bool kv_get(struct kv *kv, const char *key, size_t klen, int64_t now_ms, const char **value,
            size_t *vlen);
bool kv_del(struct kv *kv, const char *key, size_t klen); /* true when it was there */
/* Recovery: like kv_set without on_change, and without the bound (what was stored
 * under a larger kv_max_bytes is kept; sets are refused until it fits again). An
 * entry already expired at now_ms is not stored and drops the key's older entry, which
 * it had replaced. */
void kv_restore(struct kv *kv, const char *key, size_t klen, const char *value, size_t vlen,
                int64_t expires_ms, int64_t now_ms);

/* Keys starting with prefix (plen 0: all), in byte order, not expired at now_ms, at
 * most max of them: fn is called for each and returns false to stop; it must not
 * change the store. Returns the number visited. Cost: the length of the prefix plus
 * the entries visited. */
typedef bool (*kv_each_fn)(void *arg, const char *key, size_t klen, const char *value, size_t vlen,
                           int64_t expires_ms);
size_t kv_each(const struct kv *kv, const char *prefix, size_t plen, int64_t now_ms, size_t max,
               kv_each_fn fn, void *arg);

/* The same over every key after `after` in byte order (alen 0: from the first key):
 * a walk in slices, resuming after the last key the previous slice saw. */
size_t kv_each_after(const struct kv *kv, const char *after, size_t alen, int64_t now_ms,
                     size_t max, kv_each_fn fn, void *arg);

/* Remove up to max entries expired at now_ms (each reported to on_change as a delete).
 * Returns how many were removed; a sweep resumes where the last one stopped. */
size_t kv_expire(struct kv *kv, int64_t now_ms, size_t max);

struct kv_stats {
    uint64_t keys;
    uint64_t bytes; /* as counted against max_bytes */
    uint64_t max_bytes;
    uint64_t sets, gets, hits, deletes, expired, refused_full;
};
void kv_get_stats(const struct kv *kv, struct kv_stats *out);

#endif
