/* SPDX-License-Identifier: MIT
 *
 * conf: mosquitto.conf-style configuration. One table row per option: its name
 * and the function that parses its value into struct lq_conf. Errors come back as
 * "FILE:LINE: message"; nothing here logs or exits. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "lq.h"
#include "topic.h"

/* words on one line, the option's name included: `topic P both 1 L R` is 6,
 * `address` takes a list */
#define MAX_TOKENS 16

struct parse {
    struct lq_conf *c;
    const char *file;
    unsigned line;
    char *err;
    size_t errlen;
    int ntok;
    char *tok[MAX_TOKENS]; /* tok[0] is the option name */
    bool seen_log_type, seen_log_dest;
    int depth;                  /* include_dir nesting */
    struct listener_conf *cur;  /* the last listener: TLS options apply to it */
    struct bridge_conf *bridge; /* the connection block being read (in this file) */
};

static int load_file(struct parse *ps, const char *path);

__attribute__((format(printf, 2, 3))) static int
fail(struct parse *ps, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(ps->err, ps->errlen, "%s:%u: %s", ps->file, ps->line, msg);
    return -1;
}

static int
want_args(struct parse *ps, int min, int max)
{
    int n = ps->ntok - 1;
    if (n < min) return fail(ps, "%s: missing value", ps->tok[0]);
    if (n > max) return fail(ps, "%s: unexpected '%s'", ps->tok[0], ps->tok[max + 1]);
    return 0;
}

/* A whole number in [lo, hi]. */
static int
number(struct parse *ps, const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return fail(ps, "%s: '%s' is not a number", ps->tok[0], s);
    if (v < lo || v > hi)
        return fail(ps, "%s: '%s' out of range %lld..%lld", ps->tok[0], s, lo, hi);
    *out = v;
    return 0;
}

static int
boolean(struct parse *ps, bool *out)
{
    if (want_args(ps, 1, 1)) return -1;
    if (strcmp(ps->tok[1], "true") == 0)
        *out = true;
    else if (strcmp(ps->tok[1], "false") == 0)
        *out = false;
    else
        return fail(ps, "%s: '%s' is not true or false", ps->tok[0], ps->tok[1]);
    return 0;
}

/* "FILE:LINE" of the line being parsed, allocated. */
static char *
where(const struct parse *ps)
{
    char buf[PATH_MAX + 16];
    snprintf(buf, sizeof(buf), "%s:%u", ps->file, ps->line);
    return lq_xstrdup(buf);
}

static void
auth_copy(struct auth_conf *to, const struct auth_conf *from)
{
    to->allow_anonymous = from->allow_anonymous;
    to->allow_anonymous_set = from->allow_anonymous_set;
    to->password_file = from->password_file ? lq_xstrdup(from->password_file) : NULL;
    to->acl_file = from->acl_file ? lq_xstrdup(from->acl_file) : NULL;
}

static void
auth_free(struct auth_conf *a)
{
    free(a->password_file);
    free(a->acl_file);
    a->password_file = a->acl_file = NULL;
}

/* a file value: the rest of the line; a later line replaces it */
static int
set_path(struct parse *ps, char **field)
{
    if (want_args(ps, 1, 1)) return -1;
    free(*field);
    *field = lq_xstrdup(ps->tok[1]);
    return 0;
}

static int
opt_listener(struct parse *ps)
{
    long long port;
    if (want_args(ps, 1, 2) || number(ps, ps->tok[1], 1, 65535, &port)) return -1;
    struct listener_conf *lc = lq_xcalloc(1, sizeof(*lc));
    lc->port = (uint16_t)port;
    lc->host = ps->ntok > 2 ? lq_xstrdup(ps->tok[2]) : NULL;
    lc->at = where(ps);
    auth_copy(&lc->auth, &ps->c->auth); /* per_listener_settings: what came before */
    ps->cur = lc;
    struct listener_conf **pp = &ps->c->listeners;
    while (*pp) pp = &(*pp)->next;
    *pp = lc;
    return 0;
}

/* allow_anonymous, password_file, acl_file: the last listener's with
 * per_listener_settings true, else the broker's */
static struct auth_conf *
auth_of(struct parse *ps)
{
    return ps->c->per_listener_settings && ps->cur ? &ps->cur->auth : &ps->c->auth;
}

static int
opt_allow_anonymous(struct parse *ps)
{
    struct auth_conf *a = auth_of(ps);
    a->allow_anonymous_set = true;
    return boolean(ps, &a->allow_anonymous);
}

static int
opt_password_file(struct parse *ps)
{
    return set_path(ps, &auth_of(ps)->password_file);
}

static int
opt_acl_file(struct parse *ps)
{
    return set_path(ps, &auth_of(ps)->acl_file);
}

/* mosquitto: it must come before the listeners, whose settings it makes their own */
static int
opt_per_listener_settings(struct parse *ps)
{
    if (ps->c->listeners)
        return fail(ps, "per_listener_settings must come before the first listener");
    return boolean(ps, &ps->c->per_listener_settings);
}

const struct auth_conf *
conf_auth(const struct lq_conf *c, const struct listener_conf *lc)
{
    return c->per_listener_settings && lc && !lc->implicit ? &lc->auth : &c->auth;
}

static int
opt_retain_available(struct parse *ps)
{
    return boolean(ps, &ps->c->retain_available);
}

static int
opt_max_packet_size(struct parse *ps)
{
    long long v;
    if (want_args(ps, 1, 1) || number(ps, ps->tok[1], 0, 268435460, &v)) return -1;
    if (v != 0 && v < 20) return fail(ps, "max_packet_size: %lld is below 20 bytes", v);
    ps->c->max_packet_size = (uint32_t)v;
    return 0;
}

static int
opt_max_connect_packet_size(struct parse *ps)
{
    long long v;
    if (want_args(ps, 1, 1) || number(ps, ps->tok[1], 0, 268435460, &v)) return -1;
    if (v != 0 && v < 20) return fail(ps, "max_connect_packet_size: %lld is below 20 bytes", v);
    ps->c->max_connect_packet_size = (uint32_t)v;
    return 0;
}

static int
opt_max_inflight_messages(struct parse *ps)
{
    long long v;
    if (want_args(ps, 1, 1) || number(ps, ps->tok[1], 0, 65535, &v)) return -1;
    ps->c->max_inflight_messages = (uint16_t)v;
    return 0;
}

static int
opt_max_queued_messages(struct parse *ps)
{
    long long v;
    if (want_args(ps, 1, 1) || number(ps, ps->tok[1], 0, UINT32_MAX, &v)) return -1;
    ps->c->max_queued_messages = (uint32_t)v;
    return 0;
}

static int
opt_max_queued_bytes(struct parse *ps)
{
    long long v;
    if (want_args(ps, 1, 1) || number(ps, ps->tok[1], 0, LLONG_MAX, &v)) return -1;
    ps->c->max_queued_bytes = (uint64_t)v;
    return 0;
}

static int
opt_max_queued_bytes_total(struct parse *ps)
{
    long long v;
    if (want_args(ps, 1, 1) || number(ps, ps->tok[1], 0, LLONG_MAX, &v)) return -1;
    ps->c->max_queued_bytes_total = (uint64_t)v;
    return 0;
}

/* Seconds, fractions allowed ("0.5"); kept in milliseconds. */
static int
opt_max_hold_time(struct parse *ps)
{
    if (want_args(ps, 1, 1)) return -1;
    char *end;
    errno = 0;
    double v = strtod(ps->tok[1], &end);
    if (errno || end == ps->tok[1] || *end || !(v >= 0 && v <= 3600))
        return fail(ps, "max_hold_time: '%s' is not a number of seconds from 0 to 3600",
                    ps->tok[1]);
    ps->c->max_hold_time_ms = (uint32_t)(v * 1000 + 0.5);
    return 0;
}

