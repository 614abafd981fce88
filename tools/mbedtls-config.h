/* SPDX-License-Identifier: MIT
 *
 * The mbedTLS 3.6 configuration lunamq builds (tools/deps.sh, MBEDTLS_CONFIG_FILE):
 * a TLS 1.2/1.3 server (and lunamq-bench's client) for devices with X.509
 * certificates, made for fast full handshakes. Every option is here on purpose;
 * what is not here is not compiled. A packaged mbedTLS 3.6 (its default
 * configuration) works too, only slower: `lunamq --version` says which one a build has.
 *
 * Where the time of a full mutual-TLS handshake goes (perf, Debian's 3.6 build):
 * X25519 38%, ECDSA P-256 verifications 30% (the device's certificate and its
 * CertificateVerify), our ECDSA signature 11%, bignum allocations 6-11%. The choices
 * marked SPEED are the answer to that. */
#ifndef LUNAMQ_MBEDTLS_CONFIG_H
#define LUNAMQ_MBEDTLS_CONFIG_H

/* tls_library() (broker/net/tls.c) tells this build from a packaged one by it */
#define LUNAMQ_MBEDTLS_OWN_BUILD 1

/* ---- platform ---- */
#define MBEDTLS_HAVE_ASM       /* SPEED: x86-64/aarch64 assembly in the bignum multiply */
#define MBEDTLS_HAVE_TIME      /* ticket lifetimes */
#define MBEDTLS_HAVE_TIME_DATE /* certificate validity periods and CRL dates */
#define MBEDTLS_FS_IO          /* certfile, keyfile, cafile, capath, crlfile */
#define MBEDTLS_THREADING_C    /* handshakes run on several threads (net/hs_worker.c) */
#define MBEDTLS_THREADING_PTHREAD
#define MBEDTLS_PLATFORM_C
#define MBEDTLS_PLATFORM_MEMORY    /* our allocator: idle connections' record buffers (tls_mem.c) */
#define MBEDTLS_ERROR_C            /* error text in the log */
#define MBEDTLS_VERSION_C          /* `lunamq --version` and the start-up log */
#define MBEDTLS_VERSION_FEATURES   /* ... which say whether this configuration is in use */
#define MBEDTLS_DEPRECATED_REMOVED /* catch uses of what 4.0 drops, at compile time */

/* ---- randomness ---- */
#define MBEDTLS_ENTROPY_C
#define MBEDTLS_CTR_DRBG_C  /* the broker's generator (AES-256 CTR_DRBG) */
#define MBEDTLS_HMAC_DRBG_C /* deterministic ECDSA */

/* ---- PSA crypto: TLS 1.3's key exchange and key schedule ---- */
#define MBEDTLS_PSA_CRYPTO_C
/* Not MBEDTLS_USE_PSA_CRYPTO: with it every TLS connection keeps its record keys in
 * PSA key slots (two per connection, set up again for each record), and 2 000
 * devices connecting at once ran out of them. Without it (as Debian builds it), X.509
 * and TLS 1.2 use the same ECP code directly, and records use cipher contexts. */
/* The key store grows with the handshakes running at once: never a fixed limit. */
#define MBEDTLS_PSA_KEY_STORE_DYNAMIC

/* ---- public-key arithmetic ---- */
#define MBEDTLS_BIGNUM_C
#define MBEDTLS_GENPRIME /* RSA needs it compiled in */
#define MBEDTLS_OID_C
#define MBEDTLS_ASN1_PARSE_C
#define MBEDTLS_ASN1_WRITE_C
#define MBEDTLS_ECP_C
#define MBEDTLS_ECP_NIST_OPTIM /* SPEED: fast modular reduction for the NIST curves */
/* Not MBEDTLS_PSA_P256M_DRIVER_ENABLED: p256-m is made for 32-bit Cortex-M (its
 * assembly is Arm-only, its limbs 32-bit, no precomputed tables) and is 3-4x slower
 * than this ECP code on x86-64 (PSA, this machine: ECDSA P-256 sign 901 against
 * 224 us, verify 2662 against 958 us; ECDH P-256 key + agreement 1.7 against 0.7 ms). */
#define MBEDTLS_ECP_DP_SECP256R1_ENABLED
#define MBEDTLS_ECP_DP_SECP384R1_ENABLED
#define MBEDTLS_ECP_DP_SECP521R1_ENABLED
#define MBEDTLS_ECP_DP_CURVE25519_ENABLED
#define MBEDTLS_ECDH_C
/* SPEED: X25519 in Project Everest's verified 64-bit code (HACL*), mbedTLS's fastest
 * Curve25519: PSA's key agreement goes through it (453 -> 82 us here), and with
 * tools/mbedtls-lunamq.patch so does the ephemeral public key (432 -> 82 us).
 * TLS 1.3 clients (OpenSSL's first of all) send an X25519 key share. */
