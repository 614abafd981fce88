/* SPDX-License-Identifier: MIT
 *
 * httpd: HTTP/1.1 requests read off a connection in stream mode (net.h on_bytes),
 * for the http_listener. It only frames and answers: a request is handed over whole
 * (request line, headers, body of Content-Length) and the owner answers it at once
 * or later; nothing here knows what a path means.
 *
 * Bounded like the MQTT side: the request line and headers at most max_header bytes
 * (else 431), a body at most max_body (else 413), no chunked bodies (411), one
 * request at a time per connection (the next is not read before the answer). The
 * caller sets the connection's deadlines. Malformed requests get 400 and the
 * connection is closed.
 */
#ifndef LUNAMQ_HTTPD_H
#define LUNAMQ_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conn;
struct httpd_conn;

#define HTTPD_MAX_HEADERS 64

struct httpd_header {
    const char *name; /* lower-case */
    const char *value;
};

struct httpd_request {
    const char *method; /* as sent: "GET", "POST"... */
    const char *path;   /* percent-encoded, as sent, without the query */
    const char *query;  /* after '?', "" without one */
    const struct httpd_header *headers;
    size_t nheaders;
    const uint8_t *body;
    size_t body_len;
    bool keep_alive; /* HTTP/1.1 without "Connection: close" (1.0: never) */
    bool http11;     /* HTTP/1.1 (else 1.0) */
};

struct httpd_limits {
    size_t max_header;
    size_t max_body;
};

/* Per connection: made on accept, freed with the conn. */
struct httpd_conn *httpd_conn_new(void);
void httpd_conn_free(struct httpd_conn *h); /* NULL is a no-op */

/* What the owner does with a whole request: answer now (httpd_respond) or pause the
 * conn and return false, to be fed the same bytes again after conn_resume (a password
 * being checked). true: the request is done with. */
typedef bool (*httpd_handler)(void *ud, struct conn *c, const struct httpd_request *rq);

/* Framing alone (no I/O; fuzzed): one request at p, the bytes received and not yet
 * taken. MORE: not whole yet (CONTINUE: the same, and now is the time for "100
 * Continue"); REQUEST: rq filled, *took its length, valid until the next call (call
 * httpd_frame_done once it is answered); ERROR: *status (400, 411, 413, 431, 505) and
 * *why, the connection is no longer in step. */
enum httpd_step { HTTPD_MORE, HTTPD_CONTINUE, HTTPD_REQUEST, HTTPD_ERROR };
enum httpd_step httpd_frame(struct httpd_conn *h, const uint8_t *p, size_t len,
                            const struct httpd_limits *lim, struct httpd_request *rq, size_t *took,
                            int *status, const char **why);
void httpd_frame_done(struct httpd_conn *h);

/* For conn_ops.on_bytes: frames one request from p and calls fn; answers malformed
 * or oversized requests itself. Returns the bytes taken (0: the request is not whole,
 * or waits). The request's strings point into a copy that lives until the next call. */
size_t httpd_feed(struct httpd_conn *h, struct conn *c, const uint8_t *p, size_t len,
                  const struct httpd_limits *lim, httpd_handler fn, void *ud);

/* The value of header `name` (lower-case) of rq, or NULL. */
const char *httpd_header(const struct httpd_request *rq, const char *name);

/* Answer: status line, Content-Type and Content-Length, extra header lines (each
 * ending in \r\n, or NULL), the body. Without keep_alive the conn is closed after. */
void httpd_respond(struct conn *c, int status, const char *content_type, const void *body,
                   size_t len, const char *extra, bool keep_alive);

/* The dashboard page (broker/http/dashboard.html, built in by dashboard.S). */
extern const char lq_dashboard_html[], lq_dashboard_html_end[];

/* Decode %XX escapes of s[0..n) into out (n + 1 bytes): its length, or -1 for a bad
 * escape or a NUL byte. '+' is left as is (paths; for queries the caller maps it). */
long httpd_unescape(const char *s, size_t n, char *out);

/* The value of parameter `name` in a query string, decoded ('+' is a space) into
 * out (outlen), or NULL when absent or malformed. */
const char *httpd_query_param(const char *query, const char *name, char *out, size_t outlen);

#endif
