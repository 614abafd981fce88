/* SPDX-License-Identifier: MIT
 *
 * sandbox: one Lua state per hook, with only string, table, math, utf8, a safe part
 * of base and os (time, clock, date), the `broker` and `json` globals. No io, no
 * require, no debug, no binary chunks.
 *
 * Limits: the allocator refuses to grow the state past the memory cap and a count
 * hook stops a call that runs past the instruction budget. Neither can be caught by
 * the script: pcall and xpcall are replaced by versions that re-raise once an abort
 * is under way, so the error always reaches sandbox_call. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <lauxlib.h>
#include <lualib.h>

#include "hook_int.h"
#include "lq.h"
#include "msg.h"
#include "topic.h"

#define COUNT_STEP 1000 /* instructions between budget checks */
/* What one step of the budget buys in work Lua does inside a single instruction or C
 * call, where no count hook fires: bytes allocated (copies, concatenations, buffers)
 * and, when the cap refuses a request, the full collection Lua runs before it asks
 * again (a hook living at its cap would otherwise pay one per allocation). */
#define ALLOC_BYTES_PER_STEP 128
#define GC_BYTES_PER_STEP    64
/* A call still running after this many steps is timed from then on, even when it is
 * not the sampled one: a long call always shows in the hook's time figures. */
#define LONG_CALL_STEPS COUNT_STEP

int luaopen_cjson(lua_State *L); /* Debian's lua-cjson */

static uint64_t
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Where sandbox_check looks next while the limits are on: the clock of a long call,
 * then the budget's end. */
static void
set_check_at(struct hook *h)
{
    uint64_t over = h->step_limit + 1;
    h->check_at = h->t0_us || over < LONG_CALL_STEPS ? over : LONG_CALL_STEPS;
}

static void
note_long_call(struct hook *h)
{
    if (!h->t0_us && h->steps >= LONG_CALL_STEPS) {
        h->t0_us = now_us();
        set_check_at(h);
    }
}

/* A request while the limits are on. Past the cap it is refused, and Lua then runs a
 * full collection and asks again with the same arguments: only a repeat that still
 * does not fit is a memory overrun. Otherwise garbage a hook has not yet collected
 * would count against it. Past the budget it is refused too. */
__attribute__((noinline)) static void *
limited_realloc(struct hook *h, void *ptr, size_t osize, size_t nsize)
{
    bool retry = h->refused.size && h->refused.ptr == ptr && h->refused.size == nsize;
    h->refused.size = 0;
    if (nsize > osize) {
        size_t grow = nsize - osize;
        h->grown += grow;
        if (h->grown >= ALLOC_BYTES_PER_STEP) {
            h->steps += h->grown / ALLOC_BYTES_PER_STEP;
            h->grown %= ALLOC_BYTES_PER_STEP;
        }
        if (h->mem + grow > h->mem_limit) {
            if (!retry) h->steps += h->mem / GC_BYTES_PER_STEP; /* the collection to come */
            h->abort = ABORT_MEMORY;
            h->refused.ptr = ptr;
            h->refused.size = nsize;
            return NULL;
        }
        if (h->steps >= h->check_at) { /* the budget's end or the clock of a long call */
            note_long_call(h);
            /* past the budget, refuse once: the error on its way must still be made */
            if (h->steps > h->step_limit && (h->abort == ABORT_NONE || retry)) {
                h->abort = ABORT_BUDGET;
                return NULL;
            }
        }
        if (retry && h->abort == ABORT_MEMORY) h->abort = ABORT_NONE; /* it made room */
    }
    void *p = realloc(ptr, nsize);
    if (p) h->mem = h->mem - osize + nsize;
    return p;
}

/* Limits apply only while the hook's Lua code runs (limits_on): there a refusal is an
 * error sandbox_call catches, elsewhere (building a message table) it would abort. */
static void *
limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct hook *h = ud;
    if (!ptr) osize = 0;
    if (nsize == 0) {
        free(ptr);
        h->mem -= osize;
        return NULL;
    }
    if (h->limits_on) return limited_realloc(h, ptr, osize, nsize);
    void *p = realloc(ptr, nsize);
    if (p) h->mem = h->mem - osize + nsize;
    return p;
}

/* The error names the innermost Lua function running (a C function charging its
 * work is not one). lua_error, not luaL_error: that would prefix its caller's line. */
