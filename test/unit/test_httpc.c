/* SPDX-License-Identifier: MIT
 *
 * httpc against an evhttp server on 127.0.0.1 (an ephemeral port) on the same
 * event_base: round trips with every method, headers both ways, no redirects,
 * deadlines, refused connections, a TLS handshake with a server that does not speak
 * it, size limits, the allow list and its classic escapes, busy, cancel and free with
 * transfers in flight, and connection reuse (counted by the peer ports the server
 * sees). Every run of the loop is bounded. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "httpc.h"
#include "lq.h"
#include "suites.h"
#include "testloop.h"

#define MAX_RESPONSE 4096

/* ---- the test server ---- */

struct server {
    struct evhttp *http;
    uint16_t port;
    unsigned requests;
    uint16_t peer_ports[64]; /* distinct client ports: one per connection */
    unsigned npeers;
};

static const char *
method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_HEAD: return "HEAD";
    default: return "?";
    }
}

static void
seen(struct server *s, struct evhttp_request *req)
{
    char *addr;
    ev_uint16_t port;
    evhttp_connection_get_peer(evhttp_request_get_connection(req), &addr, &port);
    s->requests++;
    for (unsigned i = 0; i < s->npeers; i++)
        if (s->peer_ports[i] == port) return;
    ck_assert_uint_lt(s->npeers, 64);
    s->peer_ports[s->npeers++] = port;
}

/* Method, X-Test and Expect in headers, the request body as the body when it fits. */
static void
on_echo(struct evhttp_request *req, void *arg)
{
    seen(arg, req);
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    const char *x = evhttp_find_header(in, "X-Test"), *expect = evhttp_find_header(in, "Expect");
    evhttp_add_header(out, "X-Method", method_name(evhttp_request_get_command(req)));
    evhttp_add_header(out, "X-Echo", x ? x : "(none)");
    evhttp_add_header(out, "X-Expect", expect ? expect : "(none)");
    evhttp_add_header(out, "Content-Type", "text/plain");
    struct evbuffer *b = evbuffer_new();
    if (evbuffer_get_length(evhttp_request_get_input_buffer(req)) <= MAX_RESPONSE)
        evbuffer_add_buffer(b, evhttp_request_get_input_buffer(req));
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

static void
on_slow(struct evhttp_request *req, void *arg)
{
    seen(arg, req); /* and never answered: evhttp_free ends it */
}

/* A body of *(size_t *) bytes, with its length announced or in chunks. */
static void
send_sized(struct evhttp_request *req, size_t n, bool chunked)
{
    struct evbuffer *b = evbuffer_new();
    for (size_t i = 0; i < n; i++) evbuffer_add(b, "x", 1);
    if (!chunked) {
        evhttp_send_reply(req, 200, "OK", b);
    } else {
        evhttp_send_reply_start(req, 200, "OK");
        evhttp_send_reply_chunk(req, b);
        evhttp_send_reply_end(req);
    }
    evbuffer_free(b);
}

static void
on_big(struct evhttp_request *req, void *arg)
{
    seen(arg, req);
    send_sized(req, 3 * MAX_RESPONSE, false);
}

static void
on_big_chunked(struct evhttp_request *req, void *arg)
{
    seen(arg, req);
    send_sized(req, 3 * MAX_RESPONSE, true);
}

static void
on_fits(struct evhttp_request *req, void *arg)
{
    seen(arg, req);
    send_sized(req, MAX_RESPONSE, true);
}

static void
on_redirect(struct evhttp_request *req, void *arg)
{
    seen(arg, req);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Location", "/echo");
    evhttp_send_reply(req, 302, "Found", NULL);
}

static void
on_many_headers(struct evhttp_request *req, void *arg)
{
    seen(arg, req);
    for (int i = 0; i < 150; i++) {
        char name[16];
        snprintf(name, sizeof(name), "X-H-%d", i);
        evhttp_add_header(evhttp_request_get_output_headers(req), name, "v");
    }
    evhttp_send_reply(req, 200, "OK", NULL);
}

static void
on_other(struct evhttp_request *req, void *arg)
{
    seen(arg, req);
    evhttp_send_reply(req, 404, "Not Found", NULL);
}

static void
server_start(struct server *s, struct event_base *base)
{
    memset(s, 0, sizeof(*s));
    s->http = evhttp_new(base);
    ck_assert_ptr_nonnull(s->http);
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD);
    evhttp_set_cb(s->http, "/echo", on_echo, s);
    evhttp_set_cb(s->http, "/api/echo", on_echo, s);
    evhttp_set_cb(s->http, "/slow", on_slow, s);
    evhttp_set_cb(s->http, "/big", on_big, s);
    evhttp_set_cb(s->http, "/bigchunked", on_big_chunked, s);
    evhttp_set_cb(s->http, "/fits", on_fits, s);
    evhttp_set_cb(s->http, "/redirect", on_redirect, s);
    evhttp_set_cb(s->http, "/manyheaders", on_many_headers, s);
    evhttp_set_gencb(s->http, on_other, s);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(s->http, "127.0.0.1", 0);
    ck_assert_ptr_nonnull(bs);
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    ck_assert_int_eq(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&a, &len), 0);
    s->port = ntohs(a.sin_port);
}

