/* SPDX-License-Identifier: MIT
 *
 * registry: client identifier -> session, a chained hash table that doubles when
 * it holds more sessions than buckets. The one way to find a session by id. */
#include <stdlib.h>
#include <string.h>

#include "session_int.h"

static uint32_t
hash_id(const char *id, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)id[i];
        h *= 16777619u;
    }
    return h;
}

struct session *
registry_find(struct broker *b, const char *id, size_t len)
{
    uint32_t h = hash_id(id, len);
    for (struct session *s = b->buckets[h & (b->nbuckets - 1)]; s; s = s->hnext)
        if (s->hash == h && s->id_len == len && memcmp(s->id, id, len) == 0) return s;
    return NULL;
}

static void
grow(struct broker *b)
{
    size_t n = b->nbuckets * 2;
    struct session **nb = lq_xcalloc(n, sizeof(*nb));
    for (size_t i = 0; i < b->nbuckets; i++) {
        for (struct session *s = b->buckets[i], *next; s; s = next) {
            next = s->hnext;
            s->hnext = nb[s->hash & (n - 1)];
            nb[s->hash & (n - 1)] = s;
        }
    }
    free(b->buckets);
    b->buckets = nb;
    b->nbuckets = n;
}

void
registry_add(struct broker *b, struct session *s)
{
    if (b->nsessions >= b->nbuckets) grow(b);
    s->hash = hash_id(s->id, s->id_len);
    struct session **head = &b->buckets[s->hash & (b->nbuckets - 1)];
    s->hnext = *head;
    *head = s;
    b->nsessions++;
}

void
registry_remove(struct broker *b, struct session *s)
{
    for (struct session **pp = &b->buckets[s->hash & (b->nbuckets - 1)]; *pp; pp = &(*pp)->hnext) {
        if (*pp == s) {
            *pp = s->hnext;
            b->nsessions--;
            return;
        }
    }
}
