/* SPDX-License-Identifier: MIT
 * Shared by the files of net/ only: mbedTLS's allocator (tls_mem.c). */
#ifndef LUNAMQ_TLS_MEM_H
#define LUNAMQ_TLS_MEM_H

#include <stdbool.h>
#include <stddef.h>

#include <mbedtls/platform.h>

#define TLS_MEM_OWNED 4

/* A connection's record buffers, as the allocator handed them out (tls_conn). */
struct tls_mem_owner {
    void *buf[TLS_MEM_OWNED];
};

/* Install the allocator (before any mbedTLS allocation); false where mbedTLS was built
 * without MBEDTLS_PLATFORM_MEMORY (a packaged one): then calloc serves it all. */
bool tls_mem_install(void);
/* Record buffers in slots now (the rest are calloc's). */
size_t tls_mem_slots_used(void);
/* What mbedTLS allocates on this thread from now on belongs to o (NULL: nobody). */
void tls_mem_set_owner(struct tls_mem_owner *o);
/* Give the pages of o's buffers past their first back to the kernel. */
void tls_mem_release(struct tls_mem_owner *o);

#endif
