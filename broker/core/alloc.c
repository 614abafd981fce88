/* SPDX-License-Identifier: MIT
 *
 * alloc: allocation that never returns NULL. Broker memory is bounded by limits
 * (max_packet_size, max_queued_*), so running out is fatal, logged, and aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "lq.h"

static void
oom(size_t n)
{
    fprintf(stderr, "lunamq: out of memory allocating %zu bytes\n", n);
    abort();
}

void *
lq_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *
lq_xcalloc(size_t nmemb, size_t n)
{
    void *p = calloc(nmemb ? nmemb : 1, n ? n : 1);
    if (!p) oom(nmemb * n);
    return p;
}

void *
lq_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *
lq_xstrndup(const char *s, size_t n)
{
    char *d = lq_xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *
lq_xstrdup(const char *s)
{
    return lq_xstrndup(s, strlen(s));
}

/* ---- bulk loading ----
 * The persistence replay allocates hundreds of MB in small pieces, and on a virtual
 * machine the fault of each 4 KiB page is most of its time (~1 s of 3.5 for 1 M retained
 * messages and 1 M queued ones). While it runs, the heap grows in large steps and each
 * step is marked for transparent huge pages before it is touched: what glibc's
 * glibc.malloc.hugetlb=1 tunable does, which a program cannot set for itself. */
#if defined(__GLIBC__) && defined(M_TOP_PAD) && defined(MADV_HUGEPAGE)
#define HEAP_STEP (32u << 20)
#define HUGE_PAGE ((uintptr_t)2 << 20)
static uintptr_t heap_marked; /* the heap below this is marked (or was there before) */

void
lq_heap_bulk_begin(void)
{
    if (mallopt(M_TOP_PAD, HEAP_STEP) != 1) return;
    heap_marked = ((uintptr_t)sbrk(0) + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
}

void
lq_heap_bulk_step(void)
{
    if (!heap_marked) return;
    uintptr_t top = (uintptr_t)sbrk(0) & ~(HUGE_PAGE - 1); /* no system call once known */
    if (top <= heap_marked) return;
    madvise((void *)heap_marked, top - heap_marked, MADV_HUGEPAGE); /* a hint: may fail */
    heap_marked = top;
}

void
lq_heap_bulk_end(void)
{
    if (!heap_marked) return;
    heap_marked = 0;
    /* mallopt turned off glibc's sliding mmap and trim thresholds (which rise with the
     * largest block freed): fix them where a few-MB packet would have slid them (trim at
     * twice the mmap threshold, as the slide does), then give back what the last step
     * did not use. */
    mallopt(M_TOP_PAD, 128 << 10);
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    mallopt(M_TRIM_THRESHOLD, 8 << 20);
    malloc_trim(0);
}
#else
void
lq_heap_bulk_begin(void)
{
}
void
lq_heap_bulk_step(void)
{
}
void
lq_heap_bulk_end(void)
{
}
#endif