static int
budget_error(lua_State *L)
{
    struct hook *h = hook_of(L);
    h->abort = h->abort == ABORT_NONE ? ABORT_BUDGET : h->abort;
    lua_Debug ar;
    for (int level = 0; lua_getstack(L, level, &ar); level++) {
        lua_getinfo(L, "Sl", &ar);
        if (ar.currentline > 0) {
            lua_pushfstring(L, "%s:%d: instruction budget of %I exceeded", ar.short_src,
                            ar.currentline, (lua_Integer)h->step_limit);
            return lua_error(L);
        }
    }
    lua_pushfstring(L, "instruction budget of %I exceeded", (lua_Integer)h->step_limit);
    return lua_error(L);
}

void
sandbox_check(lua_State *L)
{
    struct hook *h = hook_of(L);
    if (!h->limits_on) return;
    note_long_call(h);
    if (h->steps > h->step_limit || h->abort != ABORT_NONE) budget_error(L);
}

static void
count_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct hook *h = hook_of(L);
    h->steps += COUNT_STEP;
    if (h->steps >= h->check_at || h->abort != ABORT_NONE) sandbox_check(L);
}

/* pcall/xpcall that cannot swallow a budget or memory abort. */
static int
finish_pcall(lua_State *L, int status, int extra)
{
    struct hook *h = hook_of(L);
    if (h->abort != ABORT_NONE) return lua_error(L); /* the message is on top */
    if (status != LUA_OK && status != LUA_YIELD) {
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - extra;
}

static int
safe_pcall(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_pushboolean(L, 1);
    lua_insert(L, 1);
    int status = lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 0);
    return finish_pcall(L, status, 0);
}

static int
safe_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2); /* f, msgh, true, f, args... */
    int status = lua_pcall(L, n - 2, LUA_MULTRET, 2);
    return finish_pcall(L, status, 2);
}

/* setmetatable without finalizers: Lua runs __gc with hooks off, so no budget would
 * stop one that loops (and lua_close runs them all on reload). A field added to the
 * metatable later makes no finalizer: Lua marks an object only when it gets its
 * metatable. */
static int
safe_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        bool gc = lua_rawget(L, 2) != LUA_TNIL;
        lua_pop(L, 1);
        if (gc)
            return luaL_error(L, "setmetatable: __gc is not allowed in hooks (finalizers "
                                 "would run outside the instruction budget)");
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* load(chunk [, chunkname]): text chunks from strings only. */
static int
safe_load(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, "=(load)");
    if (luaL_loadbufferx(L, s, len, name, "t") != LUA_OK) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    return 1;
}

static void
log_args(lua_State *L, int first, unsigned level)
{
    struct hook *h = hook_of(L);
    int n = lua_gettop(L); /* before the buffer's own slot */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = first; i <= n; i++) {
        if (i > first) luaL_addchar(&b, ' ');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    lq_log(level, "hook %s: %s", h->name, lua_tostring(L, -1));
}

static int
l_print(lua_State *L)
{
    log_args(L, 1, LQ_LOG_INFO);
    return 0;
}

/* broker.log(level, ...): level is "error", "warning", "notice", "info" or "debug". */
static int
l_broker_log(lua_State *L)
{
    static const char *const names[] = {"error", "warning", "notice", "info", "debug", NULL};
    static const unsigned levels[] = {LQ_LOG_ERR, LQ_LOG_WARNING, LQ_LOG_NOTICE, LQ_LOG_INFO,
                                      LQ_LOG_DEBUG};
    int i = luaL_checkoption(L, 1, NULL, names);
    if (lq_log_enabled(levels[i])) log_args(L, 2, levels[i]);
    return 0;
}

static int
l_broker_time(lua_State *L)
{
    lua_pushnumber(L, lq_wall_time());
    return 1;
}

static int
l_broker_clock(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
    return 1;
}

