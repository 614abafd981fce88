/* SPDX-License-Identifier: MIT
 *
 * libFuzzer target over the packet codec. One input is one client session: the bytes
 * a client sends, framed into packets the way broker/net/conn.c frames them.
 *
 * - The first packet goes through every decoder under every protocol version (a
 *   single-packet input is the session of one packet).
 * - As in broker/session/broker.c, the session goes on only when the first packet is
 *   a CONNECT that decodes; its protocol level then decodes every later packet. A
 *   later packet that fails to decode does not end the session, unlike the broker:
 *   the codec keeps no state between packets, so going on only adds coverage.
 * - Every packet that decodes is encoded again where the codec has an encoder, and
 *   that encoding decoded: it must give the same struct, and encode to the same bytes.
 *
 * Must never crash, read out of bounds, trip UBSan or fail a CHECK.
 * `make fuzz FUZZ_SECONDS=N`; seeds in test/fuzz/corpus (make_corpus.py). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt.h"
#include "fuzz_check.h"

/* Any packet the codec decodes, tagged by its type. */
struct packet {
    uint8_t type;
    union {
        struct mqtt_connect connect;
        struct mqtt_publish publish;
        struct mqtt_ack ack;
        struct mqtt_subscribe sub;
        struct mqtt_unsubscribe unsub;
        struct mqtt_disconnect disconnect;
        struct mqtt_connack connack;
        struct mqtt_suback suback;
    } u;
};

#define NO_DECODER 0xff

static uint8_t enc1[1 << 17], enc2[1 << 17];

/* An exact-size heap copy, so ASan sees any read past the end. */
static uint8_t *
exact_copy(const uint8_t *p, size_t n)
{
    uint8_t *c = malloc(n ? n : 1);
    CHECK(c != NULL);
    if (n) memcpy(c, p, n);
    return c;
}

/* The decoder the broker (or, for server-to-client types, a client) runs on this type. */
static uint8_t
decode_packet(uint8_t tf, const uint8_t *body, size_t len, uint8_t version, struct packet *pk)
{
    uint8_t type = tf >> 4, flags = tf & 0x0f;
    pk->type = type;
    switch (type) {
    case MQTT_CONNECT: return mqtt_decode_connect(flags, body, len, &pk->u.connect);
    case MQTT_PUBLISH: return mqtt_decode_publish(flags, body, len, version, &pk->u.publish);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP: return mqtt_decode_ack(type, flags, body, len, version, &pk->u.ack);
    case MQTT_SUBSCRIBE: return mqtt_decode_subscribe(flags, body, len, version, &pk->u.sub);
    case MQTT_UNSUBSCRIBE: return mqtt_decode_unsubscribe(flags, body, len, version, &pk->u.unsub);
    case MQTT_DISCONNECT:
        return mqtt_decode_disconnect(flags, body, len, version, &pk->u.disconnect);
    case MQTT_AUTH: return mqtt_decode_auth(flags, body, len, &pk->u.disconnect);
    case MQTT_CONNACK: return mqtt_decode_connack(flags, body, len, version, &pk->u.connack);
    case MQTT_SUBACK:
    case MQTT_UNSUBACK: return mqtt_decode_suback(type, flags, body, len, version, &pk->u.suback);
    case MQTT_PINGREQ: /* no decoder: broker.c's dispatch checks these two */
    case MQTT_PINGRESP: return flags || len ? MQTT_RC_MALFORMED_PACKET : MQTT_RC_SUCCESS;
    default: return NO_DECODER;
    }
}

static size_t
encode_subscribe(const struct mqtt_subscribe *s, uint8_t version, uint8_t *out, size_t cap)
{
    struct mqtt_sub_entry *e = malloc((s->count ? s->count : 1) * sizeof(*e));
    CHECK(e != NULL);
    size_t pos = 0, n = 0;
    while (n < s->count && mqtt_sub_next(s, version, &pos, &e[n])) n++;
    size_t total = mqtt_encode_subscribe(s->packet_id, &s->props, e, n, version, out, cap);
    free(e);
    return total;
}

