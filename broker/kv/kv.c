/* SPDX-License-Identifier: MIT
 *
 * kv: a crit-bit tree over the key bytes, its leaves the entries, which also form a
 * doubly linked list in key order; entries that expire also sit in a min-heap by
 * expiry. Lookup, insert and delete cost the key length (the tree's depth is bounded
 * by the bits of the longest key, never by the number of keys); a prefix listing
 * descends once to the subtree holding the prefix, a listing after a key twice to the
 * place of that key, then both follow the list. Each entry is one allocation: links,
 * then the key, then the value.
 *
 * Keys are binary and may be prefixes of each other, so the tree reads a key as a
 * string of 9-bit symbols: 0x100 | byte while inside the key, 0 past its end. A key
 * thus sorts before every longer key it is a prefix of, and two distinct keys always
 * differ at some symbol.
 *
 * Not here: the journal (on_change reports), the timer that runs kv_expire. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "lq.h"

#define NOT_IN_HEAP SIZE_MAX

struct entry {
    struct entry *prev, *next; /* key order */
    int64_t expires_ms;        /* 0: never */
    size_t heap_at;            /* index in kv->heap, or NOT_IN_HEAP */
    uint32_t klen, vlen;
    char data[]; /* klen bytes of key, then vlen bytes of value */
};

/* Every key below an inner node has the same symbols before pos, and the same bits
 * above bit at pos; kid[1] holds those with the bit set. */
struct inner {
    uintptr_t kid[2]; /* a struct inner * with the low bit set, or a struct entry * */
    uint32_t pos;
    uint32_t bit;
};

struct kv {
    uintptr_t root; /* 0: empty */
    struct entry **heap;
    size_t heap_n, heap_cap;
    kv_change_fn on_change;
    void *ud;
    struct kv_stats st; /* kept up to date: kv_get_stats copies it */
};

static bool
is_inner(uintptr_t r)
{
    return r & 1u;
}

static struct inner *
as_inner(uintptr_t r)
{
    return (struct inner *)(r - 1u);
}

static struct entry *
as_entry(uintptr_t r)
{
    return (struct entry *)r;
}

static unsigned
sym(const char *key, size_t klen, size_t pos)
{
    return pos < klen ? 0x100u | (unsigned char)key[pos] : 0u;
}

static unsigned
dir(const struct inner *n, const char *key, size_t klen)
{
    return (sym(key, klen, n->pos) >> n->bit) & 1u;
}

static bool
same_key(const struct entry *e, const char *key, size_t klen)
{
    return e->klen == klen && memcmp(e->data, key, klen) == 0;
}

static bool
is_expired(int64_t expires_ms, int64_t now_ms)
{
    return expires_ms != 0 && expires_ms <= now_ms;
}

static size_t
entry_bytes(size_t klen, size_t vlen)
{
    return klen + vlen + KV_ENTRY_OVERHEAD;
}

static bool
sizes_ok(size_t klen, size_t vlen)
{
    return klen != 0 && klen <= KV_MAX_KEY && vlen <= KV_MAX_VALUE;
}

static void
report(struct kv *kv, const struct entry *e, bool deleted)
{
    if (!kv->on_change) return;
    if (deleted)
        kv->on_change(kv->ud, e->data, e->klen, NULL, 0, 0);
    else
        kv->on_change(kv->ud, e->data, e->klen, e->data + e->klen, e->vlen, e->expires_ms);
}

/* ---- the expiry heap ---- */

static bool
heap_before(const struct kv *kv, size_t a, size_t b)
{
    return kv->heap[a]->expires_ms < kv->heap[b]->expires_ms;
}

static void
heap_swap(struct kv *kv, size_t a, size_t b)
{
    struct entry *t = kv->heap[a];
    kv->heap[a] = kv->heap[b];
    kv->heap[b] = t;
    kv->heap[a]->heap_at = a;
    kv->heap[b]->heap_at = b;
}

