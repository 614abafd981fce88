/* SPDX-License-Identifier: MIT
 *
 * tls_tickets: the session-ticket keys of the whole process, and our ticket format.
 * The keys outlive every tls_ctx: a SIGHUP reload (new certificate, CA or CRL) keeps
 * every ticket valid, and each resumption checks the certificate its ticket carries
 * against the tls_ctx of the day instead (revoked, expired, or no longer issued by a
 * CA of the listener: refused, and mbedTLS falls back to a full handshake, whose
 * verification then says why). Keys are made by the first TLS listener and freed
 * with the last tls_ctx, at shutdown; this is process-wide state on purpose, like
 * the random generator it draws from.
 *
 * mbedTLS keeps no client certificate in a TLS 1.3 ticket, so a resumed device would
 * have no identity: our ticket wraps mbedTLS's and carries the certificate.
 *
 *   ticket = u16 inner_len | inner | sealed
 *   inner  = mbedTLS's ticket (mbedtls_ssl_ticket_write), under mbedTLS's own two
 *            keys, which it rotates itself every TLS_TICKET_LIFETIME_S
 *   sealed = key_id(1) | iv(12) | AES-256-GCM(plain) | tag(16)
 *            AAD: u16 inner_len | inner | key_id, which binds it to that inner ticket
 *   plain  = psk_modes(1) | ca_hash(32) | certificate DER (none: no client certificate)
 *
 * ca_hash is the digest of the CA set that verified the certificate: while the
 * listener's CA set is the same, the certificate is only checked for validity dates
 * and the CRL; otherwise it is verified again in full (mbedtls_x509_crt_verify; rare,
 * nothing cached). psk_modes are the TLS 1.3 PSK key exchange modes the ClientHello
 * offered, which mbedTLS's inner ticket allows (tls.c reads them before mbedTLS does,
 * to let a psk_ke-only device resume: see tls_tickets_would_resume). A ticket without
 * a sealed part (no room for it) carries no certificate and allows no mode we know of.
 * Our sealing keys rotate on the same period as mbedTLS's: the current one seals,
 * the previous one still opens, a key_id older than both is refused.
 *
 * Thread safety: handshakes run on the hs_worker threads. mbedTLS's ticket context
 * locks itself (MBEDTLS_THREADING_C); our keys and the reference count are under mu. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/error.h>
#include <mbedtls/gcm.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl_ticket.h>

#include "lq.h"
#include "tls_tickets.h"

#define ID_IV         12
#define ID_TAG        16
#define PLAIN_HEAD    (1 + TLS_TICKET_CA_DIGEST) /* psk_modes, ca_hash */
#define SEAL_OVERHEAD (1 + ID_IV + ID_TAG + PLAIN_HEAD)
#define MEMO          64 /* psk_ke handshakes that failed, remembered by the end of their ticket */

struct id_key {
    mbedtls_gcm_context gcm;
    uint8_t id;
    bool live;
    uint64_t born; /* CLOCK_MONOTONIC seconds */
};

static struct {
    pthread_mutex_t mu;
    unsigned refs;
    int (*f_rng)(void *, unsigned char *, size_t);
    void *p_rng;
    mbedtls_ssl_ticket_context inner;
    struct id_key key[2];
    unsigned cur; /* key[cur] seals; key[1 - cur], if live, is the previous one */
    uint64_t failed[MEMO];
    unsigned nfailed; /* the next slot of failed[], round robin */
} tk = {.mu = PTHREAD_MUTEX_INITIALIZER};

static uint64_t
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec;
}

/* Under mu. */
static int
key_new(struct id_key *k, uint8_t id)
{
    unsigned char raw[32];
    int rc = tk.f_rng(tk.p_rng, raw, sizeof(raw));
    if (rc == 0) rc = mbedtls_gcm_setkey(&k->gcm, MBEDTLS_CIPHER_ID_AES, raw, 256);
    mbedtls_platform_zeroize(raw, sizeof(raw)); /* the GCM context has it now (issue 12.22) */
    k->id = id;
    k->live = rc == 0;
    k->born = now_s();
    return rc;
}

