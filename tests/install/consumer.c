/* SPDX-License-Identifier: MIT */
/*
 * A program outside the project that links the installed reference engine: loads a
 * checkpoint, runs one forward over three tokens and prints the engine's precision (checked
 * against the header it was compiled with) and the last row's argmax and first logit.
 *
 *   consumer CHECKPOINT_DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qref.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: consumer CHECKPOINT_DIR\n");
        return 2;
    }
    if (strcmp(qref_precision(), QREF_PRECISION_NAME) != 0 || qref_real_size() != sizeof(qref_real)) {
        fprintf(stderr, "consumer: library built %s, header says %s\n", qref_precision(), QREF_PRECISION_NAME);
        return 1;
    }
    qref_model m;
    qref_cache c;
    qref_error err;
    memset(&m, 0, sizeof m);
    memset(&c, 0, sizeof c);
    if (qref_model_load(&m, argv[1], &err) != QREF_OK || qref_cache_init(&c, &m, &err) != QREF_OK) {
        fprintf(stderr, "consumer: %s\n", err.msg);
        qref_model_free(&m);
        return 1;
    }
    const int32_t ids[3] = {1, 2, 3};
    const int V = m.cfg.vocab_size;
    qref_real *logits = calloc((size_t)3 * V, sizeof *logits);
    qref_tokens in = {ids, 3, NULL, NULL, 0, QREF_GDN_AUTO, 0};
    qref_outputs out = {logits, NULL, NULL};
    int rc = 0;
    if (logits == NULL || qref_forward(&m, &c, &in, &out, &err) != QREF_OK) {
        fprintf(stderr, "consumer: %s\n", logits ? err.msg : "out of memory");
        rc = 1;
    } else {
        const qref_real *row = logits + (size_t)2 * V;
        int best = 0;
        for (int j = 1; j < V; j++)
            best = row[j] > row[best] ? j : best;
        printf("qref %s: vocab %d, argmax %d, logit[0] %.6g\n", qref_precision(), V, best, (double)row[0]);
    }
    free(logits);
    qref_cache_free(&c);
    qref_model_free(&m);
    return rc;
}
