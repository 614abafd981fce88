/* SPDX-License-Identifier: MIT
 *
 * httpc: outgoing HTTP on the broker's loop. One curl multi handle (and so one
 * connection cache) per httpc, driven by libevent: curl says which sockets to watch
 * (on_socket: one struct event each, kept with curl_multi_assign) and when to call
 * back (on_timer: one timer event); every libevent callback hands the readiness to
 * curl_multi_socket_action, then completes what curl reports done (dispatch). Done
 * callbacks therefore run only from the loop, never from httpc_start.
 *
 * Owns the transfers in flight and their buffers. The allow list is checked on curl's
 * own parse of the URL, and that parsed handle (CURLOPT_CURLU) is what curl fetches.
 * Not here: what a hook may ask (hook/), retries, cookies, redirects, proxies. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "httpc.h"
#include "lq.h"

#define MAX_HEADERS      100        /* response headers kept; more is an error */
#define MAX_HEADER_BYTES (16 << 10) /* their names and values */
#define MAX_CONNECTS     32         /* idle connections curl keeps for reuse */

/* The parts of an http(s) URL the allow list compares, as curl's parser gives them:
 * scheme lower-cased, default port applied, dot segments removed. */
struct url_parts {
    char *scheme, *host, *port, *path;
};

struct settings { /* httpc_conf with defaults applied and the prefixes parsed */
    struct url_parts *allow;
    size_t nallow;
    char *cafile;
    uint32_t connect_timeout_ms, timeout_ms;
    size_t max_response, max_request;
    unsigned max_transfers;
};

struct httpc {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    struct settings set;
    struct httpc_xfer *xfers; /* in flight */
    struct httpc_stats stats;
    bool dispatching; /* done callbacks running: httpc_free must wait for them */
    bool freeing;
};

enum xfer_abort { ABORT_NONE, ABORT_TOO_LARGE, ABORT_HEADERS };

struct httpc_xfer {
    struct httpc *hc;
    struct httpc_xfer *prev, *next;
    CURL *easy;
    CURLU *url;
    struct curl_slist *headers;
    httpc_done_fn done;
    void *ud;
    size_t max_response;
    char *body;
    size_t body_len, body_cap;
    char *hdr; /* "name\0value\0" per header of the latest response */
    size_t hdr_len, hdr_cap, nhdr;
    enum xfer_abort abort;
    bool finishing; /* its callback is running: httpc_cancel must not free it */
    char errbuf[CURL_ERROR_SIZE];
};

static const char *const result_names[] = {"ok", "timeout", "connect", "tls", "too_large", "error"};

const char *
httpc_result_name(enum httpc_result r)
{
    return (unsigned)r <= HTTPC_ERROR ? result_names[r] : "?";
}

static void
oom(void)
{
    lq_log(LQ_LOG_ERR, "httpc: out of memory in libcurl");
    abort();
}

static void __attribute__((format(printf, 3, 4)))
seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- URLs and the allow list ---- */

static void
parts_free(struct url_parts *p)
{
    curl_free(p->scheme), curl_free(p->host), curl_free(p->port), curl_free(p->path);
    *p = (struct url_parts){0};
}

static bool
has_part(CURLU *u, CURLUPart what)
{
    char *s = NULL;
    bool has = curl_url_get(u, what, &s, 0) == CURLUE_OK;
    curl_free(s);
    return has;
}

