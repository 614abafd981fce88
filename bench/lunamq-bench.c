/* SPDX-License-Identifier: MIT
 *
 * lunamq-bench: an MQTT load generator on libevent and the broker's own codec, for
 * loopback benchmarks against any broker. One process, one event loop: it is not
 * the bottleneck while the broker under test has one core to itself.
 *
 * Scenarios
 *   fanin   P publishers -> one subscriber of bench/#
 *   fanout  one publisher -> S subscribers of bench/t
 *   pairs   N publisher/subscriber pairs on bench/<i>
 *   conn    connection storm: CONNECT, CONNACK, DISCONNECT, again, for the duration
 *   idle    hold N connected clients for the duration
 * Every payload starts with the send time (monotonic ns), so latency is measured at
 * the subscriber. With --pid, the broker's CPU time per delivered message and its
 * peak resident memory are read from /proc.
 * --persistent: subscribers keep their session (clean start 0, fixed client ids, v5
 * session expiry 3600 s), so that a broker with persistence writes their messages;
 * after the stop the run waits (up to DRAIN_LIMIT_S) until every message is delivered
 * and acknowledged, which leaves the broker's queues empty.
 * --ws[=PATH]: every client speaks MQTT over WebSockets (RFC 6455, subprotocol "mqtt";
 * over TLS too with --cafile): an HTTP/1.1 upgrade to PATH (default /mqtt), then the
 * MQTT bytes a callback queued on a client go out as one masked binary frame at the
 * callback's end (not a frame per packet), and the server's frames are deframed here
 * (binary payload to the MQTT parser, ping answered with pong, close ends the client). */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "lq.h"
#include "mqtt.h"
#include "tls.h"

enum scenario { FANIN, FANOUT, PAIRS, CONN, IDLE };

static struct opts {
    enum scenario sc;
    const char *host;
    uint16_t port, pub_port; /* pub_port: publishers connect there (another node) */
    int qos, version, clients, seconds;
    int window; /* QoS 1/2 messages in flight per publisher (v5: at most Receive Maximum) */
    size_t size;
    double rate; /* total messages per second, 0 = as fast as possible */
    int pid;
    int sources; /* spread connections over 127.0.0.2 .. 127.0.0.(1+sources) */
    bool json;
    bool persistent; /* subscribers: clean start 0, session expiry; drain at the end */
    const char *cafile, *certfile, *keyfile; /* --cafile: TLS */
    const char *username, *password;         /* -u, -P: in every CONNECT */
    const char *ws_path;                     /* --ws: MQTT over WebSockets, upgrade here */
} o = {.host = "127.0.0.1",
       .port = 1883,
       .version = 4,
       .clients = 4,
       .seconds = 5,
       .size = 64,
       .window = 100};

struct client {
    struct bufferevent *bev;     /* with TLS it carries ciphertext */
    struct tls_conn *tls;        /* NULL: plain */
    struct evbuffer *pin, *pout; /* TLS plaintext */
    int idx;
    bool publisher, subscriber, ready;
    uint16_t next_pid;
    uint32_t inflight, window;
    uint64_t *sent_at; /* QoS > 0 publishers: send time by packet id % ACK_SLOTS */
    char topic[64];
    /* --ws: MQTT bytes queued for the next frame, binary payload deframed for the parser */
    struct evbuffer *wout, *win;
    bool ws_open;    /* the 101 was read: frames from here on */
    bool ws_dirty;   /* wout has bytes: on the dirty list until ws_flush_all */
    bool ws_inframe; /* a data frame's payload is coming: ws_left bytes more */
    uint64_t ws_left;
};

static struct event_base *base;
static struct client *clients;
static int nclients, nready, npublishers;
static uint64_t sent, delivered, conns_done, errors_seen;
static uint64_t delivered_late; /* arrived in the grace period after the stop */
static uint64_t *lat;           /* latency samples, ns */
static size_t nlat, caplat;
static uint64_t *acklat; /* PUBLISH to its PUBACK/PUBCOMP at the publisher, ns */
static size_t nacklat, capacklat;
#define ACK_SLOTS 65536       /* one per packet id: a window of up to 65535 */
static uint64_t last_arrival; /* --persistent: when the last PUBLISH arrived */
static uint64_t t_start, t_end;
static bool running;
static struct event *pace_ev, *stop_ev, *setup_ev, *drain_ev;
#define SETUP_LIMIT_S 60 /* every client ready by then, or the run is abandoned */
#define DRAIN_LIMIT_S 20 /* --persistent: the longest wait for the queues to empty */
static double credit;    /* messages the pacer allows now */
static uint64_t last_pace;
static struct sockaddr_in target, pub_target;
static struct tls_ctx *tls_ctx;
static uint64_t rss_before_kb, rss_during_kb; /* idle: the broker's memory per connection */
static int *ws_dirty; /* --ws: clients with a frame to send at the callback's end */
static int nws_dirty;
static uint64_t rng = 0x9e3779b97f4a7c15u; /* masks and keys: xorshift64*, seeded in main */

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void client_connect(struct client *c);
static void send_connect(struct client *c);

/* Where bytes for the broker's transport go (HTTP and frames with --ws): the socket's
 * buffer, or the TLS plaintext that tls_flush() encrypts. */
static struct evbuffer *
raw_out(struct client *c)
{
    return c->tls ? c->pout : bufferevent_get_output(c->bev);
}

