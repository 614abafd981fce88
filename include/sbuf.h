/* SPDX-License-Identifier: MIT
 *
 * sbuf: a growable text buffer (admin replies, $SYS payloads, metrics pages), and a
 * small writer that emits one reply as JSON or as aligned text for people, from the
 * same calls. */
#ifndef LUNAMQ_SBUF_H
#define LUNAMQ_SBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sbuf {
    char *p;
    size_t len, cap;
};

void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbuf_put(struct sbuf *b, const char *s, size_t n);
/* s as a JSON string literal, quotes included; bytes that are not UTF-8 text are
 * escaped as \u00XX of the byte. */
void sbuf_json_str(struct sbuf *b, const char *s, size_t n);
void sbuf_free(struct sbuf *b);

/* A reply: an object of fields, or a list of such objects. In text form an object is
 * one "key  value" line per field; a list item is one line of key=value pairs. A list
 * is either the whole reply or the last field of the reply's object (no deeper). */
struct reply {
    struct sbuf *b;
    bool json;
    bool in_list; /* items of a list */
    int nfields;  /* in the current object */
    int nitems;   /* in the current list */
};
void reply_object(struct reply *r); /* begin an object (or a list item) */
void reply_end_object(struct reply *r);
void reply_list(struct reply *r, const char *key); /* NULL key: the reply is a list */
void reply_end_list(struct reply *r);
void reply_str(struct reply *r, const char *key, const char *v); /* NULL v: null */
void reply_u64(struct reply *r, const char *key, uint64_t v);
void reply_dbl(struct reply *r, const char *key, double v);
void reply_bool(struct reply *r, const char *key, bool v);

#endif
