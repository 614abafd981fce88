/* SPDX-License-Identifier: MIT
 *
 * bridge: the link to a remote broker. One state machine per bridge:
 *
 *   IDLE -> (start, or lazy: enough messages wait) -> RESOLVING -> CONNECTING -> UP
 *   any failure -> WAITING (backoff with decorrelated jitter, next address) -> RESOLVING
 *   start_type once: a failure ends in STOPPED; lazy: an idle link goes back to IDLE.
 *
 * CONNECT is written as soon as the socket is dialed (the net layer holds it until TCP
 * and TLS are up). After CONNACK the bridge subscribes to its `in` topics and hands
 * the connection to the session layer (ops->up), which sends and receives the
 * messages; SUBACK, PINGRESP and DISCONNECT stay here. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "bridge_int.h"
#include "conf.h"
#include "lq.h"
#include "mqtt.h"
#include "net.h"
#include "tls.h"

#define CONNECT_TIMEOUT_MS 10000 /* dial, TLS handshake and CONNACK, together */
#define PROBE_TIMEOUT_MS   3000  /* a connection attempt to the first address */

/* connected to a secondary address (round_robin false): is the first one back? */
struct probe {
    struct bridge *br;
    evutil_socket_t fd;
    struct event *ev;
};

static void try_connect(struct bridge *br);
static void link_lost(struct bridge *br, const char *why);
static void arm_tick(struct bridge *br);

static const char *const state_names[] = {
    [BS_IDLE] = "idle",
    [BS_WAITING] = "waiting",
    [BS_RESOLVING] = "connecting",
    [BS_CONNECTING] = "connecting",
    [BS_UP] = "connected",
    [BS_STOPPED] = "stopped",
};

__attribute__((format(printf, 3, 4))) static void
blog(const struct bridge *br, unsigned level, const char *fmt, ...)
{
    if (!lq_log_enabled(level)) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    lq_log(level, "bridge %s (%s): %s", br->bc->name, br->address, msg);
}

static void
set_error(struct bridge *br, const char *why)
{
    size_t n = strlen(why);
    if (n >= sizeof(br->last_error)) n = sizeof(br->last_error) - 1;
    memcpy(br->last_error, why, n);
    br->last_error[n] = '\0';
}

static void
arm(struct event *ev, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    if (evtimer_add(ev, &tv) < 0) lq_log(LQ_LOG_ERR, "bridge: cannot arm a timer");
}

static void
notify_local(struct bridge *br, int up)
{
    if (!br->bc->notifications || br->notified == up) return;
    br->notified = (int8_t)up;
    br->ops->notify(br->sess, br->notify_topic, up ? "1" : "0");
}

/* ---- writing to the remote ---- */

static void
write_packet(struct bridge *br, const uint8_t *p, size_t n)
{
    if (br->conn && !conn_is_closing(br->conn)) conn_write(br->conn, p, n);
}

static void
send_notification_remote(struct bridge *br, bool up)
{
    const struct bridge_conf *bc = br->bc;
    if (!bc->notifications || bc->notifications_local_only) return;
    struct mqtt_publish p;
    memset(&p, 0, sizeof(p));
    p.retain = true;
    p.topic = (struct lq_bytes){(const uint8_t *)br->notify_topic, strlen(br->notify_topic)};
    p.payload = (struct lq_bytes){(const uint8_t *)(up ? "1" : "0"), 1};
    uint8_t out[512];
    size_t n = mqtt_encode_publish(&p, br->version & 0x7f, out, sizeof(out));
    if (n <= sizeof(out)) write_packet(br, out, n);
}

