/* SPDX-License-Identifier: MIT
 *
 * tls_trust: device certificates verified once, not at every reconnect. A full
 * mutual-TLS handshake verifies two ECDSA signatures of the device: the CA's on its
 * certificate, and its own on the handshake (CertificateVerify, the proof that it has
 * the key). With mbedTLS's bignum code each costs ~1 ms, most of the handshake. The
 * first is the same computation every time the same certificate comes back (a
 * reconnect storm is nothing else), so a certificate whose chain verified is
 * remembered by the SHA-256 of its DER until the earliest end of validity in that
 * chain. When it comes back, our CA callback vouches for it
 * (MBEDTLS_X509_CA_CB_TRUSTED, tools/mbedtls-lunamq.patch): mbedTLS's chain ends
 * there as at a trusted root. Everything else is still checked every time: its
 * validity dates, signature and key algorithms, key usage, revocation, and the
 * handshake signature.
 *
 * With a CA callback mbedTLS checks no CRL, so revocation is ours here, for every
 * certificate of every chain (the verify callback). mbedTLS would also verify each
 * CRL's signature at every handshake (one more ECDSA verification); we verify it
 * once, when the listener's material loads. A CRL we cannot check that way (its
 * issuer not in the CA list, an RSA-PSS signature) leaves the listener on mbedTLS's
 * own path, as does an mbedTLS without the patch (a packaged one).
 *
 * One table per tls_ctx: a reload (new CA list, new CRL) starts empty. Handshake
 * threads share it under a lock held for one lookup or insert. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/asn1.h>
#include <mbedtls/md.h>
#include <mbedtls/oid.h>
#include <mbedtls/sha256.h>

#include "lq.h"
#include "tls.h"
#include "tls_trust.h"

#define TABLE_SLOTS 32768 /* 1.8 MB, allocated with the first certificate remembered */

struct entry {
    unsigned char hash[32]; /* all zero: empty */
    mbedtls_x509_time until;
};

struct tls_trust {
    mbedtls_x509_crt *ca;        /* not const: mbedtls_pk_verify_ext wants its keys so */
    const mbedtls_x509_crl *crl; /* each verified against its issuer at load */
    pthread_mutex_t mu;
    struct entry *table;
};

static atomic_ulong vouched, verified; /* process-wide: tls_cert_counts */

/* The handshake whose step runs on this thread (tls_trust_step). */
static _Thread_local struct tls_trust_state *current;

#if defined(MBEDTLS_X509_CA_CB_TRUSTED) && defined(MBEDTLS_X509_TRUSTED_CERTIFICATE_CALLBACK)
#define TRUST_CACHE 1
#endif

