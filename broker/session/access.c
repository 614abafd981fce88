/* SPDX-License-Identifier: MIT
 *
 * access: the session layer's side of broker/auth/. Loads and reloads the
 * password_file and acl_file of each scope (the broker's, or each listener's with
 * per_listener_settings), decides a CONNECT (the Lua on_connect hooks, then the
 * password file, then allow_anonymous: the first definite answer wins), runs the
 * password check off the loop while the connection waits paused, and answers the
 * ACL questions of PUBLISH, SUBSCRIBE and delivery.
 *
 * Delivery is the hot path: a subscription whose every topic the client may read
 * (the usual `devices/<id>/#` under a matching rule) is marked so at SUBSCRIBE, and
 * only the others (a granted `#` in a partly denied tree) are checked per message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "auth_verify.h"
#include "hooks.h"
#include "session_int.h"

/* checks waiting for a verifier thread: past this, CONNECTs are refused as busy */
#define MAX_PENDING_CHECKS 1024

struct scope {
    struct pwfile *pw; /* NULL: no password_file */
    struct acl *acl;   /* NULL: no acl_file, every topic allowed */
    bool allow_anonymous;
};

struct access {
    struct scope *scopes; /* [0]: the broker's; [1 + i]: listener i's (per listener) */
    size_t nscopes;
    struct verifier *verifier;
};

/* A CONNECT whose password is being checked: the packet is kept to be handled again
 * once the answer is in (the connection reads nothing meanwhile). */
struct pending {
    struct verify_job job;
    struct broker *b;
    struct conn *c; /* NULL: it went away */
    struct pwfile *pw;
    uint8_t flags;
    size_t len;
    uint8_t *body; /* the CONNECT, then the password copy after it */
    /* an HTTP request's credentials (access_http): told the answer instead */
    void (*http_done)(struct conn *c, bool ok);
};

static void
scope_clear(struct scope *sc)
{
    pwfile_unref(sc->pw);
    acl_unref(sc->acl);
    memset(sc, 0, sizeof(*sc));
}

/* Load one scope's files; -1 with err when one does not load. */
static int
scope_load(struct scope *sc, const struct auth_conf *ac, char *err, size_t errlen)
{
    memset(sc, 0, sizeof(*sc));
    sc->allow_anonymous = ac->allow_anonymous;
    if (ac->password_file && !(sc->pw = pwfile_load(ac->password_file, err, errlen))) return -1;
    if (ac->acl_file && !(sc->acl = acl_load(ac->acl_file, err, errlen))) {
        scope_clear(sc);
        return -1;
    }
    return 0;
}

/* Every scope of conf c, or -1 (and nothing changed) when a file does not load. */
static int
load_scopes(const struct lq_conf *c, struct scope **out, size_t *nout, char *err, size_t errlen)
{
    size_t n = 1;
    if (c->per_listener_settings)
        for (const struct listener_conf *lc = c->listeners; lc; lc = lc->next) n++;
    struct scope *sc = lq_xcalloc(n, sizeof(*sc));
    int rc = scope_load(&sc[0], &c->auth, err, errlen);
    size_t i = 1;
    for (const struct listener_conf *lc = c->listeners; rc == 0 && i < n; lc = lc->next, i++)
        rc = scope_load(&sc[i], conf_auth(c, lc), err, errlen);
    if (rc < 0) {
        for (size_t k = 0; k < n; k++) scope_clear(&sc[k]);
        free(sc);
        return -1;
    }
    *out = sc;
    *nout = n;
    return 0;
}

static void
free_scopes(struct scope *sc, size_t n)
{
    for (size_t i = 0; i < n; i++) scope_clear(&sc[i]);
    free(sc);
}

static void
log_scopes(const struct broker *b)
{
    const struct access *a = b->access;
    for (size_t i = 0; i < a->nscopes; i++) {
        const struct scope *sc = &a->scopes[i];
        if (i == 0 && a->nscopes > 1) continue; /* per listener: the broker's is unused */
        char where[32] = "";
        if (i) snprintf(where, sizeof(where), "listener %zu: ", i);
        lq_log(LQ_LOG_NOTICE, "%sallow_anonymous %s; password_file: %zu users; acl_file: %zu rules",
               where, sc->allow_anonymous ? "true" : "false", sc->pw ? pwfile_count(sc->pw) : 0,
               sc->acl ? acl_rule_count(sc->acl) : 0);
    }
}

