/* SPDX-License-Identifier: MIT
 *
 * handle_subscribe: SUBSCRIBE and UNSUBSCRIBE. Each filter is checked on its own
 * and refused in the SUBACK without failing the others: 0x8F when invalid or deeper
 * than max_topic_levels, 0x97 when it would be a new subscription over
 * max_subscriptions_per_client (3.1.1: 0x80 for both); a protocol error (no local
 * on a shared subscription) fails the whole packet before any change. A filter
 * repeated in one packet is one subscription, as if sent in packets one after the
 * other (the last options win), but its retained messages go once. Retained
 * messages are sent after the SUBACK, by retain handling [MQTT-3.3.1-9..11], never
 * for shared subscriptions. */
#include <stdlib.h>
#include <string.h>

#include "hooks.h"
#include "retain.h"
#include "cluster.h"
#include "session_int.h"

/* subscribe / unsubscribe log lines per packet: a packet of 80 000 filters would
 * otherwise spend most of its time writing them (the rest get one line) */
#define LOG_FILTERS_MAX 20

struct filter_view {
    const char *filter, *group;
    size_t flen, glen;
};

/* Split "$share/G/F" or take a plain filter. Returns false when invalid. */
static bool
parse_filter(struct lq_bytes in, struct filter_view *v)
{
    const char *f = (const char *)in.p;
    int r = topic_parse_shared(f, in.len, &v->group, &v->glen, &v->filter, &v->flen);
    if (r < 0) return false;
    if (r == 0) {
        v->group = NULL;
        v->glen = 0;
        v->filter = f;
        v->flen = in.len;
    }
    return topic_filter_is_valid(v->filter, v->flen);
}

struct retained_ctx {
    struct session *s;
    const struct sub_opts *o;
    uint64_t now;
};

static void
send_retained(struct msg *m, void *arg)
{
    struct retained_ctx *ctx = arg;
    if (msg_is_expired(m, ctx->now)) return;
    if (ctx->o->acl_check && !access_may_receive(ctx->s, m->topic, m->topic_len)) return;
    uint8_t qos = m->qos < ctx->o->qos ? m->qos : ctx->o->qos;
    /* retain flag set on messages sent because of a new subscription [MQTT-3.3.1-8] */
    session_deliver(ctx->s, m, qos, true, ctx->o->sub_id ? &ctx->o->sub_id : NULL,
                    ctx->o->sub_id ? 1 : 0, DELIVER_RETAINED);
}

/* What one SUBSCRIBE refused, for one log line per packet. */
struct refusals {
    uint32_t invalid, deep, quota;
    struct lq_bytes first; /* the first refused filter */
};

#define NOT_SUBSCRIBED UINT32_MAX

/* One filter of a SUBSCRIBE, entry i: its reason code. Sets *at to its place in
 * s->subs (stable while the packet only adds) and x->mark = i, so that a filter the
 * packet repeats counts once (retained messages go with its last occurrence). */
