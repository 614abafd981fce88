/* SPDX-License-Identifier: MIT
 *
 * http_api: what an http_listener answers, for applications that speak HTTP rather
 * than MQTT. `POST /publish/<topic>?qos=1&retain=true` publishes the body as payload
 * (Content-Type becomes the content type, each `X-User-Property: name=value` a user
 * property), through the acl_file and the hooks like any client's message;
 * `GET /retained/<topic>` returns a retained message; `GET /` is the dashboard
 * (its figures: `GET /api/dashboard`). The answer is the MQTT reason code as JSON. A QoS 1/2 answer
 * leaves once the message is durable (persistence).
 *
 * Who: HTTP Basic against the password_file (checked off the loop, once per
 * connection and credentials), or the client certificate's name, or anonymous
 * as allow_anonymous says; on_connect hooks first, as for MQTT. The framing and its
 * bounds are httpd's (broker/http/server.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>

#include "admin.h"
#include "auth.h"
#include "cluster.h"
#include "hooks.h"
#include "httpd.h"
#include "retain.h"
#include "sbuf.h"
#include "session_int.h"

#define HTTP_MAX_HEADER  8192
#define HTTP_MAX_BODY    (16u << 20) /* and max_packet_size, message_size_limit */
#define HTTP_DEADLINE_MS 10000       /* for each request, from accept or the last answer */
#define HTTP_MAX_CONNS   256         /* per http_listener */
#define MAX_CRED         512         /* user:password, decoded */

struct http_client {
    struct httpd_conn *h;
    char *auth;     /* the Authorization value last checked ("": none) */
    bool checking;  /* its password is being checked */
    bool known, ok; /* the answer for it */
    char *user;     /* the user it names, NULL: anonymous */
    char id[80];    /* "http:<peer>": the client id hooks and the acl_file see */
    struct acl_client *acl;
    bool upgraded; /* to a WebSocket (/mqtt): freed once httpd_feed is done with it */
};

static void
json_reply(struct conn *c, int status, int rc, const char *reason, const char *extra, bool keep)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "{\"reason_code\": %d, \"reason\": \"%s\"}\n", rc, reason);
    httpd_respond(c, status, "application/json", body, (size_t)n, extra, keep);
}

/* ---- who ---- */

static void
forget_auth(struct http_client *hc)
{
    free(hc->auth);
    free(hc->user);
    acl_client_free(hc->acl);
    hc->auth = hc->user = NULL;
    hc->acl = NULL;
    hc->known = hc->ok = hc->checking = false;
}

static void
password_checked(struct conn *c, bool ok)
{
    struct http_client *hc = conn_owner(c);
    hc->checking = false;
    hc->known = true;
    hc->ok = ok;
    conn_resume(c); /* the request is read again, with the answer known */
}

/* "Basic base64(user:password)" into cred (NUL-split); false when malformed. */
static bool
basic_credentials(const char *authz, char *cred, size_t cap, struct http_credentials *cr)
{
    if (strncasecmp(authz, "Basic ", 6) != 0) return false;
    size_t n = 0;
    const char *b64 = authz + 6;
    if (mbedtls_base64_decode((unsigned char *)cred, cap - 1, &n, (const unsigned char *)b64,
                              strlen(b64)) != 0)
        return false;
    cred[n] = '\0';
    char *colon = memchr(cred, ':', n);
    if (!colon || strlen(cred) < (size_t)(colon - cred)) return false; /* no NUL in the user */
    *colon = '\0';
    cr->user = cred;
    cr->password = colon + 1;
    cr->password_len = n - (size_t)(colon + 1 - cred);
    return true;
}

