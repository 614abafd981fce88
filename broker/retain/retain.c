/* SPDX-License-Identifier: MIT
 *
 * retain: retained messages in a trie by topic level, one reference per stored
 * message. A subscription walks its filter through the trie ('+' visits every
 * child, '#' a whole subtree) instead of scanning every retained topic. Walks use
 * an explicit stack, so topic depth cannot overflow the C stack. */
#include <stdlib.h>
#include <string.h>

#include "levelmap.h"
#include "lq.h"
#include "msg.h"
#include "retain.h"

struct rnode {
    struct rnode *parent;
    const char *name; /* nlen bytes: the levelmap's copy */
    size_t nlen;
    struct levelmap kids;
    struct msg *m;
    struct rnode *lnext, *lprev; /* while m is set: r->lhead's list, in the order set */
};

struct rframe {
    struct rnode *n;
    size_t pos; /* next filter level; SIZE_MAX: the whole subtree ('#') */
};

struct retain {
    struct rnode root;
    size_t count;
    size_t bytes; /* nodes, level names and the stored messages (lunamq-ctl stats) */
    struct rframe *stack;
    size_t cap;
    struct rnode *lhead, *ltail; /* the nodes holding a message */
    struct rnode *iter;          /* retain_iter_next's next node */
};

struct retain *
retain_new(void)
{
    return lq_xcalloc(1, sizeof(struct retain));
}

static void
node_free(struct rnode *n)
{
    for (uint32_t i = 0; i < n->kids.cap; i++)
        for (struct levelmap_entry *e = n->kids.b[i]; e; e = e->next) node_free(e->val);
    levelmap_fini(&n->kids);
    msg_unref(n->m);
    if (n->parent) free(n);
}

void
retain_free(struct retain *r)
{
    if (!r) return;
    node_free(&r->root);
    free(r->stack);
    free(r);
}

/* A node with its levelmap entry in the parent. */
static size_t
node_bytes(const struct rnode *n)
{
    return sizeof(*n) + n->nlen + sizeof(struct levelmap_entry);
}

static size_t
msg_bytes(const struct msg *m)
{
    return sizeof(*m) + m->topic_len + 1u + m->props_len + m->payload_len;
}

static struct rnode *
walk(struct retain *r, const char *t, size_t len, bool create)
{
    struct rnode *n = &r->root;
    size_t i = 0;
    for (;;) {
        size_t e = i;
        while (e < len && t[e] != '/') e++;
        struct rnode *c = levelmap_get(&n->kids, t + i, e - i);
        if (!c) {
            if (!create) return NULL;
            c = lq_xcalloc(1, sizeof(*c));
            c->parent = n;
            c->nlen = e - i;
            size_t kids = n->kids.cap * sizeof(*n->kids.b);
            c->name = levelmap_put(&n->kids, t + i, e - i, c);
            r->bytes += node_bytes(c) + n->kids.cap * sizeof(*n->kids.b) - kids;
        }
        n = c;
        if (e >= len) return n;
        i = e + 1;
    }
}

static void
prune(struct retain *r, struct rnode *n)
{
    while (n->parent && !n->m && !n->kids.n) {
        struct rnode *p = n->parent;
        size_t kids = p->kids.cap * sizeof(*p->kids.b);
        levelmap_del(&p->kids, n->name, n->nlen);
        r->bytes -= node_bytes(n) + kids - p->kids.cap * sizeof(*p->kids.b);
        free(n);
        n = p;
    }
}

static void
list_add(struct retain *r, struct rnode *n)
{
    n->lnext = NULL;
    n->lprev = r->ltail;
    if (r->ltail)
        r->ltail->lnext = n;
    else
        r->lhead = n;
    r->ltail = n;
}