static uint8_t
subscribe_one(struct session *s, const struct mqtt_sub_entry *e, uint32_t sub_id, uint32_t i,
              uint32_t *at, bool *fresh, struct refusals *r)
{
    struct broker *b = s->b;
    struct filter_view v;
    uint32_t *refused = !parse_filter(e->filter, &v) ? &r->invalid
                        : topic_is_too_deep(v.filter, v.flen, b->conf.max_topic_levels)
                            ? &r->deep /* well-formed, but not for this server: 0x8F too */
                            : NULL;
    struct ssub *x = refused ? NULL : session_sub_find(s, v.filter, v.flen, v.group, v.glen);
    uint32_t max = b->conf.max_subscriptions_per_client;
    if (!refused && !x && max && s->nsubs >= max) refused = &r->quota;
    if (refused) {
        if (!r->invalid && !r->deep && !r->quota) r->first = e->filter;
        ++*refused;
        return refused == &r->quota ? MQTT_RC_QUOTA_EXCEEDED /* 3.1.1: 0x80 */
                                    : MQTT_RC_TOPIC_FILTER_INVALID;
    }
    uint8_t qos = e->qos > 2 ? 2 : e->qos;
    bool check = false; /* the Lua on_subscribe hooks, then acl_file */
    if (s->acl || hooks_have_on_subscribe(b->hooks)) {
        qos = access_subscribe(s, (const char *)e->filter.p, e->filter.len, v.filter, v.flen, qos,
                               &check);
        if (qos >= 0x80) return qos; /* 3.1.1: 0x80 */
    }
    /* a bridge (try_private) gets its own messages not back, and retain flags as sent */
    struct sub_opts o = {.qos = qos,
                         .no_local = e->no_local || s->peer_bridge,
                         .retain_as_published = e->retain_as_published || s->peer_bridge,
                         .retain_handling = e->retain_handling,
                         .acl_check = check,
                         .sub_id = sub_id};
    *fresh = topic_tree_add(b->subs, v.filter, v.flen, v.group, v.glen, s, &o) == 1;
    if (!x) x = session_sub_add(s, v.filter, v.flen, v.group, v.glen);
    x->o = o;
    x->mark = i;
    persist_sub(s, x);
    *at = (uint32_t)(x - s->subs);
    if (i < LOG_FILTERS_MAX && lq_log_enabled(LQ_LOG_SUBSCRIBE))
        session_log(s, LQ_LOG_SUBSCRIBE, "subscribe \"%.*s\" qos %u", (int)e->filter.len,
                    (const char *)e->filter.p, o.qos);
    return o.qos;
}

static void
log_refusals(struct session *s, const struct refusals *r)
{
    /* one limit for every session: many clients must not flood the log either */
    static struct lq_log_limit refused_log;
    if (!r->invalid && !r->deep && !r->quota) return;
    char first[80];
    size_t n = r->first.len < sizeof(first) - 1 ? r->first.len : sizeof(first) - 1;
    memcpy(first, r->first.p, n);
    first[n] = '\0';
    char esc[4 * sizeof(first)];
    lq_escape_controls(first, esc, sizeof(esc));
    lq_log_limited(&refused_log, LQ_LOG_NOTICE,
                   "client \"%s\": subscribe refused %u invalid filters, %u over "
                   "max_topic_levels (%u), %u over max_subscriptions_per_client (%u); "
                   "first \"%s%s\"",
                   s->id, r->invalid, r->deep, s->b->conf.max_topic_levels, r->quota,
                   s->b->conf.max_subscriptions_per_client, esc, n < r->first.len ? "..." : "");
}

/* ---- SUBACKs that wait for the cluster ---- */

/* A retained-message lookup a waiting SUBACK holds back, to run after it. */
struct retained_req {
    struct sub_opts o;
    char *filter;
};

struct suback_wait {
    struct suback_wait *next;
    struct session *s; /* online: dropped with its connection */
    uint64_t mark;     /* cluster_subscribe_mark after its SUBSCRIBE */
    bool paused;       /* its connection was paused for it */
    struct retained_req *reqs;
    size_t nreqs;
    size_t len;
    uint8_t bytes[];
};

/* Retained messages for the n entries of a SUBSCRIBE, after its SUBACK, by retain
 * handling [MQTT-3.3.1-9..11]; a filter the packet repeats is one subscription:
 * its retained messages go once, with its last options, and it is new when the
 * packet made it. at[k]: the entry's place in s->subs, or NOT_SUBSCRIBED. */
static void
send_retained_for(struct session *s, uint32_t n, const uint32_t *at, bool *fresh,
                  struct suback_wait *w)
{
    if (!w && !retain_count(s->b->retained)) return; /* a waiting SUBACK: it may load */
    for (uint32_t k = 0; k < n; k++)                 /* new: on the last occurrence */
        if (at[k] != NOT_SUBSCRIBED && fresh[k]) fresh[s->subs[at[k]].mark] = true;
    for (uint32_t k = 0; k < n; k++) {
        const struct ssub *x = at[k] != NOT_SUBSCRIBED ? &s->subs[at[k]] : NULL;
        if (!x || x->mark != k || x->group) continue; /* repeated later; shared */
        uint8_t rh = x->o.retain_handling;
        if (rh == 2 || (rh == 1 && !fresh[k])) continue;
        struct sub_opts o = {.qos = x->o.qos, .acl_check = x->o.acl_check, .sub_id = x->o.sub_id};
        if (w) { /* after the SUBACK, which waits */
            w->reqs = lq_xrealloc(w->reqs, (w->nreqs + 1) * sizeof(*w->reqs));
            w->reqs[w->nreqs++] = (struct retained_req){o, lq_xstrdup(x->filter)};
            continue;
        }
        struct retained_ctx ctx = {s, &o, lq_now_ms()};
        retain_match(s->b->retained, x->filter, strlen(x->filter), send_retained, &ctx);
    }
}

