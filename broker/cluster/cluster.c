/* SPDX-License-Identifier: MIT
 *
 * cluster: messages between lunamq nodes through NATS (cluster.h says what crosses).
 * Here: the cluster thread and the hand-over both ways, the interest table (one NATS
 * subscription per distinct subject, counted), the headers a message travels with,
 * and the filter that drops the second copy a node receives through two of its
 * subjects. The topic <-> subject mapping is subject.c.
 *
 * A message on NATS: subject P.<topic tokens> with P = lq.<cluster_name>.m, the MQTT
 * payload unchanged, and one header, Lq-Msg: "ORIGIN RUN SEQ QOS RETAIN EXPIRY [PROPS]",
 * the node id, that node's run (random at each start), the sequence number in the run
 * (from 1), QoS 0-2, flags ('r': retain, 'g': shared groups are served through NATS;
 * '-': none), the seconds left or '-', and the forwardable MQTT 5 properties as
 * encoded, in hex (absent when none).
 *
 * Shared subscriptions: the members of $share/G/F on every node take turns. Each node
 * with members queue-subscribes F's subjects in one NATS queue group named after
 * (G, F), on a second connection (which hears this node's own messages too: the first
 * one does not echo them), and NATS gives each message to one node of the group. The
 * publishing node routes a message it sent to NATS ('g') to plain subscriptions only;
 * its groups get it back through NATS like every other node's.
 *
 * Retained messages (cluster_retained jetstream): the thread also publishes a retained
 * one (an empty one clears) through JetStream to P'.<topic tokens>, P' = lq.<name>.r,
 * with the same header, into the stream LQ_<name>_RETAINED (every P' subject, one
 * message per subject, file storage), which whichever node gets there first creates.
 * Every node reads it through an ordered consumer, the last message of each subject
 * first, then every update in stream order, and stores each one (also its own: where
 * two nodes set one topic at once, the stream's order decides the same everywhere).
 * The expiry in the header counts from when JetStream stored the message (its time
 * stamp): a node that loads it later keeps what is left, given clocks in step. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>

#include <event2/event.h>
#include <mbedtls/sha256.h>
#include <nats/nats.h>

#include "cluster.h"
#include "cluster_int.h"
#include "levelmap.h"
#include "lq.h"
#include "mqtt.h"
#include "msg.h"
#include "topic.h"

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

/* ---- small helpers ---- */

static bool
is_token(const char *s)
{
    if (!s || !*s) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_'))
            return false;
    return true;
}

static char *
dup_or_null(const char *s)
{
    return s ? lq_xstrdup(s) : NULL;
}

/* ---- the cluster thread ---- */

static void
on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    struct cluster *c = closure;
    atomic_store(&c->connected, false);
}

static void
on_reconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    struct cluster *c = closure;
    atomic_store(&c->connected, true);
    atomic_fetch_add(&c->reconnects, 1);
    atomic_store(&c->js_retry, true);
    pthread_mutex_lock(&c->mu); /* the thread looks at the stream again */
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void
on_connected(natsConnection *nc, void *closure)
{
    (void)nc;
    struct cluster *c = closure;
    atomic_store(&c->connected, true);
    pthread_mutex_lock(&c->mu); /* the thread sets up the stream */
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void
on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc, (void)sub;
    struct cluster *c = closure;
    if (err == NATS_SLOW_CONSUMER) atomic_fetch_add(&c->dropped_in, 1);
}

/* libnats' last error on this thread, without its "(file.c:N): " */
static const char *
nats_error(natsStatus s)
{
    const char *why = nats_GetLastError(NULL);
    const char *at = why && why[0] == '(' ? strstr(why, "): ") : NULL;
    if (at) why = at + 3;
    if (!why || !*why) why = s == NATS_OK ? "no server answered" : natsStatus_GetText(s);
    return why;
}

/* Why this attempt to connect failed, in the log (not every second while it lasts). */
static void
say_refused(struct cluster *c, struct refusal *r, const char *why)
{
    uint64_t now = lq_now_ms();
    if (strncmp(r->why, why, sizeof(r->why) - 1) == 0 && now - r->at_ms < REFUSAL_LOG_MS) {
        r->unlogged++;
        return;
    }
    if (r->unlogged)
        lq_log(LQ_LOG_WARNING,
               "cluster: cannot connect to NATS at %s: %s (%" PRIu64 " more failed "
               "attempts since the last line); retrying, local traffic goes on",
               c->nats_url, why, r->unlogged);
    else
        lq_log(LQ_LOG_WARNING,
               "cluster: cannot connect to NATS at %s: %s; retrying, local traffic goes on",
               c->nats_url, why);
    snprintf(r->why, sizeof(r->why), "%s", why);
    r->at_ms = now;
    r->unlogged = 0;
}

/* libnats' reconnecting thread, after each round of the servers in nats_url failed:
 * why the last attempt failed (a server down, a TLS handshake that failed) is said
 * (say_refused); then the next round after the wait. */
static int64_t
on_retry(natsConnection *nc, int attempts, void *closure)
{
    struct cluster *c = closure;
    (void)nc, (void)attempts;
    natsStatus s = NATS_OK;
    nats_GetLastError(&s); /* this thread's: its last attempt's */
    say_refused(c, &c->retry_said, nats_error(s));
    return RETRY_WAIT_MS;
}

static void
qgroup_release(struct qgroup *q)
{
    if (atomic_fetch_sub(&q->refs, 1) != 1) return;
    for (int i = 0; i < q->nsubjects; i++) free(q->subject[i]);
    free(q);
}

/* libnats: a queue subscription's last message was handed over. */
static void
on_qsub_complete(void *closure)
{
    qgroup_release(closure);
}

/* libnats' delivery thread: a message for one of our subjects (q NULL) or shared
 * groups goes to the loop's inbox; the first one since the loop last looked wakes it.
 * A retained update is never dropped (the stores would differ for good): the
 * consumer's flow control bounds it. */
static void
inbox_put(struct cluster *c, natsMsg *msg, struct qgroup *q, bool may_drop)
{
    uint64_t n = (uint64_t)natsMsg_GetDataLength(msg) + MSG_OVERHEAD;
    pthread_mutex_lock(&c->in_mu);
    if (may_drop && c->in_bytes + n > c->max_pending_bytes) {
        pthread_mutex_unlock(&c->in_mu);
        atomic_fetch_add(&c->dropped_in, 1);
        natsMsg_Destroy(msg);
        return;
    }
    if (c->nin == c->capin) {
        c->capin = c->capin ? 2 * c->capin : 256;
        c->in = lq_xrealloc(c->in, c->capin * sizeof(*c->in));
    }
    if (q) atomic_fetch_add(&q->refs, 1);
    c->in[c->nin++] = (struct in_msg){msg, q};
    c->in_bytes += n;
    bool wake = !c->in_woken;
    c->in_woken = true;
    pthread_mutex_unlock(&c->in_mu);
    if (wake) (void)!write(c->pipe[1], "", 1); /* full: the loop is awake anyway */
}

static void
on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub;
    inbox_put(closure, msg, NULL, true);
}

static void
on_qmsg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub;
    struct qgroup *q = closure;
    inbox_put(q->c, msg, q, true);
}

static void
on_retained(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub;
    inbox_put(closure, msg, NULL, false);
}

/* libnats: the stream took a retained message, or did not (or no answer in time). */
static void
on_js_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js, (void)pa;
    struct cluster *c = closure;
    if (pae) atomic_fetch_add(&c->js_failed, 1);
    uint64_t left = atomic_fetch_sub(&c->js_pending, 1) - 1;
    natsMsg_Destroy(msg);
    if (left == JS_MAX_PENDING / 2 && atomic_load(&c->js_backlog)) { /* room for what waits */
        pthread_mutex_lock(&c->mu);
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
}

