/* SPDX-License-Identifier: MIT
 *
 * hooks: the set of hooks of the scripts directory, the index from topic filters to
 * hooks, running a message through them, timers, and hot reload.
 *
 * Each file has a slot (name, counters, last load error) and at most one running
 * version. A rescan stats every *.lua file and loads those whose inode, size or
 * mtime changed; a load that fails keeps the previous version. inotify only says
 * "look again soon": the rescan is the one code path for SIGHUP and file events. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <lauxlib.h>

#include "hook_int.h"
#include "lq.h"
#include "msg.h"
#include "topic.h"

#define MAX_DEPTH   8   /* broker.publish from a hook's call, and so on */
#define RESCAN_MS   100 /* after a file event, let the writer finish */
#define TIME_SAMPLE 16  /* on_publish calls per timed one */

/* ---- index: topic filter -> hook ---- */

static void
index_rebuild(struct hooks *hs)
{
    topic_tree_free(hs->index);
    hs->index = topic_tree_new();
    unsigned order = 0;
    struct sub_opts o = {0};
    hs->n_on_connect = hs->n_on_subscribe = 0;
    for (size_t i = 0; i < hs->nslots; i++) {
        struct hook *h = hs->slots[i]->hook;
        if (!h) continue;
        h->order = order++;
        hs->n_on_connect += h->ref_on_connect != LUA_NOREF;
        hs->n_on_subscribe += h->ref_on_subscribe != LUA_NOREF;
        if (h->ref_on_publish == LUA_NOREF) continue;
        for (size_t k = 0; k < h->ntopics; k++)
            topic_tree_add(hs->index, h->topics[k], strlen(h->topics[k]), NULL, 0, h, &o);
    }
}

/* The hooks matching a topic, in file-name order. */
struct chain {
    struct hook **h;
    unsigned n, cap;
    struct hook *inline_h[8];
    const struct hook *skip;
};

static void
on_match(void *owner, const struct sub_opts *o, struct sub_group *g, void *arg)
{
    (void)o;
    (void)g;
    struct chain *c = arg;
    struct hook *h = owner;
    if (h == c->skip || h->running) return;
    unsigned i = c->n;
    while (i > 0 && c->h[i - 1]->order >= h->order) {
        if (c->h[i - 1] == h) return; /* two of its filters match */
        i--;
    }
    if (c->n == c->cap) {
        struct hook **nh = lq_xmalloc(2 * c->cap * sizeof(*nh));
        memcpy(nh, c->h, c->n * sizeof(*nh));
        if (c->h != c->inline_h) free(c->h);
        c->h = nh;
        c->cap *= 2;
    }
    memmove(c->h + i + 1, c->h + i, (c->n - i) * sizeof(*c->h));
    c->h[i] = h;
    c->n++;
}

static void
chain_of(const struct hooks *hs, const struct msg *m, const struct hook *skip, struct chain *c)
{
    c->h = c->inline_h;
    c->n = 0;
    c->cap = sizeof(c->inline_h) / sizeof(c->inline_h[0]);
    c->skip = skip;
    if (topic_tree_count(hs->index))
        topic_tree_match(hs->index, m->topic, m->topic_len, on_match, c);
}

static void
chain_free(struct chain *c)
{
    if (c->h != c->inline_h) free(c->h);
}

/* ---- running a message through the hooks ---- */

static void
verdict_add(struct hook_verdict *v, struct msg *m)
{
    if (!v->out) {
        v->out = v->inline_out;
        v->cap = sizeof(v->inline_out) / sizeof(v->inline_out[0]);
    } else if (v->n == v->cap) {
        struct msg **out = lq_xmalloc(2 * v->cap * sizeof(*out));
        memcpy(out, v->out, v->n * sizeof(*out));
        if (v->out != v->inline_out) free(v->out);
        v->out = out;
        v->cap *= 2;
    }
    v->out[v->n++] = m;
}

