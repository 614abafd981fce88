/* SPDX-License-Identifier: MIT
 *
 * httplib: broker.http.request{method=, url=, headers=, body=, timeout=, on_response=}
 * for hooks. The request starts (or waits for one of the hook's slots) and the call
 * returns at once: delivery never waits for HTTP. on_response(status, headers, body)
 * runs later in the hook's state under the same budgets, or on_response(nil, kind,
 * message) when no response came (kind: "timeout", "connect", "tls", "too_large",
 * "error").
 *
 * Bounds per hook: http_max_concurrent requests in flight, http_max_queue waiting;
 * past both, request returns nil, "busy". A request lives in a Lua userdata (anchored
 * in the registry while it runs), so what it holds counts against the hook's memory
 * cap and an error half-way through making it leaks nothing. A version of the hook
 * that is unloaded takes its requests with it: they are cancelled and no on_response
 * runs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>

#include "hook_int.h"
#include "httpc.h"

#define MAX_HEADERS 64

struct hook_call {
    struct hook *h;
    struct hook_call *prev, *next; /* in h->calls */
    struct httpc_xfer *x;          /* NULL while waiting for a slot */
    int ref;                       /* this userdata's; its user value is on_response */
    bool has_cb;
    uint64_t t0_us;
    /* the request: the userdata holds its strings after the struct */
    struct httpc_request rq;
    struct httpc_header hdrs[];
};

static uint64_t
mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
unlink_call(struct hook_call *c)
{
    struct hook *h = c->h;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->calls = c->next;
    if (c->next) c->next->prev = c->prev;
    if (c->x)
        h->http_running--;
    else
        h->http_queued--;
}

/* ---- the response, into the hook ---- */

/* Run under sandbox_call with the response as a light userdata: the tables are made
 * where the limits apply. */
struct response_args {
    const struct httpc_response *r;
    const struct hook_call *c;
};

static int
respond(lua_State *L)
{
    const struct response_args *a = lua_touserdata(L, 1);
    const struct httpc_response *r = a->r;
    const struct hook_call *c = a->c;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
    lua_getiuservalue(L, -1, 1);
    if (r->result != HTTPC_OK) {
        lua_pushnil(L);
        lua_pushstring(L, httpc_result_name(r->result));
        lua_pushstring(L, r->error ? r->error : "");
        lua_call(L, 3, 0);
        return 0;
    }
    lua_pushinteger(L, r->status);
    lua_createtable(L, 0, (int)r->nheaders);
    for (size_t i = 0; i < r->nheaders; i++) {
        const struct httpc_header *hd = &r->headers[i];
        if (lua_getfield(L, -1, hd->name) == LUA_TSTRING) { /* repeated: joined */
            lua_pushliteral(L, ", ");
            lua_pushstring(L, hd->value);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushstring(L, hd->value);
        }
        lua_setfield(L, -2, hd->name);
    }
    sandbox_charge(L, r->body_len / 64);
    lua_pushlstring(L, r->body ? r->body : "", r->body_len);
    lua_call(L, 3, 0);
    return 0;
}

static void
count_result(struct hook_stats *st, enum httpc_result r)
{
    switch (r) {
    case HTTPC_OK: st->http_ok++; break;
    case HTTPC_TIMEOUT: st->http_timeouts++; break;
    case HTTPC_CONNECT: st->http_connect_errors++; break;
    case HTTPC_TLS: st->http_tls_errors++; break;
    case HTTPC_TOO_LARGE: st->http_too_large++; break;
    case HTTPC_ERROR: st->http_other_errors++; break;
    }
}

/* c ended (unlinked already): count it, run on_response, let it go (c is not to be
 * touched after: the collector owns it). */
static void
finish(struct hook_call *c, const struct httpc_response *r)
{
    struct hook *h = c->h;
    count_result(h->stats, r->result);
    h->stats->http_time_us += mono_us() - c->t0_us;
    if (c->has_cb) {
        h->stats->response_calls++;
        struct response_args a = {r, c};
        lua_pushcfunction(h->L, respond);
        lua_pushlightuserdata(h->L, &a);
        if (sandbox_call(h, 1, 0, 1, "on_response") == LUA_OK) lua_settop(h->L, 0);
    }
    luaL_unref(h->L, LUA_REGISTRYINDEX, c->ref);
}

static void on_done(void *ud, const struct httpc_response *r);

/* Start waiting requests while h has free slots. One that cannot start (the broker's
 * transfers are all taken, a setting changed) ends with an error. */
static void
pump(struct hook *h)
{
    struct httpc *http = h->hs->host.http;
    while (h->http_queued && h->http_running < h->hs->conf.http_max_concurrent) {
        struct hook_call *c = h->calls;
        while (c->x) c = c->next; /* the oldest waiting one: calls are added at the end */
        char err[160];
        c->x = httpc_start(http, &c->rq, on_done, c, err, sizeof(err));
        if (c->x) {
            h->http_queued--;
            h->http_running++;
            continue;
        }
        unlink_call(c);
        struct httpc_response r = {.result = HTTPC_ERROR, .error = err};
        finish(c, &r);
    }
}

static void
on_done(void *ud, const struct httpc_response *r)
{
    struct hook_call *c = ud;
    struct hook *h = c->h;
    unlink_call(c);
    finish(c, r);
    pump(h);
}

void
httplib_close(struct hook *h)
{
    while (h->calls) {
        struct hook_call *c = h->calls;
        if (c->x) httpc_cancel(c->x);
        unlink_call(c); /* its memory goes with the state */
    }
}

