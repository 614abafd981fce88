/* SPDX-License-Identifier: MIT
 *
 * lunamq: argv, configuration, wiring, the event loop. Nothing else.
 *
 * The start, in order: the configuration; -d (fork) before any thread or event base;
 * the ports and TLS keys, then the pid file, while still root; the drop to `user`;
 * recovery; then the listeners accept and systemd hears READY=1. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <lua.h>

#include "broker.h"
#include "conf.h"
#include "daemon.h"
#include "lq.h"
#include "privs.h"
#include "sdnotify.h"
#include "tls.h"

static void
usage(FILE *f)
{
    fprintf(f, "usage: lunamq [-c FILE] [-p PORT] [-d] [-t] [-v] [-h] [-V]\n"
               "  -c FILE          configuration file (mosquitto.conf syntax)\n"
               "  -p PORT          also listen on 127.0.0.1:PORT\n"
               "  -d               run in the background (log to a file or syslog then)\n"
               "  -t               check the configuration (-c FILE) and exit\n"
               "  -v               verbose: log everything\n"
               "  -h, --help       this help\n"
               "  -V, --version    print the version, and those of its libraries\n"
               "With no listener configured, lunamq listens on 127.0.0.1:1883.\n"
               "Exit status: 0, 1 when it cannot run, 3 for a configuration error.\n");
}

static void
on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    lq_log(LQ_LOG_NOTICE, "signal %d received", (int)sig);
    broker_shutdown(arg);
}

static void
on_hup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    broker_reload(arg, NULL, 0);
}

/* From the loop itself: a loop that is stuck stops telling systemd it is alive. */
static void
on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    sdnotify_watchdog();
}

static void
add_listener(struct lq_conf *c, const char *host, uint16_t port)
{
    struct listener_conf *lc = lq_xcalloc(1, sizeof(*lc));
    lc->host = lq_xstrdup(host);
    lc->port = port;
    lc->implicit = true;
    struct listener_conf **pp = &c->listeners;
    while (*pp) pp = &(*pp)->next;
    *pp = lc;
}

/* What broker_new or broker_start could not do: a file they read is a configuration
 * error (3, said on stderr as conf_load's are); the rest was logged (1). */
static int
start_failed(const char *err)
{
    if (!err[0]) return 1;
    fprintf(stderr, "%s\n", err);
    return 3;
}

