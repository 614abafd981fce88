/* SPDX-License-Identifier: MIT
 *
 * listener: one listening socket (evconnlistener) and the list of the connections
 * it accepted, so that freeing a listener frees them all. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <event2/listener.h>

#include "lq.h"
#include "net_int.h"
#include "tls.h"

static void
accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    (void)evl;
    struct listener *l = arg;
    struct conn *c = conn_new(l, fd, sa, salen);
    if (!c) return;
    if (!l->ops->on_accept(c, l->ud)) conn_free(c);
}

static void
accept_error_cb(struct evconnlistener *evl, void *arg)
{
    (void)evl;
    struct listener *l = arg;
    /* EMFILE and friends: log and keep listening; libevent retries on the next event */
    lq_log(LQ_LOG_ERR, "listener %u: accept: %s", l->port, strerror(errno));
}

struct listener *
listener_new(struct event_base *base, const char *host, uint16_t port, struct tls_ctx *tls,
             const struct conn_ops *ops, void *ud)
{
    struct listener *l = lq_xcalloc(1, sizeof(*l));
    l->tls = tls;
    l->base = base;
    l->ops = ops;
    l->ud = ud;
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
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
    l->evl = evconnlistener_new_bind(base, accept_cb, l, flags, 1024, res->ai_addr,
                                     (int)res->ai_addrlen);
    freeaddrinfo(res);
    if (!l->evl) {
        lq_log(LQ_LOG_ERR, "listener %s:%u: %s", host ? host : "*", port, strerror(errno));
        goto fail;
    }
    evconnlistener_set_error_cb(l->evl, accept_error_cb);

    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(evconnlistener_get_fd(l->evl), (struct sockaddr *)&ss, &sl);
    l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    return l;
fail:
    listener_free(l);
    return NULL;
}

void
listener_free(struct listener *l)
{
    if (!l) return;
    conns_fini(l);
    while (l->nspare) evbuffer_free(l->spare[--l->nspare]);
    while (l->nspare_wev) event_free(l->spare_wev[--l->nspare_wev]);
    if (l->evl) evconnlistener_free(l->evl);
    tls_ctx_unref(l->tls);
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

size_t
listener_conn_count(const struct listener *l)
{
    return l->nconns;
}
