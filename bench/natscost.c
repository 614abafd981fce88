/* SPDX-License-Identifier: MIT
 *
 * natscost: what libnats alone costs per message, the floor under a lunamq message
 * that crosses nodes (bench/RESULTS.md, "Cluster"). One process, two connections to a
 * nats-server: one publishes N messages of S bytes to one subject, as lunamq's cluster
 * thread does (a natsMsg with one header, or a plain publish), the other receives them
 * through an asynchronous subscription (libnats' delivery thread, as lunamq's), and
 * reads the header back as lunamq does. The process's CPU time (every libnats thread)
 * over N is both nodes' libnats share of one crossing message; nats-server's is not in it.
 *
 * Usage: build/lunamq-natscost URL [N [S [RATE]]]  (one line per variant; RATE: messages a
 * second, paced as a publisher at that rate would be; 0 or none: as fast as it goes) */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#include <nats/nats.h>

static _Atomic long received;
static _Atomic long header_bytes;

static void
on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    (void)nc, (void)sub;
    if (closure) { /* read the header, as the receiving node does */
        const char *v = NULL;
        if (natsMsgHeader_Get(m, "Lq-Msg", &v) == NATS_OK) atomic_fetch_add(&header_bytes, 1);
    }
    natsMsg_Destroy(m);
    atomic_fetch_add(&received, 1);
}

static double
cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double
wall_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* One variant: with_header (natsMsg + one header, read back) or a plain publish. */
enum mode { PACE_ONLY, PLAIN, WITH_HEADER };

static int
run(const char *url, long n, int size, long rate, enum mode mode)
{
    bool with_header = mode == WITH_HEADER;
    natsOptions *o = NULL;
    natsConnection *pub = NULL, *subc = NULL;
    natsSubscription *sub = NULL;
    natsOptions_Create(&o);
    natsOptions_SetURL(o, url);
    natsOptions_UseGlobalMessageDelivery(o, true);
    if (natsConnection_Connect(&pub, o) != NATS_OK || natsConnection_Connect(&subc, o) != NATS_OK) {
        fprintf(stderr, "natscost: cannot connect to %s\n", url);
        return 1;
    }
    static int read_header;
    natsStatus st = natsConnection_Subscribe(&sub, subc, "lq.bench.m.x", on_msg,
                                             with_header ? &read_header : NULL);
    if (st == NATS_OK) st = natsSubscription_SetPendingLimits(sub, 1 << 24, 1 << 30);
    if (st == NATS_OK) st = natsConnection_Flush(subc);
    if (st != NATS_OK) {
        fprintf(stderr, "natscost: cannot subscribe: %s\n", natsStatus_GetText(st));
        return 1;
    }
    char *payload = calloc(1, (size_t)size);
    const char *hdr = "n1 0123456789abcdef 123456 1 - -";
    atomic_store(&received, 0);
    double c0 = cpu_seconds(), w0 = wall_seconds();
    for (long i = 0; i < n; i++) {
        if (rate > 0) { /* one sleep to the next one's time */
            double due = w0 + (double)i / (double)rate;
            struct timespec t = {(time_t)due, (long)((due - (double)(time_t)due) * 1e9)};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
        }
        if (mode == PACE_ONLY) {
            atomic_fetch_add(&received, 1);
            continue;
        }
        if (with_header) {
            natsMsg *m = NULL;
            natsMsg_Create(&m, "lq.bench.m.x", NULL, payload, size);
            natsMsgHeader_Set(m, "Lq-Msg", hdr);
            natsConnection_PublishMsg(pub, m);
            natsMsg_Destroy(m);
        } else {
            natsConnection_Publish(pub, "lq.bench.m.x", payload, size);
        }
        /* the publisher does not run away from the receiver (as a paced node); what
         * the server dropped (a slow consumer) is not waited for for ever */
        for (int k = 0; i - atomic_load(&received) > 20000 && k < 20000; k++) {
            struct timespec nap = {0, 100000};
            nanosleep(&nap, NULL);
        }
    }
    natsConnection_Flush(pub);
    double deadline = wall_seconds() + 10;
    while (atomic_load(&received) < n && wall_seconds() < deadline) {
        struct timespec nap = {0, 200000};
        nanosleep(&nap, NULL);
    }
    double c1 = cpu_seconds(), w1 = wall_seconds();
    long got = atomic_load(&received);
    printf("%-26s %8ld msgs of %4d B  libnats CPU %.2f us/msg (both sides)  %.0f msg/s%s\n",
           mode == WITH_HEADER ? "natsMsg + 1 header, read"
           : mode == PLAIN     ? "plain publish"
                               : "pacing alone (no NATS)",
           got, size, (c1 - c0) * 1e6 / (double)(got ? got : 1), (double)got / (w1 - w0),
           got < n ? "  (not all received)" : "");
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(pub);
    natsConnection_Destroy(subc);
    natsOptions_Destroy(o);
    free(payload);
    return got < n;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s URL [N [SIZE]]\n", argv[0]);
        return 2;
    }
    long n = argc > 2 ? atol(argv[2]) : 200000;
    int size = argc > 3 ? atoi(argv[3]) : 64;
    long rate = argc > 4 ? atol(argv[4]) : 0;
    int rc = (rate > 0 ? run(argv[1], n, size, rate, PACE_ONLY) : 0) |
             run(argv[1], n, size, rate, PLAIN) | run(argv[1], n, size, rate, WITH_HEADER);
    nats_Close();
    return rc;
}