static void
hex_of(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The Lq-Msg header of op, into *hdr (grown as needed). */
static const char *
header_of(const struct cluster *c, const struct op *op, char **hdr, size_t *cap)
{
    size_t need = strlen(c->node_id) + sizeof(c->run) + 3 * 24 + 2 * (size_t)op->props_len + 8;
    if (*cap < need) {
        *cap = need;
        *hdr = lq_xrealloc(*hdr, need);
    }
    char *h = *hdr;
    int n = snprintf(h, *cap, "%s %s %" PRIu64 " %u %s ", c->node_id, c->run, op->seq, op->qos,
                     op->retain ? (op->groups ? "rg" : "r") : (op->groups ? "g" : "-"));
    if (op->has_expiry)
        n += snprintf(h + n, *cap - (size_t)n, "%u", op->expiry);
    else
        h[n++] = '-';
    if (op->props_len) {
        h[n++] = ' ';
        hex_of(op->props, op->props_len, h + n);
    } else {
        h[n] = '\0';
    }
    return h;
}

/* The retained copy, to the stream, not waiting for its acknowledgement (on_js_ack):
 * the same header, the subject's m token made r. */
static void
publish_retained(struct cluster *c, struct op *op)
{
    int state = atomic_load(&c->js_state);
    if (state == JS_ABSENT || state == JS_OFF || !c->js) return; /* local only */
    char *subject = (char *)op->data; /* op->subject: libnats has copied it */
    subject[strlen(c->prefix) - 1] = 'r';
    natsMsg *nm = NULL;
    natsStatus s =
        natsMsg_Create(&nm, subject, NULL, (const char *)op->payload, (int)op->payload_len);
    if (s == NATS_OK) s = natsMsgHeader_Set(nm, "Lq-Msg", header_of(c, op, &c->js_hdr, &c->js_cap));
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = JS_ACK_WAIT_MS;
    atomic_fetch_add(&c->js_pending, 1);
    if (s == NATS_OK) s = js_PublishMsgAsync(c->js, &nm, &po);
    if (s != NATS_OK) {
        atomic_fetch_sub(&c->js_pending, 1);
        atomic_fetch_add(&c->js_failed, 1);
        lq_log_limited(&c->js_log, LQ_LOG_WARNING,
                       "cluster: a retained message on \"%.200s\" not published to JetStream: %s",
                       subject, natsStatus_GetText(s));
    }
    natsMsg_Destroy(nm); /* NULL once libnats took it */
}

/* Can a retained op go to the stream now? Not while NATS is down (it would wait in
 * libnats' reconnect buffer, with the messages, and its ack would time out) nor while
 * JS_MAX_PENDING wait for their acknowledgement. */
static bool
stream_has_room(struct cluster *c)
{
    return atomic_load(&c->connected) && atomic_load(&c->js_pending) < JS_MAX_PENDING;
}

/* A retained op for the stream: sent, or, when there is no room, kept as its
 * subject's latest (an older one kept is dropped: the stream keeps only the last
 * anyway, and order within a subject stays). True when kept (its bytes stay in
 * pending_out). */
/* Messages out of the thread's hands: when they bring what waits for NATS down to
 * half the bound while publishers are held, the loop hears it (in_cb). */
static void
pending_done(struct cluster *c, uint64_t bytes)
{
    if (atomic_fetch_sub(&c->pending_out, bytes) - bytes <= c->max_pending_bytes / 2 &&
        atomic_exchange(&c->drain_wanted, false))
        (void)!write(c->pipe[1], "", 1);
}

static bool
stream_or_keep(struct cluster *c, struct op *op)
{
    int state = atomic_load(&c->js_state);
    if (state == JS_ABSENT || state == JS_OFF || !c->js) return false;
    size_t n = strlen(op->subject);
    struct js_wait *w = levelmap_get(&c->js_waiting, op->subject, n);
    if (w) {
        pending_done(c, w->op->bytes);
        free(w->op);
        w->op = op;
        return true;
    }
    if (stream_has_room(c)) {
        publish_retained(c, op);
        return false;
    }
    w = lq_xmalloc(sizeof(*w));
    *w = (struct js_wait){.op = op};
    levelmap_put(&c->js_waiting, op->subject, n, w);
    *c->jw_tail = w;
    c->jw_tail = &w->next;
    atomic_store(&c->js_backlog, true);
    return true;
}

/* What was kept, to the stream, as far as there is room. */
static void
stream_kept(struct cluster *c)
{
    while (c->jw_head && stream_has_room(c)) {
        struct js_wait *w = c->jw_head;
        c->jw_head = w->next;
        if (!c->jw_head) c->jw_tail = &c->jw_head;
        struct op *op = w->op;
        levelmap_del(&c->js_waiting, op->subject, strlen(op->subject));
        free(w);
        publish_retained(c, op);
        pending_done(c, op->bytes);
        free(op);
    }
    atomic_store(&c->js_backlog, c->jw_head != NULL);
}

static void
publish(struct cluster *c, const struct op *op, char **hdr, size_t *cap)
{
    const char *h = header_of(c, op, hdr, cap);
    /* one header, not seven: each is an allocation and a line to parse on both sides */
    natsMsg *nm = NULL;
    natsStatus s =
        natsMsg_Create(&nm, op->subject, NULL, (const char *)op->payload, (int)op->payload_len);
    if (s == NATS_OK) s = natsMsgHeader_Set(nm, "Lq-Msg", h);
    /* while disconnected libnats buffers (its reconnect buffer); past it, refused */
    if (s == NATS_OK) s = natsConnection_PublishMsg(c->nc, nm);
    if (s == NATS_OK)
        atomic_fetch_add(&c->forwarded, 1);
    else
        atomic_fetch_add(&c->dropped_out, 1);
    natsMsg_Destroy(nm);
}

/* The queue connection, made with the first shared group. */
static natsConnection *
queue_connection(struct cluster *c)
{
    if (c->nq || !c->qopts) return c->nq;
    natsStatus s = natsConnection_Connect(&c->nq, c->qopts);
    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
        lq_log(LQ_LOG_ERR, "cluster: cannot use NATS at %s for shared subscriptions: %s",
               c->nats_url, natsStatus_GetText(s));
        c->nq = NULL;
    }
    return c->nq;
}

static void
queue_subscribe(struct cluster *c, struct qgroup *q)
{
    natsConnection *nq = queue_connection(c);
    for (int i = 0; nq && i < q->nsubjects; i++) {
        atomic_fetch_add(&q->refs, 1); /* the subscription's, till on_qsub_complete */
        if (natsConnection_QueueSubscribe(&q->sub[i], nq, q->subject[i], q->queue, on_qmsg, q) !=
                NATS_OK ||
            natsSubscription_SetOnCompleteCB(q->sub[i], on_qsub_complete, q) != NATS_OK) {
            if (q->sub[i]) { /* no callback set: nothing will release it */
                natsSubscription_Unsubscribe(q->sub[i]);
                natsSubscription_Destroy(q->sub[i]);
                q->sub[i] = NULL;
            }
            atomic_fetch_sub(&q->refs, 1);
        }
    }
}

static void
queue_unsubscribe(struct qgroup *q)
{
    for (int i = 0; i < q->nsubjects; i++) {
        if (!q->sub[i]) continue;
        natsSubscription_Unsubscribe(q->sub[i]); /* on_qsub_complete follows */
        natsSubscription_Destroy(q->sub[i]);
        q->sub[i] = NULL;
    }
}

static void
run_op(struct cluster *c, struct op *op, char **hdr, size_t *cap, uint64_t *sub_no)
{
    if (op->kind == OP_SUB) *sub_no = op->sub_no;
    switch (op->kind) {
    case OP_PUB:
        if (c->nc)
            publish(c, op, hdr, cap);
        else /* no connection could be made (a bad URL): counted, not kept */
            atomic_fetch_add(&c->dropped_out, 1);
        if (op->to_stream && stream_or_keep(c, op)) return; /* kept for the stream */
        pending_done(c, op->bytes);
        break;
    case OP_SUB: /* while disconnected too: libnats subscribes again on reconnecting,
                  * keep_connected on a new connection */
        op->in->prev = NULL;
        op->in->next = c->subscribed;
        if (c->subscribed) c->subscribed->prev = op->in;
        c->subscribed = op->in;
        if (c->nc &&
            natsConnection_Subscribe(&op->in->sub, c->nc, op->in->subject, on_msg, c) != NATS_OK)
            op->in->sub = NULL;
        break;
    case OP_UNSUB:
        if (op->in->prev)
            op->in->prev->next = op->in->next;
        else
            c->subscribed = op->in->next;
        if (op->in->next) op->in->next->prev = op->in->prev;
        if (op->in->sub) {
            natsSubscription_Unsubscribe(op->in->sub);
            natsSubscription_Destroy(op->in->sub);
        }
        free(op->in);
        break;
    case OP_QSUB:
        *sub_no = op->sub_no;
        queue_subscribe(c, op->qg);
        qgroup_release(op->qg); /* the op's */
        break;
    case OP_QUNSUB:
        queue_unsubscribe(op->qg);
        qgroup_release(op->qg); /* the loop's table's, handed to the op */
        break;
    }
    free(op);
}

