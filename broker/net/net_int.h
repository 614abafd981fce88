/* SPDX-License-Identifier: MIT
 * Shared by the files of net/ only. */
#ifndef LUNAMQ_NET_INT_H
#define LUNAMQ_NET_INT_H

#include <event2/event.h>
#include <event2/buffer.h>

#include "net.h"

struct listener {
    struct event_base *base;
    struct evconnlistener *evl;
    const struct conn_ops *ops;
    void *ud;
    uint16_t port;
    struct tls_ctx *tls;        /* NULL: plain TCP; else new connections speak TLS with it */
    struct evbuffer *spare[64]; /* empty buffers of idle connections, for busy ones */
    unsigned nspare;
    struct event *spare_wev[64]; /* likewise write events, re-assigned with event_assign */
    unsigned nspare_wev;
    size_t nconns;
    struct conn *conns; /* every conn accepted, doubly linked */
};

/* No bufferevent: an idle connection should cost little. The socket has a read event;
 * the write event, `in` and `out` exist only while there is something to write or to
 * frame (TLS keeps `in` and `out`: they are its record layer). */
struct conn {
    struct listener *l;
    evutil_socket_t fd;
    struct event *rev, *wev;
    struct evbuffer *in, *out;
    struct event *timer; /* keep-alive while open; flush grace and reap while closing */
    struct conn *prev, *next;
    void *owner;
    uint32_t max_packet;
    uint64_t keepalive_ms;
    uint64_t last_rx_ms;
    uint64_t bytes_in, bytes_out; /* MQTT bytes (plaintext) */
    bool closing;
    bool paused;
    struct evbuffer_iovec resv; /* conn_reserve .. conn_commit */
    /* TLS: in and out carry ciphertext; packets are framed from tls_in and written
     * to tls_out, which flush_ev encrypts once per loop iteration. */
    struct tls_conn *tls;
    struct evbuffer *tls_in, *tls_out;
    struct event *flush_ev;
    uint64_t hs_deadline_ms; /* the handshake must finish by then */
    bool peer_closed;        /* close_notify received */
    char peer[64];
};

struct conn *conn_new(struct listener *l, evutil_socket_t fd, const struct sockaddr *sa, int salen);
void conn_free(struct conn *c);

#endif
