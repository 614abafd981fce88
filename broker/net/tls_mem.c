/* SPDX-License-Identifier: MIT
 *
 * tls_mem: mbedTLS's allocator (mbedtls_platform_set_calloc_free), so that an idle
 * TLS connection costs what it uses. mbedTLS gives every connection two record
 * buffers of 16 KiB and more; calloc zeroes them (every page resident) and a handshake
 * fills their first kilobytes. Here a buffer of at least SLOT_MIN bytes gets a slot
 * of its own in a large anonymous mapping: fresh or handed back slots are zero pages
 * the kernel has not mapped yet, so calloc needs no memset and only the pages
 * records touch become resident. tls_mem_release gives the pages of a connection's
 * buffers past their first back to the kernel, between records (tls.c decides when:
 * nothing buffered in them), as after a large PUBLISH.
 *
 * Handing pages back (madvise) costs every thread's TLB a flush: it happens once per
 * connection after its handshake, and when a slot is freed past RESIDENT_FREE
 * resident free ones (mbedTLS zeroes a buffer it frees, touching every page again).
 *
 * The slots lie in one range of address space reserved at the first allocation (room
 * for a million buffers, no memory behind it), made usable 128 slots at a time: which
 * pointers are ours is one comparison. Slots are recycled, never unmapped (a reconnect
 * storm's peak stays reserved, not resident). A slot knows the owner whose
 * buffer it holds: the tls_conn whose mbedtls_ssl_setup allocated it (the two record
 * buffers, nothing else), and release touches a slot only while that owner holds it.
 * Everything smaller goes to calloc. Handshake threads allocate and free too: the free
 * list has a lock. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tls_mem.h"

#define SLOT_MIN      8192        /* smaller: calloc */
#define SLOT_SIZE     (20 * 1024) /* a 16 KiB record and mbedTLS's overhead, paged */
#define SLOT_HDR      64          /* struct slot, then the buffer */
#define REGION_SLOTS  128         /* 2.5 MiB made usable at a time */
#define MAX_SLOTS     (1u << 20)  /* 20 GiB of address space, 500 000 connections */
#define SLOT_MAX_USER (SLOT_SIZE - SLOT_HDR)
#define RESIDENT_FREE 64 /* free slots kept resident: 1.25 MiB */