/* Is the request's sender let in? false: answered, or waiting (*waits). */
static bool
authenticated(struct broker *b, struct conn *c, struct http_client *hc,
              const struct httpd_request *rq, bool *waits)
{
    const char *authz = httpd_header(rq, "authorization");
    const char *key = authz ? authz : "";
    *waits = false;
    if (hc->auth && strcmp(hc->auth, key) == 0) {
        if (hc->checking) {
            *waits = true;
            return false;
        }
        if (hc->known && hc->ok) return true;
        if (hc->known) {
            json_reply(c, 401, MQTT_RC_BAD_USERNAME_OR_PASSWORD, "bad user name or password",
                       "WWW-Authenticate: Basic realm=\"lunamq\"\r\n", false);
            return false;
        }
    }
    forget_auth(hc);
    hc->auth = lq_xstrdup(key);
    char cred[MAX_CRED];
    struct http_credentials cr = {0};
    const char *cu = conn_tls_username(c);
    cr.cert_user = cu && *cu ? cu : NULL;
    if (authz && !basic_credentials(authz, cred, sizeof(cred), &cr)) {
        json_reply(c, 400, MQTT_RC_MALFORMED_PACKET, "malformed Authorization (Basic only)", NULL,
                   false);
        return false;
    }
    const char *why = "";
    enum access_verdict v = access_http(b, c, &cr, password_checked, &why);
    const char *user = cr.cert_user ? cr.cert_user : cr.user;
    hc->user = user ? lq_xstrdup(user) : NULL;
    if (v == ACCESS_PENDING) {
        hc->checking = true;
        *waits = true;
        return false;
    }
    hc->known = true;
    hc->ok = v == ACCESS_ALLOW;
    if (hc->ok) return true;
    lq_log(LQ_LOG_NOTICE, "http %s: refused: %s", conn_peer(c), why);
    json_reply(c, 401, MQTT_RC_NOT_AUTHORIZED, why, "WWW-Authenticate: Basic realm=\"lunamq\"\r\n",
               false);
    return false;
}

/* ---- what ---- */

/* The topic after prefix in the path, decoded into out (cap); NULL when invalid. */
static const char *
topic_of(const char *path, const char *prefix, char *out, size_t cap)
{
    size_t pl = strlen(prefix), n = strlen(path);
    if (strncmp(path, prefix, pl) != 0 || n - pl >= cap) return NULL;
    long len = httpd_unescape(path + pl, n - pl, out);
    if (len <= 0 || !topic_name_is_valid(out, (size_t)len)) return NULL;
    return out;
}

/* Content-Type and X-User-Property headers as MQTT 5 properties (valid UTF-8). */
static bool
props_of(const struct httpd_request *rq, struct sbuf *p)
{
    for (size_t i = 0; i < rq->nheaders; i++) {
        const struct httpd_header *h = &rq->headers[i];
        bool ct = strcmp(h->name, "content-type") == 0;
        if (!ct && strcmp(h->name, "x-user-property") != 0) continue;
        const char *v = h->value, *eq = ct ? NULL : strchr(v, '=');
        size_t vl = strlen(v);
        if (!mqtt_utf8_is_valid((const uint8_t *)v, vl) || (!ct && !eq)) return false;
        if (ct) {
            uint8_t hdr[3] = {MQTT_PROP_CONTENT_TYPE, (uint8_t)(vl >> 8), (uint8_t)vl};
            sbuf_put(p, (const char *)hdr, 3);
            sbuf_put(p, v, vl);
            continue;
        }
        size_t kl = (size_t)(eq - v), rl = vl - kl - 1;
        uint8_t hdr[3] = {MQTT_PROP_USER_PROPERTY, (uint8_t)(kl >> 8), (uint8_t)kl};
        sbuf_put(p, (const char *)hdr, 3);
        sbuf_put(p, v, kl);
        uint8_t vh[2] = {(uint8_t)(rl >> 8), (uint8_t)rl};
        sbuf_put(p, (const char *)vh, 2);
        sbuf_put(p, eq + 1, rl);
    }
    return true;
}

