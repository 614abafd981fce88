/* SPDX-License-Identifier: MIT
 * Shared by the files of net/ only. */
#ifndef LUNAMQ_NET_INT_H
#define LUNAMQ_NET_INT_H

#include <event2/event.h>
#include <event2/buffer.h>

#include "net.h"
#include "ws.h"

/* Connection deadlines (keep-alive, TLS handshake, close grace) sit on a wheel of
 * WHEEL_SLOTS slots of WHEEL_TICK_MS instead of a timer event each: an idle
 * connection costs two pointers, not an event. A conn is on at most one list: a
 * wheel slot, the reap list (freed at the end of this loop iteration), or none. */
#define WHEEL_TICK_MS 100
#define WHEEL_SLOTS   1024

/* A dialer (dialer_new) is a listener without evl, tls or backoff: its conns are dialed
 * (conn_dial), not accepted, and never counted in nhandshaking. */
struct listener {
    struct event_base *base;
    struct evconnlistener *evl;     /* NULL until listener_listen */
    int fd;                         /* bound, not yet listening (listener_bind); else -1 */
    struct accept_backoff *backoff; /* pauses accepting at the descriptor limit */
    const struct conn_ops *ops;
    void *ud;
    uint16_t port;
    char name[80];         /* "host:port" as configured ("*:port": all addresses) */
    struct tls_ctx *tls;   /* NULL: plain TCP; else new connections speak TLS with it */
    size_t nhandshaking;   /* TLS handshake begun (bytes came), not over */
    bool admission_paused; /* not accepting: the handshake threads have enough */
    struct lq_log_limit admission_log;
    unsigned accepted;          /* in this loop iteration (at most ACCEPT_BURST) */
    struct event *burst_ev;     /* active after the first of them: accepting again */
    struct evbuffer *spare[64]; /* empty buffers of idle connections, for busy ones */
    unsigned nspare;
    struct event *spare_wev[64]; /* likewise write events, re-assigned with event_assign */
    unsigned nspare_wev;
    size_t nconns;
    size_t nlinger;             /* of them, closed and lingering (not counted as clients) */
    struct conn *conns;         /* every conn accepted (or dialed), doubly linked */
    struct evbuffer_iovec resv; /* conn_reserve .. conn_commit, one at a time */

    struct conn *wheel[WHEEL_SLOTS];
    size_t nwheel;      /* conns on the wheel */
    uint64_t last_tick; /* the last tick processed */
    struct event *tick; /* pending while the wheel holds conns */
    struct conn *reap;  /* closed and flushed: freed by reap_ev */
    struct event *reap_ev;
    /* conns with output queued in this loop iteration: written once it is done,
     * without asking epoll first; only a socket that is full waits for EV_WRITE */
    struct conn **flush; /* NULL entries: freed meanwhile */
    uint32_t nflush, cap_flush;
    struct event *flush_ev;
    /* conns with output held by conn_gate, until listener_release lets it go */
    struct conn **gated;
    uint32_t ngated, cap_gated;
    /* on_packet of a large packet read into its own block: the block, until taken */
    void *taking;
    struct conn *taking_for;
    struct ws_listen *ws; /* WebSockets: its policy (ws_conn.c); NULL: none */
};

/* What only a TLS connection has. The conn's in and out carry ciphertext; packets are
 * framed from t->in and written to t->out, which flush_ev encrypts once per loop
 * iteration. */
struct conn_tls {
    struct tls_conn *tls;
    struct evbuffer *in, *out;
    struct event *flush_ev;
    uint64_t hs_deadline_ms;  /* the handshake must finish by then */
    uint32_t deadline_len_ms; /* conn_set_deadline counts from the end of the handshake */
    uint32_t hs_work_us;      /* its steps on the handshake threads so far */
    uint64_t settle_ms;       /* a look at its record buffers' pages, once it is idle */
    uint64_t quiet_ms;        /* no byte by then: no handshake work, out of the count */
    uint16_t hs_steps;
    bool hs_counted; /* in l->nhandshaking */
    bool spoke;      /* its first bytes came */
};

