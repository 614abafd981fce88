/* SPDX-License-Identifier: MIT
 *
 * lunamq-ctl: the admin CLI. Talks to a running broker over its admin socket (see
 * admin.h for the protocol): the broker renders the reply as text or JSON, this
 * program prints it. `hooks test` runs a hook file here, offline, without a broker;
 * `passwd` edits a password_file, as mosquitto_passwd does. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "auth.h"
#include "hooks.h"
#include "lq.h"
#include "msg.h"
#include "sbuf.h"

static const char *sock_path = "lunamq.sock";
static bool sock_given; /* -s: no looking for the packaged service's socket */
#define PACKAGED_SOCKET "/run/lunamq/lunamq.sock"
#define REQUEST_MAX     (4u << 20) /* the broker's MAX_REQUEST */
int luaopen_cjson(lua_State *L);   /* Debian's lua-cjson */
#define KV_BATCH (256u << 10)      /* kv load: bytes of keys and values per request */

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: lunamq-ctl [-s SOCKET] [--json] COMMAND [ARGS]\n"
            "  stats [--watch [SECONDS]]   broker figures (with --watch: refreshed, like top)\n"
            "  clients [PATTERN]           clients whose id matches the glob PATTERN\n"
            "  client ID                   one client and its subscriptions\n"
            "  subscriptions [FILTER]      subscriptions whose filter FILTER matches\n"
            "  subscribers TOPIC           who a message on TOPIC reaches (sessions,\n"
            "                              filters, share groups and their next member)\n"
            "  retained [FILTER]           retained messages (topic, size, age)\n"
            "  hooks                       every hook with its state and counters\n"
            "  bridges                     each bridge: state, remote, counters, last error\n"
            "  hooks reload                reload the scripts directory now\n"
            "  hooks test FILE --topic T --payload P [--qos N]\n"
            "                              run a hook file offline on one message\n"
            "  kick ID                     disconnect a client (reason 0x98)\n"
            "  reload                      reload the configuration (as SIGHUP)\n"
            "  persistence snapshot        compact the journal now (persistence true)\n"
            "  cluster                     this node, its NATS connection and counters,\n"
            "                              and the other nodes it received messages from\n"
            "  acl check USER ID TOPIC read|write\n"
            "                              what the running acl_file says for a client\n"
            "                              (USER \"\": anonymous), and the deciding line\n"
            "  kv get KEY | kv del KEY     a key of the hooks' key-value store (broker.kv)\n"
            "  kv set KEY VALUE [TTL]      set it (TTL: seconds until it expires)\n"
            "  kv list [PREFIX]            keys starting with PREFIX, their size and expiry\n"
            "  kv load FILE.json           set every key of a JSON object (a value that is\n"
            "                              not a string is stored as its JSON text)\n"
            "  version                     the broker's version\n"
            "  passwd [-c] [-b] [-D] [-I N] FILE USER [PASSWORD]\n"
            "                              add or change a user of a password_file (offline,\n"
            "                              as mosquitto_passwd): -c new file, -b password\n"
            "                              given, -D delete the user, -I PBKDF2 iterations\n"
            "SOCKET defaults to ./lunamq.sock, else " PACKAGED_SOCKET " when only that exists.\n");
}

