/*
 * logitcheck infer: one engine run on one prompt, logits written to HDF5.
 *
 *   logitcheck infer --model DIR --ids 1,2,3 [--image a.png ...] [--feed 7,8] [--chunk N]
 *                    --out FILE.h5
 *
 * Output layout (see README "infer output"): prefill_logits (T, V) and decode_logits (N, V)
 * in the engine's precision, position_ids int64 (3, T), rope_delta int64 scalar, input_ids
 * int64 (T); root attributes format, engine_precision, model.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "h5io.h"
#include "images.h"
#include "qref.h"

#define MAX_IMAGES 64

int lc_parse_ids(const char *s, int **out, int *n, char *msg, size_t msglen)
{
    int cap = 16, k = 0;
    int *v = malloc((size_t)cap * sizeof *v);
    const char *p = s;
    if (!v) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    while (*p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > 0x7fffffffL || (*end && *end != ',')) {
            snprintf(msg, msglen, "'%s': expected comma-separated non-negative token ids", s);
            free(v);
            return -1;
        }
        if (k == cap) {
            int *w = realloc(v, (size_t)(cap *= 2) * sizeof *v);
            if (!w) {
                free(v);
                snprintf(msg, msglen, "out of memory");
                return -1;
            }
            v = w;
        }
        v[k++] = (int)x;
        p = *end ? end + 1 : end;
        if (*end == ',' && !*p) {
            snprintf(msg, msglen, "'%s': trailing comma", s);
            free(v);
            return -1;
        }
    }
    if (k == 0) {
        snprintf(msg, msglen, "'%s': no token ids", s);
        free(v);
        return -1;
    }
    *out = v;
    *n = k;
    return 0;
}

static void infer_usage(FILE *to)
{
    fprintf(to, "usage: logitcheck infer --model DIR --ids 1,2,3 [--image a.png ...] [--feed 7,8]\n"
                "                        [--chunk N] --out FILE.h5\n"
                "  --ids     prompt token ids, image placeholders already expanded\n"
                "  --image   a PNG for each placeholder run, in order of appearance\n"
                "  --feed    tokens fed one at a time through the cache after the prompt\n"
                "  --chunk   prefill in chunks of N tokens (default: one call)\n");
}

/* Writes qref_real data as float or double, whichever the engine computes in. */
static int write_real(lc_h5 *f, const char *name, const qref_real *data, int ndim, const int64_t *shape, lc_error *err)
{
#if defined(QREF_PRECISION_F64)
    return lc_h5_write_f64(f, name, data, ndim, shape, err);
#else
    return lc_h5_write_f32(f, name, data, ndim, shape, err);
#endif
}

typedef struct {
    const char *model, *ids, *feed, *out;
    const char *images[MAX_IMAGES];
    int n_images;
    int chunk;
} infer_args;

static int parse_args(int argc, char **argv, infer_args *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "-h") || !strcmp(k, "--help")) {
            infer_usage(stdout);
            return 1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "logitcheck infer: %s needs a value\n", k);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(k, "--model"))
            a->model = v;
        else if (!strcmp(k, "--ids"))
            a->ids = v;
        else if (!strcmp(k, "--feed"))
            a->feed = v;
        else if (!strcmp(k, "--out"))
            a->out = v;
        else if (!strcmp(k, "--image")) {
            if (a->n_images == MAX_IMAGES) {
                fprintf(stderr, "logitcheck infer: more than %d images\n", MAX_IMAGES);
                return 2;
            }
            a->images[a->n_images++] = v;
        } else if (!strcmp(k, "--chunk")) {
            char *end;
            long c = strtol(v, &end, 10);
            if (*end || c < 1 || c > 1 << 20) {
                fprintf(stderr, "logitcheck infer: --chunk '%s': expected a positive integer\n", v);
                return 2;
            }
            a->chunk = (int)c;
        } else {
            fprintf(stderr, "logitcheck infer: unknown option '%s'\n", k);
            return 2;
        }
    }
    if (!a->model || !a->ids || !a->out) {
        fprintf(stderr, "logitcheck infer: --model, --ids and --out are required\n");
        infer_usage(stderr);
        return 2;
    }
    return 0;
}

