/* SPDX-License-Identifier: MIT
 *
 * broker: the root object and the packet dispatcher. Owns the listeners, the
 * registry, the subscription tree and the retained store. dispatch() is the one
 * place where a handler's failure reason code becomes a DISCONNECT and a log line.
 * Not here: what each packet does (handle_*.c), delivery (deliver.c). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "admin.h"
#include "auth.h"
#include "bridge.h"
#include "broker.h"
#include "cluster.h"
#include "conf.h"
#include "hooks.h"
#include "httpc.h"
#include "kv.h"
#include "sdnotify.h"
#include "tls.h"
#include "retain.h"
#include "sbuf.h"
#include "session_int.h"

#define CONNECT_TIMEOUT_MS 10000 /* a socket must send CONNECT within this */
#define SHUTDOWN_GRACE_MS  2000

uint32_t
broker_receive_max(const struct broker *b)
{
    return b->conf.max_inflight_messages ? b->conf.max_inflight_messages : 65535;
}

uint32_t
broker_max_packet(const struct broker *b)
{
    return b->conf.max_packet_size ? b->conf.max_packet_size : 268435460u;
}

/* Until CONNECT is accepted (issue 11.8): max_connect_packet_size, 0 = max_packet_size */
uint32_t
broker_connect_max_packet(const struct broker *b)
{
    uint32_t m = broker_max_packet(b), cm = b->conf.max_connect_packet_size;
    return cm && cm < m ? cm : m;
}

static size_t
connection_count(const struct broker *b)
{
    size_t n = 0;
    for (size_t i = 0; i < b->nlisteners; i++) n += listener_conn_count(b->listeners[i]);
    return n;
}

/* ---- connection events ---- */

static bool
on_accept(struct conn *c, void *ud)
{
    struct broker *b = ud;
    if (b->shutting_down) return false;
    /* this conn is already counted by its listener */
    if (b->conf.max_connections && connection_count(b) > b->conf.max_connections) {
        lq_log(LQ_LOG_NOTICE, "%s: refused: max_connections (%u) reached", conn_peer(c),
               b->conf.max_connections);
        return false;
    }
    b->ctr.connections_total++;
    size_t now = connection_count(b);
    if (now > b->ctr.connections_peak) b->ctr.connections_peak = now;
    conn_set_max_packet(c, broker_connect_max_packet(b)); /* handle_connect lifts both */
    conn_set_deadline(c, CONNECT_TIMEOUT_MS); /* from accept, however slowly CONNECT comes */
    connlog_accepted(b, c);
    return true;
}

static uint8_t
handle_disconnect(struct session *s, uint8_t flags, const uint8_t *body, size_t len)
{
    struct mqtt_disconnect d;
    uint8_t rc = mqtt_decode_disconnect(flags, body, len, s->version, &d);
    if (rc) return rc;
    if (d.props.present & MQTT_PBIT(MQTT_PROP_SESSION_EXPIRY)) {
        if (s->connect_expiry == 0 && d.props.session_expiry != 0)
            return MQTT_RC_PROTOCOL_ERROR; /* [MQTT-3.14.2-2] */
        s->expiry = d.props.session_expiry;
    }
    connlog_disconnected(s, d.reason);
    struct conn *c = s->conn;
    /* 0x00 deletes the will [MQTT-3.14.4-3]; any other reason keeps it */
    session_detach(s, d.reason != MQTT_RC_SUCCESS);
    conn_close_by_peer(c);
    return MQTT_RC_SUCCESS;
}

static uint8_t
dispatch(struct session *s, uint8_t tf, const uint8_t *body, size_t len)
{
    uint8_t type = tf >> 4, flags = tf & 0x0f;
    struct mqtt_ack a;
    uint8_t rc;
    switch (type) {
    case MQTT_PUBLISH: return handle_publish(s, flags, body, len);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBCOMP:
        rc = mqtt_decode_ack(type, flags, body, len, s->version, &a);
        return rc ? rc : handle_puback(s, type, &a);
    case MQTT_PUBREL:
        rc = mqtt_decode_ack(type, flags, body, len, s->version, &a);
        return rc ? rc : handle_pubrel(s, &a);
    case MQTT_SUBSCRIBE: return handle_subscribe(s, flags, body, len);
    case MQTT_UNSUBSCRIBE: return handle_unsubscribe(s, flags, body, len);
    case MQTT_PINGREQ: {
        if (flags || len) return MQTT_RC_MALFORMED_PACKET;
        uint8_t out[2];
        conn_write_now(s->conn, out, mqtt_encode_pingresp(out, sizeof(out)));
        return MQTT_RC_SUCCESS;
    }
    case MQTT_DISCONNECT: return handle_disconnect(s, flags, body, len);
    case MQTT_CONNECT: return MQTT_RC_PROTOCOL_ERROR; /* a second CONNECT [MQTT-3.1.0-2] */
    case MQTT_AUTH:
        if (flags) return MQTT_RC_MALFORMED_PACKET; /* [MQTT-3.15.1-1] */
        /* no authentication method was agreed in CONNECT [MQTT-4.12.0-1] */
        return s->version == MQTT_V5 ? MQTT_RC_PROTOCOL_ERROR : MQTT_RC_MALFORMED_PACKET;
    default: /* server-to-client packets, or type 0 */
        return type == 0 ? MQTT_RC_MALFORMED_PACKET : MQTT_RC_PROTOCOL_ERROR;
    }
}

