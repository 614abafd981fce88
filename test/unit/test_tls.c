/* SPDX-License-Identifier: MIT
 *
 * tls session tickets: lunamq's server side (tls_ctx_new, tls_conn_input) against an
 * mbedTLS client, over evbuffers in one process, with the test PKI of
 * examples/certs/make-certs.sh. TLS 1.3 resumption in each key exchange mode a
 * client can ask for (psk_ke alone is what OpenSSL cannot offer, so the end-to-end
 * tests cannot), tickets that outlive a reload (a new tls_ctx) and the revocation
 * check that replaces the old "a reload forgets every ticket", and key rotation. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <mbedtls/ssl.h>
#include <mbedtls/psa_util.h>
#include <psa/crypto.h>

#include "../../broker/net/tls_mem.h"
#include "../../broker/net/tls_tickets.h"
#include "conf.h"
#include "suites.h"
#include "testpki.h"
#include "tls.h"

/* ---- the test PKI, made once per test case (in Check's parent process) ---- */

static void
revoke_device(const char *dev)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "sh examples/certs/make-certs.sh %s revoke %s >/dev/null", pki, dev);
    ck_assert_int_eq(system(cmd), 0);
}

/* ---- lunamq's side: a listener's tls_ctx as the configuration makes it ---- */
static char paths[TLS_NFILES][128];
static char conf_line[] = "test.conf:1";

static struct tls_ctx *
server_ctx(void)
{
    static const char *names[TLS_NFILES] = {[TLS_CAFILE] = "ca.crt",
                                            [TLS_CERTFILE] = "server.crt",
                                            [TLS_KEYFILE] = "server.key",
                                            [TLS_CRLFILE] = "ca.crl"};
    struct tls_conf tc = {.require_certificate = true,
                          .use_identity_as_username = true,
                          .min_version = 12,
                          .handshake_timeout = 10};
    for (int i = 0; i < TLS_NFILES; i++) {
        if (!names[i]) continue;
        snprintf(paths[i], sizeof(paths[i]), "%s/%s", pki, names[i]);
        tc.file[i] = paths[i];
        tc.at[i] = conf_line;
    }
    char err[256];
    struct tls_ctx *ctx = tls_ctx_new(&tc, err, sizeof(err));
    ck_assert_msg(ctx != NULL, "%s", err);
    return ctx;
}

/* ---- the device: an mbedTLS TLS 1.3 client ---- */
struct device {
    mbedtls_ssl_config conf;
    mbedtls_x509_crt ca, cert;
    mbedtls_pk_context key;
    mbedtls_ssl_session session; /* the last ticket it got */
    bool has_session;
};

static void
device_init(struct device *d, const char *name, int kex_modes)
{
    char f[160], k[160];
    ck_assert_int_eq(psa_crypto_init(), PSA_SUCCESS);
    mbedtls_ssl_config_init(&d->conf);
    mbedtls_x509_crt_init(&d->ca);
    mbedtls_x509_crt_init(&d->cert);
    mbedtls_pk_init(&d->key);
    mbedtls_ssl_session_init(&d->session);
    d->has_session = false;
    snprintf(f, sizeof(f), "%s/ca.crt", pki);
    ck_assert_int_eq(mbedtls_x509_crt_parse_file(&d->ca, f), 0);
    snprintf(f, sizeof(f), "%s/%s.crt", pki, name);
    snprintf(k, sizeof(k), "%s/%s.key", pki, name);
    ck_assert_int_eq(mbedtls_x509_crt_parse_file(&d->cert, f), 0);
    ck_assert_int_eq(mbedtls_pk_parse_keyfile(&d->key, k, NULL, mbedtls_psa_get_random,
                                              MBEDTLS_PSA_RANDOM_STATE),
                     0);
    mbedtls_ssl_config *c = &d->conf;
    ck_assert_int_eq(mbedtls_ssl_config_defaults(c, MBEDTLS_SSL_IS_CLIENT,
                                                 MBEDTLS_SSL_TRANSPORT_STREAM,
                                                 MBEDTLS_SSL_PRESET_DEFAULT),
                     0);
    mbedtls_ssl_conf_rng(c, mbedtls_psa_get_random, MBEDTLS_PSA_RANDOM_STATE);
    mbedtls_ssl_conf_min_tls_version(c, MBEDTLS_SSL_VERSION_TLS1_3);
    mbedtls_ssl_conf_max_tls_version(c, MBEDTLS_SSL_VERSION_TLS1_3);
    mbedtls_ssl_conf_ca_chain(c, &d->ca, NULL);
    mbedtls_ssl_conf_authmode(c, MBEDTLS_SSL_VERIFY_REQUIRED);
    ck_assert_int_eq(mbedtls_ssl_conf_own_cert(c, &d->cert, &d->key), 0);
    mbedtls_ssl_conf_session_tickets(c, MBEDTLS_SSL_SESSION_TICKETS_ENABLED);
    mbedtls_ssl_conf_tls13_enable_signal_new_session_tickets(
        c, MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED);
    mbedtls_ssl_conf_tls13_key_exchange_modes(c, kex_modes);
}

