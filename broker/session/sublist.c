/* SPDX-License-Identifier: MIT
 *
 * sublist: a session's own list of its subscriptions (to undo them when it ends, and
 * for lunamq-ctl), found by (share group, filter) in O(1). A dense array in
 * subscription order, plus an open-addressing index (linear probing) of 2 * capsubs
 * slots that hold array positions + 1. Small lists (up to INDEX_MIN) go without an
 * index: most clients have a few subscriptions and pay nothing for it; a client
 * with 80 000 no longer makes each SUBSCRIBE scan them all.
 * Each filter that comes or goes is told to the cluster (cluster.h): other nodes send
 * this node what its sessions subscribe to.
 * Not here: the subscription tree (route/topic_tree.c) and SUBSCRIBE itself. */
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "session_int.h"

#define INDEX_MIN 8 /* capsubs at which the index appears */

static uint32_t
key_hash(const char *filter, size_t flen, const char *group, size_t glen)
{
    uint32_t h = 2166136261u; /* FNV-1a over filter, then 0xff and the group */
    for (size_t i = 0; i < flen; i++) h = (h ^ (uint8_t)filter[i]) * 16777619u;
    if (group) {
        h = (h ^ 0xffu) * 16777619u; /* no filter holds 0xff (UTF-8) */
        for (size_t i = 0; i < glen; i++) h = (h ^ (uint8_t)group[i]) * 16777619u;
    }
    return h;
}

/* Is x the subscription (group, filter)? The stored strings are NUL-terminated and
 * the given ones hold no NUL (valid filters and groups). */
static bool
key_eq(const struct ssub *x, const char *filter, size_t flen, const char *group, size_t glen)
{
    if (strncmp(x->filter, filter, flen) != 0 || x->filter[flen] != '\0') return false;
    if (!group || !x->group) return !group && !x->group;
    return strncmp(x->group, group, glen) == 0 && x->group[glen] == '\0';
}

static uint32_t
index_mask(const struct session *s)
{
    return 2 * s->capsubs - 1;
}

static void
index_put(struct session *s, uint32_t pos)
{
    uint32_t mask = index_mask(s);
    uint32_t i = s->subs[pos].hash & mask;
    while (s->subs_index[i]) i = (i + 1) & mask;
    s->subs_index[i] = pos + 1;
}

/* The index for the current capacity, from the array. */
static void
index_rebuild(struct session *s)
{
    free(s->subs_index);
    s->subs_index = NULL;
    if (s->capsubs <= INDEX_MIN) return;
    s->subs_index = lq_xcalloc(2 * (size_t)s->capsubs, sizeof(*s->subs_index));
    for (uint32_t k = 0; k < s->nsubs; k++) index_put(s, k);
}

static void
resize(struct session *s, uint32_t cap)
{
    s->capsubs = cap;
    s->subs = lq_xrealloc(s->subs, cap * sizeof(*s->subs));
    index_rebuild(s);
}

/* The index slot that holds position pos (which must be indexed). */
static uint32_t
slot_of(const struct session *s, uint32_t pos)
{
    uint32_t mask = index_mask(s);
    uint32_t i = s->subs[pos].hash & mask;
    while (s->subs_index[i] != pos + 1) i = (i + 1) & mask;
    return i;
}

/* Empty slot i, moving later entries of its probe run back (no tombstones). */
static void
slot_delete(struct session *s, uint32_t i)
{
    uint32_t mask = index_mask(s);
    for (uint32_t j = (i + 1) & mask; s->subs_index[j]; j = (j + 1) & mask) {
        uint32_t home = s->subs[s->subs_index[j] - 1].hash & mask;
        /* the entry at j may fill the hole at i when its home is not in (i, j] */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays) continue;
        s->subs_index[i] = s->subs_index[j];
        i = j;
    }
    s->subs_index[i] = 0;
}

struct ssub *
session_sub_find(struct session *s, const char *filter, size_t flen, const char *group, size_t glen)
{
    uint32_t h = key_hash(filter, flen, group, glen);
    if (!s->subs_index) {
        for (uint32_t k = 0; k < s->nsubs; k++)
            if (s->subs[k].hash == h && key_eq(&s->subs[k], filter, flen, group, glen))
                return &s->subs[k];
        return NULL;
    }
    uint32_t mask = index_mask(s);
    for (uint32_t i = h & mask; s->subs_index[i]; i = (i + 1) & mask) {
        struct ssub *x = &s->subs[s->subs_index[i] - 1];
        if (x->hash == h && key_eq(x, filter, flen, group, glen)) return x;
    }
    return NULL;
}

/* Other nodes send what the subscription wants here (cluster.h). */
static void
tell_cluster(struct session *s, const char *filter, size_t flen, const char *group, int delta)
{
    if (group)
        cluster_interest_shared(s->b->cluster, group, strlen(group), filter, flen, delta);
    else
        cluster_interest(s->b->cluster, filter, flen, delta);
}

struct ssub *
session_sub_add(struct session *s, const char *filter, size_t flen, const char *group, size_t glen)
{
    if (s->nsubs == s->capsubs) resize(s, s->capsubs ? s->capsubs * 2 : 4);
    struct ssub *x = &s->subs[s->nsubs];
    memset(x, 0, sizeof(*x));
    x->filter = lq_xmalloc(flen + 1 + (group ? glen + 1 : 0));
    memcpy(x->filter, filter, flen);
    x->filter[flen] = '\0';
    if (group) {
        x->group = x->filter + flen + 1;
        memcpy(x->group, group, glen);
        x->group[glen] = '\0';
    }
    x->hash = key_hash(filter, flen, group, glen);
    if (s->subs_index) index_put(s, s->nsubs);
    s->nsubs++;
    tell_cluster(s, filter, flen, x->group, +1);
    return x;
}

void
session_sub_remove(struct session *s, struct ssub *x)
{
    uint32_t pos = (uint32_t)(x - s->subs), last = s->nsubs - 1;
    tell_cluster(s, x->filter, strlen(x->filter), x->group, -1);
    if (s->subs_index) {
        slot_delete(s, slot_of(s, pos));
        if (pos != last) s->subs_index[slot_of(s, last)] = pos + 1;
    }
    free(x->filter); /* the group too */
    if (pos != last) *x = s->subs[last];
    s->nsubs--;
    /* give back what a burst of subscriptions took, a halving at a time */
    if (s->capsubs > INDEX_MIN && s->nsubs < s->capsubs / 4) resize(s, s->capsubs / 2);
}

void
session_subs_free(struct session *s)
{
    for (uint32_t k = 0; k < s->nsubs; k++) {
        tell_cluster(s, s->subs[k].filter, strlen(s->subs[k].filter), s->subs[k].group, -1);
        free(s->subs[k].filter);
    }
    free(s->subs);
    free(s->subs_index);
    s->subs = NULL;
    s->subs_index = NULL;
    s->nsubs = s->capsubs = 0;
}