static void
on_packet(struct conn *c, uint8_t tf, const uint8_t *body, size_t len, void *ud)
{
    struct broker *b = ud;
    struct session *s = conn_owner(c);
    b->ctr.bytes_received += len + 2;
    if (!s) {
        if ((tf >> 4) != MQTT_CONNECT) { /* [MQTT-3.1.0-1] */
            char what[64];
            snprintf(what, sizeof(what), "first packet is %s, not CONNECT", mqtt_type_str(tf >> 4));
            connlog_closed_early(c, MQTT_RC_PROTOCOL_ERROR, what);
            conn_close(c);
            return;
        }
        handle_connect(b, c, tf & 0x0f, body, len);
        return;
    }
    uint8_t rc = dispatch(s, tf, body, len);
    if (rc >= 0x80) session_disconnect(s, rc, mqtt_type_str(tf >> 4));
}

static void
on_oversize(struct conn *c, uint32_t size, void *ud)
{
    struct broker *b = ud;
    struct session *s = conn_owner(c);
    char why[80];
    snprintf(why, sizeof(why), "%u > %u", size, broker_max_packet(b));
    b->ctr.dropped_oversize++;
    if (s) {
        session_disconnect(s, MQTT_RC_PACKET_TOO_LARGE, why);
        return;
    }
    handle_connect_too_large(b, c, size);
}

static void
on_malformed(struct conn *c, void *ud)
{
    (void)ud;
    struct session *s = conn_owner(c);
    if (s) {
        session_disconnect(s, MQTT_RC_MALFORMED_PACKET, "remaining length");
        return;
    }
    connlog_closed_early(c, MQTT_RC_PROTOCOL_ERROR, "malformed packet before CONNECT");
    conn_close(c);
}

static void
on_drain(struct conn *c, void *ud)
{
    (void)ud;
    struct session *s = conn_owner(c);
    if (s) session_pump(s);
}

static void
on_keepalive(struct conn *c, void *ud)
{
    (void)ud;
    struct session *s = conn_owner(c);
    if (s) {
        session_disconnect(s, MQTT_RC_KEEP_ALIVE_TIMEOUT, "no packet within 1.5 x keep alive");
        return;
    }
    char what[64];
    snprintf(what, sizeof(what), "no CONNECT within %d s", CONNECT_TIMEOUT_MS / 1000);
    connlog_closed_early(c, MQTT_RC_KEEP_ALIVE_TIMEOUT, what);
    conn_close(c);
}

static void
on_lost(struct conn *c, const char *why, void *ud)
{
    struct session *s = conn_owner(c);
    connlog_lost(ud, s, why);
    if (!s) return;
    session_detach(s, true);
}

static void
on_free(struct conn *c, void *ud)
{
    struct session *s = conn_owner(c);
    if (s && s->conn == c) session_detach(s, false); /* listener_free at shutdown */
    if (!s) access_conn_gone(ud, c);                 /* its password may be being checked */
    if (!s) session_connect_wait_gone(ud, c);        /* or its session asked of the cluster */
}

const struct conn_ops broker_conn_ops = {
    .on_accept = on_accept,
    .on_packet = on_packet,
    .on_oversize = on_oversize,
    .on_malformed = on_malformed,
    .on_drain = on_drain,
    .on_keepalive = on_keepalive,
    .on_lost = on_lost,
    .on_free = on_free,
};

/* ---- life cycle ---- */

static const char *
admin_path(const struct lq_conf *c)
{
    return c->admin_socket ? c->admin_socket : "lunamq.sock";
}

static void
hooks_conf_of(const struct lq_conf *c, struct hooks_conf *hc)
{
    hc->dir = c->scripts_dir ? c->scripts_dir : "scripts";
    hc->instruction_limit = c->hook_instruction_limit;
    hc->memory_limit = (size_t)c->hook_memory_limit;
    hc->drop_on_error = c->hook_on_error_drop;
    hc->max_topic_levels = c->max_topic_levels;
    hc->http_max_concurrent = c->hook_http_max_concurrent;
    hc->http_max_queue = c->hook_http_max_queue;
}