/* Under mu: the current key becomes the previous one, the previous one goes. */
static void
rotate(void)
{
    uint8_t id = (uint8_t)(tk.key[tk.cur].id + 1);
    tk.cur = 1 - tk.cur;
    mbedtls_gcm_free(&tk.key[tk.cur].gcm);
    mbedtls_gcm_init(&tk.key[tk.cur].gcm);
    if (key_new(&tk.key[tk.cur], id)) tk.cur = 1 - tk.cur; /* no new key: keep sealing */
}

static void
rotate_if_due(void)
{
    uint64_t now = now_s();
    if (now - tk.key[tk.cur].born >= TLS_TICKET_LIFETIME_S) rotate();
}

static void
free_keys(void)
{
    mbedtls_ssl_ticket_free(&tk.inner);
    for (int i = 0; i < 2; i++) {
        mbedtls_gcm_free(&tk.key[i].gcm);
        tk.key[i].live = false;
    }
}

int
tls_tickets_acquire(int (*f_rng)(void *, unsigned char *, size_t), void *p_rng, char *err,
                    size_t errlen)
{
    pthread_mutex_lock(&tk.mu);
    if (tk.refs) {
        tk.refs++;
        pthread_mutex_unlock(&tk.mu);
        return 0;
    }
    tk.f_rng = f_rng;
    tk.p_rng = p_rng;
    mbedtls_ssl_ticket_init(&tk.inner);
    for (int i = 0; i < 2; i++) mbedtls_gcm_init(&tk.key[i].gcm);
    tk.key[1].live = false;
    tk.cur = 0;
    memset(tk.failed, 0, sizeof(tk.failed));
    uint8_t id; /* the first id is random: an id says nothing about uptime */
    int rc = mbedtls_ssl_ticket_setup(&tk.inner, f_rng, p_rng, MBEDTLS_CIPHER_AES_256_GCM,
                                      TLS_TICKET_LIFETIME_S);
    if (rc == 0) rc = f_rng(p_rng, &id, 1);
    if (rc == 0) rc = key_new(&tk.key[0], id);
    if (rc) {
        char e[128];
        mbedtls_strerror(rc, e, sizeof(e));
        snprintf(err, errlen, "TLS session tickets: %s", e);
        free_keys();
    } else {
        tk.refs = 1;
    }
    pthread_mutex_unlock(&tk.mu);
    return rc ? -1 : 0;
}

void
tls_tickets_release(void)
{
    pthread_mutex_lock(&tk.mu);
    if (tk.refs && --tk.refs == 0) free_keys();
    pthread_mutex_unlock(&tk.mu);
}

void
tls_tickets_rotate(void)
{
    pthread_mutex_lock(&tk.mu);
    if (tk.refs) rotate();
    pthread_mutex_unlock(&tk.mu);
}

void
tls_tickets_ca_digest(const mbedtls_x509_crt *ca, uint8_t out[TLS_TICKET_CA_DIGEST])
{
    memset(out, 0, TLS_TICKET_CA_DIGEST);
    if (!ca || !ca->raw.len) return;
    mbedtls_sha256_context h;
    mbedtls_sha256_init(&h);
    mbedtls_sha256_starts(&h, 0);
    for (const mbedtls_x509_crt *c = ca; c && c->raw.len; c = c->next) {
        unsigned char len[4] = {(unsigned char)(c->raw.len >> 24),
                                (unsigned char)(c->raw.len >> 16), (unsigned char)(c->raw.len >> 8),
                                (unsigned char)c->raw.len};
        mbedtls_sha256_update(&h, len, sizeof(len)); /* no two sets hash alike by concatenation */
        mbedtls_sha256_update(&h, c->raw.p, c->raw.len);
    }
    mbedtls_sha256_finish(&h, out);
    mbedtls_sha256_free(&h);
}