static void
send_connect(struct bridge *br)
{
    const struct bridge_conf *bc = br->bc;
    struct mqtt_connect ck;
    memset(&ck, 0, sizeof(ck));
    uint8_t level = bc->protocol;
    br->version = level;
    if (bc->try_private && level != MQTT_V5 && !br->private_refused) br->version |= 0x80;
    ck.version = level;
    ck.bridge = (br->version & 0x80) != 0;
    ck.clean_start = bc->cleansession;
    ck.keep_alive = bc->keepalive;
    ck.client_id = (struct lq_bytes){(const uint8_t *)br->remote_id, strlen(br->remote_id)};
    if (level == MQTT_V5) {
        ck.props.present = MQTT_PBIT(MQTT_PROP_RECEIVE_MAXIMUM);
        uint16_t rm = br->bs->receive_max;
        ck.props.receive_maximum =
            bc->receive_maximum && bc->receive_maximum < rm ? bc->receive_maximum : rm;
        if (!bc->cleansession) {
            ck.props.present |= MQTT_PBIT(MQTT_PROP_SESSION_EXPIRY);
            /* cleansession false keeps the remote session: "never" unless given */
            ck.props.session_expiry = bc->session_expiry ? bc->session_expiry : UINT32_MAX;
        }
    }
    if (bc->notifications && !bc->notifications_local_only) {
        ck.will = true;
        ck.will_qos = 1;
        ck.will_retain = true;
        ck.will_topic =
            (struct lq_bytes){(const uint8_t *)br->notify_topic, strlen(br->notify_topic)};
        ck.will_payload = (struct lq_bytes){(const uint8_t *)"0", 1};
    }
    if (bc->remote_username) {
        ck.has_username = true;
        ck.username =
            (struct lq_bytes){(const uint8_t *)bc->remote_username, strlen(bc->remote_username)};
        if (bc->remote_password) {
            ck.has_password = true;
            ck.password = (struct lq_bytes){(const uint8_t *)bc->remote_password,
                                            strlen(bc->remote_password)};
        }
    }
    size_t n = mqtt_encode_connect(&ck, NULL, 0);
    uint8_t *out = lq_xmalloc(n);
    mqtt_encode_connect(&ck, out, n);
    write_packet(br, out, n);
    free(out);
}

/* After CONNACK: subscribe to the `in` topics, and undo the subscriptions a persistent
 * remote session may still hold for `out`-only ones (bridge_attempt_unsubscribe). */
static void
send_subscriptions(struct bridge *br)
{
    uint8_t level = br->version & 0x7f;
    size_t nin = 0, nout = 0;
    for (size_t i = 0; i < br->ntopics; i++) {
        if (br->topics[i].dir & BRIDGE_DIR_IN)
            nin++;
        else
            nout++;
    }
    if (nin) {
        struct mqtt_sub_entry *e = lq_xcalloc(nin, sizeof(*e));
        size_t k = 0;
        for (size_t i = 0; i < br->ntopics; i++) {
            const struct btopic *x = &br->topics[i];
            if (!(x->dir & BRIDGE_DIR_IN)) continue;
            e[k].filter =
                (struct lq_bytes){(const uint8_t *)x->remote_filter, strlen(x->remote_filter)};
            e[k].qos = x->qos;
            e[k].no_local = true; /* what we publish there does not come back */
            e[k].retain_as_published = true;
            k++;
        }
        uint16_t pid = br->ops->packet_id(br->sess);
        size_t n = mqtt_encode_subscribe(pid, NULL, e, nin, level, NULL, 0);
        uint8_t *out = lq_xmalloc(n);
        mqtt_encode_subscribe(pid, NULL, e, nin, level, out, n);
        write_packet(br, out, n);
        free(out);
        free(e);
    }
    if (nout && br->bc->attempt_unsubscribe && !br->bc->cleansession) {
        struct lq_bytes *f = lq_xcalloc(nout, sizeof(*f));
        size_t k = 0;
        for (size_t i = 0; i < br->ntopics; i++) {
            const struct btopic *x = &br->topics[i];
            if (x->dir & BRIDGE_DIR_IN) continue;
            f[k++] = (struct lq_bytes){(const uint8_t *)x->remote_filter, strlen(x->remote_filter)};
        }
        uint16_t pid = br->ops->packet_id(br->sess);
        size_t n = mqtt_encode_unsubscribe(pid, NULL, f, nout, level, NULL, 0);
        uint8_t *out = lq_xmalloc(n);
        mqtt_encode_unsubscribe(pid, NULL, f, nout, level, out, n);
        write_packet(br, out, n);
        free(out);
        free(f);
    }
}

/* ---- the link's life ---- */