static void
device_fini(struct device *d)
{
    mbedtls_ssl_session_free(&d->session);
    mbedtls_ssl_config_free(&d->conf);
    mbedtls_x509_crt_free(&d->ca);
    mbedtls_x509_crt_free(&d->cert);
    mbedtls_pk_free(&d->key);
}

/* ---- one connection, pumped between the two in memory ---- */
struct pipe {
    struct evbuffer *to_server, *to_client;
    unsigned char hello[1024]; /* the first bytes the server sent: its ServerHello */
    size_t nhello;
    unsigned char *client_hello; /* where to keep the first bytes the client sent */
    size_t nclient_hello, client_hello_room;
};

static int
client_send(void *arg, const unsigned char *buf, size_t len)
{
    struct pipe *p = arg;
    evbuffer_add(p->to_server, buf, len);
    size_t room = p->client_hello_room - p->nclient_hello, take = len < room ? len : room;
    if (take) memcpy(p->client_hello + p->nclient_hello, buf, take);
    p->nclient_hello += take;
    return (int)len;
}

static int
client_recv(void *arg, unsigned char *buf, size_t len)
{
    struct pipe *p = arg;
    int n = evbuffer_remove(p->to_client, buf, len);
    if (n <= 0) return MBEDTLS_ERR_SSL_WANT_READ;
    size_t room = sizeof(p->hello) - p->nhello, take = (size_t)n < room ? (size_t)n : room;
    memcpy(p->hello + p->nhello, buf, take);
    p->nhello += take;
    return n;
}

struct outcome {
    bool ok;        /* both sides finished the handshake */
    bool resumed;   /* the ServerHello accepted a pre_shared_key */
    bool key_share; /* ... and has a key share: (EC)DHE, forward secrecy */
    char cn[64];    /* the identity lunamq sees ("" none) */
    char username[64];
    char why[320]; /* lunamq's reason when it failed */
};

/* The extension types 41 (pre_shared_key) and 51 (key_share) in the ServerHello. */
static void
read_server_hello(const struct pipe *p, struct outcome *o)
{
    const unsigned char *m = p->hello;
    size_t n = p->nhello;
    ck_assert_uint_ge(n, 5 + 4 + 2 + 32 + 1);
    ck_assert_uint_eq(m[0], 0x16); /* handshake record */
    ck_assert_uint_eq(m[5], 0x02); /* ServerHello */
    size_t at = 5 + 4 + 2 + 32;
    at += 1 + m[at] + 2 + 1; /* session id, suite, compression */
    ck_assert_uint_le(at + 2, n);
    size_t end = at + 2 + ((size_t)m[at] << 8 | m[at + 1]);
    ck_assert_uint_le(end, n);
    for (at += 2; at + 4 <= end; at += 4 + ((size_t)m[at + 2] << 8 | m[at + 3])) {
        unsigned type = (unsigned)m[at] << 8 | m[at + 1];
        if (type == 41) o->resumed = true;
        if (type == 51) o->key_share = true;
    }
}

/* The ClientHello record the last handshake() sent. */
static unsigned char client_hello[4096];
static size_t nclient_hello;

