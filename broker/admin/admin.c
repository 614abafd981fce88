/* SPDX-License-Identifier: MIT
 *
 * admin: the admin socket and the commands behind lunamq-ctl. Each command reads the
 * broker's state and writes one reply (JSON or text, see sbuf.h); nothing here is
 * on the message path. */
#include <errno.h>
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

#include "../session/session_int.h"
#include "admin.h"
#include "broker.h"
#include "hooks.h"
#include "retain.h"
#include "sbuf.h"
#include "tls.h"

#define MAX_REQUEST 4096
#define MAX_ARGS    8

struct rates {
    double msgs_received, msgs_sent, bytes_received, bytes_sent;
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
};

/* ---- the one-second sampler ---- */

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
    a->last = *c;
    a->last_tick_ms = now;
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

/* ---- commands ---- */

#define FOR_EACH_SESSION(b, s)                                                                     \
    for (size_t i_ = 0; i_ < (b)->nbuckets; i_++)                                                  \
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

static void
cmd_stats(struct admin *a, struct reply *r, int argc, char **argv)
{
    (void)argc;
    (void)argv;
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
        if (s->version == MQTT_V5) v5++;
        else if (s->version == MQTT_V311) v311++;
        else v31++;
        if (conn_is_tls(s->conn)) tls++;
    }
    struct hook_stats hk = {0};
    uint64_t hooks_loaded = 0, hooks_failed = 0;
    struct hook_info hi;
    for (size_t i = 0; hooks_info(b->hooks, i, &hi); i++) {
        hooks_loaded += hi.loaded;
        hooks_failed += hi.error != NULL;
        hk.calls += hi.stats.calls;
        hk.passed += hi.stats.passed;
        hk.rewritten += hi.stats.rewritten;
        hk.dropped += hi.stats.dropped;
        hk.fanned_out += hi.stats.fanned_out;
        hk.published += hi.stats.published;
        hk.errors += hi.stats.errors;
        hk.budget_overruns += hi.stats.budget_overruns;
        hk.memory_overruns += hi.stats.memory_overruns;
        hk.total_us += hi.stats.total_us;
    }
    reply_object(r);
    reply_str(r, "version", LUNAMQ_VERSION);
    reply_u64(r, "uptime_s", (lq_now_ms() - a->started_ms) / 1000);
    reply_u64(r, "clients_connected", online_n);
    reply_u64(r, "clients_peak", c->connections_peak);
    reply_u64(r, "clients_total", c->connections_total);
    reply_u64(r, "clients_v5", v5);
    reply_u64(r, "clients_v311", v311);
    reply_u64(r, "clients_v31", v31);
    reply_u64(r, "clients_tls", tls);
    reply_u64(r, "clients_plain", online_n - tls);
    reply_u64(r, "sessions_online", online_n);
    reply_u64(r, "sessions_offline", offline_n);
    reply_u64(r, "messages_received", c->msgs_received);
    reply_u64(r, "messages_received_qos0", c->received_qos[0]);
    reply_u64(r, "messages_received_qos1", c->received_qos[1]);
    reply_u64(r, "messages_received_qos2", c->received_qos[2]);
    reply_u64(r, "messages_sent", c->msgs_sent);
    reply_u64(r, "messages_sent_qos0", c->sent_qos[0]);
    reply_u64(r, "messages_sent_qos1", c->sent_qos[1]);
    reply_u64(r, "messages_sent_qos2", c->sent_qos[2]);
    reply_u64(r, "bytes_received", c->bytes_received);
    reply_u64(r, "bytes_sent", c->bytes_sent);
    reply_dbl(r, "messages_received_per_s", a->rate.msgs_received);
    reply_dbl(r, "messages_sent_per_s", a->rate.msgs_sent);
    reply_dbl(r, "bytes_received_per_s", a->rate.bytes_received);
    reply_dbl(r, "bytes_sent_per_s", a->rate.bytes_sent);
    reply_u64(r, "dropped_queue_full", c->dropped_queue_full);
    reply_u64(r, "dropped_expired", c->dropped_expired);
    reply_u64(r, "dropped_hook", c->dropped_hook);
    reply_u64(r, "dropped_oversize", c->dropped_oversize);
    reply_u64(r, "dropped_no_subscriber", c->dropped_no_subscriber);
    reply_u64(r, "retained", retain_count(b->retained));
    reply_u64(r, "subscriptions", topic_tree_count(b->subs));
    reply_u64(r, "inflight", inflight);
    reply_u64(r, "queued", queued);
    reply_u64(r, "hooks_loaded", hooks_loaded);
    reply_u64(r, "hooks_failed", hooks_failed);
    reply_u64(r, "hook_calls", hk.calls);
    reply_u64(r, "hook_passed", hk.passed);
    reply_u64(r, "hook_rewritten", hk.rewritten);
    reply_u64(r, "hook_dropped", hk.dropped);
    reply_u64(r, "hook_fanned_out", hk.fanned_out);
    reply_u64(r, "hook_published", hk.published);
    reply_u64(r, "hook_errors", hk.errors);
    reply_u64(r, "hook_budget_overruns", hk.budget_overruns);
    reply_u64(r, "hook_memory_overruns", hk.memory_overruns);
    reply_u64(r, "hook_time_us", hk.total_us);
    reply_u64(r, "memory_rss_bytes", rss_bytes());
    reply_u64(r, "event_loop_lag_ms", a->lag_ms);
    reply_u64(r, "event_loop_lag_max_ms", a->lag_max_ms);
    reply_end_object(r);
}

