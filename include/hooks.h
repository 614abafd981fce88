/* SPDX-License-Identifier: MIT
 *
 * hooks: per-topic Lua hooks from the scripts directory. Every `*.lua` file there is
 * one hook, bound to topic filters, run in its own sandboxed Lua state with an
 * instruction budget and a memory cap. A published message goes through the hooks
 * matching its topic, in file-name order, each on the previous one's output, before
 * the broker retains and routes what comes out. Files added, changed or removed
 * take effect within a second (inotify) and on hooks_rescan (SIGHUP); a file that
 * does not load leaves the previous version of its hook running.
 *
 * A hook may also decide who connects (on_connect) and what they may subscribe to
 * (on_subscribe): those are asked in file-name order too, bound to no topic, and the
 * first hook with a definite answer decides. They fail closed: a hook that fails
 * refuses.
 *
 * The module knows nothing of sessions or routing: what a hook publishes with
 * broker.publish goes to the host's publish callback. So the admin CLI can run a
 * hook file offline with a host of its own.
 */
#ifndef LUNAMQ_HOOKS_H
#define LUNAMQ_HOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct msg;
struct tls_identity;
struct hooks;
struct hook;
struct kv;
struct httpc;

struct hooks_conf {
    const char *dir;              /* scripts_dir */
    uint64_t instruction_limit;   /* per call (hook_instruction_limit) */
    size_t memory_limit;          /* bytes per hook state (hook_memory_limit) */
    bool drop_on_error;           /* hook_on_error drop (default: pass) */
    uint32_t max_topic_levels;    /* for the topics of messages hooks make; 0: no limit */
    uint32_t http_max_concurrent; /* broker.http.request in flight per hook */
    uint32_t http_max_queue;      /* and waiting for a slot: past it, nil, "busy" */
};

struct hook_host {
    /* broker.publish(): route m (which the callee does not own: msg_ref to keep it).
     * The host runs it through hooks_run with skip = from, then retains and routes. */
    void (*publish)(void *ud, struct msg *m, const struct hook *from);
    void *ud;
    struct kv *kv;      /* broker.kv; NULL: its functions raise an error */
    struct httpc *http; /* broker.http; NULL: requests are refused */
};

/* Who published the message a hook sees, or subscribes (its read-only `client` table). */
struct hook_client {
    const char *id;
    const char *username; /* NULL: none */
    const char *address;
    uint8_t version;                 /* 3, 4 or 5 */
    const struct tls_identity *cert; /* NULL: none */
    const char *listener;            /* "host:port" as configured; NULL: field absent */
};

/* Loads every hook of c->dir (an absent directory means no hooks, logged) and
 * watches it when base is not NULL. Never fails for a bad script: it is logged. */
struct hooks *hooks_new(struct event_base *base, const struct hooks_conf *c,
                        const struct hook_host *host);
void hooks_free(struct hooks *hs); /* calls on_unload; NULL is a no-op */
/* New limits and error policy (SIGHUP); a new dir is scanned. */
void hooks_configure(struct hooks *hs, const struct hooks_conf *c);
/* Reload files added, changed or removed since the last scan. */
void hooks_rescan(struct hooks *hs);

/* What the hooks made of one message. `out` holds references the caller must
 * msg_unref (hook_verdict_clear does). refuse != 0: a hook refused the message with
 * that reason code (out is empty). */
struct hook_verdict {
    struct msg **out; /* inline_out while it fits */
    size_t n, cap;
    uint8_t refuse;
    struct msg *inline_out[4];
};
/* Run m through the hooks that match its topic (except skip) and fill v. False when no
 * hook matches (one index lookup; v untouched): route m itself. */
bool hooks_run(struct hooks *hs, struct msg *m, const struct hook_client *cl,
               const struct hook *skip, struct hook_verdict *v);
void hook_verdict_clear(struct hook_verdict *v);

/* ---- authorisation: on_connect, on_subscribe ---- */

enum hook_auth {
    HOOK_AUTH_NONE,  /* no hook has an opinion: the password/ACL files decide */
    HOOK_AUTH_ALLOW, /* a hook allowed it: skip the password/ACL files, allow_anonymous */
    HOOK_AUTH_DENY,  /* a hook refused it, or failed (fail closed) */
};

/* Self-contained: nothing in it points into a hook, which a reload may unload. */
struct hook_auth_result {
    enum hook_auth verdict;
    uint8_t code;   /* DENY: the reason code (a CONNACK or SUBACK failure code, MQTT 5
                     * numbering; the caller maps it for 3.1.1); else 0 */
    uint8_t qos;    /* on_subscribe: the QoS to grant (ALLOW), else the QoS asked */
    bool failed;    /* DENY because the hook failed (logged already), not its answer */
    char hook[256]; /* file name of the hook that decided; "" for NONE */
};

