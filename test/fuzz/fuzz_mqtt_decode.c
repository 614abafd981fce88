/* SPDX-License-Identifier: MIT
 *
 * libFuzzer target over the packet decoder: frame the input, run every decoder on
 * the body for every protocol version, and re-encode what decoded. Must never
 * crash, read out of bounds or trip UBSan. `make fuzz FUZZ_SECONDS=N`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt.h"

static uint8_t out[1 << 17];

static void
decode_all(uint8_t tf, const uint8_t *body, size_t len, uint8_t version)
{
    uint8_t type = tf >> 4, flags = tf & 0x0f;
    struct mqtt_connect c;
    struct mqtt_publish p;
    struct mqtt_ack a;
    struct mqtt_subscribe s;
    struct mqtt_unsubscribe u;
    struct mqtt_disconnect d;
    struct mqtt_connack ca;
    struct mqtt_suback sa;
    switch (type) {
    case MQTT_CONNECT:
        if (mqtt_decode_connect(flags, body, len, &c) == 0)
            mqtt_encode_connect(&c, out, sizeof(out));
        break;
    case MQTT_PUBLISH:
        if (mqtt_decode_publish(flags, body, len, version, &p) == 0) {
            size_t total;
            mqtt_encode_publish(&p, version, out, sizeof(out));
            mqtt_encode_publish_head(&p, version, out, sizeof(out), &total);
        }
        break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        if (mqtt_decode_ack(type, flags, body, len, version, &a) == 0)
            mqtt_encode_ack(type, &a, version, out, sizeof(out));
        break;
    case MQTT_SUBSCRIBE:
        if (mqtt_decode_subscribe(flags, body, len, version, &s) == 0) {
            struct mqtt_sub_entry e;
            size_t pos = 0, n = 0;
            while (mqtt_sub_next(&s, version, &pos, &e)) n++;
            if (n != s.count) abort(); /* the walk must see what the decoder counted */
        }
        break;
    case MQTT_UNSUBSCRIBE:
        if (mqtt_decode_unsubscribe(flags, body, len, version, &u) == 0) {
            struct lq_bytes f;
            size_t pos = 0, n = 0;
            while (mqtt_unsub_next(&u, &pos, &f)) n++;
            if (n != u.count) abort();
        }
        break;
    case MQTT_DISCONNECT:
        if (mqtt_decode_disconnect(flags, body, len, version, &d) == 0)
            mqtt_encode_disconnect(&d, version, out, sizeof(out));
        break;
    case MQTT_AUTH: mqtt_decode_auth(flags, body, len, &d); break;
    case MQTT_CONNACK:
        if (mqtt_decode_connack(flags, body, len, version, &ca) == 0)
            mqtt_encode_connack(&ca, version, out, sizeof(out));
        break;
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        if (mqtt_decode_suback(type, flags, body, len, version, &sa) == 0)
            mqtt_encode_suback(type, &sa, version, out, sizeof(out));
        break;
    default: break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t tf;
    uint32_t rem;
    size_t hl;
    if (mqtt_frame_header(data, size, &tf, &rem, &hl) != 1) return 0;
    if (rem > size - hl) return 0;
    /* an exact-size heap copy, so ASan sees any read past the body */
    uint8_t *body = malloc(rem ? rem : 1);
    memcpy(body, data + hl, rem);
    decode_all(tf, body, rem, MQTT_V5);
    decode_all(tf, body, rem, MQTT_V311);
    decode_all(tf, body, rem, MQTT_V31);
    mqtt_utf8_is_valid(body, rem);
    free(body);
    return 0;
}