/* One request; the reply body goes to stdout. Returns the exit status. */
static int
request(int argc, char **argv, bool json, bool quiet_ok)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    /* no -s and none here: the packaged service's (lunamq.conf of the Debian package) */
    if (!sock_given && access(sock_path, F_OK) != 0 && access(PACKAGED_SOCKET, F_OK) == 0)
        sock_path = PACKAGED_SOCKET;
    if (strlen(sock_path) >= sizeof(sun.sun_path)) {
        fprintf(stderr, "lunamq-ctl: %s: path too long\n", sock_path);
        return 1;
    }
    strcpy(sun.sun_path, sock_path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        int e = errno;
        if (e == ENOENT)
            fprintf(stderr,
                    "lunamq-ctl: %s: no such socket: is the broker running, with this "
                    "admin_socket? (-s SOCKET)\n",
                    sock_path);
        else if (e == ECONNREFUSED)
            fprintf(stderr, "lunamq-ctl: %s: nobody listens: the broker is not running\n",
                    sock_path);
        else if (e == EACCES || e == EPERM)
            fprintf(stderr, "lunamq-ctl: %s: permission denied: run as the broker's user or root\n",
                    sock_path);
        else
            fprintf(stderr, "lunamq-ctl: %s: %s\n", sock_path, strerror(e));
        if (fd >= 0) close(fd);
        return 1;
    }
    /* one line, fields split by TAB; a backslash, TAB or newline inside an argument (a
     * client id may hold them) goes escaped as \\, \t, \n */
    struct sbuf line = {0};
    sbuf_put(&line, json ? "json" : "text", 4);
    for (int i = 0; i < argc; i++) {
        sbuf_put(&line, "\t", 1);
        for (const char *p = argv[i]; *p; p++) {
            char e = *p == '\\' ? '\\' : *p == '\t' ? 't' : *p == '\n' ? 'n' : 0;
            if (e) sbuf_put(&line, "\\", 1);
            sbuf_put(&line, e ? &e : p, 1);
        }
    }
    sbuf_put(&line, "\n", 1);
    if (line.len > REQUEST_MAX) {
        fprintf(stderr, "lunamq-ctl: request too long\n");
        sbuf_free(&line);
        close(fd);
        return 2;
    }
    for (size_t off = 0; off < line.len;) {
        ssize_t w = write(fd, line.p + off, line.len - off);
        if (w <= 0) {
            fprintf(stderr, "lunamq-ctl: %s: %s\n", sock_path, strerror(errno));
            sbuf_free(&line);
            close(fd);
            return 1;
        }
        off += (size_t)w;
    }
    sbuf_free(&line);
    FILE *f = fdopen(fd, "r");
    char *first = NULL;
    size_t cap = 0;
    if (!f || getline(&first, &cap, f) < 0) {
        fprintf(stderr, "lunamq-ctl: %s: the broker closed the connection\n", sock_path);
        free(first);
        if (f) fclose(f);
        return 1;
    }
    int status = 0;
    if (strncmp(first, "error\t", 6) == 0) {
        fprintf(stderr, "lunamq-ctl: %s", first + 6);
        status = 1;
    }
    free(first);
    char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof(buf), f)) > 0)
        if (!quiet_ok || status) fwrite(buf, 1, got, stdout);
    fclose(f);
    return status;
}

/* --watch SECONDS: a number of seconds, at least 0.1; anything else is a usage error. */
static bool
watch_interval(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0.1) || v > 86400) return false;
    *out = v;
    return true;
}

/* Like top; with --json, one JSON object per line (JSON Lines) and nothing else. */
static int
watch(double seconds, bool json)
{
    char stats[] = "stats";
    char *args[] = {stats};
    for (;;) {
        if (!json) {
            printf("\033[H\033[2J");
            printf("lunamq-ctl stats --watch %.1f   (%s)\n\n", seconds, sock_path);
            fflush(stdout);
        }
        int rc = request(1, args, json, false);
        fflush(stdout);
        if (rc) return rc;
        usleep((useconds_t)(seconds * 1e6));
    }
}

/* ---- hooks test: the hooks module on one message, no broker ---- */

/* What the hook made, in order: broker.publish() calls, then the verdict's messages. */
struct test_out {
    struct test_msg {
        const char *kind;
        struct msg *m;
    } * v;
    size_t n;
};

static void
out_add(struct test_out *o, const char *kind, struct msg *m)
{
    o->v = lq_xrealloc(o->v, (o->n + 1) * sizeof(*o->v));
    o->v[o->n++] = (struct test_msg){kind, msg_ref(m)};
}

static void
test_publish(void *ud, struct msg *m, const struct hook *from)
{
    (void)from;
    out_add(ud, "broker.publish", m);
}

/* The log lines written meanwhile, without their time stamps. */
static char *
read_log(const char *path)
{
    struct sbuf b = {0};
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    while (f && getline(&line, &cap, f) > 0) {
        const char *sp = strchr(line, ' ');
        sbuf_printf(&b, "%s", sp ? sp + 1 : line);
    }
    free(line);
    if (f) fclose(f);
    if (b.len && b.p[b.len - 1] == '\n') b.p[--b.len] = '\0';
    return b.p ? b.p : lq_xstrdup("");
}

struct test_result {
    const char *file, *topic;
    const char *result; /* "no match", "refused", "dropped", "published", "does not load" */
    char *error;        /* a load error */
    uint8_t reason_code;
    uint64_t errors; /* runtime errors and budget / memory overruns */
    struct test_out out;
    char *log; /* with --json: the log lines (else they went to stderr) */
};

