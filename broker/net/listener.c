/* SPDX-License-Identifier: MIT
 *
 * listener: one listening socket (evconnlistener) and the list of the connections
 * it accepted, so that freeing a listener frees them all. A dialer is one without the
 * socket, for the connections conn_dial makes (conn.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <event2/listener.h>
#include <event2/util.h>

#include "hs_worker.h"
#include "lq.h"
#include "net_int.h"
#include "tls.h"

#define ACCEPT_BURST 32

static void
accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    (void)evl;
    struct listener *l = arg;
    struct conn *c = conn_new(l, fd, sa, salen);
    if (c && !l->ops->on_accept(c, l->ud)) conn_free(c);
    if (l->tls) listener_admission(l);
    /* libevent accepts until the backlog is empty (1024 connections, each with its
     * TLS state to set up: 300 ms with no other client served). A burst of
     * ACCEPT_BURST, then the loop's other events, then the next. */
    if (l->accepted++ == 0) event_active(l->burst_ev, EV_TIMEOUT, 0);
    if (l->accepted >= ACCEPT_BURST) evconnlistener_disable(l->evl);
}

/* After a burst of accepts (in the next loop iteration): accept again. */
static void
burst_done_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct listener *l = arg;
    if (l->accepted >= ACCEPT_BURST && !l->admission_paused) evconnlistener_enable(l->evl);
    l->accepted = 0;
}

/* ---- TLS admission ----
 * In a reconnect storm full handshakes arrive faster than the threads finish them.
 * Taking them all would start deadlines the queue cannot meet: every handshake would
 * be paid for and then closed together. The listener takes as many as the threads
 * finish within half the handshake timeout (hs_worker_capacity, measured); the rest
 * wait in the kernel's backlog, where they cost nothing (and past it, the clients'
 * own SYN retries pace them). It accepts again once that many are down by half. */
void
listener_admission(struct listener *l)
{
    if (!l->tls || !l->evl) return;
    size_t cap = hs_worker_capacity(tls_ctx_handshake_timeout_ms(l->tls) / 2);
    if (!l->admission_paused && l->nhandshaking >= cap) {
        l->admission_paused = true;
        evconnlistener_disable(l->evl);
        lq_log_limited(&l->admission_log, LQ_LOG_NOTICE,
                       "%s: %zu TLS handshakes under way, as many as the handshake threads "
                       "finish in %u ms: accepting again at %zu",
                       l->name, l->nhandshaking, tls_ctx_handshake_timeout_ms(l->tls) / 2, cap / 2);
    } else if (l->admission_paused && l->nhandshaking <= cap / 2) {
        l->admission_paused = false;
        if (l->accepted < ACCEPT_BURST) evconnlistener_enable(l->evl);
    }
}

/* ---- accept back-off ----
 * At the descriptor limit (EMFILE, ENFILE) or out of memory, accept fails at once and
 * the listening socket stays readable: libevent would call again and again, at 100%
 * CPU (260 000 log lines a second). The listener stops for ACCEPT_PAUSE_MS instead;
 * connections wait in the backlog meanwhile. */
#define ACCEPT_PAUSE_MS 100

struct accept_backoff {
    struct evconnlistener *evl;
    struct event *resume;
    struct lq_log_limit log;
    char name[64];
};

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct accept_backoff *ab = arg;
    evconnlistener_enable(ab->evl);
}

struct accept_backoff *
accept_backoff_new(struct evconnlistener *evl, const char *name)
{
    struct accept_backoff *ab = lq_xcalloc(1, sizeof(*ab));
    ab->evl = evl;
    ab->resume = evtimer_new(evconnlistener_get_base(evl), resume_cb, ab);
    snprintf(ab->name, sizeof(ab->name), "%s", name);
    if (!ab->resume) {
        free(ab);
        return NULL;
    }
    return ab;
}

void
accept_backoff_free(struct accept_backoff *ab)
{
    if (!ab) return;
    event_free(ab->resume);
    free(ab);
}

void
accept_backoff_failed(struct accept_backoff *ab)
{
    int e = errno;
    if (!ab) return;
    lq_log_limited(&ab->log, LQ_LOG_ERR, "%s: accept: %s: not accepting for %d ms", ab->name,
                   strerror(e), ACCEPT_PAUSE_MS);
    evconnlistener_disable(ab->evl);
    struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
    if (evtimer_add(ab->resume, &tv) < 0) /* paused for good would be worse: go on */
        evconnlistener_enable(ab->evl);
}

