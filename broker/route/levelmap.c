/* SPDX-License-Identifier: MIT
 *
 * levelmap: topic level -> child, a chained hash table (see include/levelmap.h). */
#include <stdlib.h>
#include <string.h>

#include "levelmap.h"
#include "lq.h"

static uint32_t
hash_level(const char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

void *
levelmap_get(const struct levelmap *m, const char *s, size_t len)
{
    if (!m->n) return NULL;
    uint32_t h = hash_level(s, len);
    for (struct levelmap_entry *e = m->b[h & (m->cap - 1)]; e; e = e->next)
        if (e->hash == h && e->len == len && memcmp(e->name, s, len) == 0) return e->val;
    return NULL;
}

static void
grow(struct levelmap *m)
{
    uint32_t cap = m->cap ? m->cap * 2 : 4;
    struct levelmap_entry **b = lq_xcalloc(cap, sizeof(*b));
    for (uint32_t i = 0; i < m->cap; i++) {
        for (struct levelmap_entry *e = m->b[i], *next; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (cap - 1)];
            b[e->hash & (cap - 1)] = e;
        }
    }
    free(m->b);
    m->b = b;
    m->cap = cap;
}

const char *
levelmap_put(struct levelmap *m, const char *s, size_t len, void *val)
{
    if (m->n >= m->cap) grow(m);
    struct levelmap_entry *e = lq_xmalloc(sizeof(*e) + len);
    e->hash = hash_level(s, len);
    e->len = (uint32_t)len;
    e->val = val;
    memcpy(e->name, s, len);
    e->next = m->b[e->hash & (m->cap - 1)];
    m->b[e->hash & (m->cap - 1)] = e;
    m->n++;
    return e->name;
}

void
levelmap_del(struct levelmap *m, const char *s, size_t len)
{
    if (!m->n) return;
    uint32_t h = hash_level(s, len);
    for (struct levelmap_entry **pp = &m->b[h & (m->cap - 1)]; *pp; pp = &(*pp)->next) {
        struct levelmap_entry *e = *pp;
        if (e->hash == h && e->len == len && memcmp(e->name, s, len) == 0) {
            *pp = e->next;
            free(e);
            if (--m->n == 0) levelmap_fini(m); /* empty nodes hold no table */
            return;
        }
    }
}

void
levelmap_fini(struct levelmap *m)
{
    for (uint32_t i = 0; i < m->cap; i++) {
        for (struct levelmap_entry *e = m->b[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(m->b);
    m->b = NULL;
    m->n = m->cap = 0;
}
