/* SPDX-License-Identifier: MIT
 * The fuzz targets' invariant check: a violation aborts, which libFuzzer reports with
 * the input that caused it. */
#ifndef LUNAMQ_FUZZ_CHECK_H
#define LUNAMQ_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                 \
        }                                                                            \
    } while (0)

#endif
