/* SPDX-License-Identifier: MIT
 *
 * bridged: the local side of each bridge (bridge.h). A bridge's messages live in an
 * ordinary session, named by its local client id: its `out` topics are that session's
 * subscriptions (No Local, so what came in is not sent back; Retain As Published),
 * its queue is bounded like any and persisted like any, and while the remote is away
 * publishers are held rather than acknowledged and dropped. What comes `in` is
 * published by this session, through the hooks.
 *
 * The session has a connection only while the bridge is up; the bridge owns the link
 * and calls the functions below. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "session_int.h"

/* ---- what the bridge asks of its session ---- */

static void
up(void *sess, struct conn *c, const struct bridge_peer *peer)
{
    struct session *s = sess;
    session_attach(s, c);
    s->version = peer->version;
    s->keepalive = 0;
    s->problem_info = true;
    s->client_recv_max = peer->receive_max ? peer->receive_max : 65535;
    s->client_max_packet = peer->max_packet;
    s->client_alias_max = 0;      /* topics are remapped: no aliases towards the remote */
    if (!peer->session_present) { /* its QoS 2 packet ids are new: ours of old go */
        for (uint32_t i = 0; i < s->nin; i++) persist_in_pid(s, s->in_pids[i], false);
        s->nin = 0;
    }
    conn_set_max_packet(c, broker_max_packet(s->b));
    s->connected = true;
    s->connected_at = lq_wall_time();
    session_resend_inflight(s); /* whatever the remote says: nothing acknowledged is lost */
    session_pump(s);
}

static uint8_t
packet(void *sess, uint8_t tf, const uint8_t *body, size_t len)
{
    struct session *s = sess;
    uint8_t type = tf >> 4, flags = tf & 0x0f;
    struct mqtt_ack a;
    uint8_t rc;
    switch (type) {
    case MQTT_PUBLISH: return handle_publish(s, flags, body, len);
    case MQTT_PUBREL:
        rc = mqtt_decode_ack(type, flags, body, len, s->version, &a);
        return rc ? rc : handle_pubrel(s, &a);
    default: /* PUBACK, PUBREC, PUBCOMP */
        rc = mqtt_decode_ack(type, flags, body, len, s->version, &a);
        return rc ? rc : handle_puback(s, type, &a);
    }
}

static void
drain(void *sess)
{
    session_pump(sess);
}

static void
down(void *sess)
{
    session_detach(sess, false); /* a bridge's session stays, offline */
}

static uint32_t
waiting(void *sess)
{
    const struct session *s = sess;
    return s->nqueued + s->ninflight;
}

static uint16_t
packet_id(void *sess)
{
    return session_next_pid(sess);
}

static void
notify(void *sess, const char *topic, const char *payload)
{
    struct session *s = sess;
    struct msg_init in = {.topic = topic,
                          .topic_len = strlen(topic),
                          .payload = (const uint8_t *)payload,
                          .payload_len = strlen(payload),
                          .qos = 1,
                          .retain = true,
                          .origin = s};
    struct msg *m = msg_new(&in);
    struct route_result r;
    broker_publish(s->b, m, s, NULL, NULL, DELIVER_NO_HOLD, &r);
    msg_unref(m);
}

static const struct bridge_ops bridge_ops = {
    .up = up,
    .packet = packet,
    .drain = drain,
    .down = down,
    .waiting = waiting,
    .packet_id = packet_id,
    .notify = notify,
};

/* ---- the local session ---- */

static bool
wanted(const struct bridge *br, const struct ssub *x)
{
    const char *f;
    uint8_t qos;
    for (size_t k = 0; bridge_local_filter(br, k, &f, &qos); k++)
        if (!x->group && strcmp(x->filter, f) == 0) return true;
    return false;
}

/* The session's subscriptions become the bridge's `out` filters: what a recovered
 * session had beyond them goes, what is missing comes (queued messages stay). */
static void
subscribe_out(struct session *s, const struct bridge *br)
{
    struct broker *b = s->b;
    for (uint32_t i = 0; i < s->nsubs;) {
        struct ssub *x = &s->subs[i];
        if (wanted(br, x)) {
            i++;
            continue;
        }
        topic_tree_remove(b->subs, x->filter, strlen(x->filter), x->group,
                          x->group ? strlen(x->group) : 0, s);
        persist_unsub(s, x);
        session_sub_remove(s, x); /* the last one moves into slot i */
    }
    const char *f;
    uint8_t qos;
    for (size_t k = 0; bridge_local_filter(br, k, &f, &qos); k++) {
        size_t flen = strlen(f);
        struct sub_opts o = {.qos = qos, .no_local = true, .retain_as_published = true};
        struct ssub *x = session_sub_find(s, f, flen, NULL, 0);
        if (x && x->o.qos >= qos) continue; /* two topic lines, one filter: the higher QoS */
        topic_tree_add(b->subs, f, flen, NULL, 0, s, &o);
        if (!x) x = session_sub_add(s, f, flen, NULL, 0);
        x->o = o;
        persist_sub(s, x);
    }
}

