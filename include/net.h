/* SPDX-License-Identifier: MIT
 *
 * net: listening sockets and connections. A struct conn moves bytes: it frames MQTT
 * packets off the wire (fixed header + remaining length, bounded by the maximum
 * packet size) and hands each whole packet to its owner's callbacks (or, in stream
 * mode, hands over the bytes as they come: conn_ops.on_bytes); it queues
 * bytes to write and reports when the write queue has drained. It knows nothing of
 * sessions or of what a packet means.
 *
 * Lifetime: conn_close() is a state change (no more packets are delivered, pending
 * output is flushed for a short while); the memory is freed later, at a safe point
 * of the event loop, never inside the caller's stack. The transport is plain TCP
 * or TLS (tls.h), chosen by the listener; owners see the same plaintext packets.
 */
#ifndef LUNAMQ_NET_H
#define LUNAMQ_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evconnlistener;
struct sockaddr;
struct conn;
struct listener;
struct tls_ctx;
struct tls_identity;

/* What the owner (the session layer) is told. `ud` is the owner's pointer given at
 * listener_new. All callbacks run from the event loop. */
struct conn_ops {
    /* A new connection was accepted. Return false to refuse it (it is closed). Never
     * called for a dialer's conns. */
    bool (*on_accept)(struct conn *c, void *ud);
    /* One whole packet: first byte, body (remaining bytes) valid during the call. */
    void (*on_packet)(struct conn *c, uint8_t type_flags, const uint8_t *body, size_t len,
                      void *ud);
    /* The packet being received is larger than the limit (conn_set_max_packet). The
     * owner answers and closes. */
    void (*on_oversize)(struct conn *c, uint32_t size, void *ud);
    /* Malformed fixed header (remaining length). */
    void (*on_malformed)(struct conn *c, void *ud);
    /* Output fell below the low-water mark: more may be written. */
    void (*on_drain)(struct conn *c, void *ud);
    /* The keep-alive deadline passed without a packet from the peer, or the deadline
     * of conn_set_deadline passed. */
    void (*on_keepalive)(struct conn *c, void *ud);
    /* The peer closed, or a socket error happened. The conn is already closing. */
    void (*on_lost)(struct conn *c, const char *why, void *ud);
    /* The conn's memory is about to be released (after closing, or listener_free). */
    void (*on_free)(struct conn *c, void *ud);
    /* Stream mode (HTTP, WebSockets): when set, the input is not framed as MQTT. The
     * owner gets the bytes received and not yet taken and returns how many it takes
     * (0: it needs more). Called again while it takes some and bytes are left (until
     * paused or closing). Bytes left over wait in the conn; more than the conn's
     * maximum packet of them is on_oversize. on_packet and on_malformed are unused. */
    size_t (*on_bytes)(struct conn *c, const uint8_t *p, size_t len, void *ud);
};

/* Listen on host:port (host NULL or "" = all). With tls (ownership passes to the
 * listener) every connection speaks TLS. Returns NULL with errno set. */
struct listener *listener_new(struct event_base *base, const char *host, uint16_t port,
                              struct tls_ctx *tls, const struct conn_ops *ops, void *ud);
/* The same in two steps: bind now (the port is taken, a privileged one too, and
 * connections are refused), listen later, when the broker can serve (after recovery,
 * after dropping root). listener_listen returns 0, or -1 with errno (logged). */
struct listener *listener_bind(struct event_base *base, const char *host, uint16_t port,
                               struct tls_ctx *tls, const struct conn_ops *ops, void *ud);
int listener_listen(struct listener *l);
/* New TLS material for connections accepted from now on (ownership passes). */
void listener_set_tls(struct listener *l, struct tls_ctx *tls);
/* Before the listeners are freed: finish the TLS handshakes under way on the
 * handshake thread and stop it. */
void net_stop_workers(void);
/* Outgoing connections (bridges) belong to a dialer: a listener that accepts nothing
 * but gives its conns the same wheel, flushing, closing and reaping. listener_free frees it. */
