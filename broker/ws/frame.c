/* SPDX-License-Identifier: MIT
 *
 * ws frames (RFC 6455 section 5): a client's frames decoded, a server's encoded. No
 * I/O and no allocation: the decoder is a state machine over bytes as they come (a
 * header may arrive one byte at a time), so any split of a stream gives the same
 * events and the same payload bytes; the fuzz target checks exactly that.
 *
 * Binary payload is unmasked in place and handed over where it lies; control payload
 * (at most 125 bytes) is gathered in the decoder; text is validated as UTF-8 and
 * dropped, since MQTT needs binary frames (the message ends in 1003, or 1007 if it is
 * not UTF-8). Limits are checked when a header announces them, not when bytes come.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "ws.h"

/* ---- UTF-8: a state machine, one byte per step ----
 * The state is 0 between characters, else the number of continuation bytes still
 * due (bits 0-1) and the range the next one must fall in (lowest bits 8-15, highest
 * bits 16-23). The narrowed ranges after E0, ED, F0 and F4 are what rule out
 * overlongs, surrogates and code points past U+10FFFF. */
#define UTF8_BAD UINT32_MAX

static uint32_t
utf8_due(uint32_t n, uint32_t lo, uint32_t hi)
{
    return n | lo << 8 | hi << 16;
}

static uint32_t
utf8_step(uint32_t st, uint8_t b)
{
    if (st == 0) {
        if (b < 0x80) return 0;
        if (b < 0xc2) return UTF8_BAD; /* a stray continuation, or an overlong C0/C1 */
        if (b < 0xe0) return utf8_due(1, 0x80, 0xbf);
        if (b == 0xe0) return utf8_due(2, 0xa0, 0xbf); /* else overlong */
        if (b == 0xed) return utf8_due(2, 0x80, 0x9f); /* else a surrogate */
        if (b < 0xf0) return utf8_due(2, 0x80, 0xbf);
        if (b == 0xf0) return utf8_due(3, 0x90, 0xbf); /* else overlong */
        if (b < 0xf4) return utf8_due(3, 0x80, 0xbf);
        if (b == 0xf4) return utf8_due(3, 0x80, 0x8f); /* else past U+10FFFF */
        return UTF8_BAD;
    }
    if (b < ((st >> 8) & 0xff) || b > ((st >> 16) & 0xff)) return UTF8_BAD;
    uint32_t due = (st & 3) - 1;
    return due ? utf8_due(due, 0x80, 0xbf) : 0;
}

/* Go on from state st over p[0..n): the new state, or UTF8_BAD. */
static uint32_t
utf8_run(uint32_t st, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n && st != UTF8_BAD; i++) st = utf8_step(st, p[i]);
    return st;
}

bool
ws_utf8_valid(const uint8_t *p, size_t n)
{
    return utf8_run(0, p, n) == 0;
}

/* ---- the decoder ---- */

/* XOR p[0..n) with the mask from position *mpos on. Eight bytes at a time with the
 * key laid out twice from that position (byte order does not matter: the key is
 * built in memory order); eight is a multiple of four, so the position only moves
 * with the tail. */
static void
unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint8_t *mpos)
{
    size_t i = 0, m = *mpos;
    if (n >= 16) {
        uint8_t key[8];
        for (size_t k = 0; k < 8; k++) key[k] = mask[(m + k) & 3];
        uint64_t k64, w;
        memcpy(&k64, key, 8);
        for (; i + 8 <= n; i += 8) {
            memcpy(&w, p + i, 8);
            w ^= k64;
            memcpy(p + i, &w, 8);
        }
    }
    for (; i < n; i++) p[i] ^= mask[(m + i) & 3];
    *mpos = (uint8_t)((m + n) & 3);
}

static bool
fail(struct ws_decoder *d, struct ws_event *ev, uint16_t code, const char *why)
{
    d->over = true;
    *ev = (struct ws_event){.kind = WS_EV_ERROR, .code = code, .why = why};
    return false;
}

static bool
is_control(uint8_t op)
{
    return op & 0x8;
}

/* The bytes of the extended length that follow the first two header bytes. */
static size_t
ext_len(const struct ws_decoder *d)
{
    uint8_t n = d->hdr[1] & 0x7f;
    return n == 126 ? 2 : n == 127 ? 8 : 0;
}