/* ---- broker.http.request ---- */

static const char *
opt_string(lua_State *L, int t, const char *field, size_t *len)
{
    int type = lua_getfield(L, t, field);
    if (type == LUA_TNIL) return NULL;
    if (type != LUA_TSTRING) luaL_error(L, "broker.http.request: '%s' must be a string", field);
    return lua_tolstring(L, -1, len);
}

/* Copy the request of table t into a new userdata, pushed. Every check comes first:
 * after the allocation nothing raises. */
static struct hook_call *
make_call(lua_State *L, int t)
{
    size_t len[3] = {0, 0, 0};
    const char *method = opt_string(L, t, "method", &len[0]);
    const char *url = opt_string(L, t, "url", &len[1]);
    const char *body = opt_string(L, t, "body", &len[2]);
    if (!url) luaL_error(L, "broker.http.request: 'url' is required");
    size_t need = len[0] + len[1] + len[2] + 3, n = 0;
    int hidx = lua_gettop(L) + 1;
    int type = lua_getfield(L, t, "headers");
    if (type != LUA_TNIL && type != LUA_TTABLE)
        luaL_error(L, "broker.http.request: 'headers' must be a table of name = value");
    if (type == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, hidx)) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "broker.http.request: headers must be strings: name = value");
            if (++n > MAX_HEADERS)
                luaL_error(L, "broker.http.request: more than %d headers", MAX_HEADERS);
            need += lua_rawlen(L, -2) + lua_rawlen(L, -1) + 2;
            lua_pop(L, 1);
        }
    }
    size_t size = sizeof(struct hook_call) + n * sizeof(struct httpc_header) + need;
    struct hook_call *c = lua_newuserdatauv(L, size, 1);
    memset(c, 0, size);
    char *p = (char *)&c->hdrs[n];
#define COPY(dst, s, l)      \
    do {                     \
        memcpy(p, (s), (l)); \
        p[(l)] = '\0';       \
        (dst) = p;           \
        p += (l) + 1;        \
    } while (0)
    if (method) COPY(c->rq.method, method, len[0]);
    COPY(c->rq.url, url, len[1]);
    if (body) {
        char *b;
        COPY(b, body, len[2]);
        c->rq.body = b;
        c->rq.body_len = len[2];
    }
    if (n) {
        size_t i = 0;
        lua_pushnil(L);
        while (lua_next(L, hidx)) { /* same order: the table did not change */
            size_t nl, vl;
            const char *name = lua_tolstring(L, -2, &nl), *value = lua_tolstring(L, -1, &vl);
            COPY(c->hdrs[i].name, name, nl);
            COPY(c->hdrs[i].value, value, vl);
            i++;
            lua_pop(L, 1);
        }
        c->rq.headers = c->hdrs;
        c->rq.nheaders = n;
    }
#undef COPY
    return c;
}

static int
refuse(lua_State *L, const char *why)
{
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
}

static int
l_request(lua_State *L)
{
    struct hook *h = hook_of(L);
    struct httpc *http = h->hs->host.http;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    int cbtype = lua_getfield(L, 1, "on_response");
    if (cbtype != LUA_TNIL && cbtype != LUA_TFUNCTION)
        return luaL_error(L, "broker.http.request: 'on_response' must be a function");
    uint32_t timeout_ms = 0;
    if (lua_getfield(L, 1, "timeout") != LUA_TNIL) {
        lua_Number s = luaL_checknumber(L, -1);
        if (!(s > 0 && s <= 86400)) return luaL_error(L, "broker.http.request: bad timeout");
        timeout_ms = (uint32_t)ceil(s * 1000);
    }
    lua_settop(L, 2); /* the table, on_response */
    struct hook_call *c = make_call(L, 1);
    int ud = lua_gettop(L);
    c->rq.timeout_ms = timeout_ms;
    c->h = h;
    char err[200];
    const char *why = NULL;
    if (!http)
        why = "no HTTP client here";
    else if (!httpc_allowed(http, c->rq.url, err, sizeof(err)))
        why = err;
    if (why) {
        h->stats->http_denied++;
        return refuse(L, why);
    }
    const struct hooks_conf *hc = &h->hs->conf;
    if (h->http_running + h->http_queued >= hc->http_max_concurrent + hc->http_max_queue) {
        h->stats->http_busy++;
        return refuse(L, "busy");
    }
    c->has_cb = lua_isfunction(L, 2);
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, ud, 1);
    lua_pushvalue(L, ud);
    c->ref = luaL_ref(L, LUA_REGISTRYINDEX); /* the last thing that may raise */
    c->t0_us = mono_us();
    if (h->http_running < hc->http_max_concurrent) {
        c->x = httpc_start(http, &c->rq, on_done, c, err, sizeof(err));
        if (!c->x) {
            if (strcmp(err, "busy") == 0)
                h->stats->http_busy++;
            else
                h->stats->http_denied++;
            luaL_unref(L, LUA_REGISTRYINDEX, c->ref);
            return refuse(L, err);
        }
    }
    /* linked at the end: pump starts the oldest waiting one first */
    struct hook_call **at = &h->calls, *prev = NULL;
    while (*at) {
        prev = *at;
        at = &(*at)->next;
    }
    c->prev = prev;
    *at = c;
    if (c->x)
        h->http_running++;
    else
        h->http_queued++;
    h->stats->http_requests++;
    lua_pushboolean(L, 1);
    return 1;
}

void
httplib_open(lua_State *L)
{
    static const luaL_Reg fns[] = {{"request", l_request}, {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "http");
}
