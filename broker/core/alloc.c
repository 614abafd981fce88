/* SPDX-License-Identifier: MIT
 *
 * alloc: allocation that never returns NULL. Broker memory is bounded by limits
 * (max_packet_size, max_queued_*), so running out is fatal, logged, and aborts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