void
hook_verdict_clear(struct hook_verdict *v)
{
    for (size_t i = 0; i < v->n; i++) msg_unref(v->out[i]);
    if (v->out != v->inline_out) free(v->out);
    v->out = NULL;
    v->n = v->cap = 0;
    v->refuse = 0;
}

/* A hook's output to pass on: a changed message, or the original when unchanged. */
static struct msg *
output(struct hook *h, int idx, struct msg *in, bool *changed)
{
    char err[200];
    struct msg *m = message_from_result(h->L, idx, in, err, sizeof(err));
    if (!m) {
        h->stats->errors++;
        lq_log_limited(&h->failures_log, LQ_LOG_WARNING,
                       "hook %s: on_publish returned an invalid message: %s", h->name, err);
        return NULL;
    }
    *changed = !message_equal(m, in);
    if (*changed) return m;
    msg_unref(m);
    return msg_ref(in);
}

static void run_chain(struct hooks *hs, struct msg *m, const struct hook_client *cl,
                      const struct chain *c, unsigned i, struct hook_verdict *v);

/* What comes out of hook h goes on to the hooks after it: the same chain while the
 * message is the same one, a new lookup for a rewritten or new message. */
static void
pass_on(struct hook *h, struct msg *out, struct msg *in, const struct hook_client *cl,
        const struct chain *c, unsigned i, struct hook_verdict *v)
{
    if (out == in) {
        run_chain(h->hs, out, cl, c, i + 1, v);
        return;
    }
    struct chain nc;
    chain_of(h->hs, out, c->skip, &nc);
    unsigned k = 0;
    while (k < nc.n && nc.h[k]->order <= h->order) k++;
    run_chain(h->hs, out, cl, &nc, k, v);
    chain_free(&nc);
}

/* The i-th hook of the chain on one message. */
static void
run_one(struct hook *h, struct msg *m, const struct hook_client *cl, const struct chain *c,
        unsigned i, struct hook_verdict *v)
{
    struct hooks *hs = h->hs;
    lua_State *L = h->L;
    h->stats->calls++;
    if (!message_push(h, m, cl)) { /* no room for its table: as a call cut by the cap */
        h->stats->memory_overruns++;
        lq_log_limited(&h->failures_log, LQ_LOG_WARNING,
                       "hook %s: on_publish: memory limit: no room for the message", h->name);
        if (!hs->conf.drop_on_error) run_chain(hs, m, cl, c, i + 1, v);
        return;
    }
    /* stack: msg table (kept at 1), on_publish, msg table */
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref_on_publish);
    lua_pushvalue(L, 1);
    int rc = sandbox_call(h, 1, 2, TIME_SAMPLE, "on_publish");
    message_seal(h);
    if (rc != LUA_OK) { /* logged and counted */
        lua_settop(L, 0);
        if (!hs->conf.drop_on_error) run_chain(hs, m, cl, c, i + 1, v);
        return;
    }
    if (!lua_toboolean(L, 2)) { /* nil or false: drop, or refuse with a reason code */
        h->stats->dropped++;
        if (lua_isboolean(L, 2) && lua_isinteger(L, 3)) {
            lua_Integer rcode = lua_tointeger(L, 3);
            if (rcode >= 0x80 && rcode <= 0xff && !v->refuse) v->refuse = (uint8_t)rcode;
        }
        lua_settop(L, 0);
        return;
    }
    if (!lua_istable(L, 2)) {
        h->stats->errors++;
        lq_log_limited(&h->failures_log, LQ_LOG_WARNING,
                       "hook %s: on_publish returned a %s, not a message", h->name,
                       luaL_typename(L, 2));
        lua_settop(L, 0);
        if (!hs->conf.drop_on_error) run_chain(hs, m, cl, c, i + 1, v);
        return;
    }
    if (message_unchanged(h, m, 2, 1)) { /* the common case costs no copy */
        lua_settop(L, 0);
        h->stats->passed++;
        run_chain(hs, m, cl, c, i + 1, v);
        return;
    }
    lua_pushliteral(L, "topic"); /* raw reads: the message table is sealed */
    bool single = lua_rawequal(L, 2, 1) || lua_rawget(L, 2) != LUA_TNIL;
    lua_settop(L, 2);
    if (single) {
        bool changed = false;
        struct msg *out = output(h, 2, m, &changed);
        lua_settop(L, 0);
        if (!out) {
            if (!hs->conf.drop_on_error) run_chain(hs, m, cl, c, i + 1, v);
            return;
        }
        if (changed)
            h->stats->rewritten++;
        else
            h->stats->passed++;
        pass_on(h, out, m, cl, c, i, v);
        msg_unref(out);
        return;
    }
    /* a list: fan out (an empty list drops) */
    lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
    size_t made = 0;
    struct msg **outs = n > 0 ? lq_xcalloc((size_t)n, sizeof(*outs)) : NULL;
    for (lua_Integer k = 1; k <= n; k++) {
        lua_rawgeti(L, 2, k);
        bool changed;
        struct msg *out = output(h, -1, m, &changed);
        lua_pop(L, 1);
        if (out) outs[made++] = out;
    }
    lua_settop(L, 0);
    if (made == 0) h->stats->dropped++;
    h->stats->fanned_out += made;
    for (size_t k = 0; k < made; k++) {
        pass_on(h, outs[k], m, cl, c, i, v);
        msg_unref(outs[k]);
    }
    free(outs);
}

