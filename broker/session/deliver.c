/* SPDX-License-Identifier: MIT
 *
 * deliver: routing a published message to the sessions whose subscriptions match,
 * and the outgoing side of every session: its queue, its in-flight window, packet
 * identifiers and the QoS 1/2 acknowledgement state machines.
 *
 * One copy per session: overlapping subscriptions of a session are merged into a
 * single delivery at the highest QoS, carrying every subscription identifier
 * [MQTT-3.3.4-4,5]. A message is never copied per subscriber: queue entries hold a
 * reference. Nothing acknowledged is dropped silently: a QoS 1/2 message for an
 * online subscriber over its queue bound is still queued and the publisher is held
 * back (backpressure.c); for an offline session over its bound it is refused (v5
 * publishers hear 0x97) and counted. */
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "session_int.h"

#define SMALL_PACKET      (64 * 1024) /* above this the payload goes out by reference */
#define PACE_PER_INFLIGHT 8           /* pace_point: queued messages per in-flight slot */
#define PACE_MIN          64

enum { DELIVER_OK = 0, DELIVER_OVER = 1, DELIVER_DROPPED = -1 };

static uint32_t
inflight_limit(const struct session *s)
{
    uint32_t lim = s->b->conf.max_inflight_messages ? s->b->conf.max_inflight_messages : 65535;
    return s->client_recv_max < lim ? s->client_recv_max : lim;
}

/* Would one more message of add bytes pass s's bounds, or the broker's? Retained
 * messages sent on subscribe may pass the message count (there is no publisher to hold
 * back for them) but not the bytes. Past 3/4 of the broker-wide ceiling QoS 0 is shed,
 * so that QoS 1/2 still has room. */
static bool
over_bounds(const struct session *s, size_t add, enum deliver_how how, uint8_t qos)
{
    const struct broker *b = s->b;
    const struct lq_conf *c = &b->conf;
    if (how != DELIVER_RETAINED && c->max_queued_messages && s->nqueued >= c->max_queued_messages)
        return true;
    if (c->max_queued_bytes && s->qbytes + add > c->max_queued_bytes) return true;
    if (c->max_queued_bytes_total) {
        uint64_t lim = c->max_queued_bytes_total;
        if (qos == 0) lim -= lim / 4;
        if (b->queued_bytes + add > lim) return true;
    }
    return false;
}

/* The operating point of an online subscriber's queue: past it, it is taken to drain
 * slower than its publishers fill it, and they are held (backpressure.c) until it is
 * down to half. Under saturation a message then waits behind a few hundred others, not
 * behind max_queued_messages; that bound stays the limit for bursts and offline
 * sessions. 0: none (a bound so low that it is the operating point itself). */
static uint32_t
pace_point(const struct session *s)
{
    uint32_t p = PACE_PER_INFLIGHT * inflight_limit(s), bound = s->b->conf.max_queued_messages;
    if (p < PACE_MIN) p = PACE_MIN;
    return bound && p > bound / 2 ? 0 : p;
}

static bool
queue_is_low(const struct session *s)
{
    const struct lq_conf *c = &s->b->conf;
    if (s->paced || s->pace_off) return s->nqueued <= pace_point(s) / 2;
    if (c->max_queued_messages && s->nqueued > c->max_queued_messages / 2) return false;
    if (c->max_queued_bytes && s->qbytes > c->max_queued_bytes / 2) return false;
    return true;
}

/* every queued message costs one: no holes */
_Static_assert(sizeof(struct qentry) == 2 * sizeof(void *) + 8, "struct qentry has holes");

static struct qentry *
qentry_new(struct msg *m, uint8_t qos, bool retain, const uint32_t *sub_ids, uint32_t nsub)
{
    struct qentry *e = lq_xmalloc(sizeof(*e) + nsub * sizeof(uint32_t));
    e->next = NULL;
    e->m = msg_ref(m); /* the entry's own reference */
    e->qos = qos;
    e->state = Q_QUEUED;
    e->retain = retain;
    e->dup = false;
    e->pid = 0;
    e->nsub = nsub;
    if (nsub) memcpy(e->sub_ids, sub_ids, nsub * sizeof(uint32_t));
    return e;
}

