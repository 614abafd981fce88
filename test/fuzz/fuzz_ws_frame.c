/* SPDX-License-Identifier: MIT
 *
 * libFuzzer target over the WebSocket frame decoder (ws_decode in broker/ws/frame.c).
 * The first byte says how the rest arrives: its low 3 bits are a count k of the bytes
 * after it that give piece lengths (each + 1, used in turn; k = 0: one byte at a
 * time), bits 3-4 pick max_message (0, 40, 1000 or no limit). The rest is one
 * client's byte stream, decoded twice, each time from copies (payload is unmasked in
 * place): whole, and piece by piece with each piece in a block of its own exact size
 * (so ASan sees any read past it).
 *
 * Each call must take at most what it was given, a NONE must take all of it, DATA
 * must lie inside the call's input and end where the call stopped, and after a CLOSE
 * or ERROR nothing more is taken. The two feedings must give the same events (kind,
 * code, control payloads, and where they fall among the DATA bytes) and the same DATA
 * bytes. Close codes must be valid to receive and reasons valid UTF-8.
 *
 * Beside the decoder, on the same input: ws_utf8_valid against a reference decoder,
 * ws_close_frame's cut of a reason, and ws_frame_header's output decoded back.
 *
 * `make fuzz FUZZ_SECONDS=N`; seeds in test/fuzz/corpus-ws (make_corpus_ws.py). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws.h"
#include "fuzz_check.h"

/* What one feeding gave: its events serialised, and its DATA bytes. */
struct outcome {
    uint8_t *ev, *data;
    size_t nev, ndata, cap_ev, cap_data;
};

static void
grow(uint8_t **p, size_t *cap, size_t len, size_t n)
{
    if (len + n <= *cap) return;
    *cap = (len + n) * 2;
    *p = realloc(*p, *cap);
    CHECK(*p);
}

static void
put_event(struct outcome *o, const void *p, size_t n)
{
    grow(&o->ev, &o->cap_ev, o->nev, n);
    if (n) memcpy(o->ev + o->nev, p, n);
    o->nev += n;
}