/* Where MQTT bytes for the broker go: with --ws, the next frame's payload. */
static struct evbuffer *
out_of(struct client *c)
{
    return o.ws_path ? c->wout : raw_out(c);
}

static void
tls_flush(struct client *c)
{
    if (c->tls && c->bev && tls_conn_established(c->tls) && tls_conn_output(c->tls, c->pout) < 0)
        errors_seen++;
}

/* After MQTT bytes were queued: TLS encrypts them now; --ws frames them all at the end of
 * the callback (ws_flush_all). */
static void
flush(struct client *c)
{
    if (!o.ws_path) {
        tls_flush(c);
        return;
    }
    if (!c->ws_dirty && c->wout && evbuffer_get_length(c->wout)) {
        c->ws_dirty = true; /* stays set until ws_flush_all: on the list at most once */
        ws_dirty[nws_dirty++] = c->idx;
    }
}

/* ---- WebSockets, the client side (--ws) ---- */

static uint64_t
rand64(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1du;
}

/* dst[i] = src[i] ^ key[(i + at) % 4]: 8 bytes at a time */
static void
ws_mask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4], size_t at)
{
    uint8_t k[8];
    for (int i = 0; i < 8; i++) k[i] = key[(at + (size_t)i) % 4];
    uint64_t k8;
    memcpy(&k8, k, 8);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= k8;
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++) dst[i] = src[i] ^ k[i % 8];
}

/* One final, masked frame of `op` to the transport: its payload is all of `from` (which
 * is drained) or p[0..n). */
static void
ws_send(struct client *c, uint8_t op, struct evbuffer *from, const uint8_t *p, size_t n)
{
    if (from) n = evbuffer_get_length(from);
    uint8_t key[4];
    uint32_t k = (uint32_t)(rand64() >> 32);
    memcpy(key, &k, 4);
    uint8_t hdr[14];
    size_t hl;
    hdr[0] = (uint8_t)(0x80 | op);
    if (n < 126) {
        hdr[1] = (uint8_t)(0x80 | n);
        hl = 2;
    } else if (n <= 0xffff) {
        hdr[1] = 0x80 | 126;
        hdr[2] = (uint8_t)(n >> 8);
        hdr[3] = (uint8_t)n;
        hl = 4;
    } else {
        hdr[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++) hdr[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    memcpy(hdr + hl, key, 4);
    hl += 4;
    struct evbuffer *dst = raw_out(c);
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(dst, (ev_ssize_t)(hl + n), &v, 1) != 1) {
        errors_seen++;
        return;
    }
    uint8_t *w = v.iov_base;
    memcpy(w, hdr, hl);
    w += hl;
    if (!from) {
        ws_mask(w, p, n, key, 0);
    } else { /* chunk by chunk, straight from the evbuffer's memory */
        size_t at = 0;
        while (at < n) {
            struct evbuffer_iovec ch[16];
            int nch = evbuffer_peek(from, -1, NULL, ch, 16);
            size_t took = 0;
            for (int i = 0; i < nch && i < 16; i++) {
                ws_mask(w + at, ch[i].iov_base, ch[i].iov_len, key, at);
                at += ch[i].iov_len;
                took += ch[i].iov_len;
            }
            if (!took) break; /* cannot happen: n bytes are there */
            evbuffer_drain(from, took);
        }
    }
    v.iov_len = hl + n;
    evbuffer_commit_space(dst, &v, 1);
    tls_flush(c);
}

/* The end of a callback: each client's queued MQTT bytes as one binary frame. */
static void
ws_flush_all(void)
{
    for (int i = 0; i < nws_dirty; i++) {
        struct client *c = &clients[ws_dirty[i]];
        c->ws_dirty = false;
        if (c->bev && c->ws_open && evbuffer_get_length(c->wout)) ws_send(c, 0x2, c->wout, NULL, 0);
    }
    nws_dirty = 0;
}

/* The upgrade request, once the transport is up (TCP, or TLS established). */
static void
ws_start(struct client *c)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t nonce[18]; /* 16 random bytes, 2 of padding for the last group */
    uint64_t r0 = rand64(), r1 = rand64();
    memcpy(nonce, &r0, 8);
    memcpy(nonce + 8, &r1, 8);
    nonce[16] = nonce[17] = 0;
    char key[25];
    for (int i = 0, j = 0; i < 18; i += 3, j += 4) {
        uint32_t g = (uint32_t)nonce[i] << 16 | (uint32_t)nonce[i + 1] << 8 | nonce[i + 2];
        key[j] = b64[g >> 18 & 63];
        key[j + 1] = b64[g >> 12 & 63];
        key[j + 2] = b64[g >> 6 & 63];
        key[j + 3] = b64[g & 63];
    }
    key[22] = key[23] = '=';
    key[24] = '\0';
    const struct sockaddr_in *to = c->publisher && o.pub_port ? &pub_target : &target;
    evbuffer_add_printf(raw_out(c),
                        "GET %s HTTP/1.1\r\nHost: %s:%u\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
                        o.ws_path, o.host, (unsigned)ntohs(to->sin_port), key);
    tls_flush(c);
}

/* The broker went away or broke the protocol: the client is closed; the run ends unless
 * the scenario is idle (a run that is over only counts nothing). */
static void client_lost(struct client *c, const char *why);

/* The 101 answer, then frames from `in` (the transport's bytes): binary payload moves to
 * c->win. Returns false when the client is gone (closed here). */
