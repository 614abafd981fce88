/* SPDX-License-Identifier: MIT
 *
 * passwd: mosquitto's password_file. Each line is `user:$7$ITER$SALT$HASH` (PBKDF2-HMAC-
 * SHA512, what mosquitto_passwd writes) or `user:$6$SALT$HASH` (SHA-512 of the password
 * then the salt, mosquitto 1.x); SALT and HASH are standard base64 of 12 or 64 and of
 * 64 bytes. Lines are looked up by user in a hash table. Passwords and hashes never
 * reach a log or an error message; hashes are compared in constant time.
 *
 * Where we differ from mosquitto, on purpose:
 * - a line that is not a valid entry fails the load with "FILE:LINE: why" (mosquitto
 *   logs it and drops the user, so a typo silently locks someone out or in);
 * - the whole password is hashed, NUL bytes included (mosquitto stops at the first NUL:
 *   "secret\0junk" passes there as "secret");
 * - an iteration count above PW_MAX_ITERATIONS is refused (one check would take
 *   seconds: a file with it is a mistake or an attack on the verifying thread).
 * A user listed twice: the last line wins, as in mosquitto (uthash keeps the last). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <mbedtls/base64.h>
#include <mbedtls/constant_time.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha512.h>

#include "auth.h"
#include "auth_int.h"
#include "levelmap.h"
#include "lq.h"

#define HASH_LEN  64
#define SALT_LEN  12 /* what we write; mosquitto 2.0 reads only this */
#define SALT_MAX  64 /* mosquitto 2.1 writes 64-byte salts */
#define B64_MAX   88 /* base64 of 64 bytes */
#define USER_MAX  65535
#define LINE_MAX_ (USER_MAX + 256)

struct pw_entry {
    uint8_t kind; /* 6: SHA-512, 7: PBKDF2 */
    uint8_t salt_len;
    uint32_t iterations; /* $7$ */
    uint8_t salt[SALT_MAX];
    uint8_t hash[HASH_LEN];
};

struct pwfile {
    int refs;
    struct levelmap users; /* name -> struct pw_entry */
    /* what an unknown user's password is checked against: the file's most common
     * kind and iteration count, so that the answer takes as long as for a known one */
    struct pw_entry decoy;
};

/* ---- base64 ---- */

/* Standard alphabet; '=' padding may be left out. Returns the decoded length, or -1. */
static int
b64_decode(const char *s, size_t n, uint8_t *out, size_t outlen)
{
    char padded[B64_MAX + 4];
    if (n == 0 || n > B64_MAX) return -1;
    size_t k = 0;
    while (k < n && s[k] != '=') {
        char ch = s[k];
        bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= '0' && ch <= '9') || ch == '+' || ch == '/';
        if (!ok) return -1;
        k++;
    }
    for (size_t i = k; i < n; i++)
        if (s[i] != '=') return -1; /* '=' only at the end */
    if (n - k > 2 || k % 4 == 1) return -1;
    memcpy(padded, s, k);
    while (k % 4) padded[k++] = '=';
    size_t olen = 0;
    if (mbedtls_base64_decode(out, outlen, &olen, (const unsigned char *)padded, k) != 0) return -1;
    return (int)olen;
}

/* ---- one entry ---- */