int lc_cmd_infer(int argc, char **argv)
{
    infer_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc == 1 ? 0 : rc;

    char msg[512];
    int *ids = NULL, *feed = NULL, n = 0, nfeed = 0;
    qref_model m = {0};
    qref_cache c = {0};
    qref_prompt p = {0};
    lc_image_set imgs = {0};
    qref_real *prefill = NULL, *decode = NULL;
    qref_error qe = {0};
    lc_error le = {0};
    lc_h5 f = {.id = -1};
    int32_t *ids32 = NULL;

    rc = 2;
    if (lc_parse_ids(a.ids, &ids, &n, msg, sizeof msg) || (a.feed && lc_parse_ids(a.feed, &feed, &nfeed, msg, sizeof msg))) {
        fprintf(stderr, "logitcheck infer: %s\n", msg);
        goto done;
    }
    if (lc_image_set_load(&imgs, a.images, a.n_images, &le)) {
        fprintf(stderr, "logitcheck infer: %s\n", le.msg);
        goto done;
    }
    if (qref_model_load(&m, a.model, &qe) != QREF_OK) {
        fprintf(stderr, "logitcheck infer: %s\n", qe.msg);
        rc = qe.code == QREF_ENOMEM ? 3 : 2;
        goto done;
    }
    ids32 = malloc((size_t)n * sizeof *ids32);
    if (!ids32) {
        rc = 3;
        goto done;
    }
    for (int i = 0; i < n; i++)
        ids32[i] = ids[i];
    const int V = m.cfg.vocab_size;
    prefill = malloc((size_t)n * V * sizeof *prefill);
    decode = malloc(((size_t)nfeed * V + 1) * sizeof *decode);
    if (!prefill || !decode) {
        fprintf(stderr, "logitcheck infer: out of memory for %d x %d logits\n", n, V);
        rc = 3;
        goto done;
    }
    if (qref_prompt_build(&p, &m, ids32, n, imgs.images, imgs.n, &qe) != QREF_OK ||
        qref_cache_init(&c, &m, &qe) != QREF_OK ||
        qref_prompt_prefill(&m, &c, &p, 0, n, a.chunk, QREF_GDN_AUTO, prefill, &qe) != QREF_OK) {
        fprintf(stderr, "logitcheck infer: %s\n", qe.msg);
        rc = qe.code == QREF_ENOMEM ? 3 : 2;
        goto done;
    }
    for (int i = 0; i < nfeed; i++) {
        int32_t t = feed[i];
        qref_tokens in = {.ids = &t, .n = 1};
        qref_outputs out = {.logits = decode + (size_t)i * V};
        if (qref_forward(&m, &c, &in, &out, &qe) != QREF_OK) {
            fprintf(stderr, "logitcheck infer: --feed token %d: %s\n", i, qe.msg);
            goto done;
        }
    }

    int64_t *ids64 = malloc((size_t)n * sizeof *ids64);
    if (!ids64) {
        rc = 3;
        goto done;
    }
    for (int i = 0; i < n; i++)
        ids64[i] = ids[i];
    int64_t sh_prefill[2] = {n, V}, sh_decode[2] = {nfeed, V}, sh_pos[2] = {3, n}, sh_ids[1] = {n};
    int bad = lc_h5_create(&f, a.out, &le) || write_real(&f, "prefill_logits", prefill, 2, sh_prefill, &le) ||
              write_real(&f, "decode_logits", decode, 2, sh_decode, &le) ||
              lc_h5_write_i64(&f, "position_ids", p.pos, 2, sh_pos, &le) ||
              lc_h5_write_i64(&f, "input_ids", ids64, 1, sh_ids, &le) ||
              lc_h5_write_i64(&f, "rope_delta", &p.delta, 0, NULL, &le) ||
              lc_h5_write_attr_str(&f, "/", "format", "logitcheck-infer", &le) ||
              lc_h5_write_attr_str(&f, "/", "engine_precision", QREF_PRECISION_NAME, &le) ||
              lc_h5_write_attr_str(&f, "/", "model", a.model, &le) || lc_h5_commit(&f, &le);
    free(ids64);
    if (bad) {
        lc_h5_abort(&f);
        fprintf(stderr, "logitcheck infer: %s\n", le.msg);
        goto done;
    }
    rc = 0;

done:
    free(ids);
    free(feed);
    free(ids32);
    free(prefill);
    free(decode);
    qref_prompt_free(&p);
    qref_cache_free(&c);
    qref_model_free(&m);
    lc_image_set_free(&imgs);
    return rc;
}
