/* SPDX-License-Identifier: MIT */
/*
 * logitcheck bench: load time, memory and throughput of the reference engine.
 *
 *   bench [--preset tiny|small|medium] [--moe] [--dtype f32|bf16] [--shards N] [--model DIR]
 *         [--synth-dir DIR] [--prompt N] [--decode N] [--chunk N] [--batch B] [--threads T]
 *         [--image WxH] [--repeat R] [--json FILE]
 *
 * Without --model a synthetic checkpoint (harness/synth/synth.h) is written into a temporary
 * directory, removed afterwards. Each of the R repeats loads the checkpoint (timed, memory
 * sampled) and runs a prefill of --prompt text tokens (logits at every position, in chunks of
 * --chunk or one call), then --decode single-token steps on the same cache; with --batch B > 1
 * also one batched prefill of B such prompts and B-row decode steps. Times are medians with
 * min and max over the repeats; memory figures are the largest over the repeats.
 *
 * Rates: the engine's threads (--threads, else the engine default) and, measured in the same
 * run on as many OpenBLAS threads, a 2048^3 matrix product in the engine's precision (sgemm or
 * dgemm): prefill and decode are reported in GFLOP/s (qref_forward_flops) and as a fraction of
 * that product's rate. Prefill also reports the time per stage (attention, GDN, MLP/MoE,
 * lm_head, other). --image WxH times a random WxH RGB image through the vision tower
 * (preprocessing timed apart) with its split into attention, linear layers with the MLP, and
 * other, each stage with its GFLOP/s.
 *
 * Memory: VmRSS / VmHWM / RssAnon / RssFile from /proc/self/status. VmHWM is reset through
 * /proc/self/clear_refs before each load, and a sampling thread records the peaks of the
 * anonymous and file-backed parts while the loader runs: the file-backed part is the mapped
 * checkpoint (page cache, released when the loader unmaps it), the anonymous part the
 * engine's own allocations, which should peak at one weight block.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>
#include <cjson/cJSON.h>

#include "cli.h"
#include "lc_file.h"
#include "qref.h"
#include "synth.h"

#define MAX_REPEAT 1000

/* ---------------------------------------------------------------- options */

typedef struct {
    lc_synth_opts synth;
    int synth_given;            /* a synthetic-only option was given */
    const char *model, *json, *synth_dir;
    int prompt, decode, chunk, batch, repeat, threads, image_w, image_h;
    int gemm;                   /* side of the same-run reference product (0: not measured) */
} bench_args;

static void bench_usage(FILE *to)
{
    fprintf(to,
            "usage: logitcheck bench [--preset tiny|small|medium] [--moe] [--dtype f32|bf16] [--shards N]\n"
            "                        [--model DIR] [--synth-dir DIR] [--prompt N] [--decode N] [--chunk N]\n"
            "                        [--batch B] [--threads T] [--image WxH] [--repeat R] [--gemm N] [--json FILE]\n"
            "  --preset  synthetic checkpoint size (default small); --moe for the MoE variant\n"
            "  --dtype   synthetic checkpoint dtype (default bf16); --shards N files (default 1)\n"
            "  --model   benchmark this checkpoint directory instead of a synthetic one\n"
            "  --synth-dir  write the synthetic checkpoint into DIR (created if missing) and keep it\n"
            "  --prompt  prompt tokens prefilled (default 128), logits at every position\n"
            "  --decode  single-token decode steps after the prompt (default 32)\n"
            "  --chunk   prefill in chunks of N tokens (default: one call)\n"
            "  --batch   also prefill and decode B prompts as one batch (default 1: off)\n"
            "  --threads engine threads (default: QREF_THREADS, OPENBLAS_NUM_THREADS, else all CPUs)\n"
            "  --image   also time a random WxH RGB image (e.g. 1920x1080) through the vision tower\n"
            "  --repeat  runs; medians with min and max are reported (default 3)\n"
            "  --gemm    side of the same-run N^3 reference product the GFLOP/s are fractions of (default\n"
            "            2048; 0 skips it, e.g. under valgrind)\n"
            "  --json    also write the numbers to FILE as JSON\n");
}

