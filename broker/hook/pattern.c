/* SPDX-License-Identifier: MIT
 *
 * pattern: string.find, string.match, string.gmatch and string.gsub for hooks, with
 * the pattern syntax of the Lua 5.4 manual (section 6.4.1), written for the sandbox:
 * every step of the matcher (a pattern item tried at a position, a character taken by
 * a repetition, a backtrack) counts, and the count is charged to the hook's
 * instruction budget every STEP_FLUSH steps. Lua's own matcher runs inside one C call
 * where no count hook fires: "^(.-),(.-),(.-),(.-);$" on 300 commas backtracks for
 * seconds. Here it stops at the budget with the same error as a loop. */
#include <ctype.h>
#include <string.h>

#include <lauxlib.h>

#include "hook_int.h"

#define STEP_FLUSH          1024 /* matcher steps between charges to the budget */
#define SCAN_BYTES_PER_STEP 16   /* a plain find or a back-reference compare */
#define MAX_DEPTH           200  /* nested items (captures, ?, backtracking): as Lua */
#define MAX_CAPTURES        32   /* as Lua */
#define CAP_UNFINISHED      (-1)
#define CAP_POSITION        (-2)

struct mstate {
    lua_State *L;
    const char *s0, *s_end; /* the subject */
    const char *p_end;      /* the pattern's end */
    int depth;              /* nesting left before "pattern too complex" */
    int level;              /* captures open or closed so far */
    unsigned steps;         /* not yet charged */
    struct {
        const char *at;
        ptrdiff_t len; /* or CAP_UNFINISHED, CAP_POSITION */
    } cap[MAX_CAPTURES];
};

static void
flush(struct mstate *ms)
{
    unsigned n = ms->steps;
    ms->steps = 0;
    sandbox_charge(ms->L, n); /* may raise: the matcher holds nothing to release */
}

static inline void
step(struct mstate *ms)
{
    if (++ms->steps >= STEP_FLUSH) flush(ms);
}

static void
reset(struct mstate *ms)
{
    ms->level = 0;
    ms->depth = MAX_DEPTH;
}

/* ---- single character classes ---- */

static bool
class_has(int c, int cl)
{
    bool in;
    switch (tolower(cl)) {
    case 'a': in = isalpha(c); break;
    case 'c': in = iscntrl(c); break;
    case 'd': in = isdigit(c); break;
    case 'g': in = isgraph(c); break;
    case 'l': in = islower(c); break;
    case 'p': in = ispunct(c); break;
    case 's': in = isspace(c); break;
    case 'u': in = isupper(c); break;
    case 'w': in = isalnum(c); break;
    case 'x': in = isxdigit(c); break;
    case 'z': in = c == 0; break; /* deprecated, still in 5.4 */
    default: return cl == c;      /* %. %% %( ...: the character itself */
    }
    return isupper(cl) ? !in : in;
}

/* The end of the class starting at p: after "x", "%x" or "[...]". */
static const char *
class_end_slow(struct mstate *ms, const char *p)
{
    char c = *p++;
    if (c == '%') {
        if (p >= ms->p_end) luaL_error(ms->L, "malformed pattern (ends with '%%')");
        return p + 1;
    }
    if (c != '[') return p;
    if (p < ms->p_end && *p == '^') p++;
    do { /* the first character of a set may be ']' */
        if (p >= ms->p_end) luaL_error(ms->L, "malformed pattern (missing ']')");
        if (*p++ == '%' && p < ms->p_end) p++;
    } while (p >= ms->p_end || *p != ']');
    return p + 1;
}

static inline const char *
class_end(struct mstate *ms, const char *p)
{
    return *p == '%' || *p == '[' ? class_end_slow(ms, p) : p + 1; /* most are one char */
}

