/* SPDX-License-Identifier: MIT
 * Shared by the files of hook/ only. */
#ifndef LUNAMQ_HOOK_INT_H
#define LUNAMQ_HOOK_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <lua.h>

#include "hooks.h"
#include "lq.h"

struct event;
struct msg;

enum hook_abort { ABORT_NONE, ABORT_BUDGET, ABORT_MEMORY };

/* One loaded version of a hook file: its Lua state and what the file returned. */
struct hook {
    struct hooks *hs;
    char *name; /* "10-filter.lua" */
    lua_State *L;
    int ref_on_publish, ref_on_timer, ref_on_load, ref_on_unload; /* LUA_NOREF: absent */
    int ref_on_connect, ref_on_subscribe;
    char **topics;
    size_t ntopics;
    double interval;
    struct event *timer;
    unsigned order; /* rank in file-name order, for chaining */

    /* limits, checked by the allocator, the count hook and the C functions that
     * charge their work (sandbox_charge) */
    size_t mem, mem_limit;
    uint64_t steps, step_limit;
    uint64_t check_at; /* steps at which sandbox_check runs: the limit or the clock */
    uint64_t t0_us;    /* when the call under way began to be timed, 0: not timed */
    size_t grown;      /* bytes allocated and not yet charged as a step */
    enum hook_abort abort;
    struct {
        void *ptr;
        size_t size; /* 0: none */
    } refused;       /* the last request the cap refused, until the next one */
    bool limits_on;  /* only while Lua code of the hook runs: a refusal elsewhere is fatal */
    enum gc_mode { GC_UNSET, GC_ROOMY, GC_NORMAL, GC_TIGHT } gc_mode; /* see sandbox_call */
    bool running; /* a call is under way: never re-entered */

    /* the current on_publish call: what the message table's fields are made from on
     * first read, and the strings made (to see that they came back unchanged) */
    const struct hook_client *client;
    const struct msg *msg;
    const void *msg_table; /* the table pushed for it */
    const char *pushed_topic, *pushed_payload;
    int ref_msg_meta; /* metatable of message tables */

    /* broker.http requests of this version (httplib.c): cancelled when it unloads */
    struct hook_call *calls;
    unsigned http_running, http_queued;

    struct hook_stats *stats;         /* owned by its slot: survives reloads */
    struct lq_log_limit failures_log; /* a hook failing on every message must not flood the log */
    unsigned untimed;                 /* calls since the last timed one */
};

/* A file of the scripts directory and the hook version running for it. */
struct hook_slot {
    char *name;
    struct hook *hook; /* NULL while no version loaded */
    char *error;       /* last load error */
    struct hook_stats stats;
    /* what was last loaded (or tried), to notice changes */
    ino_t ino;
    int64_t mtime_ns;
    off_t size;
    bool seen; /* during a rescan */
};

struct hooks {
    struct event_base *base;
    struct hooks_conf conf;
    char *dir;
    struct hook_host host;
    struct hook_slot **slots; /* sorted by name */
    size_t nslots;
    struct topic_tree *index; /* filter -> struct hook */
    int inotify_fd;
    struct event *inotify_ev, *rescan_ev;
    unsigned depth;                        /* nesting of hooks_run through broker.publish */
    unsigned n_on_connect, n_on_subscribe; /* loaded hooks defining them */
    struct lq_log_limit depth_log;
};

/* sandbox.c: states, limits, calls */
struct hook *sandbox_load(struct hooks *hs, const char *name, const char *path, char *err,
                          size_t errlen);
void sandbox_close(struct hook *h);
/* Call the function under the arguments on the stack (function first) with the
 * budget armed. On error, logs and counts it and leaves what was below the function;
 * else the nres results. One call in `sample` is timed and counts for `sample` calls
 * in the hook's time figures: reading the clock twice would cost a pass-through
 * on_publish about as much as the call itself. */
int sandbox_call(struct hook *h, int nargs, int nres, unsigned sample, const char *what);

static inline struct hook *
hook_of(lua_State *L)
{
    return *(struct hook **)lua_getextraspace(L);
}

/* Steps of work a C function does inside one call (match steps, bytes copied...), where
 * no count hook fires: charged to the same instruction budget. Raises the budget error
 * when it is spent; starts the clock of a call that turns out long. */
void sandbox_check(lua_State *L);
static inline void
sandbox_charge(lua_State *L, uint64_t steps)
{
    struct hook *h = hook_of(L);
    h->steps += steps;
    if (h->steps >= h->check_at) sandbox_check(L);
}

/* bounded.c: replaces the functions of string, table and utf8 whose work grows with
 * their arguments by versions that charge it first; calls pattern_open. */
void bounded_open(lua_State *L);

/* pattern.c: string.find, match, gmatch and gsub with Lua's pattern syntax, each
 * matching step charged to the budget (Lua's own matcher runs unbounded in C). */
void pattern_open(lua_State *L); /* replaces them in the string table on top */

/* kvlib.c: broker.kv, into the broker table on top of the stack */
void kvlib_open(lua_State *L);

/* httplib.c: broker.http, into the broker table on top of the stack; httplib_close
 * ends the requests of a version being unloaded (no on_response runs) */
void httplib_open(lua_State *L);
void httplib_close(struct hook *h);

/* message.c: messages to and from Lua tables */
void message_setup(struct hook *h); /* once per state */
/* Push the table for m published by cl: empty, each field made on its first read
 * while the call lasts. False (nothing pushed) when the memory cap leaves no room. */
bool message_push(struct hook *h, const struct msg *m, const struct hook_client *cl);
/* After the call: the table keeps the fields that were read; reading another one is
 * an error. */
void message_seal(struct hook *h);
/* Is the table at ret the one pushed for m (at pushed) with nothing changed in it? */
bool message_unchanged(struct hook *h, const struct msg *m, int ret, int pushed);
/* The message described by the table at idx; fields it lacks come from def. NULL with
 * a reason in err when the table is not a valid message. */
struct msg *message_from_table(lua_State *L, int idx, const struct msg *def, char *err,
                               size_t errlen);
/* The same outside a Lua call (a hook's result): read in a protected call, so that
 * running out of memory is a NULL with a reason, not a panic. */
struct msg *message_from_result(lua_State *L, int idx, const struct msg *def, char *err,
                                size_t errlen);
bool message_equal(const struct msg *a, const struct msg *b);
/* Push the `client` table of c (on_connect's, with the password) or of cl (the one
 * messages and on_subscribe get). Allocates: only inside a protected call. */
void message_push_connect(lua_State *L, const struct hook_connect *c);
void message_push_client(lua_State *L, const struct hook_client *cl);

/* hooks.c: for broker.publish */
void hooks_publish_from(struct hook *h, struct msg *m);

#endif
