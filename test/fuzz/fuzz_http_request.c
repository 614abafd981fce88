/* SPDX-License-Identifier: MIT
 *
 * libFuzzer target over the HTTP request framer (httpd_frame in broker/http/request.c).
 * The first byte says how the rest arrives: its low 3 bits are a count k of the bytes
 * after it that give piece lengths (each + 1, used in turn; k = 0: one byte at a time),
 * bit 7 picks tiny limits (max_header 64, max_body 16) instead of 512 and 2048. The
 * rest is one client's byte stream, fed twice:
 *
 * - piecewise, the way the conn layer does it: a buffer of the bytes not yet taken,
 *   grown a piece at a time (reallocated to its exact length, so ASan sees any read
 *   past it or any pointer kept from an earlier call), httpd_frame after each piece,
 *   and on REQUEST httpd_frame_done, `took` bytes dropped and framing again at once
 *   (pipelined requests);
 * - whole, to a second httpd_conn, each REQUEST framed twice (a paused handler is fed
 *   the same bytes again) before it is taken.
 *
 * Every REQUEST must be well formed (a token method in upper case, a path from '/',
 * lower-case token header names, trimmed values without controls, the header block
 * ending at its first CRLFCRLF within max_header, the body where Content-Length says,
 * header block + body == took <= len); CONTINUE comes at most once per request; the
 * two feedings must give the same REQUEST and ERROR outcomes in the same order (MORE
 * and CONTINUE aside; a stream ending mid-request just ends). httpd_unescape and
 * httpd_query_param run on each request's path and query against a reference.
 *
 * `make fuzz FUZZ_SECONDS=N`; seeds in test/fuzz/corpus-http (make_corpus_http.py). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "fuzz_check.h"

/* The outcomes of one feeding, serialised: REQUEST and ERROR only. */
struct outcomes {
    uint8_t *p;
    size_t len, cap;
};

static void
put(struct outcomes *o, const void *p, size_t n)
{
    if (o->len + n > o->cap) {
        o->cap = (o->len + n) * 2;
        o->p = realloc(o->p, o->cap);
        CHECK(o->p);
    }
    if (n) memcpy(o->p + o->len, p, n);
    o->len += n;
}

static void
put_str(struct outcomes *o, const char *s)
{
    put(o, s, strlen(s) + 1);
}

static void
put_size(struct outcomes *o, size_t n)
{
    put(o, &n, sizeof(n));
}

static bool
is_tchar(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int
hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* httpd_unescape as its contract says it: -1 for a bad escape or a NUL, else the length. */
static long
ref_unescape(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];
        if (ch == '%') {
            if (n - i < 3 || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0) return -1;
            ch = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
            i += 2;
        }
        if (!ch) return -1;
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    return (long)o;
}

/* httpd_unescape on s[0..n), into a buffer of exactly n + 1 bytes, against the reference. */
static void
check_unescape(const char *s, size_t n)
{
    char *out = malloc(n + 1), *want = malloc(n + 1);
    CHECK(out && want);
    long got = httpd_unescape(s, n, out), exp = ref_unescape(s, n, want);
    CHECK(got == exp);
    if (got >= 0) {
        CHECK((size_t)got <= n);
        CHECK(out[got] == '\0' && strlen(out) == (size_t)got);
        CHECK(memcmp(out, want, (size_t)got) == 0);
    }
    free(out);
    free(want);
}

/* httpd_query_param for name, with an out buffer of outlen, against the first
 * "name=" parameter decoded by the reference ('+' a space, then %XX). */
static void
check_param(const char *query, const char *name, size_t outlen)
{
    size_t nl = strlen(name);
    const char *v = NULL, *ve = NULL;
    for (const char *q = query; *q;) {
        const char *amp = strchr(q, '&'), *end = amp ? amp : q + strlen(q);
        if ((size_t)(end - q) > nl && memcmp(q, name, nl) == 0 && q[nl] == '=') {
            v = q + nl + 1;
            ve = end;
            break;
        }
        if (!amp) break;
        q = amp + 1;
    }
    char *want = NULL;
    if (v && (size_t)(ve - v) < outlen && ve - v < 1024) { /* 1024: its scratch buffer */
        size_t vl = (size_t)(ve - v);
        char *plus = malloc(vl + 1);
        want = malloc(vl + 1);
        CHECK(plus && want);
        for (size_t i = 0; i < vl; i++) plus[i] = v[i] == '+' ? ' ' : v[i];
        if (ref_unescape(plus, vl, want) < 0) {
            free(want);
            want = NULL;
        }
        free(plus);
    }
    char *out = malloc(outlen);
    CHECK(out);
    const char *got = httpd_query_param(query, name, out, outlen);
    CHECK((got == NULL) == (want == NULL));
    if (got) {
        CHECK(got == out);
        CHECK(strlen(out) < outlen && strlen(out) <= (size_t)(ve - v));
        CHECK(strcmp(out, want) == 0);
    }
    free(out);
    free(want);
}