static void
qentry_free(struct qentry *e)
{
    msg_unref(e->m);
    free(e);
}

static void
release_msg(void *arg)
{
    msg_unref(arg);
}

/* Topic alias towards the client: the alias for this topic, a new one, or 0. */
static uint16_t
alias_out(struct session *s, const struct msg *m, bool *is_new)
{
    *is_new = false;
    if (!s->client_alias_max) return 0;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < m->topic_len; i++) h = (h ^ (uint8_t)m->topic[i]) * 16777619u;
    if (!s->aliases) s->aliases = lq_xcalloc(1, sizeof(*s->aliases));
    struct aliases *t = s->aliases;
    for (uint16_t i = 0; i < t->nout; i++) {
        struct alias_out *a = &t->out[i];
        if (a->hash == h && a->len == m->topic_len && memcmp(a->topic, m->topic, a->len) == 0)
            return (uint16_t)(i + 1);
    }
    uint16_t max = s->client_alias_max < ALIAS_OUT_MAX ? s->client_alias_max : ALIAS_OUT_MAX;
    if (t->nout >= max) return 0; /* table full: send the topic in full */
    struct alias_out *a = &t->out[t->nout++];
    a->hash = h;
    a->len = m->topic_len;
    a->topic = lq_xstrndup(m->topic, m->topic_len);
    *is_new = true;
    return t->nout;
}

/* Write one PUBLISH. Returns false when it was not sent: expired, or larger than the
 * client accepts [MQTT-3.1.2-25] (then it is treated as delivered). */
static bool
send_publish(struct session *s, struct msg *m, uint8_t qos, bool retain, bool dup, uint16_t pid,
             const uint32_t *sub_ids, uint32_t nsub)
{
    struct broker *b = s->b;
    struct conn *c = s->conn;
    struct mqtt_publish p;
    memset(&p, 0, sizeof(p));
    p.qos = qos;
    p.dup = dup;
    p.retain = retain;
    p.packet_id = pid;
    p.topic = (struct lq_bytes){(const uint8_t *)m->topic, m->topic_len};
    p.payload = (struct lq_bytes){m->payload, m->payload_len};
    if (s->bridge) { /* to another broker: its topic there */
        size_t tlen;
        const char *t = bridge_map_out(s->bridge, m->topic, m->topic_len, &tlen);
        if (!t) return false;
        p.topic = (struct lq_bytes){(const uint8_t *)t, tlen};
        if (!bridge_outgoing_retain(s->bridge)) p.retain = false;
    }
    bool new_alias = false;
    if (s->version == MQTT_V5) {
        if (m->has_expiry) {
            uint32_t left = msg_expiry_left(m, lq_now_ms());
            if (!left) {
                b->ctr.dropped_expired++;
                return false;
            }
            p.props.present |= MQTT_PBIT(MQTT_PROP_MESSAGE_EXPIRY);
            p.props.message_expiry = left;
        }
        if (nsub) {
            p.props.present |= MQTT_PBIT(MQTT_PROP_SUBSCRIPTION_ID);
            p.props.sub_ids = sub_ids;
            p.props.sub_id_count = nsub;
        }
        p.props.raw = (struct lq_bytes){m->props, m->props_len};
        uint16_t alias = alias_out(s, m, &new_alias);
        if (alias) {
            p.props.present |= MQTT_PBIT(MQTT_PROP_TOPIC_ALIAS);
            p.props.topic_alias = alias;
            if (!new_alias) p.topic.len = 0; /* known alias: topic left out */
        }
    }
    size_t total;
    size_t head = mqtt_encode_publish_head(&p, s->version, NULL, 0, &total);
    if (total > s->client_max_packet) {
        if (new_alias) free(s->aliases->out[--s->aliases->nout].topic); /* not used after all */
        b->ctr.dropped_oversize++;
        session_log(s, LQ_LOG_DEBUG,
                    "message on \"%s\" (%zu bytes) over client's maximum packet size %u: dropped",
                    m->topic, total, s->client_max_packet);
        return false;
    }
    if (total <= SMALL_PACKET) {
        uint8_t *out = conn_reserve(c, total);
        if (!out) return false; /* out of memory: the conn is being closed */
        mqtt_encode_publish(&p, s->version, out, total);
        conn_commit(c, total);
    } else {
        uint8_t *out = conn_reserve(c, head);
        if (!out) return false;
        mqtt_encode_publish_head(&p, s->version, out, head, &total);
        conn_commit(c, head);
        conn_write_ref(c, m->payload, m->payload_len, release_msg, msg_ref(m));
    }
    b->ctr.msgs_sent++;
    b->ctr.sent_qos[qos]++;
    b->ctr.sent_bytes_qos[qos] += total;
    b->ctr.bytes_sent += total;
    return true;
}

