/* SPDX-License-Identifier: MIT
 *
 * lunamq: argv, configuration, wiring, the event loop. Nothing else. */
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
#include "lq.h"
#include "tls.h"

static void
usage(FILE *f)
{
    fprintf(f, "usage: lunamq [-c FILE] [-p PORT] [-v] [-h] [-V]\n"
               "  -c FILE          configuration file (mosquitto.conf syntax)\n"
               "  -p PORT          also listen on 127.0.0.1:PORT\n"
               "  -v               verbose: log everything\n"
               "  -h, --help       this help\n"
               "  -V, --version    print the version\n"
               "With no listener configured, lunamq listens on 127.0.0.1:1883.\n");
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

int
main(int argc, char **argv)
{
    const char *conf_path = NULL;
    long port = 0;
    bool verbose = false;
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}, {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "c:p:vhV", longopts, NULL)) != -1) {
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
        case 'h': usage(stdout); return 0;
        case 'V':
            printf("lunamq %s\nlibevent %s\n%s\n%s\n", LUNAMQ_VERSION, event_get_version(),
                   tls_library(), LUA_RELEASE);
            return 0;
        default: usage(stderr); return 3;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 3;
    }

    struct lq_conf conf;
    conf_init(&conf);
    if (conf_path) {
        char err[512];
        if (conf_load(&conf, conf_path, err, sizeof(err)) < 0) {
            fprintf(stderr, "%s\n", err);
            conf_fini(&conf);
            return 3;
        }
    }
    if (port) add_listener(&conf, "127.0.0.1", (uint16_t)port);
    if (!conf.listeners) add_listener(&conf, "127.0.0.1", 1883);
    lq_log_set_verbose(verbose);
    if (lq_log_open(conf.log_types, conf.log_dests, conf.log_file) < 0) {
        fprintf(stderr, "lunamq: log file %s: %s\n", conf.log_file, strerror(errno));
        conf_fini(&conf);
        return 3;
    }

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
    char err[1024];
    struct broker *b = broker_new(base, &conf, conf_path, err, sizeof(err));
    conf_fini(&conf);
    if (!b) {
        event_base_free(base);
        if (!err[0]) return 1;
        fprintf(stderr, "%s\n", err); /* unusable TLS material: a configuration error */
        return 3;
    }
    struct event *sigint = evsignal_new(base, SIGINT, on_stop_signal, b);
    struct event *sigterm = evsignal_new(base, SIGTERM, on_stop_signal, b);
    struct event *sighup = evsignal_new(base, SIGHUP, on_hup, b);
    if (!sigint || !sigterm || !sighup || event_add(sigint, NULL) || event_add(sigterm, NULL) ||
        event_add(sighup, NULL)) /* running on, SIGTERM would kill without the flush */
        lq_log(LQ_LOG_ERR, "cannot handle signals: SIGTERM stops without flushing, no SIGHUP");

    event_base_dispatch(base);

    if (sigint) event_free(sigint);
    if (sigterm) event_free(sigterm);
    if (sighup) event_free(sighup);
    broker_free(b);
    event_base_free(base);
    lq_log(LQ_LOG_NOTICE, "stopped");
    lq_log_close();
    libevent_global_shutdown();
    return 0;
}