static int
opt_max_connections(struct parse *ps)
{
    long long v;
    if (want_args(ps, 1, 1) || number(ps, ps->tok[1], -1, UINT32_MAX, &v)) return -1;
    ps->c->max_connections = v < 0 ? 0 : (uint32_t)v; /* -1: no limit, as mosquitto */
    return 0;
}

static int
opt_max_keepalive(struct parse *ps)
{
    long long v;
    if (want_args(ps, 1, 1) || number(ps, ps->tok[1], LLONG_MIN, LLONG_MAX, &v)) return -1;
    if (v != 0 && (v < 10 || v > 65535)) /* as mosquitto: 0 is no limit */
        return fail(ps, "%s: '%s' is not 0 (no limit) or 10..65535", ps->tok[0], ps->tok[1]);
    ps->c->max_keepalive = (uint16_t)v;
    return 0;
}

static int
opt_message_size_limit(struct parse *ps)
{
    long long v;
    if (want_args(ps, 1, 1) || number(ps, ps->tok[1], 0, 268435455, &v)) return -1;
    ps->c->message_size_limit = (uint32_t)v;
    return 0;
}

static int
opt_max_topic_levels(struct parse *ps)
{
    long long v;
    if (want_args(ps, 1, 1) || number(ps, ps->tok[1], 0, 65535, &v)) return -1;
    ps->c->max_topic_levels = (uint32_t)v;
    return 0;
}

static int
opt_max_subscriptions_per_client(struct parse *ps)
{
    long long v;
    if (want_args(ps, 1, 1) || number(ps, ps->tok[1], 0, UINT32_MAX, &v)) return -1;
    ps->c->max_subscriptions_per_client = (uint32_t)v;
    return 0;
}

static int
opt_persistent_client_expiration(struct parse *ps)
{
    if (want_args(ps, 1, 1)) return -1;
    int64_t v = conf_parse_duration(ps->tok[1]);
    if (v < 0)
        return fail(
            ps, "persistent_client_expiration: '%s' is not a duration (e.g. 2h, 3d, 1w, 1m, 1y)",
            ps->tok[1]);
    ps->c->persistent_client_expiration = v;
    return 0;
}

static int
opt_log_type(struct parse *ps)
{
    static const struct {
        const char *name;
        unsigned bits;
    } types[] = {
        {"error", LQ_LOG_ERR},
        {"warning", LQ_LOG_WARNING},
        {"notice", LQ_LOG_NOTICE},
        {"information", LQ_LOG_INFO},
        {"debug", LQ_LOG_DEBUG},
        {"subscribe", LQ_LOG_SUBSCRIBE},
        {"unsubscribe", LQ_LOG_UNSUBSCRIBE},
        {"websockets", 0},
        {"none", 0},
        {"all", LQ_LOG_ALL},
    };
    if (want_args(ps, 1, 1)) return -1;
    if (!ps->seen_log_type) ps->c->log_types = 0; /* the first line replaces the default */
    ps->seen_log_type = true;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(ps->tok[1], types[i].name) == 0) {
            ps->c->log_types |= types[i].bits;
            return 0;
        }
    }
    return fail(ps, "log_type: unknown type '%s'", ps->tok[1]);
}

static int
opt_log_dest(struct parse *ps)
{
    if (want_args(ps, 1, 2)) return -1;
    if (!ps->seen_log_dest) ps->c->log_dests = 0;
    ps->seen_log_dest = true;
    const char *d = ps->tok[1];
    if (strcmp(d, "file") == 0) {
        if (ps->ntok < 3) return fail(ps, "log_dest file: missing file name");
        free(ps->c->log_file);
        ps->c->log_file = lq_xstrdup(ps->tok[2]);
        ps->c->log_dests |= LQ_DEST_FILE;
        return 0;
    }
    if (ps->ntok > 2) return fail(ps, "log_dest: unexpected '%s'", ps->tok[2]);
    if (strcmp(d, "stderr") == 0)
        ps->c->log_dests |= LQ_DEST_STDERR;
    else if (strcmp(d, "stdout") == 0)
        ps->c->log_dests |= LQ_DEST_STDOUT;
    else if (strcmp(d, "syslog") == 0)
        ps->c->log_dests |= LQ_DEST_SYSLOG;
    else if (strcmp(d, "none") == 0)
        ps->c->log_dests = 0;
    else if (strcmp(d, "topic") == 0)
        return fail(ps, "log_dest topic: not supported");
    else
        return fail(ps, "log_dest: unknown destination '%s'", d);
    return 0;
}

/* ---- Lua hooks ---- */

static int
opt_scripts_dir(struct parse *ps)
{
    return set_path(ps, &ps->c->scripts_dir);
}

static int
opt_hook_instruction_limit(struct parse *ps)
{
    long long v;
    if (want_args(ps, 1, 1) || number(ps, ps->tok[1], 1000, 1000000000000LL, &v)) return -1;
    ps->c->hook_instruction_limit = (uint64_t)v;
    return 0;
}

static int
opt_hook_memory_limit(struct parse *ps)
{
    long long v;
    if (want_args(ps, 1, 1) || number(ps, ps->tok[1], 256 * 1024, 1LL << 40, &v)) return -1;
    ps->c->hook_memory_limit = (uint64_t)v;
    return 0;
}

static int
opt_admin_socket(struct parse *ps)
{
    return set_path(ps, &ps->c->admin_socket);
}

static int
opt_sys_interval(struct parse *ps)
{
    long long v;
    if (want_args(ps, 1, 1) || number(ps, ps->tok[1], 0, 86400, &v)) return -1;
    ps->c->sys_interval = (uint32_t)v;
    return 0;
}

static int
opt_metrics_listener(struct parse *ps)
{
    long long port;
    if (want_args(ps, 1, 2) || number(ps, ps->tok[1], 1, 65535, &port)) return -1;
    ps->c->metrics_port = (uint16_t)port;
    free(ps->c->metrics_host);
    ps->c->metrics_host = ps->ntok > 2 ? lq_xstrdup(ps->tok[2]) : NULL;
    return 0;
}

/* ---- persistence (issue 13) ---- */

static int
opt_persistence(struct parse *ps)
{
    return boolean(ps, &ps->c->persistence);
}

static int
opt_persistence_location(struct parse *ps)
{
    return set_path(ps, &ps->c->persistence_location);
}

/* mosquitto's one file: accepted, and the broker says at start that it uses a directory */
static int
opt_persistence_file(struct parse *ps)
{
    return set_path(ps, &ps->c->persistence_file);
}

static int
opt_persistence_sync(struct parse *ps)
{
    if (want_args(ps, 1, 1)) return -1;
    if (strcmp(ps->tok[1], "power") == 0)
        ps->c->persistence_sync_process = false;
    else if (strcmp(ps->tok[1], "process") == 0)
        ps->c->persistence_sync_process = true;
    else
        return fail(ps, "persistence_sync: '%s' is not power or process", ps->tok[1]);
    return 0;
}

/* ---- cluster (issue 16) ---- */

static int
opt_cluster_name(struct parse *ps)
{
    return set_path(ps, &ps->c->cluster_name);
}

static int
opt_cluster_node_id(struct parse *ps)
{
    return set_path(ps, &ps->c->cluster_node_id);
}

static int
opt_cluster_nats_url(struct parse *ps)
{
    return set_path(ps, &ps->c->cluster_nats_url);
}

static int
opt_cluster_nats_username(struct parse *ps)
{
    return set_path(ps, &ps->c->cluster_nats_username);
}

static int
opt_cluster_nats_password(struct parse *ps)
{
    return set_path(ps, &ps->c->cluster_nats_password);
}

static int
opt_cluster_nats_credentials(struct parse *ps)
{
    return set_path(ps, &ps->c->cluster_nats_credentials);
}