static void
publish(struct broker *b, struct conn *c, struct http_client *hc, const struct httpd_request *rq)
{
    char topic[4096], qs[16], rs[16];
    bool keep = rq->keep_alive;
    if (!topic_of(rq->path, "/publish/", topic, sizeof(topic))) {
        json_reply(c, 400, MQTT_RC_TOPIC_NAME_INVALID, "not a valid topic name", NULL, keep);
        return;
    }
    size_t tlen = strlen(topic);
    const char *q = httpd_query_param(rq->query, "qos", qs, sizeof(qs));
    const char *r = httpd_query_param(rq->query, "retain", rs, sizeof(rs));
    if ((q && strcmp(q, "0") && strcmp(q, "1") && strcmp(q, "2")) ||
        (r && strcmp(r, "true") && strcmp(r, "false") && strcmp(r, "1") && strcmp(r, "0"))) {
        json_reply(c, 400, MQTT_RC_PROTOCOL_ERROR, "qos is 0, 1 or 2; retain true or false", NULL,
                   keep);
        return;
    }
    uint8_t qos = q ? (uint8_t)(q[0] - '0') : 0;
    bool retain = r && (r[0] == 't' || r[0] == '1');
    if (topic_is_too_deep(topic, tlen, b->conf.max_topic_levels)) {
        json_reply(c, 400, MQTT_RC_TOPIC_NAME_INVALID, "too many topic levels", NULL, keep);
        return;
    }
    if (topic_is_sys(topic, tlen)) {
        b->ctr.dropped_sys_topic++;
        json_reply(c, 403, MQTT_RC_NOT_AUTHORIZED, "$SYS topics are the broker's", NULL, keep);
        return;
    }
    if (retain && !b->conf.retain_available) {
        json_reply(c, 400, MQTT_RC_RETAIN_NOT_SUPPORTED, "retain not supported", NULL, keep);
        return;
    }
    if (b->conf.message_size_limit && rq->body_len > b->conf.message_size_limit) {
        b->ctr.dropped_oversize++;
        json_reply(c, 413, MQTT_RC_PACKET_TOO_LARGE, "over message_size_limit", NULL, keep);
        return;
    }
    if (hc->acl && !acl_check(hc->acl, topic, tlen, ACL_WRITE, NULL)) {
        b->ctr.acl_denied_publish++;
        json_reply(c, 403, MQTT_RC_NOT_AUTHORIZED, "not authorised by acl_file", NULL, keep);
        return;
    }
    /* subscribers over their queue bound hold MQTT publishers back: HTTP ones retry */
    if (b->nslow || cluster_over(b->cluster)) {
        json_reply(c, 503, MQTT_RC_SERVER_BUSY, "held back: subscribers are behind",
                   "Retry-After: 1\r\n", keep);
        return;
    }
    struct sbuf props = {0};
    if (!props_of(rq, &props)) {
        sbuf_free(&props);
        json_reply(c, 400, MQTT_RC_MALFORMED_PACKET,
                   "Content-Type and X-User-Property (name=value) must be UTF-8", NULL, keep);
        return;
    }
    uint64_t since = persist_seq(b);
    struct msg_init in = {.topic = topic,
                          .topic_len = tlen,
                          .payload = rq->body,
                          .payload_len = rq->body_len,
                          .props = (const uint8_t *)props.p,
                          .props_len = props.len,
                          .qos = qos,
                          .retain = retain};
    struct msg *m = msg_new(&in);
    sbuf_free(&props);
    b->ctr.msgs_received++;
    b->ctr.received_qos[qos]++;
    b->ctr.http_publishes++;
    struct hook_client cl = {.id = hc->id,
                             .username = hc->user,
                             .address = conn_peer(c),
                             .version = MQTT_V5,
                             .cert = conn_tls_identity(c),
                             .listener = listener_name(conn_listener(c))};
    struct route_result rr;
    uint8_t refused = broker_publish(b, m, NULL, &cl, NULL, DELIVER_NO_HOLD, &rr);
    msg_unref(m);
    if (refused) {
        json_reply(c, 403, refused, "refused by a hook", NULL, keep);
        return;
    }
    if (qos) persist_gate_conn(b, c, since); /* the answer leaves once it is durable */
    if (rr.quota_exceeded)
        json_reply(c, 503, MQTT_RC_QUOTA_EXCEEDED, "a subscriber's queue is full",
                   "Retry-After: 1\r\n", keep);
    else if (rr.no_subscriber)
        json_reply(c, 200, MQTT_RC_NO_MATCHING_SUBSCRIBERS, "no matching subscribers", NULL, keep);
    else
        json_reply(c, 200, MQTT_RC_SUCCESS, "success", NULL, keep);
}

static void
get_retained(struct broker *b, struct conn *c, struct http_client *hc,
             const struct httpd_request *rq)
{
    char topic[4096];
    bool keep = rq->keep_alive;
    if (!topic_of(rq->path, "/retained/", topic, sizeof(topic))) {
        json_reply(c, 400, MQTT_RC_TOPIC_NAME_INVALID, "not a valid topic name", NULL, keep);
        return;
    }
    size_t tlen = strlen(topic);
    if (hc->acl && !acl_check(hc->acl, topic, tlen, ACL_READ, NULL)) {
        json_reply(c, 403, MQTT_RC_NOT_AUTHORIZED, "not authorised by acl_file", NULL, keep);
        return;
    }
    struct msg *m = retain_get(b->retained, topic, tlen);
    if (!m) {
        json_reply(c, 404, MQTT_RC_NO_MATCHING_SUBSCRIBERS, "no retained message", NULL, keep);
        return;
    }
    char extra[64];
    snprintf(extra, sizeof(extra), "X-MQTT-QoS: %u\r\n", m->qos);
    struct mqtt_props mp;
    char ctype[256] = "application/octet-stream";
    uint64_t any = ~(uint64_t)0;
    if (m->props_len && mqtt_decode_props(m->props, m->props_len, any, &mp) == 0 &&
        (mp.present & MQTT_PBIT(MQTT_PROP_CONTENT_TYPE)) && mp.content_type.len < sizeof(ctype) &&
        !memchr(mp.content_type.p, '\r', mp.content_type.len) &&
        !memchr(mp.content_type.p, '\n', mp.content_type.len)) {
        memcpy(ctype, mp.content_type.p, mp.content_type.len);
        ctype[mp.content_type.len] = '\0';
    }
    httpd_respond(c, 200, ctype, m->payload, m->payload_len, extra, keep);
}