int
access_open(struct broker *b, char *err, size_t errlen)
{
    struct access *a = lq_xcalloc(1, sizeof(*a));
    b->access = a;
    if (load_scopes(&b->conf, &a->scopes, &a->nscopes, err, errlen) < 0) return -1;
    bool passwords = false;
    for (size_t i = 0; i < a->nscopes; i++) passwords |= a->scopes[i].pw != NULL;
    if (passwords && !(a->verifier = verifier_new(b->base, MAX_PENDING_CHECKS))) {
        snprintf(err, errlen, "password_file: cannot start the password check threads");
        return -1;
    }
    log_scopes(b);
    return 0;
}

void
access_close(struct broker *b)
{
    struct access *a = b->access;
    if (!a) return;
    verifier_free(a->verifier); /* pending CONNECTs are dropped (their conns are gone) */
    free_scopes(a->scopes, a->nscopes);
    free(a);
    b->access = NULL;
}

/* The scope of a connection: its listener's with per_listener_settings, else the
 * broker's (and the broker's for a session read back with no connection). */
static const struct scope *
scope_of(const struct broker *b, const struct conn *c)
{
    const struct access *a = b->access;
    if (a->nscopes == 1 || !c) return &a->scopes[0];
    const struct listener *l = conn_listener(c);
    for (size_t i = 0; i < b->nlisteners && i + 1 < a->nscopes; i++)
        if (b->listeners[i] == l) return &a->scopes[i + 1];
    return &a->scopes[0];
}

/* ---- the ACL of a session ---- */

/* Which of s's subscriptions need a check per message, with s->acl as it is now. */
static void
classify_subscriptions(struct session *s)
{
    struct broker *b = s->b;
    for (uint32_t i = 0; i < s->nsubs; i++) {
        struct ssub *x = &s->subs[i];
        bool check = s->acl &&
                     acl_check_subscribe(s->acl, x->filter, strlen(x->filter), NULL) != ACL_SUB_ALL;
        if (x->o.acl_check == check) continue;
        x->o.acl_check = check;
        topic_tree_add(b->subs, x->filter, strlen(x->filter), x->group,
                       x->group ? strlen(x->group) : 0, s, &x->o);
    }
}

void
access_bind(struct session *s)
{
    const struct scope *sc = scope_of(s->b, s->conn);
    acl_client_free(s->acl);
    /* a bridge's local side is the broker's own: no rules (mosquitto's local_username
     * is refused by the configuration) */
    s->acl = sc->acl && !s->bridge ? acl_client_new(sc->acl, s->username, s->id) : NULL;
    classify_subscriptions(s);
}

void
access_unbind(struct session *s)
{
    acl_client_free(s->acl);
    s->acl = NULL;
}

bool
access_may_publish(struct session *s, const char *topic, size_t len)
{
    if (!s->acl || acl_check(s->acl, topic, len, ACL_WRITE, NULL)) return true;
    s->b->ctr.acl_denied_publish++;
    if (lq_log_enabled(LQ_LOG_INFO))
        session_log(s, LQ_LOG_INFO, "publish to \"%.*s\" denied by acl_file",
                    (int)(len > 200 ? 200 : len), topic);
    return false;
}

bool
access_may_receive(struct session *s, const char *topic, size_t len)
{
    if (!s->acl || acl_check(s->acl, topic, len, ACL_READ, NULL)) return true;
    s->b->ctr.acl_denied_delivery++;
    return false;
}

