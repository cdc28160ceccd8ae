/* SPDX-License-Identifier: MIT */
/*
 * The worker pool's floating-point environment (reference/threads.c): on x86 every pool item
 * runs with subnormals flushed (MXCSR FTZ and DAZ) on 1, 2 and 3 threads, and the caller's own
 * setting is back after the loop. Outside the memcheck label: valgrind does not emulate FTZ or
 * DAZ (it computes the subnormals), so this test cannot hold under it; the pool's code paths
 * run under memcheck in test_threads.
 */
#define _POSIX_C_SOURCE 200809L
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "qref_internal.h"
#include "check_main.h"

static const int thread_counts[] = {1, 2, 3};
#define NT ((int)(sizeof thread_counts / sizeof thread_counts[0]))

#if defined(__x86_64__) || defined(__SSE2__)
typedef struct {
    volatile float in;          /* a subnormal input: DAZ reads it as 0 */
    volatile float tiny;        /* 1e-20f: tiny * tiny = 1e-40 is subnormal, FTZ writes 0 */
    volatile float one;
    float out[8][2];
} flush_probe;

static void flush_item(void *ctx, int item, int worker)
{
    (void)worker;
    flush_probe *p = ctx;
    p->out[item][0] = p->in * p->one;
    p->out[item][1] = p->tiny * p->tiny;
}

START_TEST(test_threads_subnormals_flushed)
{
    uint32_t bits = 0x00000400u;                            /* 2^-139, a float subnormal */
    flush_probe p = {.tiny = 1e-20f, .one = 1.0f};
    float in;
    memcpy(&in, &bits, sizeof in);
    p.in = in;
    for (int i = 0; i < NT; i++) {
        qref_set_threads(thread_counts[i]);
        for (int k = 0; k < 8; k++)
            p.out[k][0] = p.out[k][1] = -1;
        qref__parallel(8, flush_item, &p);
        for (int k = 0; k < 8; k++) {
            ck_assert_msg(p.out[k][0] == 0 && p.out[k][1] == 0,
                          "%d threads, item %d: subnormal read as %g, written as %g", thread_counts[i], k,
                          (double)p.out[k][0], (double)p.out[k][1]);
        }
        const float after = p.tiny * p.tiny;                /* the caller, outside the loop */
        ck_assert_msg(after != 0 && p.in * p.one != 0, "the caller's FP environment was not restored");
    }
    qref_set_threads(0);
}
END_TEST
#endif

int main(void)
{
    Suite *s = suite_create("fp_flush");
    TCase *tc = tcase_create("pool");
#if defined(__x86_64__) || defined(__SSE2__)
    tcase_add_test(tc, test_threads_subnormals_flushed);
#endif
    suite_add_tcase(s, tc);
    return lc_check_run(s);
}
