/* SPDX-License-Identifier: MIT
 *
 * The codec: round trips of every packet type and property, and the malformed
 * cases of the specification, each answered with the right reason code. */
#include <check.h>
#include <string.h>

#include "mqtt.h"
#include "suites.h"

#define B(s) ((struct lq_bytes){(const uint8_t *)(s), sizeof(s) - 1})

static uint8_t buf[4096];

/* Frame buf and hand back first byte and body. */
static void
frame(const uint8_t *p, size_t n, uint8_t *tf, const uint8_t **body, size_t *len)
{
    uint32_t rem;
    size_t hl;
    ck_assert_int_eq(mqtt_frame_header(p, n, tf, &rem, &hl), 1);
    ck_assert_uint_eq(hl + rem, n);
    *body = p + hl;
    *len = rem;
}

static bool
bytes_eq(struct lq_bytes a, struct lq_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

START_TEST(test_frame_header)
{
    uint8_t tf;
    uint32_t rem;
    size_t hl;
    const uint8_t one[] = {0x30, 0x7f};
    ck_assert_int_eq(mqtt_frame_header(one, 2, &tf, &rem, &hl), 1);
    ck_assert_uint_eq(rem, 127);
    const uint8_t four[] = {0x30, 0xff, 0xff, 0xff, 0x7f};
    ck_assert_int_eq(mqtt_frame_header(four, 5, &tf, &rem, &hl), 1);
    ck_assert_uint_eq(rem, 268435455);
    ck_assert_uint_eq(hl, 5);
    const uint8_t five[] = {0x30, 0xff, 0xff, 0xff, 0xff, 0x01}; /* [MQTT-1.5.5-1] */
    ck_assert_int_eq(mqtt_frame_header(five, 6, &tf, &rem, &hl), -1);
    ck_assert_int_eq(mqtt_frame_header(four, 3, &tf, &rem, &hl), 0); /* incomplete */
    ck_assert_int_eq(mqtt_frame_header(four, 1, &tf, &rem, &hl), 0);
}
END_TEST

/* The level of a CONNECT too large to read, from its first bytes (issue 11.8). */
START_TEST(test_connect_version)
{
    const uint8_t v5[] = {0x10, 0x80, 0xc2, 0xd7, 0x2f, 0, 4, 'M', 'Q', 'T', 'T', 5, 2};
    ck_assert_uint_eq(mqtt_connect_version(v5, sizeof(v5)), 5);
    ck_assert_uint_eq(mqtt_connect_version(v5, 11), 0); /* the level is not in yet */
    const uint8_t v4[] = {0x10, 0x7f, 0, 4, 'M', 'Q', 'T', 'T', 4};
    ck_assert_uint_eq(mqtt_connect_version(v4, sizeof(v4)), 4);
    const uint8_t v3[] = {0x10, 0x7f, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3};
    ck_assert_uint_eq(mqtt_connect_version(v3, sizeof(v3)), 3);
    const uint8_t v9[] = {0x10, 0x7f, 0, 4, 'M', 'Q', 'T', 'T', 9};
    ck_assert_uint_eq(mqtt_connect_version(v9, sizeof(v9)), 0);
    const uint8_t pub[] = {0x30, 0x7f, 0, 4, 'M', 'Q', 'T', 'T', 5};
    ck_assert_uint_eq(mqtt_connect_version(pub, sizeof(pub)), 0);
    const uint8_t http[] = "GET / HTTP/1.1\r\n";
    ck_assert_uint_eq(mqtt_connect_version(http, sizeof(http) - 1), 0);
}
END_TEST

START_TEST(test_utf8)
{
    ck_assert(mqtt_utf8_is_valid((const uint8_t *)"abc", 3));
    ck_assert(mqtt_utf8_is_valid((const uint8_t *)"\xc3\xa9", 2)); /* é */
    ck_assert(
        mqtt_utf8_is_valid((const uint8_t *)"\xef\xbb\xbf", 3)); /* U+FEFF kept [MQTT-1.5.4-3] */
    ck_assert(mqtt_utf8_is_valid((const uint8_t *)"\xf0\x9f\x98\x80", 4)); /* emoji */
    ck_assert(!mqtt_utf8_is_valid((const uint8_t *)"a\0b", 3));            /* [MQTT-1.5.4-2] */
    ck_assert(
        !mqtt_utf8_is_valid((const uint8_t *)"\xed\xa0\x80", 3));   /* surrogate [MQTT-1.5.4-1] */
    ck_assert(!mqtt_utf8_is_valid((const uint8_t *)"\xc0\xaf", 2)); /* overlong */
    ck_assert(!mqtt_utf8_is_valid((const uint8_t *)"\xe0\x80\xaf", 3));     /* overlong */
    ck_assert(!mqtt_utf8_is_valid((const uint8_t *)"\xc3", 1));             /* truncated */
    ck_assert(!mqtt_utf8_is_valid((const uint8_t *)"\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    ck_assert(!mqtt_utf8_is_valid((const uint8_t *)"\xff", 1));
}
END_TEST

static struct mqtt_connect
sample_connect(uint8_t version)
{
    struct mqtt_connect c;
    memset(&c, 0, sizeof(c));
    c.version = version;
    c.clean_start = true;
    c.keep_alive = 30;
    c.client_id = B("dev-1");
    c.will = true;
    c.will_qos = 1;
    c.will_retain = true;
    c.will_topic = B("status/dev-1");
    c.will_payload = B("gone");
    c.has_username = c.has_password = true;
    c.username = B("user");
    c.password = B("pw\0x");
    if (version == MQTT_V5) {
        c.props.present =
            MQTT_PBIT(MQTT_PROP_SESSION_EXPIRY) | MQTT_PBIT(MQTT_PROP_RECEIVE_MAXIMUM) |
            MQTT_PBIT(MQTT_PROP_MAXIMUM_PACKET_SIZE) | MQTT_PBIT(MQTT_PROP_TOPIC_ALIAS_MAXIMUM) |
            MQTT_PBIT(MQTT_PROP_REQUEST_PROBLEM_INFO) | MQTT_PBIT(MQTT_PROP_REQUEST_RESPONSE_INFO);
        c.props.session_expiry = 3600;
        c.props.receive_maximum = 5;
        c.props.maximum_packet_size = 1000;
        c.props.topic_alias_maximum = 7;
        c.props.request_problem_info = 0;
        c.props.request_response_info = 1;
        c.will_props.present = MQTT_PBIT(MQTT_PROP_WILL_DELAY) | MQTT_PBIT(MQTT_PROP_CONTENT_TYPE);
        c.will_props.will_delay = 9;
        c.will_props.content_type = B("text/plain");
    }
    return c;
}

START_TEST(test_connect_roundtrip)
{
    const uint8_t versions[] = {MQTT_V5, MQTT_V311, MQTT_V31};
    for (size_t i = 0; i < 3; i++) {
        struct mqtt_connect c = sample_connect(versions[i]), d;
        size_t n = mqtt_encode_connect(&c, buf, sizeof(buf));
        ck_assert_uint_le(n, sizeof(buf));
        uint8_t tf;
        const uint8_t *body;
        size_t len;
        frame(buf, n, &tf, &body, &len);
        ck_assert_uint_eq(tf >> 4, MQTT_CONNECT);
        ck_assert_uint_eq(mqtt_decode_connect(tf & 15, body, len, &d), MQTT_RC_SUCCESS);
        ck_assert_uint_eq(d.version, versions[i]);
        ck_assert(d.clean_start && d.will && d.will_retain && d.has_username && d.has_password);
        ck_assert_uint_eq(d.will_qos, 1);
        ck_assert_uint_eq(d.keep_alive, 30);
        ck_assert(bytes_eq(d.client_id, c.client_id));
        ck_assert(bytes_eq(d.will_topic, c.will_topic));
        ck_assert(bytes_eq(d.will_payload, c.will_payload));
        ck_assert(bytes_eq(d.password, c.password));
        if (versions[i] == MQTT_V5) {
            ck_assert_uint_eq(d.props.present, c.props.present);
            ck_assert_uint_eq(d.props.session_expiry, 3600);
            ck_assert_uint_eq(d.props.receive_maximum, 5);
            ck_assert_uint_eq(d.props.maximum_packet_size, 1000);
            ck_assert_uint_eq(d.props.topic_alias_maximum, 7);
            ck_assert_uint_eq(d.will_props.will_delay, 9);
            ck_assert(bytes_eq(d.will_props.content_type, B("text/plain")));
        }
        /* every truncation is a clean error, never a read past the end */
        for (size_t cut = 0; cut < len; cut++)
            ck_assert_uint_ge(mqtt_decode_connect(tf & 15, body, cut, &d), 0x80);
    }
}
END_TEST

static uint8_t
decode_connect_bytes(const uint8_t *p, size_t n, struct mqtt_connect *c)
{
    uint8_t tf;
    const uint8_t *body;
    size_t len;
    frame(p, n, &tf, &body, &len);
    return mqtt_decode_connect(tf & 15, body, len, c);
}

/* mosquitto's try_private: a bridge sets the protocol level's top bit (3.1.x only) */
START_TEST(test_connect_try_private)
{
    const uint8_t versions[] = {MQTT_V311, MQTT_V31};
    for (size_t i = 0; i < 2; i++) {
        struct mqtt_connect c = sample_connect(versions[i]), d;
        c.bridge = true;
        size_t n = mqtt_encode_connect(&c, buf, sizeof(buf));
        ck_assert_uint_le(n, sizeof(buf));
        ck_assert_uint_eq(mqtt_connect_version(buf, n), versions[i]);
        ck_assert_uint_eq(decode_connect_bytes(buf, n, &d), MQTT_RC_SUCCESS);
        ck_assert(d.bridge);
        ck_assert_uint_eq(d.version, versions[i]);
        /* the level byte on the wire: after the fixed header and the protocol name */
        size_t at = 2 + 2 + (versions[i] == MQTT_V31 ? 6 : 4);
        ck_assert_uint_eq(buf[at], versions[i] | 0x80);
        c.bridge = false;
        n = mqtt_encode_connect(&c, buf, sizeof(buf));
        ck_assert_uint_eq(decode_connect_bytes(buf, n, &d), MQTT_RC_SUCCESS);
        ck_assert(!d.bridge);
    }
    /* MQTT 5 has No Local instead: 0x85 is not a level we speak */
    struct mqtt_connect c = sample_connect(MQTT_V5), d;
    size_t n = mqtt_encode_connect(&c, buf, sizeof(buf));
    buf[2 + 2 + 4] = MQTT_V5 | 0x80;
    ck_assert_uint_eq(decode_connect_bytes(buf, n, &d), MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION);
}
END_TEST

START_TEST(test_connect_malformed)
{
    struct mqtt_connect c;
    /* reserved flag bit [MQTT-3.1.2-3] */
    const uint8_t reserved[] = {0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x03, 0, 60, 0, 1, 'c'};
    ck_assert_uint_eq(decode_connect_bytes(reserved, sizeof(reserved), &c),
                      MQTT_RC_MALFORMED_PACKET);
    /* will QoS 3 [MQTT-3.1.2-12] */
    const uint8_t wq3[] = {0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x1e, 0, 60, 0, 1, 'c'};
    ck_assert_uint_eq(decode_connect_bytes(wq3, sizeof(wq3), &c), MQTT_RC_MALFORMED_PACKET);
    /* will retain without will flag [MQTT-3.1.2-13] */
    const uint8_t wr[] = {0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x22, 0, 60, 0, 1, 'c'};
    ck_assert_uint_eq(decode_connect_bytes(wr, sizeof(wr), &c), MQTT_RC_MALFORMED_PACKET);
    /* 3.1.1 password without user name */
    const uint8_t pw[] = {0x10, 16, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x42, 0, 60, 0, 1, 'c', 0, 1, 'p'};
    ck_assert_uint_eq(decode_connect_bytes(pw, sizeof(pw), &c), MQTT_RC_MALFORMED_PACKET);
    /* flags on the fixed header [MQTT-2.1.3-1] */
    const uint8_t fh[] = {0x11, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 1, 'c'};
    ck_assert_uint_eq(decode_connect_bytes(fh, sizeof(fh), &c), MQTT_RC_MALFORMED_PACKET);
    /* protocol level 6 [MQTT-3.1.2-2] */
    const uint8_t l6[] = {0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 6, 0x02, 0, 60, 0, 1, 'c'};
    ck_assert_uint_eq(decode_connect_bytes(l6, sizeof(l6), &c),
                      MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION);
    ck_assert_uint_eq(c.version, 6);
    ck_assert_uint_eq(c.protocol_name.len, 4);
    /* a protocol name that is not MQTT [MQTT-3.1.2-1] */
    const uint8_t nm[] = {0x10, 13, 0, 4, 'M', 'Q', 'T', 'X', 4, 0x02, 0, 60, 0, 1, 'c'};
    ck_assert_uint_eq(decode_connect_bytes(nm, sizeof(nm), &c),
                      MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION);
    ck_assert_uint_eq(c.protocol_name.len, 0);
    /* trailing bytes */
    const uint8_t tr[] = {0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 1, 'c', 'x'};
    ck_assert_uint_eq(decode_connect_bytes(tr, sizeof(tr), &c), MQTT_RC_MALFORMED_PACKET);
    /* v5: receive maximum 0 is a protocol error */
    const uint8_t rm0[] = {0x10, 17, 0, 4,    'M', 'Q', 'T', 'T', 5,  0x02,
                           0,    60, 3, 0x21, 0,   0,   0,   1,   'c'};
    ck_assert_uint_eq(decode_connect_bytes(rm0, sizeof(rm0), &c), MQTT_RC_PROTOCOL_ERROR);
    /* v5: a PUBLISH-only property in CONNECT */
    const uint8_t bad[] = {0x10, 16, 0,  4, 'M',  'Q', 'T', 'T', 5,
                           0x02, 0,  60, 2, 0x01, 1,   0,   1,   'c'};
    ck_assert_uint_eq(decode_connect_bytes(bad, sizeof(bad), &c), MQTT_RC_PROTOCOL_ERROR);
    /* v5: session expiry twice */
    const uint8_t dup[] = {0x10, 24, 0, 4, 'M', 'Q',  'T', 'T', 5, 0x02, 0, 60, 10,
                           0x11, 0,  0, 0, 1,   0x11, 0,   0,   0, 2,    0, 1,  'c'};
    ck_assert_uint_eq(decode_connect_bytes(dup, sizeof(dup), &c), MQTT_RC_PROTOCOL_ERROR);
    /* v5: property length past the end */
    const uint8_t over[] = {0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 9, 0, 1, 'c'};
    ck_assert_uint_eq(decode_connect_bytes(over, sizeof(over), &c), MQTT_RC_MALFORMED_PACKET);
    /* client id with U+0000 */
    const uint8_t nul[] = {0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 2, 'c', 0};
    ck_assert_uint_eq(decode_connect_bytes(nul, sizeof(nul), &c), MQTT_RC_MALFORMED_PACKET);
}
END_TEST

START_TEST(test_publish_roundtrip_all_props)
{
    const uint8_t user[] = {0x26, 0, 1, 'a', 0,    1, '1', 0x26, 0, 1,
                            'a',  0, 1, '2', 0x26, 0, 1,   'b',  0, 0};
    struct mqtt_publish p, d;
    memset(&p, 0, sizeof(p));
    p.qos = 2;
    p.dup = true;
    p.retain = true;
    p.packet_id = 77;
    p.topic = B("a/b/c");
    p.payload = B("payload bytes");
    p.props.present = MQTT_PBIT(MQTT_PROP_PAYLOAD_FORMAT) | MQTT_PBIT(MQTT_PROP_MESSAGE_EXPIRY) |
                      MQTT_PBIT(MQTT_PROP_CONTENT_TYPE) | MQTT_PBIT(MQTT_PROP_RESPONSE_TOPIC) |
                      MQTT_PBIT(MQTT_PROP_CORRELATION_DATA) | MQTT_PBIT(MQTT_PROP_TOPIC_ALIAS) |
                      MQTT_PBIT(MQTT_PROP_USER_PROPERTY);
    p.props.payload_format = 1;
    p.props.message_expiry = 120;
    p.props.content_type = B("application/json");
    p.props.response_topic = B("reply/here");
    p.props.correlation_data = B("\x01\x02\x00");
    p.props.topic_alias = 3;
    p.props.user = (struct lq_bytes){user, sizeof(user)};
    p.props.user_count = 3;
    size_t n = mqtt_encode_publish(&p, MQTT_V5, buf, sizeof(buf));
    uint8_t tf;
    const uint8_t *body;
    size_t len;
    frame(buf, n, &tf, &body, &len);
    ck_assert_uint_eq(tf, 0x3d);
    ck_assert_uint_eq(mqtt_decode_publish(tf & 15, body, len, MQTT_V5, &d), MQTT_RC_SUCCESS);
    ck_assert(d.dup && d.retain);
    ck_assert_uint_eq(d.qos, 2);
    ck_assert_uint_eq(d.packet_id, 77);
    ck_assert(bytes_eq(d.topic, p.topic));
    ck_assert(bytes_eq(d.payload, p.payload));
    ck_assert_uint_eq(d.props.present, p.props.present);
    ck_assert_uint_eq(d.props.message_expiry, 120);
    ck_assert_uint_eq(d.props.topic_alias, 3);
    ck_assert_uint_eq(d.props.user_count, 3);
    ck_assert(bytes_eq(d.props.correlation_data, p.props.correlation_data));
    /* user properties forwarded in order, duplicates kept [MQTT-3.3.2-17,18] */
    uint8_t blob[64];
    size_t bn = mqtt_encode_props_raw(
        &(struct mqtt_props){
            .present = MQTT_PBIT(MQTT_PROP_USER_PROPERTY), .user = d.props.user, .user_count = 3},
        blob, sizeof(blob));
    ck_assert_uint_eq(bn, sizeof(user));
    ck_assert_mem_eq(blob, user, sizeof(user));
    /* head + payload equals the whole packet */
    size_t total, head = mqtt_encode_publish_head(&p, MQTT_V5, buf + 1024, 1024, &total);
    ck_assert_uint_eq(total, n);
    ck_assert_uint_eq(head + p.payload.len, n);
    ck_assert_mem_eq(buf + 1024, buf, head);
    /* measuring with no buffer */
    ck_assert_uint_eq(mqtt_encode_publish(&p, MQTT_V5, NULL, 0), n);
    for (size_t cut = 0; cut < len - p.payload.len; cut++)
        ck_assert_uint_ge(mqtt_decode_publish(tf & 15, body, cut, MQTT_V5, &d), 0x80);
}
END_TEST

START_TEST(test_publish_v311_and_subids)
{
    struct mqtt_publish p, d;
    memset(&p, 0, sizeof(p));
    p.qos = 1;
    p.packet_id = 9;
    p.topic = B("t");
    p.payload = B("x");
    p.props.present = MQTT_PBIT(MQTT_PROP_SUBSCRIPTION_ID);
    const uint32_t ids[] = {1, 268435455};
    p.props.sub_ids = ids;
    p.props.sub_id_count = 2;
    size_t n = mqtt_encode_publish(&p, MQTT_V311, buf, sizeof(buf));
    ck_assert_uint_eq(n, 2 + 3 + 2 + 1); /* no properties in 3.1.1 */
    uint8_t tf;
    const uint8_t *body;
    size_t len;
    frame(buf, n, &tf, &body, &len);
    ck_assert_uint_eq(mqtt_decode_publish(tf & 15, body, len, MQTT_V311, &d), 0);
    ck_assert_uint_eq(d.packet_id, 9);
    /* v5: a client may not send a subscription identifier [MQTT-3.3.4-6] */
    n = mqtt_encode_publish(&p, MQTT_V5, buf, sizeof(buf));
    frame(buf, n, &tf, &body, &len);
    ck_assert_uint_eq(mqtt_decode_publish(tf & 15, body, len, MQTT_V5, &d), MQTT_RC_PROTOCOL_ERROR);
}
END_TEST

START_TEST(test_publish_malformed)
{
    struct mqtt_publish d;
    const uint8_t t[] = {0, 3, 'a', '/', 'b', 0, 1};
    ck_assert_uint_eq(mqtt_decode_publish(0x6, t, sizeof(t), MQTT_V5, &d),
                      MQTT_RC_MALFORMED_PACKET); /* QoS 3 [MQTT-3.3.1-4] */
    ck_assert_uint_eq(mqtt_decode_publish(0x8, t, sizeof(t), MQTT_V5, &d),
                      MQTT_RC_MALFORMED_PACKET); /* DUP with QoS 0 [MQTT-3.3.1-2] */
    const uint8_t pid0[] = {0, 1, 'a', 0, 0, 0};
    ck_assert_uint_eq(mqtt_decode_publish(0x2, pid0, sizeof(pid0), MQTT_V5, &d),
                      MQTT_RC_PROTOCOL_ERROR);
    const uint8_t wild[] = {0, 3, 'a', '/', '+', 0};
    ck_assert_uint_eq(mqtt_decode_publish(0, wild, sizeof(wild), MQTT_V5, &d),
                      MQTT_RC_TOPIC_NAME_INVALID); /* [MQTT-3.3.2-2] */
    const uint8_t hash[] = {0, 1, '#', 0};
    ck_assert_uint_eq(mqtt_decode_publish(0, hash, sizeof(hash), MQTT_V311, &d),
                      MQTT_RC_TOPIC_NAME_INVALID);
    const uint8_t badutf[] = {0, 2, 0xc0, 0xaf, 0};
    ck_assert_uint_eq(mqtt_decode_publish(0, badutf, sizeof(badutf), MQTT_V5, &d),
                      MQTT_RC_MALFORMED_PACKET);
    const uint8_t twoct[] = {0, 1, 'a', 8, 3, 0, 1, 'x', 3, 0, 1, 'y'}; /* content type twice */
    ck_assert_uint_eq(mqtt_decode_publish(0, twoct, sizeof(twoct), MQTT_V5, &d),
                      MQTT_RC_PROTOCOL_ERROR);
    const uint8_t pfi[] = {0, 1, 'a', 2, 1, 2}; /* payload format 2 */
    ck_assert_uint_eq(mqtt_decode_publish(0, pfi, sizeof(pfi), MQTT_V5, &d),
                      MQTT_RC_PROTOCOL_ERROR);
    const uint8_t rt[] = {0, 1, 'a', 4, 8, 0, 1, '#'}; /* wildcard in response topic */
    ck_assert_uint_eq(mqtt_decode_publish(0, rt, sizeof(rt), MQTT_V5, &d), MQTT_RC_PROTOCOL_ERROR);
    const uint8_t unk[] = {0, 1, 'a', 2, 0x7f, 0}; /* unknown property */
    ck_assert_uint_eq(mqtt_decode_publish(0, unk, sizeof(unk), MQTT_V5, &d),
                      MQTT_RC_MALFORMED_PACKET);
    const uint8_t empty[] = {0, 0, 0}; /* empty topic: legal on the wire (alias), decided later */
    ck_assert_uint_eq(mqtt_decode_publish(0, empty, sizeof(empty), MQTT_V5, &d), 0);
}
END_TEST

START_TEST(test_acks)
{
    const uint8_t types[] = {MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL, MQTT_PUBCOMP};
    for (size_t i = 0; i < 4; i++) {
        struct mqtt_ack a, d;
        memset(&a, 0, sizeof(a));
        a.packet_id = 513;
        size_t n = mqtt_encode_ack(types[i], &a, MQTT_V5, buf, sizeof(buf));
        ck_assert_uint_eq(n, 4); /* short form when reason 0 and no properties */
        uint8_t tf;
        const uint8_t *body;
        size_t len;
        frame(buf, n, &tf, &body, &len);
        ck_assert_uint_eq(tf, (uint8_t)(types[i] << 4 | (types[i] == MQTT_PUBREL ? 2 : 0)));
        ck_assert_uint_eq(mqtt_decode_ack(types[i], tf & 15, body, len, MQTT_V5, &d), 0);
        ck_assert_uint_eq(d.packet_id, 513);
        a.reason = MQTT_RC_QUOTA_EXCEEDED;
        a.props.present = MQTT_PBIT(MQTT_PROP_REASON_STRING);
        a.props.reason_string = B("full");
        n = mqtt_encode_ack(types[i], &a, MQTT_V5, buf, sizeof(buf));
        frame(buf, n, &tf, &body, &len);
        ck_assert_uint_eq(mqtt_decode_ack(types[i], tf & 15, body, len, MQTT_V5, &d), 0);
        ck_assert_uint_eq(d.reason, MQTT_RC_QUOTA_EXCEEDED);
        ck_assert(bytes_eq(d.props.reason_string, B("full")));
        n = mqtt_encode_ack(types[i], &a, MQTT_V311, buf, sizeof(buf));
        ck_assert_uint_eq(n, 4); /* 3.1.1 has no reason code */
        /* wrong flags [MQTT-3.6.1-1] */
        ck_assert_uint_eq(
            mqtt_decode_ack(types[i], types[i] == MQTT_PUBREL ? 0 : 2, body, 2, MQTT_V5, &d),
            MQTT_RC_MALFORMED_PACKET);
    }
    struct mqtt_ack d;
    const uint8_t zero[] = {0, 0};
    ck_assert_uint_eq(mqtt_decode_ack(MQTT_PUBACK, 0, zero, 2, MQTT_V5, &d),
                      MQTT_RC_PROTOCOL_ERROR);
    const uint8_t extra[] = {0, 1, 0};
    ck_assert_uint_eq(mqtt_decode_ack(MQTT_PUBACK, 0, extra, 3, MQTT_V311, &d),
                      MQTT_RC_MALFORMED_PACKET);
}
END_TEST

START_TEST(test_subscribe)
{
    struct mqtt_sub_entry e[2] = {
        {.filter = B("a/+"),
         .qos = 2,
         .no_local = true,
         .retain_as_published = true,
         .retain_handling = 2},
        {.filter = B("$share/g/b/#"), .qos = 1},
    };
    struct mqtt_props props;
    memset(&props, 0, sizeof(props));
    props.present = MQTT_PBIT(MQTT_PROP_SUBSCRIPTION_ID);
    props.sub_id = 200000;
    size_t n = mqtt_encode_subscribe(5, &props, e, 2, MQTT_V5, buf, sizeof(buf));
    uint8_t tf;
    const uint8_t *body;
    size_t len;
    frame(buf, n, &tf, &body, &len);
    ck_assert_uint_eq(tf, 0x82);
    struct mqtt_subscribe s;
    ck_assert_uint_eq(mqtt_decode_subscribe(tf & 15, body, len, MQTT_V5, &s), 0);
    ck_assert_uint_eq(s.count, 2);
    ck_assert_uint_eq(s.packet_id, 5);
    ck_assert_uint_eq(s.props.sub_id, 200000);
    struct mqtt_sub_entry x;
    size_t pos = 0;
    ck_assert(mqtt_sub_next(&s, MQTT_V5, &pos, &x));
    ck_assert(bytes_eq(x.filter, B("a/+")) && x.qos == 2 && x.no_local && x.retain_as_published);
    ck_assert_uint_eq(x.retain_handling, 2);
    ck_assert(mqtt_sub_next(&s, MQTT_V5, &pos, &x));
    ck_assert(bytes_eq(x.filter, B("$share/g/b/#")));
    ck_assert(!mqtt_sub_next(&s, MQTT_V5, &pos, &x));
    for (size_t cut = 0; cut < len; cut++) { /* a cut between entries leaves fewer entries */
        uint8_t rc = mqtt_decode_subscribe(2, body, cut, MQTT_V5, &s);
        ck_assert(rc >= 0x80 || s.count < 2);
    }
    /* malformed and protocol errors */
    ck_assert_uint_eq(mqtt_decode_subscribe(0, body, len, MQTT_V5, &s),
                      MQTT_RC_MALFORMED_PACKET); /* [MQTT-3.8.1-1] */
    const uint8_t none[] = {0, 1, 0};
    ck_assert_uint_eq(mqtt_decode_subscribe(2, none, sizeof(none), MQTT_V5, &s),
                      MQTT_RC_PROTOCOL_ERROR); /* [MQTT-3.8.3-2] */
    const uint8_t resv[] = {0, 1, 0, 0, 1, 'a', 0x40};
    ck_assert_uint_eq(mqtt_decode_subscribe(2, resv, sizeof(resv), MQTT_V5, &s),
                      MQTT_RC_MALFORMED_PACKET); /* [MQTT-3.8.3-5] */
    const uint8_t rh3[] = {0, 1, 0, 0, 1, 'a', 0x30};
    ck_assert_uint_eq(mqtt_decode_subscribe(2, rh3, sizeof(rh3), MQTT_V5, &s),
                      MQTT_RC_PROTOCOL_ERROR);
    const uint8_t q3[] = {0, 1, 0, 1, 'a', 3};
    ck_assert_uint_eq(mqtt_decode_subscribe(2, q3, sizeof(q3), MQTT_V311, &s),
                      MQTT_RC_MALFORMED_PACKET);
    const uint8_t v3nl[] = {0, 1, 0, 1, 'a', 4}; /* no local bit in 3.1.1 is reserved */
    ck_assert_uint_eq(mqtt_decode_subscribe(2, v3nl, sizeof(v3nl), MQTT_V311, &s),
                      MQTT_RC_MALFORMED_PACKET);
    const uint8_t sid0[] = {0, 1, 2, 0x0b, 0, 0, 1, 'a', 0};
    ck_assert_uint_eq(mqtt_decode_subscribe(2, sid0, sizeof(sid0), MQTT_V5, &s),
                      MQTT_RC_PROTOCOL_ERROR);
    const uint8_t sid2[] = {0, 1, 4, 0x0b, 1, 0x0b, 2, 0, 1, 'a', 0};
    ck_assert_uint_eq(mqtt_decode_subscribe(2, sid2, sizeof(sid2), MQTT_V5, &s),
                      MQTT_RC_PROTOCOL_ERROR);
}
END_TEST

START_TEST(test_unsubscribe_suback)
{
    struct lq_bytes f[2] = {B("a/b"), B("c/#")};
    size_t n = mqtt_encode_unsubscribe(7, NULL, f, 2, MQTT_V5, buf, sizeof(buf));
    uint8_t tf;
    const uint8_t *body;
    size_t len;
    frame(buf, n, &tf, &body, &len);
    ck_assert_uint_eq(tf, 0xa2);
    struct mqtt_unsubscribe u;
    ck_assert_uint_eq(mqtt_decode_unsubscribe(tf & 15, body, len, MQTT_V5, &u), 0);
    ck_assert_uint_eq(u.count, 2);
    struct lq_bytes x;
    size_t pos = 0;
    ck_assert(mqtt_unsub_next(&u, &pos, &x) && bytes_eq(x, f[0]));
    ck_assert(mqtt_unsub_next(&u, &pos, &x) && bytes_eq(x, f[1]));
    ck_assert(!mqtt_unsub_next(&u, &pos, &x));
    const uint8_t none[] = {0, 1, 0};
    ck_assert_uint_eq(mqtt_decode_unsubscribe(2, none, 3, MQTT_V5, &u), MQTT_RC_PROTOCOL_ERROR);

    const uint8_t codes[] = {0x00, 0x02, 0x8f};
    struct mqtt_suback sa = {.packet_id = 7, .codes = codes, .count = 3}, d;
    n = mqtt_encode_suback(MQTT_SUBACK, &sa, MQTT_V5, buf, sizeof(buf));
    frame(buf, n, &tf, &body, &len);
    ck_assert_uint_eq(mqtt_decode_suback(MQTT_SUBACK, tf & 15, body, len, MQTT_V5, &d), 0);
    ck_assert_uint_eq(d.count, 3);
    ck_assert_uint_eq(d.codes[2], 0x8f);
    n = mqtt_encode_suback(MQTT_SUBACK, &sa, MQTT_V311, buf, sizeof(buf));
    ck_assert_uint_eq(buf[n - 1], 0x80); /* 3.1.1 knows only 0x80 for failure */
    n = mqtt_encode_suback(MQTT_UNSUBACK, &sa, MQTT_V311, buf, sizeof(buf));
    ck_assert_uint_eq(n, 4); /* 3.1.1 UNSUBACK has no payload */
}
END_TEST

START_TEST(test_connack_disconnect_auth)
{
    struct mqtt_connack c, d;
    memset(&c, 0, sizeof(c));
    c.session_present = true;
    c.props.present =
        MQTT_PBIT(MQTT_PROP_RECEIVE_MAXIMUM) | MQTT_PBIT(MQTT_PROP_ASSIGNED_CLIENT_ID) |
        MQTT_PBIT(MQTT_PROP_TOPIC_ALIAS_MAXIMUM) | MQTT_PBIT(MQTT_PROP_RETAIN_AVAILABLE) |
        MQTT_PBIT(MQTT_PROP_WILDCARD_SUB_AVAILABLE) | MQTT_PBIT(MQTT_PROP_SUB_ID_AVAILABLE) |
        MQTT_PBIT(MQTT_PROP_SHARED_SUB_AVAILABLE) | MQTT_PBIT(MQTT_PROP_SERVER_KEEP_ALIVE) |
        MQTT_PBIT(MQTT_PROP_MAXIMUM_PACKET_SIZE) | MQTT_PBIT(MQTT_PROP_MAXIMUM_QOS);
    c.props.receive_maximum = 20;
    c.props.assigned_client_id = B("auto-1");
    c.props.topic_alias_maximum = 10;
    c.props.retain_available = 1;
    c.props.wildcard_sub_available = c.props.sub_id_available = c.props.shared_sub_available = 1;
    c.props.server_keep_alive = 10;
    c.props.maximum_packet_size = 1000;
    c.props.maximum_qos = 1;
    size_t n = mqtt_encode_connack(&c, MQTT_V5, buf, sizeof(buf));
    uint8_t tf;
    const uint8_t *body;
    size_t len;
    frame(buf, n, &tf, &body, &len);
    ck_assert_uint_eq(mqtt_decode_connack(tf & 15, body, len, MQTT_V5, &d), 0);
    ck_assert(d.session_present);
    ck_assert_uint_eq(d.props.present, c.props.present);
    ck_assert(bytes_eq(d.props.assigned_client_id, B("auto-1")));
    ck_assert_uint_eq(d.props.server_keep_alive, 10);
    n = mqtt_encode_connack(&c, MQTT_V311, buf, sizeof(buf));
    ck_assert_uint_eq(n, 4);
    ck_assert_uint_eq(buf[2], 1); /* Session Present */
    n = mqtt_encode_connack(&c, MQTT_V31, buf, sizeof(buf));
    ck_assert_uint_eq(n, 4);
    ck_assert_uint_eq(buf[2], 0); /* 3.1: reserved, 0 (issue 12.3) */

    struct mqtt_disconnect x = {.reason = MQTT_RC_SERVER_SHUTTING_DOWN}, y;
    n = mqtt_encode_disconnect(&x, MQTT_V5, buf, sizeof(buf));
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(buf[2], 0x8b);
    frame(buf, n, &tf, &body, &len);
    ck_assert_uint_eq(mqtt_decode_disconnect(tf & 15, body, len, MQTT_V5, &y), 0);
    ck_assert_uint_eq(y.reason, 0x8b);
    const uint8_t sess[] = {0x00, 5, 0x11, 0, 0, 0, 9};
    ck_assert_uint_eq(mqtt_decode_disconnect(0, sess, sizeof(sess), MQTT_V5, &y), 0);
    ck_assert_uint_eq(y.props.session_expiry, 9);
    ck_assert_uint_eq(mqtt_decode_disconnect(0, sess, sizeof(sess), MQTT_V311, &y),
                      MQTT_RC_MALFORMED_PACKET);
    const uint8_t auth[] = {0x18, 7, 0x15, 0, 4, 'S', 'C', 'R', 'M'};
    ck_assert_uint_eq(mqtt_decode_auth(0, auth, sizeof(auth), &y), 0);
    ck_assert(bytes_eq(y.props.auth_method, B("SCRM")));
    ck_assert_uint_eq(mqtt_encode_pingresp(buf, sizeof(buf)), 2);
    ck_assert_uint_eq(buf[0], 0xd0);
}
END_TEST

START_TEST(test_rc_strings)
{
    ck_assert_str_eq(mqtt_rc_str(0x81), "malformed packet");
    ck_assert_str_eq(mqtt_rc_str(0x95), "packet too large");
    ck_assert_str_eq(mqtt_type_str(MQTT_PUBLISH), "PUBLISH");
    ck_assert_uint_eq(mqtt_rc_to_v3_connack(MQTT_RC_NOT_AUTHORIZED), 5);
    ck_assert_uint_eq(mqtt_rc_to_v3_connack(MQTT_RC_CLIENT_ID_NOT_VALID), 2);
}
END_TEST

Suite *
suite_mqtt_codec(void)
{
    Suite *s = suite_create("mqtt_codec");
    TCase *tc = tcase_create("framing");
    tcase_add_test(tc, test_frame_header);
    tcase_add_test(tc, test_connect_version);
    tcase_add_test(tc, test_utf8);
    tcase_add_test(tc, test_rc_strings);
    suite_add_tcase(s, tc);
    tc = tcase_create("packets");
    tcase_add_test(tc, test_connect_roundtrip);
    tcase_add_test(tc, test_connect_malformed);
    tcase_add_test(tc, test_connect_try_private);
    tcase_add_test(tc, test_publish_roundtrip_all_props);
    tcase_add_test(tc, test_publish_v311_and_subids);
    tcase_add_test(tc, test_publish_malformed);
    tcase_add_test(tc, test_acks);
    tcase_add_test(tc, test_subscribe);
    tcase_add_test(tc, test_unsubscribe_suback);
    tcase_add_test(tc, test_connack_disconnect_auth);
    suite_add_tcase(s, tc);
    return s;
}
