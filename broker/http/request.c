/* SPDX-License-Identifier: MIT
 *
 * request: HTTP/1.1 request framing for the http_listener (httpd.h), without I/O. The
 * header block is searched incrementally (a client sending a byte at a time costs each
 * byte once), its end must come within max_header bytes, the body is what
 * Content-Length says and is handed over where it lies. Strict where leniency is an
 * attack surface: CRLF line ends only, no folded headers, no Transfer-Encoding, one
 * Content-Length. Fuzzed (test/fuzz/fuzz_http_request.c). */
#define _GNU_SOURCE /* memmem, strcasestr */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "httpd.h"
#include "lq.h"

struct httpd_conn {
    size_t scanned; /* bytes of input searched for the end of the headers */
    size_t hdr_len; /* the header block's length, end found; 0: not yet */
    bool continued; /* "100 Continue" sent for this request */
    bool parsed;    /* head, body_len and expect hold the parsed header block */
    bool expect;    /* "Expect: 100-continue" */
    size_t body_len;
    struct httpd_request head; /* without its body; strings in copy */
    char *copy;                /* the header block, NUL-split into the request's strings */
    struct httpd_header hdrs[HTTPD_MAX_HEADERS];
};

struct httpd_conn *
httpd_conn_new(void)
{
    return lq_xcalloc(1, sizeof(struct httpd_conn));
}

void
httpd_conn_free(struct httpd_conn *h)
{
    if (!h) return;
    free(h->copy);
    free(h);
}