static bool
ws_input(struct client *c, struct evbuffer *in)
{
    if (!c->ws_open) {
        struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (end.pos < 0) {
            if (evbuffer_get_length(in) <= 16384) return true;
            client_lost(c, "WebSocket upgrade: no end of the response headers in 16 KiB");
            return false;
        }
        size_t hl = (size_t)end.pos + 4;
        char *h = (char *)evbuffer_pullup(in, (ev_ssize_t)hl);
        char first[128];
        size_t fl = strcspn(h, "\r");
        snprintf(first, sizeof(first), "%.*s", (int)(fl < 100 ? fl : 100), h);
        bool ok = strncmp(h, "HTTP/1.1 101 ", 13) == 0 || strncmp(h, "HTTP/1.1 101\r", 13) == 0;
        bool accept = false;
        for (size_t i = 0; i + 21 < hl; i++)
            if ((h[i] == '\n') && strncasecmp(h + i + 1, "Sec-WebSocket-Accept:", 21) == 0) {
                accept = true;
                break;
            }
        if (!ok || !accept) {
            char why[200];
            snprintf(why, sizeof(why), "WebSocket upgrade refused: %s%s", first,
                     ok ? " (no Sec-WebSocket-Accept)" : "");
            client_lost(c, why);
            event_base_loopexit(base, NULL); /* it would not get better: the run ends */
            return false;
        }
        evbuffer_drain(in, hl);
        c->ws_open = true;
        send_connect(c); /* queued: framed at the callback's end */
    }
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        if (c->ws_inframe) {
            if (!avail) return true;
            size_t n = avail < c->ws_left ? avail : (size_t)c->ws_left;
            evbuffer_remove_buffer(in, c->win, n); /* moves whole chunks, no copy */
            c->ws_left -= n;
            if (!c->ws_left) c->ws_inframe = false;
            continue;
        }
        if (avail < 2) return true;
        uint8_t h[10];
        evbuffer_copyout(in, h, avail < 10 ? avail : 10);
        uint8_t op = h[0] & 15, len7 = h[1] & 127;
        size_t hl = len7 == 126 ? 4 : len7 == 127 ? 10 : 2;
        if (avail < hl) return true;
        uint64_t len = len7;
        if (len7 == 126) len = (uint64_t)h[2] << 8 | h[3];
        if (len7 == 127) {
            len = 0;
            for (int i = 0; i < 8; i++) len = len << 8 | h[2 + i];
        }
        const char *bad = NULL;
        if (h[1] & 0x80)
            bad = "a masked frame from the server";
        else if (h[0] & 0x70)
            bad = "reserved bits set";
        else if (op == 0x1)
            bad = "a text frame (MQTT is binary)";
        else if (op >= 8 && (len > 125 || !(h[0] & 0x80)))
            bad = "a control frame over 125 bytes or fragmented";
        else if (op != 0x0 && op != 0x2 && op != 0x8 && op != 0x9 && op != 0xa)
            bad = "an unknown opcode";
        if (bad) {
            char why[96];
            snprintf(why, sizeof(why), "WebSocket: %s", bad);
            client_lost(c, why);
            return false;
        }
        if (op < 8) { /* binary or its continuation: the payload goes to the parser */
            evbuffer_drain(in, hl);
            c->ws_left = len;
            c->ws_inframe = len > 0;
            continue;
        }
        if (avail < hl + len) return true; /* a control frame: whole */
        uint8_t ctl[125];
        evbuffer_drain(in, hl);
        evbuffer_remove(in, ctl, (size_t)len);
        if (op == 0x9) {
            ws_send(c, 0xa, NULL, ctl, (size_t)len);
        } else if (op == 0x8) {
            char why[160];
            unsigned code = len >= 2 ? (unsigned)(ctl[0] << 8 | ctl[1]) : 1005;
            snprintf(why, sizeof(why), "WebSocket close from the broker: %u %.*s", code,
                     len > 2 ? (int)len - 2 : 0, (const char *)ctl + 2);
            client_lost(c, why);
            return false;
        } /* a pong: nothing to do */
    }
}

static void
cwrite(struct client *c, const void *p, size_t n)
{
    evbuffer_add(out_of(c), p, n);
    flush(c);
}

static void
client_close(struct client *c)
{
    if (c->bev) bufferevent_free(c->bev);
    c->bev = NULL;
    tls_conn_free(c->tls);
    c->tls = NULL;
    if (c->pin) evbuffer_free(c->pin);
    if (c->pout) evbuffer_free(c->pout);
    c->pin = c->pout = NULL;
    if (c->wout) evbuffer_free(c->wout);
    if (c->win) evbuffer_free(c->win);
    c->wout = c->win = NULL; /* ws_dirty stays: the dirty list skips a closed client */
    c->ws_open = c->ws_inframe = false;
    c->ws_left = 0;
}

static void
client_lost(struct client *c, const char *why)
{
    if (running || !t_end) {
        fprintf(stderr, "lunamq-bench: client %d: %s\n", c->idx, why);
        errors_seen++;
    }
    client_close(c);
    if (o.sc == IDLE || !running) return;
    event_base_loopexit(base, NULL);
}

