/* SPDX-License-Identifier: MIT
 *
 * message: a struct msg as the Lua table a hook sees, and a Lua table back into a
 * struct msg, checked as strictly as a PUBLISH from a client would be (valid topic
 * name, UTF-8 strings, QoS 0..2). The forwardable properties travel as the table
 * `properties` with `user` an ordered list of {name, value} pairs. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "hook_int.h"
#include "lq.h"
#include "mqtt.h"
#include "msg.h"
#include "tls.h"
#include "topic.h"

#define FORWARDABLE                                                                \
    (MQTT_PBIT(MQTT_PROP_PAYLOAD_FORMAT) | MQTT_PBIT(MQTT_PROP_CONTENT_TYPE) |     \
     MQTT_PBIT(MQTT_PROP_RESPONSE_TOPIC) | MQTT_PBIT(MQTT_PROP_CORRELATION_DATA) | \
     MQTT_PBIT(MQTT_PROP_USER_PROPERTY))

static void
set_bytes(lua_State *L, const char *k, struct lq_bytes b)
{
    lua_pushlstring(L, (const char *)b.p, b.len);
    lua_setfield(L, -2, k);
}

static void
set_str(lua_State *L, const char *k, const char *v)
{
    if (!v) return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static void
push_properties(lua_State *L, const struct msg *m)
{
    struct mqtt_props p;
    if (mqtt_decode_props(m->props, m->props_len, FORWARDABLE, &p)) memset(&p, 0, sizeof(p));
    lua_createtable(L, 0, 6);
    if (p.present & MQTT_PBIT(MQTT_PROP_CONTENT_TYPE)) set_bytes(L, "content_type", p.content_type);
    if (p.present & MQTT_PBIT(MQTT_PROP_RESPONSE_TOPIC))
        set_bytes(L, "response_topic", p.response_topic);
    if (p.present & MQTT_PBIT(MQTT_PROP_CORRELATION_DATA))
        set_bytes(L, "correlation_data", p.correlation_data);
    if (p.present & MQTT_PBIT(MQTT_PROP_PAYLOAD_FORMAT)) {
        lua_pushinteger(L, p.payload_format);
        lua_setfield(L, -2, "payload_format");
    }
    if (m->has_expiry) {
        lua_pushinteger(L, msg_expiry_left(m, lq_now_ms()));
        lua_setfield(L, -2, "message_expiry");
    }
    lua_createtable(L, p.user_count < INT_MAX ? (int)p.user_count : 0, 0);
    size_t pos = 0;
    struct lq_bytes k, v;
    for (lua_Integer i = 1; mqtt_props_next_user(p.user, &pos, &k, &v, NULL); i++) {
        lua_createtable(L, 2, 0);
        lua_pushlstring(L, (const char *)k.p, k.len);
        lua_rawseti(L, -2, 1);
        lua_pushlstring(L, (const char *)v.p, v.len);
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, -2, i);
    }
    lua_setfield(L, -2, "user");
}

static void
set_lstr(lua_State *L, const char *k, const void *v, size_t len)
{
    lua_pushlstring(L, (const char *)v, len);
    lua_setfield(L, -2, k);
}

void
message_push_connect(lua_State *L, const struct hook_connect *c)
{
    lua_createtable(L, 0, 8);
    if (c->id) set_lstr(L, "id", c->id, c->id_len);
    if (c->has_username) set_lstr(L, "username", c->username ? c->username : "", c->username_len);
    if (c->has_password) set_lstr(L, "password", c->password ? c->password : "", c->password_len);
    set_str(L, "address", c->address);
    set_str(L, "protocol", c->version == 5 ? "5.0" : c->version == 4 ? "3.1.1" : "3.1");
    set_str(L, "listener", c->listener);
    if (c->cert) {
        const struct tls_identity *id = c->cert;
        lua_createtable(L, 0, 4);
        set_str(L, "cn", id->cn);
        set_str(L, "subject", id->subject);
        set_str(L, "fingerprint", id->fingerprint);
        lua_createtable(L, (int)id->nsan, 0);
        for (size_t i = 0; i < id->nsan; i++) {
            lua_pushstring(L, id->san[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_setfield(L, -2, "san");
        lua_setfield(L, -2, "cert");
    }
}

/* The same fields, less the password: one way of making them, one representation. */
void
message_push_client(lua_State *L, const struct hook_client *cl)
{
    if (!cl) {
        lua_createtable(L, 0, 0); /* broker.publish of another hook: no client */
        return;
    }
    struct hook_connect c = {.id = cl->id,
                             .id_len = cl->id ? strlen(cl->id) : 0,
                             .username = cl->username,
                             .username_len = cl->username ? strlen(cl->username) : 0,
                             .has_username = cl->username != NULL,
                             .address = cl->address,
                             .version = cl->version,
                             .cert = cl->cert,
                             .listener = cl->listener};
    message_push_connect(L, &c);
}

