/* SPDX-License-Identifier: MIT
 *
 * The WebSocket codec (broker/ws/frame.c) and handshake (broker/ws/handshake.c)
 * without a connection. Every stream is decoded whole, byte by byte and in pieces of
 * 3 and 37, and all must give the same events and payload bytes; then the events
 * are checked. RFC 6455 5.7's examples, lengths, fragments with control frames
 * between them, every refusal with its close code, UTF-8, the encoder, and the
 * upgrade's answers and refusals. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "suites.h"
#include "ws.h"

#define NO_LIMIT UINT64_MAX

static const uint8_t key1[4] = {0x37, 0xfa, 0x21, 0x3d}; /* RFC 6455 5.7's */
static const uint8_t key2[4] = {0x01, 0x80, 0xfe, 0x55};

/* ---- building a client's frames ---- */

/* A client's frame: b0 as given (FIN, RSV, opcode), the length in its shortest form
 * and the mask bit, key, the payload masked. Its length at out. */
static size_t
client_frame(uint8_t *out, uint8_t b0, const void *payload, size_t n, const uint8_t key[4])
{
    size_t h = ws_frame_header(out, 0, n);
    out[0] = b0;
    out[1] |= 0x80;
    memcpy(out + h, key, 4);
    const uint8_t *src = payload;
    for (size_t i = 0; i < n; i++) out[h + 4 + i] = src[i] ^ key[i % 4];
    return h + 4 + n;
}

/* A stream of frames appended one by one. */
struct stream {
    uint8_t *p;
    size_t len;
};

static void
add(struct stream *s, uint8_t b0, const void *payload, size_t n, const uint8_t key[4])
{
    s->p = realloc(s->p, s->len + n + 14);
    ck_assert_ptr_nonnull(s->p);
    s->len += client_frame(s->p + s->len, b0, payload, n, key);
}

static void
add_raw(struct stream *s, const void *bytes, size_t n)
{
    s->p = realloc(s->p, s->len + n);
    ck_assert_ptr_nonnull(s->p);
    memcpy(s->p + s->len, bytes, n);
    s->len += n;
}

/* ---- decoding, recorded ---- */

#define MAX_EVENTS 32

struct event {
    enum ws_event_kind kind;
    uint16_t code;
    size_t at; /* payload bytes handed over before it */
    size_t len;
    uint8_t data[125];
};

struct trace {
    uint8_t *data; /* all DATA bytes in order */
    size_t ndata;
    struct event ev[MAX_EVENTS];
    size_t nev;
    bool over;
};

/* Decode a copy of in[0..len) with pieces of step bytes (0: whole) into t. */
static void
feed(struct trace *t, uint64_t max, const uint8_t *in, size_t len, size_t step)
{
    uint8_t *buf = malloc(len + 1);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, in, len);
    memset(t, 0, sizeof(*t));
    t->data = malloc(len + 1);
    struct ws_decoder d;
    ws_decoder_init(&d, max);
    struct ws_event ev;
    ck_assert_uint_eq(ws_decode(&d, buf, 0, &ev), 0);
    ck_assert_int_eq(ev.kind, WS_EV_NONE);
    for (size_t sent = 0; sent < len && !d.over;) {
        size_t piece = step && step < len - sent ? step : len - sent, off = 0;
        while (off < piece && !d.over) {
            uint8_t *p = buf + sent + off;
            size_t took = ws_decode(&d, p, piece - off, &ev);
            ck_assert_uint_le(took, piece - off);
            off += took;
            if (ev.kind == WS_EV_NONE) {
                ck_assert_uint_eq(off, piece); /* NONE: all taken, more needed */
            } else if (ev.kind == WS_EV_DATA) {
                ck_assert_uint_gt(ev.len, 0);
                ck_assert_ptr_eq(ev.data + ev.len, p + took); /* DATA ends the call */
                memcpy(t->data + t->ndata, ev.data, ev.len);
                t->ndata += ev.len;
            } else {
                ck_assert_uint_lt(t->nev, MAX_EVENTS);
                struct event *e = &t->ev[t->nev++];
                *e = (struct event){.kind = ev.kind, .code = ev.code, .at = t->ndata};
                if (ev.kind == WS_EV_ERROR) {
                    ck_assert_ptr_nonnull(ev.why);
                    ck_assert_uint_gt(strlen(ev.why), 0);
                } else {
                    ck_assert_uint_le(ev.len, 125);
                    e->len = ev.len;
                    if (ev.len) memcpy(e->data, ev.data, ev.len);
                }
            }
        }
        sent += piece;
    }
    t->over = d.over;
    if (d.over) { /* nothing more is taken */
        ck_assert_uint_eq(ws_decode(&d, buf, len, &ev), 0);
        ck_assert_int_eq(ev.kind, WS_EV_NONE);
    }
    free(buf);
}

static void
same_trace(const struct trace *a, const struct trace *b)
{
    ck_assert_uint_eq(a->ndata, b->ndata);
    ck_assert(a->ndata == 0 || memcmp(a->data, b->data, a->ndata) == 0);
    ck_assert_uint_eq(a->nev, b->nev);
    for (size_t i = 0; i < a->nev; i++) {
        ck_assert_int_eq(a->ev[i].kind, b->ev[i].kind);
        ck_assert_uint_eq(a->ev[i].code, b->ev[i].code);
        ck_assert_uint_eq(a->ev[i].at, b->ev[i].at);
        ck_assert_uint_eq(a->ev[i].len, b->ev[i].len);
        ck_assert(memcmp(a->ev[i].data, b->ev[i].data, a->ev[i].len) == 0);
    }
    ck_assert_int_eq(a->over, b->over);
}