static void
subscribe_all(struct cluster *c)
{
    for (struct interest *e = c->subscribed; e; e = e->next)
        if (natsConnection_Subscribe(&e->sub, c->nc, e->subject, on_msg, c) != NATS_OK)
            e->sub = NULL;
}

/* The first connection is made in the background (a server down at start is no
 * error); libnats reconnects it by itself. */
static void
connect_nats(struct cluster *c)
{
    natsStatus s = natsConnection_Connect(&c->nc, c->opts);
    if (s == NATS_OK)
        atomic_store(&c->connected, true);
    else if (s != NATS_NOT_YET_CONNECTED)
        c->nc = NULL; /* keep_connected says why and tries again */
    /* the next ones (keep_connected) are single attempts, whose error says why */
    natsOptions_SetRetryOnFailedConnect(c->opts, false, NULL, NULL);
}

/* libnats gives a connection up for good after a server refused its credentials twice
 * in a row: then a new one is tried every REOPEN_WAIT_MS, and once it is made this
 * node subscribes to every subject again, as libnats does on reconnecting. */
static void
keep_connected(struct cluster *c)
{
    if (c->nc && natsConnection_Status(c->nc) != NATS_CONN_STATUS_CLOSED) return;
    uint64_t now = lq_now_ms();
    if (now < c->next_attempt_ms) return;
    c->next_attempt_ms = now + REOPEN_WAIT_MS;
    atomic_store(&c->connected, false);
    if (c->nc) {
        for (struct interest *e = c->subscribed; e; e = e->next) {
            if (e->sub) natsSubscription_Destroy(e->sub);
            e->sub = NULL;
        }
        natsConnection_Destroy(c->nc);
        c->nc = NULL;
    }
    natsStatus s = natsConnection_Connect(&c->nc, c->opts);
    if (s != NATS_OK) {
        say_refused(c, &c->attempt_said, nats_error(s));
        c->nc = NULL;
        return;
    }
    atomic_store(&c->connected, true);
    atomic_fetch_add(&c->reconnects, 1);
    lq_log(LQ_LOG_NOTICE, "cluster: connected to NATS at %s", c->nats_url);
    c->attempt_said = (struct refusal){0}; /* the next failure is said at once */
    subscribe_all(c);
}

/* ---- the retained stream (the thread's) ---- */

/* libnats' last error of this thread, without its "(file.c:line): " */
static const char *
js_error(void)
{
    const char *e = nats_GetLastError(NULL);
    const char *past = e && e[0] == '(' ? strstr(e, "): ") : NULL;
    return past ? past + 3 : e ? e : "";
}

/* No stream: logged once (until a reconnection finds the same). */
static void
js_absent(struct cluster *c, const char *why, bool refused)
{
    if (atomic_load(&c->js_state) != JS_ABSENT && !refused)
        lq_log(LQ_LOG_WARNING,
               "cluster: the NATS server has no JetStream (%s): retained messages stay on "
               "each node (as with cluster_retained local) until it has",
               why);
    if (atomic_load(&c->js_state) != JS_ABSENT && refused)
        lq_log(LQ_LOG_ERR,
               "cluster: JetStream refused stream %s: %s: retained messages stay on each "
               "node (as with cluster_retained local) until a reconnection to NATS",
               c->stream, why);
    atomic_store(&c->js_state, JS_ABSENT);
    atomic_store(&c->js_nothing_to_load, true);
    (void)!write(c->pipe[1], "", 1); /* the loop looks (in_cb) */
}

static bool
js_unavailable(natsStatus s, jsErrCode jerr)
{
    return s == NATS_NO_RESPONDERS || jerr == JSNotEnabledErr || jerr == JSNotEnabledForAccountErr;
}

/* Creates the stream (or updates it to this node's settings; one that cannot be is
 * used as it is) and subscribes to it. Each step waits at most JS_WAIT_MS; on a
 * failure it is tried again JS_RETRY_MS later. */
static void
js_setup(struct cluster *c)
{
    /* a NATS cluster without JetStream lets requests time out (no "no responders"):
     * each try holds this thread JS_WAIT_MS, so they grow apart */
    c->js_backoff_ms = c->js_backoff_ms ? c->js_backoff_ms * 2 : JS_RETRY_MS;
    if (c->js_backoff_ms > JS_RETRY_MAX_MS) c->js_backoff_ms = JS_RETRY_MAX_MS;
    c->js_next_try_ms = lq_now_ms() + c->js_backoff_ms;
    if (c->rsub) { /* the consumer before a reconnection: what it delivered stays first */
        natsSubscription_Destroy(c->rsub);
        c->rsub = NULL;
    }
    char subjects[200];
    snprintf(subjects, sizeof(subjects), "%s.>", c->rprefix);
    const char *subj[1] = {subjects};
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = c->stream;
    sc.Subjects = subj;
    sc.SubjectsLen = 1;
    sc.MaxMsgsPerSubject = 1; /* the last retained message of a topic */
    sc.Storage = js_FileStorage;
    sc.Replicas = c->replicas;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_AddStream(&si, c->js, &sc, NULL, &jerr);
    if (s != NATS_OK && jerr == JSStreamNameExistErr) { /* with other settings */
        jerr = 0;
        s = js_UpdateStream(&si, c->js, &sc, NULL, &jerr);
        if (s != NATS_OK && !js_unavailable(s, jerr)) {
            lq_log(LQ_LOG_WARNING, "cluster: stream %s kept as it is (cluster_replicas %u?): %s",
                   c->stream, c->replicas, js_error());
            jerr = 0;
            s = js_GetStreamInfo(&si, c->js, c->stream, NULL, &jerr);
        }
    }
    if (js_unavailable(s, jerr)) return js_absent(c, natsStatus_GetText(s), false);
    if (s != NATS_OK && jerr) /* its answer (a setting): the same next time */
        return js_absent(c, js_error(), true);
    if (s != NATS_OK) {
        lq_log_limited(&c->js_log, LQ_LOG_WARNING,
                       "cluster: stream %s: %s: retained messages are not shared yet", c->stream,
                       js_error());
        return;
    }
    uint64_t last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = c->stream;
    so.Ordered = true; /* in stream order, none missed: libnats starts it again past a gap */
    so.Config.DeliverPolicy = js_DeliverLastPerSubject;
    jerr = 0;
    s = js_Subscribe(&c->rsub, c->js, subjects, on_retained, c, NULL, &so, &jerr);
    if (js_unavailable(s, jerr)) return js_absent(c, natsStatus_GetText(s), false);
    if (s != NATS_OK) {
        c->rsub = NULL;
        lq_log_limited(&c->js_log, LQ_LOG_WARNING, "cluster: stream %s: cannot consume it: %s (%d)",
                       c->stream, js_error(), (int)jerr);
        return;
    }
    c->js_backoff_ms = 0;
    /* loaded once what was its last message is applied (the last of its subject, or a
     * later one, comes) */
    atomic_store(&c->js_target, last + 1);
    if (last == 0) atomic_store(&c->js_nothing_to_load, true);
    atomic_store(&c->js_state, JS_READY);
    lq_log(LQ_LOG_NOTICE,
           "cluster: retained messages through JetStream stream %s (%" PRIu64 " messages)",
           c->stream, last);
    (void)!write(c->pipe[1], "", 1);
}

/* Is the stream to be set up now? After a reconnection, again: a server without
 * JetStream may have it now, one restarted may have lost the stream (created again)
 * or the consumer, and what changed meanwhile is loaded again (stores that have it
 * change nothing: the broker compares). */
static bool
js_due(struct cluster *c)
{
    int state = atomic_load(&c->js_state);
    if (state != JS_OFF && state != JS_SETUP && atomic_exchange(&c->js_retry, false)) {
        atomic_store(&c->js_state, JS_SETUP);
        c->js_next_try_ms = 0;
        state = JS_SETUP;
    }
    return state == JS_SETUP && c->js && atomic_load(&c->connected) &&
           lq_now_ms() >= c->js_next_try_ms;
}

static void
js_open(struct cluster *c)
{
    if (atomic_load(&c->js_state) == JS_OFF) return;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = JS_WAIT_MS;
    jo.PublishAsync.AckHandler = on_js_ack;
    jo.PublishAsync.AckHandlerClosure = c;
    if (!c->nc || natsConnection_JetStream(&c->js, c->nc, &jo) != NATS_OK) {
        c->js = NULL;
        atomic_store(&c->js_nothing_to_load, true);
        (void)!write(c->pipe[1], "", 1);
        return;
    }
    if (!atomic_load(&c->connected)) { /* NATS down at start: the local store, no waiting */
        atomic_store(&c->js_nothing_to_load, true);
        (void)!write(c->pipe[1], "", 1);
    }
}

