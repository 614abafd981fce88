/* SPDX-License-Identifier: MIT
 *
 * server: HTTP/1.1 request framing for the http_listener (httpd.h). The header block is
 * searched incrementally (a client sending a byte at a time costs each byte once), its
 * end must come within max_header bytes, the body is what Content-Length says and
 * is handed over where it lies. Strict where leniency is an attack surface: CRLF line
 * ends only, no folded headers, no Transfer-Encoding, one Content-Length. */
#define _GNU_SOURCE /* memmem, strcasestr */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "httpd.h"
#include "lq.h"
#include "net.h"
#include "sbuf.h"

struct httpd_conn {
    size_t scanned; /* bytes of input searched for the end of the headers */
    size_t hdr_len; /* the header block's length, end found; 0: not yet */
    size_t need;    /* headers and body, once known */
    bool continued; /* "100 Continue" sent for this request */
    char *copy;     /* the header block, NUL-split into the request's strings */
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

static const char *
reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

void
httpd_respond(struct conn *c, int status, const char *content_type, const void *body, size_t len,
              const char *extra, bool keep_alive)
{
    struct sbuf b = {0};
    sbuf_printf(&b, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n", status,
                reason(status), content_type, len, extra ? extra : "",
                keep_alive ? "" : "Connection: close\r\n");
    sbuf_put(&b, body, len);
    conn_write(c, b.p, b.len);
    sbuf_free(&b);
    if (!keep_alive) conn_close(c);
}

/* A refusal of the request itself: the conn cannot be trusted to be in step. */
static size_t
refuse(struct httpd_conn *h, struct conn *c, int status, const char *why, size_t len)
{
    char body[160];
    int n = snprintf(body, sizeof(body), "{\"error\": \"%s\"}\n", why);
    httpd_respond(c, status, "application/json", body, (size_t)n, NULL, false);
    h->scanned = h->hdr_len = h->need = 0;
    return len;
}

static bool
is_tchar(unsigned char ch)
{
    return isalnum(ch) || strchr("!#$%&'*+-.^_`|~", ch) != NULL;
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
    rq->path = sp1 + 1;
    char *q = strchr(sp1 + 1, '?');
    rq->query = "";
    if (q) {
        *q = '\0';
        rq->query = q + 1;
    }
    rq->nheaders = 0;
    bool has_length = false, close = !http11, keep = false;
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
            if (strcasestr(v, "keep-alive")) keep = true;
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
    rq->keep_alive = http11 ? !close : keep && !close;
    return 0;
}

size_t
httpd_feed(struct httpd_conn *h, struct conn *c, const uint8_t *p, size_t len,
           const struct httpd_limits *lim, httpd_handler fn, void *ud)
{
    if (!h->hdr_len) {
        size_t from = h->scanned > 3 ? h->scanned - 3 : 0;
        size_t upto = len < lim->max_header ? len : lim->max_header;
        const uint8_t *e = upto > from ? memmem(p + from, upto - from, "\r\n\r\n", 4) : NULL;
        if (!e) {
            h->scanned = upto;
            if (len >= lim->max_header)
                return refuse(h, c, 431, "request line and headers too large", len);
            return 0;
        }
        h->hdr_len = (size_t)(e - p) + 4;
        if (memchr(p, '\0', h->hdr_len)) return refuse(h, c, 400, "NUL byte in the headers", len);
        free(h->copy);
        h->copy = lq_xmalloc(h->hdr_len + 1);
        memcpy(h->copy, p, h->hdr_len);
        h->copy[h->hdr_len] = '\0';
    }
    struct httpd_request rq = {0};
    size_t body_len;
    bool expect;
    const char *why = NULL;
    /* parsed again on each call: the copy is NUL-split, so parse a fresh one */
    memcpy(h->copy, p, h->hdr_len);
    int st = parse_head(h, &rq, &body_len, &expect, &why);
    if (st) return refuse(h, c, st, why, len);
    if (body_len > lim->max_body) return refuse(h, c, 413, "body too large", len);
    h->need = h->hdr_len + body_len;
    if (len < h->need) {
        if (expect && !h->continued) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            conn_write(c, cont, sizeof(cont) - 1);
            h->continued = true;
        }
        return 0;
    }
    rq.body = p + h->hdr_len;
    rq.body_len = body_len;
    if (!fn(ud, c, &rq)) return 0; /* waits: fed again after conn_resume */
    size_t took = h->need;
    h->scanned = h->hdr_len = h->need = 0;
    h->continued = false;
    return took;
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