/* Is c in the set [...] that starts at p and whose ']' is at close? */
static bool
set_has(int c, const char *p, const char *close)
{
    bool want = true;
    p++; /* '[' */
    if (*p == '^') {
        want = false;
        p++;
    }
    while (p < close) {
        if (*p == '%' && p + 1 < close) {
            if (class_has(c, (unsigned char)p[1])) return want;
            p += 2;
        } else if (p + 2 < close && p[1] == '-') {
            if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2]) return want;
            p += 3;
        } else {
            if ((unsigned char)*p == c) return want;
            p++;
        }
    }
    return !want;
}

/* Does the character at s match the class p..ep? */
static inline bool
single(const struct mstate *ms, const char *s, const char *p, const char *ep)
{
    if (s >= ms->s_end) return false;
    int c = (unsigned char)*s;
    switch (*p) {
    case '.': return true;
    case '%': return class_has(c, (unsigned char)p[1]);
    case '[': return set_has(c, p, ep - 1);
    default: return (unsigned char)*p == c;
    }
}

/* ---- the matcher: the end of a match of p at s, or NULL ---- */

static const char *match(struct mstate *ms, const char *s, const char *p);

/* Greedy: take as many as match, then give back one at a time. */
static const char *
max_expand(struct mstate *ms, const char *s, const char *p, const char *ep)
{
    ptrdiff_t n = 0;
    while (single(ms, s + n, p, ep)) {
        n++;
        step(ms);
    }
    for (; n >= 0; n--) {
        const char *e = match(ms, s + n, ep + 1);
        if (e) return e;
    }
    return NULL;
}

/* Lazy: the rest first, one more only when it fails. */
static const char *
min_expand(struct mstate *ms, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *e = match(ms, s, ep + 1);
        if (e) return e;
        if (!single(ms, s, p, ep)) return NULL;
        s++;
    }
}

static const char *
open_capture(struct mstate *ms, const char *s, const char *p, ptrdiff_t what)
{
    if (ms->level >= MAX_CAPTURES) luaL_error(ms->L, "too many captures");
    ms->cap[ms->level].at = s;
    ms->cap[ms->level].len = what;
    ms->level++;
    const char *e = match(ms, s, p);
    if (!e) ms->level--;
    return e;
}

static const char *
close_capture(struct mstate *ms, const char *s, const char *p)
{
    int l = ms->level - 1;
    while (l >= 0 && ms->cap[l].len != CAP_UNFINISHED) l--;
    if (l < 0) luaL_error(ms->L, "invalid pattern capture");
    ms->cap[l].len = s - ms->cap[l].at;
    const char *e = match(ms, s, p);
    if (!e) ms->cap[l].len = CAP_UNFINISHED;
    return e;
}

/* %bxy at s: from an x to its balancing y */
static const char *
balance(struct mstate *ms, const char *s, const char *p)
{
    if (p + 1 >= ms->p_end) luaL_error(ms->L, "malformed pattern (missing arguments to '%%b')");
    if (s >= ms->s_end || *s != p[0]) return NULL;
    int open = 1;
    while (++s < ms->s_end) {
        step(ms);
        if (*s == p[1]) {
            if (--open == 0) return s + 1;
        } else if (*s == p[0]) {
            open++;
        }
    }
    return NULL;
}

/* %1-%9: the text of a closed capture again */
static const char *
back_reference(struct mstate *ms, const char *s, int digit)
{
    int l = digit - '1';
    if (l < 0 || l >= ms->level || ms->cap[l].len == CAP_UNFINISHED)
        luaL_error(ms->L, "invalid capture index %%%d", l + 1);
    size_t len = ms->cap[l].len == CAP_POSITION ? 0 : (size_t)ms->cap[l].len;
    ms->steps += (unsigned)(len / SCAN_BYTES_PER_STEP);
    step(ms);
    if ((size_t)(ms->s_end - s) >= len && memcmp(ms->cap[l].at, s, len) == 0) return s + len;
    return NULL;
}