static int
opt_cluster_nats_cafile(struct parse *ps)
{
    return set_path(ps, &ps->c->cluster_nats_cafile);
}

/* _certfile and _keyfile: where the last one was, for the error when one is missing */
static int
cluster_tls_file(struct parse *ps, char **field)
{
    if (set_path(ps, field) < 0) return -1;
    free(ps->c->cluster_nats_tls_at);
    ps->c->cluster_nats_tls_at = where(ps);
    return 0;
}

static int
opt_cluster_nats_certfile(struct parse *ps)
{
    return cluster_tls_file(ps, &ps->c->cluster_nats_certfile);
}

static int
opt_cluster_nats_keyfile(struct parse *ps)
{
    return cluster_tls_file(ps, &ps->c->cluster_nats_keyfile);
}

static int
add_to_list(struct parse *ps, char ***list, size_t *n)
{
    if (want_args(ps, 1, 1)) return -1;
    *list = lq_xrealloc(*list, (*n + 1) * sizeof(**list));
    (*list)[(*n)++] = lq_xstrdup(ps->tok[1]);
    return 0;
}

static int
opt_cluster_topic(struct parse *ps)
{
    return add_to_list(ps, &ps->c->cluster_topics, &ps->c->ncluster_topics);
}

static int
opt_cluster_topic_local(struct parse *ps)
{
    return add_to_list(ps, &ps->c->cluster_topics_local, &ps->c->ncluster_topics_local);
}

static int
opt_cluster_max_pending_bytes(struct parse *ps)
{
    long long v;
    if (want_args(ps, 1, 1) || number(ps, ps->tok[1], 65536, INT64_MAX, &v)) return -1;
    ps->c->cluster_max_pending_bytes = (uint64_t)v;
    return 0;
}

/* One of two words, into a bool: the second is true. */
static int
one_of(struct parse *ps, const char *no, const char *yes, bool *out)
{
    if (want_args(ps, 1, 1)) return -1;
    if (strcmp(ps->tok[1], no) != 0 && strcmp(ps->tok[1], yes) != 0)
        return fail(ps, "%s: '%s' is not %s or %s", ps->tok[0], ps->tok[1], no, yes);
    *out = strcmp(ps->tok[1], yes) == 0;
    return 0;
}

static int
opt_cluster_sessions(struct parse *ps)
{
    bool local;
    if (one_of(ps, "jetstream", "local", &local)) return -1;
    ps->c->cluster_sessions = !local;
    return 0;
}

static int
opt_cluster_partition(struct parse *ps)
{
    return one_of(ps, "accept", "refuse", &ps->c->cluster_partition_refuse);
}

static int
opt_cluster_takeover_timeout(struct parse *ps)
{
    if (want_args(ps, 1, 1)) return -1;
    char *end;
    errno = 0;
    double v = strtod(ps->tok[1], &end);
    if (errno || end == ps->tok[1] || *end || !(v >= 0.1 && v <= 300))
        return fail(ps,
                    "cluster_takeover_timeout: '%s' is not a number of seconds from 0.1 "
                    "to 300",
                    ps->tok[1]);
    ps->c->cluster_takeover_ms = (uint32_t)(v * 1000 + 0.5);
    return 0;
}

static int
opt_cluster_replicas(struct parse *ps)
{
    long long v;
    if (want_args(ps, 1, 1) || number(ps, ps->tok[1], 1, 5, &v)) return -1;
    ps->c->cluster_replicas = (int)v;
    return 0;
}

static int
opt_cluster_retained(struct parse *ps)
{
    if (want_args(ps, 1, 1)) return -1;
    if (strcmp(ps->tok[1], "jetstream") && strcmp(ps->tok[1], "local"))
        return fail(ps, "cluster_retained: '%s' is not jetstream or local", ps->tok[1]);
    ps->c->cluster_retained_local = strcmp(ps->tok[1], "local") == 0;
    return 0;
}

static int
opt_autosave_interval(struct parse *ps)
{
    long long v;
    if (want_args(ps, 1, 1) || number(ps, ps->tok[1], 0, UINT32_MAX, &v)) return -1;
    ps->c->autosave_interval = (uint32_t)v;
    return 0;
}

static int
opt_autosave_on_changes(struct parse *ps)
{
    return boolean(ps, &ps->c->autosave_on_changes);
}

static int
opt_hook_on_error(struct parse *ps)
{
    if (want_args(ps, 1, 1)) return -1;
    if (strcmp(ps->tok[1], "pass") == 0)
        ps->c->hook_on_error_drop = false;
    else if (strcmp(ps->tok[1], "drop") == 0)
        ps->c->hook_on_error_drop = true;
    else
        return fail(ps, "hook_on_error: '%s' is not pass or drop", ps->tok[1]);
    return 0;
}

/* ---- TLS: per listener, so each option must follow a `listener` line ---- */

static struct tls_conf *
cur_tls(struct parse *ps)
{
    if (!ps->cur) {
        fail(ps, "%s: must follow a listener line", ps->tok[0]);
        return NULL;
    }
    if (!ps->cur->tls) {
        struct tls_conf *tc = lq_xcalloc(1, sizeof(*tc));
        tc->min_version = 12;
        tc->handshake_timeout = 10;
        ps->cur->tls = tc;
    }
    return ps->cur->tls;
}

static int
tls_file(struct parse *ps, enum tls_file which)
{
    struct tls_conf *tc = cur_tls(ps);
    if (!tc || want_args(ps, 1, 1)) return -1;
    free(tc->file[which]);
    free(tc->at[which]);
    tc->file[which] = lq_xstrdup(ps->tok[1]);
    tc->at[which] = where(ps);
    return 0;
}

static int
opt_cafile(struct parse *ps)
{
    return tls_file(ps, TLS_CAFILE);
}

static int
opt_capath(struct parse *ps)
{
    return tls_file(ps, TLS_CAPATH);
}

static int
opt_certfile(struct parse *ps)
{
    return tls_file(ps, TLS_CERTFILE);
}

static int
opt_keyfile(struct parse *ps)
{
    return tls_file(ps, TLS_KEYFILE);
}

static int
opt_crlfile(struct parse *ps)
{
    return tls_file(ps, TLS_CRLFILE);
}

static int
opt_require_certificate(struct parse *ps)
{
    struct tls_conf *tc = cur_tls(ps);
    return tc ? boolean(ps, &tc->require_certificate) : -1;
}

static int
opt_use_identity_as_username(struct parse *ps)
{
    struct tls_conf *tc = cur_tls(ps);
    return tc ? boolean(ps, &tc->use_identity_as_username) : -1;
}

static int
opt_use_subject_as_username(struct parse *ps)
{
    struct tls_conf *tc = cur_tls(ps);
    return tc ? boolean(ps, &tc->use_subject_as_username) : -1;
}

static int
opt_tls_version(struct parse *ps)
{
    struct tls_conf *tc = cur_tls(ps);
    if (!tc || want_args(ps, 1, 1)) return -1;
    if (strcmp(ps->tok[1], "tlsv1.2") == 0)
        tc->min_version = 12;
    else if (strcmp(ps->tok[1], "tlsv1.3") == 0)
        tc->min_version = 13;
    else
        return fail(ps, "tls_version: '%s' is not tlsv1.2 or tlsv1.3", ps->tok[1]);
    return 0;
}

static int
opt_ciphers(struct parse *ps)
{
    struct tls_conf *tc = cur_tls(ps);
    if (!tc || want_args(ps, 1, 1)) return -1;
    free(tc->ciphers);
    tc->ciphers = lq_xstrdup(ps->tok[1]);
    free(tc->ciphers_at);
    tc->ciphers_at = where(ps);
    return 0;
}