static uint32_t
next_delay_ms(struct bridge *br)
{
    uint64_t base = (uint64_t)br->bc->restart_base * 1000,
             cap = (uint64_t)br->bc->restart_cap * 1000;
    if (base == 0) base = 1000;
    if (cap < base) cap = base;
    if (cap == base) return (uint32_t)base;
    /* decorrelated jitter: between base and three times the last delay, at most cap */
    uint64_t hi = br->backoff_ms ? (uint64_t)br->backoff_ms * 3 : base;
    if (hi < base) hi = base;
    uint64_t d = base + (hi > base ? (uint64_t)random() % (hi - base + 1) : 0);
    if (d > cap) d = cap;
    br->backoff_ms = (uint32_t)d;
    return (uint32_t)d;
}

/* The attempt failed or the link went: the next address, after a while. */
static void
schedule_retry(struct bridge *br)
{
    enum bridge_start st = br->bc->start_type;
    notify_local(br, 0);
    if (st == BRIDGE_START_ONCE) {
        br->state = BS_STOPPED;
        blog(br, LQ_LOG_NOTICE, "stopped (start_type once)");
        return;
    }
    if (br->bc->naddrs > 1) br->addr = (br->addr + 1) % br->bc->naddrs;
    if (st == BRIDGE_START_LAZY) { /* connects again when messages wait */
        br->state = BS_IDLE;
        arm_tick(br);
        return;
    }
    br->state = BS_WAITING;
    uint32_t ms = next_delay_ms(br);
    blog(br, LQ_LOG_INFO, "next attempt in %.1f s", ms / 1000.0);
    arm(br->retry_ev, ms);
}

static void
drop_conn(struct bridge *br)
{
    struct conn *c = br->conn;
    if (!c) return;
    br->conn = NULL;
    conn_set_aux(c, NULL);
    if (!conn_is_closing(c)) conn_close(c);
}

static void
link_lost(struct bridge *br, const char *why)
{
    bool was_up = br->state == BS_UP;
    set_error(br, why);
    if (was_up) {
        blog(br, LQ_LOG_NOTICE, "connection lost: %s", why);
        event_del(br->ping_ev);
        br->connected_since = 0;
        br->ops->down(br->sess);
    } else {
        br->failures++;
        blog(br, LQ_LOG_NOTICE, "cannot connect: %s", why);
    }
    drop_conn(br);
    schedule_retry(br);
}

static void
probe_free(struct bridge *br)
{
    struct probe *p = br->probe;
    if (!p) return;
    br->probe = NULL;
    event_free(p->ev);
    evutil_closesocket(p->fd);
    free(p);
}

/* A graceful end of the link: "0" to the remote, DISCONNECT, and the session's side. */
static void
link_close(struct bridge *br, const char *why)
{
    if (br->state == BS_UP) {
        send_notification_remote(br, false);
        struct mqtt_disconnect d = {.reason = MQTT_RC_SUCCESS};
        uint8_t out[16];
        size_t n = mqtt_encode_disconnect(&d, br->version & 0x7f, out, sizeof(out));
        if (n <= sizeof(out)) write_packet(br, out, n);
        blog(br, LQ_LOG_INFO, "disconnecting: %s", why);
        event_del(br->ping_ev);
        br->connected_since = 0;
        br->ops->down(br->sess);
    }
    if (br->dns_req) {
        struct evdns_getaddrinfo_request *r = br->dns_req;
        br->dns_req = NULL;
        evdns_getaddrinfo_cancel(r);
    }
    probe_free(br);
    drop_conn(br);
    event_del(br->retry_ev);
    br->state = BS_IDLE; /* the caller says what comes next */
}

static void
dial(struct bridge *br, const struct sockaddr *sa, int salen, const char *host)
{
    struct conn *c = conn_dial(br->bs->dialer, sa, salen, br->tls, host);
    if (!c) {
        char why[160];
        snprintf(why, sizeof(why), "connect: %s", strerror(errno));
        link_lost(br, why);
        return;
    }
    br->conn = c;
    conn_set_aux(c, br);
    conn_set_deadline(c, CONNECT_TIMEOUT_MS);
    conn_set_max_packet(c, 64 * 1024); /* before CONNACK: the session sets its own */
    br->state = BS_CONNECTING;
    send_connect(br);
}

/* IPv4 first: a name like localhost often resolves to ::1 too. */
static const struct evutil_addrinfo *
pick(const struct evutil_addrinfo *ai)
{
    for (const struct evutil_addrinfo *a = ai; a; a = a->ai_next)
        if (a->ai_family == AF_INET) return a;
    return ai;
}