/* %f[set]: the transition from a character not in set to one in it */
static const char *
frontier(struct mstate *ms, const char *s, const char **p)
{
    const char *set = *p + 2;
    if (set >= ms->p_end || *set != '[') luaL_error(ms->L, "missing '[' after '%%f' in pattern");
    const char *ep = class_end(ms, set);
    int before = s == ms->s0 ? 0 : (unsigned char)s[-1];
    int here = s < ms->s_end ? (unsigned char)*s : 0;
    *p = ep;
    return !set_has(before, set, ep - 1) && set_has(here, set, ep - 1) ? s : NULL;
}

/* One item at a time; recursion only where the rest may have to be tried again. */
static const char *
match_items(struct mstate *ms, const char *s, const char *p)
{
    for (;;) {
        step(ms);
        if (p >= ms->p_end) return s;
        switch (*p) {
        case '(':
            if (p + 1 < ms->p_end && p[1] == ')') return open_capture(ms, s, p + 2, CAP_POSITION);
            return open_capture(ms, s, p + 1, CAP_UNFINISHED);
        case ')': return close_capture(ms, s, p + 1);
        case '$':
            if (p + 1 == ms->p_end) return s == ms->s_end ? s : NULL;
            break; /* a '$' elsewhere is itself */
        case '%':
            if (p + 1 < ms->p_end && p[1] == 'b') {
                s = balance(ms, s, p + 2);
                if (!s) return NULL;
                p += 4;
                continue;
            }
            if (p + 1 < ms->p_end && p[1] == 'f') {
                if (!frontier(ms, s, &p)) return NULL;
                continue;
            }
            if (p + 1 < ms->p_end && isdigit((unsigned char)p[1])) {
                s = back_reference(ms, s, (unsigned char)p[1]);
                if (!s) return NULL;
                p += 2;
                continue;
            }
            break;
        default: break;
        }
        const char *ep = class_end(ms, p);
        char suffix = ep < ms->p_end ? *ep : '\0';
        if (!single(ms, s, p, ep)) {
            if (suffix == '*' || suffix == '?' || suffix == '-') { /* zero of them is fine */
                p = ep + 1;
                continue;
            }
            return NULL;
        }
        switch (suffix) {
        case '?': {
            const char *e = match(ms, s + 1, ep + 1);
            if (e) return e;
            p = ep + 1;
            continue;
        }
        case '+': return max_expand(ms, s + 1, p, ep);
        case '*': return max_expand(ms, s, p, ep);
        case '-': return min_expand(ms, s, p, ep);
        default:
            s++;
            p = ep;
            continue;
        }
    }
}

static const char *
match(struct mstate *ms, const char *s, const char *p)
{
    if (ms->depth-- == 0) luaL_error(ms->L, "pattern too complex");
    const char *e = match_items(ms, s, p);
    ms->depth++;
    return e;
}

/* ---- captures to Lua values ---- */

/* Push capture i of the match s..e (i 0 without captures: the whole match). */
static void
push_capture(struct mstate *ms, int i, const char *s, const char *e)
{
    if (i >= ms->level) {
        if (i != 0) luaL_error(ms->L, "invalid capture index %%%d", i + 1);
        lua_pushlstring(ms->L, s, (size_t)(e - s));
        return;
    }
    ptrdiff_t len = ms->cap[i].len;
    if (len == CAP_UNFINISHED) luaL_error(ms->L, "unfinished capture");
    if (len == CAP_POSITION)
        lua_pushinteger(ms->L, ms->cap[i].at - ms->s0 + 1);
    else
        lua_pushlstring(ms->L, ms->cap[i].at, (size_t)len);
}

/* All captures (or the whole match when there are none and s is given). */
static int
push_captures(struct mstate *ms, const char *s, const char *e)
{
    int n = ms->level == 0 && s ? 1 : ms->level;
    if (n > 1) luaL_checkstack(ms->L, n, "too many captures"); /* LUA_MINSTACK is 20 */
    for (int i = 0; i < n; i++) push_capture(ms, i, s, e);
    return n;
}

/* ---- the library functions ---- */

