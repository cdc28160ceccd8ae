/* SPDX-License-Identifier: MIT */
/* A deliberately leaking program: proves that expect.cmake's valgrind mode fails a run that
 * leaks on an error path (exits 2, like a bad-input exit of logitcheck). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Allocates blocks and drops every pointer to them. */
static __attribute__((noinline)) void lose(int n)
{
    for (int i = 0; i < n; i++) {
        char *p = malloc(64);
        if (!p)
            return;
        snprintf(p, 64, "block %d is never freed", i);
        if (i == n - 1)
            fprintf(stderr, "leak: %s\n", p);
    }
}

int main(void)
{
    lose(4);
    return 2;
}
