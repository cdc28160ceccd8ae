/* SPDX-License-Identifier: MIT */
/*
 * bad_engine: a small engine speaking the engine protocol (harness/PROTOCOL.md) over a fake
 * model, that misbehaves on purpose. The fault tests start it through lc_engine_proc and
 * `logitcheck run --engine` and check that every misbehaviour becomes one clear error.
 *
 *   bad_engine [--fault MODE --at OP] [--once FILE] [--after N]
 *
 * Without --fault it is a correct engine of a toy model (V = 32, H = 8, 2 layers, rotary 4):
 * logits are a function of a running hash of the sequence's tokens, so snapshots, batches and
 * chunked prefills are checkable. With --fault, the N-th request OP (default the first)
 * triggers MODE:
 *   crash          die by SIGSEGV                  exit      exit(0) without replying
 *   hang           never reply                     malformed reply with a line that is not JSON
 *   wrong_id       reply with another request id   wrong_size "bytes" disagrees with the shape
 *   short_payload  send half the payload, exit     wrong_shape logits one column wider
 *   wrong_dtype    logits declared i32             nan       one NaN in the logits
 *   huge           a tensor of 10^12 elements      garbage_hello / protocol (at hello): a
 *                                                  non-JSON hello, protocol version 99
 * --once FILE: fault only while FILE does not exist (it is created when the fault fires), so
 * the restarted engine behaves. Every start writes one line to stderr.
 * --proxy CMD: instead of the toy model, forward every request to the engine CMD (e.g.
 * `logitcheck serve`) and its replies back, planting the fault in the stream: the whole
 * catalog then runs against a real engine that misbehaves once.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#define V 32
#define H 8
#define L 2
#define R 4
#define MAX_H 64
#define MAX_T 4096

typedef struct {
    int used;
    int n;
    int32_t ids[MAX_T];
} prompt;

typedef struct {
    int used;
    int len;
    uint32_t hash;
} seq;

static prompt prompts[MAX_H];
static seq seqs[MAX_H], snaps[MAX_H];
static const char *fault, *fault_at, *once_file;
static int fault_after = 1, fault_seen;
static int loaded;

/* ---------------------------------------------------------------- the toy model */

static uint32_t step_hash(uint32_t h, int32_t tok)
{
    return h * 2654435761u + (uint32_t)tok + 1u;
}

static void logits_of(uint32_t h, int pos, double *out)
{
    for (int v = 0; v < V; v++)
        out[v] = sin((double)(h % 100003u) * 0.001 + v * 0.37 + pos * 0.01) * 3.0;
}

/* ---------------------------------------------------------------- output */

static void put_header(cJSON *h)
{
    char *s = cJSON_PrintUnformatted(h);
    fputs(s, stdout);
    fputc('\n', stdout);
    free(s);
    cJSON_Delete(h);
}

static cJSON *ok(long id)
{
    cJSON *h = cJSON_CreateObject();
    cJSON_AddNumberToObject(h, "id", (double)id);
    cJSON_AddBoolToObject(h, "ok", 1);
    return h;
}

static void refuse(long id, const char *kind, const char *msg)
{
    cJSON *h = cJSON_CreateObject();
    cJSON_AddNumberToObject(h, "id", (double)id);
    cJSON_AddBoolToObject(h, "ok", 0);
    cJSON_AddStringToObject(h, "kind", kind);
    cJSON_AddStringToObject(h, "error", msg);
    put_header(h);
    fflush(stdout);
}

static void add_tensor(cJSON *h, const char *name, const char *dtype, const long *shape, int nd, long bytes)
{
    cJSON *ts = cJSON_GetObjectItem(h, "tensors");
    if (!ts)
        ts = cJSON_AddArrayToObject(h, "tensors");
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "name", name);
    cJSON_AddStringToObject(t, "dtype", dtype);
    cJSON *sh = cJSON_AddArrayToObject(t, "shape");
    for (int i = 0; i < nd; i++)
        cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)shape[i]));
    cJSON_AddNumberToObject(t, "bytes", (double)bytes);
    cJSON_AddItemToArray(ts, t);
}

static int faulting(const char *mode)
{
    return fault && fault_seen && !strcmp(fault, mode);
}