struct slot {
    struct tls_mem_owner *owner; /* NULL: not tracked */
    struct slot *next_free;
    size_t len;
    bool resident; /* free and still mapped (zeroed by us) */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct slot *free_slots;
static unsigned nresident;       /* free slots still resident */
static size_t nused;             /* slots holding a buffer */
static char *area;               /* MAX_SLOTS reserved (PROT_NONE) at the first use */
static size_t area_slots;        /* how many the reservation holds */
static _Atomic size_t area_used; /* slots made usable; grows under mu, read without it */
static size_t page;
static _Thread_local struct tls_mem_owner *current_owner;

static bool
ours(const void *p)
{
    size_t used = atomic_load_explicit(&area_used, memory_order_acquire);
    return area && (const char *)p >= area && (const char *)p < area + used * SLOT_SIZE;
}

/* 128 more free slots (under mu). */
static bool
grow(void)
{
    if (!area) { /* reserve the address space: halved until the system grants it */
        for (size_t n = MAX_SLOTS; n >= REGION_SLOTS && !area; n /= 2) {
            void *r = mmap(NULL, n * SLOT_SIZE, PROT_NONE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (r != MAP_FAILED) {
                area = r;
                area_slots = n;
            }
        }
        if (!area) return false;
    }
    size_t used = atomic_load_explicit(&area_used, memory_order_relaxed);
    if (used + REGION_SLOTS > area_slots) return false;
    char *r = area + used * SLOT_SIZE;
    if (mprotect(r, (size_t)REGION_SLOTS * SLOT_SIZE, PROT_READ | PROT_WRITE) < 0) return false;
    atomic_store_explicit(&area_used, used + REGION_SLOTS, memory_order_release);
    for (int i = REGION_SLOTS - 1; i >= 0; i--) {
        struct slot *s = (struct slot *)(void *)(r + (size_t)i * SLOT_SIZE);
        s->next_free = free_slots;
        free_slots = s;
    }
    return true;
}

static void *
mem_calloc(size_t n, size_t size)
{
    if (n && size > SIZE_MAX / n) return NULL;
    size_t len = n * size;
    if (len < SLOT_MIN || len > SLOT_MAX_USER) return calloc(n, size);
    pthread_mutex_lock(&mu);
    if (!free_slots && !grow()) {
        pthread_mutex_unlock(&mu);
        return calloc(n, size);
    }
    struct slot *s = free_slots;
    free_slots = s->next_free;
    if (s->resident) nresident--;
    nused++;
    pthread_mutex_unlock(&mu);
    s->next_free = NULL;
    s->len = len;
    s->owner = current_owner;
    if (s->owner) {
        for (int i = 0; i < TLS_MEM_OWNED; i++)
            if (!s->owner->buf[i]) {
                s->owner->buf[i] = (char *)s + SLOT_HDR;
                break;
            }
    }
    return (char *)s + SLOT_HDR; /* zero: fresh, handed back, or zeroed in mem_free */
}

static void
mem_free(void *p)
{
    if (!p) return;
    if (!ours(p)) {
        free(p);
        return;
    }
    struct slot *s = (struct slot *)(void *)((char *)p - SLOT_HDR);
    if (s->owner)
        for (int i = 0; i < TLS_MEM_OWNED; i++)
            if (s->owner->buf[i] == p) s->owner->buf[i] = NULL;
    /* mbedTLS zeroised its buffers on the way out, every page of them resident again:
     * a few such slots are kept as they are for the next connections; past those,
     * the slot goes back to the kernel (an madvise costs the other threads' TLB) */
    pthread_mutex_lock(&mu);
    bool keep = nresident < RESIDENT_FREE;
    if (keep) nresident++;
    pthread_mutex_unlock(&mu);
    if (keep) {
        memset(p, 0, s->len); /* zero, as calloc promises (resident: no page faults) */
    } else {
        madvise(s, SLOT_SIZE, MADV_DONTNEED); /* zero when next touched */
    }
    s->resident = keep;
    pthread_mutex_lock(&mu);
    s->next_free = free_slots;
    free_slots = s;
    nused--;
    pthread_mutex_unlock(&mu);
}

bool
tls_mem_install(void)
{
#if defined(MBEDTLS_PLATFORM_MEMORY)
    page = (size_t)sysconf(_SC_PAGESIZE);
    if (page == 0 || SLOT_SIZE % page || SLOT_HDR + 256 > page) return false;
    return mbedtls_platform_set_calloc_free(mem_calloc, mem_free) == 0;
#else
    (void)mem_calloc;
    (void)mem_free;
    return false; /* a packaged mbedTLS without the hook: calloc it is */
#endif
}

size_t
tls_mem_slots_used(void)
{
    pthread_mutex_lock(&mu);
    size_t n = nused;
    pthread_mutex_unlock(&mu);
    return n;
}

void
tls_mem_set_owner(struct tls_mem_owner *o)
{
    current_owner = o;
}

/* The buffer's first page stays: the record layer keeps its counters and headers at
 * the start. Only the owner calls this, on its own thread, between records. Most
 * times there is nothing to give back (a handshake's records fit the first page):
 * mincore tells, without the madvise's TLB flush on every other thread. */
void
tls_mem_release(struct tls_mem_owner *o)
{
    if (!page) return;
    for (int i = 0; i < TLS_MEM_OWNED; i++) {
        char *p = o->buf[i];
        if (!p) continue;
        struct slot *s = (struct slot *)(void *)(p - SLOT_HDR);
        if (s->owner != o) continue;
        unsigned char in_core[SLOT_SIZE / 4096 + 1];
        size_t pages = SLOT_SIZE / page, first = 0;
        if (pages > sizeof(in_core) || mincore(s, SLOT_SIZE, in_core) < 0) first = 1;
        for (size_t k = 1; !first && k < pages; k++)
            if (in_core[k] & 1) first = k;
        if (first) madvise((char *)s + first * page, SLOT_SIZE - first * page, MADV_DONTNEED);
    }
}
