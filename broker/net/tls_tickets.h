/* SPDX-License-Identifier: MIT
 * Shared by tls.c only (and its unit test): the session-ticket keys of the process
 * (tls_tickets.c). They outlive every tls_ctx, so tickets survive a reload; what a
 * reload changes (CA, CRL) is checked again on every resumption instead. */
#ifndef LUNAMQ_TLS_TICKETS_H
#define LUNAMQ_TLS_TICKETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mbedtls/ssl.h>
#include <mbedtls/x509_crl.h>
#include <mbedtls/x509_crt.h>

/* Tickets are valid for a day; the keys rotate on the same period (two are kept). */
#define TLS_TICKET_LIFETIME_S 86400
#define TLS_TICKET_CA_DIGEST  32

/* What a resumed certificate must still pass: the current tls_ctx's material. */
struct tls_ticket_trust {
    mbedtls_x509_crt *ca;   /* NULL: the listener asks for no client certificate */
    mbedtls_x509_crl *crl;  /* NULL: no CRL */
    const uint8_t *ca_hash; /* tls_tickets_ca_digest(ca) */
};

/* What our part of a ticket carries. */
struct tls_ticket_seal {
    const unsigned char *der; /* the client certificate; NULL: none */
    size_t der_len;
    const uint8_t *ca_hash; /* the digest of the CA set that verified it */
    /* MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK* the ClientHello offered: what mbedTLS's
     * own ticket allows (it keeps that out of reach) */
    uint8_t psk_modes;
};

/* The first call creates the keys (f_rng must be thread-safe: handshakes run on the
 * hs_worker threads); each server tls_ctx holds one reference, the last release frees
 * them. Loop thread only. Returns 0, or -1 with the reason in err. */
int tls_tickets_acquire(int (*f_rng)(void *, unsigned char *, size_t), void *p_rng, char *err,
                        size_t errlen);
void tls_tickets_release(void);

/* SHA-256 over the DER of every certificate of ca (NULL or empty: zeros): a ticket
 * remembers which CA set verified its certificate. */
void tls_tickets_ca_digest(const mbedtls_x509_crt *ca, uint8_t out[TLS_TICKET_CA_DIGEST]);

/* mbedtls_ssl_ticket_write_t, with seal in our part beside mbedTLS's ticket. */
int tls_tickets_write(const mbedtls_ssl_session *session, const struct tls_ticket_seal *seal,
                      unsigned char *start, const unsigned char *end, size_t *tlen,
                      uint32_t *lifetime);

/* mbedtls_ssl_ticket_parse_t that also opens our part and checks the certificate in it
 * against trust. 0: *der is the certificate (the caller frees it; NULL: none). Any
 * error refuses the resumption: mbedTLS goes on with a full handshake. */
int tls_tickets_parse(mbedtls_ssl_session *session, unsigned char *buf, size_t len,
                      const struct tls_ticket_trust *trust, unsigned char **der, size_t *der_len);

/* A TLS 1.3 ClientHello, as far as resumption cares. */
struct tls_hello {
    uint8_t psk_modes;             /* psk_key_exchange_modes, as MBEDTLS_SSL_TLS1_3_* bits */
    const unsigned char *identity; /* the first PSK identity (a ticket), in msg; NULL: none */
    size_t identity_len;
};
/* msg: the handshake message(s) of the first record. False unless it is a whole
 * ClientHello. */
bool tls_hello_parse(const unsigned char *msg, size_t len, struct tls_hello *h);

/* Would tls_tickets_parse take this ticket (a copy is opened)? *psk_modes: the modes
 * it allows. A ticket noted by tls_tickets_note_psk_ke_failure is refused here. */
bool tls_tickets_would_resume(const unsigned char *ticket, size_t len,
                              const struct tls_ticket_trust *trust, uint8_t *psk_modes);
/* A psk_ke-only handshake offering this ticket failed: next time it gets the ordinary
 * configuration, and with it a full handshake if mbedTLS finds the ticket unusable. */
void tls_tickets_note_psk_ke_failure(const unsigned char *ticket, size_t len);

/* Start a new sealing key now, as the period does (tests): tickets sealed under the
 * previous key still open, older ones do not. mbedTLS's own keys are not touched. */
void tls_tickets_rotate(void);

#endif
