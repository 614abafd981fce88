/* SPDX-License-Identifier: MIT
 *
 * ws: WebSockets (RFC 6455) for MQTT over WebSockets, without I/O: the upgrade
 * request decided (handshake.c) and the frames decoded and encoded (frame.c). The
 * net layer (broker/net/conn.c) runs them on a connection; nothing here reads or
 * writes a socket.
 *
 * Why not libwslay: its frame layer reads every byte through a callback into a
 * 4 KiB buffer of its own, and its event layer (the part with close codes, UTF-8
 * and fragmentation) keeps its own queue of outgoing messages, copied and
 * allocated per message. Our output must stay in the connection's buffers (the
 * durability gates hold it there, one write per loop turn coalesces it), so wslay
 * would leave us the same state machine to write and a copy more per byte. The
 * decoder below unmasks in place and hands payload over where it lies; it is
 * fuzzed (test/fuzz/fuzz_ws_frame.c).
 *
 * MQTT rides in binary frames [MQTT-6.0.0-1]: a packet may span frames and a frame
 * may hold several packets, so the decoder hands over bytes, not messages, and
 * keeps none: a message is bounded (max_message, the sum of its fragments) so that
 * a frame or a fragmented message that never ends is cut, not buffered.
 */
#ifndef LUNAMQ_WS_H
#define LUNAMQ_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct httpd_request;

/* close codes (RFC 6455 7.4.1) */
enum {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,     /* framing broken: unmasked, reserved bits or opcodes... */
    WS_CLOSE_UNSUPPORTED = 1003,  /* a text message: MQTT needs binary frames */
    WS_CLOSE_NO_STATUS = 1005,    /* (received) a close frame without a code */
    WS_CLOSE_INVALID_DATA = 1007, /* text that is not UTF-8 */
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009, /* a message over max_message */
    WS_CLOSE_INTERNAL = 1011,
};

enum {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA
};

/* ---- frames from a client (frame.c) ---- */

struct ws_decoder {
    uint64_t max_message; /* bytes per data message, all its fragments together */
    uint64_t left;        /* payload bytes of the current frame still to come */
    uint64_t msg_len;     /* bytes of the current data message so far */
    uint32_t utf8;        /* text: the UTF-8 validator's state (0: between characters) */
    uint8_t hdr[14];      /* a frame header being assembled */
    uint8_t nhdr;
    uint8_t mask[4];
    uint8_t mpos;   /* the mask's position for the next payload byte */
    uint8_t op;     /* the current frame's opcode */
    uint8_t msg_op; /* the data message in progress: WS_OP_TEXT, WS_OP_BINARY, 0: none */
    bool in_frame;  /* the header is in, payload follows */
    bool fin;
    bool over; /* a close or an error was returned: nothing more is decoded */
    uint8_t nctl;
    uint8_t ctl[125]; /* a control frame's payload, gathered */
};

enum ws_event_kind {
    WS_EV_NONE,  /* the bytes consumed held nothing to report (more is needed) */
    WS_EV_DATA,  /* binary payload: data, len (unmasked in place, inside the input) */
    WS_EV_PING,  /* data, len: its payload (in the decoder), to be echoed in a pong */
    WS_EV_PONG,  /* likewise; nothing to do */
    WS_EV_CLOSE, /* the peer's close: code (WS_CLOSE_NO_STATUS without one); data,
                    len: its reason, valid UTF-8 */
    WS_EV_ERROR, /* code: the close code to answer with; why: for the log */
};

struct ws_event {
    enum ws_event_kind kind;
    const uint8_t *data;
    size_t len;
    uint16_t code;
    const char *why;
};

void ws_decoder_init(struct ws_decoder *d, uint64_t max_message);

/* Decode from p (len bytes, which it may modify: payload is unmasked in place).
 * Returns how many bytes it consumed and says in *ev what they held; call it again
 * with the rest. At most one event per call: a DATA event ends the call (its bytes
 * are the last consumed), so the caller can take them before going on. After CLOSE
 * or ERROR it consumes nothing more (d->over). len 0: returns 0, WS_EV_NONE. */
size_t ws_decode(struct ws_decoder *d, uint8_t *p, size_t len, struct ws_event *ev);

/* ---- frames to a client (frame.c): a server's are never masked ---- */

#define WS_HEADER_MAX 10
/* The header of a final frame of `op` carrying len bytes: 2, 4 or 10 bytes at out. */
size_t ws_frame_header(uint8_t *out, uint8_t op, uint64_t len);
#define WS_CLOSE_FRAME_MAX (2 + 125)
/* A close frame with code and reason (cut to 123 bytes, on a character boundary):
 * its length at out (WS_CLOSE_FRAME_MAX bytes). WS_CLOSE_NO_STATUS, never sent,
 * gives an empty close frame. */
size_t ws_close_frame(uint8_t *out, uint16_t code, const char *reason);

/* Is p[0..n) valid UTF-8 (no overlongs, no surrogates, at most U+10FFFF)? */
bool ws_utf8_valid(const uint8_t *p, size_t n);

/* ---- the upgrade (handshake.c) ---- */

/* What a listener accepts. */
struct ws_policy {
    char *const *origins; /* websockets_origin: "https://example.com"...; none: any */
    size_t norigins;
};

#define WS_RESPONSE_MAX 512

/* Decide a WebSocket upgrade request: 101 with the answer to send in resp (a
 * NUL-terminated HTTP response, WS_RESPONSE_MAX bytes), or the refusal's status in
 * resp too (400: not a valid upgrade; 403: an Origin not in the policy; 426: no
 * upgrade, or a version other than 13), with *why for the log. A request without an
 * Origin header is not a browser's and is not checked against the origins. The
 * subprotocol answered is "mqtt" (or "mqttv3.1", which old clients ask for); a
 * request that offers others only is refused (400). 500: SHA-1 or base64 failed. */
int ws_handshake(const struct httpd_request *rq, const struct ws_policy *pol, char *resp,
                 const char **why);

#endif