/* Is c's http_listener on a loopback address, as configured? */
static bool
on_loopback(const struct conn *c)
{
    const char *n = listener_name(conn_listener(c));
    return strncmp(n, "127.", 4) == 0 || strncmp(n, "[::1]:", 6) == 0 ||
           strncmp(n, "::1:", 4) == 0 || strncmp(n, "localhost:", 10) == 0;
}

/* GET / and GET /api/dashboard: read only. Exposed beyond loopback, only to a user of
 * the password_file (or a client certificate's), whatever allow_anonymous says. */
static void
dashboard(struct broker *b, struct conn *c, struct http_client *hc, const struct httpd_request *rq)
{
    bool keep = rq->keep_alive;
    if (!on_loopback(c)) {
        const char *cu = conn_tls_username(c);
        bool by_cert = cu && *cu && hc->user && strcmp(cu, hc->user) == 0;
        if (!by_cert && !access_has_password_file(b, c)) {
            json_reply(c, 403, MQTT_RC_NOT_AUTHORIZED,
                       "the dashboard beyond loopback needs a password_file", NULL, false);
            return;
        }
        if (!hc->user) {
            json_reply(c, 401, MQTT_RC_NOT_AUTHORIZED,
                       "the dashboard needs a login (password_file) beyond loopback",
                       "WWW-Authenticate: Basic realm=\"lunamq\"\r\n", false);
            return;
        }
    }
    if (strcmp(rq->path, "/") == 0) {
        httpd_respond(c, 200, "text/html; charset=utf-8", lq_dashboard_html,
                      (size_t)(lq_dashboard_html_end - lq_dashboard_html),
                      "Cache-Control: no-cache\r\nX-Frame-Options: DENY\r\n", keep);
        return;
    }
    struct sbuf out = {0};
    admin_dashboard_json(b->admin, &out);
    httpd_respond(c, 200, "application/json", out.p, out.len, "Cache-Control: no-store\r\n", keep);
    sbuf_free(&out);
}

/* GET /mqtt with an upgrade (EMQX's path): MQTT over WebSockets from here on, as on
 * a `protocol websockets` listener; the CONNECT is checked as any other. */
static void
websocket(struct broker *b, struct conn *c, struct http_client *hc, const struct httpd_request *rq)
{
    const char *why = "";
    int status = conn_ws_upgrade(c, rq, &why);
    if (status != 101) {
        lq_log(LQ_LOG_NOTICE, "http %s: websocket upgrade refused (%d): %s", conn_peer(c), status,
               why);
        conn_close(c);
        return;
    }
    hc->upgraded = true;
    conn_set_owner(c, NULL);
    if (!broker_conn_ops.on_accept(c, b)) conn_close(c);
}

static bool
handle(void *ud, struct conn *c, const struct httpd_request *rq)
{
    struct broker *b = ud;
    struct http_client *hc = conn_owner(c);
    b->ctr.http_requests++;
    bool is_pub = strncmp(rq->path, "/publish/", 9) == 0;
    bool is_ret = strncmp(rq->path, "/retained/", 10) == 0;
    bool is_dash = strcmp(rq->path, "/") == 0 || strcmp(rq->path, "/api/dashboard") == 0;
    if (strcmp(rq->path, "/mqtt") == 0) {
        websocket(b, c, hc, rq);
        return true;
    }
    if (is_dash) {
        if (strcmp(rq->method, "GET") != 0) {
            json_reply(c, 405, MQTT_RC_PROTOCOL_ERROR, "GET only", "Allow: GET\r\n",
                       rq->keep_alive);
            return true;
        }
        bool waits;
        if (!authenticated(b, c, hc, rq, &waits)) return !waits;
        dashboard(b, c, hc, rq);
        conn_set_deadline(c, HTTP_DEADLINE_MS);
        return true;
    }
    if (!is_pub && !is_ret) {
        json_reply(c, 404, MQTT_RC_TOPIC_NAME_INVALID,
                   "POST /publish/<topic> or GET /retained/<topic>", NULL, rq->keep_alive);
        return true;
    }
    if (strcmp(rq->method, is_pub ? "POST" : "GET") != 0) {
        json_reply(c, 405, MQTT_RC_PROTOCOL_ERROR, is_pub ? "POST only" : "GET only",
                   is_pub ? "Allow: POST\r\n" : "Allow: GET\r\n", rq->keep_alive);
        return true;
    }
    bool waits;
    if (!authenticated(b, c, hc, rq, &waits)) return !waits;
    if (!hc->acl && hc->known && !hc->checking) hc->acl = access_http_acl(b, c, hc->user, hc->id);
    if (is_pub)
        publish(b, c, hc, rq);
    else
        get_retained(b, c, hc, rq);
    conn_set_deadline(c, HTTP_DEADLINE_MS); /* for the next request on this connection */
    return true;
}