static int
opt_ciphers_tls13(struct parse *ps)
{
    struct tls_conf *tc = cur_tls(ps);
    if (!tc || want_args(ps, 1, 1)) return -1;
    free(tc->ciphers_tls13);
    tc->ciphers_tls13 = lq_xstrdup(ps->tok[1]);
    free(tc->ciphers_tls13_at);
    tc->ciphers_tls13_at = where(ps);
    return 0;
}

static int
opt_tls_handshake_timeout(struct parse *ps)
{
    struct tls_conf *tc = cur_tls(ps);
    long long v;
    if (!tc || want_args(ps, 1, 1) || number(ps, ps->tok[1], 1, 3600, &v)) return -1;
    tc->handshake_timeout = (uint32_t)v;
    return 0;
}

/* After the whole file: a TLS listener's options must make sense together. */
static int
check_listener(char *err, size_t errlen, const struct listener_conf *lc)
{
    const struct tls_conf *tc = lc->tls;
    const char *msg = NULL;
    if (!tc) return 0;
    if (!tc->file[TLS_CERTFILE] || !tc->file[TLS_KEYFILE])
        msg = "a TLS listener needs both certfile and keyfile";
    else if (tc->require_certificate && !tc->file[TLS_CAFILE] && !tc->file[TLS_CAPATH])
        msg = "require_certificate needs cafile or capath";
    else if ((tc->use_identity_as_username || tc->use_subject_as_username) &&
             !tc->require_certificate)
        msg = "use_identity_as_username and use_subject_as_username need require_certificate true";
    else if (tc->use_identity_as_username && tc->use_subject_as_username)
        msg = "use_identity_as_username and use_subject_as_username exclude each other";
    else if (tc->file[TLS_CRLFILE] && !tc->file[TLS_CAFILE] && !tc->file[TLS_CAPATH])
        msg = "crlfile needs cafile or capath";
    if (!msg) return 0;
    snprintf(err, errlen, "%s: listener %u: %s", lc->at, lc->port, msg);
    return -1;
}

static int
by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
opt_include_dir(struct parse *ps)
{
    if (want_args(ps, 1, 1)) return -1;
    if (ps->depth >= 8) return fail(ps, "include_dir: nested too deeply");
    DIR *d = opendir(ps->tok[1]);
    if (!d) return fail(ps, "include_dir: %s: %s", ps->tok[1], strerror(errno));
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l > 5 && strcmp(de->d_name + l - 5, ".conf") == 0) {
            names = lq_xrealloc(names, (n + 1) * sizeof(*names));
            size_t pl = strlen(ps->tok[1]) + l + 2;
            names[n] = lq_xmalloc(pl);
            snprintf(names[n++], pl, "%s/%s", ps->tok[1], de->d_name);
        }
    }
    closedir(d);
    if (n) qsort(names, n, sizeof(*names), by_name);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (rc == 0) {
            struct parse sub = *ps;
            sub.depth++;
            sub.bridge = NULL; /* as in mosquitto, a block does not go on into another file */
            rc = load_file(&sub, names[i]);
            ps->seen_log_type = sub.seen_log_type;
            ps->seen_log_dest = sub.seen_log_dest;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

/* ---- bridges (issue 17): a `connection NAME` line starts a block; the options below
 * belong to the block above them. mosquitto's names and defaults; checked together at the
 * end (check_bridge), where a missing thing is reported at the connection line. ---- */

static struct bridge_conf *
cur_bridge(struct parse *ps)
{
    if (!ps->bridge) fail(ps, "%s: must follow a connection line", ps->tok[0]);
    return ps->bridge;
}

static int
opt_connection(struct parse *ps)
{
    if (want_args(ps, 1, 1)) return -1;
    struct bridge_conf **pp = &ps->c->bridges;
    for (; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->name, ps->tok[1]) == 0)
            return fail(ps, "connection: '%s' is already the name of the bridge at %s", ps->tok[1],
                        (*pp)->at);
    struct bridge_conf *b = lq_xcalloc(1, sizeof(*b));
    b->name = lq_xstrdup(ps->tok[1]);
    b->at = where(ps);
    b->restart_base = 5;
    b->restart_cap = 30;
    b->threshold = 10;
    b->keepalive = 60;
    b->idle_timeout = 60;
    b->notifications = true;
    b->protocol = 4;
    b->local_cleansession = -1;
    b->outgoing_retain = true;
    b->try_private = true;
    b->attempt_unsubscribe = true;
    b->tls_version = 12;
    *pp = b;
    ps->bridge = b;
    return 0;
}

/* An IPv6 address, maybe with a %zone (checked without it). */
static bool
is_ipv6(const char *s, size_t len)
{
    char buf[INET6_ADDRSTRLEN + 1];
    struct in6_addr a;
    size_t n = strcspn(s, "%");
    if (n > len) n = len;
    if (n >= sizeof(buf)) return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return inet_pton(AF_INET6, buf, &a) == 1;
}

/* HOST, HOST:PORT, [IPV6] or [IPV6]:PORT; as in mosquitto, a bare IPv6 address is split at
 * its last ':', so it needs the port. */
static int
bridge_addr(struct parse *ps, const char *s, struct bridge_addr *out)
{
    const char *host = s, *port = NULL;
    size_t hlen;
    if (*s == '[') {
        const char *end = strchr(s, ']');
        if (!end || (end[1] && end[1] != ':'))
            return fail(ps, "%s: '%s' is not [IPV6]:PORT", ps->tok[0], s);
        host = s + 1;
        hlen = (size_t)(end - host);
        if (end[1]) port = end + 2;
        if (!is_ipv6(host, hlen))
            return fail(ps, "%s: '%s': not an IPv6 address in the brackets", ps->tok[0], s);
    } else {
        const char *colon = strrchr(s, ':');
        hlen = colon ? (size_t)(colon - s) : strlen(s);
        if (colon) port = colon + 1;
        if (memchr(s, ':', hlen) && !is_ipv6(s, hlen))
            return fail(ps, "%s: '%s': an IPv6 address needs its port (ADDR:PORT or [ADDR]:PORT)",
                        ps->tok[0], s);
    }
    if (hlen == 0) return fail(ps, "%s: '%s': no host", ps->tok[0], s);
    long long p = 1883;
    if (port && number(ps, port, 1, 65535, &p)) return -1;
    out->host = lq_xmalloc(hlen + 1);
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    out->port = (uint16_t)p;
    return 0;
}

/* address and addresses: one or more, and each line adds to them */
static int
opt_address(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    if (!b) return -1;
    if (ps->ntok < 2 || ps->tok[1][0] == '#') return fail(ps, "%s: missing value", ps->tok[0]);
    for (int i = 1; i < ps->ntok; i++) {
        if (ps->tok[i][0] == '#') break; /* mosquitto: a comment may end the list */
        struct bridge_addr a;
        if (bridge_addr(ps, ps->tok[i], &a)) return -1;
        b->addrs = lq_xrealloc(b->addrs, (b->naddrs + 1) * sizeof(*b->addrs));
        b->addrs[b->naddrs++] = a;
    }
    return 0;
}

/* A topic prefix: `""` is none; otherwise a topic name, no wildcards (mosquitto's rule). */
static int
topic_prefix(struct parse *ps, const char *s, const char *which, char **out)
{
    if (strcmp(s, "\"\"") == 0) return 0;
    if (strpbrk(s, "+#"))
        return fail(ps, "topic: %s prefix '%s' has a wildcard: a prefix is a topic name", which, s);
    *out = lq_xstrdup(s);
    return 0;
}

/* prefix + pattern: what the bridge subscribes to on that side */
static int
topic_side(struct parse *ps, const char *prefix, const char *pattern, const char *which)
{
    size_t pl = prefix ? strlen(prefix) : 0, tl = strlen(pattern);
    char *full = lq_xmalloc(pl + tl + 1);
    if (pl) memcpy(full, prefix, pl);
    memcpy(full + pl, pattern, tl + 1);
    int rc = 0;
    if (!topic_filter_is_valid(full, pl + tl))
        rc = fail(ps, "topic: '%s' (%s prefix and pattern) is not a valid topic filter", full,
                  which);
    free(full);
    return rc;
}