/* The table a hook gets is empty: each field is made on its first read during the
 * call (most hooks read one or two, a pass-through none) and then stays in the table.
 * After the call the message may be gone, so reading a field that was never read is
 * an error, not a nil the script would take for an absent field. */
enum field { F_TOPIC, F_PAYLOAD, F_QOS, F_RETAIN, F_PROPERTIES, F_CLIENT, F_NONE };
static const char *const names[] = {"topic", "payload", "qos", "retain", "properties", "client"};

static enum field
field_of(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TSTRING) return F_NONE;
    const char *k = lua_tostring(L, idx);
    for (int f = 0; f < F_NONE; f++)
        if (strcmp(k, names[f]) == 0) return (enum field)f;
    return F_NONE;
}

static void
push_field(struct hook *h, enum field f)
{
    lua_State *L = h->L;
    const struct msg *m = h->msg;
    switch (f) {
    case F_TOPIC:
        lua_pushlstring(L, m->topic, m->topic_len);
        h->pushed_topic = lua_tostring(L, -1);
        break;
    case F_PAYLOAD:
        lua_pushlstring(L, (const char *)m->payload, m->payload_len);
        h->pushed_payload = lua_tostring(L, -1);
        break;
    case F_QOS: lua_pushinteger(L, m->qos); break;
    case F_RETAIN: lua_pushboolean(L, m->retain); break;
    case F_PROPERTIES: push_properties(L, m); break;
    case F_CLIENT: message_push_client(L, h->client); break;
    case F_NONE: lua_pushnil(L); break;
    }
}

/* Is the table at idx the one of the call under way? A table kept from an earlier
 * call has the same metatable but its message may be gone. */
static bool
is_live(struct hook *h, int idx)
{
    return h->msg && lua_topointer(h->L, idx) == h->msg_table;
}

static int
stale(lua_State *L)
{
    return luaL_error(L,
                      "message field '%s' was not read during on_publish: a message's fields "
                      "exist only while on_publish runs (read what you keep there)",
                      lua_tostring(L, 2));
}

static int
msg_index(lua_State *L)
{
    struct hook *h = hook_of(L);
    enum field f = field_of(L, 2);
    if (f == F_NONE) return 0;
    if (!is_live(h, 1)) return stale(L);
    push_field(h, f);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1); /* made once per call */
    return 1;
}