uint8_t
access_subscribe(struct session *s, const char *asked, size_t alen, const char *filter, size_t len,
                 uint8_t qos, bool *check)
{
    struct broker *b = s->b;
    *check = false;
    if (hooks_have_on_subscribe(b->hooks)) {
        struct hook_client cl = {.id = s->id,
                                 .username = s->username,
                                 .address = s->conn ? conn_peer(s->conn) : "",
                                 .version = s->version,
                                 .cert = s->conn ? conn_tls_identity(s->conn) : NULL,
                                 .listener =
                                     s->conn ? listener_name(conn_listener(s->conn)) : NULL};
        struct hook_auth_result r;
        hooks_on_subscribe(b->hooks, &cl, asked, alen, qos, &r); /* with $share/G/ */
        if (r.verdict == HOOK_AUTH_DENY) {
            b->ctr.acl_denied_subscribe++;
            session_log(s, LQ_LOG_NOTICE, "subscribe \"%.*s\" refused: hook %s %s (0x%02x)",
                        (int)(len > 200 ? 200 : len), filter, r.hook,
                        r.failed ? "failed" : "said no", r.code);
            return r.code;
        }
        if (r.verdict == HOOK_AUTH_ALLOW) {
            /* granted; what it delivers is still the ACL file's to say */
            *check = s->acl && acl_check_subscribe(s->acl, filter, len, NULL) != ACL_SUB_ALL;
            return r.qos < qos ? r.qos : qos;
        }
    }
    if (!s->acl) return qos;
    const char *why = NULL;
    switch (acl_check_subscribe(s->acl, filter, len, &why)) {
    case ACL_SUB_NONE:
        b->ctr.acl_denied_subscribe++;
        session_log(s, LQ_LOG_NOTICE,
                    "subscribe \"%.*s\" refused: no topic it matches is readable (%s)",
                    (int)(len > 200 ? 200 : len), filter, why ? why : "no rule");
        return MQTT_RC_NOT_AUTHORIZED;
    case ACL_SUB_SOME: *check = true; return qos;
    case ACL_SUB_ALL: return qos;
    }
    return qos;
}

/* ---- CONNECT ---- */

static void
verified(struct verify_job *j)
{
    struct pending *p = (struct pending *)j;
    struct broker *b = p->b;
    if (p->c) conn_set_aux(p->c, NULL);
    /* a conn closed meanwhile (no CONNECT within the timeout: the queue was long) waits
     * for its on_free: nothing more for it */
    if (p->c && !j->cancelled && !conn_is_closing(p->c) && p->http_done) {
        if (j->ok)
            b->ctr.auth_ok++;
        else
            b->ctr.auth_bad_password++;
        p->http_done(p->c, j->ok); /* it resumes the conn: the request is read again */
    } else if (p->c && !j->cancelled && !conn_is_closing(p->c)) {
        conn_resume(p->c);
        if (j->ok) {
            b->ctr.auth_ok++;
            handle_connect_authenticated(b, p->c, p->flags, p->body, p->len);
        } else {
            b->ctr.auth_bad_password++;
            handle_connect_refuse(b, p->c, p->flags, p->body, p->len,
                                  MQTT_RC_BAD_USERNAME_OR_PASSWORD, "bad username or password");
        }
    }
    pwfile_unref(p->pw);
    free(p->body);
    free(p);
}

void
access_conn_gone(struct broker *b, struct conn *c)
{
    struct pending *p = conn_aux(c);
    if (!p) return;
    conn_set_aux(c, NULL);
    p->c = NULL;
    verifier_cancel(b->access->verifier, &p->job);
}

/* p (made, its job filled) to the verifier threads: PENDING, the conn paused until
 * verified(); or REFUSE (server busy) and p freed. rc may be NULL. */
static enum access_verdict
submit_check(struct broker *b, struct conn *c, struct pending *p, uint8_t *rc, const char **why)
{
    struct access *a = b->access;
    if (!a->verifier || !verifier_submit(a->verifier, &p->job)) {
        pwfile_unref(p->pw);
        free(p->body);
        free(p);
        b->ctr.auth_busy++;
        if (rc) *rc = MQTT_RC_SERVER_BUSY;
        *why = "too many password checks waiting";
        return ACCESS_REFUSE;
    }
    conn_pause(c); /* what follows (a CONNECT's packets, the HTTP request) waits for it */
    conn_set_aux(c, p);
    return ACCESS_PENDING;
}