static void
bridge_topic_free(struct bridge_topic *t)
{
    free(t->pattern);
    free(t->local_prefix);
    free(t->remote_prefix);
    free(t->at);
}

/* topic PATTERN [out|in|both [QOS [LOCAL_PREFIX REMOTE_PREFIX]]] */
static int
opt_topic(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    if (!b || want_args(ps, 1, 5)) return -1;
    if (ps->ntok == 5)
        return fail(ps, "topic: the local prefix '%s' needs a remote prefix after it", ps->tok[4]);
    struct bridge_topic t = {.dir = BRIDGE_DIR_OUT};
    if (ps->ntok > 2) {
        const char *d = ps->tok[2];
        if (strcasecmp(d, "out") == 0)
            t.dir = BRIDGE_DIR_OUT;
        else if (strcasecmp(d, "in") == 0)
            t.dir = BRIDGE_DIR_IN;
        else if (strcasecmp(d, "both") == 0)
            t.dir = BRIDGE_DIR_BOTH;
        else
            return fail(ps, "topic: '%s' is not out, in or both", d);
    }
    long long qos = 0;
    if (ps->ntok > 3 && number(ps, ps->tok[3], 0, 2, &qos)) return -1;
    t.qos = (uint8_t)qos;
    bool empty = strcmp(ps->tok[1], "\"\"") == 0;
    t.pattern = lq_xstrdup(empty ? "" : ps->tok[1]);
    int rc = 0;
    if (ps->ntok > 4)
        rc = topic_prefix(ps, ps->tok[4], "local", &t.local_prefix) ||
             topic_prefix(ps, ps->tok[5], "remote", &t.remote_prefix);
    if (rc == 0 && empty && (!t.local_prefix || !t.remote_prefix))
        rc = fail(ps, "topic: an empty pattern (\"\") needs a local and a remote prefix, "
                      "each then the whole topic");
    if (rc == 0)
        rc = topic_side(ps, t.local_prefix, t.pattern, "local") ||
             topic_side(ps, t.remote_prefix, t.pattern, "remote");
    if (rc) {
        bridge_topic_free(&t);
        return -1;
    }
    t.at = where(ps);
    b->topics = lq_xrealloc(b->topics, (b->ntopics + 1) * sizeof(*b->topics));
    b->topics[b->ntopics++] = t;
    return 0;
}

/* a whole number in [lo, hi] for the block above */
static int
bridge_number(struct parse *ps, long long lo, long long hi, long long *v)
{
    return !cur_bridge(ps) || want_args(ps, 1, 1) || number(ps, ps->tok[1], lo, hi, v) ? -1 : 0;
}

static int
opt_round_robin(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    return b ? boolean(ps, &b->round_robin) : -1;
}

static int
opt_notifications(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    return b ? boolean(ps, &b->notifications) : -1;
}

static int
opt_notifications_local_only(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    return b ? boolean(ps, &b->notifications_local_only) : -1;
}

static int
opt_cleansession(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    return b ? boolean(ps, &b->cleansession) : -1;
}

static int
opt_bridge_outgoing_retain(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    return b ? boolean(ps, &b->outgoing_retain) : -1;
}

static int
opt_try_private(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    return b ? boolean(ps, &b->try_private) : -1;
}

static int
opt_bridge_attempt_unsubscribe(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    return b ? boolean(ps, &b->attempt_unsubscribe) : -1;
}

static int
opt_remote_clientid(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    return b ? set_path(ps, &b->remote_clientid) : -1;
}

static int
opt_local_clientid(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    return b ? set_path(ps, &b->local_clientid) : -1;
}

static int
opt_remote_username(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    return b ? set_path(ps, &b->remote_username) : -1;
}

static int
opt_remote_password(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    return b ? set_path(ps, &b->remote_password) : -1;
}

/* username and password: mosquitto's old names of remote_*, only in a block (outside one
 * they are no option, as before bridges) */
static int
opt_username(struct parse *ps)
{
    if (!ps->bridge) return fail(ps, "unknown option '%s'", ps->tok[0]);
    return opt_remote_username(ps);
}

static int
opt_password(struct parse *ps)
{
    if (!ps->bridge) return fail(ps, "unknown option '%s'", ps->tok[0]);
    return opt_remote_password(ps);
}

static int
opt_local_cleansession(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    bool v;
    if (!b || boolean(ps, &v)) return -1;
    b->local_cleansession = v;
    return 0;
}

static int
opt_notification_topic(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    if (!b || want_args(ps, 1, 1)) return -1;
    if (!topic_name_is_valid(ps->tok[1], strlen(ps->tok[1])))
        return fail(ps, "notification_topic: '%s' is not a topic name (no wildcards)", ps->tok[1]);
    return set_path(ps, &b->notification_topic);
}

static int
opt_start_type(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    if (!b || want_args(ps, 1, 1)) return -1;
    if (strcmp(ps->tok[1], "automatic") == 0)
        b->start_type = BRIDGE_START_AUTOMATIC;
    else if (strcmp(ps->tok[1], "lazy") == 0)
        b->start_type = BRIDGE_START_LAZY;
    else if (strcmp(ps->tok[1], "once") == 0)
        b->start_type = BRIDGE_START_ONCE;
    else
        return fail(ps, "start_type: '%s' is not automatic, lazy or once", ps->tok[1]);
    return 0;
}

/* restart_timeout CONSTANT, or BASE CAP (backoff with jitter between them) */
static int
opt_restart_timeout(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    long long base, cap;
    if (!b || want_args(ps, 1, 2) || number(ps, ps->tok[1], 1, UINT32_MAX, &base)) return -1;
    cap = base;
    if (ps->ntok > 2 && number(ps, ps->tok[2], 1, UINT32_MAX, &cap)) return -1;
    if (cap < base) return fail(ps, "restart_timeout: cap %lld is below base %lld", cap, base);
    b->restart_base = (uint32_t)base;
    b->restart_cap = (uint32_t)cap;
    return 0;
}

/* mosquitto raises lower values to its minimum (with a notice): so do we, silently */
static int
opt_threshold(struct parse *ps)
{
    long long v;
    if (bridge_number(ps, 0, UINT32_MAX, &v)) return -1;
    ps->bridge->threshold = v < 1 ? 1 : (uint32_t)v;
    return 0;
}

static int
opt_keepalive_interval(struct parse *ps)
{
    long long v;
    if (bridge_number(ps, 0, 65535, &v)) return -1;
    ps->bridge->keepalive = v < 5 ? 5 : (uint16_t)v;
    return 0;
}

static int
opt_idle_timeout(struct parse *ps)
{
    long long v;
    if (bridge_number(ps, 1, UINT32_MAX, &v)) return -1;
    ps->bridge->idle_timeout = (uint32_t)v;
    return 0;
}

static int
opt_bridge_protocol_version(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    if (!b || want_args(ps, 1, 1)) return -1;
    if (strcmp(ps->tok[1], "mqttv50") == 0)
        b->protocol = 5;
    else if (strcmp(ps->tok[1], "mqttv311") == 0)
        b->protocol = 4;
    else if (strcmp(ps->tok[1], "mqttv31") == 0)
        b->protocol = 3;
    else
        return fail(ps, "bridge_protocol_version: '%s' is not mqttv50, mqttv311 or mqttv31",
                    ps->tok[1]);
    return 0;
}

/* The MQTT 5 options: where the last one was, for the error with protocol 3 or 4. */
static void
bridge_v5_line(struct parse *ps)
{
    free(ps->bridge->v5_at);
    ps->bridge->v5_at = where(ps);
}