static void
js_close(struct cluster *c)
{
    if (c->js && atomic_load(&c->connected)) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = 1000; /* retained messages published, into the stream (bounded) */
        if (c->jw_head) js_PublishAsyncComplete(c->js, &po);
        stream_kept(c);
        js_PublishAsyncComplete(c->js, &po);
        if (c->rsub) natsSubscription_Unsubscribe(c->rsub); /* its consumer goes */
    }
    for (struct js_wait *w = c->jw_head, *next; w; w = next) { /* not sent: failed */
        next = w->next;
        atomic_fetch_add(&c->js_failed, 1);
        pending_done(c, w->op->bytes);
        free(w->op);
        free(w);
    }
    c->jw_head = NULL;
    levelmap_fini(&c->js_waiting);
    free(c->js_hdr);
}

/* The subscriptions up to sub_no are the server's once a round trip after them came
 * back (a flush: PING, PONG): a message published anywhere from then on reaches this
 * node. While NATS is down there is nothing to wait for (libnats subscribes again on
 * connecting): confirmed at once, as after a round trip that failed. */
static void
confirm_subs(struct cluster *c, uint64_t sub_no)
{
    if (c->nc && natsConnection_Status(c->nc) == NATS_CONN_STATUS_CONNECTED)
        natsConnection_FlushTimeout(c->nc, CONFIRM_TIMEOUT_MS);
    if (c->nq && natsConnection_Status(c->nq) == NATS_CONN_STATUS_CONNECTED)
        natsConnection_FlushTimeout(c->nq, CONFIRM_TIMEOUT_MS);
    atomic_store(&c->subs_confirmed, sub_no);
    (void)!write(c->pipe[1], "", 1); /* the loop looks (in_cb) */
}

static void *
thread_main(void *arg)
{
    struct cluster *c = arg;
    connect_nats(c);
    csessions_start(c->sessions, c->sopts); /* on its own connection */
    js_open(c);
    char *hex = NULL;
    size_t caphex = 0;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->todo && !c->stop && !js_due(c) &&
               !(c->jw_head && atomic_load(&c->connected) &&
                 atomic_load(&c->js_pending) <= JS_MAX_PENDING / 2)) {
            c->thread_idle = true;
            /* keep_connected's turn; or, after a JetStream set-up that failed, again
             * soon (a connection wakes it anyway) */
            bool js_soon =
                atomic_load(&c->js_state) == JS_SETUP && c->js && atomic_load(&c->connected);
            long wait_ms = js_soon ? 250 : RETRY_WAIT_MS;
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until); /* the condition's clock */
            until.tv_nsec += wait_ms * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            if (pthread_cond_timedwait(&c->cv, &c->mu, &until) == ETIMEDOUT) {
                pthread_mutex_unlock(&c->mu);
                keep_connected(c);
                pthread_mutex_lock(&c->mu);
            }
        }
        c->thread_idle = false;
        struct op *ops = c->todo;
        c->todo = NULL;
        c->todo_tail = &c->todo;
        bool stop = c->stop;
        bool js_now = !stop && js_due(c); /* under traffic too */
        pthread_mutex_unlock(&c->mu);
        if (js_now) js_setup(c);
        /* subscriptions first, and confirmed, then the messages: a SUBACK waits for
         * its subscription, not for a backlog of messages out (whose order among
         * themselves is kept) */
        uint64_t sub_no = 0;
        struct op *pubs = NULL, **pubs_tail = &pubs;
        for (struct op *op = ops, *next; op; op = next) {
            next = op->next;
            if (op->kind == OP_PUB) {
                op->next = NULL;
                *pubs_tail = op;
                pubs_tail = &op->next;
                continue;
            }
            run_op(c, op, &hex, &caphex, &sub_no);
        }
        keep_connected(c); /* a busy thread never times out waiting */
        if (sub_no) confirm_subs(c, sub_no);
        for (struct op *op = pubs, *next; op; op = next) {
            next = op->next;
            run_op(c, op, &hex, &caphex, &sub_no);
        }
        if (c->jw_head) stream_kept(c);
        if (!stop) {
            struct timespec nap = {0, PACE_US * 1000L};
            nanosleep(&nap, NULL);
        }
        pthread_mutex_lock(&c->mu);
        if (stop && !c->todo) break;
    }
    pthread_mutex_unlock(&c->mu);
    free(hex);
    csessions_stop(c->sessions); /* its requests use the connection */
    js_close(c);
    if (c->nc) {
        natsConnection_FlushTimeout(c->nc, 1000); /* what was published, out (bounded) */
        natsConnection_Close(c->nc);
    }
    if (c->nq) natsConnection_Close(c->nq);
    return NULL;
}

/* ---- the loop: handing work over ---- */

static void
handoff_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct cluster *c = arg;
    c->handoff_armed = false;
    if (!c->open) return;
    pthread_mutex_lock(&c->mu); /* once per loop turn, not per message */
    *c->todo_tail = c->open;
    c->todo_tail = c->open_tail;
    if (c->thread_idle) pthread_cond_signal(&c->cv); /* else it looks after its nap */
    pthread_mutex_unlock(&c->mu);
    c->open = NULL;
    c->open_tail = &c->open;
}

static void
queue_op(struct cluster *c, struct op *op)
{
    op->next = NULL;
    *c->open_tail = op;
    c->open_tail = &op->next;
    if (!c->handoff_armed) {
        c->handoff_armed = true;
        event_active(c->handoff_ev, EV_TIMEOUT, 0);
    }
}

static bool
matches_any(char *const *filters, size_t n, const char *topic, size_t tlen)
{
    for (size_t i = 0; i < n; i++)
        if (topic_matches(filters[i], strlen(filters[i]), topic, tlen)) return true;
    return false;
}

/* Past the bound: the publisher is held (true), or the message is not forwarded. */
static bool
forward_over(struct cluster *c, bool may_hold)
{
    if (may_hold && atomic_load(&c->connected)) {
        c->held++;
        if (!c->over) {
            c->over = true;
            atomic_store(&c->drain_wanted, true); /* before the message is handed over */
        }
        return true;
    }
    c->dropped_out_loop++;
    lq_log_limited(&c->drop_log, LQ_LOG_WARNING,
                   "cluster: %llu bytes wait for NATS (cluster_max_pending_bytes %llu)%s: "
                   "QoS 0 messages are not forwarded to other nodes until they are sent",
                   (unsigned long long)atomic_load(&c->pending_out),
                   (unsigned long long)c->max_pending_bytes,
                   atomic_load(&c->connected) ? "" : " or NATS is down");
    return false;
}

/* Is topic one this node shares (cluster_topic, cluster_topic_local, never $SYS)? */
static bool
shared_topic(const struct cluster *c, const char *topic, size_t tlen)
{
    if (topic_is_sys(topic, tlen)) return false;
    if (c->ntopics && !matches_any(c->topics, c->ntopics, topic, tlen)) return false;
    return !matches_any(c->topics_local, c->ntopics_local, topic, tlen);
}

unsigned
cluster_forward(struct cluster *c, const struct msg *m, bool may_hold)
{
    if (!c || !shared_topic(c, m->topic, m->topic_len)) return 0;
    uint32_t expiry = 0;
    if (m->has_expiry) {
        uint64_t now = lq_now_ms();
        if (m->expire_at_ms <= now) return 0;
        expiry = (uint32_t)((m->expire_at_ms - now + 999) / 1000);
    }
    size_t slen =
        cluster_subject_of_topic(c->prefix, m->topic, m->topic_len, c->subject_buf, SUBJECT_MAX);
    if (!slen) {
        c->dropped_out_loop++;
        return 0;
    }
    uint64_t bytes = sizeof(struct op) + slen + 1 + m->payload_len + m->props_len;
    unsigned out = 0;
    if (atomic_load(&c->pending_out) + bytes + MSG_OVERHEAD > c->max_pending_bytes) {
        if (!forward_over(c, may_hold)) return 0;
        out |= CLUSTER_HOLD;
    }
    /* while NATS is down the groups here are served here; what libnats keeps for a
     * reconnection then goes to other nodes' plain subscriptions only */
    if (atomic_load(&c->connected)) out |= CLUSTER_GROUPS;
    struct op *op = lq_xmalloc(bytes);
    *op = (struct op){.kind = OP_PUB,
                      .seq = ++c->next_seq,
                      .bytes = bytes + MSG_OVERHEAD,
                      .expiry = expiry,
                      .payload_len = m->payload_len,
                      .props_len = m->props_len,
                      .qos = m->qos,
                      .retain = m->retain,
                      .has_expiry = m->has_expiry,
                      .groups = out & CLUSTER_GROUPS,
                      .to_stream = m->retain && c->stream_wanted};
    uint8_t *p = op->data;
    memcpy(p, c->subject_buf, slen + 1);
    op->subject = (const char *)p;
    p += slen + 1;
    if (m->payload_len) memcpy(p, m->payload, m->payload_len);
    op->payload = p;
    p += m->payload_len;
    if (m->props_len) memcpy(p, m->props, m->props_len);
    op->props = p;
    atomic_fetch_add(&c->pending_out, op->bytes);
    queue_op(c, op);
    return out;
}