/* NULL with err unless url is an absolute http(s) URL without user info. */
static CURLU *
parse_url(const char *url, struct url_parts *p, char *err, size_t errlen)
{
    *p = (struct url_parts){0};
    CURLU *u = curl_url();
    CURLUcode rc = u ? curl_url_set(u, CURLUPART_URL, url, 0) : CURLUE_OUT_OF_MEMORY;
    if (rc) {
        seterr(err, errlen, "not an http(s) URL: %s", curl_url_strerror(rc));
        goto fail;
    }
    curl_url_get(u, CURLUPART_SCHEME, &p->scheme, 0);
    curl_url_get(u, CURLUPART_HOST, &p->host, 0);
    curl_url_get(u, CURLUPART_PORT, &p->port, CURLU_DEFAULT_PORT);
    curl_url_get(u, CURLUPART_PATH, &p->path, 0);
    if (!p->scheme || !p->host || !p->port || !p->path ||
        (strcmp(p->scheme, "http") != 0 && strcmp(p->scheme, "https") != 0)) {
        seterr(err, errlen, "not an http(s) URL");
        goto fail;
    }
    /* "http://allowed:80@elsewhere/" names the host elsewhere: refuse any user info */
    if (has_part(u, CURLUPART_USER) || has_part(u, CURLUPART_PASSWORD) ||
        has_part(u, CURLUPART_OPTIONS)) {
        seterr(err, errlen, "user info in the URL");
        goto fail;
    }
    return u;
fail:
    parts_free(p);
    curl_url_cleanup(u);
    return NULL;
}

/* curl removes "." and ".." segments but keeps what a server may still read as them or
 * as a separator: %2e, %2f, %5c, %00, a back slash, "..;" (Tomcat). Refused rather than
 * guessed at. */
static bool
path_is_ambiguous(const char *path)
{
    static const char *const encoded[] = {"2e", "2f", "5c", "00"};
    for (const char *p = path; *p; p++) {
        if (*p == '\\') return true;
        for (size_t i = 0; *p == '%' && i < sizeof(encoded) / sizeof(*encoded); i++)
            if (strncasecmp(p + 1, encoded[i], 2) == 0) return true;
        size_t n = *p == '/' ? strcspn(p + 1, "/;") : 0;
        if (n && n <= 2 && p[1 + n] == ';' && strncmp(p + 1, "..", n) == 0) return true;
    }
    return false;
}

static bool
prefix_matches(const struct url_parts *a, const struct url_parts *u)
{
    size_t n = strlen(a->path);
    if (strcmp(a->scheme, u->scheme) != 0 || strcasecmp(a->host, u->host) != 0 ||
        strcmp(a->port, u->port) != 0 || strncmp(a->path, u->path, n) != 0)
        return false;
    /* "/api" allows "/api" and "/api/x", not "/apix" (the query is not in the path) */
    return n == 0 || a->path[n - 1] == '/' || u->path[n] == '\0' || u->path[n] == '/';
}

/* The parsed URL when allowed, else NULL with err. */
static CURLU *
check_url(const struct settings *set, const char *url, char *err, size_t errlen)
{
    struct url_parts p;
    CURLU *u = parse_url(url ? url : "", &p, err, errlen);
    if (!u) return NULL;
    bool ok = false;
    if (path_is_ambiguous(p.path))
        seterr(err, errlen, "encoded dots or slashes in the path");
    else {
        for (size_t i = 0; i < set->nallow && !ok; i++) ok = prefix_matches(&set->allow[i], &p);
        if (!ok) seterr(err, errlen, "not in hook_http_allow");
    }
    parts_free(&p);
    if (!ok) curl_url_cleanup(u), u = NULL;
    return u;
}

static void
settings_fini(struct settings *s)
{
    for (size_t i = 0; i < s->nallow; i++) parts_free(&s->allow[i]);
    free(s->allow);
    free(s->cafile);
    *s = (struct settings){0};
}

static bool
settings_load(struct settings *s, const struct httpc_conf *c, char *err, size_t errlen)
{
    *s = (struct settings){
        .cafile = c->cafile ? lq_xstrdup(c->cafile) : NULL,
        .connect_timeout_ms = c->connect_timeout_ms ? c->connect_timeout_ms : 5000,
        .timeout_ms = c->timeout_ms ? c->timeout_ms : 30000,
        .max_response = c->max_response ? c->max_response : 1 << 20,
        .max_request = c->max_request ? c->max_request : 1 << 20,
        .max_transfers = c->max_transfers ? c->max_transfers : 256,
    };
    s->allow = lq_xcalloc(c->nallow ? c->nallow : 1, sizeof(*s->allow));
    for (; s->nallow < c->nallow; s->nallow++) {
        char why[200];
        CURLU *u = parse_url(c->allow[s->nallow], &s->allow[s->nallow], why, sizeof(why));
        bool parsed = u,
             extra = u && (has_part(u, CURLUPART_QUERY) || has_part(u, CURLUPART_FRAGMENT));
        curl_url_cleanup(u);
        if (!parsed || extra) {
            seterr(err, errlen, "hook_http_allow \"%s\": %s", c->allow[s->nallow],
                   parsed ? "a prefix has no query or fragment" : why);
            s->nallow += parsed; /* its parts to free */
            settings_fini(s);
            return false;
        }
    }
    return true;
}

