/* SPDX-License-Identifier: MIT
 *
 * admin: the admin socket and the commands behind lunamq-ctl. Each command reads the
 * broker's state and writes one reply (JSON or text, see sbuf.h); nothing here is
 * on the message path. */
#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <math.h>

#include "../session/session_int.h"
#include "admin.h"
#include "admin_int.h"
#include "bridge.h"
#include "broker.h"
#include "cluster.h"
#include "hooks.h"
#include "kv.h"
#include "retain.h"
#include "sbuf.h"
#include "tls.h"

#define MAX_REQUEST (4u << 20) /* a local, trusted socket: room for kv values */
#define MAX_ARGS    8

struct rates {
    double msgs_received, msgs_sent, bytes_received, bytes_sent;
};

/* Mosquitto's $SYS load figures: exponentially smoothed per-minute rates. */
struct load {
    double m1, m5, m15;
};

struct admin {
    struct broker *b;
    char *path;
    struct evconnlistener *evl;
    struct event *tick; /* every second: rates and event-loop lag */
    uint64_t started_ms;
    double started_wall;
    uint64_t last_tick_ms;
    struct counters last;
    struct rates rate;
    uint64_t lag_ms, lag_max_ms;
    struct load load_received, load_sent, load_bytes_received, load_bytes_sent, load_connections;
    uint64_t ticks;
    struct metrics_http *http;      /* metrics_listener */
    char errbuf[256];               /* an error message a command made */
    struct accept_backoff *backoff; /* the admin socket's, at the descriptor limit */
};

static void publish_sys(struct admin *a);

/* ---- the one-second sampler ---- */

static void
smooth(struct load *l, double per_s, double dt)
{
    double per_min = per_s * 60.0;
    l->m1 += (per_min - l->m1) * (1.0 - exp(-dt / 60.0));
    l->m5 += (per_min - l->m5) * (1.0 - exp(-dt / 300.0));
    l->m15 += (per_min - l->m15) * (1.0 - exp(-dt / 900.0));
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct admin *a = arg;
    uint64_t now = lq_now_ms();
    uint64_t elapsed = now - a->last_tick_ms;
    a->lag_ms = elapsed > 1000 ? elapsed - 1000 : 0;
    if (a->lag_ms > a->lag_max_ms) a->lag_max_ms = a->lag_ms;
    double s = (double)elapsed / 1000.0;
    const struct counters *c = &a->b->ctr;
    a->rate.msgs_received = (double)(c->msgs_received - a->last.msgs_received) / s;
    a->rate.msgs_sent = (double)(c->msgs_sent - a->last.msgs_sent) / s;
    a->rate.bytes_received = (double)(c->bytes_received - a->last.bytes_received) / s;
    a->rate.bytes_sent = (double)(c->bytes_sent - a->last.bytes_sent) / s;
    double conns = (double)(c->connections_total - a->last.connections_total) / s;
    smooth(&a->load_received, a->rate.msgs_received, s);
    smooth(&a->load_sent, a->rate.msgs_sent, s);
    smooth(&a->load_bytes_received, a->rate.bytes_received, s);
    smooth(&a->load_bytes_sent, a->rate.bytes_sent, s);
    smooth(&a->load_connections, conns, s);
    a->last = *c;
    a->last_tick_ms = now;
    a->ticks++;
    uint32_t every = a->b->conf.sys_interval;
    if (every && a->ticks % every == 0) publish_sys(a);
}

static uint64_t
rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
        fclose(f);
    }
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* The counters of struct hook_stats, once: for `hooks`, $SYS and /metrics. */
static const struct hook_counter {
    const char *name;
    size_t off;
    bool counter; /* grows (false: a maximum) */
} hook_counters[] = {
    {"calls", offsetof(struct hook_stats, calls), true},
    {"passed", offsetof(struct hook_stats, passed), true},
    {"rewritten", offsetof(struct hook_stats, rewritten), true},
    {"dropped", offsetof(struct hook_stats, dropped), true},
    {"fanned_out", offsetof(struct hook_stats, fanned_out), true},
    {"published", offsetof(struct hook_stats, published), true},
    {"errors", offsetof(struct hook_stats, errors), true},
    {"budget_overruns", offsetof(struct hook_stats, budget_overruns), true},
    {"memory_overruns", offsetof(struct hook_stats, memory_overruns), true},
    {"timer_calls", offsetof(struct hook_stats, timer_calls), true},
    {"connect_calls", offsetof(struct hook_stats, connect_calls), true},
    {"connect_allowed", offsetof(struct hook_stats, connect_allowed), true},
    {"connect_refused", offsetof(struct hook_stats, connect_refused), true},
    {"subscribe_calls", offsetof(struct hook_stats, subscribe_calls), true},
    {"subscribe_allowed", offsetof(struct hook_stats, subscribe_allowed), true},
    {"subscribe_refused", offsetof(struct hook_stats, subscribe_refused), true},
    {"http_requests", offsetof(struct hook_stats, http_requests), true},
    {"http_busy", offsetof(struct hook_stats, http_busy), true},
    {"http_denied", offsetof(struct hook_stats, http_denied), true},
    {"http_ok", offsetof(struct hook_stats, http_ok), true},
    {"http_timeouts", offsetof(struct hook_stats, http_timeouts), true},
    {"http_connect_errors", offsetof(struct hook_stats, http_connect_errors), true},
    {"http_tls_errors", offsetof(struct hook_stats, http_tls_errors), true},
    {"http_too_large", offsetof(struct hook_stats, http_too_large), true},
    {"http_other_errors", offsetof(struct hook_stats, http_other_errors), true},
    {"http_time_us", offsetof(struct hook_stats, http_time_us), true},
    {"response_calls", offsetof(struct hook_stats, response_calls), true},
    {"time_total_us", offsetof(struct hook_stats, total_us), true},
    {"time_max_us", offsetof(struct hook_stats, max_us), false},
};
#define NHOOK_COUNTERS (sizeof(hook_counters) / sizeof(hook_counters[0]))

static uint64_t *
hook_counter(struct hook_stats *s, size_t k)
{
    return (uint64_t *)(void *)((char *)s + hook_counters[k].off);
}

/* ---- commands ---- */

#define FOR_EACH_SESSION(b, s)                    \
    for (size_t i_ = 0; i_ < (b)->nbuckets; i_++) \
        for (struct session *s = (b)->buckets[i_]; s; s = s->hnext)

static bool
online(const struct session *s)
{
    return s->conn && s->connected;
}

static void
cmd_version(struct admin *a, struct reply *r, int argc, char **argv)
{
    (void)a;
    (void)argc;
    (void)argv;
    reply_object(r);
    reply_str(r, "version", LUNAMQ_VERSION);
    reply_str(r, "libevent", event_get_version());
    reply_end_object(r);
}

/* Every broker figure once, for `stats`, $SYS and /metrics alike. `sys` is the
 * Mosquitto $SYS name where the figure is the same (NULL: none). */
struct figure {
    const char *name;
    const char *sys;
    bool counter; /* only grows (Prometheus counter) */
    bool fraction;
    double v;
    const char *help;
};

#define MAX_FIGURES 140 /* collect() fills 133 */

static void
count_one(struct msg *m, void *arg)
{
    (void)m;
    (*(uint64_t *)arg)++;
}

