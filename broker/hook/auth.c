/* SPDX-License-Identifier: MIT
 *
 * auth: on_connect and on_subscribe, the hooks' say in who may connect and what they
 * may subscribe to. Every hook defining the function is asked in file-name order; the
 * first definite answer (true, false, a QoS) wins and the hooks after it are not
 * asked. An authorisation hook fails closed: a runtime error, a budget or memory
 * overrun, or a return value that means none of these, refuses.
 *
 * The client table is made inside the hook's protected call, under its limits: a
 * hook at its memory cap fails there like anywhere else in its call, not in C. */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "hook_int.h"
#include "lq.h"
#include "mqtt.h"

/* MQTT 5's reason codes a CONNACK or a SUBACK may refuse with (3.2.2.2, 3.9.3). */
static bool
is_connack_failure(lua_Integer c)
{
    switch (c) {
    case MQTT_RC_UNSPECIFIED_ERROR:
    case MQTT_RC_MALFORMED_PACKET:
    case MQTT_RC_PROTOCOL_ERROR:
    case MQTT_RC_IMPLEMENTATION_SPECIFIC:
    case MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION:
    case MQTT_RC_CLIENT_ID_NOT_VALID:
    case MQTT_RC_BAD_USERNAME_OR_PASSWORD:
    case MQTT_RC_NOT_AUTHORIZED:
    case MQTT_RC_SERVER_UNAVAILABLE:
    case MQTT_RC_SERVER_BUSY:
    case MQTT_RC_BANNED:
    case MQTT_RC_BAD_AUTHENTICATION_METHOD:
    case MQTT_RC_TOPIC_NAME_INVALID:
    case MQTT_RC_PACKET_TOO_LARGE:
    case MQTT_RC_QUOTA_EXCEEDED:
    case MQTT_RC_PAYLOAD_FORMAT_INVALID:
    case MQTT_RC_RETAIN_NOT_SUPPORTED:
    case MQTT_RC_QOS_NOT_SUPPORTED:
    case MQTT_RC_USE_ANOTHER_SERVER:
    case MQTT_RC_SERVER_MOVED:
    case MQTT_RC_CONNECTION_RATE_EXCEEDED: return true;
    default: return false;
    }
}

static bool
is_suback_failure(lua_Integer c)
{
    switch (c) {
    case MQTT_RC_UNSPECIFIED_ERROR:
    case MQTT_RC_IMPLEMENTATION_SPECIFIC:
    case MQTT_RC_NOT_AUTHORIZED:
    case MQTT_RC_TOPIC_FILTER_INVALID:
    case MQTT_RC_PACKET_ID_IN_USE:
    case MQTT_RC_QUOTA_EXCEEDED:
    case MQTT_RC_SHARED_SUBS_NOT_SUPPORTED:
    case MQTT_RC_SUBSCRIPTION_IDS_NOT_SUPPORTED:
    case MQTT_RC_WILDCARD_SUBS_NOT_SUPPORTED: return true;
    default: return false;
    }
}

/* One question to the hooks, and how each of them is asked it. */
struct question {
    const char *what; /* "on_connect", for the log */
    bool subscribe;
    const struct hook_connect *ci;
    const struct hook_client *cl;
    const char *filter;
    size_t len;
    uint8_t qos;
};

static int
ref_of(const struct hook *h, const struct question *q)
{
    return q->subscribe ? h->ref_on_subscribe : h->ref_on_connect;
}

/* Run under sandbox_call with the question as a light userdata: its arguments are
 * made where the limits apply. */
static int
ask(lua_State *L)
{
    const struct question *q = lua_touserdata(L, 1);
    struct hook *h = hook_of(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref_of(h, q));
    if (!q->subscribe) {
        message_push_connect(L, q->ci);
        lua_call(L, 1, 2);
        return 2;
    }
    message_push_client(L, q->cl);
    lua_pushlstring(L, q->filter, q->len);
    lua_pushinteger(L, q->qos);
    lua_call(L, 3, 2);
    return 2;
}

static void
decide(struct hook_auth_result *r, const struct hook *h, enum hook_auth verdict, uint8_t code)
{
    r->verdict = verdict;
    r->code = code;
    snprintf(r->hook, sizeof(r->hook), "%s", h->name);
}

/* The code of `false, code` at idx: 0x87 when it is absent or no failure code. */
static uint8_t
refusal_code(struct hook *h, const struct question *q, int idx)
{
    lua_State *L = h->L;
    if (lua_isnil(L, idx)) return MQTT_RC_NOT_AUTHORIZED;
    const char *kind = q->subscribe ? "SUBACK" : "CONNACK";
    if (lua_type(L, idx) != LUA_TNUMBER) {
        lq_log_limited(&h->failures_log, LQ_LOG_WARNING,
                       "hook %s: %s returned false and a %s, not a %s failure code: refused "
                       "with 0x87 (not authorised)",
                       h->name, q->what, luaL_typename(L, idx), kind);
        return MQTT_RC_NOT_AUTHORIZED;
    }
    int ok;
    lua_Integer c = lua_tointegerx(L, idx, &ok);
    if (ok && (q->subscribe ? is_suback_failure(c) : is_connack_failure(c))) return (uint8_t)c;
    char shown[32];
    if (ok)
        snprintf(shown, sizeof(shown), "%s0x%llx", c < 0 ? "-" : "",
                 c < 0 ? 0 - (unsigned long long)c : (unsigned long long)c);
    else
        snprintf(shown, sizeof(shown), "%g", (double)lua_tonumber(L, idx));
    lq_log_limited(&h->failures_log, LQ_LOG_WARNING,
                   "hook %s: %s returned false, %s: not a %s failure code: refused with 0x87 "
                   "(not authorised)",
                   h->name, q->what, shown, kind);
    return MQTT_RC_NOT_AUTHORIZED;
}