/* broker.publish(topic, payload [, {qos=, retain=, properties=}]) */
static int
l_broker_publish(lua_State *L)
{
    struct hook *h = hook_of(L);
    luaL_checkstring(L, 1);
    luaL_checkany(L, 2);
    lua_createtable(L, 0, 5);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "topic");
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "payload");
    if (lua_istable(L, 3)) {
        static const char *const keys[] = {"qos", "retain", "properties"};
        for (int i = 0; i < 3; i++) {
            lua_getfield(L, 3, keys[i]);
            lua_setfield(L, -2, keys[i]);
        }
    } else if (!lua_isnoneornil(L, 3)) {
        return luaL_typeerror(L, 3, "table");
    }
    static char no_topic[1];
    static const struct msg none = {.refs = 1, .topic = no_topic}; /* defaults: QoS 0, ... */
    char err[160];
    struct msg *m = message_from_table(L, lua_gettop(L), &none, err, sizeof(err));
    if (!m) return luaL_error(L, "broker.publish: %s", err);
    h->stats->published++;
    hooks_publish_from(h, m);
    msg_unref(m);
    lua_pushboolean(L, 1);
    return 1;
}

static void
open_libs(lua_State *L)
{
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},       {LUA_STRLIBNAME, luaopen_string},
        {LUA_TABLIBNAME, luaopen_table}, {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8}, {NULL, NULL}};
    for (const luaL_Reg *l = libs; l->func; l++) {
        luaL_requiref(L, l->name, l->func, 1);
        lua_pop(L, 1);
    }
    /* os: time, clock and date only */
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
    lua_createtable(L, 0, 3);
    static const char *const os_keep[] = {"time", "clock", "date"};
    for (int i = 0; i < 3; i++) {
        lua_getfield(L, -2, os_keep[i]);
        lua_setfield(L, -2, os_keep[i]);
    }
    lua_setglobal(L, "os");
    lua_pop(L, 1);
    /* base: no file access, no binary chunks, limits that cannot be caught */
    static const char *const drop[] = {"dofile", "loadfile", "collectgarbage", NULL};
    for (const char *const *d = drop; *d; d++) {
        lua_pushnil(L);
        lua_setglobal(L, *d);
    }
    static const luaL_Reg base[] = {{"pcall", safe_pcall},
                                    {"xpcall", safe_xpcall},
                                    {"load", safe_load},
                                    {"print", l_print},
                                    {NULL, NULL}};
    lua_pushglobaltable(L);
    luaL_setfuncs(L, base, 0);
    lua_getfield(L, -1, "setmetatable");
    lua_pushcclosure(L, safe_setmetatable, 1);
    lua_setfield(L, -2, "setmetatable");
    lua_pop(L, 1);
    /* json: lua-cjson, decode errors are Lua errors (pcall catches them) */
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    lua_setglobal(L, "json");
    static const luaL_Reg broker[] = {{"publish", l_broker_publish},
                                      {"log", l_broker_log},
                                      {"time", l_broker_time},
                                      {"clock", l_broker_clock},
                                      {NULL, NULL}};
    luaL_newlib(L, broker);
    kvlib_open(L);
    httplib_open(L);
    lua_setglobal(L, "broker");
    bounded_open(L); /* string, table, utf8 and json functions that charge their work */
}