bool
httpc_allowed(const struct httpc *hc, const char *url, char *err, size_t errlen)
{
    CURLU *u = check_url(&hc->set, url, err, errlen);
    curl_url_cleanup(u);
    return u != NULL;
}

/* ---- transfers ---- */

static void
xfer_free(struct httpc_xfer *x)
{
    curl_easy_cleanup(x->easy); /* the connection stays in the multi's cache */
    curl_url_cleanup(x->url);
    curl_slist_free_all(x->headers);
    free(x->body);
    free(x->hdr);
    free(x);
}

static void
xfer_unlink(struct httpc_xfer *x)
{
    struct httpc *hc = x->hc;
    if (x->prev)
        x->prev->next = x->next;
    else
        hc->xfers = x->next;
    if (x->next) x->next->prev = x->prev;
    curl_multi_remove_handle(hc->multi, x->easy); /* drops its pending done message too */
    hc->stats.in_flight--;
}

/* *buf holds at least need bytes. */
static void
reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    *buf = lq_xrealloc(*buf, c);
    *cap = c;
}

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
    struct httpc_xfer *x = arg;
    size_t len = size * n;
    if (len > x->max_response - x->body_len) {
        x->abort = ABORT_TOO_LARGE;
        return 0; /* curl ends the transfer with CURLE_WRITE_ERROR */
    }
    reserve(&x->body, &x->body_cap, x->body_len + len + 1); /* +1: httpc_response's NUL */
    memcpy(x->body + x->body_len, p, len);
    x->body_len += len;
    return len;
}

/* One header line at a time, status lines included. */
static size_t
on_header(char *p, size_t size, size_t n, void *arg)
{
    struct httpc_xfer *x = arg;
    size_t all = size * n, len = all;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) { /* a new response (after a 100?) */
        x->hdr_len = x->nhdr = 0;
        return all;
    }
    while (len && (p[len - 1] == '\r' || p[len - 1] == '\n')) len--;
    bool fold = len && (p[0] == ' ' || p[0] == '\t'); /* obs-fold: more of the last value */
    const char *colon = fold ? NULL : memchr(p, ':', len);
    if (fold ? !x->nhdr : !colon || colon == p) return all; /* not a header line: ignored */
    const char *v = fold ? p : colon + 1, *end = p + len;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t')) end--;
    size_t nlen = fold ? 0 : (size_t)(colon - p), vlen = (size_t)(end - v);
    size_t need = fold ? vlen + 1 : nlen + vlen + 2;
    if ((!fold && x->nhdr == MAX_HEADERS) || need > MAX_HEADER_BYTES - x->hdr_len) {
        x->abort = ABORT_HEADERS;
        return 0;
    }
    reserve(&x->hdr, &x->hdr_cap, x->hdr_len + need);
    char *w = x->hdr + x->hdr_len;
    if (fold) {
        w[-1] = ' '; /* was the last value's NUL */
    } else {
        for (size_t i = 0; i < nlen; i++) w[i] = (char)tolower((unsigned char)p[i]);
        w[nlen] = '\0';
        w += nlen + 1;
        x->nhdr++;
    }
    memcpy(w, v, vlen);
    w[vlen] = '\0';
    x->hdr_len += need;
    return all;
}

static bool
is_one_of(CURLcode rc, const CURLcode *codes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rc == codes[i]) return true;
    return false;
}

