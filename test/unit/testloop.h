/* SPDX-License-Identifier: MIT
 * Unit tests that drive an event loop: run it for a while, or until a condition holds. */
#ifndef LUNAMQ_TESTLOOP_H
#define LUNAMQ_TESTLOOP_H

#include <event2/event.h>

static inline void
run_for(struct event_base *base, int ms)
{
    if (ms < 0) ms = 0; /* a negative timeval is not "run a while" (issue 12.20) */
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

/* Run the loop until cond holds, for at most ms. */
#define RUN_UNTIL(base, cond, ms) \
    for (int run_i_ = 0; run_i_ < (ms) / 10 && !(cond); run_i_++) run_for(base, 10)

#endif
