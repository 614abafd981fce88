/* SPDX-License-Identifier: MIT
 *
 * metrics_http: the /metrics endpoint. One request per connection (Connection:
 * close), GET or HEAD, no body. libevent's evhttp was used before; it lets a client
 * send endless headers (3.1 GB in 20 s) and has no absolute deadline nor connection
 * cap in 2.1, so this is a small server whose every resource is bounded (issue 11.9). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "admin_int.h"
#include "lq.h"
#include "net.h"
#include "sbuf.h"

#define HTTP_MAX_HEADER  8192       /* request line and headers */
#define HTTP_TIMEOUT_MS  5000       /* from accept to the reply, whatever the client sends */
#define HTTP_MAX_CONNS   16         /* at once; a scraper needs one */
#define HTTP_MAX_DISCARD (64 << 10) /* read and dropped after the reply, before closing */

struct http_conn {
    struct metrics_http *m;
    struct bufferevent *bev;
    struct event *deadline;
    struct http_conn *prev, *next;
    size_t scanned;   /* bytes of input searched for the end of the headers */
    size_t discarded; /* after the reply */
    bool replied;
    bool peer_done; /* EOF after the request: close once the reply is out */
    char peer[64];
};

struct metrics_http {
    struct evconnlistener *evl;
    struct accept_backoff *backoff;
    struct http_conn *conns;
    unsigned nconns;
    void (*page)(void *arg, struct sbuf *out);
    void *arg;
    struct lq_log_limit log; /* refused requests */
};

static void
conn_free(struct http_conn *hc)
{
    struct metrics_http *m = hc->m;
    if (hc->prev)
        hc->prev->next = hc->next;
    else
        m->conns = hc->next;
    if (hc->next) hc->next->prev = hc->prev;
    m->nconns--;
    event_free(hc->deadline);
    bufferevent_free(hc->bev); /* closes the socket */
    free(hc);
}

static void
refused(struct http_conn *hc, const char *why)
{
    lq_log_limited(&hc->m->log, LQ_LOG_NOTICE, "metrics: %s: %s", hc->peer, why);
}

/* ---- after the reply: let it leave, then close ---- */

static void
discard_cb(struct bufferevent *bev, void *arg)
{
    struct http_conn *hc = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    hc->discarded += evbuffer_get_length(in);
    evbuffer_drain(in, evbuffer_get_length(in));
    if (hc->discarded > HTTP_MAX_DISCARD) conn_free(hc);
}

/* All written: say so with a FIN, and close when the client does (the deadline
 * closes it otherwise). Closing at once could reset the reply on its way. */
static void
sent_cb(struct bufferevent *bev, void *arg)
{
    struct http_conn *hc = arg;
    if (hc->peer_done) {
        conn_free(hc);
        return;
    }
    shutdown(bufferevent_getfd(bev), SHUT_WR);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct http_conn *hc = arg;
    if ((what & BEV_EVENT_EOF) && hc->replied &&
        evbuffer_get_length(bufferevent_get_output(bev))) { /* the client only half-closed */
        hc->peer_done = true;
        bufferevent_disable(bev, EV_READ);
        return;
    }
    conn_free(hc); /* an error, or EOF with nothing more to send */
}

static void
respond(struct http_conn *hc, int code, const char *reason, const char *extra, const char *body,
        size_t len, bool head_only)
{
    struct evbuffer *out = bufferevent_get_output(hc->bev);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                        "Connection: close\r\n\r\n",
                        code, reason,
                        code == 200 ? "text/plain; version=0.0.4; charset=utf-8"
                                    : "text/plain; charset=utf-8",
                        len, extra);
    if (!head_only) evbuffer_add(out, body, len);
    hc->replied = true;
    bufferevent_setcb(hc->bev, discard_cb, sent_cb, event_cb, hc);
    discard_cb(hc->bev, hc); /* what followed the headers */
}

static void
respond_text(struct http_conn *hc, int code, const char *reason, const char *extra,
             const char *text)
{
    respond(hc, code, reason, extra, text, strlen(text), false);
}

/* ---- the request ---- */

/* The value of header `name` ("content-length") in the header lines, or NULL. */
static const char *
header(const char *lines, const char *name)
{
    size_t n = strlen(name);
    for (const char *l = lines; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
        if (strncasecmp(l, name, n) == 0 && l[n] == ':') {
            l += n + 1;
            while (*l == ' ' || *l == '\t') l++;
            return l;
        }
    }
    return NULL;
}