/* ---- the client's side ---- */

struct got {
    int calls;
    enum httpc_result result;
    long status;
    char error[256];
    char body[4 * MAX_RESPONSE + 1];
    size_t body_len;
    char headers[2048]; /* "name=value\n" each */
    size_t nheaders;
    uint64_t elapsed_us;
    uint64_t at_ms;
    struct httpc *free_me;        /* httpc_free from the callback */
    struct httpc_xfer *cancel_me; /* httpc_cancel from the callback: its own, a no-op */
};

static void
on_done(void *ud, const struct httpc_response *r)
{
    struct got *g = ud;
    g->calls++;
    g->result = r->result;
    g->status = r->status;
    snprintf(g->error, sizeof(g->error), "%s", r->error ? r->error : "");
    ck_assert_ptr_nonnull(r->body);
    ck_assert_uint_le(r->body_len, sizeof(g->body) - 1);
    ck_assert_int_eq(r->body[r->body_len], '\0');
    memcpy(g->body, r->body, r->body_len + 1);
    g->body_len = r->body_len;
    g->headers[0] = '\0';
    for (size_t i = 0; i < r->nheaders; i++) {
        size_t n = strlen(g->headers);
        snprintf(g->headers + n, sizeof(g->headers) - n, "%s=%s\n", r->headers[i].name,
                 r->headers[i].value);
    }
    g->nheaders = r->nheaders;
    g->elapsed_us = r->elapsed_us;
    g->at_ms = lq_now_ms();
    if (g->cancel_me) httpc_cancel(g->cancel_me);
    if (g->free_me) httpc_free(g->free_me);
}

struct env {
    struct event_base *base;
    struct server srv;
    struct httpc *hc;
    char prefix[64]; /* http://127.0.0.1:PORT */
    char url[128];
};

static struct httpc *
client_new(struct event_base *base, struct httpc_conf c)
{
    char err[256] = "";
    struct httpc *hc = httpc_new(base, &c, err, sizeof(err));
    ck_assert_msg(hc != NULL, "httpc_new: %s", err);
    return hc;
}

/* A server, and a client allowed to reach all of it. */
static void
env_init(struct env *e, struct httpc_conf c)
{
    e->base = event_base_new();
    server_start(&e->srv, e->base);
    snprintf(e->prefix, sizeof(e->prefix), "http://127.0.0.1:%u", e->srv.port);
    const char *allow[] = {e->prefix};
    c.allow = allow, c.nallow = 1;
    if (!c.max_response) c.max_response = MAX_RESPONSE;
    e->hc = client_new(e->base, c);
}

static void
env_fini(struct env *e)
{
    httpc_free(e->hc);
    evhttp_free(e->srv.http);
    event_base_free(e->base);
}

static const char *
url(struct env *e, const char *path)
{
    snprintf(e->url, sizeof(e->url), "%s%s", e->prefix, path);
    return e->url;
}

static struct httpc_xfer *
start(struct env *e, struct httpc_request rq, struct got *g)
{
    char err[256] = "";
    struct httpc_xfer *x = httpc_start(e->hc, &rq, on_done, g, err, sizeof(err));
    ck_assert_msg(x != NULL, "httpc_start %s: %s", rq.url, err);
    ck_assert_int_eq(g->calls, 0); /* never from inside httpc_start */
    return x;
}

/* The refusal's message. */
static const char *
refused(struct env *e, struct httpc_request rq)
{
    static char err[256];
    struct got g = {0};
    err[0] = '\0';
    ck_assert_ptr_null(httpc_start(e->hc, &rq, on_done, &g, err, sizeof(err)));
    ck_assert_str_ne(err, "");
    return err;
}

static void
wait_done(struct env *e, struct got *g, int ms)
{
    RUN_UNTIL(e->base, g->calls, ms);
    ck_assert_int_eq(g->calls, 1);
}

/* ---- round trips ---- */

