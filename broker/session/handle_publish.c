/* SPDX-License-Identifier: MIT
 *
 * handle_publish: an incoming PUBLISH and the receiver's half of QoS 2 (PUBREL).
 * Resolves topic aliases, applies limits, builds the immutable struct msg once,
 * stores it if retained and hands it to routing; then acknowledges. QoS 2 is
 * exactly once by remembering the packet id until PUBREL: a duplicate PUBLISH with
 * that id is acknowledged again but not routed again [MQTT-4.3.3-*]. */
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "cluster.h"
#include "hooks.h"
#include "net.h"
#include "retain.h"
#include "session_int.h"

/* Forwardable properties of a PUBLISH (or will) encoded once, stored in the msg. */
size_t
publish_props_blob(const struct mqtt_props *in, uint8_t *out, size_t cap)
{
    struct mqtt_props f;
    memset(&f, 0, sizeof(f));
    const uint64_t keep = MQTT_PBIT(MQTT_PROP_PAYLOAD_FORMAT) | MQTT_PBIT(MQTT_PROP_CONTENT_TYPE) |
                          MQTT_PBIT(MQTT_PROP_RESPONSE_TOPIC) |
                          MQTT_PBIT(MQTT_PROP_CORRELATION_DATA) |
                          MQTT_PBIT(MQTT_PROP_USER_PROPERTY);
    f.present = in->present & keep;
    f.payload_format = in->payload_format;
    f.content_type = in->content_type;
    f.response_topic = in->response_topic;
    f.correlation_data = in->correlation_data;
    f.user = in->user;
    f.user_count = in->user_count;
    return mqtt_encode_props_raw(&f, out, cap);
}

bool
in_pid_find(const struct session *s, uint16_t pid, uint32_t *at)
{
    for (uint32_t i = 0; i < s->nin; i++) {
        if (s->in_pids[i] == pid) {
            if (at) *at = i;
            return true;
        }
    }
    return false;
}

void
in_pid_add(struct session *s, uint16_t pid)
{
    if (s->nin == s->capin) {
        s->capin = s->capin ? s->capin * 2 : 8;
        s->in_pids = lq_xrealloc(s->in_pids, s->capin * sizeof(*s->in_pids));
    }
    s->in_pids[s->nin++] = pid;
    persist_in_pid(s, pid, true);
}

/* An acknowledgement to the publisher: sent, or withheld while it is held back (in
 * order: once one is withheld, the ones after it wait too). */
static void
ack_publisher(struct session *s, uint8_t type, uint16_t pid, uint8_t rc, bool hold, uint64_t since)
{
    persist_gate(s, since); /* it leaves once what the message changed is durable */
    if (hold || s->hold) {
        hold_ack(s, type, pid, rc);
        return;
    }
    persist_check_ack(s, since);
    send_ack(s, type, pid, rc);
}

/* QoS 1/2 messages the client sent that we have not finished acknowledging. */
static uint32_t
unacknowledged(const struct session *s)
{
    return s->nin + (s->hold ? s->hold->nqos1 : 0);
}

/* A message not taken: an MQTT 5 publisher hears rc in its PUBACK/PUBREC; a 3.1.x one
 * cannot be told, so its QoS 1/2 flow completes as if the message had been taken. */
static void
refuse_message(struct session *s, const struct mqtt_publish *p, uint8_t rc, uint64_t since)
{
    uint8_t ack = s->version == MQTT_V5 ? rc : MQTT_RC_SUCCESS;
    if (p->qos == 1) ack_publisher(s, MQTT_PUBACK, p->packet_id, ack, false, since);
    if (p->qos == 2) {
        if (!ack) in_pid_add(s, p->packet_id);
        ack_publisher(s, MQTT_PUBREC, p->packet_id, ack, false, since);
    }
}

/* The topic of p, resolving a topic alias [MQTT-3.3.2-7..12]. */
static uint8_t
resolve_topic(struct session *s, const struct mqtt_publish *p, const char **topic, size_t *len)
{
    *topic = (const char *)p->topic.p;
    *len = p->topic.len;
    if (!(p->props.present & MQTT_PBIT(MQTT_PROP_TOPIC_ALIAS))) {
        if (*len == 0)
            return s->version == MQTT_V5 ? MQTT_RC_PROTOCOL_ERROR : MQTT_RC_TOPIC_NAME_INVALID;
        return MQTT_RC_SUCCESS;
    }
    uint16_t a = p->props.topic_alias;
    if (a == 0 || a > TOPIC_ALIAS_MAX) return MQTT_RC_TOPIC_ALIAS_INVALID;
    if (*len) {
        if (!s->aliases) s->aliases = lq_xcalloc(1, sizeof(*s->aliases));
        free(s->aliases->in[a]);
        s->aliases->in[a] = lq_xstrndup(*topic, *len);
        return MQTT_RC_SUCCESS;
    }
    if (!s->aliases || !s->aliases->in[a]) return MQTT_RC_PROTOCOL_ERROR; /* alias never set */
    *topic = s->aliases->in[a];
    *len = strlen(s->aliases->in[a]);
    return MQTT_RC_SUCCESS;
}