/* Parses the part after "user:". Returns NULL, or why it is not an entry. */
static const char *
parse_hash(const char *s, size_t n, struct pw_entry *e)
{
    *e = (struct pw_entry){0};
    if (n >= 10 && memcmp(s, "$argon2id$", 10) == 0)
        return "an argon2id hash (mosquitto 2.1): only $6$ and $7$ are supported";
    if (n < 3 || s[0] != '$' || (s[1] != '6' && s[1] != '7') || s[2] != '$')
        return "not a $7$ or $6$ hash (plain text passwords are not read: hash them with "
               "lunamq-ctl passwd or mosquitto_passwd -U)";
    e->kind = (uint8_t)(s[1] - '0');
    const char *p = s + 3, *end = s + n;
    if (e->kind == 7) {
        uint64_t it = 0;
        const char *d = p;
        while (p < end && *p >= '0' && *p <= '9') {
            if (it <= PW_MAX_ITERATIONS) it = it * 10 + (uint64_t)(*p - '0');
            p++;
        }
        if (p == end && p != d) return "no '$' after the iteration count";
        if (p == d || *p != '$') return "the iteration count is not a number";
        if (it == 0) return "an iteration count of 0";
        if (it > PW_MAX_ITERATIONS) return "an iteration count above 10000000";
        e->iterations = (uint32_t)it;
        p++;
    }
    const char *salt = p;
    while (p < end && *p != '$') p++;
    if (p == end) return "no '$' between the salt and the hash";
    int sl = b64_decode(salt, (size_t)(p - salt), e->salt, sizeof(e->salt));
    if (sl != SALT_LEN && sl != SALT_MAX)
        return sl < 0 ? "the salt is not base64" : "the salt is not 12 or 64 bytes";
    e->salt_len = (uint8_t)sl;
    const char *hash = ++p;
    while (p < end && *p != '$') p++;
    if (p != end) return "a '$' after the hash";
    int hl = b64_decode(hash, (size_t)(end - hash), e->hash, sizeof(e->hash));
    if (hl != HASH_LEN) return hl < 0 ? "the hash is not base64" : "the hash is not 64 bytes";
    return NULL;
}

/* PBKDF2-HMAC-SHA512, one 64-byte block (all $7$ needs). The HMAC key's inner and outer
 * states are hashed once and copied for each round, which then costs two SHA-512
 * compressions; mbedTLS's generic PBKDF2 hashes the padded key again every round (four),
 * which made a CONNECT with a password cost twice what it does in mosquitto. */
static void
pbkdf2_sha512(const uint8_t *pw, size_t len, const uint8_t *salt, size_t slen, unsigned rounds,
              uint8_t out[HASH_LEN])
{
    uint8_t key[128] = {0}, pad[128], u[HASH_LEN];
    if (len > sizeof(key))
        mbedtls_sha512(pw, len, key, 0); /* HMAC: a key longer than a block is hashed */
    else if (len)
        memcpy(key, pw, len);
    mbedtls_sha512_context in, outer, c;
    mbedtls_sha512_init(&in);
    mbedtls_sha512_init(&outer);
    mbedtls_sha512_init(&c);
    for (size_t i = 0; i < sizeof(pad); i++) pad[i] = key[i] ^ 0x36;
    mbedtls_sha512_starts(&in, 0);
    mbedtls_sha512_update(&in, pad, sizeof(pad));
    for (size_t i = 0; i < sizeof(pad); i++) pad[i] = key[i] ^ 0x5c;
    mbedtls_sha512_starts(&outer, 0);
    mbedtls_sha512_update(&outer, pad, sizeof(pad));
    static const uint8_t block1[4] = {0, 0, 0, 1}; /* INT(1): the first and only block */
    mbedtls_sha512_clone(&c, &in);
    mbedtls_sha512_update(&c, salt, slen);
    mbedtls_sha512_update(&c, block1, sizeof(block1));
    mbedtls_sha512_finish(&c, u);
    mbedtls_sha512_clone(&c, &outer);
    mbedtls_sha512_update(&c, u, sizeof(u));
    mbedtls_sha512_finish(&c, u);
    memcpy(out, u, HASH_LEN);
    for (unsigned r = 1; r < rounds; r++) {
        mbedtls_sha512_clone(&c, &in);
        mbedtls_sha512_update(&c, u, sizeof(u));
        mbedtls_sha512_finish(&c, u);
        mbedtls_sha512_clone(&c, &outer);
        mbedtls_sha512_update(&c, u, sizeof(u));
        mbedtls_sha512_finish(&c, u);
        for (size_t i = 0; i < HASH_LEN; i++) out[i] ^= u[i];
    }
    mbedtls_sha512_free(&in);
    mbedtls_sha512_free(&outer);
    mbedtls_sha512_free(&c);
    mbedtls_platform_zeroize(key, sizeof(key));
    mbedtls_platform_zeroize(pad, sizeof(pad));
    mbedtls_platform_zeroize(u, sizeof(u));
}

