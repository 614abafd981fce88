/* SPDX-License-Identifier: MIT
 *
 * handover: a session moving to another node of the cluster (cluster.h, "sessions").
 * The node that had it writes its state (handover_dump); the node the client
 * connected to rebuilds it (handover_load) before answering the CONNECT.
 *
 * What moves: the subscriptions with their options, the QoS 2 packet ids received and
 * not yet released, the next packet id, and the messages in flight (with their packet
 * ids and states, to be resent as MQTT asks [MQTT-4.4.0-1]) and queued, in order. The
 * will does not: the new connection brings its own (the old one's was sent, or is
 * dropped as the session goes on [MQTT-3.1.3-9]). Nor do QoS 0 messages, which are
 * not kept for an absent client.
 *
 * Little-endian fields (store.h's rec_*): version 1; next packet id u16; u32
 * subscriptions, each filter, group (empty: none), qos, flags, identifier; u32 packet
 * ids; then the entries: u32 count, each topic, payload, properties, the message's
 * qos, retain and expiry (u8 has, u32 seconds left), the entry's qos, state, packet
 * id, flags, u32 identifiers. The second answer (what was queued since) is the
 * entries alone. */
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "sbuf.h"
#include "session_int.h"
#include "store.h"

#define HANDOVER_VERSION 1

static void
put_str(struct rec_buf *r, const char *s, size_t n)
{
    rec_bytes(r, s, n);
}

static void
dump_entry(struct rec_buf *r, const struct qentry *e, uint64_t now)
{
    const struct msg *m = e->m;
    put_str(r, m->topic, m->topic_len);
    rec_bytes(r, m->payload, m->payload_len);
    rec_bytes(r, m->props, m->props_len);
    rec_u8(r, m->qos);
    rec_u8(r, m->retain);
    rec_u8(r, m->has_expiry);
    rec_u32(r, m->has_expiry ? msg_expiry_left(m, now) : 0);
    rec_u8(r, e->qos);
    rec_u8(r, e->state);
    rec_u16(r, e->pid);
    rec_u8(r, (uint8_t)(e->retain | e->dup << 1));
    rec_u32(r, e->nsub);
    for (uint32_t i = 0; i < e->nsub; i++) rec_u32(r, e->sub_ids[i]);
}

/* The entries past the first skip: in flight first, then queued (their order). */
static void
dump_entries(struct rec_buf *r, const struct session *s, uint32_t skip)
{
    uint64_t now = lq_now_ms();
    uint32_t n = 0, k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (const struct qentry *e = pass ? s->q_head : s->if_head; e; e = e->next)
            n += e->qos > 0;
    rec_u32(r, n > skip ? n - skip : 0);
    for (int pass = 0; pass < 2; pass++) {
        for (const struct qentry *e = pass ? s->q_head : s->if_head; e; e = e->next) {
            if (e->qos == 0 || k++ < skip) continue;
            if (msg_is_expired(e->m, now) && e->state == Q_QUEUED) { /* still counted */
                struct qentry gone = *e;
                gone.qos = 0; /* an empty slot keeps the count the other side skips by */
                dump_entry(r, &gone, now);
                continue;
            }
            dump_entry(r, e, now);
        }
    }
}

void
handover_dump(struct session *s, bool whole, uint32_t skip, struct sbuf *out)
{
    struct rec_buf r = {0};
    if (whole) {
        rec_u8(&r, HANDOVER_VERSION);
        rec_u16(&r, s->next_pid);
        rec_u32(&r, s->nsubs);
        for (uint32_t i = 0; i < s->nsubs; i++) {
            const struct ssub *x = &s->subs[i];
            put_str(&r, x->filter, strlen(x->filter));
            put_str(&r, x->group ? x->group : "", x->group ? strlen(x->group) : 0);
            rec_u8(&r, x->o.qos);
            rec_u8(&r, (uint8_t)(x->o.no_local | x->o.retain_as_published << 1 |
                                 x->o.retain_handling << 2));
            rec_u32(&r, x->o.sub_id);
        }
        rec_u32(&r, s->nin);
        for (uint32_t i = 0; i < s->nin; i++) rec_u16(&r, s->in_pids[i]);
    }
    dump_entries(&r, s, skip);
    sbuf_put(out, (const char *)r.p, r.len);
    rec_buf_free(&r);
}