#define MBEDTLS_ECDH_VARIANT_EVEREST_ENABLED
#define MBEDTLS_ECDSA_C
#define MBEDTLS_ECDSA_DETERMINISTIC /* no signature depends on the generator's health */
#define MBEDTLS_RSA_C               /* RSA device and server certificates are common */
#define MBEDTLS_PKCS1_V15
#define MBEDTLS_PKCS1_V21 /* RSA-PSS: the only RSA signatures TLS 1.3 allows */
#define MBEDTLS_PK_C
#define MBEDTLS_PK_PARSE_C
#define MBEDTLS_PK_WRITE_C /* PSA imports of our key go through it */
#define MBEDTLS_PK_PARSE_EC_EXTENDED
#define MBEDTLS_PK_PARSE_EC_COMPRESSED
#define MBEDTLS_PEM_PARSE_C
#define MBEDTLS_BASE64_C

/* ---- symmetric ---- */
#define MBEDTLS_AES_C
#define MBEDTLS_AESNI_C /* SPEED: AES-NI and PCLMULQDQ (GCM) on x86-64, chosen at run time */
#define MBEDTLS_AESCE_C /* the same with the Armv8 crypto extensions */
#define MBEDTLS_CIPHER_C
#define MBEDTLS_CIPHER_MODE_CBC /* TLS 1.2 CBC suites: older devices still ask for them */
#define MBEDTLS_GCM_C
#define MBEDTLS_CCM_C /* AES-CCM(-8) suites of constrained-device TLS profiles */
#define MBEDTLS_CHACHA20_C
#define MBEDTLS_POLY1305_C
#define MBEDTLS_CHACHAPOLY_C
#define MBEDTLS_CIPHER_PADDING_PKCS7
#define MBEDTLS_MD_C
#define MBEDTLS_SHA1_C /* TLS 1.2 HMAC-SHA1 suites and old certificates */
#define MBEDTLS_SHA224_C
#define MBEDTLS_SHA256_C
#define MBEDTLS_SHA384_C
#define MBEDTLS_SHA512_C /* and lunamq-ctl passwd's PBKDF2-HMAC-SHA512 */
#define MBEDTLS_HKDF_C
/* SHA-256 with the Armv8 crypto instructions where the CPU has them (run-time check;
 * mbedTLS has no x86 SHA code) */
#define MBEDTLS_SHA256_USE_ARMV8_A_CRYPTO_IF_PRESENT

/* ---- X.509 ---- */
#define MBEDTLS_X509_USE_C
#define MBEDTLS_X509_CRT_PARSE_C
#define MBEDTLS_X509_CRL_PARSE_C
#define MBEDTLS_X509_RSASSA_PSS_SUPPORT
/* SPEED: a device certificate's chain is verified once, not at each reconnect
 * (broker/net/tls_trust.c, with tools/mbedtls-lunamq.patch): one ECDSA verification
 * of the two a full handshake needs, and none for the CRL */
#define MBEDTLS_X509_TRUSTED_CERTIFICATE_CALLBACK

/* ---- TLS ---- */
#define MBEDTLS_SSL_TLS_C
#define MBEDTLS_SSL_SRV_C
#define MBEDTLS_SSL_CLI_C /* lunamq-bench, and bridges to come */
#define MBEDTLS_SSL_PROTO_TLS1_2
#define MBEDTLS_SSL_PROTO_TLS1_3
#define MBEDTLS_KEY_EXCHANGE_ECDHE_ECDSA_ENABLED
#define MBEDTLS_KEY_EXCHANGE_ECDHE_RSA_ENABLED
#define MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL_ENABLED
#define MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_ENABLED /* psk_ke resumption */
#define MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_EPHEMERAL_ENABLED
#define MBEDTLS_SSL_TLS1_3_COMPATIBILITY_MODE /* middlebox compatibility, as clients send it */
#define MBEDTLS_SSL_SESSION_TICKETS           /* resumption after a reconnect storm */
#define MBEDTLS_SSL_TICKET_C
#define MBEDTLS_SSL_SERVER_NAME_INDICATION
#define MBEDTLS_SSL_ALPN
#define MBEDTLS_SSL_ENCRYPT_THEN_MAC
#define MBEDTLS_SSL_EXTENDED_MASTER_SECRET
#define MBEDTLS_SSL_KEEP_PEER_CERTIFICATE /* the device's identity after its handshake */
#define MBEDTLS_SSL_ALL_ALERT_MESSAGES
#define MBEDTLS_SSL_MAX_FRAGMENT_LENGTH /* a device that asks for small records gets them */
/* With a negotiated fragment length the record buffers shrink to it after the
 * handshake: a constrained device's idle connection costs less. */
#define MBEDTLS_SSL_VARIABLE_BUFFER_LENGTH
/* A peer may send 16 KiB records, so the input buffer must hold one; the output
 * buffer too, as mbedTLS does not split an outgoing TLS handshake message over
 * records (a server chain of three RSA certificates passes 8 KiB). */
#define MBEDTLS_SSL_IN_CONTENT_LEN  16384
#define MBEDTLS_SSL_OUT_CONTENT_LEN 16384

/* Not built: DTLS, renegotiation, static-RSA and PSK key exchanges, DES, Camellia,
 * ARIA, MD5, RIPEMD-160, Brainpool and the other short-Weierstrass curves, X448,
 * certificate writing, PKCS#5/#12 (encrypted key files), the net and timing modules,
 * PSA's key store on disk, self-tests. */

#endif
