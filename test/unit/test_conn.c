/* SPDX-License-Identifier: MIT
 *
 * conn deadlines: the per-listener wheel (keep-alive within a tick of its deadline,
 * deadlines further away than one turn of the wheel, a loop that wakes up late) with
 * a real listener and a real client socket on 127.0.0.1. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "lq.h"
#include "net.h"
#include "suites.h"
#include "testloop.h"

struct seen {
    struct conn *c;
    uint64_t keepalive_ms; /* what on_accept sets */
    uint64_t set_at_ms;
    int keepalives;
    uint64_t fired_at_ms;
    int lost;
    char why[64];
};

static bool
on_accept(struct conn *c, void *ud)
{
    struct seen *s = ud;
    s->c = c;
    s->set_at_ms = lq_now_ms();
    conn_set_keepalive(c, s->keepalive_ms);
    return true;
}

static void
on_packet(struct conn *c, uint8_t tf, const uint8_t *body, size_t len, void *ud)
{
    (void)c, (void)tf, (void)body, (void)len, (void)ud;
}

static void
on_oversize(struct conn *c, uint32_t size, void *ud)
{
    (void)c, (void)size, (void)ud;
}

static void
on_conn(struct conn *c, void *ud)
{
    (void)c, (void)ud;
}

static void
on_keepalive(struct conn *c, void *ud)
{
    (void)c;
    struct seen *s = ud;
    s->keepalives++;
    s->fired_at_ms = lq_now_ms();
}

static void
on_lost(struct conn *c, const char *why, void *ud)
{
    (void)c;
    struct seen *s = ud;
    s->lost++;
    snprintf(s->why, sizeof(s->why), "%s", why);
}

static const struct conn_ops ops = {.on_accept = on_accept,
                                    .on_packet = on_packet,
                                    .on_oversize = on_oversize,
                                    .on_malformed = on_conn,
                                    .on_drain = on_conn,
                                    .on_keepalive = on_keepalive,
                                    .on_lost = on_lost};

/* A listener with these ops and one connected client, once on_accept has set
 * *accepted. */
static struct listener *
listen_one(struct event_base *base, const struct conn_ops *o, void *ud,
           struct conn *const *accepted, int *client)
{
    struct listener *l = listener_new(base, "127.0.0.1", 0, NULL, o, ud);
    ck_assert_ptr_nonnull(l);
    *client = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(listener_port(l))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(*client, (struct sockaddr *)&a, sizeof(a)), 0);
    for (int i = 0; i < 50 && !*accepted; i++) run_for(base, 10);
    ck_assert_ptr_nonnull(*accepted);
    return l;
}

/* A listener and one connected client; the conn's keep-alive is ka_ms. */
static struct listener *
start(struct event_base *base, struct seen *s, uint64_t ka_ms, int *client)
{
    memset(s, 0, sizeof(*s));
    s->keepalive_ms = ka_ms;
    return listen_one(base, &ops, s, &s->c, client);
}

static void
finish(struct event_base *base, struct listener *l, int client)
{
    listener_free(l);
    close(client);
    event_base_free(base);
}

START_TEST(test_keepalive_within_a_tick)
{
    struct event_base *base = event_base_new();
    struct seen s;
    int client;
    struct listener *l = start(base, &s, 500, &client);
    uint64_t t0 = s.set_at_ms;
    run_for(base, 400 - (int)(lq_now_ms() - t0));                  /* may be 0 on a slow machine */
    if (lq_now_ms() - t0 < 500) ck_assert_int_eq(s.keepalives, 0); /* not early */
    run_for(base, 350);
    ck_assert_int_eq(s.keepalives, 1);
    ck_assert_uint_ge(s.fired_at_ms - t0, 500);
    ck_assert_uint_le(s.fired_at_ms - t0, 500 + 2 * 100 + 50); /* a tick or two late */
    finish(base, l, client);
}
END_TEST

/* 300 s is three turns of the wheel (1024 x 100 ms); the clock jumps, as after a
 * suspended process, so a whole turn is also caught up in one go. */
START_TEST(test_deadline_beyond_one_turn_and_late_wakeup)
{
    struct event_base *base = event_base_new();
    struct seen s;
    int client;
    struct listener *l = start(base, &s, 300000, &client);
    for (int k = 0; k < 2; k++) {
        lq_clock_skip_ms(140000); /* 140 s, then 280 s: more than a turn each time */
        run_for(base, 250);
        ck_assert_int_eq(s.keepalives, 0);
    }
    lq_clock_skip_ms(19000); /* 299 s */
    run_for(base, 250);
    ck_assert_int_eq(s.keepalives, 0);
    lq_clock_skip_ms(1500); /* 300.5 s and more */
    run_for(base, 300);
    ck_assert_int_eq(s.keepalives, 1);
    finish(base, l, client);
}
END_TEST

/* Activity moves the deadline: the conn is looked at when its old one comes, found
 * busy, and put back for the new one. */