static void
resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    if (result == EVUTIL_EAI_CANCEL) return; /* the bridge is gone or stopped */
    struct bridge *br = arg;
    br->dns_req = NULL;
    if (result != 0 || !res) {
        char why[200];
        snprintf(why, sizeof(why), "cannot resolve %s: %s", br->bc->addrs[br->addr].host,
                 evutil_gai_strerror(result));
        if (res) evutil_freeaddrinfo(res);
        link_lost(br, why);
        return;
    }
    const struct evutil_addrinfo *a = pick(res);
    dial(br, a->ai_addr, (int)a->ai_addrlen, br->bc->addrs[br->addr].host);
    evutil_freeaddrinfo(res);
}

static void
try_connect(struct bridge *br)
{
    const struct bridge_addr *ad = &br->bc->addrs[br->addr];
    snprintf(br->address, sizeof(br->address), strchr(ad->host, ':') ? "[%s]:%u" : "%s:%u",
             ad->host, ad->port);
    br->state = BS_RESOLVING;
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    char port[8];
    snprintf(port, sizeof(port), "%u", ad->port);
    /* an address needs no resolver */
    struct evutil_addrinfo *res = NULL;
    hints.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV;
    if (evutil_getaddrinfo(ad->host, port, &hints, &res) == 0 && res) {
        dial(br, res->ai_addr, (int)res->ai_addrlen, ad->host);
        evutil_freeaddrinfo(res);
        return;
    }
    struct bridges *bs = br->bs;
    if (!bs->dns) {
        bs->dns = evdns_base_new(bs->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
        if (bs->dns) evdns_base_load_hosts(bs->dns, NULL);
    }
    if (!bs->dns) {
        link_lost(br, "no DNS resolver (/etc/resolv.conf)");
        return;
    }
    hints.ai_flags = EVUTIL_AI_NUMERICSERV;
    /* may answer at once (the hosts file) and call resolved() before returning */
    struct evdns_getaddrinfo_request *r =
        evdns_getaddrinfo(bs->dns, ad->host, port, &hints, resolved, br);
    if (br->state == BS_RESOLVING) br->dns_req = r;
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bridge *br = arg;
    if (br->state == BS_WAITING) try_connect(br);
}

static void
ping_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bridge *br = arg;
    uint8_t out[2];
    if (br->state == BS_UP) write_packet(br, out, mqtt_encode_pingreq(out, sizeof(out)));
}

/* ---- the probe of the first address ---- */

static void
probe_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bridge *br = arg;
    int err = 0;
    socklen_t len = sizeof(err);
    bool ok = (what & EV_WRITE) && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && !err;
    probe_free(br);
    if (!ok || br->state != BS_UP || br->addr == 0) return;
    blog(br, LQ_LOG_NOTICE, "the first address is back: moving to it");
    link_close(br, "back to the first address");
    br->addr = 0;
    br->backoff_ms = 0;
    try_connect(br);
}

static void
probe_start(struct bridge *br)
{
    const struct bridge_addr *ad = &br->bc->addrs[0];
    struct evutil_addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof(port), "%u", ad->port);
    /* a name is tried by a full reconnect only: no resolver round trip per probe */
    if (evutil_getaddrinfo(ad->host, port, &hints, &res) != 0 || !res) return;
    evutil_socket_t fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (fd < 0) {
        evutil_freeaddrinfo(res);
        return;
    }
    evutil_make_socket_nonblocking(fd);
    evutil_make_socket_closeonexec(fd);
    if (connect(fd, res->ai_addr, (socklen_t)res->ai_addrlen) < 0 && errno != EINPROGRESS) {
        evutil_freeaddrinfo(res);
        evutil_closesocket(fd);
        return;
    }
    evutil_freeaddrinfo(res);
    struct probe *p = lq_xcalloc(1, sizeof(*p));
    p->br = br;
    p->fd = fd;
    p->ev = event_new(br->bs->base, fd, EV_WRITE, probe_cb, br);
    struct timeval tv = {.tv_sec = PROBE_TIMEOUT_MS / 1000, .tv_usec = 0};
    if (!p->ev || event_add(p->ev, &tv) < 0) {
        if (p->ev) event_free(p->ev);
        evutil_closesocket(fd);
        free(p);
        return;
    }
    br->probe = p;
}

