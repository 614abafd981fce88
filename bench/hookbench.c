/* SPDX-License-Identifier: MIT
 *
 * hookbench: what one hooks_run costs, without a broker around it. Each scenario is a
 * hook file in a temporary scripts_dir; messages on 200 topics sensors/<n>/temp go
 * through hooks_run; the figure is the median of the rounds, in ns per message.
 *
 * Usage: build/lunamq-hookbench [messages per round (default 1000000)] [rounds (5)] [ONLY]
 * (ONLY: run only the scenarios whose name contains it)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hooks.h"
#include "lq.h"
#include "msg.h"

static const struct {
    const char *name, *src;
} scenarios[] = {
    {"pass-through", "return {topics = {'sensors/#'}, on_publish = function(msg) return msg end}"},
    {"topic:find('^sensors/')", "local n = 0\n"
                                "return {topics = {'sensors/#'}, on_publish = function(msg)\n"
                                "  if msg.topic:find('^sensors/') then n = n + 1 end\n"
                                "  return msg end}"},
    {"topic:match('^sensors/([^/]+)/')",
     "local last\n"
     "return {topics = {'sensors/#'}, on_publish = function(msg)\n"
     "  last = msg.topic:match('^sensors/([^/]+)/')\n"
     "  return msg end}"},
    {"payload:gsub('%d', '#')", "return {topics = {'sensors/#'}, on_publish = function(msg)\n"
                                "  msg.payload = msg.payload:gsub('%d', '#')\n"
                                "  return msg end}"},
};

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double
run_scenario(const char *dir, const char *src, long messages, int rounds)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/10-bench.lua", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(src, f);
    fclose(f);
    struct hooks_conf c = {.dir = dir, .instruction_limit = 1000000, .memory_limit = 16 << 20};
    struct hooks *hs = hooks_new(NULL, &c, NULL);
    struct msg *msgs[200];
    for (int i = 0; i < 200; i++) {
        char topic[32];
        int n = snprintf(topic, sizeof(topic), "sensors/%d/temp", i);
        static const char payload[] = "{\"temp\": 21.5, \"unit\": \"C\", \"seq\": 1234}";
        struct msg_init in = {.topic = topic,
                              .topic_len = (size_t)n,
                              .payload = (const uint8_t *)payload,
                              .payload_len = sizeof(payload) - 1};
        msgs[i] = msg_new(&in);
    }
    double *ns = calloc((size_t)rounds, sizeof(*ns));
    for (int r = 0; r < rounds; r++) {
        double t0 = now_s();
        for (long k = 0; k < messages; k++) {
            struct hook_verdict v = {0};
            hooks_run(hs, msgs[k % 200], NULL, NULL, &v);
            hook_verdict_clear(&v);
        }
        ns[r] = (now_s() - t0) * 1e9 / (double)messages;
    }
    qsort(ns, (size_t)rounds, sizeof(*ns), cmp_double);
    double median = ns[rounds / 2];
    free(ns);
    for (int i = 0; i < 200; i++) msg_unref(msgs[i]);
    hooks_free(hs);
    unlink(path);
    return median;
}

int
main(int argc, char **argv)
{
    long messages = argc > 1 ? atol(argv[1]) : 1000000;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    if (messages <= 0 || rounds <= 0) {
        fprintf(stderr, "usage: %s [messages per round] [rounds]\n", argv[0]);
        return 2;
    }
    lq_log_open(LQ_LOG_ERR, LQ_DEST_STDERR, NULL);
    char dir[] = "/tmp/lunamq-hookbench-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    printf("| hook (%ld messages x %d rounds, median) | ns per hooks_run |\n|---|---:|\n", messages,
           rounds);
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
        if (argc <= 3 || strstr(scenarios[i].name, argv[3]))
            printf("| %s | %.0f |\n", scenarios[i].name,
                   run_scenario(dir, scenarios[i].src, messages, rounds));
    rmdir(dir);
    return 0;
}
