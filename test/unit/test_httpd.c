/* SPDX-License-Identifier: MIT
 *
 * The HTTP request framer (httpd_frame, broker/http/request.c) without a connection:
 * requests whole, in pieces and pipelined, keep-alive, "100 Continue", every refusal
 * and its status, and the percent-decoding helpers. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "httpd.h"
#include "suites.h"

static const struct httpd_limits lim = {.max_header = 512, .max_body = 1024};

/* One framing step over s[0..len) on h, with took/status/why poisoned first. */
struct step {
    enum httpd_step st;
    struct httpd_request rq;
    size_t took;
    int status;
    const char *why;
};

static struct step
frame_n(struct httpd_conn *h, const struct httpd_limits *l, const void *s, size_t len)
{
    struct step r = {.took = 777, .status = -1};
    r.st = httpd_frame(h, s, len, l, &r.rq, &r.took, &r.status, &r.why);
    if (r.st != HTTPD_REQUEST) ck_assert_uint_eq(r.took, 0);
    return r;
}

static struct step
frame(struct httpd_conn *h, const char *s)
{
    return frame_n(h, &lim, s, strlen(s));
}

/* s[0..len) on a fresh conn must be refused with status. */
static void
refused_n(const void *s, size_t len, const struct httpd_limits *l, int status)
{
    struct httpd_conn *h = httpd_conn_new();
    struct step r = frame_n(h, l, s, len);
    ck_assert_msg(r.st == HTTPD_ERROR, "step %d for %.*s", r.st, (int)len, (const char *)s);
    ck_assert_int_eq(r.status, status);
    ck_assert_ptr_nonnull(r.why);
    ck_assert_uint_gt(strlen(r.why), 0);
    httpd_conn_free(h);
}

static void
refused(const char *s, int status)
{
    refused_n(s, strlen(s), &lim, status);
}

/* ---- requests ---- */

START_TEST(test_get_with_query_and_headers)
{
    const char *s = "GET /retained/a%2Fb?qos=1&x=y HTTP/1.1\r\n"
                    "Host: broker\r\n"
                    "X-Thing:   spaced value \t\r\n"
                    "ACCEPT:*/*\r\n"
                    "Empty:\r\n"
                    "\r\n";
    struct httpd_conn *h = httpd_conn_new();
    struct step r = frame(h, s);
    ck_assert_int_eq(r.st, HTTPD_REQUEST);
    ck_assert_uint_eq(r.took, strlen(s));
    ck_assert_str_eq(r.rq.method, "GET");
    ck_assert_str_eq(r.rq.path, "/retained/a%2Fb"); /* as sent */
    ck_assert_str_eq(r.rq.query, "qos=1&x=y");
    ck_assert_uint_eq(r.rq.nheaders, 4);
    ck_assert_str_eq(r.rq.headers[0].name, "host");
    ck_assert_str_eq(r.rq.headers[0].value, "broker");
    ck_assert_str_eq(r.rq.headers[1].name, "x-thing");
    ck_assert_str_eq(r.rq.headers[1].value, "spaced value");
    ck_assert_str_eq(r.rq.headers[2].name, "accept");
    ck_assert_str_eq(r.rq.headers[2].value, "*/*");
    ck_assert_str_eq(r.rq.headers[3].name, "empty");
    ck_assert_str_eq(r.rq.headers[3].value, "");
    ck_assert_str_eq(httpd_header(&r.rq, "x-thing"), "spaced value");
    ck_assert_ptr_null(httpd_header(&r.rq, "X-Thing")); /* names are looked up lower-case */
    ck_assert_ptr_null(httpd_header(&r.rq, "missing"));
    ck_assert_uint_eq(r.rq.body_len, 0);
    ck_assert_ptr_eq(r.rq.body, (const uint8_t *)s + strlen(s));
    ck_assert(r.rq.keep_alive);
    httpd_frame_done(h);

    r = frame(h, "DELETE /kv/a HTTP/1.1\r\n\r\n"); /* no query, no headers */
    ck_assert_int_eq(r.st, HTTPD_REQUEST);
    ck_assert_str_eq(r.rq.method, "DELETE");
    ck_assert_str_eq(r.rq.path, "/kv/a");
    ck_assert_str_eq(r.rq.query, "");
    ck_assert_uint_eq(r.rq.nheaders, 0);
    httpd_conn_free(h);
}
END_TEST

