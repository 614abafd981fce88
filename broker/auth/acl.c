/* SPDX-License-Identifier: MIT
 *
 * acl: mosquitto's acl_file, compiled. Each user block, the anonymous block and the
 * patterns become a topic tree (levels in a levelmap per node, '+' and '#' apart, and
 * for patterns the levels holding %c or %u in a short list compared after
 * substitution), so that a check walks the topic's levels instead of every rule, and
 * allocates nothing. A node keeps, for the rules ending there and for those ending in
 * "/#" there, the first (in file order) deny, read grant and write grant: all a check
 * needs. The rules themselves are kept in file order too, for SUBSCRIBE, which
 * compares whole filters (acl_filter_intersects / _covers). Semantics: include/auth.h.
 * An acl is immutable once loaded; clients share it by reference. */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "auth_int.h"
#include "levelmap.h"
#include "lq.h"
#include "topic.h"

#define LINE_MAX_  (65535 + 64) /* a topic is at most 65535 bytes */
#define STR_(x)    #x
#define STR(x)     STR_(x)
#define LEVELS_STR STR(ACL_MAX_LEVELS)

struct rule {
    uint32_t line;
    uint8_t access; /* ACL_READ | ACL_WRITE; 0: deny */
    bool has_u;     /* a pattern with %u: not for anonymous clients */
    bool pattern;   /* %c and %u are substituted */
    uint32_t len;
    const char *why; /* "FILE:LINE", after the filter in the same allocation */
    char filter[];   /* len bytes and a NUL */
};

/* The first rule of each kind (file order) that ends at a node. */
struct hit {
    const struct rule *deny, *read, *write;
};

struct tkid; /* a pattern level with %c or %u */

struct rnode {
    struct levelmap kids; /* literal level -> struct rnode */
    struct rnode *plus;
    struct tkid *tkids;
    uint32_t ntkids;
    struct hit here; /* rules whose filter ends at this node */
    struct hit hash; /* rules whose filter ends with '#' below this node */
};

struct tkid {
    const char *tmpl; /* the level as written (in a rule's filter) */
    uint32_t len;
    bool has_u;
    struct rnode *node;
};

struct ruleset {
    struct rnode root;
    struct rule **rules; /* file order */
    size_t n, cap;
};

struct acl {
    int refs;
    char *path;
    struct levelmap users;    /* name -> struct ruleset */
    struct ruleset *anon;     /* rules before the first `user` line; NULL: none */
    struct ruleset *patterns; /* NULL: none */
    size_t nrules;
    char *dangerous_why;
};

struct acl_client {
    struct acl *acl;
    const struct ruleset *rs; /* its user's block (or the anonymous one); NULL: none */
    bool dangerous;           /* '+' or '#' in the username or client id */
    const char *username;     /* NULL: anonymous */
    const char *id;           /* NULL: none */
    size_t ulen, idlen;
    char strings[]; /* username and client id, NUL-terminated, in this allocation */
};

/* ---- the tree ---- */

static void
node_fini(struct rnode *nd)
{
    for (uint32_t i = 0; i < nd->kids.cap; i++)
        for (struct levelmap_entry *e = nd->kids.b[i]; e; e = e->next) {
            node_fini(e->val);
            free(e->val);
        }
    levelmap_fini(&nd->kids);
    if (nd->plus) {
        node_fini(nd->plus);
        free(nd->plus);
    }
    for (uint32_t i = 0; i < nd->ntkids; i++) {
        node_fini(nd->tkids[i].node);
        free(nd->tkids[i].node);
    }
    free(nd->tkids);
}

static void
ruleset_free(struct ruleset *rs)
{
    if (!rs) return;
    node_fini(&rs->root);
    for (size_t i = 0; i < rs->n; i++) free(rs->rules[i]);
    free(rs->rules);
    free(rs);
}

static bool
is_template(const char *s, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++)
        if (s[i] == '%' && (s[i + 1] == 'c' || s[i + 1] == 'u')) return true;
    return false;
}

static bool
has_percent_u(const char *s, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++)
        if (s[i] == '%' && s[i + 1] == 'u') return true;
    return false;
}