static size_t
collect(struct admin *a, struct figure *f)
{
    struct broker *b = a->b;
    const struct counters *c = &b->ctr;
    uint64_t online_n = 0, offline_n = 0, v5 = 0, v311 = 0, v31 = 0, tls = 0, inflight = 0,
             queued = 0;
    FOR_EACH_SESSION(b, s)
    {
        inflight += s->ninflight;
        queued += s->nqueued;
        if (!online(s)) {
            offline_n++;
            continue;
        }
        online_n++;
        if (s->version == MQTT_V5)
            v5++;
        else if (s->version == MQTT_V311)
            v311++;
        else
            v31++;
        if (conn_is_tls(s->conn)) tls++;
    }
    struct hook_stats hk = {0};
    uint64_t hooks_loaded = 0, hooks_failed = 0, http_in_flight = 0;
    struct hook_info hi;
    for (size_t i = 0; hooks_info(b->hooks, i, &hi); i++) {
        hooks_loaded += hi.loaded;
        http_in_flight += hi.http_in_flight + hi.http_queued;
        hooks_failed += hi.error != NULL;
        for (size_t k = 0; k < NHOOK_COUNTERS; k++)
            if (hook_counters[k].counter) *hook_counter(&hk, k) += *hook_counter(&hi.stats, k);
    }
    struct persist_stats ps;
    persist_get_stats(b, &ps);
    uint64_t retained_sys = 0; /* the broker's own $SYS topics, retained too */
    retain_match(b->retained, "$SYS/#", 6, count_one, &retained_sys);
    size_t n = 0;
    /* f holds MAX_FIGURES (issue 12.22): each line below takes one __COUNTER__ value, so
     * the static assertion after the last one counts them; the run-time check is the
     * guard should a line ever be added in a loop */
    enum { first_figure = __COUNTER__ };
#define FIG(nm, sy, counter, fraction, val, h)                                            \
    do {                                                                                  \
        enum { counted = __COUNTER__ };                                                   \
        (void)counted;                                                                    \
        if (n < MAX_FIGURES) f[n++] = (struct figure){nm, sy, counter, fraction, val, h}; \
    } while (0)
#define G(nm, sy, val, h) FIG(nm, sy, false, false, (double)(val), h)
#define C(nm, sy, val, h) FIG(nm, sy, true, false, (double)(val), h)
#define F(nm, sy, val, h) FIG(nm, sy, false, true, (double)(val), h)
    G("uptime_s", NULL, (lq_now_ms() - a->started_ms) / 1000, "seconds since start");
    G("clients_connected", "clients/connected", online_n, "clients connected now");
    G("clients_peak", "clients/maximum", c->connections_peak, "most connections at once");
    G("clients_total", "clients/total", online_n + offline_n, "sessions, online and offline");
    C("connections_total", NULL, c->connections_total, "TCP connections accepted since start");
    G("clients_v5", NULL, v5, "connected MQTT 5.0 clients");
    G("clients_v311", NULL, v311, "connected MQTT 3.1.1 clients");
    G("clients_v31", NULL, v31, "connected MQTT 3.1 clients");
    G("clients_tls", NULL, tls, "clients connected over TLS");
    G("clients_plain", NULL, online_n - tls, "clients connected over plain TCP");
    unsigned long certs_full, certs_remembered;
    tls_cert_counts(&certs_full, &certs_remembered);
    C("tls_certs_verified", NULL, certs_full, "device certificate chains verified in full");
    C("tls_certs_remembered", NULL, certs_remembered,
      "device certificates taken as verified before (a reconnect: no chain verification)");
    G("sessions_online", NULL, online_n, "sessions with a connection");
    G("sessions_offline", "clients/disconnected", offline_n, "persistent sessions without one");
    C("messages_received", "messages/received", c->msgs_received, "PUBLISH packets received");
    C("messages_received_qos0", NULL, c->received_qos[0], "QoS 0 PUBLISH received");
    C("messages_received_qos1", NULL, c->received_qos[1], "QoS 1 PUBLISH received");
    C("messages_received_qos2", NULL, c->received_qos[2], "QoS 2 PUBLISH received");
    C("messages_sent", "messages/sent", c->msgs_sent, "PUBLISH packets sent");
    C("messages_sent_qos0", NULL, c->sent_qos[0], "QoS 0 PUBLISH sent");
    C("messages_sent_qos1", NULL, c->sent_qos[1], "QoS 1 PUBLISH sent");
    C("messages_sent_qos2", NULL, c->sent_qos[2], "QoS 2 PUBLISH sent");
    C("bytes_received", "bytes/received", c->bytes_received, "bytes of packets received");
    C("bytes_received_qos0", NULL, c->received_bytes_qos[0], "bytes of QoS 0 PUBLISH received");
    C("bytes_received_qos1", NULL, c->received_bytes_qos[1], "bytes of QoS 1 PUBLISH received");
    C("bytes_received_qos2", NULL, c->received_bytes_qos[2], "bytes of QoS 2 PUBLISH received");
    C("bytes_sent", "bytes/sent", c->bytes_sent, "bytes of PUBLISH packets sent");
    C("bytes_sent_qos0", NULL, c->sent_bytes_qos[0], "bytes of QoS 0 PUBLISH sent");
    C("bytes_sent_qos1", NULL, c->sent_bytes_qos[1], "bytes of QoS 1 PUBLISH sent");
    C("bytes_sent_qos2", NULL, c->sent_bytes_qos[2], "bytes of QoS 2 PUBLISH sent");
    F("messages_received_per_s", NULL, a->rate.msgs_received, "messages received, last second");
    F("messages_sent_per_s", NULL, a->rate.msgs_sent, "messages sent, last second");
    F("bytes_received_per_s", NULL, a->rate.bytes_received, "bytes received, last second");
    F("bytes_sent_per_s", NULL, a->rate.bytes_sent, "bytes sent, last second");
    C("dropped_queue_full", NULL, c->dropped_queue_full, "dropped: a subscriber queue was full");
    C("dropped_expired", NULL, c->dropped_expired, "dropped: message expiry passed");
    C("dropped_hook", NULL, c->dropped_hook, "dropped or refused by a Lua hook");
    C("dropped_oversize", NULL, c->dropped_oversize, "dropped: over a size limit");
    C("dropped_no_subscriber", NULL, c->dropped_no_subscriber, "published with no subscriber");
    C("dropped_sys_topic", NULL, c->dropped_sys_topic, "refused: a client published under $SYS");
    G("retained", "retained messages/count", retain_count(b->retained) - retained_sys,
      "retained messages published by clients and hooks");
    G("retained_sys", NULL, retained_sys, "retained $SYS messages the broker publishes");
    G("retained_bytes", NULL, retain_bytes(b->retained),
      "bytes the retained store holds, $SYS included");
    G("subscriptions", "subscriptions/count", topic_tree_count(b->subs), "subscriptions");
    G("subscriptions_bytes", NULL, topic_tree_bytes(b->subs), "bytes the subscription tree holds");
    G("inflight", NULL, inflight, "outgoing QoS 1/2 messages awaiting acknowledgement");
    G("queued", NULL, queued, "messages queued for subscribers");
    G("queued_bytes", NULL, b->queued_bytes, "bytes of messages queued for subscribers");
    G("queued_bytes_limit", NULL, b->conf.max_queued_bytes_total,
      "max_queued_bytes_total (0: none)");
    C("publishers_held", NULL, c->publishers_held, "times a publisher's acks were withheld");
    C("http_requests", NULL, c->http_requests, "requests to http_listeners");
    C("http_publishes", NULL, c->http_publishes, "messages published over HTTP");
    const struct ws_stats *ws = net_ws_stats();
    C("ws_upgrades", NULL, ws->upgrades, "WebSocket upgrades accepted (MQTT over WebSockets)");
    C("ws_refused", NULL, ws->refused, "WebSocket upgrade requests refused (400/403/426...)");
    C("ws_errors", NULL, ws->errors,
      "WebSockets closed for broken framing (close 1002, 1003, 1007, 1009)");
    C("ws_peer_closes", NULL, ws->peer_closes, "WebSocket close frames from clients");
    C("slow_consumers_disconnected", NULL, c->slow_consumers_disconnected,
      "subscribers cut after max_hold_time without progress");
    C("slow_consumers_shedding", NULL, c->slow_consumers_shedding,
      "persistent subscribers that began dropping after max_hold_time");
    C("auth_ok", NULL, c->auth_ok, "CONNECTs let in by a password, a hook or a certificate");
    C("auth_bad_password", NULL, c->auth_bad_password,
      "CONNECTs refused: unknown user or wrong password");
    C("auth_anonymous_refused", NULL, c->auth_anonymous_refused,
      "CONNECTs refused: no username, allow_anonymous false");
    C("auth_hook_refused", NULL, c->auth_hook_refused, "CONNECTs refused by an on_connect hook");
    C("auth_busy", NULL, c->auth_busy, "CONNECTs refused: too many password checks waiting");
    C("acl_denied_publish", NULL, c->acl_denied_publish, "PUBLISH refused by acl_file");
    C("acl_denied_subscribe", NULL, c->acl_denied_subscribe,
      "subscriptions refused by acl_file or an on_subscribe hook");
    C("acl_denied_delivery", NULL, c->acl_denied_delivery,
      "messages not delivered: the subscriber may not read the topic");
    G("hooks_loaded", NULL, hooks_loaded, "Lua hooks running");
    G("hooks_failed", NULL, hooks_failed, "hook files whose last load failed");
    C("hook_calls", NULL, hk.calls, "hook on_publish calls");
    C("hook_passed", NULL, hk.passed, "messages hooks passed unchanged");
    C("hook_rewritten", NULL, hk.rewritten, "messages hooks rewrote");
    C("hook_dropped", NULL, hk.dropped, "messages hooks dropped");
    C("hook_fanned_out", NULL, hk.fanned_out, "messages hooks fanned out");
    C("hook_published", NULL, hk.published, "broker.publish calls");
    C("hook_errors", NULL, hk.errors, "hook runtime errors");
    C("hook_budget_overruns", NULL, hk.budget_overruns, "hook instruction budget overruns");
    C("hook_memory_overruns", NULL, hk.memory_overruns, "hook memory cap overruns");
    C("hook_time_us", NULL, hk.total_us, "microseconds spent in hooks");
    C("hook_http_requests", NULL, hk.http_requests, "broker.http.request calls accepted");
    C("hook_http_busy", NULL, hk.http_busy,
      "broker.http.request refused: hook's slots and queue full");
    C("hook_http_denied", NULL, hk.http_denied,
      "broker.http.request refused: not in hook_http_allow");
    C("hook_http_ok", NULL, hk.http_ok, "hook HTTP requests answered (any status)");
    C("hook_http_errors", NULL,
      hk.http_timeouts + hk.http_connect_errors + hk.http_tls_errors + hk.http_too_large +
          hk.http_other_errors,
      "hook HTTP requests without a response (timeout, connect, TLS, too large, other)");
    C("hook_http_timeouts", NULL, hk.http_timeouts, "hook HTTP requests that timed out");
    G("hook_http_in_flight", NULL, http_in_flight, "hook HTTP requests in flight or waiting");
    struct kv_stats kvs;
    kv_get_stats(b->kv, &kvs);
    G("kv_keys", NULL, kvs.keys, "keys in the hooks' key-value store");
    G("kv_bytes", NULL, kvs.bytes, "bytes the key-value store holds (kv_max_bytes counts them)");
    G("kv_max_bytes", NULL, kvs.max_bytes, "kv_max_bytes");
    C("kv_sets", NULL, kvs.sets, "key-value sets (hooks and lunamq-ctl)");
    C("kv_refused_full", NULL, kvs.refused_full, "key-value sets refused: kv_max_bytes reached");
    C("kv_expired", NULL, kvs.expired, "keys removed at their expiry");
    G("persistence", NULL, ps.enabled, "persistence true (1) or false (0)");
    G("persistence_failing", NULL, ps.store.failing,
      "1 while the journal cannot be written (QoS 1/2 not acknowledged)");
    C("persistence_errors", NULL, ps.store.errors, "journal write or fsync failures");
    G("persistence_journal_bytes", NULL, ps.store.journal_bytes,
      "journal bytes since the snapshot");
    G("persistence_journal_records", NULL, ps.store.journal_records,
      "journal records since the snapshot");
    G("persistence_backlog_bytes", NULL, ps.store.backlog_bytes, "appended, not yet durable");
    G("persistence_acks_waiting", NULL, ps.acks_waiting,
      "connections whose acknowledgements wait for the journal");
    G("persistence_batches_per_second", NULL, ps.batches_per_second,
      "journal batches made durable in the last second");
    G("persistence_fsync_p50_us", NULL, ps.store.fsync_p50_us, "median fdatasync latency");
    G("persistence_fsync_p99_us", NULL, ps.store.fsync_p99_us, "99th percentile fdatasync latency");
    F("persistence_last_snapshot_at", NULL, ps.store.last_snapshot_at,
      "wall clock of the last snapshot (0: none)");
    F("persistence_last_snapshot_seconds", NULL, ps.store.last_snapshot_seconds,
      "how long the last snapshot took");
    F("persistence_recovery_seconds", NULL, ps.recovery_seconds, "journal replay at start-up");
    struct cluster_stats cs;
    cluster_get_stats(b->cluster, &cs);
    G("cluster", NULL, b->cluster != NULL, "cluster_name set (1) or not (0)");
    G("cluster_connected", NULL, cs.connected, "1 while connected to a NATS server");
    C("cluster_reconnects", NULL, cs.reconnects, "NATS connections re-established");
    G("cluster_subjects", NULL, cs.subjects, "NATS subjects subscribed for this node's filters");
    C("cluster_forwarded", NULL, cs.forwarded, "messages published to NATS for other nodes");
    C("cluster_received", NULL, cs.received, "messages from other nodes routed here");
    C("cluster_received_shared", NULL, cs.received_shared,
      "messages NATS gave this node's members of shared subscriptions (any node's)");
    C("cluster_duplicates", NULL, cs.duplicates,
      "second copies from NATS (overlapping subjects): dropped");
    C("cluster_held", NULL, cs.held,
      "messages taken past cluster_max_pending_bytes while their publisher was held back");
    C("cluster_dropped_out", NULL, cs.dropped_out,
      "messages not sent to other nodes: cluster_max_pending_bytes, or NATS refused them");
    C("cluster_dropped_in", NULL, cs.dropped_in,
      "messages from other nodes not routed: cluster_max_pending_bytes, or slow");
    C("cluster_bad_in", NULL, cs.bad_in, "messages from NATS that were not a node's: dropped");
    G("cluster_pending_out_bytes", NULL, cs.pending_out_bytes, "bytes waiting to go to NATS");
    C("cluster_claims", NULL, cs.claims, "CONNECTs that asked which node owns their client id");
    C("cluster_takeovers_in", NULL, cs.takeovers_in, "sessions handed over to this node");
    C("cluster_takeovers_out", NULL, cs.takeovers_out, "sessions this node handed over");
    C("cluster_takeovers_clean", NULL, cs.takeovers_clean,
      "sessions begun clean here: the node that had them was gone or did not answer");
    C("cluster_partitions", NULL, cs.partitions,
      "CONNECTs that found NATS or JetStream unreachable (cluster_partition)");
    G("cluster_retained_stream", NULL, cs.retained_stream,
      "1 while retained messages are shared through the JetStream stream");
    C("cluster_retained_in", NULL, cs.retained_in, "retained updates from the stream applied here");
    C("cluster_retained_failed", NULL, cs.retained_failed,
      "retained messages JetStream did not take: not shared with other nodes");
    struct bridge_info bt = {0}, bi;
    uint64_t nbridges_up = 0;
    for (size_t i = 0; i < b->nbridged; i++) {
        bridge_info(b->bridged[i].br, &bi);
        nbridges_up += bridge_is_connected(b->bridged[i].br);
        bt.msgs_out += bi.msgs_out;
        bt.msgs_in += bi.msgs_in;
        bt.waiting += bi.waiting;
        bt.connects += bi.connects;
        bt.connect_failures += bi.connect_failures;
    }
    G("bridges", NULL, b->nbridged, "bridges configured (connection blocks)");
    G("bridges_connected", NULL, nbridges_up, "bridges connected to their remote broker");
    C("bridges_messages_out", NULL, bt.msgs_out, "messages the bridges sent to remote brokers");
    C("bridges_messages_in", NULL, bt.msgs_in, "messages the bridges received from remote brokers");
    G("bridges_waiting", NULL, bt.waiting, "messages queued or in flight for remote brokers");
    C("bridges_connects", NULL, bt.connects, "bridge connections accepted by their remote");
    C("bridges_connect_failures", NULL, bt.connect_failures,
      "bridge connection attempts that failed");
    G("memory_rss_bytes", NULL, rss_bytes(), "resident memory of the broker");
    G("event_loop_lag_ms", NULL, a->lag_ms, "event loop delay of the last one-second tick");
    G("event_loop_lag_max_ms", NULL, a->lag_max_ms, "largest event loop delay since start");
    _Static_assert(__COUNTER__ - first_figure - 1 <= MAX_FIGURES,
                   "collect() fills more than f holds");
#undef FIG
#undef G
#undef C
#undef F
    return n;
}