START_TEST(test_get_round_trip)
{
    struct env e;
    env_init(&e, (struct httpc_conf){0});
    struct got g = {0};
    struct httpc_header h[] = {{"X-Test", "hello there"}};
    start(&e, (struct httpc_request){.url = url(&e, "/echo"), .headers = h, .nheaders = 1}, &g);
    wait_done(&e, &g, 2000);
    ck_assert_msg(g.result == HTTPC_OK, "%s: %s", httpc_result_name(g.result), g.error);
    ck_assert_int_eq(g.status, 200);
    ck_assert_str_eq(g.error, "");
    ck_assert_uint_eq(g.body_len, 0);
    ck_assert_ptr_nonnull(strstr(g.headers, "x-method=GET\n"));
    ck_assert_ptr_nonnull(strstr(g.headers, "x-echo=hello there\n"));
    ck_assert_ptr_nonnull(strstr(g.headers, "content-type=text/plain\n"));
    ck_assert_ptr_nonnull(strstr(g.headers, "content-length=0\n"));
    ck_assert_ptr_null(strstr(g.headers, "HTTP/")); /* the status line is not a header */
    ck_assert_ptr_null(strstr(g.headers, "X-"));    /* names lower-cased */
    ck_assert_uint_ge(g.nheaders, 4);
    ck_assert_uint_gt(g.elapsed_us, 0);
    ck_assert_uint_lt(g.elapsed_us, 2000000);
    struct httpc_stats st;
    httpc_get_stats(e.hc, &st);
    ck_assert_uint_eq(st.started, 1);
    ck_assert_uint_eq(st.completed, 1);
    ck_assert_uint_eq(st.in_flight, 0);
    ck_assert_uint_eq(st.by_result[HTTPC_OK], 1);
    env_fini(&e);
}
END_TEST

START_TEST(test_post_body_round_trip)
{
    struct env e;
    env_init(&e, (struct httpc_conf){.max_request = 2 << 20});
    struct got g = {0};
    static const char body[] = "a body\0with a NUL";
    struct httpc_header h[] = {{"X-Test", "post"}, {"X-Empty", ""}};
    start(&e,
          (struct httpc_request){.url = url(&e, "/echo"),
                                 .headers = h,
                                 .nheaders = 2,
                                 .body = body,
                                 .body_len = sizeof(body) - 1},
          &g);
    wait_done(&e, &g, 2000);
    ck_assert_msg(g.result == HTTPC_OK, "%s: %s", httpc_result_name(g.result), g.error);
    ck_assert_int_eq(g.status, 200);
    ck_assert_ptr_nonnull(strstr(g.headers, "x-method=POST\n")); /* NULL method, a body */
    ck_assert_ptr_nonnull(strstr(g.headers, "x-echo=post\n"));
    ck_assert_uint_eq(g.body_len, sizeof(body) - 1);
    ck_assert_mem_eq(g.body, body, sizeof(body) - 1);
    /* a large body goes at once, without waiting for "100 Continue" */
    size_t n = 1200000;
    char *big = calloc(1, n);
    struct got g2 = {0};
    start(&e, (struct httpc_request){.url = url(&e, "/echo"), .body = big, .body_len = n}, &g2);
    free(big); /* copied */
    wait_done(&e, &g2, 3000);
    ck_assert_msg(g2.result == HTTPC_OK, "%s", g2.error);
    ck_assert_ptr_nonnull(strstr(g2.headers, "x-expect=(none)\n"));
    env_fini(&e);
}
END_TEST