/* in[0..len) whole into t, checked against byte by byte and pieces of 3 and 37 (the
 * mask's position then varies at the start of long runs). */
static void
decode(struct trace *t, uint64_t max, const uint8_t *in, size_t len)
{
    static const size_t steps[] = {1, 3, 37};
    feed(t, max, in, len, 0);
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        struct trace other;
        feed(&other, max, in, len, steps[i]);
        same_trace(t, &other);
        free(other.data);
    }
}

static void
trace_free(struct trace *t)
{
    free(t->data);
}

/* The stream must end in one event, ERROR with code, after ndata payload bytes. */
static void
expect_error_n(uint64_t max, const void *in, size_t len, uint16_t code, size_t ndata)
{
    struct trace t;
    decode(&t, max, in, len);
    ck_assert_uint_ge(t.nev, 1);
    ck_assert_int_eq(t.ev[t.nev - 1].kind, WS_EV_ERROR);
    ck_assert_uint_eq(t.ev[t.nev - 1].code, code);
    ck_assert_uint_eq(t.ndata, ndata);
    ck_assert(t.over);
    trace_free(&t);
}

static void
expect_error(const struct stream *s, uint16_t code)
{
    expect_error_n(NO_LIMIT, s->p, s->len, code, 0);
}

/* ---- RFC 6455 5.7 ---- */

START_TEST(test_rfc_examples)
{
    static const uint8_t unmasked_text[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
    expect_error_n(NO_LIMIT, unmasked_text, sizeof(unmasked_text), WS_CLOSE_PROTOCOL, 0);
    static const uint8_t unmasked_frag[] = {0x01, 0x03, 'H', 'e', 'l'};
    expect_error_n(NO_LIMIT, unmasked_frag, sizeof(unmasked_frag), WS_CLOSE_PROTOCOL, 0);
    static const uint8_t unmasked_ping[] = {0x89, 0x05, 'H', 'e', 'l', 'l', 'o'};
    expect_error_n(NO_LIMIT, unmasked_ping, sizeof(unmasked_ping), WS_CLOSE_PROTOCOL, 0);

    /* the masked "Hello" is text: MQTT refuses it once it ends */
    static const uint8_t masked_text[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                          0x7f, 0x9f, 0x4d, 0x51, 0x58};
    expect_error_n(NO_LIMIT, masked_text, sizeof(masked_text), WS_CLOSE_UNSUPPORTED, 0);

    /* its binary twin hands "Hello" over */
    uint8_t bin[sizeof(masked_text)];
    memcpy(bin, masked_text, sizeof(bin));
    bin[0] = 0x82;
    struct trace t;
    decode(&t, NO_LIMIT, bin, sizeof(bin));
    ck_assert_uint_eq(t.nev, 0);
    ck_assert_uint_eq(t.ndata, 5);
    ck_assert(memcmp(t.data, "Hello", 5) == 0);
    trace_free(&t);

    /* the masked pong of the example, and a masked ping */
    static const uint8_t masked_pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                          0x7f, 0x9f, 0x4d, 0x51, 0x58};
    decode(&t, NO_LIMIT, masked_pong, sizeof(masked_pong));
    ck_assert_uint_eq(t.nev, 1);
    ck_assert_int_eq(t.ev[0].kind, WS_EV_PONG);
    ck_assert_uint_eq(t.ev[0].len, 5);
    ck_assert(memcmp(t.ev[0].data, "Hello", 5) == 0);
    ck_assert(!t.over);
    trace_free(&t);
    uint8_t ping[sizeof(masked_pong)];
    memcpy(ping, masked_pong, sizeof(ping));
    ping[0] = 0x89;
    decode(&t, NO_LIMIT, ping, sizeof(ping));
    ck_assert_uint_eq(t.nev, 1);
    ck_assert_int_eq(t.ev[0].kind, WS_EV_PING);
    ck_assert(memcmp(t.ev[0].data, "Hello", 5) == 0);
    trace_free(&t);

    /* 256 bytes and 64 KiB in one frame: unmasked refused, masked handed over */
    static const uint8_t unmasked_256[] = {0x82, 0x7e, 0x01, 0x00};
    expect_error_n(NO_LIMIT, unmasked_256, sizeof(unmasked_256), WS_CLOSE_PROTOCOL, 0);
    static const uint8_t unmasked_64k[] = {0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0};
    expect_error_n(NO_LIMIT, unmasked_64k, sizeof(unmasked_64k), WS_CLOSE_PROTOCOL, 0);
}
END_TEST

/* ---- lengths and fragments ---- */

static uint8_t *
pattern(size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 7 + i / 251);
    return p;
}