/* Once a second while it matters: lazy bridges (start when messages wait, stop when
 * idle) and a bridge on a secondary address (probe the first). */
static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bridge *br = arg;
    const struct bridge_conf *bc = br->bc;
    uint64_t now = lq_now_ms();
    if (bc->start_type == BRIDGE_START_LAZY) {
        uint32_t waiting = br->ops->waiting(br->sess);
        if (br->state == BS_IDLE && waiting >= (bc->threshold ? bc->threshold : 1)) {
            blog(br, LQ_LOG_INFO, "%u messages wait: connecting (start_type lazy)", waiting);
            try_connect(br);
        } else if (br->state == BS_UP && !waiting &&
                   now - br->active_ms >= (uint64_t)bc->idle_timeout * 1000) {
            link_close(br, "idle (start_type lazy)");
            notify_local(br, 0);
        }
    }
    if (br->state == BS_UP && !bc->round_robin && br->addr != 0 && !br->probe &&
        now >= br->probe_at_ms) {
        br->probe_at_ms = now + (uint64_t)(bc->restart_base ? bc->restart_base : 5) * 1000;
        probe_start(br);
    }
    arm_tick(br);
}

static void
arm_tick(struct bridge *br)
{
    const struct bridge_conf *bc = br->bc;
    bool lazy = bc->start_type == BRIDGE_START_LAZY && (br->state == BS_IDLE || br->state == BS_UP);
    bool secondary = br->state == BS_UP && !bc->round_robin && br->addr != 0;
    if ((lazy || secondary) && !evtimer_pending(br->tick_ev, NULL)) arm(br->tick_ev, 1000);
}

/* ---- packets from the remote ---- */

static void
on_connack(struct bridge *br, uint8_t flags, const uint8_t *body, size_t len)
{
    uint8_t level = br->version & 0x7f;
    struct mqtt_connack ca;
    uint8_t rc = mqtt_decode_connack(flags, body, len, level, &ca);
    if (rc) {
        link_lost(br, "malformed CONNACK");
        return;
    }
    if (ca.reason) {
        char why[200];
        if (level == MQTT_V5)
            snprintf(why, sizeof(why), "refused by the remote: 0x%02x %s", ca.reason,
                     mqtt_rc_str(ca.reason));
        else
            snprintf(why, sizeof(why), "refused by the remote: CONNACK code %u", ca.reason);
        /* a broker that does not know try_private's protocol level: without it */
        if ((br->version & 0x80) && ca.reason == MQTT_V3_REFUSED_PROTOCOL_VERSION) {
            br->private_refused = true;
            strncat(why, " (try_private: trying without it)", sizeof(why) - strlen(why) - 1);
        }
        link_lost(br, why);
        return;
    }
    struct bridge_peer peer = {.version = level,
                               .session_present = ca.session_present,
                               .retain_available = true,
                               .receive_max = 65535,
                               .max_packet = UINT32_MAX};
    const struct mqtt_props *p = &ca.props;
    if (p->present & MQTT_PBIT(MQTT_PROP_RECEIVE_MAXIMUM)) peer.receive_max = p->receive_maximum;
    if (p->present & MQTT_PBIT(MQTT_PROP_MAXIMUM_PACKET_SIZE))
        peer.max_packet = p->maximum_packet_size;
    if (p->present & MQTT_PBIT(MQTT_PROP_RETAIN_AVAILABLE))
        peer.retain_available = p->retain_available;
    if (br->bc->max_packet_size && br->bc->max_packet_size < peer.max_packet)
        peer.max_packet = br->bc->max_packet_size;
    uint16_t keepalive = br->bc->keepalive;
    if (p->present & MQTT_PBIT(MQTT_PROP_SERVER_KEEP_ALIVE) && p->server_keep_alive)
        keepalive = p->server_keep_alive;

    br->state = BS_UP;
    br->retain_ok = peer.retain_available;
    br->connects++;
    br->backoff_ms = 0;
    br->last_error[0] = '\0';
    br->connected_since = lq_wall_time();
    br->active_ms = lq_now_ms();
    br->probe_at_ms =
        br->active_ms + (uint64_t)(br->bc->restart_base ? br->bc->restart_base : 5) * 1000;
    conn_set_deadline(br->conn, 0);
    conn_set_keepalive(br->conn, (uint64_t)keepalive * 1500); /* its PINGRESP, or anything */
    if (keepalive) {
        struct timeval tv = {.tv_sec = keepalive, .tv_usec = 0};
        event_add(br->ping_ev, &tv);
    }
    blog(br, LQ_LOG_NOTICE, "connected (MQTT %s%s%s, session %s)",
         level == MQTT_V5     ? "5.0"
         : level == MQTT_V311 ? "3.1.1"
                              : "3.1",
         conn_is_tls(br->conn) ? " over TLS" : "", (br->version & 0x80) ? ", try_private" : "",
         ca.session_present ? "resumed" : "new");
    send_subscriptions(br);
    send_notification_remote(br, true);
    notify_local(br, 1);
    br->ops->up(br->sess, br->conn, &peer);
    arm_tick(br);
}