START_TEST(test_methods)
{
    static const char *const methods[] = {"GET", "post", "PUT", "PATCH", "DELETE", "HEAD"};
    static const char *const want[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"};
    struct env e;
    env_init(&e, (struct httpc_conf){0});
    for (int i = 0; i < 6; i++) {
        struct got g = {0};
        bool body = i >= 1 && i <= 3;
        start(&e,
              (struct httpc_request){.method = methods[i],
                                     .url = url(&e, "/echo"),
                                     .body = body ? "b" : NULL,
                                     .body_len = body ? 1 : 0},
              &g);
        wait_done(&e, &g, 2000);
        ck_assert_msg(g.result == HTTPC_OK, "%s: %s", methods[i], g.error);
        char line[32];
        snprintf(line, sizeof(line), "x-method=%s\n", want[i]);
        ck_assert_msg(strstr(g.headers, line), "%s: %s", methods[i], g.headers);
        ck_assert_str_eq(g.body, body ? "b" : "");
    }
    ck_assert_str_eq(refused(&e, (struct httpc_request){.method = "TRACE", .url = url(&e, "/")}),
                     "method \"TRACE\" not supported");
    refused(&e, (struct httpc_request){.method = "GET\r\nX: y", .url = url(&e, "/")});
    refused(&e, (struct httpc_request){.method = "GET", .url = url(&e, "/"), .body = "b"});
    env_fini(&e);
}
END_TEST

START_TEST(test_status_and_no_redirect)
{
    struct env e;
    env_init(&e, (struct httpc_conf){0});
    struct got g = {0};
    start(&e, (struct httpc_request){.url = url(&e, "/redirect")}, &g);
    wait_done(&e, &g, 2000);
    ck_assert_int_eq(g.result, HTTPC_OK);
    ck_assert_int_eq(g.status, 302); /* not followed */
    ck_assert_ptr_nonnull(strstr(g.headers, "location=/echo\n"));
    struct got g2 = {0};
    start(&e, (struct httpc_request){.url = url(&e, "/nothing/here")}, &g2);
    wait_done(&e, &g2, 2000);
    ck_assert_int_eq(g2.result, HTTPC_OK);
    ck_assert_int_eq(g2.status, 404);
    ck_assert_uint_eq(e.srv.requests, 2); /* the redirect's target was never asked */
    env_fini(&e);
}
END_TEST

/* Bad request headers are refused before anything is sent. */
START_TEST(test_bad_headers_refused)
{
    struct env e;
    env_init(&e, (struct httpc_conf){.max_request = 8});
    struct httpc_header bad[][1] = {{{"X-Test", "a\r\nX-Injected: 1"}},
                                    {{"X-Test", "a\nb"}},
                                    {{"X-Test\r\nX-Injected", "1"}},
                                    {{"X:Test", "1"}},
                                    {{"X Test", "1"}},
                                    {{"", "1"}},
                                    {{"Content-Length", "100"}},
                                    {{"X-Test", "a\rb"}}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        refused(&e,
                (struct httpc_request){.url = url(&e, "/echo"), .headers = bad[i], .nheaders = 1});
    ck_assert_str_eq(refused(&e, (struct httpc_request){.url = url(&e, "/echo"),
                                                        .body = "123456789",
                                                        .body_len = 9}),
                     "request body over max_request (9 > 8)");
    struct httpc_stats st;
    httpc_get_stats(e.hc, &st);
    ck_assert_uint_eq(st.refused, sizeof(bad) / sizeof(*bad) + 1);
    ck_assert_uint_eq(st.started, 0);
    /* a tab in a value is fine, and the server saw none of the refused ones */
    struct got g = {0};
    struct httpc_header ok[] = {{"X-Test", "a\tb"}};
    start(&e, (struct httpc_request){.url = url(&e, "/echo"), .headers = ok, .nheaders = 1}, &g);
    wait_done(&e, &g, 2000);
    ck_assert_ptr_nonnull(strstr(g.headers, "x-echo=a\tb\n"));
    ck_assert_uint_eq(e.srv.requests, 1);
    env_fini(&e);
}
END_TEST

START_TEST(test_many_response_headers_is_an_error)
{
    struct env e;
    env_init(&e, (struct httpc_conf){0});
    struct got g = {0};
    start(&e, (struct httpc_request){.url = url(&e, "/manyheaders")}, &g);
    wait_done(&e, &g, 2000);
    ck_assert_int_eq(g.result, HTTPC_ERROR);
    ck_assert_str_eq(g.error, "response headers over 100 or 16 KiB");
    env_fini(&e);
}
END_TEST

/* ---- failures ---- */

START_TEST(test_timeout)
{
    struct env e;
    env_init(&e, (struct httpc_conf){0});
    struct got g = {0}, g2 = {0};
    uint64_t t0 = lq_now_ms();
    start(&e, (struct httpc_request){.url = url(&e, "/slow"), .timeout_ms = 200}, &g);
    wait_done(&e, &g, 2000);
    ck_assert_msg(g.result == HTTPC_TIMEOUT, "%s: %s", httpc_result_name(g.result), g.error);
    ck_assert_uint_ge(g.at_ms - t0, 190);
    ck_assert_uint_le(g.at_ms - t0, 1000);
    ck_assert_uint_eq(e.srv.requests, 1); /* it got there, and no answer came */
    httpc_free(e.hc);
    /* the configured deadline caps a request's longer one */
    e.hc = client_new(e.base, (struct httpc_conf){.allow = (const char *const[]){e.prefix},
                                                  .nallow = 1,
                                                  .timeout_ms = 200});
    t0 = lq_now_ms();
    start(&e, (struct httpc_request){.url = url(&e, "/slow"), .timeout_ms = 60000}, &g2);
    wait_done(&e, &g2, 2000);
    ck_assert_int_eq(g2.result, HTTPC_TIMEOUT);
    ck_assert_uint_le(g2.at_ms - t0, 1000);
    struct httpc_stats st;
    httpc_get_stats(e.hc, &st);
    ck_assert_uint_eq(st.by_result[HTTPC_TIMEOUT], 1);
    env_fini(&e);
}
END_TEST

/* A port nobody listens on (bound, then closed). */
static uint16_t
closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

START_TEST(test_connection_refused)
{
    struct event_base *base = event_base_new();
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "http://127.0.0.1:%u/", closed_port());
    struct httpc *hc =
        client_new(base, (struct httpc_conf){.allow = (const char *const[]){prefix}, .nallow = 1});
    struct got g = {0};
    char err[256];
    ck_assert_ptr_nonnull(
        httpc_start(hc, &(struct httpc_request){.url = prefix}, on_done, &g, err, sizeof(err)));
    RUN_UNTIL(base, g.calls, 2000);
    ck_assert_int_eq(g.calls, 1);
    ck_assert_msg(g.result == HTTPC_CONNECT, "%s: %s", httpc_result_name(g.result), g.error);
    ck_assert_str_ne(g.error, "");
    ck_assert_int_eq(g.status, 0);
    httpc_free(hc);
    event_base_free(base);
}
END_TEST

/* A server that writes one canned reply on accept, whatever comes, and keeps the
 * connection open (closing with the request unread could reset the reply). */
struct canned {
    struct evconnlistener *l;
    const char *reply;
    evutil_socket_t fd;
    char url[64];
};

static void
on_canned_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                 void *arg)
{
    (void)l, (void)sa, (void)len;
    struct canned *c = arg;
    ck_assert_int_lt(c->fd, 0);
    ck_assert_int_eq(write(fd, c->reply, strlen(c->reply)), (ssize_t)strlen(c->reply));
    c->fd = fd;
}