/* lunamq -t: the file parsed (done), the user known, the files it names loadable. */
static int
check_only(struct lq_conf *conf, const char *path)
{
    char err[8192];
    struct privs p;
    bool bad = false;
    if (privs_lookup(conf->user, &p, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s\n", path, err);
        bad = true;
    }
    if (broker_check(conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        bad = true;
    }
    conf_fini(conf);
    if (bad) return 3;
    printf("%s: configuration OK\n", path);
    return 0;
}

int
main(int argc, char **argv)
{
    const char *conf_path = NULL;
    long port = 0;
    bool verbose = false, daemonise = false, test = false;
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}, {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "c:p:vdthV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': conf_path = optarg; break;
        case 'p': {
            char *end;
            port = strtol(optarg, &end, 10);
            if (*end || port < 1 || port > 65535) {
                fprintf(stderr, "lunamq: -p %s: not a port number\n", optarg);
                return 3;
            }
            break;
        }
        case 'v': verbose = true; break;
        case 'd': daemonise = true; break;
        case 't': test = true; break;
        case 'h': usage(stdout); return 0;
        case 'V':
            printf("lunamq %s\nlibevent %s\n%s\n%s\n", LUNAMQ_VERSION, event_get_version(),
                   tls_library(), LUA_RELEASE);
            return 0;
        default: usage(stderr); return 3;
        }
    }
    if (optind < argc || (test && !conf_path)) {
        if (test && !conf_path) fprintf(stderr, "lunamq: -t checks the file of -c FILE\n");
        usage(stderr);
        return 3;
    }

    struct lq_conf conf;
    conf_init(&conf);
    if (conf_path) {
        char err[8192]; /* every error of the file, one per line */
        if (conf_load(&conf, conf_path, err, sizeof(err)) < 0) {
            fprintf(stderr, "%s\n", err);
            conf_fini(&conf);
            return 3;
        }
    }
    if (test) return check_only(&conf, conf_path);
    if (port) add_listener(&conf, "127.0.0.1", (uint16_t)port);
    if (!conf_has_mqtt_listener(&conf)) add_listener(&conf, "127.0.0.1", 1883);
    lq_log_set_verbose(verbose);
    if (lq_log_open(conf.log_types, conf.log_dests, conf.log_file) < 0) {
        fprintf(stderr, "lunamq: log file %s: %s\n", conf.log_file, strerror(errno));
        conf_fini(&conf);
        return 3;
    }
    lq_log_set_format(conf.log_timestamp, conf.log_timestamp_format, conf.log_format_mosquitto);
    char err[1024];
    struct privs privs;
    if (privs_lookup(conf.user, &privs, err, sizeof(err)) < 0) {
        lq_log(LQ_LOG_ERR, "%s", err);
        conf_fini(&conf);
        return 1;
    }
    if (daemonise && daemon_start() < 0) {
        conf_fini(&conf);
        return 1;
    }
    sdnotify_open(); /* after the fork: $WATCHDOG_PID names the final pid */

    signal(SIGPIPE, SIG_IGN);
    /* a file size limit (RLIMIT_FSIZE) must be a write error (EFBIG) the journal
     * reports and retries, not the end of the process */
    signal(SIGXFSZ, SIG_IGN);
    /* the listeners accept before the signal events exist: a SIGHUP in between must not
     * end the broker (its default action); the file just read is the current one anyway */
    signal(SIGHUP, SIG_IGN);
    /* one descriptor per client: take all the hard limit allows */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct event_base *base = event_base_new();
    if (!base) {
        lq_log(LQ_LOG_ERR, "cannot create the event loop");
        return 1;
    }
    lq_log(LQ_LOG_NOTICE, "lunamq %s starting (libevent %s, %s; %s)", LUNAMQ_VERSION,
           event_get_version(), event_base_get_method(base), tls_library());
    char *pid_file = conf.pid_file ? lq_xstrdup(conf.pid_file) : NULL;
    struct broker *b = broker_new(base, &conf, conf_path, err, sizeof(err));
    conf_fini(&conf);
    int status = 0;
    if (!b) {
        status = start_failed(err); /* unusable TLS material: a configuration error */
        goto out;
    }
    /* written once the ports are ours: a second broker on them fails before it
     * replaces the first one's file */
    if (pid_file && pidfile_write(pid_file, err, sizeof(err)) < 0) {
        lq_log(LQ_LOG_ERR, "%s", err);
        free(pid_file);
        pid_file = NULL;
        status = 1;
        goto out;
    }
    const char *admin = broker_admin_socket(b);
    if (admin && privs_give(&privs, admin) < 0)
        lq_log(LQ_LOG_WARNING, "admin_socket %s: cannot give it to user %s: %s", admin, privs.name,
               strerror(errno));
    if (privs_drop(&privs, err, sizeof(err)) < 0) {
        lq_log(LQ_LOG_ERR, "%s", err);
        status = 1;
        goto out;
    }
    if (broker_start(b, err, sizeof(err)) < 0) {
        status = start_failed(err);
        goto out;
    }
    struct event *sigint = evsignal_new(base, SIGINT, on_stop_signal, b);
    struct event *sigterm = evsignal_new(base, SIGTERM, on_stop_signal, b);
    struct event *sighup = evsignal_new(base, SIGHUP, on_hup, b);
    if (!sigint || !sigterm || !sighup || event_add(sigint, NULL) || event_add(sigterm, NULL) ||
        event_add(sighup, NULL)) /* running on, SIGTERM would kill without the flush */
        lq_log(LQ_LOG_ERR, "cannot handle signals: SIGTERM stops without flushing, no SIGHUP");
    struct event *watchdog = NULL;
    uint64_t wd = sdnotify_watchdog_usec();
    if (wd) {
        struct timeval half = {(time_t)(wd / 2 / 1000000), (suseconds_t)(wd / 2 % 1000000)};
        watchdog = event_new(base, -1, EV_PERSIST, on_watchdog, NULL);
        if (!watchdog || event_add(watchdog, &half) < 0)
            lq_log(LQ_LOG_ERR, "cannot arm the systemd watchdog timer");
    }
    sdnotify_ready(); /* the listeners accept, recovery is done */
    daemon_ready();

    event_base_dispatch(base);

    sdnotify_stopping();
    if (watchdog) event_free(watchdog);
    if (sigint) event_free(sigint);
    if (sigterm) event_free(sigterm);
    if (sighup) event_free(sighup);
out:
    broker_free(b);
    event_base_free(base);
    if (pid_file) pidfile_remove(pid_file);
    free(pid_file);
    if (!status) lq_log(LQ_LOG_NOTICE, "stopped");
    lq_log_close();
    sdnotify_close();
    libevent_global_shutdown();
    return status;
}