static void
send_connect(struct client *c)
{
    char id[48];
    bool keep = o.persistent && c->subscriber;
    if (keep) /* the same ids in every run: a fresh broker per run has no old session */
        snprintf(id, sizeof(id), "bench-sub-%d", c->idx);
    else
        snprintf(id, sizeof(id), "bench-%d-%d", (int)getpid(), c->idx);
    struct mqtt_connect k;
    memset(&k, 0, sizeof(k));
    k.protocol_name = (struct lq_bytes){(const uint8_t *)"MQTT", 4};
    k.version = (uint8_t)o.version;
    k.clean_start = !keep;
    if (keep && o.version == 5) {
        k.props.present = MQTT_PBIT(MQTT_PROP_SESSION_EXPIRY);
        k.props.session_expiry = 3600;
    }
    k.keep_alive = 300;
    k.client_id = (struct lq_bytes){(const uint8_t *)id, strlen(id)};
    if (o.username) {
        k.has_username = true;
        k.username = (struct lq_bytes){(const uint8_t *)o.username, strlen(o.username)};
    }
    if (o.password) {
        k.has_password = true;
        k.password = (struct lq_bytes){(const uint8_t *)o.password, strlen(o.password)};
    }
    uint8_t buf[1024];
    size_t n = mqtt_encode_connect(&k, buf, sizeof(buf));
    cwrite(c, buf, n);
}

static void
send_subscribe(struct client *c, const char *filter)
{
    struct mqtt_sub_entry e = {.filter = {(const uint8_t *)filter, strlen(filter)},
                               .qos = (uint8_t)o.qos};
    uint8_t buf[256];
    size_t n = mqtt_encode_subscribe(1, NULL, &e, 1, (uint8_t)o.version, buf, sizeof(buf));
    cwrite(c, buf, n);
}

static bool
publish_one(struct client *c)
{
    if (o.qos && c->inflight >= c->window) return false;
    uint8_t payload[65536];
    size_t size = o.size < 16 ? 16 : o.size;
    uint64_t t = now_ns();
    memcpy(payload, &t, 8);
    memset(payload + 8, 'x', size > sizeof(payload) ? sizeof(payload) - 8 : size - 8);
    struct mqtt_publish p;
    memset(&p, 0, sizeof(p));
    p.qos = (uint8_t)o.qos;
    p.topic = (struct lq_bytes){(const uint8_t *)c->topic, strlen(c->topic)};
    p.payload = (struct lq_bytes){payload, size}; /* the head announces its length */
    if (o.qos) {
        if (++c->next_pid == 0) c->next_pid = 1;
        p.packet_id = c->next_pid;
        c->inflight++;
        c->sent_at[p.packet_id % ACK_SLOTS] = t;
    }
    size_t total;
    uint8_t head[256];
    size_t hl = mqtt_encode_publish_head(&p, (uint8_t)o.version, head, sizeof(head), &total);
    struct evbuffer *out = out_of(c);
    evbuffer_add(out, head, hl);
    if (size <= sizeof(payload)) {
        evbuffer_add(out, payload, size);
    } else { /* big payloads: the timestamp, then filler */
        evbuffer_add(out, payload, 8);
        static uint8_t *big;
        static size_t bigsz;
        if (bigsz < size) {
            big = lq_xrealloc(big, size);
            memset(big, 'x', size);
            bigsz = size;
        }
        evbuffer_add_reference(out, big, size - 8, NULL, NULL); /* static: no copy */
    }
    sent++;
    return true;
}

/* Publish as allowed: by the pacer's credit, the QoS window, the output buffer. */
static void
pump(void)
{
    if (!running) return;
    bool any = true;
    while (any) {
        any = false;
        for (int i = 0; i < nclients; i++) {
            struct client *c = &clients[i];
            if (!c->publisher || !c->ready || !c->bev) continue; /* closed: the run ends */
            if (evbuffer_get_length(bufferevent_get_output(c->bev)) +
                    (c->wout ? evbuffer_get_length(c->wout) : 0) >
                256 * 1024)
                continue;
            if (o.rate > 0 && credit < 1) return;
            if (publish_one(c)) {
                any = true;
                flush(c);
                if (o.rate > 0) credit -= 1;
            }
        }
    }
}

static void
pace_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    uint64_t t = now_ns();
    credit += o.rate * (double)(t - last_pace) / 1e9;
    if (credit > o.rate / 10 + 1) credit = o.rate / 10 + 1; /* no bursts after a stall */
    last_pace = t;
    pump();
    ws_flush_all();
}

static void
add_sample(uint64_t **a, size_t *n, size_t *cap, uint64_t t)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 1 << 16;
        *a = lq_xrealloc(*a, *cap * sizeof(**a));
    }
    uint64_t now = now_ns();
    (*a)[(*n)++] = now > t ? now - t : 0;
}

static void
record_latency(const uint8_t *payload, size_t len)
{
    if (len < 8) return;
    uint64_t t;
    memcpy(&t, payload, 8);
    add_sample(&lat, &nlat, &caplat, t);
}

static void
setup_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    fprintf(stderr, "lunamq-bench: not every client was ready after %d s: giving up\n",
            SETUP_LIMIT_S);
    errors_seen++;
    event_base_loopexit(base, NULL);
}

static void
start_run(void)
{
    event_del(setup_ev);
    running = true;
    t_start = now_ns();
    last_pace = t_start;
    struct timeval tv = {o.seconds, 0};
    event_add(stop_ev, &tv);
    if (o.rate > 0) {
        struct timeval ms = {0, 1000};
        event_add(pace_ev, &ms);
    }
    pump();
}

