/* SPDX-License-Identifier: MIT
 *
 * server: an http_listener connection's requests (request.c frames them) handed to
 * the owner, and the answers written. */
#include <stdio.h>
#include <string.h>

#include "httpd.h"
#include "net.h"
#include "sbuf.h"

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
    httpd_frame_done(h);
    return len;
}

size_t
httpd_feed(struct httpd_conn *h, struct conn *c, const uint8_t *p, size_t len,
           const struct httpd_limits *lim, httpd_handler fn, void *ud)
{
    struct httpd_request rq;
    size_t took;
    int status;
    const char *why;
    switch (httpd_frame(h, p, len, lim, &rq, &took, &status, &why)) {
    case HTTPD_MORE: return 0;
    case HTTPD_CONTINUE: {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        conn_write(c, cont, sizeof(cont) - 1);
        return 0;
    }
    case HTTPD_ERROR: return refuse(h, c, status, why, len);
    case HTTPD_REQUEST: break;
    }
    if (!fn(ud, c, &rq)) return 0; /* waits: fed again after conn_resume */
    httpd_frame_done(h);
    return took;
}
