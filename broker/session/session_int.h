/* SPDX-License-Identifier: MIT
 *
 * Shared by the files of session/ only: the broker root object, sessions, their
 * queues, and the functions the packet handlers call on each other.
 *
 * A session outlives its connection: s->conn is NULL while the client is away.
 * Connection-scoped MQTT state (version, topic aliases, the client's limits) lives in
 * the session too, reset by session_attach, since a session has at most one
 * connection at a time. */
#ifndef LUNAMQ_SESSION_INT_H
#define LUNAMQ_SESSION_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "conf.h"
#include "lq.h"
#include "mqtt.h"
#include "msg.h"
#include "net.h"
#include "topic.h"

struct event;
struct event_base;
struct retain;
struct session;

#define TOPIC_ALIAS_MAX 10 /* topic aliases we accept from a client */
#define ALIAS_OUT_MAX   64 /* topic aliases we use towards a client, at most */
#define EXPIRY_NEVER    UINT32_MAX

/* Broker-wide counters (the admin issue turns these into a metrics table). */
struct counters {
    uint64_t msgs_received, msgs_sent, bytes_received, bytes_sent;
    uint64_t dropped_queue_full, dropped_expired, dropped_oversize, dropped_no_subscriber;
    uint64_t dropped_hook;                             /* messages a hook dropped or refused */
    uint64_t dropped_sys_topic;                        /* client publishes under $SYS refused */
    uint64_t received_qos[4], sent_qos[4];             /* PUBLISH packets */
    uint64_t received_bytes_qos[4], sent_bytes_qos[4]; /* their bytes */
    uint64_t connections_peak;
    uint64_t connections_total;
    uint64_t slow_consumers_disconnected;   /* cut after max_hold_time without progress */
    uint64_t slow_consumers_shedding;       /* persistent ones that began dropping instead */
    uint64_t publishers_held;               /* times a publisher's acks were withheld */
    uint64_t http_requests, http_publishes; /* http_listener (http_api.c) */
    /* access control (access.c) */
    uint64_t auth_ok;                /* CONNECTs let in by a password, a hook or a certificate */
    uint64_t auth_bad_password;      /* refused: unknown user or wrong password */
    uint64_t auth_anonymous_refused; /* refused: no username, allow_anonymous false */
    uint64_t auth_hook_refused;      /* refused by an on_connect hook */
    uint64_t auth_busy;              /* refused: too many password checks waiting */
    uint64_t acl_denied_publish, acl_denied_subscribe, acl_denied_delivery;
};

struct broker {
    struct event_base *base;
    struct lq_conf conf;
    char *conf_path;
    struct listener **listeners;
    size_t nlisteners;
    struct topic_tree *subs;
    struct retain *retained;
    struct hooks *hooks; /* Lua hooks of scripts_dir */
    struct kv *kv;       /* broker.kv and lunamq-ctl kv */
    struct httpc *http;  /* broker.http: requests hooks make */
    struct event *kv_expire_ev;
    struct admin *admin;     /* admin socket and statistics */
    struct persist *persist; /* the journal (persist.c); NULL: persistence false */
    struct cluster *cluster; /* other nodes through NATS (cluster/); NULL: no cluster_name */
    struct bridges *bridges; /* connections to other brokers (bridge/); NULL: none */
    struct bridged *bridged; /* each bridge and its local session (bridged.c) */
    size_t nbridged;
    struct suback_wait *subacks, **subacks_tail; /* waiting for the cluster, in order */
    struct connect_wait *connect_waits; /* CONNECTs asking the cluster (handle_connect.c) */
    struct access *access;              /* password and ACL files, the CONNECTs being checked */
    struct session **buckets;           /* client id -> session, chained */
    size_t nbuckets, nsessions;
    /* routing one message: the sessions it matched, once each, and their subscription
     * identifiers, chained per match (see deliver.c); kept for the next message */
    uint64_t match_gen;
    struct match *matches;
    uint32_t nmatches, cap_matches;
    struct match_id *match_ids;
    uint32_t nmatch_ids, cap_match_ids;
    uint32_t *sub_id_buf; /* one match's identifiers in a row, to send */
    uint32_t cap_sub_id_buf;
    /* backpressure (deliver.c): publishers whose acks are withheld, and the subscribers
     * over their queue bound that hold them, for at most max_hold_time each */
    struct session **held;
    size_t nheld, cap_held;
    struct session **slow;
    size_t nslow, cap_slow;
    struct event *slow_ev; /* checks the slow ones while there are any */
    uint64_t queued_bytes; /* all sessions' qbytes: max_queued_bytes_total */
    uint64_t next_auto_id;
    bool shutting_down;
    uint64_t shutdown_deadline;
    struct event *shutdown_ev;
    struct counters ctr;
    struct lq_log_limit connect_too_large_log; /* CONNECTs over max_connect_packet_size */
    struct lq_log_limit sys_publish_log;       /* client publishes under $SYS */
};

