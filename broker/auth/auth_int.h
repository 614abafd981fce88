/* SPDX-License-Identifier: MIT
 *
 * auth internals shared by the files of broker/auth/ only: the line reader of the
 * password and ACL files. Both are read the same way: one line at a time, bounded,
 * a NUL byte or an over-long line is an error that names the file and line. */
#ifndef LUNAMQ_AUTH_INT_H
#define LUNAMQ_AUTH_INT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

struct auth_lines {
    FILE *f;
    const char *path;
    char *buf;   /* the current line, NUL-terminated */
    size_t cap;  /* of buf */
    size_t max;  /* longest line accepted (bytes, without its end) */
    unsigned no; /* the current line's number, from 1 */
};

/* Open path for reading; -1 with err "FILE: why" (missing, unreadable, a directory). */
int auth_lines_open(struct auth_lines *l, const char *path, size_t max, char *err, size_t errlen);
/* The next line in l->buf, without its end (LF or CRLF) and trailing white space; *len
 * its length. 1: a line, 0: end of file, -1: err "FILE:LINE: why" (a NUL byte, longer
 * than max, a read error). A comment ('#' first after blanks) longer than max is not an
 * error: what was read of it is returned, the rest skipped. */
int auth_lines_next(struct auth_lines *l, size_t *len, char *err, size_t errlen);
void auth_lines_close(struct auth_lines *l);
/* err = "FILE:LINE: " fmt */
void auth_line_error(const struct auth_lines *l, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