static int parse_int(const char *opt, const char *v, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "logitcheck bench: %s '%s': expected an integer in [%d, %d]\n", opt, v, lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

/* 0 run, 1 help printed, 2 bad usage */
static int parse_args(int argc, char **argv, bench_args *a)
{
    memset(a, 0, sizeof *a);
    a->synth = lc_synth_defaults();
    a->synth.preset = LC_SYNTH_SMALL;
    a->synth.dtype = LC_SYNTH_BF16;
    a->prompt = 128;
    a->decode = 32;
    a->batch = 1;
    a->repeat = 3;
    a->gemm = 2048;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "-h") || !strcmp(k, "--help")) {
            bench_usage(stdout);
            return 1;
        }
        if (!strcmp(k, "--moe")) {
            a->synth.moe = 1;
            a->synth_given = 1;
            continue;
        }
        if (strncmp(k, "--", 2) != 0) {
            fprintf(stderr, "logitcheck bench: unexpected argument '%s'\n", k);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "logitcheck bench: %s needs a value\n", k);
            return 2;
        }
        const char *v = argv[++i];
        int bad = 0;
        if (!strcmp(k, "--preset")) {
            a->synth_given = 1;
            if (lc_synth_parse_preset(v, &a->synth.preset)) {
                fprintf(stderr, "logitcheck bench: --preset '%s': expected tiny, small or medium\n", v);
                bad = 1;
            }
        } else if (!strcmp(k, "--dtype")) {
            a->synth_given = 1;
            if (lc_synth_parse_dtype(v, &a->synth.dtype)) {
                fprintf(stderr, "logitcheck bench: --dtype '%s': expected f32 or bf16\n", v);
                bad = 1;
            }
        } else if (!strcmp(k, "--shards")) {
            a->synth_given = 1;
            bad = parse_int(k, v, 1, 99999, &a->synth.shards);
        } else if (!strcmp(k, "--model"))
            a->model = v;
        else if (!strcmp(k, "--json"))
            a->json = v;
        else if (!strcmp(k, "--synth-dir")) {
            a->synth_dir = v;
            a->synth_given = 1;
        } else if (!strcmp(k, "--threads"))
            bad = parse_int(k, v, 1, 256, &a->threads);
        else if (!strcmp(k, "--image")) {
            char *x;
            long w = strtol(v, &x, 10), h = *x == 'x' ? strtol(x + 1, &x, 10) : 0;
            if (*x || w < 1 || h < 1 || w > 16384 || h > 16384) {
                fprintf(stderr, "logitcheck bench: --image '%s': expected WxH, e.g. 1920x1080\n", v);
                bad = 1;
            }
            a->image_w = (int)w, a->image_h = (int)h;
        }
        else if (!strcmp(k, "--prompt"))
            bad = parse_int(k, v, 1, 1 << 20, &a->prompt);
        else if (!strcmp(k, "--decode"))
            bad = parse_int(k, v, 0, 1 << 20, &a->decode);
        else if (!strcmp(k, "--chunk"))
            bad = parse_int(k, v, 0, 1 << 20, &a->chunk);
        else if (!strcmp(k, "--batch"))
            bad = parse_int(k, v, 1, 4096, &a->batch);
        else if (!strcmp(k, "--repeat"))
            bad = parse_int(k, v, 1, MAX_REPEAT, &a->repeat);
        else if (!strcmp(k, "--gemm"))
            bad = parse_int(k, v, 0, 8192, &a->gemm);
        else {
            fprintf(stderr, "logitcheck bench: unknown option '%s'\n", k);
            bad = 1;
        }
        if (bad)
            return 2;
    }
    if (a->model && a->synth_given) {
        fprintf(stderr, "logitcheck bench: --preset, --moe, --dtype, --shards and --synth-dir describe the "
                        "synthetic checkpoint and cannot be combined with --model\n");
        return 2;
    }
    if (a->chunk >= a->prompt)
        a->chunk = 0; /* one call */
    if (a->json) { /* fail before the benchmark, not after it */
        char d[4096];
        snprintf(d, sizeof d, "%s", a->json);
        char *slash = strrchr(d, '/');
        if (slash)
            *(slash == d ? slash + 1 : slash) = '\0';
        if (access(slash ? d : ".", W_OK) != 0) {
            fprintf(stderr, "logitcheck bench: --json %s: directory %s is not writable: %s\n", a->json,
                    slash ? d : ".", strerror(errno));
            return 2;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- time and memory */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Bytes from /proc/self/status (0 where a field is missing). */
typedef struct {
    int64_t rss, hwm, anon, file;
} proc_mem;

static int read_mem(proc_mem *m)
{
    memset(m, 0, sizeof *m);
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long long kb;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "VmRSS: %lld kB", &kb) == 1)
            m->rss = kb * 1024;
        else if (sscanf(line, "VmHWM: %lld kB", &kb) == 1)
            m->hwm = kb * 1024;
        else if (sscanf(line, "RssAnon: %lld kB", &kb) == 1)
            m->anon = kb * 1024;
        else if (sscanf(line, "RssFile: %lld kB", &kb) == 1)
            m->file = kb * 1024;
    }
    fclose(f);
    return m->rss > 0 ? 0 : -1;
}

/* Resets VmHWM to the current RSS (Linux >= 4.0); 0 on success. */
static int reset_hwm(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return -1;
    int ok = fputs("5", f) >= 0;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* Samples /proc/self/status every millisecond until stop is set; keeps the peaks. */
typedef struct {
    atomic_int stop;
    proc_mem peak;
} sampler;

static void *sample_loop(void *arg)
{
    sampler *s = arg;
    const struct timespec ms = {0, 1000000};
    while (!atomic_load(&s->stop)) {
        proc_mem m;
        if (read_mem(&m) == 0) {
            s->peak.rss = m.rss > s->peak.rss ? m.rss : s->peak.rss;
            s->peak.anon = m.anon > s->peak.anon ? m.anon : s->peak.anon;
            s->peak.file = m.file > s->peak.file ? m.file : s->peak.file;
        }
        nanosleep(&ms, NULL);
    }
    return NULL;
}

/* One load's memory, bytes of growth over the RSS just before it. */
typedef struct {
    int64_t before, after, peak, peak_anon, peak_file;
} load_mem;

/* ---------------------------------------------------------------- statistics */

typedef struct {
    double median, min, max;
} summary;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static summary summarize(const double *v, int n)
{
    double s[MAX_REPEAT];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    summary r = {n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]), s[0], s[n - 1]};
    return r;
}