static void
check_escapes(const struct httpd_request *rq)
{
    check_unescape(rq->path, strlen(rq->path));
    check_unescape(rq->query, strlen(rq->query));
    /* every parameter name in the query, and one that is absent */
    for (const char *q = rq->query; *q;) {
        const char *amp = strchr(q, '&'), *end = amp ? amp : q + strlen(q);
        const char *eq = memchr(q, '=', (size_t)(end - q));
        size_t nl = (size_t)((eq ? eq : end) - q);
        char name[64];
        if (nl < sizeof(name)) {
            memcpy(name, q, nl);
            name[nl] = '\0';
            check_param(rq->query, name, 8);
            check_param(rq->query, name, 2048);
        }
        if (!amp) break;
        q = amp + 1;
    }
    check_param(rq->query, "\001absent", 64);
}

/* A REQUEST framed from p[0..len): well formed, and recorded into o. */
static void
check_request(const uint8_t *p, size_t len, const struct httpd_limits *lim,
              const struct httpd_request *rq, size_t took, struct outcomes *o)
{
    CHECK(took > 0 && took <= len);
    CHECK(rq->body >= p && rq->body <= p + took);
    size_t hdr_len = (size_t)(rq->body - p);
    CHECK(hdr_len + rq->body_len == took);
    CHECK(hdr_len >= 4 && hdr_len <= lim->max_header && rq->body_len <= lim->max_body);
    /* the header block ends at its first CRLFCRLF, and has no NUL */
    CHECK(memcmp(p + hdr_len - 4, "\r\n\r\n", 4) == 0);
    for (size_t i = 0; i + 4 < hdr_len; i++) CHECK(memcmp(p + i, "\r\n\r\n", 4) != 0);
    CHECK(!memchr(p, '\0', hdr_len));

    CHECK(rq->method && rq->method[0]);
    for (const char *m = rq->method; *m; m++) CHECK(*m >= 'A' && *m <= 'Z');
    CHECK(rq->path && rq->path[0] == '/' && rq->query);
    CHECK(!strchr(rq->path, '?'));
    for (const char *t = rq->path; *t; t++) CHECK((unsigned char)*t > ' ' && *t != 0x7f);
    for (const char *t = rq->query; *t; t++) CHECK((unsigned char)*t > ' ' && *t != 0x7f);
    /* the request line is the first line, as sent */
    size_t ml = strlen(rq->method), pl = strlen(rq->path), ql = strlen(rq->query);
    CHECK(hdr_len > ml + 1 + pl + 1 + ql && memcmp(p, rq->method, ml) == 0 && p[ml] == ' ' &&
          memcmp(p + ml + 1, rq->path, pl) == 0);
    const uint8_t *after = p + ml + 1 + pl; /* ' ', or '?' and the query */
    CHECK(*after == ' ' ? !ql : *after == '?' && memcmp(after + 1, rq->query, ql) == 0);

    CHECK(rq->nheaders <= HTTPD_MAX_HEADERS && (rq->headers || !rq->nheaders));
    size_t lengths = 0, content_length = 0;
    for (size_t i = 0; i < rq->nheaders; i++) {
        const char *n = rq->headers[i].name, *v = rq->headers[i].value;
        CHECK(n && n[0] && v);
        for (const char *c = n; *c; c++)
            CHECK(is_tchar((unsigned char)*c) && !(*c >= 'A' && *c <= 'Z'));
        size_t vl = strlen(v);
        for (size_t j = 0; j < vl; j++) CHECK((unsigned char)v[j] >= ' ' || v[j] == '\t');
        CHECK(!vl || (v[0] != ' ' && v[0] != '\t' && v[vl - 1] != ' ' && v[vl - 1] != '\t'));
        CHECK(strcmp(n, "transfer-encoding") != 0);
        if (strcmp(n, "content-length") == 0) {
            lengths++;
            char *e;
            content_length = (size_t)strtoull(v, &e, 10);
            CHECK(v[0] >= '0' && v[0] <= '9' && !*e);
        }
        /* httpd_header finds the first header of that name */
        size_t first = 0;
        while (strcmp(rq->headers[first].name, n) != 0) first++;
        CHECK(httpd_header(rq, n) == rq->headers[first].value);
    }
    CHECK(lengths <= 1 && rq->body_len == content_length);
    CHECK(!httpd_header(rq, "\001absent"));
    check_escapes(rq);

    put(o, "R", 1);
    put_str(o, rq->method);
    put_str(o, rq->path);
    put_str(o, rq->query);
    put(o, &rq->keep_alive, sizeof(rq->keep_alive));
    put_size(o, rq->nheaders);
    for (size_t i = 0; i < rq->nheaders; i++) {
        put_str(o, rq->headers[i].name);
        put_str(o, rq->headers[i].value);
    }
    put_size(o, took);
    put_size(o, rq->body_len);
    put(o, rq->body, rq->body_len);
}

