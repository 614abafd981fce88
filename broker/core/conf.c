/* SPDX-License-Identifier: MIT
 *
 * conf: mosquitto.conf-style configuration. One table row per option: its name
 * and the function that parses its value into struct lq_conf. Errors come back as
 * "FILE:LINE: message", every one of the file (a bad line is skipped and the parse goes
 * on); nothing here logs or exits. The bridges' options are in conf_bridge.c; the two
 * share conf_int.h. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf.h"
#include "conf_int.h"
#include "lq.h"

static void load_file(struct parse *ps, const char *path);

__attribute__((format(printf, 2, 3))) void
conf_report_add(struct report *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *msg = lq_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(msg, (size_t)n + 1, fmt, ap);
    va_end(ap);
    r->msgs = lq_xrealloc(r->msgs, (r->n + 1) * sizeof(*r->msgs));
    r->msgs[r->n++] = msg;
}

static void
report_mark_bad(struct report *r, const void *block)
{
    r->bad = lq_xrealloc(r->bad, (r->nbad + 1) * sizeof(*r->bad));
    r->bad[r->nbad++] = block;
}

static bool
report_is_bad(const struct report *r, const void *block)
{
    for (size_t i = 0; i < r->nbad; i++)
        if (r->bad[i] == block) return true;
    return false;
}

/* "\n...and N more errors" (without the newline when first) */
static int
more_errors(char *buf, size_t len, bool first, size_t n)
{
    return snprintf(buf, len, "%s...and %zu more error%s", first ? "" : "\n", n, n == 1 ? "" : "s");
}

/* The errors one a line, as many whole lines as errlen holds (the first one cut if even it
 * does not fit, as a lone error always was), then how many did not fit. */
static void
report_write(const struct report *r, char *err, size_t errlen)
{
    if (!errlen || !r->n) return;
    size_t len = 0, i = 0;
    for (; i < r->n; i++) {
        char tail[64] = "";
        if (i + 1 < r->n) more_errors(tail, sizeof(tail), false, r->n - i - 1);
        size_t need = len + (i ? 1 : 0) + strlen(r->msgs[i]) + strlen(tail);
        if (need >= errlen) break;
        len += (size_t)snprintf(err + len, errlen - len, "%s%s", i ? "\n" : "", r->msgs[i]);
    }
    if (i == 0) { /* the first alone is too long: cut it, leaving room for the count */
        char tail[64] = "";
        size_t tl = r->n > 1 ? (size_t)more_errors(tail, sizeof(tail), false, r->n - 1) : 0;
        size_t keep = errlen - 1 > tl ? errlen - 1 - tl : 0;
        if (keep > strlen(r->msgs[0])) keep = strlen(r->msgs[0]);
        memcpy(err, r->msgs[0], keep);
        len = keep;
        err[len] = '\0';
        i = 1;
    }
    if (i < r->n) more_errors(err + len, errlen - len, len == 0, r->n - i);
}

static void
report_fini(struct report *r)
{
    for (size_t i = 0; i < r->n; i++) free(r->msgs[i]);
    free(r->msgs);
    free(r->bad);
}

__attribute__((format(printf, 2, 3))) int
conf_fail(struct parse *ps, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    conf_report_add(ps->rep, "%s:%u: %s", ps->file, ps->line, msg);
    return -1;
}

int
conf_want_args(struct parse *ps, int min, int max)
{
    int n = ps->ntok - 1;
    if (n < min) return conf_fail(ps, "%s: missing value", ps->tok[0]);
    if (n > max) return conf_fail(ps, "%s: unexpected '%s'", ps->tok[0], ps->tok[max + 1]);
    return 0;
}

/* A whole number in [lo, hi]. */
int
conf_number(struct parse *ps, const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return conf_fail(ps, "%s: '%s' is not a number", ps->tok[0], s);
    if (v < lo || v > hi)
        return conf_fail(ps, "%s: '%s' out of range %lld..%lld", ps->tok[0], s, lo, hi);
    *out = v;
    return 0;
}

int
conf_boolean(struct parse *ps, bool *out)
{
    if (conf_want_args(ps, 1, 1)) return -1;
    if (strcmp(ps->tok[1], "true") == 0)
        *out = true;
    else if (strcmp(ps->tok[1], "false") == 0)
        *out = false;
    else
        return conf_fail(ps, "%s: '%s' is not true or false", ps->tok[0], ps->tok[1]);
    return 0;
}

/* One of two words, into a bool: the second is true. */
static int
one_of(struct parse *ps, const char *no, const char *yes, bool *out)
{
    if (conf_want_args(ps, 1, 1)) return -1;
    if (strcmp(ps->tok[1], no) != 0 && strcmp(ps->tok[1], yes) != 0)
        return conf_fail(ps, "%s: '%s' is not %s or %s", ps->tok[0], ps->tok[1], no, yes);
    *out = strcmp(ps->tok[1], yes) == 0;
    return 0;
}