/* Connect d, offering its last ticket if it has one; keep the ticket it gets. */
static struct outcome
handshake(struct tls_ctx *ctx, struct device *d)
{
    struct outcome o = {0};
    struct pipe p = {.to_server = evbuffer_new(),
                     .to_client = evbuffer_new(),
                     .client_hello = client_hello,
                     .client_hello_room = sizeof(client_hello)};
    struct evbuffer *plain = evbuffer_new();
    struct tls_conn *t = tls_conn_new(ctx, p.to_server, p.to_client);
    ck_assert_ptr_nonnull(t);
    mbedtls_ssl_context cli;
    mbedtls_ssl_init(&cli);
    ck_assert_int_eq(mbedtls_ssl_setup(&cli, &d->conf), 0);
    ck_assert_int_eq(mbedtls_ssl_set_hostname(&cli, "localhost"), 0);
    mbedtls_ssl_set_bio(&cli, &p, client_send, client_recv, NULL);
    if (d->has_session) ck_assert_int_eq(mbedtls_ssl_set_session(&cli, &d->session), 0);

    char *why = o.why;
    enum tls_status st = TLS_HANDSHAKING;
    int crc = MBEDTLS_ERR_SSL_WANT_READ;
    for (int i = 0; i < 50 && st != TLS_FAILED; i++) { /* a handshake is a few flights */
        if (crc == MBEDTLS_ERR_SSL_WANT_READ || crc == MBEDTLS_ERR_SSL_WANT_WRITE)
            crc = mbedtls_ssl_handshake(&cli);
        else if (crc != 0)
            break;
        st = tls_conn_input(t, plain, why, sizeof(o.why));
        if (crc == 0 && st == TLS_OK) break;
    }
    o.ok = crc == 0 && st == TLS_OK;
    if (o.ok) {
        /* the NewSessionTicket, already sent: the first read sees it, the second
         * takes it in and says so */
        unsigned char buf[64];
        for (int i = 0; i < 3; i++)
            if (mbedtls_ssl_read(&cli, buf, sizeof(buf)) ==
                MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) {
                mbedtls_ssl_session_free(&d->session);
                mbedtls_ssl_session_init(&d->session);
                d->has_session = mbedtls_ssl_get_session(&cli, &d->session) == 0;
                break;
            }
        const struct tls_identity *id = tls_conn_identity(t);
        snprintf(o.cn, sizeof(o.cn), "%s", id && id->cn ? id->cn : "");
        snprintf(o.username, sizeof(o.username), "%s", tls_conn_username(t));
        read_server_hello(&p, &o);
    }
    nclient_hello = p.nclient_hello;
    mbedtls_ssl_free(&cli);
    tls_conn_free(t);
    evbuffer_free(plain);
    evbuffer_free(p.to_server);
    evbuffer_free(p.to_client);
    return o;
}

/* ---- TLS 1.3 key exchange modes ---- */

/* A device that allows psk_ke only (constrained devices do, to skip the ECDHE):
 * it resumes without a key share, and lunamq still knows which device it is. */
START_TEST(test_psk_ke_only_resumes_with_identity)
{
    struct tls_ctx *ctx = server_ctx();
    struct device d;
    device_init(&d, "dev1",
                MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL |
                    MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK);
    struct outcome o = handshake(ctx, &d);
    ck_assert(o.ok && !o.resumed && o.key_share); /* the first one: a full handshake */
    ck_assert_str_eq(o.cn, "dev1");
    ck_assert(d.has_session);
    for (int i = 0; i < 2; i++) { /* and the ticket a resumption gets resumes too */
        o = handshake(ctx, &d);
        ck_assert_msg(o.ok && o.resumed, "resumption %d: ok %d resumed %d (%s)", i, o.ok, o.resumed,
                      o.why);
        ck_assert_msg(!o.key_share, "psk_ke asked for, psk_dhe_ke given");
        ck_assert_str_eq(o.cn, "dev1");
        ck_assert_str_eq(o.username, "dev1");
    }
    device_fini(&d);
    tls_ctx_unref(ctx);
}
END_TEST

/* The ticket the last ClientHello offered. */
static struct tls_hello
offered(void)
{
    struct tls_hello h;
    ck_assert_uint_gt(nclient_hello, 5);
    size_t len = (size_t)client_hello[3] << 8 | client_hello[4];
    ck_assert_uint_le(5 + len, nclient_hello);
    ck_assert(tls_hello_parse(client_hello + 5, len, &h));
    return h;
}