START_TEST(test_lengths)
{
    static const size_t sizes[] = {0, 1, 7, 8, 17, 125, 126, 127, 255, 256, 65535, 65536, 70001};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        uint8_t *pl = pattern(n);
        struct stream s = {0};
        add(&s, 0x82, pl, n, i % 2 ? key1 : key2);
        ck_assert_uint_eq(s.len, n + 4 + (n < 126 ? 2 : n < 65536 ? 4 : 10));
        add(&s, 0x82, "tail", 4, key1); /* the next frame after it is read too */
        struct trace t;
        decode(&t, NO_LIMIT, s.p, s.len);
        ck_assert_uint_eq(t.nev, 0);
        ck_assert_uint_eq(t.ndata, n + 4);
        ck_assert(n == 0 || memcmp(t.data, pl, n) == 0);
        ck_assert(memcmp(t.data + n, "tail", 4) == 0);
        trace_free(&t);
        free(s.p);
        free(pl);
    }
}
END_TEST

START_TEST(test_fragments_with_ping)
{
    struct stream s = {0};
    add(&s, 0x02, "abc", 3, key1);            /* binary, not final */
    add(&s, 0x89, "ping!", 5, key2);          /* a ping between fragments */
    add(&s, 0x00, "defgh", 5, key2);          /* continuation */
    add(&s, 0x8a, "", 0, key1);               /* an empty pong */
    add(&s, 0x00, "", 0, key1);               /* an empty continuation */
    add(&s, 0x80, "ijklmnopqrstu", 13, key1); /* the final one */
    add(&s, 0x82, "", 0, key2);               /* an empty message: no DATA */
    add(&s, 0x82, "v", 1, key2);              /* another message */
    uint8_t close[] = {0x03, 0xe8, 'b', 'y', 'e'};
    add(&s, 0x88, close, sizeof(close), key1);
    add(&s, 0x82, "ignored", 7, key1); /* after the close: not read */
    struct trace t;
    decode(&t, NO_LIMIT, s.p, s.len);
    ck_assert_uint_eq(t.ndata, 22);
    ck_assert(memcmp(t.data, "abcdefghijklmnopqrstuv", 22) == 0);
    ck_assert_uint_eq(t.nev, 3);
    ck_assert_int_eq(t.ev[0].kind, WS_EV_PING);
    ck_assert_uint_eq(t.ev[0].at, 3);
    ck_assert_uint_eq(t.ev[0].len, 5);
    ck_assert(memcmp(t.ev[0].data, "ping!", 5) == 0);
    ck_assert_int_eq(t.ev[1].kind, WS_EV_PONG);
    ck_assert_uint_eq(t.ev[1].at, 8);
    ck_assert_uint_eq(t.ev[1].len, 0);
    ck_assert_int_eq(t.ev[2].kind, WS_EV_CLOSE);
    ck_assert_uint_eq(t.ev[2].code, WS_CLOSE_NORMAL);
    ck_assert_uint_eq(t.ev[2].len, 3);
    ck_assert(memcmp(t.ev[2].data, "bye", 3) == 0);
    ck_assert(t.over);
    trace_free(&t);
    free(s.p);
}
END_TEST

/* One call hands over what it has of a frame, and stops after it. */
START_TEST(test_data_ends_the_call)
{
    struct stream s = {0};
    add(&s, 0x82, "0123456789", 10, key1);
    add(&s, 0x82, "abc", 3, key2);
    struct ws_decoder d;
    ws_decoder_init(&d, NO_LIMIT);
    struct ws_event ev;
    ck_assert_uint_eq(ws_decode(&d, s.p, 9, &ev), 9); /* header and 3 bytes */
    ck_assert_int_eq(ev.kind, WS_EV_DATA);
    ck_assert_ptr_eq(ev.data, s.p + 6);
    ck_assert_uint_eq(ev.len, 3);
    ck_assert(memcmp(ev.data, "012", 3) == 0);
    ck_assert_uint_eq(ws_decode(&d, s.p + 9, s.len - 9, &ev), 7); /* the rest of the frame */
    ck_assert_int_eq(ev.kind, WS_EV_DATA);
    ck_assert(memcmp(ev.data, "3456789", 7) == 0);
    ck_assert_uint_eq(ws_decode(&d, s.p + 16, s.len - 16, &ev), 9);
    ck_assert_int_eq(ev.kind, WS_EV_DATA);
    ck_assert(memcmp(ev.data, "abc", 3) == 0);
    free(s.p);
}
END_TEST

/* ---- framing errors: 1002 ---- */

START_TEST(test_reserved_bits)
{
    for (uint8_t bit = 0x10; bit <= 0x40; bit <<= 1) {
        struct stream s = {0};
        add(&s, (uint8_t)(0x82 | bit), "x", 1, key1);
        expect_error(&s, WS_CLOSE_PROTOCOL);
        free(s.p);
    }
}
END_TEST

START_TEST(test_reserved_opcodes)
{
    static const uint8_t ops[] = {3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf};
    for (size_t i = 0; i < sizeof(ops); i++) {
        struct stream s = {0};
        add(&s, (uint8_t)(0x80 | ops[i]), "x", 1, key1);
        expect_error(&s, WS_CLOSE_PROTOCOL);
        free(s.p);
    }
}
END_TEST

