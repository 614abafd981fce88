/* SPDX-License-Identifier: MIT
 *
 * cluster internals, shared by its files:
 *  - cluster.c   the node's side: the hand-over to the cluster thread and its loop, the
 *                interest table, what comes in (headers, duplicates) and the life cycle;
 *  - connect.c   the NATS options (servers, credentials, TLS) and staying connected;
 *  - groups.c    shared subscriptions as NATS queue groups;
 *  - retained.c  the retained messages' JetStream stream;
 *  - sessions.c  the owners of client ids, and sessions moving between nodes;
 *  - subject.c   the MQTT topic <-> NATS subject mapping. */
#ifndef LUNAMQ_CLUSTER_INT_H
#define LUNAMQ_CLUSTER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>
#include <nats/nats.h>

#include "cluster.h"
#include "levelmap.h"
#include "lq.h"

struct event;
struct msg;

/* Each MQTT topic level becomes one NATS token, so that '+' is '*' and '#' is '>'.
 * What a token cannot carry or NATS would misread is written %XX (two upper-case hex
 * digits): '.', '*', '>', '%', bytes below 0x21 and 0x7f, and a '$' that begins a
 * level; an empty level is the token "%-". The mapping is reversible: no header needs
 * to carry the exact topic. */

/* prefix (a valid subject, e.g. "lq.c1.m") + '.' + the tokens of topic, NUL-ended
 * into out. The length written (without the NUL), or 0 when out (cap bytes) is too
 * small; strlen(prefix) + 3 * tlen + 4 always suffices ("/" is "%-.%-"). */
size_t cluster_subject_of_topic(const char *prefix, const char *topic, size_t tlen, char *out,
                                size_t cap);

/* The tokens after the prefix and its '.' back to the topic, into out (not
 * NUL-ended). The topic's length, or -1 when they are not a mapped topic or out is
 * too small (len bytes always suffice). Only the spelling the mapping writes is
 * taken, so that one topic is one subject: not a short or lower-case escape ("%2e"),
 * an escape of a byte written as itself ("%41"), a raw byte that is escaped (a
 * wildcard token "*" or ">", a space, a leading '$'), '/', '+' or '#', nor an empty
 * token. The topic's UTF-8 (U+0000 is "%00") is the caller's to check. */
long cluster_topic_of_subject(const char *tokens, size_t len, char *out, size_t cap);

/* A topic filter (no $share/ prefix) as the NATS subjects that match what it
 * matches: one, or two for a filter ending in "/#", which also matches its parent
 * ("a/#" matches "a": "P.a" and "P.a.>"). Each NUL-ended in out[i] (cap bytes each).
 * The number of subjects, or 0 when out is too small (the bound of a topic of flen
 * bytes suffices). Topics that begin with '$' are matched by the subjects of
 * wildcard-first filters too (NATS knows no such rule): the receiving node's own
 * routing leaves them out. */
int cluster_subjects_of_filter(const char *prefix, const char *filter, size_t flen, char *out[2],
                               size_t cap);

/* ---- the shared state (cluster.c owns it; each file its part) ---- */

#define SUBJECT_MAX  (3u * 65535u + 256u) /* every byte of a topic escaped, and the prefix */
#define SEEN_WINDOW  1024u /* sequence numbers of one run remembered for duplicates */
#define SEEN_RUNS    64u   /* runs of other nodes remembered (least recently seen goes) */
#define IN_SLICE_MS  2u    /* the loop routes what came in for at most this, then yields */
#define DEFAULT_URL  "nats://127.0.0.1:4222"
#define MSG_OVERHEAD 256u /* headers and bookkeeping, counted against max_pending_bytes */
/* After a batch the thread naps this long before it takes the next: the loop's
 * hand-overs (one a loop turn, often one message at a few thousand a second) gather
 * into one batch, one wake-up and one libnats flush, instead of a futex wake-up, a
 * thread switch and a flush per message. It adds at most this to a message's way
 * out; under load batches are larger and the nap is a small part. */
