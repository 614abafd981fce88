/* SPDX-License-Identifier: MIT
 *
 * sbuf: growable text and the JSON-or-text reply writer. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lq.h"
#include "sbuf.h"

static void
reserve(struct sbuf *b, size_t n)
{
    if (b->len + n + 1 <= b->cap) return;
    b->cap = (b->len + n + 1) * 2;
    b->p = lq_xrealloc(b->p, b->cap);
}

void
sbuf_put(struct sbuf *b, const char *s, size_t n)
{
    reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void
sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void
sbuf_json_str(struct sbuf *b, const char *s, size_t n)
{
    sbuf_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sbuf_put(b, e, 2);
        } else if (c < 0x20 || c == 0x7f) {
            sbuf_printf(b, "\\u%04x", c);
        } else {
            sbuf_put(b, (const char *)&s[i], 1);
        }
    }
    sbuf_put(b, "\"", 1);
}

void
sbuf_free(struct sbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* ---- replies ---- */

static void
key(struct reply *r, const char *k)
{
    if (r->json) {
        if (r->nfields++) sbuf_put(r->b, ",", 1);
        sbuf_json_str(r->b, k, strlen(k));
        sbuf_put(r->b, ":", 1);
    } else if (r->in_list) {
        sbuf_printf(r->b, "%s%s=", r->nfields++ ? "  " : "", k);
    } else {
        r->nfields++;
        sbuf_printf(r->b, "%-28s ", k);
    }
}

static void
end_field(struct reply *r)
{
    if (!r->json && !r->in_list) sbuf_put(r->b, "\n", 1);
}

void
reply_object(struct reply *r)
{
    r->nfields = 0;
    if (r->json) {
        if (r->in_list && r->nitems) sbuf_put(r->b, ",", 1);
        sbuf_put(r->b, "{", 1);
    }
    if (r->in_list) r->nitems++;
}

void
reply_end_object(struct reply *r)
{
    if (r->json)
        sbuf_put(r->b, "}", 1);
    else if (r->in_list)
        sbuf_put(r->b, "\n", 1);
}

void
reply_list(struct reply *r, const char *k)
{
    if (k) key(r, k);
    if (r->json)
        sbuf_put(r->b, "[", 1);
    else if (k)
        sbuf_put(r->b, "\n", 1);
    r->in_list = true;
    r->nitems = 0;
}

void
reply_end_list(struct reply *r)
{
    if (r->json) sbuf_put(r->b, "]", 1);
    r->in_list = false;
    r->nfields = 1; /* a list is a field of the enclosing object, if any */
}

void
reply_str(struct reply *r, const char *k, const char *v)
{
    key(r, k);
    if (r->json) {
        if (v)
            sbuf_json_str(r->b, v, strlen(v));
        else
            sbuf_put(r->b, "null", 4);
    } else if (v) { /* for people: a client id may hold control characters */
        size_t cap = 4 * strlen(v) + 1;
        char *e = lq_xmalloc(cap);
        lq_escape_controls(v, e, cap);
        sbuf_put(r->b, e, strlen(e));
        free(e);
    } else {
        sbuf_put(r->b, "-", 1);
    }
    end_field(r);
}

void
reply_u64(struct reply *r, const char *k, uint64_t v)
{
    key(r, k);
    sbuf_printf(r->b, "%llu", (unsigned long long)v);
    end_field(r);
}

void
reply_dbl(struct reply *r, const char *k, double v)
{
    key(r, k);
    sbuf_printf(r->b, "%.3f", v);
    end_field(r);
}

void
reply_bool(struct reply *r, const char *k, bool v)
{
    key(r, k);
    sbuf_printf(r->b, "%s", v ? "true" : "false");
    end_field(r);
}