/* A psk_ke handshake on a ticket that failed once (mbedTLS found it unusable after
 * our check passed): that ticket gets the ordinary configuration from then on, and
 * so a full handshake, not the same failure again. */
START_TEST(test_psk_ke_failure_falls_back_next_time)
{
    struct tls_ctx *ctx = server_ctx();
    struct device d;
    device_init(&d, "dev1",
                MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL |
                    MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK);
    ck_assert(handshake(ctx, &d).ok);
    unsigned char saved[4096];
    size_t n;
    ck_assert_int_eq(mbedtls_ssl_session_save(&d.session, saved, sizeof(saved), &n), 0);
    struct outcome o = handshake(ctx, &d);
    ck_assert(o.ok && o.resumed && !o.key_share);
    struct tls_hello h = offered();
    ck_assert_uint_eq(h.psk_modes, MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK);
    ck_assert_ptr_nonnull(h.identity);
    tls_tickets_note_psk_ke_failure(h.identity, h.identity_len);

    mbedtls_ssl_session_free(&d.session);
    mbedtls_ssl_session_init(&d.session);
    ck_assert_int_eq(mbedtls_ssl_session_load(&d.session, saved, n), 0);
    o = handshake(ctx, &d);
    ck_assert(o.ok && !o.resumed && o.key_share); /* mbedTLS's choice: a full handshake */
    ck_assert_str_eq(o.cn, "dev1");
    o = handshake(ctx, &d); /* the new ticket is another one: psk_ke again */
    ck_assert(o.ok && o.resumed && !o.key_share);
    device_fini(&d);
    tls_ctx_unref(ctx);
}
END_TEST

/* Every truncation of a real ClientHello is refused, none is read past its end
 * (the sanitizer build checks the second). */
START_TEST(test_hello_parse_bounds)
{
    struct tls_ctx *ctx = server_ctx();
    struct device d;
    device_init(&d, "dev1", MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_ALL);
    ck_assert(handshake(ctx, &d).ok);
    ck_assert(handshake(ctx, &d).ok); /* this one offers a ticket */
    struct tls_hello h = offered();
    ck_assert_uint_eq(h.psk_modes, MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_ALL);
    ck_assert_uint_gt(h.identity_len, 100);
    size_t len = (size_t)client_hello[3] << 8 | client_hello[4];
    for (size_t cut = 0; cut < len; cut++) {
        unsigned char *copy = malloc(cut ? cut : 1); /* exact size: ASan sees an overrun */
        memcpy(copy, client_hello + 5, cut);
        ck_assert_msg(!tls_hello_parse(copy, cut, &h), "%zu of %zu bytes taken", cut, len);
        free(copy);
    }
    device_fini(&d);
    tls_ctx_unref(ctx);
}
END_TEST

/* Both offered: psk_dhe_ke, the one with forward secrecy. */
START_TEST(test_both_modes_offered_gets_psk_dhe_ke)
{
    struct tls_ctx *ctx = server_ctx();
    struct device d;
    device_init(&d, "dev1", MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_ALL);
    ck_assert(handshake(ctx, &d).ok);
    struct outcome o = handshake(ctx, &d);
    ck_assert(o.ok && o.resumed && o.key_share);
    ck_assert_str_eq(o.cn, "dev1");
    device_fini(&d);
    tls_ctx_unref(ctx);
}
END_TEST

/* psk_dhe_ke only (OpenSSL's default) */
START_TEST(test_psk_dhe_ke_only)
{
    struct tls_ctx *ctx = server_ctx();
    struct device d;
    device_init(&d, "dev1", MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL_ALL);
    ck_assert(handshake(ctx, &d).ok);
    struct outcome o = handshake(ctx, &d);
    ck_assert(o.ok && o.resumed && o.key_share);
    ck_assert_str_eq(o.cn, "dev1");
    device_fini(&d);
    tls_ctx_unref(ctx);
}
END_TEST

/* ---- reloads and revocation ---- */

/* A reload is a new tls_ctx, the old one released after: tickets stay valid, until the
 * new CRL revokes the certificate a ticket carries. Then the resumption is refused and
 * the full handshake refuses the device. */