enum qstate {
    Q_QUEUED,       /* not sent yet */
    Q_WAIT_PUBACK,  /* QoS 1 sent */
    Q_WAIT_PUBREC,  /* QoS 2 sent */
    Q_WAIT_PUBCOMP, /* QoS 2, PUBREL sent */
};

/* One delivery of a message to one session: queued, or in flight. 24 bytes before its
 * subscription identifiers: every queued message costs one. */
struct qentry {
    struct qentry *next;
    struct msg *m;
    uint8_t qos;
    uint8_t state; /* enum qstate */
    uint16_t pid;
    uint32_t retain : 1; /* retain flag to send */
    uint32_t dup : 1;
    uint32_t nsub : 30; /* of one client's subscriptions that match one topic: fewer */
    uint32_t sub_ids[]; /* nsub of them */
};

struct ssub { /* one of the session's subscriptions, to undo them when it ends */
    char *filter;
    char *group; /* NULL: not shared; in filter's allocation */
    struct sub_opts o;
    uint32_t hash; /* of (group, filter), for the session's index */
    uint32_t mark; /* handle_subscribe: the packet entry that set it last */
};

struct alias_out {
    uint32_t hash;
    uint16_t len;
    char *topic;
};

/* A connection's topic aliases, both ways: made on the first one (idle clients and
 * clients without aliases pay a pointer). */
struct aliases {
    char *in[TOPIC_ALIAS_MAX + 1]; /* from the client; [0] unused */
    uint16_t nout;
    struct alias_out out[ALIAS_OUT_MAX]; /* towards it: alias i + 1 is out[i] */
};

struct will {
    struct msg *m;
    uint32_t delay;
    /* who published it, for the hooks it goes through (the connection may be gone by
     * then): copies taken at CONNECT */
    char *username, *address;
    const char *listener; /* listener_name(): lives as long as the broker */
    uint8_t version;
    struct tls_identity *cert;
};

/* PUBACKs and PUBRECs withheld from a publisher while it is held back: sent in order
 * when it is released. */
struct held_ack {
    uint8_t type, rc;
    uint16_t pid;
};
struct hold {
    uint32_t n, cap;
    uint32_t nqos1;   /* withheld PUBACKs: with nin, the client's unacknowledged QoS 1/2 */
    bool conn_paused; /* a 3.1.x client went past our receive maximum: not read */
    struct held_ack a[];
};

struct session {
    struct broker *b;
    char *id; /* in the same allocation, after the struct */
    struct session *hnext;
    struct conn *conn; /* NULL while offline */
    uint32_t id_len;
    uint32_t hash;
    /* Fields are ordered to leave no holes: an idle client's session is most of what
     * its connection costs (13-flow-control.py checks the total). */

    /* connection scope, reset by session_attach */
    char *username;          /* from CONNECT, or the client certificate; NULL: none */
    struct acl_client *acl;  /* its ACL rules (access.c); NULL: no acl_file */
    double connected_at;     /* wall clock of the last CONNACK */
    struct aliases *aliases; /* NULL until the first topic alias either way */
    uint32_t client_max_packet;
    uint32_t connect_expiry; /* as given in CONNECT (for the DISCONNECT rule) */
    uint16_t keepalive;
    uint16_t client_recv_max;
    uint16_t client_alias_max;
    uint8_t version;
    bool problem_info;
    bool connected;   /* CONNACK sent and not closed */
    bool peer_bridge; /* a bridge said so (try_private): its subscriptions are No Local */

