/* SPDX-License-Identifier: MIT
 *
 * lines: reads the password and ACL files one bounded line at a time. A hostile file
 * (a gigabyte without a newline, NUL bytes) costs at most max bytes of buffer and gets
 * an error naming its line; it is never truncated silently into something else. */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "auth_int.h"
#include "lq.h"

int
auth_lines_open(struct auth_lines *l, const char *path, size_t max, char *err, size_t errlen)
{
    *l = (struct auth_lines){.path = path, .max = max};
    l->f = fopen(path, "re");
    struct stat st;
    if (l->f && fstat(fileno(l->f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(l->f);
        l->f = NULL;
        errno = EISDIR;
    }
    if (!l->f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    l->cap = 256;
    l->buf = lq_xmalloc(l->cap);
    return 0;
}

void
auth_line_error(const struct auth_lines *l, char *err, size_t errlen, const char *fmt, ...)
{
    int n = snprintf(err, errlen, "%s:%u: ", l->path, l->no);
    if (n < 0 || (size_t)n >= errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

/* Is what was read so far of this line a comment? */
static bool
is_comment(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
    return i < n && s[i] == '#';
}

int
auth_lines_next(struct auth_lines *l, size_t *len, char *err, size_t errlen)
{
    size_t n = 0;
    bool skipping = false; /* the rest of an over-long comment */
    int ch = EOF;
    l->no++;
    while ((ch = getc_unlocked(l->f)) != EOF && ch != '\n') {
        if (ch == '\0') {
            auth_line_error(l, err, errlen, "a NUL byte (column %zu)", n + 1);
            return -1;
        }
        if (skipping) continue;
        if (n == l->max) {
            if (!is_comment(l->buf, n)) {
                auth_line_error(l, err, errlen, "line longer than %zu bytes", l->max);
                return -1;
            }
            skipping = true;
            continue;
        }
        if (n + 1 >= l->cap) {
            l->cap = l->cap * 2 > l->max + 1 ? l->max + 1 : l->cap * 2;
            l->buf = lq_xrealloc(l->buf, l->cap);
        }
        l->buf[n++] = (char)ch;
    }
    if (ferror(l->f)) {
        auth_line_error(l, err, errlen, "%s", strerror(errno));
        return -1;
    }
    if (ch == EOF && n == 0 && !skipping) {
        l->no--;
        return 0;
    }
    while (n > 0 && isspace((unsigned char)l->buf[n - 1])) n--; /* CR of CRLF, blanks */
    l->buf[n] = '\0';
    *len = n;
    return 1;
}

void
auth_lines_close(struct auth_lines *l)
{
    if (l->f) fclose(l->f);
    free(l->buf);
    *l = (struct auth_lines){0};
}