static void
httpc_conf_of(const struct lq_conf *c, struct httpc_conf *hc)
{
    *hc = (struct httpc_conf){.allow = (const char *const *)c->hook_http_allow,
                              .nallow = c->nhook_http_allow,
                              .cafile = c->hook_http_cafile,
                              .connect_timeout_ms = c->hook_http_connect_timeout_ms,
                              .timeout_ms = c->hook_http_timeout_ms,
                              .max_response = (size_t)c->hook_http_max_response,
                              .max_request = (size_t)c->hook_http_max_response};
}

/* Expired keys of broker.kv, a bounded sweep a second: they are invisible from their
 * expiry on; this gives their memory back and journals their deletion. */
static void
kv_expire_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct broker *b = arg;
    kv_expire(b->kv, (int64_t)(lq_wall_time() * 1000.0), 10000);
}

static int
open_kv_http(struct broker *b, char *errbuf, size_t errlen)
{
    struct httpc_conf hc;
    httpc_conf_of(&b->conf, &hc);
    b->http = httpc_new(b->base, &hc, errbuf, errlen);
    if (!b->http) return -1;
    b->kv_expire_ev = event_new(b->base, -1, EV_PERSIST, kv_expire_cb, b);
    struct timeval sec = {1, 0};
    if (!b->kv_expire_ev || event_add(b->kv_expire_ev, &sec) < 0) {
        snprintf(errbuf, errlen, "cannot make the key-value store's expiry timer");
        return -1;
    }
    return 0;
}

/* broker.publish() from a hook: through the other hooks, then routed. */
static void
hook_publish(void *ud, struct msg *m, const struct hook *from)
{
    struct route_result r;
    broker_publish(ud, m, NULL, NULL, from, DELIVER_NO_HOLD, &r);
}

/* Does every listener take the username from a client certificate it requires? */
static bool
usernames_from_certificates(const struct lq_conf *c)
{
    for (const struct listener_conf *lc = c->listeners; lc; lc = lc->next) {
        const struct tls_conf *t = lc->tls;
        if (!t || !t->require_certificate ||
            !(t->use_identity_as_username || t->use_subject_as_username))
            return false;
    }
    return true;
}

/* allow_anonymous false only asks for a username: with no password_file nothing
 * checks it (as in mosquitto), which an operator may not expect. */
static void
warn_unchecked_usernames(const struct lq_conf *c)
{
    if (c->per_listener_settings) {
        for (const struct listener_conf *lc = c->listeners; lc; lc = lc->next)
            if (!lc->auth.allow_anonymous && !lc->auth.password_file &&
                !(lc->tls && lc->tls->require_certificate &&
                  (lc->tls->use_identity_as_username || lc->tls->use_subject_as_username)))
                lq_log(LQ_LOG_WARNING,
                       "listener %s: allow_anonymous false without a password_file: any "
                       "client that sends a username, whatever it is, is let in",
                       lc->at ? lc->at : "");
        return;
    }
    if (c->auth.allow_anonymous || c->auth.password_file || usernames_from_certificates(c)) return;
    lq_log(LQ_LOG_WARNING,
           "allow_anonymous false: lunamq checks no passwords (no password_file): any "
           "client that sends a username, whatever it is, is let in; set password_file, or "
           "require_certificate with use_identity_as_username");
}

/* A message from another node: to this node's sessions, as published here (its hooks
 * ran on its node; a retained one is stored through the stream: below). */
static void
cluster_deliver(struct msg *m, const char *group, size_t glen, const char *filter, size_t flen,
                void *ud)
{
    struct broker *b = ud;
    struct route_result r;
    if (group)
        route_to_group(b, m, group, glen, filter, flen, &r);
    else /* its groups get it through their NATS queue groups */
        route_publish(b, m, NULL, DELIVER_NO_HOLD, false, &r);
}

/* Is m what old already is (this node's own message back from the stream, or what
 * persistence had before the stream was loaded)? The expiry may differ by rounding. */
static bool
same_retained(const struct msg *old, const struct msg *m)
{
    if (!old || old->qos != m->qos || old->has_expiry != m->has_expiry ||
        old->payload_len != m->payload_len || old->props_len != m->props_len ||
        memcmp(old->payload, m->payload, m->payload_len) != 0 ||
        (m->props_len && memcmp(old->props, m->props, m->props_len) != 0))
        return false;
    if (!m->has_expiry) return true;
    uint64_t d = old->expire_at_ms > m->expire_at_ms ? old->expire_at_ms - m->expire_at_ms
                                                     : m->expire_at_ms - old->expire_at_ms;
    return d <= 2000;
}

/* A retained message from the cluster's stream: stored (and persisted) as if set here,
 * not routed (the message came to subscribers as any other). */