    /* session scope */
    /* publishers are held for it until it drains (backpressure.c): its queue passed its
     * bound, or, paced, its operating point while it drains slower than it fills */
    bool over_bound : 1;
    bool paced : 1;
    bool pace_off : 1;      /* stalled while paced: held at its bound only, until it drains */
    uint32_t expiry;        /* seconds; EXPIRY_NEVER */
    uint32_t stalled_since; /* over its bound: lq_now_ms() of its last progress, mod 2^32 */
    uint32_t dropped;       /* messages for it dropped at its bounds */
    /* routing: b->matches[match_idx] is this session's while match_gen == b->match_gen */
    uint32_t match_idx;
    struct hold *hold; /* as a publisher: acks withheld; NULL when not held */
    struct event *expiry_ev;
    struct will *will;
    struct event *will_ev;
    struct ssub *subs;    /* a removal moves the last one into the gap */
    uint32_t *subs_index; /* (group, filter) -> subs[i - 1]; see sublist.c */
    uint32_t nsubs, capsubs;
    struct qentry *q_head, *q_tail;
    uint64_t qbytes;
    uint32_t nqueued;
    uint32_t refused_full; /* QoS 1/2 messages refused since its queue filled (logged once) */
    struct qentry *if_head, *if_tail;
    uint16_t *in_pids; /* QoS 2 received, PUBREL awaited */
    uint32_t nin, capin;
    uint32_t ninflight;
    uint16_t next_pid;
    bool shedding;   /* stalled past max_hold_time: messages over its bound are dropped */
    bool progressed; /* over its bound: an ack or a write since the last slow check */

    uint64_t store_id; /* its records in the journal (persist.c); 0: not written */
    /* the local side of a bridge (bridged.c): its connection goes out to the remote,
     * topics are remapped both ways, it never expires and holds publishers while away */
    struct bridge *bridge;
    uint64_t match_gen;
};

/* A session one message matched: the most generous of its matching subscriptions, and
 * the identifiers of all of them [MQTT-3.3.4-4] (nsub, chained in b->match_ids from
 * first_id: however many overlap, and nothing to allocate for the usual 0 or 1). */
struct match {
    struct session *s;
    uint8_t qos;
    bool retain;
    uint32_t nsub;
    uint32_t first_id, last_id;
};
struct match_id {
    uint32_t id;
    uint32_t next; /* index in b->match_ids; the last one's is unused */
};

/* broker.c */
uint32_t broker_receive_max(const struct broker *b);
uint32_t broker_max_packet(const struct broker *b);
uint32_t broker_connect_max_packet(const struct broker *b);

/* registry.c: client id -> session */
struct session *registry_find(struct broker *b, const char *id, size_t len);
void registry_add(struct broker *b, struct session *s);
void registry_remove(struct broker *b, struct session *s);