#define PACE_US            500
#define CONFIRM_TIMEOUT_MS 2000  /* a SUBACK waits at most this for the NATS subscription */
#define RETRY_WAIT_MS      500   /* between rounds of connection attempts */
#define REOPEN_WAIT_MS     1000  /* between attempts after libnats gave a connection up */
#define REFUSAL_LOG_MS     60000 /* the same reason for failing to connect, logged again */
#define WRITE_DEADLINE_MS  5000  /* a NATS server that reads nothing for this is given up */
#define LOAD_TIMEOUT_MS    2000  /* SUBACKs at start wait at most this for the retained stream */
#define JS_WAIT_MS         2000  /* a JetStream request (creating the stream, subscribing) */
#define JS_RETRY_MS        1000  /* after a JetStream set-up that failed, doubled while */
#define JS_RETRY_MAX_MS    60000 /* it does not answer (each try holds this thread) */
#define JS_ACK_WAIT_MS     5000  /* a retained message the stream did not acknowledge: failed */
#define JS_MAX_PENDING     4096  /* unacknowledged retained messages; past it, kept */

/* The retained stream, as the thread sees it. */
enum js_state {
    JS_OFF,    /* cluster_retained local */
    JS_SETUP,  /* to create the stream and its consumer (when connected) */
    JS_READY,  /* in use */
    JS_ABSENT, /* no JetStream, or it refused the stream: local until a reconnection */
};

/* ---- the loop's work for the thread ---- */
enum op_kind { OP_PUB, OP_SUB, OP_UNSUB, OP_QSUB, OP_QUNSUB };
struct op;

/* A retained op kept for the stream while NATS is down or JS_MAX_PENDING wait for
 * their acks. */
struct js_wait {
    struct js_wait *next;
    struct op *op;
};

/* A distinct subject this node subscribes to: the loop counts the filters that need
 * it; the thread alone touches sub. Freed by the thread after its OP_UNSUB (the loop
 * has forgotten it by then), or at close. */
struct interest {
    uint32_t refs; /* the loop's */
    natsSubscription *sub;
    struct interest *prev, *next; /* the thread's list of what it subscribed to */
    char subject[];
};

/* A shared group (group, filter) with members on this node: one queue subscription
 * per subject of the filter, on the queue connection. Held (refs) by the loop's table
 * while it has members, by each open NATS subscription (released when libnats says
 * its last message was handed over) and by each of its messages not yet routed:
 * freed by whoever lets go last. */
struct qgroup {
    struct cluster *c;
    _Atomic uint32_t refs;
    uint32_t members; /* the loop's */
    int nsubjects;
    natsSubscription *sub[2];
    char *subject[2];
    char queue[34]; /* 'q' and 32 hex digits of SHA-256(group NUL filter) */
    size_t glen, flen;
    char key[]; /* group NUL filter NUL */
};

/* What came from NATS: a message for this node's plain subscriptions (q NULL) or for
 * one shared group's members. */
struct in_msg {
    natsMsg *m;
    struct qgroup *q;
};

struct op {
    struct op *next;
    enum op_kind kind;
    uint64_t sub_no;     /* OP_SUB, OP_QSUB: its number */
    struct interest *in; /* OP_SUB, OP_UNSUB */
    struct qgroup *qg;   /* OP_QSUB, OP_QUNSUB */
    uint64_t seq, bytes;
    uint32_t expiry, payload_len, props_len;
    uint8_t qos;
    bool retain, has_expiry, groups;
    bool to_stream; /* OP_PUB: a retained message, for the stream too */
    const char *subject;
    const uint8_t *payload, *props;
    uint8_t data[];
};

/* Why connecting to NATS failed, as last logged: the same reason again is logged
 * once a minute (with how many times it came meanwhile), another one at once. */
struct refusal {
    char why[256];
    uint64_t at_ms, unlogged;
};