/* "FILE:LINE" of the line being parsed, allocated. */
char *
conf_where(const struct parse *ps)
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
int
conf_set_path(struct parse *ps, char **field)
{
    if (conf_want_args(ps, 1, 1)) return -1;
    free(*field);
    *field = lq_xstrdup(ps->tok[1]);
    return 0;
}

/* p made absolute against dir (none: p as it is); "./" and "." say dir itself */
static char *
in_dir(const char *dir, const char *p)
{
    if (!dir || p[0] == '/') return lq_xstrdup(p);
    while (p[0] == '.' && p[1] == '/') p += 2 + strspn(p + 2, "/");
    if (p[0] == '\0' || strcmp(p, ".") == 0) return lq_xstrdup(dir);
    size_t n = strlen(dir) + strlen(p) + 2;
    char *s = lq_xmalloc(n);
    snprintf(s, n, "%s%s%s", dir, strcmp(dir, "/") == 0 ? "" : "/", p);
    return s;
}

/* A path the broker opens once it runs, maybe from another working directory (a
 * service runs from /): relative to the main file's directory, in included files too. */
static int
set_conf_path(struct parse *ps, char **field)
{
    if (conf_set_path(ps, field)) return -1;
    char *abs = in_dir(ps->c->conf_dir, *field);
    free(*field);
    *field = abs;
    return 0;
}

static int
add_listener(struct parse *ps, bool http)
{
    long long port = 0;
    int rc = conf_want_args(ps, 1, 2) || conf_number(ps, ps->tok[1], 1, 65535, &port) ? -1 : 0;
    struct listener_conf *lc = lq_xcalloc(1, sizeof(*lc));
    lc->port = (uint16_t)port;
    lc->http = http;
    lc->host = rc == 0 && ps->ntok > 2 ? lq_xstrdup(ps->tok[2])
               : http                  ? lq_xstrdup("127.0.0.1") /* loopback unless asked */
                                       : NULL;
    lc->at = conf_where(ps);
    auth_copy(&lc->auth, &ps->c->auth); /* per_listener_settings: what came before */
    ps->cur = lc;
    struct listener_conf **pp = &ps->c->listeners;
    if (rc) { /* a stray: takes the TLS lines below it */
        lc->next = ps->rep->stray_listeners;
        ps->rep->stray_listeners = lc;
        return -1;
    }
    while (*pp) pp = &(*pp)->next;
    *pp = lc;
    return 0;
}

static int
opt_listener(struct parse *ps)
{
    return add_listener(ps, false);
}

/* http_listener PORT [ADDRESS]: POST /publish/<topic>, GET /retained/<topic>; the TLS
 * and per-listener lines after it are its own, as for a listener */
static int
opt_http_listener(struct parse *ps)
{
    return add_listener(ps, true);
}

/* protocol mqtt|websockets: what the listener above speaks (mosquitto's option) */
static int
opt_protocol(struct parse *ps)
{
    if (conf_want_args(ps, 1, 1)) return -1;
    if (!ps->cur) return conf_fail(ps, "protocol: must follow a listener line");
    ps->block = ps->cur;
    if (ps->cur->http) return conf_fail(ps, "protocol: an http_listener speaks HTTP (and /mqtt)");
    if (strcmp(ps->tok[1], "mqtt") == 0)
        ps->cur->websockets = false;
    else if (strcmp(ps->tok[1], "websockets") == 0)
        ps->cur->websockets = true;
    else
        return conf_fail(ps, "protocol: '%s' is not mqtt or websockets", ps->tok[1]);
    return 0;
}

/* websockets_origin ORIGIN...: browsers may connect from these pages only (per listener) */
static int
opt_websockets_origin(struct parse *ps)
{
    if (conf_want_args(ps, 1, MAX_TOKENS - 2)) return -1;
    if (!ps->cur) return conf_fail(ps, "websockets_origin: must follow a listener line");
    ps->block = ps->cur;
    for (int i = 1; i < ps->ntok; i++) {
        const char *o = ps->tok[i];
        if ((strncmp(o, "http://", 7) != 0 && strncmp(o, "https://", 8) != 0) ||
            strchr(strchr(o, ':') + 3, '/'))
            return conf_fail(ps,
                             "websockets_origin: '%s' is not an origin (scheme://host[:port], "
                             "no path)",
                             o);
        struct listener_conf *lc = ps->cur;
        lc->ws_origins = lq_xrealloc(lc->ws_origins, (lc->nws_origins + 1) * sizeof(char *));
        lc->ws_origins[lc->nws_origins++] = lq_xstrdup(o);
    }
    return 0;
}