/* session.c */
struct session *session_new(struct broker *b, const char *id, size_t len);
void session_end(struct session *s); /* publishes a pending will, undoes subs, frees */
void session_attach(struct session *s, struct conn *c);
/* The connection went: will and expiry timers start. clean: DISCONNECT 0x00 seen. */
void session_detach(struct session *s, bool send_will);
void session_log(const struct session *s, unsigned level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Disconnect for a protocol reason: log, DISCONNECT (v5, when connected), close. */
void session_disconnect(struct session *s, uint8_t rc, const char *detail);
void session_set_will(struct session *s, struct msg *m, uint32_t delay);
void session_clear_will(struct session *s);
void session_arm_expiry(struct session *s);

/* connlog.c: the lines that say a client came and went (connection_messages), in
 * lunamq's words or, with log_format mosquitto, in mosquitto's */
struct mqtt_connect;
void connlog_accepted(const struct broker *b, const struct conn *c);
void connlog_connected(const struct session *s, const struct mqtt_connect *ck, bool present);
void connlog_disconnected(const struct session *s, uint8_t reason); /* its DISCONNECT */
void connlog_lost(const struct broker *b, const struct session *s, const char *why); /* s: NULL */
/* The broker closes a client's connection (session_disconnect). */
void connlog_closed(const struct session *s, uint8_t rc, const char *detail);
/* ... or one whose CONNECT was not accepted yet; `what` is lunamq's line after the
 * peer. This, refusals and bad_protocol are logged whatever connection_messages says. */
void connlog_closed_early(const struct conn *c, uint8_t rc, const char *what);
/* A CONNECT of an unknown protocol level (mqtt) or not MQTT at all. */
void connlog_bad_protocol(const struct conn *c, uint8_t version, bool mqtt);
/* A CONNECT refused (CONNACK with rc). */
void connlog_refused(const struct conn *c, const struct mqtt_connect *ck, uint8_t rc,
                     const char *why);

/* bridged.c: the local side of the bridges (bridge.h) */
struct bridged {
    struct bridge *br;
    struct session *s; /* named by the bridge's local client id */
};
int bridged_open(struct broker *b, char *err, size_t errlen); /* after recovery */
void bridged_close(struct broker *b);                         /* every bridge stops */
/* b->conf has the new file's bridge blocks (the previous ones are still valid during
 * the call): unchanged bridges go on, changed ones restart, gone ones stop. */
void bridged_reload(struct broker *b);

/* handover.c: a session moving between nodes of the cluster. dump: whole (everything)
 * or the messages past the first skip; load: into a new session s (whole) or its
 * queue, false when p is not such a state (nentries: the messages it had). */
struct sbuf;
void handover_dump(struct session *s, bool whole, uint32_t skip, struct sbuf *out);
bool handover_load(struct session *s, const uint8_t *p, size_t n, bool whole, uint32_t *nentries);
/* cluster_takeover_fn: another node takes the session of client id over. */
bool session_hand_over(void *ud, int phase, bool clean, uint32_t skip, const char *id, size_t idlen,
                       struct sbuf *out);

/* handle_connect.c: CONNECTs that wait for the cluster (who owns their client id) */
void session_connect_waits_release(struct broker *b); /* subscriptions reached NATS */
void session_connect_wait_gone(struct broker *b, struct conn *c);
void session_connect_waits_free(struct broker *b);

/* sublist.c: the session's subscriptions, found by (group, filter) in O(1) */
struct ssub *session_sub_find(struct session *s, const char *filter, size_t flen, const char *group,
                              size_t glen);
/* A new entry (session_sub_find said there is none); its options are the caller's. */
struct ssub *session_sub_add(struct session *s, const char *filter, size_t flen, const char *group,
                             size_t glen);
void session_sub_remove(struct session *s, struct ssub *x); /* x is invalid after */
void session_subs_free(struct session *s);                  /* every entry, and the index */

/* deliver.c: routing and the outgoing message state machine */
struct route_result {
    uint32_t matched;
    bool no_subscriber;  /* routed, and nobody subscribed (MQTT 5 publishers hear 0x10) */
    bool quota_exceeded; /* a QoS>0 copy could not be queued */
    bool hold_publisher; /* an online subscriber is over its queue bound */
};
/* How a delivery may treat the queue bounds. */
enum deliver_how {
    DELIVER_HOLDABLE, /* over a bound: queue it anyway and hold the publisher back */
    DELIVER_NO_HOLD,  /* nobody to hold (wills, hooks' own messages): drop over a bound */
    DELIVER_RETAINED, /* retained on subscribe: past the message count, not the bytes */
};
/* To every subscription m's topic matches; to the shared groups too unless `groups`
 * is false (the cluster serves them: cluster.h). */
void route_publish(struct broker *b, struct msg *m, const struct session *origin,
                   enum deliver_how how, bool groups, struct route_result *r);
/* To one member of the shared group `group` on exactly `filter` (another node's
 * message that NATS gave this node's members of the group). */
void route_to_group(struct broker *b, struct msg *m, const char *group, size_t glen,
                    const char *filter, size_t flen, struct route_result *r);
/* A message accepted from a client (origin, cl) or published by a hook (skip): through
 * the Lua hooks, then retained and routed. Returns the reason code a hook refused it
 * with, or 0. */
struct hook_client;
struct hook;
uint8_t broker_publish(struct broker *b, struct msg *m, const struct session *origin,
                       const struct hook_client *cl, const struct hook *skip, enum deliver_how how,
                       struct route_result *r);
/* Queue (or send) one delivery. */
int session_deliver(struct session *s, struct msg *m, uint8_t qos, bool retain,
                    const uint32_t *sub_ids, uint32_t nsub, enum deliver_how how);
void session_pump(struct session *s);
uint16_t session_next_pid(struct session *s); /* one not in flight now */
void session_resend_inflight(struct session *s);
void session_free_queues(struct session *s);
uint8_t handle_puback(struct session *s, uint8_t type, const struct mqtt_ack *a);
/* Backpressure. A publisher whose message went over a subscriber's bound has its acks
 * withheld (hold_ack) until the subscribers drain, or until the one that stalled has
 * made no progress for max_hold_time and pays for it (slow-consumer policy). */
void hold_ack(struct session *publisher, uint8_t type, uint16_t pid, uint8_t rc);
void hold_release_all(struct broker *b);
void hold_forget(struct session *s);  /* the session's connection goes */
void slow_mark(struct session *s);    /* s went over its bound and holds publishers */
void slow_drained(struct session *s); /* s is down to half its bound */
void pace_mark(struct session *s);    /* s passed its operating point: publishers are held */
void hold_fini(struct broker *b);

/* Recovery (persist.c): a queue entry read back, appended to the in-flight window
 * (state past Q_QUEUED) or the queue; the will and expiry timers of a session that went
 * offline `gone` seconds ago. */
void session_restore_entry(struct session *s, struct msg *m, uint8_t qos, uint8_t state,
                           uint16_t pid, bool retain, bool dup, const uint32_t *sub_ids,
                           uint32_t nsub);
void session_restore_timers(struct session *s, uint32_t gone);

/* persist.c: the durable state, when persistence is on (all are no-ops when off) */
#include "store.h"
struct persist_stats {
    bool enabled, sync_process;
    struct store_stats store;
    double recovery_seconds;
    uint64_t batches_per_second;
    uint64_t acks_waiting; /* connections whose output waits for the journal */
};
/* ---- access control (access.c) ---- */
enum access_verdict { ACCESS_ALLOW, ACCESS_REFUSE, ACCESS_PENDING };
int access_open(struct broker *b, char *err, size_t errlen); /* loads the files */
void access_close(struct broker *b);
void access_reload(struct broker *b, const struct lq_conf *nc); /* keeps the old on error */
/* CONNECT: ALLOW, REFUSE (with *rc and *why), or PENDING: a password check runs off
 * the loop, the conn is paused, and handle_connect_authenticated or
 * handle_connect_refuse is called with the packet when it is done. */
enum access_verdict access_connect(struct broker *b, struct conn *c, const struct mqtt_connect *ck,
                                   const char *id, size_t idlen, const char *cert_user,
                                   uint8_t flags, const uint8_t *body, size_t len, uint8_t *rc,
                                   const char **why);
void access_conn_gone(struct broker *b, struct conn *c); /* a conn freed before CONNACK */
/* An HTTP request (http_api.c): its Basic credentials or certificate user. ALLOW,
 * REFUSE (*why), or PENDING: the password is checked off the loop, the conn paused,
 * and done(c, ok) called (not after access_conn_gone). Hooks' on_connect first. */
struct http_credentials {
    const char *user;     /* NUL-terminated, NULL: none */
    const char *password; /* password_len bytes, NULL: none */
    size_t password_len;
    const char *cert_user; /* from the client certificate (use_identity_as_username...) */
};
enum access_verdict access_http(struct broker *b, struct conn *c, const struct http_credentials *cr,
                                void (*done)(struct conn *c, bool ok), const char **why);
bool access_has_password_file(const struct broker *b, const struct conn *c); /* on c's listener */
/* The acl_file rules of user on c's listener; NULL: no acl_file (all allowed). */
struct acl_client *access_http_acl(struct broker *b, struct conn *c, const char *user,
                                   const char *id);
/* The session's rules for its username and client id (after CONNECT, restore, reload),
 * and which of its subscriptions need a check per message. */
void access_bind(struct session *s);
void access_bind_all(struct broker *b);
void access_unbind(struct session *s);
bool access_may_publish(struct session *s, const char *topic, size_t len);
bool access_may_receive(struct session *s, const char *topic, size_t len);
/* SUBSCRIBE, one filter (asked: as sent, with $share/G/; filter: without): the QoS
 * granted, or a failure code (>= 0x80); *check: deliver through it only what
 * access_may_receive allows. Lua on_subscribe hooks first. */
uint8_t access_subscribe(struct session *s, const char *asked, size_t alen, const char *filter,
                         size_t len, uint8_t qos, bool *check);
/* The running acl_file's answer for a client (user "" or NULL: anonymous): 1 allowed,
 * 0 denied, -1 no acl_file; *why: the deciding rule "FILE:LINE", NULL for none. */
int access_explain(struct broker *b, const char *user, const char *id, const char *topic,
                   bool write, const char **why);

int persist_open(struct broker *b, char *err, size_t errlen); /* recovers; before listening */
void persist_close(struct broker *b);                 /* waits (bounded) for what was appended */
void persist_retain(struct broker *b, struct msg *m); /* after retain_set */
/* broker.c: the conn_ops of MQTT connections (over TCP, TLS, WebSockets) */
extern const struct conn_ops broker_conn_ops;
/* http_api.c: the conn_ops of http_listener connections */
extern const struct conn_ops http_api_ops;
/* kv_change_fn of the broker's kv store (ud: the broker) */
void persist_kv(void *ud, const char *key, size_t klen, const char *value, size_t vlen,
                int64_t expires_ms);
/* s changed (connected, went offline, expiry, will): written, or deleted when it no
 * longer outlives its connection */
void persist_session(struct session *s);
void persist_session_end(struct session *s);
void persist_sub(struct session *s, const struct ssub *x);
void persist_unsub(struct session *s, const struct ssub *x);
void persist_qentry(struct session *s, const struct qentry *e); /* queued, or a new state */
void persist_qentry_done(struct session *s, const struct qentry *e);
void persist_in_pid(struct session *s, uint16_t pid, bool add);
/* The records appended between these are replayed all or none (nestable). */
void persist_group_begin(struct broker *b);
void persist_group_end(struct broker *b);
/* The journal's last sequence number (0: persistence off), to pass to persist_gate. */
uint64_t persist_seq(const struct broker *b);
/* Before writing an acknowledgement: it waits for the records appended after `since`
 * (and, as durability is a prefix, for all before them); 0: for everything so far. */
void persist_gate_conn(struct broker *b, struct conn *c, uint64_t since); /* any conn's output */
void persist_gate(struct session *s, uint64_t since);
void persist_pause_if_behind(struct session *s, uint64_t since); /* after a PUBLISH */
int persist_snapshot_now(struct broker *b);                      /* -1: off, or one is running */
void persist_get_stats(const struct broker *b, struct persist_stats *out);
#ifdef LUNAMQ_CHECKS
void persist_check_ack(const struct session *s, uint64_t since);
#else
#define persist_check_ack(s, since) ((void)(since))
#endif

/* handlers */
/* Encode the properties of an incoming PUBLISH (or will) that are forwarded
 * unchanged, for struct msg's props; measure with out == NULL. */
size_t publish_props_blob(const struct mqtt_props *in, uint8_t *out, size_t cap);
void handle_connect(struct broker *b, struct conn *c, uint8_t flags, const uint8_t *body,
                    size_t len);
/* After a password check (access.c): the same CONNECT, let in or refused with rc. */
void handle_connect_authenticated(struct broker *b, struct conn *c, uint8_t flags,
                                  const uint8_t *body, size_t len);
void handle_connect_refuse(struct broker *b, struct conn *c, uint8_t flags, const uint8_t *body,
                           size_t len, uint8_t rc, const char *why);
/* The first packet is over broker_connect_max_packet: refused before it is read. */
void handle_connect_too_large(struct broker *b, struct conn *c, uint32_t size);
uint8_t handle_publish(struct session *s, uint8_t flags, const uint8_t *body, size_t len);
uint8_t handle_pubrel(struct session *s, const struct mqtt_ack *a);
/* QoS 2 packet ids received and awaiting PUBREL (handle_publish.c); add records it */
bool in_pid_find(const struct session *s, uint16_t pid, uint32_t *at);
void in_pid_add(struct session *s, uint16_t pid);
uint8_t handle_subscribe(struct session *s, uint8_t flags, const uint8_t *body, size_t len);
uint8_t handle_unsubscribe(struct session *s, uint8_t flags, const uint8_t *body, size_t len);
void session_unsubscribe_all(struct session *s);
/* SUBACKs kept until the cluster has their subscriptions: sent (cluster confirmed), or
 * dropped with the connection */
void session_subacks_release(struct broker *b);
void session_subacks_drop(struct session *s);

/* sending small packets */
void send_ack(struct session *s, uint8_t type, uint16_t pid, uint8_t rc);
void send_disconnect(struct conn *c, uint8_t version, uint8_t rc);

#endif
