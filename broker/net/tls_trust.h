/* SPDX-License-Identifier: MIT
 * Shared by the files of net/ only: device certificates verified once (tls_trust.c). */
#ifndef LUNAMQ_TLS_TRUST_H
#define LUNAMQ_TLS_TRUST_H

#include <stdbool.h>
#include <stdint.h>

#include <mbedtls/ssl.h>
#include <mbedtls/x509_crl.h>
#include <mbedtls/x509_crt.h>

/* One handshake's certificate verification (in its tls_conn, zeroed). */
struct tls_trust_state {
    bool asked;              /* the CA callback saw the device's certificate */
    bool vouched;            /* ... and had verified its chain before */
    unsigned char hash[32];  /* SHA-256 of its DER */
    unsigned depths;         /* certificates the verify callback saw */
    uint32_t chain_flags;    /* theirs above the device's */
    mbedtls_x509_time until; /* the earliest end of validity among them */
};

struct tls_trust;

/* For a listener's CA list and CRLs (both outlive it). NULL, and why, when this
 * mbedTLS cannot vouch from a CA callback (a packaged one) or a CRL does not verify
 * against the CA list: then mbedTLS's own verification (mbedtls_ssl_conf_ca_chain). */
struct tls_trust *tls_trust_new(mbedtls_x509_crt *ca, const mbedtls_x509_crl *crl, char *why,
                                size_t n);
/* Verify the configuration's peers through tr (instead of mbedtls_ssl_conf_ca_chain).
 * The configuration's verify callback must then call tls_trust_verify. */
void tls_trust_configure(struct tls_trust *tr, mbedtls_ssl_config *c);
/* From the verify callback, for each certificate of the chain (the top first, the
 * device's last at depth 0): revocation, and a chain that verified is remembered. */
void tls_trust_verify(struct tls_trust *tr, const mbedtls_x509_crt *crt, int depth,
                      uint32_t *flags);
void tls_trust_free(struct tls_trust *tr);
/* The handshake about to take a step on this thread (NULL after it). */
void tls_trust_step(struct tls_trust_state *st);

#endif