/* pairs(msg) sees every field, read or not */
static int
msg_pairs(lua_State *L)
{
    if (is_live(hook_of(L), 1))
        for (int f = 0; f < F_NONE; f++) {
            lua_getfield(L, 1, names[f]); /* fills it in */
            lua_pop(L, 1);
        }
    lua_getglobal(L, "next");
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

void
message_setup(struct hook *h)
{
    lua_State *L = h->L;
    lua_createtable(L, 0, 3);
    lua_pushcfunction(L, msg_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, msg_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushboolean(L, 0); /* getmetatable(msg) is false: a __gc added here would be a */
    lua_setfield(L, -2, "__metatable"); /* finalizer on every message table */
    /* the field names, kept alive: pushing one later (hooks.c reads "topic" outside a
     * protected call) finds the interned string and allocates nothing */
    for (int f = 0; f < F_NONE; f++) {
        lua_pushstring(L, names[f]);
        lua_rawseti(L, -2, f + 1);
    }
    h->ref_msg_meta = luaL_ref(L, LUA_REGISTRYINDEX);
}

static int
new_msg_table(lua_State *L)
{
    lua_createtable(L, 0, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, hook_of(L)->ref_msg_meta);
    lua_setmetatable(L, -2);
    return 1;
}

bool
message_push(struct hook *h, const struct msg *m, const struct hook_client *cl)
{
    lua_State *L = h->L;
    /* protected: out of memory here is an error, not a panic (issue 12.22); under the
     * cap configured now, or a failure here would keep an old one forever */
    h->mem_limit = h->hs->conf.memory_limit;
    lua_pushcfunction(L, new_msg_table);
    if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
        lua_pop(L, 1);
        return false;
    }
    h->msg = m;
    h->client = cl;
    h->msg_table = lua_topointer(L, -1);
    h->pushed_topic = h->pushed_payload = NULL;
    return true;
}

void
message_seal(struct hook *h)
{
    h->msg = NULL;
    h->client = NULL;
    h->msg_table = NULL;
}

bool
message_unchanged(struct hook *h, const struct msg *m, int ret, int pushed)
{
    lua_State *L = h->L;
    if (!lua_rawequal(L, ret, pushed)) return false;
    bool same = true;
    lua_pushnil(L);
    while (same && lua_next(L, ret)) { /* only the fields the hook read or set */
        switch (field_of(L, -2)) {
        case F_TOPIC:
            same = lua_type(L, -1) == LUA_TSTRING && lua_tostring(L, -1) == h->pushed_topic;
            break;
        case F_PAYLOAD:
            same = lua_type(L, -1) == LUA_TSTRING && lua_tostring(L, -1) == h->pushed_payload;
            break;
        case F_QOS: same = lua_isinteger(L, -1) && lua_tointeger(L, -1) == m->qos; break;
        case F_RETAIN: same = lua_isboolean(L, -1) && lua_toboolean(L, -1) == m->retain; break;
        case F_PROPERTIES: same = false; break; /* may have been changed in place */
        case F_CLIENT:
        case F_NONE: break; /* not part of what is routed */
        }
        lua_pop(L, 1);
    }
    if (!same) lua_pop(L, 1); /* the key lua_next left */
    return same;
}

/* ---- back from Lua ---- */

/* Tables are read raw: a message table's metatable must not run after its call. */
static int
rawfield(lua_State *L, int idx, const char *k)
{
    idx = lua_absindex(L, idx);
    lua_pushstring(L, k);
    return lua_rawget(L, idx);
}

struct builder {
    lua_State *L;
    char *err;
    size_t errlen;
    uint8_t *user; /* encoded 0x26 entries */
    size_t user_len, user_cap;
};

__attribute__((format(printf, 2, 3))) static bool
fail(struct builder *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->err, b->errlen, fmt, ap);
    va_end(ap);
    return false;
}

/* A UTF-8 string field of the table at idx, or absent (false in *present). */
static bool
utf8_field(struct builder *b, int idx, const char *k, struct lq_bytes *out, bool *present)
{
    rawfield(b->L, idx, k);
    *present = !lua_isnil(b->L, -1);
    if (*present) {
        if (lua_type(b->L, -1) != LUA_TSTRING) return fail(b, "'%s' is not a string", k);
        size_t len;
        const char *s = lua_tolstring(b->L, -1, &len);
        if (len > 65535 || !mqtt_utf8_is_valid((const uint8_t *)s, len))
            return fail(b, "'%s' is not a valid UTF-8 string", k);
        *out = (struct lq_bytes){(const uint8_t *)s, len};
    }
    lua_pop(b->L, 1); /* the string stays alive: the table holds it */
    return true;
}

static void
user_put(struct builder *b, const void *p, size_t n)
{
    if (b->user_len + n > b->user_cap) {
        b->user_cap = (b->user_len + n) * 2;
        b->user = lq_xrealloc(b->user, b->user_cap);
    }
    memcpy(b->user + b->user_len, p, n);
    b->user_len += n;
}