/* Rates (work / seconds) of each run, summarised. */
static summary rates(const double *secs, int n, double work)
{
    double r[MAX_REPEAT];
    for (int i = 0; i < n; i++)
        r[i] = secs[i] > 0 ? work / secs[i] : 0;
    return summarize(r, n);
}

/* ---------------------------------------------------------------- checkpoint directory */

/* Sum of the sizes of DIR's *.safetensors files, and their count. */
static int64_t checkpoint_bytes(const char *dir, int *files)
{
    int64_t total = 0;
    *files = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 12 || strcmp(e->d_name + n - 12, ".safetensors") != 0)
            continue;
        char p[4600];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
            total += (int64_t)st.st_size;
            (*files)++;
        }
    }
    closedir(d);
    return total;
}

/* ---------------------------------------------------------------- runs */

typedef struct {
    double load[MAX_REPEAT], prefill[MAX_REPEAT], decode[MAX_REPEAT];
    double bprefill[MAX_REPEAT], bdecode[MAX_REPEAT];
    double vision[MAX_REPEAT], preprocess;
    qref_stage_times stages;    /* prefill, summed over the repeats */
    double gemm_gflops;         /* the same-run 2048^3 product */
    double prefill_flops, decode_flops, vision_flops, vision_att_flops;
    qref_stage_times vstages;   /* vision tower, summed over the repeats */
    int grid[3];                /* the image's patch grid */
    load_mem mem;               /* largest over the repeats */
    int hwm_ok;                 /* VmHWM could be reset before every load */
} measures;

/* Loads dir once, timing it and recording its memory into *mem (largest so far). */
static int timed_load(qref_model *m, const char *dir, double *secs, load_mem *mem, int *hwm_ok, qref_error *qe)
{
    proc_mem before, after;
    read_mem(&before);
    int reset = reset_hwm() == 0;
    sampler s = {.peak = before};
    atomic_init(&s.stop, 0);
    pthread_t th;
    int have_thread = pthread_create(&th, NULL, sample_loop, &s) == 0;
    double t0 = now();
    qref_status st = qref_model_load(m, dir, qe);
    *secs = now() - t0;
    if (have_thread) {
        atomic_store(&s.stop, 1);
        pthread_join(th, NULL);
    }
    read_mem(&after);
    if (st != QREF_OK)
        return -1;
    /* a load shorter than the sampling period may have no sample: the end state is a floor */
    s.peak.rss = after.rss > s.peak.rss ? after.rss : s.peak.rss;
    s.peak.anon = after.anon > s.peak.anon ? after.anon : s.peak.anon;
    *hwm_ok = *hwm_ok && reset;
    int64_t peak = reset && after.hwm > s.peak.rss ? after.hwm : s.peak.rss;
    load_mem x = {before.rss, after.rss - before.rss, peak - before.rss, s.peak.anon - before.anon,
                  s.peak.file - before.file};
    mem->before = x.before;
    mem->after = x.after > mem->after ? x.after : mem->after;
    mem->peak = x.peak > mem->peak ? x.peak : mem->peak;
    mem->peak_anon = x.peak_anon > mem->peak_anon ? x.peak_anon : mem->peak_anon;
    mem->peak_file = x.peak_file > mem->peak_file ? x.peak_file : mem->peak_file;
    return 0;
}

/* Pseudo-random text tokens in [0, V), never an image or video placeholder. */
static void fill_tokens(int32_t *ids, size_t n, const qref_config *c, uint64_t *state)
{
    for (size_t i = 0; i < n; i++) {
        int32_t t;
        do {
            *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
            t = (int32_t)((*state >> 33) % (uint64_t)c->vocab_size);
        } while (t == c->image_token_id || t == c->video_token_id);
        ids[i] = t;
    }
}

/* B sequences of n prompt tokens (row after row in ids), prefilled together in chunks of
 * `chunk` (0 = one call), then `decode` steps of one token per row. Times into *tp, *td. */
static qref_status run_batch(const qref_model *m, int B, int n, int chunk, int decode, const int32_t *ids,
                             const int32_t *feed, qref_real *logits, double *tp, double *td,
                             qref_stage_times *stages, qref_error *qe)
{
    qref_cache *c = calloc((size_t)B, sizeof *c);
    qref_cache **cp = calloc((size_t)B, sizeof *cp);
    int32_t *part = malloc((size_t)B * (size_t)(chunk ? chunk : n) * sizeof *part);
    qref_status st = QREF_OK;
    if (!c || !cp || !part) {
        st = QREF_ENOMEM;
        snprintf(qe->msg, sizeof qe->msg, "bench: out of memory for %d sequences", B);
        goto done;
    }
    for (int b = 0; b < B && st == QREF_OK; b++) {
        st = qref_cache_init(&c[b], m, qe);
        cp[b] = &c[b];
    }
    double t0 = now();
    for (int s = 0; s < n && st == QREF_OK; s += chunk ? chunk : n) {
        int L = chunk && n - s > chunk ? chunk : n - s;
        for (int b = 0; b < B; b++)
            memcpy(part + (size_t)b * L, ids + (size_t)b * n + s, (size_t)L * sizeof *part);
        qref_batch in = {.B = B, .L = L, .ids = part};
        qref_outputs out = {.logits = logits, .times = stages};
        st = qref_forward_batch(m, cp, &in, &out, qe);
    }
    *tp = now() - t0;
    t0 = now();
    for (int i = 0; i < decode && st == QREF_OK; i++) {
        qref_batch in = {.B = B, .L = 1, .ids = feed + (size_t)i * B};
        qref_outputs out = {.logits = logits};
        st = qref_forward_batch(m, cp, &in, &out, qe);
    }
    *td = now() - t0;
done:
    for (int b = 0; c && b < B; b++)
        qref_cache_free(&c[b]);
    free(c);
    free(cp);
    free(part);
    return st;
}

