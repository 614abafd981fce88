/* SPDX-License-Identifier: MIT
 *
 * cluster: lunamq nodes that form one broker through NATS (`cluster_name`). Every
 * message a client publishes here (after its hooks; never $SYS) goes out on the
 * subject of its topic; this node subscribes, once per distinct subject, to what its
 * sessions' filters match, and routes what comes in to them as if published here.
 * NATS forwards a message only to the nodes that subscribed to it.
 *
 * Retained messages (cluster_retained jetstream): a JetStream stream keeps the last
 * retained message of each topic; every node applies the stream, in its order, to its
 * own retained store, so all nodes converge; SUBSCRIBE stays a local lookup.
 *
 * Threads: all NATS work (connecting, publishing, subscribing) is done by one cluster
 * thread and libnats' own. The loop hands its work over once per loop turn and takes
 * what came in a batch at a time: no blocking call and no lock per message in it.
 * Every function here is for the loop thread. */
#ifndef LUNAMQ_CLUSTER_H
#define LUNAMQ_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct msg;

struct cluster_conf {
    const char *name;     /* cluster_name: one NATS token; NULL: no cluster */
    const char *node_id;  /* cluster_node_id; NULL: the host name */
    const char *nats_url; /* cluster_nats_url: comma-separated; NULL: nats://127.0.0.1:4222 */
    const char *username, *password; /* cluster_nats_username / _password */
    uint64_t max_pending_bytes;      /* cluster_max_pending_bytes, each way */
    char *const *topics;             /* cluster_topic: only what matches goes out */
    size_t ntopics;                  /* 0: every topic but $SYS */
    char *const *topics_local;       /* cluster_topic_local: what matches never does */
    size_t ntopics_local;
    bool retained_local; /* cluster_retained local: no stream, retained stay here */
    uint32_t replicas;   /* cluster_replicas: the stream's; 0: 1 */
    /* A retained message from the stream (from any node, this one too): store it in
     * the local retained store (an empty payload clears), do not route it (the message
     * itself came as any other). m is the caller's; ref it to keep. */
    void (*store_retained)(struct msg *m, void *ud);
};

/* What a message from another node is handed to, on the loop thread: route it to
 * this node's sessions (it is not sent out again). m is the caller's; ref it to keep. */
typedef void (*cluster_deliver_fn)(struct msg *m, void *ud);

struct cluster;

/* Starts the cluster thread, which connects (and reconnects) by itself: a NATS
 * server that is down at start is no error. confirmed (may be NULL) is called on the
 * loop thread when subscriptions reached NATS (cluster_subscribed). NULL with err on a
 * bad setting. */
struct cluster *cluster_open(struct event_base *base, const struct cluster_conf *conf,
                             cluster_deliver_fn deliver, void (*confirmed)(void *ud), void *ud,
                             char *err, size_t errlen);
/* Hands over what is pending (bounded wait), closes the NATS connection, stops the
 * thread. NULL is a no-op. */
void cluster_close(struct cluster *c);

/* A message published on this node that other nodes may want. */
void cluster_forward(struct cluster *c, const struct msg *m);

/* A session's subscription to filter (no $share/ prefix) came (+1) or went (-1). */
void cluster_interest(struct cluster *c, const char *filter, size_t flen, int delta);

/* A SUBACK waits until what the SUBSCRIBE added reached NATS: a message published on
 * any node after the SUBACK then reaches the subscriber. The mark before and after
 * cluster_interest calls differ when they added NATS subscriptions;
 * cluster_subscribed(mark) says when those (and all before) are the server's (at
 * once while NATS is down; at most 2 s). At start it also waits (at most 2 s after
 * cluster_open) until the retained stream is loaded, so that a SUBSCRIBE gets the
 * cluster's retained messages. NULL c: always subscribed. */
uint64_t cluster_subscribe_mark(const struct cluster *c);
bool cluster_subscribed(struct cluster *c, uint64_t mark);

struct cluster_stats {
    bool connected;       /* to a NATS server now */
    uint64_t reconnects;  /* connections to NATS re-established */
    uint64_t subjects;    /* subscribed now */
    uint64_t forwarded;   /* messages published to NATS */
    uint64_t received;    /* messages from other nodes routed here */
    uint64_t duplicates;  /* the same message again (overlapping subjects): dropped */
    uint64_t dropped_out; /* not forwarded: past max_pending_bytes, or NATS refused */
    uint64_t dropped_in;  /* from NATS, not routed: past max_pending_bytes */
    uint64_t bad_in;      /* from NATS, not a message of ours (bad subject, headers) */
    uint64_t pending_out_bytes, pending_in_bytes;
    bool retained_stream;     /* retained messages go through the JetStream stream now */
    uint64_t retained_in;     /* retained updates from the stream applied here */
    uint64_t retained_failed; /* retained messages the stream did not take (or refused) */
};
void cluster_get_stats(struct cluster *c, struct cluster_stats *out); /* locks the inbox */

/* The other nodes' runs this node received messages from (the last SEEN_RUNS). */
struct cluster_peer {
    const char *node, *run;
    double last_seen;  /* wall-clock seconds */
    uint64_t received; /* messages routed here from that run */
};
/* The k-th peer into out (its strings live until the next call into the cluster);
 * false past the last. */
bool cluster_peer(const struct cluster *c, size_t k, struct cluster_peer *out);
const char *cluster_nats_url(const struct cluster *c);
const char *cluster_node_id(const struct cluster *c);

#endif