int
tls_tickets_write(const mbedtls_ssl_session *session, const struct tls_ticket_seal *seal,
                  unsigned char *start, const unsigned char *end, size_t *tlen, uint32_t *lifetime)
{
    if (end - start < 2) return MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL;
    size_t inner;
    int rc = mbedtls_ssl_ticket_write(&tk.inner, session, start + 2, end, &inner, lifetime);
    if (rc) return rc;
    start[0] = (unsigned char)(inner >> 8);
    start[1] = (unsigned char)inner;
    *tlen = 2 + inner;
    unsigned char *kid = start + *tlen, *iv = kid + 1, *body = iv + ID_IV;
    size_t der_len = seal->der ? seal->der_len : 0, n = PLAIN_HEAD + der_len;
    /* no room: a plain ticket, which a listener asking for certificates refuses */
    if ((size_t)(end - kid) < SEAL_OVERHEAD + der_len) return 0;
    if ((rc = tk.f_rng(tk.p_rng, iv, ID_IV))) return rc;
    body[0] = seal->psk_modes;
    memcpy(body + 1, seal->ca_hash, TLS_TICKET_CA_DIGEST);
    if (der_len) memcpy(body + PLAIN_HEAD, seal->der, der_len);
    pthread_mutex_lock(&tk.mu);
    rotate_if_due();
    struct id_key *k = &tk.key[tk.cur];
    *kid = k->id;
    rc = mbedtls_gcm_crypt_and_tag(&k->gcm, MBEDTLS_GCM_ENCRYPT, n, iv, ID_IV, start, 2 + inner + 1,
                                   body, body, ID_TAG, body + n);
    pthread_mutex_unlock(&tk.mu);
    if (rc) return rc;
    *tlen += SEAL_OVERHEAD + der_len;
    return 0;
}

/* Under mu: the live key with that id, NULL when it is older than the previous one. */
static struct id_key *
key_by_id(uint8_t id)
{
    for (int i = 0; i < 2; i++)
        if (tk.key[i].live && tk.key[i].id == id) return &tk.key[i];
    return NULL;
}

/* The CA of the set whose subject is exactly crt's issuer, if any. */
static const mbedtls_x509_crt *
issuer_in(const mbedtls_x509_crt *ca, const mbedtls_x509_crt *crt)
{
    for (const mbedtls_x509_crt *c = ca; c && c->raw.len; c = c->next)
        if (c->subject_raw.len == crt->issuer_raw.len &&
            memcmp(c->subject_raw.p, crt->issuer_raw.p, crt->issuer_raw.len) == 0)
            return c;
    return NULL;
}

/* Would a full handshake with trust accept crt? Cheap while the CA set is the one
 * that verified it: dates, its CA's dates, the CRL. Any doubt refuses: the full
 * handshake that follows has the last word. */
static bool
still_trusted(mbedtls_x509_crt *crt, const uint8_t *then, const struct tls_ticket_trust *trust)
{
    const mbedtls_x509_crt *issuer = issuer_in(trust->ca, crt);
    if (!issuer || memcmp(then, trust->ca_hash, TLS_TICKET_CA_DIGEST) != 0) {
        uint32_t flags; /* the CA set changed: verify again, against it and the CRL */
        return mbedtls_x509_crt_verify(crt, trust->ca, trust->crl, NULL, &flags, NULL, NULL) == 0;
    }
    if (mbedtls_x509_time_is_past(&crt->valid_to) || mbedtls_x509_time_is_future(&crt->valid_from))
        return false;
    if (mbedtls_x509_time_is_past(&issuer->valid_to)) return false;
    for (const mbedtls_x509_crl *crl = trust->crl; crl && crl->version; crl = crl->next) {
        /* every CRL: a serial another CA revoked costs a full handshake, nothing more */
        if (mbedtls_x509_crt_is_revoked(crt, crl)) return false;
        bool ours = crl->issuer_raw.len == crt->issuer_raw.len &&
                    memcmp(crl->issuer_raw.p, crt->issuer_raw.p, crt->issuer_raw.len) == 0;
        if (ours && mbedtls_x509_time_is_past(&crl->next_update)) return false; /* as verify */
    }
    return true;
}