static bool
pid_in_use(const struct session *s, uint16_t pid)
{
    for (const struct qentry *e = s->if_head; e; e = e->next)
        if (e->pid == pid) return true;
    return false;
}

uint16_t
session_next_pid(struct session *s)
{
    for (;;) { /* ends: fewer than 65535 are in flight */
        uint16_t pid = s->next_pid++;
        if (s->next_pid == 0) s->next_pid = 1;
        if (pid != 0 && (s->ninflight == 0 || !pid_in_use(s, pid))) return pid;
    }
}

static void
inflight_append(struct session *s, struct qentry *e)
{
    e->next = NULL;
    if (s->if_tail)
        s->if_tail->next = e;
    else
        s->if_head = e;
    s->if_tail = e;
    s->ninflight++;
}

/* Send e now: QoS 0 is done, QoS 1/2 enters the in-flight window. A QoS 2 PUBLISH
 * leaves once its packet id is durable: after a restart the exchange goes on with
 * that id. */
static void
send_entry(struct session *s, struct qentry *e)
{
    if (e->qos == 0) {
        send_publish(s, e->m, 0, e->retain, false, 0, e->sub_ids, e->nsub);
        qentry_free(e);
        return;
    }
    e->pid = session_next_pid(s);
    e->state = e->qos == 1 ? Q_WAIT_PUBACK : Q_WAIT_PUBREC;
    if (s->store_id) { /* its packet id: QoS 1 may go before it is durable */
        uint64_t since = persist_seq(s->b);
        persist_qentry(s, e);
        if (e->qos == 2) persist_gate(s, since);
    }
    if (!send_publish(s, e->m, e->qos, e->retain, false, e->pid, e->sub_ids, e->nsub)) {
        persist_qentry_done(s, e);
        qentry_free(e);
        return;
    }
    inflight_append(s, e);
}

/* A delivery s cannot take: counted for it, logged when it begins and when it ends. */
static int
drop_for(struct session *s, const struct msg *m, uint8_t qos)
{
    s->b->ctr.dropped_queue_full++;
    s->dropped++;
    if (qos > 0 && s->refused_full++ == 0 && !s->shedding)
        session_log(s, LQ_LOG_WARNING,
                    "queue full (%u messages, %llu bytes): QoS 1/2 messages for it are "
                    "refused until it has room (first on \"%s\")",
                    s->nqueued, (unsigned long long)s->qbytes, m->topic);
    return DELIVER_DROPPED;
}

static void
queue_append(struct session *s, struct qentry *e)
{
    if (s->q_tail)
        s->q_tail->next = e;
    else
        s->q_head = e;
    s->q_tail = e;
    s->nqueued++;
    s->qbytes += msg_size(e->m);
    s->b->queued_bytes += msg_size(e->m);
}