static enum httpc_result
result_of(const struct httpc_xfer *x, CURLcode rc)
{
    static const CURLcode connect[] = {CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_CONNECT,
                                       CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLE_GOT_NOTHING};
    /* what our options can lead to: no CRL, pinning, client certificate or engine */
    static const CURLcode tls[] = {CURLE_SSL_CONNECT_ERROR,  CURLE_PEER_FAILED_VERIFICATION,
                                   CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CERTPROBLEM,
                                   CURLE_SSL_CIPHER,         CURLE_SSL_SHUTDOWN_FAILED};
    if (rc == CURLE_OK) return HTTPC_OK;
    if (rc == CURLE_OPERATION_TIMEDOUT) return HTTPC_TIMEOUT;
    if (rc == CURLE_FILESIZE_EXCEEDED || x->abort == ABORT_TOO_LARGE) return HTTPC_TOO_LARGE;
    if (is_one_of(rc, connect, sizeof(connect) / sizeof(*connect))) return HTTPC_CONNECT;
    if (is_one_of(rc, tls, sizeof(tls) / sizeof(*tls))) return HTTPC_TLS;
    return HTTPC_ERROR;
}

/* Report x to its owner and free it. */
static void
finish(struct httpc_xfer *x, CURLcode rc)
{
    struct httpc *hc = x->hc;
    struct httpc_response r = {.result = result_of(x, rc), .body = "", .nheaders = x->nhdr};
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r.status);
    curl_off_t us = 0;
    curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME_T, &us);
    r.elapsed_us = us > 0 ? (uint64_t)us : 0;
    if (r.result == HTTPC_TOO_LARGE)
        r.error = "response body over max_response";
    else if (x->abort == ABORT_HEADERS)
        r.error = "response headers over 100 or 16 KiB";
    else if (rc != CURLE_OK)
        r.error = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
    if (r.result == HTTPC_OK && x->body) {
        x->body[x->body_len] = '\0';
        r.body = x->body, r.body_len = x->body_len;
    }
    struct httpc_header *h = lq_xcalloc(x->nhdr ? x->nhdr : 1, sizeof(*h));
    for (size_t i = 0, off = 0; i < x->nhdr; i++) {
        h[i].name = x->hdr + off, off += strlen(h[i].name) + 1;
        h[i].value = x->hdr + off, off += strlen(h[i].value) + 1;
    }
    r.headers = h;
    xfer_unlink(x); /* first: the callback may start another transfer */
    hc->stats.completed++;
    hc->stats.by_result[r.result]++;
    x->finishing = true;
    x->done(x->ud, &r);
    free(h);
    xfer_free(x);
}

static void
destroy(struct httpc *hc)
{
    curl_multi_cleanup(hc->multi); /* closes cached connections: on_socket frees their events */
    event_free(hc->timer);
    settings_fini(&hc->set);
    free(hc);
}

