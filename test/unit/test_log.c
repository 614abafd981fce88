/* SPDX-License-Identifier: MIT
 *
 * The log module: control characters escaped, and lines limited to one a second. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lq.h"
#include "suites.h"

static void
escaped(const char *in, const char *want)
{
    char out[256];
    size_t cap = 4 * strlen(in) + 1; /* the documented bound */
    ck_assert_uint_le(cap, sizeof(out));
    lq_escape_controls(in, out, cap);
    ck_assert_str_eq(out, want);
}

START_TEST(test_escape_controls)
{
    escaped("", "");
    escaped("a", "a");
    escaped("dev-1/é", "dev-1/é"); /* UTF-8 beyond ASCII is text */
    escaped("a\nb", "a\\nb");
    escaped("\r\t", "\\r\\t");
    escaped("\x1b[2J\x7f", "\\x1b[2J\\x7f");
    escaped("\x01\x01\x01", "\\x01\\x01\\x01"); /* the worst case fills 4 * len */
    char small[6];
    lq_escape_controls("abcdefgh", small, sizeof(small)); /* too small: cut, terminated */
    ck_assert_str_eq(small, "ab"); /* room is kept for a 4-byte escape and the NUL */
}
END_TEST

static size_t
lines_in(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = 0;
    int c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

START_TEST(test_log_limited_once_a_second)
{
    char path[] = "/tmp/lunamq-log-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(lq_log_open(LQ_LOG_WARNING, LQ_DEST_FILE, path), 0);
    struct lq_log_limit ll = {0};
    for (int i = 0; i < 50; i++) lq_log_limited(&ll, LQ_LOG_WARNING, "same %d", i);
    ck_assert_uint_eq(lines_in(path), 1);
    ck_assert_uint_eq(ll.unlogged, 49);
    lq_clock_skip_ms(1000);
    lq_log_limited(&ll, LQ_LOG_WARNING, "again\n%s", "forged");
    ck_assert_uint_eq(lines_in(path), 2); /* escaped: one line */
    FILE *f = fopen(path, "r");
    char text[512] = "";
    size_t got = fread(text, 1, sizeof(text) - 1, f);
    text[got] = '\0';
    fclose(f);
    ck_assert_ptr_nonnull(strstr(text, "same 0\n"));
    ck_assert_ptr_nonnull(
        strstr(text, "again\\nforged (similar lines left out since the last one: 49)\n"));
    lq_log_close();
    unlink(path);
}
END_TEST

Suite *
suite_log(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("log");
    tcase_add_test(tc, test_escape_controls);
    tcase_add_test(tc, test_log_limited_once_a_second);
    suite_add_tcase(s, tc);
    return s;
}
