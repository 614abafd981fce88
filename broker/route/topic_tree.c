/* SPDX-License-Identifier: MIT
 *
 * topic_tree: subscriptions indexed by topic level. Owns every node and every
 * subscription record; sessions are opaque owners. A node's named children are in
 * a levelmap, its '+' and '#' children in their own pointers, so matching visits
 * only the nodes a topic can reach: cost grows with depth and matches, never with
 * the number of subscribers. Matching walks with an explicit stack (kept in the
 * tree and reused), so hostile depth cannot overflow the C stack and the hot path
 * does not allocate. Not here: delivery, QoS merging, choosing online members. */
#include <stdlib.h>
#include <string.h>

#include "levelmap.h"
#include "lq.h"
#include "topic.h"

struct tsub {
    void *owner;
    struct sub_opts o;
};

struct sub_group {
    struct sub_group *next, *prev; /* the node's list in the order made, for matching */
    const char *name;              /* nlen bytes: the group index's copy */
    size_t nlen;
    struct tsub *m;
    uint32_t n, cap, rr;
};

struct tnode {
    struct tnode *parent;
    const char *name; /* the level (nlen bytes, the levelmap's copy); "+" or "#" */
    size_t nlen;
    struct levelmap kids;
    struct tnode *plus, *hash;
    struct tsub *subs;
    uint32_t nsubs, capsubs;
    struct sub_group *groups;
    struct group_index *group_index; /* made with the first group */
};

/* Group name -> group: one client could otherwise make every SUBSCRIBE scan 10 000
 * groups on one filter. And the list's tail, to keep the order groups were made. */
struct group_index {
    struct levelmap map;
    struct sub_group *tail;
};

struct frame {
    struct tnode *n;
    size_t pos; /* where the next level of the topic starts; len + 1 = consumed */
};

struct topic_tree {
    struct tnode root;
    size_t count;
    size_t bytes; /* what nodes, names and subscription records hold (not the stack) */
    struct frame *stack;
    size_t cap;
};

struct topic_tree *
topic_tree_new(void)
{
    return lq_xcalloc(1, sizeof(struct topic_tree));
}

static void
node_free(struct tnode *n)
{
    for (uint32_t i = 0; i < n->kids.cap; i++)
        for (struct levelmap_entry *e = n->kids.b[i]; e; e = e->next) node_free(e->val);
    levelmap_fini(&n->kids);
    if (n->plus) node_free(n->plus);
    if (n->hash) node_free(n->hash);
    for (struct sub_group *g = n->groups, *next; g; g = next) {
        next = g->next;
        free(g->m);
        free(g);
    }
    if (n->group_index) levelmap_fini(&n->group_index->map);
    free(n->group_index);
    free(n->subs);
    if (n->parent) free(n);
}

void
topic_tree_free(struct topic_tree *t)
{
    if (!t) return;
    node_free(&t->root);
    free(t->stack);
    free(t);
}

/* The bucket array of a node's named children. */
static size_t
kids_bytes(const struct levelmap *m)
{
    return m->cap * sizeof(*m->b);
}

/* A node and its place in its parent (a levelmap entry unless a wildcard). */
static size_t
node_bytes(const struct tnode *n, bool named)
{
    return sizeof(*n) + n->capsubs * sizeof(struct tsub) +
           (named ? sizeof(struct levelmap_entry) + n->nlen : 0);
}

static size_t
group_bytes(const struct sub_group *g)
{
    return sizeof(*g) + sizeof(struct levelmap_entry) + g->nlen + g->cap * sizeof(struct tsub);
}

static struct tnode *
child(struct topic_tree *t, struct tnode *n, const char *lvl, size_t len, bool create)
{
    struct tnode **slot = NULL, *c;
    if (len == 1 && lvl[0] == '+')
        slot = &n->plus;
    else if (len == 1 && lvl[0] == '#')
        slot = &n->hash;
    c = slot ? *slot : levelmap_get(&n->kids, lvl, len);
    if (c || !create) return c;
    c = lq_xcalloc(1, sizeof(*c));
    c->parent = n;
    c->nlen = len;
    size_t kids = kids_bytes(&n->kids);
    if (slot) {
        *slot = c;
        c->name = lvl[0] == '+' ? "+" : "#";
    } else {
        c->name = levelmap_put(&n->kids, lvl, len, c);
    }
    t->bytes += node_bytes(c, !slot) + kids_bytes(&n->kids) - kids;
    return c;
}