static void
print_msg(const char *what, const struct msg *m)
{
    printf("%s %s qos=%u retain=%s payload=%.*s\n", what, m->topic, m->qos,
           m->retain ? "true" : "false", (int)m->payload_len, (const char *)m->payload);
}

static void
print_result(const struct test_result *tr, bool json)
{
    if (!json) {
        if (tr->error) {
            fprintf(stderr, "lunamq-ctl: %s does not load: %s\n", tr->file, tr->error);
            return;
        }
        for (size_t i = 0; i < tr->out.n; i++) print_msg(tr->out.v[i].kind, tr->out.v[i].m);
        if (strcmp(tr->result, "no match") == 0)
            printf("no filter of %s matches %s: the message passes untouched\n", tr->file,
                   tr->topic);
        else if (strcmp(tr->result, "refused") == 0)
            printf("refused with reason code 0x%02x\n", tr->reason_code);
        else if (strcmp(tr->result, "dropped") == 0)
            printf("dropped\n");
        return;
    }
    struct sbuf b = {0};
    struct reply r = {.b = &b, .json = true};
    reply_object(&r);
    reply_str(&r, "file", tr->file);
    reply_str(&r, "topic", tr->topic);
    reply_str(&r, "result", tr->result);
    reply_str(&r, "error", tr->error);
    reply_u64(&r, "reason_code", tr->reason_code);
    reply_u64(&r, "errors", tr->errors);
    reply_str(&r, "log", tr->log);
    reply_list(&r, "messages");
    for (size_t i = 0; i < tr->out.n; i++) {
        const struct msg *m = tr->out.v[i].m;
        reply_object(&r);
        reply_str(&r, "kind", tr->out.v[i].kind);
        reply_str(&r, "topic", m->topic);
        reply_u64(&r, "qos", m->qos);
        reply_bool(&r, "retain", m->retain);
        struct sbuf p = {0}; /* the payload as text (a hook may have put a NUL in it) */
        sbuf_put(&p, (const char *)m->payload, m->payload_len);
        reply_str(&r, "payload", p.p ? p.p : "");
        sbuf_free(&p);
        reply_end_object(&r);
    }
    reply_end_list(&r);
    reply_end_object(&r);
    printf("%.*s\n", (int)b.len, b.p);
    sbuf_free(&b);
}

/* Load the hooks of dir (one file), run them on one message into tr. */
static void
run_hook(const char *dir, const struct msg_init *in, struct test_result *tr)
{
    struct hooks_conf c = {.dir = dir,
                           .instruction_limit = 1000000,
                           .memory_limit = 16 << 20,
                           .drop_on_error = false,
                           .max_topic_levels = 200};
    struct hook_host host = {.publish = test_publish, .ud = &tr->out};
    struct hooks *hs = hooks_new(NULL, &c, &host);
    struct hook_info hi;
    if (!hooks_info(hs, 0, &hi) || !hi.loaded) {
        tr->result = "does not load";
        tr->error = lq_xstrdup(hooks_info(hs, 0, &hi) && hi.error ? hi.error : "not a .lua file");
        hooks_free(hs);
        return;
    }
    struct msg *m = msg_new(in);
    struct hook_client cl = {.id = "lunamq-ctl", .address = "offline", .version = 5};
    struct hook_verdict v = {0};
    if (!hooks_run(hs, m, &cl, NULL, &v)) {
        tr->result = "no match";
    } else if (v.refuse) {
        tr->result = "refused";
        tr->reason_code = v.refuse;
    } else if (v.n == 0) {
        tr->result = "dropped";
    } else {
        tr->result = "published";
        for (size_t i = 0; i < v.n; i++) out_add(&tr->out, "publish", v.out[i]);
    }
    hooks_info(hs, 0, &hi);
    tr->errors = hi.stats.errors + hi.stats.budget_overruns + hi.stats.memory_overruns;
    hook_verdict_clear(&v);
    msg_unref(m);
    hooks_free(hs);
}