/* ---------------------------------------------------------------- rates */

#if defined(QREF_PRECISION_F64)
#define BENCH_GEMM cblas_dgemm
#define BENCH_GEMM_NAME "dgemm"
#else
#define BENCH_GEMM cblas_sgemm
#define BENCH_GEMM_NAME "sgemm"
#endif

/* x as a percentage of the reference product's rate; NaN when that was not measured. */
/* GFLOP/s of `flops` done in `seconds` (0 when no time was measured). */
static double gflops_of(double flops, double seconds)
{
    return seconds > 0 ? flops / seconds / 1e9 : 0;
}

static double pct_of(double x, double ref)
{
    return ref > 0 ? 100 * x / ref : NAN;
}

/* GFLOP/s of a G^3 product on `threads` OpenBLAS threads: best of 3 after a warm-up (0 when
 * G is 0). The engine keeps OpenBLAS at one thread; qref_set_threads puts that back afterwards. */
static double measure_gemm(int G, int threads)
{
    if (G <= 0)
        return 0;
    qref_real *a = malloc((size_t)G * G * sizeof *a), *b = malloc((size_t)G * G * sizeof *b);
    qref_real *c = malloc((size_t)G * G * sizeof *c);
    double best = 0;
    if (a && b && c) {
        uint64_t st = 99;
        for (size_t i = 0; i < (size_t)G * G; i++) {
            st = st * 6364136223846793005ULL + 1442695040888963407ULL;
            a[i] = (qref_real)((double)(st >> 40) / 16777216.0 - 0.5);
            b[i] = a[(i * 7919) % ((size_t)G * G)];
        }
        openblas_set_num_threads(threads);
        for (int r = 0; r < 4; r++) {
            double t0 = now();
            BENCH_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, G, G, G, 1, a, G, b, G, 0, c, G);
            double dt = now() - t0;
            if (r > 0 && dt > 0 && 2.0 * G * G * G / dt / 1e9 > best)
                best = 2.0 * G * G * G / dt / 1e9;
        }
    }
    free(a);
    free(b);
    free(c);
    qref_set_threads(threads);
    return best;
}

/* Times a random w x h RGB image through the vision tower, `repeat` times (preprocessing
 * once, timed apart). */
static qref_status run_vision(const qref_model *m, int w, int h, int repeat, measures *ms, qref_error *qe)
{
    uint8_t *rgb = malloc((size_t)w * h * 3);
    qref_real *px = NULL, *out = NULL;
    qref_status st = QREF_ENOMEM;
    snprintf(qe->msg, sizeof qe->msg, "bench: out of memory for a %dx%d image", w, h);
    if (!rgb)
        return st;
    uint64_t s = 4242;
    for (size_t i = 0; i < (size_t)w * h * 3; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        rgb[i] = (uint8_t)(s >> 56);
    }
    const qref_image img = {rgb, w, h};
    double t0 = now();
    st = qref_image_preprocess(&m->cfg, &img, &px, ms->grid, qe);
    ms->preprocess = now() - t0;
    if (st == QREF_OK) {
        out = malloc((size_t)qref_image_tokens(&m->cfg, ms->grid) * m->cfg.vision.out_hidden_size * sizeof *out);
        st = out ? QREF_OK : QREF_ENOMEM;
    }
    const int grid[1][3] = {{ms->grid[0], ms->grid[1], ms->grid[2]}};
    for (int r = 0; r < repeat && st == QREF_OK; r++) {
        t0 = now();
        st = qref_vision_forward_timed(m, px, grid, 1, out, &ms->vstages, qe);
        ms->vision[r] = now() - t0;
    }
    ms->vision_flops = qref_vision_flops(&m->cfg, ms->grid);
    ms->vision_att_flops = qref_vision_attention_flops(&m->cfg, ms->grid);
    free(rgb);
    free(px);
    free(out);
    return st;
}

/* Operations of the prefill (chunk after chunk) and of the decode steps that follow. */
static void count_flops(const qref_config *c, const bench_args *a, measures *ms)
{
    const int step = a->chunk ? a->chunk : a->prompt;
    ms->prefill_flops = ms->decode_flops = 0;
    for (int s = 0; s < a->prompt; s += step)
        ms->prefill_flops += qref_forward_flops(c, s, a->prompt - s < step ? a->prompt - s : step, 0, 1);
    for (int i = 0; i < a->decode; i++)
        ms->decode_flops += qref_forward_flops(c, a->prompt + i, 1, 0, 1);
}

/* ---------------------------------------------------------------- output */

static double mb(int64_t b) { return (double)b / 1e6; }

/* One console line: LABEL  WHAT: N tok/s median (min, max); median seconds. */
static void print_rate(const char *label, const char *what, const double *secs, int n, double tokens)
{
    summary t = summarize(secs, n), r = rates(secs, n, tokens);
    printf("%-13s %s: %.1f tok/s median (min %.1f, max %.1f); %.3f s\n", label, what, r.median, r.min, r.max,
           t.median);
}