/* Our sealed part: 0 and *plain (psk_modes | ca_hash | DER, malloc'd), or an
 * mbedTLS error. */
static int
open_sealed(const unsigned char *buf, size_t inner, size_t extra, unsigned char **plain, size_t *n)
{
    if (extra < SEAL_OVERHEAD) return MBEDTLS_ERR_SSL_INVALID_MAC;
    const unsigned char *kid = buf + 2 + inner, *iv = kid + 1, *body = iv + ID_IV;
    *n = extra - 1 - ID_IV - ID_TAG;
    *plain = lq_xmalloc(*n);
    pthread_mutex_lock(&tk.mu);
    rotate_if_due();
    struct id_key *k = key_by_id(*kid);
    int bad = !k || mbedtls_gcm_auth_decrypt(&k->gcm, *n, iv, ID_IV, buf, 2 + inner + 1, body + *n,
                                             ID_TAG, body, *plain);
    pthread_mutex_unlock(&tk.mu);
    if (bad) {
        free(*plain);
        *plain = NULL;
        return k ? MBEDTLS_ERR_SSL_INVALID_MAC : MBEDTLS_ERR_SSL_SESSION_TICKET_EXPIRED;
    }
    return 0;
}

/* Both parts of buf (decrypted in place), and our checks: 0 and *plain (NULL: a
 * plain ticket), or an mbedTLS error. */
static int
open_ticket(mbedtls_ssl_session *session, unsigned char *buf, size_t len,
            const struct tls_ticket_trust *trust, unsigned char **plain, size_t *n)
{
    *plain = NULL;
    *n = 0;
    if (len < 2) return MBEDTLS_ERR_SSL_INVALID_MAC;
    size_t inner = (size_t)buf[0] << 8 | buf[1];
    if (inner > len - 2) return MBEDTLS_ERR_SSL_INVALID_MAC;
    size_t extra = len - 2 - inner;
    /* ours first: mbedTLS decrypts the inner ticket in place, and it is our AAD */
    int rc = extra ? open_sealed(buf, inner, extra, plain, n) : 0;
    if (rc == 0) rc = mbedtls_ssl_ticket_parse(&tk.inner, session, buf + 2, inner);
    if (rc == 0) {
        size_t der_len = *plain ? *n - PLAIN_HEAD : 0;
        /* certificates asked for now and not then, or the reverse */
        if (!trust->ca != !der_len) rc = MBEDTLS_ERR_X509_CERT_VERIFY_FAILED;
    }
    if (rc == 0 && *n > PLAIN_HEAD) {
        mbedtls_x509_crt crt;
        mbedtls_x509_crt_init(&crt);
        if (mbedtls_x509_crt_parse_der(&crt, *plain + PLAIN_HEAD, *n - PLAIN_HEAD) ||
            !still_trusted(&crt, *plain + 1, trust))
            rc = MBEDTLS_ERR_X509_CERT_VERIFY_FAILED;
        mbedtls_x509_crt_free(&crt);
    }
    if (rc) {
        free(*plain);
        *plain = NULL;
    }
    return rc;
}

int
tls_tickets_parse(mbedtls_ssl_session *session, unsigned char *buf, size_t len,
                  const struct tls_ticket_trust *trust, unsigned char **der, size_t *der_len)
{
    unsigned char *plain;
    size_t n;
    *der = NULL;
    *der_len = 0;
    int rc = open_ticket(session, buf, len, trust, &plain, &n);
    if (rc || n <= PLAIN_HEAD) {
        free(plain);
        return rc;
    }
    *der_len = n - PLAIN_HEAD;
    memmove(plain, plain + PLAIN_HEAD, *der_len);
    *der = plain;
    return 0;
}

static uint64_t
ticket_tail(const unsigned char *ticket, size_t len)
{
    uint64_t tail = 0; /* a GCM tag: as good as a name for the ticket */
    for (size_t i = len > 8 ? len - 8 : 0; i < len; i++) tail = tail << 8 | ticket[i];
    return tail;
}