/* Fetch scheme://127.0.0.1:PORT/ from a canned server. */
static void
fetch_canned(const char *scheme, const char *method, const char *reply, struct got *g)
{
    struct event_base *base = event_base_new();
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct canned c = {.reply = reply, .fd = -1};
    c.l = evconnlistener_new_bind(base, on_canned_accept, &c,
                                  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 8,
                                  (struct sockaddr *)&a, sizeof(a));
    ck_assert_ptr_nonnull(c.l);
    socklen_t alen = sizeof(a);
    getsockname(evconnlistener_get_fd(c.l), (struct sockaddr *)&a, &alen);
    snprintf(c.url, sizeof(c.url), "%s://127.0.0.1:%u/", scheme, ntohs(a.sin_port));
    struct httpc *hc = client_new(base, (struct httpc_conf){.allow = (const char *const[]){c.url},
                                                            .nallow = 1,
                                                            .timeout_ms = 2000});
    char err[256];
    ck_assert_ptr_nonnull(httpc_start(hc, &(struct httpc_request){.method = method, .url = c.url},
                                      on_done, g, err, sizeof(err)));
    RUN_UNTIL(base, g->calls, 3000);
    ck_assert_int_eq(g->calls, 1);
    ck_assert_int_ge(c.fd, 0);
    close(c.fd);
    httpc_free(hc);
    evconnlistener_free(c.l);
    event_base_free(base);
}