static void
bridge_fields(struct reply *r, const struct bridge_info *bi)
{
    reply_str(r, "name", bi->name);
    reply_str(r, "state", bi->state);
    reply_str(r, "address", bi->address);
    reply_bool(r, "tls", bi->tls);
    reply_u64(r, "protocol", bi->version);
    reply_str(r, "remote_clientid", bi->remote_id);
    reply_str(r, "local_clientid", bi->local_id);
    reply_dbl(r, "connected_since", bi->connected_since);
    reply_u64(r, "messages_out", bi->msgs_out);
    reply_u64(r, "messages_in", bi->msgs_in);
    reply_u64(r, "waiting", bi->waiting);
    reply_u64(r, "connects", bi->connects);
    reply_u64(r, "connect_failures", bi->connect_failures);
    reply_u64(r, "reconnects", bi->connects ? bi->connects - 1 : 0);
    reply_str(r, "last_error", bi->last_error);
}

static void
bridge_list(struct admin *a, struct reply *r, const char *key)
{
    reply_list(r, key);
    for (size_t i = 0; i < a->b->nbridged; i++) {
        struct bridge_info bi;
        bridge_info(a->b->bridged[i].br, &bi);
        reply_object(r);
        bridge_fields(r, &bi);
        reply_end_object(r);
    }
    reply_end_list(r);
}