bool
cluster_over(const struct cluster *c)
{
    return c && c->over;
}

/* ---- interest ---- */

static void
interest_one(struct cluster *c, const char *subject, int delta)
{
    size_t n = strlen(subject);
    struct interest *e = levelmap_get(&c->interest, subject, n);
    if (delta > 0) {
        if (!e) {
            e = lq_xcalloc(1, sizeof(*e) + n + 1);
            memcpy(e->subject, subject, n + 1);
            levelmap_put(&c->interest, subject, n, e);
            struct op *op = lq_xcalloc(1, sizeof(*op));
            op->kind = OP_SUB;
            op->in = e;
            op->sub_no = ++c->subs_queued;
            queue_op(c, op);
        }
        e->refs++;
        return;
    }
    if (!e || --e->refs) return;
    levelmap_del(&c->interest, subject, n); /* the thread frees e after unsubscribing */
    struct op *op = lq_xcalloc(1, sizeof(*op));
    op->kind = OP_UNSUB;
    op->in = e;
    queue_op(c, op);
}

void
cluster_interest(struct cluster *c, const char *filter, size_t flen, int delta)
{
    if (!c || topic_is_sys(filter, flen)) return; /* $SYS is each node's own */
    int n = cluster_subjects_of_filter(c->prefix, filter, flen, c->filter_buf, SUBJECT_MAX);
    for (int i = 0; i < n; i++) interest_one(c, c->filter_buf[i], delta);
}

/* The NATS queue group of (group, filter): the same name on every node. */
static void
queue_name(const char *key, size_t klen, char out[34])
{
    uint8_t h[32];
    mbedtls_sha256((const unsigned char *)key, klen, h, 0);
    out[0] = 'q';
    hex_of(h, 16, out + 1);
}

void
cluster_interest_shared(struct cluster *c, const char *group, size_t glen, const char *filter,
                        size_t flen, int delta)
{
    if (!c || topic_is_sys(filter, flen)) return;
    size_t klen = glen + 1 + flen;
    char *key = c->topic_buf; /* group NUL filter: the table's key */
    if (klen > 65536) return; /* a filter of 65535 bytes has no room for a group */
    memcpy(key, group, glen);
    key[glen] = '\0';
    memcpy(key + glen + 1, filter, flen);
    struct qgroup *q = levelmap_get(&c->qgroups, key, klen);
    if (delta > 0) {
        if (!q) {
            int n = cluster_subjects_of_filter(c->prefix, filter, flen, c->filter_buf, SUBJECT_MAX);
            if (n <= 0) return;
            q = lq_xcalloc(1, sizeof(*q) + klen + 1);
            q->c = c;
            atomic_init(&q->refs, 2); /* the table's and the op's */
            memcpy(q->key, key, klen);
            q->glen = glen;
            q->flen = flen;
            queue_name(key, klen, q->queue);
            q->nsubjects = n;
            for (int i = 0; i < n; i++) q->subject[i] = lq_xstrdup(c->filter_buf[i]);
            levelmap_put(&c->qgroups, key, klen, q);
            struct op *op = lq_xcalloc(1, sizeof(*op));
            op->kind = OP_QSUB;
            op->qg = q;
            op->sub_no = ++c->subs_queued;
            queue_op(c, op);
        }
        q->members++;
        return;
    }
    if (!q || --q->members) return;
    levelmap_del(&c->qgroups, key, klen);
    struct op *op = lq_xcalloc(1, sizeof(*op));
    op->kind = OP_QUNSUB;
    op->qg = q; /* with the table's reference */
    queue_op(c, op);
}

/* ---- the loop: what came in ---- */

/* Has this run's message seq been routed here already? */
static bool
seen_before(struct cluster *c, const char *node, size_t nlen, const char *run, uint64_t seq)
{
    struct seen *x = NULL, *oldest = &c->seen[0];
    for (size_t i = 0; i < SEEN_RUNS && !x; i++) {
        if (strcmp(c->seen[i].run, run) == 0) x = &c->seen[i];
        if (c->seen[i].used < oldest->used) oldest = &c->seen[i];
    }
    if (!x) {
        x = oldest;
        memset(x, 0, sizeof(*x));
        snprintf(x->run, sizeof(x->run), "%s", run);
    }
    snprintf(x->node, sizeof(x->node), "%.*s", (int)(nlen < 63 ? nlen : 63), node);
    x->last_seen = lq_wall_time();
    x->used = ++c->seen_clock;
    if (seq > x->high) {
        if (seq - x->high >= SEEN_WINDOW) {
            memset(x->bits, 0, sizeof(x->bits));
        } else {
            for (uint64_t s = x->high + 1; s < seq; s++)
                x->bits[s % SEEN_WINDOW / 64] &= ~(1ull << (s % 64));
        }
        x->high = seq;
    } else if (x->high - seq >= SEEN_WINDOW) {
        return false; /* older than the window: taken as new (rare: a copy reordered that far) */
    } else if (x->bits[seq % SEEN_WINDOW / 64] & (1ull << (seq % 64))) {
        return true;
    }
    x->bits[seq % SEEN_WINDOW / 64] |= 1ull << (seq % 64);
    x->received++;
    return false;
}

static const char *
header(natsMsg *nm, const char *key)
{
    const char *v = NULL;
    return natsMsgHeader_Get(nm, key, &v) == NATS_OK ? v : NULL;
}