static bool
close_code_valid(uint16_t c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

/* One call's event, from p[0..took) of a call given p[0..len). */
static void
record(struct outcome *o, const struct ws_decoder *d, const struct ws_event *ev, const uint8_t *p,
       size_t len, size_t took)
{
    CHECK(took <= len);
    switch (ev->kind) {
    case WS_EV_NONE:
        CHECK(took == len); /* nothing to report: everything taken */
        CHECK(!d->over);
        return;
    case WS_EV_DATA:
        CHECK(ev->len > 0 && ev->data >= p && ev->data + ev->len == p + took);
        CHECK(!d->over);
        grow(&o->data, &o->cap_data, o->ndata, ev->len);
        memcpy(o->data + o->ndata, ev->data, ev->len);
        o->ndata += ev->len;
        return;
    case WS_EV_PING:
    case WS_EV_PONG: CHECK(!d->over && ev->len <= 125 && ev->data == d->ctl); break;
    case WS_EV_CLOSE:
        CHECK(d->over);
        if (ev->code == WS_CLOSE_NO_STATUS) {
            CHECK(ev->len == 0);
        } else {
            CHECK(close_code_valid(ev->code));
            CHECK(ev->len <= 123 && ev->data == d->ctl + 2);
            CHECK(ws_utf8_valid(ev->data, ev->len));
        }
        break;
    case WS_EV_ERROR:
        CHECK(d->over && ev->why && ev->why[0]);
        CHECK(ev->code == WS_CLOSE_PROTOCOL || ev->code == WS_CLOSE_UNSUPPORTED ||
              ev->code == WS_CLOSE_INVALID_DATA || ev->code == WS_CLOSE_TOO_BIG);
        break;
    default: CHECK(!"unknown event kind");
    }
    CHECK(took > 0);
    uint8_t kind = (uint8_t)ev->kind;
    put_event(o, &kind, 1);
    put_event(o, &ev->code, sizeof(ev->code));
    put_event(o, &o->ndata, sizeof(o->ndata)); /* where among the DATA bytes */
    put_event(o, &ev->len, sizeof(ev->len));
    if (ev->kind != WS_EV_ERROR) put_event(o, ev->data, ev->len);
}

/* After the end, nothing more is taken. */
static void
check_over(struct ws_decoder *d, uint8_t *p, size_t len)
{
    struct ws_event ev;
    CHECK(ws_decode(d, p, len, &ev) == 0 && ev.kind == WS_EV_NONE);
}

static uint8_t *
copy(const uint8_t *p, size_t len)
{
    uint8_t *b = malloc(len ? len : 1);
    CHECK(b);
    if (len) memcpy(b, p, len);
    return b;
}

static void
feed_whole(const uint8_t *s, size_t len, uint64_t max, struct outcome *o)
{
    struct ws_decoder d;
    ws_decoder_init(&d, max);
    uint8_t *buf = copy(s, len);
    size_t off = 0;
    while (off < len && !d.over) {
        struct ws_event ev;
        size_t took = ws_decode(&d, buf + off, len - off, &ev);
        record(o, &d, &ev, buf + off, len - off, took);
        off += took;
    }
    if (d.over) check_over(&d, buf, len);
    free(buf);
}

static void
feed_pieces(const uint8_t *s, size_t len, const uint8_t *lens, size_t nlens, uint64_t max,
            struct outcome *o)
{
    struct ws_decoder d;
    ws_decoder_init(&d, max);
    for (size_t sent = 0, i = 0; sent < len && !d.over;) {
        size_t n = nlens ? (size_t)lens[i++ % nlens] + 1 : 1;
        if (n > len - sent) n = len - sent;
        uint8_t *piece = copy(s + sent, n);
        for (size_t off = 0; off < n && !d.over;) {
            struct ws_event ev;
            size_t took = ws_decode(&d, piece + off, n - off, &ev);
            record(o, &d, &ev, piece + off, n - off, took);
            off += took;
        }
        if (d.over) check_over(&d, piece, n);
        free(piece);
        sent += n;
    }
}

/* UTF-8 the long way: each character decoded, then judged. */
static bool
ref_utf8_valid(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t b = p[i];
        size_t more = b < 0x80             ? 0
                      : (b & 0xe0) == 0xc0 ? 1
                      : (b & 0xf0) == 0xe0 ? 2
                      : (b & 0xf8) == 0xf0 ? 3
                                           : 4;
        if (more == 4 || n - i <= more) return false;
        uint32_t cp = more == 0 ? b : more == 1 ? b & 0x1fu : more == 2 ? b & 0x0fu : b & 0x07u;
        for (size_t k = 1; k <= more; k++) {
            if ((p[i + k] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (p[i + k] & 0x3fu);
        }
        static const uint32_t least[] = {0, 0x80, 0x800, 0x10000};
        if (cp < least[more] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += more + 1;
    }
    return true;
}

static void
check_utf8_and_close(const uint8_t *s, size_t len)
{
    CHECK(ws_utf8_valid(s, len) == ref_utf8_valid(s, len));
    /* the stream up to its first NUL (at most 300 bytes) as a close reason */
    char reason[301];
    size_t n = len < 300 ? len : 300;
    memcpy(reason, s, n);
    reason[n] = '\0';
    n = strlen(reason);
    uint8_t f[WS_CLOSE_FRAME_MAX];
    size_t fl = ws_close_frame(f, 1000, reason);
    size_t cut = fl - 4; /* a 2-byte header and the code */
    CHECK(fl >= 4 && fl <= WS_CLOSE_FRAME_MAX && f[0] == 0x88 && f[1] == fl - 2);
    CHECK(cut <= 123 && cut <= n && memcmp(f + 4, reason, cut) == 0);
    CHECK(cut == n || n > 123);
    if (ws_utf8_valid((const uint8_t *)reason, n)) CHECK(ws_utf8_valid(f + 4, cut));
    if (ref_utf8_valid((const uint8_t *)reason, n)) CHECK(cut + 3 >= 123 || cut == n);
}

/* A header from ws_frame_header, masked as a client's, decodes to its length. */
static void
check_header(const uint8_t *s, size_t len)
{
    uint64_t n = 0;
    for (size_t i = 0; i < 8 && i < len; i++) n = n << 8 | s[i];
    n >>= (s[0] & 0x3f) % 64; /* short lengths too */
    n &= UINT64_MAX >> 1;
    uint8_t h[WS_HEADER_MAX + 4];
    size_t hl = ws_frame_header(h, WS_OP_BINARY, n);
    CHECK(hl == (n < 126 ? 2u : n < 65536 ? 4u : 10u));
    h[1] |= 0x80;
    memcpy(h + hl, "\x01\x02\x03\x04", 4);
    struct ws_decoder d;
    struct ws_event ev;
    ws_decoder_init(&d, UINT64_MAX);
    CHECK(ws_decode(&d, h, hl + 4, &ev) == hl + 4 && ev.kind == WS_EV_NONE);
    CHECK(n ? d.in_frame && d.left == n : !d.in_frame);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size) return 0;
    static const uint64_t maxes[] = {0, 40, 1000, UINT64_MAX};
    size_t nlens = data[0] & 7;
    uint64_t max = maxes[(data[0] >> 3) & 3];
    if (nlens > size - 1) nlens = size - 1;
    const uint8_t *lens = data + 1, *s = data + 1 + nlens;
    size_t len = size - 1 - nlens;

    struct outcome whole = {0}, pieces = {0};
    feed_whole(s, len, max, &whole);
    feed_pieces(s, len, lens, nlens, max, &pieces);
    CHECK(whole.nev == pieces.nev && whole.ndata == pieces.ndata);
    CHECK(!whole.nev || memcmp(whole.ev, pieces.ev, whole.nev) == 0);
    CHECK(!whole.ndata || memcmp(whole.data, pieces.data, whole.ndata) == 0);
    free(whole.ev);
    free(whole.data);
    free(pieces.ev);
    free(pieces.data);

    check_utf8_and_close(s, len);
    if (len) check_header(s, len);
    return 0;
}