static int
opt_websockets_headers_size(struct parse *ps)
{
    long long v;
    if (conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], 0, 65536, &v)) return -1;
    ps->c->websockets_headers_size = (uint32_t)v;
    return 0;
}

bool
conf_has_mqtt_listener(const struct lq_conf *c)
{
    for (const struct listener_conf *lc = c->listeners; lc; lc = lc->next)
        if (!lc->http) return true;
    return false;
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
    return conf_boolean(ps, &a->allow_anonymous);
}

static int
opt_password_file(struct parse *ps)
{
    return conf_set_path(ps, &auth_of(ps)->password_file);
}

static int
opt_acl_file(struct parse *ps)
{
    return conf_set_path(ps, &auth_of(ps)->acl_file);
}

/* mosquitto: it must come before the listeners, whose settings it makes their own */
static int
opt_per_listener_settings(struct parse *ps)
{
    if (ps->c->listeners)
        return conf_fail(ps, "per_listener_settings must come before the first listener");
    return conf_boolean(ps, &ps->c->per_listener_settings);
}

const struct auth_conf *
conf_auth(const struct lq_conf *c, const struct listener_conf *lc)
{
    return c->per_listener_settings && lc && !lc->implicit ? &lc->auth : &c->auth;
}

static int
opt_retain_available(struct parse *ps)
{
    return conf_boolean(ps, &ps->c->retain_available);
}

static int
opt_max_packet_size(struct parse *ps)
{
    long long v;
    if (conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], 0, 268435460, &v)) return -1;
    if (v != 0 && v < 20) return conf_fail(ps, "max_packet_size: %lld is below 20 bytes", v);
    ps->c->max_packet_size = (uint32_t)v;
    return 0;
}

static int
opt_max_connect_packet_size(struct parse *ps)
{
    long long v;
    if (conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], 0, 268435460, &v)) return -1;
    if (v != 0 && v < 20)
        return conf_fail(ps, "max_connect_packet_size: %lld is below 20 bytes", v);
    ps->c->max_connect_packet_size = (uint32_t)v;
    return 0;
}

static int
opt_max_inflight_messages(struct parse *ps)
{
    long long v;
    if (conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], 0, 65535, &v)) return -1;
    ps->c->max_inflight_messages = (uint16_t)v;
    return 0;
}

static int
opt_max_queued_messages(struct parse *ps)
{
    long long v;
    if (conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], 0, UINT32_MAX, &v)) return -1;
    ps->c->max_queued_messages = (uint32_t)v;
    return 0;
}

static int
opt_max_queued_bytes(struct parse *ps)
{
    long long v;
    if (conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], 0, LLONG_MAX, &v)) return -1;
    ps->c->max_queued_bytes = (uint64_t)v;
    return 0;
}

static int
opt_max_queued_bytes_total(struct parse *ps)
{
    long long v;
    if (conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], 0, LLONG_MAX, &v)) return -1;
    ps->c->max_queued_bytes_total = (uint64_t)v;
    return 0;
}

/* Seconds, fractions allowed ("0.5"), from lo to hi; kept in milliseconds. */
static int
seconds_ms(struct parse *ps, double lo, double hi, uint32_t *ms)
{
    if (conf_want_args(ps, 1, 1)) return -1;
    char *end;
    errno = 0;
    double v = strtod(ps->tok[1], &end);
    if (errno || end == ps->tok[1] || *end || !(v >= lo && v <= hi))
        return conf_fail(ps, "%s: '%s' is not a number of seconds from %g to %g", ps->tok[0],
                         ps->tok[1], lo, hi);
    *ms = (uint32_t)(v * 1000 + 0.5);
    return 0;
}

static int
opt_max_hold_time(struct parse *ps)
{
    return seconds_ms(ps, 0, 3600, &ps->c->max_hold_time_ms);
}

static int
opt_max_connections(struct parse *ps)
{
    long long v;
    if (conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], -1, UINT32_MAX, &v)) return -1;
    ps->c->max_connections = v < 0 ? 0 : (uint32_t)v; /* -1: no limit, as mosquitto */
    return 0;
}

static int
opt_max_keepalive(struct parse *ps)
{
    long long v;
    if (conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], LLONG_MIN, LLONG_MAX, &v))
        return -1;
    if (v != 0 && (v < 10 || v > 65535)) /* as mosquitto: 0 is no limit */
        return conf_fail(ps, "%s: '%s' is not 0 (no limit) or 10..65535", ps->tok[0], ps->tok[1]);
    ps->c->max_keepalive = (uint16_t)v;
    return 0;
}

