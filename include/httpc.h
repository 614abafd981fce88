/* SPDX-License-Identifier: MIT
 *
 * httpc: outgoing HTTP(S) requests for hooks (broker.http.request), on the broker's
 * own event loop: libcurl's multi-socket interface driven by libevent, so no thread
 * per request and no blocking call on the loop (curl resolves names on its own
 * resolver thread). Connections to the same host are reused.
 *
 * Nothing is reachable unless the allow list says so: a URL is allowed when its
 * scheme, host and port equal those of an allowed prefix and its path (after
 * curl's normalisation of dot segments) starts with the prefix's path. Only http
 * and https; redirects are never followed; HTTPS verifies the peer against the
 * system CA store or cafile.
 *
 * Every request has a total deadline and a response size limit; a response over it
 * ends the transfer with HTTPC_TOO_LARGE (the body is not kept). The caller bounds
 * how many requests it starts; httpc bounds the total in flight (max_transfers).
 */
#ifndef LUNAMQ_HTTPC_H
#define LUNAMQ_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct httpc;
struct httpc_xfer;

struct httpc_conf {
    const char *const *allow; /* URL prefixes (hook_http_allow) */
    size_t nallow;
    const char *cafile;          /* NULL: the system's CA store */
    uint32_t connect_timeout_ms; /* default 5000 */
    uint32_t timeout_ms;         /* total, the most a request may ask; default 30000 */
    size_t max_response;         /* body bytes; default 1 MiB */
    size_t max_request;          /* body bytes; default 1 MiB */
    unsigned max_transfers;      /* in flight, broker-wide; default 256 */
};

enum httpc_result {
    HTTPC_OK,        /* a response came (any status) */
    HTTPC_TIMEOUT,   /* connect or total deadline */
    HTTPC_CONNECT,   /* name not resolved, connection refused or reset */
    HTTPC_TLS,       /* handshake or certificate verification failed */
    HTTPC_TOO_LARGE, /* the response body passed max_response */
    HTTPC_ERROR,     /* anything else (protocol error, out of memory, shut down) */
};
const char *httpc_result_name(enum httpc_result r); /* "ok", "timeout", "connect", ... */

struct httpc_header {
    const char *name, *value;
};

struct httpc_response {
    enum httpc_result result;
    const char *error;                  /* a human-readable reason when result != HTTPC_OK */
    long status;                        /* HTTP status, 0 without a response */
    const struct httpc_header *headers; /* of the final response, names lower-cased */
    size_t nheaders;
    const char *body; /* NUL-terminated after body_len for convenience */
    size_t body_len;
    uint64_t elapsed_us;
};

/* Valid only during the call. Runs on the loop, never inside httpc_start. */
typedef void (*httpc_done_fn)(void *ud, const struct httpc_response *r);

struct httpc_request {
    const char *method; /* NULL: GET, or POST with a body */
    const char *url;
    const struct httpc_header *headers;
    size_t nheaders;
    const void *body;
    size_t body_len;
    uint32_t timeout_ms; /* 0 or more than the configured one: the configured one */
};

/* NULL with a message in err for a bad configuration (an allow prefix that is not an
 * http(s) URL). */
struct httpc *httpc_new(struct event_base *base, const struct httpc_conf *c, char *err,
                        size_t errlen);
/* Transfers under way are ended; their callbacks are not called. NULL is a no-op. */
void httpc_free(struct httpc *hc);
/* New settings (SIGHUP): apply to requests started from now on. False with err as
 * for httpc_new, the old settings kept. */
bool httpc_configure(struct httpc *hc, const struct httpc_conf *c, char *err, size_t errlen);

/* Is url allowed? err says why not (not an http(s) URL, not in hook_http_allow). */
bool httpc_allowed(const struct httpc *hc, const char *url, char *err, size_t errlen);

/* Start a request; done is called once, later, on the loop. NULL with err when the
 * request is refused at once (not allowed, a bad method, header or URL, a body over
 * max_request, max_transfers in flight: "busy"). The request's strings are copied. */
struct httpc_xfer *httpc_start(struct httpc *hc, const struct httpc_request *rq, httpc_done_fn done,
                               void *ud, char *err, size_t errlen);
/* End a transfer before it completes; its callback is not called. */
void httpc_cancel(struct httpc_xfer *x);

struct httpc_stats {
    uint64_t started, completed, in_flight;
    uint64_t by_result[HTTPC_ERROR + 1];
    uint64_t refused; /* httpc_start returned NULL */
};
void httpc_get_stats(const struct httpc *hc, struct httpc_stats *out);

#endif