static void
compute(const struct pw_entry *e, const void *password, size_t len, uint8_t out[HASH_LEN])
{
    const unsigned char *pw = len ? password : (const unsigned char *)"";
    if (e->kind == 6) {
        mbedtls_sha512_context ctx;
        mbedtls_sha512_init(&ctx);
        mbedtls_sha512_starts(&ctx, 0);
        mbedtls_sha512_update(&ctx, pw, len);
        mbedtls_sha512_update(&ctx, e->salt, e->salt_len);
        mbedtls_sha512_finish(&ctx, out);
        mbedtls_sha512_free(&ctx);
    } else {
        pbkdf2_sha512(pw, len, e->salt, e->salt_len, e->iterations, out);
    }
}

static bool
entry_matches(const struct pw_entry *e, const void *password, size_t len)
{
    uint8_t h[HASH_LEN];
    compute(e, password, len, h);
    bool ok = mbedtls_ct_memcmp(h, e->hash, HASH_LEN) == 0;
    mbedtls_platform_zeroize(h, sizeof(h));
    return ok;
}

bool
pw_entry_verify(const struct pw_entry *e, const void *password, size_t len)
{
    static const struct pw_entry typical = {
        .kind = 7, .salt_len = SALT_LEN, .iterations = PW_DEFAULT_ITERATIONS};
    if (!e) {
        entry_matches(&typical, password, len); /* the time of a check, not its answer */
        return false;
    }
    return entry_matches(e, password, len);
}

bool
pwfile_verify(const struct pwfile *f, const char *user, size_t ulen, const void *password,
              size_t len)
{
    const struct pw_entry *e = pwfile_find(f, user, ulen);
    if (!e) {
        entry_matches(&f->decoy, password, len);
        return false;
    }
    return entry_matches(e, password, len);
}

/* ---- making an entry ---- */

bool
pw_user_is_storable(const char *user)
{
    size_t n = strlen(user);
    if (n == 0 || n > USER_MAX) return false;
    if (user[0] == ' ' || user[n - 1] == ' ') return false; /* the loader trims blanks */
    if (user[0] == '#') return false;                       /* a comment line */
    for (size_t i = 0; i < n; i++)
        if (user[i] == ':' || (unsigned char)user[i] < 0x20 || user[i] == 0x7f) return false;
    return true;
}

static int
random_bytes(uint8_t *p, size_t n)
{
    while (n) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

int
pw_entry_make(const char *user, const void *password, size_t len, unsigned iterations, char *out,
              size_t outlen)
{
    if (!pw_user_is_storable(user) || iterations > PW_MAX_ITERATIONS) return -1;
    struct pw_entry e = {.kind = 7,
                         .salt_len = SALT_LEN,
                         .iterations = iterations ? iterations : PW_DEFAULT_ITERATIONS};
    if (random_bytes(e.salt, SALT_LEN) < 0) return -1;
    compute(&e, password, len, e.hash);
    unsigned char salt64[B64_MAX + 1], hash64[B64_MAX + 1];
    size_t sl = 0, hl = 0;
    int rc = -1;
    if (mbedtls_base64_encode(salt64, sizeof(salt64), &sl, e.salt, SALT_LEN) == 0 &&
        mbedtls_base64_encode(hash64, sizeof(hash64), &hl, e.hash, HASH_LEN) == 0) {
        int n = snprintf(out, outlen, "%s:$7$%u$%s$%s", user, (unsigned)e.iterations,
                         (const char *)salt64, (const char *)hash64);
        if (n >= 0 && (size_t)n < outlen) rc = n;
    }
    mbedtls_platform_zeroize(&e, sizeof(e));
    mbedtls_platform_zeroize(hash64, sizeof(hash64));
    if (rc < 0 && outlen) out[0] = '\0';
    return rc;
}

/* ---- the file ---- */

static void
free_users(struct levelmap *m)
{
    for (uint32_t i = 0; i < m->cap; i++)
        for (struct levelmap_entry *e = m->b[i]; e; e = e->next) {
            mbedtls_platform_zeroize(e->val, sizeof(struct pw_entry));
            free(e->val);
        }
    levelmap_fini(m);
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The decoy: the most common iteration count of the $7$ entries ($6$ when all are). */
static void
choose_decoy(struct pwfile *f)
{
    size_t n = 0, n6 = 0;
    uint32_t *its = lq_xmalloc((f->users.n + 1) * sizeof(*its));
    for (uint32_t i = 0; i < f->users.cap; i++)
        for (struct levelmap_entry *e = f->users.b[i]; e; e = e->next) {
            const struct pw_entry *pe = e->val;
            if (pe->kind == 7)
                its[n++] = pe->iterations;
            else
                n6++;
        }
    f->decoy = (struct pw_entry){.kind = 7, .salt_len = SALT_LEN};
    f->decoy.iterations = PW_DEFAULT_ITERATIONS;
    if (n6 > n) f->decoy.kind = 6;
    qsort(its, n, sizeof(*its), cmp_u32);
    size_t best = 0;
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i; j < n && its[j] == its[i]; j++) continue;
        if (j - i > best) {
            best = j - i;
            f->decoy.iterations = its[i];
        }
    }
    free(its);
}