static void
cluster_store_retained(struct msg *m, void *ud)
{
    struct broker *b = ud;
    if (!b->conf.retain_available) return;
    struct msg *old = retain_get(b->retained, m->topic, m->topic_len);
    if (m->payload_len ? same_retained(old, m) : !old) return; /* nothing changes */
    retain_set(b->retained, m);
    persist_retain(b, m);
}

/* SUBACKs waiting for NATS may go, or publishers held for it. */
static void
cluster_ready(void *ud)
{
    struct broker *b = ud;
    session_subacks_release(b);
    session_connect_waits_release(b);
    if (b->nheld && !cluster_over(b->cluster)) hold_release_all(b);
}

static void
open_cluster(struct broker *b, char *err, size_t errlen)
{
    const struct lq_conf *c = &b->conf;
    if (!c->cluster_name) return;
    struct cluster_conf cc = {.name = c->cluster_name,
                              .node_id = c->cluster_node_id,
                              .nats_url = c->cluster_nats_url,
                              .username = c->cluster_nats_username,
                              .password = c->cluster_nats_password,
                              .credentials = c->cluster_nats_credentials,
                              .cafile = c->cluster_nats_cafile,
                              .certfile = c->cluster_nats_certfile,
                              .keyfile = c->cluster_nats_keyfile,
                              .max_pending_bytes = c->cluster_max_pending_bytes,
                              .topics = c->cluster_topics,
                              .ntopics = c->ncluster_topics,
                              .topics_local = c->cluster_topics_local,
                              .ntopics_local = c->ncluster_topics_local,
                              .sessions = c->cluster_sessions,
                              .takeover_ms = c->cluster_takeover_ms,
                              .replicas = c->cluster_replicas,
                              .retained_local = c->cluster_retained_local,
                              .store_retained = cluster_store_retained};
    b->cluster = cluster_open(b->base, &cc, cluster_deliver, cluster_ready, session_hand_over, b,
                              err, errlen);
}

struct broker *
broker_new(struct event_base *base, struct lq_conf *conf, const char *conf_path, char *errbuf,
           size_t errlen)
{
    errbuf[0] = '\0';
    struct broker *b = lq_xcalloc(1, sizeof(*b));
    b->base = base;
    b->conf = *conf;
    conf_init(conf); /* moved */
    b->conf_path = conf_path ? lq_xstrdup(conf_path) : NULL;
    b->subs = topic_tree_new();
    b->retained = retain_new();
    b->kv = kv_new((size_t)b->conf.kv_max_bytes);
    kv_on_change(b->kv, persist_kv, b);
    b->nbuckets = 1024;
    b->buckets = lq_xcalloc(b->nbuckets, sizeof(*b->buckets));
    b->next_auto_id = (uint64_t)lq_wall_time() * 1000;
    warn_unchecked_usernames(&b->conf);

    /* what may need root: the ports (bound, refusing until broker_start listens) and
     * the listeners' TLS keys */
    for (struct listener_conf *lc = b->conf.listeners; lc; lc = lc->next) {
        struct tls_ctx *tls = NULL;
        if (lc->tls) {
            char err[768];
            if (!(tls = tls_ctx_new(lc->tls, err, sizeof(err)))) {
                snprintf(errbuf, errlen, "%s", err);
                broker_free(b);
                return NULL;
            }
        }
        struct listener *l = listener_bind(base, lc->host, lc->port, tls,
                                           lc->http ? &http_api_ops : &broker_conn_ops, b);
        if (!l) { /* logged by listener_bind */
            broker_free(b);
            return NULL;
        }
        if (lc->websockets || lc->http) /* an http_listener: at /mqtt */
            listener_set_websockets(l, lc->websockets, lc->ws_origins, lc->nws_origins,
                                    b->conf.websockets_headers_size);
        b->listeners = lq_xrealloc(b->listeners, (b->nlisteners + 1) * sizeof(*b->listeners));
        b->listeners[b->nlisteners++] = l;
    }
    /* no admin socket is not a reason to refuse service (admin_new logged why), a
     * path naming something else is a configuration error; so is a metrics_listener
     * that cannot listen (issue 12.21). Both are made here: the admin socket's
     * directory may be root's, the metrics port a privileged one. */
    b->admin = admin_new(b, base, admin_path(&b->conf), errbuf, errlen);
    if (!errbuf[0] && b->conf.metrics_port && !admin_serves_metrics(b->admin))
        snprintf(errbuf, errlen, "metrics_listener %s:%u: cannot listen (see the line above)",
                 b->conf.metrics_host ? b->conf.metrics_host : "127.0.0.1", b->conf.metrics_port);
    if (errbuf[0]) {
        broker_free(b);
        return NULL;
    }
    return b;
}