/* Sends header h with one f64 logits-like tensor (n values, shape), applying payload faults. */
static void send_f64_after(cJSON *h, const void *prefix, size_t prefix_bytes, const char *name, const double *vals,
                           long n, const long *shape, int nd)
{
    long sh[4];
    memcpy(sh, shape, (size_t)nd * sizeof *sh);
    int is_logits = !strcmp(name, "logits");
    if (faulting("huge")) {
        long big[1] = {1000000000000L};
        add_tensor(h, name, "f64", big, 1, 8000000000000L);
        put_header(h);
        fflush(stdout);
        return;
    }
    if (is_logits && faulting("wrong_shape"))
        sh[nd - 1] += 1;
    long count = 1;
    for (int i = 0; i < nd; i++)
        count *= sh[i];
    long bytes = count * 8;
    const char *dt = "f64";
    if (is_logits && faulting("wrong_dtype")) {
        dt = "i32";
        bytes = count * 4;
    }
    add_tensor(h, name, dt, sh, nd, faulting("wrong_size") ? bytes - 4 : bytes);
    put_header(h);
    if (prefix_bytes)
        fwrite(prefix, 1, prefix_bytes, stdout);
    double *buf = calloc((size_t)count + 1, sizeof *buf);
    memcpy(buf, vals, (size_t)(n < count ? n : count) * sizeof *buf);
    if (is_logits && faulting("nan"))
        buf[count > 3 ? 3 : 0] = NAN;
    if (faulting("short_payload")) {
        fwrite(buf, 1, (size_t)bytes / 2, stdout);
        fflush(stdout);
        free(buf);
        exit(0);
    }
    fwrite(buf, 1, (size_t)(faulting("wrong_size") ? bytes - 4 : bytes), stdout);
    free(buf);
    fflush(stdout);
}

static void send_f64(cJSON *h, const char *name, const double *vals, long n, const long *shape, int nd)
{
    send_f64_after(h, NULL, 0, name, vals, n, shape, nd);
}

static void send_plain(cJSON *h)
{
    put_header(h);
    fflush(stdout);
}

/* ---------------------------------------------------------------- requests */

static int get_i(const cJSON *r, const char *k, int dflt)
{
    const cJSON *x = cJSON_GetObjectItem(r, k);
    return cJSON_IsNumber(x) ? x->valueint : dflt;
}

static int free_slot(void *arr, size_t size)
{
    for (int i = 0; i < MAX_H; i++)
        if (!*(int *)((char *)arr + (size_t)i * size))
            return i;
    return -1;
}

static void do_prefill_rows(seq *s, const prompt *p, int from, int to, double *logits)
{
    for (int t = from; t < to; t++) {
        s->hash = step_hash(s->hash, p->ids[t]);
        if (logits)
            logits_of(s->hash, t, logits + (size_t)(t - from) * V);
    }
    s->len = to;
}

