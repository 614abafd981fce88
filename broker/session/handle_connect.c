/* SPDX-License-Identifier: MIT
 *
 * handle_connect: CONNECT -> CONNACK. Decides the client identifier (assigning one
 * when it is empty), takes over or resumes a session, sets the will, agrees keep
 * alive and limits, and advertises the broker's real limits in CONNACK. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "retain.h"
#include "cluster.h"
#include "session_int.h"

static void
send_connack(struct conn *c, uint8_t version, uint8_t rc, bool present,
             const struct mqtt_props *props)
{
    struct mqtt_connack ca;
    memset(&ca, 0, sizeof(ca));
    ca.session_present = present;
    ca.reason = version == MQTT_V5 ? rc : mqtt_rc_to_v3_connack(rc);
    if (props) ca.props = *props;
    uint8_t buf[512];
    size_t n = mqtt_encode_connack(&ca, version, buf, sizeof(buf));
    if (n <= sizeof(buf)) conn_write_now(c, buf, n);
}

/* Refuse: CONNACK with a failure code, then close [MQTT-3.2.2-6..7]. */
static void
refuse(struct conn *c, const struct mqtt_connect *ck, uint8_t rc, const char *why)
{
    connlog_refused(c, ck, rc, why);
    uint8_t v = ck->version;
    if (v == MQTT_V5 || v == MQTT_V311 || v == MQTT_V31) send_connack(c, v, rc, false, NULL);
    conn_close(c);
}

void
handle_connect_too_large(struct broker *b, struct conn *c, uint32_t size)
{
    uint8_t head[16]; /* the fixed header and the protocol name and level */
    uint8_t v = mqtt_connect_version(head, conn_peek(c, head, sizeof(head)));
    lq_log_limited(&b->connect_too_large_log, LQ_LOG_NOTICE,
                   "%s: CONNECT too large (%u > %u bytes, max_connect_packet_size): refused",
                   conn_peer(c), size, broker_connect_max_packet(b));
    if (v == MQTT_V5) send_connack(c, v, MQTT_RC_PACKET_TOO_LARGE, false, NULL);
    conn_close(c);
}

static struct msg *
make_will(struct session *s, const struct mqtt_connect *ck)
{
    const struct mqtt_props *wp = &ck->will_props;
    size_t n = publish_props_blob(wp, NULL, 0);
    uint8_t *blob = n ? lq_xmalloc(n) : NULL;
    if (n) publish_props_blob(wp, blob, n);
    struct msg_init in = {
        .topic = (const char *)ck->will_topic.p,
        .topic_len = ck->will_topic.len,
        .payload = ck->will_payload.p,
        .payload_len = ck->will_payload.len,
        .props = blob,
        .props_len = n,
        .qos = ck->will_qos,
        .retain = ck->will_retain,
        .has_expiry = (wp->present & MQTT_PBIT(MQTT_PROP_MESSAGE_EXPIRY)) != 0,
        .expiry_interval = wp->message_expiry,
        .origin = s,
    };
    struct msg *m = msg_new(&in);
    free(blob);
    return m;
}

/* A CONNECT waiting for the cluster to say who owns its client id (cluster.h,
 * "sessions"): the packet is kept to be handled again once the answer is in, the
 * connection reads nothing meanwhile. A session handed over from another node is
 * rebuilt here (s) and waits for its subscriptions to reach NATS, then for what was
 * queued for it there meanwhile. One list for the broker (b->connect_waits). */
struct connect_wait {
    struct connect_wait *next;
    struct broker *b;
    struct conn *c;
    struct cluster_claim *cl;
    struct session *s; /* rebuilt from the first answer */
    uint64_t mark;     /* cluster_subscribe_mark after its subscriptions were made */
    uint32_t got;      /* messages in the first answer */
    uint32_t expiry;   /* the CONNECT's session expiry */
    bool decided;      /* connect_run goes on without asking again */
    uint8_t flags;
    size_t len;
    uint8_t body[];
};

