/* SPDX-License-Identifier: MIT
 *
 * record: the bytes of the journal. Little-endian record fields (rec_*), CRC32C
 * (the CPU's instruction, or slice-by-8 tables built once), the frame around each record and the
 * scanner that finds how much of a buffer is whole, checked frames. Pure: no files, no threads but
 * the tables' one-time set-up. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lq.h"
#include "store_int.h"

/* ---- CRC32C (Castagnoli, reflected polynomial 0x82f63b78), slice-by-8 ---- */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void
crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
        crc_table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

static inline uint32_t
load32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t
load64(const uint8_t *p)
{
    return (uint64_t)load32(p) | (uint64_t)load32(p + 4) << 32;
}

/* Table-driven, on any CPU. */
uint32_t
store_crc32c_sw(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&crc_once, crc_init);
    const uint8_t *p = data;
    crc = ~crc;
    while (n >= 8) {
        uint32_t lo = load32(p) ^ crc, hi = load32(p + 4);
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
              crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xff] ^
              crc_table[2][(hi >> 8) & 0xff] ^ crc_table[1][(hi >> 16) & 0xff] ^
              crc_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

/* The CPU's CRC32C instruction (x86-64 SSE4.2, ARMv8 CRC), where it has one: 8 bytes
 * a cycle or so, 3-4x the tables; recovery checks every byte of the journal with it. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define CRC_HW_TARGET  __attribute__((target("sse4.2")))
#define CRC_HW_8(c, v) _mm_crc32_u64((c), (v))
#define CRC_HW_1(c, v) _mm_crc32_u8((c), (v))
static bool
cpu_has_crc(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2");
}
#elif defined(__aarch64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#include <arm_acle.h>
#include <sys/auxv.h>
#define CRC_HW_TARGET  __attribute__((target("+crc")))
#define CRC_HW_8(c, v) __crc32cd((c), (v))
#define CRC_HW_1(c, v) __crc32cb((c), (v))
static bool
cpu_has_crc(void)
{
    return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0;
}
#endif

#ifdef CRC_HW_TARGET
CRC_HW_TARGET static uint32_t
crc32c_hw(uint32_t crc, const void *data, size_t n)
{
    const uint8_t *p = data;
    uint64_t c = ~crc;
    for (; n >= 8; p += 8, n -= 8) c = CRC_HW_8(c, load64(p));
    while (n--) c = CRC_HW_1((uint32_t)c, *p++);
    return ~(uint32_t)c;
}

static uint32_t (*crc_impl)(uint32_t, const void *, size_t);
static pthread_once_t crc_pick_once = PTHREAD_ONCE_INIT;

static void
crc_pick(void)
{
    crc_impl = cpu_has_crc() ? crc32c_hw : store_crc32c_sw;
}

bool
store_crc32c_hw(void)
{
    pthread_once(&crc_pick_once, crc_pick);
    return crc_impl == crc32c_hw;
}

uint32_t
store_crc32c(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&crc_pick_once, crc_pick);
    return crc_impl(crc, data, n);
}
#else
bool
store_crc32c_hw(void)
{
    return false;
}

uint32_t
store_crc32c(uint32_t crc, const void *data, size_t n)
{
    return store_crc32c_sw(crc, data, n);
}
#endif

/* ---- writing record fields ---- */
static uint8_t *
grow(struct rec_buf *b, size_t n)
{
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) cap *= 2;
        b->p = lq_xrealloc(b->p, cap);
        b->cap = cap;
    }
    uint8_t *at = b->p + b->len;
    b->len += n;
    return at;
}

static void
put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

void
rec_u8(struct rec_buf *b, uint8_t v)
{
    *grow(b, 1) = v;
}

void
rec_u16(struct rec_buf *b, uint16_t v)
{
    put_le(grow(b, 2), v, 2);
}

void
rec_u32(struct rec_buf *b, uint32_t v)
{
    put_le(grow(b, 4), v, 4);
}

void
rec_u64(struct rec_buf *b, uint64_t v)
{
    put_le(grow(b, 8), v, 8);
}

void
rec_bytes(struct rec_buf *b, const void *p, size_t n)
{
    if (n > UINT32_MAX) abort(); /* callers bound their fields far below */
    rec_u32(b, (uint32_t)n);
    if (n) memcpy(grow(b, n), p, n);
}

void
rec_buf_free(struct rec_buf *b)
{
    free(b->p);
    *b = (struct rec_buf){0};
}

/* ---- reading record fields: the first failure sticks ---- */
static const uint8_t *
take(struct rec_reader *r, size_t n)
{
    if (r->bad || r->at > r->len || r->len - r->at < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *at = r->p + r->at;
    r->at += n;
    return at;
}

bool
rec_get_u8(struct rec_reader *r, uint8_t *v)
{
    const uint8_t *p = take(r, 1);
    if (p) *v = *p;
    return p != NULL;
}

bool
rec_get_u16(struct rec_reader *r, uint16_t *v)
{
    const uint8_t *p = take(r, 2);
    if (p) *v = (uint16_t)(p[0] | p[1] << 8);
    return p != NULL;
}

bool
rec_get_u32(struct rec_reader *r, uint32_t *v)
{
    const uint8_t *p = take(r, 4);
    if (p) *v = load32(p);
    return p != NULL;
}

bool
rec_get_u64(struct rec_reader *r, uint64_t *v)
{
    const uint8_t *p = take(r, 8);
    if (p) *v = load64(p);
    return p != NULL;
}

bool
rec_get_bytes(struct rec_reader *r, const uint8_t **p, uint32_t *n)
{
    uint32_t len;
    if (!rec_get_u32(r, &len)) return false;
    const uint8_t *at = take(r, len);
    if (!at) return false;
    *p = at;
    *n = len;
    return true;
}

/* ---- frames ---- */
void
frame_put_unsealed(struct rec_buf *b, uint8_t type, uint64_t seq, const void *p, size_t len)
{
    if (len > FRAME_MAX_LEN) abort(); /* store.h: callers bound their records */
    uint8_t *f = grow(b, FRAME_HDR + len);
    put_le(f, len, 4);
    put_le(f + 4, 0, 4);
    f[8] = type;
    put_le(f + 9, seq, 8);
    if (len) memcpy(f + FRAME_HDR, p, len);
}

static void
seal(uint8_t *f)
{
    uint32_t len = load32(f);
    put_le(f + 4, store_crc32c(0, f + FRAME_CRC_AT, FRAME_HDR - FRAME_CRC_AT + len), 4);
}

void
frame_put(struct rec_buf *b, uint8_t type, uint64_t seq, const void *p, size_t len)
{
    frame_put_unsealed(b, type, seq, p, len);
    seal(b->p + b->len - FRAME_HDR - len);
}

void
frames_seal(uint8_t *p, size_t len)
{
    for (size_t at = 0; len - at >= FRAME_HDR; at += FRAME_HDR + load32(p + at)) seal(p + at);
}

size_t
store_scan(const uint8_t *p, size_t len, bool check_crc, frame_fn fn, void *arg)
{
    size_t at = 0;
    while (len - at >= FRAME_HDR) {
        const uint8_t *f = p + at;
        uint32_t plen = load32(f);
        if (plen > FRAME_MAX_LEN || len - at - FRAME_HDR < plen) break;
        if (check_crc &&
            store_crc32c(0, f + FRAME_CRC_AT, FRAME_HDR - FRAME_CRC_AT + plen) != load32(f + 4))
            break;
        if (fn && !fn(f[8], load64(f + 9), f + FRAME_HDR, plen, arg)) break;
        at += FRAME_HDR + plen;
    }
    return at;
}
