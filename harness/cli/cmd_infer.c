/* SPDX-License-Identifier: MIT */
/*
 * logitcheck infer: one engine run, logits written to HDF5.
 *
 *   logitcheck infer --model DIR --ids 1,2,3 [--image a.png ...] [--feed 7,8] [--chunk N]
 *                    --out FILE.h5
 *   logitcheck infer --model DIR --ids ... --ids ... [--image ROW:b.png ...] ...   (a batch)
 *   logitcheck infer --model DIR --ids ... [--video f0.png,f1.png,...[@FPS] ...] ... (one row)
 *
 * A video's frames are sampled as the model's video processor does (FPS: the rate they were
 * taken at; without it 24 is assumed, as the processor does); --ids must already hold its
 * expansion: per temporal patch the timestamp ids, vision_start, the patch's placeholders
 * (video_token_id), vision_end. Images and videos bind to the placeholder runs in order.
 *
 * One --ids: prefill_logits (T, V), decode_logits (N, V), position_ids int64 (3, T),
 * rope_delta int64 (), input_ids int64 (T). Several --ids: one left-padded batched run;
 * prefill_logits (B, L, V) with NaN at pads, decode_logits (B, N, V) (every row fed the
 * same --feed tokens), position_ids (B, 3, L), attention_mask int64 (B, L), input_ids (B, L)
 * (0 at pads), rope_delta (B). Logits in the engine's precision. Root attributes: format,
 * engine_precision, model.
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
#define MAX_VIDEOS 16
#define MAX_FRAMES 1024

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
        /* digits only: strtol alone would accept leading spaces and signs */
        long x = *p >= '0' && *p <= '9' ? strtol(p, &end, 10) : (end = (char *)p, 0);
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
    fprintf(to, "usage: logitcheck infer --model DIR --ids 1,2,3 [--ids ...] [--image [ROW:]a.png ...]\n"
                "                        [--feed 7,8] [--chunk N] --out FILE.h5\n"
                "  --ids     prompt token ids, image placeholders already expanded; more than once: a\n"
                "            left-padded batch, one row per --ids\n"
                "  --image   a PNG for each placeholder run, in order of appearance; ROW:path binds it to\n"
                "            batch row ROW (0-based); a bare path belongs to row 0\n"
                "  --video   a video's PNG frames, comma-separated, optionally @FPS (their frame rate); one\n"
                "            --ids row only; --ids holds its expansion (timestamp ids, vision_start,\n"
                "            placeholders, vision_end per temporal patch)\n"
                "  --feed    tokens fed one at a time through the cache after the prompt (every row)\n"
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

#define MAX_ROWS 64

typedef struct {
    const char *model, *feed, *out;
    const char *ids[MAX_ROWS];
    int n_rows;
    const char *images[MAX_IMAGES];
    int image_row[MAX_IMAGES];
    int n_images;
    const char *videos[MAX_VIDEOS];
    int n_videos;
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
        else if (!strcmp(k, "--ids")) {
            if (a->n_rows == MAX_ROWS) {
                fprintf(stderr, "logitcheck infer: more than %d --ids rows\n", MAX_ROWS);
                return 2;
            }
            a->ids[a->n_rows++] = v;
        } else if (!strcmp(k, "--feed"))
            a->feed = v;
        else if (!strcmp(k, "--out"))
            a->out = v;
        else if (!strcmp(k, "--image")) {
            if (a->n_images == MAX_IMAGES) {
                fprintf(stderr, "logitcheck infer: more than %d images\n", MAX_IMAGES);
                return 2;
            }
            const char *colon = strchr(v, ':');
            int row = 0;
            if (colon && colon > v && strspn(v, "0123456789") == (size_t)(colon - v)) {
                errno = 0;
                long r = strtol(v, NULL, 10);
                if (errno || r >= MAX_ROWS) {
                    fprintf(stderr, "logitcheck infer: --image %s: row %.*s is past the %d rows a batch may have\n",
                            v, (int)(colon - v), v, MAX_ROWS);
                    return 2;
                }
                row = (int)r;
                v = colon + 1;
            }
            a->image_row[a->n_images] = row;
            a->images[a->n_images++] = v;
        } else if (!strcmp(k, "--video")) {
            if (a->n_videos == MAX_VIDEOS) {
                fprintf(stderr, "logitcheck infer: more than %d videos\n", MAX_VIDEOS);
                return 2;
            }
            a->videos[a->n_videos++] = v;
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
    if (!a->model || !a->n_rows || !a->out) {
        fprintf(stderr, "logitcheck infer: --model, --ids and --out are required\n");
        infer_usage(stderr);
        return 2;
    }
    if (a->n_videos && a->n_rows != 1) {
        fprintf(stderr, "logitcheck infer: --video needs exactly one --ids row, found %d\n", a->n_rows);
        return 2;
    }
    for (int i = 0; i < a->n_images; i++)
        if (a->image_row[i] >= a->n_rows) {
            fprintf(stderr, "logitcheck infer: --image %d:%s: there are only %d --ids rows\n", a->image_row[i],
                    a->images[i], a->n_rows);
            return 2;
        }
    return 0;
}

/* Everything one run holds; freed in one place. */
typedef struct {
    qref_model m;
    qref_prompt rows[MAX_ROWS];
    qref_cache caches[MAX_ROWS];
    qref_cache *cache_ptrs[MAX_ROWS];
    qref_padded pad;
    lc_image_set imgs[MAX_ROWS];
    lc_image_set vids[MAX_VIDEOS];  /* each video's sampled frames */
    int B;
    qref_real *prefill, *decode;
    int *feed;
    int nfeed;
} infer_state;

static void state_free(infer_state *s)
{
    for (int b = 0; b < MAX_ROWS; b++) {
        qref_prompt_free(&s->rows[b]);
        qref_cache_free(&s->caches[b]);
        lc_image_set_free(&s->imgs[b]);
    }
    for (int v = 0; v < MAX_VIDEOS; v++)
        lc_image_set_free(&s->vids[v]);
    qref_padded_free(&s->pad);
    qref_model_free(&s->m);
    free(s->prefill);
    free(s->decode);
    free(s->feed);
}

/* Each image against the processor's limits (aspect ratio, resized size), so a refusal names
 * the PNG rather than the prompt row. Returns an exit code. */
static int check_image_sizes(const qref_model *m, const lc_image_set *set, const char *const *paths)
{
    for (int i = 0; i < set->n; i++) {
        int grid[3];
        qref_error qe;
        if (qref_image_grid(&m->cfg, set->images[i].width, set->images[i].height, grid, &qe) != QREF_OK) {
            fprintf(stderr, "logitcheck infer: %s: %s\n", paths[i], qe.msg);
            return 2;
        }
    }
    return 0;
}

/* Decodes video v's sampled frames into s->vids[v]: "f0.png,f1.png,...[@fps]". Returns an exit code. */
static int load_video(const infer_args *a, infer_state *s, int v)
{
    const char *spec = a->videos[v];
    char *copy = strdup(spec);
    const char *paths[MAX_FRAMES], *kept[MAX_FRAMES];
    int n = 0, idx[MAX_FRAMES], k = 0, rc = 0;
    double fps = 0, used;
    qref_error qe;
    lc_error le;
    if (!copy)
        return 3;
    char *at = strrchr(copy, '@');
    if (at) {
        char *end;
        *at = '\0';
        fps = strtod(at + 1, &end);
        if (*end || !(fps > 0) || fps > 1e6) {
            fprintf(stderr, "logitcheck infer: --video %s: '%s' is not a positive frame rate\n", spec, at + 1);
            free(copy);
            return 2;
        }
    }
    for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
        if (n == MAX_FRAMES) {
            fprintf(stderr, "logitcheck infer: --video %s: more than %d frames\n", spec, MAX_FRAMES);
            free(copy);
            return 2;
        }
        paths[n++] = tok;
    }
    if (n == 0) {
        fprintf(stderr, "logitcheck infer: --video '%s': no frames\n", spec);
        rc = 2;
    } else if (qref_video_sample(&s->m.cfg, n, fps, idx, &k, &used, &qe) != QREF_OK) {
        fprintf(stderr, "logitcheck infer: --video %s: %s\n", paths[0], qe.msg);
        rc = 2;
    } else {
        for (int i = 0; i < k; i++)
            kept[i] = paths[idx[i]];
        if (lc_image_set_load(&s->vids[v], kept, k, &le)) {
            fprintf(stderr, "logitcheck infer: %s\n", le.msg);
            rc = 2;
        }
    }
    free(copy);
    return rc;
}

/* Row 0 with videos: the images and videos bound to the placeholder runs in the order they
 * appear (a video's runs are its temporal patches). Returns an exit code. */
static int build_row_mm(const infer_args *a, infer_state *s, const int32_t *ids, int n)
{
    const qref_config *cfg = &s->m.cfg;
    qref_visual vis[MAX_IMAGES + MAX_VIDEOS];
    int nv = 0, ni = 0, nvid = 0, groups_left = 0;
    qref_error qe;
    for (int i = 0; i < n; i++) {
        const int run_start = qref_is_placeholder(cfg, ids[i]) && (i == 0 || ids[i - 1] != ids[i]);
        if (!run_start)
            continue;
        if (ids[i] == cfg->image_token_id) {
            if (ni == s->imgs[0].n) {
                fprintf(stderr, "logitcheck infer: --ids has more image placeholder runs than --image files\n");
                return 2;
            }
            vis[nv++] = (qref_visual){.image = s->imgs[0].images[ni++]};
        } else if (groups_left > 0) {
            groups_left--;
        } else {
            if (nvid == a->n_videos) {
                fprintf(stderr, "logitcheck infer: --ids has more video placeholder runs than --video gives\n");
                return 2;
            }
            const lc_image_set *f = &s->vids[nvid];
            int grid[3];
            if (qref_video_grid(cfg, f->n, f->images[0].width, f->images[0].height, grid, &qe) != QREF_OK) {
                fprintf(stderr, "logitcheck infer: --video %s: %s\n", a->videos[nvid], qe.msg);
                return 2;
            }
            groups_left = grid[0] - 1;
            vis[nv++] = (qref_visual){.is_video = 1, .frames = f->images, .n_frames = f->n};
            nvid++;
        }
    }
    if (groups_left > 0 || nvid != a->n_videos || ni != s->imgs[0].n) {
        fprintf(stderr,
                "logitcheck infer: --ids has %d image and %d video placeholder runs (%s), but %d --image and %d "
                "--video were given\n", ni, nvid, groups_left ? "the last video's temporal patches incomplete" : "complete",
                s->imgs[0].n, a->n_videos);
        return 2;
    }
    if (qref_prompt_build_mm(&s->rows[0], &s->m, ids, n, vis, nv, &qe) != QREF_OK) {
        fprintf(stderr, "logitcheck infer: --ids row 0: %s\n", qe.msg);
        return qe.code == QREF_ENOMEM ? 3 : 2;
    }
    return 0;
}

/* Builds each row's prompt: its ids and the images bound to it. Returns an exit code. */
static int build_rows(const infer_args *a, infer_state *s)
{
    char msg[512];
    qref_error qe;
    lc_error le;
    for (int b = 0; b < a->n_rows; b++) {
        int *ids = NULL, n = 0;
        if (lc_parse_ids(a->ids[b], &ids, &n, msg, sizeof msg)) {
            fprintf(stderr, "logitcheck infer: --ids: %s\n", msg);
            return 2;
        }
        const char *paths[MAX_IMAGES];
        int k = 0;
        for (int i = 0; i < a->n_images; i++)
            if (a->image_row[i] == b)
                paths[k++] = a->images[i];
        int32_t *ids32 = malloc((size_t)n * sizeof *ids32);
        for (int i = 0; ids32 && i < n; i++)
            ids32[i] = ids[i];
        free(ids);
        if (!ids32)
            return 3;
        int rc = 0;
        if (lc_image_set_load(&s->imgs[b], paths, k, &le)) {
            fprintf(stderr, "logitcheck infer: %s\n", le.msg);
            rc = 2;
        } else if ((rc = check_image_sizes(&s->m, &s->imgs[b], paths)) != 0) {
            /* reported, naming the PNG */
        } else if (a->n_videos) {
            for (int v = 0; v < a->n_videos && !rc; v++)
                rc = load_video(a, s, v);
            if (!rc)
                rc = build_row_mm(a, s, ids32, n);
            if (!rc && qref_cache_init(&s->caches[b], &s->m, &qe) != QREF_OK) {
                fprintf(stderr, "logitcheck infer: %s\n", qe.msg);
                rc = 3;
            }
        } else if (qref_prompt_build(&s->rows[b], &s->m, ids32, n, s->imgs[b].images, s->imgs[b].n, &qe) != QREF_OK) {
            fprintf(stderr, "logitcheck infer: --ids row %d: %s\n", b, qe.msg);
            rc = qe.code == QREF_ENOMEM ? 3 : 2;
        } else if (qref_cache_init(&s->caches[b], &s->m, &qe) != QREF_OK) {
            fprintf(stderr, "logitcheck infer: %s\n", qe.msg);
            rc = 3;
        }
        free(ids32);
        if (rc)
            return rc;
        s->cache_ptrs[b] = &s->caches[b];
    }
    return 0;
}

/* Prefill (chunked when asked) and decode of every row in one batch layout. */
static int run_engine(const infer_args *a, infer_state *s)
{
    qref_error qe;
    const int B = s->B, V = s->m.cfg.vocab_size;
    if (qref_padded_build(&s->pad, s->rows, B, 0, &qe) != QREF_OK) {
        fprintf(stderr, "logitcheck infer: %s\n", qe.msg);
        return 3;
    }
    const int L = s->pad.L, chunk = a->chunk ? a->chunk : L;
    s->prefill = malloc((size_t)B * L * V * sizeof *s->prefill);
    s->decode = malloc(((size_t)B * s->nfeed * V + 1) * sizeof *s->decode);
    qref_real *part = malloc((size_t)B * (chunk < L ? chunk : L) * V * sizeof *part);
    qref_real *step = malloc((size_t)B * V * sizeof *step);
    int32_t *toks = malloc((size_t)B * sizeof *toks);
    int rc = 0;
    if (!s->prefill || !s->decode || !part || !step || !toks) {
        fprintf(stderr, "logitcheck infer: out of memory for %d x %d x %d logits\n", B, L, V);
        rc = 3;
        goto done;
    }
    for (int from = 0; from < L && !rc; from += chunk) {
        int to = from + chunk < L ? from + chunk : L, w = to - from;
        if (qref_padded_prefill(&s->m, s->cache_ptrs, &s->pad, from, to, part, &qe) != QREF_OK) {
            fprintf(stderr, "logitcheck infer: %s\n", qe.msg);
            rc = qe.code == QREF_ENOMEM ? 3 : 2;
            break;
        }
        for (int b = 0; b < B; b++)
            memcpy(s->prefill + ((size_t)b * L + from) * V, part + (size_t)b * w * V, (size_t)w * V * sizeof *part);
    }
    for (int i = 0; i < s->nfeed && !rc; i++) {
        for (int b = 0; b < B; b++)
            toks[b] = s->feed[i];
        qref_batch in = {.B = B, .L = 1, .ids = toks};
        qref_outputs out = {.logits = step};
        if (qref_forward_batch(&s->m, s->cache_ptrs, &in, &out, &qe) != QREF_OK) {
            fprintf(stderr, "logitcheck infer: --feed token %d: %s\n", i, qe.msg);
            rc = 2;
            break;
        }
        for (int b = 0; b < B; b++)
            memcpy(s->decode + ((size_t)b * s->nfeed + i) * V, step + (size_t)b * V, (size_t)V * sizeof *step);
    }
done:
    free(part);
    free(step);
    free(toks);
    return rc;
}

static int write_output(const infer_args *a, const infer_state *s)
{
    const int B = s->B, L = s->pad.L, N = s->nfeed, V = s->m.cfg.vocab_size;
    const int batched = B > 1;
    lc_error le = {0};
    lc_h5 f = {.id = -1};
    int64_t *ids = malloc((size_t)B * L * sizeof *ids), *mask = malloc((size_t)B * L * sizeof *mask);
    int64_t *delta = malloc((size_t)B * sizeof *delta);
    if (!ids || !mask || !delta) {
        free(ids);
        free(mask);
        free(delta);
        return 3;
    }
    for (int i = 0; i < B * L; i++) {
        ids[i] = s->pad.mask[i] ? s->pad.ids[i] : 0;
        mask[i] = s->pad.mask[i];
    }
    for (int b = 0; b < B; b++)
        delta[b] = s->rows[b].delta;
    int64_t sh_pre[3] = {B, L, V}, sh_dec[3] = {B, N, V}, sh_pos[3] = {B, 3, L}, sh_ids[2] = {B, L}, sh_b[1] = {B};
    const int o = batched ? 0 : 1; /* one sequence: drop the batch dimension */
    int bad = lc_h5_create(&f, a->out, &le) || write_real(&f, "prefill_logits", s->prefill, 3 - o, sh_pre + o, &le) ||
              write_real(&f, "decode_logits", s->decode, 3 - o, sh_dec + o, &le) ||
              lc_h5_write_i64(&f, "position_ids", s->pad.pos, 3 - o, sh_pos + o, &le) ||
              lc_h5_write_i64(&f, "input_ids", ids, 2 - o, sh_ids + o, &le) ||
              lc_h5_write_i64(&f, "rope_delta", delta, 1 - o, sh_b, &le) ||
              (batched && lc_h5_write_i64(&f, "attention_mask", mask, 2, sh_ids, &le)) ||
              lc_h5_write_attr_str(&f, "/", "format", "logitcheck-infer", &le) ||
              lc_h5_write_attr_str(&f, "/", "engine_precision", QREF_PRECISION_NAME, &le) ||
              lc_h5_write_attr_str(&f, "/", "model", a->model, &le) || lc_h5_commit(&f, &le);
    free(ids);
    free(mask);
    free(delta);
    if (bad) {
        lc_h5_abort(&f);
        fprintf(stderr, "logitcheck infer: %s\n", le.msg);
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
    infer_state *s = calloc(1, sizeof *s);
    if (!s)
        return 3;
    char msg[512];
    qref_error qe;
    s->B = a.n_rows;
    if (a.feed && lc_parse_ids(a.feed, &s->feed, &s->nfeed, msg, sizeof msg)) {
        fprintf(stderr, "logitcheck infer: --feed: %s\n", msg);
        rc = 2;
    } else if (qref_model_load(&s->m, a.model, &qe) != QREF_OK) {
        fprintf(stderr, "logitcheck infer: %s\n", qe.msg);
        rc = qe.code == QREF_ENOMEM ? 3 : 2;
    } else if (!(rc = build_rows(&a, s)) && !(rc = run_engine(&a, s))) {
        rc = write_output(&a, s);
    }
    state_free(s);
    free(s);
    return rc;
}