static bool
same_name(const mbedtls_x509_buf *a, const mbedtls_x509_buf *b)
{
    return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

#if defined(TRUST_CACHE)

/* ---- a CRL's signature, once ---- */

/* CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue } */
static bool
crl_signed_by(const mbedtls_x509_crl *crl, mbedtls_x509_crt *ca)
{
    unsigned char *p = crl->tbs.p + crl->tbs.len, *end = crl->raw.p + crl->raw.len;
    mbedtls_asn1_buf alg, params;
    mbedtls_asn1_bitstring sig;
    mbedtls_md_type_t md;
    mbedtls_pk_type_t pk;
    if (mbedtls_asn1_get_alg(&p, end, &alg, &params) || mbedtls_oid_get_sig_alg(&alg, &md, &pk) ||
        pk == MBEDTLS_PK_RSASSA_PSS || mbedtls_asn1_get_bitstring(&p, end, &sig) || sig.unused_bits)
        return false;
    const mbedtls_md_info_t *mi = mbedtls_md_info_from_type(md);
    unsigned char hash[MBEDTLS_MD_MAX_SIZE];
    if (!mi || mbedtls_md(mi, crl->tbs.p, crl->tbs.len, hash)) return false;
    if (mbedtls_x509_crt_check_key_usage(ca, MBEDTLS_X509_KU_CRL_SIGN)) return false;
    return mbedtls_pk_verify_ext(pk, NULL, &ca->pk, md, hash, mbedtls_md_get_size(mi), sig.p,
                                 sig.len) == 0;
}

static bool
crls_check_out(mbedtls_x509_crt *ca, const mbedtls_x509_crl *crl, char *why, size_t n)
{
    for (const mbedtls_x509_crl *l = crl; l && l->version; l = l->next) {
        bool ok = false;
        for (mbedtls_x509_crt *c = ca; c && c->version && !ok; c = c->next)
            ok = same_name(&l->issuer_raw, &c->subject_raw) && crl_signed_by(l, c);
        if (!ok) {
            char dn[256];
            if (mbedtls_x509_dn_gets(dn, sizeof(dn), &l->issuer) < 0) dn[0] = '\0';
            snprintf(why, n, "the CRL of '%s' is not signed by a CA of the list, or with RSA-PSS",
                     dn);
            return false;
        }
    }
    return true;
}

/* ---- the table ---- */

static struct entry *
slot(struct tls_trust *tr, const unsigned char *hash)
{
    uint32_t i;
    memcpy(&i, hash, sizeof(i));
    return &tr->table[i & (TABLE_SLOTS - 1)];
}

static bool
lookup(struct tls_trust *tr, const unsigned char *hash)
{
    bool hit = false;
    pthread_mutex_lock(&tr->mu);
    if (tr->table) {
        struct entry *e = slot(tr, hash);
        hit = memcmp(e->hash, hash, 32) == 0 && !mbedtls_x509_time_is_past(&e->until);
    }
    pthread_mutex_unlock(&tr->mu);
    return hit;
}

static void
insert(struct tls_trust *tr, const unsigned char *hash, const mbedtls_x509_time *until)
{
    pthread_mutex_lock(&tr->mu);
    if (!tr->table) tr->table = calloc(TABLE_SLOTS, sizeof(*tr->table));
    if (tr->table) { /* a collision replaces: the other is verified in full again */
        struct entry *e = slot(tr, hash);
        memcpy(e->hash, hash, 32);
        e->until = *until;
    }
    pthread_mutex_unlock(&tr->mu);
}

/* ---- mbedTLS's callbacks ---- */

/* The parents mbedTLS may try for child: for a device certificate remembered, none
 * (we vouch for it); else the CAs whose subject is child's issuer, parsed without
 * copying (mbedTLS frees the list, not the DER it points into). */
static int
ca_cb(void *p, const mbedtls_x509_crt *child, mbedtls_x509_crt **candidates)
{
    struct tls_trust *tr = p;
    struct tls_trust_state *st = current;
    *candidates = NULL;
    if (st && !st->asked) { /* mbedTLS asks about the device's certificate first */
        st->asked = true;
        mbedtls_sha256(child->raw.p, child->raw.len, st->hash, 0);
        if (lookup(tr, st->hash)) {
            st->vouched = true;
            return MBEDTLS_X509_CA_CB_TRUSTED;
        }
    }
    mbedtls_x509_crt *list = NULL;
    for (const mbedtls_x509_crt *ca = tr->ca; ca && ca->version; ca = ca->next) {
        if (!same_name(&ca->subject_raw, &child->issuer_raw)) continue;
        if (!list) {
            if (!(list = calloc(1, sizeof(*list)))) return MBEDTLS_ERR_X509_ALLOC_FAILED;
            mbedtls_x509_crt_init(list);
        }
        if (mbedtls_x509_crt_parse_der_nocopy(list, ca->raw.p, ca->raw.len)) {
            mbedtls_x509_crt_free(list);
            free(list);
            return MBEDTLS_ERR_X509_FATAL_ERROR;
        }
    }
    *candidates = list;
    return 0;
}

/* What the CRLs of crt's issuer say about it. */
static uint32_t
crl_flags(const struct tls_trust *tr, const mbedtls_x509_crt *crt)
{
    uint32_t flags = 0;
    if (same_name(&crt->issuer_raw, &crt->subject_raw)) return 0; /* a root */
    for (const mbedtls_x509_crl *l = tr->crl; l && l->version; l = l->next) {
        if (!same_name(&l->issuer_raw, &crt->issuer_raw)) continue;
        if (mbedtls_x509_time_is_past(&l->next_update)) flags |= MBEDTLS_X509_BADCRL_EXPIRED;
        if (mbedtls_x509_time_is_future(&l->this_update)) flags |= MBEDTLS_X509_BADCRL_FUTURE;
        if (mbedtls_x509_crt_is_revoked(crt, l)) flags |= MBEDTLS_X509_BADCERT_REVOKED;
    }
    return flags;
}

void
tls_trust_verify(struct tls_trust *tr, const mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    struct tls_trust_state *st = current;
    *flags |= crl_flags(tr, crt);
    if (!st) return;
    if (!st->depths++ || mbedtls_x509_time_cmp(&crt->valid_to, &st->until) < 0)
        st->until = crt->valid_to;
    if (depth > 0) {
        st->chain_flags |= *flags;
        return;
    }
    if (st->vouched) {
        atomic_fetch_add_explicit(&vouched, 1, memory_order_relaxed);
    } else if (st->asked && !*flags && !st->chain_flags) {
        atomic_fetch_add_explicit(&verified, 1, memory_order_relaxed);
        insert(tr, st->hash, &st->until);
    }
}

struct tls_trust *
tls_trust_new(mbedtls_x509_crt *ca, const mbedtls_x509_crl *crl, char *why, size_t n)
{
    if (!crls_check_out(ca, crl, why, n)) return NULL;
    struct tls_trust *tr = lq_xcalloc(1, sizeof(*tr));
    tr->ca = ca;
    tr->crl = crl;
    pthread_mutex_init(&tr->mu, NULL);
    return tr;
}

void
tls_trust_configure(struct tls_trust *tr, mbedtls_ssl_config *c)
{
    mbedtls_ssl_conf_ca_cb(c, ca_cb, tr);
}

#else /* an mbedTLS without the CA callback or our patch: mbedTLS's own path */

struct tls_trust *
tls_trust_new(mbedtls_x509_crt *ca, const mbedtls_x509_crl *crl, char *why, size_t n)
{
    (void)ca;
    (void)crl;
    (void)same_name;
    snprintf(why, n, "this mbedTLS cannot vouch for a certificate from a CA callback");
    return NULL;
}

void
tls_trust_configure(struct tls_trust *tr, mbedtls_ssl_config *c)
{
    (void)tr;
    (void)c;
}

void
tls_trust_verify(struct tls_trust *tr, const mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    (void)tr;
    (void)crt;
    (void)depth;
    (void)flags;
}

#endif

void
tls_trust_free(struct tls_trust *tr)
{
    if (!tr) return;
    pthread_mutex_destroy(&tr->mu);
    free(tr->table);
    free(tr);
}

void
tls_trust_step(struct tls_trust_state *st)
{
    current = st;
}

void
tls_cert_counts(unsigned long *verified_full, unsigned long *remembered)
{
    *verified_full = atomic_load_explicit(&verified, memory_order_relaxed);
    *remembered = atomic_load_explicit(&vouched, memory_order_relaxed);
}