struct listener *dialer_new(struct event_base *base, const char *name, const struct conn_ops *ops,
                            void *ud);
/* Connect to sa, non-blocking. Output written before the connection is up is held and
 * sent once it is (with tls: after the handshake, which starts at once; the server's
 * certificate is verified against `host` unless the ctx says insecure; `host` is also
 * the SNI, and may be an IP literal). A failure to connect (refused, unreachable), a
 * failed handshake or the deadline (conn_set_deadline, which here counts from the dial
 * and covers connecting and the handshake) come as on_lost / on_keepalive as for any
 * conn, from the loop, never from within conn_dial: on_lost's reason is "connect:
 * Connection refused", "TLS handshake failed: certificate verify failed: ...", "TLS
 * handshake timeout" (the ctx's handshake_timeout_ms, also from the dial)... Closed
 * before it is up, it sends nothing. The conn holds its own reference to tls. Returns
 * NULL (errno set) when it cannot even start: no socket, no memory. */
struct conn *conn_dial(struct listener *d, const struct sockaddr *sa, int salen,
                       struct tls_ctx *tls, const char *host);
/* TCP (and TLS) established: the dial succeeded. Accepted conns: TLS established. */
bool conn_is_established(const struct conn *c);
/* Stops accepting and frees every connection it accepted; NULL is a no-op. */
void listener_free(struct listener *l);
uint16_t listener_port(const struct listener *l);
/* Connections accepted by l and not yet freed. */
size_t listener_conn_count(const struct listener *l);

/* For every evconnlistener (MQTT, admin socket, metrics): when accept fails (EMFILE,
 * ENFILE, ENOMEM), call accept_backoff_failed from the listener's error callback: it
 * logs through a rate limiter and stops accepting for 100 ms instead of spinning. */
struct accept_backoff *accept_backoff_new(struct evconnlistener *evl, const char *name);
void accept_backoff_free(struct accept_backoff *ab); /* NULL is a no-op */
void accept_backoff_failed(struct accept_backoff *ab);

/* MQTT over WebSockets (RFC 6455, subprotocol mqtt) on l, with the origins browsers
 * may connect from (websockets_origin; none: any) and the upgrade request's limit
 * (0: 8 KiB). at_accept (protocol websockets): every new conn starts with an upgrade
 * request, answered here; then its owner sees packets as on any conn. Else (an
 * http_listener's /mqtt) only conns handed to conn_ws_upgrade become WebSockets. */
void listener_set_websockets(struct listener *l, bool at_accept, char *const *origins,
                             size_t norigins, size_t max_header);
bool listener_ws_at_accept(const struct listener *l);
struct httpd_request;
/* A stream-mode conn (an http_listener's) with an upgrade request: answered (101, or
 * 400/403/426 with *why), and on 101 the conn frames MQTT packets out of WebSocket
 * frames from now on (the listener's on_packet...; no more on_bytes). Returns the
 * status; 500: no memory. */
int conn_ws_upgrade(struct conn *c, const struct httpd_request *rq, const char **why);
bool conn_is_websocket(const struct conn *c);
struct ws_stats {
    uint64_t upgrades;    /* upgrade requests answered 101 */
    uint64_t refused;     /* answered 400/403/426/431... */
    uint64_t errors;      /* closed for broken framing: 1002, 1003, 1007, 1009 */
    uint64_t peer_closes; /* close frames from clients */
};
const struct ws_stats *net_ws_stats(void);

/* Owner's pointer attached to a connection (the session once CONNECT succeeded). */
void conn_set_owner(struct conn *c, void *owner);
void *conn_owner(const struct conn *c);
/* A second pointer for the owner (a CONNECT waiting for its password check). */
void conn_set_aux(struct conn *c, void *aux);
void *conn_aux(const struct conn *c);
struct listener *conn_listener(const struct conn *c);
/* "host:port" as configured ("*:1883" for all addresses) */
const char *listener_name(const struct listener *l);
/* "127.0.0.1:50312" */
const char *conn_peer(const struct conn *c);
/* TLS: is it, who the verified client certificate says it is (NULL without one),
 * and the username it implies under use_identity/subject_as_username ("" if none;
 * NULL when the listener does not take usernames from certificates). */
