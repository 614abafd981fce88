/* SPDX-License-Identifier: MIT
 * Shared by the files of mqtt/ only: the bounds-checked cursor every decoder is
 * built from, and the writer every encoder is built from. */
#ifndef LUNAMQ_MQTT_INT_H
#define LUNAMQ_MQTT_INT_H

#include <string.h>

#include "mqtt.h"

struct mqtt_cursor {
    const uint8_t *p;
    size_t len, pos;
};

static inline size_t
cur_left(const struct mqtt_cursor *c)
{
    return c->len - c->pos;
}

static inline uint8_t
read_u8(struct mqtt_cursor *c, uint8_t *out)
{
    if (cur_left(c) < 1) return MQTT_RC_MALFORMED_PACKET;
    *out = c->p[c->pos++];
    return MQTT_RC_SUCCESS;
}

static inline uint8_t
read_u16(struct mqtt_cursor *c, uint16_t *out)
{
    if (cur_left(c) < 2) return MQTT_RC_MALFORMED_PACKET; /* two bytes left? */
    *out = (uint16_t)(c->p[c->pos] << 8 | c->p[c->pos + 1]);
    c->pos += 2;
    return MQTT_RC_SUCCESS;
}

static inline uint8_t
read_u32(struct mqtt_cursor *c, uint32_t *out)
{
    if (cur_left(c) < 4) return MQTT_RC_MALFORMED_PACKET;
    const uint8_t *p = c->p + c->pos;
    *out = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    c->pos += 4;
    return MQTT_RC_SUCCESS;
}

/* Variable Byte Integer: at most 4 bytes [MQTT-1.5.5-1]. */
static inline uint8_t
read_varint(struct mqtt_cursor *c, uint32_t *out)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < 4; i++) {
        uint8_t b;
        if (read_u8(c, &b)) return MQTT_RC_MALFORMED_PACKET;
        v |= (uint32_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return MQTT_RC_SUCCESS;
        }
    }
    return MQTT_RC_MALFORMED_PACKET;
}

static inline uint8_t
read_binary(struct mqtt_cursor *c, struct lq_bytes *out)
{
    uint16_t n;
    if (read_u16(c, &n)) return MQTT_RC_MALFORMED_PACKET;
    if (cur_left(c) < n) return MQTT_RC_MALFORMED_PACKET;
    out->p = c->p + c->pos;
    out->len = n;
    c->pos += n;
    return MQTT_RC_SUCCESS;
}

static inline uint8_t
read_utf8(struct mqtt_cursor *c, struct lq_bytes *out)
{
    if (read_binary(c, out)) return MQTT_RC_MALFORMED_PACKET;
    return mqtt_utf8_is_valid(out->p, out->len) ? MQTT_RC_SUCCESS : MQTT_RC_MALFORMED_PACKET;
}

/* Properties with their Property Length prefix. */
uint8_t mqtt_read_props(struct mqtt_cursor *c, uint64_t allowed, struct mqtt_props *out);

/* ---- writer: counts always, writes while there is room ---- */

static inline void
put_u8(struct mqtt_writer *w, uint8_t v)
{
    if (w->len < w->cap) w->p[w->len] = v;
    w->len++;
}

static inline void
put_u16(struct mqtt_writer *w, uint16_t v)
{
    put_u8(w, (uint8_t)(v >> 8));
    put_u8(w, (uint8_t)v);
}

static inline void
put_u32(struct mqtt_writer *w, uint32_t v)
{
    put_u16(w, (uint16_t)(v >> 16));
    put_u16(w, (uint16_t)v);
}

static inline void
put_varint(struct mqtt_writer *w, uint32_t v)
{
    do {
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        put_u8(w, v ? (uint8_t)(b | 0x80) : b);
    } while (v);
}

static inline void
put_bytes(struct mqtt_writer *w, const void *p, size_t n)
{
    if (n && w->len + n <= w->cap) memcpy(w->p + w->len, p, n);
    w->len += n;
}

static inline void
put_binary(struct mqtt_writer *w, struct lq_bytes b)
{
    put_u16(w, (uint16_t)b.len);
    put_bytes(w, b.p, b.len);
}

/* Property entries (no length prefix), and a whole block with its length. */
void mqtt_put_props(struct mqtt_writer *w, const struct mqtt_props *p);
void mqtt_put_props_block(struct mqtt_writer *w, const struct mqtt_props *p);

#endif