const char *
broker_admin_socket(const struct broker *b)
{
    const char *path = admin_path(&b->conf);
    return b->admin && strcmp(path, "none") != 0 ? path : NULL;
}

int
broker_start(struct broker *b, char *errbuf, size_t errlen)
{
    errbuf[0] = '\0';
    if (open_kv_http(b, errbuf, errlen) < 0) return -1;
    struct hook_host host = {.publish = hook_publish, .ud = b, .kv = b->kv, .http = b->http};
    struct hooks_conf hc;
    hooks_conf_of(&b->conf, &hc);
    b->hooks = hooks_new(b->base, &hc, &host);
    access_open(b, errbuf, errlen);
    if (!errbuf[0]) open_cluster(b, errbuf, errlen); /* before recovery: its subscriptions */
    if (!errbuf[0]) persist_open(b, errbuf, errlen); /* listeners open after recovery */
    if (!errbuf[0]) access_bind_all(b);              /* the sessions read back */
    if (!errbuf[0]) bridged_open(b, errbuf, errlen); /* their sessions may be read back */
    if (errbuf[0]) return -1;
    const struct listener_conf *lc = b->conf.listeners;
    for (size_t i = 0; i < b->nlisteners; i++, lc = lc->next) {
        if (listener_listen(b->listeners[i]) < 0) return -1; /* logged */
        lq_log(LQ_LOG_NOTICE, "listening on %s:%u%s%s%s", lc->host ? lc->host : "*",
               listener_port(b->listeners[i]), lc->http ? " (HTTP, WebSockets at /mqtt)" : "",
               lc->websockets ? " (WebSockets)" : "", lc->tls ? " (TLS)" : "");
    }
    return 0;
}

/* ---- lunamq -t ---- */

/* Can each file be opened? A key only root may read cannot be read again once the
 * broker dropped root (user): said plainly, rather than mbedTLS's "Read/write of file
 * failed". Returns false with "AT: NAME PATH: reason" in why, as tls.c words its errors. */
static const char *const tls_file_names[TLS_NFILES] = {"cafile", "capath", "certfile", "keyfile",
                                                       "crlfile"};

static bool
files_readable(const char *const *paths, const char *const *ats, size_t n, char *why, size_t whylen)
{
    for (size_t i = 0; i < n; i++) {
        if (!paths[i]) continue;
        int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            snprintf(why, whylen, "%s: %s %s: %s", ats[i] ? ats[i] : "?", tls_file_names[i],
                     paths[i], strerror(errno));
            return false;
        }
        close(fd);
    }
    return true;
}

static bool
tls_files_readable(const struct tls_conf *t, char *why, size_t n)
{
    return files_readable((const char *const *)t->file, (const char *const *)t->at, TLS_NFILES, why,
                          n);
}

static void
check_auth(const struct auth_conf *a, struct sbuf *out)
{
    char err[768];
    if (a->password_file) {
        struct pwfile *f = pwfile_load(a->password_file, err, sizeof(err));
        if (!f) sbuf_printf(out, "%s\n", err);
        pwfile_unref(f);
    }
    if (a->acl_file) {
        struct acl *acl = acl_load(a->acl_file, err, sizeof(err));
        if (!acl) sbuf_printf(out, "%s\n", err);
        acl_unref(acl);
    }
}

int
broker_check(const struct lq_conf *c, char *errbuf, size_t errlen)
{
    struct sbuf out = {0};
    char err[768];
    for (const struct listener_conf *lc = c->listeners; lc; lc = lc->next) {
        if (lc->tls) {
            struct tls_ctx *tls = NULL;
            if (tls_files_readable(lc->tls, err, sizeof(err)))
                tls = tls_ctx_new(lc->tls, err, sizeof(err));
            if (!tls) sbuf_printf(&out, "%s\n", err);
            tls_ctx_unref(tls);
        }
        if (c->per_listener_settings) check_auth(&lc->auth, &out);
    }
    if (!c->per_listener_settings) check_auth(&c->auth, &out);
    for (const struct bridge_conf *bc = c->bridges; bc; bc = bc->next) {
        if (!bc->cafile && !bc->capath) continue;
        struct tls_client_conf tc; /* as bridge_new loads it */
        bridge_tls_conf(bc, &tc);
        const char *files[] = {bc->cafile, bc->capath, bc->certfile,
                               bc->keyfile}; /* as tls_file_names */
        const char *ats[] = {tc.at, tc.at, tc.at, tc.at};
        struct tls_ctx *tls = NULL;
        if (files_readable(files, ats, 4, err, sizeof(err)))
            tls = tls_client_ctx_new(&tc, err, sizeof(err));
        if (!tls) sbuf_printf(&out, "%s\n", err);
        tls_ctx_unref(tls);
    }
    if (out.len && out.p[out.len - 1] == '\n') out.p[--out.len] = '\0';
    snprintf(errbuf, errlen, "%s", out.len ? out.p : "");
    int rc = out.len ? -1 : 0;
    sbuf_free(&out);
    return rc;
}