static bool
is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f';
}

/* One non-comment line into f; NULL, or why not. */
static const char *
add_line(struct pwfile *f, const char *s, size_t n)
{
    const char *colon = memchr(s, ':', n);
    if (!colon) return "no ':' (expected user:$7$... or user:$6$...)";
    const char *u = s, *ue = colon;
    while (u < ue && is_blank(*u)) u++; /* mosquitto trims the name */
    while (ue > u && is_blank(ue[-1])) ue--;
    if (u == ue) return "an empty user name";
    if ((size_t)(ue - u) > USER_MAX) return "a user name longer than 65535 bytes";
    const char *h = colon + 1, *he = s + n;
    while (h < he && is_blank(*h)) h++;
    struct pw_entry e;
    const char *why = parse_hash(h, (size_t)(he - h), &e);
    if (why) return why;
    struct pw_entry *old = levelmap_get(&f->users, u, (size_t)(ue - u));
    if (old) {
        *old = e; /* the last line wins */
    } else {
        struct pw_entry *pe = lq_xmalloc(sizeof(*pe));
        *pe = e;
        levelmap_put(&f->users, u, (size_t)(ue - u), pe);
    }
    mbedtls_platform_zeroize(&e, sizeof(e));
    return NULL;
}

struct pwfile *
pwfile_load(const char *path, char *err, size_t errlen)
{
    struct auth_lines l;
    if (auth_lines_open(&l, path, LINE_MAX_, err, errlen) < 0) return NULL;
    struct pwfile *f = lq_xcalloc(1, sizeof(*f));
    f->refs = 1;
    size_t n;
    int rc;
    while ((rc = auth_lines_next(&l, &n, err, errlen)) == 1) {
        size_t i = 0;
        while (i < n && is_blank(l.buf[i])) i++;
        if (i == n || l.buf[i] == '#') continue;
        const char *why = add_line(f, l.buf, n);
        if (why) {
            auth_line_error(&l, err, errlen, "%s", why);
            rc = -1;
            break;
        }
    }
    mbedtls_platform_zeroize(l.buf, l.cap);
    auth_lines_close(&l);
    if (rc < 0) {
        pwfile_unref(f);
        return NULL;
    }
    choose_decoy(f);
    return f;
}

struct pwfile *
pwfile_ref(struct pwfile *f)
{
    f->refs++;
    return f;
}

void
pwfile_unref(struct pwfile *f)
{
    if (!f || --f->refs > 0) return; /* last reference? */
    free_users(&f->users);
    free(f);
}

size_t
pwfile_count(const struct pwfile *f)
{
    return f->users.n;
}

const struct pw_entry *
pwfile_find(const struct pwfile *f, const char *user, size_t len)
{
    return levelmap_get(&f->users, user, len);
}
