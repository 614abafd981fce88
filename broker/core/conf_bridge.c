/* SPDX-License-Identifier: MIT
 *
 * conf_bridge: the options of bridges (issue 17) for conf.c's option table. A `connection
 * NAME` line starts a block; the options below belong to the block above them. mosquitto's
 * names and defaults; checked together at the end (check_bridge), where a missing thing is
 * reported at the connection line. Also: freeing and comparing struct bridge_conf.
 * Not here: the option table, the refused mosquitto options (conf.c), the bridge (bridge/). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "conf_int.h"
#include "lq.h"
#include "topic.h"

static struct bridge_conf *
cur_bridge(struct parse *ps)
{
    if (!ps->bridge) conf_fail(ps, "%s: must follow a connection line", ps->tok[0]);
    ps->block = ps->bridge;
    return ps->bridge;
}

int
opt_connection(struct parse *ps)
{
    int rc = conf_want_args(ps, 1, 1);
    struct bridge_conf **pp = &ps->c->bridges;
    for (; rc == 0 && *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->name, ps->tok[1]) == 0)
            rc = conf_fail(ps, "connection: '%s' is already the name of the bridge at %s",
                           ps->tok[1], (*pp)->at);
    struct bridge_conf *b = lq_xcalloc(1, sizeof(*b));
    b->name = lq_xstrdup(ps->ntok > 1 ? ps->tok[1] : "");
    b->at = conf_where(ps);
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
    ps->bridge = b;
    if (rc) { /* a stray: takes the block's lines */
        b->next = ps->rep->stray_bridges;
        ps->rep->stray_bridges = b;
        return -1;
    }
    *pp = b;
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
            return conf_fail(ps, "%s: '%s' is not [IPV6]:PORT", ps->tok[0], s);
        host = s + 1;
        hlen = (size_t)(end - host);
        if (end[1]) port = end + 2;
        if (!is_ipv6(host, hlen))
            return conf_fail(ps, "%s: '%s': not an IPv6 address in the brackets", ps->tok[0], s);
    } else {
        const char *colon = strrchr(s, ':');
        hlen = colon ? (size_t)(colon - s) : strlen(s);
        if (colon) port = colon + 1;
        if (memchr(s, ':', hlen) && !is_ipv6(s, hlen))
            return conf_fail(ps,
                             "%s: '%s': an IPv6 address needs its port (ADDR:PORT or [ADDR]:PORT)",
                             ps->tok[0], s);
    }
    if (hlen == 0) return conf_fail(ps, "%s: '%s': no host", ps->tok[0], s);
    long long p = 1883;
    if (port && conf_number(ps, port, 1, 65535, &p)) return -1;
    out->host = lq_xmalloc(hlen + 1);
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    out->port = (uint16_t)p;
    return 0;
}

