/* SPDX-License-Identifier: MIT
 *
 * tls: server-side TLS 1.2/1.3 on mbedTLS 3.6, with the connection's evbuffers as
 * the record layer's "socket"; and the client side, for bridges. Session tickets (TLS 1.2 and 1.3)
 * let a device resume without a full handshake; their keys are the process's (tls_tickets.c), so
 * tickets survive a reload, and each resumption checks the certificate the ticket
 * carries against this tls_ctx (its CA set and CRL): a device revoked by a new CRL
 * cannot come back by resumption. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crl.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>
#include <psa/crypto.h>

#include "conf.h"
#include "lq.h"
#include "tls.h"
#include "tls_mem.h"
#include "tls_tickets.h"
#include "tls_trust.h"

#define MAX_SUITES 64

struct tls_ctx {
    unsigned refs;
    mbedtls_ssl_config conf;
    mbedtls_x509_crt cert; /* own chain */
    mbedtls_pk_context key;
    mbedtls_x509_crt ca;
    mbedtls_x509_crl crl;
    struct tls_trust *trust; /* verified device certificates; NULL: mbedTLS's own path */
    /* conf without the certificate mode, for a psk_ke-only resumption (look_at_hello);
     * a copy sharing conf's allocations: never freed itself */
    mbedtls_ssl_config conf_psk;
    bool tickets;                          /* holds a reference to the ticket keys */
    bool peer_required;                    /* require_certificate: tickets carry one */
    uint8_t ca_hash[TLS_TICKET_CA_DIGEST]; /* which CA set verified a ticket's certificate */
    int suites[MAX_SUITES + 1];            /* zero-terminated; unused when suites[0] == 0 */
    uint32_t handshake_timeout_ms;
    enum { USER_NONE, USER_CN, USER_SUBJECT } username;
    bool client;       /* a client's: bridges, lunamq-bench */
    bool insecure;     /* client: the server's chain is verified, its name is not */
    char *alpn_names;  /* client: the ALPN list, its commas made NULs */
    const char **alpn; /* NULL-terminated, into alpn_names; NULL: none */
};

struct tls_conn {
    struct tls_ctx *ctx;
    mbedtls_ssl_context ssl;
    struct tls_mem_owner mem;     /* its record buffers (tls_mem.c) */
    struct tls_trust_state trust; /* its certificate's verification (tls_trust.c) */
    struct evbuffer *rx, *tx;
    bool established;
    struct tls_identity *id;
    unsigned char *resumed_der; /* the certificate a resumption ticket carried */
    size_t resumed_der_len;
    unsigned char *peer_der; /* the certificate verified in this handshake, until it ends */
    size_t peer_der_len;
    bool hello_seen;          /* look_at_hello is done */
    uint8_t psk_modes;        /* TLS 1.3 PSK key exchange modes its ClientHello offered */
    unsigned char *psk_ke_on; /* on conf_psk: the ticket that put it there, until done */
    size_t psk_ke_on_len;
};

/* The connection whose handshake is running: the ticket callbacks have no other
 * way to reach it (the loop is single-threaded). */
static _Thread_local struct tls_conn *current; /* per thread: see hs_worker.c */

static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;
static bool initialised;

static const char *
strerr(int rc, char *buf, size_t n)
{
    mbedtls_strerror(rc, buf, n);
    return buf;
}

const char *
tls_library(void)
{
    static char buf[96];
    if (!buf[0]) {
        char v[32];
        mbedtls_version_get_string(v);
#if defined(LUNAMQ_MBEDTLS_OWN_BUILD)
        snprintf(buf, sizeof(buf), "mbedTLS %s (lunamq's build)", v);
#else
        snprintf(buf, sizeof(buf), "mbedTLS %s (packaged: slower handshakes)", v);
#endif
    }
    return buf;
}

int
tls_global_init(char *err, size_t errlen)
{
    if (initialised) return 0;
    tls_mem_install(); /* before mbedTLS allocates anything */
    psa_status_t ps = psa_crypto_init();
    if (ps != PSA_SUCCESS) {
        snprintf(err, errlen, "TLS: psa_crypto_init failed (%d)", (int)ps);
        return -1;
    }
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    static const char pers[] = "lunamq";
    int rc = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
                                   (const unsigned char *)pers, sizeof(pers) - 1);
    if (rc) {
        char e[128];
        snprintf(err, errlen, "TLS: random generator: %s", strerr(rc, e, sizeof(e)));
        return -1;
    }
    initialised = true;
    return 0;
}

/* ---- loading a listener's material ---- */