START_TEST(test_tls_to_plain_server)
{
    struct got g = {0};
    fetch_canned("https", NULL, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", &g);
    ck_assert_msg(g.result == HTTPC_TLS, "%s: %s", httpc_result_name(g.result), g.error);
    ck_assert_str_ne(g.error, "");
}
END_TEST

/* Only the final response's headers; a folded line joined, a line without a name left out. */
START_TEST(test_interim_response_and_folded_header)
{
    struct got g = {0};
    fetch_canned("http", NULL,
                 "HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"
                 "HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-Fold: a\r\n  b \r\n"
                 ": no name\r\nX-Last:\r\n\r\nok",
                 &g);
    ck_assert_msg(g.result == HTTPC_OK, "%s: %s", httpc_result_name(g.result), g.error);
    ck_assert_int_eq(g.status, 201);
    ck_assert_str_eq(g.headers, "content-length=2\nx-fold=a b\nx-last=\n");
    ck_assert_uint_eq(g.nheaders, 3);
    ck_assert_str_eq(g.body, "ok");
}
END_TEST

/* HEAD of a resource larger than max_response: only its length comes. */
START_TEST(test_head_of_large_resource)
{
    struct got g = {0};
    fetch_canned("http", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n", &g);
    ck_assert_msg(g.result == HTTPC_OK, "%s: %s", httpc_result_name(g.result), g.error);
    ck_assert_str_eq(g.headers, "content-length=100000000\n");
}
END_TEST

START_TEST(test_too_large)
{
    struct env e;
    env_init(&e, (struct httpc_conf){0});
    const char *paths[] = {"/big", "/bigchunked"}; /* announced, then only counted */
    for (int i = 0; i < 2; i++) {
        struct got g = {0};
        start(&e, (struct httpc_request){.url = url(&e, paths[i])}, &g);
        wait_done(&e, &g, 2000);
        ck_assert_msg(g.result == HTTPC_TOO_LARGE, "%s: %s: %s", paths[i],
                      httpc_result_name(g.result), g.error);
        ck_assert_str_eq(g.error, "response body over max_response");
        ck_assert_uint_eq(g.body_len, 0); /* not kept */
    }
    struct got g = {0}; /* exactly max_response is fine */
    start(&e, (struct httpc_request){.url = url(&e, "/fits")}, &g);
    wait_done(&e, &g, 2000);
    ck_assert_msg(g.result == HTTPC_OK, "%s", g.error);
    ck_assert_uint_eq(g.body_len, MAX_RESPONSE);
    struct httpc_stats st;
    httpc_get_stats(e.hc, &st);
    ck_assert_uint_eq(st.by_result[HTTPC_TOO_LARGE], 2);
    ck_assert_uint_eq(st.by_result[HTTPC_OK], 1);
    env_fini(&e);
}
END_TEST

/* ---- the allow list ---- */

START_TEST(test_allow_list)
{
    struct event_base *base = event_base_new();
    const char *allow[] = {"http://127.0.0.1:8080/api", "https://Example.COM/", "http://h/dir/"};
    struct httpc *hc = client_new(base, (struct httpc_conf){.allow = allow, .nallow = 3});
    static const char *const yes[] = {
        "http://127.0.0.1:8080/api",
        "http://127.0.0.1:8080/api/",
        "http://127.0.0.1:8080/api/x/y",
        "http://127.0.0.1:8080/api?x=1",
        "http://127.0.0.1:8080/api#frag",
        "HTTP://127.0.0.1:8080/api/x",
        "http://127.0.0.1:8080/api/x/../y",
        "http://127.0.0.1:8080/x/../api/y",
        "https://example.com/anything",
        "https://EXAMPLE.com:443/",
        "http://h/dir/",
        "http://h:80/dir/x",
    };
    static const char *const no[] = {
        "http://127.0.0.1:8080/apix",             /* not a whole segment */
        "http://127.0.0.1:8080/",                 /* above the prefix */
        "http://127.0.0.1:8080/admin",            /* elsewhere */
        "http://127.0.0.1:8080/api/../admin",     /* out by dot segments */
        "http://127.0.0.1:8080/api/%2e%2e/admin", /* by encoded ones */
        "http://127.0.0.1:8080/api/%2E./admin",
        "http://127.0.0.1:8080/api/..%2fadmin", /* an encoded slash */
        "http://127.0.0.1:8080/api/..;/admin",  /* Tomcat's path parameter */
        "http://127.0.0.1:8080/api\\..\\admin", /* a back slash */
        "http://127.0.0.1:8081/api",            /* another port */
        "http://127.0.0.1/api",                 /* the default port */
        "https://127.0.0.1:8080/api",           /* another scheme */
        "http://127.0.0.2:8080/api",            /* another host */
        "http://localhost:8080/api",
        "http://127.0.0.1:8080@evil.example/api", /* user info naming the allowed host */
        "http://127.0.0.1:8080@127.0.0.1:8080/api",
        "http://user:pass@127.0.0.1:8080/api",
        "http://@127.0.0.1:8080/api",
        "http://example.com/", /* http for an https prefix */
        "https://example.com:8443/",
        "https://example.com.evil/",
        "http://h/dir", /* the prefix ends in '/' */
        "http://h/dirx/",
        "ftp://127.0.0.1:8080/api", /* not http(s) */
        "file:///etc/passwd",
        "gopher://127.0.0.1:8080/api",
        "127.0.0.1:8080/api",
        "//127.0.0.1:8080/api",
        "http://127.0.0.1:8080/api x",
        "",
    };
    char err[256];
    for (size_t i = 0; i < sizeof(yes) / sizeof(*yes); i++)
        ck_assert_msg(httpc_allowed(hc, yes[i], err, sizeof(err)), "%s: %s", yes[i], err);
    for (size_t i = 0; i < sizeof(no) / sizeof(*no); i++) {
        err[0] = '\0';
        ck_assert_msg(!httpc_allowed(hc, no[i], err, sizeof(err)), "allowed: %s", no[i]);
        ck_assert_msg(err[0], "no reason for %s", no[i]);
    }
    ck_assert(!httpc_allowed(hc, "http://127.0.0.1:8080/admin", err, sizeof(err)));
    ck_assert_str_eq(err, "not in hook_http_allow");
    ck_assert(!httpc_allowed(hc, "http://user@127.0.0.1:8080/api", err, sizeof(err)));
    ck_assert_str_eq(err, "user info in the URL");
    ck_assert(!httpc_allowed(hc, "ftp://127.0.0.1:8080/api", err, sizeof(err)));
    ck_assert_str_eq(err, "not an http(s) URL");
    /* httpc_start checks it too */
    struct got g = {0};
    ck_assert_ptr_null(httpc_start(hc, &(struct httpc_request){.url = "http://127.0.0.1:8080/ad"},
                                   on_done, &g, err, sizeof(err)));
    ck_assert_str_eq(err, "not in hook_http_allow");
    ck_assert_ptr_null(
        httpc_start(hc, &(struct httpc_request){.url = NULL}, on_done, &g, err, sizeof(err)));
    struct httpc_stats st;
    httpc_get_stats(hc, &st);
    ck_assert_uint_eq(st.refused, 2);
    ck_assert_uint_eq(st.started, 0);
    httpc_free(hc);
    event_base_free(base);
}
END_TEST

START_TEST(test_allow_list_configuration)
{
    struct event_base *base = event_base_new();
    char err[256];
    const char *bad[] = {"ftp://h/", "h/path", "http://u:p@h/", "http://h/api?key=1", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        err[0] = '\0';
        const char *allow[] = {"http://fine/", bad[i]};
        ck_assert_ptr_null(
            httpc_new(base, &(struct httpc_conf){.allow = allow, .nallow = 2}, err, sizeof(err)));
        ck_assert_msg(strstr(err, "hook_http_allow"), "%s: %s", bad[i], err);
    }
    /* nothing allowed without a list; a bad reload keeps the old list */
    struct httpc *hc = client_new(base, (struct httpc_conf){0});
    ck_assert(!httpc_allowed(hc, "http://a/", err, sizeof(err)));
    const char *a[] = {"http://a/"}, *b[] = {"http://b/", "gopher://b/"};
    ck_assert(httpc_configure(hc, &(struct httpc_conf){.allow = a, .nallow = 1}, err, sizeof(err)));
    ck_assert(httpc_allowed(hc, "http://a/x", err, sizeof(err)));
    ck_assert(
        !httpc_configure(hc, &(struct httpc_conf){.allow = b, .nallow = 2}, err, sizeof(err)));
    ck_assert(httpc_allowed(hc, "http://a/x", err, sizeof(err)));
    ck_assert(!httpc_allowed(hc, "http://b/x", err, sizeof(err)));
    httpc_free(hc);
    event_base_free(base);
}
END_TEST

/* ---- lifecycle ---- */

START_TEST(test_busy)
{
    struct env e;
    env_init(&e, (struct httpc_conf){.max_transfers = 2});
    struct got g[3] = {{0}};
    struct httpc_xfer *x0 = start(&e, (struct httpc_request){.url = url(&e, "/slow")}, &g[0]);
    struct httpc_xfer *x1 = start(&e, (struct httpc_request){.url = url(&e, "/slow")}, &g[1]);
    ck_assert_str_eq(refused(&e, (struct httpc_request){.url = url(&e, "/echo")}), "busy");
    RUN_UNTIL(e.base, e.srv.requests == 2, 2000);
    ck_assert_str_eq(refused(&e, (struct httpc_request){.url = url(&e, "/echo")}), "busy");
    httpc_cancel(x0);
    start(&e, (struct httpc_request){.url = url(&e, "/echo")}, &g[2]); /* room again */
    wait_done(&e, &g[2], 2000);
    ck_assert_int_eq(g[2].status, 200);
    httpc_cancel(x1);
    struct httpc_stats st;
    httpc_get_stats(e.hc, &st);
    ck_assert_uint_eq(st.refused, 2);
    ck_assert_uint_eq(st.started, 3);
    ck_assert_uint_eq(st.completed, 1);
    ck_assert_uint_eq(st.in_flight, 0);
    env_fini(&e);
    ck_assert_int_eq(g[0].calls + g[1].calls, 0);
}
END_TEST

START_TEST(test_cancel_does_not_call_back)
{
    struct env e;
    env_init(&e, (struct httpc_conf){0});
    struct got g[3] = {{0}};
    httpc_cancel(start(&e, (struct httpc_request){.url = url(&e, "/echo")}, &g[0])); /* at once */
    struct httpc_xfer *x = start(&e, (struct httpc_request){.url = url(&e, "/slow")}, &g[1]);
    RUN_UNTIL(e.base, e.srv.requests == 1, 2000); /* under way */
    ck_assert_uint_eq(e.srv.requests, 1);
    httpc_cancel(x);
    httpc_cancel(NULL);
    g[2].cancel_me =
        start(&e, (struct httpc_request){.url = url(&e, "/echo")}, &g[2]); /* the control */
    wait_done(&e, &g[2], 2000);
    run_for(e.base, 100);
    ck_assert_int_eq(g[0].calls, 0);
    ck_assert_int_eq(g[1].calls, 0);
    ck_assert_int_eq(g[2].status, 200);
    env_fini(&e);
}
END_TEST

/* httpc_free ends what is under way without callbacks, whether called from outside
 * or from a callback; the sanitizer build checks nothing leaks or is used after. */
START_TEST(test_free_in_flight)
{
    struct env e;
    env_init(&e, (struct httpc_conf){0});
    struct got g[4] = {{0}};
    start(&e, (struct httpc_request){.url = url(&e, "/slow")}, &g[0]);
    start(&e, (struct httpc_request){.url = url(&e, "/slow")}, &g[1]);
    RUN_UNTIL(e.base, e.srv.requests == 2, 2000);
    start(&e, (struct httpc_request){.url = url(&e, "/echo")}, &g[2]); /* not yet connected */
    httpc_free(e.hc);
    run_for(e.base, 100);
    ck_assert_int_eq(g[0].calls + g[1].calls + g[2].calls, 0);

    e.hc = client_new(e.base,
                      (struct httpc_conf){.allow = (const char *const[]){e.prefix}, .nallow = 1});
    struct got h[2] = {{0}};
    start(&e, (struct httpc_request){.url = url(&e, "/slow")}, &h[0]);
    h[1].free_me = e.hc;
    start(&e, (struct httpc_request){.url = url(&e, "/echo")}, &h[1]);
    wait_done(&e, &h[1], 2000);
    e.hc = NULL; /* freed by the callback */
    run_for(e.base, 100);
    ck_assert_int_eq(h[0].calls, 0);
    env_fini(&e);
}
END_TEST

/* Several requests in a row, each started from the last one's callback, over one
 * connection; then in parallel, which needs more. */
struct chain {
    struct env *e;
    struct got g;
    int left;
};

static void
on_chain_done(void *ud, const struct httpc_response *r)
{
    struct chain *c = ud;
    ck_assert_int_eq(r->status, 200);
    c->g.calls++;
    if (--c->left == 0) return;
    char err[256];
    struct httpc_request rq = {.url = url(c->e, "/echo")};
    ck_assert_ptr_nonnull(httpc_start(c->e->hc, &rq, on_chain_done, c, err, sizeof(err)));
}

START_TEST(test_connection_reuse)
{
    struct env e;
    env_init(&e, (struct httpc_conf){0});
    struct chain c = {.e = &e, .left = 5};
    char err[256];
    ck_assert_ptr_nonnull(httpc_start(e.hc, &(struct httpc_request){.url = url(&e, "/echo")},
                                      on_chain_done, &c, err, sizeof(err)));
    RUN_UNTIL(e.base, c.left == 0, 3000);
    ck_assert_int_eq(c.g.calls, 5);
    ck_assert_uint_eq(e.srv.requests, 5);
    ck_assert_uint_eq(e.srv.npeers, 1); /* one connection for all five */

    struct got g[3] = {{0}};
    for (int i = 0; i < 3; i++) start(&e, (struct httpc_request){.url = url(&e, "/echo")}, &g[i]);
    RUN_UNTIL(e.base, g[0].calls && g[1].calls && g[2].calls, 3000);
    ck_assert_int_eq(g[0].calls + g[1].calls + g[2].calls, 3);
    ck_assert_uint_ge(e.srv.npeers, 2); /* the peer count can tell */
    ck_assert_uint_le(e.srv.npeers, 3);
    env_fini(&e);
}
END_TEST

START_TEST(test_result_names)
{
    ck_assert_str_eq(httpc_result_name(HTTPC_OK), "ok");
    ck_assert_str_eq(httpc_result_name(HTTPC_TIMEOUT), "timeout");
    ck_assert_str_eq(httpc_result_name(HTTPC_CONNECT), "connect");
    ck_assert_str_eq(httpc_result_name(HTTPC_TLS), "tls");
    ck_assert_str_eq(httpc_result_name(HTTPC_TOO_LARGE), "too_large");
    ck_assert_str_eq(httpc_result_name(HTTPC_ERROR), "error");
    httpc_free(NULL);
}
END_TEST

Suite *
suite_httpc(void)
{
    Suite *s = suite_create("httpc");
    TCase *tc = tcase_create("requests");
    tcase_add_test(tc, test_get_round_trip);
    tcase_add_test(tc, test_post_body_round_trip);
    tcase_add_test(tc, test_methods);
    tcase_add_test(tc, test_status_and_no_redirect);
    tcase_add_test(tc, test_bad_headers_refused);
    tcase_add_test(tc, test_many_response_headers_is_an_error);
    tcase_add_test(tc, test_interim_response_and_folded_header);
    tcase_add_test(tc, test_head_of_large_resource);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("failures");
    tcase_add_test(tc, test_timeout);
    tcase_add_test(tc, test_connection_refused);
    tcase_add_test(tc, test_tls_to_plain_server);
    tcase_add_test(tc, test_too_large);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("allow");
    tcase_add_test(tc, test_allow_list);
    tcase_add_test(tc, test_allow_list_configuration);
    suite_add_tcase(s, tc);

    tc = tcase_create("lifecycle");
    tcase_add_test(tc, test_busy);
    tcase_add_test(tc, test_cancel_does_not_call_back);
    tcase_add_test(tc, test_free_in_flight);
    tcase_add_test(tc, test_connection_reuse);
    tcase_add_test(tc, test_result_names);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);
    return s;
}