static void
on_suback(struct bridge *br, uint8_t type, uint8_t flags, const uint8_t *body, size_t len)
{
    struct mqtt_suback sa;
    if (mqtt_decode_suback(type, flags, body, len, br->version & 0x7f, &sa)) {
        link_lost(br, type == MQTT_SUBACK ? "malformed SUBACK" : "malformed UNSUBACK");
        return;
    }
    if (type != MQTT_SUBACK) return;
    size_t k = 0;
    for (size_t i = 0; i < br->ntopics && k < sa.count; i++) {
        const struct btopic *x = &br->topics[i];
        if (!(x->dir & BRIDGE_DIR_IN)) continue;
        uint8_t code = sa.codes[k++];
        if (code < 0x80) continue;
        char why[300];
        snprintf(why, sizeof(why), "the remote refused the subscription to \"%s\": 0x%02x %s",
                 x->remote_filter, code, mqtt_rc_str(code));
        set_error(br, why);
        blog(br, LQ_LOG_WARNING, "%s", why);
    }
}

static void
on_disconnect(struct bridge *br, uint8_t flags, const uint8_t *body, size_t len)
{
    struct mqtt_disconnect d;
    char why[200];
    if (mqtt_decode_disconnect(flags, body, len, br->version & 0x7f, &d))
        snprintf(why, sizeof(why), "malformed DISCONNECT from the remote");
    else
        snprintf(why, sizeof(why), "the remote disconnected: 0x%02x %s", d.reason,
                 mqtt_rc_str(d.reason));
    link_lost(br, why);
}

static void
on_packet(struct conn *c, uint8_t tf, const uint8_t *body, size_t len, void *ud)
{
    (void)ud;
    struct bridge *br = conn_aux(c);
    if (!br) return;
    uint8_t type = tf >> 4, flags = tf & 0x0f;
    if (br->state != BS_UP) {
        if (type == MQTT_CONNACK)
            on_connack(br, flags, body, len);
        else
            link_lost(br, "the remote's first packet is not CONNACK");
        return;
    }
    switch (type) {
    case MQTT_PUBLISH:
        br->msgs_in++;
        br->active_ms = lq_now_ms();
        /* fall through */
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP: {
        uint8_t rc = br->ops->packet(br->sess, tf, body, len);
        if (rc >= 0x80 && br->conn == c) {
            char why[120];
            snprintf(why, sizeof(why), "%s from the remote: 0x%02x %s", mqtt_type_str(type), rc,
                     mqtt_rc_str(rc));
            if ((br->version & 0x7f) == MQTT_V5) {
                struct mqtt_disconnect d = {.reason = rc};
                uint8_t out[16];
                size_t n = mqtt_encode_disconnect(&d, MQTT_V5, out, sizeof(out));
                if (n <= sizeof(out)) write_packet(br, out, n);
            }
            link_lost(br, why);
        }
        return;
    }
    case MQTT_SUBACK:
    case MQTT_UNSUBACK: on_suback(br, type, flags, body, len); return;
    case MQTT_PINGRESP:
        if (flags || len) link_lost(br, "malformed PINGRESP");
        return;
    case MQTT_DISCONNECT: on_disconnect(br, flags, body, len); return;
    default: {
        char why[80];
        snprintf(why, sizeof(why), "unexpected %s from the remote", mqtt_type_str(type));
        link_lost(br, why);
    }
    }
}