static void
on_packet(struct client *c, uint8_t tf, const uint8_t *body, size_t len)
{
    uint8_t type = tf >> 4;
    switch (type) {
    case MQTT_CONNACK:
        if (len < 2 || body[1] != 0) {
            fprintf(stderr, "lunamq-bench: CONNACK refused (0x%02x)\n", len >= 2 ? body[1] : 0);
            errors_seen++;
            return;
        }
        if (o.version == 5) { /* a v5 publisher stays within the broker's Receive Maximum */
            struct mqtt_connack ca;
            if (mqtt_decode_connack(tf & 15, body, len, 5, &ca) == 0 &&
                (ca.props.present & MQTT_PBIT(MQTT_PROP_RECEIVE_MAXIMUM)) &&
                ca.props.receive_maximum < c->window)
                c->window = ca.props.receive_maximum;
        }
        if (o.sc == CONN) {
            static const uint8_t disc[2] = {0xe0, 0};
            cwrite(c, disc, 2);
            conns_done++;
            client_close(c);
            if (running) client_connect(c);
            return;
        }
        if (c->subscriber) {
            send_subscribe(c, c->topic[0] ? c->topic : "bench/#");
            return;
        }
        c->ready = true;
        if (++nready == nclients) start_run();
        return;
    case MQTT_SUBACK:
        c->ready = true;
        if (++nready == nclients) start_run();
        return;
    case MQTT_PUBLISH: {
        struct mqtt_publish p;
        if (mqtt_decode_publish(tf & 15, body, len, (uint8_t)o.version, &p)) {
            errors_seen++;
            return;
        }
        last_arrival = now_ns();
        if (running) {
            delivered++;
            record_latency(p.payload.p, p.payload.len);
        } else if (t_end) {
            delivered_late++;
        }
        if (p.qos) {
            uint8_t ack[4] = {p.qos == 1 ? 0x40 : 0x50, 2, (uint8_t)(p.packet_id >> 8),
                              (uint8_t)p.packet_id};
            cwrite(c, ack, 4);
        }
        return;
    }
    case MQTT_PUBREL: {
        uint8_t ack[4] = {0x70, 2, len >= 2 ? body[0] : 0, len >= 2 ? body[1] : 0};
        cwrite(c, ack, 4);
        return;
    }
    case MQTT_PUBREC: {
        uint8_t rel[4] = {0x62, 2, len >= 2 ? body[0] : 0, len >= 2 ? body[1] : 0};
        cwrite(c, rel, 4);
        return;
    }
    case MQTT_PUBACK:
    case MQTT_PUBCOMP:
        if (c->inflight) c->inflight--;
        if (running && c->sent_at && len >= 2)
            add_sample(&acklat, &nacklat, &capacklat,
                       c->sent_at[(unsigned)(body[0] << 8 | body[1]) % ACK_SLOTS]);
        pump();
        return;
    default: return;
    }
}

static void
read_in(struct client *c, struct bufferevent *bev)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    if (c->tls) {
        bool was = tls_conn_established(c->tls);
        char why[256];
        enum tls_status st = tls_conn_input(c->tls, c->pin, why, sizeof(why));
        if (st == TLS_FAILED) {
            fprintf(stderr, "lunamq-bench: client %d: TLS: %s\n", c->idx, why);
            errors_seen++;
            client_close(c);
            event_base_loopexit(base, NULL);
            return;
        }
        if (st == TLS_HANDSHAKING) return;
        if (!was && o.ws_path) ws_start(c);
        if (!was && !o.ws_path) send_connect(c);
        in = c->pin;
    }
    if (o.ws_path) {
        if (!ws_input(c, in)) return; /* closed */
        in = c->win;
    }
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        if (avail < 2) return;
        uint8_t hdr[5];
        evbuffer_copyout(in, hdr, avail < 5 ? avail : 5);
        uint8_t tf;
        uint32_t rem;
        size_t hl;
        int r = mqtt_frame_header(hdr, avail < 5 ? avail : 5, &tf, &rem, &hl);
        if (r <= 0) {
            if (r < 0) errors_seen++;
            return;
        }
        if (avail < hl + rem) return;
        const uint8_t *p = evbuffer_pullup(in, (ssize_t)(hl + rem));
        struct bufferevent *keep = c->bev;
        on_packet(c, tf, p + hl, rem);
        if (c->bev != keep) return; /* conn scenario: replaced */
        evbuffer_drain(in, hl + rem);
    }
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
    read_in(arg, bev);
    ws_flush_all();
}

static void
write_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    (void)arg;
    pump();
    ws_flush_all();
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct client *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (!tls_ctx) {
            if (o.ws_path)
                ws_start(c);
            else
                send_connect(c);
            return;
        }
        c->pin = evbuffer_new();
        c->pout = evbuffer_new();
        c->tls = tls_conn_new(tls_ctx, bufferevent_get_input(bev), bufferevent_get_output(bev));
        if (c->tls) tls_conn_set_hostname(c->tls, "localhost"); /* the broker under test */
        char why[256];
        if (!c->tls || tls_conn_input(c->tls, c->pin, why, sizeof(why)) == TLS_FAILED) {
            fprintf(stderr, "lunamq-bench: client %d: TLS start failed\n", c->idx);
            errors_seen++;
            event_base_loopexit(base, NULL);
        }
        return;
    }
    client_lost(c,
                (what & BEV_EVENT_EOF) ? "closed by the broker" : strerror(EVUTIL_SOCKET_ERROR()));
}

