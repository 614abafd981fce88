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
    const char *credentials;         /* cluster_nats_credentials: a .creds file */
    const char *cafile;              /* cluster_nats_cafile: TLS, servers checked with it */
    const char *certfile, *keyfile;  /* cluster_nats_certfile / _keyfile: both or none */
    uint64_t max_pending_bytes;      /* cluster_max_pending_bytes, each way */
    char *const *topics;             /* cluster_topic: only what matches goes out */
    size_t ntopics;                  /* 0: every topic but $SYS */
    char *const *topics_local;       /* cluster_topic_local: what matches never does */
    size_t ntopics_local;
    bool sessions;        /* cluster_sessions jetstream: one owner per client id */
    uint32_t takeover_ms; /* cluster_takeover_timeout */
    int replicas;         /* cluster_replicas: of the JetStream stream and bucket; 0: 1 */
    bool retained_local;  /* cluster_retained local: no stream, retained stay here */
    /* A retained message from the stream (from any node, this one too): store it in
     * the local retained store (an empty payload clears), do not route it (the message
     * itself came as any other). m is the caller's; ref it to keep. */
    void (*store_retained)(struct msg *m, void *ud);
};

struct sbuf;
/* Another node takes over the session of client id (phase 1: the old connection
 * goes, the session's state into out unless clean; phase 2: the messages queued for it
 * past the first `skip`, into out, and it ends here). False: no such session (nothing
 * in out). */
typedef bool (*cluster_takeover_fn)(void *ud, int phase, bool clean, uint32_t skip, const char *id,
                                    size_t idlen, struct sbuf *out);

/* What a message from another node is handed to, on the loop thread: route it to
 * this node's plain subscriptions (group NULL), or to one member of the shared group
 * `group` on exactly `filter` (NATS chose this node's members for it). It is not sent
 * out again. m is the caller's; ref it to keep. */
typedef void (*cluster_deliver_fn)(struct msg *m, const char *group, size_t glen,
                                   const char *filter, size_t flen, void *ud);

struct cluster;

/* Starts the cluster thread, which connects (and reconnects) by itself: a NATS
 * server that is down at start is no error, nor are credentials it refuses or a TLS
 * handshake that fails (logged, retried); a file named in conf that cannot be read or
 * used is. ready (may be NULL) is called on the loop thread when what waits for the
 * cluster may go on: subscriptions reached NATS (cluster_subscribed), or the
 * messages waiting for NATS went down to half max_pending_bytes (cluster_over). NULL
 * with err on a bad setting. */
struct cluster *cluster_open(struct event_base *base, const struct cluster_conf *conf,
                             cluster_deliver_fn deliver, void (*ready)(void *ud),
                             cluster_takeover_fn takeover, void *ud, char *err, size_t errlen);
/* Hands over what is pending (bounded wait), closes the NATS connection, stops the
 * thread. NULL is a no-op. */
void cluster_close(struct cluster *c);

/* A message published on this node that other nodes may want. Past
 * max_pending_bytes waiting for NATS while it is connected, a message whose publisher
 * can be held back (may_hold: QoS 1/2 from a client) is taken all the same and
 * CLUSTER_HOLD says: hold the publisher (withhold its acks) until `ready` says
 * cluster_over is false; never acknowledge then drop. Otherwise it is not forwarded
 * (counted): QoS 0, and anything while NATS is down (local traffic goes on).
 * CLUSTER_GROUPS: it went to NATS for the shared groups of every node, this one's
 * too (they get it back through NATS): route it here to plain subscriptions only. */
enum { CLUSTER_HOLD = 1, CLUSTER_GROUPS = 2 };
unsigned cluster_forward(struct cluster *c, const struct msg *m, bool may_hold);
/* Publishers held by cluster_forward may not go on yet. NULL c: false. */
bool cluster_over(const struct cluster *c);

