/* SPDX-License-Identifier: MIT
 *
 * handle_subscribe: SUBSCRIBE and UNSUBSCRIBE. Each filter is checked on its own
 * and refused in the SUBACK (0x8F) without failing the others; a protocol error
 * (no local on a shared subscription) fails the whole packet before any change.
 * Retained messages are sent after the SUBACK, by retain handling
 * [MQTT-3.3.1-9..11], never for shared subscriptions. */
#include <stdlib.h>
#include <string.h>

#include "retain.h"
#include "session_int.h"

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

static struct ssub *
ssub_find(struct session *s, const struct filter_view *v)
{
    for (size_t i = 0; i < s->nsubs; i++) {
        struct ssub *x = &s->subs[i];
        if (strlen(x->filter) != v->flen || memcmp(x->filter, v->filter, v->flen) != 0) continue;
        if (!x->group != !v->group) continue;
        if (v->group && (strlen(x->group) != v->glen || memcmp(x->group, v->group, v->glen) != 0))
            continue;
        return x;
    }
    return NULL;
}

static void
ssub_put(struct session *s, const struct filter_view *v, const struct sub_opts *o)
{
    struct ssub *x = ssub_find(s, v);
    if (!x) {
        if (s->nsubs == s->capsubs) {
            s->capsubs = s->capsubs ? s->capsubs * 2 : 4;
            s->subs = lq_xrealloc(s->subs, s->capsubs * sizeof(*s->subs));
        }
        x = &s->subs[s->nsubs++];
        x->filter = lq_xstrndup(v->filter, v->flen);
        x->group = v->group ? lq_xstrndup(v->group, v->glen) : NULL;
    }
    x->o = *o;
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
    uint8_t qos = m->qos < ctx->o->qos ? m->qos : ctx->o->qos;
    /* retain flag set on messages sent because of a new subscription [MQTT-3.3.1-8] */
    session_deliver(ctx->s, m, qos, true, ctx->o->sub_id ? &ctx->o->sub_id : NULL,
                    ctx->o->sub_id ? 1 : 0, DELIVER_RETAINED);
}

uint8_t
handle_subscribe(struct session *s, uint8_t flags, const uint8_t *body, size_t len)
{
    struct broker *b = s->b;
    struct mqtt_subscribe sub;
    uint8_t rc = mqtt_decode_subscribe(flags, body, len, s->version, &sub);
    if (rc) return rc;
    uint32_t sub_id =
        (sub.props.present & MQTT_PBIT(MQTT_PROP_SUBSCRIPTION_ID)) ? sub.props.sub_ids[0] : 0;

    struct mqtt_sub_entry e;
    size_t pos = 0;
    while (mqtt_sub_next(&sub, s->version, &pos, &e)) { /* whole-packet errors first */
        struct filter_view v;
        if (parse_filter(e.filter, &v) && v.group && e.no_local)
            return MQTT_RC_PROTOCOL_ERROR; /* [MQTT-3.8.3-4] */
    }

    uint8_t *codes = lq_xmalloc(sub.count);
    bool *fresh = lq_xcalloc(sub.count, sizeof(bool));
    size_t i = 0;
    pos = 0;
    while (mqtt_sub_next(&sub, s->version, &pos, &e) && i < sub.count) {
        struct filter_view v;
        if (!parse_filter(e.filter, &v)) {
            codes[i++] = MQTT_RC_TOPIC_FILTER_INVALID;
            session_log(s, LQ_LOG_NOTICE, "subscribe \"%.*s\": invalid filter", (int)e.filter.len,
                        (const char *)e.filter.p);
            continue;
        }
        struct sub_opts o = {.qos = e.qos > 2 ? 2 : e.qos,
                             .no_local = e.no_local,
                             .retain_as_published = e.retain_as_published,
                             .retain_handling = e.retain_handling,
                             .sub_id = sub_id};
        fresh[i] = topic_tree_add(b->subs, v.filter, v.flen, v.group, v.glen, s, &o) == 1;
        ssub_put(s, &v, &o);
        codes[i++] = o.qos;
        if (lq_log_enabled(LQ_LOG_SUBSCRIBE))
            session_log(s, LQ_LOG_SUBSCRIBE, "subscribe \"%.*s\" qos %u", (int)e.filter.len,
                        (const char *)e.filter.p, o.qos);
    }

    struct mqtt_suback ack;
    memset(&ack, 0, sizeof(ack));
    ack.packet_id = sub.packet_id;
    ack.codes = codes;
    ack.count = i;
    size_t n = mqtt_encode_suback(MQTT_SUBACK, &ack, s->version, NULL, 0);
    uint8_t *out = lq_xmalloc(n);
    mqtt_encode_suback(MQTT_SUBACK, &ack, s->version, out, n);
    conn_write(s->conn, out, n);
    free(out);

    /* retained messages, after the SUBACK */
    i = 0;
    pos = 0;
    while (mqtt_sub_next(&sub, s->version, &pos, &e) && i < sub.count) {
        struct filter_view v;
        bool ok = codes[i] < 0x80, is_new = fresh[i];
        i++;
        if (!ok || !parse_filter(e.filter, &v) || v.group) continue;
        if (e.retain_handling == 2 || (e.retain_handling == 1 && !is_new)) continue;
        struct sub_opts o = {.qos = e.qos, .sub_id = sub_id};
        struct retained_ctx ctx = {s, &o, lq_now_ms()};
        retain_match(b->retained, v.filter, v.flen, send_retained, &ctx);
    }
    free(codes);
    free(fresh);
    return MQTT_RC_SUCCESS;
}