/* The first two bytes: bits, opcode, mask and whether it fits the message state. */
static bool
check_start(struct ws_decoder *d, struct ws_event *ev)
{
    uint8_t b0 = d->hdr[0], b1 = d->hdr[1];
    d->op = (uint8_t)(b0 & 0x0f);
    d->fin = b0 & 0x80;
    if (b0 & 0x70) return fail(d, ev, WS_CLOSE_PROTOCOL, "reserved bits set");
    if ((d->op > WS_OP_BINARY && d->op < WS_OP_CLOSE) || d->op > WS_OP_PONG)
        return fail(d, ev, WS_CLOSE_PROTOCOL, "reserved opcode");
    if (!(b1 & 0x80)) return fail(d, ev, WS_CLOSE_PROTOCOL, "unmasked frame from a client");
    if (is_control(d->op)) {
        if (!d->fin) return fail(d, ev, WS_CLOSE_PROTOCOL, "fragmented control frame");
        if ((b1 & 0x7f) > 125) return fail(d, ev, WS_CLOSE_PROTOCOL, "control frame over 125");
        if (d->op == WS_OP_CLOSE && (b1 & 0x7f) == 1)
            return fail(d, ev, WS_CLOSE_PROTOCOL, "close frame of 1 byte");
    } else if (d->op == WS_OP_CONT && !d->msg_op) {
        return fail(d, ev, WS_CLOSE_PROTOCOL, "continuation without a message");
    } else if (d->op != WS_OP_CONT && d->msg_op) {
        return fail(d, ev, WS_CLOSE_PROTOCOL, "new message inside a fragmented one");
    }
    return true;
}

/* The length, once its bytes are in: minimal, and within the message limit. */
static bool
check_length(struct ws_decoder *d, struct ws_event *ev)
{
    uint64_t n = d->hdr[1] & 0x7f;
    size_t ext = ext_len(d);
    if (ext) {
        n = 0;
        for (size_t i = 0; i < ext; i++) n = n << 8 | d->hdr[2 + i];
        if (n >> 63) return fail(d, ev, WS_CLOSE_PROTOCOL, "64-bit length with its top bit set");
        if (n < (ext == 2 ? 126 : 65536))
            return fail(d, ev, WS_CLOSE_PROTOCOL, "length not in its shortest form");
    }
    d->left = n;
    if (is_control(d->op)) return true;
    uint64_t before = d->op == WS_OP_CONT ? d->msg_len : 0;
    if (n > d->max_message - before) return fail(d, ev, WS_CLOSE_TOO_BIG, "message too big");
    d->msg_len = before + n; /* counted as announced: the limit holds before the bytes */
    return true;
}

/* A control frame's payload is whole in d->ctl: its event. */
static void
control_event(struct ws_decoder *d, struct ws_event *ev)
{
    *ev = (struct ws_event){.data = d->ctl, .len = d->nctl};
    if (d->op == WS_OP_PING) {
        ev->kind = WS_EV_PING;
        return;
    }
    if (d->op == WS_OP_PONG) {
        ev->kind = WS_EV_PONG;
        return;
    }
    if (d->nctl == 0) {
        ev->code = WS_CLOSE_NO_STATUS;
    } else {
        uint16_t code = (uint16_t)(d->ctl[0] << 8 | d->ctl[1]);
        /* 1004-1006 and 1015 are reserved, never sent; 1015-2999 belong to IANA */
        bool valid = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                     (code >= 3000 && code <= 4999);
        if (!valid) {
            fail(d, ev, WS_CLOSE_PROTOCOL, "close code not valid");
            return;
        }
        if (!ws_utf8_valid(d->ctl + 2, d->nctl - 2u)) {
            fail(d, ev, WS_CLOSE_INVALID_DATA, "close reason not UTF-8");
            return;
        }
        ev->code = code;
        ev->data = d->ctl + 2;
        ev->len = d->nctl - 2u;
    }
    ev->kind = WS_EV_CLOSE;
    d->over = true;
}

/* The current frame's payload is all in. */
static void
end_frame(struct ws_decoder *d, struct ws_event *ev)
{
    d->in_frame = false;
    if (is_control(d->op)) {
        control_event(d, ev);
        return;
    }
    if (!d->fin) return;
    uint8_t op = d->msg_op;
    d->msg_op = 0;
    d->msg_len = 0;
    if (op != WS_OP_TEXT) return;
    if (d->utf8 != 0)
        fail(d, ev, WS_CLOSE_INVALID_DATA, "text ends inside a character");
    else
        fail(d, ev, WS_CLOSE_UNSUPPORTED, "text frame: MQTT needs binary frames");
}