static void connect_run(struct broker *b, struct conn *c, uint8_t flags, const uint8_t *body,
                        size_t len, bool authenticated, struct connect_wait *w);

void
handle_connect(struct broker *b, struct conn *c, uint8_t flags, const uint8_t *body, size_t len)
{
    connect_run(b, c, flags, body, len, false, NULL);
}

void
handle_connect_authenticated(struct broker *b, struct conn *c, uint8_t flags, const uint8_t *body,
                             size_t len)
{
    connect_run(b, c, flags, body, len, true, NULL);
}

/* ---- CONNECTs that wait for the cluster ---- */

static void
wait_unlink(struct connect_wait *w)
{
    for (struct connect_wait **at = &w->b->connect_waits; *at; at = &(*at)->next) {
        if (*at == w) {
            *at = w->next;
            return;
        }
    }
}

static void
wait_free(struct connect_wait *w)
{
    wait_unlink(w);
    cluster_claim_free(w->cl);
    free(w);
}

/* Handle the CONNECT again, decided: the session is this node's now (w->s if it was
 * handed over). */
static void
wait_done(struct connect_wait *w)
{
    struct conn *c = w->c;
    wait_unlink(w);
    w->decided = true;
    conn_resume(c);
    connect_run(w->b, c, w->flags, w->body, w->len, true, w);
    cluster_claim_free(w->cl);
    free(w);
}

/* A session of this id here that another node owned since is out of date: it goes,
 * without its will (the client's session went on elsewhere). */
static void
end_stale(struct broker *b, const char *id, size_t idlen)
{
    struct session *s = registry_find(b, id, idlen);
    if (!s) return;
    session_clear_will(s);
    if (s->conn) session_disconnect(s, MQTT_RC_SESSION_TAKEN_OVER, "owned by another node");
    if ((s = registry_find(b, id, idlen))) session_end(s);
}

static void
released(struct cluster_claim *cl, void *arg)
{
    struct connect_wait *w = arg;
    size_t n;
    const uint8_t *p = cluster_claim_state(cl, &n);
    if (cluster_claim_result(cl) == CLAIM_TAKEN && !handover_load(w->s, p, n, false, NULL))
        session_log(w->s, LQ_LOG_WARNING, "what was queued for it on its last node is unreadable");
    wait_done(w);
}

void
session_connect_waits_release(struct broker *b)
{
    for (struct connect_wait *w = b->connect_waits, *next; w; w = next) {
        next = w->next;
        if (w->s && !w->decided && cluster_subscribed(b->cluster, w->mark)) {
            w->decided = true; /* asked once */
            if (!cluster_claim_release(w->cl, w->got, released, w)) wait_done(w);
        }
    }
}

static void
claimed(struct cluster_claim *cl, void *arg)
{
    struct connect_wait *w = arg;
    struct broker *b = w->b;
    struct mqtt_connect ck;
    memset(&ck, 0, sizeof(ck));
    mqtt_decode_connect(w->flags, w->body, w->len, &ck); /* decoded once already: it is whole */
    const char *id = (const char *)ck.client_id.p;
    size_t idlen = ck.client_id.len;
    size_t n;
    const uint8_t *p;
    switch (cluster_claim_result(cl)) {
    case CLAIM_PARTITION:
        if (b->conf.cluster_partition_refuse) {
            struct conn *c = w->c;
            wait_free(w);
            conn_resume(c);
            return refuse(c, &ck, MQTT_RC_SERVER_UNAVAILABLE,
                          "cluster: cannot learn which node has its session (NATS or JetStream "
                          "unreachable, cluster_partition refuse)");
        }
        break;
    case CLAIM_LOCAL: break;
    case CLAIM_GONE: end_stale(b, id, idlen); break;
    case CLAIM_TAKEN:
        end_stale(b, id, idlen);
        p = cluster_claim_state(cl, &n);
        w->s = session_new(b, id, idlen);
        w->s->expiry = w->expiry;
        if (!handover_load(w->s, p, n, true, &w->got)) {
            session_log(w->s, LQ_LOG_WARNING,
                        "the state its last node handed over is unreadable: starts clean");
            session_end(w->s);
            w->s = NULL;
            break;
        }
        session_log(w->s, LQ_LOG_INFO,
                    "taken over from another node: %u subscriptions, %u "
                    "messages",
                    w->s->nsubs, w->got);
        w->mark = cluster_subscribe_mark(b->cluster);
        session_connect_waits_release(b); /* at once if nothing waits for NATS */
        return;
    }
    wait_done(w);
}

