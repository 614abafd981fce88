/* SPDX-License-Identifier: MIT
 *
 * cluster connect: the NATS options a node connects with (the servers of
 * cluster_nats_url in order, user and password or a credentials file, TLS), checked
 * when the cluster opens so that a file that cannot be used stops the start; and
 * staying connected: libnats reconnects by itself, but gives a connection up for good
 * after a server refused its credentials twice: then a new one is tried every second
 * and everything is subscribed again. Why an attempt failed is logged, not every
 * second while it lasts. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "cluster_int.h"

static void
on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    struct cluster *c = closure;
    atomic_store(&c->connected, false);
}

static void
on_reconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    struct cluster *c = closure;
    atomic_store(&c->connected, true);
    atomic_fetch_add(&c->reconnects, 1);
    atomic_store(&c->js_retry, true);
    pthread_mutex_lock(&c->mu); /* the thread looks at the stream again */
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void
on_connected(natsConnection *nc, void *closure)
{
    (void)nc;
    struct cluster *c = closure;
    atomic_store(&c->connected, true);
    pthread_mutex_lock(&c->mu); /* the thread sets up the stream */
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void
on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc, (void)sub;
    struct cluster *c = closure;
    if (err == NATS_SLOW_CONSUMER) atomic_fetch_add(&c->dropped_in, 1);
}

/* libnats' last error on this thread, without its "(file.c:N): " */
static const char *
nats_error(natsStatus s)
{
    const char *why = nats_GetLastError(NULL);
    const char *at = why && why[0] == '(' ? strstr(why, "): ") : NULL;
    if (at) why = at + 3;
    if (!why || !*why) why = s == NATS_OK ? "no server answered" : natsStatus_GetText(s);
    return why;
}

/* Why this attempt to connect failed, in the log (not every second while it lasts). */
static void
say_refused(struct cluster *c, struct refusal *r, const char *why)
{
    uint64_t now = lq_now_ms();
    if (strncmp(r->why, why, sizeof(r->why) - 1) == 0 && now - r->at_ms < REFUSAL_LOG_MS) {
        r->unlogged++;
        return;
    }
    if (r->unlogged)
        lq_log(LQ_LOG_WARNING,
               "cluster: cannot connect to NATS at %s: %s (%" PRIu64 " more failed "
               "attempts since the last line); retrying, local traffic goes on",
               c->nats_url, why, r->unlogged);
    else
        lq_log(LQ_LOG_WARNING,
               "cluster: cannot connect to NATS at %s: %s; retrying, local traffic goes on",
               c->nats_url, why);
    snprintf(r->why, sizeof(r->why), "%s", why);
    r->at_ms = now;
    r->unlogged = 0;
}

/* libnats' reconnecting thread, after each round of the servers in nats_url failed:
 * why the last attempt failed (a server down, a TLS handshake that failed) is said
 * (say_refused); then the next round after the wait. */
static int64_t
on_retry(natsConnection *nc, int attempts, void *closure)
{
    struct cluster *c = closure;
    (void)nc, (void)attempts;
    natsStatus s = NATS_OK;
    nats_GetLastError(&s); /* this thread's: its last attempt's */
    say_refused(c, &c->retry_said, nats_error(s));
    return RETRY_WAIT_MS;
}

static void
subscribe_all(struct cluster *c)
{
    for (struct interest *e = c->subscribed; e; e = e->next)
        if (natsConnection_Subscribe(&e->sub, c->nc, e->subject, cluster_on_msg, c) != NATS_OK)
            e->sub = NULL;
}

/* The first connection is made in the background (a server down at start is no
 * error); libnats reconnects it by itself. */
void
cluster_connect_nats(struct cluster *c)
{
    natsStatus s = natsConnection_Connect(&c->nc, c->opts);
    if (s == NATS_OK)
        atomic_store(&c->connected, true);
    else if (s != NATS_NOT_YET_CONNECTED)
        c->nc = NULL; /* keep_connected says why and tries again */
    /* the next ones (cluster_keep_connected) are single attempts, whose error says why */
    natsOptions_SetRetryOnFailedConnect(c->opts, false, NULL, NULL);
}

/* libnats gives a connection up for good after a server refused its credentials twice
 * in a row: then a new one is tried every REOPEN_WAIT_MS, and once it is made this
 * node subscribes to every subject again, as libnats does on reconnecting. */
void
cluster_keep_connected(struct cluster *c)
{
    if (c->nc && natsConnection_Status(c->nc) != NATS_CONN_STATUS_CLOSED) return;
    uint64_t now = lq_now_ms();
    if (now < c->next_attempt_ms) return;
    c->next_attempt_ms = now + REOPEN_WAIT_MS;
    atomic_store(&c->connected, false);
    if (c->nc) {
        for (struct interest *e = c->subscribed; e; e = e->next) {
            if (e->sub) natsSubscription_Destroy(e->sub);
            e->sub = NULL;
        }
        natsConnection_Destroy(c->nc);
        c->nc = NULL;
    }
    natsStatus s = natsConnection_Connect(&c->nc, c->opts);
    if (s != NATS_OK) {
        say_refused(c, &c->attempt_said, nats_error(s));
        c->nc = NULL;
        return;
    }
    atomic_store(&c->connected, true);
    atomic_fetch_add(&c->reconnects, 1);
    lq_log(LQ_LOG_NOTICE, "cluster: connected to NATS at %s", c->nats_url);
    c->attempt_said = (struct refusal){0}; /* the next failure is said at once */
    subscribe_all(c);
}