static struct rnode *
child(struct rnode *nd, const char *lv, size_t n, bool pattern)
{
    if (n == 1 && lv[0] == '+') {
        if (!nd->plus) nd->plus = lq_xcalloc(1, sizeof(*nd->plus));
        return nd->plus;
    }
    if (pattern && is_template(lv, n)) {
        for (uint32_t i = 0; i < nd->ntkids; i++)
            if (nd->tkids[i].len == n && memcmp(nd->tkids[i].tmpl, lv, n) == 0)
                return nd->tkids[i].node;
        nd->tkids = lq_xrealloc(nd->tkids, (nd->ntkids + 1) * sizeof(*nd->tkids));
        struct tkid *t = &nd->tkids[nd->ntkids++];
        *t = (struct tkid){.tmpl = lv, .len = (uint32_t)n, .has_u = has_percent_u(lv, n)};
        t->node = lq_xcalloc(1, sizeof(*t->node));
        return t->node;
    }
    struct rnode *k = levelmap_get(&nd->kids, lv, n);
    if (!k) {
        k = lq_xcalloc(1, sizeof(*k));
        levelmap_put(&nd->kids, lv, n, k);
    }
    return k;
}

static void
hit_add(struct hit *h, const struct rule *r)
{
    if (r->access == 0 && !h->deny) h->deny = r;
    if ((r->access & ACL_READ) && !h->read) h->read = r;
    if ((r->access & ACL_WRITE) && !h->write) h->write = r;
}

static void
ruleset_add(struct ruleset *rs, struct rule *r)
{
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? rs->cap * 2 : 8;
        rs->rules = lq_xrealloc(rs->rules, rs->cap * sizeof(*rs->rules));
    }
    rs->rules[rs->n++] = r;
    struct rnode *nd = &rs->root;
    for (size_t pos = 0;;) {
        const char *lv = r->filter + pos;
        const char *slash = memchr(lv, '/', r->len - pos);
        size_t n = slash ? (size_t)(slash - lv) : r->len - pos;
        if (n == 1 && lv[0] == '#') { /* valid filters have it last */
            hit_add(&nd->hash, r);
            return;
        }
        nd = child(nd, lv, n, r->pattern);
        if (!slash) break;
        pos += n + 1;
    }
    hit_add(&nd->here, r);
}

/* ---- checks ---- */

struct walk {
    const struct acl_client *c;
    const char *t;
    size_t n;
    enum acl_access want;
    const struct rule *deny, *grant;
};

static void
take(struct walk *w, const struct hit *h)
{
    if (h->deny && (!w->deny || h->deny->line < w->deny->line)) w->deny = h->deny;
    const struct rule *g = w->want == ACL_READ ? h->read : h->write;
    if (g && (!w->grant || g->line < w->grant->line)) w->grant = g;
}

/* Does the template level, %c and %u substituted, match the topic from *pos, ending
 * at the end of a topic level (a substituted id may hold '/': it spans levels)? */
static bool
tmpl_matches(const struct tkid *k, const struct walk *w, size_t *pos)
{
    const struct acl_client *c = w->c;
    size_t p = *pos;
    for (uint32_t i = 0; i < k->len; i++) {
        char ch = k->tmpl[i];
        if (ch == '%' && i + 1 < k->len && (k->tmpl[i + 1] == 'c' || k->tmpl[i + 1] == 'u')) {
            const char *v = k->tmpl[i + 1] == 'c' ? c->id : c->username;
            size_t vl = k->tmpl[i + 1] == 'c' ? c->idlen : c->ulen;
            if (w->n - p < vl || memcmp(w->t + p, v, vl) != 0) return false;
            p += vl;
            i++;
        } else {
            if (p >= w->n || w->t[p] != ch) return false;
            p++;
        }
    }
    if (p < w->n && w->t[p] != '/') return false;
    *pos = p;
    return true;
}