static int
opt_bridge_max_packet_size(struct parse *ps)
{
    long long v;
    if (bridge_number(ps, 0, 268435460, &v)) return -1;
    if (v != 0 && v < 20) return fail(ps, "bridge_max_packet_size: %lld is below 20 bytes", v);
    ps->bridge->max_packet_size = (uint32_t)v;
    bridge_v5_line(ps);
    return 0;
}

static int
opt_bridge_receive_maximum(struct parse *ps)
{
    long long v;
    if (bridge_number(ps, 1, 65535, &v)) return -1;
    ps->bridge->receive_maximum = (uint16_t)v;
    bridge_v5_line(ps);
    return 0;
}

static int
opt_bridge_session_expiry_interval(struct parse *ps)
{
    long long v;
    if (bridge_number(ps, 0, UINT32_MAX, &v)) return -1;
    ps->bridge->session_expiry = (uint32_t)v;
    bridge_v5_line(ps);
    return 0;
}

/* bridge_* TLS lines: the last one's place, for errors about the set or its files */
static struct bridge_conf *
bridge_tls_line(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    if (b) {
        free(b->tls_at);
        b->tls_at = where(ps);
    }
    return b;
}

static int
opt_bridge_cafile(struct parse *ps)
{
    struct bridge_conf *b = bridge_tls_line(ps);
    return b ? set_path(ps, &b->cafile) : -1;
}

static int
opt_bridge_capath(struct parse *ps)
{
    struct bridge_conf *b = bridge_tls_line(ps);
    return b ? set_path(ps, &b->capath) : -1;
}

static int
opt_bridge_certfile(struct parse *ps)
{
    struct bridge_conf *b = bridge_tls_line(ps);
    return b ? set_path(ps, &b->certfile) : -1;
}

static int
opt_bridge_keyfile(struct parse *ps)
{
    struct bridge_conf *b = bridge_tls_line(ps);
    return b ? set_path(ps, &b->keyfile) : -1;
}

static int
opt_bridge_alpn(struct parse *ps)
{
    struct bridge_conf *b = bridge_tls_line(ps);
    return b ? set_path(ps, &b->alpn) : -1;
}

static int
opt_bridge_insecure(struct parse *ps)
{
    struct bridge_conf *b = bridge_tls_line(ps);
    return b ? boolean(ps, &b->insecure) : -1;
}

static int
opt_bridge_tls_version(struct parse *ps)
{
    struct bridge_conf *b = bridge_tls_line(ps);
    if (!b || want_args(ps, 1, 1)) return -1;
    const char *v = ps->tok[1];
    if (strcmp(v, "tlsv1.2") == 0)
        b->tls_version = 12;
    else if (strcmp(v, "tlsv1.3") == 0)
        b->tls_version = 13;
    else if (strcmp(v, "tlsv1.1") == 0 || strcmp(v, "tlsv1") == 0)
        return fail(ps, "bridge_tls_version: %s is not supported: only tlsv1.2 and tlsv1.3", v);
    else
        return fail(ps, "bridge_tls_version: '%s' is not tlsv1.2 or tlsv1.3", v);
    return 0;
}

/* After the whole file: what one block's lines must make together. */
static int
check_bridge(char *err, size_t errlen, const struct bridge_conf *b)
{
    const char *at = b->at, *msg = NULL;
    char buf[160];
    if (!b->naddrs)
        msg = "no address line";
    else if (!b->ntopics)
        msg = "no topic line";
    else if (b->v5_at && b->protocol != 5) {
        at = b->v5_at;
        msg = "bridge_max_packet_size, bridge_receive_maximum and "
              "bridge_session_expiry_interval are MQTT 5 options: they need "
              "bridge_protocol_version mqttv50";
    } else if (b->tls_at && !b->cafile && !b->capath) {
        at = b->tls_at;
        msg = "bridge TLS options need bridge_cafile or bridge_capath (TLS is on with either)";
    } else if (!b->certfile != !b->keyfile) {
        at = b->tls_at;
        msg = "bridge_certfile and bridge_keyfile go together";
    } else if (b->remote_password && !b->remote_username)
        msg = "remote_password needs remote_username";
    else if (b->notifications && !b->notification_topic &&
             strpbrk(b->remote_clientid ? b->remote_clientid : b->name, "+#")) {
        /* the default notification topic has the client id in it */
        snprintf(buf, sizeof(buf),
                 "'+' or '#' in %s: the default notification topic would not be a topic "
                 "name; set notification_topic",
                 b->remote_clientid ? "remote_clientid" : "the name");
        msg = buf;
    }
    if (!msg) return 0;
    snprintf(err, errlen, "%s: connection %s: %s", at, b->name, msg);
    return -1;
}