static bool
noted(uint64_t tail)
{
    for (int i = 0; i < MEMO; i++)
        if (tk.failed[i] == tail) return true;
    return false;
}

void
tls_tickets_note_psk_ke_failure(const unsigned char *ticket, size_t len)
{
    pthread_mutex_lock(&tk.mu);
    tk.failed[tk.nfailed++ % MEMO] = ticket_tail(ticket, len);
    pthread_mutex_unlock(&tk.mu);
}

bool
tls_tickets_would_resume(const unsigned char *ticket, size_t len,
                         const struct tls_ticket_trust *trust, uint8_t *psk_modes)
{
    *psk_modes = 0;
    pthread_mutex_lock(&tk.mu);
    bool refused = !tk.refs || noted(ticket_tail(ticket, len));
    pthread_mutex_unlock(&tk.mu);
    if (refused) return false;
    unsigned char *copy = lq_xmalloc(len ? len : 1), *plain;
    memcpy(copy, ticket, len);
    size_t n;
    mbedtls_ssl_session session;
    mbedtls_ssl_session_init(&session);
    int rc = open_ticket(&session, copy, len, trust, &plain, &n);
    mbedtls_ssl_session_free(&session);
    if (rc == 0 && plain) *psk_modes = plain[0];
    free(plain);
    free(copy);
    return rc == 0;
}

/* ---- the ClientHello (RFC 8446 4.1.2), read with bounds checked at each step ---- */

struct cursor {
    const unsigned char *p;
    size_t len, pos;
};

static bool
take(struct cursor *c, size_t n, const unsigned char **out)
{
    if (c->len - c->pos < n) return false;
    if (out) *out = c->p + c->pos;
    c->pos += n;
    return true;
}

static bool
take_uint(struct cursor *c, size_t bytes, size_t *v)
{
    const unsigned char *p;
    if (!take(c, bytes, &p)) return false;
    *v = 0;
    for (size_t i = 0; i < bytes; i++) *v = *v << 8 | p[i];
    return true;
}

/* A vector with a length of `bytes` bytes in front: a cursor over its contents. */
static bool
take_vec(struct cursor *c, size_t bytes, struct cursor *in)
{
    size_t n;
    if (!take_uint(c, bytes, &n) || !take(c, n, &in->p)) return false;
    in->len = n;
    in->pos = 0;
    return true;
}

#define EXT_PRE_SHARED_KEY        41
#define EXT_PSK_KEY_EXCHANGE_MODE 45

static bool
read_extension(size_t type, struct cursor *e, struct tls_hello *h)
{
    struct cursor v;
    if (type == EXT_PSK_KEY_EXCHANGE_MODE) {
        if (!take_vec(e, 1, &v)) return false;
        for (size_t i = 0; i < v.len; i++)
            h->psk_modes |= v.p[i] == 0   ? MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK
                            : v.p[i] == 1 ? MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_EPHEMERAL
                                          : 0;
    } else if (type == EXT_PRE_SHARED_KEY) {
        struct cursor id;
        if (!take_vec(e, 2, &v) || !take_vec(&v, 2, &id)) return false;
        h->identity = id.p;
        h->identity_len = id.len;
    }
    return true;
}

bool
tls_hello_parse(const unsigned char *msg, size_t len, struct tls_hello *h)
{
    memset(h, 0, sizeof(*h));
    struct cursor c = {msg, len, 0}, body, v, exts;
    size_t type;
    if (!take_uint(&c, 1, &type) || type != 1 || !take_vec(&c, 3, &body)) return false;
    if (!take(&body, 2 + 32, NULL) || !take_vec(&body, 1, &v) || !take_vec(&body, 2, &v) ||
        !take_vec(&body, 1, &v) || !take_vec(&body, 2, &exts))
        return false; /* version, random, session id, suites, compression, extensions */
    while (exts.pos < exts.len) {
        size_t ext;
        struct cursor e;
        if (!take_uint(&exts, 2, &ext) || !take_vec(&exts, 2, &e) || !read_extension(ext, &e, h))
            return false;
    }
    return true;
}