/* Ask the cluster first; true: the CONNECT waits (it is kept). */
static bool
wait_for_cluster(struct broker *b, struct conn *c, uint8_t flags, const uint8_t *body, size_t len,
                 const char *id, size_t idlen, bool clean, uint32_t expiry)
{
    struct connect_wait *w = lq_xcalloc(1, sizeof(*w) + len);
    w->b = b;
    w->c = c;
    w->flags = flags;
    w->len = len;
    w->expiry = expiry;
    memcpy(w->body, body, len);
    if (!(w->cl = cluster_claim(b->cluster, id, idlen, clean, claimed, w))) {
        free(w);
        return false;
    }
    w->next = b->connect_waits;
    b->connect_waits = w;
    conn_pause(c);
    return true;
}

void
session_connect_wait_gone(struct broker *b, struct conn *c)
{
    for (struct connect_wait *w = b->connect_waits; w; w = w->next) {
        if (w->c != c) continue;
        if (w->s) session_arm_expiry(w->s); /* kept for its expiry, or ended */
        wait_free(w);
        return;
    }
}

void
session_connect_waits_free(struct broker *b)
{
    while (b->connect_waits) wait_free(b->connect_waits);
}

void
handle_connect_refuse(struct broker *b, struct conn *c, uint8_t flags, const uint8_t *body,
                      size_t len, uint8_t rc, const char *why)
{
    (void)b;
    struct mqtt_connect ck;
    memset(&ck, 0, sizeof(ck));
    mqtt_decode_connect(flags, body, len, &ck); /* decoded once already: it is whole */
    refuse(c, &ck, rc, why);
}

/* The CONNECT; `authenticated`: the second time, after its password was checked; w:
 * after the cluster said which node has its session. */