static void
accept_error_cb(struct evconnlistener *evl, void *arg)
{
    (void)evl;
    struct listener *l = arg;
    accept_backoff_failed(l->backoff);
}

struct listener *
listener_bind(struct event_base *base, const char *host, uint16_t port, struct tls_ctx *tls,
              const struct conn_ops *ops, void *ud)
{
    struct listener *l = lq_xcalloc(1, sizeof(*l));
    l->fd = -1;
    l->tls = tls;
    l->base = base;
    l->ops = ops;
    l->ud = ud;
    snprintf(l->name, sizeof(l->name), "%s:%u", host && *host ? host : "*", port);
    if (!conns_init(l)) {
        errno = ENOMEM;
        goto fail;
    }

    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%u", port);
    int rc = getaddrinfo(host && *host ? host : NULL, portstr, &hints, &res);
    if (rc != 0) {
        lq_log(LQ_LOG_ERR, "listener %s:%u: %s", host ? host : "*", port, gai_strerror(rc));
        errno = EINVAL;
        goto fail;
    }
    /* as evconnlistener_new_bind would, but without listen(): that comes later */
    int on = 1;
    l->fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0 || setsockopt(l->fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) < 0 ||
        evutil_make_listen_socket_reuseable(l->fd) < 0 ||
        bind(l->fd, res->ai_addr, res->ai_addrlen) < 0) {
        int e = errno;
        freeaddrinfo(res);
        lq_log(LQ_LOG_ERR, "listener %s:%u: %s", host ? host : "*", port, strerror(e));
        errno = e;
        goto fail;
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(l->fd, (struct sockaddr *)&ss, &sl);
    l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    if (!(l->burst_ev = event_new(base, -1, 0, burst_done_cb, l))) {
        errno = ENOMEM;
        goto fail;
    }
    return l;
fail:
    listener_free(l);
    return NULL;
}

int
listener_listen(struct listener *l)
{
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC;
    l->evl = evconnlistener_new(l->base, accept_cb, l, flags, 1024, l->fd);
    if (!l->evl) {
        lq_log(LQ_LOG_ERR, "listener %s: %s", l->name, strerror(errno));
        return -1;
    }
    l->fd = -1; /* the evconnlistener's now */
    char name[32];
    snprintf(name, sizeof(name), "listener %u", l->port);
    if (!(l->backoff = accept_backoff_new(l->evl, name))) {
        errno = ENOMEM;
        return -1;
    }
    evconnlistener_set_error_cb(l->evl, accept_error_cb);
    return 0;
}

struct listener *
listener_new(struct event_base *base, const char *host, uint16_t port, struct tls_ctx *tls,
             const struct conn_ops *ops, void *ud)
{
    struct listener *l = listener_bind(base, host, port, tls, ops, ud);
    if (l && listener_listen(l) < 0) {
        int e = errno;
        listener_free(l);
        errno = e;
        return NULL;
    }
    return l;
}

struct listener *
dialer_new(struct event_base *base, const char *name, const struct conn_ops *ops, void *ud)
{
    struct listener *d = lq_xcalloc(1, sizeof(*d));
    d->fd = -1;
    d->base = base;
    d->ops = ops;
    d->ud = ud;
    snprintf(d->name, sizeof(d->name), "%s", name);
    if (!conns_init(d)) {
        listener_free(d);
        errno = ENOMEM;
        return NULL;
    }
    return d;
}

void
listener_free(struct listener *l)
{
    if (!l) return;
    conns_fini(l);
    while (l->nspare) evbuffer_free(l->spare[--l->nspare]);
    while (l->nspare_wev) event_free(l->spare_wev[--l->nspare_wev]);
    if (l->evl) evconnlistener_free(l->evl);
    if (l->fd >= 0) evutil_closesocket(l->fd);
    if (l->burst_ev) event_free(l->burst_ev);
    accept_backoff_free(l->backoff);
    tls_ctx_unref(l->tls);
    ws_listen_free(l);
    free(l);
}

void
listener_set_tls(struct listener *l, struct tls_ctx *tls)
{
    tls_ctx_unref(l->tls); /* connections using it keep their own reference */
    l->tls = tls;
}

uint16_t
listener_port(const struct listener *l)
{
    return l->port;
}

const char *
listener_name(const struct listener *l)
{
    return l->name;
}

size_t
listener_conn_count(const struct listener *l)
{
    return l->nconns - l->nlinger; /* a lingering close is not a client any more */
}