static void handle(const cJSON *r, long id, const char *op)
{
    if (!strcmp(op, "hello")) {
        if (faulting("garbage_hello")) {
            fputs("Welcome to my engine!\n", stdout);
            fflush(stdout);
            return;
        }
        cJSON *h = ok(id);
        cJSON_AddNumberToObject(h, "protocol", faulting("protocol") ? 99 : 1);
        cJSON_AddStringToObject(h, "name", "bad_engine");
        cJSON_AddStringToObject(h, "version", "1");
        cJSON_AddStringToObject(h, "precision", "f64");
        cJSON_AddStringToObject(h, "detail", "a toy model that misbehaves on request");
        cJSON *caps = cJSON_AddArrayToObject(h, "capabilities");
        const char *names[] = {"positions", "snapshot", "batch", "state", "hidden", "rope"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            cJSON_AddItemToArray(caps, cJSON_CreateString(names[i]));
        send_plain(h);
    } else if (!strcmp(op, "load")) {
        memset(prompts, 0, sizeof prompts);
        memset(seqs, 0, sizeof seqs);
        memset(snaps, 0, sizeof snaps);
        loaded = 1;
        cJSON *h = ok(id), *m = cJSON_AddObjectToObject(h, "model");
        cJSON_AddStringToObject(m, "model_type", "qwen3_5");
        cJSON_AddNumberToObject(m, "vocab_size", V);
        cJSON_AddNumberToObject(m, "hidden_size", H);
        cJSON_AddNumberToObject(m, "num_layers", L);
        cJSON_AddBoolToObject(m, "has_vision", 0);
        cJSON_AddNumberToObject(m, "image_token_id", -1);
        cJSON_AddNumberToObject(m, "video_token_id", -1);
        cJSON_AddNumberToObject(m, "vision_start_token_id", -1);
        cJSON_AddNumberToObject(m, "vision_end_token_id", -1);
        cJSON_AddNumberToObject(m, "rotary_dim", R);
        cJSON_AddNumberToObject(m, "rope_theta", 10000.0);
        cJSON *sec = cJSON_AddArrayToObject(m, "mrope_section");
        for (int i = 0; i < 3; i++)
            cJSON_AddItemToArray(sec, cJSON_CreateNumber(i == 0 ? 2 : 0));
        cJSON_AddBoolToObject(m, "mrope_interleaved", 1);
        send_plain(h);
    } else if (!strcmp(op, "prompt_open")) {
        int k = free_slot(prompts, sizeof prompts[0]);
        prompt *p = &prompts[k];
        p->n = 0;
        const cJSON *segs = cJSON_GetObjectItem(r, "segments"), *sg;
        cJSON_ArrayForEach(sg, segs)
        {
            const cJSON *ids = cJSON_GetObjectItem(sg, "ids"), *x;
            if (!ids)
                return refuse(id, "input", "bad_engine: images are not supported");
            cJSON_ArrayForEach(x, ids)
            {
                if (x->valueint < 0 || x->valueint >= V)
                    return refuse(id, "input", "bad_engine: token id outside the vocabulary");
                if (p->n < MAX_T)
                    p->ids[p->n++] = x->valueint;
            }
        }
        p->used = 1;
        cJSON *h = ok(id);
        cJSON_AddNumberToObject(h, "prompt", k);
        cJSON_AddNumberToObject(h, "n", p->n);
        cJSON_AddNumberToObject(h, "n_images", 0);
        cJSON_AddNumberToObject(h, "rope_delta", 0);
        long n = p->n, sh2[2] = {3, n};
        add_tensor(h, "ids", "i32", &n, 1, n * 4);
        add_tensor(h, "positions", "i64", sh2, 2, 3 * n * 8);
        put_header(h);
        fwrite(p->ids, 4, (size_t)n, stdout);
        for (int a = 0; a < 3; a++)
            for (long i = 0; i < n; i++) {
                int64_t v = i;
                fwrite(&v, 8, 1, stdout);
            }
        fflush(stdout);
    } else if (!strcmp(op, "prompt_close")) {
        prompts[get_i(r, "prompt", 0) % MAX_H].used = 0;
        send_plain(ok(id));
    } else if (!strcmp(op, "seq_open")) {
        int k = free_slot(seqs, sizeof seqs[0]);
        seqs[k] = (seq){1, 0, 0};
        cJSON *h = ok(id);
        cJSON_AddNumberToObject(h, "seq", k);
        send_plain(h);
    } else if (!strcmp(op, "seq_close")) {
        seqs[get_i(r, "seq", 0) % MAX_H].used = 0;
        send_plain(ok(id));
    } else if (!strcmp(op, "prefill")) {
        seq *s = &seqs[get_i(r, "seq", 0) % MAX_H];
        prompt *p = &prompts[get_i(r, "prompt", 0) % MAX_H];
        int from = get_i(r, "from", 0), to = get_i(r, "to", 0);
        if (!s->used || !p->used || from != s->len || to <= from || to > p->n)
            return refuse(id, "input", "bad_engine: the span does not continue the sequence");
        const char *sel = cJSON_GetObjectItem(r, "logits")->valuestring;
        int want_hidden = cJSON_IsTrue(cJSON_GetObjectItem(r, "hidden"));
        long T = to - from;
        double *lg = calloc((size_t)T * V, sizeof *lg);
        do_prefill_rows(s, p, from, to, lg);
        cJSON *h = ok(id);
        double *hid = NULL;
        size_t hid_bytes = 0;
        if (want_hidden) {
            /* hidden first, then logits: payloads follow the header's order */
            long sh[3] = {L + 1, T, H};
            hid = calloc((size_t)(L + 1) * T * H, sizeof *hid);
            for (long i = 0; i < (L + 1) * T * H; i++)
                hid[i] = cos(i * 0.1 + s->hash % 97);
            hid_bytes = (size_t)((L + 1) * T * H * 8);
            add_tensor(h, "hidden", "f64", sh, 3, (long)hid_bytes);
        }
        if (strcmp(sel, "none")) {
            int all = !strcmp(sel, "all");
            long sh[2] = {T, V};
            send_f64_after(h, hid, hid_bytes, "logits", all ? lg : lg + (size_t)(T - 1) * V, all ? T * V : V,
                           all ? sh : sh + 1, all ? 2 : 1);
        } else {
            put_header(h);
            fwrite(hid, 1, hid_bytes, stdout);
        }
        free(hid);
        fflush(stdout);
        free(lg);
    } else if (!strcmp(op, "decode")) {
        seq *s = &seqs[get_i(r, "seq", 0) % MAX_H];
        if (!s->used)
            return refuse(id, "input", "bad_engine: no such sequence");
        double lg[V];
        s->hash = step_hash(s->hash, get_i(r, "token", 0));
        logits_of(s->hash, s->len, lg);
        s->len++;
        long sh[1] = {V};
        if (cJSON_IsTrue(cJSON_GetObjectItem(r, "logits")))
            send_f64(ok(id), "logits", lg, V, sh, 1);
        else
            send_plain(ok(id));
    } else if (!strcmp(op, "snapshot")) {
        int k = free_slot(snaps, sizeof snaps[0]);
        snaps[k] = seqs[get_i(r, "seq", 0) % MAX_H];
        cJSON *h = ok(id);
        cJSON_AddNumberToObject(h, "snap", k);
        send_plain(h);
    } else if (!strcmp(op, "restore")) {
        int k = free_slot(seqs, sizeof seqs[0]);
        seqs[k] = snaps[get_i(r, "snap", 0) % MAX_H];
        cJSON *h = ok(id);
        cJSON_AddNumberToObject(h, "seq", k);
        send_plain(h);
    } else if (!strcmp(op, "release")) {
        snaps[get_i(r, "snap", 0) % MAX_H].used = 0;
        send_plain(ok(id));
    } else if (!strcmp(op, "batch_prefill") || !strcmp(op, "batch_decode")) {
        const cJSON *js = cJSON_GetObjectItem(r, "seqs");
        int B = cJSON_GetArraySize(js), pre = !strcmp(op, "batch_prefill");
        int from = get_i(r, "from", 0), to = get_i(r, "to", 1), Lmax = 0;
        long T = pre ? to - from : 1;
        for (int b = 0; pre && b < B; b++) {
            int n = prompts[cJSON_GetArrayItem(cJSON_GetObjectItem(r, "prompts"), b)->valueint % MAX_H].n;
            Lmax = n > Lmax ? n : Lmax;
        }
        double *lg = calloc((size_t)B * T * V, sizeof *lg);
        for (int b = 0; b < B; b++) {
            seq *s = &seqs[cJSON_GetArrayItem(js, b)->valueint % MAX_H];
            if (pre) {
                prompt *p = &prompts[cJSON_GetArrayItem(cJSON_GetObjectItem(r, "prompts"), b)->valueint % MAX_H];
                int pad = Lmax - p->n;
                for (long t = 0; t < T; t++) {
                    int col = from + (int)t;
                    if (col < pad)
                        continue; /* pads: left as zeros, the client writes NaN there */
                    s->hash = step_hash(s->hash, p->ids[col - pad]);
                    logits_of(s->hash, col - pad, lg + ((size_t)b * T + t) * V);
                    s->len = col - pad + 1;
                }
            } else {
                s->hash = step_hash(s->hash, cJSON_GetArrayItem(cJSON_GetObjectItem(r, "tokens"), b)->valueint);
                logits_of(s->hash, s->len, lg + (size_t)b * V);
                s->len++;
            }
        }
        long sh3[3] = {B, T, V}, sh2[2] = {B, V};
        if (cJSON_IsTrue(cJSON_GetObjectItem(r, "logits")))
            send_f64(ok(id), "logits", lg, B * T * V, pre ? sh3 : sh2, pre ? 3 : 2);
        else
            send_plain(ok(id));
        free(lg);
    } else if (!strcmp(op, "state")) {
        seq *s = &seqs[get_i(r, "seq", 0) % MAX_H];
        double st[2] = {s->len, s->hash};
        cJSON *h = ok(id);
        cJSON_AddNumberToObject(h, "len", s->len);
        long sh[1] = {2};
        send_f64(h, "state", st, 2, sh, 1);
    } else if (!strcmp(op, "rope")) {
        const cJSON *pos = cJSON_GetArrayItem(cJSON_GetObjectItem(r, "positions"), 0);
        long n = cJSON_GetArraySize(pos), sh[2] = {n, R};
        double *o = calloc((size_t)n * R, sizeof *o);
        for (long i = 0; i < n; i++)
            for (int j = 0; j < R / 2; j++) {
                double a = cJSON_GetArrayItem(pos, (int)i)->valuedouble * pow(10000.0, -2.0 * j / R);
                o[i * R + j] = cos(a);
                o[i * R + R / 2 + j] = sin(a);
            }
        send_f64(ok(id), "rope", o, n * R, sh, 2);
        free(o);
    } else if (!strcmp(op, "reset")) {
        memset(prompts, 0, sizeof prompts);
        memset(seqs, 0, sizeof seqs);
        memset(snaps, 0, sizeof snaps);
        send_plain(ok(id));
    } else if (!strcmp(op, "shutdown")) {
        send_plain(ok(id));
        exit(0);
    } else
        refuse(id, "unsupported", "bad_engine: unknown op");
}

/* ---------------------------------------------------------------- proxy mode */

static FILE *child_in, *child_out;

static void proxy_start(const char *cmd)
{
    int in[2], out[2];
    if (pipe(in) || pipe(out)) {
        perror("bad_engine: pipe");
        exit(3);
    }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    child_in = fdopen(in[1], "w");
    child_out = fdopen(out[0], "r");
}

static size_t esize_of(const char *dt)
{
    return !strcmp(dt, "f64") || !strcmp(dt, "i64") ? 8 : !strcmp(dt, "f32") || !strcmp(dt, "i32") ? 4 : 2;
}

/* Forwards one request line and its reply, planting the payload faults. */
static void proxy_one(const char *line)
{
    fputs(line, child_in);
    fflush(child_in);
    char *hl = NULL;
    size_t cap = 0;
    if (getline(&hl, &cap, child_out) <= 0) {
        fprintf(stderr, "bad_engine: the proxied engine closed its stdout\n");
        exit(3);
    }
    cJSON *h = cJSON_Parse(hl);
    free(hl);
    cJSON *ts = cJSON_GetObjectItem(h, "tensors"), *t;
    int nt = cJSON_GetArraySize(ts), k = 0;
    unsigned char **data = calloc((size_t)nt + 1, sizeof *data);
    size_t *len = calloc((size_t)nt + 1, sizeof *len);
    cJSON_ArrayForEach(t, ts)
    {
        len[k] = (size_t)cJSON_GetObjectItem(t, "bytes")->valuedouble;
        data[k] = malloc(len[k] + 64);
        if (fread(data[k], 1, len[k], child_out) != len[k]) {
            fprintf(stderr, "bad_engine: short payload from the proxied engine\n");
            exit(3);
        }
        k++;
    }
    if (fault_seen && !strcmp(fault, "protocol"))
        cJSON_ReplaceItemInObject(h, "protocol", cJSON_CreateNumber(99));
    if (fault_seen && !strcmp(fault, "garbage_hello")) {
        fputs("Welcome to my engine!\n", stdout);
        fflush(stdout);
        goto done;
    }
    k = 0;
    cJSON_ArrayForEach(t, ts)
    {
        const char *dt = cJSON_GetObjectItem(t, "dtype")->valuestring;
        cJSON *sh = cJSON_GetObjectItem(t, "shape");
        size_t es = esize_of(dt);
        if (fault_seen && !strcmp(fault, "nan") && len[k] >= 4 * es) {
            if (es == 8) {
                double v = NAN;
                memcpy(data[k] + 3 * es, &v, 8);
            } else {
                float v = NAN;
                memcpy(data[k] + 3 * es, &v, 4);
            }
        } else if (fault_seen && !strcmp(fault, "wrong_shape")) {
            int nd = cJSON_GetArraySize(sh);
            cJSON *last = cJSON_GetArrayItem(sh, nd - 1);
            size_t rows = len[k] / es / (size_t)last->valuedouble;
            cJSON_SetNumberValue(last, last->valuedouble + 1);
            unsigned char *nb = calloc(len[k] + rows * es + 1, 1);
            memcpy(nb, data[k], len[k]); /* the values no longer line up: only the shape is checked */
            free(data[k]);
            data[k] = nb;
            len[k] += rows * es;
            cJSON_SetNumberValue(cJSON_GetObjectItem(t, "bytes"), (double)len[k]);
        } else if (fault_seen && !strcmp(fault, "wrong_dtype"))
            cJSON_SetValuestring(cJSON_GetObjectItem(t, "dtype"), es == 8 ? "i64" : "i32");
        else if (fault_seen && !strcmp(fault, "wrong_size"))
            cJSON_SetNumberValue(cJSON_GetObjectItem(t, "bytes"), (double)(len[k] - es));
        k++;
        break; /* the first tensor only */
    }
    if (fault_seen && !strcmp(fault, "huge") && nt > 0) {
        t = cJSON_GetArrayItem(ts, 0);
        int nd = cJSON_GetArraySize(cJSON_GetObjectItem(t, "shape"));
        cJSON *big = cJSON_CreateArray();
        for (int d = 0; d < nd; d++)
            cJSON_AddItemToArray(big, cJSON_CreateNumber(nd == 1 ? 1e12 : 1e6));
        cJSON_ReplaceItemInObject(t, "shape", big);
        cJSON_SetNumberValue(cJSON_GetObjectItem(t, "bytes"), 8e12);
        put_header(h);
        fflush(stdout);
        h = NULL;
        goto done;
    }
    put_header(h);
    h = NULL;
    for (k = 0; k < nt; k++) {
        size_t n = len[k];
        if (fault_seen && !strcmp(fault, "short_payload")) {
            fwrite(data[k], 1, n / 2, stdout);
            fflush(stdout);
            exit(0);
        }
        fwrite(data[k], 1, n, stdout);
    }
    fflush(stdout);
done:
    cJSON_Delete(h);
    for (k = 0; k < nt; k++)
        free(data[k]);
    free(data);
    free(len);
}

int main(int argc, char **argv)
{
    const char *proxy = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--fault"))
            fault = argv[i + 1];
        else if (!strcmp(argv[i], "--at"))
            fault_at = argv[i + 1];
        else if (!strcmp(argv[i], "--once"))
            once_file = argv[i + 1];
        else if (!strcmp(argv[i], "--after"))
            fault_after = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--proxy"))
            proxy = argv[i + 1];
        else {
            fprintf(stderr, "bad_engine: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (fault && !fault_at)
        fault_at = !strcmp(fault, "garbage_hello") || !strcmp(fault, "protocol") ? "hello" : "prefill";
    if (fault && once_file && access(once_file, F_OK) == 0)
        fault = NULL; /* fired in an earlier life */
    fprintf(stderr, "bad_engine: started (fault %s at %s)\n", fault ? fault : "none", fault_at ? fault_at : "-");
    if (proxy)
        proxy_start(proxy);
    char *line = NULL;
    size_t cap = 0;
    int seen_at = 0;
    while (getline(&line, &cap, stdin) > 0) {
        cJSON *r = cJSON_Parse(line);
        const cJSON *jop = cJSON_GetObjectItem(r, "op");
        long id = (long)cJSON_GetNumberValue(cJSON_GetObjectItem(r, "id"));
        const char *op = cJSON_IsString(jop) ? jop->valuestring : "?";
        fault_seen = 0;
        if (fault && !strcmp(op, fault_at) && ++seen_at == fault_after) {
            fault_seen = 1;
            if (once_file) {
                FILE *f = fopen(once_file, "w");
                if (f)
                    fclose(f);
            }
            fprintf(stderr, "bad_engine: %s at %s (request %ld)\n", fault, op, id);
            if (!strcmp(fault, "crash")) {
                signal(SIGSEGV, SIG_DFL);
                raise(SIGSEGV);
            }
            if (!strcmp(fault, "exit"))
                exit(0);
            if (!strcmp(fault, "hang"))
                for (;;)
                    pause();
            if (!strcmp(fault, "malformed")) {
                fputs("{\"id\": oops this is not JSON\n", stdout);
                fflush(stdout);
                cJSON_Delete(r);
                continue;
            }
            if (!strcmp(fault, "wrong_id")) {
                send_plain(ok(id + 1));
                cJSON_Delete(r);
                continue;
            }
        }
        if (proxy)
            proxy_one(line);
        else
            handle(r, id, op);
        cJSON_Delete(r);
    }
    free(line);
    return 0;
}