static void
record_error(int status, const char *why, struct outcomes *o)
{
    CHECK(status == 400 || status == 411 || status == 413 || status == 431 || status == 505);
    CHECK(why && why[0]);
    put(o, "E", 1);
    put(o, &status, sizeof(status));
}

/* A copy of p[0..len) in a block of exactly len bytes. */
static uint8_t *
exact_copy(const uint8_t *p, size_t len)
{
    uint8_t *b = malloc(len ? len : 1);
    CHECK(b);
    if (len) memcpy(b, p, len);
    return b;
}

static void
feed_whole(const uint8_t *data, size_t size, const struct httpd_limits *lim, struct outcomes *o)
{
    struct httpd_conn *h = httpd_conn_new();
    uint8_t *buf = exact_copy(data, size);
    size_t off = 0;
    for (;;) {
        const uint8_t *p = buf + off;
        size_t len = size - off, took = 99, took2 = 99;
        struct httpd_request rq, rq2;
        int status = 0;
        const char *why = NULL;
        enum httpd_step st = httpd_frame(h, p, len, lim, &rq, &took, &status, &why);
        if (st == HTTPD_ERROR) {
            record_error(status, why, o);
            break;
        }
        if (st != HTTPD_REQUEST) {
            CHECK(st == HTTPD_MORE || st == HTTPD_CONTINUE);
            CHECK(took == 0);
            break; /* the stream ends mid-request */
        }
        check_request(p, len, lim, &rq, took, o);
        /* framed again before httpd_frame_done: the same request */
        struct outcomes a = {0}, b = {0};
        check_request(p, len, lim, &rq, took, &a);
        CHECK(httpd_frame(h, p, len, lim, &rq2, &took2, &status, &why) == HTTPD_REQUEST);
        check_request(p, len, lim, &rq2, took2, &b);
        CHECK(a.len == b.len && memcmp(a.p, b.p, a.len) == 0);
        free(a.p);
        free(b.p);
        httpd_frame_done(h);
        off += took;
    }
    free(buf);
    httpd_conn_free(h);
}

static void
feed_pieces(const uint8_t *data, size_t size, const uint8_t *lens, size_t nlens,
            const struct httpd_limits *lim, struct outcomes *o)
{
    struct httpd_conn *h = httpd_conn_new();
    uint8_t *buf = NULL; /* the bytes received and not yet taken: exactly len of them */
    size_t len = 0, sent = 0, piece = 0;
    unsigned continues = 0; /* for the request at the head of buf */
    bool failed = false;
    while (sent < size && !failed) {
        size_t n = nlens ? (size_t)lens[piece++ % nlens] + 1 : 1;
        if (n > size - sent) n = size - sent;
        uint8_t *grown = malloc(len + n);
        CHECK(grown);
        if (len) memcpy(grown, buf, len);
        memcpy(grown + len, data + sent, n);
        free(buf);
        buf = grown;
        len += n;
        sent += n;
        for (;;) {
            struct httpd_request rq;
            size_t took = 99;
            int status = 0;
            const char *why = NULL;
            enum httpd_step st = httpd_frame(h, buf, len, lim, &rq, &took, &status, &why);
            if (st == HTTPD_ERROR) {
                record_error(status, why, o);
                failed = true;
                break;
            }
            if (st != HTTPD_REQUEST) {
                CHECK(took == 0);
                if (st == HTTPD_CONTINUE) CHECK(++continues == 1);
                CHECK(st == HTTPD_MORE || st == HTTPD_CONTINUE);
                break; /* wait for the next piece */
            }
            check_request(buf, len, lim, &rq, took, o);
            httpd_frame_done(h);
            continues = 0;
            /* what follows, pipelined, in a block of its own */
            uint8_t *rest = exact_copy(buf + took, len - took);
            free(buf);
            buf = rest;
            len -= took;
        }
    }
    free(buf);
    httpd_conn_free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size) return 0;
    size_t nlens = data[0] & 7;
    struct httpd_limits lim = {.max_header = 512, .max_body = 2048};
    if (data[0] & 0x80) lim = (struct httpd_limits){.max_header = 64, .max_body = 16};
    if (nlens > size - 1) nlens = size - 1;
    const uint8_t *lens = data + 1, *stream = data + 1 + nlens;
    size_t slen = size - 1 - nlens;

    struct outcomes whole = {0}, pieces = {0};
    feed_whole(stream, slen, &lim, &whole);
    feed_pieces(stream, slen, lens, nlens, &lim, &pieces);
    CHECK(whole.len == pieces.len);
    CHECK(!whole.len || memcmp(whole.p, pieces.p, whole.len) == 0);
    free(whole.p);
    free(pieces.p);
    return 0;
}
