/* SPDX-License-Identifier: MIT
 *
 * ws_conn: MQTT over WebSockets as a transport of a conn, like TLS (conn.c calls in
 * at four points: reading, flushing, closing, freeing). A WebSocket conn frames its
 * MQTT packets from ws->in and queues them in ws->out; underneath, the raw stream is
 * c->in / c->out, or TLS's plaintext t->in / t->out for WSS:
 *
 *   raw in --ws_read: upgrade, then frames decoded, unmasked--> ws->in --> MQTT framing
 *   MQTT output --> ws->out --ws_wrap: one binary frame per flush--> raw out
 *
 * One frame per flush, not per packet: what the session queued in a loop turn leaves
 * as one frame (a frame may hold several packets [MQTT-6.0.0-2]), so the framing
 * costs a header per write, not per message. */
#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "httpd.h"
#include "lq.h"
#include "net_int.h"
#include "ws.h"

#define WS_MIN_MESSAGE (64 * 1024) /* a message may always be this large */
#define WS_MAX_HEADER  (8 * 1024)  /* the upgrade request, unless websockets_headers_size */

struct ws_listen {
    struct ws_policy policy; /* its origins: ours, a copy */
    char **origins;
    size_t max_header;
    bool at_accept; /* every conn starts with the upgrade (else conn_ws_upgrade's only) */
};

static struct ws_stats stats;

const struct ws_stats *
net_ws_stats(void)
{
    return &stats;
}

void
listener_set_websockets(struct listener *l, bool at_accept, char *const *origins, size_t norigins,
                        size_t max_header)
{
    ws_listen_free(l);
    l->ws = lq_xcalloc(1, sizeof(*l->ws));
    char **copy = norigins ? lq_xcalloc(norigins, sizeof(*copy)) : NULL;
    for (size_t i = 0; i < norigins; i++) copy[i] = lq_xstrdup(origins[i]);
    l->ws->origins = copy;
    l->ws->policy = (struct ws_policy){copy, norigins};
    l->ws->max_header = max_header ? max_header : WS_MAX_HEADER;
    l->ws->at_accept = at_accept;
}

bool
listener_ws_at_accept(const struct listener *l)
{
    return l->ws && l->ws->at_accept;
}

void
ws_listen_free(struct listener *l)
{
    if (!l->ws) return;
    for (size_t i = 0; i < l->ws->policy.norigins; i++) free(l->ws->origins[i]);
    free(l->ws->origins);
    free(l->ws);
    l->ws = NULL;
}

/* Its buffers come from the listener's spares when needed and go back when empty
 * (conn.c), as a TCP conn's do: an idle WebSocket holds none. */
static struct conn_ws *
ws_new(bool open)
{
    struct conn_ws *ws = lq_xcalloc(1, sizeof(*ws));
    ws->open = open;
    ws->close_code = WS_CLOSE_NORMAL;
    ws_decoder_init(&ws->dec, WS_MIN_MESSAGE);
    return ws;
}

void
ws_free_state(struct conn_ws *ws)
{
    if (!ws) return;
    if (ws->in) evbuffer_free(ws->in);
    if (ws->out) evbuffer_free(ws->out);
    free(ws);
}

bool
ws_conn_start(struct conn *c)
{
    c->ws = ws_new(false);
    return true;
}

int
conn_ws_upgrade(struct conn *c, const struct httpd_request *rq, const char **why)
{
    static const struct ws_policy any;
    char resp[WS_RESPONSE_MAX];
    int status = ws_handshake(rq, c->l->ws ? &c->l->ws->policy : &any, resp, why);
    if (c->ws || c->closing) return 500; /* cannot happen: a WebSocket already */
    if (status == 101) c->ws = ws_new(true);
    struct evbuffer *out = conn_raw_out(c);
    if (!out || evbuffer_add(out, resp, strlen(resp)) != 0) return 500;
    conn_raw_written(c);
    if (status == 101)
        stats.upgrades++;
    else
        stats.refused++;
    return status;
}

bool
conn_is_websocket(const struct conn *c)
{
    return c->ws != NULL;
}

/* Bytes straight to the raw output (the upgrade's answer, control frames). */
static void
raw_write(struct conn *c, const void *p, size_t n)
{
    struct evbuffer *out = conn_raw_out(c);
    if (!out || evbuffer_add(out, p, n) != 0) return; /* the conn is broken: it closes */
    conn_raw_written(c);
}