static struct msg *
make_msg(struct session *s, const struct mqtt_publish *p, const char *topic, size_t tlen)
{
    uint8_t small[256];
    size_t n = publish_props_blob(&p->props, NULL, 0);
    uint8_t *blob = n <= sizeof(small) ? small : lq_xmalloc(n);
    if (n) publish_props_blob(&p->props, blob, n);
    struct msg_init in = {
        .topic = topic,
        .topic_len = tlen,
        .payload = p->payload.p,
        .payload_len = p->payload.len,
        .props = blob,
        .props_len = n,
        .qos = p->qos,
        .retain = p->retain,
        .has_expiry = (p->props.present & MQTT_PBIT(MQTT_PROP_MESSAGE_EXPIRY)) != 0,
        .expiry_interval = p->props.message_expiry,
        .origin = s,
        .adopt = s->conn ? conn_take_packet(s->conn) : NULL, /* a large packet: no copy */
    };
    struct msg *m = msg_new(&in);
    if (blob != small) free(blob);
    return m;
}

static void
retain_and_route(struct broker *b, struct msg *m, const struct session *origin,
                 enum deliver_how how, struct route_result *r)
{
    if (m->retain && b->conf.retain_available) {
        retain_set(b->retained, m);
        persist_retain(b, m);
    }
    unsigned fw = cluster_forward(b->cluster, m, how == DELIVER_HOLDABLE);
    route_publish(b, m, origin, how, !(fw & CLUSTER_GROUPS), r);
    if (fw & CLUSTER_HOLD) r->hold_publisher = true;
    if (b->cluster) r->no_subscriber = false; /* other nodes may have subscribers */
}

uint8_t
broker_publish(struct broker *b, struct msg *m, const struct session *origin,
               const struct hook_client *cl, const struct hook *skip, enum deliver_how how,
               struct route_result *r)
{
    struct hook_verdict v = {0};
    if (!hooks_run(b->hooks, m, cl, skip, &v)) { /* no hook for this topic */
        retain_and_route(b, m, origin, how, r);
        return 0;
    }
    memset(r, 0, sizeof(*r));
    if (v.n == 0) b->ctr.dropped_hook++; /* the hook's doing: not "no subscriber" */
    for (size_t i = 0; i < v.n; i++) {
        struct route_result one;
        retain_and_route(b, v.out[i], origin, how, &one);
        r->matched += one.matched;
        r->quota_exceeded |= one.quota_exceeded;
        r->hold_publisher |= one.hold_publisher;
    }
    r->no_subscriber = v.n > 0 && r->matched == 0;
    uint8_t refuse = v.refuse;
    hook_verdict_clear(&v);
    return refuse;
}

/* $SYS/broker/connection/<id>/state: a bridge's notification, and its will */
static bool
is_bridge_state(const char *t, size_t len)
{
    static const char pfx[] = "$SYS/broker/connection/", sfx[] = "/state";
    size_t np = sizeof(pfx) - 1, ns = sizeof(sfx) - 1;
    if (len <= np + ns || memcmp(t, pfx, np) || memcmp(t + len - ns, sfx, ns)) return false;
    return memchr(t + np, '/', len - np - ns) == NULL;
}