int
session_deliver(struct session *s, struct msg *m, uint8_t qos, bool retain, const uint32_t *sub_ids,
                uint32_t nsub, enum deliver_how how)
{
    bool online = s->conn && s->connected;
    if (!online && qos == 0) return DELIVER_OK; /* QoS 0 is not kept for absent clients */
    size_t size = msg_size(m);
    if (s->refused_full && !over_bounds(s, size, DELIVER_HOLDABLE, 1)) {
        session_log(s, LQ_LOG_NOTICE, "queue has room again: %llu QoS 1/2 messages refused",
                    (unsigned long long)s->refused_full);
        s->refused_full = 0;
    }
    if (online && !s->q_head && conn_is_writable(s->conn)) { /* fast path */
        if (qos == 0) {
            send_publish(s, m, 0, retain, false, 0, sub_ids, nsub);
            return DELIVER_OK;
        }
        if (s->ninflight < inflight_limit(s)) {
            send_entry(s, qentry_new(m, qos, retain, sub_ids, nsub));
            return DELIVER_OK;
        }
    }
    int rc = DELIVER_OK;
    if (over_bounds(s, size, how, qos)) {
        /* keep it and hold the publisher back, unless there is none to hold, it is
         * QoS 0, the subscriber is away, or it already stalled past max_hold_time */
        if (qos == 0 || (!online && !s->bridge) || s->shedding || how != DELIVER_HOLDABLE)
            return drop_for(s, m, qos);
        rc = DELIVER_OVER;
        slow_mark(s);
    } else if (qos && online && how == DELIVER_HOLDABLE && !s->pace_off) {
        uint32_t p = pace_point(s);
        if (p && s->nqueued >= p) {
            rc = DELIVER_OVER;
            pace_mark(s);
        }
    }
    struct qentry *e = qentry_new(m, qos, retain, sub_ids, nsub);
    queue_append(s, e);
    if (s->store_id && qos) persist_qentry(s, e);
    return rc;
}

void
session_restore_entry(struct session *s, struct msg *m, uint8_t qos, uint8_t state, uint16_t pid,
                      bool retain, bool dup, const uint32_t *sub_ids, uint32_t nsub)
{
    struct qentry *e = qentry_new(m, qos, retain, sub_ids, nsub);
    e->state = state;
    e->pid = pid;
    e->dup = dup;
    if (state != Q_QUEUED) {
        inflight_append(s, e);
        return;
    }
    queue_append(s, e);
}

static struct qentry *
queue_pop(struct session *s)
{
    struct qentry *e = s->q_head;
    s->q_head = e->next;
    if (!s->q_head) s->q_tail = NULL;
    s->nqueued--;
    s->qbytes -= msg_size(e->m);
    s->b->queued_bytes -= msg_size(e->m);
    return e;
}

void
session_pump(struct session *s)
{
    if (!s->conn || !s->connected) return;
    uint32_t lim = inflight_limit(s);
    uint32_t before = s->nqueued;
    while (s->q_head && conn_is_writable(s->conn)) {
        struct qentry *e = s->q_head;
        if (msg_is_expired(e->m, lq_now_ms())) { /* expired while queued: never sent */
            persist_qentry_done(s, e);
            qentry_free(queue_pop(s));
            s->b->ctr.dropped_expired++;
            continue;
        }
        if (e->qos > 0 && s->ninflight >= lim) break; /* order kept: wait for acks */
        send_entry(s, queue_pop(s));
    }
    if (s->nqueued != before) s->progressed = true; /* no clock read per message */
    /* only the subscriber that held the publishers lets them go: a publisher's own
     * output draining says nothing about the queue that stopped it */
    if ((s->over_bound || s->shedding || s->pace_off) && queue_is_low(s)) {
        if (s->shedding)
            session_log(s, LQ_LOG_NOTICE, "slow consumer drained: %llu messages were dropped",
                        (unsigned long long)s->dropped);
        s->shedding = false;
        s->pace_off = false;
        if (s->over_bound) slow_drained(s);
    }
}

void
session_resend_inflight(struct session *s)
{
    /* [MQTT-4.4.0-1]: unacknowledged PUBLISH again with DUP, PUBREL again */
    struct qentry **pp = &s->if_head, *last = NULL;
    while (*pp) {
        struct qentry *e = *pp;
        bool keep = true;
        if (e->state == Q_WAIT_PUBCOMP)
            send_ack(s, MQTT_PUBREL, e->pid, 0);
        else
            keep = send_publish(s, e->m, e->qos, e->retain, true, e->pid, e->sub_ids, e->nsub);
        if (keep) {
            e->dup = true;
            last = e;
            pp = &e->next;
        } else {
            *pp = e->next;
            s->ninflight--;
            persist_qentry_done(s, e);
            qentry_free(e);
        }
    }
    s->if_tail = last;
}