/* The client of a CONNECT, as the packet gave it: id, username and password need
 * not be NUL-terminated; the password may hold any bytes. */
struct hook_connect {
    const char *id; /* the client id the session will have (assigned when empty) */
    size_t id_len;
    const char *username;
    size_t username_len;
    bool has_username;
    const void *password;
    size_t password_len;
    bool has_password;
    const char *address;             /* peer "ip:port" */
    uint8_t version;                 /* 3, 4 or 5 */
    const struct tls_identity *cert; /* NULL: none */
    const char *listener;            /* "host:port" as configured; NULL: field absent */
};

/* Does a loaded hook define on_connect / on_subscribe? One load: the caller skips
 * the calls below when not. False for hs NULL. */
bool hooks_have_on_connect(const struct hooks *hs);
bool hooks_have_on_subscribe(const struct hooks *hs);
/* Ask the hooks defining on_connect, in file-name order, until one answers true
 * (ALLOW) or false (DENY); nil from all is NONE. A hook that fails (runtime error,
 * budget, memory cap, a return value that is none of these) refuses with 0x87. A
 * refusal code that is not a CONNACK failure code becomes 0x87. hs NULL: NONE. */
void hooks_on_connect(struct hooks *hs, const struct hook_connect *ci, struct hook_auth_result *r);
/* The same with on_subscribe for one topic filter of a SUBSCRIBE (as the client sent
 * it, $share/ prefix included, already validated) asked with qos. A hook may also
 * answer a QoS: ALLOW with r->qos = min(answer, qos). Failure codes: SUBACK's. */
void hooks_on_subscribe(struct hooks *hs, const struct hook_client *cl, const char *filter,
                        size_t len, uint8_t qos, struct hook_auth_result *r);

/* ---- observability (admin CLI, $SYS) ---- */
struct hook_stats {
    uint64_t calls;               /* on_publish calls */
    uint64_t passed;              /* returned the message unchanged */
    uint64_t rewritten;           /* returned one changed message */
    uint64_t dropped;             /* returned nil/false (or refused) */
    uint64_t fanned_out;          /* messages produced by returning a list */
    uint64_t published;           /* broker.publish calls */
    uint64_t errors;              /* runtime errors (load errors not included) */
    uint64_t budget_overruns;     /* instruction budget exceeded */
    uint64_t memory_overruns;     /* memory cap exceeded */
    uint64_t timer_calls;         /* on_timer calls */
    uint64_t connect_calls;       /* on_connect calls */
    uint64_t connect_allowed;     /* on_connect answered true */
    uint64_t connect_refused;     /* on_connect answered false, or failed (fail closed) */
    uint64_t subscribe_calls;     /* on_subscribe calls (one per topic filter) */
    uint64_t subscribe_allowed;   /* on_subscribe answered true or a QoS */
    uint64_t subscribe_refused;   /* on_subscribe answered false, or failed */
    uint64_t http_requests;       /* broker.http.request accepted (started or queued) */
    uint64_t http_busy;           /* refused: its concurrency and queue full */
    uint64_t http_denied;         /* refused: not in hook_http_allow, or a bad request */
    uint64_t http_ok;             /* a response came (any HTTP status) */
    uint64_t http_timeouts;       /* no response in time */
    uint64_t http_connect_errors; /* name not resolved, connection refused or reset */
    uint64_t http_tls_errors;     /* handshake or certificate verification failed */
    uint64_t http_too_large;      /* response over hook_http_max_response */
    uint64_t http_other_errors;   /* anything else */
    uint64_t http_time_us;        /* from start to end of the requests that ended */
    uint64_t response_calls;      /* on_response calls */
    uint64_t total_us;            /* time spent in the hook (on_publish: from 1 call in 16) */
    uint64_t max_us;              /* longest single call (of those timed) */
};

struct hook_info {
    const char *name;          /* file name */
    const char *error;         /* the last load error, or NULL */
    bool loaded;               /* a version of it is running */
    const char *const *topics; /* may be none without on_publish */
    size_t ntopics;
    bool on_connect, on_subscribe;        /* it defines them */
    double interval;                      /* seconds, 0: no timer */
    size_t memory;                        /* bytes its Lua state holds */
    unsigned http_in_flight, http_queued; /* its broker.http requests now */
    struct hook_stats stats;
};
size_t hooks_count(const struct hooks *hs);
/* The i-th hook in file-name order; false past the end. */
bool hooks_info(const struct hooks *hs, size_t i, struct hook_info *out);

#endif