static size_t
encode_unsubscribe(const struct mqtt_unsubscribe *u, uint8_t version, uint8_t *out, size_t cap)
{
    struct lq_bytes *f = malloc((u->count ? u->count : 1) * sizeof(*f));
    CHECK(f != NULL);
    size_t pos = 0, n = 0;
    while (n < u->count && mqtt_unsub_next(u, &pos, &f[n])) n++;
    size_t total = mqtt_encode_unsubscribe(u->packet_id, &u->props, f, n, version, out, cap);
    free(f);
    return total;
}

/* The whole packet back to bytes; 0 when the codec has no encoder for it (AUTH). */
static size_t
encode_packet(const struct packet *pk, uint8_t version, uint8_t *out, size_t cap)
{
    switch (pk->type) {
    case MQTT_CONNECT: return mqtt_encode_connect(&pk->u.connect, out, cap);
    case MQTT_PUBLISH: return mqtt_encode_publish(&pk->u.publish, version, out, cap);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP: return mqtt_encode_ack(pk->type, &pk->u.ack, version, out, cap);
    case MQTT_SUBSCRIBE: return encode_subscribe(&pk->u.sub, version, out, cap);
    case MQTT_UNSUBSCRIBE: return encode_unsubscribe(&pk->u.unsub, version, out, cap);
    case MQTT_DISCONNECT: return mqtt_encode_disconnect(&pk->u.disconnect, version, out, cap);
    case MQTT_CONNACK: return mqtt_encode_connack(&pk->u.connack, version, out, cap);
    case MQTT_SUBACK:
    case MQTT_UNSUBACK: return mqtt_encode_suback(pk->type, &pk->u.suback, version, out, cap);
    case MQTT_PINGREQ: return mqtt_encode_pingreq(out, cap);
    case MQTT_PINGRESP: return mqtt_encode_pingresp(out, cap);
    default: return 0;
    }
}

/* ---- equality of decoded structs: views compare by content ---- */