/* The header is whole: the payload follows. */
static void
start_frame(struct ws_decoder *d, struct ws_event *ev)
{
    memcpy(d->mask, d->hdr + d->nhdr - 4, 4);
    d->mpos = 0;
    d->nhdr = 0;
    d->in_frame = true;
    if (is_control(d->op)) {
        d->nctl = 0;
    } else if (d->op != WS_OP_CONT) {
        d->msg_op = d->op;
        d->utf8 = 0;
    }
    if (d->left == 0) end_frame(d, ev);
}

/* Where the header being read stops next to be checked: after its first 2 bytes,
 * after its extended length, after the mask. Any split of the input reaches the same
 * stops, so it reports the same error. */
static size_t
header_stop(const struct ws_decoder *d)
{
    if (d->nhdr < 2) return 2;
    size_t len_end = 2 + ext_len(d);
    return d->nhdr < len_end ? len_end : len_end + 4;
}

/* Header bytes from p[0..n): how many were taken. */
static size_t
read_header(struct ws_decoder *d, const uint8_t *p, size_t n, struct ws_event *ev)
{
    size_t took = 0;
    for (;;) {
        size_t stop = header_stop(d), k = stop - d->nhdr;
        if (k > n - took) k = n - took;
        memcpy(d->hdr + d->nhdr, p + took, k);
        d->nhdr = (uint8_t)(d->nhdr + k);
        took += k;
        if (d->nhdr < stop) break; /* more bytes needed */
        size_t len_end = 2 + ext_len(d);
        if (d->nhdr == 2 && !check_start(d, ev)) break;
        if (d->nhdr == len_end && !check_length(d, ev)) break;
        if (d->nhdr == len_end + 4) {
            start_frame(d, ev);
            break; /* an empty frame may have ended already: the caller goes on */
        }
    }
    return took;
}

/* Payload bytes of the current frame from p[0..n): how many were taken. */
static size_t
read_payload(struct ws_decoder *d, uint8_t *p, size_t n, struct ws_event *ev)
{
    size_t k = n < d->left ? n : (size_t)d->left;
    if (is_control(d->op)) {
        memcpy(d->ctl + d->nctl, p, k); /* k <= 125 - nctl: checked at the header */
        unmask(d->ctl + d->nctl, k, d->mask, &d->mpos);
        d->nctl = (uint8_t)(d->nctl + k);
    } else {
        unmask(p, k, d->mask, &d->mpos);
        if (d->msg_op == WS_OP_BINARY) {
            *ev = (struct ws_event){.kind = WS_EV_DATA, .data = p, .len = k};
        } else {
            d->utf8 = utf8_run(d->utf8, p, k);
            if (d->utf8 == UTF8_BAD) {
                fail(d, ev, WS_CLOSE_INVALID_DATA, "text not UTF-8");
                return k;
            }
        }
    }
    d->left -= k;
    if (d->left == 0) end_frame(d, ev); /* for binary, adds no event to the DATA */
    return k;
}

void
ws_decoder_init(struct ws_decoder *d, uint64_t max_message)
{
    memset(d, 0, sizeof(*d));
    d->max_message = max_message;
}

size_t
ws_decode(struct ws_decoder *d, uint8_t *p, size_t len, struct ws_event *ev)
{
    *ev = (struct ws_event){.kind = WS_EV_NONE};
    size_t off = 0;
    while (off < len && !d->over && ev->kind == WS_EV_NONE) {
        if (d->in_frame)
            off += read_payload(d, p + off, len - off, ev);
        else
            off += read_header(d, p + off, len - off, ev);
    }
    return off;
}

/* ---- the encoder ---- */

size_t
ws_frame_header(uint8_t *out, uint8_t op, uint64_t len)
{
    out[0] = (uint8_t)(0x80 | (op & 0x0f));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    size_t ext = len <= 0xffff ? 2 : 8;
    out[1] = ext == 2 ? 126 : 127;
    for (size_t i = 0; i < ext; i++) out[2 + i] = (uint8_t)(len >> (8 * (ext - 1 - i)));
    return 2 + ext;
}

size_t
ws_close_frame(uint8_t *out, uint16_t code, const char *reason)
{
    /* 1005 means "no code": it is never sent, the close goes without a body */
    if (code == WS_CLOSE_NO_STATUS) return ws_frame_header(out, WS_OP_CLOSE, 0);
    size_t n = reason ? strlen(reason) : 0;
    if (n > 123) {
        n = 123;
        while (n > 0 && ((uint8_t)reason[n] & 0xc0) == 0x80) n--; /* not inside a character */
    }
    size_t h = ws_frame_header(out, WS_OP_CLOSE, 2 + n);
    out[h] = (uint8_t)(code >> 8);
    out[h + 1] = (uint8_t)code;
    if (n) memcpy(out + h + 2, reason, n);
    return h + 2 + n;
}