static void
run_chain(struct hooks *hs, struct msg *m, const struct hook_client *cl, const struct chain *c,
          unsigned i, struct hook_verdict *v)
{
    (void)hs;
    if (i >= c->n) {
        verdict_add(v, msg_ref(m));
        return;
    }
    run_one(c->h[i], m, cl, c, i, v);
}

bool
hooks_run(struct hooks *hs, struct msg *m, const struct hook_client *cl, const struct hook *skip,
          struct hook_verdict *v)
{
    if (!hs) return false;
    struct chain c;
    chain_of(hs, m, skip, &c);
    if (c.n == 0) return false; /* the one index lookup most messages pay */
    if (hs->depth >= MAX_DEPTH) {
        lq_log_limited(&hs->depth_log, LQ_LOG_WARNING,
                       "hooks: broker.publish nested %u deep: \"%s\" not passed through hooks",
                       hs->depth, m->topic);
        chain_free(&c);
        return false;
    }
    hs->depth++;
    run_chain(hs, m, cl, &c, 0, v);
    hs->depth--;
    chain_free(&c);
    return true;
}

void
hooks_publish_from(struct hook *h, struct msg *m)
{
    if (h->hs->host.publish) h->hs->host.publish(h->hs->host.ud, m, h);
}

/* ---- timers ---- */

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hook *h = arg;
    h->stats->timer_calls++;
    lua_rawgeti(h->L, LUA_REGISTRYINDEX, h->ref_on_timer);
    if (sandbox_call(h, 0, 0, 1, "on_timer") == LUA_OK) lua_settop(h->L, 0);
}

static void
start(struct hooks *hs, struct hook *h)
{
    if (h->ref_on_load != LUA_NOREF) { /* a failure is logged; the hook still runs */
        lua_rawgeti(h->L, LUA_REGISTRYINDEX, h->ref_on_load);
        if (sandbox_call(h, 0, 0, 1, "on_load") == LUA_OK) lua_settop(h->L, 0);
    }
    if (h->interval > 0 && hs->base) {
        h->timer = event_new(hs->base, -1, EV_PERSIST, timer_cb, h);
        double s = h->interval;
        struct timeval tv = {.tv_sec = (time_t)s, .tv_usec = (suseconds_t)((s - (time_t)s) * 1e6)};
        if (!h->timer || event_add(h->timer, &tv) != 0)
            lq_log(LQ_LOG_ERR, "hook %s: cannot arm its timer: on_timer will not run", h->name);
    }
}

