/* SPDX-License-Identifier: MIT
 *
 * kvlib: broker.kv, the key-value store (kv.h) as hooks see it. One store for all
 * hooks; by convention a hook's keys start with its name ("enrich/..."). Every call
 * charges the bytes it copies to the instruction budget, and keys() each key it
 * lists, so a hook cannot hold the loop by walking a large store. */
#include <math.h>
#include <stdint.h>

#include <lauxlib.h>

#include "hook_int.h"
#include "kv.h"

#define BYTES_PER_STEP 64 /* copied in C: bytes per budget step */

static struct kv *
store_of(lua_State *L)
{
    struct kv *kv = hook_of(L)->hs->host.kv;
    if (!kv) luaL_error(L, "broker.kv: no key-value store here");
    return kv;
}

static int64_t
now_ms(void)
{
    return (int64_t)(lq_wall_time() * 1000.0);
}

/* broker.kv.get(key): the value, or nil */
static int
l_get(lua_State *L)
{
    struct kv *kv = store_of(L);
    size_t klen, vlen;
    const char *key = luaL_checklstring(L, 1, &klen), *value;
    if (!kv_get(kv, key, klen, now_ms(), &value, &vlen)) {
        lua_pushnil(L);
        return 1;
    }
    sandbox_charge(L, 1 + (klen + vlen) / BYTES_PER_STEP);
    lua_pushlstring(L, value, vlen);
    return 1;
}

/* broker.kv.set(key, value [, ttl_seconds]): true, or nil and "full" / "too large" */
static int
l_set(lua_State *L)
{
    struct kv *kv = store_of(L);
    size_t klen, vlen;
    const char *key = luaL_checklstring(L, 1, &klen);
    const char *value = luaL_checklstring(L, 2, &vlen);
    int64_t expires = 0;
    if (!lua_isnoneornil(L, 3)) {
        lua_Number ttl = luaL_checknumber(L, 3);
        luaL_argcheck(L, ttl > 0 && ttl <= 1e9 && !isnan(ttl), 3,
                      "ttl must be 0 < ttl <= 1e9 seconds");
        expires = now_ms() + (int64_t)ceil(ttl * 1000.0);
    }
    sandbox_charge(L, 1 + (klen + vlen) / BYTES_PER_STEP);
    switch (kv_set(kv, key, klen, value, vlen, expires)) {
    case KV_OK: lua_pushboolean(L, 1); return 1;
    case KV_FULL:
        lua_pushnil(L);
        lua_pushliteral(L, "full");
        return 2;
    case KV_TOO_LARGE: break;
    }
    lua_pushnil(L);
    lua_pushliteral(L, "too large");
    return 2;
}

/* broker.kv.delete(key): whether it was there */
static int
l_delete(lua_State *L)
{
    struct kv *kv = store_of(L);
    size_t klen;
    const char *key = luaL_checklstring(L, 1, &klen);
    lua_pushboolean(L, kv_del(kv, key, klen));
    return 1;
}

static bool
list_key(void *arg, const char *key, size_t klen, const char *value, size_t vlen,
         int64_t expires_ms)
{
    (void)value;
    (void)vlen;
    (void)expires_ms;
    lua_State *L = arg;
    sandbox_charge(L, 1 + klen / BYTES_PER_STEP); /* may raise: kv_each holds nothing */
    lua_pushlstring(L, key, klen);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return true;
}

/* broker.kv.keys([prefix [, max]]): the keys starting with prefix, in byte order */
static int
l_keys(lua_State *L)
{
    struct kv *kv = store_of(L);
    size_t plen = 0;
    const char *prefix = luaL_optlstring(L, 1, "", &plen);
    lua_Integer max = luaL_optinteger(L, 2, LUA_MAXINTEGER);
    luaL_argcheck(L, max >= 0, 2, "max must not be negative");
    lua_settop(L, 2);
    lua_newtable(L);
    kv_each(kv, prefix, plen, now_ms(), (size_t)max, list_key, L);
    return 1;
}

void
kvlib_open(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"get", l_get}, {"set", l_set}, {"delete", l_delete}, {"keys", l_keys}, {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "kv");
}
