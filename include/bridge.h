/* SPDX-License-Identifier: MIT
 *
 * bridge: connections to other brokers, configured as mosquitto's `connection`
 * blocks. A bridge is an MQTT client of the remote broker run inside this one, on
 * the same event loop and with the same codec.
 *
 * Its local side is an ordinary session, owned by the session layer
 * (session/bridged.c): the `out` topics are that session's subscriptions, so queue
 * bounds, held publishers and persistence are a session's; messages coming `in` are
 * published by that session, through the hooks like any client's.
 *
 * This module owns the link to the remote: addresses and their order, name
 * resolution, TLS, CONNECT and the subscriptions, keep-alive, reconnecting with
 * backoff, start types, notifications, topic remapping, and the counters. */
#ifndef LUNAMQ_BRIDGE_H
#define LUNAMQ_BRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bridge;
struct bridges;
struct bridge_conf;
struct conn;
struct event_base;
struct tls_client_conf;

/* What the remote said in its CONNACK, for the session that now sends to it. */
struct bridge_peer {
    uint8_t version;       /* MQTT 3, 4 or 5 */
    bool session_present;  /* the remote kept our session */
    bool retain_available; /* false: retain flags are cleared on the way out */
    uint16_t receive_max;  /* its Receive Maximum (65535 when it gives none) */
    uint32_t max_packet;   /* the smaller of its Maximum Packet Size and ours to it */
};

/* The session layer's side of a bridge; `sess` is the pointer given to bridge_new. */
struct bridge_ops {
    /* The remote accepted the bridge: the session takes conn c (and sends). */
    void (*up)(void *sess, struct conn *c, const struct bridge_peer *peer);
    /* One packet of the message flow from the remote: PUBLISH, PUBACK, PUBREC, PUBREL
     * or PUBCOMP. Returns 0, or a reason code >= 0x80: the connection is dropped. */
    uint8_t (*packet)(void *sess, uint8_t type_flags, const uint8_t *body, size_t len);
    void (*drain)(void *sess); /* the connection's output drained: more may go */
    void (*down)(void *sess);  /* the connection `up` gave is gone */
    /* Messages waiting to go out, queued or in flight (start_type lazy). */
    uint32_t (*waiting)(void *sess);
    /* A packet identifier the session does not use now (SUBSCRIBE, UNSUBSCRIBE). */
    uint16_t (*packet_id)(void *sess);
    /* Publish a retained notification on this broker (notifications true). */
    void (*notify)(void *sess, const char *topic, const char *payload);
};

/* All bridges of a broker share a dialer (net.h) and a DNS resolver. receive_max: the
 * most unacknowledged QoS 1/2 messages this broker takes from one client. */
struct bridges *bridges_new(struct event_base *base, uint16_t receive_max);
void bridges_free(struct bridges *bs); /* every bridge must be freed first; NULL: no-op */
/* Connections still open or flushing (a shutdown waits for them). NULL: 0. */
size_t bridges_conn_count(const struct bridges *bs);

/* A bridge for bc, which must outlive it (bridge_set_conf moves it to an equal copy).
 * Its TLS material is loaded here: NULL with "FILE:LINE: ..." in err when it fails. */
/* The TLS client settings a bridge with bridge_cafile or bridge_capath connects with
 * (the configuration check loads the same). */
void bridge_tls_conf(const struct bridge_conf *bc, struct tls_client_conf *tc);

struct bridge *bridge_new(struct bridges *bs, const struct bridge_conf *bc,
                          const struct bridge_ops *ops, void *sess, char *err, size_t errlen);
/* The session layer's pointer for ops (the session is named by the bridge). */
void bridge_set_session(struct bridge *br, void *sess);
/* Connect as start_type says (automatic, once: now; lazy: when messages wait). */
void bridge_start(struct bridge *br);
/* Stop: a notification "0" and a DISCONNECT to the remote, down() if it was up. */
void bridge_free(struct bridge *br); /* NULL is a no-op */
/* The session layer drops the link for a protocol reason (an MQTT 5 remote hears rc);
 * it reconnects as after any loss. */
void bridge_disconnect(struct bridge *br, uint8_t rc, const char *why);
/* A reload found the same block again in the new configuration. */
void bridge_set_conf(struct bridge *br, const struct bridge_conf *bc);
const struct bridge_conf *bridge_conf_of(const struct bridge *br);

/* The local session's client id (local_clientid, or "local.<remote_clientid>"). */
const char *bridge_local_id(const struct bridge *br);
/* The filters the local session subscribes to (the `out` and `both` topics with their
 * local prefixes) and their QoS: the k-th, false past the last. */
bool bridge_local_filter(const struct bridge *br, size_t k, const char **filter, uint8_t *qos);
/* A recovered local session is kept (local_cleansession false) or begun anew. */
bool bridge_keeps_local_session(const struct bridge *br);

/* Topic remapping (mosquitto's prefix rules). A local topic going out, or a remote
 * topic coming in: the topic on the other side, or NULL when none of the bridge's
 * topics in that direction matches it (the message is not bridged). The result is t
 * itself, or a buffer valid until the next call; its length in *out_len. Going out
 * counts a message out. */
const char *bridge_map_out(struct bridge *br, const char *t, size_t len, size_t *out_len);
const char *bridge_map_in(struct bridge *br, const char *t, size_t len, size_t *out_len);
bool bridge_outgoing_retain(const struct bridge *br);

/* For lunamq-ctl bridges, stats and /metrics. */
struct bridge_info {
    const char *name;
    const char *state;      /* "connected", "connecting", "waiting", "idle", "stopped" */
    const char *address;    /* host:port of the connection or the last attempt */
    const char *last_error; /* "" when none yet */
    const char *remote_id, *local_id;
    uint8_t version;
    bool tls;
    double connected_since; /* wall clock; 0 while not connected */
    uint64_t msgs_out, msgs_in, connects, connect_failures;
    uint32_t waiting; /* messages queued or in flight for the remote */
};
void bridge_info(const struct bridge *br, struct bridge_info *out);
bool bridge_is_connected(const struct bridge *br);

#endif