static bool
load_entry(struct session *s, struct rec_reader *r)
{
    const uint8_t *topic, *payload, *props;
    uint32_t tlen, plen, prlen, expiry, nsub;
    uint8_t mqos, retain, has_expiry, qos, state, flags;
    uint16_t pid;
    if (!rec_get_bytes(r, &topic, &tlen) || !rec_get_bytes(r, &payload, &plen) ||
        !rec_get_bytes(r, &props, &prlen) || !rec_get_u8(r, &mqos) || !rec_get_u8(r, &retain) ||
        !rec_get_u8(r, &has_expiry) || !rec_get_u32(r, &expiry) || !rec_get_u8(r, &qos) ||
        !rec_get_u8(r, &state) || !rec_get_u16(r, &pid) || !rec_get_u8(r, &flags) ||
        !rec_get_u32(r, &nsub) || nsub > (r->len - r->at) / 4 || tlen == 0 || tlen > 65535 ||
        !topic_name_is_valid((const char *)topic, tlen) || mqos > 2 || qos > 2 ||
        state > Q_WAIT_PUBCOMP || (state != Q_QUEUED && (!pid || !qos)))
        return false;
    uint32_t ids[64], *sub_ids = nsub <= 64 ? ids : lq_xmalloc(nsub * sizeof(uint32_t));
    for (uint32_t i = 0; i < nsub; i++) rec_get_u32(r, &sub_ids[i]);
    if (qos > 0) { /* 0: a slot for one that expired on the way */
        struct msg_init in = {.topic = (const char *)topic,
                              .topic_len = tlen,
                              .payload = payload,
                              .payload_len = plen,
                              .props = prlen ? props : NULL,
                              .props_len = prlen,
                              .qos = mqos,
                              .retain = retain,
                              .has_expiry = has_expiry,
                              .expiry_interval = expiry};
        struct msg *m = msg_new(&in);
        session_restore_entry(s, m, qos, state, pid, flags & 1, flags >> 1 & 1, sub_ids, nsub);
        msg_unref(m);
    }
    if (sub_ids != ids) free(sub_ids);
    return true;
}

bool
handover_load(struct session *s, const uint8_t *p, size_t n, bool whole, uint32_t *nentries)
{
    struct broker *b = s->b;
    struct rec_reader r = {.p = p, .len = n};
    if (whole) {
        uint8_t version;
        uint16_t next_pid;
        uint32_t nsubs, nin;
        if (!rec_get_u8(&r, &version) || version != HANDOVER_VERSION ||
            !rec_get_u16(&r, &next_pid) || !rec_get_u32(&r, &nsubs))
            return false;
        s->next_pid = next_pid ? next_pid : 1;
        for (uint32_t i = 0; i < nsubs; i++) {
            const uint8_t *f, *g;
            uint32_t flen, glen, sub_id;
            uint8_t qos, flags;
            if (!rec_get_bytes(&r, &f, &flen) || !rec_get_bytes(&r, &g, &glen) ||
                !rec_get_u8(&r, &qos) || !rec_get_u8(&r, &flags) || !rec_get_u32(&r, &sub_id) ||
                qos > 2 || !topic_filter_is_valid((const char *)f, flen))
                return false;
            const char *group = glen ? (const char *)g : NULL;
            struct sub_opts o = {.qos = qos,
                                 .no_local = flags & 1,
                                 .retain_as_published = flags >> 1 & 1,
                                 .retain_handling = flags >> 2 & 3,
                                 .sub_id = sub_id};
            topic_tree_add(b->subs, (const char *)f, flen, group, glen, s, &o);
            struct ssub *x = session_sub_find(s, (const char *)f, flen, group, glen);
            if (!x) x = session_sub_add(s, (const char *)f, flen, group, glen);
            x->o = o;
        }
        if (!rec_get_u32(&r, &nin)) return false;
        for (uint32_t i = 0; i < nin; i++) {
            uint16_t pid;
            uint32_t at;
            if (!rec_get_u16(&r, &pid) || !pid) return false;
            if (!in_pid_find(s, pid, &at)) in_pid_add(s, pid);
        }
    }
    uint32_t count;
    if (!rec_get_u32(&r, &count)) return false;
    for (uint32_t i = 0; i < count; i++)
        if (!load_entry(s, &r)) return false;
    if (nentries) *nentries = count;
    return r.at == r.len;
}

bool
session_hand_over(void *ud, int phase, bool clean, uint32_t skip, const char *id, size_t idlen,
                  struct sbuf *out)
{
    struct broker *b = ud;
    struct session *s = registry_find(b, id, idlen);
    if (!s) return false;
    if (phase == 1) {
        if (s->conn) { /* its will goes as in a takeover here */
            session_disconnect(s, MQTT_RC_SESSION_TAKEN_OVER, "taken over on another node");
            if (!(s = registry_find(b, id, idlen))) return false; /* it ended with it */
        }
        if (clean) { /* [MQTT-3.1.2-4]: it ends (a will still waiting goes now) */
            session_end(s);
            return false;
        }
        session_clear_will(s); /* the session goes on [MQTT-3.1.3-9] */
        handover_dump(s, true, 0, out);
        session_log(s, LQ_LOG_INFO,
                    "handed over to another node; kept until it has its "
                    "subscriptions");
        return true;
    }
    if (s->conn) return false; /* back here meanwhile: it stays */
    handover_dump(s, false, skip, out);
    session_log(s, LQ_LOG_INFO, "now on another node: ends here");
    session_clear_will(s);
    session_end(s);
    return true;
}