static cJSON *json_summary(const double *v, int n)
{
    summary s = summarize(v, n);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "median", s.median);
    cJSON_AddNumberToObject(o, "min", s.min);
    cJSON_AddNumberToObject(o, "max", s.max);
    return o;
}

static cJSON *json_phase(const double *secs, int n, double work, const char *count_key, int count)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, count_key, count);
    cJSON_AddItemToObject(o, "seconds", json_summary(secs, n));
    summary r = rates(secs, n, work);
    cJSON *t = cJSON_AddObjectToObject(o, "tokens_per_second");
    cJSON_AddNumberToObject(t, "median", r.median);
    cJSON_AddNumberToObject(t, "min", r.min);
    cJSON_AddNumberToObject(t, "max", r.max);
    return o;
}

static const char *blas_parallel(void)
{
    int p = openblas_get_parallel();
    return p == 0 ? "sequential" : p == 1 ? "pthreads" : p == 2 ? "openmp" : "?";
}

/* Everything a run measured, for the printers. */
typedef struct {
    const bench_args *a;
    const qref_model *m;
    int64_t ckpt;               /* checkpoint bytes on disk */
    int files;
    double write_secs;          /* synthetic checkpoint write time, < 0 with --model */
    const measures *ms;
} bench_run;

/* Bytes of the engine's weight blocks (qref_real and BF16). */
static size_t weight_bytes(const qref_model *m)
{
    return m->block_len * sizeof(qref_real) + m->bf16_len * sizeof *m->bf16_block;
}

static void print_console(const bench_run *run)
{
    const bench_args a = *run->a;
    const measures *ms = run->ms;
    const qref_config *c = &run->m->cfg;
    const int V = c->vocab_size, B = a.batch, R = a.repeat, files = run->files;
    const int64_t ckpt = run->ckpt, block = (int64_t)weight_bytes(run->m);
    const double write_secs = run->write_secs;
    char what[160];
    if (a.model)
        snprintf(what, sizeof what, "%s", a.model);
    else
        snprintf(what, sizeof what, "synthetic %s %s %s, %d file%s", lc_synth_preset_name(a.synth.preset),
                 a.synth.moe ? "MoE" : "dense", lc_synth_dtype_name(a.synth.dtype), a.synth.shards,
                 a.synth.shards > 1 ? "s" : "");
    printf("model         %s: %s, %d layers, hidden %d, vocab %d, %.2fM weights\n", what, c->model_type,
           c->num_layers, c->hidden_size, V, (double)(run->m->block_len + run->m->bf16_len) / 1e6);
    printf("machine       %ld CPUs online; engine %s on %d threads (OpenBLAS %s, %s kernels, one thread per call)\n",
           sysconf(_SC_NPROCESSORS_ONLN), QREF_PRECISION_NAME, qref_threads(), blas_parallel(), openblas_get_corename());
    if (a.gemm > 0)
        printf("%-13s %d^3 on %d OpenBLAS threads: %.1f GFLOP/s (the rates below are fractions of this)\n",
               BENCH_GEMM_NAME, a.gemm, qref_threads(), ms->gemm_gflops);
    else
        printf("%-13s not measured (--gemm 0): the fractions below read nan\n", BENCH_GEMM_NAME);
    printf("checkpoint    %.1f MB on disk in %d file%s", mb(ckpt), files, files == 1 ? "" : "s");
    if (write_secs >= 0)
        printf(" (written in %.2f s)", write_secs);
    printf("\n");
    summary lt = summarize(ms->load, R);
    printf("load          %.3f s median (min %.3f, max %.3f) over %d\n", lt.median, lt.min, lt.max, R);
    char kinds[64];
    if (run->m->bf16_len)
        snprintf(kinds, sizeof kinds, "%s, %.1f MB of it text matrices in BF16", QREF_PRECISION_NAME,
                 mb((int64_t)(run->m->bf16_len * sizeof *run->m->bf16_block)));
    else
        snprintf(kinds, sizeof kinds, "%s", QREF_PRECISION_NAME);
    printf("memory        engine weights %.1f MB (%s); RSS after load +%.1f MB (%.2fx)\n", mb(block), kinds,
           mb(ms->mem.after), (double)ms->mem.after / (double)block);
    printf("peak in load  RSS +%.1f MB (%.2fx weights%s): anonymous +%.1f MB (%.2fx), file-mapped +%.1f MB "
           "(checkpoint %.1f MB)\n",
           mb(ms->mem.peak), (double)ms->mem.peak / (double)block, ms->hwm_ok ? ", VmHWM" : ", sampled",
           mb(ms->mem.peak_anon), (double)ms->mem.peak_anon / (double)block, mb(ms->mem.peak_file), mb(ckpt));
    char line[128];
    if (a.chunk)
        snprintf(line, sizeof line, "%d tokens in chunks of %d", a.prompt, a.chunk);
    else
        snprintf(line, sizeof line, "%d tokens in one call", a.prompt);
    print_rate("prefill", line, ms->prefill, R, a.prompt);
    const double gp = ms->prefill_flops / summarize(ms->prefill, R).median / 1e9;
    printf("%-13s %.2f GFLOP per token, %.1f GFLOP/s (%.0f%% of %s)\n", "", ms->prefill_flops / a.prompt / 1e9, gp,
           pct_of(gp, ms->gemm_gflops), BENCH_GEMM_NAME);
    const qref_stage_times *st = &ms->stages;
    const double tot = st->attention + st->gdn + st->mlp + st->lm_head + st->other;
    if (tot > 0)
        printf("%-13s attention %.3f s (%.0f%%), GDN %.3f s (%.0f%%), %s %.3f s (%.0f%%), lm_head %.3f s (%.0f%%), "
               "other %.3f s (%.0f%%); per run\n", "stages", st->attention / R, 100 * st->attention / tot,
               st->gdn / R, 100 * st->gdn / tot, c->is_moe ? "MoE" : "MLP", st->mlp / R, 100 * st->mlp / tot,
               st->lm_head / R, 100 * st->lm_head / tot, st->other / R, 100 * st->other / tot);
    snprintf(line, sizeof line, "%d steps", a.decode);
    if (a.decode) {
        print_rate("decode", line, ms->decode, R, a.decode);
        const double gd = ms->decode_flops / summarize(ms->decode, R).median / 1e9;
        printf("%-13s %.1f GFLOP/s (%.0f%% of %s)\n", "", gd, pct_of(gd, ms->gemm_gflops), BENCH_GEMM_NAME);
    }
    if (a.image_w) {
        summary vt = summarize(ms->vision, R);
        const double gv = ms->vision_flops / vt.median / 1e9;
        printf("vision        %dx%d image, grid %dx%dx%d (%d patches): %.3f s median (min %.3f, max %.3f), "
               "%.1f GFLOP/s (%.0f%% of %s); preprocessing %.3f s\n", a.image_w, a.image_h, ms->grid[0],
               ms->grid[1], ms->grid[2], ms->grid[0] * ms->grid[1] * ms->grid[2], vt.median, vt.min, vt.max, gv,
               pct_of(gv, ms->gemm_gflops), BENCH_GEMM_NAME, ms->preprocess);
        const qref_stage_times *vs = &ms->vstages;
        const double vtot = vs->attention + vs->mlp + vs->other;
        if (vtot > 0)
            printf("%-13s attention %.3f s (%.0f%%, %.1f GFLOP/s), linear+MLP %.3f s (%.0f%%, %.1f GFLOP/s), "
                   "other %.3f s (%.0f%%); per run\n", "vision stages", vs->attention / R, 100 * vs->attention / vtot,
                   gflops_of(ms->vision_att_flops, vs->attention / R), vs->mlp / R, 100 * vs->mlp / vtot,
                   gflops_of(ms->vision_flops - ms->vision_att_flops, vs->mlp / R), vs->other / R,
                   100 * vs->other / vtot);
    }
    if (B > 1) {
        char label[32];
        snprintf(label, sizeof label, "batch %d", B);
        snprintf(line, sizeof line, "prefill %d x %d tokens", B, a.prompt);
        print_rate(label, line, ms->bprefill, R, (double)B * a.prompt);
        snprintf(line, sizeof line, "decode %d steps x %d rows", a.decode, B);
        if (a.decode)
            print_rate(label, line, ms->bdecode, R, (double)B * a.decode);
    }
}