static const char post_req[] = "POST /publish?topic=a HTTP/1.1\r\n"
                               "Content-Length: 11\r\n"
                               "\r\n"
                               "hello world";

START_TEST(test_post_byte_by_byte)
{
    size_t len = strlen(post_req), hdr = len - 11;
    struct httpd_conn *h = httpd_conn_new();
    for (size_t i = 0; i < len; i++) {
        struct step r = frame_n(h, &lim, post_req, i);
        ck_assert_msg(r.st == HTTPD_MORE, "step %d after %zu bytes", r.st, i);
    }
    struct step r = frame_n(h, &lim, post_req, len);
    ck_assert_int_eq(r.st, HTTPD_REQUEST);
    ck_assert_uint_eq(r.took, len);
    ck_assert_str_eq(r.rq.method, "POST");
    ck_assert_str_eq(r.rq.query, "topic=a");
    ck_assert_ptr_eq(r.rq.body, (const uint8_t *)post_req + hdr); /* where it lies */
    ck_assert_uint_eq(r.rq.body_len, 11);
    ck_assert_int_eq(memcmp(r.rq.body, "hello world", 11), 0);
    httpd_conn_free(h);
}
END_TEST

/* In two pieces cut anywhere, "\r\n\r\n" split included: the search resumes where it
 * stopped and still sees an end that straddles the cut. */
START_TEST(test_post_in_two_pieces)
{
    size_t len = strlen(post_req);
    for (size_t cut = 0; cut < len; cut++) {
        struct httpd_conn *h = httpd_conn_new();
        ck_assert_int_eq(frame_n(h, &lim, post_req, cut).st, HTTPD_MORE);
        struct step r = frame_n(h, &lim, post_req, len);
        ck_assert_msg(r.st == HTTPD_REQUEST, "cut at %zu: step %d", cut, r.st);
        ck_assert_uint_eq(r.took, len);
        ck_assert_uint_eq(r.rq.body_len, 11);
        httpd_conn_free(h);
    }
}
END_TEST

/* A header block of exactly max_header bytes, a byte at a time: framed; one more byte
 * in the block: 431 as soon as max_header bytes are in without its end. */
