/* SPDX-License-Identifier: MIT
 *
 * bounded: the library functions whose work grows with their arguments rather than
 * with what they allocate, each replaced by a wrapper that charges that work to the
 * instruction budget first and then calls the original (kept as upvalue 1). What a
 * function allocates is charged by the allocator already; this is for the loops that
 * allocate nothing: string.rep of an empty string 2^50 times, table.concat or
 * table.move over 2^40 indices, table.insert under a __len of 2^40, sorting, scanning
 * a long string in utf8 or json. The pattern functions have a matcher of their own
 * (pattern.c). */
#include <lauxlib.h>
#include <lualib.h>

#include "hook_int.h"

#define SCAN_BYTES_PER_STEP 16 /* a byte-at-a-time C loop: bytes per budget step */
#define REP_COPIES_PER_STEP 8  /* string.rep: copies (memcpy calls) per budget step */

static uint64_t
span(lua_Integer first, lua_Integer last)
{
    return last >= first ? (uint64_t)last - (uint64_t)first + 1 : 0;
}

static int
call_original(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* string.rep(s, n [, sep]): n copies, even of nothing */
static int
b_rep(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 2);
    sandbox_charge(L, n > 0 ? (uint64_t)n / REP_COPIES_PER_STEP : 0);
    return call_original(L);
}

/* table.concat(t [, sep [, i [, j]]]) and table.unpack(t [, i [, j]]): one step per
 * index. j is passed on explicitly so that a __len runs once. */
static int
range_of(lua_State *L, int ti, int ii)
{
    lua_Integer i = luaL_optinteger(L, ii, 1);
    lua_Integer j = lua_isnoneornil(L, ii + 1) ? luaL_len(L, ti) : luaL_checkinteger(L, ii + 1);
    lua_settop(L, ii + 1);
    lua_pushinteger(L, i);
    lua_replace(L, ii);
    lua_pushinteger(L, j);
    lua_replace(L, ii + 1);
    sandbox_charge(L, span(i, j));
    return call_original(L);
}

static int
b_concat(lua_State *L)
{
    return range_of(L, 1, 3);
}

static int
b_unpack(lua_State *L)
{
    return range_of(L, 1, 2);
}

/* table.move(a1, f, e, t [, a2]) */
static int
b_move(lua_State *L)
{
    sandbox_charge(L, span(luaL_checkinteger(L, 2), luaL_checkinteger(L, 3)));
    return call_original(L);
}

/* table.insert(t, [pos,] v) and table.remove(t [, pos]) shift the elements after pos */
static int
b_insert(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 1);
    sandbox_charge(L, lua_gettop(L) >= 3 ? span(luaL_checkinteger(L, 2), n) : 0);
    return call_original(L);
}

static int
b_remove(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 1);
    sandbox_charge(L, span(luaL_optinteger(L, 2, n), n));
    return call_original(L);
}

/* table.sort(t [, comp]): n log2 n comparisons */
static int
b_sort(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 1);
    uint64_t steps = 0;
    for (lua_Integer k = n; k > 1; k >>= 1) steps += n > 0 ? (uint64_t)n : 0;
    sandbox_charge(L, steps);
    return call_original(L);
}

/* utf8.len, utf8.offset, utf8.codepoint, json.decode: a scan of their string */
static int
b_scan(lua_State *L)
{
    size_t len;
    luaL_checklstring(L, 1, &len);
    sandbox_charge(L, len / SCAN_BYTES_PER_STEP);
    return call_original(L);
}

/* Replace t[name] (t on top) by fn with the original as upvalue 1. */
static void
wrap(lua_State *L, const char *name, lua_CFunction fn)
{
    lua_getfield(L, -1, name);
    lua_pushcclosure(L, fn, 1);
    lua_setfield(L, -2, name);
}

void
bounded_open(lua_State *L)
{
    lua_getglobal(L, LUA_STRLIBNAME);
    wrap(L, "rep", b_rep);
    pattern_open(L);
    lua_pop(L, 1);
    lua_getglobal(L, LUA_TABLIBNAME);
    wrap(L, "concat", b_concat);
    wrap(L, "unpack", b_unpack);
    wrap(L, "move", b_move);
    wrap(L, "insert", b_insert);
    wrap(L, "remove", b_remove);
    wrap(L, "sort", b_sort);
    lua_pop(L, 1);
    lua_getglobal(L, LUA_UTF8LIBNAME);
    wrap(L, "len", b_scan);
    wrap(L, "offset", b_scan);
    wrap(L, "codepoint", b_scan);
    lua_pop(L, 1);
    lua_getglobal(L, "json");
    wrap(L, "decode", b_scan);
    lua_pop(L, 1);
}