static int
hooks_test(int argc, char **argv, bool json)
{
    const char *topic = NULL, *payload = "", *file = NULL;
    int qos = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc)
            topic = argv[++i];
        else if (strcmp(argv[i], "--payload") == 0 && i + 1 < argc)
            payload = argv[++i];
        else if (strcmp(argv[i], "--qos") == 0 && i + 1 < argc)
            qos = atoi(argv[++i]);
        else if (!file && argv[i][0] != '-')
            file = argv[i];
        else {
            usage(stderr);
            return 2;
        }
    }
    if (!file || !topic || qos < 0 || qos > 2) {
        usage(stderr);
        return 2;
    }
    char dir[] = "/tmp/lunamq-ctl-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("lunamq-ctl: mkdtemp");
        return 1;
    }
    const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
    char link[PATH_MAX], abs[PATH_MAX], logf[PATH_MAX];
    snprintf(link, sizeof(link), "%s/%s", dir, base);
    snprintf(logf, sizeof(logf), "%s/ctl.log", dir); /* not .lua: not a hook */
    if (!realpath(file, abs) || symlink(abs, link) < 0) {
        fprintf(stderr, "lunamq-ctl: %s: %s\n", file, strerror(errno));
        rmdir(dir);
        return 1;
    }
    /* with --json, stdout is one JSON document even with stderr merged into it */
    unsigned types = LQ_LOG_ERR | LQ_LOG_WARNING | LQ_LOG_NOTICE | LQ_LOG_INFO;
    if (!json || lq_log_open(types, LQ_DEST_FILE, logf) < 0)
        lq_log_open(types, LQ_DEST_STDERR, NULL);
    struct test_result tr = {.file = base, .topic = topic};
    struct msg_init in = {.topic = topic,
                          .topic_len = strlen(topic),
                          .payload = (const uint8_t *)payload,
                          .payload_len = strlen(payload),
                          .qos = (uint8_t)qos};
    run_hook(dir, &in, &tr);
    lq_log_close();
    if (json) tr.log = read_log(logf);
    print_result(&tr, json);
    int status = tr.error || tr.errors ? 1 : 0;
    for (size_t i = 0; i < tr.out.n; i++) msg_unref(tr.out.v[i].m);
    free(tr.out.v);
    free(tr.error);
    free(tr.log);
    unlink(logf);
    unlink(link);
    rmdir(dir);
    return status;
}

/* ---- passwd: a password_file, edited offline (no broker involved) ---- */

#define PASSWORD_MAX 65535 /* an MQTT password is at most that long */

static struct termios saved_tty;
static volatile sig_atomic_t tty_changed;

static void
restore_tty(int sig)
{
    if (tty_changed) tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
    if (sig) {
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

/* One line of the terminal, not echoed; -1 on end of input. */
static ssize_t
read_hidden(const char *prompt, char *buf, size_t cap)
{
    struct termios t;
    if (tcgetattr(STDIN_FILENO, &saved_tty) == 0) {
        t = saved_tty;
        t.c_lflag &= (tcflag_t)~ECHO;
        t.c_lflag |= ECHONL;
        signal(SIGINT, restore_tty);
        signal(SIGTERM, restore_tty);
        if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) == 0) tty_changed = 1;
    }
    /* the prompt after the flush: what is typed once it shows is kept */
    fputs(prompt, stderr);
    fflush(stderr);
    ssize_t n = -1;
    if (fgets(buf, (int)cap, stdin)) n = (ssize_t)strcspn(buf, "\n");
    restore_tty(0);
    tty_changed = 0;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (n >= 0) buf[n] = '\0';
    return n;
}

/* The password: twice from a terminal, else one line of stdin. -1 (said why) if none. */
static ssize_t
read_password(char *buf, size_t cap)
{
    ssize_t n;
    if (isatty(STDIN_FILENO)) {
        char again[PASSWORD_MAX + 2];
        n = read_hidden("Password: ", buf, cap);
        ssize_t m = n < 0 ? -1 : read_hidden("Reenter password: ", again, sizeof(again));
        bool same = n >= 0 && m == n && memcmp(buf, again, (size_t)n) == 0;
        explicit_bzero(again, sizeof(again));
        if (n >= 0 && !same) {
            fprintf(stderr, "lunamq-ctl: passwd: the passwords do not match\n");
            return -1;
        }
    } else {
        n = fgets(buf, (int)cap, stdin) ? (ssize_t)strcspn(buf, "\n") : -1;
        if (n >= 0) buf[n] = '\0';
        if (n > 0 && buf[n - 1] == '\r') buf[--n] = '\0';
    }
    if (n < 0)
        fprintf(stderr, "lunamq-ctl: passwd: no password given\n");
    else if (n == 0)
        fprintf(stderr, "lunamq-ctl: passwd: an empty password\n");
    else if ((size_t)n > PASSWORD_MAX)
        fprintf(stderr, "lunamq-ctl: passwd: a password longer than %d bytes\n", PASSWORD_MAX);
    return n > 0 && (size_t)n <= PASSWORD_MAX ? n : -1;
}