void
session_free_queues(struct session *s)
{
    for (struct qentry *e = s->q_head, *n; e; e = n) {
        n = e->next;
        qentry_free(e);
    }
    for (struct qentry *e = s->if_head, *n; e; e = n) {
        n = e->next;
        qentry_free(e);
    }
    s->q_head = s->q_tail = s->if_head = s->if_tail = NULL;
    s->nqueued = s->ninflight = 0;
    s->b->queued_bytes -= s->qbytes;
    s->qbytes = 0;
}

uint8_t
handle_puback(struct session *s, uint8_t type, const struct mqtt_ack *a)
{
    struct qentry **pp = &s->if_head, *prev = NULL;
    while (*pp && (*pp)->pid != a->packet_id) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    struct qentry *e = *pp;
    bool done = false;
    switch (type) {
    case MQTT_PUBACK: done = e && e->state == Q_WAIT_PUBACK; break;
    case MQTT_PUBREC:
        if (!e) {
            send_ack(s, MQTT_PUBREL, a->packet_id, MQTT_RC_PACKET_ID_NOT_FOUND);
        } else if (e->state == Q_WAIT_PUBREC || e->state == Q_WAIT_PUBCOMP) {
            if (a->reason >= 0x80) { /* the client refused it: done [MQTT-4.3.3-?] */
                done = true;
            } else {
                e->state = Q_WAIT_PUBCOMP;
                if (s->store_id) { /* after a restart: PUBREL again, not the PUBLISH */
                    uint64_t since = persist_seq(s->b);
                    persist_qentry(s, e);
                    persist_gate(s, since);
                    persist_check_ack(s, since);
                }
                send_ack(s, MQTT_PUBREL, e->pid, 0);
            }
        }
        break;
    case MQTT_PUBCOMP: done = e && e->state == Q_WAIT_PUBCOMP; break;
    }
    if (done) { /* unknown or unexpected acks are ignored */
        s->progressed = true;
        *pp = e->next;
        if (s->if_tail == e) s->if_tail = prev;
        s->ninflight--;
        persist_qentry_done(s, e);
        qentry_free(e);
        session_pump(s);
    }
    return MQTT_RC_SUCCESS;
}

/* ---- routing ---- */

struct match_ctx {
    struct broker *b;
    const struct session *origin;
    const struct msg *m;
    bool groups; /* shared groups too (else the cluster serves them) */
};

static bool
member_is_online(void *owner, void *arg)
{
    (void)arg;
    const struct session *s = owner;
    return s->conn != NULL;
}

/* One more subscription identifier for match mt, at the end of its chain. */
static void
add_sub_id(struct broker *b, struct match *mt, uint32_t id)
{
    if (b->nmatch_ids == b->cap_match_ids) {
        b->cap_match_ids = b->cap_match_ids ? 2 * b->cap_match_ids : 64;
        b->match_ids = lq_xrealloc(b->match_ids, b->cap_match_ids * sizeof(*b->match_ids));
    }
    uint32_t at = b->nmatch_ids++;
    b->match_ids[at].id = id;
    if (mt->nsub++)
        b->match_ids[mt->last_id].next = at;
    else
        mt->first_id = at;
    mt->last_id = at;
}

/* Match mt's identifiers in a row: in place for one, else gathered into a buffer that
 * is valid until the next call. */
static const uint32_t *
match_sub_ids(struct broker *b, const struct match *mt)
{
    if (mt->nsub <= 1) return mt->nsub ? &b->match_ids[mt->first_id].id : NULL;
    if (mt->nsub > b->cap_sub_id_buf) {
        b->cap_sub_id_buf = mt->nsub;
        free(b->sub_id_buf);
        b->sub_id_buf = lq_xmalloc(mt->nsub * sizeof(*b->sub_id_buf));
    }
    for (uint32_t i = 0, at = mt->first_id; i < mt->nsub; i++, at = b->match_ids[at].next)
        b->sub_id_buf[i] = b->match_ids[at].id;
    return b->sub_id_buf;
}