/* Writes the numbers to run->a->json; 0, or -1 with a message printed. */
static int write_json(const bench_run *run)
{
    const bench_args *a = run->a;
    const measures *ms = run->ms;
    const qref_config *c = &run->m->cfg;
    const int B = a->batch, R = a->repeat;
    const double block = (double)weight_bytes(run->m);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "format", "logitcheck-bench");
    cJSON_AddNumberToObject(doc, "version", 1);
    cJSON_AddStringToObject(doc, "engine_precision", QREF_PRECISION_NAME);

    cJSON *mach = cJSON_AddObjectToObject(doc, "machine");
    cJSON_AddNumberToObject(mach, "cpus_online", (double)sysconf(_SC_NPROCESSORS_ONLN));
    cJSON_AddNumberToObject(mach, "openblas_threads", openblas_get_num_threads());
    cJSON_AddStringToObject(mach, "openblas_parallel", blas_parallel());
    cJSON_AddStringToObject(mach, "openblas_core", openblas_get_corename());
    cJSON_AddStringToObject(mach, "openblas_config", openblas_get_config());
    cJSON_AddNumberToObject(mach, "engine_threads", qref_threads());
    cJSON_AddStringToObject(mach, "gemm", BENCH_GEMM_NAME);
    cJSON_AddNumberToObject(mach, "gemm_gflops", ms->gemm_gflops);

    cJSON *mod = cJSON_AddObjectToObject(doc, "model");
    cJSON_AddStringToObject(mod, "source", a->model ? "directory" : "synthetic");
    if (a->model) {
        cJSON_AddStringToObject(mod, "dir", a->model);
    } else {
        cJSON_AddStringToObject(mod, "preset", lc_synth_preset_name(a->synth.preset));
        cJSON_AddStringToObject(mod, "dtype", lc_synth_dtype_name(a->synth.dtype));
        cJSON_AddNumberToObject(mod, "shards", a->synth.shards);
    }
    cJSON_AddStringToObject(mod, "model_type", c->model_type);
    cJSON_AddNumberToObject(mod, "num_layers", c->num_layers);
    cJSON_AddNumberToObject(mod, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(mod, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(mod, "weights", (double)(run->m->block_len + run->m->bf16_len));
    cJSON_AddNumberToObject(mod, "weights_bf16", (double)run->m->bf16_len);

    cJSON *set = cJSON_AddObjectToObject(doc, "settings");
    cJSON_AddNumberToObject(set, "prompt", a->prompt);
    cJSON_AddNumberToObject(set, "decode", a->decode);
    cJSON_AddNumberToObject(set, "chunk", a->chunk);
    cJSON_AddNumberToObject(set, "batch", B);
    cJSON_AddNumberToObject(set, "repeat", R);
    if (!a->model && a->synth_dir)
        cJSON_AddStringToObject(set, "synth_dir", a->synth_dir);

    cJSON *ck = cJSON_AddObjectToObject(doc, "checkpoint");
    cJSON_AddNumberToObject(ck, "bytes", (double)run->ckpt);
    cJSON_AddNumberToObject(ck, "files", run->files);
    if (run->write_secs >= 0)
        cJSON_AddNumberToObject(ck, "write_seconds", run->write_secs);

    cJSON *ld = cJSON_AddObjectToObject(doc, "load");
    cJSON_AddItemToObject(ld, "seconds", json_summary(ms->load, R));
    cJSON_AddNumberToObject(ld, "weight_block_bytes", block);
    cJSON_AddNumberToObject(ld, "rss_before_bytes", (double)ms->mem.before);
    cJSON_AddNumberToObject(ld, "rss_growth_bytes", (double)ms->mem.after);
    cJSON_AddNumberToObject(ld, "rss_growth_ratio", (double)ms->mem.after / block);
    cJSON_AddNumberToObject(ld, "peak_rss_growth_bytes", (double)ms->mem.peak);
    cJSON_AddNumberToObject(ld, "peak_rss_growth_ratio", (double)ms->mem.peak / block);
    cJSON_AddStringToObject(ld, "peak_rss_source", ms->hwm_ok ? "VmHWM" : "sampled");
    cJSON_AddNumberToObject(ld, "peak_anon_growth_bytes", (double)ms->mem.peak_anon);
    cJSON_AddNumberToObject(ld, "peak_anon_growth_ratio", (double)ms->mem.peak_anon / block);
    cJSON_AddNumberToObject(ld, "peak_file_growth_bytes", (double)ms->mem.peak_file);

    cJSON *pf = json_phase(ms->prefill, R, a->prompt, "tokens", a->prompt);
    cJSON_AddNumberToObject(pf, "chunk", a->chunk);
    cJSON_AddNumberToObject(pf, "flops", ms->prefill_flops);
    cJSON_AddNumberToObject(pf, "gflops_per_second", ms->prefill_flops / summarize(ms->prefill, R).median / 1e9);
    cJSON *stj = cJSON_AddObjectToObject(pf, "stage_seconds");
    cJSON_AddNumberToObject(stj, "attention", ms->stages.attention / R);
    cJSON_AddNumberToObject(stj, "gdn", ms->stages.gdn / R);
    cJSON_AddNumberToObject(stj, "mlp", ms->stages.mlp / R);
    cJSON_AddNumberToObject(stj, "lm_head", ms->stages.lm_head / R);
    cJSON_AddNumberToObject(stj, "other", ms->stages.other / R);
    cJSON_AddItemToObject(doc, "prefill", pf);
    if (a->decode) {
        cJSON *dj = json_phase(ms->decode, R, a->decode, "steps", a->decode);
        cJSON_AddNumberToObject(dj, "flops", ms->decode_flops);
        cJSON_AddNumberToObject(dj, "gflops_per_second", ms->decode_flops / summarize(ms->decode, R).median / 1e9);
        cJSON_AddItemToObject(doc, "decode", dj);
    }
    if (a->image_w) {
        cJSON *vj = cJSON_AddObjectToObject(doc, "vision");
        cJSON_AddNumberToObject(vj, "width", a->image_w);
        cJSON_AddNumberToObject(vj, "height", a->image_h);
        cJSON *g = cJSON_AddArrayToObject(vj, "grid_thw");
        for (int i = 0; i < 3; i++)
            cJSON_AddItemToArray(g, cJSON_CreateNumber(ms->grid[i]));
        cJSON_AddItemToObject(vj, "seconds", json_summary(ms->vision, R));
        cJSON_AddNumberToObject(vj, "preprocess_seconds", ms->preprocess);
        cJSON_AddNumberToObject(vj, "flops", ms->vision_flops);
        cJSON_AddNumberToObject(vj, "attention_flops", ms->vision_att_flops);
        cJSON *vs = cJSON_AddObjectToObject(vj, "stage_seconds");
        cJSON_AddNumberToObject(vs, "attention", ms->vstages.attention / R);
        cJSON_AddNumberToObject(vs, "linear", ms->vstages.mlp / R);
        cJSON_AddNumberToObject(vs, "other", ms->vstages.other / R);
    }
    if (B > 1) {
        cJSON *bp = json_phase(ms->bprefill, R, (double)B * a->prompt, "tokens", B * a->prompt);
        cJSON_AddNumberToObject(bp, "batch", B);
        cJSON_AddItemToObject(doc, "batch_prefill", bp);
        if (a->decode) {
            cJSON *bd = json_phase(ms->bdecode, R, (double)B * a->decode, "steps", a->decode);
            cJSON_AddNumberToObject(bd, "batch", B);
            cJSON_AddItemToObject(doc, "batch_decode", bd);
        }
    }

    char *text = cJSON_Print(doc);
    cJSON_Delete(doc);
    if (!text) {
        fprintf(stderr, "logitcheck bench: %s: out of memory\n", a->json);
        return -1;
    }
    /* atomically: a full disk or a file-size limit leaves an earlier file as it was */
    size_t len = strlen(text);
    text[len] = '\n'; /* cJSON_Print's NUL becomes the final newline */
    lc_error le;
    int rc = lc_file_write_atomic(a->json, text, len + 1, &le);
    free(text);
    if (rc) {
        fprintf(stderr, "logitcheck bench: %s\n", le.msg);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- the command */

int lc_cmd_bench(int argc, char **argv)
{
    bench_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc == 1 ? 0 : rc;

    char tmp[4200] = "";
    const char *dir = a.model;
    qref_model m = {0};
    qref_error qe = {0};
    lc_error le = {0};
    int32_t *ids = NULL, *feed = NULL;
    qref_real *logits = NULL;
    measures *ms = calloc(1, sizeof *ms);
    double write_secs = -1;
    rc = 3;
    if (!ms)
        goto done;

    if (a.threads)
        qref_set_threads(a.threads);
    if (!dir && a.synth_dir) {
        if (mkdir(a.synth_dir, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "logitcheck bench: --synth-dir %s: %s\n", a.synth_dir, strerror(errno));
            rc = 2;
            goto done;
        }
        double t0 = now();
        int w = lc_synth_write(a.synth_dir, &a.synth, NULL, &le);
        write_secs = now() - t0;
        if (w) {
            fprintf(stderr, "logitcheck bench: %s\n", le.msg);
            rc = w == LC_EINPUT ? 2 : 3;
            goto done;
        }
        dir = a.synth_dir;
    }
    if (!dir) {
        const char *base = getenv("TMPDIR");
        snprintf(tmp, sizeof tmp, "%s/logitcheck-bench-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmp)) {
            fprintf(stderr, "logitcheck bench: cannot create a temporary directory %s: %s\n", tmp, strerror(errno));
            tmp[0] = '\0';
            goto done;
        }
        double t0 = now();
        int w = lc_synth_write(tmp, &a.synth, NULL, &le);
        write_secs = now() - t0;
        if (w) {
            fprintf(stderr, "logitcheck bench: %s\n", le.msg);
            rc = w == LC_EINPUT ? 2 : 3;
            goto done;
        }
        dir = tmp;
    }
    int files;
    int64_t ckpt = checkpoint_bytes(dir, &files);

    ms->hwm_ok = 1;
    for (int r = 0; r < a.repeat; r++) {
        qref_model_free(&m);
        if (timed_load(&m, dir, &ms->load[r], &ms->mem, &ms->hwm_ok, &qe)) {
            fprintf(stderr, "logitcheck bench: %s\n", qe.msg);
            rc = qe.code == QREF_ENOMEM ? 3 : 2;
            goto done;
        }
    }

    const qref_config *c = &m.cfg;
    const int V = c->vocab_size, B = a.batch;
    const int rows = (a.chunk ? a.chunk : a.prompt) * B;
    uint64_t seed = 12345;
    ids = malloc((size_t)B * a.prompt * sizeof *ids);
    feed = malloc(((size_t)B * a.decode + 1) * sizeof *feed);
    logits = malloc((size_t)rows * V * sizeof *logits);
    if (!ids || !feed || !logits) {
        fprintf(stderr, "logitcheck bench: out of memory for %d x %d logits\n", rows, V);
        goto done;
    }
    fill_tokens(ids, (size_t)B * a.prompt, c, &seed);
    fill_tokens(feed, (size_t)B * a.decode, c, &seed);
    ms->gemm_gflops = measure_gemm(a.gemm, qref_threads());
    count_flops(c, &a, ms);
    for (int r = 0; r < a.repeat; r++) {
        if (run_batch(&m, 1, a.prompt, a.chunk, a.decode, ids, feed, logits, &ms->prefill[r], &ms->decode[r],
                      &ms->stages, &qe) ||
            (B > 1 && run_batch(&m, B, a.prompt, a.chunk, a.decode, ids, feed, logits, &ms->bprefill[r],
                                &ms->bdecode[r], NULL, &qe))) {
            fprintf(stderr, "logitcheck bench: forward: %s\n", qe.msg);
            goto done;
        }
    }

    if (a.image_w && !c->has_vision) {
        fprintf(stderr, "logitcheck bench: --image: %s has no vision tower\n", dir);
        rc = 2;
        goto done;
    }
    if (a.image_w && run_vision(&m, a.image_w, a.image_h, a.repeat, ms, &qe) != QREF_OK) {
        fprintf(stderr, "logitcheck bench: vision: %s\n", qe.msg);
        goto done;
    }
    const bench_run run = {&a, &m, ckpt, files, write_secs, ms};
    print_console(&run);
    if (a.json && write_json(&run)) {
        rc = 2;
        goto done;
    }
    rc = 0;

done:
    free(ids);
    free(feed);
    free(logits);
    free(ms);
    qref_model_free(&m);
    if (tmp[0])
        lc_synth_remove_dir(tmp);
    return rc;
}