__attribute__((format(printf, 5, 6))) static struct tls_ctx *
load_fail(struct tls_ctx *ctx, char *err, size_t errlen, int rc, const char *fmt, ...)
{
    char msg[512], e[160] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (rc) mbedtls_strerror(rc, e, sizeof(e));
    snprintf(err, errlen, "%s%s%s", msg, rc ? ": " : "", e);
    tls_ctx_unref(ctx);
    return NULL;
}

/* "TLS_AES_128_GCM_SHA256" (IANA) or "TLS1-3-AES-128-GCM-SHA256" (mbedTLS); for
 * TLS 1.2 "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" or the same with dashes. */
static int
suite_id(const char *name, bool tls13)
{
    char buf[128];
    if (strlen(name) >= sizeof(buf) - 8) return 0;
    if (tls13 && strncmp(name, "TLS_", 4) == 0)
        snprintf(buf, sizeof(buf), "TLS1-3-%s", name + 4);
    else
        snprintf(buf, sizeof(buf), "%s", name);
    for (char *p = buf; *p; p++)
        if (*p == '_') *p = '-';
    int id = mbedtls_ssl_get_ciphersuite_id(buf);
    bool is13 = (id >> 8) == 0x13;
    return id && is13 == tls13 ? id : 0;
}

/* Append the suites of one version: the configured list, or mbedTLS's defaults. */
static int
add_suites(struct tls_ctx *ctx, size_t *n, const char *list, bool tls13, char *bad, size_t badlen)
{
    if (!list) {
        for (const int *s = mbedtls_ssl_list_ciphersuites(); *s && *n < MAX_SUITES; s++)
            if (((*s >> 8) == 0x13) == tls13) ctx->suites[(*n)++] = *s;
        return 0;
    }
    char *copy = lq_xstrdup(list), *save = NULL;
    int rc = 0;
    for (char *t = strtok_r(copy, ":", &save); t; t = strtok_r(NULL, ":", &save)) {
        int id = suite_id(t, tls13);
        if (!id) {
            snprintf(bad, badlen, "%s", t);
            rc = -1;
            break;
        }
        if (*n < MAX_SUITES) ctx->suites[(*n)++] = id;
    }
    free(copy);
    return rc;
}

/* ---- session tickets carrying the client certificate (tls_tickets.c) ---- */

/* Each certificate of the peer's chain, once mbedTLS verified it (the top first).
 * tls_trust checks revocation (and remembers a verified chain) where it verifies.
 * TLS 1.2 writes its ticket before the session holds the peer's certificate
 * (mbedtls_ssl_get_peer_cert is NULL until the handshake ends): keep the one the
 * verification saw. */
static int
remember_peer(void *p, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    struct tls_ctx *ctx = p;
    if (ctx->trust) tls_trust_verify(ctx->trust, crt, depth, flags);
    if (depth != 0 || !current) return 0;
    free(current->peer_der);
    current->peer_der = lq_xmalloc(crt->raw.len);
    memcpy(current->peer_der, crt->raw.p, crt->raw.len);
    current->peer_der_len = crt->raw.len;
    return 0;
}

static struct tls_ticket_trust
trust_of(struct tls_ctx *ctx)
{
    return (struct tls_ticket_trust){
        .ca = ctx->peer_required ? &ctx->ca : NULL,
        .crl = ctx->crl.version ? &ctx->crl : NULL,
        .ca_hash = ctx->ca_hash,
    };
}

static int
ticket_write(void *p, const mbedtls_ssl_session *session, unsigned char *start,
             const unsigned char *end, size_t *tlen, uint32_t *lifetime)
{
    struct tls_ctx *ctx = p;
    const unsigned char *der = NULL;
    size_t der_len = 0;
    const mbedtls_x509_crt *peer = current ? mbedtls_ssl_get_peer_cert(&current->ssl) : NULL;
    if (current && current->peer_der) {
        der = current->peer_der;
        der_len = current->peer_der_len;
    } else if (peer) {
        der = peer->raw.p;
        der_len = peer->raw.len;
    } else if (current && current->resumed_der) { /* resumed: checked by ticket_parse */
        der = current->resumed_der;
        der_len = current->resumed_der_len;
    }
    struct tls_ticket_seal seal = {.der = der,
                                   .der_len = der_len,
                                   .ca_hash = ctx->ca_hash,
                                   .psk_modes = current ? current->psk_modes : 0};
    return tls_tickets_write(session, &seal, start, end, tlen, lifetime);
}