/* head: the request line and headers, NUL-terminated. */
static void
handle(struct http_conn *hc, char *head)
{
    char *sp1 = strchr(head, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    char *eol = strchr(head, '\n');
    if (!sp1 || !sp2 || !eol || sp2 > eol || strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
        refused(hc, "400: not an HTTP/1.x request");
        return respond_text(hc, 400, "Bad Request", "", "bad request\n");
    }
    *sp1 = *sp2 = '\0';
    const char *method = head, *target = sp1 + 1, *lines = eol + 1;
    bool get = strcmp(method, "GET") == 0, head_only = strcmp(method, "HEAD") == 0;
    if (!get && !head_only) {
        refused(hc, "405: only GET and HEAD");
        return respond_text(hc, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n",
                            "only GET and HEAD\n");
    }
    const char *cl = header(lines, "content-length");
    if ((cl && strtoull(cl, NULL, 10) != 0) || header(lines, "transfer-encoding")) {
        refused(hc, "413: a request with a body");
        return respond_text(hc, 413, "Content Too Large", "", "no request body here\n");
    }
    if (strcmp(target, "/metrics") != 0 && strncmp(target, "/metrics?", 9) != 0)
        return respond_text(hc, 404, "Not Found", "", "only /metrics here\n");
    struct sbuf page = {0};
    hc->m->page(hc->m->arg, &page);
    respond(hc, 200, "OK", "", page.p ? page.p : "", page.len, head_only);
    sbuf_free(&page);
}

/* Where the headers end (after the empty line), or 0 when not yet. */
static size_t
headers_end(const char *p, size_t len, size_t from)
{
    for (size_t i = from; i + 1 < len; i++) {
        if (p[i] != '\n') continue;
        if (p[i + 1] == '\n') return i + 2;
        if (p[i + 1] == '\r' && i + 2 < len && p[i + 2] == '\n') return i + 3;
    }
    return 0;
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
    struct http_conn *hc = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    const char *p = (const char *)evbuffer_pullup(in, -1);
    size_t end = headers_end(p, len, hc->scanned > 2 ? hc->scanned - 2 : 0);
    hc->scanned = len;
    if (!end || end > HTTP_MAX_HEADER) {
        if (len < HTTP_MAX_HEADER) return;
        refused(hc, "431: headers over 8 KiB");
        return respond_text(hc, 431, "Request Header Fields Too Large", "",
                            "request headers over 8 KiB\n");
    }
    char head[HTTP_MAX_HEADER + 1];
    memcpy(head, p, end);
    head[end] = '\0';
    evbuffer_drain(in, end);
    handle(hc, head);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct http_conn *hc = arg;
    if (!hc->replied) {
        static const char late[] = "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n"
                                   "Connection: close\r\n\r\n";
        send(bufferevent_getfd(hc->bev), late, sizeof(late) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        refused(hc, "408: no whole request in 5 s");
    }
    conn_free(hc);
}

/* ---- accepting ---- */

static void
peer_name(const struct sockaddr *sa, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in4->sin_addr, ip, sizeof(ip));
        port = ntohs(in4->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        port = ntohs(in6->sin6_port);
    }
    snprintf(out, outlen, "%s:%u", ip, port);
}

static void
accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    (void)salen;
    struct metrics_http *m = arg;
    char peer[64];
    peer_name(sa, peer, sizeof(peer));
    if (m->nconns >= HTTP_MAX_CONNS) {
        static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                   "Connection: close\r\n\r\n";
        send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        evutil_closesocket(fd);
        lq_log_limited(&m->log, LQ_LOG_NOTICE, "metrics: %s: 503: %d connections already", peer,
                       HTTP_MAX_CONNS);
        return;
    }
    struct event_base *base = evconnlistener_get_base(evl);
    struct http_conn *hc = lq_xcalloc(1, sizeof(*hc));
    hc->m = m;
    memcpy(hc->peer, peer, sizeof(peer));
    hc->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    hc->deadline = evtimer_new(base, deadline_cb, hc);
    if (!hc->bev || !hc->deadline) {
        if (hc->bev)
            bufferevent_free(hc->bev);
        else
            evutil_closesocket(fd);
        if (hc->deadline) event_free(hc->deadline);
        free(hc);
        return;
    }
    hc->next = m->conns;
    if (m->conns) m->conns->prev = hc;
    m->conns = hc;
    m->nconns++;
    struct timeval tv = {HTTP_TIMEOUT_MS / 1000, (HTTP_TIMEOUT_MS % 1000) * 1000};
    if (evtimer_add(hc->deadline, &tv) < 0) { /* no deadline: do not serve it */
        lq_log(LQ_LOG_ERR, "metrics: cannot arm a request deadline: closing");
        conn_free(hc);
        return;
    }
    bufferevent_setwatermark(hc->bev, EV_READ, 0, HTTP_MAX_HEADER); /* reads stop there */
    bufferevent_setcb(hc->bev, read_cb, NULL, event_cb, hc);
    bufferevent_enable(hc->bev, EV_READ | EV_WRITE);
}

static void
accept_error_cb(struct evconnlistener *evl, void *arg)
{
    (void)evl;
    struct metrics_http *m = arg;
    accept_backoff_failed(m->backoff);
}

struct metrics_http *
metrics_http_new(struct event_base *base, const char *host, uint16_t port,
                 void (*page)(void *arg, struct sbuf *out), void *arg)
{
    struct metrics_http *m = lq_xcalloc(1, sizeof(*m));
    m->page = page;
    m->arg = arg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%u", port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        lq_log(LQ_LOG_ERR, "metrics_listener %s:%u: %s", host, port, gai_strerror(rc));
        free(m);
        return NULL;
    }
    m->evl = evconnlistener_new_bind(
        base, accept_cb, m, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 16,
        res->ai_addr, (int)res->ai_addrlen);
    freeaddrinfo(res);
    if (!m->evl) {
        lq_log(LQ_LOG_ERR, "metrics_listener %s:%u: %s", host, port, strerror(errno));
        free(m);
        return NULL;
    }
    m->backoff = accept_backoff_new(m->evl, "metrics_listener");
    evconnlistener_set_error_cb(m->evl, accept_error_cb);
    return m;
}

void
metrics_http_free(struct metrics_http *m)
{
    if (!m) return;
    while (m->conns) conn_free(m->conns);
    evconnlistener_free(m->evl);
    accept_backoff_free(m->backoff);
    free(m);
}