static void
client_connect(struct client *c)
{
    evutil_socket_t fd = -1;
    if (o.sources > 0) { /* one source address has only ~28 000 ephemeral ports */
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl((127u << 24) | (uint32_t)(2 + c->idx % o.sources));
        if (fd < 0 || bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
            fprintf(stderr, "lunamq-bench: source address: %s\n", strerror(errno));
            errors_seen++;
            if (fd >= 0) close(fd);
            return;
        }
    }
    c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, 64 * 1024, 0);
    if (o.size > 64 * 1024) { /* large payloads: 16 KiB per read or write would make
                                 this client the bottleneck */
        bufferevent_set_max_single_read(c->bev, 256 * 1024);
        bufferevent_set_max_single_write(c->bev, 256 * 1024);
    }
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (o.ws_path) {
        c->wout = evbuffer_new();
        c->win = evbuffer_new();
    }
    struct sockaddr_in *to = c->publisher && o.pub_port ? &pub_target : &target;
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)to, sizeof(*to)) < 0) {
        fprintf(stderr, "lunamq-bench: connect: %s\n", strerror(errno));
        errors_seen++;
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
}

static uint64_t proc_rss_kb(int pid);

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (o.pid) rss_during_kb = proc_rss_kb(o.pid);
    if (rss_during_kb < rss_before_kb) rss_during_kb = rss_before_kb;
    running = false;
    t_end = now_ns();
    if (o.persistent) { /* until every message arrived and was acknowledged */
        struct timeval tick = {0, 20000};
        event_add(drain_ev, &tick);
        return;
    }
    /* let what is in flight arrive */
    struct timeval grace = {1, 0};
    event_base_loopexit(base, &grace);
}

static uint64_t
expected_deliveries(void)
{
    return o.sc == FANOUT ? sent * (uint64_t)o.clients : sent;
}

/* --persistent: done when everything sent arrived and every publisher has its acks, or
 * when they have and nothing arrived for a second (what the broker dropped). */
static void
drain_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    bool acked = true;
    for (int i = 0; i < nclients; i++)
        if (clients[i].publisher && clients[i].inflight) acked = false;
    bool all = delivered + delivered_late >= expected_deliveries();
    uint64_t now = now_ns();
    bool quiet = now - (last_arrival > t_end ? last_arrival : t_end) > 1000000000u;
    if ((acked && (all || quiet)) || now - t_end > (uint64_t)DRAIN_LIMIT_S * 1000000000u) {
        event_base_loopexit(base, NULL);
        return;
    }
    struct timeval tick = {0, 20000};
    event_add(drain_ev, &tick);
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* utime+stime in microseconds, and peak RSS in kB, of a process. The CPU time comes from
 * the process's CPU-time clock (clock_getcpuclockid: all its threads, in ns) when the
 * kernel lets us read it; /proc/PID/stat counts in clock ticks (10 ms), too coarse for
 * a broker that spends 0.1 s on a short run. */
static bool
proc_usage(int pid, uint64_t *cpu_us, uint64_t *hwm_kb)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return false;
    *cpu_us = (ut + st) * 1000000ull / (unsigned long long)sysconf(_SC_CLK_TCK);
    clockid_t cid;
    struct timespec ts;
    if (clock_getcpuclockid((pid_t)pid, &cid) == 0 && clock_gettime(cid, &ts) == 0)
        *cpu_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    f = fopen(path, "r");
    *hwm_kb = 0;
    if (f) {
        char line[256];
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "VmHWM: %llu", (unsigned long long *)hwm_kb) == 1) break;
        fclose(f);
    }
    return true;
}

static uint64_t
proc_rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    unsigned long long kb = 0;
    if (!f) return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %llu", &kb) == 1) break;
    fclose(f);
    return kb;
}

