/* SPDX-License-Identifier: MIT
 *
 * conf: the configuration, read from a file in mosquitto.conf syntax. One option per
 * line, `#` comments, blank lines ignored. Option names and meanings follow
 * mosquitto.conf wherever the option means the same thing.
 *
 * conf owns every string and list in struct lq_conf. A reload (SIGHUP) parses the
 * file into a fresh struct; the broker then copies the values that can change live.
 *
 * A relative scripts_dir, admin_socket, persistence_location or pid_file is made absolute
 * against the main file's directory (conf_dir) when the line is read, and so are their
 * defaults: the broker may run from another working directory (as a service, from /).
 */
#ifndef LUNAMQ_CONF_H
#define LUNAMQ_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The files a TLS listener reads. `at` says where each was configured
 * ("FILE:LINE"), so that a file that does not load is reported at its line. */
enum tls_file { TLS_CAFILE, TLS_CAPATH, TLS_CERTFILE, TLS_KEYFILE, TLS_CRLFILE, TLS_NFILES };

struct tls_conf {
    char *file[TLS_NFILES]; /* NULL when not set */
    char *at[TLS_NFILES];
    bool require_certificate;      /* default false */
    bool use_identity_as_username; /* certificate CN becomes the username */
    bool use_subject_as_username;  /* certificate subject DN becomes the username */
    int min_version;               /* 12 or 13 (tls_version tlsv1.2 / tlsv1.3); default 12 */
    char *ciphers;                 /* TLS 1.2 suites, colon separated IANA names; NULL: defaults */
    char *ciphers_tls13;           /* TLS 1.3 suites, likewise */
    char *ciphers_at;              /* "FILE:LINE" of each, for its errors */
    char *ciphers_tls13_at;
    uint32_t handshake_timeout; /* seconds; default 10 */
};

/* Who may connect and what each client may do: the broker's, or with
 * per_listener_settings true each listener's (it starts as the lines before it said). */
struct auth_conf {
    /* mosquitto 2.0's default: false, unless the file defines no listener (then only
     * the default listener on 127.0.0.1 opens); conf_load settles it */
    bool allow_anonymous;
    bool allow_anonymous_set; /* given in the file */
    char *password_file;      /* NULL: none */
    char *acl_file;           /* NULL: none */
};

struct listener_conf {
    char *host; /* NULL: all addresses */
    uint16_t port;
    char *at;                   /* "FILE:LINE" of the listener line */
    bool implicit;              /* not from the file: -p, or the default 127.0.0.1:1883 */
    bool http;                  /* http_listener: publishing over HTTP (session/http_api.c) */
    bool websockets;            /* protocol websockets: MQTT over WebSockets (net/ws_conn.c) */
    char **ws_origins;          /* websockets_origin: Origins a browser may connect from */
    size_t nws_origins;         /* 0: any (websockets listener, http_listener's /mqtt) */
    struct tls_conf *tls;       /* NULL: plain TCP (no certfile given) */
    struct auth_conf auth;      /* with per_listener_settings true */
    struct listener_conf *next; /* in file order */
};