START_TEST(test_header_limit_byte_by_byte)
{
    struct httpd_limits small = {.max_header = 64, .max_body = 16};
    char req[128];
    const char *head = "GET / HTTP/1.1\r\nX: ";
    size_t pad = small.max_header - strlen(head) - 4;
    snprintf(req, sizeof(req), "%s%.*s\r\n\r\n", head, (int)pad,
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    ck_assert_uint_eq(strlen(req), small.max_header);
    struct httpd_conn *h = httpd_conn_new();
    for (size_t i = 0; i < small.max_header; i++)
        ck_assert_int_eq(frame_n(h, &small, req, i).st, HTTPD_MORE);
    struct step r = frame_n(h, &small, req, small.max_header);
    ck_assert_int_eq(r.st, HTTPD_REQUEST);
    ck_assert_uint_eq(r.took, small.max_header);
    ck_assert_uint_eq(strlen(httpd_header(&r.rq, "x")), pad);
    httpd_conn_free(h);

    snprintf(req, sizeof(req), "%s%.*sa\r\n\r\n", head, (int)pad,
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    h = httpd_conn_new();
    for (size_t i = 0; i < small.max_header; i++)
        ck_assert_int_eq(frame_n(h, &small, req, i).st, HTTPD_MORE);
    r = frame_n(h, &small, req, small.max_header);
    ck_assert_int_eq(r.st, HTTPD_ERROR);
    ck_assert_int_eq(r.status, 431);
    httpd_conn_free(h);
}
END_TEST

/* A body trickling in a byte per read after 8 KB of headers: each byte costs O(1), not
 * another parse of the header block (that was 5 s of CPU for a 1 MB body). */
START_TEST(test_body_trickle_is_cheap)
{
    struct httpd_limits big = {.max_header = 8192, .max_body = 1 << 20};
    size_t body = big.max_body, cap = big.max_header + body;
    char *req = malloc(cap);
    ck_assert_ptr_nonnull(req);
    size_t hdr = (size_t)snprintf(req, cap, "POST /p HTTP/1.1\r\nContent-Length: %zu\r\n", body);
    size_t n = 0;
    for (; hdr < 8000; n++)
        hdr += (size_t)snprintf(req + hdr, cap - hdr, "x-h%zu: %0200zu\r\n", n, n);
    hdr += (size_t)snprintf(req + hdr, cap - hdr, "\r\n");
    ck_assert_uint_le(hdr, big.max_header);
    memset(req + hdr, 'b', body);
    struct httpd_conn *h = httpd_conn_new();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = hdr; i < hdr + body; i++) { /* no ck_assert here: each one writes */
        struct httpd_request rq;
        size_t took;
        int status;
        const char *why;
        enum httpd_step st =
            httpd_frame(h, (const uint8_t *)req, i, &big, &rq, &took, &status, &why);
        if (st != HTTPD_MORE) ck_abort_msg("step %d at %zu", st, i);
    }
    struct step r = frame_n(h, &big, req, hdr + body);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert_int_eq(r.st, HTTPD_REQUEST);
    ck_assert_uint_eq(r.took, hdr + body);
    ck_assert_uint_eq(r.rq.nheaders, 1 + n);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    ck_assert_msg(s < 1.0, "%.2f s for %zu one-byte reads", s, body);
    httpd_conn_free(h);
    free(req);
}
END_TEST

START_TEST(test_pipelined)
{
    const char *s = "GET /1 HTTP/1.1\r\n\r\n"
                    "POST /2?a=b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                    "PUT /3 HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
                    "GET /4 HTTP/1.1\r\nHo";
    const char *want_path[] = {"/1", "/2", "/3"};
    const char *want_method[] = {"GET", "POST", "PUT"};
    size_t want_took[] = {19, 46, 38};
    struct httpd_conn *h = httpd_conn_new();
    size_t off = 0, len = strlen(s);
    for (int i = 0; i < 3; i++) {
        struct step r = frame_n(h, &lim, s + off, len - off);
        ck_assert_int_eq(r.st, HTTPD_REQUEST);
        ck_assert_str_eq(r.rq.method, want_method[i]);
        ck_assert_str_eq(r.rq.path, want_path[i]);
        ck_assert_uint_eq(r.took, want_took[i]);
        if (i == 1) {
            ck_assert_str_eq(r.rq.query, "a=b");
            ck_assert_uint_eq(r.rq.body_len, 3);
            ck_assert_int_eq(memcmp(r.rq.body, "abc", 3), 0);
        }
        httpd_frame_done(h);
        off += r.took;
    }
    ck_assert_str_eq(s + off, "GET /4 HTTP/1.1\r\nHo");
    ck_assert_int_eq(frame_n(h, &lim, s + off, len - off).st, HTTPD_MORE);
    httpd_conn_free(h);
}
END_TEST

/* Framed again before httpd_frame_done (a paused handler is fed the same bytes): the
 * same request. */
START_TEST(test_frame_again_before_done)
{
    struct httpd_conn *h = httpd_conn_new();
    struct step a = frame(h, post_req), b = frame(h, post_req);
    ck_assert_int_eq(a.st, HTTPD_REQUEST);
    ck_assert_int_eq(b.st, HTTPD_REQUEST);
    ck_assert_uint_eq(b.took, a.took);
    ck_assert_str_eq(b.rq.path, "/publish");
    ck_assert_uint_eq(b.rq.body_len, 11);
    httpd_conn_free(h);
}
END_TEST

static void
keep_alive(const char *version, const char *connection, bool want)
{
    char req[256];
    snprintf(req, sizeof(req), "GET / %s\r\n%s%s%s\r\n", version, connection ? "Connection: " : "",
             connection ? connection : "", connection ? "\r\n" : "");
    struct httpd_conn *h = httpd_conn_new();
    struct step r = frame(h, req);
    ck_assert_int_eq(r.st, HTTPD_REQUEST);
    ck_assert_msg(r.rq.keep_alive == want, "%s with Connection: %s", version,
                  connection ? connection : "(none)");
    httpd_conn_free(h);
}

START_TEST(test_keep_alive)
{
    keep_alive("HTTP/1.1", NULL, true);
    keep_alive("HTTP/1.1", "close", false);
    keep_alive("HTTP/1.1", "Close", false);
    keep_alive("HTTP/1.1", "keep-alive", true);
    keep_alive("HTTP/1.0", NULL, false);
    /* httpd.h: keep_alive is "HTTP/1.1 without Connection: close". A 1.0 client asking
     * for keep-alive would need "Connection: keep-alive" echoed in the answer, which
     * httpd_respond does not write: it is closed after each answer. */
    keep_alive("HTTP/1.0", "keep-alive", false);
    keep_alive("HTTP/1.0", "Keep-Alive", false);
    keep_alive("HTTP/1.0", "close", false);
}
END_TEST

/* ---- Expect: 100-continue ---- */

START_TEST(test_expect_continue_once)
{
    const char *s = "POST /p HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello";
    size_t len = strlen(s), hdr = len - 5;
    struct httpd_conn *h = httpd_conn_new();
    for (size_t i = 0; i < hdr; i++) ck_assert_int_eq(frame_n(h, &lim, s, i).st, HTTPD_MORE);
    ck_assert_int_eq(frame_n(h, &lim, s, hdr).st, HTTPD_CONTINUE);
    ck_assert_int_eq(frame_n(h, &lim, s, hdr).st, HTTPD_MORE); /* once only */
    for (size_t i = hdr + 1; i < len; i++) ck_assert_int_eq(frame_n(h, &lim, s, i).st, HTTPD_MORE);
    struct step r = frame_n(h, &lim, s, len);
    ck_assert_int_eq(r.st, HTTPD_REQUEST);
    ck_assert_uint_eq(r.took, len);
    ck_assert_str_eq(httpd_header(&r.rq, "expect"), "100-continue");
    httpd_frame_done(h);

    /* the next request on the conn gets its own */
    ck_assert_int_eq(frame_n(h, &lim, s, hdr).st, HTTPD_CONTINUE);
    httpd_frame_done(h);
    /* body already there, or none to wait for: no 100 */
    ck_assert_int_eq(frame_n(h, &lim, s, len).st, HTTPD_REQUEST);
    httpd_frame_done(h);
    ck_assert_int_eq(frame(h, "POST /p HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n").st,
                     HTTPD_REQUEST);
    httpd_frame_done(h);
    /* no Expect: no 100 */
    ck_assert_int_eq(frame_n(h, &lim, post_req, strlen(post_req) - 11).st, HTTPD_MORE);
    httpd_conn_free(h);
}
END_TEST

/* ---- refusals ---- */

START_TEST(test_bad_request_line)
{
    refused("\r\n\r\n", 400);
    refused("GET\r\n\r\n", 400);
    refused("GET /\r\n\r\n", 400);
    refused("GET / HTTP/1.1 x\r\n\r\n", 400);
    refused("GET  / HTTP/1.1\r\n\r\n", 400);
    refused(" / HTTP/1.1\r\n\r\n", 400);
    refused("GET x HTTP/1.1\r\n\r\n", 400);
    refused("GET * HTTP/1.1\r\n\r\n", 400);
    refused("GET /a\x01 HTTP/1.1\r\n\r\n", 400);
    refused("GET /a\tb HTTP/1.1\r\n\r\n", 400);
    refused("GET / HTTP/1.1\nHost: x\r\n\r\n", 400); /* a bare LF ends no line */
}
END_TEST

START_TEST(test_bad_method)
{
    refused("get / HTTP/1.1\r\n\r\n", 400);
    refused("Get / HTTP/1.1\r\n\r\n", 400);
    refused("M-SEARCH / HTTP/1.1\r\n\r\n", 400);
}
END_TEST

START_TEST(test_bad_header_lines)
{
    refused("GET / HTTP/1.1\r\nHost : b\r\n\r\n", 400);         /* space before the colon */
    refused("GET / HTTP/1.1\r\nX-A: 1\r\n  2\r\n\r\n", 400);    /* folded */
    refused("GET / HTTP/1.1\r\nX-A: 1\r\n\tb: 2\r\n\r\n", 400); /* folded, with a colon */
    refused("GET / HTTP/1.1\r\nX-A: a\x01z\r\n\r\n", 400);      /* control in a value */
    refused("GET / HTTP/1.1\r\nX-A: a\rz\r\n\r\n", 400);        /* bare CR in a value */
    refused("GET / HTTP/1.1\r\nX-A: a\nz\r\n\r\n", 400);        /* bare LF in a value */
    refused("GET / HTTP/1.1\r\nHost\r\n\r\n", 400);             /* no colon */
    refused("GET / HTTP/1.1\r\n: v\r\n\r\n", 400);              /* no name */
    refused("GET / HTTP/1.1\r\nX(A): v\r\n\r\n", 400);          /* not a token */
    refused("GET / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", 400);
    static const char nul[] = "GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n";
    refused_n(nul, sizeof(nul) - 1, &lim, 400);
    static const char nul_line[] = "GET /\0 HTTP/1.1\r\n\r\n";
    refused_n(nul_line, sizeof(nul_line) - 1, &lim, 400);
}
END_TEST

START_TEST(test_bad_content_length)
{
    refused("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400);
    refused("POST / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\nxy", 400);
    refused("POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400);
    refused("POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400);
    refused("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400);
    refused("POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", 400);
    refused("POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", 400);
    refused("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", 400);
    refused("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400);
}
END_TEST

START_TEST(test_transfer_encoding)
{
    refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411);
    refused("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: identity\r\n\r\nabc", 411);
}
END_TEST

START_TEST(test_body_too_large)
{
    char req[128];
    snprintf(req, sizeof(req), "POST / HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", lim.max_body + 1);
    refused(req, 413); /* as soon as the headers are in: the body is not waited for */
    refused("POST / HTTP/1.1\r\nContent-Length: 1000000000000\r\n\r\n", 413);
    snprintf(req, sizeof(req), "POST / HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", lim.max_body);
    struct httpd_conn *h = httpd_conn_new();
    ck_assert_int_eq(frame(h, req).st, HTTPD_MORE); /* max_body itself is allowed */
    httpd_conn_free(h);
}
END_TEST

START_TEST(test_headers_too_large)
{
    char req[1024];
    memset(req, 'a', sizeof(req));
    memcpy(req, "GET / HTTP/1.1\r\nX: ", 19);
    struct httpd_conn *h = httpd_conn_new();
    ck_assert_int_eq(frame_n(h, &lim, req, lim.max_header - 1).st, HTTPD_MORE);
    httpd_conn_free(h);
    refused_n(req, lim.max_header, &lim, 431);
    refused_n(req, sizeof(req), &lim, 431);
    memcpy(req + 600, "\r\n\r\n", 4); /* an end, but past max_header */
    refused_n(req, 604, &lim, 431);
}
END_TEST

static size_t
many_headers(char *req, size_t cap, int n)
{
    size_t len = (size_t)snprintf(req, cap, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < n; i++) len += (size_t)snprintf(req + len, cap - len, "h%d: %d\r\n", i, i);
    len += (size_t)snprintf(req + len, cap - len, "\r\n");
    ck_assert_uint_lt(len, cap);
    return len;
}

START_TEST(test_too_many_headers)
{
    struct httpd_limits big = {.max_header = 8192, .max_body = 16};
    char req[4096];
    size_t len = many_headers(req, sizeof(req), HTTPD_MAX_HEADERS);
    struct httpd_conn *h = httpd_conn_new();
    struct step r = frame_n(h, &big, req, len);
    ck_assert_int_eq(r.st, HTTPD_REQUEST);
    ck_assert_uint_eq(r.rq.nheaders, HTTPD_MAX_HEADERS);
    ck_assert_str_eq(httpd_header(&r.rq, "h63"), "63");
    httpd_conn_free(h);
    len = many_headers(req, sizeof(req), HTTPD_MAX_HEADERS + 1);
    refused_n(req, len, &big, 431);
}
END_TEST

START_TEST(test_http_version)
{
    refused("GET / HTTP/2.0\r\n\r\n", 505);
    refused("GET / HTTP/1.2\r\n\r\n", 505);
    refused("GET / HTTP/0.9\r\n\r\n", 505);
    refused("GET / http/1.1\r\n\r\n", 505);
    refused("GET / HTTP/1.10\r\n\r\n", 505);
}
END_TEST

/* ---- percent-decoding ---- */

static void
unescaped(const char *s, long want_len, const char *want)
{
    char out[64];
    memset(out, 'X', sizeof(out));
    long n = httpd_unescape(s, strlen(s), out);
    ck_assert_msg(n == want_len, "%s: %ld", s, n);
    if (want) {
        ck_assert_str_eq(out, want);
        ck_assert_uint_eq(strlen(out), (size_t)n);
    }
}

START_TEST(test_unescape)
{
    unescaped("", 0, "");
    unescaped("/plain", 6, "/plain");
    unescaped("/a%20b", 4, "/a b");
    unescaped("%41%42c", 3, "ABc");
    unescaped("%2f%2F", 2, "//");
    unescaped("a+b", 3, "a+b"); /* '+' left as is */
    unescaped("%25", 1, "%");
    unescaped("%zz", -1, NULL);
    unescaped("%4", -1, NULL);
    unescaped("ab%4", -1, NULL);
    unescaped("ab%", -1, NULL);
    unescaped("%g1", -1, NULL);
    unescaped("%00", -1, NULL);
    unescaped("a%00b", -1, NULL);
    /* n bounds the input: no NUL needed, an escape cut by n is truncated */
    char out[8];
    ck_assert_int_eq(httpd_unescape("abc%41", 3, out), 3);
    ck_assert_str_eq(out, "abc");
    ck_assert_int_eq(httpd_unescape("%41", 2, out), -1);
    ck_assert_int_eq(httpd_unescape("\0a", 2, out), -1); /* a NUL byte */
}
END_TEST

START_TEST(test_query_param)
{
    const char *q = "a=1&ab=2&b=hello+world&c=%2Fx%26y%2B&d=&e&bad=%zz&a=second";
    char out[32];
    ck_assert_str_eq(httpd_query_param(q, "a", out, sizeof(out)), "1"); /* the first */
    ck_assert_ptr_eq(httpd_query_param(q, "a", out, sizeof(out)), out);
    ck_assert_str_eq(httpd_query_param(q, "ab", out, sizeof(out)), "2");
    ck_assert_str_eq(httpd_query_param(q, "b", out, sizeof(out)), "hello world");
    ck_assert_str_eq(httpd_query_param(q, "c", out, sizeof(out)), "/x&y+");
    ck_assert_str_eq(httpd_query_param(q, "d", out, sizeof(out)), "");
    ck_assert_ptr_null(httpd_query_param(q, "e", out, sizeof(out))); /* no '=' */
    ck_assert_ptr_null(httpd_query_param(q, "f", out, sizeof(out)));
    ck_assert_ptr_null(httpd_query_param(q, "bad", out, sizeof(out)));
    ck_assert_ptr_null(httpd_query_param("", "a", out, sizeof(out)));
    ck_assert_ptr_null(httpd_query_param("x=%00", "x", out, sizeof(out)));
    /* too long for out: refused, not cut */
    ck_assert_ptr_null(httpd_query_param("v=hello", "v", out, 5));
    ck_assert_str_eq(httpd_query_param("v=hello", "v", out, 6), "hello");
}
END_TEST

Suite *
suite_httpd(void)
{
    Suite *s = suite_create("httpd");
    TCase *tc = tcase_create("framing");
    tcase_add_test(tc, test_get_with_query_and_headers);
    tcase_add_test(tc, test_post_byte_by_byte);
    tcase_add_test(tc, test_post_in_two_pieces);
    tcase_add_test(tc, test_header_limit_byte_by_byte);
    tcase_add_test(tc, test_body_trickle_is_cheap);
    tcase_add_test(tc, test_pipelined);
    tcase_add_test(tc, test_frame_again_before_done);
    tcase_add_test(tc, test_keep_alive);
    tcase_add_test(tc, test_expect_continue_once);
    suite_add_tcase(s, tc);

    tc = tcase_create("refusals");
    tcase_add_test(tc, test_bad_request_line);
    tcase_add_test(tc, test_bad_method);
    tcase_add_test(tc, test_bad_header_lines);
    tcase_add_test(tc, test_bad_content_length);
    tcase_add_test(tc, test_transfer_encoding);
    tcase_add_test(tc, test_body_too_large);
    tcase_add_test(tc, test_headers_too_large);
    tcase_add_test(tc, test_too_many_headers);
    tcase_add_test(tc, test_http_version);
    suite_add_tcase(s, tc);

    tc = tcase_create("escapes");
    tcase_add_test(tc, test_unescape);
    tcase_add_test(tc, test_query_param);
    suite_add_tcase(s, tc);
    return s;
}