static void
list_remove(struct retain *r, struct rnode *n)
{
    if (r->iter == n) r->iter = n->lnext; /* the iteration goes on after it */
    if (n->lprev)
        n->lprev->lnext = n->lnext;
    else
        r->lhead = n->lnext;
    if (n->lnext)
        n->lnext->lprev = n->lprev;
    else
        r->ltail = n->lprev;
    n->lnext = n->lprev = NULL;
}

void
retain_iter_begin(struct retain *r)
{
    r->iter = r->lhead;
}

struct msg *
retain_iter_next(struct retain *r)
{
    struct rnode *n = r->iter;
    if (!n) return NULL;
    r->iter = n->lnext;
    return n->m;
}

struct msg *
retain_get(struct retain *r, const char *topic, size_t len)
{
    struct rnode *n = walk(r, topic, len, false);
    return n ? n->m : NULL;
}

void
retain_clear(struct retain *r, const char *topic, size_t len)
{
    struct rnode *n = walk(r, topic, len, false);
    if (!n || !n->m) return;
    list_remove(r, n);
    r->bytes -= msg_bytes(n->m);
    msg_unref(n->m);
    n->m = NULL;
    r->count--;
    prune(r, n);
}

void
retain_set(struct retain *r, struct msg *m)
{
    if (m->payload_len == 0) { /* an empty payload clears [MQTT-3.3.1-6,7] */
        retain_clear(r, m->topic, m->topic_len);
        return;
    }
    struct rnode *n = walk(r, m->topic, m->topic_len, true);
    if (n->m) {
        r->bytes -= msg_bytes(n->m);
        msg_unref(n->m);
    } else {
        r->count++;
        list_add(r, n);
    }
    n->m = msg_ref(m);
    r->bytes += msg_bytes(m);
}

static void
push(struct retain *r, size_t *sp, struct rnode *n, size_t pos)
{
    if (*sp == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 32;
        r->stack = lq_xrealloc(r->stack, r->cap * sizeof(*r->stack));
    }
    r->stack[(*sp)++] = (struct rframe){n, pos};
}

static void
push_kids(struct retain *r, size_t *sp, struct rnode *n, size_t pos, bool skip_dollar)
{
    for (uint32_t i = 0; i < n->kids.cap; i++) {
        for (struct levelmap_entry *e = n->kids.b[i]; e; e = e->next) {
            struct rnode *c = e->val;
            if (skip_dollar && c->nlen && c->name[0] == '$') continue; /* [MQTT-4.7.2-1] */
            push(r, sp, c, pos);
        }
    }
}

void
retain_match(struct retain *r, const char *filter, size_t flen,
             void (*fn)(struct msg *m, void *arg), void *arg)
{
    size_t sp = 0;
    push(r, &sp, &r->root, 0);
    while (sp) {
        struct rframe f = r->stack[--sp];
        bool at_root = f.n == &r->root;
        if (f.pos == SIZE_MAX) { /* inside a '#': everything below */
            if (f.n->m) fn(f.n->m, arg);
            push_kids(r, &sp, f.n, SIZE_MAX, false);
            continue;
        }
        if (f.pos > flen) { /* filter consumed */
            if (f.n->m) fn(f.n->m, arg);
            continue;
        }
        size_t e = f.pos;
        while (e < flen && filter[e] != '/') e++;
        size_t next = e < flen ? e + 1 : flen + 1;
        if (e - f.pos == 1 && filter[f.pos] == '#') {
            if (!at_root && f.n->m) fn(f.n->m, arg); /* "a/#" matches "a" */
            push_kids(r, &sp, f.n, SIZE_MAX, at_root);
        } else if (e - f.pos == 1 && filter[f.pos] == '+') {
            push_kids(r, &sp, f.n, next, at_root);
        } else {
            struct rnode *c = levelmap_get(&f.n->kids, filter + f.pos, e - f.pos);
            if (c) push(r, &sp, c, next);
        }
    }
}

size_t
retain_count(const struct retain *r)
{
    return r->count;
}

size_t
retain_bytes(const struct retain *r)
{
    return r->bytes;
}