/* The connection is over for a WebSocket reason: say why, close, tell the owner. */
static void
ws_fail(struct conn *c, uint16_t code, const char *why)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "websocket: %s (close %u)", why, code);
    lq_log(LQ_LOG_NOTICE, "%s: %s: closing", conn_peer(c), msg);
    c->ws->close_code = code;
    conn_close(c);
    c->l->ops->on_lost(c, msg, c->l->ud);
}

static const char *
status_text(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

/* The upgrade request in raw: answered once whole. True: open (decoding goes on
 * with what follows it). The end of its head is searched from where the last look
 * stopped (a request trickling in costs each byte once); then it is parsed once,
 * with a parser state that lives for that call only. */
static bool
ws_upgrade(struct conn *c, struct evbuffer *raw)
{
    struct conn_ws *ws = c->ws;
    size_t avail = evbuffer_get_length(raw), max = c->l->ws->max_header;
    if (!avail) return false;
    const uint8_t *p = evbuffer_pullup(raw, (ev_ssize_t)(avail < max + 4 ? avail : max + 4));
    size_t from = ws->scanned > 3 ? ws->scanned - 3 : 0, look = avail < max ? avail : max;
    const uint8_t *end = look > from ? memmem(p + from, look - from, "\r\n\r\n", 4) : NULL;
    struct httpd_request rq;
    size_t took = 0;
    int status = 0;
    const char *why = NULL;
    char resp[WS_RESPONSE_MAX] = "";
    if (memcmp(p, "GET ", avail < 4 ? avail : 4) != 0) { /* say so now, not at the deadline */
        status = 400;
        why = "not a WebSocket upgrade (GET) request: MQTT without WebSockets on this port?";
    } else if (!end && avail >= max) {
        status = 431;
        why = "upgrade request too large (websockets_headers_size)";
    } else if (!end) {
        ws->scanned = (uint32_t)look;
        return false;
    } else {
        struct httpd_conn *h = httpd_conn_new();
        struct httpd_limits lim = {.max_header = max, .max_body = 0};
        size_t head = (size_t)(end - p) + 4;
        if (httpd_frame(h, p, head, &lim, &rq, &took, &status, &why) == HTTPD_REQUEST)
            status = ws_handshake(&rq, &c->l->ws->policy, resp, &why);
        else if (status == 0) { /* it wants a body: not an upgrade */
            status = 400;
            why = "an upgrade request has no body";
        }
        httpd_conn_free(h);
    }
    if (!resp[0]) /* refused before ws_handshake wrote its answer */
        snprintf(resp, sizeof(resp),
                 "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                 "Connection: close\r\n\r\n%s\n",
                 status, status_text(status), strlen(why) + 1, why);
    ws->answered = true;
    raw_write(c, resp, strlen(resp));
    if (status != 101) {
        stats.refused++;
        char msg[160];
        snprintf(msg, sizeof(msg), "websocket upgrade refused (%d): %s", status, why);
        lq_log(LQ_LOG_NOTICE, "%s: %s", conn_peer(c), msg);
        conn_close(c);
        c->l->ops->on_lost(c, msg, c->l->ud);
        return false;
    }
    evbuffer_drain(raw, took);
    ws->open = true;
    stats.upgrades++;
    return true;
}

/* A control frame of the peer's. False: the conn is closing. */
static bool
ws_control(struct conn *c, const struct ws_event *ev)
{
    uint8_t f[WS_CLOSE_FRAME_MAX];
    switch (ev->kind) {
    case WS_EV_PING: { /* echoed at once, between data frames (never inside one) */
        size_t hl = ws_frame_header(f, WS_OP_PONG, ev->len);
        memcpy(f + hl, ev->data, ev->len);
        raw_write(c, f, hl + ev->len);
        return true;
    }
    case WS_EV_PONG: return true;
    case WS_EV_CLOSE: {
        stats.peer_closes++;
        c->ws->close_code = ev->code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NORMAL : ev->code;
        char msg[64];
        snprintf(msg, sizeof(msg), "websocket closed by peer (%u)", ev->code);
        conn_close(c); /* the close frame echoes its code */
        c->l->ops->on_lost(c, msg, c->l->ud);
        return false;
    }
    case WS_EV_ERROR:
        stats.errors++;
        ws_fail(c, ev->code, ev->why);
        return false;
    default: return true;
    }
}

/* Decode one step of p (DATA stays where it lies; a control frame is answered).
 * False: the bytes are used up, or the conn is closing; *used: the bytes consumed. */
static bool
ws_step(struct conn *c, uint8_t *p, size_t len, struct ws_event *ev, size_t *used)
{
    *used = ws_decode(&c->ws->dec, p, len, ev);
    if (ev->kind == WS_EV_DATA || ev->kind == WS_EV_NONE) return ev->kind == WS_EV_DATA;
    return ws_control(c, ev);
}

/* A message carries a packet, or a few: bounded by the packet limit of the moment. */
static void
ws_limit(struct conn *c)
{
    c->ws->dec.max_message = c->max_packet > WS_MIN_MESSAGE ? c->max_packet : WS_MIN_MESSAGE;
}

bool
ws_read(struct conn *c)
{
    struct conn_ws *ws = c->ws;
    struct evbuffer *raw = c->t ? c->t->in : c->in;
    if (c->closing) return false;
    if (!ws->open && (!raw || !ws_upgrade(c, raw))) return false;
    ws_limit(c);
    struct evbuffer_iovec v; /* no raw input: what ws->in holds is still to be framed */
    while (raw && !c->closing && evbuffer_peek(raw, -1, NULL, &v, 1) > 0) {
        struct ws_event ev;
        size_t used;
        bool more = ws_step(c, v.iov_base, v.iov_len, &ev, &used);
        if (c->closing) return false;
        if (ev.kind == WS_EV_DATA) { /* whole chains move, parts are copied */
            if (!ws->in && !(ws->in = conn_buf_get(c->l))) {
                ws_fail(c, WS_CLOSE_INTERNAL, "out of memory for input");
                return false;
            }
            evbuffer_drain(raw, used - ev.len);
            if (evbuffer_remove_buffer(raw, ws->in, ev.len) != (int)ev.len) {
                ws_fail(c, WS_CLOSE_INTERNAL, "out of memory for input");
                return false;
            }
        } else {
            evbuffer_drain(raw, used);
        }
        if (!more && !used) break; /* cannot happen: it takes bytes while not over */
    }
    return !c->closing;
}

size_t
ws_deframe(struct conn *c, uint8_t *dst, uint8_t *p, size_t len, size_t *produced)
{
    size_t off = 0, out = 0;
    ws_limit(c);
    while (off < len && !c->closing) {
        struct ws_event ev;
        size_t used;
        bool more = ws_step(c, p + off, len - off, &ev, &used);
        if (ev.kind == WS_EV_DATA) { /* down over the headers: dst never passes p */
            if (dst + out != ev.data) memmove(dst + out, ev.data, ev.len);
            out += ev.len;
        }
        off += used;
        if (!used && !more) break;
    }
    *produced = out;
    return off;
}

void
ws_wrap(struct conn *c)
{
    struct conn_ws *ws = c->ws;
    size_t n = ws->out ? evbuffer_get_length(ws->out) : 0;
    if (!n || !ws->open) return;
    if (ws->close_sent) { /* nothing may follow the close frame */
        evbuffer_drain(ws->out, n);
        return;
    }
    struct evbuffer *out = conn_raw_out(c);
    uint8_t h[WS_HEADER_MAX];
    size_t hl = ws_frame_header(h, WS_OP_BINARY, n);
    if (!out || evbuffer_add(out, h, hl) != 0 || evbuffer_add_buffer(out, ws->out) != 0)
        evbuffer_drain(ws->out, n); /* conn_raw_out marked the conn broken */
    conn_buf_put(c->l, &ws->out);
}

void
ws_closing(struct conn *c)
{
    struct conn_ws *ws = c->ws;
    if (!ws->open && !ws->answered && !c->peer_gone) { /* the request did not come in time */
        static const char late[] = "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n"
                                   "Connection: close\r\n\r\n";
        ws->answered = true;
        raw_write(c, late, sizeof(late) - 1);
        return;
    }
    if (!ws->open || ws->close_sent) return;
    ws_wrap(c);
    ws->close_sent = true;
    uint8_t f[WS_CLOSE_FRAME_MAX];
    size_t n = ws_close_frame(f, ws->close_code, "");
    struct evbuffer *out = conn_raw_out(c);
    if (out) evbuffer_add(out, f, n);
}