static int
opt_message_size_limit(struct parse *ps)
{
    long long v;
    if (conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], 0, 268435455, &v)) return -1;
    ps->c->message_size_limit = (uint32_t)v;
    return 0;
}

static int
opt_max_topic_levels(struct parse *ps)
{
    long long v;
    if (conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], 0, 65535, &v)) return -1;
    ps->c->max_topic_levels = (uint32_t)v;
    return 0;
}

static int
opt_max_subscriptions_per_client(struct parse *ps)
{
    long long v;
    if (conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], 0, UINT32_MAX, &v)) return -1;
    ps->c->max_subscriptions_per_client = (uint32_t)v;
    return 0;
}

static int
opt_persistent_client_expiration(struct parse *ps)
{
    if (conf_want_args(ps, 1, 1)) return -1;
    int64_t v = conf_parse_duration(ps->tok[1]);
    if (v < 0)
        return conf_fail(
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
    if (conf_want_args(ps, 1, 1)) return -1;
    if (!ps->seen_log_type) ps->c->log_types = 0; /* the first line replaces the default */
    ps->seen_log_type = true;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(ps->tok[1], types[i].name) == 0) {
            ps->c->log_types |= types[i].bits;
            return 0;
        }
    }
    return conf_fail(ps, "log_type: unknown type '%s'", ps->tok[1]);
}

static int
opt_log_dest(struct parse *ps)
{
    if (conf_want_args(ps, 1, 2)) return -1;
    if (!ps->seen_log_dest) ps->c->log_dests = 0;
    ps->seen_log_dest = true;
    const char *d = ps->tok[1];
    if (strcmp(d, "file") == 0) {
        if (ps->ntok < 3) return conf_fail(ps, "log_dest file: missing file name");
        free(ps->c->log_file);
        ps->c->log_file = lq_xstrdup(ps->tok[2]);
        ps->c->log_dests |= LQ_DEST_FILE;
        return 0;
    }
    if (ps->ntok > 2) return conf_fail(ps, "log_dest: unexpected '%s'", ps->tok[2]);
    if (strcmp(d, "stderr") == 0)
        ps->c->log_dests |= LQ_DEST_STDERR;
    else if (strcmp(d, "stdout") == 0)
        ps->c->log_dests |= LQ_DEST_STDOUT;
    else if (strcmp(d, "syslog") == 0)
        ps->c->log_dests |= LQ_DEST_SYSLOG;
    else if (strcmp(d, "none") == 0)
        ps->c->log_dests = 0;
    else if (strcmp(d, "topic") == 0)
        return conf_fail(ps, "log_dest topic: not supported");
    else
        return conf_fail(ps, "log_dest: unknown destination '%s'", d);
    return 0;
}

static int
opt_log_timestamp(struct parse *ps)
{
    return conf_boolean(ps, &ps->c->log_timestamp);
}

/* strftime's format, as mosquitto; refused when it makes nothing, or more than a log
 * line's stamp should hold (256 bytes with the NUL is then enough for it) */
static int
opt_log_timestamp_format(struct parse *ps)
{
    if (conf_want_args(ps, 1, 1)) return -1;
    char buf[256];
    time_t now = time(NULL);
    struct tm tm;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral" /* the operator's format, as mosquitto */
    size_t n = strftime(buf, sizeof(buf), ps->tok[1], gmtime_r(&now, &tm));
#pragma GCC diagnostic pop
    if (n == 0)
        return conf_fail(
            ps, "log_timestamp_format: '%s' makes an empty timestamp or one over %zu bytes",
            ps->tok[1], sizeof(buf) - 1);
    return conf_set_path(ps, &ps->c->log_timestamp_format);
}

static int
opt_log_format(struct parse *ps)
{
    return one_of(ps, "lunamq", "mosquitto", &ps->c->log_format_mosquitto);
}

static int
opt_connection_messages(struct parse *ps)
{
    return conf_boolean(ps, &ps->c->connection_messages);
}

/* ---- running as a service (issue 18): what main does with these is its own ---- */

static int
opt_user(struct parse *ps)
{
    return conf_set_path(ps, &ps->c->user);
}

static int
opt_pid_file(struct parse *ps)
{
    return set_conf_path(ps, &ps->c->pid_file);
}

/* ---- Lua hooks ---- */

static int
add_to_list(struct parse *ps, char ***list, size_t *n)
{
    if (conf_want_args(ps, 1, 1)) return -1;
    *list = lq_xrealloc(*list, (*n + 1) * sizeof(**list));
    (*list)[(*n)++] = lq_xstrdup(ps->tok[1]);
    return 0;
}

static int
opt_scripts_dir(struct parse *ps)
{
    return set_conf_path(ps, &ps->c->scripts_dir);
}

