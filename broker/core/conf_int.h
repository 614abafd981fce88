/* SPDX-License-Identifier: MIT
 *
 * Shared by conf.c and conf_bridge.c only: the state of one conf_load (struct parse, the
 * line being read; struct report, what was found wrong) and the helpers both parse with.
 * An opt_* function parses the line in ps->tok for the option table and returns 0, or -1
 * once the line's error is reported (fail). */
#ifndef LUNAMQ_CONF_INT_H
#define LUNAMQ_CONF_INT_H

#include <stdbool.h>
#include <stddef.h>

struct bridge_conf;
struct listener_conf;
struct lq_conf;

/* words on one line, the option's name included: `topic P both 1 L R` is 6,
 * `address` takes a list */
#define MAX_TOKENS 16

/* What one conf_load found wrong, shared by the files it includes. */
struct report {
    char **msgs; /* "FILE:LINE: message", in file order */
    size_t n;
    /* listeners and bridges with a bad line: their end-of-file checks would only repeat
     * it ("no address line" after a bad address line) */
    const void **bad;
    size_t nbad;
    /* blocks whose opening line was bad: they take the lines below (still checked), which
     * would otherwise go to the block above or each fail; dropped at the end */
    struct listener_conf *stray_listeners;
    struct bridge_conf *stray_bridges;
};

struct parse {
    struct lq_conf *c;
    const char *file;
    unsigned line;
    struct report *rep;
    const void *block; /* the listener or bridge the current line's option went to */
    int ntok;
    char *tok[MAX_TOKENS]; /* tok[0] is the option name */
    bool seen_log_type, seen_log_dest;
    int depth;                  /* include_dir nesting */
    struct listener_conf *cur;  /* the last listener: TLS options apply to it */
    struct bridge_conf *bridge; /* the connection block being read (in this file) */
};

/* ---- conf.c ---- */
/* Adds a message to r, formatted as printf would. */
__attribute__((format(printf, 2, 3))) void conf_report_add(struct report *r, const char *fmt, ...);
/* Reports "FILE:LINE: message" for the line being parsed; returns -1. */
__attribute__((format(printf, 2, 3))) int conf_fail(struct parse *ps, const char *fmt, ...);
/* 0 if the option has min to max values, else -1 (reported). */
int conf_want_args(struct parse *ps, int min, int max);
/* s as a whole number in [lo, hi] into *out; -1 (reported) if it is not one. */
int conf_number(struct parse *ps, const char *s, long long lo, long long hi, long long *out);
/* The option's one value, true or false, into *out; -1 (reported) if it is neither. */
int conf_boolean(struct parse *ps, bool *out);
/* "FILE:LINE" of the line being parsed; the caller frees it. */
char *conf_where(const struct parse *ps);
/* The option's one value (the rest of the line) into *field, freeing what was there. */
int conf_set_path(struct parse *ps, char **field);

/* ---- conf_bridge.c: the bridge options of the table ---- */
int opt_connection(struct parse *ps);
int opt_address(struct parse *ps);
int opt_topic(struct parse *ps);
int opt_round_robin(struct parse *ps);
int opt_notifications(struct parse *ps);
int opt_notifications_local_only(struct parse *ps);
int opt_cleansession(struct parse *ps);
int opt_bridge_outgoing_retain(struct parse *ps);
int opt_try_private(struct parse *ps);
int opt_bridge_attempt_unsubscribe(struct parse *ps);
int opt_remote_clientid(struct parse *ps);
int opt_local_clientid(struct parse *ps);
int opt_remote_username(struct parse *ps);
int opt_remote_password(struct parse *ps);
int opt_username(struct parse *ps);
int opt_password(struct parse *ps);
int opt_local_cleansession(struct parse *ps);
int opt_notification_topic(struct parse *ps);
int opt_start_type(struct parse *ps);
int opt_restart_timeout(struct parse *ps);
int opt_threshold(struct parse *ps);
int opt_keepalive_interval(struct parse *ps);
int opt_idle_timeout(struct parse *ps);
int opt_bridge_protocol_version(struct parse *ps);
int opt_bridge_max_packet_size(struct parse *ps);
int opt_bridge_receive_maximum(struct parse *ps);
int opt_bridge_session_expiry_interval(struct parse *ps);
int opt_bridge_cafile(struct parse *ps);
int opt_bridge_capath(struct parse *ps);
int opt_bridge_certfile(struct parse *ps);
int opt_bridge_keyfile(struct parse *ps);
int opt_bridge_alpn(struct parse *ps);
int opt_bridge_insecure(struct parse *ps);
int opt_bridge_tls_version(struct parse *ps);
/* After the whole file: one block's lines together, reported into r. */
void check_bridge(struct report *r, const struct bridge_conf *b);
/* Frees b alone, not the ones after it. */
void bridge_conf_free(struct bridge_conf *b);

#endif