/* Sends a SUBACK, or keeps it until every NATS subscription asked for so far is the
 * server's (cluster.h): then a message published on another node after the SUBACK
 * reaches the subscriber, also when another session asked for the subject a moment
 * before. One queue for the broker, in order (while any waits, the next SUBACK
 * waits behind it), not a field in each session. PUBLISH packets may go before it
 * (MQTT 5.0 section 3.8.4: the Server "is permitted to start sending PUBLISH packets
 * matching the Subscription before the Server sends the SUBACK"), but retained
 * messages for its filters go after it. The client's next packets are not read until
 * it leaves: a client that pipelines SUBSCRIBEs has one waiting at a time (the queue
 * is bounded by the connections), and its acks stay in order. */
static struct suback_wait *
suback_send_or_wait(struct session *s, const uint8_t *out, size_t n)
{
    struct broker *b = s->b;
    uint64_t mark = cluster_subscribe_mark(b->cluster);
    if (!b->subacks && cluster_subscribed(b->cluster, mark)) {
        conn_write(s->conn, out, n);
        return NULL;
    }
    struct suback_wait *w = lq_xmalloc(sizeof(*w) + n);
    *w = (struct suback_wait){.s = s, .mark = mark, .paused = !conn_is_paused(s->conn), .len = n};
    if (w->paused) conn_pause(s->conn);
    memcpy(w->bytes, out, n);
    if (!b->subacks) b->subacks_tail = &b->subacks;
    *b->subacks_tail = w;
    b->subacks_tail = &w->next;
    return w;
}

static void
suback_free(struct suback_wait *w)
{
    for (size_t i = 0; i < w->nreqs; i++) free(w->reqs[i].filter);
    free(w->reqs);
    free(w);
}

void
session_subacks_release(struct broker *b)
{
    while (b->subacks && cluster_subscribed(b->cluster, b->subacks->mark)) {
        struct suback_wait *w = b->subacks;
        b->subacks = w->next;
        struct session *s = w->s;
        conn_write(s->conn, w->bytes, w->len);
        for (size_t k = 0; k < w->nreqs; k++) { /* what its SUBSCRIBE held back */
            struct retained_ctx ctx = {s, &w->reqs[k].o, lq_now_ms()};
            retain_match(b->retained, w->reqs[k].filter, strlen(w->reqs[k].filter), send_retained,
                         &ctx);
        }
        if (w->paused && !(s->hold && s->hold->conn_paused)) conn_resume(s->conn);
        suback_free(w);
    }
}

void
session_subacks_drop(struct session *s)
{
    struct broker *b = s->b;
    struct suback_wait **at = &b->subacks;
    b->subacks_tail = &b->subacks;
    while (*at) {
        struct suback_wait *w = *at;
        if (w->s != s) {
            at = &w->next;
            b->subacks_tail = at;
            continue;
        }
        *at = w->next;
        suback_free(w);
    }
}