/* address and addresses: one or more, and each line adds to them */
int
opt_address(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    if (!b) return -1;
    if (ps->ntok < 2 || ps->tok[1][0] == '#') return conf_fail(ps, "%s: missing value", ps->tok[0]);
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
        return conf_fail(ps, "topic: %s prefix '%s' has a wildcard: a prefix is a topic name",
                         which, s);
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
        rc = conf_fail(ps, "topic: '%s' (%s prefix and pattern) is not a valid topic filter", full,
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
int
opt_topic(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    if (!b || conf_want_args(ps, 1, 5)) return -1;
    if (ps->ntok == 5)
        return conf_fail(ps, "topic: the local prefix '%s' needs a remote prefix after it",
                         ps->tok[4]);
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
            return conf_fail(ps, "topic: '%s' is not out, in or both", d);
    }
    long long qos = 0;
    if (ps->ntok > 3 && conf_number(ps, ps->tok[3], 0, 2, &qos)) return -1;
    t.qos = (uint8_t)qos;
    bool empty = strcmp(ps->tok[1], "\"\"") == 0;
    t.pattern = lq_xstrdup(empty ? "" : ps->tok[1]);
    int rc = 0;
    if (ps->ntok > 4)
        rc = topic_prefix(ps, ps->tok[4], "local", &t.local_prefix) ||
             topic_prefix(ps, ps->tok[5], "remote", &t.remote_prefix);
    if (rc == 0 && empty && (!t.local_prefix || !t.remote_prefix))
        rc = conf_fail(ps, "topic: an empty pattern (\"\") needs a local and a remote prefix, "
                           "each then the whole topic");
    if (rc == 0)
        rc = topic_side(ps, t.local_prefix, t.pattern, "local") ||
             topic_side(ps, t.remote_prefix, t.pattern, "remote");
    if (rc) {
        bridge_topic_free(&t);
        return -1;
    }
    t.at = conf_where(ps);
    b->topics = lq_xrealloc(b->topics, (b->ntopics + 1) * sizeof(*b->topics));
    b->topics[b->ntopics++] = t;
    return 0;
}

/* a whole number in [lo, hi] for the block above */
static int
bridge_number(struct parse *ps, long long lo, long long hi, long long *v)
{
    return !cur_bridge(ps) || conf_want_args(ps, 1, 1) || conf_number(ps, ps->tok[1], lo, hi, v)
               ? -1
               : 0;
}

int
opt_round_robin(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    return b ? conf_boolean(ps, &b->round_robin) : -1;
}

int
opt_notifications(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    return b ? conf_boolean(ps, &b->notifications) : -1;
}

int
opt_notifications_local_only(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    return b ? conf_boolean(ps, &b->notifications_local_only) : -1;
}

int
opt_cleansession(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    return b ? conf_boolean(ps, &b->cleansession) : -1;
}

int
opt_bridge_outgoing_retain(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    return b ? conf_boolean(ps, &b->outgoing_retain) : -1;
}

int
opt_try_private(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    return b ? conf_boolean(ps, &b->try_private) : -1;
}

int
opt_bridge_attempt_unsubscribe(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    return b ? conf_boolean(ps, &b->attempt_unsubscribe) : -1;
}

int
opt_remote_clientid(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    return b ? conf_set_path(ps, &b->remote_clientid) : -1;
}

int
opt_local_clientid(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    return b ? conf_set_path(ps, &b->local_clientid) : -1;
}

int
opt_remote_username(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    return b ? conf_set_path(ps, &b->remote_username) : -1;
}

int
opt_remote_password(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    return b ? conf_set_path(ps, &b->remote_password) : -1;
}

/* username and password: mosquitto's old names of remote_*, only in a block (outside one
 * they are no option, as before bridges) */
int
opt_username(struct parse *ps)
{
    if (!ps->bridge) return conf_fail(ps, "unknown option '%s'", ps->tok[0]);
    return opt_remote_username(ps);
}

int
opt_password(struct parse *ps)
{
    if (!ps->bridge) return conf_fail(ps, "unknown option '%s'", ps->tok[0]);
    return opt_remote_password(ps);
}

int
opt_local_cleansession(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    bool v;
    if (!b || conf_boolean(ps, &v)) return -1;
    b->local_cleansession = v;
    return 0;
}

int
opt_notification_topic(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    if (!b || conf_want_args(ps, 1, 1)) return -1;
    if (!topic_name_is_valid(ps->tok[1], strlen(ps->tok[1])))
        return conf_fail(ps, "notification_topic: '%s' is not a topic name (no wildcards)",
                         ps->tok[1]);
    return conf_set_path(ps, &b->notification_topic);
}

int
opt_start_type(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    if (!b || conf_want_args(ps, 1, 1)) return -1;
    if (strcmp(ps->tok[1], "automatic") == 0)
        b->start_type = BRIDGE_START_AUTOMATIC;
    else if (strcmp(ps->tok[1], "lazy") == 0)
        b->start_type = BRIDGE_START_LAZY;
    else if (strcmp(ps->tok[1], "once") == 0)
        b->start_type = BRIDGE_START_ONCE;
    else
        return conf_fail(ps, "start_type: '%s' is not automatic, lazy or once", ps->tok[1]);
    return 0;
}

/* restart_timeout CONSTANT, or BASE CAP (backoff with jitter between them) */
int
opt_restart_timeout(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    long long base, cap;
    if (!b || conf_want_args(ps, 1, 2) || conf_number(ps, ps->tok[1], 1, UINT32_MAX, &base))
        return -1;
    cap = base;
    if (ps->ntok > 2 && conf_number(ps, ps->tok[2], 1, UINT32_MAX, &cap)) return -1;
    if (cap < base) return conf_fail(ps, "restart_timeout: cap %lld is below base %lld", cap, base);
    b->restart_base = (uint32_t)base;
    b->restart_cap = (uint32_t)cap;
    return 0;
}

/* mosquitto raises lower values to its minimum (with a notice): so do we, silently */
int
opt_threshold(struct parse *ps)
{
    long long v;
    if (bridge_number(ps, 0, UINT32_MAX, &v)) return -1;
    ps->bridge->threshold = v < 1 ? 1 : (uint32_t)v;
    return 0;
}

int
opt_keepalive_interval(struct parse *ps)
{
    long long v;
    if (bridge_number(ps, 0, 65535, &v)) return -1;
    ps->bridge->keepalive = v < 5 ? 5 : (uint16_t)v;
    return 0;
}

int
opt_idle_timeout(struct parse *ps)
{
    long long v;
    if (bridge_number(ps, 1, UINT32_MAX, &v)) return -1;
    ps->bridge->idle_timeout = (uint32_t)v;
    return 0;
}

int
opt_bridge_protocol_version(struct parse *ps)
{
    struct bridge_conf *b = cur_bridge(ps);
    if (!b || conf_want_args(ps, 1, 1)) return -1;
    if (strcmp(ps->tok[1], "mqttv50") == 0)
        b->protocol = 5;
    else if (strcmp(ps->tok[1], "mqttv311") == 0)
        b->protocol = 4;
    else if (strcmp(ps->tok[1], "mqttv31") == 0)
        b->protocol = 3;
    else
        return conf_fail(ps, "bridge_protocol_version: '%s' is not mqttv50, mqttv311 or mqttv31",
                         ps->tok[1]);
    return 0;
}

/* The MQTT 5 options: where the last one was, for the error with protocol 3 or 4. */
static void
bridge_v5_line(struct parse *ps)
{
    free(ps->bridge->v5_at);
    ps->bridge->v5_at = conf_where(ps);
}

int
opt_bridge_max_packet_size(struct parse *ps)
{
    long long v;
    if (bridge_number(ps, 0, 268435460, &v)) return -1;
    if (v != 0 && v < 20) return conf_fail(ps, "bridge_max_packet_size: %lld is below 20 bytes", v);
    ps->bridge->max_packet_size = (uint32_t)v;
    bridge_v5_line(ps);
    return 0;
}

int
opt_bridge_receive_maximum(struct parse *ps)
{
    long long v;
    if (bridge_number(ps, 1, 65535, &v)) return -1;
    ps->bridge->receive_maximum = (uint16_t)v;
    bridge_v5_line(ps);
    return 0;
}

int
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
        b->tls_at = conf_where(ps);
    }
    return b;
}