uint8_t
handle_unsubscribe(struct session *s, uint8_t flags, const uint8_t *body, size_t len)
{
    struct mqtt_unsubscribe u;
    uint8_t rc = mqtt_decode_unsubscribe(flags, body, len, s->version, &u);
    if (rc) return rc;
    uint8_t *codes = lq_xmalloc(u.count);
    size_t i = 0, pos = 0;
    struct lq_bytes f;
    while (mqtt_unsub_next(&u, &pos, &f) && i < u.count) {
        struct filter_view v;
        struct ssub *x = parse_filter(f, &v) ? ssub_find(s, &v) : NULL;
        if (!x) {
            codes[i++] = MQTT_RC_NO_SUBSCRIPTION_EXISTED;
            continue;
        }
        topic_tree_remove(s->b->subs, v.filter, v.flen, v.group, v.glen, s);
        free(x->filter);
        free(x->group);
        *x = s->subs[--s->nsubs];
        codes[i++] = MQTT_RC_SUCCESS;
        if (lq_log_enabled(LQ_LOG_UNSUBSCRIBE))
            session_log(s, LQ_LOG_UNSUBSCRIBE, "unsubscribe \"%.*s\"", (int)f.len,
                        (const char *)f.p);
    }
    struct mqtt_suback ack;
    memset(&ack, 0, sizeof(ack));
    ack.packet_id = u.packet_id;
    ack.codes = codes;
    ack.count = i;
    size_t n = mqtt_encode_suback(MQTT_UNSUBACK, &ack, s->version, NULL, 0);
    uint8_t *out = lq_xmalloc(n);
    mqtt_encode_suback(MQTT_UNSUBACK, &ack, s->version, out, n);
    conn_write(s->conn, out, n);
    free(out);
    free(codes);
    return MQTT_RC_SUCCESS;
}

void
session_unsubscribe_all(struct session *s)
{
    for (size_t i = 0; i < s->nsubs; i++) {
        struct ssub *x = &s->subs[i];
        topic_tree_remove(s->b->subs, x->filter, strlen(x->filter), x->group,
                          x->group ? strlen(x->group) : 0, s);
        free(x->filter);
        free(x->group);
    }
    s->nsubs = 0;
}