static int
hex_digit(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static void
bad_message(struct cluster *c, natsMsg *nm, const char *why)
{
    c->bad_in++;
    lq_log_limited(&c->bad_log, LQ_LOG_WARNING,
                   "cluster: a message on \"%.200s\" from NATS: %s: dropped",
                   natsMsg_GetSubject(nm), why);
}

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

/* Why nm's header is not ours, or NULL when x is it. */
static const char *
parse_header(natsMsg *nm, struct lq_header *x)
{
    const char *h = header(nm, "Lq-Msg");
    const char *at = h ? strchr(h, ' ') : NULL; /* past the origin */
    size_t rl = at ? strcspn(at + 1, " ") : 0;
    if (!at || rl == 0 || rl >= sizeof(x->run)) return "no Lq-Msg header";
    x->origin = h;
    x->nlen = (size_t)(at - h);
    memcpy(x->run, at + 1, rl);
    x->run[rl] = '\0';
    at += 1 + rl;
    char *end;
    errno = 0;
    x->seq = strtoull(at, &end, 10);
    if (errno || end == at || *end != ' ') return "bad Lq-Msg sequence";
    at = end + 1;
    if (at[0] < '0' || at[0] > '2' || at[1] != ' ') return "bad Lq-Msg QoS";
    x->qos = (uint8_t)(at[0] - '0');
    x->retain = x->groups = false;
    bool none = false;
    for (at += 2; *at && *at != ' '; at++) {
        if (*at == 'r')
            x->retain = true;
        else if (*at == 'g')
            x->groups = true;
        else if (*at == '-')
            none = true;
        else
            return "bad Lq-Msg flags";
    }
    if (*at != ' ' || none == (x->retain || x->groups)) return "bad Lq-Msg flags";
    at++;
    x->has_expiry = *at != '-';
    x->expiry = 0;
    if (x->has_expiry) {
        errno = 0;
        unsigned long long e = strtoull(at, &end, 10);
        if (errno || end == at || e > UINT32_MAX || (*end && *end != ' '))
            return "bad Lq-Msg expiry";
        x->expiry = (uint32_t)e;
        at = end;
    } else {
        at++;
    }
    x->props_hex = *at == ' ' ? at + 1 : "";
    if (*at && *at != ' ') return "bad Lq-Msg";
    x->hl = strlen(x->props_hex);
    if (x->hl % 2 || x->hl / 2 > 65535u * 4) return "bad Lq-Msg properties";
    return NULL;
}

/* The topic of subject (prefix, '.', tokens) into c->topic_buf: its length, or -1. */
static long
topic_of(struct cluster *c, const char *subject, const char *prefix)
{
    size_t plen = strlen(prefix);
    if (strncmp(subject, prefix, plen) != 0 || subject[plen] != '.') return -1;
    const char *tokens = subject + plen + 1;
    long tlen = cluster_topic_of_subject(tokens, strlen(tokens), c->topic_buf, 65535);
    if (tlen <= 0 || !topic_name_is_valid(c->topic_buf, (size_t)tlen) ||
        !mqtt_utf8_is_valid((const uint8_t *)c->topic_buf, (size_t)tlen))
        return -1;
    return tlen;
}

/* The message nm and x describe, on the topic in c->topic_buf; empty: without its
 * payload; expire_at_ms: 0, or when it expires. NULL when the properties are bad. */
static struct msg *
msg_of(struct cluster *c, natsMsg *nm, const struct lq_header *x, long tlen, bool empty,
       uint64_t expire_at_ms)
{
    uint8_t small[256];
    uint8_t *props = x->hl / 2 <= sizeof(small) ? small : lq_xmalloc(x->hl / 2);
    for (size_t i = 0; i < x->hl / 2; i++) {
        int hi = hex_digit(x->props_hex[2 * i]), lo = hex_digit(x->props_hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            if (props != small) free(props);
            return NULL;
        }
        props[i] = (uint8_t)(hi << 4 | lo);
    }
    struct msg_init in = {.topic = c->topic_buf,
                          .topic_len = (size_t)tlen,
                          .payload = (const uint8_t *)natsMsg_GetData(nm),
                          .payload_len = empty ? 0 : (size_t)natsMsg_GetDataLength(nm),
                          .props = x->hl ? props : NULL,
                          .props_len = x->hl / 2,
                          .qos = x->qos,
                          .retain = x->retain,
                          .has_expiry = x->has_expiry,
                          .expiry_interval = x->expiry,
                          .expire_at_ms = expire_at_ms};
    struct msg *m = msg_new(&in);
    if (props != small) free(props);
    return m;
}

/* SUBACKs wait no longer for the retained stream. */
static void
retained_loaded(struct cluster *c)
{
    if (c->loaded) return;
    c->loaded = true;
    if (c->load_ev) event_del(c->load_ev);
    if (c->ready) c->ready(c->ud);
}

/* An update from the retained stream: stored here, not routed. Its expiry counts from
 * when the stream stored it. */
static void
take_retained(struct cluster *c, natsMsg *nm)
{
    long tlen = topic_of(c, natsMsg_GetSubject(nm), c->rprefix);
    if (tlen < 0) return bad_message(c, nm, "not a topic's subject");
    struct lq_header x;
    const char *why = parse_header(nm, &x);
    if (why) return bad_message(c, nm, why);
    jsMsgMetaData *meta = NULL;
    if (natsMsg_GetMetaData(&meta, nm) != NATS_OK) return bad_message(c, nm, "no stream metadata");
    uint64_t seq = meta->Sequence.Stream, pending = meta->NumPending;
    double stored = (double)meta->Timestamp / 1e9;
    jsMsgMetaData_Destroy(meta);
    if (shared_topic(c, c->topic_buf, (size_t)tlen)) {
        uint64_t expire_at = 0;
        bool expired = false;
        if (x.has_expiry) {
            double age = lq_wall_time() - stored;
            double left_ms = (double)x.expiry * 1000.0 - (age > 0 ? age * 1000.0 : 0);
            expired = left_ms < 1;
            expire_at = expired ? 0 : lq_now_ms() + (uint64_t)left_ms;
        }
        struct msg *m = msg_of(c, nm, &x, tlen, expired, expire_at); /* expired: a clear */
        if (!m) return bad_message(c, nm, "bad Lq-Msg properties");
        c->retained_in++;
        c->store_retained(m, c->ud);
        msg_unref(m);
    }
    uint64_t target = atomic_load(&c->js_target);
    if (target && (seq + 1 >= target || pending == 0)) retained_loaded(c);
}

static void
take_one(struct cluster *c, natsMsg *nm, const struct qgroup *q)
{
    const char *subject = natsMsg_GetSubject(nm);
    size_t rl = strlen(c->rprefix);
    if (!q && strncmp(subject, c->rprefix, rl) == 0 && subject[rl] == '.')
        return take_retained(c, nm);
    long tlen = topic_of(c, subject, c->prefix);
    if (tlen < 0) return bad_message(c, nm, "not a topic's subject of this cluster");
    struct lq_header x;
    const char *why = parse_header(nm, &x);
    if (why) return bad_message(c, nm, why);
    if (q) {
        /* a queue group's copy, once per message: this node's own too. Without 'g'
         * its node served its groups itself (NATS was down when it was taken). */
        if (!x.groups) return;
    } else {
        if (strcmp(x.run, c->run) == 0) return; /* our own (no echo asked: defensive) */
        if (seen_before(c, x.origin, x.nlen, x.run, x.seq)) {
            c->duplicates++;
            return;
        }
    }
    struct msg *m = msg_of(c, nm, &x, tlen, false, 0);
    if (!m) return bad_message(c, nm, "bad Lq-Msg properties");
    if (q) {
        c->received_shared++;
        c->deliver(m, q->key, q->glen, q->key + q->glen + 1, q->flen, c->ud);
    } else {
        c->received++;
        c->deliver(m, NULL, 0, NULL, 0, c->ud);
    }
    msg_unref(m);
}

/* The whole inbox at once, into work (one lock for all of it). */
static void
take_inbox(struct cluster *c)
{
    pthread_mutex_lock(&c->in_mu);
    struct in_msg *v = c->in;
    size_t n = c->nin, cap = c->capin;
    c->in = c->work;
    c->capin = c->capwork;
    c->nin = 0;
    c->in_bytes = 0;
    c->in_woken = false; /* the next message wakes the loop again */
    pthread_mutex_unlock(&c->in_mu);
    c->work = v;
    c->capwork = cap;
    c->nwork = n;
    c->work_at = 0;
}

/* Routes what came in, IN_SLICE_MS at a time; the next slice after the loop has
 * polled for I/O (event_active would run it in this same loop turn, and the whole
 * burst with it). Once work is done, the inbox again: what came meanwhile did not
 * wake the loop (in_woken was still set). */
static void
route_work(struct cluster *c)
{
    uint64_t end = lq_now_ms() + IN_SLICE_MS;
    for (;;) {
        while (c->work_at < c->nwork) {
            struct in_msg *x = &c->work[c->work_at++];
            take_one(c, x->m, x->q);
            natsMsg_Destroy(x->m);
            if (x->q) qgroup_release(x->q);
            if ((c->work_at & 63) == 0 && lq_now_ms() >= end) {
                static const struct timeval now = {0, 0};
                if (event_add(c->more_ev, &now) < 0) event_active(c->more_ev, EV_TIMEOUT, 0);
                return;
            }
        }
        take_inbox(c);
        if (!c->nwork) return;
    }
}

static void
load_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct cluster *c = arg;
    if (!c->loaded)
        lq_log(LQ_LOG_NOTICE,
               "cluster: the retained stream is not loaded after %d ms: "
               "SUBSCRIBEs get what this node has, the rest as it comes",
               LOAD_TIMEOUT_MS);
    retained_loaded(c);
}

static void
more_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    route_work(arg);
}

/* Are the messages waiting for NATS down to half the bound? If not, the thread is
 * asked to say when they are (it may have just said so, for a level since passed). */
static bool
drained(struct cluster *c)
{
    uint64_t half = c->max_pending_bytes / 2;
    if (atomic_load(&c->pending_out) <= half) return true;
    atomic_store(&c->drain_wanted, true);
    return atomic_load(&c->pending_out) <= half; /* it went down meanwhile */
}

static void
in_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct cluster *c = arg;
    char drain[64];
    while (read(fd, drain, sizeof(drain)) > 0) {
    }
    bool ready = false;
    uint64_t confirmed = atomic_load(&c->subs_confirmed);
    if (confirmed > c->subs_told) { /* SUBACKs may go */
        c->subs_told = confirmed;
        ready = true;
    }
    if (c->over && drained(c)) {
        c->over = false; /* held publishers may go */
        ready = true;
    }
    if (ready && c->ready) c->ready(c->ud);
    if (!c->loaded && atomic_load(&c->js_nothing_to_load)) retained_loaded(c);
    if (c->work_at < c->nwork) return; /* a slice is due: it takes the inbox after */
    route_work(c);
}

/* ---- life cycle ---- */