/* The topic's level starting at pos (end: the topic ended at the level before). */
static void
walk_node(struct walk *w, const struct rnode *nd, size_t pos, bool end, bool root)
{
    if (end) { /* "a/#" matches "a" too */
        take(w, &nd->here);
        take(w, &nd->hash);
        return;
    }
    bool dollar = root && w->t[0] == '$'; /* no leading wildcard matches a '$' topic */
    if (!dollar) take(w, &nd->hash);
    const char *slash = memchr(w->t + pos, '/', w->n - pos);
    size_t q = slash ? (size_t)(slash - w->t) : w->n;
    const struct rnode *k = levelmap_get(&nd->kids, w->t + pos, q - pos);
    if (k) walk_node(w, k, q + 1, q == w->n, false);
    if (nd->plus && !dollar) walk_node(w, nd->plus, q + 1, q == w->n, false);
    for (uint32_t i = 0; i < nd->ntkids; i++) {
        const struct tkid *t = &nd->tkids[i];
        size_t r = pos;
        if (t->has_u && !w->c->username) continue; /* %u: not for anonymous clients */
        if (tmpl_matches(t, w, &r)) walk_node(w, t->node, r + 1, r == w->n, false);
    }
}

/* 1: allowed, 0: refused, -1: no rule of rs matched. */
static int
check_set(const struct ruleset *rs, struct walk *w, const char **why)
{
    w->deny = w->grant = NULL;
    walk_node(w, &rs->root, 0, false, true);
    if (w->deny)
        *why = w->deny->why;
    else if (w->grant)
        *why = w->grant->why;
    return w->deny ? 0 : w->grant ? 1 : -1;
}

bool
acl_check(const struct acl_client *c, const char *topic, size_t len, enum acl_access want,
          const char **why)
{
    const char *dummy;
    if (!why) why = &dummy;
    *why = NULL;
    if (len == 0) return false;
    struct walk w = {.c = c, .t = topic, .n = len, .want = want};
    int rc;
    if (c->rs && (rc = check_set(c->rs, &w, why)) >= 0) return rc;
    const struct acl *a = c->acl;
    if (!a->patterns || !c->id) return false;
    if (c->dangerous) {
        *why = a->dangerous_why;
        return false;
    }
    return check_set(a->patterns, &w, why) == 1;
}

/* ---- filter algebra ---- */

/* The level of f at *pos; false past the last one. */
static bool
level_next(const char *f, size_t n, size_t *pos, const char **lv, size_t *lvlen)
{
    if (*pos > n) return false;
    const char *slash = memchr(f + *pos, '/', n - *pos);
    size_t q = slash ? (size_t)(slash - f) : n;
    *lv = f + *pos;
    *lvlen = q - *pos;
    *pos = q + 1;
    return true;
}

static bool
is_plus(const char *l, size_t n)
{
    return n == 1 && l[0] == '+';
}

static bool
is_hash(const char *l, size_t n)
{
    return n == 1 && l[0] == '#';
}

static bool
is_dollar(const char *l, size_t n)
{
    return n > 0 && l[0] == '$';
}

/* A filter's topics never include "" (one empty level: not a topic name), which "+" and
 * a leading empty level would otherwise admit ("+" and "/#" share no topic). */
bool
acl_filter_intersects(const char *a, size_t an, const char *b, size_t bn)
{
    size_t ap = 0, bp = 0;
    bool empty_first = false; /* the common topic's first level can only be "" */
    for (unsigned i = 0;; i++) {
        const char *x = NULL, *y = NULL;
        size_t xl = 0, yl = 0;
        bool hx = level_next(a, an, &ap, &x, &xl), hy = level_next(b, bn, &bp, &y, &yl);
        if (!hx || !hy) {
            bool meet = hx == hy || (hx ? is_hash(x, xl) : is_hash(y, yl)); /* "a/#" has "a" */
            return meet && !(i == 1 && empty_first);
        }
        bool wx = is_plus(x, xl) || is_hash(x, xl), wy = is_plus(y, yl) || is_hash(y, yl);
        if (i == 0 && ((wx && is_dollar(y, yl)) || (wy && is_dollar(x, xl)))) return false;
        if (is_hash(x, xl) || is_hash(y, yl)) {
            /* the other side's topics from here: only "" if it is just an empty level */
            bool xe = !wx && xl == 0 && ap > an, ye = !wy && yl == 0 && bp > bn;
            return !(i == 0 && (xe || ye));
        }
        if (!wx && !wy && (xl != yl || memcmp(x, y, xl) != 0)) return false;
        if (i == 0) empty_first = (!wx && xl == 0) || (!wy && yl == 0);
    }
}