/* The user a password_file line is for (trimmed, as the broker reads it); false for a
 * comment, a blank or a line without ':'. */
static bool
line_user_is(const char *line, size_t len, const char *user)
{
    const char *p = line, *end = line + len;
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    if (p == end || *p == '#') return false;
    const char *colon = memchr(p, ':', (size_t)(end - p));
    if (!colon) return false;
    const char *ue = colon;
    while (ue > p && (ue[-1] == ' ' || ue[-1] == '\t')) ue--;
    return (size_t)(ue - p) == strlen(user) && memcmp(p, user, (size_t)(ue - p)) == 0;
}

/* The new contents: the old file's lines with user's first line replaced by entry (or
 * dropped when entry is NULL: -D), its later lines dropped; entry appended when the user
 * was not there. Returns whether the user was there. */
static bool
passwd_rewrite(FILE *in, const char *user, const char *entry, struct sbuf *out)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    bool found = false;
    while (in && (n = getline(&line, &cap, in)) > 0) {
        size_t len = (size_t)n;
        bool nl = line[len - 1] == '\n';
        size_t body = len - nl - (len - nl > 0 && line[len - nl - 1] == '\r');
        if (!line_user_is(line, body, user)) {
            sbuf_put(out, line, len);
            if (!nl) sbuf_put(out, "\n", 1);
            continue;
        }
        if (!found && entry) sbuf_printf(out, "%s\n", entry);
        found = true;
    }
    free(line);
    if (!found && entry) sbuf_printf(out, "%s\n", entry);
    return found;
}