static int
opt_hook_instruction_limit(struct parse *ps)
{
    long long v;
    if (conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], 1000, 1000000000000LL, &v))
        return -1;
    ps->c->hook_instruction_limit = (uint64_t)v;
    return 0;
}

static int
opt_hook_memory_limit(struct parse *ps)
{
    long long v;
    if (conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], 256 * 1024, 1LL << 40, &v))
        return -1;
    ps->c->hook_memory_limit = (uint64_t)v;
    return 0;
}

static int
opt_hook_http_allow(struct parse *ps)
{
    if (conf_want_args(ps, 1, 1)) return -1;
    if (strncmp(ps->tok[1], "http://", 7) != 0 && strncmp(ps->tok[1], "https://", 8) != 0)
        return conf_fail(ps, "hook_http_allow: '%s' is not an http:// or https:// URL prefix",
                         ps->tok[1]);
    return add_to_list(ps, &ps->c->hook_http_allow, &ps->c->nhook_http_allow);
}

static int
opt_hook_http_cafile(struct parse *ps)
{
    return set_conf_path(ps, &ps->c->hook_http_cafile);
}

static int
count_option(struct parse *ps, long long lo, long long hi, uint32_t *out)
{
    long long v;
    if (conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], lo, hi, &v)) return -1;
    *out = (uint32_t)v;
    return 0;
}

static int
opt_hook_http_max_concurrent(struct parse *ps)
{
    return count_option(ps, 1, 1024, &ps->c->hook_http_max_concurrent);
}

static int
opt_hook_http_max_queue(struct parse *ps)
{
    return count_option(ps, 0, 100000, &ps->c->hook_http_max_queue);
}

static int
opt_hook_http_max_response(struct parse *ps)
{
    long long v;
    if (conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], 1024, 256LL << 20, &v)) return -1;
    ps->c->hook_http_max_response = (uint64_t)v;
    return 0;
}

static int
opt_hook_http_connect_timeout(struct parse *ps)
{
    return seconds_ms(ps, 0.01, 300, &ps->c->hook_http_connect_timeout_ms);
}

static int
opt_hook_http_timeout(struct parse *ps)
{
    return seconds_ms(ps, 0.01, 3600, &ps->c->hook_http_timeout_ms);
}

static int
opt_kv_max_bytes(struct parse *ps)
{
    long long v;
    if (conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], 0, 1LL << 40, &v)) return -1;
    ps->c->kv_max_bytes = (uint64_t)v;
    return 0;
}

static int
opt_admin_socket(struct parse *ps)
{
    if (ps->ntok == 2 && strcmp(ps->tok[1], "none") == 0)
        return conf_set_path(ps, &ps->c->admin_socket);
    return set_conf_path(ps, &ps->c->admin_socket);
}

static int
opt_sys_interval(struct parse *ps)
{
    long long v;
    if (conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], 0, 86400, &v)) return -1;
    ps->c->sys_interval = (uint32_t)v;
    return 0;
}

static int
opt_metrics_listener(struct parse *ps)
{
    long long port;
    if (conf_want_args(ps, 1, 2) || conf_number(ps, ps->tok[1], 1, 65535, &port)) return -1;
    ps->c->metrics_port = (uint16_t)port;
    free(ps->c->metrics_host);
    ps->c->metrics_host = ps->ntok > 2 ? lq_xstrdup(ps->tok[2]) : NULL;
    return 0;
}

/* ---- persistence (issue 13) ---- */

static int
opt_persistence(struct parse *ps)
{
    return conf_boolean(ps, &ps->c->persistence);
}

static int
opt_persistence_location(struct parse *ps)
{
    return set_conf_path(ps, &ps->c->persistence_location);
}

/* mosquitto's one file: accepted, and the broker says at start that it uses a directory */
static int
opt_persistence_file(struct parse *ps)
{
    return conf_set_path(ps, &ps->c->persistence_file);
}

static int
opt_persistence_sync(struct parse *ps)
{
    if (conf_want_args(ps, 1, 1)) return -1;
    if (strcmp(ps->tok[1], "power") == 0)
        ps->c->persistence_sync_process = false;
    else if (strcmp(ps->tok[1], "process") == 0)
        ps->c->persistence_sync_process = true;
    else
        return conf_fail(ps, "persistence_sync: '%s' is not power or process", ps->tok[1]);
    return 0;
}

/* ---- cluster (issue 16) ---- */

static int
opt_cluster_name(struct parse *ps)
{
    return conf_set_path(ps, &ps->c->cluster_name);
}

static int
opt_cluster_node_id(struct parse *ps)
{
    return conf_set_path(ps, &ps->c->cluster_node_id);
}

static int
opt_cluster_nats_url(struct parse *ps)
{
    return conf_set_path(ps, &ps->c->cluster_nats_url);
}