static void
add_match(struct broker *b, struct session *s, const struct sub_opts *o)
{
    struct match *mt;
    if (s->match_gen != b->match_gen) { /* first match of this message? */
        if (b->nmatches == b->cap_matches) {
            b->cap_matches = b->cap_matches ? 2 * b->cap_matches : 16;
            b->matches = lq_xrealloc(b->matches, b->cap_matches * sizeof(*b->matches));
        }
        s->match_gen = b->match_gen;
        s->match_idx = b->nmatches++;
        mt = &b->matches[s->match_idx];
        mt->s = s;
        mt->qos = o->qos;
        mt->retain = o->retain_as_published;
        mt->nsub = 0;
    } else {
        mt = &b->matches[s->match_idx];
        if (o->qos > mt->qos) mt->qos = o->qos;
        if (o->retain_as_published) mt->retain = true;
    }
    if (o->sub_id) add_sub_id(b, mt, o->sub_id);
}

/* One member of the group gets it, an online one if any. */
static void
match_group(struct match_ctx *ctx, struct sub_group *g)
{
    void *member;
    const struct sub_opts *o;
    if (!sub_group_pick(g, member_is_online, NULL, &member, &o) &&
        !sub_group_pick(g, NULL, NULL, &member, &o))
        return;
    if (o->acl_check && !access_may_receive(member, ctx->m->topic, ctx->m->topic_len)) return;
    add_match(ctx->b, member, o);
}

static void
match_cb(void *owner, const struct sub_opts *o, struct sub_group *g, void *arg)
{
    struct match_ctx *ctx = arg;
    if (g) {
        if (ctx->groups) match_group(ctx, g);
        return;
    }
    struct session *s = owner;
    if (o->no_local && s == ctx->origin) return; /* [MQTT-3.8.3-3] */
    if (o->acl_check && !access_may_receive(s, ctx->m->topic, ctx->m->topic_len)) return;
    add_match(ctx->b, s, o);
}

static void
match_begin(struct broker *b, struct route_result *r)
{
    memset(r, 0, sizeof(*r));
    b->match_gen++;
    b->nmatches = 0;
    b->nmatch_ids = 0;
}

/* Each session matched gets one copy. */
static void
deliver_matches(struct broker *b, struct msg *m, enum deliver_how how, struct route_result *r)
{
    for (uint32_t i = 0; i < b->nmatches; i++) {
        const struct match *mt = &b->matches[i];
        r->matched++;
        uint8_t qos = m->qos < mt->qos ? m->qos : mt->qos;
        int rc = session_deliver(mt->s, m, qos, mt->retain && m->retain, match_sub_ids(b, mt),
                                 mt->nsub, how);
        if (rc == DELIVER_DROPPED && qos > 0) r->quota_exceeded = true;
        if (rc == DELIVER_OVER) r->hold_publisher = true;
    }
    b->nmatches = 0;
    r->no_subscriber = r->matched == 0;
}

void
route_publish(struct broker *b, struct msg *m, const struct session *origin, enum deliver_how how,
              bool groups, struct route_result *r)
{
    match_begin(b, r);
    struct match_ctx ctx = {b, origin, m, groups};
    topic_tree_match(b->subs, m->topic, m->topic_len, match_cb, &ctx);
    deliver_matches(b, m, how, r);
    if (!r->matched) b->ctr.dropped_no_subscriber++;
}

void
route_to_group(struct broker *b, struct msg *m, const char *group, size_t glen, const char *filter,
               size_t flen, struct route_result *r)
{
    match_begin(b, r);
    struct match_ctx ctx = {b, NULL, m, true};
    struct sub_group *g = topic_tree_group(b->subs, filter, flen, group, glen);
    if (g) match_group(&ctx, g);
    deliver_matches(b, m, DELIVER_NO_HOLD, r);
}

void
send_ack(struct session *s, uint8_t type, uint16_t pid, uint8_t rc)
{
    if (!s->conn) return;
    struct mqtt_ack a;
    memset(&a, 0, sizeof(a));
    a.packet_id = pid;
    a.reason = rc;
    uint8_t out[8];
    size_t n = mqtt_encode_ack(type, &a, s->version, out, sizeof(out));
    if (n <= sizeof(out)) conn_write(s->conn, out, n);
}