static bool
str_equal(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

bool
bridge_conf_equal(const struct bridge_conf *a, const struct bridge_conf *b)
{
    if (!str_equal(a->name, b->name) || a->naddrs != b->naddrs || a->ntopics != b->ntopics)
        return false;
    for (size_t i = 0; i < a->naddrs; i++)
        if (!str_equal(a->addrs[i].host, b->addrs[i].host) || a->addrs[i].port != b->addrs[i].port)
            return false;
    for (size_t i = 0; i < a->ntopics; i++) {
        const struct bridge_topic *x = &a->topics[i], *y = &b->topics[i];
        if (!str_equal(x->pattern, y->pattern) || !str_equal(x->local_prefix, y->local_prefix) ||
            !str_equal(x->remote_prefix, y->remote_prefix) || x->dir != y->dir || x->qos != y->qos)
            return false;
    }
    return a->round_robin == b->round_robin && a->start_type == b->start_type &&
           a->restart_base == b->restart_base && a->restart_cap == b->restart_cap &&
           a->threshold == b->threshold && a->keepalive == b->keepalive &&
           a->idle_timeout == b->idle_timeout && a->notifications == b->notifications &&
           a->notifications_local_only == b->notifications_local_only &&
           str_equal(a->notification_topic, b->notification_topic) &&
           str_equal(a->remote_clientid, b->remote_clientid) &&
           str_equal(a->local_clientid, b->local_clientid) &&
           str_equal(a->remote_username, b->remote_username) &&
           str_equal(a->remote_password, b->remote_password) && a->protocol == b->protocol &&
           a->cleansession == b->cleansession && a->local_cleansession == b->local_cleansession &&
           a->outgoing_retain == b->outgoing_retain && a->max_packet_size == b->max_packet_size &&
           a->receive_maximum == b->receive_maximum && a->session_expiry == b->session_expiry &&
           a->try_private == b->try_private && a->attempt_unsubscribe == b->attempt_unsubscribe &&
           str_equal(a->cafile, b->cafile) && str_equal(a->capath, b->capath) &&
           str_equal(a->certfile, b->certfile) && str_equal(a->keyfile, b->keyfile) &&
           a->insecure == b->insecure && a->tls_version == b->tls_version &&
           str_equal(a->alpn, b->alpn);
}

static void
bridge_free(struct bridge_conf *b)
{
    for (size_t i = 0; i < b->naddrs; i++) free(b->addrs[i].host);
    free(b->addrs);
    for (size_t i = 0; i < b->ntopics; i++) bridge_topic_free(&b->topics[i]);
    free(b->topics);
    free(b->name);
    free(b->at);
    free(b->notification_topic);
    free(b->remote_clientid);
    free(b->local_clientid);
    free(b->remote_username);
    free(b->remote_password);
    free(b->v5_at);
    free(b->cafile);
    free(b->capath);
    free(b->certfile);
    free(b->keyfile);
    free(b->tls_at);
    free(b->alpn);
    free(b);
}

/* ---- running as a service ---- */

static int
opt_user(struct parse *ps)
{
    return set_path(ps, &ps->c->user);
}

static int
opt_pid_file(struct parse *ps)
{
    return set_path(ps, &ps->c->pid_file);
}

static int
opt_log_timestamp(struct parse *ps)
{
    return boolean(ps, &ps->c->log_timestamp);
}

static int
opt_log_timestamp_format(struct parse *ps)
{
    return set_path(ps, &ps->c->log_timestamp_format);
}

static int
opt_connection_messages(struct parse *ps)
{
    return boolean(ps, &ps->c->connection_messages);
}

static int
opt_log_format(struct parse *ps)
{
    if (want_args(ps, 1, 1)) return -1;
    if (strcmp(ps->tok[1], "mosquitto") != 0 && strcmp(ps->tok[1], "lunamq") != 0)
        return fail(ps, "log_format: '%s' is not mosquitto or lunamq", ps->tok[1]);
    ps->c->log_format_mosquitto = strcmp(ps->tok[1], "mosquitto") == 0;
    return 0;
}

/* rest_after: for file and directory values, which may hold spaces as in mosquitto.conf,
 * the value is the rest of the line after that many words (trimmed); 0: words only. */
static const struct option {
    const char *name;
    int (*parse)(struct parse *ps);
    int rest_after;
} options[] = {
    {"listener", opt_listener, 0},
    {"allow_anonymous", opt_allow_anonymous, 0},
    {"password_file", opt_password_file, 1},
    {"acl_file", opt_acl_file, 1},
    {"per_listener_settings", opt_per_listener_settings, 0},
    {"max_packet_size", opt_max_packet_size, 0},
    {"max_connect_packet_size", opt_max_connect_packet_size, 0},
    {"max_inflight_messages", opt_max_inflight_messages, 0},
    {"max_queued_messages", opt_max_queued_messages, 0},
    {"max_queued_bytes", opt_max_queued_bytes, 0},
    {"max_queued_bytes_total", opt_max_queued_bytes_total, 0},
    {"max_hold_time", opt_max_hold_time, 0},
    {"max_connections", opt_max_connections, 0},
    {"max_keepalive", opt_max_keepalive, 0},
    {"message_size_limit", opt_message_size_limit, 0},
    {"retain_available", opt_retain_available, 0},
    {"max_topic_levels", opt_max_topic_levels, 0},
    {"max_subscriptions_per_client", opt_max_subscriptions_per_client, 0},
    {"persistent_client_expiration", opt_persistent_client_expiration, 0},
    {"log_type", opt_log_type, 0},
    {"log_dest", opt_log_dest, 2}, /* log_dest file PATH */
    {"include_dir", opt_include_dir, 1},
    {"cafile", opt_cafile, 1},
    {"capath", opt_capath, 1},
    {"certfile", opt_certfile, 1},
    {"keyfile", opt_keyfile, 1},
    {"crlfile", opt_crlfile, 1},
    {"require_certificate", opt_require_certificate, 0},
    {"use_identity_as_username", opt_use_identity_as_username, 0},
    {"use_subject_as_username", opt_use_subject_as_username, 0},
    {"tls_version", opt_tls_version, 0},
    {"ciphers", opt_ciphers, 0},
    {"ciphers_tls1.3", opt_ciphers_tls13, 0},
    {"tls_handshake_timeout", opt_tls_handshake_timeout, 0},
    {"scripts_dir", opt_scripts_dir, 1},
    {"hook_instruction_limit", opt_hook_instruction_limit, 0},
    {"hook_memory_limit", opt_hook_memory_limit, 0},
    {"hook_on_error", opt_hook_on_error, 0},
    {"admin_socket", opt_admin_socket, 1},
    {"sys_interval", opt_sys_interval, 0},
    {"metrics_listener", opt_metrics_listener, 0},
    {"persistence", opt_persistence, 0},
    {"persistence_location", opt_persistence_location, 1},
    {"persistence_file", opt_persistence_file, 1},
    {"persistence_sync", opt_persistence_sync, 0},
    {"autosave_interval", opt_autosave_interval, 0},
    {"autosave_on_changes", opt_autosave_on_changes, 0},
    {"cluster_name", opt_cluster_name, 0},
    {"cluster_node_id", opt_cluster_node_id, 0},
    {"cluster_nats_url", opt_cluster_nats_url, 0},
    {"cluster_nats_username", opt_cluster_nats_username, 0},
    {"cluster_nats_password", opt_cluster_nats_password, 0},
    {"cluster_nats_credentials", opt_cluster_nats_credentials, 1},
    {"cluster_nats_cafile", opt_cluster_nats_cafile, 1},
    {"cluster_nats_certfile", opt_cluster_nats_certfile, 1},
    {"cluster_nats_keyfile", opt_cluster_nats_keyfile, 1},
    {"cluster_max_pending_bytes", opt_cluster_max_pending_bytes, 0},
    {"cluster_sessions", opt_cluster_sessions, 0},
    {"cluster_partition", opt_cluster_partition, 0},
    {"cluster_takeover_timeout", opt_cluster_takeover_timeout, 0},
    {"cluster_replicas", opt_cluster_replicas, 0},
    {"cluster_topic", opt_cluster_topic, 0},
    {"cluster_topic_local", opt_cluster_topic_local, 0},
    {"cluster_retained", opt_cluster_retained, 0},
    /* bridges; as in mosquitto, client ids, user names, passwords and the notification
     * topic are the rest of the line, as files are */
    {"connection", opt_connection, 0},
    {"address", opt_address, 0},
    {"addresses", opt_address, 0},
    {"topic", opt_topic, 0},
    {"round_robin", opt_round_robin, 0},
    {"start_type", opt_start_type, 0},
    {"restart_timeout", opt_restart_timeout, 0},
    {"threshold", opt_threshold, 0},
    {"keepalive_interval", opt_keepalive_interval, 0},
    {"idle_timeout", opt_idle_timeout, 0},
    {"notifications", opt_notifications, 0},
    {"notifications_local_only", opt_notifications_local_only, 0},
    {"notification_topic", opt_notification_topic, 1},
    {"remote_clientid", opt_remote_clientid, 1},
    {"clientid", opt_remote_clientid, 1},
    {"local_clientid", opt_local_clientid, 1},
    {"remote_username", opt_remote_username, 1},
    {"remote_password", opt_remote_password, 1},
    {"username", opt_username, 1},
    {"password", opt_password, 1},
    {"bridge_protocol_version", opt_bridge_protocol_version, 0},
    {"cleansession", opt_cleansession, 0},
    {"local_cleansession", opt_local_cleansession, 0},
    {"bridge_outgoing_retain", opt_bridge_outgoing_retain, 0},
    {"bridge_max_packet_size", opt_bridge_max_packet_size, 0},
    {"bridge_receive_maximum", opt_bridge_receive_maximum, 0},
    {"bridge_session_expiry_interval", opt_bridge_session_expiry_interval, 0},
    {"try_private", opt_try_private, 0},
    {"bridge_attempt_unsubscribe", opt_bridge_attempt_unsubscribe, 0},
    {"bridge_cafile", opt_bridge_cafile, 1},
    {"bridge_capath", opt_bridge_capath, 1},
    {"bridge_certfile", opt_bridge_certfile, 1},
    {"bridge_keyfile", opt_bridge_keyfile, 1},
    {"bridge_insecure", opt_bridge_insecure, 0},
    {"bridge_tls_version", opt_bridge_tls_version, 0},
    {"bridge_alpn", opt_bridge_alpn, 0},
    {"user", opt_user, 0},
    {"pid_file", opt_pid_file, 1},
    {"log_timestamp", opt_log_timestamp, 0},
    {"log_timestamp_format", opt_log_timestamp_format, 1},
    {"connection_messages", opt_connection_messages, 0},
    {"log_format", opt_log_format, 0},
};

/* mosquitto options lunamq does not take, and why: refused, never ignored silently */
static const struct {
    const char *name;
    const char *why;
} refused[] = {
    {"bridge_identity", "PSK is not supported (use bridge_certfile)"},
    {"bridge_psk", "PSK is not supported (use bridge_certfile)"},
    {"bridge_bind_address", "the bridge connects from the address the system picks"},
    {"bridge_require_ocsp", "OCSP is not supported"},
    {"bridge_tcp_keepalive", "TCP keepalive is not configurable (keepalive_interval is MQTT's)"},
    {"bridge_tcp_user_timeout", "TCP_USER_TIMEOUT is not configurable"},
    {"bridge_reload_type", "how a reload treats bridges is not configurable"},
    {"local_username", "the bridge's local side is inside the broker: it is not checked against "
                       "password_file or acl_file"},
    {"local_password", "the bridge's local side is inside the broker: it is not checked against "
                       "password_file or acl_file"},
};

static char *
trim(char *s)
{
    s += strspn(s, " \t\r\n");
    size_t n = strlen(s);
    while (n && strchr(" \t\r\n", s[n - 1])) s[--n] = '\0';
    return s;
}

static int
parse_line(struct parse *ps, char *line)
{
    ps->ntok = 0;
    line = trim(line);
    if (*line == '#' || *line == '\0') return 0; /* comment or blank */
    const struct option *opt = NULL;
    size_t name_len = strcspn(line, " \t");
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]) && !opt; i++)
        if (strlen(options[i].name) == name_len && memcmp(line, options[i].name, name_len) == 0)
            opt = &options[i];
    char *rest = NULL; /* the value that is the rest of the line */
    char *p = line;
    while (*p) {
        p += strspn(p, " \t");
        if (!*p) break;
        if (opt && opt->rest_after && ps->ntok == opt->rest_after) {
            rest = p; /* trimmed already: the line was */
            break;
        }
        if (ps->ntok == MAX_TOKENS)
            return fail(ps, "%s: too many values (at most %d)", ps->tok[0], MAX_TOKENS - 1);
        ps->tok[ps->ntok++] = p;
        p += strcspn(p, " \t");
        if (*p) *p++ = '\0';
    }
    if (rest) ps->tok[ps->ntok++] = rest;
    if (!opt) {
        for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
            if (strcmp(ps->tok[0], refused[i].name) == 0)
                return fail(ps, "%s: not supported: %s", ps->tok[0], refused[i].why);
        return fail(ps, "unknown option '%s'", ps->tok[0]);
    }
    return opt->parse(ps);
}