static int
ticket_parse(void *p, mbedtls_ssl_session *session, unsigned char *buf, size_t len)
{
    struct tls_ticket_trust trust = trust_of(p);
    unsigned char *der;
    size_t der_len;
    int rc = tls_tickets_parse(session, buf, len, &trust, &der, &der_len);
    if (rc || !current) {
        free(der);
        return rc;
    }
    free(current->resumed_der);
    current->resumed_der = der;
    current->resumed_der_len = der_len;
    return 0;
}

/* Every member initialised, so that tls_ctx_unref can free a half-loaded one. */
static struct tls_ctx *
ctx_alloc(void)
{
    struct tls_ctx *ctx = lq_xcalloc(1, sizeof(*ctx));
    ctx->refs = 1;
    mbedtls_ssl_config_init(&ctx->conf);
    mbedtls_x509_crt_init(&ctx->cert);
    mbedtls_pk_init(&ctx->key);
    mbedtls_x509_crt_init(&ctx->ca);
    mbedtls_x509_crl_init(&ctx->crl);
    return ctx;
}

struct tls_ctx *
tls_ctx_new(const struct tls_conf *tc, char *err, size_t errlen)
{
    int rc;
    if (!initialised && tls_global_init(err, errlen) < 0) return NULL;
    struct tls_ctx *ctx = ctx_alloc();
    ctx->handshake_timeout_ms = tc->handshake_timeout * 1000;
    ctx->username = tc->use_identity_as_username  ? USER_CN
                    : tc->use_subject_as_username ? USER_SUBJECT
                                                  : USER_NONE;

    const char *f = tc->file[TLS_CERTFILE];
    if ((rc = mbedtls_x509_crt_parse_file(&ctx->cert, f)))
        return load_fail(ctx, err, errlen, rc, "%s: certfile %s", tc->at[TLS_CERTFILE], f);
    f = tc->file[TLS_KEYFILE];
    if ((rc = mbedtls_pk_parse_keyfile(&ctx->key, f, NULL, mbedtls_ctr_drbg_random, &drbg)))
        return load_fail(ctx, err, errlen, rc, "%s: keyfile %s", tc->at[TLS_KEYFILE], f);
    if ((rc = mbedtls_pk_check_pair(&ctx->cert.pk, &ctx->key, mbedtls_ctr_drbg_random, &drbg)))
        return load_fail(ctx, err, errlen, 0, "%s: keyfile %s does not match certfile %s",
                         tc->at[TLS_KEYFILE], f, tc->file[TLS_CERTFILE]);
    bool have_ca = false;
    if ((f = tc->file[TLS_CAFILE])) {
        if ((rc = mbedtls_x509_crt_parse_file(&ctx->ca, f)))
            return load_fail(ctx, err, errlen, rc, "%s: cafile %s", tc->at[TLS_CAFILE], f);
        have_ca = true;
    }
    if ((f = tc->file[TLS_CAPATH])) {
        rc = mbedtls_x509_crt_parse_path(&ctx->ca, f);
        if (rc < 0) return load_fail(ctx, err, errlen, rc, "%s: capath %s", tc->at[TLS_CAPATH], f);
        if (rc > 0) lq_log(LQ_LOG_WARNING, "capath %s: %d files did not parse", f, rc);
        if (ctx->ca.version == 0)
            return load_fail(ctx, err, errlen, 0, "%s: capath %s: no CA certificate in it",
                             tc->at[TLS_CAPATH], f);
        have_ca = true;
    }
    bool have_crl = false;
    if ((f = tc->file[TLS_CRLFILE])) {
        if ((rc = mbedtls_x509_crl_parse_file(&ctx->crl, f)))
            return load_fail(ctx, err, errlen, rc, "%s: crlfile %s", tc->at[TLS_CRLFILE], f);
        have_crl = true;
    }

    mbedtls_ssl_config *c = &ctx->conf;
    if ((rc = mbedtls_ssl_config_defaults(c, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                          MBEDTLS_SSL_PRESET_DEFAULT)))
        return load_fail(ctx, err, errlen, rc, "TLS configuration");
    mbedtls_ssl_conf_rng(c, mbedtls_ctr_drbg_random, &drbg);
    mbedtls_ssl_conf_min_tls_version(c, tc->min_version == 13 ? MBEDTLS_SSL_VERSION_TLS1_3
                                                              : MBEDTLS_SSL_VERSION_TLS1_2);
    mbedtls_ssl_conf_max_tls_version(c, MBEDTLS_SSL_VERSION_TLS1_3);
    if ((rc = mbedtls_ssl_conf_own_cert(c, &ctx->cert, &ctx->key)))
        return load_fail(ctx, err, errlen, rc, "%s: certfile", tc->at[TLS_CERTFILE]);
    if (have_ca && tc->require_certificate) {
        char why[256];
        ctx->trust = tls_trust_new(&ctx->ca, have_crl ? &ctx->crl : NULL, why, sizeof(why));
#if defined(LUNAMQ_MBEDTLS_OWN_BUILD)
        if (!ctx->trust)
            lq_log(LQ_LOG_WARNING,
                   "%s: device certificates are verified in full at every handshake: %s",
                   tc->at[TLS_CAFILE] ? tc->at[TLS_CAFILE] : tc->at[TLS_CAPATH], why);
#endif
    }
    if (ctx->trust)
        tls_trust_configure(ctx->trust, c);
    else if (have_ca)
        mbedtls_ssl_conf_ca_chain(c, &ctx->ca, have_crl ? &ctx->crl : NULL);
    mbedtls_ssl_conf_authmode(c, tc->require_certificate ? MBEDTLS_SSL_VERIFY_REQUIRED
                                                         : MBEDTLS_SSL_VERIFY_NONE);
    /* the CA list in CertificateRequest costs bytes and tells strangers who we trust */
    mbedtls_ssl_conf_cert_req_ca_list(c, MBEDTLS_SSL_CERT_REQ_CA_LIST_DISABLED);
    static const uint16_t groups[] = {
        MBEDTLS_SSL_IANA_TLS_GROUP_X25519, MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1,
        MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1, MBEDTLS_SSL_IANA_TLS_GROUP_NONE};
    mbedtls_ssl_conf_groups(c, groups);
#if defined(MBEDTLS_SSL_RENEGOTIATION) /* not compiled into our own build at all */
    mbedtls_ssl_conf_renegotiation(c, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#endif

    if (tc->ciphers || tc->ciphers_tls13) {
        size_t n = 0;
        char bad[128];
        if (add_suites(ctx, &n, tc->ciphers_tls13, true, bad, sizeof(bad)) < 0)
            return load_fail(ctx, err, errlen, 0,
                             "%s: ciphers_tls1.3: unknown TLS 1.3 cipher suite '%s'",
                             tc->ciphers_tls13_at ? tc->ciphers_tls13_at : "?", bad);
        if (add_suites(ctx, &n, tc->ciphers, false, bad, sizeof(bad)) < 0)
            return load_fail(ctx, err, errlen, 0, "%s: ciphers: unknown TLS 1.2 cipher suite '%s'",
                             tc->ciphers_at ? tc->ciphers_at : "?", bad);
        ctx->suites[n] = 0;
        mbedtls_ssl_conf_ciphersuites(c, ctx->suites);
    }

    if (tls_tickets_acquire(mbedtls_ctr_drbg_random, &drbg, err, errlen) < 0) {
        tls_ctx_unref(ctx);
        return NULL;
    }
    ctx->tickets = true;
    ctx->peer_required = tc->require_certificate;
    tls_tickets_ca_digest(have_ca ? &ctx->ca : NULL, ctx->ca_hash);
    mbedtls_ssl_conf_verify(c, remember_peer, ctx);
    mbedtls_ssl_conf_session_tickets_cb(c, ticket_write, ticket_parse, ctx);
    mbedtls_ssl_conf_tls13_key_exchange_modes(c, MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_ALL);
    mbedtls_ssl_conf_new_session_tickets(c, 1);
    ctx->conf_psk = ctx->conf; /* last: every setting above, and then one less mode */
    mbedtls_ssl_conf_tls13_key_exchange_modes(&ctx->conf_psk,
                                              MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_ALL);
    return ctx;
}

/* A client's verify callback: with insecure, a certificate for another name passes
 * when its chain does (the name is still sent, as SNI, for a server with several). */
static int
client_verify(void *p, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    (void)crt;
    const struct tls_ctx *ctx = p;
    if (ctx->insecure && depth == 0) *flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH;
    return 0;
}

/* "h2,mqtt" into ctx->alpn; false on an empty or overlong name. */
static bool
client_alpn(struct tls_ctx *ctx, const char *list)
{
    size_t n = 1;
    for (const char *p = list; *p; p++) n += *p == ',';
    ctx->alpn_names = lq_xstrdup(list);
    ctx->alpn = lq_xcalloc(n + 1, sizeof(*ctx->alpn));
    char *name = ctx->alpn_names;
    for (size_t i = 0; i < n; i++) {
        char *comma = strchr(name, ',');
        if (comma) *comma = '\0';
        size_t len = strlen(name);
        if (len == 0 || len > 255) return false;
        ctx->alpn[i] = name;
        name = comma ? comma + 1 : name + len;
    }
    return true;
}

struct tls_ctx *
tls_client_ctx_new(const struct tls_client_conf *cc, char *err, size_t errlen)
{
    int rc;
    if (!initialised && tls_global_init(err, errlen) < 0) return NULL;
    struct tls_ctx *ctx = ctx_alloc();
    ctx->client = true;
    ctx->insecure = cc->insecure;
    ctx->handshake_timeout_ms = cc->handshake_timeout_ms ? cc->handshake_timeout_ms : 10000;
    const char *at = cc->at ? cc->at : "", *sep = cc->at ? ": " : "";
    if (!cc->cafile && !cc->capath)
        return load_fail(ctx, err, errlen, 0, "%s%sno cafile or capath to verify the server by", at,
                         sep);
    if (!cc->certfile != !cc->keyfile)
        return load_fail(ctx, err, errlen, 0, "%s%s%s without %s", at, sep,
                         cc->certfile ? "certfile" : "keyfile",
                         cc->certfile ? "keyfile" : "certfile");
    if (cc->cafile && (rc = mbedtls_x509_crt_parse_file(&ctx->ca, cc->cafile)))
        return load_fail(ctx, err, errlen, rc, "%s%scafile %s", at, sep, cc->cafile);
    if (cc->capath) {
        rc = mbedtls_x509_crt_parse_path(&ctx->ca, cc->capath);
        if (rc < 0) return load_fail(ctx, err, errlen, rc, "%s%scapath %s", at, sep, cc->capath);
        if (ctx->ca.version == 0)
            return load_fail(ctx, err, errlen, 0, "%s%scapath %s: no CA certificate in it", at, sep,
                             cc->capath);
    }
    mbedtls_ssl_config *c = &ctx->conf;
    if ((rc = mbedtls_ssl_config_defaults(c, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                          MBEDTLS_SSL_PRESET_DEFAULT)))
        return load_fail(ctx, err, errlen, rc, "TLS configuration");
    mbedtls_ssl_conf_rng(c, mbedtls_ctr_drbg_random, &drbg);
    mbedtls_ssl_conf_min_tls_version(c, cc->min_version == 13 ? MBEDTLS_SSL_VERSION_TLS1_3
                                                              : MBEDTLS_SSL_VERSION_TLS1_2);
    mbedtls_ssl_conf_max_tls_version(c, MBEDTLS_SSL_VERSION_TLS1_3);
    mbedtls_ssl_conf_ca_chain(c, &ctx->ca, NULL);
    mbedtls_ssl_conf_authmode(c, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_verify(c, client_verify, ctx);
    static const uint16_t groups[] = {
        MBEDTLS_SSL_IANA_TLS_GROUP_X25519, MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1,
        MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1, MBEDTLS_SSL_IANA_TLS_GROUP_NONE};
    mbedtls_ssl_conf_groups(c, groups);
    if (cc->certfile) {
        if ((rc = mbedtls_x509_crt_parse_file(&ctx->cert, cc->certfile)))
            return load_fail(ctx, err, errlen, rc, "%s%scertfile %s", at, sep, cc->certfile);
        if ((rc = mbedtls_pk_parse_keyfile(&ctx->key, cc->keyfile, NULL, mbedtls_ctr_drbg_random,
                                           &drbg)))
            return load_fail(ctx, err, errlen, rc, "%s%skeyfile %s", at, sep, cc->keyfile);
        /* a warning, not an error: lunamq-bench sends such a pair on purpose, to see a
         * server refuse it */
        if (mbedtls_pk_check_pair(&ctx->cert.pk, &ctx->key, mbedtls_ctr_drbg_random, &drbg))
            lq_log(LQ_LOG_WARNING,
                   "%s%skeyfile %s does not match certfile %s: servers will refuse it", at, sep,
                   cc->keyfile, cc->certfile);
        if ((rc = mbedtls_ssl_conf_own_cert(c, &ctx->cert, &ctx->key)))
            return load_fail(ctx, err, errlen, rc, "%s%scertfile %s", at, sep, cc->certfile);
    }
    if (cc->alpn) {
        if (!client_alpn(ctx, cc->alpn))
            return load_fail(ctx, err, errlen, 0,
                             "%s%salpn '%s': names of 1 to 255 bytes, separated by commas", at, sep,
                             cc->alpn);
        if ((rc = mbedtls_ssl_conf_alpn_protocols(c, ctx->alpn)))
            return load_fail(ctx, err, errlen, rc, "%s%salpn '%s'", at, sep, cc->alpn);
    }
    return ctx;
}

void
tls_ctx_unref(struct tls_ctx *ctx)
{
    if (!ctx || --ctx->refs) return;
    mbedtls_ssl_config_free(&ctx->conf);
    mbedtls_x509_crt_free(&ctx->cert);
    mbedtls_pk_free(&ctx->key);
    mbedtls_x509_crt_free(&ctx->ca);
    tls_trust_free(ctx->trust); /* before the CA list and CRLs it points into */
    mbedtls_x509_crl_free(&ctx->crl);
    if (ctx->tickets) tls_tickets_release();
    free(ctx->alpn);
    free(ctx->alpn_names);
    free(ctx);
}

uint32_t
tls_ctx_handshake_timeout_ms(const struct tls_ctx *ctx)
{
    return ctx->handshake_timeout_ms;
}

/* ---- one connection ---- */

static int
bio_send(void *arg, const unsigned char *buf, size_t len)
{
    struct tls_conn *t = arg;
    if (evbuffer_add(t->tx, buf, len) < 0) return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    return (int)len;
}

static int
bio_recv(void *arg, unsigned char *buf, size_t len)
{
    struct tls_conn *t = arg;
    int n = evbuffer_remove(t->rx, buf, len);
    return n > 0 ? n : MBEDTLS_ERR_SSL_WANT_READ;
}

struct tls_conn *
tls_conn_new(struct tls_ctx *ctx, struct evbuffer *rx, struct evbuffer *tx)
{
    struct tls_conn *t = lq_xcalloc(1, sizeof(*t));
    mbedtls_ssl_init(&t->ssl);
    tls_mem_set_owner(&t->mem); /* the record buffers it allocates are t's */
    int rc = mbedtls_ssl_setup(&t->ssl, &ctx->conf);
    tls_mem_set_owner(NULL);
    if (rc) {
        mbedtls_ssl_free(&t->ssl);
        free(t);
        return NULL;
    }
    ctx->refs++;
    t->ctx = ctx;
    t->rx = rx;
    t->tx = tx;
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    return t;
}

void
tls_conn_set_hostname(struct tls_conn *t, const char *host)
{
    if (host && mbedtls_ssl_set_hostname(&t->ssl, host) == 0) return;
    /* none, or too long for mbedTLS (255 bytes): insecure goes on without one (no SNI);
     * otherwise the name stays unset and the handshake fails for want of it */
    if (t->ctx->insecure) mbedtls_ssl_set_hostname(&t->ssl, NULL);
}

void
tls_identity_free(struct tls_identity *id)
{
    if (!id) return;
    free(id->subject);
    free(id->cn);
    free(id->serial);
    for (size_t i = 0; i < id->nsan; i++) free(id->san[i]);
    free(id->san);
    free(id);
}

static char *
dup_or_null(const char *s)
{
    return s ? lq_xstrdup(s) : NULL;
}

struct tls_identity *
tls_identity_dup(const struct tls_identity *id)
{
    if (!id) return NULL;
    struct tls_identity *d = lq_xcalloc(1, sizeof(*d));
    d->subject = dup_or_null(id->subject);
    d->cn = dup_or_null(id->cn);
    d->serial = dup_or_null(id->serial);
    memcpy(d->fingerprint, id->fingerprint, sizeof(d->fingerprint));
    d->san = id->nsan ? lq_xcalloc(id->nsan, sizeof(*d->san)) : NULL;
    for (size_t i = 0; i < id->nsan; i++) d->san[i] = lq_xstrdup(id->san[i]);
    d->nsan = id->nsan;
    return d;
}

void
tls_conn_set_tx(struct tls_conn *t, struct evbuffer *tx)
{
    t->tx = tx;
}

void
tls_conn_free(struct tls_conn *t)
{
    if (!t) return;
    mbedtls_ssl_free(&t->ssl);
    tls_identity_free(t->id);
    free(t->resumed_der);
    free(t->peer_der);
    free(t->psk_ke_on);
    tls_ctx_unref(t->ctx);
    free(t);
}

static char *
dup_len(const unsigned char *p, size_t n)
{
    char *s = lq_xmalloc(n + 1);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static struct tls_identity *
identity_of(const mbedtls_x509_crt *crt)
{
    struct tls_identity *id = lq_xcalloc(1, sizeof(*id));
    char buf[1024];
    if (mbedtls_x509_dn_gets(buf, sizeof(buf), &crt->subject) < 0) buf[0] = '\0';
    id->subject = lq_xstrdup(buf);
    for (const mbedtls_x509_name *n = &crt->subject; n; n = n->next)
        if (n->oid.p && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0) {
            free(id->cn); /* the last CN wins, as the most specific */
            id->cn = dup_len(n->val.p, n->val.len);
        }
    if (mbedtls_x509_serial_gets(buf, sizeof(buf), &crt->serial) < 0) buf[0] = '\0';
    id->serial = lq_xstrdup(buf);
    unsigned char md[32];
    mbedtls_sha256(crt->raw.p, crt->raw.len, md, 0);
    for (int i = 0; i < 32; i++)
        snprintf(id->fingerprint + 3 * i, sizeof(id->fingerprint) - 3 * (size_t)i,
                 i < 31 ? "%02X:" : "%02X", md[i]);
    for (const mbedtls_x509_sequence *s = &crt->subject_alt_names; s && s->buf.p; s = s->next) {
        mbedtls_x509_subject_alternative_name san;
        if (mbedtls_x509_parse_subject_alt_name(&s->buf, &san)) continue;
        const char *kind = san.type == MBEDTLS_X509_SAN_DNS_NAME                      ? "DNS:"
                           : san.type == MBEDTLS_X509_SAN_UNIFORM_RESOURCE_IDENTIFIER ? "URI:"
                                                                                      : NULL;
        if (kind) {
            const mbedtls_x509_buf *v = &san.san.unstructured_name;
            size_t kl = strlen(kind);
            char *e = lq_xmalloc(kl + v->len + 1);
            memcpy(e, kind, kl);
            memcpy(e + kl, v->p, v->len);
            e[kl + v->len] = '\0';
            id->san = lq_xrealloc(id->san, (id->nsan + 1) * sizeof(*id->san));
            id->san[id->nsan++] = e;
        }
        mbedtls_x509_free_subject_alt_name(&san);
    }
    return id;
}

static void
handshake_failure(struct tls_conn *t, int rc, char *why, size_t n)
{
    char e[160];
#if defined(MBEDTLS_ERR_SSL_CERTIFICATE_VERIFICATION_WITHOUT_HOSTNAME)
    if (rc == MBEDTLS_ERR_SSL_CERTIFICATE_VERIFICATION_WITHOUT_HOSTNAME) { /* 300 bytes of it */
        snprintf(why, n, "no server name to verify its certificate against");
        return;
    }
#endif
    mbedtls_strerror(rc, e, sizeof(e));
    uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
    if (flags && flags != (uint32_t)-1) {
        char v[256];
        int len = mbedtls_x509_crt_verify_info(v, sizeof(v), "", flags);
        while (len > 0 && (v[len - 1] == '\n' || v[len - 1] == ' ')) v[--len] = '\0';
        for (char *p = v; *p; p++)
            if (*p == '\n') *p = ';';
        if (t->ctx->client && rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED)
            snprintf(why, n, "certificate verify failed: %s", v); /* a bridge's last error */
        else
            snprintf(why, n, "%s (%s)", e, v);
    } else {
        snprintf(why, n, "%s", e);
    }
}

/* TLS 1.3 resumption. mbedTLS picks, in this order: psk_dhe_ke, a full handshake
 * with ECDHE and certificates, psk_ke. So a device that allows psk_ke alone (no
 * forward secrecy, and no ECDHE to pay for) would get a full handshake every time,
 * since it also sends a key share for when its ticket is refused. Before mbedTLS
 * reads the ClientHello we do: if it offers psk_ke alone and its ticket would resume
 * with psk_ke, the handshake runs on conf_psk, which has no certificate mode. Should
 * mbedTLS still find the ticket unusable (its ticket age check), that handshake
 * fails, and the ticket goes the ordinary way next time. False: the ClientHello's
 * record is not all here yet. */
static bool
look_at_hello(struct tls_conn *t)
{
    size_t have = evbuffer_get_length(t->rx);
    if (t->ctx->client) {
        t->hello_seen = true;
        return true;
    }
    if (have < 5) return false;
    const unsigned char *rec = evbuffer_pullup(t->rx, 5);
    size_t len = (size_t)rec[3] << 8 | rec[4];
    bool handshake = rec[0] == MBEDTLS_SSL_MSG_HANDSHAKE && len <= MBEDTLS_SSL_IN_CONTENT_LEN;
    if (handshake && have < 5 + len) return false;
    t->hello_seen = true;
    struct tls_hello h;
    if (!handshake || !tls_hello_parse(evbuffer_pullup(t->rx, 5 + len) + 5, len, &h)) return true;
    t->psk_modes = h.psk_modes;
    struct tls_ticket_trust trust = trust_of(t->ctx);
    uint8_t allowed;
    if (h.psk_modes != MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK || !h.identity ||
        !tls_tickets_would_resume(h.identity, h.identity_len, &trust, &allowed) ||
        !(allowed & MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK))
        return true;
    mbedtls_ssl_free(&t->ssl); /* it has read nothing yet */
    mbedtls_ssl_init(&t->ssl);
    tls_mem_set_owner(&t->mem); /* the record buffers it allocates are t's */
    if (mbedtls_ssl_setup(&t->ssl, &t->ctx->conf_psk) == 0) {
        t->psk_ke_on = lq_xmalloc(h.identity_len);
        memcpy(t->psk_ke_on, h.identity, h.identity_len);
        t->psk_ke_on_len = h.identity_len;
    } else if (mbedtls_ssl_setup(&t->ssl, &t->ctx->conf)) {
        tls_mem_set_owner(NULL);
        return true; /* out of memory: the handshake fails on the unset context */
    }
    tls_mem_set_owner(NULL);
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    return true;
}

enum tls_status
tls_conn_input(struct tls_conn *t, struct evbuffer *plain, char *why, size_t n)
{
    int rc;
    if (!t->established) {
        if (!t->hello_seen && !look_at_hello(t)) return TLS_HANDSHAKING;
        current = t;
        tls_trust_step(&t->trust);
        rc = mbedtls_ssl_handshake(&t->ssl);
        tls_trust_step(NULL);
        current = NULL;
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
            return TLS_HANDSHAKING;
        if (rc) {
            if (t->psk_ke_on) tls_tickets_note_psk_ke_failure(t->psk_ke_on, t->psk_ke_on_len);
            handshake_failure(t, rc, why, n);
            return TLS_FAILED;
        }
        t->established = true;
        free(t->peer_der); /* its tickets are written */
        t->peer_der = NULL;
        free(t->psk_ke_on);
        t->psk_ke_on = NULL;
        const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&t->ssl);
        if (peer) {
            t->id = identity_of(peer);
        } else if (t->resumed_der) { /* TLS 1.3 resumption: the ticket's certificate */
            mbedtls_x509_crt crt;
            mbedtls_x509_crt_init(&crt);
            if (mbedtls_x509_crt_parse_der(&crt, t->resumed_der, t->resumed_der_len) == 0)
                t->id = identity_of(&crt);
            mbedtls_x509_crt_free(&crt);
        }
    }
    for (;;) {
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(plain, 16384, &v, 1) < 1) {
            snprintf(why, n, "out of memory");
            return TLS_FAILED;
        }
        rc = mbedtls_ssl_read(&t->ssl, v.iov_base, v.iov_len);
        if (rc > 0) {
            v.iov_len = (size_t)rc;
            evbuffer_commit_space(plain, &v, 1);
            continue;
        }
        evbuffer_commit_space(plain, &v, 0);
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) return TLS_OK;
        if (rc == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) continue; /* client side only */
        if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) return TLS_CLOSED;
        char e[160];
        snprintf(why, n, "TLS: %s", strerr(rc, e, sizeof(e)));
        return TLS_FAILED;
    }
}