/* bridges (issue 17): `connection NAME` blocks with mosquitto's bridge options */
enum bridge_start { BRIDGE_START_AUTOMATIC, BRIDGE_START_LAZY, BRIDGE_START_ONCE };
enum { BRIDGE_DIR_OUT = 1, BRIDGE_DIR_IN = 2, BRIDGE_DIR_BOTH = 3 };
struct bridge_topic {
    char *pattern;       /* topic or filter as written; "" (written `""`) only with a prefix */
    char *local_prefix;  /* NULL: none (left out, or written "") */
    char *remote_prefix; /* likewise */
    uint8_t dir;         /* BRIDGE_DIR_*; default out */
    uint8_t qos;         /* default 0 */
    char *at;            /* "FILE:LINE" */
};
struct bridge_addr {
    char *host;    /* name, IPv4, or IPv6 (mosquitto: an IPv6 address needs the port) */
    uint16_t port; /* default 1883 */
};
struct bridge_conf {
    char *name;
    char *at;                  /* "FILE:LINE" of the connection line */
    struct bridge_addr *addrs; /* address / addresses: one or more per line, lines add up */
    size_t naddrs;
    bool round_robin;                   /* default false */
    enum bridge_start start_type;       /* default automatic */
    uint32_t restart_base, restart_cap; /* seconds; restart_timeout BASE [CAP]; default 5, 30;
                                           one value: constant (base == cap) */
    uint32_t threshold;                 /* lazy: messages queued before connecting; default 10 */
    uint16_t keepalive;    /* keepalive_interval seconds; default 60; mosquitto's minimum 5 */
    uint32_t idle_timeout; /* lazy: seconds idle before disconnecting; default 60 */
    bool notifications;    /* default true */
    bool notifications_local_only; /* default false */
    char *notification_topic;      /* NULL: $SYS/broker/connection/<remote_clientid>/state */
    char *remote_clientid; /* remote_clientid or deprecated clientid; NULL: "<hostname>.<name>" */
    char *local_clientid;  /* NULL: "local.<remote_clientid>" */
    /* (deprecated aliases in a block: username, password) */
    char *remote_username, *remote_password;
    uint8_t protocol;  /* bridge_protocol_version mqttv50|mqttv311|mqttv31 -> 5, 4, 3; default 4 */
    bool cleansession; /* default false */
    int8_t local_cleansession; /* -1: not given (as cleansession), else 0/1 */
    bool outgoing_retain;      /* bridge_outgoing_retain; default true */
    uint32_t max_packet_size;  /* bridge_max_packet_size; 0: none */
    uint16_t receive_maximum;  /* bridge_receive_maximum; 0: not given */
    uint32_t session_expiry;   /* bridge_session_expiry_interval; default 0 */
    char *v5_at;               /* "FILE:LINE" of the last of those three (MQTT 5 only) */
    bool try_private;          /* default true */
    bool attempt_unsubscribe;  /* bridge_attempt_unsubscribe; default true */
    /* bridge_cafile etc.; TLS is on when cafile or capath is set */
    char *cafile, *capath, *certfile, *keyfile;
    char *tls_at;    /* "FILE:LINE" of the last bridge_* TLS line, for load errors */
    bool insecure;   /* bridge_insecure: no server host name check; default false */
    int tls_version; /* bridge_tls_version tlsv1.2|tlsv1.3 -> 12/13 (minimum); default 12 */
    char *alpn;      /* bridge_alpn */
    struct bridge_topic *topics;
    size_t ntopics;
    struct bridge_conf *next; /* file order */
};

