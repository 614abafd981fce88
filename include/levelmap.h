/* SPDX-License-Identifier: MIT
 *
 * levelmap: the children of a trie node, keyed by one topic level. A chained hash
 * table that starts empty and doubles when it has more entries than buckets, so a
 * node with ten thousand device ids below it still finds a child in O(1). Shared
 * by the subscription tree and the retained store. Values are borrowed pointers. */
#ifndef LUNAMQ_LEVELMAP_H
#define LUNAMQ_LEVELMAP_H

#include <stddef.h>
#include <stdint.h>

struct levelmap_entry {
    struct levelmap_entry *next;
    uint32_t hash;
    uint32_t len;
    void *val;
    char name[]; /* len bytes, not NUL-terminated */
};

struct levelmap {
    struct levelmap_entry **b;
    uint32_t n, cap;
};

void *levelmap_get(const struct levelmap *m, const char *s, size_t len);
/* Insert (the key must not be present). Returns the map's copy of the key (len bytes,
 * not NUL-terminated), valid until levelmap_del: a node can name itself with it
 * instead of a copy of its own. */
const char *levelmap_put(struct levelmap *m, const char *s, size_t len, void *val);
void levelmap_del(struct levelmap *m, const char *s, size_t len);
void levelmap_fini(struct levelmap *m); /* frees entries, not values */

/* Iterate: for (i = 0; i < m->cap; i++) for (e = m->b[i]; e; e = e->next). */

#endif