static void
usage(FILE *f)
{
    fprintf(f, "usage: lunamq-bench fanin|fanout|pairs|conn|idle [-h HOST] [-p PORT] [-q QOS]\n"
               "       [-s PAYLOAD_BYTES] [-r TOTAL_RATE] [-d SECONDS] [-n CLIENTS] [-V 4|5]\n"
               "       [-w WINDOW]   (QoS 1/2 in flight per publisher, default 100; v5: at most\n"
               "       the broker's Receive Maximum)\n"
               "       [--pid BROKER_PID] [--sources N] [--json] [--persistent]\n"
               "       [-u USERNAME] [-P PASSWORD] [--pub-port PORT]\n"
               "       [--cafile CA --cert CERT --key KEY]   (TLS, mbedTLS; client certificate)\n"
               "       [--ws[=PATH]]   (MQTT over WebSockets, upgrade at PATH, default /mqtt)\n"
               "  -n: publishers (fanin), subscribers (fanout), pairs (pairs), clients (idle);\n"
               "  -r 0: as fast as possible; --sources N: connect from 127.0.0.2..N+1 (for more\n"
               "  than ~28 000 connections). Loopback (127.0.0.0/8) only.\n"
               "  --persistent: subscribers keep their session (clean start 0, fixed ids\n"
               "  bench-sub-N, v5 session expiry 3600 s); the run waits until all is delivered.\n"
               "  --pub-port: publishers connect to this port (another node of a cluster),\n"
               "  subscribers to -p.\n"
               "  --ws: every client sends an HTTP/1.1 upgrade (subprotocol mqtt), then what it\n"
               "  queued in a callback as one masked binary frame; wss with --cafile.\n");
}

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {{"pid", required_argument, NULL, 'I'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"sources", required_argument, NULL, 'S'},
                                             {"cafile", required_argument, NULL, 'C'},
                                             {"cert", required_argument, NULL, 'E'},
                                             {"key", required_argument, NULL, 'K'},
                                             {"help", no_argument, NULL, 'H'},
                                             {"persistent", no_argument, NULL, 'Q'},
                                             {"pub-port", required_argument, NULL, 'O'},
                                             {"ws", optional_argument, NULL, 'W'},
                                             {NULL, 0, NULL, 0}};
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *sc = argv[1];
    if (strcmp(sc, "fanin") == 0)
        o.sc = FANIN;
    else if (strcmp(sc, "fanout") == 0)
        o.sc = FANOUT;
    else if (strcmp(sc, "pairs") == 0)
        o.sc = PAIRS;
    else if (strcmp(sc, "conn") == 0)
        o.sc = CONN;
    else if (strcmp(sc, "idle") == 0)
        o.sc = IDLE;
    else {
        usage(strcmp(sc, "--help") == 0 ? stdout : stderr);
        return strcmp(sc, "--help") == 0 ? 0 : 2;
    }
    optind = 2;
    int opt;
    while ((opt = getopt_long(argc, argv, "h:p:q:s:r:d:n:V:u:P:w:", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h': o.host = optarg; break;
        case 'p': o.port = (uint16_t)atoi(optarg); break;
        case 'q': o.qos = atoi(optarg); break;
        case 's': o.size = (size_t)atol(optarg); break;
        case 'r': o.rate = atof(optarg); break;
        case 'd': o.seconds = atoi(optarg); break;
        case 'n': o.clients = atoi(optarg); break;
        case 'V': o.version = atoi(optarg); break;
        case 'w': o.window = atoi(optarg); break;
        case 'u': o.username = optarg; break;
        case 'P': o.password = optarg; break;
        case 'I': o.pid = atoi(optarg); break;
        case 'j': o.json = true; break;
        case 'S': o.sources = atoi(optarg); break;
        case 'C': o.cafile = optarg; break;
        case 'E': o.certfile = optarg; break;
        case 'K': o.keyfile = optarg; break;
        case 'Q': o.persistent = true; break;
        case 'O': o.pub_port = (uint16_t)atoi(optarg); break;
        case 'W': o.ws_path = optarg ? optarg : "/mqtt"; break;
        case 'H': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (o.qos < 0 || o.qos > 2 || (o.version != 4 && o.version != 5) || o.clients < 1 ||
        o.window < 1 || o.window > 65535 || o.seconds < 1 || o.size > 256 * 1024 * 1024 ||
        (o.ws_path &&
         (o.ws_path[0] != '/' || strpbrk(o.ws_path, " \r\n") || strlen(o.ws_path) > 1024))) {
        usage(stderr);
        return 2;
    }
    memset(&target, 0, sizeof(target));
    target.sin_family = AF_INET;
    target.sin_port = htons(o.port);
    if (inet_pton(AF_INET, o.host, &target.sin_addr) != 1 ||
        (ntohl(target.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "lunamq-bench: %s: only loopback addresses (127.0.0.0/8)\n", o.host);
        return 2;
    }
    pub_target = target;
    if (o.pub_port) pub_target.sin_port = htons(o.pub_port);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t want = (rlim_t)o.clients * 2 + 64;
        if (want > rl.rlim_max) {
            struct rlimit up = {want, want}; /* root may go beyond the hard limit */
            if (setrlimit(RLIMIT_NOFILE, &up) == 0) rl = up;
        }
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (o.cafile) {
        char err[512];
        /* a certificate without its key (or the reverse) was ignored: it still is */
        bool own = o.certfile && o.keyfile;
        struct tls_client_conf cc = {.cafile = o.cafile,
                                     .certfile = own ? o.certfile : NULL,
                                     .keyfile = own ? o.keyfile : NULL,
                                     .min_version = 12};
        if (!(tls_ctx = tls_client_ctx_new(&cc, err, sizeof(err)))) {
            fprintf(stderr, "lunamq-bench: %s\n", err);
            return 2;
        }
    }
    base = event_base_new();
    stop_ev = evtimer_new(base, stop_cb, NULL);
    setup_ev = evtimer_new(base, setup_cb, NULL);
    drain_ev = evtimer_new(base, drain_cb, NULL);
    struct timeval setup_limit = {SETUP_LIMIT_S, 0};
    evtimer_add(setup_ev, &setup_limit);
    pace_ev = event_new(base, -1, EV_PERSIST, pace_cb, NULL);

    switch (o.sc) {
    case FANIN: nclients = o.clients + 1; break;
    case FANOUT: nclients = o.clients + 1; break;
    case PAIRS: nclients = 2 * o.clients; break;
    case CONN: nclients = o.clients; break;
    case IDLE: nclients = o.clients; break;
    }
    clients = lq_xcalloc((size_t)nclients, sizeof(*clients));
    ws_dirty = lq_xcalloc((size_t)nclients, sizeof(*ws_dirty));
    rng ^= now_ns() ^ (uint64_t)getpid() << 40;
    if (!rng) rng = 1;
    for (int i = 0; i < nclients; i++) {
        struct client *c = &clients[i];
        c->idx = i;
        c->window = (uint32_t)o.window;
        switch (o.sc) {
        case FANIN:
            c->subscriber = i == 0;
            c->publisher = i > 0;
            snprintf(c->topic, sizeof(c->topic), i == 0 ? "bench/#" : "bench/%d", i);
            break;
        case FANOUT:
            c->publisher = i == 0;
            c->subscriber = i > 0;
            snprintf(c->topic, sizeof(c->topic), "bench/t");
            break;
        case PAIRS:
            c->subscriber = i % 2 == 0;
            c->publisher = !c->subscriber;
            snprintf(c->topic, sizeof(c->topic), "bench/%d", i / 2);
            break;
        default: break;
        }
        npublishers += c->publisher;
        if (c->publisher && o.qos) c->sent_at = lq_xcalloc(ACK_SLOTS, sizeof(*c->sent_at));
    }
    uint64_t cpu0 = 0, cpu1 = 0, hwm = 0;
    if (o.pid) {
        proc_usage(o.pid, &cpu0, &hwm);
        rss_before_kb = proc_rss_kb(o.pid);
    }
    if (o.sc == CONN) start_run();
    for (int i = 0; i < nclients; i++) client_connect(&clients[i]);
    event_base_dispatch(base);
    if (!t_end) t_end = now_ns();
    if (!t_start) t_start = t_end; /* never started: not every client got ready */
    if (o.pid) proc_usage(o.pid, &cpu1, &hwm);
    for (int i = 0; i < nclients; i++) client_close(&clients[i]);

    double secs = (double)(t_end - t_start) / 1e9;
    if (secs <= 0) secs = 1e-9; /* never started: rates of 0 */
    uint64_t expected = expected_deliveries();
    uint64_t arrived = delivered + delivered_late;     /* loss counts the grace period too */
    if (nlat) qsort(lat, nlat, sizeof(*lat), cmp_u64); /* lat is NULL when nothing was timed */
    double p50 = nlat ? (double)lat[nlat / 2] / 1e3 : 0,
           p99 = nlat ? (double)lat[nlat * 99 / 100] / 1e3 : 0,
           pmax = nlat ? (double)lat[nlat - 1] / 1e3 : 0;
    if (nacklat) qsort(acklat, nacklat, sizeof(*acklat), cmp_u64);
    double ack50 = nacklat ? (double)acklat[nacklat / 2] / 1e3 : 0,
           ack99 = nacklat ? (double)acklat[nacklat * 99 / 100] / 1e3 : 0;
    double cpu_per = delivered ? (double)(cpu1 - cpu0) / (double)delivered : 0;
    if (o.sc == CONN) cpu_per = conns_done ? (double)(cpu1 - cpu0) / (double)conns_done : 0;
    if (o.json) {
        printf(
            "{\"scenario\":\"%s\",\"seconds\":%.3f,\"sent\":%llu,\"delivered\":%llu,"
            "\"sent_per_s\":%.1f,\"delivered_per_s\":%.1f,\"lost\":%lld,\"connections_per_s\":%.1f,"
            "\"latency_p50_us\":%.1f,\"latency_p99_us\":%.1f,\"latency_max_us\":%.1f,"
            "\"ack_p50_us\":%.1f,\"ack_p99_us\":%.1f,\"broker_cpu_us_per_msg\":%.3f,\"broker_peak_"
            "rss_kb\":%llu,"
            "\"broker_kb_per_idle_conn\":%.3f,\"errors\":%llu}\n",
            sc, secs, (unsigned long long)sent, (unsigned long long)delivered, sent / secs,
            delivered / secs, (long long)expected - (long long)arrived, conns_done / secs, p50, p99,
            pmax, ack50, ack99, cpu_per, (unsigned long long)hwm,
            o.sc == IDLE ? (double)(rss_during_kb - rss_before_kb) / o.clients : 0.0,
            (unsigned long long)errors_seen);
    } else {
        printf("%s: %.2f s, sent %llu (%.0f/s), delivered %llu (%.0f/s), lost %lld\n", sc, secs,
               (unsigned long long)sent, sent / secs, (unsigned long long)delivered,
               delivered / secs, (long long)expected - (long long)arrived);
        if (o.sc == CONN)
            printf("connections: %llu (%.0f/s)\n", (unsigned long long)conns_done,
                   conns_done / secs);
        if (nlat) printf("latency us: p50 %.1f  p99 %.1f  max %.1f\n", p50, p99, pmax);
        if (nacklat) printf("publisher ack latency us: p50 %.1f  p99 %.1f\n", ack50, ack99);
        if (o.pid)
            printf("broker: %.3f us CPU per %s, peak RSS %llu kB\n", cpu_per,
                   o.sc == CONN ? "connection" : "delivered message", (unsigned long long)hwm);
        if (o.sc == IDLE && o.pid)
            printf("broker memory per idle connection: %.2f kB (%d connections)\n",
                   (double)(rss_during_kb - rss_before_kb) / o.clients, o.clients);
        if (errors_seen) printf("errors: %llu\n", (unsigned long long)errors_seen);
    }
    free(lat);
    free(acklat);
    for (int i = 0; i < nclients; i++) free(clients[i].sent_at);
    free(clients);
    free(ws_dirty);
    tls_ctx_unref(tls_ctx);
    event_free(stop_ev);
    event_free(setup_ev);
    event_free(drain_ev);
    event_free(pace_ev);
    event_base_free(base);
    return errors_seen ? 1 : 0;
}