static void
client_fields(struct reply *r, const struct session *s)
{
    reply_str(r, "id", s->id);
    reply_bool(r, "online", online(s));
    const struct tls_identity *id = online(s) ? conn_tls_identity(s->conn) : NULL;
    reply_str(r, "address", online(s) ? conn_peer(s->conn) : NULL);
    reply_str(r, "protocol", s->version == MQTT_V5 ? "5.0" : s->version == MQTT_V311 ? "3.1.1" : "3.1");
    reply_str(r, "username", s->username);
    reply_str(r, "cert_cn", id ? id->cn : NULL);
    reply_bool(r, "tls", online(s) && conn_is_tls(s->conn));
    reply_u64(r, "keepalive", s->keepalive);
    reply_u64(r, "subscriptions", s->nsubs);
    reply_u64(r, "inflight", s->ninflight);
    reply_u64(r, "queued", s->nqueued);
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
        reply_str(r, "state", hi.loaded ? (hi.error ? "loaded, new version failed" : "loaded")
                                        : "failed");
        reply_str(r, "error", hi.error);
        struct sbuf t = {0};
        for (size_t k = 0; k < hi.ntopics; k++)
            sbuf_printf(&t, "%s%s", k ? " " : "", hi.topics[k]);
        reply_str(r, "topics", t.p ? t.p : "");
        sbuf_free(&t);
        reply_dbl(r, "interval", hi.interval);
        reply_u64(r, "memory", hi.memory);
        reply_u64(r, "calls", hi.stats.calls);
        reply_u64(r, "passed", hi.stats.passed);
        reply_u64(r, "rewritten", hi.stats.rewritten);
        reply_u64(r, "dropped", hi.stats.dropped);
        reply_u64(r, "fanned_out", hi.stats.fanned_out);
        reply_u64(r, "published", hi.stats.published);
        reply_u64(r, "errors", hi.stats.errors);
        reply_u64(r, "budget_overruns", hi.stats.budget_overruns);
        reply_u64(r, "memory_overruns", hi.stats.memory_overruns);
        reply_u64(r, "timer_calls", hi.stats.timer_calls);
        reply_u64(r, "time_total_us", hi.stats.total_us);
        reply_u64(r, "time_max_us", hi.stats.max_us);
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
cmd_reload(struct admin *a, struct reply *r, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    if (broker_reload(a->b) < 0) return "the configuration file does not parse (see the log)";
    reply_object(r);
    reply_str(r, "reloaded", a->b->conf_path ? a->b->conf_path : "(no configuration file)");
    reply_end_object(r);
    return NULL;
}

/* Run one request line; returns the error message or NULL. */
static const char *
run(struct admin *a, char *line, struct sbuf *body)
{
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    for (char *save = NULL, *t = strtok_r(line, "\t", &save); t && argc < MAX_ARGS;
         t = strtok_r(NULL, "\t", &save))
        argv[argc++] = t;
    if (argc < 2) return "empty request";
    struct reply r = {.b = body, .json = strcmp(argv[0], "json") == 0};
    const char *cmd = argv[1];
    argc--;
    char **args = argv + 1;
    if (strcmp(cmd, "stats") == 0) cmd_stats(a, &r, argc, args);
    else if (strcmp(cmd, "version") == 0) cmd_version(a, &r, argc, args);
    else if (strcmp(cmd, "clients") == 0) cmd_clients(a, &r, argc, args);
    else if (strcmp(cmd, "client") == 0) return cmd_client(a, &r, argc, args);
    else if (strcmp(cmd, "subscriptions") == 0) cmd_subscriptions(a, &r, argc, args);
    else if (strcmp(cmd, "retained") == 0) cmd_retained(a, &r, argc, args);
    else if (strcmp(cmd, "hooks") == 0) cmd_hooks(a, &r, argc, args);
    else if (strcmp(cmd, "kick") == 0) return cmd_kick(a, &r, argc, args);
    else if (strcmp(cmd, "reload") == 0) return cmd_reload(a, &r, argc, args);
    else return "unknown command";
    return NULL;
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
    if (err) evbuffer_add_printf(out, "error\t%s\n", err);
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

static bool
someone_listens(const struct sockaddr_un *sun)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return false;
    bool yes = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
    close(fd);
    return yes;
}

struct admin *
admin_new(struct broker *b, struct event_base *base, const char *path)
{
    struct admin *a = lq_xcalloc(1, sizeof(*a));
    a->b = b;
    a->started_ms = a->last_tick_ms = lq_now_ms();
    a->tick = event_new(base, -1, EV_PERSIST, tick_cb, a);
    struct timeval one = {1, 0};
    event_add(a->tick, &one);
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
    unlink(path); /* a stale socket of a broker that did not stop cleanly */
    mode_t old = umask(0177); /* created 0600: the broker's user (and root) only */
    a->evl = evconnlistener_new_bind(base, accept_cb, a, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                     16, (struct sockaddr *)&sun, sizeof(sun));
    umask(old);
    if (!a->evl) {
        lq_log(LQ_LOG_ERR, "admin_socket %s: %s", path, strerror(errno));
        admin_free(a);
        return NULL;
    }
    a->path = lq_xstrdup(path);
    lq_log(LQ_LOG_NOTICE, "admin socket %s", path);
    return a;
}

void
admin_free(struct admin *a)
{
    if (!a) return;
    if (a->evl) evconnlistener_free(a->evl);
    if (a->path) unlink(a->path);
    if (a->tick) event_free(a->tick);
    free(a->path);
    free(a);
}
