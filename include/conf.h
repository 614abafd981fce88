/* SPDX-License-Identifier: MIT
 *
 * conf: the configuration, read from a file in mosquitto.conf syntax. One option per
 * line, `#` comments, blank lines ignored. Option names and meanings follow
 * mosquitto.conf wherever the option means the same thing.
 *
 * conf owns every string and list in struct lq_conf. A reload (SIGHUP) parses the
 * file into a fresh struct; the broker then copies the values that can change live.
 */
#ifndef LUNAMQ_CONF_H
#define LUNAMQ_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct listener_conf {
    char *host; /* NULL: all addresses */
    uint16_t port;
    struct listener_conf *next; /* in file order */
};

struct lq_conf {
    struct listener_conf *listeners; /* NULL after parsing: caller adds 127.0.0.1:1883 */
    bool allow_anonymous;            /* default true (see README) */
    uint32_t max_packet_size;        /* bytes, 0 = protocol max; default 0 */
    uint16_t max_inflight_messages;  /* per client, outgoing QoS 1/2; default 20; 0 = 65535 */
    uint32_t max_queued_messages;    /* per client; default 1000; 0 = no limit */
    uint64_t max_queued_bytes;       /* per client; default 0 = no limit */
    uint32_t max_connections;        /* 0 = no limit (mosquitto: -1) */
    uint16_t max_keepalive;          /* seconds; default 65535 */
    uint32_t message_size_limit;     /* payload bytes, 0 = no limit */
    bool retain_available;           /* default true */
    int64_t persistent_client_expiration; /* seconds, -1 = never (default) */
    unsigned log_types;                   /* LQ_LOG_* bits; default LQ_LOG_DEFAULT */
    unsigned log_dests;                   /* LQ_DEST_* bits; default stderr */
    char *log_file;                       /* with LQ_DEST_FILE */
};

/* Defaults as listed above. */
void conf_init(struct lq_conf *c);
/* Free everything c owns and reset it to defaults. */
void conf_fini(struct lq_conf *c);

/* Parse `path` into c (which conf_init set up). On error returns -1 and writes
 * "FILE:LINE: message" into err (errlen bytes): unknown option, missing or bad value,
 * unreadable file. c may then hold part of the file: conf_fini it. */
int conf_load(struct lq_conf *c, const char *path, char *err, size_t errlen);

/* Parse a duration as mosquitto does for persistent_client_expiration:
 * a number followed by h, d, w, m (months, 30 days) or y. Returns seconds or -1. */
int64_t conf_parse_duration(const char *s);

#endif