int
tls_conn_output(struct tls_conn *t, struct evbuffer *plain)
{
    size_t left;
    while ((left = evbuffer_get_length(plain)) > 0) {
        size_t chunk = left < 16384 ? left : 16384;
        unsigned char *p = evbuffer_pullup(plain, (ssize_t)chunk);
        int rc = mbedtls_ssl_write(&t->ssl, p, chunk);
        if (rc < 0) return -1; /* the send callback never blocks: a real error */
        evbuffer_drain(plain, (size_t)rc);
    }
    return 0;
}

/* Between records nothing lives in the record buffers past their headers: their
 * pages go back to the kernel (tls_mem.c; with a packaged mbedTLS, which has no
 * allocator hook, they stay). */
void
tls_conn_shrink(struct tls_conn *t)
{
    if (t->established && !mbedtls_ssl_get_bytes_avail(&t->ssl) &&
        !mbedtls_ssl_check_pending(&t->ssl))
        tls_mem_release(&t->mem); /* our send callback never leaves output behind */
}

void
tls_conn_shutdown(struct tls_conn *t)
{
    if (t->established) mbedtls_ssl_close_notify(&t->ssl);
}

bool
tls_conn_established(const struct tls_conn *t)
{
    return t->established;
}

const struct tls_identity *
tls_conn_identity(const struct tls_conn *t)
{
    return t->id;
}

const char *
tls_conn_username(const struct tls_conn *t)
{
    switch (t->ctx->username) {
    case USER_CN: return t->id && t->id->cn ? t->id->cn : "";
    case USER_SUBJECT: return t->id ? t->id->subject : "";
    default: return NULL;
    }
}

const char *
tls_conn_describe(const struct tls_conn *t, char *buf, size_t n)
{
    snprintf(buf, n, "%s %s", mbedtls_ssl_get_version(&t->ssl),
             mbedtls_ssl_get_ciphersuite(&t->ssl));
    return buf;
}
