/* SPDX-License-Identifier: MIT
 * Shared by the files of bridge/ only. */
#ifndef LUNAMQ_BRIDGE_INT_H
#define LUNAMQ_BRIDGE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "bridge.h"

struct event;
struct evdns_base;
struct evdns_getaddrinfo_request;
struct listener;
struct tls_ctx;

/* One `topic` line, ready to use: both filters with their prefixes. */
struct btopic {
    char *local_filter, *remote_filter;       /* prefix + pattern */
    const char *local_prefix, *remote_prefix; /* "" when none */
    uint16_t llen, rlen;                      /* of the prefixes */
    uint8_t dir, qos;                         /* BRIDGE_DIR_* */
};

enum bridge_state {
    BS_IDLE,       /* lazy, waiting for messages; or not started */
    BS_WAITING,    /* the backoff before the next attempt */
    BS_RESOLVING,  /* the address's name */
    BS_CONNECTING, /* dialed, CONNECT sent, no CONNACK yet */
    BS_UP,         /* CONNACK 0: the session has the connection */
    BS_STOPPED,    /* start_type once, and it went */
};

struct bridges {
    struct event_base *base;
    struct listener *dialer;
    struct evdns_base *dns; /* made on the first name that is not an address */
    struct bridge *list;
    uint16_t receive_max; /* ours, in CONNECT: more unacknowledged is a protocol error */
    char hostname[256];
};

struct bridge {
    struct bridges *bs;
    struct bridge *next;
    const struct bridge_conf *bc;
    const struct bridge_ops *ops;
    void *sess;
    struct btopic *topics;
    size_t ntopics;
    char *remote_id, *local_id, *notify_topic;
    struct tls_ctx *tls;
    enum bridge_state state;
    struct conn *conn;
    size_t addr;         /* the address in use or being tried */
    uint32_t backoff_ms; /* the last delay, for the jitter */
    uint8_t version;     /* the protocol level sent in CONNECT (with try_private's bit) */
    bool private_refused;
    bool retain_ok;  /* the remote takes retained messages (its CONNACK) */
    int8_t notified; /* the last local notification: -1 none, 0 or 1 */
    struct event *retry_ev, *ping_ev, *tick_ev;
    struct evdns_getaddrinfo_request *dns_req;
    struct probe *probe;  /* connected to a secondary address: is the first back? */
    uint64_t probe_at_ms; /* the next probe */
    uint64_t active_ms;   /* the last message either way (idle_timeout) */
    double connected_since;
    uint64_t msgs_out, msgs_in, connects, failures;
    char address[300];
    char last_error[256];
};

/* topicmap.c */
int btopics_make(struct bridge *br, char *err, size_t errlen);
void btopics_free(struct bridge *br);

#endif