static void
heap_up(struct kv *kv, size_t i)
{
    while (i > 0 && heap_before(kv, i, (i - 1) / 2)) {
        heap_swap(kv, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void
heap_down(struct kv *kv, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, min = i;
        if (l < kv->heap_n && heap_before(kv, l, min)) min = l;
        if (l + 1 < kv->heap_n && heap_before(kv, l + 1, min)) min = l + 1;
        if (min == i) return;
        heap_swap(kv, i, min);
        i = min;
    }
}

static void
heap_push(struct kv *kv, struct entry *e)
{
    if (kv->heap_n == kv->heap_cap) {
        kv->heap_cap = kv->heap_cap ? kv->heap_cap * 2 : 16;
        kv->heap = lq_xrealloc(kv->heap, kv->heap_cap * sizeof(*kv->heap));
    }
    e->heap_at = kv->heap_n;
    kv->heap[kv->heap_n++] = e;
    heap_up(kv, e->heap_at);
}

static void
heap_remove(struct kv *kv, struct entry *e)
{
    size_t i = e->heap_at;
    if (i == NOT_IN_HEAP) return;
    assert(i < kv->heap_n && kv->heap[i] == e);
    e->heap_at = NOT_IN_HEAP;
    if (i == --kv->heap_n) return; /* the last one? */
    kv->heap[i] = kv->heap[kv->heap_n];
    kv->heap[i]->heap_at = i;
    heap_up(kv, i); /* the moved entry may belong above or below */
    heap_down(kv, i);
}

/* ---- the tree and the list ---- */

/* The first (side 0) or the last (side 1) entry below r in key order. */
static struct entry *
edge_leaf(uintptr_t r, unsigned side)
{
    while (is_inner(r)) r = as_inner(r)->kid[side];
    return as_entry(r);
}

/* Follow key down from the root past the nodes testing a bit before (pos, bit): to its
 * leaf with pos UINT32_MAX. Returns what it reached; *up: its parent (NULL: the root). */
static uintptr_t
descend(const struct kv *kv, const char *key, size_t klen, uint32_t pos, uint32_t bit,
        struct inner **up)
{
    uintptr_t r = kv->root;
    *up = NULL;
    while (is_inner(r)) {
        struct inner *n = as_inner(r);
        if (n->pos > pos || (n->pos == pos && n->bit < bit)) break;
        *up = n;
        r = n->kid[dir(n, key, klen)];
    }
    return r;
}

static uintptr_t *
slot_of(struct kv *kv, struct inner *up, const char *key, size_t klen)
{
    return up ? &up->kid[dir(up, key, klen)] : &kv->root;
}

/* The leaf sharing most leading bits with key: key's own if it is stored. */
static struct entry *
best_leaf(const struct kv *kv, const char *key, size_t klen, struct inner **up)
{
    return as_entry(descend(kv, key, klen, UINT32_MAX, 0, up));
}

static struct entry *
find(const struct kv *kv, const char *key, size_t klen)
{
    struct inner *up;
    struct entry *e = best_leaf(kv, key, klen, &up);
    return e && same_key(e, key, klen) ? e : NULL;
}

/* Where key first differs from e's key: false when they are the same key. */
static bool
first_difference(const struct entry *e, const char *key, size_t klen, uint32_t *pos, uint32_t *bit)
{
    size_t end = e->klen > klen ? e->klen : klen;
    for (size_t i = 0; i < end; i++) {
        unsigned x = sym(e->data, e->klen, i) ^ sym(key, klen, i);
        if (!x) continue;
        unsigned b = 8;
        while (!((x >> b) & 1u)) b--;
        *pos = (uint32_t)i;
        *bit = b;
        return true;
    }
    return false;
}

static void
link_between(struct entry *e, struct entry *prev, struct entry *next)
{
    e->prev = prev;
    e->next = next;
    if (prev) prev->next = e;
    if (next) next->prev = e;
}

/* Insert e, or replace the entry of the same key (freed). */
static void
put(struct kv *kv, struct entry *e)
{
    const char *key = e->data;
    struct inner *up;
    struct entry *best = best_leaf(kv, key, e->klen, &up);
    uint32_t pos, bit;
    if (!best) {
        kv->root = (uintptr_t)e;
        kv->st.keys++;
    } else if (!first_difference(best, key, e->klen, &pos, &bit)) { /* e takes its place */
        *slot_of(kv, up, key, e->klen) = (uintptr_t)e;
        link_between(e, best->prev, best->next);
        heap_remove(kv, best);
        kv->st.bytes -= entry_bytes(best->klen, best->vlen);
        free(best);
    } else { /* a new inner node, above the first node testing a later bit */
        struct inner *n = lq_xmalloc(sizeof(*n));
        unsigned d = (sym(key, e->klen, pos) >> bit) & 1u;
        n->pos = pos;
        n->bit = bit;
        n->kid[d] = (uintptr_t)e;
        n->kid[!d] = descend(kv, key, e->klen, pos, bit, &up);
        /* the subtree beside e is a run of the list: e goes at its end or its start */
        struct entry *beside = edge_leaf(n->kid[!d], d);
        if (d)
            link_between(e, beside, beside->next);
        else
            link_between(e, beside->prev, beside);
        *slot_of(kv, up, key, e->klen) = (uintptr_t)n | 1u;
        kv->st.keys++;
    }
    kv->st.bytes += entry_bytes(e->klen, e->vlen);
    if (e->expires_ms) heap_push(kv, e);
}

/* Take key's entry out of the tree, the list, the heap and the accounting; the caller
 * reports and frees it. */
static struct entry *
detach(struct kv *kv, const char *key, size_t klen)
{
    uintptr_t *slot = &kv->root, *parent = NULL;
    while (is_inner(*slot)) {
        parent = slot;
        struct inner *n = as_inner(*slot);
        slot = &n->kid[dir(n, key, klen)];
    }
    struct entry *e = as_entry(*slot);
    if (!e || !same_key(e, key, klen)) return NULL;
    if (!parent) {
        kv->root = 0;
    } else { /* the sibling takes the parent's place */
        struct inner *n = as_inner(*parent);
        *parent = n->kid[slot == &n->kid[0]];
        free(n);
    }
    if (e->prev) e->prev->next = e->next;
    if (e->next) e->next->prev = e->prev;
    heap_remove(kv, e);
    kv->st.bytes -= entry_bytes(e->klen, e->vlen);
    kv->st.keys--;
    return e;
}

static struct entry *
entry_new(const char *key, size_t klen, const char *value, size_t vlen, int64_t expires_ms)
{
    struct entry *e = lq_xmalloc(sizeof(*e) + klen + vlen);
    *e = (struct entry){.expires_ms = expires_ms,
                        .heap_at = NOT_IN_HEAP,
                        .klen = (uint32_t)klen,
                        .vlen = (uint32_t)vlen};
    memcpy(e->data, key, klen);
    if (vlen) memcpy(e->data + klen, value, vlen); /* value may be NULL when empty */
    return e;
}

/* ---- the API ---- */

struct kv *
kv_new(size_t max_bytes)
{
    struct kv *kv = lq_xcalloc(1, sizeof(*kv));
    kv->st.max_bytes = max_bytes;
    return kv;
}

void
kv_free(struct kv *kv)
{
    if (!kv) return;
    /* rotate right until the root's left kid is a leaf: no stack, however deep */
    while (is_inner(kv->root)) {
        struct inner *n = as_inner(kv->root);
        if (is_inner(n->kid[0])) {
            uintptr_t l = n->kid[0];
            n->kid[0] = as_inner(l)->kid[1];
            as_inner(l)->kid[1] = kv->root;
            kv->root = l;
        } else {
            free(as_entry(n->kid[0]));
            kv->root = n->kid[1];
            free(n);
        }
    }
    free(as_entry(kv->root));
    free(kv->heap);
    free(kv);
}

void
kv_set_max_bytes(struct kv *kv, size_t max_bytes)
{
    kv->st.max_bytes = max_bytes;
}

void
kv_on_change(struct kv *kv, kv_change_fn fn, void *ud)
{
    kv->on_change = fn;
    kv->ud = ud;
}

enum kv_rc
kv_set(struct kv *kv, const char *key, size_t klen, const char *value, size_t vlen,
       int64_t expires_ms)
{
    if (!sizes_ok(klen, vlen)) return KV_TOO_LARGE;
    const struct entry *old = find(kv, key, klen);
    size_t freed = old ? entry_bytes(old->klen, old->vlen) : 0;
    if (kv->st.bytes - freed + entry_bytes(klen, vlen) > kv->st.max_bytes) {
        kv->st.refused_full++;
        return KV_FULL;
    }
    struct entry *e = entry_new(key, klen, value, vlen, expires_ms); /* before old goes */
    put(kv, e);
    kv->st.sets++;
    report(kv, e, false);
    return KV_OK;
}

bool
kv_get(struct kv *kv, const char *key, size_t klen, int64_t now_ms, const char **value,
       size_t *vlen)
{
    kv->st.gets++;
    const struct entry *e = find(kv, key, klen);
    if (!e || is_expired(e->expires_ms, now_ms)) return false;
    kv->st.hits++;
    *value = e->data + e->klen;
    *vlen = e->vlen;
    return true;
}

bool
kv_del(struct kv *kv, const char *key, size_t klen)
{
    struct entry *e = detach(kv, key, klen);
    if (!e) return false;
    kv->st.deletes++;
    report(kv, e, true);
    free(e);
    return true;
}

void
kv_restore(struct kv *kv, const char *key, size_t klen, const char *value, size_t vlen,
           int64_t expires_ms, int64_t now_ms)
{
    if (!sizes_ok(klen, vlen)) return; /* no set could have written it */
    if (is_expired(expires_ms, now_ms)) {
        /* it replaced what the key held before, then expired: neither is left */
        free(detach(kv, key, klen));
        return;
    }
    put(kv, entry_new(key, klen, value, vlen, expires_ms));
}

/* From e (NULL: none) to last (NULL: the end) in key order, what is not expired. */
static size_t
visit(const struct entry *e, const struct entry *last, int64_t now_ms, size_t max, kv_each_fn fn,
      void *arg)
{
    size_t visited = 0;
    for (; e && visited < max; e = e == last ? NULL : e->next) {
        if (is_expired(e->expires_ms, now_ms)) continue;
        visited++;
        if (!fn(arg, e->data, e->klen, e->data + e->klen, e->vlen, e->expires_ms)) break;
    }
    return visited;
}

size_t
kv_each(const struct kv *kv, const char *prefix, size_t plen, int64_t now_ms, size_t max,
        kv_each_fn fn, void *arg)
{
    if (!kv->root || plen > KV_MAX_KEY) return 0;
    /* below the first node testing a symbol past the prefix (bit 9 comes before all
     * of a symbol's bits), all keys agree on the prefix's bytes: all have it or none */
    struct inner *up;
    uintptr_t top = descend(kv, prefix, plen, (uint32_t)plen, 9, &up);
    const struct entry *first = edge_leaf(top, 0);
    if (first->klen < plen || memcmp(first->data, prefix, plen) != 0) return 0;
    return visit(first, edge_leaf(top, 1), now_ms, max, fn, arg);
}

/* The first entry after key in key order, or NULL. */
static const struct entry *
entry_after(const struct kv *kv, const char *key, size_t klen)
{
    struct inner *up;
    const struct entry *best = best_leaf(kv, key, klen, &up);
    uint32_t pos, bit;
    if (!best) return NULL;
    if (!first_difference(best, key, klen, &pos, &bit)) return best->next;
    /* key would sit beside this subtree, as put() places it: after all of it or before */
    uintptr_t beside = descend(kv, key, klen, pos, bit, &up);
    if ((sym(key, klen, pos) >> bit) & 1u) return edge_leaf(beside, 1)->next;
    return edge_leaf(beside, 0);
}

size_t
kv_each_after(const struct kv *kv, const char *after, size_t alen, int64_t now_ms, size_t max,
              kv_each_fn fn, void *arg)
{
    /* alen 0: the empty key sorts before every stored key */
    return visit(entry_after(kv, after, alen), NULL, now_ms, max, fn, arg);
}

size_t
kv_expire(struct kv *kv, int64_t now_ms, size_t max)
{
    size_t n = 0;
    while (n < max && kv->heap_n && kv->heap[0]->expires_ms <= now_ms) {
        struct entry *e = detach(kv, kv->heap[0]->data, kv->heap[0]->klen);
        assert(e);
        n++;
        kv->st.expired++;
        report(kv, e, true);
        free(e);
    }
    return n;
}

void
kv_get_stats(const struct kv *kv, struct kv_stats *out)
{
    *out = kv->st;
}