bool conn_is_tls(const struct conn *c);
/* MQTT bytes received and queued for sending over this connection. */
void conn_bytes(const struct conn *c, uint64_t *in, uint64_t *out);
const struct tls_identity *conn_tls_identity(const struct conn *c);
const char *conn_tls_username(const struct conn *c);
/* Largest packet accepted from the peer (whole packet, header included). */
void conn_set_max_packet(struct conn *c, uint32_t max);
/* Keep-alive: the peer must send something within `ms` (0 = never). */
void conn_set_keepalive(struct conn *c, uint64_t ms);
/* An absolute deadline (the CONNECT timeout): the peer has `ms` from now, or on TLS
 * from the end of the handshake, however slowly it sends, then on_keepalive is
 * called. Keep-alive is not checked meanwhile. 0 clears it. */
void conn_set_deadline(struct conn *c, uint32_t ms);
/* Copy up to n bytes of the input not yet handed over as packets (in on_oversize:
 * the start of the refused packet). Returns how many. */
size_t conn_peek(const struct conn *c, void *out, size_t n);

/* Queue bytes for the peer (copied). */
/* During on_packet: the malloc'd block the body lies in, now the caller's to free,
 * when the packet was large enough to be read into a block of its own; else NULL. */
void *conn_take_packet(struct conn *c);
void conn_write(struct conn *c, const void *p, size_t n);
/* The same, but written at once when nothing is queued (no buffer is made): for the
 * lone packets of a connection's life (CONNACK, PINGRESP), where there is nothing to
 * coalesce with and a buffer per connection would outlive the packet. */
void conn_write_now(struct conn *c, const void *p, size_t n);
/* Reserve n contiguous bytes at the end of the output, to be written in place and
 * committed with conn_commit(c, n). NULL when out of memory: as for any output that
 * cannot be queued, the conn then sends nothing more and is closed as lost. */
uint8_t *conn_reserve(struct conn *c, size_t n);
void conn_commit(struct conn *c, size_t n);
/* Queue bytes by reference: release(arg) is called once they are sent or dropped. */
void conn_write_ref(struct conn *c, const void *p, size_t n, void (*release)(void *arg), void *arg);
/* Bytes queued and not yet written. */
size_t conn_pending(const struct conn *c);
/* Is there room below the high-water mark? */
bool conn_is_writable(const struct conn *c);

/* Durability gates (persistence): output written after conn_gate(c, seq) is held until
 * listener_release(l, durable) is called with durable >= seq; held output keeps its
 * order with what follows it. The net layer does not know what seq means. */
void conn_gate(struct conn *c, uint64_t seq);
/* The highest seq new output would wait for; 0: output goes out now. */
uint64_t conn_gate_seq(const struct conn *c);
/* Let go the output of l's conns held for sequence numbers up to durable. */
void listener_release(struct listener *l, uint64_t durable);
/* Connections of l with output held. */
size_t listener_gated(const struct listener *l);

/* Stop / resume reading (backpressure). Packets already buffered wait too. */
void conn_pause(struct conn *c);
void conn_resume(struct conn *c);
bool conn_is_paused(const struct conn *c);

/* Close: no more callbacks except on_drain is suppressed; pending output is flushed
 * (at most for a short grace period), then writing is shut down and what the peer
 * still sends is discarded until it closes (at most 2 s and 64 KiB, so that it reads
 * the last packet instead of a reset), and the conn freed at a safe point. */
void conn_close(struct conn *c);
/* The peer ended the conversation (its DISCONNECT): close without lingering, as there
 * is no last word of ours it could miss. */
void conn_close_by_peer(struct conn *c);
bool conn_is_closing(const struct conn *c);

#endif