static int
opt_cluster_nats_username(struct parse *ps)
{
    return conf_set_path(ps, &ps->c->cluster_nats_username);
}

static int
opt_cluster_nats_password(struct parse *ps)
{
    return conf_set_path(ps, &ps->c->cluster_nats_password);
}

static int
opt_cluster_nats_credentials(struct parse *ps)
{
    return conf_set_path(ps, &ps->c->cluster_nats_credentials);
}

static int
opt_cluster_nats_cafile(struct parse *ps)
{
    return conf_set_path(ps, &ps->c->cluster_nats_cafile);
}

/* _certfile and _keyfile: where the last one was, for the error when one is missing */
static int
cluster_tls_file(struct parse *ps, char **field)
{
    if (conf_set_path(ps, field) < 0) return -1;
    free(ps->c->cluster_nats_tls_at);
    ps->c->cluster_nats_tls_at = conf_where(ps);
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
    if (conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], 65536, INT64_MAX, &v)) return -1;
    ps->c->cluster_max_pending_bytes = (uint64_t)v;
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
    if (conf_want_args(ps, 1, 1)) return -1;
    char *end;
    errno = 0;
    double v = strtod(ps->tok[1], &end);
    if (errno || end == ps->tok[1] || *end || !(v >= 0.1 && v <= 300))
        return conf_fail(ps,
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
    if (conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], 1, 5, &v)) return -1;
    ps->c->cluster_replicas = (int)v;
    return 0;
}

static int
opt_cluster_retained(struct parse *ps)
{
    if (conf_want_args(ps, 1, 1)) return -1;
    if (strcmp(ps->tok[1], "jetstream") && strcmp(ps->tok[1], "local"))
        return conf_fail(ps, "cluster_retained: '%s' is not jetstream or local", ps->tok[1]);
    ps->c->cluster_retained_local = strcmp(ps->tok[1], "local") == 0;
    return 0;
}

static int
opt_autosave_interval(struct parse *ps)
{
    long long v;
    if (conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], 0, UINT32_MAX, &v)) return -1;
    ps->c->autosave_interval = (uint32_t)v;
    return 0;
}

static int
opt_autosave_on_changes(struct parse *ps)
{
    return conf_boolean(ps, &ps->c->autosave_on_changes);
}

static int
opt_hook_on_error(struct parse *ps)
{
    if (conf_want_args(ps, 1, 1)) return -1;
    if (strcmp(ps->tok[1], "pass") == 0)
        ps->c->hook_on_error_drop = false;
    else if (strcmp(ps->tok[1], "drop") == 0)
        ps->c->hook_on_error_drop = true;
    else
        return conf_fail(ps, "hook_on_error: '%s' is not pass or drop", ps->tok[1]);
    return 0;
}

/* ---- TLS: per listener, so each option must follow a `listener` line ---- */

static struct tls_conf *
cur_tls(struct parse *ps)
{
    if (!ps->cur) {
        conf_fail(ps, "%s: must follow a listener line", ps->tok[0]);
        return NULL;
    }
    ps->block = ps->cur;
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
    if (!tc || conf_want_args(ps, 1, 1)) return -1;
    free(tc->file[which]);
    free(tc->at[which]);
    tc->file[which] = lq_xstrdup(ps->tok[1]);
    tc->at[which] = conf_where(ps);
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
    return tc ? conf_boolean(ps, &tc->require_certificate) : -1;
}

static int
opt_use_identity_as_username(struct parse *ps)
{
    struct tls_conf *tc = cur_tls(ps);
    return tc ? conf_boolean(ps, &tc->use_identity_as_username) : -1;
}

static int
opt_use_subject_as_username(struct parse *ps)
{
    struct tls_conf *tc = cur_tls(ps);
    return tc ? conf_boolean(ps, &tc->use_subject_as_username) : -1;
}

static int
opt_tls_version(struct parse *ps)
{
    struct tls_conf *tc = cur_tls(ps);
    if (!tc || conf_want_args(ps, 1, 1)) return -1;
    if (strcmp(ps->tok[1], "tlsv1.2") == 0)
        tc->min_version = 12;
    else if (strcmp(ps->tok[1], "tlsv1.3") == 0)
        tc->min_version = 13;
    else
        return conf_fail(ps, "tls_version: '%s' is not tlsv1.2 or tlsv1.3", ps->tok[1]);
    return 0;
}

static int
opt_ciphers(struct parse *ps)
{
    struct tls_conf *tc = cur_tls(ps);
    if (!tc || conf_want_args(ps, 1, 1)) return -1;
    free(tc->ciphers);
    tc->ciphers = lq_xstrdup(ps->tok[1]);
    free(tc->ciphers_at);
    tc->ciphers_at = conf_where(ps);
    return 0;
}

