/* SPDX-License-Identifier: MIT
 * Shared by the files of net/ only. */
#ifndef LUNAMQ_NET_INT_H
#define LUNAMQ_NET_INT_H

#include <event2/event.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "net.h"

struct listener {
    struct event_base *base;
    struct evconnlistener *evl;
    const struct conn_ops *ops;
    void *ud;
    uint16_t port;
    size_t nconns;
    struct conn *conns; /* every conn accepted, doubly linked */
};

struct conn {
    struct listener *l;
    struct bufferevent *bev;
    struct event *timer; /* keep-alive while open; flush grace and reap while closing */
    struct conn *prev, *next;
    void *owner;
    uint32_t max_packet;
    uint64_t keepalive_ms;
    uint64_t last_rx_ms;
    bool closing;
    bool paused;
    bool in_read;               /* inside read_cb: the reap must wait */
    struct evbuffer_iovec resv; /* conn_reserve .. conn_commit */
    char peer[64];
};

struct conn *conn_new(struct listener *l, evutil_socket_t fd, const struct sockaddr *sa, int salen);
void conn_free(struct conn *c);

#endif