/* What only a WebSocket connection has (ws_conn.c). */
struct conn_ws {
    struct evbuffer *in;  /* MQTT bytes deframed, not yet framed as packets; or NULL */
    struct evbuffer *out; /* MQTT bytes queued: framed at the flush (ws_wrap); or NULL */
    uint32_t scanned;     /* upgrade request: bytes searched for the end of its head */
    uint16_t close_code;  /* the close frame's, when the conn closes */
    bool open;            /* upgraded: frames flow */
    bool answered;        /* the upgrade request was answered */
    bool close_sent;
    struct ws_decoder dec;
};

struct conn {
    struct listener *l;
    evutil_socket_t fd;
    uint32_t max_packet;
    struct event *wev;
    struct evbuffer *in, *out;
    struct conn *prev, *next;     /* l->conns */
    struct conn *wnext, **wpprev; /* a wheel slot or l->reap; wpprev NULL: on neither */
    uint64_t due_ms;              /* on a wheel slot: when to look at it again */
    void *owner;
    uint64_t keepalive_ms;
    uint64_t last_rx_ms;
    uint64_t deadline_ms;         /* conn_set_deadline: absolute, 0 = none; keep-alive waits */
    uint64_t bytes_in, bytes_out; /* MQTT bytes (plaintext) */
    union {
        uint32_t linger_left; /* bytes it may still send before the close */
        uint32_t dial_error;  /* dialing: connect() failed at once with it (errno) */
    };
    uint32_t flush_slot; /* 1 + its index in l->flush, 0: not there */
    /* fields are ordered to leave no holes (13-flow-control.py checks an idle conn) */
    bool closing;
    bool paused;
    bool peer_closed;       /* close_notify received */
    bool peer_gone;         /* the peer closed or reset: nothing to linger for */
    bool lingering;         /* written shut: reading and discarding until the peer closes */
    uint8_t broken;         /* output or events were lost (BROKEN_*): close, send nothing more */
    bool dialed;            /* conn_dial's: the handshake is a client's, inline, not counted */
    bool connecting;        /* dialed, TCP not up: wev waits for it; no reading, no writing */
    struct conn_tls *t;     /* NULL: plain TCP */
    struct big_packet *big; /* a large packet being read straight into place */
    struct hs_job *job;     /* the handshake thread has its TLS state (hs_worker.c) */
    struct conn_gate *gate; /* output held until the journal is durable; NULL: none */
    void *aux;              /* the owner's second pointer (conn_set_aux) */
    struct conn_ws *ws;     /* NULL: not a WebSocket */
    /* the read event follows, in the same allocation (conn_rev) */
};

/* conn.c for ws_conn.c: where raw bytes go (TLS plaintext, or the socket's buffer;
 * NULL: out of memory, the conn is then broken and closes), and the flush after. */
struct evbuffer *conn_raw_out(struct conn *c);
void conn_raw_written(struct conn *c);
/* The listener's spare buffers: one when needed, back when empty. */
struct evbuffer *conn_buf_get(struct listener *l);
void conn_buf_put(struct listener *l, struct evbuffer **b);

/* ws_conn.c for conn.c */
bool ws_conn_start(struct conn *c); /* accepted on a websockets listener */
void ws_free_state(struct conn_ws *ws);
void ws_listen_free(struct listener *l);
/* The raw input decoded into ws->in (the upgrade first). False: nothing to frame
 * (upgrade not over, or closing). */
bool ws_read(struct conn *c);
/* The same for frames in flat memory p[0..len) (plain TCP): their payload is moved
 * down to dst (<= p) and *produced says how much; returns the bytes consumed (what
 * is left is a frame not whole yet). The conn may be closing after it. */
size_t ws_deframe(struct conn *c, uint8_t *dst, uint8_t *p, size_t len, size_t *produced);
/* ws->out into one binary frame of the raw output; at close, then a close frame. */
void ws_wrap(struct conn *c);
void ws_closing(struct conn *c);

/* MQTT bytes a WebSocket has queued, not yet framed (inline: on the write path). */
static inline size_t
ws_pending(const struct conn *c)
{
    return c->ws && c->ws->out ? evbuffer_get_length(c->ws->out) : 0;
}

/* The listener's wheel and reap list (conn.c); conns_fini frees every conn. */
bool conns_init(struct listener *l);
void conns_fini(struct listener *l);

struct conn *conn_new(struct listener *l, evutil_socket_t fd, const struct sockaddr *sa, int salen);
void conn_free(struct conn *c);
/* TLS listeners: stop or resume accepting as the handshake queue fills or drains. */
void listener_admission(struct listener *l);

#endif
