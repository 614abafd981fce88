/* SPDX-License-Identifier: MIT
 *
 * cluster: messages between lunamq nodes through NATS (cluster.h says what crosses;
 * cluster_int.h which file does what). Here: the cluster thread and the hand-over both
 * ways, the interest table (one NATS subscription per distinct subject, counted), the
 * headers a message travels with, the filter that drops the second copy a node
 * receives through two of its subjects, and the life cycle.
 *
 * A message on NATS: subject P.<topic tokens> with P = lq.<cluster_name>.m, the MQTT
 * payload unchanged, and one header, Lq-Msg: "ORIGIN RUN SEQ QOS FLAGS EXPIRY [PROPS]",
 * the node id, that node's run (random at each start), the sequence number in the run
 * (from 1), QoS 0-2, flags ('r': retain, 'g': shared groups are served through NATS,
 * groups.c; '-': none), the seconds left or '-', and the forwardable MQTT 5 properties
 * as encoded, in hex (absent when none). Retained messages also go through a JetStream
 * stream (retained.c). */
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
#include <nats/nats.h>

#include "cluster.h"
#include "cluster_int.h"
#include "levelmap.h"
#include "lq.h"
#include "mqtt.h"
#include "msg.h"
#include "topic.h"

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

/* libnats' delivery thread: a message for one of our subjects (q NULL) or shared
 * groups goes to the loop's inbox; the first one since the loop last looked wakes it.
 * A retained update is never dropped (the stores would differ for good): the
 * consumer's flow control bounds it. */
void
cluster_inbox_put(struct cluster *c, natsMsg *msg, struct qgroup *q, bool may_drop)
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

void
cluster_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub;
    cluster_inbox_put(closure, msg, NULL, true);
}

void
cluster_hex_of(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The Lq-Msg header of op, into *hdr (grown as needed). */
const char *
cluster_header_of(const struct cluster *c, const struct op *op, char **hdr, size_t *cap)
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
        cluster_hex_of(op->props, op->props_len, h + n);
    } else {
        h[n] = '\0';
    }
    return h;
}

/* A retained op for the stream: sent, or, when there is no room, kept as its
 * subject's latest (an older one kept is dropped: the stream keeps only the last
 * anyway, and order within a subject stays). True when kept (its bytes stay in
 * pending_out). */
/* Messages out of the thread's hands: when they bring what waits for NATS down to
 * half the bound while publishers are held, the loop hears it (in_cb). */
void
cluster_pending_done(struct cluster *c, uint64_t bytes)
{
    if (atomic_fetch_sub(&c->pending_out, bytes) - bytes <= c->max_pending_bytes / 2 &&
        atomic_exchange(&c->drain_wanted, false))
        (void)!write(c->pipe[1], "", 1);
}

static void
publish(struct cluster *c, const struct op *op, char **hdr, size_t *cap)
{
    const char *h = cluster_header_of(c, op, hdr, cap);
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
        if (op->to_stream && cluster_stream_or_keep(c, op)) return; /* kept for the stream */
        cluster_pending_done(c, op->bytes);
        break;
    case OP_SUB: /* while disconnected too: libnats subscribes again on reconnecting,
                  * keep_connected on a new connection */
        op->in->prev = NULL;
        op->in->next = c->subscribed;
        if (c->subscribed) c->subscribed->prev = op->in;
        c->subscribed = op->in;
        if (c->nc && natsConnection_Subscribe(&op->in->sub, c->nc, op->in->subject, cluster_on_msg,
                                              c) != NATS_OK)
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
        cluster_queue_subscribe(c, op->qg);
        cluster_qgroup_release(op->qg); /* the op's */
        break;
    case OP_QUNSUB:
        cluster_queue_unsubscribe(op->qg);
        cluster_qgroup_release(op->qg); /* the loop's table's, handed to the op */
        break;
    }
    free(op);
}

/* ---- the retained stream (the thread's) ---- */

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
    cluster_connect_nats(c);
    csessions_start(c->sessions, c->sopts); /* on its own connection */
    cluster_js_open(c);
    char *hex = NULL;
    size_t caphex = 0;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->todo && !c->stop && !cluster_js_due(c) &&
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
                cluster_keep_connected(c);
                pthread_mutex_lock(&c->mu);
            }
        }
        c->thread_idle = false;
        struct op *ops = c->todo;
        c->todo = NULL;
        c->todo_tail = &c->todo;
        bool stop = c->stop;
        bool js_now = !stop && cluster_js_due(c); /* under traffic too */
        pthread_mutex_unlock(&c->mu);
        if (js_now) cluster_js_setup(c);
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
        cluster_keep_connected(c); /* a busy thread never times out waiting */
        if (sub_no) confirm_subs(c, sub_no);
        for (struct op *op = pubs, *next; op; op = next) {
            next = op->next;
            run_op(c, op, &hex, &caphex, &sub_no);
        }
        if (c->jw_head) cluster_stream_kept(c);
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
    cluster_js_close(c);
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