static void
init_state(struct mstate *ms, lua_State *L, const char *s, size_t ls, const char *p, size_t lp)
{
    ms->L = L;
    ms->s0 = s;
    ms->s_end = s + ls;
    ms->p_end = p + lp;
    ms->steps = 0;
    reset(ms);
}

/* A start position as Lua takes it: 1-based, negative from the end, 0-based out. */
static size_t
start_of(lua_Integer pos, size_t len)
{
    if (pos > 0) return (size_t)pos - 1;
    if (pos == 0 || pos < -(lua_Integer)len) return 0;
    return len + (size_t)pos;
}

static bool
has_specials(const char *p, size_t lp)
{
    for (size_t i = 0; i < lp; i++) {
        switch (p[i]) {
        case '^':
        case '$':
        case '*':
        case '+':
        case '?': /* the magic characters */
        case '.':
        case '(':
        case '[':
        case '%':
        case '-': return true;
        default: break;
        }
    }
    return false;
}

/* The first n bytes at h (of hn) equal to the needle, or NULL. */
static const char *
find_plain(const char *h, size_t hn, const char *needle, size_t n)
{
    if (n == 0) return h;
    const char *end = h + hn;
    while ((size_t)(end - h) >= n) {
        const char *c = memchr(h, needle[0], (size_t)(end - h) - n + 1);
        if (!c) return NULL;
        if (memcmp(c + 1, needle + 1, n - 1) == 0) return c;
        h = c + 1;
    }
    return NULL;
}

static int
find_or_match(lua_State *L, bool find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_of(luaL_optinteger(L, 3, 1), ls);
    if (init > ls) {
        luaL_pushfail(L);
        return 1;
    }
    if (find && (lua_toboolean(L, 4) || !has_specials(p, lp))) {
        sandbox_charge(L, (ls - init) / SCAN_BYTES_PER_STEP);
        const char *at = find_plain(s + init, ls - init, p, lp);
        if (!at) {
            luaL_pushfail(L);
            return 1;
        }
        lua_pushinteger(L, at - s + 1);
        lua_pushinteger(L, (lua_Integer)(at - s + lp));
        return 2;
    }
    struct mstate ms;
    bool anchor = lp > 0 && *p == '^';
    if (anchor) {
        p++;
        lp--;
    }
    init_state(&ms, L, s, ls, p, lp);
    const char *from = s + init;
    do {
        reset(&ms);
        const char *e = match(&ms, from, p);
        if (e) {
            flush(&ms);
            if (!find) return push_captures(&ms, from, e);
            lua_pushinteger(L, from - s + 1);
            lua_pushinteger(L, e - s);
            return push_captures(&ms, NULL, NULL) + 2;
        }
    } while (from++ < ms.s_end && !anchor);
    flush(&ms);
    luaL_pushfail(L);
    return 1;
}

static int
p_find(lua_State *L)
{
    return find_or_match(L, true);
}

static int
p_match(lua_State *L)
{
    return find_or_match(L, false);
}

/* The gmatch iterator; upvalues: subject, pattern, next start, end of the last
 * match (-1: none), all as offsets so the closure holds no pointer. */
static int
gmatch_next(lua_State *L)
{
    size_t ls, lp;
    const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
    const char *p = lua_tolstring(L, lua_upvalueindex(2), &lp);
    lua_Integer from = lua_tointeger(L, lua_upvalueindex(3));
    lua_Integer last = lua_tointeger(L, lua_upvalueindex(4));
    struct mstate ms;
    init_state(&ms, L, s, ls, p, lp);
    for (; from <= (lua_Integer)ls; from++) {
        reset(&ms);
        const char *e = match(&ms, s + from, p);
        if (e && e - s != last) {
            flush(&ms);
            lua_pushinteger(L, e - s);
            lua_copy(L, -1, lua_upvalueindex(3));
            lua_replace(L, lua_upvalueindex(4));
            return push_captures(&ms, s + from, e);
        }
    }
    lua_pushinteger(L, from);
    lua_replace(L, lua_upvalueindex(3));
    flush(&ms);
    return 0;
}