/* ---- connection events ---- */

static void
client_free(struct broker *b, struct conn *c, struct http_client *hc)
{
    (void)b;
    if (conn_owner(c) == hc) conn_set_owner(c, NULL);
    forget_auth(hc);
    httpd_conn_free(hc->h);
    free(hc);
}

static size_t
on_bytes(struct conn *c, const uint8_t *p, size_t len, void *ud)
{
    struct broker *b = ud;
    struct http_client *hc = conn_owner(c);
    uint32_t mp = broker_max_packet(b);
    struct httpd_limits lim = {.max_header = HTTP_MAX_HEADER,
                               .max_body = mp < HTTP_MAX_BODY ? mp : HTTP_MAX_BODY};
    size_t took = httpd_feed(hc->h, c, p, len, &lim, handle, b);
    if (hc->upgraded) client_free(b, c, hc);
    return took;
}

static bool
on_accept(struct conn *c, void *ud)
{
    struct broker *b = ud;
    if (b->shutting_down) return false;
    if (listener_conn_count(conn_listener(c)) > HTTP_MAX_CONNS) {
        lq_log_limited(&b->sys_publish_log, LQ_LOG_NOTICE,
                       "http %s: refused: %d connections on this http_listener", conn_peer(c),
                       HTTP_MAX_CONNS);
        return false;
    }
    struct http_client *hc = lq_xcalloc(1, sizeof(*hc));
    hc->h = httpd_conn_new();
    snprintf(hc->id, sizeof(hc->id), "http:%s", conn_peer(c));
    conn_set_owner(c, hc);
    conn_set_max_packet(c, HTTP_MAX_HEADER + HTTP_MAX_BODY);
    conn_set_deadline(c, HTTP_DEADLINE_MS);
    return true;
}

static void
on_oversize(struct conn *c, uint32_t size, void *ud)
{
    if (conn_is_websocket(c)) {
        broker_conn_ops.on_oversize(c, size, ud);
        return;
    }
    json_reply(c, 413, MQTT_RC_PACKET_TOO_LARGE, "request too large", NULL, false);
}

static void
on_drain(struct conn *c, void *ud)
{
    if (conn_is_websocket(c)) broker_conn_ops.on_drain(c, ud);
}

static void
on_deadline(struct conn *c, void *ud)
{
    if (conn_is_websocket(c)) {
        broker_conn_ops.on_keepalive(c, ud);
        return;
    }
    json_reply(c, 408, MQTT_RC_KEEP_ALIVE_TIMEOUT, "request not complete in time", NULL, false);
}

static void
on_lost(struct conn *c, const char *why, void *ud)
{
    if (conn_is_websocket(c)) broker_conn_ops.on_lost(c, why, ud);
}

static void
on_free(struct conn *c, void *ud)
{
    if (conn_is_websocket(c)) {
        broker_conn_ops.on_free(c, ud);
        return;
    }
    struct http_client *hc = conn_owner(c);
    access_conn_gone(ud, c); /* its password may be being checked */
    if (hc) client_free(ud, c, hc);
}

/* after an upgrade to a WebSocket at /mqtt: packets, as on an MQTT listener */
static void
on_packet(struct conn *c, uint8_t type_flags, const uint8_t *body, size_t len, void *ud)
{
    broker_conn_ops.on_packet(c, type_flags, body, len, ud);
}

static void
on_malformed(struct conn *c, void *ud)
{
    broker_conn_ops.on_malformed(c, ud);
}

const struct conn_ops http_api_ops = {
    .on_accept = on_accept,
    .on_bytes = on_bytes,
    .on_packet = on_packet,
    .on_malformed = on_malformed,
    .on_oversize = on_oversize,
    .on_drain = on_drain,
    .on_keepalive = on_deadline,
    .on_lost = on_lost,
    .on_free = on_free,
};