uint8_t
handle_publish(struct session *s, uint8_t flags, const uint8_t *body, size_t len)
{
    struct broker *b = s->b;
    struct mqtt_publish p;
    uint8_t rc = mqtt_decode_publish(flags, body, len, s->version, &p);
    if (rc) return rc;
    uint64_t since = persist_seq(b); /* the ack waits for what this PUBLISH changed */
    b->ctr.msgs_received++;
    b->ctr.received_qos[p.qos & 3]++;
    b->ctr.received_bytes_qos[p.qos & 3] += len + 2; /* about: the header is 2..5 bytes */
    const char *topic;
    size_t tlen;
    rc = resolve_topic(s, &p, &topic, &tlen);
    if (rc) return rc;
    if (s->bridge) { /* from another broker: its topic here */
        topic = bridge_map_in(s->bridge, topic, tlen, &tlen);
        if (!topic) { /* none of the bridge's topics: an old subscription there */
            refuse_message(s, &p, MQTT_RC_NO_MATCHING_SUBSCRIBERS, since);
            return MQTT_RC_SUCCESS;
        }
    }
    if (topic_is_too_deep(topic, tlen, b->conf.max_topic_levels)) return MQTT_RC_TOPIC_NAME_INVALID;
    if (p.retain && !b->conf.retain_available)
        return MQTT_RC_RETAIN_NOT_SUPPORTED; /* [MQTT-3.3.1-?] */
    bool v5 = s->version == MQTT_V5;

    /* duplicate: ack, do not route; after everything appended so far (its first PUBREC,
     * on a connection since taken over, may not have been durable yet) */
    if (p.qos == 2 && in_pid_find(s, p.packet_id, NULL)) {
        ack_publisher(s, MQTT_PUBREC, p.packet_id, 0, false, 0);
        return MQTT_RC_SUCCESS;
    }
    /* past our Receive Maximum [MQTT-3.3.4-7] (QoS 1 only while held). 3.1.x clients do
     * not know it: while held they are not read past it instead (hold_ack), and only the
     * QoS 2 state we keep for them is bounded here */
    uint32_t unacked = v5 ? unacknowledged(s) : p.qos == 2 ? s->nin : 0;
    if (p.qos && unacked >= broker_receive_max(b)) return MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED;
    if (b->conf.message_size_limit && p.payload.len > b->conf.message_size_limit) {
        b->ctr.dropped_oversize++;
        session_log(s, LQ_LOG_NOTICE,
                    "message on \"%.*s\" over message_size_limit (%zu > %u): dropped", (int)tlen,
                    topic, p.payload.len, b->conf.message_size_limit);
        refuse_message(s, &p, MQTT_RC_QUOTA_EXCEEDED, since);
        return MQTT_RC_SUCCESS;
    }
    /* only the broker (and its bridges) write there: neither routed nor kept; but the
     * state of a bridge connected here is the bridge's to say (mosquitto's convention) */
    if (topic_is_sys(topic, tlen) && !s->bridge && !is_bridge_state(topic, tlen)) {
        b->ctr.dropped_sys_topic++;
        lq_log_limited(&b->sys_publish_log, LQ_LOG_NOTICE,
                       "client \"%s\" %s: publish to \"%.*s\" refused: $SYS topics are the "
                       "broker's",
                       s->id, conn_peer(s->conn), (int)tlen, topic);
        refuse_message(s, &p, MQTT_RC_NOT_AUTHORIZED, since);
        return MQTT_RC_SUCCESS;
    }
    if (s->acl && !access_may_publish(s, topic, tlen)) { /* acl_file, before the hooks */
        refuse_message(s, &p, MQTT_RC_NOT_AUTHORIZED, since);
        return MQTT_RC_SUCCESS;
    }

    /* QoS 2: its queue entries and its packet id are replayed all or none, else a
     * restart could route the re-sent PUBLISH again, or acknowledge it unrouted */
    if (p.qos == 2) persist_group_begin(b);
    struct msg *m = make_msg(s, &p, topic, tlen);
    struct hook_client cl = {.id = s->id,
                             .username = s->username,
                             .address = conn_peer(s->conn),
                             .version = s->version,
                             .cert = conn_tls_identity(s->conn),
                             .listener = listener_name(conn_listener(s->conn))};
    struct route_result r;
    uint8_t refused =
        broker_publish(b, m, s, &cl, NULL, p.qos ? DELIVER_HOLDABLE : DELIVER_NO_HOLD, &r);
    msg_unref(m);

    uint8_t ack = !v5                ? MQTT_RC_SUCCESS
                  : refused          ? refused
                  : r.quota_exceeded ? MQTT_RC_QUOTA_EXCEEDED
                  : r.no_subscriber  ? MQTT_RC_NO_MATCHING_SUBSCRIBERS
                                     : MQTT_RC_SUCCESS;
    bool hold = r.hold_publisher && s->conn;
    if (p.qos == 1) ack_publisher(s, MQTT_PUBACK, p.packet_id, ack, hold, since);
    if (p.qos == 2) {
        if (ack < 0x80) in_pid_add(s, p.packet_id); /* 0x10 is a success: PUBREL follows */
        persist_group_end(b);
        ack_publisher(s, MQTT_PUBREC, p.packet_id, ack, hold, since);
    }
    persist_pause_if_behind(s, since); /* QoS 0 too: a retained one is written */
    return MQTT_RC_SUCCESS;
}

uint8_t
handle_pubrel(struct session *s, const struct mqtt_ack *a)
{
    uint32_t at;
    if (!in_pid_find(s, a->packet_id, &at)) { /* [MQTT-4.3.3-?]: answer, 0x92 */
        send_ack(s, MQTT_PUBCOMP, a->packet_id, MQTT_RC_PACKET_ID_NOT_FOUND);
        return MQTT_RC_SUCCESS;
    }
    uint64_t since = persist_seq(s->b);
    s->in_pids[at] = s->in_pids[--s->nin];
    persist_in_pid(s, a->packet_id, false);
    persist_gate(s, since); /* else a restart could take its next use of the id for a duplicate */
    persist_check_ack(s, since);
    send_ack(s, MQTT_PUBCOMP, a->packet_id, 0);
    return MQTT_RC_SUCCESS;
}