/* The on_connect hooks' answer: ALLOW, REFUSE (rc, may be NULL, and why), or PENDING
 * for no opinion (the files decide). */
static enum access_verdict
ask_hooks(struct broker *b, const struct hook_connect *hc, uint8_t *rc, const char **why)
{
    struct hook_auth_result r;
    hooks_on_connect(b->hooks, hc, &r);
    if (r.verdict == HOOK_AUTH_ALLOW) {
        b->ctr.auth_ok++;
        return ACCESS_ALLOW;
    }
    if (r.verdict == HOOK_AUTH_NONE) return ACCESS_PENDING;
    b->ctr.auth_hook_refused++;
    static char by[300]; /* read at once by the caller */
    snprintf(by, sizeof(by), "%s hook %s", r.failed ? "failed" : "refused by", r.hook);
    if (rc) *rc = r.code;
    *why = by;
    return ACCESS_REFUSE;
}

static enum access_verdict
check_password(struct broker *b, struct conn *c, const struct scope *sc,
               const struct mqtt_connect *ck, uint8_t flags, const uint8_t *body, size_t len,
               uint8_t *rc, const char **why)
{
    struct pending *p = lq_xcalloc(1, sizeof(*p));
    size_t plen = ck->has_password ? ck->password.len : 0;
    p->b = b;
    p->c = c;
    p->pw = pwfile_ref(sc->pw);
    p->flags = flags;
    p->len = len;
    p->body = lq_xmalloc(len); /* the username and password lie in it, as decoded */
    memcpy(p->body, body, len);
    p->job.file = p->pw;
    p->job.user = (const char *)p->body + (ck->username.p - body);
    p->job.ulen = ck->username.len;
    p->job.password = plen ? p->body + (ck->password.p - body) : p->body;
    p->job.len = plen;
    p->job.done = verified;
    /* no password: checked anyway against no user, not to answer faster */
    if (!ck->has_password) p->job.ulen = 0;
    return submit_check(b, c, p, rc, why);
}

enum access_verdict
access_connect(struct broker *b, struct conn *c, const struct mqtt_connect *ck, const char *id,
               size_t idlen, const char *cert_user, uint8_t flags, const uint8_t *body, size_t len,
               uint8_t *rc, const char **why)
{
    const struct scope *sc = scope_of(b, c);
    if (hooks_have_on_connect(b->hooks)) {
        struct hook_connect hc = {
            .id = id,
            .id_len = idlen,
            .username = cert_user ? cert_user : (const char *)ck->username.p,
            .username_len = cert_user ? strlen(cert_user) : ck->username.len,
            .has_username = cert_user || ck->has_username,
            .password = ck->password.p,
            .password_len = ck->password.len,
            .has_password = ck->has_password,
            .address = conn_peer(c),
            .version = ck->version,
            .cert = conn_tls_identity(c),
            .listener = listener_name(conn_listener(c)),
        };
        enum access_verdict v = ask_hooks(b, &hc, rc, why);
        if (v != ACCESS_PENDING) return v;
    }
    if (cert_user) return ACCESS_ALLOW; /* the verified certificate names it */
    if (ck->has_username) {
        if (sc->pw) return check_password(b, c, sc, ck, flags, body, len, rc, why);
        return ACCESS_ALLOW; /* no password_file: a username is not checked (as mosquitto) */
    }
    if (sc->allow_anonymous) return ACCESS_ALLOW;
    b->ctr.auth_anonymous_refused++;
    *rc = MQTT_RC_NOT_AUTHORIZED;
    *why = "anonymous clients not allowed";
    return ACCESS_REFUSE;
}

/* ---- HTTP requests (http_api.c) ---- */