START_TEST(test_reload_keeps_tickets_until_revoked)
{
    struct tls_ctx *ctx = server_ctx();
    struct device d;
    device_init(&d, "dev3", MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_ALL);
    ck_assert(handshake(ctx, &d).ok);
    unsigned char saved[4096]; /* the ticket from before both reloads */
    size_t n;
    ck_assert_int_eq(mbedtls_ssl_session_save(&d.session, saved, sizeof(saved), &n), 0);

    struct tls_ctx *reloaded = server_ctx();
    tls_ctx_unref(ctx);
    struct outcome o = handshake(reloaded, &d);
    ck_assert(o.ok && o.resumed);
    ck_assert_str_eq(o.cn, "dev3");

    revoke_device("dev3");
    struct tls_ctx *revoking = server_ctx();
    tls_ctx_unref(reloaded);
    o = handshake(revoking, &d); /* the ticket the last resumption gave */
    ck_assert(!o.ok);
    ck_assert_msg(strstr(o.why, "revoked"), "%s", o.why); /* by the full handshake */
    mbedtls_ssl_session_free(&d.session);
    mbedtls_ssl_session_init(&d.session);
    ck_assert_int_eq(mbedtls_ssl_session_load(&d.session, saved, n), 0);
    o = handshake(revoking, &d); /* the one from before the first reload */
    ck_assert(!o.ok);
    ck_assert_msg(strstr(o.why, "revoked"), "%s", o.why);
    device_fini(&d);
    tls_ctx_unref(revoking);
}
END_TEST

/* The keys live while some tls_ctx holds them: after the last one goes (shutdown),
 * a new one makes new keys, and old tickets open no more. */
START_TEST(test_keys_go_with_the_last_ctx)
{
    struct tls_ctx *ctx = server_ctx();
    struct device d;
    device_init(&d, "dev1", MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_ALL);
    ck_assert(handshake(ctx, &d).ok);
    tls_ctx_unref(ctx);
    ctx = server_ctx();
    struct outcome o = handshake(ctx, &d);
    ck_assert(o.ok && !o.resumed); /* a full handshake instead */
    ck_assert_str_eq(o.cn, "dev1");
    device_fini(&d);
    tls_ctx_unref(ctx);
}
END_TEST

/* ---- key rotation ---- */

/* Our sealing key rotates like mbedTLS's: a ticket sealed under the previous key
 * still opens, one sealed under the key before that does not. */
START_TEST(test_sealing_key_rotation)
{
    struct tls_ctx *ctx = server_ctx();
    struct device d;
    device_init(&d, "dev1", MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_ALL);
    ck_assert(handshake(ctx, &d).ok);
    unsigned char saved[4096];
    size_t n;
    ck_assert_int_eq(mbedtls_ssl_session_save(&d.session, saved, sizeof(saved), &n), 0);

    tls_tickets_rotate();
    struct outcome o = handshake(ctx, &d);
    ck_assert(o.ok && o.resumed); /* sealed under the previous key */
    ck_assert_str_eq(o.cn, "dev1");
    o = handshake(ctx, &d); /* and the new ticket is sealed under the current one */
    ck_assert(o.ok && o.resumed);

    tls_tickets_rotate();
    mbedtls_ssl_session_free(&d.session);
    mbedtls_ssl_session_init(&d.session);
    ck_assert_int_eq(mbedtls_ssl_session_load(&d.session, saved, n), 0);
    o = handshake(ctx, &d); /* the first ticket: its key is two rotations old */
    ck_assert(o.ok && !o.resumed);
    ck_assert_str_eq(o.cn, "dev1");
    device_fini(&d);
    tls_ctx_unref(ctx);
}
END_TEST

/* ---- the record-buffer allocator (tls_mem.c) ---- */

#define RECORD_BUF 16717 /* what mbedTLS 3.6 asks for a record buffer */

/* More buffers than the first versions' 64 regions held (4096 connections): every one
 * comes zeroed from a slot, and comes back zeroed after being dirtied and freed. */