static int
load_file(struct parse *ps, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(ps->err, ps->errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    ps->file = path;
    ps->line = 0;
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    while (rc == 0 && getline(&line, &cap, f) != -1) {
        ps->line++;
        rc = parse_line(ps, line);
    }
    free(line);
    fclose(f);
    return rc;
}

void
conf_init(struct lq_conf *c)
{
    memset(c, 0, sizeof(*c));
    c->auth.allow_anonymous = true; /* no file: the default listener on 127.0.0.1 */
    c->max_connect_packet_size = 65536;
    c->max_inflight_messages = 20;
    c->max_queued_messages = 1000;
    /* unlike mosquitto (none): 1000 messages of any size would let one subscriber that
     * does not read hold gigabytes */
    c->max_queued_bytes = 64u << 20;
    /* the same for all queues together: 16 clients at the per-client bound */
    c->max_queued_bytes_total = 1u << 30;
    c->max_hold_time_ms = 1000;
    c->cluster_max_pending_bytes = 64u << 20;
    c->cluster_sessions = true;
    c->cluster_takeover_ms = 5000;
    c->cluster_replicas = 1;
    c->max_keepalive = 0; /* no limit, as mosquitto since 2.0.13 */
    c->retain_available = true;
    /* mosquitto's limit too: a topic costs ~200 bytes a level in the trees, so 64 KB
     * of '/' would hold 11 MB */
    c->max_topic_levels = 200;
    /* one SUBSCRIBE is handled in one callback (~2 us a new filter): 10 000 bound it
     * to ~20 ms and a few MB, far above what devices use; bridges can raise it */
    c->max_subscriptions_per_client = 10000;
    c->persistent_client_expiration = -1;
    c->log_types = LQ_LOG_DEFAULT;
    c->log_dests = LQ_DEST_STDERR;
    c->hook_instruction_limit = 1000000;
    c->hook_memory_limit = 16 * 1024 * 1024;
    c->sys_interval = 10;
    c->autosave_interval = 1800; /* mosquitto's */
    c->log_timestamp = true;
    c->connection_messages = true;
}

void
conf_fini(struct lq_conf *c)
{
    for (struct listener_conf *l = c->listeners, *next; l; l = next) {
        next = l->next;
        if (l->tls) {
            for (int i = 0; i < TLS_NFILES; i++) {
                free(l->tls->file[i]);
                free(l->tls->at[i]);
            }
            free(l->tls->ciphers);
            free(l->tls->ciphers_tls13);
            free(l->tls->ciphers_at);
            free(l->tls->ciphers_tls13_at);
            free(l->tls);
        }
        auth_free(&l->auth);
        free(l->host);
        free(l->at);
        free(l);
    }
    auth_free(&c->auth);
    free(c->log_file);
    free(c->scripts_dir);
    free(c->persistence_location);
    free(c->cluster_name);
    free(c->cluster_node_id);
    free(c->cluster_nats_url);
    free(c->cluster_nats_username);
    free(c->cluster_nats_password);
    free(c->cluster_nats_credentials);
    free(c->cluster_nats_cafile);
    free(c->cluster_nats_certfile);
    free(c->cluster_nats_keyfile);
    free(c->cluster_nats_tls_at);
    for (size_t i = 0; i < c->ncluster_topics; i++) free(c->cluster_topics[i]);
    free(c->cluster_topics);
    for (size_t i = 0; i < c->ncluster_topics_local; i++) free(c->cluster_topics_local[i]);
    free(c->cluster_topics_local);
    free(c->persistence_file);
    free(c->admin_socket);
    free(c->metrics_host);
    free(c->user);
    free(c->pid_file);
    free(c->log_timestamp_format);
    free(c->conf_dir);
    for (struct bridge_conf *b = c->bridges, *next; b; b = next) {
        next = b->next;
        bridge_free(b);
    }
    conf_init(c);
}

int
conf_load(struct lq_conf *c, const char *path, char *err, size_t errlen)
{
    struct parse ps = {.c = c, .err = err, .errlen = errlen};
    if (load_file(&ps, path) < 0) return -1;
    for (const struct listener_conf *lc = c->listeners; lc; lc = lc->next)
        if (check_listener(err, errlen, lc) < 0) return -1;
    for (const struct bridge_conf *b = c->bridges; b; b = b->next)
        if (check_bridge(err, errlen, b) < 0) return -1;
    if (!c->cluster_nats_certfile != !c->cluster_nats_keyfile) {
        snprintf(err, errlen, "%s: cluster_nats_certfile and cluster_nats_keyfile go together",
                 c->cluster_nats_tls_at);
        return -1;
    }
    /* mosquitto 2.0: anonymous clients only when asked for, or when the file defines
     * no listener (the default one is on 127.0.0.1) */
    bool local_only = !c->listeners;
    if (!c->auth.allow_anonymous_set) c->auth.allow_anonymous = local_only;
    for (struct listener_conf *lc = c->listeners; lc; lc = lc->next)
        if (!lc->auth.allow_anonymous_set) lc->auth.allow_anonymous = false;
    return 0;
}

int64_t
conf_parse_duration(const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0 || strlen(end) != 1) return -1;
    int64_t unit;
    switch (*end) {
    case 'h': unit = 3600; break;
    case 'd': unit = 86400; break;
    case 'w': unit = 7 * 86400; break;
    case 'm': unit = 30 * 86400; break;
    case 'y': unit = 365 * 86400; break;
    default: return -1;
    }
    if (v > INT64_MAX / unit) return -1;
    return v * unit;
}
