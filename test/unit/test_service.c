/* SPDX-License-Identifier: MIT
 *
 * Running as a service: the systemd notify protocol (a datagram socket of the test's
 * receives what the broker would send), the pid file, the user lookup and the log
 * line formats. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "lq.h"
#include "privs.h"
#include "sdnotify.h"
#include "suites.h"

/* A bound datagram socket; name: a path, or "@name" for the abstract namespace. */
static int
receiver(const char *name)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t n = strlen(name);
    memcpy(sun.sun_path, name, n);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    if (name[0] == '@')
        sun.sun_path[0] = '\0';
    else
        unlink(name);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, len), 0);
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void
expect(int fd, const char *want)
{
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
    ck_assert_str_eq(buf, want);
}

static bool
nothing_more(int fd)
{
    char buf[64];
    return recv(fd, buf, sizeof(buf), MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

START_TEST(test_notify_path)
{
    char path[64];
    snprintf(path, sizeof(path), "/tmp/lunamq-notify-%d", (int)getpid());
    int fd = receiver(path);
    setenv("NOTIFY_SOCKET", path, 1);
    unsetenv("WATCHDOG_USEC");
    ck_assert(sdnotify_open());
    ck_assert_ptr_null(getenv("NOTIFY_SOCKET")); /* not passed on to what it starts */
    sdnotify_ready();
    expect(fd, "READY=1");
    sdnotify_reloading();
    char buf[128];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
    unsigned long long usec = 0;
    char end = 0;
    ck_assert_int_eq(sscanf(buf, "RELOADING=1\nMONOTONIC_USEC=%llu%c", &usec, &end), 1);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ck_assert_uint_le(usec, (unsigned long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
    ck_assert_uint_gt(usec, 0);
    sdnotify_stopping();
    sdnotify_stopping(); /* said once */
    expect(fd, "STOPPING=1");
    ck_assert(nothing_more(fd));
    ck_assert_uint_eq(sdnotify_watchdog_usec(), 0);
    sdnotify_close();
    close(fd);
    unlink(path);
}
END_TEST

START_TEST(test_notify_abstract_and_watchdog)
{
    char name[64];
    snprintf(name, sizeof(name), "@lunamq-notify-%d", (int)getpid());
    int fd = receiver(name);
    setenv("NOTIFY_SOCKET", name, 1);
    setenv("WATCHDOG_USEC", "200000", 1);
    unsetenv("WATCHDOG_PID");
    ck_assert(sdnotify_open());
    ck_assert_uint_eq(sdnotify_watchdog_usec(), 200000);
    ck_assert_ptr_null(getenv("WATCHDOG_USEC"));
    sdnotify_watchdog();
    expect(fd, "WATCHDOG=1");
    /* the watchdog of another process (our parent's, before a fork) is not ours */
    setenv("NOTIFY_SOCKET", name, 1);
    setenv("WATCHDOG_USEC", "200000", 1);
    setenv("WATCHDOG_PID", "1", 1);
    ck_assert(sdnotify_open());
    ck_assert_uint_eq(sdnotify_watchdog_usec(), 0);
    char pid[16];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    setenv("NOTIFY_SOCKET", name, 1);
    setenv("WATCHDOG_USEC", "200000", 1);
    setenv("WATCHDOG_PID", pid, 1);
    ck_assert(sdnotify_open());
    ck_assert_uint_eq(sdnotify_watchdog_usec(), 200000);
    sdnotify_close();
    close(fd);
}
END_TEST

START_TEST(test_notify_none)
{
    unsetenv("NOTIFY_SOCKET");
    setenv("WATCHDOG_USEC", "200000", 1);
    ck_assert(!sdnotify_open());
    ck_assert(!sdnotify_enabled());
    ck_assert_int_eq(sdnotify_send("READY=1"), 0); /* nothing to do, nothing wrong */
    ck_assert_uint_eq(sdnotify_watchdog_usec(), 0);
    setenv("NOTIFY_SOCKET", "relative/path", 1); /* neither a path nor abstract */
    ck_assert(!sdnotify_open());
    setenv("NOTIFY_SOCKET", "/nonexistent/lunamq-notify", 1);
    ck_assert(!sdnotify_open());
    sdnotify_close();
}
END_TEST

static long
pid_in(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long pid = -1;
    if (fscanf(f, "%ld", &pid) != 1) pid = -1;
    fclose(f);
    return pid;
}

START_TEST(test_pidfile)
{
    char dir[] = "/tmp/lunamq-pid-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[128], target[128], err[256];
    snprintf(path, sizeof(path), "%s/lunamq.pid", dir);
    snprintf(target, sizeof(target), "%s/target", dir);
    ck_assert_int_eq(pidfile_write(path, err, sizeof(err)), 0);
    ck_assert_int_eq(pid_in(path), (long)getpid());
    pidfile_remove(path);
    ck_assert_int_ne(access(path, F_OK), 0);
    /* a link at its path is replaced, not written through */
    FILE *f = fopen(target, "w");
    fputs("precious\n", f);
    fclose(f);
    ck_assert_int_eq(symlink(target, path), 0);
    ck_assert_int_eq(pidfile_write(path, err, sizeof(err)), 0);
    ck_assert_int_eq(pid_in(path), (long)getpid());
    struct stat st;
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    ck_assert_int_eq(pid_in(target), -1); /* "precious" still */
    /* another process's file stays */
    f = fopen(path, "w");
    fputs("1\n", f);
    fclose(f);
    pidfile_remove(path);
    ck_assert_int_eq(pid_in(path), 1);
    unlink(path);
    unlink(target);
    /* a directory that is not there: an error that names the file */
    snprintf(path, sizeof(path), "%s/no/such/dir/lunamq.pid", dir);
    ck_assert_int_eq(pidfile_write(path, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "pid_file "));
    ck_assert_ptr_nonnull(strstr(err, "No such file or directory"));
    rmdir(dir);
}
END_TEST

START_TEST(test_privs_lookup)
{
    struct privs p;
    char err[256];
    ck_assert_int_eq(privs_lookup(NULL, &p, err, sizeof(err)), 0);
    ck_assert(!p.drop);
    ck_assert_int_eq(privs_lookup("root", &p, err, sizeof(err)), 0);
    ck_assert(!p.drop);
    ck_assert_int_eq(privs_drop(&p, err, sizeof(err)), 0); /* nothing to drop */
    int rc = privs_lookup("lunamq-no-such-user", &p, err, sizeof(err));
    if (geteuid() != 0) { /* not root: the user is not even looked up */
        ck_assert_int_eq(rc, 0);
        ck_assert(!p.drop);
        return;
    }
    ck_assert_int_eq(rc, -1);
    ck_assert_ptr_nonnull(strstr(err, "user lunamq-no-such-user: "));
    ck_assert_int_eq(privs_lookup("nobody", &p, err, sizeof(err)), 0);
    ck_assert(p.drop);
    ck_assert_uint_ne(p.uid, 0);
    ck_assert_str_eq(p.name, "nobody");
}
END_TEST

static char *
log_text(const char *path)
{
    static char text[4096];
    FILE *f = fopen(path, "r");
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    truncate(path, 0);
    return text;
}

START_TEST(test_log_formats)
{
    char path[] = "/tmp/lunamq-logfmt-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(lq_log_open(LQ_LOG_ALL, LQ_DEST_FILE, path), 0);

    lq_log(LQ_LOG_NOTICE, "plain %d", 1); /* the default: ISO 8601 UTC, milliseconds */
    const char *t = log_text(path);
    int y, mo, d, h, mi, s, ms;
    char z;
    ck_assert_int_eq(sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &y, &mo, &d, &h, &mi, &s, &ms, &z),
                     8);
    ck_assert_int_eq(z, 'Z');
    ck_assert_str_eq(t + 24, " notice: plain 1\n");

    lq_log_set_format(false, NULL, false); /* log_timestamp false */
    lq_log(LQ_LOG_WARNING, "no time");
    ck_assert_str_eq(log_text(path), "warning: no time\n");

    setenv("TZ", "UTC", 1);
    lq_log_set_format(true, "%Y|%H", false); /* log_timestamp_format */
    lq_log(LQ_LOG_INFO, "formatted");
    t = log_text(path);
    ck_assert_int_eq(sscanf(t, "%4d|%2d", &y, &h), 2);
    ck_assert_str_eq(strchr(t, ' '), " info: formatted\n");

    lq_log_set_format(true, NULL, true); /* log_format mosquitto: the Unix time */
    ck_assert(lq_log_mosquitto());
    time_t before = time(NULL);
    lq_log_as_mosquitto(LQ_LOG_NOTICE, "New connection from %s on port %d.", "127.0.0.1:40000",
                        1883);
    lq_log(LQ_LOG_NOTICE, "lunamq's own");
    t = log_text(path);
    long long when = 0;
    int used = 0;
    ck_assert_int_eq(sscanf(t, "%lld: %n", &when, &used), 1);
    ck_assert_int_ge(when, (long long)before);
    ck_assert_int_le(when, (long long)time(NULL));
    const char *line = "New connection from 127.0.0.1:40000 on port 1883.\n";
    ck_assert_msg(strncmp(t + used, line, strlen(line)) == 0, "%s", t);
    ck_assert_ptr_nonnull(strstr(t, ": notice: lunamq's own\n"));

    lq_log_set_format(true, "%Y", true); /* mosquitto with a format: "TIME: " */
    lq_log_as_mosquitto(LQ_LOG_NOTICE, "Client %s disconnected.", "a");
    t = log_text(path);
    ck_assert_int_eq(sscanf(t, "%4d", &y), 1);
    ck_assert_str_eq(t + 4, ": Client a disconnected.\n");

    lq_log_set_format(false, NULL, true);
    lq_log_as_mosquitto(LQ_LOG_NOTICE, "Client %s closed its connection.", "a\nb");
    ck_assert_str_eq(log_text(path), "Client a\\nb closed its connection.\n");
    lq_log_types = LQ_LOG_ERR; /* log_type still selects */
    lq_log_as_mosquitto(LQ_LOG_NOTICE, "hidden");
    ck_assert_str_eq(log_text(path), "");

    lq_log_close(); /* back to the defaults */
    ck_assert(!lq_log_mosquitto());
    unsetenv("TZ");
    unlink(path);
}
END_TEST

Suite *
suite_service(void)
{
    Suite *s = suite_create("service");
    TCase *tc = tcase_create("service");
    tcase_add_test(tc, test_notify_path);
    tcase_add_test(tc, test_notify_abstract_and_watchdog);
    tcase_add_test(tc, test_notify_none);
    tcase_add_test(tc, test_pidfile);
    tcase_add_test(tc, test_privs_lookup);
    tcase_add_test(tc, test_log_formats);
    suite_add_tcase(s, tc);
    return s;
}