int
opt_bridge_cafile(struct parse *ps)
{
    struct bridge_conf *b = bridge_tls_line(ps);
    return b ? conf_set_path(ps, &b->cafile) : -1;
}

int
opt_bridge_capath(struct parse *ps)
{
    struct bridge_conf *b = bridge_tls_line(ps);
    return b ? conf_set_path(ps, &b->capath) : -1;
}

int
opt_bridge_certfile(struct parse *ps)
{
    struct bridge_conf *b = bridge_tls_line(ps);
    return b ? conf_set_path(ps, &b->certfile) : -1;
}

int
opt_bridge_keyfile(struct parse *ps)
{
    struct bridge_conf *b = bridge_tls_line(ps);
    return b ? conf_set_path(ps, &b->keyfile) : -1;
}

int
opt_bridge_alpn(struct parse *ps)
{
    struct bridge_conf *b = bridge_tls_line(ps);
    return b ? conf_set_path(ps, &b->alpn) : -1;
}

int
opt_bridge_insecure(struct parse *ps)
{
    struct bridge_conf *b = bridge_tls_line(ps);
    return b ? conf_boolean(ps, &b->insecure) : -1;
}

int
opt_bridge_tls_version(struct parse *ps)
{
    struct bridge_conf *b = bridge_tls_line(ps);
    if (!b || conf_want_args(ps, 1, 1)) return -1;
    const char *v = ps->tok[1];
    if (strcmp(v, "tlsv1.2") == 0)
        b->tls_version = 12;
    else if (strcmp(v, "tlsv1.3") == 0)
        b->tls_version = 13;
    else if (strcmp(v, "tlsv1.1") == 0 || strcmp(v, "tlsv1") == 0)
        return conf_fail(ps, "bridge_tls_version: %s is not supported: only tlsv1.2 and tlsv1.3",
                         v);
    else
        return conf_fail(ps, "bridge_tls_version: '%s' is not tlsv1.2 or tlsv1.3", v);
    return 0;
}

/* After the whole file: what one block's lines must make together. */
void
check_bridge(struct report *r, const struct bridge_conf *b)
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
    if (msg) conf_report_add(r, "%s: connection %s: %s", at, b->name, msg);
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

void
bridge_conf_free(struct bridge_conf *b)
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