static struct session *
local_session(struct broker *b, struct bridge *br)
{
    const char *id = bridge_local_id(br);
    size_t len = strlen(id);
    struct session *s = registry_find(b, id, len);
    if (s && s->conn) { /* a client had taken the id: the bridge's now */
        session_clear_will(s);
        session_disconnect(s, MQTT_RC_SESSION_TAKEN_OVER, "the client id of a bridge");
        s = registry_find(b, id, len);
    }
    bool keep = bridge_keeps_local_session(br);
    if (s && !keep) {
        session_clear_will(s);
        session_end(s);
        s = NULL;
    }
    if (s) {
        lq_log(LQ_LOG_INFO, "bridge %s: local session \"%s\" resumed: %u messages queued",
               bridge_conf_of(br)->name, id, s->nqueued + s->ninflight);
    } else {
        s = session_new(b, id, len);
    }
    s->bridge = br;
    s->expiry = keep ? EXPIRY_NEVER : 0;
    s->version = bridge_conf_of(br)->protocol;
    s->client_recv_max = 65535;
    s->client_max_packet = UINT32_MAX;
    access_unbind(s); /* inside the broker: no acl_file rules */
    subscribe_out(s, br);
    persist_session(s);
    return s;
}

/* The bridge of bc, with its session: 0, or -1 with err. */
static int
bridged_add(struct broker *b, const struct bridge_conf *bc, char *err, size_t errlen)
{
    struct bridged *d = &b->bridged[b->nbridged];
    /* the session is made after the bridge (it names it) and given to it before start */
    d->br = bridge_new(b->bridges, bc, &bridge_ops, NULL, err, errlen);
    if (!d->br) return -1;
    d->s = local_session(b, d->br);
    bridge_set_session(d->br, d->s);
    b->nbridged++;
    bridge_start(d->br);
    return 0;
}

static size_t
count(const struct bridge_conf *bc)
{
    size_t n = 0;
    for (; bc; bc = bc->next) n++;
    return n;
}

int
bridged_open(struct broker *b, char *err, size_t errlen)
{
    size_t n = count(b->conf.bridges);
    if (!n) return 0;
    b->bridges = bridges_new(b->base, (uint16_t)broker_receive_max(b));
    if (!b->bridges) {
        snprintf(err, errlen, "%s: bridges: cannot set up outgoing connections",
                 b->conf.bridges->at);
        return -1;
    }
    b->bridged = lq_xcalloc(n, sizeof(*b->bridged));
    for (const struct bridge_conf *bc = b->conf.bridges; bc; bc = bc->next)
        if (bridged_add(b, bc, err, errlen) < 0) return -1;
    return 0;
}

static void
stop(struct bridged *d)
{
    bridge_free(d->br); /* down(): the session goes offline, and stays */
    d->s->bridge = NULL;
    d->br = NULL;
}

void
bridged_close(struct broker *b)
{
    for (size_t i = 0; i < b->nbridged; i++) stop(&b->bridged[i]);
    b->nbridged = 0;
    free(b->bridged);
    b->bridged = NULL;
}

static const struct bridge_conf *
find_conf(const struct bridge_conf *list, const char *name)
{
    for (; list; list = list->next)
        if (strcmp(list->name, name) == 0) return list;
    return NULL;
}

void
bridged_reload(struct broker *b)
{
    size_t n = count(b->conf.bridges), kept = 0, nstopped = 0;
    struct bridged *next = lq_xcalloc(n + b->nbridged + 1, sizeof(*next));
    char **stopped = lq_xcalloc(b->nbridged + 1, sizeof(*stopped));
    /* unchanged ones go on; changed ones stop, and start again below */
    for (size_t i = 0; i < b->nbridged; i++) {
        struct bridged *d = &b->bridged[i];
        const struct bridge_conf *was = bridge_conf_of(d->br);
        const struct bridge_conf *now = find_conf(b->conf.bridges, was->name);
        if (now && bridge_conf_equal(was, now)) {
            bridge_set_conf(d->br, now);
            next[kept++] = *d;
            continue;
        }
        lq_log(LQ_LOG_NOTICE, "reload: bridge %s %s", was->name,
               now ? "changed: restarting" : "removed");
        stopped[nstopped++] = lq_xstrdup(d->s->id);
        stop(d);
    }
    free(b->bridged);
    b->bridged = next;
    b->nbridged = kept;
    if (n && !b->bridges) b->bridges = bridges_new(b->base, (uint16_t)broker_receive_max(b));
    for (const struct bridge_conf *bc = b->conf.bridges; bc && b->bridges; bc = bc->next) {
        bool running = false;
        for (size_t i = 0; i < b->nbridged && !running; i++)
            running = bridge_conf_of(b->bridged[i].br) == bc;
        if (running) continue;
        char err[512];
        if (bridged_add(b, bc, err, sizeof(err)) < 0)
            lq_log(LQ_LOG_ERR, "reload: bridge %s not started: %s", bc->name, err);
        else
            lq_log(LQ_LOG_NOTICE, "reload: bridge %s started", bc->name);
    }
    /* a stopped bridge's session that no bridge took back: its queue has nowhere to go */
    for (size_t i = 0; i < nstopped; i++) {
        struct session *s = registry_find(b, stopped[i], strlen(stopped[i]));
        if (s && !s->bridge && !s->conn) {
            session_log(s, LQ_LOG_INFO, "bridge gone: %u queued messages dropped",
                        s->nqueued + s->ninflight);
            session_end(s);
        }
        free(stopped[i]);
    }
    free(stopped);
}