struct lq_conf {
    struct listener_conf *listeners;      /* NULL after parsing: caller adds 127.0.0.1:1883 */
    struct auth_conf auth;                /* the listeners' unless per_listener_settings */
    bool per_listener_settings;           /* default false */
    uint32_t max_packet_size;             /* bytes, 0 = protocol max; default 0 */
    uint32_t websockets_headers_size;     /* a WebSocket upgrade request; 0: 8 KiB */
    uint32_t max_connect_packet_size;     /* before CONNECT; default 65536, 0 = max_packet_size */
    uint16_t max_inflight_messages;       /* per client, outgoing QoS 1/2; default 20; 0 = 65535 */
    uint32_t max_queued_messages;         /* per client; default 1000; 0 = no limit */
    uint64_t max_queued_bytes;            /* per client; default 64 MiB, 0 = no limit */
    uint64_t max_queued_bytes_total;      /* all queues together; default 1 GiB, 0 = none */
    uint32_t max_hold_time_ms;            /* publishers held for a stalled subscriber; 1000 */
    uint32_t max_connections;             /* 0 = no limit (mosquitto: -1) */
    uint16_t max_keepalive;               /* seconds; default 0 = no limit */
    uint32_t message_size_limit;          /* payload bytes, 0 = no limit */
    bool retain_available;                /* default true */
    int64_t persistent_client_expiration; /* seconds, -1 = never (default) */
    unsigned log_types;                   /* LQ_LOG_* bits; default LQ_LOG_DEFAULT */
    unsigned log_dests;                   /* LQ_DEST_* bits; default stderr */
    char *log_file;                       /* with LQ_DEST_FILE */
    char *scripts_dir;                    /* Lua hooks; default "<conf_dir>/scripts" */
    uint64_t hook_instruction_limit;      /* per hook call; default 1 000 000 */
    uint64_t hook_memory_limit;           /* bytes per hook; default 16 MiB */
    bool hook_on_error_drop;              /* hook_on_error drop; default pass */
    /* hooks calling out (issue 20): broker.http and broker.kv */
    char **hook_http_allow; /* hook_http_allow lines: URL prefixes; none: no request allowed */
    size_t nhook_http_allow;
    char *hook_http_cafile;                /* NULL: the system's CA store */
    uint32_t hook_http_max_concurrent;     /* per hook; default 8 */
    uint32_t hook_http_max_queue;          /* per hook, waiting for a slot; default 100 */
    uint64_t hook_http_max_response;       /* body bytes; default 1 MiB */
    uint32_t hook_http_connect_timeout_ms; /* hook_http_connect_timeout; default 5 s */
    uint32_t hook_http_timeout_ms;         /* hook_http_timeout, the most; default 30 s */
    uint64_t kv_max_bytes;                 /* broker.kv, all keys; default 64 MiB */
    char *admin_socket;                    /* default "<conf_dir>/lunamq.sock"; "none": off */
    uint32_t sys_interval;                 /* seconds between $SYS updates; default 10, 0 = off */
    uint16_t metrics_port;                 /* Prometheus /metrics; 0 = off (default) */
    char *metrics_host;                    /* default 127.0.0.1 */
    /* topic and filter levels; default 200 (as mosquitto); 0 = no limit */
    uint32_t max_topic_levels;
    /* per client; default 10 000; 0 = no limit */
    uint32_t max_subscriptions_per_client;
    /* persistence (issue 13): the journal in persistence_location */
    bool persistence;              /* default false, as mosquitto */
    char *persistence_location;    /* directory; default "<conf_dir>" */
    char *persistence_file;        /* mosquitto's file name: only noted, lunamq uses a directory */
    bool persistence_sync_process; /* persistence_sync process; default power (fdatasync) */
    uint32_t autosave_interval;    /* seconds (or changes), then the journal is compacted; 1800 */
    bool autosave_on_changes;      /* autosave_interval counts changes, not seconds */
    /* cluster (issue 16): nodes through NATS; no cluster_name, no cluster */
    char *cluster_name;          /* one NATS subject token */
    char *cluster_node_id;       /* NULL: the host name */
    char *cluster_nats_url;      /* comma-separated; NULL: nats://127.0.0.1:4222 */
    char *cluster_nats_username; /* and _password: NATS user and password */
    char *cluster_nats_password;
    char *cluster_nats_credentials; /* a NATS .creds file (user JWT and seed) */
    char *cluster_nats_cafile;      /* TLS to NATS: the CAs of its servers (turns TLS on) */
    char *cluster_nats_certfile;    /* and _keyfile: this node's certificate, both or none */
    char *cluster_nats_keyfile;
    char *cluster_nats_tls_at;          /* "FILE:LINE" of the last _certfile or _keyfile line */
    uint64_t cluster_max_pending_bytes; /* waiting for NATS, each way; default 64 MiB */
    bool cluster_sessions;              /* jetstream (default): one owner per client id; local */
    bool cluster_partition_refuse;      /* JetStream unreachable: refuse new sessions (0x88) */
    uint32_t cluster_takeover_ms;       /* cluster_takeover_timeout: an owner's answer, at most */
    int cluster_replicas;               /* of the JetStream buckets */
    char **cluster_topics;              /* cluster_topic lines: what goes to other nodes */
    size_t ncluster_topics;             /* 0: every topic but $SYS */
    char **cluster_topics_local;        /* cluster_topic_local lines: what never does */
    size_t ncluster_topics_local;
    bool cluster_retained_local; /* cluster_retained local (default jetstream) */
    struct bridge_conf *bridges; /* connection blocks, file order */
    /* running as a service (issue 18) */
    /* user NAME: drop to it after binding ports and reading keys; NULL: not given */
    char *user;
    char *pid_file;     /* pid_file PATH; NULL: none */
    bool log_timestamp; /* default true */
    /* strftime format (rest of the line); NULL: lunamq's ISO 8601 with ms */
    char *log_timestamp_format;
    bool connection_messages;  /* default true */
    bool log_format_mosquitto; /* log_format mosquitto|lunamq; default lunamq (false) */
    /* absolute directory of the main configuration file; NULL without one */
    char *conf_dir;
};

/* Is there a listener for MQTT (not only http_listener lines)? */
bool conf_has_mqtt_listener(const struct lq_conf *c);

/* Defaults as listed above (without a file: scripts_dir, admin_socket and
 * persistence_location NULL, the callers' fallbacks relative to the working directory). */
void conf_init(struct lq_conf *c);
/* Free everything c owns and reset it to defaults. */
void conf_fini(struct lq_conf *c);

/* Parse `path` into c (which conf_init set up). A bad line is skipped and the parse goes
 * on, so that one run reports every error: on any, returns -1 and writes each as its own
 * "FILE:LINE: message" line into err (newline-separated, no newline at the end; an
 * included file's errors name that file): unknown option, missing or bad value,
 * unreadable file, a listener or bridge block that is incomplete at the end (checked only
 * when none of its lines was bad). What does not fit in errlen bytes ends as
 * "...and N more errors". c may then hold part of the file: conf_fini it. */
int conf_load(struct lq_conf *c, const char *path, char *err, size_t errlen);

/* Do two bridges say the same (every field but `at`s and next)? A reload restarts a bridge
 * whose block changed and leaves the others alone. */
bool bridge_conf_equal(const struct bridge_conf *a, const struct bridge_conf *b);

/* Parse a duration as mosquitto does for persistent_client_expiration:
 * a number followed by h, d, w, m (months, 30 days) or y. Returns seconds or -1. */
int64_t conf_parse_duration(const char *s);

/* The auth settings that apply to a listener (lc NULL or implicit, -p or the default
 * listener: the broker's). */
const struct auth_conf *conf_auth(const struct lq_conf *c, const struct listener_conf *lc);

#endif