static struct tnode *
walk(struct topic_tree *t, const char *f, size_t flen, bool create)
{
    struct tnode *n = &t->root;
    size_t i = 0;
    for (;;) {
        size_t e = i;
        while (e < flen && f[e] != '/') e++;
        n = child(t, n, f + i, e - i, create);
        if (!n || e >= flen) return n;
        i = e + 1;
    }
}

static struct tsub *
find_sub(struct tsub *a, uint32_t n, const void *owner)
{
    for (uint32_t i = 0; i < n; i++)
        if (a[i].owner == owner) return &a[i];
    return NULL;
}

/* Add or replace owner in an array; returns 1 when added. */
static int
put_sub(struct topic_tree *t, struct tsub **a, uint32_t *n, uint32_t *cap, void *owner,
        const struct sub_opts *o)
{
    struct tsub *s = find_sub(*a, *n, owner);
    if (s) {
        s->o = *o; /* [MQTT-3.8.4-3]: replace, keep the subscription */
        return 0;
    }
    if (*n == *cap) {
        t->bytes += (*cap ? *cap : 2) * sizeof(**a);
        *cap = *cap ? *cap * 2 : 2;
        *a = lq_xrealloc(*a, *cap * sizeof(**a));
    }
    (*a)[(*n)++] = (struct tsub){owner, *o};
    return 1;
}

static struct sub_group *
find_group(struct tnode *n, const char *g, size_t glen)
{
    return n->group_index ? levelmap_get(&n->group_index->map, g, glen) : NULL;
}

struct sub_group *
topic_tree_group(struct topic_tree *t, const char *filter, size_t flen, const char *group,
                 size_t glen)
{
    struct tnode *n = walk(t, filter, flen, false);
    return n ? find_group(n, group, glen) : NULL;
}

static struct sub_group *
group_new(struct topic_tree *t, struct tnode *n, const char *name, size_t nlen)
{
    if (!n->group_index) {
        n->group_index = lq_xcalloc(1, sizeof(*n->group_index));
        t->bytes += sizeof(*n->group_index);
    }
    struct group_index *x = n->group_index;
    struct sub_group *g = lq_xcalloc(1, sizeof(*g));
    size_t kids = kids_bytes(&x->map);
    g->name = levelmap_put(&x->map, name, nlen, g);
    g->nlen = nlen;
    t->bytes += group_bytes(g) + kids_bytes(&x->map) - kids;
    g->prev = x->tail;
    if (x->tail)
        x->tail->next = g;
    else
        n->groups = g;
    x->tail = g;
    return g;
}

static void
group_free(struct topic_tree *t, struct tnode *n, struct sub_group *g)
{
    struct group_index *x = n->group_index;
    if (g->prev)
        g->prev->next = g->next;
    else
        n->groups = g->next;
    if (g->next)
        g->next->prev = g->prev;
    else
        x->tail = g->prev;
    size_t kids = kids_bytes(&x->map);
    t->bytes -= group_bytes(g);
    levelmap_del(&x->map, g->name, g->nlen); /* g->name goes with it */
    t->bytes -= kids - kids_bytes(&x->map);
    if (!x->map.n) {
        free(x);
        n->group_index = NULL;
        t->bytes -= sizeof(*x);
    }
    free(g->m);
    free(g);
}

int
topic_tree_add(struct topic_tree *t, const char *filter, size_t flen, const char *group,
               size_t glen, void *owner, const struct sub_opts *o)
{
    struct tnode *n = walk(t, filter, flen, true);
    int added;
    if (group) {
        struct sub_group *g = find_group(n, group, glen);
        if (!g) g = group_new(t, n, group, glen);
        added = put_sub(t, &g->m, &g->n, &g->cap, owner, o);
    } else {
        added = put_sub(t, &n->subs, &n->nsubs, &n->capsubs, owner, o);
    }
    t->count += (size_t)added;
    return added;
}

static bool
node_is_empty(const struct tnode *n)
{
    return !n->nsubs && !n->groups && !n->kids.n && !n->plus && !n->hash;
}