void
broker_free(struct broker *b)
{
    if (!b) return;
    b->shutting_down = true;
    bridged_close(b);         /* "0" and DISCONNECT to each remote; sessions stay */
    bridges_free(b->bridges); /* and their connections */
    b->bridges = NULL;
    cluster_close(b->cluster); /* what this node published, out; no more from others */
    b->cluster = NULL;
    persist_close(b); /* the teardown below is not recorded: sessions outlive it */
    net_stop_workers();
    for (size_t i = 0; i < b->nlisteners; i++) listener_free(b->listeners[i]);
    free(b->listeners);
    session_connect_waits_free(b); /* their conns are gone: none is left */
    access_close(b);               /* after the conns: a CONNECT being checked has none now */
    admin_free(b->admin);
    b->admin = NULL;
    hooks_free(b->hooks); /* and their HTTP requests */
    b->hooks = NULL;
    httpc_free(b->http);
    if (b->kv_expire_ev) event_free(b->kv_expire_ev);
    kv_free(b->kv);
    /* sessions: no will on shutdown, nobody is left to receive it */
    for (size_t i = 0; i < b->nbuckets; i++) {
        while (b->buckets[i]) {
            struct session *s = b->buckets[i];
            session_clear_will(s);
            session_end(s);
        }
    }
    free(b->buckets);
    topic_tree_free(b->subs);
    retain_free(b->retained);
    hold_fini(b);
    free(b->matches);
    free(b->match_ids);
    free(b->sub_id_buf);
    if (b->shutdown_ev) event_free(b->shutdown_ev);
    free(b->conf_path);
    conf_fini(&b->conf);
    free(b);
}

static void
shutdown_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct broker *b = arg;
    static const struct timeval tick = {0, 50 * 1000};
    size_t left = connection_count(b) + bridges_conn_count(b->bridges); /* flushing */
    if (left == 0 || lq_now_ms() >= b->shutdown_deadline) {
        event_base_loopexit(b->base, NULL);
        return;
    }
    if (evtimer_add(b->shutdown_ev, &tick) < 0) event_base_loopexit(b->base, NULL);
}

void
broker_shutdown(struct broker *b)
{
    if (b->shutting_down) return;
    b->shutting_down = true;
    sdnotify_stopping();
    lq_log(LQ_LOG_NOTICE, "shutting down");
    bridged_close(b); /* a client's DISCONNECT to each remote, not a server's */
    for (size_t i = 0; i < b->nbuckets; i++) {
        for (struct session *s = b->buckets[i], *next; s; s = next) {
            next = s->hnext;
            if (!s->conn) continue;
            struct conn *c = s->conn;
            if (s->version == MQTT_V5 && s->connected)
                send_disconnect(c, MQTT_V5, MQTT_RC_SERVER_SHUTTING_DOWN);
            session_clear_will(s);
            session_detach(s, false); /* may end s */
            conn_close(c);
        }
    }
    b->shutdown_deadline = lq_now_ms() + SHUTDOWN_GRACE_MS;
    b->shutdown_ev = evtimer_new(b->base, shutdown_tick, b);
    event_active(b->shutdown_ev, EV_TIMEOUT, 0);
}

/* The i-th listener of the running broker is the i-th of the new file when both
 * name the same port; its TLS material is replaced only if all of it loads. */
static void
reload_tls(struct broker *b, const struct lq_conf *nc)
{
    const struct listener_conf *lc = b->conf.listeners, *nl = nc->listeners;
    for (size_t i = 0; i < b->nlisteners && lc; i++, lc = lc->next, nl = nl ? nl->next : NULL) {
        if (!lc->tls) continue;
        if (!nl || nl->port != lc->port || !nl->tls) {
            lq_log(LQ_LOG_ERR,
                   "reload: listener %u is no longer a TLS listener in %s: keeping "
                   "its TLS material (listeners change on restart)",
                   lc->port, b->conf_path);
            continue;
        }
        char err[768];
        struct tls_ctx *tls = NULL;
        if (!tls_files_readable(nl->tls, err, sizeof(err))) {
            lq_log(LQ_LOG_ERR, "reload: listener %u keeps its TLS material: %s (running as uid %u)",
                   lc->port, err, (unsigned)geteuid());
            continue;
        }
        if (!(tls = tls_ctx_new(nl->tls, err, sizeof(err)))) {
            lq_log(LQ_LOG_ERR, "reload: listener %u keeps its TLS material: %s", lc->port, err);
            continue;
        }
        listener_set_tls(b->listeners[i], tls);
        lq_log(LQ_LOG_NOTICE, "listener %u: TLS certificates, key and CRL reloaded", lc->port);
    }
}