static void
cmd_bridges(struct admin *a, struct reply *r, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    bridge_list(a, r, NULL);
}

static void
cmd_stats(struct admin *a, struct reply *r, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct figure f[MAX_FIGURES];
    size_t n = collect(a, f);
    reply_object(r);
    reply_str(r, "version", LUNAMQ_VERSION);
    reply_str(r, "persistence_sync",
              !a->b->persist                        ? "off"
              : a->b->conf.persistence_sync_process ? "process"
                                                    : "power");
    for (size_t i = 0; i < n; i++) {
        if (f[i].fraction)
            reply_dbl(r, f[i].name, f[i].v);
        else
            reply_u64(r, f[i].name, (uint64_t)f[i].v);
    }
    if (a->b->nbridged) bridge_list(a, r, "bridge_list");
    reply_end_object(r);
}

static void
client_fields(struct reply *r, const struct session *s)
{
    reply_str(r, "id", s->id);
    reply_bool(r, "online", online(s));
    const struct tls_identity *id = online(s) ? conn_tls_identity(s->conn) : NULL;
    reply_str(r, "address", online(s) ? conn_peer(s->conn) : NULL);
    reply_str(r, "protocol",
              s->version == MQTT_V5     ? "5.0"
              : s->version == MQTT_V311 ? "3.1.1"
                                        : "3.1");
    reply_str(r, "username", s->username);
    reply_str(r, "cert_cn", id ? id->cn : NULL);
    reply_bool(r, "tls", online(s) && conn_is_tls(s->conn));
    reply_u64(r, "keepalive", s->keepalive);
    reply_u64(r, "subscriptions", s->nsubs);
    reply_u64(r, "inflight", s->ninflight);
    reply_u64(r, "queued", s->nqueued);
    reply_u64(r, "queued_bytes", s->qbytes);
    reply_u64(r, "dropped", s->dropped);
    uint64_t in = 0, out = 0;
    if (online(s)) conn_bytes(s->conn, &in, &out);
    reply_u64(r, "bytes_in", in);
    reply_u64(r, "bytes_out", out);
    reply_dbl(r, "connected_since", s->connected_at);
    reply_u64(r, "session_expiry", s->expiry);
}

static void
cmd_clients(struct admin *a, struct reply *r, int argc, char **argv)
{
    const char *pattern = argc > 1 ? argv[1] : "*";
    reply_list(r, NULL);
    FOR_EACH_SESSION(a->b, s)
    {
        if (fnmatch(pattern, s->id, 0) != 0) continue;
        reply_object(r);
        client_fields(r, s);
        reply_end_object(r);
    }
    reply_end_list(r);
}