START_TEST(test_bad_lengths)
{
    /* 64-bit length with its top bit set: refused before the mask */
    static const uint8_t top[] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1};
    expect_error_n(NO_LIMIT, top, sizeof(top), WS_CLOSE_PROTOCOL, 0);
    /* 125 in the 16-bit form, 65535 in the 64-bit form */
    static const uint8_t long16[] = {0x82, 0xfe, 0x00, 0x7d, 1, 2, 3, 4};
    expect_error_n(NO_LIMIT, long16, sizeof(long16), WS_CLOSE_PROTOCOL, 0);
    static const uint8_t long64[] = {0x82, 0xff, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4};
    expect_error_n(NO_LIMIT, long64, sizeof(long64), WS_CLOSE_PROTOCOL, 0);
    /* a control frame over 125 bytes, in the 16-bit form */
    static const uint8_t big_ping[] = {0x89, 0xfe, 0x00, 0x7e, 1, 2, 3, 4};
    expect_error_n(NO_LIMIT, big_ping, sizeof(big_ping), WS_CLOSE_PROTOCOL, 0);
    /* 126 in the 16-bit form and 65536 in the 64-bit form are minimal: no error */
    static const uint8_t ok16[] = {0x82, 0xfe, 0x00, 0x7e, 1, 2, 3, 4};
    static const uint8_t ok64[] = {0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4};
    struct trace t;
    decode(&t, NO_LIMIT, ok16, sizeof(ok16));
    ck_assert(!t.over && t.nev == 0);
    trace_free(&t);
    decode(&t, NO_LIMIT, ok64, sizeof(ok64));
    ck_assert(!t.over && t.nev == 0);
    trace_free(&t);
}
END_TEST

START_TEST(test_unmasked)
{
    static const uint8_t bin[] = {0x82, 0x01, 'x'};
    expect_error_n(NO_LIMIT, bin, sizeof(bin), WS_CLOSE_PROTOCOL, 0);
    static const uint8_t close[] = {0x88, 0x00};
    expect_error_n(NO_LIMIT, close, sizeof(close), WS_CLOSE_PROTOCOL, 0);
    /* after a good frame */
    struct stream s = {0};
    add(&s, 0x82, "ok", 2, key1);
    add_raw(&s, bin, sizeof(bin));
    expect_error_n(NO_LIMIT, s.p, s.len, WS_CLOSE_PROTOCOL, 2);
    free(s.p);
}
END_TEST

START_TEST(test_control_not_final)
{
    static const uint8_t ops[] = {WS_OP_CLOSE, WS_OP_PING, WS_OP_PONG};
    for (size_t i = 0; i < sizeof(ops); i++) {
        struct stream s = {0};
        add(&s, ops[i], "", 0, key1); /* FIN clear */
        expect_error(&s, WS_CLOSE_PROTOCOL);
        free(s.p);
    }
}
END_TEST

START_TEST(test_message_order)
{
    struct stream s = {0};
    add(&s, 0x80, "x", 1, key1); /* continuation, no message */
    expect_error(&s, WS_CLOSE_PROTOCOL);
    free(s.p);

    s = (struct stream){0};
    add(&s, 0x82, "a", 1, key1);
    add(&s, 0x00, "b", 1, key1); /* the message ended with its first frame */
    expect_error_n(NO_LIMIT, s.p, s.len, WS_CLOSE_PROTOCOL, 1);
    free(s.p);

    static const uint8_t ops[] = {0x82, 0x02, 0x81, 0x01};
    for (size_t i = 0; i < sizeof(ops); i++) {
        s = (struct stream){0};
        add(&s, 0x02, "a", 1, key1);   /* binary, not final */
        add(&s, ops[i], "b", 1, key1); /* a new data frame inside it */
        expect_error_n(NO_LIMIT, s.p, s.len, WS_CLOSE_PROTOCOL, 1);
        free(s.p);
    }
}
END_TEST

/* ---- the message limit: 1009 ---- */