bool
acl_filter_covers(const char *g, size_t gn, const char *f, size_t fn)
{
    size_t gp = 0, fp = 0;
    bool empty_first = false; /* f's first level is "": its one-level topic is no topic */
    for (unsigned i = 0;; i++) {
        const char *x = NULL, *y = NULL;
        size_t xl = 0, yl = 0;
        bool hg = level_next(g, gn, &gp, &x, &xl), hf = level_next(f, fn, &fp, &y, &yl);
        /* f's topic ends here: g ends too, or its "/#" matches the parent */
        if (!hf) return !hg || is_hash(x, xl) || (i == 1 && empty_first);
        if (!hg) return false; /* f's go deeper */
        if (is_hash(x, xl)) return !(i == 0 && is_dollar(y, yl));
        if (is_hash(y, yl)) {
            /* f's topics: the one ending at the level before, which only a '#' here
             * matches, unless there is none ("#", "/#"); and every deeper one, which
             * "+/#" matches too */
            bool no_parent = i == 0 || (i == 1 && empty_first);
            const char *z = NULL;
            size_t zl = 0;
            return no_parent && is_plus(x, xl) && level_next(g, gn, &gp, &z, &zl) && is_hash(z, zl);
        }
        if (is_plus(x, xl)) {
            if (i == 0 && is_dollar(y, yl)) return false;
        } else if (is_plus(y, yl) || xl != yl || memcmp(x, y, xl) != 0) {
            return false;
        }
        if (i == 0) empty_first = !is_plus(y, yl) && yl == 0;
    }
}

/* ---- SUBSCRIBE ---- */

/* The first rule (file order) of each kind whose filter intersects / covers. */
struct sub_hits {
    const struct rule *deny_any, *deny_all, *grant_any, *grant_all;
};

/* A pattern's filter with %c and %u substituted, as mosquitto does it (as text). */
static char *
expand(const struct rule *r, const struct acl_client *c, size_t *len)
{
    size_t vmax = c->idlen > c->ulen ? c->idlen : c->ulen;
    char *out = lq_xmalloc(r->len + (r->len / 2 + 1) * vmax + 1), *o = out;
    for (size_t i = 0; i < r->len; i++) {
        char ch = r->filter[i];
        if (ch == '%' && i + 1 < r->len && r->filter[i + 1] == 'c') {
            memcpy(o, c->id, c->idlen);
            o += c->idlen;
            i++;
        } else if (ch == '%' && i + 1 < r->len && r->filter[i + 1] == 'u' && c->username) {
            memcpy(o, c->username, c->ulen);
            o += c->ulen;
            i++;
        } else {
            *o++ = ch;
        }
    }
    *len = (size_t)(o - out);
    return out;
}

static void
sub_scan(const struct ruleset *rs, const struct acl_client *c, const char *f, size_t fn,
         struct sub_hits *h)
{
    *h = (struct sub_hits){0};
    for (size_t i = 0; i < rs->n; i++) {
        const struct rule *r = rs->rules[i];
        if (r->has_u && !c->username) continue;
        if (r->access && !(r->access & ACL_READ)) continue; /* write only: no say here */
        size_t gn = r->len;
        char *g = r->pattern ? expand(r, c, &gn) : NULL;
        const char *gf = g ? g : r->filter;
        if (acl_filter_intersects(gf, gn, f, fn)) {
            bool all = acl_filter_covers(gf, gn, f, fn);
            if (r->access == 0) {
                if (!h->deny_any) h->deny_any = r;
                if (all && !h->deny_all) h->deny_all = r;
            } else {
                if (!h->grant_any) h->grant_any = r;
                if (all && !h->grant_all) h->grant_all = r;
            }
        }
        free(g);
    }
}

static const char *
rule_why(const struct rule *r)
{
    return r ? r->why : NULL;
}