uint8_t
handle_subscribe(struct session *s, uint8_t flags, const uint8_t *body, size_t len)
{
    struct mqtt_subscribe sub;
    uint8_t rc = mqtt_decode_subscribe(flags, body, len, s->version, &sub);
    if (rc) return rc;
    uint32_t sub_id =
        (sub.props.present & MQTT_PBIT(MQTT_PROP_SUBSCRIPTION_ID)) ? sub.props.sub_id : 0;

    struct mqtt_sub_entry e;
    size_t pos = 0;
    while (mqtt_sub_next(&sub, s->version, &pos, &e)) { /* whole-packet errors first */
        struct filter_view v;
        if (parse_filter(e.filter, &v) && v.group && e.no_local)
            return MQTT_RC_PROTOCOL_ERROR; /* [MQTT-3.8.3-4] */
    }

    uint64_t since = persist_seq(s->b);
    uint8_t *codes = lq_xmalloc(sub.count);
    bool *fresh = lq_xcalloc(sub.count, sizeof(bool));
    uint32_t *at = lq_xmalloc(sub.count * sizeof(*at));
    struct refusals refused = {0};
    uint32_t i = 0;
    pos = 0;
    while (mqtt_sub_next(&sub, s->version, &pos, &e) && i < sub.count) {
        at[i] = NOT_SUBSCRIBED;
        codes[i] = subscribe_one(s, &e, sub_id, i, &at[i], &fresh[i], &refused);
        i++;
    }
    if (i > LOG_FILTERS_MAX && lq_log_enabled(LQ_LOG_SUBSCRIBE))
        session_log(s, LQ_LOG_SUBSCRIBE, "subscribe: %u more filters in this packet",
                    i - LOG_FILTERS_MAX);
    log_refusals(s, &refused);

    struct mqtt_suback ack;
    memset(&ack, 0, sizeof(ack));
    ack.packet_id = sub.packet_id;
    ack.codes = codes;
    ack.count = i;
    size_t n = mqtt_encode_suback(MQTT_SUBACK, &ack, s->version, NULL, 0);
    uint8_t *out = lq_xmalloc(n);
    mqtt_encode_suback(MQTT_SUBACK, &ack, s->version, out, n);
    persist_gate(s, since);
    struct suback_wait *w = suback_send_or_wait(s, out, n);
    free(out);

    send_retained_for(s, i, at, fresh, w);
    free(codes);
    free(fresh);
    free(at);
    return MQTT_RC_SUCCESS;
}

uint8_t
handle_unsubscribe(struct session *s, uint8_t flags, const uint8_t *body, size_t len)
{
    struct mqtt_unsubscribe u;
    uint8_t rc = mqtt_decode_unsubscribe(flags, body, len, s->version, &u);
    if (rc) return rc;
    uint64_t since = persist_seq(s->b);
    uint8_t *codes = lq_xmalloc(u.count);
    size_t i = 0, pos = 0;
    struct lq_bytes f;
    while (mqtt_unsub_next(&u, &pos, &f) && i < u.count) {
        struct filter_view v;
        struct ssub *x =
            parse_filter(f, &v) ? session_sub_find(s, v.filter, v.flen, v.group, v.glen) : NULL;
        if (!x) {
            codes[i++] = MQTT_RC_NO_SUBSCRIPTION_EXISTED;
            continue;
        }
        topic_tree_remove(s->b->subs, v.filter, v.flen, v.group, v.glen, s);
        persist_unsub(s, x);
        session_sub_remove(s, x);
        if (i < LOG_FILTERS_MAX && lq_log_enabled(LQ_LOG_UNSUBSCRIBE))
            session_log(s, LQ_LOG_UNSUBSCRIBE, "unsubscribe \"%.*s\"", (int)f.len,
                        (const char *)f.p);
        codes[i++] = MQTT_RC_SUCCESS;
    }
    if (i > LOG_FILTERS_MAX && lq_log_enabled(LQ_LOG_UNSUBSCRIBE))
        session_log(s, LQ_LOG_UNSUBSCRIBE, "unsubscribe: %zu more filters in this packet",
                    i - LOG_FILTERS_MAX);
    struct mqtt_suback ack;
    memset(&ack, 0, sizeof(ack));
    ack.packet_id = u.packet_id;
    ack.codes = codes;
    ack.count = i;
    size_t n = mqtt_encode_suback(MQTT_UNSUBACK, &ack, s->version, NULL, 0);
    uint8_t *out = lq_xmalloc(n);
    mqtt_encode_suback(MQTT_UNSUBACK, &ack, s->version, out, n);
    persist_gate(s, since);
    conn_write(s->conn, out, n);
    free(out);
    free(codes);
    return MQTT_RC_SUCCESS;
}

void
session_unsubscribe_all(struct session *s)
{
    for (uint32_t i = 0; i < s->nsubs; i++) {
        struct ssub *x = &s->subs[i];
        topic_tree_remove(s->b->subs, x->filter, strlen(x->filter), x->group,
                          x->group ? strlen(x->group) : 0, s);
    }
    session_subs_free(s);
}