static void
prune(struct topic_tree *t, struct tnode *n)
{
    while (n->parent && node_is_empty(n)) {
        struct tnode *p = n->parent;
        bool named = p->plus != n && p->hash != n;
        size_t kids = kids_bytes(&p->kids);
        if (p->plus == n)
            p->plus = NULL;
        else if (p->hash == n)
            p->hash = NULL;
        else
            levelmap_del(&p->kids, n->name, n->nlen);
        t->bytes -= node_bytes(n, named) + kids - kids_bytes(&p->kids);
        free(n->subs);
        free(n);
        n = p;
    }
}

static bool
remove_sub(struct tsub *a, uint32_t *n, const void *owner)
{
    struct tsub *s = find_sub(a, *n, owner);
    if (!s) return false;
    *s = a[--*n]; /* order within a node does not matter */
    return true;
}

int
topic_tree_remove(struct topic_tree *t, const char *filter, size_t flen, const char *group,
                  size_t glen, void *owner)
{
    struct tnode *n = walk(t, filter, flen, false);
    if (!n) return -1;
    if (group) {
        struct sub_group *g = find_group(n, group, glen);
        if (!g || !remove_sub(g->m, &g->n, owner)) return -1;
        if (!g->n)
            group_free(t, n, g);
        else if (g->rr >= g->n)
            g->rr = 0;
    } else if (!remove_sub(n->subs, &n->nsubs, owner)) {
        return -1;
    }
    t->count--;
    prune(t, n);
    return 0;
}

static void
report(struct tnode *n, topic_match_fn fn, void *arg)
{
    for (uint32_t i = 0; i < n->nsubs; i++) fn(n->subs[i].owner, &n->subs[i].o, NULL, arg);
    for (struct sub_group *g = n->groups; g; g = g->next) fn(NULL, NULL, g, arg);
}

static void
push(struct topic_tree *t, size_t *sp, struct tnode *n, size_t pos)
{
    if (*sp == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 32;
        t->stack = lq_xrealloc(t->stack, t->cap * sizeof(*t->stack));
    }
    t->stack[(*sp)++] = (struct frame){n, pos};
}

void
topic_tree_match(struct topic_tree *t, const char *name, size_t nlen, topic_match_fn fn, void *arg)
{
    bool dollar = nlen && name[0] == '$'; /* [MQTT-4.7.2-1] */
    size_t sp = 0;
    push(t, &sp, &t->root, 0);
    while (sp) {
        struct frame f = t->stack[--sp];
        bool wild_ok = !(dollar && f.n == &t->root);
        if (f.pos > nlen) { /* every level consumed: this node's own subscribers */
            report(f.n, fn, arg);
            if (f.n->hash) report(f.n->hash, fn, arg); /* "a/#" matches "a" */
            continue;
        }
        if (f.n->hash && wild_ok) report(f.n->hash, fn, arg);
        if (!f.n->kids.n && !(f.n->plus && wild_ok)) continue; /* nothing deeper to try */
        const char *slash = memchr(name + f.pos, '/', nlen - f.pos);
        size_t e = slash ? (size_t)(slash - name) : nlen;
        size_t next = e < nlen ? e + 1 : nlen + 1;
        if (f.n->plus && wild_ok) push(t, &sp, f.n->plus, next);
        struct tnode *c = levelmap_get(&f.n->kids, name + f.pos, e - f.pos);
        if (c) push(t, &sp, c, next);
    }
}

bool
sub_group_pick(struct sub_group *g, bool (*usable)(void *owner, void *arg), void *arg, void **owner,
               const struct sub_opts **o)
{
    for (uint32_t i = 0; i < g->n; i++) {
        uint32_t k = (g->rr + i) % g->n;
        if (usable && !usable(g->m[k].owner, arg)) continue;
        g->rr = (k + 1) % g->n;
        *owner = g->m[k].owner;
        *o = &g->m[k].o;
        return true;
    }
    return false;
}

bool
sub_group_peek(const struct sub_group *g, uint32_t k, void **owner, const char **name, size_t *nlen)
{
    *name = g->name;
    *nlen = g->nlen;
    if (k >= g->n) return false;
    *owner = g->m[(g->rr + k) % g->n].owner;
    return true;
}

size_t
topic_tree_count(const struct topic_tree *t)
{
    return t->count;
}

size_t
topic_tree_bytes(const struct topic_tree *t)
{
    return t->bytes;
}
