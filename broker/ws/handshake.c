/* SPDX-License-Identifier: MIT
 *
 * ws handshake (RFC 6455 section 4.2): an HTTP upgrade request, already framed by
 * httpd, checked and answered. The answer is written, not sent: the caller puts it
 * on the connection and, on 101, switches the connection to frames.
 *
 * Refusals close the connection (Connection: close); their body is the reason, which
 * is also what the caller logs.
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <mbedtls/base64.h>
#include <mbedtls/sha1.h>

#include "httpd.h"
#include "ws.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define KEY_LEN 24 /* 16 bytes in base64 */

typedef int (*name_cmp)(const char *, const char *, size_t);

/* Does the comma-separated list hold token (compared with cmp, spaces around the
 * commas ignored)? */
static bool
list_has(const char *list, const char *token, name_cmp cmp)
{
    size_t tl = strlen(token);
    for (const char *s = list; s && *s;) {
        s += strspn(s, " \t");
        size_t n = strcspn(s, ",");
        size_t end = n;
        while (end > 0 && (s[end - 1] == ' ' || s[end - 1] == '\t')) end--;
        if (end == tl && cmp(s, token, tl) == 0) return true;
        s += n;
        if (*s == ',') s++;
    }
    return false;
}

static const char *
reason_phrase(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 426: return "Upgrade Required";
    default: return "Internal Server Error";
    }
}

/* A refusal in resp: status, extra header lines (each ending in \r\n, or ""), and
 * the reason as its body. */
static int
refuse(char *resp, int status, const char *extra, const char *reason, const char **why)
{
    int n = snprintf(resp, WS_RESPONSE_MAX,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n%s\r\n%s\n",
                     status, reason_phrase(status), strlen(reason) + 1, extra, reason);
    assert(n > 0 && n < WS_RESPONSE_MAX); /* the reasons are ours, and short */
    (void)n;
    *why = reason;
    return status;
}

/* Is the key 16 bytes in base64? Its alphabet is checked first so that the decoder's
 * leniency (it skips some white space) cannot let a different key through. */
static bool
key_valid(const char *key)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                   "0123456789+/";
    if (strlen(key) != KEY_LEN || strspn(key, alphabet) != KEY_LEN - 2) return false;
    if (strcmp(key + KEY_LEN - 2, "==") != 0) return false;
    unsigned char raw[KEY_LEN];
    size_t n = 0;
    return mbedtls_base64_decode(raw, sizeof(raw), &n, (const unsigned char *)key, KEY_LEN) == 0 &&
           n == 16;
}

/* base64(SHA-1(key GUID)) into out (29 bytes at least): 0, or -1 if mbedTLS fails. */
static int
accept_value(const char *key, char *out, size_t outlen)
{
    unsigned char in[KEY_LEN + sizeof(WS_GUID)], sha[20];
    memcpy(in, key, KEY_LEN);
    memcpy(in + KEY_LEN, WS_GUID, sizeof(WS_GUID) - 1);
    size_t n = 0;
    if (mbedtls_sha1(in, KEY_LEN + sizeof(WS_GUID) - 1, sha) != 0) return -1;
    if (mbedtls_base64_encode((unsigned char *)out, outlen, &n, sha, sizeof(sha)) != 0) return -1;
    return 0;
}

static bool
origin_allowed(const struct httpd_request *rq, const struct ws_policy *pol)
{
    const char *origin = httpd_header(rq, "origin");
    if (!origin || !pol || pol->norigins == 0) return true; /* not a browser, or any */
    for (size_t i = 0; i < pol->norigins; i++)
        if (strcasecmp(origin, pol->origins[i]) == 0) return true;
    return false;
}

int
ws_handshake(const struct httpd_request *rq, const struct ws_policy *pol, char *resp,
             const char **why)
{
    const char *upgrade = httpd_header(rq, "upgrade");
    if (!list_has(upgrade, "websocket", strncasecmp))
        return refuse(resp, 426, "Upgrade: websocket\r\n",
                      "a WebSocket endpoint: upgrade to websocket", why);
    if (strcmp(rq->method, "GET") != 0)
        return refuse(resp, 400, "", "a WebSocket upgrade is a GET", why);
    if (!rq->http11) return refuse(resp, 400, "", "a WebSocket upgrade needs HTTP/1.1", why);
    if (!httpd_header(rq, "host")) return refuse(resp, 400, "", "no Host header", why);
    if (!list_has(httpd_header(rq, "connection"), "upgrade", strncasecmp))
        return refuse(resp, 400, "", "Connection does not say Upgrade", why);
    if (rq->body_len > 0) return refuse(resp, 400, "", "an upgrade request with a body", why);

    const char *version = httpd_header(rq, "sec-websocket-version");
    if (!version || strcmp(version, "13") != 0)
        return refuse(resp, 426, "Sec-WebSocket-Version: 13\r\n", "WebSocket version 13 required",
                      why);
    const char *key = httpd_header(rq, "sec-websocket-key");
    if (!key || !key_valid(key)) return refuse(resp, 400, "", "bad Sec-WebSocket-Key", why);
    if (!origin_allowed(rq, pol)) return refuse(resp, 403, "", "origin not allowed", why);

    /* a client that names subprotocols must get one it named */
    const char *offered = httpd_header(rq, "sec-websocket-protocol"), *picked = NULL;
    if (offered) {
        if (list_has(offered, "mqtt", strncmp))
            picked = "mqtt";
        else if (list_has(offered, "mqttv3.1", strncmp))
            picked = "mqttv3.1"; /* what old clients ask for */
        else
            return refuse(resp, 400, "", "subprotocol mqtt required", why);
    }

    char accept[32];
    if (accept_value(key, accept, sizeof(accept)) < 0)
        return refuse(resp, 500, "", "SHA-1 or base64 failed", why);
    int n = snprintf(resp, WS_RESPONSE_MAX,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
                     accept, picked ? "Sec-WebSocket-Protocol: " : "", picked ? picked : "",
                     picked ? "\r\n" : "");
    assert(n > 0 && n < WS_RESPONSE_MAX);
    (void)n;
    *why = "upgraded";
    return 101;
}