enum access_verdict
access_http(struct broker *b, struct conn *c, const struct http_credentials *cr,
            void (*done)(struct conn *c, bool ok), const char **why)
{
    const struct scope *sc = scope_of(b, c);
    if (hooks_have_on_connect(b->hooks)) {
        char id[80];
        snprintf(id, sizeof(id), "http:%s", conn_peer(c));
        const char *user = cr->cert_user ? cr->cert_user : cr->user;
        struct hook_connect hc = {
            .id = id,
            .id_len = strlen(id),
            .username = user,
            .username_len = user ? strlen(user) : 0,
            .has_username = user != NULL,
            .password = cr->password,
            .password_len = cr->password_len,
            .has_password = cr->password != NULL,
            .address = conn_peer(c),
            .version = MQTT_V5,
            .cert = conn_tls_identity(c),
            .listener = listener_name(conn_listener(c)),
        };
        enum access_verdict v = ask_hooks(b, &hc, NULL, why);
        if (v != ACCESS_PENDING) return v;
    }
    if (cr->cert_user) return ACCESS_ALLOW;
    if (cr->user) {
        if (!sc->pw) return ACCESS_ALLOW; /* as for MQTT: no password_file, no check */
        size_t ulen = strlen(cr->user), plen = cr->password ? cr->password_len : 0;
        struct pending *p = lq_xcalloc(1, sizeof(*p));
        p->b = b;
        p->c = c;
        p->pw = pwfile_ref(sc->pw);
        p->http_done = done;
        p->len = ulen + plen;
        p->body = lq_xmalloc(p->len + 1);
        memcpy(p->body, cr->user, ulen);
        if (plen) memcpy(p->body + ulen, cr->password, plen);
        p->job = (struct verify_job){.file = p->pw,
                                     .user = (const char *)p->body,
                                     .ulen = cr->password ? ulen : 0,
                                     .password = p->body + ulen,
                                     .len = plen,
                                     .done = verified};
        return submit_check(b, c, p, NULL, why);
    }
    if (sc->allow_anonymous) return ACCESS_ALLOW;
    b->ctr.auth_anonymous_refused++;
    *why = "anonymous clients not allowed";
    return ACCESS_REFUSE;
}

bool
access_has_password_file(const struct broker *b, const struct conn *c)
{
    return scope_of(b, c)->pw != NULL;
}

struct acl_client *
access_http_acl(struct broker *b, struct conn *c, const char *user, const char *id)
{
    const struct scope *sc = scope_of(b, c);
    return sc->acl ? acl_client_new(sc->acl, user, id) : NULL;
}

/* ---- lunamq-ctl acl check ---- */

int
access_explain(struct broker *b, const char *user, const char *id, const char *topic, bool write,
               const char **why)
{
    const struct scope *sc = &b->access->scopes[0];
    *why = NULL;
    if (!sc->acl) return -1;
    struct acl_client *ac = acl_client_new(sc->acl, user && *user ? user : NULL, id);
    bool ok = acl_check(ac, topic, strlen(topic), write ? ACL_WRITE : ACL_READ, why);
    acl_client_free(ac);
    return ok;
}

/* ---- reload ---- */

void
access_bind_all(struct broker *b)
{
    for (size_t i = 0; i < b->nbuckets; i++)
        for (struct session *s = b->buckets[i]; s; s = s->hnext) access_bind(s);
}

void
access_reload(struct broker *b, const struct lq_conf *nc)
{
    struct access *a = b->access;
    struct scope *sc;
    size_t n;
    char err[512];
    if (load_scopes(nc, &sc, &n, err, sizeof(err)) < 0) {
        lq_log(LQ_LOG_ERR, "reload: %s: the previous password and ACL rules stay", err);
        return;
    }
    bool passwords = false;
    for (size_t i = 0; i < n; i++) passwords |= sc[i].pw != NULL;
    if (passwords && !a->verifier && !(a->verifier = verifier_new(b->base, MAX_PENDING_CHECKS))) {
        lq_log(LQ_LOG_ERR, "reload: cannot start the password check threads: previous rules stay");
        free_scopes(sc, n);
        return;
    }
    free_scopes(a->scopes, a->nscopes);
    a->scopes = sc;
    a->nscopes = n;
    log_scopes(b);
    access_bind_all(b); /* new rules for every client from its next packet */
}