/* Replace path by data: a temporary file beside it, renamed over it. */
static int
write_atomically(const char *path, const struct sbuf *data, const struct stat *old)
{
    size_t plen = strlen(path);
    char *tmp = lq_xmalloc(plen + 8);
    snprintf(tmp, plen + 8, "%s.XXXXXX", path);
    int fd = mkstemp(tmp); /* mode 0600 */
    if (fd < 0) {
        fprintf(stderr, "lunamq-ctl: passwd: %s: %s\n", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    if (old) { /* the old file's owner (when root edits it) and mode */
        int ignored = fchown(fd, old->st_uid, old->st_gid);
        (void)ignored;
        fchmod(fd, old->st_mode & 07777);
    }
    const char *p = data->p;
    size_t left = data->len;
    int rc = 0;
    while (left && rc == 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            rc = -1;
        else {
            p += w;
            left -= (size_t)w;
        }
    }
    if (rc == 0 && fsync(fd) < 0) rc = -1;
    if (close(fd) < 0) rc = -1;
    if (rc == 0 && rename(tmp, path) < 0) rc = -1;
    if (rc < 0) {
        fprintf(stderr, "lunamq-ctl: passwd: %s: %s\n", path, strerror(errno));
        unlink(tmp);
    } else {
        char *dcopy = lq_xstrdup(path);
        int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) { /* the rename itself durable */
            fsync(dfd);
            close(dfd);
        }
        free(dcopy);
    }
    free(tmp);
    return rc;
}

static int
passwd_usage(const char *why)
{
    fprintf(stderr, "lunamq-ctl: passwd: %s\n", why);
    fprintf(stderr, "usage: lunamq-ctl passwd [-c] [-b] [-D] [-I N] FILE USER [PASSWORD]\n");
    return 2;
}

static int
passwd_edit(const char *file, const char *user, const char *password, size_t plen, bool create,
            unsigned iterations)
{
    /* a symbolic link stays one: the file it names is what gets replaced */
    char real[PATH_MAX];
    const char *path = realpath(file, real) ? real : file;
    struct stat st;
    FILE *in = NULL;
    if (!create) {
        in = fopen(path, "re");
        if (!in || fstat(fileno(in), &st) < 0) {
            fprintf(stderr, "lunamq-ctl: passwd: %s: %s%s\n", file, strerror(errno),
                    errno == ENOENT ? " (-c creates it)" : "");
            if (in) fclose(in);
            return 1;
        }
    }
    char *entry = NULL;
    if (password) {
        size_t cap = strlen(user) + 256;
        entry = lq_xmalloc(cap);
        if (pw_entry_make(user, password, plen, iterations, entry, cap) < 0) {
            fprintf(stderr, "lunamq-ctl: passwd: cannot make the entry (no random bytes?)\n");
            free(entry);
            if (in) fclose(in);
            return 1;
        }
    }
    struct sbuf out = {0};
    bool found = passwd_rewrite(in, user, entry, &out);
    if (in) fclose(in);
    int rc = 0;
    if (!password && !found) {
        fprintf(stderr, "lunamq-ctl: passwd: %s: no user '%s'\n", file, user);
        rc = 1;
    } else if (write_atomically(path, &out, create ? NULL : &st) < 0) {
        rc = 1;
    }
    if (entry) explicit_bzero(entry, strlen(entry));
    free(entry);
    sbuf_free(&out);
    return rc;
}

/* lunamq-ctl passwd [-c] [-b] [-D] [-I N] FILE USER [PASSWORD] */
static int
passwd_cmd(int argc, char **argv)
{
    bool create = false, batch = false, del = false;
    unsigned iterations = PW_DEFAULT_ITERATIONS;
    int i = 0;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else if (strcmp(argv[i], "-c") == 0) {
            create = true;
        } else if (strcmp(argv[i], "-b") == 0) {
            batch = true;
        } else if (strcmp(argv[i], "-D") == 0) {
            del = true;
        } else if (strcmp(argv[i], "-I") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            unsigned long v = strtoul(argv[++i], &end, 10);
            if (errno || *end || end == argv[i] || v < 1 || v > PW_MAX_ITERATIONS)
                return passwd_usage("-I: iterations from 1 to 10000000");
            iterations = (unsigned)v;
        } else {
            fprintf(stderr, "lunamq-ctl: passwd: unknown option '%s'\n", argv[i]);
            return passwd_usage("options are -c, -b, -D and -I N");
        }
    }
    if (create && del) return passwd_usage("-c and -D cannot be used together");
    if (batch && del) return passwd_usage("-b and -D cannot be used together");
    if (argc - i != (batch ? 3 : 2))
        return passwd_usage(batch ? "-b needs FILE, USER and PASSWORD" : "FILE and USER needed");
    const char *file = argv[i], *user = argv[i + 1];
    if (del) return passwd_edit(file, user, NULL, 0, false, iterations);
    if (!create && access(file, F_OK) < 0) { /* before asking for a password */
        fprintf(stderr, "lunamq-ctl: passwd: %s: %s (-c creates it)\n", file, strerror(errno));
        return 1;
    }
    if (!pw_user_is_storable(user)) {
        fprintf(stderr,
                "lunamq-ctl: passwd: user '%s' cannot be stored (empty, over 65535 bytes, a ':' "
                "or control character, a blank at either end, or '#' first)\n",
                user);
        return 1;
    }
    if (batch) {
        size_t plen = strlen(argv[i + 2]);
        if (plen == 0 || plen > PASSWORD_MAX) return passwd_usage("the password: 1 to 65535 bytes");
        return passwd_edit(file, user, argv[i + 2], plen, create, iterations);
    }
    char *pw = lq_xmalloc(PASSWORD_MAX + 2);
    ssize_t n = read_password(pw, PASSWORD_MAX + 2);
    int rc = n < 0 ? 1 : passwd_edit(file, user, pw, (size_t)n, create, iterations);
    explicit_bzero(pw, PASSWORD_MAX + 2);
    free(pw);
    return rc;
}

/* ---- kv load FILE.json ---- */

static int
kv_send(struct sbuf *batch, bool json)
{
    if (!batch->len) return 0;
    char kv[] = "kv", mset[] = "mset";
    char *args[] = {kv, mset, batch->p};
    int rc = request(3, args, json, true);
    batch->len = 0;
    return rc;
}

/* Every key of the file's JSON object, sent in batches of netstrings ("3:key,5:value,"),
 * each applied by the broker in one go. Decoded here with lua-cjson, the hooks' json:
 * the broker's loop never parses the file. */