static bool
same_bytes(struct lq_bytes a, struct lq_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* The user properties, in order (the two blocks may order other properties apart). */
static bool
same_users(const struct mqtt_props *a, const struct mqtt_props *b)
{
    size_t pa = 0, pb = 0;
    struct lq_bytes ka, va, kb, vb;
    for (;;) {
        bool more = mqtt_props_next_user(a->user, &pa, &ka, &va, NULL);
        if (more != mqtt_props_next_user(b->user, &pb, &kb, &vb, NULL)) return false;
        if (!more) return true;
        if (!same_bytes(ka, kb) || !same_bytes(va, vb)) return false;
    }
}

static bool
same_props(const struct mqtt_props *a, const struct mqtt_props *b)
{
    return a->present == b->present && a->payload_format == b->payload_format &&
           a->request_problem_info == b->request_problem_info &&
           a->request_response_info == b->request_response_info &&
           a->maximum_qos == b->maximum_qos && a->retain_available == b->retain_available &&
           a->wildcard_sub_available == b->wildcard_sub_available &&
           a->sub_id_available == b->sub_id_available &&
           a->shared_sub_available == b->shared_sub_available &&
           a->server_keep_alive == b->server_keep_alive &&
           a->receive_maximum == b->receive_maximum &&
           a->topic_alias_maximum == b->topic_alias_maximum && a->topic_alias == b->topic_alias &&
           a->message_expiry == b->message_expiry && a->session_expiry == b->session_expiry &&
           a->will_delay == b->will_delay && a->maximum_packet_size == b->maximum_packet_size &&
           a->sub_id == b->sub_id && a->sub_id_count == b->sub_id_count &&
           same_bytes(a->content_type, b->content_type) &&
           same_bytes(a->response_topic, b->response_topic) &&
           same_bytes(a->correlation_data, b->correlation_data) &&
           same_bytes(a->assigned_client_id, b->assigned_client_id) &&
           same_bytes(a->auth_method, b->auth_method) && same_bytes(a->auth_data, b->auth_data) &&
           same_bytes(a->response_info, b->response_info) &&
           same_bytes(a->server_reference, b->server_reference) &&
           same_bytes(a->reason_string, b->reason_string) && a->user_count == b->user_count &&
           same_users(a, b) && a->raw.len == 0 && b->raw.len == 0;
}

static bool
same_connect(const struct mqtt_connect *a, const struct mqtt_connect *b)
{
    return same_bytes(a->protocol_name, b->protocol_name) && a->version == b->version &&
           a->clean_start == b->clean_start && a->keep_alive == b->keep_alive &&
           same_props(&a->props, &b->props) && same_bytes(a->client_id, b->client_id) &&
           a->will == b->will && a->will_qos == b->will_qos && a->will_retain == b->will_retain &&
           same_props(&a->will_props, &b->will_props) && same_bytes(a->will_topic, b->will_topic) &&
           same_bytes(a->will_payload, b->will_payload) && a->has_username == b->has_username &&
           a->has_password == b->has_password && same_bytes(a->username, b->username) &&
           same_bytes(a->password, b->password);
}

static bool
same_publish(const struct mqtt_publish *a, const struct mqtt_publish *b)
{
    return a->qos == b->qos && a->dup == b->dup && a->retain == b->retain &&
           same_bytes(a->topic, b->topic) && a->packet_id == b->packet_id &&
           same_props(&a->props, &b->props) && same_bytes(a->payload, b->payload);
}

static bool
same_subscribe(const struct mqtt_subscribe *a, const struct mqtt_subscribe *b, uint8_t version)
{
    if (a->packet_id != b->packet_id || a->count != b->count || !same_props(&a->props, &b->props))
        return false;
    size_t pa = 0, pb = 0;
    struct mqtt_sub_entry ea, eb;
    for (size_t i = 0; i < a->count; i++) {
        CHECK(mqtt_sub_next(a, version, &pa, &ea) && mqtt_sub_next(b, version, &pb, &eb));
        if (!same_bytes(ea.filter, eb.filter) || ea.qos != eb.qos || ea.no_local != eb.no_local ||
            ea.retain_as_published != eb.retain_as_published ||
            ea.retain_handling != eb.retain_handling)
            return false;
    }
    return true;
}

static bool
same_unsubscribe(const struct mqtt_unsubscribe *a, const struct mqtt_unsubscribe *b)
{
    if (a->packet_id != b->packet_id || a->count != b->count || !same_props(&a->props, &b->props))
        return false;
    size_t pa = 0, pb = 0;
    struct lq_bytes fa, fb;
    for (size_t i = 0; i < a->count; i++) {
        CHECK(mqtt_unsub_next(a, &pa, &fa) && mqtt_unsub_next(b, &pb, &fb));
        if (!same_bytes(fa, fb)) return false;
    }
    return true;
}

/* v3 forms are lossy by design (mqtt.h): a v3 SUBACK carries failures as 0x80 and a
 * v3 UNSUBACK no codes at all. */
static bool
same_suback(uint8_t type, const struct mqtt_suback *a, const struct mqtt_suback *b, uint8_t version)
{
    if (a->packet_id != b->packet_id || !same_props(&a->props, &b->props)) return false;
    if (version != MQTT_V5 && type == MQTT_UNSUBACK) return b->count == 0;
    if (a->count != b->count) return false;
    for (size_t i = 0; i < a->count; i++) {
        uint8_t want = version != MQTT_V5 && a->codes[i] >= 0x80 ? 0x80 : a->codes[i];
        if (b->codes[i] != want) return false;
    }
    return true;
}

static bool
same_packet(const struct packet *a, const struct packet *b, uint8_t version)
{
    if (a->type != b->type) return false;
    switch (a->type) {
    case MQTT_CONNECT: return same_connect(&a->u.connect, &b->u.connect);
    case MQTT_PUBLISH: return same_publish(&a->u.publish, &b->u.publish);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        return a->u.ack.packet_id == b->u.ack.packet_id && a->u.ack.reason == b->u.ack.reason &&
               same_props(&a->u.ack.props, &b->u.ack.props);
    case MQTT_SUBSCRIBE: return same_subscribe(&a->u.sub, &b->u.sub, version);
    case MQTT_UNSUBSCRIBE: return same_unsubscribe(&a->u.unsub, &b->u.unsub);
    case MQTT_DISCONNECT:
        return a->u.disconnect.reason == b->u.disconnect.reason &&
               same_props(&a->u.disconnect.props, &b->u.disconnect.props);
    case MQTT_CONNACK:
        /* 3.1 has no Session Present: the encoder writes 0 (issue 12.3) */
        return (version == MQTT_V31
                    ? !b->u.connack.session_present
                    : a->u.connack.session_present == b->u.connack.session_present) &&
               a->u.connack.reason == b->u.connack.reason &&
               same_props(&a->u.connack.props, &b->u.connack.props);
    case MQTT_SUBACK:
    case MQTT_UNSUBACK: return same_suback(a->type, &a->u.suback, &b->u.suback, version);
    default: return true; /* PINGREQ, PINGRESP: nothing inside */
    }
}

/* ---- invariants of one decoded packet ---- */

/* A property block: the hooks' walk sees the user properties the decoder counted, and
 * the entries alone (as the broker stores them to forward) decode to the same block. */
static void
check_props(const struct mqtt_props *p)
{
    size_t pos = 0, n = 0;
    struct lq_bytes k, v;
    while (mqtt_props_next_user(p->user, &pos, &k, &v, NULL)) n++;
    CHECK(n == p->user_count);
    size_t len = mqtt_encode_props_raw(p, NULL, 0);
    CHECK(len == mqtt_props_size(p));
    uint8_t *raw = malloc(len ? len : 1);
    CHECK(raw != NULL && mqtt_encode_props_raw(p, raw, len) == len);
    struct mqtt_props q;
    CHECK(mqtt_decode_props(raw, len, UINT64_MAX, &q) == MQTT_RC_SUCCESS);
    CHECK(same_props(p, &q));
    free(raw);
}

static void
check_walks(const struct packet *pk, uint8_t version)
{
    size_t pos = 0, n = 0;
    switch (pk->type) {
    case MQTT_CONNECT:
        check_props(&pk->u.connect.props);
        check_props(&pk->u.connect.will_props);
        break;
    case MQTT_PUBLISH: check_props(&pk->u.publish.props); break;
    case MQTT_SUBSCRIBE: {
        struct mqtt_sub_entry e;
        while (mqtt_sub_next(&pk->u.sub, version, &pos, &e)) n++;
        CHECK(n == pk->u.sub.count); /* the walk must see what the decoder counted */
        check_props(&pk->u.sub.props);
        break;
    }
    case MQTT_UNSUBSCRIBE: {
        struct lq_bytes f;
        while (mqtt_unsub_next(&pk->u.unsub, &pos, &f)) n++;
        CHECK(n == pk->u.unsub.count);
        check_props(&pk->u.unsub.props);
        break;
    }
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP: check_props(&pk->u.ack.props); break;
    case MQTT_DISCONNECT:
    case MQTT_AUTH:
        check_props(&pk->u.disconnect.props);
        mqtt_rc_str(pk->u.disconnect.reason); /* logged by the broker */
        break;
    case MQTT_CONNACK: check_props(&pk->u.connack.props); break;
    case MQTT_SUBACK:
    case MQTT_UNSUBACK: check_props(&pk->u.suback.props); break;
    default: break;
    }
}

/* The other two ways the broker encodes a PUBLISH give the same packet: the head alone
 * (the payload goes out by reference), and the properties as pre-encoded entries (how
 * a stored message carries them to its subscribers). */
static void
check_publish(const struct mqtt_publish *p, uint8_t version, const uint8_t *whole, size_t n)
{
    size_t total;
    size_t head = mqtt_encode_publish_head(p, version, enc2, sizeof(enc2), &total);
    CHECK(total == n && head + p->payload.len == n);
    CHECK(memcmp(enc2, whole, head) == 0);
    CHECK(same_bytes((struct lq_bytes){whole + head, n - head}, p->payload));
    if (version != MQTT_V5) return;
    size_t len = mqtt_encode_props_raw(&p->props, NULL, 0);
    uint8_t *raw = malloc(len ? len : 1);
    CHECK(raw != NULL && mqtt_encode_props_raw(&p->props, raw, len) == len);
    struct mqtt_publish fwd = *p;
    memset(&fwd.props, 0, sizeof(fwd.props));
    fwd.props.raw = (struct lq_bytes){raw, len};
    CHECK(mqtt_encode_publish(&fwd, version, enc2, sizeof(enc2)) == n);
    CHECK(memcmp(enc2, whole, n) == 0);
    free(raw);
}

/* Decode; if that succeeds, encode, frame and decode again: same struct, same bytes. */
static uint8_t
round_trip(uint8_t tf, const uint8_t *body, size_t len, uint8_t version, struct packet *a)
{
    uint8_t rc = decode_packet(tf, body, len, version, a);
    if (rc != MQTT_RC_SUCCESS) return rc;
    check_walks(a, version);
    size_t n = encode_packet(a, version, enc1, sizeof(enc1));
    if (n == 0 || n > sizeof(enc1)) return rc;
    uint8_t tf2;
    uint32_t rem;
    size_t hl;
    CHECK(mqtt_frame_header(enc1, n, &tf2, &rem, &hl) == 1 && hl + rem == n);
    CHECK(tf2 == tf);
    if (a->type == MQTT_PUBLISH) check_publish(&a->u.publish, version, enc1, n);
    uint8_t *again = exact_copy(enc1 + hl, rem);
    struct packet b;
    CHECK(decode_packet(tf2, again, rem, version, &b) == MQTT_RC_SUCCESS);
    CHECK(same_packet(a, &b, version));
    CHECK(encode_packet(&b, version, enc2, sizeof(enc2)) == n && memcmp(enc1, enc2, n) == 0);
    free(again);
    return rc;
}

/* The next whole packet of the stream, framed as conn.c's frame() does: the header is
 * parsed from at most 5 bytes. False when none: an incomplete packet waits for bytes
 * that never come, a malformed Remaining Length closes the connection. */
static bool
next_packet(const uint8_t *p, size_t avail, uint8_t *tf, uint32_t *rem, size_t *hl)
{
    if (avail < 2) return false;
    if (mqtt_frame_header(p, avail < 5 ? avail : 5, tf, rem, hl) != 1) return false;
    return *rem <= avail - *hl;
}

/* Every decoder under every version; the session's version when this is a CONNECT
 * that decodes, else 0 (the broker closes the connection). */
static uint8_t
first_packet(uint8_t tf, const uint8_t *body, size_t len)
{
    static const uint8_t versions[] = {MQTT_V5, MQTT_V311, MQTT_V31};
    struct packet pk;
    uint8_t session = 0;
    for (size_t i = 0; i < sizeof(versions); i++)
        if (round_trip(tf, body, len, versions[i], &pk) == MQTT_RC_SUCCESS &&
            pk.type == MQTT_CONNECT)
            session = pk.u.connect.version;
    mqtt_utf8_is_valid(body, len);
    return session;
}

/* Packets after this many add nothing (the codec keeps no state between packets) but
 * would make long inputs look new to libFuzzer's hit counters and slow every run. */
#define MAX_PACKETS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t version = 0, tf;
    uint32_t rem;
    size_t hl, off = 0;
    for (int i = 0; i < MAX_PACKETS && next_packet(data + off, size - off, &tf, &rem, &hl); i++) {
        uint8_t *body = exact_copy(data + off + hl, rem);
        if (i == 0) {
            version = first_packet(tf, body, rem);
        } else {
            struct packet pk;
            uint8_t rc = round_trip(tf, body, rem, version, &pk);
            mqtt_rc_str(rc); /* what the broker logs when it disconnects */
            mqtt_type_str(tf >> 4);
        }
        free(body);
        if (!version) break;
        off += hl + rem;
    }
    return 0;
}
