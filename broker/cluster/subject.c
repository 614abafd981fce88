/* SPDX-License-Identifier: MIT
 *
 * subject: MQTT topics and filters as NATS subjects, and subjects back to topics.
 * Pure byte work into the caller's buffers: no allocation, no state. The escaping is
 * canonical (one spelling per topic), so a subject and its topic determine each
 * other and NATS's byte-exact subject compare agrees with MQTT's level compare.
 * Not here: the '$' rule for wildcard-first filters (the receiving node's routing). */
#include <stdint.h>
#include <string.h>

#include "cluster_int.h"

static const char hex_digit[] = "0123456789ABCDEF";

/* Would this byte of a level be written %XX? '.' separates NATS tokens, '*' and '>'
 * are its wildcards, '%' starts an escape, and a subject holds no white space or control
 * byte (the protocol splits its lines there). A '$' beginning a level is escaped so that no token
 * of ours looks like one of NATS's own "$" names (system and JetStream subjects). */
static bool
is_escaped(unsigned char c, bool first)
{
    /* one bit per ASCII byte: a third faster than the chain of compares */
    static const uint64_t ascii[2] = {
        ((1ull << 0x21) - 1) | 1ull << '%' | 1ull << '*' | 1ull << '.' | 1ull << '>',
        1ull << (0x7f - 64),
    };
    return (c < 128 && (ascii[c >> 6] >> (c & 63) & 1)) || (first && c == '$');
}

/* A buffer that keeps one byte for the final NUL. */
struct sink {
    char *p;
    size_t len, cap;
};

static bool
put(struct sink *o, const char *b, size_t n)
{
    if (o->cap - o->len <= n) return false; /* n bytes and the NUL? */
    memcpy(o->p + o->len, b, n);
    o->len += n;
    return true;
}

static bool
put_level(struct sink *o, const unsigned char *l, size_t n)
{
    if (n == 0) return put(o, "%-", 2);
    size_t run = 0; /* start of the bytes that pass unchanged */
    for (size_t i = 0; i < n; i++) {
        if (!is_escaped(l[i], i == 0)) continue;
        char esc[3] = {'%', hex_digit[l[i] >> 4], hex_digit[l[i] & 15]};
        if (!put(o, (const char *)l + run, i - run) || !put(o, esc, 3)) return false;
        run = i + 1;
    }
    return put(o, (const char *)l + run, n - run);
}

/* '.' and a token for each level of s; wildcards is false for a topic name. */
static bool
put_levels(struct sink *o, const char *s, size_t n, bool wildcards)
{
    size_t i = 0;
    for (;;) {
        size_t end = i;
        while (end < n && s[end] != '/') end++;
        if (!put(o, ".", 1)) return false;
        bool one = end - i == 1;
        if (wildcards && one && s[i] == '+') {
            if (!put(o, "*", 1)) return false;
        } else if (wildcards && one && s[i] == '#') {
            if (!put(o, ">", 1)) return false;
        } else if (!put_level(o, (const unsigned char *)s + i, end - i)) {
            return false;
        }
        if (end == n) return true;
        i = end + 1;
    }
}

size_t
cluster_subject_of_topic(const char *prefix, const char *topic, size_t tlen, char *out, size_t cap)
{
    struct sink o = {out, 0, cap};
    if (!put(&o, prefix, strlen(prefix)) || !put_levels(&o, topic, tlen, false)) return 0;
    out[o.len] = '\0';
    return o.len;
}

static int
hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1; /* lower case too: one spelling per topic */
}

long
cluster_topic_of_subject(const char *tokens, size_t len, char *out, size_t cap)
{
    const unsigned char *s = (const unsigned char *)tokens;
    size_t i = 0, n = 0;
    for (;;) {
        size_t end = i;
        while (end < len && s[end] != '.') end++;
        if (end == i) return -1; /* an empty token: "", "a..b", "a." */
        bool empty_level = end - i == 2 && s[i] == '%' && s[i + 1] == '-';
        for (size_t j = i; !empty_level && j < end;) {
            unsigned char c = s[j];
            bool first = j == i;
            if (c == '%') {
                int hi = end - j >= 3 ? hex_value(s[j + 1]) : -1;
                int lo = end - j >= 3 ? hex_value(s[j + 2]) : -1;
                if (hi < 0 || lo < 0) return -1;
                c = (unsigned char)(hi << 4 | lo);
                if (!is_escaped(c, first)) return -1; /* "%41": not how A is written */
                j += 3;
            } else {
                /* a byte the mapping escapes, or one no topic name holds in a level */
                if (is_escaped(c, first) || c == '/' || c == '+' || c == '#') return -1;
                j++;
            }
            if (n == cap) return -1;
            out[n++] = (char)c;
        }
        if (end == len) return (long)n;
        if (n == cap) return -1;
        out[n++] = '/';
        i = end + 1;
    }
}

int
cluster_subjects_of_filter(const char *prefix, const char *filter, size_t flen, char *out[2],
                           size_t cap)
{
    /* "a/#" is "P.a" and "P.a.>"; "#" alone stays one level: "P.>" */
    bool parent_too = flen >= 2 && filter[flen - 2] == '/' && filter[flen - 1] == '#';
    struct sink o = {out[0], 0, cap};
    if (!put(&o, prefix, strlen(prefix)) ||
        !put_levels(&o, filter, parent_too ? flen - 2 : flen, true))
        return 0;
    out[0][o.len] = '\0';
    if (!parent_too) return 1;
    struct sink o1 = {out[1], 0, cap};
    if (!put(&o1, out[0], o.len) || !put(&o1, ".>", 2)) return 0;
    out[1][o1.len] = '\0';
    return 2;
}