static bool
is_tchar(unsigned char ch)
{
    return isalnum(ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* The header block (copied to h->copy) into rq; 0 or an error status with *why. */
static int
parse_head(struct httpd_conn *h, struct httpd_request *rq, size_t *content_length,
           bool *expect_continue, const char **why)
{
    char *s = h->copy, *end = strstr(s, "\r\n");
    *end = '\0';
    char *sp1 = strchr(s, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || strchr(sp2 + 1, ' ') || sp1 == s || sp1[1] != '/') {
        *why = "malformed request line";
        return 400;
    }
    *sp1 = *sp2 = '\0';
    for (const char *m = s; *m; m++)
        if (!isupper((unsigned char)*m)) {
            *why = "malformed method";
            return 400;
        }
    bool http11 = strcmp(sp2 + 1, "HTTP/1.1") == 0;
    if (!http11 && strcmp(sp2 + 1, "HTTP/1.0") != 0) {
        *why = "HTTP/1.1 or 1.0 only";
        return 505;
    }
    for (const char *t = sp1 + 1; *t; t++)
        if ((unsigned char)*t <= ' ' || *t == 0x7f) {
            *why = "malformed request target";
            return 400;
        }
    rq->method = s;
    rq->http11 = http11;
    rq->path = sp1 + 1;
    char *q = strchr(sp1 + 1, '?');
    rq->query = "";
    if (q) {
        *q = '\0';
        rq->query = q + 1;
    }
    rq->nheaders = 0;
    bool has_length = false, close = !http11; /* 1.0: one request per connection */
    *content_length = 0;
    *expect_continue = false;
    for (char *line = end + 2; *line && !(line[0] == '\r' && line[1] == '\n');) {
        char *eol = strstr(line, "\r\n");
        *eol = '\0';
        char *colon = strchr(line, ':');
        if (!colon || colon == line) {
            *why = "malformed header line";
            return 400;
        }
        for (char *n = line; n < colon; n++) {
            if (!is_tchar((unsigned char)*n)) {
                *why = "malformed header name"; /* folded lines and spaces before ':' too */
                return 400;
            }
            *n = (char)tolower((unsigned char)*n);
        }
        *colon = '\0';
        char *v = colon + 1, *ve = eol;
        while (*v == ' ' || *v == '\t') v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) *--ve = '\0';
        for (const char *x = v; *x; x++)
            if ((unsigned char)*x < ' ' && *x != '\t') {
                *why = "control character in a header";
                return 400;
            }
        if (rq->nheaders == HTTPD_MAX_HEADERS) {
            *why = "too many headers";
            return 431;
        }
        h->hdrs[rq->nheaders++] = (struct httpd_header){line, v};
        if (strcmp(line, "content-length") == 0) {
            char *e;
            unsigned long long n = strtoull(v, &e, 10);
            if (has_length || !isdigit((unsigned char)*v) || *e || n > SIZE_MAX / 2) {
                *why = "bad or repeated Content-Length";
                return 400;
            }
            has_length = true;
            *content_length = (size_t)n;
        } else if (strcmp(line, "transfer-encoding") == 0) {
            *why = "Transfer-Encoding is not supported: send Content-Length";
            return 411;
        } else if (strcmp(line, "connection") == 0) {
            if (strcasestr(v, "close")) close = true;
        } else if (strcmp(line, "expect") == 0) {
            if (strcasecmp(v, "100-continue") != 0) {
                *why = "unsupported Expect";
                return 400; /* 417 in the RFC; nobody sends anything else */
            }
            *expect_continue = true;
        }
        line = eol + 2;
    }
    rq->headers = h->hdrs;
    rq->keep_alive = !close;
    return 0;
}

enum httpd_step
httpd_frame(struct httpd_conn *h, const uint8_t *p, size_t len, const struct httpd_limits *lim,
            struct httpd_request *rq, size_t *took, int *status, const char **why)
{
    *took = 0;
    if (!h->hdr_len) {
        size_t from = h->scanned > 3 ? h->scanned - 3 : 0;
        size_t upto = len < lim->max_header ? len : lim->max_header;
        const uint8_t *e = upto > from ? memmem(p + from, upto - from, "\r\n\r\n", 4) : NULL;
        if (!e) {
            h->scanned = upto;
            if (len < lim->max_header) return HTTPD_MORE;
            *status = 431;
            *why = "request line and headers too large";
            return HTTPD_ERROR;
        }
        h->hdr_len = (size_t)(e - p) + 4;
        if (memchr(p, '\0', h->hdr_len)) {
            *status = 400;
            *why = "NUL byte in the headers";
            return HTTPD_ERROR;
        }
        free(h->copy);
        h->copy = lq_xmalloc(h->hdr_len + 1);
        h->copy[h->hdr_len] = '\0';
    }
    if (!h->parsed) { /* once: a body trickling in must not cost a parse per read */
        memset(&h->head, 0, sizeof(h->head));
        memcpy(h->copy, p, h->hdr_len);
        if ((*status = parse_head(h, &h->head, &h->body_len, &h->expect, why))) return HTTPD_ERROR;
        if (h->body_len > lim->max_body) {
            *status = 413;
            *why = "body too large";
            return HTTPD_ERROR;
        }
        h->parsed = true;
    }
    *rq = h->head;
    size_t need = h->hdr_len + h->body_len;
    if (len < need) {
        if (!h->expect || h->continued) return HTTPD_MORE;
        h->continued = true;
        return HTTPD_CONTINUE;
    }
    rq->body = p + h->hdr_len;
    rq->body_len = h->body_len;
    *took = need;
    return HTTPD_REQUEST;
}

void
httpd_frame_done(struct httpd_conn *h)
{
    h->scanned = h->hdr_len = 0;
    h->continued = h->parsed = false;
}

const char *
httpd_header(const struct httpd_request *rq, const char *name)
{
    for (size_t i = 0; i < rq->nheaders; i++)
        if (strcmp(rq->headers[i].name, name) == 0) return rq->headers[i].value;
    return NULL;
}

static int
hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

long
httpd_unescape(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            if (i + 2 >= n) return -1;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            ch = (char)(hi * 16 + lo);
            i += 2;
        }
        if (ch == '\0') return -1;
        out[o++] = ch;
    }
    out[o] = '\0';
    return (long)o;
}

const char *
httpd_query_param(const char *query, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    for (const char *q = query; q && *q;) {
        const char *amp = strchr(q, '&'), *end = amp ? amp : q + strlen(q);
        if ((size_t)(end - q) > nl && strncmp(q, name, nl) == 0 && q[nl] == '=') {
            const char *v = q + nl + 1;
            size_t vl = (size_t)(end - v);
            if (vl >= outlen) return NULL;
            char tmp[1024];
            if (vl >= sizeof(tmp)) return NULL;
            for (size_t i = 0; i < vl; i++) tmp[i] = v[i] == '+' ? ' ' : v[i];
            return httpd_unescape(tmp, vl, out) < 0 ? NULL : out;
        }
        q = amp ? amp + 1 : NULL;
    }
    return NULL;
}