START_TEST(test_too_big_frame)
{
    uint8_t *pl = pattern(101);
    struct stream s = {0};
    add(&s, 0x82, pl, 100, key1); /* max_message itself is fine */
    struct trace t;
    decode(&t, 100, s.p, s.len);
    ck_assert(!t.over && t.ndata == 100);
    trace_free(&t);
    free(s.p);

    /* one more: refused as soon as the length is in, the bytes are not waited for */
    s = (struct stream){0};
    add(&s, 0x82, pl, 101, key1);
    expect_error_n(100, s.p, 2, WS_CLOSE_TOO_BIG, 0);
    free(s.p);
    /* 2^63 - 1 announced: no overflow */
    static const uint8_t huge[] = {0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    expect_error_n(1u << 20, huge, sizeof(huge), WS_CLOSE_TOO_BIG, 0);
    /* 16-bit length over a small limit */
    static const uint8_t mid[] = {0x82, 0xfe, 0x01, 0x00};
    expect_error_n(255, mid, sizeof(mid), WS_CLOSE_TOO_BIG, 0);
    /* a control frame does not count */
    s = (struct stream){0};
    add(&s, 0x89, pl, 100, key1);
    decode(&t, 10, s.p, s.len);
    ck_assert_int_eq(t.ev[0].kind, WS_EV_PING);
    trace_free(&t);
    free(s.p);
    free(pl);
}
END_TEST

START_TEST(test_too_big_fragments)
{
    struct stream s = {0};
    add(&s, 0x02, "0123456789", 10, key1);
    for (int i = 0; i < 9; i++) add(&s, 0x00, "0123456789", 10, key2);
    add(&s, 0x80, "", 0, key1);            /* 100 bytes in 11 frames: fine */
    add(&s, 0x02, "0123456789", 10, key1); /* the next message counts from 0 */
    for (int i = 0; i < 100; i++) add(&s, 0x00, "0123456789", 10, key2); /* forever */
    expect_error_n(100, s.p, s.len, WS_CLOSE_TOO_BIG, 200);
    free(s.p);
}
END_TEST

/* ---- text: 1003 when valid, 1007 when not ---- */

static void
text_error(const char *const *frames, size_t n, uint16_t code)
{
    struct stream s = {0};
    for (size_t i = 0; i < n; i++) {
        uint8_t b0 = (uint8_t)((i == 0 ? WS_OP_TEXT : WS_OP_CONT) | (i == n - 1 ? 0x80 : 0));
        add(&s, b0, frames[i], strlen(frames[i]), i % 2 ? key1 : key2);
    }
    expect_error(&s, code);
    free(s.p);
}

START_TEST(test_text)
{
    const char *valid[] = {
        "plain ascii, \xc3\xa9, \xe2\x82\xac, \xf0\x9f\x98\x80, \xf4\x8f\xbf\xbf"};
    text_error(valid, 1, WS_CLOSE_UNSUPPORTED);
    const char *empty[] = {""};
    text_error(empty, 1, WS_CLOSE_UNSUPPORTED);
    const char *split[] = {"ab\xe2\x82", "\xac", "\xf0", "\x9f\x98", "\x80z"}; /* across frames */
    text_error(split, 5, WS_CLOSE_UNSUPPORTED);

    const char *bad[] = {"\xc0\x80",         /* overlong NUL */
                         "\xe0\x80\xaf",     /* overlong '/' */
                         "\xed\xa0\x80",     /* a surrogate */
                         "\xf4\x90\x80\x80", /* past U+10FFFF */
                         "\xf5\x80\x80\x80", "\xff", "\x80", "a\xc3(", "\xe2\x82"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) text_error(&bad[i], 1, 1007);
    const char *truncated[] = {"ok", "\xf0\x9f\x98"}; /* FIN inside a character */
    text_error(truncated, 2, WS_CLOSE_INVALID_DATA);

    /* invalid text is refused at once, before the message ends */
    struct stream s = {0};
    add(&s, 0x01, "ok \xed\xa0\x80 more", 11, key1);
    expect_error(&s, WS_CLOSE_INVALID_DATA);
    free(s.p);
    /* a ping in the middle of a text message is answered first */
    s = (struct stream){0};
    add(&s, 0x01, "\xe2", 1, key1);
    add(&s, 0x89, "p", 1, key1);
    add(&s, 0x80, "\x82\xac", 2, key2);
    struct trace t;
    decode(&t, NO_LIMIT, s.p, s.len);
    ck_assert_uint_eq(t.nev, 2);
    ck_assert_int_eq(t.ev[0].kind, WS_EV_PING);
    ck_assert_uint_eq(t.ev[1].code, WS_CLOSE_UNSUPPORTED);
    ck_assert_uint_eq(t.ndata, 0); /* text is not handed over */
    trace_free(&t);
    free(s.p);
}
END_TEST

START_TEST(test_utf8_valid)
{
#define V(s) ws_utf8_valid((const uint8_t *)(s), sizeof(s) - 1)
    ck_assert(V(""));
    ck_assert(V("abc"));
    ck_assert(V("\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf"));
    ck_assert(V("\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\xed\x9f\xbf\xee\x80\x80"));
    ck_assert(V("a\0b")); /* NUL is a character */
    ck_assert(!V("\xc0\x80"));
    ck_assert(!V("\xc1\xbf"));
    ck_assert(!V("\xe0\x9f\xbf"));
    ck_assert(!V("\xed\xa0\x80"));
    ck_assert(!V("\xed\xbf\xbf"));
    ck_assert(!V("\xf0\x8f\xbf\xbf"));
    ck_assert(!V("\xf4\x90\x80\x80"));
    ck_assert(!V("\xf8\x88\x80\x80\x80"));
    ck_assert(!V("\xc3"));
    ck_assert(!V("\xc3\xc3"));
    ck_assert(!V("\xe2\x82"));
    ck_assert(!V("\xbf"));
    ck_assert(!V("\xfe\xff"));
#undef V
}
END_TEST

/* ---- close ---- */

static void
expect_close(const void *payload, size_t n, uint16_t code, const char *reason)
{
    struct stream s = {0};
    add(&s, 0x88, payload, n, key1);
    struct trace t;
    decode(&t, NO_LIMIT, s.p, s.len);
    ck_assert_uint_eq(t.nev, 1);
    ck_assert_int_eq(t.ev[0].kind, WS_EV_CLOSE);
    ck_assert_uint_eq(t.ev[0].code, code);
    ck_assert_uint_eq(t.ev[0].len, strlen(reason));
    ck_assert(memcmp(t.ev[0].data, reason, strlen(reason)) == 0);
    ck_assert(t.over);
    trace_free(&t);
    free(s.p);
}

static void
close_error(const void *payload, size_t n, uint16_t code)
{
    struct stream s = {0};
    add(&s, 0x88, payload, n, key2);
    expect_error(&s, code);
    free(s.p);
}

START_TEST(test_close)
{
    expect_close("\x03\xe8", 2, 1000, "");
    expect_close("\x03\xe9going away", 12, 1001, "going away");
    expect_close("\x0f\xa0\xc3\xa9t\xc3\xa9", 7, 4000, "\xc3\xa9t\xc3\xa9");
    expect_close("", 0, WS_CLOSE_NO_STATUS, "");
    static const uint16_t valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                     1010, 1011, 1012, 1013, 1014, 3000, 4999};
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        uint8_t p[2] = {(uint8_t)(valid[i] >> 8), (uint8_t)valid[i]};
        expect_close(p, 2, valid[i], "");
    }
    /* a 125-byte close: the most a control frame holds */
    uint8_t full[125] = {0x03, 0xe8};
    memset(full + 2, 'r', 123);
    struct stream s = {0};
    add(&s, 0x88, full, 125, key1);
    struct trace t;
    decode(&t, NO_LIMIT, s.p, s.len);
    ck_assert_uint_eq(t.ev[0].len, 123);
    trace_free(&t);
    free(s.p);
}
END_TEST