/* path can be read: what libnats would find out later, in its threads, is said now */
static bool
readable(const char *option, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s %s: cannot read: %s", option, path, strerror(errno));
        return false;
    }
    fclose(f);
    return true;
}

/* A .creds file holds the user's JWT and its NKey seed (libnats reads it at each
 * connection attempt, so a wrong file would only show as refused connections). */
static bool
credentials_usable(const char *path, char *err, size_t errlen)
{
    if (!readable("cluster_nats_credentials", path, err, errlen)) return false;
    FILE *f = fopen(path, "r");
    char buf[16384];
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = '\0';
    if (strstr(buf, "BEGIN NATS USER JWT") && strstr(buf, "BEGIN USER NKEY SEED")) return true;
    snprintf(err, errlen,
             "cluster_nats_credentials %s: not a NATS credentials file (a user JWT "
             "and its NKey seed)",
             path);
    return false;
}

/* The comma-separated URLs of nats_url, as libnats' list of servers (its SetURL takes
 * one URL only). */
static natsStatus
set_servers(natsOptions *o, const char *nats_url)
{
    char *copy = lq_xstrdup(nats_url), *save = NULL;
    const char **urls = lq_xcalloc(strlen(nats_url) / 2 + 1, sizeof(*urls));
    int n = 0;
    for (char *u = strtok_r(copy, ", \t", &save); u; u = strtok_r(NULL, ", \t", &save))
        urls[n++] = u;
    natsStatus s = n ? natsOptions_SetServers(o, urls, n) : NATS_INVALID_ARG;
    free(urls);
    free(copy);
    return s;
}

/* libnats' options for c, its files loaded (TLS files are read here, on the loop
 * thread: a bad one is an error at start). */
bool
cluster_make_options(struct cluster *c, const struct cluster_conf *conf, bool queue,
                     natsOptions **out, char *err, size_t errlen)
{
    if (!conf->certfile != !conf->keyfile) {
        snprintf(err, errlen, "cluster_nats_certfile and cluster_nats_keyfile go together");
        return false;
    }
    if ((conf->cafile && !readable("cluster_nats_cafile", conf->cafile, err, errlen)) ||
        (conf->certfile && !readable("cluster_nats_certfile", conf->certfile, err, errlen)) ||
        (conf->keyfile && !readable("cluster_nats_keyfile", conf->keyfile, err, errlen)) ||
        (conf->credentials && !credentials_usable(conf->credentials, err, errlen)))
        return false;
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    const char *what = "options";
    if (s == NATS_OK) s = set_servers(o, c->nats_url);
    if (s == NATS_OK) s = natsOptions_SetName(o, c->node_id);
    /* the servers in the order given: each node lists its nearest first */
    if (s == NATS_OK) s = natsOptions_SetNoRandomize(o, true);
    if (s == NATS_OK && c->username) s = natsOptions_SetUserInfo(o, c->username, c->password);
    if (s == NATS_OK && conf->credentials) {
        what = "cluster_nats_credentials";
        s = natsOptions_SetUserCredentialsFromFiles(o, conf->credentials, NULL);
    }
    /* a client certificate is for TLS too; a tls:// URL turns it on by itself */
    if (s == NATS_OK && (conf->cafile || conf->certfile)) s = natsOptions_SetSecure(o, true);
    if (s == NATS_OK && conf->cafile) {
        what = "cluster_nats_cafile";
        s = natsOptions_LoadCATrustedCertificates(o, conf->cafile);
    }
    if (s == NATS_OK && conf->certfile) {
        what = "cluster_nats_certfile/keyfile";
        s = natsOptions_LoadCertificatesChain(o, conf->certfile, conf->keyfile);
    }
    if (s == NATS_OK) what = "options";
    /* never our own messages back; but the queue connection (shared groups) hears
     * them, as this node's members take turns with the others */
    if (s == NATS_OK) s = natsOptions_SetNoEcho(o, !queue);
    if (s == NATS_OK) s = natsOptions_SetAllowReconnect(o, true);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1); /* for ever */
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, RETRY_WAIT_MS);
    if (s == NATS_OK && !queue) s = natsOptions_SetCustomReconnectDelay(o, on_retry, c);
    /* what was taken while NATS was up goes out after a reconnection, not refused */
    if (s == NATS_OK)
        s = natsOptions_SetReconnectBufSize(
            o, c->max_pending_bytes < INT_MAX ? (int)c->max_pending_bytes : INT_MAX);
    /* a server that stops reading is dropped (and reconnected to) after this: the
     * publishers held meanwhile go on, and cross-node messages are refused instead */
    if (s == NATS_OK) s = natsOptions_SetWriteDeadline(o, WRITE_DEADLINE_MS);
    /* one delivery thread for all subjects, not one per subscription */
    if (s == NATS_OK) s = natsOptions_UseGlobalMessageDelivery(o, true);
    if (s == NATS_OK && !queue) s = natsOptions_SetDisconnectedCB(o, on_disconnected, c);
    if (s == NATS_OK && !queue) s = natsOptions_SetReconnectedCB(o, on_reconnected, c);
    if (s == NATS_OK) s = natsOptions_SetErrorHandler(o, on_error, c);
    /* a server down at start is no error: connect in the background */
    if (s == NATS_OK)
        s = natsOptions_SetRetryOnFailedConnect(o, true, queue ? NULL : on_connected, c);
    if (s != NATS_OK) {
        snprintf(err, errlen, "cluster: NATS %s: %s", what, nats_error(s));
        natsOptions_Destroy(o);
        return false;
    }
    *out = o;
    return true;
}