/* The sequence numbers seen of one run of another node, for duplicates. */
struct seen {
    char run[24];
    char node[64];
    double last_seen;
    uint64_t received;
    uint64_t high, used;
    uint64_t bits[SEEN_WINDOW / 64];
};

struct cluster {
    char *name, *node_id, *nats_url, *username, *password;
    uint64_t max_pending_bytes;
    char **topics, **topics_local; /* cluster_topic, cluster_topic_local */
    size_t ntopics, ntopics_local;
    char prefix[160];
    char rprefix[160];  /* retained: lq.<name>.r */
    char stream[160];   /* LQ_<name>_RETAINED */
    uint32_t replicas;  /* cluster_replicas */
    bool stream_wanted; /* cluster_retained jetstream */
    char run[24];       /* this run of this node: 16 hex digits */
    cluster_deliver_fn deliver;
    void (*store_retained)(struct msg *m, void *ud);
    void (*ready)(void *ud);
    struct csessions *sessions; /* cluster_sessions jetstream; NULL: local */
    void *ud;
    /* loop side */
    struct event *handoff_ev, *in_ev, *more_ev;
    bool handoff_armed;
    struct op *open, **open_tail;
    uint64_t next_seq;
    struct levelmap interest; /* subject -> struct interest */
    struct levelmap qgroups;  /* group NUL filter -> struct qgroup */
    char *subject_buf, *filter_buf[2];
    char *topic_buf;
    struct in_msg *work; /* taken from the thread, being routed */
    size_t nwork, work_at, capwork;
    struct seen seen[SEEN_RUNS];
    uint64_t seen_clock;
    uint64_t received, received_shared, duplicates, dropped_out_loop, bad_in, held;
    bool over; /* publishers are held for messages past max_pending_bytes */
    uint64_t retained_in;
    bool loaded;           /* the retained stream loaded, or given up waiting for */
    struct event *load_ev; /* LOAD_TIMEOUT_MS after opening */
    struct lq_log_limit drop_log, bad_log;
    struct refusal retry_said;   /* libnats' reconnecting thread's */
    struct refusal attempt_said; /* the cluster thread's */
    /* shared with the cluster thread and libnats' threads */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu; /* todo, stop */
    pthread_cond_t cv;
    struct op *todo, **todo_tail;
    bool stop;
    uint64_t subs_queued;            /* the loop's: OP_SUBs numbered from 1 */
    uint64_t subs_told;              /* the loop's: confirmations passed to `ready` */
    _Atomic uint64_t subs_confirmed; /* the server has them (or NATS is down) */
    bool thread_idle;                /* waiting for work: a hand-over must wake it */
    pthread_mutex_t in_mu;           /* in, in_bytes, in_woken */
    struct in_msg *in;
    size_t nin, capin;
    uint64_t in_bytes;
    bool in_woken;
    int pipe[2];
    _Atomic uint64_t pending_out, forwarded, dropped_out, dropped_in, reconnects;
    _Atomic bool connected;
    _Atomic bool drain_wanted; /* the loop waits for pending_out to reach half the bound */
    /* made by cluster_open, used by the threads: nc's, nq's, the sessions thread's */
    natsOptions *opts, *qopts, *sopts;
    _Atomic uint64_t js_pending, js_failed; /* retained messages to the stream */
    _Atomic uint64_t js_target; /* the stream's last sequence at subscribing, + 1; 0: unknown */
    _Atomic bool js_nothing_to_load; /* no stream to wait for (none, or NATS down at start) */
    _Atomic bool js_retry;           /* reconnected: a server without JetStream may have it */
    _Atomic int js_state;            /* enum js_state; written by the thread */
    _Atomic bool js_backlog;         /* retained ops kept: on_js_ack wakes the thread */
    /* the thread's */
    natsConnection *nc;
    natsConnection *nq;          /* for queue subscriptions: made with the first one */
    struct interest *subscribed; /* what OP_SUB asked for and no OP_UNSUB took back */
    uint64_t next_attempt_ms;    /* keep_connected's */
    jsCtx *js;
    natsSubscription *rsub; /* the ordered consumer of the stream */
    uint64_t js_next_try_ms, js_backoff_ms;
    struct lq_log_limit js_log;
    struct levelmap js_waiting; /* subject -> struct js_wait: retained ops kept */
    struct js_wait *jw_head, **jw_tail;
    char *js_hdr;
    size_t js_cap;
};