START_TEST(test_activity_moves_the_deadline)
{
    struct event_base *base = event_base_new();
    struct seen s;
    int client;
    struct listener *l = start(base, &s, 300000, &client);
    lq_clock_skip_ms(200000);
    ck_assert_int_eq(write(client, "\xc0\x00", 2), 2); /* PINGREQ at 200 s */
    run_for(base, 250);
    lq_clock_skip_ms(150000); /* 350 s: the first deadline passed, 150 s idle */
    run_for(base, 250);
    ck_assert_int_eq(s.keepalives, 0);
    lq_clock_skip_ms(160000); /* 510 s: 310 s idle */
    run_for(base, 300);
    ck_assert_int_eq(s.keepalives, 1);
    finish(base, l, client);
}
END_TEST

/* libevent's allocations, made to fail on demand */
static bool fail_alloc;

static void *
test_malloc(size_t n)
{
    return fail_alloc ? NULL : malloc(n);
}

static void *
test_realloc(void *p, size_t n)
{
    return fail_alloc ? NULL : realloc(p, n);
}

/* issue 12.22: output that cannot be queued (out of memory) leaves a hole in the
 * stream: nothing after it is sent, what came before is, and the conn is closed as
 * lost from the loop, not from inside the writer (who may be routing a message). */
START_TEST(test_output_lost_to_memory_closes)
{
    event_set_mem_functions(test_malloc, test_realloc, free);
    struct event_base *base = event_base_new();
    struct seen s;
    int client;
    struct listener *l = start(base, &s, 0, &client);
    static char big[8192];
    conn_write(s.c, "a", 1);
    fail_alloc = true;
    conn_write(s.c, big, sizeof(big));
    fail_alloc = false;
    conn_write(s.c, "b", 1);
    ck_assert_int_eq(s.lost, 0);
    run_for(base, 50);
    ck_assert_int_eq(s.lost, 1);
    ck_assert_str_eq(s.why, "out of memory for output");
    struct timeval tv = {2, 0};
    setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[16];
    ssize_t n, got = 0;
    while ((n = recv(client, buf + got, sizeof(buf) - (size_t)got, 0)) > 0) got += n;
    ck_assert_int_eq(n, 0); /* closed */
    ck_assert_int_eq(got, 1);
    ck_assert_int_eq(buf[0], 'a');
    finish(base, l, client);
}
END_TEST