static int
ref_function(lua_State *L, int t, const char *field, char *err, size_t errlen, bool *bad)
{
    lua_getfield(L, t, field);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return LUA_NOREF;
    }
    if (!lua_isfunction(L, -1)) {
        snprintf(err, errlen, "'%s' is not a function", field);
        *bad = true;
        lua_pop(L, 1);
        return LUA_NOREF;
    }
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* The topic filters of on_publish: required with it, optional (unused) without. */
static bool
read_topics(struct hook *h, int t, char *err, size_t errlen)
{
    lua_State *L = h->L;
    lua_getfield(L, t, "topics");
    if (lua_isnil(L, -1) && h->ref_on_publish == LUA_NOREF) {
        lua_pop(L, 1);
        return true;
    }
    if (!lua_istable(L, -1) || luaL_len(L, -1) == 0) {
        snprintf(err, errlen, "'topics' must be a non-empty list of topic filters");
        return false;
    }
    size_t n = (size_t)luaL_len(L, -1);
    h->topics = lq_xcalloc(n, sizeof(*h->topics));
    for (size_t i = 0; i < n; i++) {
        lua_geti(L, -1, (lua_Integer)i + 1);
        size_t len;
        const char *f = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (!f || !topic_filter_is_valid(f, len) || strlen(f) != len ||
            topic_parse_shared(f, len, NULL, NULL, NULL, NULL) != 0) {
            snprintf(err, errlen, "topics[%zu] is not a valid topic filter", i + 1);
            return false;
        }
        h->topics[h->ntopics++] = lq_xstrdup(f);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return true;
}

/* What the file returned (on top of the stack): functions, topics, interval. */
static bool
read_spec(struct hook *h, char *err, size_t errlen)
{
    lua_State *L = h->L;
    int t = lua_gettop(L);
    if (!lua_istable(L, t)) {
        snprintf(err, errlen, "the file must return a table, not %s", luaL_typename(L, t));
        return false;
    }
    bool bad = false;
    h->ref_on_publish = ref_function(L, t, "on_publish", err, errlen, &bad);
    h->ref_on_timer = ref_function(L, t, "on_timer", err, errlen, &bad);
    h->ref_on_load = ref_function(L, t, "on_load", err, errlen, &bad);
    h->ref_on_unload = ref_function(L, t, "on_unload", err, errlen, &bad);
    h->ref_on_connect = ref_function(L, t, "on_connect", err, errlen, &bad);
    h->ref_on_subscribe = ref_function(L, t, "on_subscribe", err, errlen, &bad);
    if (bad || !read_topics(h, t, err, errlen)) return false;
    lua_getfield(L, t, "interval");
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1) || lua_tonumber(L, -1) < 0.01 || lua_tonumber(L, -1) > 86400) {
            snprintf(err, errlen, "'interval' must be a number of seconds from 0.01 to 86400");
            return false;
        }
        h->interval = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    if ((h->interval > 0) != (h->ref_on_timer != LUA_NOREF)) {
        snprintf(err, errlen, "'interval' and 'on_timer' go together");
        return false;
    }
    if (h->ref_on_publish == LUA_NOREF && h->ref_on_timer == LUA_NOREF &&
        h->ref_on_connect == LUA_NOREF && h->ref_on_subscribe == LUA_NOREF) {
        snprintf(err, errlen,
                 "none of 'on_publish', 'on_timer', 'on_connect' or "
                 "'on_subscribe' is given");
        return false;
    }
    return true;
}

/* The limits apply from here until limits_disarm: a fresh budget. */
static void
limits_arm(struct hook *h)
{
    h->steps = 0;
    h->abort = ABORT_NONE;
    h->refused.size = 0;
    h->limits_on = true;
    set_check_at(h);
}

static void
limits_disarm(struct hook *h)
{
    h->limits_on = false;
    h->check_at = UINT64_MAX;
}

struct hook *
sandbox_load(struct hooks *hs, const char *name, const char *path, char *err, size_t errlen)
{
    struct hook *h = lq_xcalloc(1, sizeof(*h));
    h->hs = hs;
    h->name = lq_xstrdup(name);
    h->ref_on_publish = h->ref_on_timer = h->ref_on_load = h->ref_on_unload = LUA_NOREF;
    h->ref_on_connect = h->ref_on_subscribe = LUA_NOREF;
    h->mem_limit = hs->conf.memory_limit;
    h->step_limit = hs->conf.instruction_limit;
    h->L = lua_newstate(limited_alloc, h);
    if (!h->L) {
        snprintf(err, errlen, "cannot create a Lua state");
        sandbox_close(h);
        return NULL;
    }
    *(struct hook **)lua_getextraspace(h->L) = h;
    open_libs(h->L);
    message_setup(h);
    lua_sethook(h->L, count_hook, LUA_MASKCOUNT, COUNT_STEP);

    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        sandbox_close(h);
        return NULL;
    }
    luaL_Buffer b;
    luaL_buffinit(h->L, &b);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) luaL_addlstring(&b, chunk, n);
    fclose(f);
    luaL_pushresult(&b);
    size_t len;
    const char *src = lua_tolstring(h->L, -1, &len);
    char chunkname[300];
    snprintf(chunkname, sizeof(chunkname), "@%s", name);
    if (luaL_loadbufferx(h->L, src, len, chunkname, "t") != LUA_OK) {
        snprintf(err, errlen, "%s", lua_tostring(h->L, -1));
        sandbox_close(h);
        return NULL;
    }
    lua_remove(h->L, -2); /* the source */
    limits_arm(h);
    int rc = lua_pcall(h->L, 0, 1, 0);
    limits_disarm(h);
    if (rc != LUA_OK) {
        snprintf(err, errlen, "%s",
                 h->abort == ABORT_MEMORY   ? "memory limit exceeded while loading"
                 : h->abort == ABORT_BUDGET ? "instruction budget exceeded while loading"
                                            : luaL_optstring(h->L, -1, "error while loading"));
        sandbox_close(h);
        return NULL;
    }
    if (!read_spec(h, err, errlen)) {
        sandbox_close(h);
        return NULL;
    }
    lua_settop(h->L, 0);
    h->t0_us = 0;
    return h;
}