/* The answer at v (and the code at v + 1) into r. False: not an answer. */
static bool
read_answer(struct hook *h, const struct question *q, int v, struct hook_auth_result *r)
{
    lua_State *L = h->L;
    int ok;
    lua_Integer qos;
    switch (lua_type(L, v)) {
    case LUA_TNIL: return true; /* no opinion */
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, v))
            decide(r, h, HOOK_AUTH_ALLOW, 0);
        else
            decide(r, h, HOOK_AUTH_DENY, refusal_code(h, q, v + 1));
        return true;
    case LUA_TNUMBER: /* on_subscribe: the QoS to grant, at most the one asked */
        qos = lua_tointegerx(L, v, &ok);
        if (!q->subscribe || !ok || qos < 0 || qos > 2) return false;
        decide(r, h, HOOK_AUTH_ALLOW, 0);
        r->qos = (uint8_t)qos < q->qos ? (uint8_t)qos : q->qos;
        return true;
    default: return false;
    }
}

/* Hook h's answer to q into r (left NONE when it has no opinion). */
static void
ask_one(struct hook *h, const struct question *q, struct hook_auth_result *r)
{
    lua_State *L = h->L;
    if (q->subscribe)
        h->stats->subscribe_calls++;
    else
        h->stats->connect_calls++;
    bool answered;
    if (h->running) { /* asked from inside its own call: cannot be, and cannot answer */
        h->stats->errors++;
        lq_log_limited(&h->failures_log, LQ_LOG_WARNING, "hook %s: %s while it runs: refused",
                       h->name, q->what);
        answered = false;
    } else {
        int top = lua_gettop(L);
        lua_pushcfunction(L, ask);
        lua_pushlightuserdata(L, (void *)(uintptr_t)q);
        /* every call timed: there are few, and a slow one delays a client */
        char what[48];
        snprintf(what, sizeof(what), "%s (%s refused)", q->what,
                 q->subscribe ? "subscription" : "client");
        if (sandbox_call(h, 1, 2, 1, what) == LUA_OK) { /* else logged and counted */
            answered = read_answer(h, q, top + 1, r);
            if (!answered) {
                h->stats->errors++;
                lq_log_limited(&h->failures_log, LQ_LOG_WARNING,
                               "hook %s: %s returned a %s, not true, false%s or nil: refused",
                               h->name, q->what, luaL_typename(L, top + 1),
                               q->subscribe ? ", a QoS 0..2" : "");
            }
        } else {
            answered = false;
        }
        lua_settop(L, top);
    }
    if (!answered) { /* fail closed */
        decide(r, h, HOOK_AUTH_DENY, MQTT_RC_NOT_AUTHORIZED);
        r->failed = true;
    }
    if (r->verdict == HOOK_AUTH_ALLOW) {
        if (q->subscribe)
            h->stats->subscribe_allowed++;
        else
            h->stats->connect_allowed++;
    } else if (r->verdict == HOOK_AUTH_DENY) {
        if (q->subscribe)
            h->stats->subscribe_refused++;
        else
            h->stats->connect_refused++;
    }
}

static void
ask_all(struct hooks *hs, const struct question *q, struct hook_auth_result *r)
{
    r->verdict = HOOK_AUTH_NONE;
    r->code = 0;
    r->qos = q->qos;
    r->failed = false;
    r->hook[0] = '\0';
    if (!hs) return;
    for (size_t i = 0; i < hs->nslots && r->verdict == HOOK_AUTH_NONE; i++) {
        struct hook *h = hs->slots[i]->hook;
        if (h && ref_of(h, q) != LUA_NOREF) ask_one(h, q, r);
    }
}

bool
hooks_have_on_connect(const struct hooks *hs)
{
    return hs && hs->n_on_connect > 0;
}

bool
hooks_have_on_subscribe(const struct hooks *hs)
{
    return hs && hs->n_on_subscribe > 0;
}

void
hooks_on_connect(struct hooks *hs, const struct hook_connect *ci, struct hook_auth_result *r)
{
    struct question q = {.what = "on_connect", .ci = ci};
    ask_all(hs, &q, r);
}

void
hooks_on_subscribe(struct hooks *hs, const struct hook_client *cl, const char *filter, size_t len,
                   uint8_t qos, struct hook_auth_result *r)
{
    struct question q = {.what = "on_subscribe",
                         .subscribe = true,
                         .cl = cl,
                         .filter = filter,
                         .len = len,
                         .qos = qos};
    ask_all(hs, &q, r);
}