/* The Lq-Msg header: "ORIGIN RUN SEQ QOS RETAIN EXPIRY [PROPS]". */
struct lq_header {
    const char *origin; /* the header; the origin is its first nlen bytes */
    size_t nlen;
    char run[24];
    uint64_t seq;
    uint8_t qos;
    bool retain, groups, has_expiry;
    uint32_t expiry;
    const char *props_hex;
    size_t hl;
};

/* cluster.c */
void cluster_inbox_put(struct cluster *c, natsMsg *msg, struct qgroup *q, bool may_drop);
void cluster_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure);
const char *cluster_header_of(const struct cluster *c, const struct op *op, char **hdr,
                              size_t *cap);
void cluster_hex_of(const uint8_t *p, size_t n, char *out);
void cluster_pending_done(struct cluster *c, uint64_t bytes);
bool cluster_shared_topic(const struct cluster *c, const char *topic, size_t tlen);
const char *cluster_parse_header(natsMsg *nm, struct lq_header *x);
long cluster_topic_of(struct cluster *c, const char *subject, const char *prefix);
struct msg *cluster_msg_of(struct cluster *c, natsMsg *nm, const struct lq_header *x, long tlen,
                           bool empty, uint64_t expire_at_ms);
void cluster_bad_message(struct cluster *c, natsMsg *nm, const char *why);
void cluster_queue_op(struct cluster *c, struct op *op); /* for the thread, this loop turn */

/* connect.c: the options of a connection (queue: the shared groups' and the sessions
 * thread's, which echo and say nothing of the connection's state), checked at open */
bool cluster_make_options(struct cluster *c, const struct cluster_conf *conf, bool queue,
                          natsOptions **out, char *err, size_t errlen);
void cluster_connect_nats(struct cluster *c);
void cluster_keep_connected(struct cluster *c);

/* groups.c */
void cluster_qgroup_release(struct qgroup *q);
void cluster_queue_subscribe(struct cluster *c, struct qgroup *q);
void cluster_queue_unsubscribe(struct qgroup *q);

/* retained.c: the thread's side (js_*), and the loop's (updates from the stream) */
bool cluster_stream_or_keep(struct cluster *c, struct op *op);
void cluster_stream_kept(struct cluster *c);
bool cluster_js_due(struct cluster *c);
void cluster_js_setup(struct cluster *c);
void cluster_js_open(struct cluster *c);
void cluster_js_close(struct cluster *c);
void cluster_retained_loaded(struct cluster *c);
void cluster_take_retained(struct cluster *c, natsMsg *nm);
void cluster_load_cb(evutil_socket_t fd, short what, void *arg);

/* sessions.c: the owners of client ids and sessions moving between nodes. Made with
 * the cluster, started by its thread (its own NATS connection, with opts), stopped
 * before the cluster's connections close. */
struct event_base;
struct csessions;
struct csessions *csessions_new(struct event_base *base, const char *cluster, const char *node_id,
                                const char *run, uint32_t takeover_ms, int replicas,
                                cluster_takeover_fn takeover, void *ud);
void csessions_start(struct csessions *ss, natsOptions *opts);
void csessions_stop(struct csessions *ss);
void csessions_free(struct csessions *ss);
void csessions_stats(const struct csessions *ss, struct cluster_stats *out);
struct cluster_claim *csessions_claim(struct csessions *ss, const char *id, size_t idlen,
                                      bool clean, cluster_claim_fn done, void *arg);

#endif