/* A session's subscription to filter came (+1) or went (-1). */
void cluster_interest(struct cluster *c, const char *filter, size_t flen, int delta);
/* A session's shared subscription $share/group/filter came (+1) or went (-1): the
 * members of the group on every node take turns (a NATS queue group). */
void cluster_interest_shared(struct cluster *c, const char *group, size_t glen, const char *filter,
                             size_t flen, int delta);

/* A SUBACK waits until what the SUBSCRIBE added reached NATS: a message published on
 * any node after the SUBACK then reaches the subscriber. The mark before and after
 * cluster_interest calls differ when they added NATS subscriptions;
 * cluster_subscribed(mark) says when those (and all before) are the server's (at
 * once while NATS is down; at most 2 s). At start it also waits (at most 2 s after
 * cluster_open) until the retained stream is loaded, so that a SUBSCRIBE gets the
 * cluster's retained messages. NULL c: always subscribed. */
uint64_t cluster_subscribe_mark(const struct cluster *c);
bool cluster_subscribed(struct cluster *c, uint64_t mark);

/* ---- sessions (cluster_sessions jetstream) ----
 * A CONNECT asks who owns its client id (a claim) before its session is looked up
 * here. The answer comes later, on the loop thread, through done:
 *  CLAIM_LOCAL      the session is this node's (none elsewhere): go on as usual;
 *  CLAIM_TAKEN      another node handed it over: cluster_claim_state is its state
 *                   (phase 1); once its subscriptions are made here,
 *                   cluster_claim_release asks for what was queued meanwhile (done
 *                   again: TAKEN with that state, or GONE);
 *  CLAIM_GONE       its owner is gone or did not answer in time: start it clean;
 *  CLAIM_PARTITION  NATS or JetStream cannot be reached (cluster_partition decides). */
enum cluster_claim_result { CLAIM_LOCAL, CLAIM_TAKEN, CLAIM_GONE, CLAIM_PARTITION };
struct cluster_claim;
typedef void (*cluster_claim_fn)(struct cluster_claim *cl, void *arg);
/* NULL when sessions are each node's own (no cluster, or cluster_sessions local). */
struct cluster_claim *cluster_claim(struct cluster *c, const char *id, size_t idlen, bool clean,
                                    cluster_claim_fn done, void *arg);
enum cluster_claim_result cluster_claim_result(const struct cluster_claim *cl);
const uint8_t *cluster_claim_state(const struct cluster_claim *cl, size_t *n);
bool cluster_claim_release(struct cluster_claim *cl, uint32_t skip, cluster_claim_fn done,
                           void *arg);
/* Forgets it (an answer still to come is dropped). NULL is a no-op. */
void cluster_claim_free(struct cluster_claim *cl);

struct cluster_stats {
    bool connected;           /* to a NATS server now */
    uint64_t reconnects;      /* connections to NATS re-established */
    uint64_t subjects;        /* subscribed now */
    uint64_t forwarded;       /* messages published to NATS */
    uint64_t received;        /* messages from other nodes routed here */
    uint64_t received_shared; /* messages NATS gave this node's shared group members */
    uint64_t duplicates;      /* the same message again (overlapping subjects): dropped */
    uint64_t held;            /* taken past max_pending_bytes, their publisher held back */
    uint64_t dropped_out;     /* not forwarded: past max_pending_bytes, or NATS refused */
    uint64_t dropped_in;      /* from NATS, not routed: past max_pending_bytes */
    uint64_t bad_in;          /* from NATS, not a message of ours (bad subject, headers) */
    uint64_t pending_out_bytes, pending_in_bytes;
    uint64_t claims;          /* CONNECTs that asked who owns their client id */
    uint64_t takeovers_in;    /* sessions handed over to this node */
    uint64_t takeovers_clean; /* sessions begun clean here: their owner was gone */
    uint64_t takeovers_out;   /* sessions this node handed over */
    uint64_t partitions;      /* claims that found NATS or JetStream unreachable */
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