START_TEST(test_close_refused)
{
    close_error("\x03", 1, WS_CLOSE_PROTOCOL);
    static const uint16_t invalid[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        uint8_t p[4] = {(uint8_t)(invalid[i] >> 8), (uint8_t)invalid[i], 'o', 'k'};
        close_error(p, 4, WS_CLOSE_PROTOCOL);
    }
    close_error("\x03\xe8\xc0\x80", 4, WS_CLOSE_INVALID_DATA);
    close_error("\x03\xe8ok\xe2\x82", 6, WS_CLOSE_INVALID_DATA); /* ends inside a character */
}
END_TEST

/* ---- the encoder ---- */

START_TEST(test_frame_header)
{
    uint8_t h[WS_HEADER_MAX];
    ck_assert_uint_eq(ws_frame_header(h, WS_OP_BINARY, 0), 2);
    ck_assert(memcmp(h, "\x82\x00", 2) == 0);
    ck_assert_uint_eq(ws_frame_header(h, WS_OP_BINARY, 125), 2);
    ck_assert(memcmp(h, "\x82\x7d", 2) == 0);
    ck_assert_uint_eq(ws_frame_header(h, WS_OP_BINARY, 126), 4);
    ck_assert(memcmp(h, "\x82\x7e\x00\x7e", 4) == 0);
    ck_assert_uint_eq(ws_frame_header(h, WS_OP_PONG, 65535), 4);
    ck_assert(memcmp(h, "\x8a\x7e\xff\xff", 4) == 0);
    ck_assert_uint_eq(ws_frame_header(h, WS_OP_BINARY, 65536), 10);
    ck_assert(memcmp(h, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10) == 0);
    ck_assert_uint_eq(ws_frame_header(h, WS_OP_BINARY, 0x0102030405060708ull), 10);
    ck_assert(memcmp(h, "\x82\x7f\x01\x02\x03\x04\x05\x06\x07\x08", 10) == 0);
}
END_TEST

START_TEST(test_close_frame)
{
    uint8_t f[WS_CLOSE_FRAME_MAX];
    ck_assert_uint_eq(ws_close_frame(f, 1000, ""), 4);
    ck_assert(memcmp(f, "\x88\x02\x03\xe8", 4) == 0);
    ck_assert_uint_eq(ws_close_frame(f, 1009, "too big"), 11);
    ck_assert(memcmp(f, "\x88\x09\x03\xf1too big", 11) == 0);
    ck_assert_uint_eq(ws_close_frame(f, WS_CLOSE_NO_STATUS, "x"), 2); /* never sent as a code */
    ck_assert(memcmp(f, "\x88\x00", 2) == 0);

    char reason[200];
    memset(reason, 'a', 123);
    strcpy(reason + 123, "bc");
    ck_assert_uint_eq(ws_close_frame(f, 1000, reason), 127); /* cut to 123 */
    ck_assert_uint_eq(f[1], 125);
    ck_assert_uint_eq(f[2 + 2 + 122], 'a');
    /* "€" (3 bytes) over the 123rd byte: cut before it */
    memset(reason, 'a', 121);
    strcpy(reason + 121, "\xe2\x82\xac!");
    ck_assert_uint_eq(ws_close_frame(f, 1000, reason), 2 + 2 + 121);
    ck_assert(ws_utf8_valid(f + 4, 121));
    /* ending exactly at 123 with it: kept */
    memset(reason, 'a', 120);
    strcpy(reason + 120, "\xe2\x82\xac!");
    ck_assert_uint_eq(ws_close_frame(f, 1000, reason), 2 + 2 + 123);
    ck_assert(memcmp(f + 4 + 120, "\xe2\x82\xac", 3) == 0);
    /* what it writes decodes as a close (masked as a client would) */
    size_t n = ws_close_frame(f, 4001, "\xc3\xa9t\xc3\xa9");
    expect_close(f + 2, n - 2, 4001, "\xc3\xa9t\xc3\xa9");
}
END_TEST

/* ---- the handshake ---- */

struct req {
    struct httpd_header h[16];
    struct httpd_request rq;
};

