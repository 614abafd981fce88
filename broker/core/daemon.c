/* SPDX-License-Identifier: MIT
 *
 * daemon: -d and pid_file. One fork and setsid, as mosquitto: the broker opens no
 * terminal that could become its controlling one. The working directory is kept, so
 * that relative paths (-c FILE, the default admin socket) mean what they meant. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "lq.h"

static int ready_fd = -1; /* the child's end of the pipe its parent waits on */

static void
null_fd(int target)
{
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd < 0) return;
    if (fd != target) {
        dup2(fd, target); /* dup2 clears close-on-exec on target */
        close(fd);
    }
}

int
daemon_start(void)
{
    int p[2];
    if (pipe(p) < 0) {
        lq_log(LQ_LOG_ERR, "-d: pipe: %s", strerror(errno));
        return -1;
    }
    fcntl(p[0], F_SETFD, FD_CLOEXEC);
    fcntl(p[1], F_SETFD, FD_CLOEXEC);
    fflush(NULL); /* nothing buffered is written twice */
    pid_t pid = fork();
    if (pid < 0) {
        lq_log(LQ_LOG_ERR, "-d: fork: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid > 0) {
        close(p[1]);
        char c;
        ssize_t n;
        while ((n = read(p[0], &c, 1)) < 0 && errno == EINTR) continue;
        if (n == 1) _exit(0);
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) continue;
        _exit(WIFEXITED(st) && WEXITSTATUS(st) ? WEXITSTATUS(st) : 1);
    }
    close(p[0]);
    ready_fd = p[1];
    if (setsid() < 0) lq_log(LQ_LOG_WARNING, "-d: setsid: %s", strerror(errno));
    null_fd(STDIN_FILENO);
    return 0;
}

void
daemon_ready(void)
{
    if (ready_fd < 0) return;
    fflush(NULL);
    null_fd(STDOUT_FILENO);
    null_fd(STDERR_FILENO);
    char c = 1;
    while (write(ready_fd, &c, 1) < 0 && errno == EINTR) continue;
    close(ready_fd);
    ready_fd = -1;
}

int
pidfile_write(const char *path, char *err, size_t errlen)
{
    if (unlink(path) < 0 && errno != ENOENT) goto fail;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) goto fail;
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (write(fd, buf, (size_t)n) != n) {
        int e = errno;
        close(fd);
        unlink(path);
        errno = e ? e : EIO;
        goto fail;
    }
    if (close(fd) < 0) goto fail;
    return 0;
fail:
    snprintf(err, errlen, "pid_file %s: %s", path, strerror(errno));
    return -1;
}

void
pidfile_remove(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f) return;
    long pid = 0;
    int got = fscanf(f, "%ld", &pid);
    fclose(f);
    if (got != 1 || pid != (long)getpid()) return; /* another broker's by now */
    if (unlink(path) < 0 && errno != ENOENT)
        lq_log(LQ_LOG_WARNING, "pid_file %s: cannot remove it: %s", path, strerror(errno));
}