static int
p_gmatch(lua_State *L)
{
    size_t ls;
    luaL_checklstring(L, 1, &ls);
    luaL_checkstring(L, 2);
    size_t init = start_of(luaL_optinteger(L, 3, 1), ls);
    if (init > ls) init = ls + 1; /* no match at all */
    lua_settop(L, 2);
    lua_pushinteger(L, (lua_Integer)init);
    lua_pushinteger(L, -1);
    lua_pushcclosure(L, gmatch_next, 4);
    return 1;
}

/* gsub with a string replacement: %0-%9 and %% */
static void
add_template(struct mstate *ms, luaL_Buffer *b, const char *s, const char *e)
{
    size_t len;
    const char *r = lua_tolstring(ms->L, 3, &len);
    const char *r_end = r + len;
    while (r < r_end) {
        const char *pct = memchr(r, '%', (size_t)(r_end - r));
        if (!pct) {
            luaL_addlstring(b, r, (size_t)(r_end - r));
            break;
        }
        luaL_addlstring(b, r, (size_t)(pct - r));
        r = pct + 1;
        if (r < r_end && *r == '%') {
            luaL_addchar(b, '%');
        } else if (r < r_end && *r == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
        } else if (r < r_end && isdigit((unsigned char)*r)) {
            push_capture(ms, *r - '1', s, e);
            luaL_tolstring(ms->L, -1, NULL); /* a position capture is a number */
            lua_remove(ms->L, -2);
            luaL_addvalue(b);
        } else {
            luaL_error(ms->L, "invalid use of '%%' in replacement string");
        }
        r++;
    }
}

/* Add what replaces the match s..e; false when it stays as it was. */
static bool
add_replacement(struct mstate *ms, luaL_Buffer *b, const char *s, const char *e, int kind)
{
    lua_State *L = ms->L;
    if (kind == LUA_TSTRING || kind == LUA_TNUMBER) {
        add_template(ms, b, s, e);
        return true;
    }
    if (kind == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        int n = push_captures(ms, s, e);
        flush(ms); /* the callee is counted by the count hook */
        lua_call(L, n, 1);
    } else {
        push_capture(ms, 0, s, e);
        lua_gettable(L, 3);
    }
    if (!lua_toboolean(L, -1)) { /* nil or false: keep the match */
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
        return false;
    }
    if (!lua_isstring(L, -1))
        luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    luaL_addvalue(b);
    return true;
}

static int
p_gsub(lua_State *L)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    int kind = lua_type(L, 3);
    lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    luaL_argexpected(L,
                     kind == LUA_TNUMBER || kind == LUA_TSTRING || kind == LUA_TFUNCTION ||
                         kind == LUA_TTABLE,
                     3, "string/function/table");
    lua_settop(L, 3);
    bool anchor = lp > 0 && *p == '^';
    if (anchor) {
        p++;
        lp--;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    struct mstate ms;
    init_state(&ms, L, s, ls, p, lp);
    const char *at = s, *last = NULL;
    lua_Integer n = 0;
    bool changed = false;
    while (n < max) {
        reset(&ms);
        const char *e = match(&ms, at, p);
        if (e && e != last) {
            n++;
            changed |= add_replacement(&ms, &b, at, e, kind);
            at = last = e;
        } else if (at < ms.s_end) {
            luaL_addchar(&b, *at++);
        } else {
            break;
        }
        if (anchor) break;
    }
    flush(&ms);
    if (!changed) {
        lua_pushvalue(L, 1);
    } else {
        luaL_addlstring(&b, at, (size_t)(ms.s_end - at));
        luaL_pushresult(&b);
    }
    lua_pushinteger(L, n);
    return 2;
}

void
pattern_open(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"find", p_find}, {"match", p_match}, {"gmatch", p_gmatch}, {"gsub", p_gsub}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
