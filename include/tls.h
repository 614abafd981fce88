/* SPDX-License-Identifier: MIT
 *
 * tls: the TLS transport, on mbedTLS 3.6. A tls_ctx is one listener's material
 * (certificate, key, CA chain, CRL), loaded from its tls_conf and shared by
 * reference: a SIGHUP builds a new one for new connections while existing
 * connections keep the one they started with. Session-ticket keys are the
 * process's and survive a reload; a resumption is checked against the new material.
 *
 * A client tls_ctx (tls_client_ctx_new) is what a bridge connects out with.
 *
 * A tls_conn is one connection's TLS state. It never touches a socket: ciphertext
 * comes from and goes to two evbuffers that the connection owns, so the transport
 * stays inside the event loop and non-blocking by construction.
 */
#ifndef LUNAMQ_TLS_H
#define LUNAMQ_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct tls_conf;
struct tls_ctx;
struct tls_conn;

/* What a verified client certificate says; kept on the connection. */
struct tls_identity {
    char *subject;        /* "C=DE, O=Acme, CN=dev-0001" */
    char *cn;             /* NULL when the subject has no CN */
    char *serial;         /* "01:2F:..." */
    char fingerprint[96]; /* SHA-256 of the DER, "AB:CD:..." as openssl -fingerprint */
    char **san;           /* "DNS:host", "URI:urn:dev:1" */
    size_t nsan;
};

/* A copy that outlives its connection (a will published later); NULL gives NULL. */
struct tls_identity *tls_identity_dup(const struct tls_identity *id);
void tls_identity_free(struct tls_identity *id); /* NULL is a no-op */

/* "mbedTLS 3.6.6 (lunamq's build)" or "... (packaged: slower handshakes)": which one
 * this binary has (make deps chooses; tools/mbedtls-config.h). */
const char *tls_library(void);

/* Device certificates whose chain was verified in full, and those vouched for because
 * it had been before (net/tls_trust.c), since the start. */
void tls_cert_counts(unsigned long *verified_full, unsigned long *remembered);

/* Once per process, before any tls_ctx_new: PSA crypto and the random generator. */
int tls_global_init(char *err, size_t errlen);

/* Load a listener's material. On error returns NULL with "FILE:LINE: ..." naming the
 * configuration line of the file that failed and the mbedTLS error text. */
struct tls_ctx *tls_ctx_new(const struct tls_conf *tc, char *err, size_t errlen);
void tls_ctx_unref(struct tls_ctx *ctx); /* NULL is a no-op */
/* The client side (bridges, lunamq-bench). Its connections verify the server's chain
 * against the CAs, and its name against the host of tls_conn_set_hostname. */
struct tls_client_conf {
    const char *cafile, *capath;    /* CAs the server is verified against (one at least) */
    const char *certfile, *keyfile; /* our certificate, both or neither */
    bool insecure;    /* bridge_insecure: the chain is verified, the host name is not */
    int min_version;  /* 12 or 13 */
    const char *alpn; /* comma-separated protocol list, or NULL */
    const char *at;   /* "FILE:LINE" for errors, or NULL */
    uint32_t handshake_timeout_ms; /* 0: 10 s */
};
/* On error returns NULL with "[AT: ]what: mbedTLS's reason" in err. */
struct tls_ctx *tls_client_ctx_new(const struct tls_client_conf *cc, char *err, size_t errlen);
uint32_t tls_ctx_handshake_timeout_ms(const struct tls_ctx *ctx);

/* A connection's TLS state reading ciphertext from rx and writing it to tx. */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx, struct evbuffer *rx, struct evbuffer *tx);
void tls_conn_free(struct tls_conn *t); /* NULL is a no-op */
/* A client connection: the server's name, checked against its certificate (a DNS name
 * or an IP literal) and sent as SNI. Before the handshake starts. Without a name (NULL,
 * or one too long to set) the handshake fails, unless the ctx is insecure. */
void tls_conn_set_hostname(struct tls_conn *t, const char *host);
/* Where records go from now on (a handshake on another thread writes its own buffer). */
void tls_conn_set_tx(struct tls_conn *t, struct evbuffer *tx);

enum tls_status { TLS_OK, TLS_HANDSHAKING, TLS_CLOSED, TLS_FAILED };
/* Advance the handshake, then decrypt everything rx holds into plain. TLS_FAILED
 * writes the reason into why. */
enum tls_status tls_conn_input(struct tls_conn *t, struct evbuffer *plain, char *why, size_t n);
/* Encrypt and drain all of plain into tx (records of up to 16 KiB). */
int tls_conn_output(struct tls_conn *t, struct evbuffer *plain);
/* Between records: hand the unused pages of mbedTLS's two 16 KiB record buffers
 * back to the kernel (Debian's mbedTLS cannot size them per connection). Most of an
 * idle TLS connection's memory is there, touched by the handshake. */
void tls_conn_shrink(struct tls_conn *t);
/* Queue a close_notify alert. */
void tls_conn_shutdown(struct tls_conn *t);

bool tls_conn_established(const struct tls_conn *t);
/* NULL without a client certificate. */
const struct tls_identity *tls_conn_identity(const struct tls_conn *t);
/* With use_identity_as_username / use_subject_as_username: the username the
 * certificate gives ("" when it gives none); NULL when neither is set. */
const char *tls_conn_username(const struct tls_conn *t);
/* "TLSv1.3 TLS1-3-AES-256-GCM-SHA384", for the log. */
const char *tls_conn_describe(const struct tls_conn *t, char *buf, size_t n);

#endif