/* After curl_multi_socket_action: complete what is done. hc may be freed on return. */
static void
dispatch(struct httpc *hc)
{
    CURLMsg *m;
    int left;
    hc->dispatching = true;
    while (!hc->freeing && (m = curl_multi_info_read(hc->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        char *x = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &x);
        finish((struct httpc_xfer *)(void *)x, m->data.result); /* m is invalid from here */
    }
    hc->dispatching = false;
    if (hc->freeing) destroy(hc); /* httpc_free from a callback */
}

/* ---- curl on libevent ---- */

static void
socket_ready(evutil_socket_t fd, short what, void *arg)
{
    struct httpc *hc = arg;
    int running,
        flags = (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
    curl_multi_socket_action(hc->multi, fd, flags, &running);
    dispatch(hc);
}

static void
timer_fired(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct httpc *hc = arg;
    int running;
    curl_multi_socket_action(hc->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    dispatch(hc);
}

/* curl's CURLMOPT_SOCKETFUNCTION: watch s for what, or stop watching it. */
static int
on_socket(CURL *easy, curl_socket_t s, int what, void *arg, void *sockp)
{
    (void)easy;
    struct httpc *hc = arg;
    struct event *ev = sockp;
    if (what == CURL_POLL_REMOVE) {
        event_free(ev); /* NULL is a no-op; curl forgets sockp itself */
        return 0;
    }
    short kind =
        EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    if (ev) {
        event_del(ev);
        event_assign(ev, hc->base, s, kind, socket_ready, hc);
    } else {
        ev = event_new(hc->base, s, kind, socket_ready, hc);
        if (!ev) return -1;
        curl_multi_assign(hc->multi, s, ev);
    }
    return event_add(ev, NULL);
}

/* curl's CURLMOPT_TIMERFUNCTION: call back in ms (0: from the loop, at once), or never. */
static int
on_timer(CURLM *multi, long ms, void *arg)
{
    (void)multi;
    struct httpc *hc = arg;
    if (ms < 0) return event_del(hc->timer);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return event_add(hc->timer, &tv);
}

/* ---- requests ---- */

static bool
is_token(const char *s)
{
    if (!*s) return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s)) return false;
    return true;
}

static void
append(struct httpc_xfer *x, const char *line)
{
    struct curl_slist *l = curl_slist_append(x->headers, line);
    if (!l) oom();
    x->headers = l;
}

/* curl's list: "name: value", or "name;" for an empty value ("name:" would drop it). */
static bool
build_headers(struct httpc_xfer *x, const struct httpc_request *rq, char *err, size_t errlen)
{
    append(x, "Expect:"); /* no 100-continue wait before a body */
    for (size_t i = 0; i < rq->nheaders; i++) {
        const char *name = rq->headers[i].name, *value = rq->headers[i].value;
        value = value ? value : "";
        bool bad_value = false; /* CR, LF or another control: no line of its own */
        for (const unsigned char *c = (const unsigned char *)value; *c; c++)
            bad_value |= (*c < 0x20 && *c != '\t') || *c == 0x7f;
        if (!name || !is_token(name) || bad_value) {
            seterr(err, errlen, "bad request header \"%s\"", name ? name : "");
            return false;
        }
        /* the body's framing is curl's: another length would let a hook smuggle a request */
        if (strcasecmp(name, "content-length") == 0 || strcasecmp(name, "transfer-encoding") == 0) {
            seterr(err, errlen, "request header \"%s\" is set by httpc", name);
            return false;
        }
        size_t n = strlen(name) + strlen(value) + 3;
        char *line = lq_xmalloc(n);
        snprintf(line, n, *value ? "%s: %s" : "%s;%s", name, value);
        append(x, line);
        free(line);
    }
    return true;
}

/* The canonical method, or NULL. */
static const char *
method_of(const struct httpc_request *rq)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"};
    if (!rq->method) return rq->body ? "POST" : "GET";
    for (size_t i = 0; i < sizeof(methods) / sizeof(*methods); i++)
        if (strcasecmp(rq->method, methods[i]) == 0) return methods[i];
    return NULL;
}

/* Everything httpc_start can refuse before a transfer exists. */
static CURLU *
check_request(struct httpc *hc, const struct httpc_request *rq, const char **method, char *err,
              size_t errlen)
{
    const struct settings *set = &hc->set;
    *method = method_of(rq);
    if (hc->freeing)
        seterr(err, errlen, "shut down");
    else if (hc->stats.in_flight >= set->max_transfers)
        seterr(err, errlen, "busy");
    else if (!*method)
        seterr(err, errlen, "method \"%s\" not supported", rq->method);
    else if ((rq->body || rq->body_len) && (!strcmp(*method, "GET") || !strcmp(*method, "HEAD")))
        seterr(err, errlen, "%s takes no body", *method);
    else if (rq->body_len && !rq->body)
        seterr(err, errlen, "body_len without a body");
    else if (rq->body_len > set->max_request)
        seterr(err, errlen, "request body over max_request (%zu > %zu)", rq->body_len,
               set->max_request);
    else
        return check_url(set, rq->url, err, errlen);
    return NULL;
}