static int
opt_ciphers_tls13(struct parse *ps)
{
    struct tls_conf *tc = cur_tls(ps);
    if (!tc || conf_want_args(ps, 1, 1)) return -1;
    free(tc->ciphers_tls13);
    tc->ciphers_tls13 = lq_xstrdup(ps->tok[1]);
    free(tc->ciphers_tls13_at);
    tc->ciphers_tls13_at = conf_where(ps);
    return 0;
}

static int
opt_tls_handshake_timeout(struct parse *ps)
{
    struct tls_conf *tc = cur_tls(ps);
    long long v;
    if (!tc || conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], 1, 3600, &v)) return -1;
    tc->handshake_timeout = (uint32_t)v;
    return 0;
}

/* After the whole file: a TLS listener's options must make sense together. */
static void
check_listener(struct report *r, const struct listener_conf *lc)
{
    const struct tls_conf *tc = lc->tls;
    const char *msg = NULL;
    if (lc->nws_origins && !lc->websockets && !lc->http)
        conf_report_add(r, "%s: listener %u: websockets_origin needs protocol websockets", lc->at,
                        lc->port);
    if (!tc) return;
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
    if (msg) conf_report_add(r, "%s: listener %u: %s", lc->at, lc->port, msg);
}

static int
by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
opt_include_dir(struct parse *ps)
{
    if (conf_want_args(ps, 1, 1)) return -1;
    if (ps->depth >= 8) return conf_fail(ps, "include_dir: nested too deeply");
    DIR *d = opendir(ps->tok[1]);
    if (!d) return conf_fail(ps, "include_dir: %s: %s", ps->tok[1], strerror(errno));
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
    for (size_t i = 0; i < n; i++) { /* their errors are theirs, not this line's */
        struct parse sub = *ps;
        sub.depth++;
        sub.bridge = NULL; /* as in mosquitto, a block does not go on into another file */
        load_file(&sub, names[i]);
        ps->seen_log_type = sub.seen_log_type;
        ps->seen_log_dest = sub.seen_log_dest;
        free(names[i]);
    }
    free(names);
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
    {"http_listener", opt_http_listener, 0},
    {"protocol", opt_protocol, 0},
    {"websockets_origin", opt_websockets_origin, 0},
    {"websockets_headers_size", opt_websockets_headers_size, 0},
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
    {"log_timestamp", opt_log_timestamp, 0},
    {"log_timestamp_format", opt_log_timestamp_format, 1},
    {"log_format", opt_log_format, 0},
    {"connection_messages", opt_connection_messages, 0},
    {"user", opt_user, 0},
    {"pid_file", opt_pid_file, 1},
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
    {"hook_http_allow", opt_hook_http_allow, 0},
    {"hook_http_cafile", opt_hook_http_cafile, 1},
    {"hook_http_max_concurrent", opt_hook_http_max_concurrent, 0},
    {"hook_http_max_queue", opt_hook_http_max_queue, 0},
    {"hook_http_max_response", opt_hook_http_max_response, 0},
    {"hook_http_connect_timeout", opt_hook_http_connect_timeout, 0},
    {"hook_http_timeout", opt_hook_http_timeout, 0},
    {"kv_max_bytes", opt_kv_max_bytes, 0},
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
    /* bridges (conf_bridge.c); as in mosquitto, client ids, user names, passwords and the
     * notification topic are the rest of the line, as files are */
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
};

/* mosquitto options lunamq does not take, and why: refused, never ignored silently */
static const struct {
    const char *name;
    const char *why;
} refused[] = {
    {"http_dir", "lunamq serves no files over WebSockets' HTTP (the dashboard is built in: "
                 "http_listener)"},
    {"websockets_log_level", "WebSocket events are logged as any others (log_type): refused "
                             "upgrades and broken framing at notice"},
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
    ps->block = NULL;
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
        if (ps->ntok == MAX_TOKENS) {
            /* unread, it may be the open block's (an address list): no checks of it */
            ps->block = ps->bridge ? (const void *)ps->bridge : (const void *)ps->cur;
            return conf_fail(ps, "%s: too many values (at most %d)", ps->tok[0], MAX_TOKENS - 1);
        }
        ps->tok[ps->ntok++] = p;
        p += strcspn(p, " \t");
        if (*p) *p++ = '\0';
    }
    if (rest) ps->tok[ps->ntok++] = rest;
    if (!opt) {
        for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
            if (strcmp(ps->tok[0], refused[i].name) == 0)
                return conf_fail(ps, "%s: not supported: %s", ps->tok[0], refused[i].why);
        return conf_fail(ps, "unknown option '%s'", ps->tok[0]);
    }
    return opt->parse(ps);
}

