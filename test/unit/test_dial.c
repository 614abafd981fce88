/* SPDX-License-Identifier: MIT
 *
 * Outgoing connections (conn_dial, for bridges): a dialer's conn against a real
 * listener on 127.0.0.1, plain and TLS (the test PKI of examples/certs/make-certs.sh):
 * output written before the connection is up, both directions, connect errors, the
 * dial's deadline through connecting and the handshake, the server's certificate and
 * name checks, insecure, and a client certificate the server sees. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "lq.h"
/* after lq.h */
#include "../../broker/net/net_int.h"
#include "conf.h"
#include "net.h"
#include "suites.h"
#include "testloop.h"
#include "testpki.h"
#include "tls.h"

/* What one side (the listener's or the dialer's) was told. */
struct side {
    struct conn *c; /* the accepted conn (server side) */
    int accepted;
    int packets;
    char body[64]; /* of the last packet */
    int keepalives;
    uint64_t keepalive_at_ms;
    bool close_on_keepalive;
    int lost;
    char why[400];
    int freed;
};

static bool
on_accept(struct conn *c, void *ud)
{
    struct side *s = ud;
    s->c = c;
    s->accepted++;
    return true;
}

static void
on_packet(struct conn *c, uint8_t tf, const uint8_t *body, size_t len, void *ud)
{
    (void)c, (void)tf;
    struct side *s = ud;
    s->packets++;
    snprintf(s->body, sizeof(s->body), "%.*s", (int)len, (const char *)body);
}

static void
on_oversize(struct conn *c, uint32_t size, void *ud)
{
    (void)c, (void)size, (void)ud;
}

static void
on_nothing(struct conn *c, void *ud)
{
    (void)c, (void)ud;
}

static void
on_keepalive(struct conn *c, void *ud)
{
    struct side *s = ud;
    s->keepalives++;
    s->keepalive_at_ms = lq_now_ms();
    if (s->close_on_keepalive) conn_close(c);
}

static void
on_lost(struct conn *c, const char *why, void *ud)
{
    (void)c;
    struct side *s = ud;
    s->lost++;
    snprintf(s->why, sizeof(s->why), "%s", why);
}

static void
on_free(struct conn *c, void *ud)
{
    (void)c;
    struct side *s = ud;
    s->freed++;
}

static const struct conn_ops ops = {.on_accept = on_accept,
                                    .on_packet = on_packet,
                                    .on_oversize = on_oversize,
                                    .on_malformed = on_nothing,
                                    .on_drain = on_nothing,
                                    .on_keepalive = on_keepalive,
                                    .on_lost = on_lost,
                                    .on_free = on_free};