static void
stop(struct hook *h)
{
    if (h->timer) event_del(h->timer);
    if (h->ref_on_unload != LUA_NOREF) {
        lua_rawgeti(h->L, LUA_REGISTRYINDEX, h->ref_on_unload);
        if (sandbox_call(h, 0, 0, 1, "on_unload") == LUA_OK) lua_settop(h->L, 0);
    }
    sandbox_close(h);
}

/* ---- the directory ---- */

static struct hook_slot *
slot_find(struct hooks *hs, const char *name, size_t *at)
{
    size_t lo = 0, hi = hs->nslots;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(hs->slots[mid]->name, name);
        if (c == 0) {
            if (at) *at = mid;
            return hs->slots[mid];
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (at) *at = lo;
    return NULL;
}

static void
slot_free(struct hook_slot *s)
{
    if (s->hook) stop(s->hook);
    free(s->name);
    free(s->error);
    free(s);
}

static void
load_slot(struct hooks *hs, struct hook_slot *s, const char *path)
{
    char err[512];
    struct hook *h = sandbox_load(hs, s->name, path, err, sizeof(err));
    free(s->error);
    s->error = NULL;
    if (!h) {
        s->error = lq_xstrdup(err);
        lq_log(LQ_LOG_ERR, "hook %s: not loaded%s: %s", s->name,
               s->hook ? " (the previous version keeps running)" : "", err);
        return;
    }
    h->stats = &s->stats;
    if (s->hook) stop(s->hook);
    s->hook = h;
    start(hs, h);
    lq_log(LQ_LOG_NOTICE, "hook %s: loaded (%zu topic filter%s%s%s%s)", s->name, h->ntopics,
           h->ntopics == 1 ? "" : "s", h->interval > 0 ? ", timer" : "",
           h->ref_on_connect != LUA_NOREF ? ", on_connect" : "",
           h->ref_on_subscribe != LUA_NOREF ? ", on_subscribe" : "");
}

static bool
is_hook_file(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && name[0] != '.' && strcmp(name + n - 4, ".lua") == 0;
}

void
hooks_rescan(struct hooks *hs)
{
    if (!hs->dir) return;
    DIR *d = opendir(hs->dir);
    if (!d) {
        lq_log(LQ_LOG_WARNING, "scripts_dir %s: %s: no hooks", hs->dir, strerror(errno));
    }
    for (size_t i = 0; i < hs->nslots; i++) hs->slots[i]->seen = false;
    bool changed = false;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (!is_hook_file(de->d_name)) continue;
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", hs->dir, de->d_name);
        struct stat st;
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) continue;
        size_t at;
        struct hook_slot *s = slot_find(hs, de->d_name, &at);
        if (!s) {
            s = lq_xcalloc(1, sizeof(*s));
            s->name = lq_xstrdup(de->d_name);
            hs->slots = lq_xrealloc(hs->slots, (hs->nslots + 1) * sizeof(*hs->slots));
            memmove(hs->slots + at + 1, hs->slots + at, (hs->nslots - at) * sizeof(*hs->slots));
            hs->slots[at] = s;
            hs->nslots++;
        }
        s->seen = true;
        int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        if (s->ino == st.st_ino && s->size == st.st_size && s->mtime_ns == mtime) continue;
        s->ino = st.st_ino;
        s->size = st.st_size;
        s->mtime_ns = mtime;
        load_slot(hs, s, path);
        changed = true;
    }
    if (d) closedir(d);
    for (size_t i = 0; i < hs->nslots;) { /* files that went away */
        struct hook_slot *s = hs->slots[i];
        if (s->seen) {
            i++;
            continue;
        }
        lq_log(LQ_LOG_NOTICE, "hook %s: file removed: unloaded", s->name);
        slot_free(s);
        memmove(hs->slots + i, hs->slots + i + 1, (hs->nslots - i - 1) * sizeof(*hs->slots));
        hs->nslots--;
        changed = true;
    }
    if (changed || !hs->index) index_rebuild(hs);
}

static void
rescan_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hooks_rescan(arg);
}