void
bridge_disconnect(struct bridge *br, uint8_t rc, const char *why)
{
    if (br->state == BS_UP && (br->version & 0x7f) == MQTT_V5) {
        struct mqtt_disconnect d = {.reason = rc};
        uint8_t out[16];
        size_t n = mqtt_encode_disconnect(&d, MQTT_V5, out, sizeof(out));
        if (n <= sizeof(out)) write_packet(br, out, n);
    }
    char msg[300];
    snprintf(msg, sizeof(msg), "0x%02x %s (%s)", rc, mqtt_rc_str(rc), why);
    link_lost(br, msg);
}

static void
on_oversize(struct conn *c, uint32_t size, void *ud)
{
    (void)ud;
    struct bridge *br = conn_aux(c);
    if (!br) return;
    char why[80];
    snprintf(why, sizeof(why), "packet of %u bytes from the remote: over the maximum", size);
    link_lost(br, why);
}

static void
on_malformed(struct conn *c, void *ud)
{
    (void)ud;
    struct bridge *br = conn_aux(c);
    if (br) link_lost(br, "malformed packet from the remote");
}

static void
on_drain(struct conn *c, void *ud)
{
    (void)ud;
    struct bridge *br = conn_aux(c);
    if (br && br->state == BS_UP) br->ops->drain(br->sess);
}

static void
on_keepalive(struct conn *c, void *ud)
{
    (void)ud;
    struct bridge *br = conn_aux(c);
    if (!br) return;
    link_lost(br, br->state == BS_UP ? "keep-alive: no answer from the remote"
                                     : "timed out connecting");
}

static void
on_lost(struct conn *c, const char *why, void *ud)
{
    (void)ud;
    struct bridge *br = conn_aux(c);
    if (br) link_lost(br, why);
}

static void
on_free(struct conn *c, void *ud)
{
    (void)ud;
    struct bridge *br = conn_aux(c);
    if (br && br->conn == c) br->conn = NULL;
}

static const struct conn_ops dialer_ops = {
    .on_packet = on_packet,
    .on_oversize = on_oversize,
    .on_malformed = on_malformed,
    .on_drain = on_drain,
    .on_keepalive = on_keepalive,
    .on_lost = on_lost,
    .on_free = on_free,
};

/* ---- the set ---- */

struct bridges *
bridges_new(struct event_base *base, uint16_t receive_max)
{
    struct bridges *bs = lq_xcalloc(1, sizeof(*bs));
    bs->base = base;
    bs->receive_max = receive_max ? receive_max : 65535;
    bs->dialer = dialer_new(base, "bridge", &dialer_ops, bs);
    if (!bs->dialer) {
        free(bs);
        return NULL;
    }
    if (gethostname(bs->hostname, sizeof(bs->hostname) - 1) != 0)
        snprintf(bs->hostname, sizeof(bs->hostname), "lunamq");
    return bs;
}

void
bridges_free(struct bridges *bs)
{
    if (!bs) return;
    listener_free(bs->dialer);
    if (bs->dns) evdns_base_free(bs->dns, 0);
    free(bs);
}

size_t
bridges_conn_count(const struct bridges *bs)
{
    return bs ? listener_conn_count(bs->dialer) : 0;
}

/* a + b + c, allocated */
static char *
concat(const char *a, const char *b, const char *c)
{
    size_t na = strlen(a), nb = strlen(b), nc = strlen(c);
    char *s = lq_xmalloc(na + nb + nc + 1);
    memcpy(s, a, na);
    memcpy(s + na, b, nb);
    memcpy(s + na + nb, c, nc + 1);
    return s;
}

static void
names_make(struct bridge *br)
{
    const struct bridge_conf *bc = br->bc;
    free(br->remote_id);
    free(br->local_id);
    free(br->notify_topic);
    /* mosquitto's defaults: <hostname>.<name>, local.<remote id> */
    br->remote_id = bc->remote_clientid ? lq_xstrdup(bc->remote_clientid)
                                        : concat(br->bs->hostname, ".", bc->name);
    br->local_id =
        bc->local_clientid ? lq_xstrdup(bc->local_clientid) : concat("local.", br->remote_id, "");
    br->notify_topic = bc->notification_topic
                           ? lq_xstrdup(bc->notification_topic)
                           : concat("$SYS/broker/connection/", br->remote_id, "/state");
}