/* path can be read: what libnats would find out later, in its threads, is said now */
static bool
readable(const char *option, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s %s: cannot read: %s", option, path, strerror(errno));
        return false;
    }
    fclose(f);
    return true;
}

/* A .creds file holds the user's JWT and its NKey seed (libnats reads it at each
 * connection attempt, so a wrong file would only show as refused connections). */
static bool
credentials_usable(const char *path, char *err, size_t errlen)
{
    if (!readable("cluster_nats_credentials", path, err, errlen)) return false;
    FILE *f = fopen(path, "r");
    char buf[16384];
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = '\0';
    if (strstr(buf, "BEGIN NATS USER JWT") && strstr(buf, "BEGIN USER NKEY SEED")) return true;
    snprintf(err, errlen,
             "cluster_nats_credentials %s: not a NATS credentials file (a user JWT "
             "and its NKey seed)",
             path);
    return false;
}

/* The comma-separated URLs of nats_url, as libnats' list of servers (its SetURL takes
 * one URL only). */
static natsStatus
set_servers(natsOptions *o, const char *nats_url)
{
    char *copy = lq_xstrdup(nats_url), *save = NULL;
    const char **urls = lq_xcalloc(strlen(nats_url) / 2 + 1, sizeof(*urls));
    int n = 0;
    for (char *u = strtok_r(copy, ", \t", &save); u; u = strtok_r(NULL, ", \t", &save))
        urls[n++] = u;
    natsStatus s = n ? natsOptions_SetServers(o, urls, n) : NATS_INVALID_ARG;
    free(urls);
    free(copy);
    return s;
}

/* libnats' options for c, its files loaded (TLS files are read here, on the loop
 * thread: a bad one is an error at start). */
static bool
make_options(struct cluster *c, const struct cluster_conf *conf, bool queue, natsOptions **out,
             char *err, size_t errlen)
{
    if (!conf->certfile != !conf->keyfile) {
        snprintf(err, errlen, "cluster_nats_certfile and cluster_nats_keyfile go together");
        return false;
    }
    if ((conf->cafile && !readable("cluster_nats_cafile", conf->cafile, err, errlen)) ||
        (conf->certfile && !readable("cluster_nats_certfile", conf->certfile, err, errlen)) ||
        (conf->keyfile && !readable("cluster_nats_keyfile", conf->keyfile, err, errlen)) ||
        (conf->credentials && !credentials_usable(conf->credentials, err, errlen)))
        return false;
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    const char *what = "options";
    if (s == NATS_OK) s = set_servers(o, c->nats_url);
    if (s == NATS_OK) s = natsOptions_SetName(o, c->node_id);
    /* the servers in the order given: each node lists its nearest first */
    if (s == NATS_OK) s = natsOptions_SetNoRandomize(o, true);
    if (s == NATS_OK && c->username) s = natsOptions_SetUserInfo(o, c->username, c->password);
    if (s == NATS_OK && conf->credentials) {
        what = "cluster_nats_credentials";
        s = natsOptions_SetUserCredentialsFromFiles(o, conf->credentials, NULL);
    }
    /* a client certificate is for TLS too; a tls:// URL turns it on by itself */
    if (s == NATS_OK && (conf->cafile || conf->certfile)) s = natsOptions_SetSecure(o, true);
    if (s == NATS_OK && conf->cafile) {
        what = "cluster_nats_cafile";
        s = natsOptions_LoadCATrustedCertificates(o, conf->cafile);
    }
    if (s == NATS_OK && conf->certfile) {
        what = "cluster_nats_certfile/keyfile";
        s = natsOptions_LoadCertificatesChain(o, conf->certfile, conf->keyfile);
    }
    if (s == NATS_OK) what = "options";
    /* never our own messages back; but the queue connection (shared groups) hears
     * them, as this node's members take turns with the others */
    if (s == NATS_OK) s = natsOptions_SetNoEcho(o, !queue);
    if (s == NATS_OK) s = natsOptions_SetAllowReconnect(o, true);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1); /* for ever */
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, RETRY_WAIT_MS);
    if (s == NATS_OK && !queue) s = natsOptions_SetCustomReconnectDelay(o, on_retry, c);
    /* what was taken while NATS was up goes out after a reconnection, not refused */
    if (s == NATS_OK)
        s = natsOptions_SetReconnectBufSize(
            o, c->max_pending_bytes < INT_MAX ? (int)c->max_pending_bytes : INT_MAX);
    /* a server that stops reading is dropped (and reconnected to) after this: the
     * publishers held meanwhile go on, and cross-node messages are refused instead */
    if (s == NATS_OK) s = natsOptions_SetWriteDeadline(o, WRITE_DEADLINE_MS);
    /* one delivery thread for all subjects, not one per subscription */
    if (s == NATS_OK) s = natsOptions_UseGlobalMessageDelivery(o, true);
    if (s == NATS_OK && !queue) s = natsOptions_SetDisconnectedCB(o, on_disconnected, c);
    if (s == NATS_OK && !queue) s = natsOptions_SetReconnectedCB(o, on_reconnected, c);
    if (s == NATS_OK) s = natsOptions_SetErrorHandler(o, on_error, c);
    /* a server down at start is no error: connect in the background */
    if (s == NATS_OK)
        s = natsOptions_SetRetryOnFailedConnect(o, true, queue ? NULL : on_connected, c);
    if (s != NATS_OK) {
        snprintf(err, errlen, "cluster: NATS %s: %s", what, nats_error(s));
        natsOptions_Destroy(o);
        return false;
    }
    *out = o;
    return true;
}