static int
kv_load(const char *path, bool json)
{
    lua_State *L = luaL_newstate();
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    lua_getfield(L, -1, "decode");
    lua_getfield(L, -2, "encode");
    int decode = lua_gettop(L) - 1, encode = lua_gettop(L);
    FILE *f = fopen(path, "r");
    struct sbuf text = {0};
    char buf[65536];
    size_t got;
    while (f && (got = fread(buf, 1, sizeof(buf), f)) > 0) sbuf_put(&text, buf, got);
    if (!f || ferror(f)) {
        fprintf(stderr, "lunamq-ctl: %s: %s\n", path, strerror(errno));
        if (f) fclose(f);
        sbuf_free(&text);
        lua_close(L);
        return 1;
    }
    fclose(f);
    lua_pushvalue(L, decode);
    lua_pushlstring(L, text.p ? text.p : "", text.len);
    sbuf_free(&text);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_istable(L, -1)) {
        fprintf(stderr, "lunamq-ctl: %s: not a JSON object of keys and values%s%s\n", path,
                lua_isstring(L, -1) ? ": " : "", lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
        lua_close(L);
        return 1;
    }
    int obj = lua_gettop(L), rc = 0;
    uint64_t n = 0;
    struct sbuf batch = {0};
    lua_pushnil(L);
    while (rc == 0 && lua_next(L, obj)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            fprintf(stderr, "lunamq-ctl: %s: not a JSON object (an array?)\n", path);
            rc = 1;
            break;
        }
        if (lua_type(L, -1) != LUA_TSTRING) { /* a number, object, list: its JSON text */
            lua_pushvalue(L, encode);
            lua_insert(L, -2);
            lua_call(L, 1, 1);
        }
        size_t kl, vl;
        const char *k = lua_tolstring(L, -2, &kl), *v = lua_tolstring(L, -1, &vl);
        if (strlen(k) != kl || strlen(v) != vl) {
            fprintf(stderr, "lunamq-ctl: %s: key %s: NUL bytes cannot be loaded\n", path, k);
            rc = 1;
            break;
        }
        if (batch.len && batch.len + kl + vl + 24 > KV_BATCH) rc = kv_send(&batch, json);
        sbuf_printf(&batch, "%zu:%s,%zu:%s,", kl, k, vl, v);
        n++;
        lua_pop(L, 1);
    }
    if (rc == 0) rc = kv_send(&batch, json);
    if (rc == 0) printf(json ? "{\"loaded\": %llu}\n" : "loaded  %llu\n", (unsigned long long)n);
    sbuf_free(&batch);
    lua_close(L);
    return rc;
}

int
main(int argc, char **argv)
{
    bool json = false;
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "+s:jh", longopts, NULL)) != -1) {
        switch (opt) {
        case 's':
            sock_path = optarg;
            sock_given = true;
            break;
        case 'j': json = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    argc -= optind;
    argv += optind;
    /* before --json is taken out: it could be a password */
    if (argc > 0 && strcmp(argv[0], "passwd") == 0) return passwd_cmd(argc - 1, argv + 1);
    /* --json may also follow the command */
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else
            argv[n++] = argv[i];
    }
    argc = n;
    if (argc == 0) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[0], "kv") == 0 && argc == 3 && strcmp(argv[1], "load") == 0)
        return kv_load(argv[2], json);
    if (strcmp(argv[0], "hooks") == 0 && argc > 1 && strcmp(argv[1], "test") == 0)
        return hooks_test(argc - 2, argv + 2, json);
    if (strcmp(argv[0], "stats") == 0 && argc > 1 && strcmp(argv[1], "--watch") == 0) {
        double s = 1.0;
        if (argc > 3 || (argc > 2 && !watch_interval(argv[2], &s))) {
            fprintf(stderr, "lunamq-ctl: --watch %s: not a number of seconds (0.1 or more)\n",
                    argc > 2 ? argv[2] : "");
            usage(stderr);
            return 2;
        }
        return watch(s, json);
    }
    static const char *const known[] = {"stats",       "clients",  "client",      "subscriptions",
                                        "subscribers", "retained", "hooks",       "kick",
                                        "reload",      "version",  "persistence", "acl",
                                        "cluster",     "bridges",  "kv",          NULL};
    for (const char *const *k = known; *k; k++)
        if (strcmp(argv[0], *k) == 0) return request(argc, argv, json, false);
    fprintf(stderr, "lunamq-ctl: unknown command '%s'\n", argv[0]);
    usage(stderr);
    return 2;
}