/* Every line, a bad one reported and skipped. */
static void
load_file(struct parse *ps, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        conf_report_add(ps->rep, "%s: cannot open: %s", path, strerror(errno));
        return;
    }
    ps->file = path;
    ps->line = 0;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) != -1) {
        ps->line++;
        if (parse_line(ps, line) < 0 && ps->block) report_mark_bad(ps->rep, ps->block);
    }
    free(line);
    fclose(f);
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
    c->hook_http_max_concurrent = 8;
    c->hook_http_max_queue = 100;
    c->hook_http_max_response = 1 << 20;
    c->hook_http_connect_timeout_ms = 5000;
    c->hook_http_timeout_ms = 30000;
    c->kv_max_bytes = 64 << 20;
    c->sys_interval = 10;
    c->autosave_interval = 1800; /* mosquitto's */
    c->log_timestamp = true;
    c->connection_messages = true;
}

static void
listeners_free(struct listener_conf *l)
{
    for (struct listener_conf *next; l; l = next) {
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
        for (size_t i = 0; i < l->nws_origins; i++) free(l->ws_origins[i]);
        free(l->ws_origins);
        free(l->host);
        free(l->at);
        free(l);
    }
}

static void
bridges_free(struct bridge_conf *b)
{
    for (struct bridge_conf *next; b; b = next) {
        next = b->next;
        bridge_conf_free(b);
    }
}

void
conf_fini(struct lq_conf *c)
{
    listeners_free(c->listeners);
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
    for (size_t i = 0; i < c->nhook_http_allow; i++) free(c->hook_http_allow[i]);
    free(c->hook_http_allow);
    free(c->hook_http_cafile);
    for (size_t i = 0; i < c->ncluster_topics; i++) free(c->cluster_topics[i]);
    free(c->cluster_topics);
    for (size_t i = 0; i < c->ncluster_topics_local; i++) free(c->cluster_topics_local[i]);
    free(c->cluster_topics_local);
    free(c->persistence_file);
    free(c->admin_socket);
    free(c->metrics_host);
    bridges_free(c->bridges);
    free(c->user);
    free(c->pid_file);
    free(c->log_timestamp_format);
    free(c->conf_dir);
    conf_init(c);
}

/* The absolute directory of path, or NULL when it does not exist (nor then the file). */
static char *
dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash) {
        dir = lq_xstrdup(".");
    } else {
        size_t n = slash == path ? 1 : (size_t)(slash - path); /* "/x.conf": "/" */
        dir = lq_xmalloc(n + 1);
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    char *abs = realpath(dir, NULL);
    free(dir);
    return abs;
}

/* A default in conf_dir, unless the file gave one. */
static void
default_in_conf_dir(const struct lq_conf *c, char **field, const char *name)
{
    if (!*field && c->conf_dir) *field = in_dir(c->conf_dir, name);
}

int
conf_load(struct lq_conf *c, const char *path, char *err, size_t errlen)
{
    struct report rep = {0};
    struct parse ps = {.c = c, .rep = &rep};
    free(c->conf_dir);
    c->conf_dir = dir_of(path);
    load_file(&ps, path);
    for (const struct listener_conf *lc = c->listeners; lc; lc = lc->next)
        if (!report_is_bad(&rep, lc)) check_listener(&rep, lc);
    for (const struct bridge_conf *b = c->bridges; b; b = b->next)
        if (!report_is_bad(&rep, b)) check_bridge(&rep, b);
    if (!c->cluster_nats_certfile != !c->cluster_nats_keyfile)
        conf_report_add(&rep, "%s: cluster_nats_certfile and cluster_nats_keyfile go together",
                        c->cluster_nats_tls_at);
    listeners_free(rep.stray_listeners);
    bridges_free(rep.stray_bridges);
    int rc = rep.n ? -1 : 0;
    report_write(&rep, err, errlen);
    report_fini(&rep);
    if (rc) return -1;
    /* mosquitto 2.0: anonymous clients only when asked for, or when the file defines
     * no listener (the default one is on 127.0.0.1) */
    bool local_only = !conf_has_mqtt_listener(c);
    if (!c->auth.allow_anonymous_set) c->auth.allow_anonymous = local_only;
    for (struct listener_conf *lc = c->listeners; lc; lc = lc->next)
        if (!lc->auth.allow_anonymous_set) lc->auth.allow_anonymous = false;
    /* set here, so that every caller sees the path in use (theirs are for no file) */
    default_in_conf_dir(c, &c->scripts_dir, "scripts");
    default_in_conf_dir(c, &c->admin_socket, "lunamq.sock");
    default_in_conf_dir(c, &c->persistence_location, ".");
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
