/* SPDX-License-Identifier: MIT
 *
 * clock: monotonic milliseconds for timers and expiry, wall time for humans. */
#include <time.h>

#include "lq.h"

static uint64_t skipped_ms; /* lq_clock_skip_ms: unit tests only */

uint64_t
lq_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + skipped_ms;
}

void
lq_clock_skip_ms(uint64_t ms)
{
    skipped_ms += ms;
}

double
lq_wall_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