enum acl_sub
acl_check_subscribe(const struct acl_client *c, const char *filter, size_t len, const char **why)
{
    const char *dummy;
    if (!why) why = &dummy;
    *why = NULL;
    const struct acl *a = c->acl;
    struct sub_hits u = {0}, p = {0};
    if (c->rs) sub_scan(c->rs, c, filter, len, &u);
    bool patterns = a->patterns && c->id && !c->dangerous; /* step 3 can be reached */
    if (patterns) sub_scan(a->patterns, c, filter, len, &p);
    if (u.deny_all) { /* every topic: refused at step 1 */
        *why = u.deny_all->why;
        return ACL_SUB_NONE;
    }
    if (u.grant_all && !u.deny_any) { /* every topic: allowed at step 1 */
        *why = u.grant_all->why;
        return ACL_SUB_ALL;
    }
    if (!u.grant_any) { /* no topic is allowed at step 1 */
        if (!patterns) {
            *why = a->patterns && c->id && c->dangerous ? a->dangerous_why : rule_why(u.deny_any);
            return ACL_SUB_NONE;
        }
        if (p.deny_all || !p.grant_any) {
            *why = rule_why(p.deny_all ? p.deny_all : u.deny_any);
            return ACL_SUB_NONE;
        }
    }
    if (!u.deny_any && patterns && p.grant_all && !p.deny_any) {
        *why = p.grant_all->why;
        return ACL_SUB_ALL;
    }
    *why = rule_why(u.grant_any ? u.grant_any : p.grant_any);
    return ACL_SUB_SOME;
}

/* ---- clients ---- */

struct acl_client *
acl_client_new(struct acl *a, const char *username, const char *client_id)
{
    size_t ul = username ? strlen(username) : 0, il = client_id ? strlen(client_id) : 0;
    struct acl_client *c = lq_xmalloc(sizeof(*c) + ul + il + 2);
    *c = (struct acl_client){.acl = acl_ref(a), .ulen = ul, .idlen = il};
    char *s = c->strings;
    if (username) {
        memcpy(s, username, ul + 1);
        c->username = s;
        s += ul + 1;
        c->rs = levelmap_get(&a->users, username, ul);
    } else {
        c->rs = a->anon;
    }
    if (client_id) {
        memcpy(s, client_id, il + 1);
        c->id = s;
    }
    /* mosquitto's guard: a wildcard in a substituted name would widen the pattern */
    c->dangerous = (username && strpbrk(username, "+#")) || (client_id && strpbrk(client_id, "+#"));
    return c;
}

void
acl_client_free(struct acl_client *c)
{
    if (!c) return;
    acl_unref(c->acl);
    free(c);
}

/* ---- loading ---- */

static bool
is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* The next word of s from *i (blanks skipped before it). */
static const char *
word(const char *s, size_t n, size_t *i, size_t *wl)
{
    while (*i < n && is_blank(s[*i])) (*i)++;
    size_t start = *i;
    while (*i < n && !is_blank(s[*i])) (*i)++;
    *wl = *i - start;
    return s + start;
}

static bool
word_is(const char *w, size_t wl, const char *lit)
{
    return wl == strlen(lit) && memcmp(w, lit, wl) == 0;
}

static struct ruleset *
ruleset_new(void)
{
    return lq_xcalloc(1, sizeof(struct ruleset));
}

struct parse {
    struct acl *a;
    struct auth_lines l;
    struct ruleset *cur; /* the block rules go to: NULL before the first rule */
    bool seen_user;
    char *err;
    size_t errlen;
};

/* err = "FILE:LINE: " before w after */
static int
fail(struct parse *ps, const char *before, const char *w, size_t wl, const char *after)
{
    /* a word is quoted at most 64 bytes long: the line may be 64 KiB */
    char shown[80];
    int n = (int)(wl > 64 ? 64 : wl);
    snprintf(shown, sizeof(shown), "%.*s%s", n, w, wl > 64 ? "..." : "");
    auth_line_error(&ps->l, ps->err, ps->errlen, "%s%s%s", before, shown, after);
    return -1;
}

static int
parse_user(struct parse *ps, const char *s, size_t n, size_t i)
{
    while (i < n && is_blank(s[i])) i++;
    if (i == n) return fail(ps, "user without a name", "", 0, "");
    struct acl *a = ps->a;
    ps->seen_user = true;
    ps->cur = levelmap_get(&a->users, s + i, n - i);
    if (!ps->cur) {
        ps->cur = ruleset_new();
        levelmap_put(&a->users, s + i, n - i, ps->cur);
    }
    return 0;
}