static const char *
cmd_client(struct admin *a, struct reply *r, int argc, char **argv)
{
    if (argc < 2) return "usage: client ID";
    struct session *s = registry_find(a->b, argv[1], strlen(argv[1]));
    if (!s) return "no such client";
    reply_object(r);
    client_fields(r, s);
    reply_list(r, "subscription_list");
    for (size_t i = 0; i < s->nsubs; i++) {
        reply_object(r);
        reply_str(r, "filter", s->subs[i].filter);
        reply_str(r, "share_group", s->subs[i].group);
        reply_u64(r, "qos", s->subs[i].o.qos);
        reply_u64(r, "subscription_id", s->subs[i].o.sub_id);
        reply_end_object(r);
    }
    reply_end_list(r);
    reply_end_object(r);
    return NULL;
}

static void
cmd_subscriptions(struct admin *a, struct reply *r, int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : "#";
    reply_list(r, NULL);
    FOR_EACH_SESSION(a->b, s)
    {
        for (size_t i = 0; i < s->nsubs; i++) {
            const struct ssub *sub = &s->subs[i];
            if (!topic_matches(filter, strlen(filter), sub->filter, strlen(sub->filter)) &&
                strcmp(filter, sub->filter) != 0)
                continue;
            reply_object(r);
            reply_str(r, "client", s->id);
            reply_str(r, "filter", sub->filter);
            reply_str(r, "share_group", sub->group);
            reply_u64(r, "qos", sub->o.qos);
            reply_bool(r, "no_local", sub->o.no_local);
            reply_bool(r, "retain_as_published", sub->o.retain_as_published);
            reply_u64(r, "subscription_id", sub->o.sub_id);
            reply_end_object(r);
        }
    }
    reply_end_list(r);
}

/* ---- subscribers TOPIC: who a message on TOPIC reaches ---- */

struct reach {
    void **owners; /* sessions with a plain subscription that matches (repeats) */
    size_t nowners, capowners;
    struct sub_group **groups;
    size_t ngroups, capgroups;
};

static void
reach_one(void *owner, const struct sub_opts *o, struct sub_group *g, void *arg)
{
    (void)o;
    struct reach *w = arg;
    if (g) {
        if (w->ngroups == w->capgroups) {
            w->capgroups = w->capgroups ? 2 * w->capgroups : 8;
            w->groups = lq_xrealloc(w->groups, w->capgroups * sizeof(*w->groups));
        }
        w->groups[w->ngroups++] = g;
        return;
    }
    if (w->nowners == w->capowners) {
        w->capowners = w->capowners ? 2 * w->capowners : 16;
        w->owners = lq_xrealloc(w->owners, w->capowners * sizeof(*w->owners));
    }
    w->owners[w->nowners++] = owner;
}

static int
by_address(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

/* s's subscription in group (NULL: plain ones) whose filter matches topic, from i on. */
static const struct ssub *
matching_sub(const struct session *s, size_t *i, const char *group, size_t glen, const char *topic,
             size_t tlen)
{
    for (; *i < s->nsubs; (*i)++) {
        const struct ssub *sub = &s->subs[*i];
        if (!sub->group != !group) continue;
        if (group && (strlen(sub->group) != glen || memcmp(sub->group, group, glen) != 0)) continue;
        if (topic_matches(sub->filter, strlen(sub->filter), topic, tlen)) return sub;
    }
    return NULL;
}

static void
reach_fields(struct reply *r, const struct session *s, const struct ssub *sub)
{
    reply_str(r, "client", s->id);
    reply_bool(r, "online", online(s));
    reply_str(r, "filter", sub ? sub->filter : NULL);
    reply_u64(r, "qos", sub ? sub->o.qos : 0);
    reply_u64(r, "subscription_id", sub ? sub->o.sub_id : 0);
    reply_str(r, "share_group", sub ? sub->group : NULL);
}

/* One share group: its members in round-robin order, and the one the next message
 * goes to (the first online, else the first: as deliver.c picks). */
static void
reach_group(struct reply *r, struct sub_group *g, const char *topic, size_t tlen)
{
    struct sbuf members = {0}, note = {0};
    const char *name;
    size_t nlen;
    void *owner;
    struct session *next = NULL, *first = NULL;
    for (uint32_t k = 0; sub_group_peek(g, k, &owner, &name, &nlen); k++) {
        struct session *s = owner;
        sbuf_printf(&members, "%s%s", k ? " " : "", s->id);
        sbuf_printf(&note, "%s%s", k ? ", " : "", s->id);
        if (!first) first = s;
        if (!next && online(s)) next = s;
    }
    if (!next) next = first;
    if (!next) return;
    size_t i = 0;
    reply_object(r);
    reach_fields(r, next, matching_sub(next, &i, name, nlen, topic, tlen));
    reply_str(r, "members", members.p);
    struct sbuf line = {0};
    sbuf_printf(&line, "group %.*s: one of %s (next: %s)", (int)nlen, name, note.p, next->id);
    reply_str(r, "note", line.p);
    reply_end_object(r);
    sbuf_free(&line);
    sbuf_free(&members);
    sbuf_free(&note);
}

static const char *
cmd_subscribers(struct admin *a, struct reply *r, int argc, char **argv)
{
    if (argc < 2) return "usage: subscribers TOPIC";
    const char *topic = argv[1];
    size_t tlen = strlen(topic);
    if (!topic_name_is_valid(topic, tlen))
        return "not a topic name (for a filter: subscriptions FILTER)";
    struct reach w = {0};
    topic_tree_match(a->b->subs, topic, tlen, reach_one, &w);
    if (w.nowners) qsort(w.owners, w.nowners, sizeof(*w.owners), by_address);
    reply_list(r, NULL);
    for (size_t k = 0; k < w.nowners; k++) {
        if (k && w.owners[k] == w.owners[k - 1]) continue; /* one line per subscription */
        const struct session *s = w.owners[k];
        const struct ssub *sub;
        for (size_t i = 0; (sub = matching_sub(s, &i, NULL, 0, topic, tlen)); i++) {
            reply_object(r);
            reach_fields(r, s, sub);
            reply_end_object(r);
        }
    }
    for (size_t k = 0; k < w.ngroups; k++) reach_group(r, w.groups[k], topic, tlen);
    reply_end_list(r);
    free(w.owners);
    free(w.groups);
    return NULL;
}

struct retained_walk {
    struct reply *r;
    uint64_t now;
};

static void
one_retained(struct msg *m, void *arg)
{
    struct retained_walk *w = arg;
    reply_object(w->r);
    reply_str(w->r, "topic", m->topic);
    reply_u64(w->r, "size", m->payload_len);
    reply_u64(w->r, "qos", m->qos);
    reply_dbl(w->r, "age_s", (double)(w->now - m->created_ms) / 1000.0);
    reply_end_object(w->r);
}

static void
cmd_retained(struct admin *a, struct reply *r, int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : "#";
    struct retained_walk w = {r, lq_now_ms()};
    reply_list(r, NULL);
    retain_match(a->b->retained, filter, strlen(filter), one_retained, &w);
    reply_end_list(r);
}

static void
cmd_hooks(struct admin *a, struct reply *r, int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "reload") == 0) hooks_rescan(a->b->hooks);
    reply_list(r, NULL);
    struct hook_info hi;
    for (size_t i = 0; hooks_info(a->b->hooks, i, &hi); i++) {
        reply_object(r);
        reply_str(r, "name", hi.name);
        reply_str(r, "state",
                  hi.loaded ? (hi.error ? "loaded, new version failed" : "loaded") : "failed");
        reply_str(r, "error", hi.error);
        struct sbuf t = {0};
        for (size_t k = 0; k < hi.ntopics; k++) sbuf_printf(&t, "%s%s", k ? " " : "", hi.topics[k]);
        reply_str(r, "topics", t.p ? t.p : "");
        sbuf_free(&t);
        reply_dbl(r, "interval", hi.interval);
        reply_u64(r, "memory", hi.memory);
        reply_u64(r, "http_in_flight", hi.http_in_flight);
        reply_u64(r, "http_queued", hi.http_queued);
        for (size_t k = 0; k < NHOOK_COUNTERS; k++)
            reply_u64(r, hook_counters[k].name, *hook_counter(&hi.stats, k));
        reply_end_object(r);
    }
    reply_end_list(r);
}