void
cluster_queue_op(struct cluster *c, struct op *op)
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
bool
cluster_shared_topic(const struct cluster *c, const char *topic, size_t tlen)
{
    if (topic_is_sys(topic, tlen)) return false;
    if (c->ntopics && !matches_any(c->topics, c->ntopics, topic, tlen)) return false;
    return !matches_any(c->topics_local, c->ntopics_local, topic, tlen);
}

unsigned
cluster_forward(struct cluster *c, const struct msg *m, bool may_hold)
{
    if (!c || !cluster_shared_topic(c, m->topic, m->topic_len)) return 0;
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
    cluster_queue_op(c, op);
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
            cluster_queue_op(c, op);
        }
        e->refs++;
        return;
    }
    if (!e || --e->refs) return;
    levelmap_del(&c->interest, subject, n); /* the thread frees e after unsubscribing */
    struct op *op = lq_xcalloc(1, sizeof(*op));
    op->kind = OP_UNSUB;
    op->in = e;
    cluster_queue_op(c, op);
}

void
cluster_interest(struct cluster *c, const char *filter, size_t flen, int delta)
{
    if (!c || topic_is_sys(filter, flen)) return; /* $SYS is each node's own */
    int n = cluster_subjects_of_filter(c->prefix, filter, flen, c->filter_buf, SUBJECT_MAX);
    for (int i = 0; i < n; i++) interest_one(c, c->filter_buf[i], delta);
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

void
cluster_bad_message(struct cluster *c, natsMsg *nm, const char *why)
{
    c->bad_in++;
    lq_log_limited(&c->bad_log, LQ_LOG_WARNING,
                   "cluster: a message on \"%.200s\" from NATS: %s: dropped",
                   natsMsg_GetSubject(nm), why);
}

/* Why nm's header is not ours, or NULL when x is it. */
const char *
cluster_parse_header(natsMsg *nm, struct lq_header *x)
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
long
cluster_topic_of(struct cluster *c, const char *subject, const char *prefix)
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
struct msg *
cluster_msg_of(struct cluster *c, natsMsg *nm, const struct lq_header *x, long tlen, bool empty,
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

static void
take_one(struct cluster *c, natsMsg *nm, const struct qgroup *q)
{
    const char *subject = natsMsg_GetSubject(nm);
    size_t rl = strlen(c->rprefix);
    if (!q && strncmp(subject, c->rprefix, rl) == 0 && subject[rl] == '.')
        return cluster_take_retained(c, nm);
    long tlen = cluster_topic_of(c, subject, c->prefix);
    if (tlen < 0) return cluster_bad_message(c, nm, "not a topic's subject of this cluster");
    struct lq_header x;
    const char *why = cluster_parse_header(nm, &x);
    if (why) return cluster_bad_message(c, nm, why);
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
    struct msg *m = cluster_msg_of(c, nm, &x, tlen, false, 0);
    if (!m) return cluster_bad_message(c, nm, "bad Lq-Msg properties");
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
            if (x->q) cluster_qgroup_release(x->q);
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
    if (!c->loaded && atomic_load(&c->js_nothing_to_load)) cluster_retained_loaded(c);
    if (c->work_at < c->nwork) return; /* a slice is due: it takes the inbox after */
    route_work(c);
}

/* ---- life cycle ---- */

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
    if (!cluster_make_options(c, conf, false, &c->opts, err, errlen) ||
        !cluster_make_options(c, conf, true, &c->qopts, err, errlen) ||
        (conf->sessions && !cluster_make_options(c, conf, true, &c->sopts, err, errlen))) {
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
        !(c->load_ev = event_new(base, -1, 0, cluster_load_cb, c)) ||
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
        if (op->kind == OP_QSUB || op->kind == OP_QUNSUB) cluster_qgroup_release(op->qg);
        free(op);
    }
    for (uint32_t i = 0; i < c->qgroups.cap; i++) {
        for (struct levelmap_entry *x = c->qgroups.b[i]; x; x = x->next) {
            cluster_queue_unsubscribe(x->val); /* the thread is gone: the loop may */
            cluster_qgroup_release(x->val);    /* the table's */
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
        if (c->in[i].q) cluster_qgroup_release(c->in[i].q);
    }
    for (size_t i = c->work_at; i < c->nwork; i++) {
        natsMsg_Destroy(c->work[i].m);
        if (c->work[i].q) cluster_qgroup_release(c->work[i].q);
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