/* Set header name to value (NULL: remove it). */
static void
set(struct req *r, const char *name, const char *value)
{
    struct httpd_header *h = r->h;
    size_t i = 0;
    while (i < r->rq.nheaders && strcmp(h[i].name, name) != 0) i++;
    if (!value) {
        if (i == r->rq.nheaders) return;
        memmove(&h[i], &h[i + 1], (r->rq.nheaders - i - 1) * sizeof(*h));
        r->rq.nheaders--;
        return;
    }
    ck_assert_uint_lt(i, 16);
    h[i] = (struct httpd_header){name, value};
    if (i == r->rq.nheaders) r->rq.nheaders++;
}

/* RFC 6455 1.3's request, without Origin and subprotocols. */
static void
req_init(struct req *r)
{
    memset(r, 0, sizeof(*r));
    r->rq = (struct httpd_request){.method = "GET",
                                   .path = "/mqtt",
                                   .query = "",
                                   .headers = r->h,
                                   .keep_alive = true,
                                   .http11 = true};
    set(r, "host", "server.example.com");
    set(r, "upgrade", "websocket");
    set(r, "connection", "Upgrade");
    set(r, "sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    set(r, "sec-websocket-version", "13");
}

/* The handshake's status, with the answer's shape checked. */
static int
shake(const struct req *r, const struct ws_policy *pol, char *resp)
{
    const char *why = NULL;
    memset(resp, 'X', WS_RESPONSE_MAX);
    int status = ws_handshake(&r->rq, pol, resp, &why);
    ck_assert_ptr_nonnull(why);
    ck_assert_ptr_nonnull(memchr(resp, '\0', WS_RESPONSE_MAX));
    char line[64];
    snprintf(line, sizeof(line), "HTTP/1.1 %d ", status);
    ck_assert_msg(strncmp(resp, line, strlen(line)) == 0, "%s", resp);
    const char *end = strstr(resp, "\r\n\r\n");
    ck_assert_ptr_nonnull(end);
    if (status == 101) {
        ck_assert_str_eq(end, "\r\n\r\n");
    } else {
        char cl[64];
        snprintf(cl, sizeof(cl), "\r\nContent-Length: %zu\r\n", strlen(end + 4));
        ck_assert_ptr_nonnull(strstr(resp, cl));
        ck_assert_ptr_nonnull(strstr(resp, "\r\nConnection: close\r\n"));
        ck_assert_ptr_nonnull(strstr(resp, "\r\nContent-Type: text/plain\r\n"));
        ck_assert_uint_eq(strlen(end + 4), strlen(why) + 1);
    }
    return status;
}

START_TEST(test_handshake_rfc_key)
{
    struct req r;
    req_init(&r);
    char resp[WS_RESPONSE_MAX];
    ck_assert_int_eq(shake(&r, NULL, resp), 101);
    ck_assert_str_eq(resp, "HTTP/1.1 101 Switching Protocols\r\n"
                           "Upgrade: websocket\r\n"
                           "Connection: Upgrade\r\n"
                           "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                           "\r\n");
    /* tokens in lists, in any case */
    set(&r, "upgrade", "foo/1, WebSocket");
    set(&r, "connection", "keep-alive, Upgrade");
    ck_assert_int_eq(shake(&r, NULL, resp), 101);
    set(&r, "connection", "upgrade,keep-alive");
    ck_assert_int_eq(shake(&r, NULL, resp), 101);
}
END_TEST

/* The subprotocol answered for offer (NULL: none), or NULL without that header. */
static void
expect_protocol(const char *offer, const char *picked)
{
    struct req r;
    req_init(&r);
    set(&r, "sec-websocket-protocol", offer);
    char resp[WS_RESPONSE_MAX], want[64];
    ck_assert_int_eq(shake(&r, NULL, resp), 101);
    if (picked) {
        snprintf(want, sizeof(want), "\r\nSec-WebSocket-Protocol: %s\r\n", picked);
        ck_assert_msg(strstr(resp, want), "%s", resp);
    } else {
        ck_assert_ptr_null(strstr(resp, "Sec-WebSocket-Protocol"));
    }
}

static void
expect_refusal(const struct req *r, const struct ws_policy *pol, int status, const char *header)
{
    char resp[WS_RESPONSE_MAX];
    ck_assert_int_eq(shake(r, pol, resp), status);
    if (header) ck_assert_msg(strstr(resp, header), "%s", resp);
    ck_assert_ptr_null(strstr(resp, "Sec-WebSocket-Accept"));
}

START_TEST(test_handshake_protocol)
{
    expect_protocol(NULL, NULL);
    expect_protocol("mqtt", "mqtt");
    expect_protocol("foo, mqtt", "mqtt");
    expect_protocol("foo ,mqtt , bar", "mqtt");
    expect_protocol("mqttv3.1", "mqttv3.1");
    expect_protocol("mqttv3.1, mqtt", "mqtt"); /* mqtt first, whatever the order */
    struct req r;
    req_init(&r);
    static const char *const refused[] = {"foo", "MQTT", "mqttx", "mqt", "", "foo, bar"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        set(&r, "sec-websocket-protocol", refused[i]);
        expect_refusal(&r, NULL, 400, NULL);
    }
}
END_TEST

START_TEST(test_handshake_refusals)
{
    struct req r;
    req_init(&r);
    set(&r, "upgrade", NULL); /* a plain GET */
    expect_refusal(&r, NULL, 426, "\r\nUpgrade: websocket\r\n");
    set(&r, "upgrade", "h2c");
    expect_refusal(&r, NULL, 426, "\r\nUpgrade: websocket\r\n");
    set(&r, "upgrade", "websockets");
    expect_refusal(&r, NULL, 426, NULL);

    req_init(&r);
    set(&r, "sec-websocket-version", "12");
    expect_refusal(&r, NULL, 426, "\r\nSec-WebSocket-Version: 13\r\n");
    set(&r, "sec-websocket-version", NULL);
    expect_refusal(&r, NULL, 426, "\r\nSec-WebSocket-Version: 13\r\n");

    req_init(&r);
    r.rq.method = "POST";
    expect_refusal(&r, NULL, 400, NULL);
    req_init(&r);
    r.rq.http11 = false;
    expect_refusal(&r, NULL, 400, NULL);
    req_init(&r);
    set(&r, "host", NULL);
    expect_refusal(&r, NULL, 400, NULL);
    req_init(&r);
    set(&r, "connection", NULL);
    expect_refusal(&r, NULL, 400, NULL);
    set(&r, "connection", "keep-alive");
    expect_refusal(&r, NULL, 400, NULL);
    set(&r, "connection", "upgrades");
    expect_refusal(&r, NULL, 400, NULL);
    req_init(&r);
    r.rq.body = (const uint8_t *)"x";
    r.rq.body_len = 1;
    expect_refusal(&r, NULL, 400, NULL);
}
END_TEST

START_TEST(test_handshake_key)
{
    static const char *const bad[] = {
        "dGhlIHNhbXBsZSBub25jZQ",    /* no padding */
        "dGhlIHNhbXBsZSBub25jZQ=",   /* 23 */
        "dGhlIHNhbXBsZSBub25jZQ===", /* 25 */
        "AAAAAAAAAAAAAAAAAAAAAAAA",  /* 18 bytes */
        "dGhlIHNhbXBsZSBub25j!Q==",  /* not base64 */
        "dGhlIHNhbXBsZSBu b25jZQ==", /* a space inside */
        "dGhlIHNhbXBsZSBub2=jZQ==",  /* padding inside */
        "",
    };
    struct req r;
    req_init(&r);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        set(&r, "sec-websocket-key", bad[i]);
        expect_refusal(&r, NULL, 400, NULL);
    }
    set(&r, "sec-websocket-key", NULL);
    expect_refusal(&r, NULL, 400, NULL);
    set(&r, "sec-websocket-key", "AAAAAAAAAAAAAAAAAAAAAA==");
    char resp[WS_RESPONSE_MAX];
    ck_assert_int_eq(shake(&r, NULL, resp), 101);
}
END_TEST

START_TEST(test_handshake_origin)
{
    static char site[] = "https://example.com", local[] = "http://localhost:8080";
    char *const origins[] = {site, local};
    struct ws_policy pol = {.origins = origins, .norigins = 2};
    struct req r;
    req_init(&r);
    char resp[WS_RESPONSE_MAX];
    ck_assert_int_eq(shake(&r, &pol, resp), 101); /* no Origin: not a browser */
    set(&r, "origin", "https://evil.example");
    expect_refusal(&r, &pol, 403, NULL);
    set(&r, "origin", "https://example.com.evil");
    expect_refusal(&r, &pol, 403, NULL);
    set(&r, "origin", "HTTPS://Example.COM");
    ck_assert_int_eq(shake(&r, &pol, resp), 101);
    set(&r, "origin", "http://localhost:8080");
    ck_assert_int_eq(shake(&r, &pol, resp), 101);
    struct ws_policy any = {0};
    set(&r, "origin", "https://evil.example");
    ck_assert_int_eq(shake(&r, &any, resp), 101);
}
END_TEST

Suite *
suite_ws(void)
{
    Suite *s = suite_create("ws");
    TCase *tc = tcase_create("frames");
    tcase_add_test(tc, test_rfc_examples);
    tcase_add_test(tc, test_lengths);
    tcase_add_test(tc, test_fragments_with_ping);
    tcase_add_test(tc, test_data_ends_the_call);
    suite_add_tcase(s, tc);

    tc = tcase_create("framing errors");
    tcase_add_test(tc, test_reserved_bits);
    tcase_add_test(tc, test_reserved_opcodes);
    tcase_add_test(tc, test_bad_lengths);
    tcase_add_test(tc, test_unmasked);
    tcase_add_test(tc, test_control_not_final);
    tcase_add_test(tc, test_message_order);
    tcase_add_test(tc, test_too_big_frame);
    tcase_add_test(tc, test_too_big_fragments);
    suite_add_tcase(s, tc);

    tc = tcase_create("text and close");
    tcase_add_test(tc, test_text);
    tcase_add_test(tc, test_utf8_valid);
    tcase_add_test(tc, test_close);
    tcase_add_test(tc, test_close_refused);
    suite_add_tcase(s, tc);

    tc = tcase_create("encoder");
    tcase_add_test(tc, test_frame_header);
    tcase_add_test(tc, test_close_frame);
    suite_add_tcase(s, tc);

    tc = tcase_create("handshake");
    tcase_add_test(tc, test_handshake_rfc_key);
    tcase_add_test(tc, test_handshake_protocol);
    tcase_add_test(tc, test_handshake_refusals);
    tcase_add_test(tc, test_handshake_key);
    tcase_add_test(tc, test_handshake_origin);
    suite_add_tcase(s, tc);
    return s;
}