static const char *
cmd_kick(struct admin *a, struct reply *r, int argc, char **argv)
{
    if (argc < 2) return "usage: kick ID";
    struct session *s = registry_find(a->b, argv[1], strlen(argv[1]));
    if (!s || !online(s)) return "no such client connected";
    session_disconnect(s, MQTT_RC_ADMINISTRATIVE_ACTION, "kicked by the administrator");
    reply_object(r);
    reply_str(r, "kicked", argv[1]);
    reply_end_object(r);
    return NULL;
}

static const char *
cmd_persistence(struct admin *a, struct reply *r, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "snapshot") != 0) return "usage: persistence snapshot";
    if (!a->b->persist) return "persistence is off (persistence false)";
    if (persist_snapshot_now(a->b) < 0) return "a snapshot is already being written";
    reply_object(r);
    reply_str(r, "snapshot", "started");
    reply_end_object(r);
    return NULL;
}

/* acl check USER CLIENTID TOPIC read|write: USER "" is an anonymous client */
static const char *
cmd_cluster(struct admin *a, struct reply *r, int argc, char **argv)
{
    (void)argc, (void)argv;
    struct cluster *c = a->b->cluster;
    if (!c) return "no cluster (cluster_name is not set)";
    struct cluster_stats cs;
    cluster_get_stats(c, &cs);
    reply_object(r);
    reply_str(r, "cluster", a->b->conf.cluster_name);
    reply_str(r, "node", cluster_node_id(c));
    reply_str(r, "nats_url", cluster_nats_url(c));
    reply_bool(r, "connected", cs.connected);
    reply_u64(r, "reconnects", cs.reconnects);
    reply_u64(r, "subjects", cs.subjects);
    reply_u64(r, "forwarded", cs.forwarded);
    reply_u64(r, "received", cs.received);
    reply_u64(r, "received_shared", cs.received_shared);
    reply_u64(r, "duplicates", cs.duplicates);
    reply_u64(r, "held", cs.held);
    reply_u64(r, "dropped_out", cs.dropped_out);
    reply_u64(r, "dropped_in", cs.dropped_in);
    reply_u64(r, "bad_in", cs.bad_in);
    reply_u64(r, "pending_out_bytes", cs.pending_out_bytes);
    reply_u64(r, "pending_in_bytes", cs.pending_in_bytes);
    reply_u64(r, "claims", cs.claims);
    reply_u64(r, "takeovers_in", cs.takeovers_in);
    reply_u64(r, "takeovers_out", cs.takeovers_out);
    reply_u64(r, "takeovers_clean", cs.takeovers_clean);
    reply_u64(r, "partitions", cs.partitions);
    reply_bool(r, "retained_stream", cs.retained_stream);
    reply_u64(r, "retained_in", cs.retained_in);
    reply_u64(r, "retained_failed", cs.retained_failed);
    reply_list(r, "peers");
    struct cluster_peer p;
    for (size_t k = 0; cluster_peer(c, k, &p); k++) {
        reply_object(r);
        reply_str(r, "node", p.node);
        reply_str(r, "run", p.run);
        reply_dbl(r, "last_seen", p.last_seen);
        reply_u64(r, "received", p.received);
        reply_end_object(r);
    }
    reply_end_list(r);
    reply_end_object(r);
    return NULL;
}

static const char *
cmd_acl(struct admin *a, struct reply *r, int argc, char **argv)
{
    if (argc != 6 || strcmp(argv[1], "check") != 0 ||
        (strcmp(argv[5], "read") != 0 && strcmp(argv[5], "write") != 0))
        return "usage: acl check USER CLIENTID TOPIC read|write";
    if (!topic_name_is_valid(argv[4], strlen(argv[4]))) return "not a valid topic name";
    const char *why;
    int ok = access_explain(a->b, argv[2], argv[3], argv[4], argv[5][0] == 'w', &why);
    if (ok < 0) return "no acl_file: every topic is allowed";
    reply_object(r);
    reply_str(r, "access", ok ? "allowed" : "denied");
    reply_str(r, "rule", why ? why : "no rule matched (denied by default)");
    reply_end_object(r);
    return NULL;
}

static const char *
cmd_reload(struct admin *a, struct reply *r, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    char restart[128];
    if (broker_reload(a->b, restart, sizeof(restart)) < 0)
        return "the configuration file does not parse (see the log)";
    reply_object(r);
    reply_str(r, "reloaded", a->b->conf_path ? a->b->conf_path : "(no configuration file)");
    reply_str(r, "needs_restart", restart[0] ? restart : NULL);
    reply_end_object(r);
    return NULL;
}

/* A field of a request in place: lunamq-ctl sends \\, \t and \n for a backslash, a TAB
 * and a newline inside an argument. */