struct cluster *
cluster_open(struct event_base *base, const struct cluster_conf *conf, cluster_deliver_fn deliver,
             void (*ready)(void *ud), cluster_takeover_fn takeover, void *ud, char *err,
             size_t errlen)
{
    char host[256] = "";
    const char *node = conf->node_id;
    if (!node) {
        gethostname(host, sizeof(host) - 1);
        for (char *h = host; *h; h++) /* a host name can have dots: not in a token */
            if (*h == '.') *h = '\0';
        node = host;
    }
    if (!is_token(conf->name)) {
        snprintf(err, errlen, "cluster_name '%s': letters, digits, '-' and '_' only",
                 conf->name ? conf->name : "");
        return NULL;
    }
    if (!is_token(node)) {
        snprintf(err, errlen, "cluster_node_id '%s': letters, digits, '-' and '_' only", node);
        return NULL;
    }
    for (size_t i = 0; i < conf->ntopics + conf->ntopics_local; i++) {
        const char *f = i < conf->ntopics ? conf->topics[i] : conf->topics_local[i - conf->ntopics];
        if (!topic_filter_is_valid(f, strlen(f)) || strncmp(f, "$share/", 7) == 0) {
            snprintf(err, errlen, "%s '%s': not a topic filter",
                     i < conf->ntopics ? "cluster_topic" : "cluster_topic_local", f);
            return NULL;
        }
    }
    struct cluster *c = lq_xcalloc(1, sizeof(*c));
    c->topics = lq_xcalloc(conf->ntopics + 1, sizeof(char *));
    c->topics_local = lq_xcalloc(conf->ntopics_local + 1, sizeof(char *));
    for (size_t i = 0; i < conf->ntopics; i++)
        c->topics[c->ntopics++] = lq_xstrdup(conf->topics[i]);
    for (size_t i = 0; i < conf->ntopics_local; i++)
        c->topics_local[c->ntopics_local++] = lq_xstrdup(conf->topics_local[i]);
    c->name = lq_xstrdup(conf->name);
    c->node_id = lq_xstrdup(node);
    c->nats_url = lq_xstrdup(conf->nats_url ? conf->nats_url : DEFAULT_URL);
    c->username = dup_or_null(conf->username);
    c->password = dup_or_null(conf->password);
    c->max_pending_bytes = conf->max_pending_bytes ? conf->max_pending_bytes : 64u << 20;
    snprintf(c->prefix, sizeof(c->prefix), "lq.%s.m", c->name);
    snprintf(c->rprefix, sizeof(c->rprefix), "lq.%s.r", c->name); /* as long: publish_retained */
    snprintf(c->stream, sizeof(c->stream), "LQ_%s_RETAINED", c->name);
    c->replicas = conf->replicas ? conf->replicas : 1;
    c->stream_wanted = !conf->retained_local && conf->store_retained;
    c->store_retained = conf->store_retained;
    c->loaded = !c->stream_wanted;
    atomic_store(&c->js_state, c->stream_wanted ? JS_SETUP : JS_OFF);
    uint64_t r = 0; /* a run: another start of this node is another sequence */
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
        r = (uint64_t)getpid() << 32 ^ (uint64_t)(lq_wall_time() * 1e6);
    snprintf(c->run, sizeof(c->run), "%016" PRIx64, r);
    c->deliver = deliver;
    c->ready = ready;
    c->ud = ud;
    c->open_tail = &c->open;
    c->todo_tail = &c->todo;
    c->jw_tail = &c->jw_head;
    c->subject_buf = lq_xmalloc(SUBJECT_MAX);
    c->filter_buf[0] = lq_xmalloc(SUBJECT_MAX);
    c->filter_buf[1] = lq_xmalloc(SUBJECT_MAX);
    c->topic_buf = lq_xmalloc(65536);
    c->pipe[0] = c->pipe[1] = -1;
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca; /* timed waits on the monotonic clock */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&c->in_mu, NULL);
    if (!make_options(c, conf, false, &c->opts, err, errlen) ||
        !make_options(c, conf, true, &c->qopts, err, errlen) ||
        (conf->sessions && !make_options(c, conf, true, &c->sopts, err, errlen))) {
        cluster_close(c);
        return NULL;
    }
    /* the sessions thread tries once, and says "partition" meanwhile, not waiting */
    if (c->sopts) natsOptions_SetRetryOnFailedConnect(c->sopts, false, NULL, NULL);
    if (conf->sessions &&
        !(c->sessions = csessions_new(base, c->name, c->node_id, c->run,
                                      conf->takeover_ms ? conf->takeover_ms : 5000, conf->replicas,
                                      takeover, ud))) {
        snprintf(err, errlen, "cluster: cannot set up its sessions");
        cluster_close(c);
        return NULL;
    }
    if (pipe(c->pipe) < 0 || fcntl(c->pipe[0], F_SETFL, O_NONBLOCK) < 0 ||
        fcntl(c->pipe[1], F_SETFL, O_NONBLOCK) < 0 ||
        !(c->handoff_ev = event_new(base, -1, 0, handoff_cb, c)) ||
        !(c->more_ev = event_new(base, -1, 0, more_cb, c)) ||
        !(c->load_ev = event_new(base, -1, 0, load_cb, c)) ||
        !(c->in_ev = event_new(base, c->pipe[0], EV_READ | EV_PERSIST, in_cb, c)) ||
        event_add(c->in_ev, NULL) < 0) {
        snprintf(err, errlen, "cluster: cannot set up its events: %s", strerror(errno));
        cluster_close(c);
        return NULL;
    }
    if (pthread_create(&c->thread, NULL, thread_main, c) != 0) {
        snprintf(err, errlen, "cluster: cannot start its thread");
        cluster_close(c);
        return NULL;
    }
    c->thread_started = true;
    if (!c->loaded) {
        struct timeval t = {LOAD_TIMEOUT_MS / 1000, LOAD_TIMEOUT_MS % 1000 * 1000};
        event_add(c->load_ev, &t);
    }
    lq_log(LQ_LOG_NOTICE, "cluster %s: node %s, NATS at %s%s%s", c->name, c->node_id, c->nats_url,
           conf->cafile || conf->certfile ? " (TLS)" : "",
           conf->credentials ? " (credentials file)" : "");
    return c;
}

void
cluster_close(struct cluster *c)
{
    if (!c) return;
    if (c->handoff_ev) handoff_cb(-1, 0, c); /* what the loop has, to the thread */
    if (c->thread_started) {
        pthread_mutex_lock(&c->mu);
        c->stop = true;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
    }
    csessions_free(c->sessions);
    for (struct op *op = c->todo, *next; op; op = next) { /* never started: not run */
        next = op->next;
        if (op->kind == OP_UNSUB) free(op->in);
        if (op->kind == OP_QSUB || op->kind == OP_QUNSUB) qgroup_release(op->qg);
        free(op);
    }
    for (uint32_t i = 0; i < c->qgroups.cap; i++) {
        for (struct levelmap_entry *x = c->qgroups.b[i]; x; x = x->next) {
            queue_unsubscribe(x->val); /* the thread is gone: the loop may */
            qgroup_release(x->val);    /* the table's */
        }
    }
    levelmap_fini(&c->qgroups);
    for (uint32_t i = 0; i < c->interest.cap; i++) {
        for (struct levelmap_entry *x = c->interest.b[i]; x; x = x->next) {
            struct interest *e = x->val;
            if (e->sub) natsSubscription_Destroy(e->sub);
            free(e);
        }
    }
    levelmap_fini(&c->interest);
    if (c->rsub) natsSubscription_Destroy(c->rsub);
    if (c->js) jsCtx_Destroy(c->js);
    if (c->nc) natsConnection_Destroy(c->nc);
    if (c->nq) natsConnection_Destroy(c->nq);
    if (c->opts) natsOptions_Destroy(c->opts);
    if (c->qopts) natsOptions_Destroy(c->qopts);
    if (c->sopts) natsOptions_Destroy(c->sopts);
    nats_CloseAndWait(2000); /* libnats' threads (and on_qsub_complete) are done */
    for (size_t i = 0; i < c->nin; i++) {
        natsMsg_Destroy(c->in[i].m);
        if (c->in[i].q) qgroup_release(c->in[i].q);
    }
    for (size_t i = c->work_at; i < c->nwork; i++) {
        natsMsg_Destroy(c->work[i].m);
        if (c->work[i].q) qgroup_release(c->work[i].q);
    }
    free(c->in);
    free(c->work);
    if (c->handoff_ev) event_free(c->handoff_ev);
    if (c->more_ev) event_free(c->more_ev);
    if (c->load_ev) event_free(c->load_ev);
    if (c->in_ev) event_free(c->in_ev);
    if (c->pipe[0] >= 0) close(c->pipe[0]);
    if (c->pipe[1] >= 0) close(c->pipe[1]);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->in_mu);
    free(c->subject_buf);
    free(c->filter_buf[0]);
    free(c->filter_buf[1]);
    free(c->topic_buf);
    free(c->name);
    free(c->node_id);
    free(c->nats_url);
    free(c->username);
    free(c->password);
    for (size_t i = 0; i < c->ntopics; i++) free(c->topics[i]);
    for (size_t i = 0; i < c->ntopics_local; i++) free(c->topics_local[i]);
    free(c->topics);
    free(c->topics_local);
    free(c);
}

void
cluster_get_stats(struct cluster *c, struct cluster_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!c) return;
    out->connected = atomic_load(&c->connected);
    out->reconnects = atomic_load(&c->reconnects);
    out->subjects = c->interest.n;
    out->forwarded = atomic_load(&c->forwarded);
    out->received = c->received;
    out->received_shared = c->received_shared;
    out->duplicates = c->duplicates;
    out->held = c->held;
    out->dropped_out = c->dropped_out_loop + atomic_load(&c->dropped_out);
    out->dropped_in = atomic_load(&c->dropped_in);
    out->bad_in = c->bad_in;
    out->pending_out_bytes = atomic_load(&c->pending_out);
    csessions_stats(c->sessions, out);
    out->retained_stream = atomic_load(&c->js_state) == JS_READY;
    out->retained_in = c->retained_in;
    out->retained_failed = atomic_load(&c->js_failed);
    pthread_mutex_lock(&c->in_mu);
    out->pending_in_bytes = c->in_bytes;
    pthread_mutex_unlock(&c->in_mu);
}

struct cluster_claim *
cluster_claim(struct cluster *c, const char *id, size_t idlen, bool clean, cluster_claim_fn done,
              void *arg)
{
    return c && c->sessions ? csessions_claim(c->sessions, id, idlen, clean, done, arg) : NULL;
}

uint64_t
cluster_subscribe_mark(const struct cluster *c)
{
    return c ? c->subs_queued : 0;
}

bool
cluster_subscribed(struct cluster *c, uint64_t mark)
{
    return !c || (c->loaded && atomic_load(&c->subs_confirmed) >= mark);
}

bool
cluster_peer(const struct cluster *c, size_t k, struct cluster_peer *out)
{
    for (size_t i = 0; c && i < SEEN_RUNS; i++) {
        const struct seen *x = &c->seen[i];
        if (!x->run[0] || k--) continue;
        *out = (struct cluster_peer){
            .node = x->node, .run = x->run, .last_seen = x->last_seen, .received = x->received};
        return true;
    }
    return false;
}

const char *
cluster_nats_url(const struct cluster *c)
{
    return c ? c->nats_url : NULL;
}

const char *
cluster_node_id(const struct cluster *c)
{
    return c ? c->node_id : NULL;
}