static void
connect_run(struct broker *b, struct conn *c, uint8_t flags, const uint8_t *body, size_t len,
            bool authenticated, struct connect_wait *w)
{
    struct mqtt_connect ck;
    memset(&ck, 0, sizeof(ck));
    uint64_t since = persist_seq(b); /* CONNACK waits for what this CONNECT changed */
    uint8_t rc = mqtt_decode_connect(flags, body, len, &ck);
    if (rc == MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION) {
        /* [MQTT-3.1.2-2]: answer in a form the client can read, then close */
        uint8_t v = ck.version >= MQTT_V5 ? MQTT_V5 : MQTT_V311;
        connlog_bad_protocol(c, ck.version, ck.protocol_name.len != 0);
        if (ck.protocol_name.len) send_connack(c, v, rc, false, NULL);
        conn_close(c);
        return;
    }
    if (rc) return refuse(c, &ck, rc, "bad CONNECT");
    bool v5 = ck.version == MQTT_V5;

    if (ck.props.present & MQTT_PBIT(MQTT_PROP_AUTH_METHOD))
        return refuse(c, &ck, MQTT_RC_BAD_AUTHENTICATION_METHOD, "no AUTH method is supported");
    /* use_identity_as_username: the verified certificate names the client */
    const char *cert_user = conn_tls_username(c);
    if (cert_user && !*cert_user)
        return refuse(c, &ck, MQTT_RC_NOT_AUTHORIZED, "certificate gives no username");
    if (ck.will) {
        if (!topic_name_is_valid((const char *)ck.will_topic.p, ck.will_topic.len))
            return refuse(c, &ck, MQTT_RC_TOPIC_NAME_INVALID, "will topic");
        if (topic_is_too_deep((const char *)ck.will_topic.p, ck.will_topic.len,
                              b->conf.max_topic_levels))
            return refuse(c, &ck, MQTT_RC_TOPIC_NAME_INVALID, "will topic over max_topic_levels");
        if (ck.will_retain && !b->conf.retain_available) /* [MQTT-3.2.2-13] */
            return refuse(c, &ck, MQTT_RC_RETAIN_NOT_SUPPORTED, "retained will");
    }
    uint16_t keepalive = ck.keep_alive;
    bool server_keepalive = false;
    if (b->conf.max_keepalive && (keepalive == 0 || keepalive > b->conf.max_keepalive)) {
        if (!v5) /* v3 cannot be told another value: refuse as mosquitto does */
            return refuse(c, &ck, MQTT_RC_CLIENT_ID_NOT_VALID, "keep alive over max_keepalive");
        keepalive = b->conf.max_keepalive;
        server_keepalive = true;
    }

    /* the client identifier, assigned when empty [MQTT-3.1.3-6,7] */
    char idbuf[40];
    const char *id = (const char *)ck.client_id.p;
    size_t idlen = ck.client_id.len;
    bool assigned = false;
    if (idlen == 0) {
        if (ck.version == MQTT_V31 || (ck.version == MQTT_V311 && !ck.clean_start))
            return refuse(c, &ck, MQTT_RC_CLIENT_ID_NOT_VALID,
                          "empty client id"); /* [MQTT-3.1.3-8] */
        idlen = (size_t)snprintf(idbuf, sizeof(idbuf), "auto-%016llx",
                                 (unsigned long long)b->next_auto_id++);
        id = idbuf;
        assigned = true;
    }
    struct session *bs = registry_find(b, id, idlen);
    if (bs && bs->bridge) /* a bridge's local side is not a client's to take */
        return refuse(c, &ck, MQTT_RC_CLIENT_ID_NOT_VALID, "the client id of a bridge");
    if (!authenticated) { /* Lua on_connect hooks, password_file, allow_anonymous */
        uint8_t arc = 0;
        const char *why = "";
        switch (access_connect(b, c, &ck, id, idlen, cert_user, flags, body, len, &arc, &why)) {
        case ACCESS_PENDING: return;
        case ACCESS_REFUSE: return refuse(c, &ck, arc, why);
        case ACCESS_ALLOW: break;
        }
    }

    uint32_t expiry;
    if (v5) {
        expiry =
            (ck.props.present & MQTT_PBIT(MQTT_PROP_SESSION_EXPIRY)) ? ck.props.session_expiry : 0;
    } else if (ck.clean_start) {
        expiry = 0;
    } else {
        int64_t pce = b->conf.persistent_client_expiration;
        expiry = pce < 0 || pce >= EXPIRY_NEVER ? EXPIRY_NEVER : (uint32_t)pce;
    }

    /* another node may have its session (an assigned id is this node's alone) */
    if (!w && !assigned && b->cluster &&
        wait_for_cluster(b, c, flags, body, len, id, idlen, ck.clean_start, expiry))
        return;

    /* takeover: the old connection goes [MQTT-3.1.4-3] */
    struct session *s = registry_find(b, id, idlen);
    if (s && s->conn) {
        session_disconnect(s, MQTT_RC_SESSION_TAKEN_OVER,
                           "a new connection with the same client id");
        s = registry_find(b, id, idlen); /* it may have ended */
    }
    if (s && ck.clean_start) { /* [MQTT-3.1.2-4] */
        session_end(s);
        s = NULL;
    }
    bool present = s != NULL;
    if (!s) s = session_new(b, id, idlen);

    session_attach(s, c);
    s->version = ck.version;
    s->expiry = expiry;
    s->connect_expiry = expiry;
    s->keepalive = keepalive;
    free(s->username);
    s->username = cert_user         ? lq_xstrdup(cert_user)
                  : ck.has_username ? lq_xstrndup((const char *)ck.username.p, ck.username.len)
                                    : NULL;
    access_bind(s); /* its ACL: this username, maybe not the last connection's */
    s->peer_bridge = ck.bridge;
    s->problem_info = !(ck.props.present & MQTT_PBIT(MQTT_PROP_REQUEST_PROBLEM_INFO)) ||
                      ck.props.request_problem_info;
    s->client_recv_max = (ck.props.present & MQTT_PBIT(MQTT_PROP_RECEIVE_MAXIMUM))
                             ? ck.props.receive_maximum
                             : 65535;
    s->client_max_packet = (ck.props.present & MQTT_PBIT(MQTT_PROP_MAXIMUM_PACKET_SIZE))
                               ? ck.props.maximum_packet_size
                               : UINT32_MAX;
    s->client_alias_max = (ck.props.present & MQTT_PBIT(MQTT_PROP_TOPIC_ALIAS_MAXIMUM))
                              ? ck.props.topic_alias_maximum
                              : 0;
    if (ck.will)
        session_set_will(s, make_will(s, &ck),
                         (ck.will_props.present & MQTT_PBIT(MQTT_PROP_WILL_DELAY))
                             ? ck.will_props.will_delay
                             : 0);
    conn_set_max_packet(c, broker_max_packet(b)); /* the CONNECT limits are lifted */
    conn_set_deadline(c, 0);
    conn_set_keepalive(c, (uint64_t)keepalive * 1500); /* 1.5 x [MQTT-3.1.2-22] */

    struct mqtt_props p;
    memset(&p, 0, sizeof(p));
    if (v5) {
        p.present =
            MQTT_PBIT(MQTT_PROP_RECEIVE_MAXIMUM) | MQTT_PBIT(MQTT_PROP_RETAIN_AVAILABLE) |
            MQTT_PBIT(MQTT_PROP_TOPIC_ALIAS_MAXIMUM) | MQTT_PBIT(MQTT_PROP_WILDCARD_SUB_AVAILABLE) |
            MQTT_PBIT(MQTT_PROP_SUB_ID_AVAILABLE) | MQTT_PBIT(MQTT_PROP_SHARED_SUB_AVAILABLE);
        p.receive_maximum = (uint16_t)broker_receive_max(b);
        p.retain_available = b->conf.retain_available;
        p.topic_alias_maximum = TOPIC_ALIAS_MAX;
        p.wildcard_sub_available = 1;
        p.sub_id_available = 1;
        p.shared_sub_available = 1;
        if (b->conf.max_packet_size) {
            p.present |= MQTT_PBIT(MQTT_PROP_MAXIMUM_PACKET_SIZE);
            p.maximum_packet_size = b->conf.max_packet_size;
        }
        if (assigned) {
            p.present |= MQTT_PBIT(MQTT_PROP_ASSIGNED_CLIENT_ID);
            p.assigned_client_id = (struct lq_bytes){(const uint8_t *)s->id, s->id_len};
        }
        if (server_keepalive) {
            p.present |= MQTT_PBIT(MQTT_PROP_SERVER_KEEP_ALIVE);
            p.server_keep_alive = keepalive;
        }
    }
    persist_session(s); /* CONNACK says the session exists: once it is durable */
    persist_gate(s, since);
    send_connack(c, ck.version, MQTT_RC_SUCCESS, present, v5 ? &p : NULL);
    s->connected = true;
    s->connected_at = lq_wall_time();
    connlog_connected(s, &ck, present);
    if (present) session_resend_inflight(s);
    session_pump(s);
}