static bool
user_list(struct builder *b, int idx, struct mqtt_props *p)
{
    lua_State *L = b->L;
    rawfield(L, idx, "user");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return true;
    }
    if (!lua_istable(L, -1)) return fail(b, "'%s' must be a list of {name, value}", "user");
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        if (!lua_istable(L, -1)) return fail(b, "'%s' must be a list of {name, value}", "user");
        for (int j = 1; j <= 2; j++) {
            lua_rawgeti(L, -1, j);
            size_t len;
            const char *s = lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER
                                ? lua_tolstring(L, -1, &len)
                                : NULL;
            if (!s || len > 65535 || !mqtt_utf8_is_valid((const uint8_t *)s, len))
                return fail(b, "'%s' entries must be two UTF-8 strings", "user");
            uint8_t hdr[3] = {MQTT_PROP_USER_PROPERTY, (uint8_t)(len >> 8), (uint8_t)len};
            user_put(b, j == 1 ? hdr : hdr + 1, j == 1 ? 3 : 2);
            user_put(b, s, len);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        p->user_count++;
    }
    lua_pop(L, 1);
    if (p->user_count) {
        p->present |= MQTT_PBIT(MQTT_PROP_USER_PROPERTY);
        p->user = (struct lq_bytes){b->user, b->user_len};
    }
    return true;
}

static bool
properties(struct builder *b, int idx, struct mqtt_props *p, bool *has_expiry, uint32_t *expiry)
{
    lua_State *L = b->L;
    bool present;
    if (!utf8_field(b, idx, "content_type", &p->content_type, &present)) return false;
    if (present) p->present |= MQTT_PBIT(MQTT_PROP_CONTENT_TYPE);
    if (!utf8_field(b, idx, "response_topic", &p->response_topic, &present)) return false;
    if (present) {
        if (!topic_name_is_valid((const char *)p->response_topic.p, p->response_topic.len))
            return fail(b, "'%s' is not a valid topic name", "response_topic");
        p->present |= MQTT_PBIT(MQTT_PROP_RESPONSE_TOPIC);
    }
    rawfield(L, idx, "correlation_data");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            return fail(b, "'%s' is not a string", "correlation_data");
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        if (len > 65535) return fail(b, "'%s' is too long", "correlation_data");
        p->correlation_data = (struct lq_bytes){(const uint8_t *)s, len};
        p->present |= MQTT_PBIT(MQTT_PROP_CORRELATION_DATA);
    }
    lua_pop(L, 1);
    rawfield(L, idx, "payload_format");
    if (!lua_isnil(L, -1)) {
        int ok;
        lua_Integer v = lua_tointegerx(L, -1, &ok);
        if (!ok || v < 0 || v > 1) return fail(b, "'%s' must be 0 or 1", "payload_format");
        p->payload_format = (uint8_t)v;
        p->present |= MQTT_PBIT(MQTT_PROP_PAYLOAD_FORMAT);
    }
    lua_pop(L, 1);
    rawfield(L, idx, "message_expiry");
    if (!lua_isnil(L, -1)) {
        int ok;
        lua_Integer v = lua_tointegerx(L, -1, &ok);
        if (!ok || v < 0 || v > UINT32_MAX)
            return fail(b, "'%s' must be a number of seconds", "message_expiry");
        *has_expiry = true;
        *expiry = (uint32_t)v;
    }
    lua_pop(L, 1);
    return user_list(b, idx, p);
}