static int
parse_rule(struct parse *ps, const char *s, size_t n, size_t i, bool pattern)
{
    size_t wl;
    const char *w = word(s, n, &i, &wl);
    if (wl == 0) {
        const char *kw = pattern ? "pattern" : "topic";
        return fail(ps, "no topic after '", kw, strlen(kw), "'");
    }
    while (i < n && is_blank(s[i])) i++;
    uint8_t access = ACL_READ | ACL_WRITE;
    const char *topic = s + i;
    size_t tl = n - i;
    bool is_access = word_is(w, wl, "read") || word_is(w, wl, "write") ||
                     word_is(w, wl, "readwrite") || word_is(w, wl, "deny");
    if (tl == 0) {
        if (is_access) return fail(ps, "no topic after '", w, wl, "'");
        topic = w; /* `topic TOPIC`: readwrite */
        tl = wl;
    } else if (!is_access) {
        return fail(ps, "'", w, wl, "' is not an access (read, write, readwrite or deny)");
    } else {
        access = word_is(w, wl, "read")    ? ACL_READ
                 : word_is(w, wl, "write") ? ACL_WRITE
                 : word_is(w, wl, "deny")  ? 0
                                           : ACL_READ | ACL_WRITE;
    }
    if (!topic_filter_is_valid(topic, tl))
        return fail(ps, "'", topic, tl, "' is not a valid topic filter");
    if (topic_is_too_deep(topic, tl, ACL_MAX_LEVELS))
        return fail(ps, "'", topic, tl, "' has more than " LEVELS_STR " levels");
    struct acl *a = ps->a;
    char why[32];
    int wn = snprintf(why, sizeof(why), ":%u", ps->l.no);
    size_t pl = strlen(a->path);
    struct rule *r = lq_xmalloc(sizeof(*r) + tl + 1 + pl + (size_t)wn + 1);
    *r = (struct rule){.line = ps->l.no, .access = access, .pattern = pattern, .len = (uint32_t)tl};
    memcpy(r->filter, topic, tl);
    r->filter[tl] = '\0';
    char *wp = r->filter + tl + 1;
    memcpy(wp, a->path, pl);
    memcpy(wp + pl, why, (size_t)wn + 1);
    r->why = wp;
    r->has_u = pattern && has_percent_u(topic, tl);
    struct ruleset **set = pattern ? &a->patterns : ps->seen_user ? &ps->cur : &a->anon;
    if (!*set) *set = ruleset_new();
    ruleset_add(*set, r);
    a->nrules++;
    return 0;
}

static int
parse_line(struct parse *ps, const char *s, size_t n)
{
    size_t i = 0, wl;
    const char *w = word(s, n, &i, &wl);
    if (wl == 0 || w[0] == '#') return 0;
    if (word_is(w, wl, "user")) return parse_user(ps, s, n, i);
    if (word_is(w, wl, "topic")) return parse_rule(ps, s, n, i, false);
    if (word_is(w, wl, "pattern")) return parse_rule(ps, s, n, i, true);
    return fail(ps, "unknown keyword '", w, wl, "' (expected user, topic or pattern)");
}

struct acl *
acl_load(const char *path, char *err, size_t errlen)
{
    struct parse ps = {.err = err, .errlen = errlen};
    if (auth_lines_open(&ps.l, path, LINE_MAX_, err, errlen) < 0) return NULL;
    struct acl *a = lq_xcalloc(1, sizeof(*a));
    a->refs = 1;
    a->path = lq_xstrdup(path);
    size_t plen = strlen(path) + 64;
    a->dangerous_why = lq_xmalloc(plen);
    snprintf(a->dangerous_why, plen, "%s: + or # in the username or client id", path);
    ps.a = a;
    size_t n;
    int rc;
    while ((rc = auth_lines_next(&ps.l, &n, err, errlen)) == 1)
        if (parse_line(&ps, ps.l.buf, n) < 0) {
            rc = -1;
            break;
        }
    auth_lines_close(&ps.l);
    if (rc < 0) {
        acl_unref(a);
        return NULL;
    }
    return a;
}

struct acl *
acl_ref(struct acl *a)
{
    a->refs++;
    return a;
}

void
acl_unref(struct acl *a)
{
    if (!a || --a->refs > 0) return; /* last reference? */
    for (uint32_t i = 0; i < a->users.cap; i++)
        for (struct levelmap_entry *e = a->users.b[i]; e; e = e->next) ruleset_free(e->val);
    levelmap_fini(&a->users);
    ruleset_free(a->anon);
    ruleset_free(a->patterns);
    free(a->dangerous_why);
    free(a->path);
    free(a);
}

size_t
acl_rule_count(const struct acl *a)
{
    return a->nrules;
}