static size_t
read_some(int fd, char *buf, size_t cap, int ms)
{
    struct timeval tv = {0, ms * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ssize_t n = recv(fd, buf, cap, 0);
    return n > 0 ? (size_t)n : 0;
}

/* Issue 13: output written after conn_gate(seq) waits for listener_release(>= seq);
 * what was written before goes at once, and the order is kept. */
START_TEST(test_gate_holds_output_until_durable)
{
    struct event_base *base = event_base_new();
    struct seen s;
    int client;
    struct listener *l = start(base, &s, 0, &client);
    char buf[64];
    conn_write(s.c, "a", 1);
    conn_gate(s.c, 5);
    conn_write(s.c, "b", 1);
    conn_gate(s.c, 7);
    conn_write_now(s.c, "c", 1); /* not past the held bytes */
    ck_assert_uint_eq(conn_gate_seq(s.c), 7);
    ck_assert_uint_eq(listener_gated(l), 1);
    run_for(base, 20);
    ck_assert_uint_eq(read_some(client, buf, sizeof(buf), 50), 1);
    ck_assert_int_eq(buf[0], 'a');
    listener_release(l, 4); /* not yet */
    run_for(base, 20);
    ck_assert_uint_eq(read_some(client, buf, sizeof(buf), 50), 0);
    listener_release(l, 6); /* the first gate only */
    run_for(base, 20);
    ck_assert_uint_eq(read_some(client, buf, sizeof(buf), 50), 1);
    ck_assert_int_eq(buf[0], 'b');
    ck_assert_uint_eq(listener_gated(l), 1);
    listener_release(l, 9);
    run_for(base, 20);
    ck_assert_uint_eq(read_some(client, buf, sizeof(buf), 50), 1);
    ck_assert_int_eq(buf[0], 'c');
    ck_assert_uint_eq(listener_gated(l), 0);
    ck_assert_uint_eq(conn_gate_seq(s.c), 0);
    conn_write(s.c, "d", 1); /* no gate: at once */
    run_for(base, 20);
    ck_assert_uint_eq(read_some(client, buf, sizeof(buf), 50), 1);
    ck_assert_int_eq(buf[0], 'd');
    conn_gate(s.c, 10); /* freed with its conn, held bytes and all */
    conn_write(s.c, "e", 1);
    finish(base, l, client);
}
END_TEST

/* ---- framing: packets from one recv each wake-up, framed where they lie (issue 19) ---- */

struct framed {
    struct conn *c;
    int n, pause_after; /* pause the conn once n reaches pause_after (0: never) */
    uint8_t type[64];
    size_t len[64];
    uint32_t sum[64]; /* of the body's bytes: the packet came whole and in order */
};

static bool
fr_accept(struct conn *c, void *ud)
{
    ((struct framed *)ud)->c = c;
    return true;
}

static void
fr_packet(struct conn *c, uint8_t tf, const uint8_t *body, size_t len, void *ud)
{
    struct framed *f = ud;
    ck_assert_int_lt(f->n, 64);
    uint32_t sum = 0;
    for (size_t i = 0; i < len; i++) sum += body[i];
    f->type[f->n] = tf;
    f->len[f->n] = len;
    f->sum[f->n] = sum;
    if (++f->n == f->pause_after) conn_pause(c);
}

static void
fr_lost(struct conn *c, const char *why, void *ud)
{
    (void)c, (void)ud;
    ck_abort_msg("connection lost: %s", why);
}

static const struct conn_ops fr_ops = {.on_accept = fr_accept,
                                       .on_packet = fr_packet,
                                       .on_oversize = on_oversize,
                                       .on_malformed = on_conn,
                                       .on_drain = on_conn,
                                       .on_keepalive = on_conn,
                                       .on_lost = fr_lost};

/* A PUBLISH-typed packet of body len bytes, each byte fill: its size. */
static size_t
fr_make(uint8_t *out, size_t len, uint8_t fill)
{
    size_t h = 1;
    out[0] = 0x30;
    size_t v = len;
    do {
        uint8_t d = v % 128;
        v /= 128;
        out[h++] = (uint8_t)(d | (v ? 0x80 : 0));
    } while (v);
    memset(out + h, fill, len);
    return h + len;
}

static void
fr_send(int fd, const uint8_t *p, size_t n)
{
    ck_assert_int_eq(send(fd, p, n, 0), (ssize_t)n);
}

START_TEST(test_packets_split_and_joined_across_reads)
{
    struct event_base *base = event_base_new();
    struct framed f = {0};
    int client;
    struct listener *l = listen_one(base, &fr_ops, &f, &f.c, &client);

    static uint8_t buf[3 * 48 * 1024];
    size_t n1 = fr_make(buf, 10, 1), n2 = fr_make(buf + n1, 300, 2);
    size_t n3 = fr_make(buf + n1 + n2, 40 * 1024, 3); /* past BIG_PACKET: its own block */
    size_t n4 = fr_make(buf + n1 + n2 + n3, 0, 0), total = n1 + n2 + n3 + n4;
    /* the first packet and a piece of the second's header; the rest in odd pieces, the
     * large one's header and part of its body with them */
    fr_send(client, buf, n1 + 1);
    run_for(base, 30);
    ck_assert_int_eq(f.n, 1);
    fr_send(client, buf + n1 + 1, 150);
    run_for(base, 30);
    ck_assert_int_eq(f.n, 1);
    fr_send(client, buf + n1 + 151, n2 - 151 + 2000);
    run_for(base, 30);
    ck_assert_int_eq(f.n, 2);
    for (size_t off = n1 + n2 + 2000; off < total; off += 7000) {
        size_t k = total - off < 7000 ? total - off : 7000;
        fr_send(client, buf + off, k);
        run_for(base, 10);
    }
    for (int i = 0; i < 50 && f.n < 4; i++) run_for(base, 10);
    ck_assert_int_eq(f.n, 4);
    size_t lens[] = {10, 300, 40 * 1024, 0};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(f.type[i], 0x30);
        ck_assert_uint_eq(f.len[i], lens[i]);
        ck_assert_uint_eq(f.sum[i], (uint32_t)(lens[i] * (size_t)(i + 1) * (i < 3)));
    }

    /* many in one read, a pause after the second: the rest waits, in order, and comes
     * after the resume without new bytes on the socket */
    f.n = 0;
    f.pause_after = 2;
    size_t off = 0;
    for (int i = 0; i < 20; i++) off += fr_make(buf + off, (size_t)(5 + i), (uint8_t)i);
    fr_send(client, buf, off);
    run_for(base, 50);
    ck_assert_int_eq(f.n, 2);
    f.pause_after = 0;
    conn_resume(f.c);
    run_for(base, 50);
    ck_assert_int_eq(f.n, 20);
    for (int i = 0; i < 20; i++) {
        ck_assert_uint_eq(f.len[i], (size_t)(5 + i));
        ck_assert_uint_eq(f.sum[i], (uint32_t)((5 + i) * i));
    }
    finish(base, l, client);
}
END_TEST

Suite *
suite_conn(void)
{
    Suite *s = suite_create("conn");
    TCase *tc = tcase_create("deadlines");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_keepalive_within_a_tick);
    tcase_add_test(tc, test_deadline_beyond_one_turn_and_late_wakeup);
    tcase_add_test(tc, test_activity_moves_the_deadline);
    tcase_add_test(tc, test_output_lost_to_memory_closes);
    tcase_add_test(tc, test_gate_holds_output_until_durable);
    tcase_add_test(tc, test_packets_split_and_joined_across_reads);
    suite_add_tcase(s, tc);
    return s;
}