void
bridge_tls_conf(const struct bridge_conf *bc, struct tls_client_conf *tc)
{
    *tc = (struct tls_client_conf){.cafile = bc->cafile,
                                   .capath = bc->capath,
                                   .certfile = bc->certfile,
                                   .keyfile = bc->keyfile,
                                   .insecure = bc->insecure,
                                   .min_version = bc->tls_version ? bc->tls_version : 12,
                                   .alpn = bc->alpn,
                                   .at = bc->tls_at ? bc->tls_at : bc->at};
}

struct bridge *
bridge_new(struct bridges *bs, const struct bridge_conf *bc, const struct bridge_ops *ops,
           void *sess, char *err, size_t errlen)
{
    struct bridge *br = lq_xcalloc(1, sizeof(*br));
    br->bs = bs;
    br->bc = bc;
    br->ops = ops;
    br->sess = sess;
    br->notified = -1;
    names_make(br);
    snprintf(br->address, sizeof(br->address), "%s:%u", bc->addrs[0].host, bc->addrs[0].port);
    if (btopics_make(br, err, errlen) < 0) goto fail;
    if (bc->cafile || bc->capath) {
        struct tls_client_conf tc;
        bridge_tls_conf(bc, &tc);
        br->tls = tls_client_ctx_new(&tc, err, errlen);
        if (!br->tls) goto fail;
    }
    br->retry_ev = evtimer_new(bs->base, retry_cb, br);
    br->ping_ev = event_new(bs->base, -1, EV_PERSIST, ping_cb, br);
    br->tick_ev = evtimer_new(bs->base, tick_cb, br);
    if (!br->retry_ev || !br->ping_ev || !br->tick_ev) {
        snprintf(err, errlen, "%s: bridge %s: cannot make its timers", bc->at, bc->name);
        goto fail;
    }
    br->next = bs->list;
    bs->list = br;
    return br;
fail:
    bridge_free(br);
    return NULL;
}

void
bridge_start(struct bridge *br)
{
    notify_local(br, 0);
    if (br->bc->start_type == BRIDGE_START_LAZY) {
        br->state = BS_IDLE;
        arm_tick(br);
        return;
    }
    try_connect(br);
}

void
bridge_free(struct bridge *br)
{
    if (!br) return;
    if (br->retry_ev) link_close(br, "stopping");
    for (struct bridge **pp = &br->bs->list; *pp; pp = &(*pp)->next) {
        if (*pp == br) {
            *pp = br->next;
            break;
        }
    }
    if (br->retry_ev) event_free(br->retry_ev);
    if (br->ping_ev) event_free(br->ping_ev);
    if (br->tick_ev) event_free(br->tick_ev);
    tls_ctx_unref(br->tls);
    btopics_free(br);
    free(br->remote_id);
    free(br->local_id);
    free(br->notify_topic);
    free(br);
}

void
bridge_set_conf(struct bridge *br, const struct bridge_conf *bc)
{
    br->bc = bc; /* an equal block: the derived names and topics stay */
}

const struct bridge_conf *
bridge_conf_of(const struct bridge *br)
{
    return br->bc;
}

const char *
bridge_local_id(const struct bridge *br)
{
    return br->local_id;
}

bool
bridge_keeps_local_session(const struct bridge *br)
{
    int8_t l = br->bc->local_cleansession;
    return !(l < 0 ? br->bc->cleansession : l);
}

bool
bridge_outgoing_retain(const struct bridge *br)
{
    return br->bc->outgoing_retain && br->retain_ok;
}

void
bridge_set_session(struct bridge *br, void *sess)
{
    br->sess = sess;
}

bool
bridge_is_connected(const struct bridge *br)
{
    return br->state == BS_UP;
}

void
bridge_info(const struct bridge *br, struct bridge_info *out)
{
    memset(out, 0, sizeof(*out));
    out->name = br->bc->name;
    out->state = state_names[br->state];
    out->address = br->address;
    out->last_error = br->last_error;
    out->remote_id = br->remote_id;
    out->local_id = br->local_id;
    out->version = br->bc->protocol;
    out->tls = br->tls != NULL;
    out->connected_since = br->connected_since;
    out->msgs_out = br->msgs_out;
    out->msgs_in = br->msgs_in;
    out->connects = br->connects;
    out->connect_failures = br->failures;
    out->waiting = br->ops->waiting(br->sess);
}