static struct sockaddr_in
loopback(uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static struct conn *
dial(struct listener *d, uint16_t port, struct tls_ctx *tls, const char *host)
{
    struct sockaddr_in a = loopback(port);
    struct conn *c = conn_dial(d, (const struct sockaddr *)&a, sizeof(a), tls, host);
    ck_assert_ptr_nonnull(c);
    ck_assert(!conn_is_established(c));
    return c;
}

/* A port nobody listens on (bound, then closed). */
static uint16_t
closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = loopback(0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* A packet with body `text` (a PUBLISH's first byte; framing is all the net layer sees). */
static void
send_packet(struct conn *c, const char *text, bool now)
{
    uint8_t p[66];
    size_t n = strlen(text);
    ck_assert_uint_lt(n, 64);
    p[0] = 0x30;
    p[1] = (uint8_t)n;
    memcpy(p + 2, text, n);
    if (now)
        conn_write_now(c, p, n + 2);
    else
        conn_write(c, p, n + 2);
}

/* Both directions over a dialed conn whose first packet was written before it was up. */
static void
exchange(struct event_base *base, struct conn *c, struct side *srv, struct side *cli)
{
    RUN_UNTIL(base, srv->packets >= 1 || cli->lost, 5000);
    ck_assert_msg(!cli->lost, "lost: %s", cli->why);
    ck_assert_int_eq(srv->packets, 1);
    ck_assert_str_eq(srv->body, "early");
    ck_assert(conn_is_established(c));
    send_packet(c, "later", true);
    send_packet(srv->c, "back", false);
    RUN_UNTIL(base, srv->packets == 2 && cli->packets == 1, 2000);
    ck_assert_str_eq(srv->body, "later");
    ck_assert_int_eq(cli->packets, 1);
    ck_assert_str_eq(cli->body, "back");
    ck_assert_int_eq(cli->accepted, 0); /* never for a dialer */
    ck_assert_int_eq(cli->lost, 0);
    ck_assert_int_eq(srv->lost, 0);
}

/* ---- plain TCP ---- */

START_TEST(test_plain_output_before_connect_and_back)
{
    struct event_base *base = event_base_new();
    struct side srv = {0}, cli = {0};
    struct listener *l = listener_new(base, "127.0.0.1", 0, NULL, &ops, &srv);
    struct listener *d = dialer_new(base, "bridge", &ops, &cli);
    ck_assert_ptr_nonnull(l);
    ck_assert_ptr_nonnull(d);
    ck_assert_str_eq(listener_name(d), "bridge");
    struct conn *c = dial(d, listener_port(l), NULL, NULL);
    send_packet(c, "early", true); /* held: conn_write_now too */
    ck_assert_uint_eq(conn_pending(c), 7);
    ck_assert_uint_eq(listener_conn_count(d), 1);
    ck_assert_ptr_eq(conn_listener(c), d);
    char peer[32];
    snprintf(peer, sizeof(peer), "127.0.0.1:%u", listener_port(l));
    ck_assert_str_eq(conn_peer(c), peer);
    ck_assert(!conn_is_tls(c));
    exchange(base, c, &srv, &cli);

    conn_close(c); /* the server sees the end */
    RUN_UNTIL(base, srv.lost && cli.freed, 3000);
    ck_assert_int_eq(srv.lost, 1);
    ck_assert_int_eq(cli.freed, 1);
    ck_assert_int_eq(cli.lost, 0);
    ck_assert_uint_eq(listener_conn_count(d), 0);
    listener_free(d);
    listener_free(l);
    event_base_free(base);
}
END_TEST

START_TEST(test_refused)
{
    struct event_base *base = event_base_new();
    struct side cli = {0};
    struct listener *d = dialer_new(base, "bridge", &ops, &cli);
    struct conn *c = dial(d, closed_port(), NULL, NULL);
    send_packet(c, "early", false);
    ck_assert_int_eq(cli.lost, 0); /* from the loop, not from conn_dial */
    RUN_UNTIL(base, cli.freed, 2000);
    ck_assert_int_eq(cli.lost, 1);
    ck_assert_str_eq(cli.why, "connect: Connection refused");
    ck_assert_int_eq(cli.freed, 1); /* at once: no output to flush, nobody to linger for */
    ck_assert_uint_eq(listener_conn_count(d), 0);
    listener_free(d);
    event_base_free(base);
}
END_TEST

/* Closed before it is up: nothing is sent, no on_lost, freed. */
START_TEST(test_closed_while_connecting_sends_nothing)
{
    struct event_base *base = event_base_new();
    struct side srv = {0}, cli = {0};
    struct listener *l = listener_new(base, "127.0.0.1", 0, NULL, &ops, &srv);
    struct listener *d = dialer_new(base, "bridge", &ops, &cli);
    struct conn *c = dial(d, listener_port(l), NULL, NULL);
    send_packet(c, "early", false);
    conn_close(c);
    RUN_UNTIL(base, cli.freed && srv.lost, 2000);
    ck_assert_int_eq(cli.freed, 1);
    ck_assert_int_eq(cli.lost, 0);
    ck_assert_int_eq(srv.packets, 0);
    listener_free(d);
    listener_free(l);
    event_base_free(base);
}
END_TEST

/* listener_free of a dialer frees its conns, connecting or not. */
START_TEST(test_dialer_free_frees_its_conns)
{
    struct event_base *base = event_base_new();
    struct side srv = {0}, cli = {0};
    struct listener *l = listener_new(base, "127.0.0.1", 0, NULL, &ops, &srv);
    struct listener *d = dialer_new(base, "bridge", &ops, &cli);
    dial(d, listener_port(l), NULL, NULL);
    struct conn *c = dial(d, listener_port(l), NULL, NULL);
    RUN_UNTIL(base, conn_is_established(c) && srv.accepted == 2, 2000);
    dial(d, listener_port(l), NULL, NULL); /* connecting */
    listener_free(d);
    ck_assert_int_eq(cli.freed, 3);
    listener_free(l);
    event_base_free(base);
}
END_TEST

/* ---- TLS ---- */

static char *
pki_file(const char *name)
{
    static char paths[8][128];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof(paths[0]), "%s/%s", pki, name);
    return p;
}

/* A TLS listener's material, as the configuration makes it. */
static struct tls_ctx *
server_ctx(bool require_certificate)
{
    static char at[] = "test.conf:1";
    struct tls_conf tc = {
        .require_certificate = require_certificate, .min_version = 12, .handshake_timeout = 10};
    tc.file[TLS_CERTFILE] = pki_file("server.crt");
    tc.file[TLS_KEYFILE] = pki_file("server.key");
    tc.file[TLS_CAFILE] = pki_file("ca.crt");
    for (int i = 0; i < TLS_NFILES; i++) tc.at[i] = at;
    char err[256];
    struct tls_ctx *ctx = tls_ctx_new(&tc, err, sizeof(err));
    ck_assert_msg(ctx != NULL, "%s", err);
    return ctx;
}

static struct tls_ctx *
client_ctx(struct tls_client_conf cc)
{
    char err[512];
    struct tls_ctx *ctx = tls_client_ctx_new(&cc, err, sizeof(err));
    ck_assert_msg(ctx != NULL, "%s", err);
    return ctx;
}

struct tls_pair {
    struct event_base *base;
    struct side srv, cli;
    struct listener *l, *d;
    struct conn *c;
};

/* A TLS listener, a dialer, and a conn dialed to it with cc as "host", its first
 * packet written at once. */
static void
tls_dial(struct tls_pair *p, bool require_certificate, struct tls_client_conf cc, const char *host)
{
    memset(p, 0, sizeof(*p));
    p->base = event_base_new();
    p->l = listener_new(p->base, "127.0.0.1", 0, server_ctx(require_certificate), &ops, &p->srv);
    ck_assert_ptr_nonnull(p->l);
    p->d = dialer_new(p->base, "bridge", &ops, &p->cli);
    struct tls_ctx *tls = client_ctx(cc);
    p->c = dial(p->d, listener_port(p->l), tls, host);
    tls_ctx_unref(tls); /* the conn has its own reference */
    ck_assert(conn_is_tls(p->c));
    send_packet(p->c, "early", false);
}

static void
tls_done(struct tls_pair *p)
{
    net_stop_workers(); /* the listener's handshakes run on the handshake thread */
    listener_free(p->d);
    listener_free(p->l);
    event_base_free(p->base);
}

/* The dial fails: its reason, and nothing of what was written reached the server. */
static void
tls_fails(struct tls_pair *p, const char *reason)
{
    RUN_UNTIL(p->base, p->cli.lost, 5000);
    ck_assert_int_eq(p->cli.lost, 1);
    ck_assert_msg(strstr(p->cli.why, reason), "'%s' has no '%s'", p->cli.why, reason);
    ck_assert_int_eq(p->srv.packets, 0);
    ck_assert_uint_eq(p->d->nhandshaking, 0);
}

START_TEST(test_tls_exchange)
{
    struct tls_pair p;
    tls_dial(&p, false, (struct tls_client_conf){.cafile = pki_file("ca.crt")}, "localhost");
    ck_assert_uint_eq(p.d->nhandshaking, 0); /* not the listener's admission's business */
    exchange(p.base, p.c, &p.srv, &p.cli);
    ck_assert_uint_eq(p.d->nhandshaking, 0);
    const struct tls_identity *id = conn_tls_identity(p.c); /* the server's */
    ck_assert_ptr_nonnull(id);
    ck_assert_str_eq(id->cn, "localhost");
    ck_assert_ptr_null(conn_tls_identity(p.srv.c)); /* no client certificate */
    tls_done(&p);
}
END_TEST

/* An IP literal is checked against the certificate's IP addresses. */
START_TEST(test_tls_ip_literal)
{
    struct tls_pair p;
    tls_dial(&p, false, (struct tls_client_conf){.cafile = pki_file("ca.crt"), .min_version = 13},
             "127.0.0.1");
    exchange(p.base, p.c, &p.srv, &p.cli);
    tls_done(&p);
}
END_TEST

/* capath: every certificate of the directory (the PKI's keys and CRL do not parse). */
START_TEST(test_tls_capath_and_alpn)
{
    struct tls_pair p;
    tls_dial(&p, false, (struct tls_client_conf){.capath = pki, .alpn = "mqtt,x-other"},
             "localhost");
    exchange(p.base, p.c, &p.srv, &p.cli);
    tls_done(&p);
}
END_TEST

START_TEST(test_tls_wrong_ca)
{
    struct tls_pair p;
    tls_dial(&p, false, (struct tls_client_conf){.cafile = pki_file("other-ca.crt")}, "localhost");
    tls_fails(&p, "TLS handshake failed: certificate verify failed: ");
    ck_assert_msg(strstr(p.cli.why, "not correctly signed"), "%s", p.cli.why);
    tls_done(&p);
}
END_TEST

START_TEST(test_tls_wrong_host)
{
    struct tls_pair p;
    tls_dial(&p, false, (struct tls_client_conf){.cafile = pki_file("ca.crt")},
             "elsewhere.invalid");
    tls_fails(&p, "TLS handshake failed: certificate verify failed: ");
    ck_assert_msg(strstr(p.cli.why, "CN"), "%s", p.cli.why);
    tls_done(&p);
}
END_TEST

/* Without a host name, a secure ctx refuses to verify (mbedTLS: no name, no check). */
START_TEST(test_tls_no_host)
{
    struct tls_pair p;
    tls_dial(&p, false, (struct tls_client_conf){.cafile = pki_file("ca.crt")}, NULL);
    tls_fails(&p, "TLS handshake failed: no server name");
    tls_done(&p);
}
END_TEST

START_TEST(test_tls_insecure_takes_wrong_host)
{
    struct tls_pair p;
    tls_dial(&p, false, (struct tls_client_conf){.cafile = pki_file("ca.crt"), .insecure = true},
             "elsewhere.invalid");
    exchange(p.base, p.c, &p.srv, &p.cli);
    tls_done(&p);
}
END_TEST

START_TEST(test_tls_insecure_without_host)
{
    struct tls_pair p;
    tls_dial(&p, false, (struct tls_client_conf){.cafile = pki_file("ca.crt"), .insecure = true},
             NULL);
    exchange(p.base, p.c, &p.srv, &p.cli);
    tls_done(&p);
}
END_TEST

/* A socket listening on 127.0.0.1 that nobody serves; its port in *port. */
static int
mute_listener(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = loopback(0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(fd, 4), 0);
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return fd;
}

/* insecure skips the name check, not the name: it still goes out as SNI, for a server
 * that serves several. */
START_TEST(test_tls_insecure_still_sends_sni)
{
    struct event_base *base = event_base_new();
    struct side cli = {0};
    struct listener *d = dialer_new(base, "bridge", &ops, &cli);
    uint16_t port;
    int mute = mute_listener(&port);
    struct tls_ctx *tls =
        client_ctx((struct tls_client_conf){.cafile = pki_file("ca.crt"), .insecure = true});
    dial(d, port, tls, "sni.invalid");
    tls_ctx_unref(tls);
    run_for(base, 100);
    int s = accept(mute, NULL, NULL);
    ck_assert_int_ge(s, 0);
    char hello[2048];
    ssize_t n = recv(s, hello, sizeof(hello), MSG_DONTWAIT);
    ck_assert_int_gt(n, 0);
    bool found = false;
    for (ssize_t i = 0; i + 11 <= n && !found; i++)
        found = memcmp(hello + i, "sni.invalid", 11) == 0;
    ck_assert(found);
    close(s);
    listener_free(d);
    close(mute);
    event_base_free(base);
}
END_TEST

START_TEST(test_tls_insecure_not_wrong_ca)
{
    struct tls_pair p;
    tls_dial(&p, false,
             (struct tls_client_conf){.cafile = pki_file("other-ca.crt"), .insecure = true},
             "elsewhere.invalid");
    tls_fails(&p, "TLS handshake failed: certificate verify failed: ");
    ck_assert_msg(!strstr(p.cli.why, "CN"), "%s", p.cli.why); /* the chain, not the name */
    tls_done(&p);
}
END_TEST

START_TEST(test_tls_client_certificate)
{
    struct tls_pair p;
    tls_dial(&p, true,
             (struct tls_client_conf){.cafile = pki_file("ca.crt"),
                                      .certfile = pki_file("dev2.crt"),
                                      .keyfile = pki_file("dev2.key")},
             "localhost");
    exchange(p.base, p.c, &p.srv, &p.cli);
    const struct tls_identity *id = conn_tls_identity(p.srv.c);
    ck_assert_ptr_nonnull(id);
    ck_assert_str_eq(id->cn, "dev2");
    tls_done(&p);
}
END_TEST

/* The server refuses it. With TLS 1.3 the client's handshake is over once it sent its
 * Finished: the server's alert comes after, under keys the client no longer has, and
 * reads as a bad record ("TLS: ..."); with TLS 1.2 it is a handshake failure. */
START_TEST(test_tls_client_certificate_missing)
{
    struct tls_pair p;
    tls_dial(&p, true, (struct tls_client_conf){.cafile = pki_file("ca.crt")}, "localhost");
    tls_fails(&p, "TLS");
    ck_assert_int_eq(p.srv.lost, 1);
    ck_assert_msg(strstr(p.srv.why, "No client certification received"), "%s", p.srv.why);
    tls_done(&p);
}
END_TEST

/* A peer that takes the connection (the kernel's backlog) and never answers the
 * ClientHello: the dial's deadline fires, counted from the dial. */
START_TEST(test_deadline_through_the_handshake)
{
    struct event_base *base = event_base_new();
    struct side cli = {.close_on_keepalive = true};
    struct listener *d = dialer_new(base, "bridge", &ops, &cli);
    uint16_t port;
    int mute = mute_listener(&port);
    struct tls_ctx *tls = client_ctx((struct tls_client_conf){.cafile = pki_file("ca.crt")});
    uint64_t t0 = lq_now_ms();
    struct conn *c = dial(d, port, tls, "localhost");
    tls_ctx_unref(tls);
    conn_set_deadline(c, 300);
    RUN_UNTIL(base, cli.freed, 3000);
    ck_assert_int_eq(cli.keepalives, 1);
    ck_assert_int_eq(cli.lost, 0);
    ck_assert_uint_ge(cli.keepalive_at_ms - t0, 300);
    ck_assert_uint_le(cli.keepalive_at_ms - t0, 300 + 2 * WHEEL_TICK_MS + 100);
    ck_assert_int_eq(cli.freed, 1);
    listener_free(d);
    close(mute);
    event_base_free(base);
}
END_TEST

/* The ctx's handshake timeout, without a deadline: on_lost. */
START_TEST(test_handshake_timeout)
{
    struct event_base *base = event_base_new();
    struct side cli = {0};
    struct listener *d = dialer_new(base, "bridge", &ops, &cli);
    uint16_t port;
    int mute = mute_listener(&port);
    struct tls_ctx *tls = client_ctx(
        (struct tls_client_conf){.cafile = pki_file("ca.crt"), .handshake_timeout_ms = 300});
    dial(d, port, tls, "localhost");
    tls_ctx_unref(tls);
    RUN_UNTIL(base, cli.lost, 3000);
    ck_assert_int_eq(cli.lost, 1);
    ck_assert_str_eq(cli.why, "TLS handshake timeout");
    ck_assert_int_eq(cli.keepalives, 0);
    listener_free(d);
    close(mute);
    event_base_free(base);
}
END_TEST

static void
client_ctx_fails(struct tls_client_conf cc, const char *reason)
{
    char err[512];
    struct tls_ctx *ctx = tls_client_ctx_new(&cc, err, sizeof(err));
    ck_assert_ptr_null(ctx);
    ck_assert_msg(strstr(err, reason), "'%s' has no '%s'", err, reason);
}

START_TEST(test_client_ctx_errors)
{
    client_ctx_fails((struct tls_client_conf){.at = "bridge.conf:3"},
                     "bridge.conf:3: no cafile or capath");
    client_ctx_fails(
        (struct tls_client_conf){.cafile = pki_file("ca.crt"), .certfile = pki_file("dev1.crt")},
        "certfile without keyfile");
    client_ctx_fails((struct tls_client_conf){.cafile = pki_file("nothing.crt"), .at = "b.conf:9"},
                     "b.conf:9: cafile ");
    client_ctx_fails((struct tls_client_conf){.cafile = pki_file("ca.crt"), .alpn = "mqtt,,x"},
                     "alpn 'mqtt,,x'");
    client_ctx_fails((struct tls_client_conf){.capath = "/nonexistent-dir"}, "capath");
}
END_TEST

Suite *
suite_dial(void)
{
    Suite *s = suite_create("dial");
    TCase *tc = tcase_create("plain");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_plain_output_before_connect_and_back);
    tcase_add_test(tc, test_refused);
    tcase_add_test(tc, test_closed_while_connecting_sends_nothing);
    tcase_add_test(tc, test_dialer_free_frees_its_conns);
    suite_add_tcase(s, tc);
    tc = tcase_create("tls");
    tcase_set_timeout(tc, 30);
    tcase_add_unchecked_fixture(tc, pki_make, pki_remove);
    tcase_add_test(tc, test_tls_exchange);
    tcase_add_test(tc, test_tls_ip_literal);
    tcase_add_test(tc, test_tls_capath_and_alpn);
    tcase_add_test(tc, test_tls_wrong_ca);
    tcase_add_test(tc, test_tls_wrong_host);
    tcase_add_test(tc, test_tls_no_host);
    tcase_add_test(tc, test_tls_insecure_takes_wrong_host);
    tcase_add_test(tc, test_tls_insecure_without_host);
    tcase_add_test(tc, test_tls_insecure_still_sends_sni);
    tcase_add_test(tc, test_tls_insecure_not_wrong_ca);
    tcase_add_test(tc, test_tls_client_certificate);
    tcase_add_test(tc, test_tls_client_certificate_missing);
    tcase_add_test(tc, test_deadline_through_the_handshake);
    tcase_add_test(tc, test_handshake_timeout);
    tcase_add_test(tc, test_client_ctx_errors);
    suite_add_tcase(s, tc);
    return s;
}