static char *
unescape(char *s)
{
    char *o = s;
    for (const char *p = s; *p; p++) {
        if (*p == '\\' && p[1]) {
            p++;
            *o++ = *p == 't' ? '\t' : *p == 'n' ? '\n' : *p;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return s;
}

/* Run one request line; returns the error message or NULL. */
static const char *
run(struct admin *a, char *line, struct sbuf *body)
{
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    for (char *t = line; t && argc < MAX_ARGS;) { /* empty fields are arguments too */
        char *tab = strchr(t, '\t');
        if (tab) *tab = '\0';
        argv[argc++] = unescape(t);
        t = tab ? tab + 1 : NULL;
    }
    if (argc < 2) return "empty request";
    struct reply r = {.b = body, .json = strcmp(argv[0], "json") == 0};
    const char *cmd = argv[1];
    argc--;
    char **args = argv + 1;
    if (strcmp(cmd, "stats") == 0)
        cmd_stats(a, &r, argc, args);
    else if (strcmp(cmd, "version") == 0)
        cmd_version(a, &r, argc, args);
    else if (strcmp(cmd, "clients") == 0)
        cmd_clients(a, &r, argc, args);
    else if (strcmp(cmd, "client") == 0)
        return cmd_client(a, &r, argc, args);
    else if (strcmp(cmd, "subscriptions") == 0)
        cmd_subscriptions(a, &r, argc, args);
    else if (strcmp(cmd, "subscribers") == 0)
        return cmd_subscribers(a, &r, argc, args);
    else if (strcmp(cmd, "retained") == 0)
        cmd_retained(a, &r, argc, args);
    else if (strcmp(cmd, "hooks") == 0)
        cmd_hooks(a, &r, argc, args);
    else if (strcmp(cmd, "bridges") == 0)
        cmd_bridges(a, &r, argc, args);
    else if (strcmp(cmd, "persistence") == 0)
        return cmd_persistence(a, &r, argc, args);
    else if (strcmp(cmd, "kick") == 0)
        return cmd_kick(a, &r, argc, args);
    else if (strcmp(cmd, "reload") == 0)
        return cmd_reload(a, &r, argc, args);
    else if (strcmp(cmd, "acl") == 0)
        return cmd_acl(a, &r, argc, args);
    else if (strcmp(cmd, "cluster") == 0)
        return cmd_cluster(a, &r, argc, args);
    else if (strcmp(cmd, "kv") == 0)
        return cmd_kv(a->b->kv, &r, argc, args, a->errbuf, sizeof(a->errbuf));
    else
        return "unknown command";
    return NULL;
}

/* ---- the dashboard (http_listener GET /api/dashboard) ---- */

#define BUSIEST 10

static uint64_t
traffic(const struct session *s)
{
    uint64_t in = 0, out = 0;
    if (online(s)) conn_bytes(s->conn, &in, &out);
    return in + out;
}

void
admin_dashboard_json(struct admin *a, struct sbuf *out)
{
    struct reply r = {.b = out, .json = true};
    char *argv[] = {NULL};
    sbuf_put(out, "{\"stats\": ", 10);
    cmd_stats(a, &r, 0, argv);
    sbuf_put(out, ", \"hooks\": ", 11);
    r = (struct reply){.b = out, .json = true};
    cmd_hooks(a, &r, 0, argv);
    /* the busiest clients by bytes both ways: a top ten kept sorted by insertion */
    const struct session *top[BUSIEST];
    size_t n = 0;
    FOR_EACH_SESSION(a->b, s)
    {
        uint64_t t = traffic(s);
        if (!online(s) || (n == BUSIEST && t <= traffic(top[n - 1]))) continue;
        size_t at = n < BUSIEST ? n++ : BUSIEST - 1;
        while (at > 0 && traffic(top[at - 1]) < t) {
            top[at] = top[at - 1];
            at--;
        }
        top[at] = s;
    }
    sbuf_put(out, ", \"busiest\": ", 13);
    r = (struct reply){.b = out, .json = true};
    reply_list(&r, NULL);
    for (size_t i = 0; i < n; i++) {
        reply_object(&r);
        client_fields(&r, top[i]);
        reply_u64(&r, "traffic_bytes", traffic(top[i]));
        reply_end_object(&r);
    }
    reply_end_list(&r);
    sbuf_put(out, "}\n", 2);
}

/* ---- $SYS ---- */

__attribute__((format(printf, 3, 4))) static void
sys_pub(struct admin *a, const char *topic, const char *fmt, ...)
{
    char payload[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(payload, sizeof(payload), fmt, ap);
    va_end(ap);
    struct msg_init in = {.topic = topic,
                          .topic_len = strlen(topic),
                          .payload = (const uint8_t *)payload,
                          .payload_len = n > 0 ? (size_t)n : 0,
                          .retain = true};
    struct msg *m = msg_new(&in);
    struct broker *b = a->b;
    retain_set(b->retained, m);
    uint64_t dropped = b->ctr.dropped_no_subscriber; /* nobody listening to $SYS is normal */
    struct route_result r;
    route_publish(b, m, NULL, DELIVER_NO_HOLD, true, &r);
    b->ctr.dropped_no_subscriber = dropped;
    msg_unref(m);
}

static void
sys_load(struct admin *a, const char *what, const struct load *l)
{
    char t[128];
    snprintf(t, sizeof(t), "$SYS/broker/load/%s/1min", what);
    sys_pub(a, t, "%.2f", l->m1);
    snprintf(t, sizeof(t), "$SYS/broker/load/%s/5min", what);
    sys_pub(a, t, "%.2f", l->m5);
    snprintf(t, sizeof(t), "$SYS/broker/load/%s/15min", what);
    sys_pub(a, t, "%.2f", l->m15);
}

static void
publish_sys(struct admin *a)
{
    struct figure f[MAX_FIGURES];
    size_t n = collect(a, f);
    sys_pub(a, "$SYS/broker/version", "lunamq version %s", LUNAMQ_VERSION);
    sys_pub(a, "$SYS/broker/uptime", "%llu seconds",
            (unsigned long long)((lq_now_ms() - a->started_ms) / 1000));
    char t[300];
    for (size_t i = 0; i < n; i++) {
        if (!f[i].sys) continue;
        snprintf(t, sizeof(t), "$SYS/broker/%s", f[i].sys);
        sys_pub(a, t, "%llu", (unsigned long long)f[i].v);
    }
    /* lunamq's own: the journal's figures, when there is one */
    static const char pfx[] = "persistence_";
    for (size_t i = 0; i < n && a->b->persist; i++) {
        if (strncmp(f[i].name, pfx, sizeof(pfx) - 1) != 0) continue;
        snprintf(t, sizeof(t), "$SYS/broker/persistence/%s", f[i].name + sizeof(pfx) - 1);
        if (f[i].fraction)
            sys_pub(a, t, "%.3f", f[i].v);
        else
            sys_pub(a, t, "%llu", (unsigned long long)f[i].v);
    }
    sys_pub(a, "$SYS/broker/publish/messages/received", "%llu",
            (unsigned long long)a->b->ctr.msgs_received);
    sys_pub(a, "$SYS/broker/publish/messages/sent", "%llu",
            (unsigned long long)a->b->ctr.msgs_sent);
    sys_load(a, "messages/received", &a->load_received);
    sys_load(a, "messages/sent", &a->load_sent);
    sys_load(a, "bytes/received", &a->load_bytes_received);
    sys_load(a, "bytes/sent", &a->load_bytes_sent);
    sys_load(a, "connections", &a->load_connections);
    struct hook_info hi;
    for (size_t i = 0; hooks_info(a->b->hooks, i, &hi); i++) {
        for (size_t k = 0; k < NHOOK_COUNTERS; k++) {
            snprintf(t, sizeof(t), "$SYS/broker/hooks/%s/%s", hi.name, hook_counters[k].name);
            sys_pub(a, t, "%llu", (unsigned long long)*hook_counter(&hi.stats, k));
        }
    }
}

/* ---- Prometheus ---- */

static void
metrics_page(struct admin *a, struct sbuf *b)
{
    struct figure f[MAX_FIGURES];
    size_t n = collect(a, f);
    for (size_t i = 0; i < n; i++) {
        if (strncmp(f[i].name, "hook_", 5) == 0) continue; /* per hook, with a label, below */
        size_t len = strlen(f[i].name);
        bool has_total = len > 6 && strcmp(f[i].name + len - 6, "_total") == 0;
        const char *suffix = f[i].counter && !has_total ? "_total" : "";
        sbuf_printf(b, "# HELP lunamq_%s%s %s\n# TYPE lunamq_%s%s %s\nlunamq_%s%s %.17g\n",
                    f[i].name, suffix, f[i].help, f[i].name, suffix,
                    f[i].counter ? "counter" : "gauge", f[i].name, suffix, f[i].v);
    }
    static const struct {
        const char *name, *type, *help;
    } bm[] = {
        {"bridge_connected", "gauge", "1 while the bridge is connected to its remote"},
        {"bridge_messages_out_total", "counter", "messages the bridge sent to its remote"},
        {"bridge_messages_in_total", "counter", "messages the bridge received from its remote"},
        {"bridge_waiting", "gauge", "messages queued or in flight for the remote"},
        {"bridge_connects_total", "counter", "connections the remote accepted"},
        {"bridge_connect_failures_total", "counter", "connection attempts that failed"},
    };
    for (size_t k = 0; k < sizeof(bm) / sizeof(bm[0]) && a->b->nbridged; k++) {
        sbuf_printf(b, "# HELP lunamq_%s %s\n# TYPE lunamq_%s %s\n", bm[k].name, bm[k].help,
                    bm[k].name, bm[k].type);
        for (size_t i = 0; i < a->b->nbridged; i++) {
            struct bridge_info bi;
            bridge_info(a->b->bridged[i].br, &bi);
            uint64_t v[] = {bridge_is_connected(a->b->bridged[i].br),
                            bi.msgs_out,
                            bi.msgs_in,
                            bi.waiting,
                            bi.connects,
                            bi.connect_failures};
            sbuf_printf(b, "lunamq_%s{bridge=", bm[k].name);
            sbuf_json_str(b, bi.name, strlen(bi.name));
            sbuf_printf(b, "} %llu\n", (unsigned long long)v[k]);
        }
    }
    for (size_t k = 0; k < NHOOK_COUNTERS; k++) {
        const char *nm = hook_counters[k].name;
        const char *suffix = hook_counters[k].counter ? "_total" : "";
        sbuf_printf(b, "# HELP lunamq_hook_%s%s per Lua hook\n# TYPE lunamq_hook_%s%s %s\n", nm,
                    suffix, nm, suffix, hook_counters[k].counter ? "counter" : "gauge");
        struct hook_info hi;
        for (size_t i = 0; hooks_info(a->b->hooks, i, &hi); i++) {
            sbuf_printf(b, "lunamq_hook_%s%s{hook=", nm, suffix);
            sbuf_json_str(b, hi.name, strlen(hi.name)); /* the same escaping rules */
            sbuf_printf(b, "} %llu\n", (unsigned long long)*hook_counter(&hi.stats, k));
        }
    }
}

static void
http_page(void *arg, struct sbuf *out)
{
    metrics_page(arg, out);
}

/* ---- the socket ---- */

static void
conn_done(struct bufferevent *bev, void *arg)
{
    (void)arg;
    bufferevent_free(bev); /* everything was written */
}

static void
conn_event(struct bufferevent *bev, short what, void *arg)
{
    (void)what;
    (void)arg;
    bufferevent_free(bev);
}

static void
conn_read(struct bufferevent *bev, void *arg)
{
    struct admin *a = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n;
    char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
    if (!line) {
        if (evbuffer_get_length(in) > MAX_REQUEST) bufferevent_free(bev);
        return;
    }
    struct sbuf body = {0};
    const char *err = run(a, line, &body);
    free(line);
    struct evbuffer *out = bufferevent_get_output(bev);
    if (err)
        evbuffer_add_printf(out, "error\t%s\n", err);
    else {
        evbuffer_add(out, "ok\n", 3);
        if (body.len) evbuffer_add(out, body.p, body.len);
        if (body.len && body.p[body.len - 1] != '\n') evbuffer_add(out, "\n", 1);
    }
    sbuf_free(&body);
    bufferevent_disable(bev, EV_READ);
    bufferevent_setcb(bev, NULL, conn_done, conn_event, a);
}

static void
accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    (void)sa;
    (void)salen;
    struct admin *a = arg;
    struct bufferevent *bev =
        bufferevent_socket_new(evconnlistener_get_base(evl), fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        close(fd);
        return;
    }
    bufferevent_setcb(bev, conn_read, NULL, conn_event, a);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void
accept_error_cb(struct evconnlistener *evl, void *arg)
{
    (void)evl;
    struct admin *a = arg;
    accept_backoff_failed(a->backoff);
}

static bool
someone_listens(const struct sockaddr_un *sun)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return false;
    bool yes = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
    close(fd);
    return yes;
}

bool
admin_serves_metrics(const struct admin *a)
{
    return a && a->http;
}

/* Only a socket is ours to remove: a stale one of a broker that did not stop cleanly.
 * Anything else at that path (a typo naming a file) stays. */
static void
unlink_socket(const char *path)
{
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path);
}

struct admin *
admin_new(struct broker *b, struct event_base *base, const char *path, char *err, size_t errlen)
{
    err[0] = '\0';
    struct admin *a = lq_xcalloc(1, sizeof(*a));
    a->b = b;
    a->started_ms = a->last_tick_ms = lq_now_ms();
    a->tick = event_new(base, -1, EV_PERSIST, tick_cb, a);
    struct timeval one = {1, 0};
    if (!a->tick || event_add(a->tick, &one) < 0) /* issue 12.22: rates and lag stay 0 */
        lq_log(LQ_LOG_ERR, "admin: cannot arm the one-second tick");
    const struct lq_conf *c = &b->conf;
    if (c->metrics_port) {
        const char *host = c->metrics_host ? c->metrics_host : "127.0.0.1";
        a->http = metrics_http_new(base, host, c->metrics_port, http_page, a);
        if (a->http)
            lq_log(LQ_LOG_NOTICE, "metrics on http://%s:%u/metrics", host, c->metrics_port);
    }
    if (!path || strcmp(path, "none") == 0) return a;

    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sun.sun_path)) {
        lq_log(LQ_LOG_ERR, "admin_socket %s: path too long", path);
        admin_free(a);
        return NULL;
    }
    strcpy(sun.sun_path, path);
    if (someone_listens(&sun)) {
        lq_log(LQ_LOG_ERR, "admin_socket %s: another broker is listening there", path);
        admin_free(a);
        return NULL;
    }
    struct stat st;
    if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "admin_socket %s: exists and is not a socket: not replacing it",
                 path);
        admin_free(a);
        return NULL;
    }
    unlink_socket(path);
    mode_t old = umask(0177); /* created 0600: the broker's user (and root) only */
    a->evl =
        evconnlistener_new_bind(base, accept_cb, a, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                16, (struct sockaddr *)&sun, sizeof(sun));
    umask(old);
    if (!a->evl) {
        lq_log(LQ_LOG_ERR, "admin_socket %s: %s", path, strerror(errno));
        admin_free(a);
        return NULL;
    }
    a->backoff = accept_backoff_new(a->evl, "admin_socket");
    evconnlistener_set_error_cb(a->evl, accept_error_cb);
    a->path = lq_xstrdup(path);
    lq_log(LQ_LOG_NOTICE, "admin socket %s", path);
    return a;
}

void
admin_free(struct admin *a)
{
    if (!a) return;
    if (a->evl) evconnlistener_free(a->evl);
    accept_backoff_free(a->backoff);
    if (a->path) unlink_socket(a->path);
    if (a->tick) event_free(a->tick);
    metrics_http_free(a->http);
    free(a->path);
    free(a);
}
