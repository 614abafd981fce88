/* SPDX-License-Identifier: MIT
 *
 * libFuzzer target over the journal/snapshot reader (store_scan in
 * broker/store/record.c). The first byte picks how the rest is used:
 *
 * - even: the bytes are a segment or snapshot as found on disk. The scan must not
 *   crash, and its valid prefix must scan again to the same prefix and the same
 *   records (with and without the CRC check).
 * - odd: the bytes describe records (type, length, payload) that are framed the way
 *   the writer frames them, then the buffer is cut short and one bit flipped at
 *   places the input picks. The whole buffer must scan completely; the damaged one
 *   must give exactly the records before the first damaged or missing frame.
 *
 * `make fuzz FUZZ_SECONDS=N`; seeds in test/fuzz/corpus-store (make_corpus_store.py). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"
#include "fuzz_check.h"

#define MAX_FRAMES 4096

struct seen {
    size_t n;
    struct {
        uint8_t type;
        uint64_t seq;
        const uint8_t *p;
        size_t len;
    } f[MAX_FRAMES];
};

static bool
record(uint8_t type, uint64_t seq, const uint8_t *p, size_t len, void *arg)
{
    struct seen *s = arg;
    if (s->n == MAX_FRAMES) return false; /* stops the scan: the prefix ends here */
    s->f[s->n].type = type;
    s->f[s->n].seq = seq;
    s->f[s->n].p = p;
    s->f[s->n].len = len;
    s->n++;
    return true;
}

static void
same(const struct seen *a, const struct seen *b)
{
    CHECK(a->n == b->n);
    for (size_t i = 0; i < a->n; i++)
        CHECK(a->f[i].type == b->f[i].type && a->f[i].seq == b->f[i].seq &&
              a->f[i].p == b->f[i].p && a->f[i].len == b->f[i].len);
}

static struct seen s1, s2, s3;

static void
raw(const uint8_t *p, size_t len)
{
    s1.n = s2.n = s3.n = 0;
    size_t good = store_scan(p, len, true, record, &s1);
    CHECK(good <= len);
    /* the prefix in a buffer of its own, so that ASan sees a read past it */
    uint8_t *copy = malloc(good ? good : 1);
    memcpy(copy, p, good);
    CHECK(store_scan(copy, good, true, NULL, NULL) == good);
    free(copy);
    CHECK(store_scan(p, good, true, record, &s2) == good);
    CHECK(store_scan(p, good, false, record, &s3) == good);
    same(&s1, &s2);
    same(&s1, &s3);
    size_t sum = 0;
    for (size_t i = 0; i < s1.n; i++) sum += FRAME_HDR + s1.f[i].len;
    CHECK(sum == good);
}

static uint16_t
take16(const uint8_t **p, size_t *len)
{
    uint16_t v = 0;
    if (*len >= 2) {
        v = (uint16_t)((*p)[0] | (*p)[1] << 8);
        *p += 2;
        *len -= 2;
    }
    return v;
}

static void
damaged(const uint8_t *p, size_t len)
{
    uint16_t cut = take16(&p, &len), flip = take16(&p, &len);
    struct rec_buf b = {0};
    size_t ends[MAX_FRAMES], n = 0;
    while (len >= 2 && n < MAX_FRAMES) { /* type, length, payload */
        size_t plen = p[1] % 64 < len - 2 ? p[1] % 64 : len - 2;
        frame_put(&b, p[0], n + 1, p + 2, plen);
        ends[n++] = b.len;
        p += 2 + plen;
        len -= 2 + plen;
    }
    s1.n = 0;
    CHECK(store_scan(b.p, b.len, true, record, &s1) == b.len && s1.n == n);
    size_t keep = b.len ? cut % (b.len + 1) : 0;
    size_t bit = b.len ? flip % (b.len * 8) : 0;
    if (b.len) b.p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    size_t expect = 0; /* the end of the last whole frame before the cut and the flip */
    for (size_t i = 0; i < n && ends[i] <= keep && (!b.len || ends[i] <= bit / 8); i++)
        expect = ends[i];
    uint8_t *copy = malloc(keep ? keep : 1);
    if (keep) memcpy(copy, b.p, keep);
    CHECK(store_scan(copy, keep, true, NULL, NULL) == expect);
    free(copy);
    rec_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size) return 0;
    if (data[0] & 1)
        damaged(data + 1, size - 1);
    else
        raw(data + 1, size - 1);
    return 0;
}