void
sandbox_close(struct hook *h)
{
    if (!h) return;
    if (h->timer) event_free(h->timer);
    httplib_close(h);
    if (h->L) lua_close(h->L); /* runs no Lua finalizer: __gc is refused */
    for (size_t i = 0; i < h->ntopics; i++) free(h->topics[i]);
    free(h->topics);
    free(h->name);
    free(h);
}

/* How soon Lua collects, by how full the state is. Small states (most hooks) wait
 * until the heap is 8 times what lived after the last collection: every message
 * leaves garbage (its table), and each collection walks everything alive. Past half
 * the cap, garbage would hit the cap first (and lauxlib's buffers fail without the
 * collect-and-retry the core does): collect sooner and faster there, but never with a
 * pause of 100% or less, which starts the next cycle as soon as one ends: when one
 * step covers a whole cycle, every allocation then walks the whole heap (a hook making
 * 200 000 tables after a call that left its state full took hours). */
static void
set_gc_mode(struct hook *h)
{
    enum gc_mode mode = h->mem < h->mem_limit / 16   ? GC_ROOMY
                        : h->mem <= h->mem_limit / 2 ? GC_NORMAL
                                                     : GC_TIGHT;
    if (mode != h->gc_mode) {
        static const int pause[] = {800, 200, 120}, stepmul[] = {100, 100, 400};
        lua_gc(h->L, LUA_GCINC, pause[mode - GC_ROOMY], stepmul[mode - GC_ROOMY], 0);
        h->gc_mode = mode;
    }
}

/* The time figures: one call in `sample` is timed and counts for `sample` calls; a
 * call that ran long (timed from its LONG_CALL_STEPS-th step on) counts for itself
 * alone, sampled or not, and a sampled one that ran long leaves the sample to the
 * next call. */
static void
account_time(struct hook *h, bool sampled, unsigned sample)
{
    uint64_t took = now_us() - h->t0_us;
    h->t0_us = 0;
    bool long_call = h->steps >= LONG_CALL_STEPS;
    h->stats->total_us += long_call ? took : took * sample;
    if (sampled && !long_call) h->untimed = 0;
    if (took > h->stats->max_us) h->stats->max_us = took;
}

int
sandbox_call(struct hook *h, int nargs, int nres, unsigned sample, const char *what)
{
    lua_State *L = h->L;
    int base = lua_gettop(L) - nargs - 1; /* what was below the function stays */
    h->mem_limit = h->hs->conf.memory_limit;
    h->step_limit = h->hs->conf.instruction_limit;
    set_gc_mode(h);
    h->running = true;
    bool sampled = ++h->untimed >= sample;
    h->t0_us = sampled ? now_us() : 0;
    limits_arm(h);
    int rc = lua_pcall(L, nargs, nres, 0);
    limits_disarm(h);
    h->running = false;
    if (h->t0_us) account_time(h, sampled, sample);
    if (rc == LUA_OK) return LUA_OK;

    const char *kind;
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(no message)";
    char budget_msg[64];
    if (h->abort == ABORT_BUDGET) {
        h->stats->budget_overruns++;
        kind = "instruction budget";
        if (rc == LUA_ERRMEM || !strstr(msg, "instruction budget")) { /* refused allocation */
            snprintf(budget_msg, sizeof(budget_msg), "instruction budget of %llu exceeded",
                     (unsigned long long)h->step_limit);
            msg = budget_msg;
        }
    } else if (h->abort == ABORT_MEMORY || rc == LUA_ERRMEM) {
        h->stats->memory_overruns++;
        kind = "memory limit";
        msg = "memory limit exceeded";
    } else {
        h->stats->errors++;
        kind = "error";
    }
    lq_log_limited(&h->failures_log, LQ_LOG_WARNING, "hook %s: %s: %s: %s", h->name, what, kind,
                   msg);
    lua_settop(L, base);
    h->abort = ABORT_NONE;
    lua_gc(L, LUA_GCCOLLECT); /* limits are off: the collector runs unhindered */
    return rc;
}