static bool
same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* Do the listeners of the file differ from those running (-p's and the default one
 * aside)? Any difference, even only TLS material loading, needs a restart. */
static bool same_list(char **a, size_t na, char **b, size_t nb);

static bool
listeners_differ(const struct listener_conf *run, const struct listener_conf *nl)
{
    for (;;) {
        while (run && run->implicit) run = run->next;
        if (!run || !nl) return run || nl;
        if (run->port != nl->port || !same_str(run->host, nl->host) || !run->tls != !nl->tls ||
            run->http != nl->http || run->websockets != nl->websockets ||
            !same_list(run->ws_origins, run->nws_origins, nl->ws_origins, nl->nws_origins))
            return true;
        run = run->next;
        nl = nl->next;
    }
}

static bool
same_list(char **a, size_t na, char **b, size_t nb)
{
    if (na != nb) return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0) return false;
    return true;
}

/* The cluster's options are read when it opens (cluster_open): a changed one waits for a
 * restart, and the running configuration keeps saying what runs (cluster_partition is
 * read per CONNECT: it changes live). */
static bool
keep_cluster(struct lq_conf *run, struct lq_conf *nc)
{
    char **strs[][2] = {
        {&run->cluster_name, &nc->cluster_name},
        {&run->cluster_node_id, &nc->cluster_node_id},
        {&run->cluster_nats_url, &nc->cluster_nats_url},
        {&run->cluster_nats_username, &nc->cluster_nats_username},
        {&run->cluster_nats_password, &nc->cluster_nats_password},
        {&run->cluster_nats_credentials, &nc->cluster_nats_credentials},
        {&run->cluster_nats_cafile, &nc->cluster_nats_cafile},
        {&run->cluster_nats_certfile, &nc->cluster_nats_certfile},
        {&run->cluster_nats_keyfile, &nc->cluster_nats_keyfile},
    };
    bool changed = run->cluster_max_pending_bytes != nc->cluster_max_pending_bytes ||
                   run->cluster_sessions != nc->cluster_sessions ||
                   run->cluster_takeover_ms != nc->cluster_takeover_ms ||
                   run->cluster_replicas != nc->cluster_replicas ||
                   run->cluster_retained_local != nc->cluster_retained_local ||
                   !same_list(run->cluster_topics, run->ncluster_topics, nc->cluster_topics,
                              nc->ncluster_topics) ||
                   !same_list(run->cluster_topics_local, run->ncluster_topics_local,
                              nc->cluster_topics_local, nc->ncluster_topics_local);
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        changed |= !same_str(*strs[i][0], *strs[i][1]);
        char *t = *strs[i][0]; /* swapped: the new values are freed with the old struct */
        *strs[i][0] = *strs[i][1];
        *strs[i][1] = t;
    }
    char *at = run->cluster_nats_tls_at;
    run->cluster_nats_tls_at = nc->cluster_nats_tls_at;
    nc->cluster_nats_tls_at = at;
    char **l = run->cluster_topics;
    size_t n = run->ncluster_topics;
    run->cluster_topics = nc->cluster_topics;
    run->ncluster_topics = nc->ncluster_topics;
    nc->cluster_topics = l;
    nc->ncluster_topics = n;
    l = run->cluster_topics_local;
    n = run->ncluster_topics_local;
    run->cluster_topics_local = nc->cluster_topics_local;
    run->ncluster_topics_local = nc->ncluster_topics_local;
    nc->cluster_topics_local = l;
    nc->ncluster_topics_local = n;
    nc->cluster_max_pending_bytes = run->cluster_max_pending_bytes;
    nc->cluster_sessions = run->cluster_sessions;
    nc->cluster_takeover_ms = run->cluster_takeover_ms;
    nc->cluster_replicas = run->cluster_replicas;
    nc->cluster_retained_local = run->cluster_retained_local;
    return changed;
}

/* The options only a restart applies: they keep their running values in b->conf
 * (so that it says what runs), and restart lists those that changed. */