static struct msg *
from_table(struct builder *bp, int idx, const struct msg *def)
{
    lua_State *L = bp->L;
    struct builder *b = bp; /* the caller frees b->user, even after a Lua error */
    idx = lua_absindex(L, idx);
    struct msg *m = NULL;
    if (!lua_istable(L, idx)) {
        fail(b, "%s", "a message must be a table");
        return NULL;
    }
    int top = lua_gettop(L);
    struct msg_init in = {.topic = def->topic,
                          .topic_len = def->topic_len,
                          .payload = def->payload,
                          .payload_len = def->payload_len,
                          .props = def->props,
                          .props_len = def->props_len,
                          .qos = def->qos,
                          .retain = def->retain,
                          .has_expiry = def->has_expiry,
                          .expiry_interval = msg_expiry_left(def, lq_now_ms()),
                          .origin = def->origin};
    rawfield(L, idx, "topic");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING) {
            fail(b, "%s", "'topic' is not a string");
            goto out;
        }
        in.topic = lua_tolstring(L, -1, &in.topic_len);
    }
    if (in.topic_len > 65535 || !topic_name_is_valid(in.topic, in.topic_len) ||
        !mqtt_utf8_is_valid((const uint8_t *)in.topic, in.topic_len)) {
        fail(b, "'%s' is not a valid topic name", "topic");
        goto out;
    }
    if (topic_is_sys(in.topic, in.topic_len)) {
        fail(b, "'%s' is under $SYS/, which only the broker publishes", "topic");
        goto out;
    }
    if (topic_is_too_deep(in.topic, in.topic_len, hook_of(L)->hs->conf.max_topic_levels)) {
        fail(b, "'%s' has more levels than max_topic_levels", "topic");
        goto out;
    }
    rawfield(L, idx, "payload");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) {
            fail(b, "%s", "'payload' is not a string");
            goto out;
        }
        const char *s = lua_tolstring(L, -1, &in.payload_len);
        in.payload = (const uint8_t *)s;
    }
    rawfield(L, idx, "qos");
    if (!lua_isnil(L, -1)) {
        int ok;
        lua_Integer q = lua_tointegerx(L, -1, &ok);
        if (!ok || q < 0 || q > 2) {
            fail(b, "%s", "'qos' must be 0, 1 or 2");
            goto out;
        }
        in.qos = (uint8_t)q;
    }
    rawfield(L, idx, "retain");
    if (!lua_isnil(L, -1)) in.retain = lua_toboolean(L, -1);
    rawfield(L, idx, "properties");
    uint8_t *blob = NULL;
    if (!lua_isnil(L, -1)) {
        if (!lua_istable(L, -1)) {
            fail(b, "%s", "'properties' is not a table");
            goto out;
        }
        struct mqtt_props p;
        memset(&p, 0, sizeof(p));
        in.has_expiry = false;
        if (!properties(b, lua_gettop(L), &p, &in.has_expiry, &in.expiry_interval)) goto out;
        in.props_len = mqtt_encode_props_raw(&p, NULL, 0);
        blob = lq_xmalloc(in.props_len ? in.props_len : 1);
        mqtt_encode_props_raw(&p, blob, in.props_len);
        in.props = blob;
    }
    /* as a QoS 1/2 PUBLISH, it must fit one MQTT packet (its properties too) */
    if (2 + in.topic_len + 2 + 4 + in.props_len + in.payload_len > MQTT_MAX_REMAINING) {
        fail(b, "%s", "the message does not fit an MQTT packet (256 MB)");
        free(blob);
        goto out;
    }
    m = msg_new(&in);
    free(blob);
out:
    lua_settop(L, top);
    return m;
}

struct msg *
message_from_table(lua_State *L, int idx, const struct msg *def, char *err, size_t errlen)
{
    struct builder b = {.L = L, .err = err, .errlen = errlen};
    struct msg *m = from_table(&b, idx, def);
    free(b.user);
    return m;
}

struct protected_read {
    struct builder b;
    const struct msg *def;
    struct msg *m;
};

static int
read_protected(lua_State *L)
{
    struct protected_read *r = lua_touserdata(L, 1);
    r->b.L = L;
    r->m = from_table(&r->b, 2, r->def);
    return 0;
}

struct msg *
message_from_result(lua_State *L, int idx, const struct msg *def, char *err, size_t errlen)
{
    struct protected_read r = {.b = {.err = err, .errlen = errlen}, .def = def};
    idx = lua_absindex(L, idx);
    lua_pushcfunction(L, read_protected);
    lua_pushlightuserdata(L, &r);
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) { /* out of memory: user entries may be half read */
        lua_pop(L, 1);
        snprintf(err, errlen, "%s", "memory limit exceeded while reading it");
        free(r.b.user);
        return NULL;
    }
    free(r.b.user);
    return r.m;
}

bool
message_equal(const struct msg *a, const struct msg *b)
{
    return a->qos == b->qos && a->retain == b->retain && a->has_expiry == b->has_expiry &&
           (!a->has_expiry || a->expire_at_ms / 1000 == b->expire_at_ms / 1000) &&
           a->topic_len == b->topic_len && memcmp(a->topic, b->topic, a->topic_len) == 0 &&
           a->props_len == b->props_len && memcmp(a->props, b->props, a->props_len) == 0 &&
           a->payload_len == b->payload_len && memcmp(a->payload, b->payload, a->payload_len) == 0;
}