START_TEST(test_mem_slots_zeroed_and_recycled)
{
    if (!tls_mem_install()) return; /* a packaged mbedTLS: calloc serves it all */
    enum { N = 10000 };
    static unsigned char *b[N];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            b[i] = mbedtls_calloc(1, RECORD_BUF);
            ck_assert_ptr_nonnull(b[i]);
            for (size_t k = 0; k < RECORD_BUF; k += 997) ck_assert_uint_eq(b[i][k], 0);
            ck_assert_uint_eq(b[i][RECORD_BUF - 1], 0);
            memset(b[i], 0xa5, RECORD_BUF);
        }
        ck_assert_uint_eq(tls_mem_slots_used(), N); /* none fell back to calloc */
        for (int i = 0; i < N; i++) mbedtls_free(b[i]);
        ck_assert_uint_eq(tls_mem_slots_used(), 0);
    }
    unsigned char *small = mbedtls_calloc(1, 100); /* not a slot: calloc's */
    ck_assert_ptr_nonnull(small);
    mbedtls_free(small);
}
END_TEST

/* release gives back the pages of an owner's buffers past their first, and only its
 * own: the first page keeps its bytes, the rest reads as zero; another owner's buffer
 * and a buffer freed meanwhile are left alone. */
START_TEST(test_mem_release_keeps_first_page_and_others)
{
    if (!tls_mem_install()) return;
    struct tls_mem_owner a = {0}, other = {0};
    tls_mem_set_owner(&a);
    unsigned char *in = mbedtls_calloc(1, RECORD_BUF), *out = mbedtls_calloc(1, RECORD_BUF);
    tls_mem_set_owner(&other);
    unsigned char *theirs = mbedtls_calloc(1, RECORD_BUF);
    tls_mem_set_owner(NULL);
    ck_assert_ptr_eq(a.buf[0], in);
    ck_assert_ptr_eq(a.buf[1], out);
    ck_assert_ptr_eq(other.buf[0], theirs);
    memset(in, 1, RECORD_BUF);
    memset(out, 2, RECORD_BUF);
    memset(theirs, 3, RECORD_BUF);
    tls_mem_release(&a);
    ck_assert_uint_eq(in[0], 1);
    ck_assert_uint_eq(in[3000], 1); /* within the slot's first page */
    ck_assert_uint_eq(in[RECORD_BUF - 1], 0);
    ck_assert_uint_eq(out[10000], 0);
    ck_assert_uint_eq(theirs[RECORD_BUF - 1], 3);
    mbedtls_free(out); /* its entry goes: a later release must not touch the slot */
    ck_assert_ptr_null(a.buf[1]);
    tls_mem_set_owner(&other);
    unsigned char *reused = mbedtls_calloc(1, RECORD_BUF);
    tls_mem_set_owner(NULL);
    memset(reused, 4, RECORD_BUF);
    tls_mem_release(&a);
    ck_assert_uint_eq(reused[RECORD_BUF - 1], 4);
    mbedtls_free(in);
    mbedtls_free(theirs);
    mbedtls_free(reused);
}
END_TEST

Suite *
suite_tls(void)
{
    Suite *s = suite_create("tls");
    TCase *tc = tcase_create("tls13_key_exchange_modes");
    tcase_add_unchecked_fixture(tc, pki_make, pki_remove);
    tcase_add_test(tc, test_psk_ke_only_resumes_with_identity);
    tcase_add_test(tc, test_both_modes_offered_gets_psk_dhe_ke);
    tcase_add_test(tc, test_psk_dhe_ke_only);
    tcase_add_test(tc, test_psk_ke_failure_falls_back_next_time);
    tcase_add_test(tc, test_hello_parse_bounds);
    suite_add_tcase(s, tc);
    tc = tcase_create("reload");
    tcase_add_unchecked_fixture(tc, pki_make, pki_remove);
    tcase_add_test(tc, test_reload_keeps_tickets_until_revoked);
    tcase_add_test(tc, test_keys_go_with_the_last_ctx);
    suite_add_tcase(s, tc);
    tc = tcase_create("rotation");
    tcase_add_unchecked_fixture(tc, pki_make, pki_remove);
    tcase_add_test(tc, test_sealing_key_rotation);
    suite_add_tcase(s, tc);
    tc = tcase_create("record_buffers");
    tcase_add_test(tc, test_mem_slots_zeroed_and_recycled);
    tcase_add_test(tc, test_mem_release_keeps_first_page_and_others);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