struct httpc_xfer *
httpc_start(struct httpc *hc, const struct httpc_request *rq, httpc_done_fn done, void *ud,
            char *err, size_t errlen)
{
    const char *method;
    const struct settings *set = &hc->set;
    CURLU *url = check_request(hc, rq, &method, err, errlen);
    if (!url) {
        hc->stats.refused++;
        return NULL;
    }
    struct httpc_xfer *x = lq_xmalloc(sizeof(*x));
    *x = (struct httpc_xfer){.hc = hc,
                             .url = url,
                             .done = done,
                             .ud = ud,
                             .max_response = set->max_response,
                             .easy = curl_easy_init()};
    if (!x->easy) oom();
    if (!build_headers(x, rq, err, errlen)) {
        xfer_free(x);
        hc->stats.refused++;
        return NULL;
    }
    uint32_t timeout =
        rq->timeout_ms && rq->timeout_ms < set->timeout_ms ? rq->timeout_ms : set->timeout_ms;
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_CURLU, url); /* what check_url allowed, not a re-parse */
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* the allow list names where requests go */
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)set->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (set->cafile) curl_easy_setopt(e, CURLOPT_CAINFO, set->cafile);
    if (strcmp(method, "HEAD") != 0) /* curl would judge HEAD by the length it announces */
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)set->max_response);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "lunamq/" LUNAMQ_VERSION);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    if (rq->body || strcmp(method, "POST") == 0) { /* size first: the body may hold NULs */
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
        curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, rq->body ? (const char *)rq->body : "");
    }
    CURLMcode mc = curl_multi_add_handle(hc->multi, e); /* arms the timer: nothing runs yet */
    if (mc != CURLM_OK) {
        seterr(err, errlen, "%s", curl_multi_strerror(mc));
        xfer_free(x);
        hc->stats.refused++;
        return NULL;
    }
    x->next = hc->xfers;
    if (x->next) x->next->prev = x;
    hc->xfers = x;
    hc->stats.started++;
    hc->stats.in_flight++;
    return x;
}

void
httpc_cancel(struct httpc_xfer *x)
{
    if (!x || x->finishing) return; /* in its own callback: freed on return */
    xfer_unlink(x);
    xfer_free(x);
}

/* ---- the client ---- */

struct httpc *
httpc_new(struct event_base *base, const struct httpc_conf *c, char *err, size_t errlen)
{
    static bool curl_ready; /* one loop, one thread: no race */
    if (!curl_ready && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        seterr(err, errlen, "curl_global_init failed");
        return NULL;
    }
    curl_ready = true;
    struct httpc *hc = lq_xcalloc(1, sizeof(*hc));
    hc->base = base;
    if (!settings_load(&hc->set, c, err, errlen)) {
        free(hc);
        return NULL;
    }
    hc->multi = curl_multi_init();
    hc->timer = evtimer_new(base, timer_fired, hc);
    if (!hc->multi || !hc->timer) oom();
    curl_multi_setopt(hc->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(hc->multi, CURLMOPT_SOCKETDATA, hc);
    curl_multi_setopt(hc->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(hc->multi, CURLMOPT_TIMERDATA, hc);
    curl_multi_setopt(hc->multi, CURLMOPT_MAXCONNECTS, (long)MAX_CONNECTS);
    return hc;
}

void
httpc_free(struct httpc *hc)
{
    if (!hc || hc->freeing) return;
    while (hc->xfers) httpc_cancel(hc->xfers);
    hc->freeing = true;
    if (!hc->dispatching) destroy(hc); /* else dispatch() does, after the callback */
}

bool
httpc_configure(struct httpc *hc, const struct httpc_conf *c, char *err, size_t errlen)
{
    struct settings set;
    if (!settings_load(&set, c, err, errlen)) return false;
    settings_fini(&hc->set);
    hc->set = set;
    return true;
}

void
httpc_get_stats(const struct httpc *hc, struct httpc_stats *out)
{
    *out = hc->stats;
}