static void
keep_restart_only(struct lq_conf *run, struct lq_conf *nc, char *restart, size_t len)
{
    struct sbuf names = {0};
    if (listeners_differ(run->listeners, nc->listeners)) sbuf_printf(&names, "listener");
    if (!same_str(run->admin_socket, nc->admin_socket))
        sbuf_printf(&names, "%sadmin_socket", names.len ? ", " : "");
    if (run->metrics_port != nc->metrics_port || !same_str(run->metrics_host, nc->metrics_host))
        sbuf_printf(&names, "%smetrics_listener", names.len ? ", " : "");
    if (!same_str(run->user, nc->user)) sbuf_printf(&names, "%suser", names.len ? ", " : "");
    if (!same_str(run->pid_file, nc->pid_file))
        sbuf_printf(&names, "%spid_file", names.len ? ", " : "");
    if (keep_cluster(run, nc)) sbuf_printf(&names, "%scluster", names.len ? ", " : "");
    if (run->persistence != nc->persistence ||
        run->persistence_sync_process != nc->persistence_sync_process ||
        !same_str(run->persistence_location, nc->persistence_location))
        sbuf_printf(&names, "%spersistence", names.len ? ", " : "");
    nc->persistence = run->persistence;
    nc->persistence_sync_process = run->persistence_sync_process;
    char *loc = run->persistence_location;
    run->persistence_location = nc->persistence_location;
    nc->persistence_location = loc;
    if (names.len) lq_log(LQ_LOG_WARNING, "reload: %s changed: not applied until restart", names.p);
    if (restart) snprintf(restart, len, "%s", names.len ? names.p : "");
    sbuf_free(&names);
    /* swapped: the old struct is freed with the values the new file gave */
    struct listener_conf *l = run->listeners;
    run->listeners = nc->listeners;
    nc->listeners = l;
    char *s = run->admin_socket;
    run->admin_socket = nc->admin_socket;
    nc->admin_socket = s;
    s = run->metrics_host;
    run->metrics_host = nc->metrics_host;
    nc->metrics_host = s;
    s = run->user;
    run->user = nc->user;
    nc->user = s;
    s = run->pid_file;
    run->pid_file = nc->pid_file;
    nc->pid_file = s;
    nc->metrics_port = run->metrics_port;
}

/* The new file's log options, for lines from now on. */
static void
log_reopen(const struct lq_conf *nc)
{
    if (lq_log_open(nc->log_types, nc->log_dests, nc->log_file) < 0)
        lq_log(LQ_LOG_ERR, "reload: log file %s: %s (the previous log is kept)", nc->log_file,
               strerror(errno));
    lq_log_set_format(nc->log_timestamp, nc->log_timestamp_format, nc->log_format_mosquitto);
}

static int
reload(struct broker *b, char *restart, size_t len)
{
    if (restart && len) restart[0] = '\0';
    if (!b->conf_path) {
        lq_log(LQ_LOG_NOTICE, "reload: no configuration file");
        return 0;
    }
    struct lq_conf nc;
    char err[512];
    conf_init(&nc);
    if (conf_load(&nc, b->conf_path, err, sizeof(err)) < 0) {
        lq_log(LQ_LOG_ERR, "reload failed, configuration unchanged: %s", err);
        conf_fini(&nc);
        return -1;
    }
    log_reopen(&nc);
    /* listeners stay as they are (changing them needs a restart); their TLS
     * material is reloaded for new connections */
    reload_tls(b, &nc);
    /* password_file and acl_file are read again (a file that does not parse leaves
     * the previous rules); per listener only while the listeners stay the same */
    if (nc.per_listener_settings != b->conf.per_listener_settings ||
        (nc.per_listener_settings && listeners_differ(b->conf.listeners, nc.listeners)))
        lq_log(LQ_LOG_WARNING, "reload: per_listener_settings or the listeners changed: "
                               "password and ACL rules not reloaded until restart");
    else
        access_reload(b, &nc);
    nc.per_listener_settings = b->conf.per_listener_settings;
    keep_restart_only(&b->conf, &nc, restart, len); /* nc now holds the running ones */
    struct lq_conf old = b->conf;
    b->conf = nc;
    bridged_reload(b); /* while the old blocks still exist */
    conf_fini(&old);   /* the values replaced, and those the file gave for restart-only ones */
    struct hooks_conf hc;
    hooks_conf_of(&b->conf, &hc);
    hooks_configure(b->hooks, &hc); /* new limits; the directory is rescanned */
    kv_set_max_bytes(b->kv, (size_t)b->conf.kv_max_bytes);
    struct httpc_conf htc;
    httpc_conf_of(&b->conf, &htc);
    char herr[256];
    if (b->http && !httpc_configure(b->http, &htc, herr, sizeof(herr)))
        lq_log(LQ_LOG_ERR, "reload: %s: the previous hook_http settings stay", herr);
    warn_unchecked_usernames(&b->conf);
    lq_log(LQ_LOG_NOTICE, "configuration reloaded from %s", b->conf_path);
    return 0;
}

int
broker_reload(struct broker *b, char *restart, size_t len)
{
    sdnotify_reloading(); /* and ready again after, whether the file was good or not */
    int rc = reload(b, restart, len);
    sdnotify_ready();
    return rc;
}