static void
inotify_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct hooks *hs = arg;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool relevant = false;
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)(void *)p;
            if (ev->len && is_hook_file(ev->name)) relevant = true;
            p += sizeof(*ev) + ev->len;
        }
    }
    if (!relevant) return;
    struct timeval tv = {0, RESCAN_MS * 1000};
    /* re-adding pushes the deadline: one rescan per burst */
    if (event_add(hs->rescan_ev, &tv) != 0)
        lq_log(LQ_LOG_ERR, "scripts_dir %s: cannot arm the rescan: changes apply on SIGHUP",
               hs->dir);
}

static void
watch(struct hooks *hs)
{
    if (hs->inotify_ev) {
        event_free(hs->inotify_ev);
        hs->inotify_ev = NULL;
    }
    if (hs->inotify_fd >= 0) close(hs->inotify_fd);
    hs->inotify_fd = -1;
    if (!hs->base || !hs->dir) return;
    hs->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (hs->inotify_fd < 0 || inotify_add_watch(hs->inotify_fd, hs->dir,
                                                IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM |
                                                    IN_DELETE | IN_ATTRIB) < 0) {
        lq_log(LQ_LOG_WARNING, "scripts_dir %s: cannot watch it (%s): changes apply on SIGHUP",
               hs->dir, strerror(errno));
        return;
    }
    hs->inotify_ev = event_new(hs->base, hs->inotify_fd, EV_READ | EV_PERSIST, inotify_cb, hs);
    if (!hs->inotify_ev || event_add(hs->inotify_ev, NULL) != 0)
        lq_log(LQ_LOG_WARNING, "scripts_dir %s: cannot watch it: changes apply on SIGHUP", hs->dir);
}

struct hooks *
hooks_new(struct event_base *base, const struct hooks_conf *c, const struct hook_host *host)
{
    struct hooks *hs = lq_xcalloc(1, sizeof(*hs));
    hs->base = base;
    hs->inotify_fd = -1;
    if (host) hs->host = *host;
    if (base) hs->rescan_ev = evtimer_new(base, rescan_cb, hs);
    hooks_configure(hs, c);
    return hs;
}

void
hooks_configure(struct hooks *hs, const struct hooks_conf *c)
{
    bool new_dir = !hs->dir || !c->dir || strcmp(hs->dir, c->dir) != 0;
    hs->conf = *c;
    if (new_dir) {
        free(hs->dir);
        hs->dir = c->dir ? lq_xstrdup(c->dir) : NULL;
        hs->conf.dir = hs->dir;
        watch(hs);
    }
    hs->conf.dir = hs->dir;
    hooks_rescan(hs);
}

void
hooks_free(struct hooks *hs)
{
    if (!hs) return;
    for (size_t i = 0; i < hs->nslots; i++) slot_free(hs->slots[i]);
    free(hs->slots);
    topic_tree_free(hs->index);
    if (hs->inotify_ev) event_free(hs->inotify_ev);
    if (hs->inotify_fd >= 0) close(hs->inotify_fd);
    if (hs->rescan_ev) event_free(hs->rescan_ev);
    free(hs->dir);
    free(hs);
}

/* ---- observability ---- */

size_t
hooks_count(const struct hooks *hs)
{
    return hs ? hs->nslots : 0;
}

bool
hooks_info(const struct hooks *hs, size_t i, struct hook_info *out)
{
    if (!hs || i >= hs->nslots) return false;
    const struct hook_slot *s = hs->slots[i];
    memset(out, 0, sizeof(*out));
    out->name = s->name;
    out->error = s->error;
    out->loaded = s->hook != NULL;
    out->stats = s->stats;
    if (s->hook) {
        out->topics = (const char *const *)s->hook->topics;
        out->ntopics = s->hook->ntopics;
        out->interval = s->hook->interval;
        out->on_connect = s->hook->ref_on_connect != LUA_NOREF;
        out->on_subscribe = s->hook->ref_on_subscribe != LUA_NOREF;
        out->memory = s->hook->mem;
        out->http_in_flight = s->hook->http_running;
        out->http_queued = s->hook->http_queued;
    }
    return true;
}
