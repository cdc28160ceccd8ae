/* SPDX-License-Identifier: MIT */
/*
 * lc_engine_proc: an engine in another process, spoken to per harness/PROTOCOL.md.
 *
 * The child runs `/bin/sh -c CMD` in its own process group, with its stdin and stdout on two
 * pipes and its stderr appended to the log file (or passed through). Every request is one
 * JSON line; every reply is one JSON line followed by its binary payloads. Reads and writes
 * are non-blocking, bounded by one deadline per request (the request timeout).
 *
 * Whatever the child does wrong — exits, crashes, hangs, writes a line that is not the reply
 * to the request, declares a payload of the wrong dtype, shape or size, or logits with NaN —
 * the operation returns LC_EENGINE with one line "engine 'CMD': OP (request N): what", and
 * the process is killed and reaped at once (its process group too): the protocol stream is no
 * longer in step, so every later operation fails the same way until lc_engine_restart. A
 * reply {"ok": false} keeps the stream in step: its code is the one the reply's "kind" names.
 *
 * Every size the child declares is checked against what the request implies (vocabulary,
 * span, batch) or against the protocol's limits (proto_wire.h) before anything is allocated.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "lc_engine.h"
#include "proto_wire.h"

#define DEFAULT_TIMEOUT_S 600.0
#define SHUTDOWN_GRACE_S 2.0

typedef struct {
    int handle;
    int n;                      /* expanded length */
    int pad_to;                 /* batch layouts at least this long (0: none) */
} proc_prompt;

typedef struct {
    char *cmd;
    char label[300];            /* "engine 'CMD'" (the command cut at 256 characters) */
    double timeout_s;
    char *log_path;

    pid_t pid;                  /* 0: no process */
    int to_fd, from_fd;         /* our ends: the child's stdin, the child's stdout */
    unsigned char *buf;         /* read buffer: bytes [off, len) not yet consumed */
    size_t off, len, cap;
    long next_id;

    int dead;                   /* the process was killed after a failure: ops fail until restart */
    char dead_msg[512];

    lc_model_info mi;
    int loaded;
    char *model_dir;
    proc_prompt *prompts;
    int n_prompts, cap_prompts;
} proc;

/* ---------------------------------------------------------------- small helpers */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Copies s into out as one printable line of at most outlen - 1 bytes. */
static void one_line(char *out, size_t outlen, const char *s)
{
    size_t j = 0;
    for (size_t i = 0; s && s[i] && j + 1 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];
        out[j++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    out[j] = '\0';
}

/* The engine misbehaved: kill it, remember why, fill err with LC_EENGINE. */
static int engine_fail(proc *p, const char *op, long id, lc_error *err, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void proc_kill(proc *p);

static int engine_fail(proc *p, const char *op, long id, lc_error *err, const char *fmt, ...)
{
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    proc_kill(p);
    p->dead = 1;
    snprintf(p->dead_msg, sizeof p->dead_msg, "%.400s (at %s, request %ld)", what, op, id);
    return lc_fail(err, LC_EENGINE, "%s: %s (request %ld): %s", p->label, op, id, what);
}

/* The process is down after an earlier failure. */
static int dead_fail(proc *p, const char *op, lc_error *err)
{
    return lc_fail(err, LC_EENGINE, "%s: %s: engine is down after an earlier failure: %s", p->label, op,
                   p->dead_msg);
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int remaining_ms(double deadline)
{
    double left = deadline - now_s();
    if (left <= 0)
        return 0;
    return left > 1e6 ? 1000000000 : (int)(left * 1000.0) + 1;
}

/* ---------------------------------------------------------------- process */

static void close_fds(proc *p)
{
    if (p->to_fd >= 0)
        close(p->to_fd);
    if (p->from_fd >= 0)
        close(p->from_fd);
    p->to_fd = p->from_fd = -1;
    p->off = p->len = 0;
}

/* Kills the child's process group and reaps the child (no zombie). */
static void proc_kill(proc *p)
{
    close_fds(p);
    if (p->pid > 0) {
        kill(-p->pid, SIGKILL);
        kill(p->pid, SIGKILL);
        while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    p->pid = 0;
}

/* How the child ended, after its stdout closed: waits up to 1 s for it to exit, else kills it. */
static void describe_exit(proc *p, char *out, size_t len)
{
    int st = 0;
    pid_t r = 0;
    double until = now_s() + 1.0;
    while (p->pid > 0 && (r = waitpid(p->pid, &st, WNOHANG)) == 0 && now_s() < until) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (r == p->pid) {
        p->pid = 0;
        if (WIFSIGNALED(st))
            snprintf(out, len, "engine crashed (killed by signal %d, %s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
        else if (WEXITSTATUS(st) > 128 && WEXITSTATUS(st) < 160) /* the shell's report of its command's signal */
            snprintf(out, len, "engine crashed (exit status %d: signal %d, %s)", WEXITSTATUS(st),
                     WEXITSTATUS(st) - 128, strsignal(WEXITSTATUS(st) - 128));
        else
            snprintf(out, len, "engine exited with status %d", WEXITSTATUS(st));
    } else
        snprintf(out, len, "engine closed its stdout");
}

static int proc_spawn(proc *p, lc_error *err)
{
    int in[2] = {-1, -1}, outp[2] = {-1, -1};
    int log_fd = -1;
    if (p->log_path) {
        log_fd = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
        if (log_fd < 0)
            return lc_fail(err, LC_EINPUT, "%s: --engine-log %s: cannot open: %s", p->label, p->log_path,
                           strerror(errno));
    }
    if (pipe(in) != 0 || pipe(outp) != 0) {
        int e = errno;
        for (int i = 0; i < 2; i++) {
            if (in[i] >= 0)
                close(in[i]);
            if (outp[i] >= 0)
                close(outp[i]);
        }
        if (log_fd >= 0)
            close(log_fd);
        return lc_fail(err, LC_EENGINE, "%s: cannot create pipes: %s", p->label, strerror(e));
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(in[0]), close(in[1]), close(outp[0]), close(outp[1]);
        if (log_fd >= 0)
            close(log_fd);
        return lc_fail(err, LC_EENGINE, "%s: cannot fork: %s", p->label, strerror(e));
    }
    if (pid == 0) {
        /* child: own process group (killed as a whole), stdin/stdout on the pipes */
        setpgid(0, 0);
        signal(SIGPIPE, SIG_DFL);
        dup2(in[0], 0);
        dup2(outp[1], 1);
        if (log_fd >= 0)
            dup2(log_fd, 2);
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
        execl("/bin/sh", "sh", "-c", p->cmd, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid); /* also here: no race with the kill of the group */
    close(in[0]);
    close(outp[1]);
    if (log_fd >= 0)
        close(log_fd);
    fcntl(in[1], F_SETFD, FD_CLOEXEC);
    fcntl(outp[0], F_SETFD, FD_CLOEXEC);
    set_nonblock(in[1]);
    set_nonblock(outp[0]);
    p->pid = pid;
    p->to_fd = in[1];
    p->from_fd = outp[0];
    p->off = p->len = 0;
    p->dead = 0;
    p->dead_msg[0] = '\0';
    return LC_OK;
}

/* ---------------------------------------------------------------- wire: write, read */

static int write_all(proc *p, const char *op, long id, const char *data, size_t n, double deadline, lc_error *err)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(p->to_fd, data + done, n - done);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            struct pollfd pf = {p->to_fd, POLLOUT, 0};
            int ms = remaining_ms(deadline);
            if (ms == 0 || poll(&pf, 1, ms) == 0)
                return engine_fail(p, op, id, err, "timed out after %g s (the engine does not read its stdin)",
                                   p->timeout_s);
            continue;
        }
        char how[160];
        describe_exit(p, how, sizeof how);
        return engine_fail(p, op, id, err, "%s before reading the request", how);
    }
    return LC_OK;
}

/* Reads more bytes into the buffer. 0 on data; otherwise fails the request (EOF, timeout). */
static int fill(proc *p, const char *op, long id, double deadline, const char *during, lc_error *err)
{
    if (p->off > 0 && p->off == p->len)
        p->off = p->len = 0;
    if (p->len == p->cap) {
        if (p->off > 0) {
            memmove(p->buf, p->buf + p->off, p->len - p->off);
            p->len -= p->off;
            p->off = 0;
        } else {
            size_t nc = p->cap ? p->cap * 2 : 65536;
            unsigned char *nb = realloc(p->buf, nc);
            if (!nb)
                return engine_fail(p, op, id, err, "out of memory reading the reply");
            p->buf = nb;
            p->cap = nc;
        }
    }
    for (;;) {
        ssize_t r = read(p->from_fd, p->buf + p->len, p->cap - p->len);
        if (r > 0) {
            p->len += (size_t)r;
            return LC_OK;
        }
        if (r == 0) {
            char how[160];
            describe_exit(p, how, sizeof how);
            return engine_fail(p, op, id, err, "%s %s", how, during);
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return engine_fail(p, op, id, err, "reading its stdout: %s", strerror(errno));
        struct pollfd pf = {p->from_fd, POLLIN, 0};
        int ms = remaining_ms(deadline);
        int pr = ms == 0 ? 0 : poll(&pf, 1, ms);
        if (pr == 0)
            return engine_fail(p, op, id, err, "timed out after %g s %s", p->timeout_s, during);
        if (pr < 0 && errno != EINTR)
            return engine_fail(p, op, id, err, "poll: %s", strerror(errno));
    }
}

/* Reads one line (without its newline) into a malloc'ed string. */
static int read_line(proc *p, const char *op, long id, double deadline, char **line, lc_error *err)
{
    size_t scanned = 0;
    for (;;) {
        unsigned char *start = p->buf ? p->buf + p->off : NULL;
        size_t avail = p->len - p->off;
        unsigned char *nl = avail > scanned ? memchr(start + scanned, '\n', avail - scanned) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - start);
            char *s = malloc(n + 1);
            if (!s)
                return engine_fail(p, op, id, err, "out of memory reading the reply");
            memcpy(s, start, n);
            s[n] = '\0';
            p->off += n + 1;
            *line = s;
            return LC_OK;
        }
        scanned = avail;
        if (avail >= LC_PROTO_MAX_LINE)
            return engine_fail(p, op, id, err, "malformed reply: a line longer than %u bytes", LC_PROTO_MAX_LINE);
        /* fill() may move the unread bytes to the buffer's start: `scanned` is relative to off */
        int rc = fill(p, op, id, deadline, "before replying", err);
        if (rc)
            return rc;
    }
}

/* Reads exactly n payload bytes, handing them to sink in pieces. */
typedef void (*byte_sink)(void *ctx, const unsigned char *data, size_t n);

static int read_bytes(proc *p, const char *op, long id, double deadline, size_t n, byte_sink sink, void *ctx,
                      const char *what, lc_error *err)
{
    size_t got = 0;
    while (got < n) {
        if (p->off == p->len) {
            char during[200];
            snprintf(during, sizeof during, "after %zu of the %zu bytes of payload '%s'", got, n, what);
            int rc = fill(p, op, id, deadline, during, err);
            if (rc)
                return rc;
        }
        size_t take = p->len - p->off;
        if (take > n - got)
            take = n - got;
        sink(ctx, p->buf + p->off, take);
        p->off += take;
        got += take;
    }
    return LC_OK;
}

/* ---------------------------------------------------------------- replies: headers and tensors */

typedef struct {
    const char *name;
    int is_float;               /* float dtype expected (else i32/i64) */
    int ndim;
    int64_t dims[LC_PROTO_MAX_DIMS]; /* expected; -1: any, at most max_dim */
    int64_t max_dim;
    int required;
    /* out: a malloc'ed array of double (is_float) or int64_t, and the dims read */
    void *data;
    int64_t got[LC_PROTO_MAX_DIMS];
    size_t count;
    int seen;
} tspec;

typedef struct {
    lc_dtype dt;
    size_t esize;
    unsigned char part[8];      /* an element split across two pieces */
    size_t npart;
    double *f;
    int64_t *i;
    size_t k;
} conv_ctx;

static void conv_sink(void *vctx, const unsigned char *data, size_t n)
{
    conv_ctx *c = vctx;
    size_t j = 0;
    while (j < n) {
        const unsigned char *el;
        if (c->npart > 0 || n - j < c->esize) {
            size_t take = c->esize - c->npart;
            if (take > n - j)
                take = n - j;
            memcpy(c->part + c->npart, data + j, take);
            c->npart += take;
            j += take;
            if (c->npart < c->esize)
                return;
            el = c->part;
            c->npart = 0;
        } else {
            el = data + j;
            j += c->esize;
        }
        if (c->f)
            c->f[c->k++] = lc__wire_get_f(el, c->dt);
        else
            c->i[c->k++] = lc__wire_get_i(el, c->dt);
    }
}

static void tspec_free(tspec *t, int n)
{
    for (int i = 0; i < n; i++) {
        free(t[i].data);
        t[i].data = NULL;
    }
}

static void fmt_dims(char *out, size_t len, const int64_t *d, int nd)
{
    size_t o = (size_t)snprintf(out, len, "[");
    for (int i = 0; i < nd && o < len; i++)
        o += (size_t)snprintf(out + o, len - o, "%s%lld", i ? "," : "", (long long)d[i]);
    if (o < len)
        snprintf(out + o, len - o, "]");
}

/* Reads the payloads a reply header declares, in its order, into the specs. The header's
 * "tensors" must name only tensors of the spec, each once, with the expected dtype kind and
 * shape and a byte length that matches; every required one must be there. */
static int read_tensors(proc *p, const char *op, long id, double deadline, const cJSON *hdr, tspec *specs, int ns,
                        lc_error *err)
{
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(hdr, "tensors");
    int nt = 0;
    if (ts && !cJSON_IsArray(ts))
        return engine_fail(p, op, id, err, "malformed reply: \"tensors\" is not an array");
    if (ts)
        nt = cJSON_GetArraySize(ts);
    for (int k = 0; k < nt; k++) {
        const cJSON *t = cJSON_GetArrayItem(ts, k);
        const cJSON *jn = cJSON_GetObjectItemCaseSensitive(t, "name");
        const cJSON *jd = cJSON_GetObjectItemCaseSensitive(t, "dtype");
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(t, "shape");
        const cJSON *jb = cJSON_GetObjectItemCaseSensitive(t, "bytes");
        if (!cJSON_IsString(jn) || !cJSON_IsString(jd) || !cJSON_IsArray(js) || !cJSON_IsNumber(jb))
            return engine_fail(p, op, id, err,
                               "malformed reply: tensor %d needs \"name\", \"dtype\", \"shape\" and \"bytes\"", k);
        tspec *s = NULL;
        for (int i = 0; i < ns; i++)
            if (!strcmp(specs[i].name, jn->valuestring))
                s = &specs[i];
        char nm[64];
        one_line(nm, sizeof nm, jn->valuestring);
        if (!s)
            return engine_fail(p, op, id, err, "unexpected tensor '%s' in the reply", nm);
        if (s->seen)
            return engine_fail(p, op, id, err, "tensor '%s' twice in the reply", nm);
        lc_dtype dt = lc__dtype_from_name(jd->valuestring);
        if (dt == LC_DT_NONE || lc__dtype_is_float(dt) != s->is_float) {
            char dn[32];
            one_line(dn, sizeof dn, jd->valuestring);
            return engine_fail(p, op, id, err, "tensor '%s' has dtype '%s', expected %s", nm, dn,
                               s->is_float ? "f64, f32, bf16 or f16" : "i32 or i64");
        }
        int nd = cJSON_GetArraySize(js);
        int64_t d[LC_PROTO_MAX_DIMS] = {0};
        int shape_ok = nd == s->ndim, over = -1;
        for (int i = 0; shape_ok && i < nd; i++) {
            const cJSON *x = cJSON_GetArrayItem(js, i);
            if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 9.0e15 ||
                x->valuedouble != floor(x->valuedouble)) {
                shape_ok = 0;
                break;
            }
            d[i] = (int64_t)x->valuedouble;
            if (s->dims[i] >= 0 ? d[i] != s->dims[i] : d[i] > s->max_dim) {
                shape_ok = 0;
                over = s->dims[i] < 0 ? i : -1;
            }
        }
        if (!shape_ok) {
            char want[128], got[160];
            char *g = cJSON_PrintUnformatted(js);
            one_line(got, sizeof got, g ? g : "?");
            free(g);
            if (over >= 0)
                return engine_fail(p, op, id, err, "tensor '%s' has shape %s: dimension %d exceeds %lld", nm, got,
                                   over, (long long)s->max_dim);
            fmt_dims(want, sizeof want, s->dims, s->ndim);
            for (char *q = strstr(want, "-1"); q; q = strstr(q, "-1"))
                q[0] = ' ', q[1] = '*'; /* a free dimension */
            return engine_fail(p, op, id, err, "tensor '%s' has shape %s, expected %s", nm, got, want);
        }
        /* element count and byte length, overflow-safe, before any allocation */
        size_t count = 1;
        for (int i = 0; i < nd; i++) {
            if (d[i] != 0 && count > LC_PROTO_MAX_ELEMS / (size_t)d[i])
                return engine_fail(p, op, id, err, "tensor '%s' declares more than %zu elements", nm,
                                   (size_t)LC_PROTO_MAX_ELEMS);
            count *= (size_t)d[i];
        }
        if (count > LC_PROTO_MAX_ELEMS)
            return engine_fail(p, op, id, err, "tensor '%s' declares more than %zu elements", nm,
                               (size_t)LC_PROTO_MAX_ELEMS);
        size_t esize = lc__dtype_size(dt), bytes = count * esize;
        if (jb->valuedouble != (double)bytes) {
            char shape[128];
            fmt_dims(shape, sizeof shape, d, nd);
            return engine_fail(p, op, id, err, "tensor '%s' declares %.0f bytes, but %s %s takes %zu", nm,
                               jb->valuedouble, shape, jd->valuestring, bytes);
        }
        void *data = malloc(count ? count * (s->is_float ? sizeof(double) : sizeof(int64_t)) : 1);
        if (!data)
            return engine_fail(p, op, id, err, "out of memory for tensor '%s' (%zu elements)", jn->valuestring,
                               count);
        conv_ctx c = {.dt = dt, .esize = esize};
        if (s->is_float)
            c.f = data;
        else
            c.i = data;
        s->data = data;
        s->count = count;
        s->seen = 1;
        memcpy(s->got, d, sizeof d);
        int rc = read_bytes(p, op, id, deadline, bytes, conv_sink, &c, s->name, err);
        if (rc)
            return rc;
    }
    for (int i = 0; i < ns; i++)
        if (specs[i].required && !specs[i].seen)
            return engine_fail(p, op, id, err, "the reply lacks tensor '%s'", specs[i].name);
    return LC_OK;
}

/* ---------------------------------------------------------------- one request */

/* Sends req (consumed: freed here) as request `op` and reads the reply header into *reply
 * (the caller frees it) and its tensors into specs. A reply {"ok": false} returns the code
 * its kind names, its payloads (none allowed) not read. */
static int call_with(proc *p, const char *op, cJSON *req, const unsigned char *payload, size_t plen, tspec *specs,
                     int ns, cJSON **reply, lc_error *err);

static int call(proc *p, const char *op, cJSON *req, tspec *specs, int ns, cJSON **reply, lc_error *err)
{
    return call_with(p, op, req, NULL, 0, specs, ns, reply, err);
}

/* As call, with `plen` payload bytes written right after the request line (vjp). */
static int call_with(proc *p, const char *op, cJSON *req, const unsigned char *payload, size_t plen, tspec *specs,
                     int ns, cJSON **reply, lc_error *err)
{
    *reply = NULL;
    if (p->dead || p->pid <= 0) {
        cJSON_Delete(req);
        return dead_fail(p, op, err);
    }
    long id = p->next_id++;
    cJSON_AddNumberToObject(req, "id", (double)id);
    cJSON_AddStringToObject(req, "op", op);
    char *text = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    if (!text)
        return lc_fail(err, LC_EINTERNAL, "%s: %s (request %ld): out of memory", p->label, op, id);
    size_t n = strlen(text);
    char *line = realloc(text, n + 2);
    if (!line) {
        free(text);
        return lc_fail(err, LC_EINTERNAL, "%s: %s (request %ld): out of memory", p->label, op, id);
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    double deadline = now_s() + p->timeout_s;
    int rc = write_all(p, op, id, line, n + 1, deadline, err);
    free(line);
    if (!rc && plen)
        rc = write_all(p, op, id, (const char *)payload, plen, deadline, err);
    if (rc)
        return rc;
    char *hline = NULL;
    if ((rc = read_line(p, op, id, deadline, &hline, err)))
        return rc;
    cJSON *h = cJSON_Parse(hline);
    if (!h || !cJSON_IsObject(h)) {
        char shown[80];
        one_line(shown, sizeof shown, hline);
        free(hline);
        cJSON_Delete(h);
        return engine_fail(p, op, id, err, "malformed reply: not a JSON object: '%s'", shown);
    }
    free(hline);
    const cJSON *jid = cJSON_GetObjectItemCaseSensitive(h, "id");
    const cJSON *jok = cJSON_GetObjectItemCaseSensitive(h, "ok");
    if (!cJSON_IsNumber(jid) || jid->valuedouble != (double)id) {
        cJSON_Delete(h);
        return engine_fail(p, op, id, err, "malformed reply: its \"id\" is not %ld", id);
    }
    if (!cJSON_IsBool(jok)) {
        cJSON_Delete(h);
        return engine_fail(p, op, id, err, "malformed reply: no boolean \"ok\"");
    }
    if (cJSON_IsFalse(jok)) {
        const cJSON *je = cJSON_GetObjectItemCaseSensitive(h, "error");
        const cJSON *jk = cJSON_GetObjectItemCaseSensitive(h, "kind");
        const char *kind = cJSON_IsString(jk) ? jk->valuestring : "engine";
        char msg[600];
        one_line(msg, sizeof msg, cJSON_IsString(je) ? je->valuestring : "(no error message)");
        int code = !strcmp(kind, "input") ? LC_EINPUT : !strcmp(kind, "unsupported") ? LC_EUNSUPPORTED : LC_EENGINE;
        if (cJSON_GetObjectItemCaseSensitive(h, "tensors")) {
            cJSON_Delete(h);
            return engine_fail(p, op, id, err, "malformed reply: an error reply carries tensors");
        }
        cJSON_Delete(h);
        return lc_fail(err, code, "%s: %s (request %ld) refused: %s", p->label, op, id, msg);
    }
    if ((rc = read_tensors(p, op, id, deadline, h, specs, ns, err))) {
        tspec_free(specs, ns);
        cJSON_Delete(h);
        return rc;
    }
    *reply = h;
    return LC_OK;
}

/* An integer field of a reply within [lo, hi]. */
static int get_int(proc *p, const char *op, const cJSON *h, const char *key, long lo, long hi, long *out,
                   lc_error *err)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(h, key);
    if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || x->valuedouble < (double)lo ||
        x->valuedouble > (double)hi)
        return engine_fail(p, op, p->next_id - 1, err, "reply field \"%s\" is missing or not an integer in [%ld, %ld]",
                           key, lo, hi);
    *out = (long)x->valuedouble;
    return LC_OK;
}

/* Sends a request whose reply carries nothing but ok (close, release); a failure marks the
 * engine down (reported by the next operation). */
static void call_void(proc *p, const char *op, const char *key, int value)
{
    if (p->dead || p->pid <= 0)
        return;
    cJSON *req = cJSON_CreateObject(), *h = NULL;
    cJSON_AddNumberToObject(req, key, value);
    lc_error e = {0};
    if (call(p, op, req, NULL, 0, &h, &e) == LC_OK)
        cJSON_Delete(h);
    /* a refusal of a close keeps the stream in step; nothing to report to a void call */
}

static proc_prompt *find_prompt(proc *p, int handle)
{
    for (int i = 0; i < p->n_prompts; i++)
        if (p->prompts[i].handle == handle)
            return &p->prompts[i];
    return NULL;
}

static int handle_err(proc *p, const char *op, const char *what, int h, lc_error *err)
{
    return lc_fail(err, LC_EINPUT, "%s: %s: unknown %s handle %d", p->label, op, what, h);
}

/* ---------------------------------------------------------------- hello */

static int copy_str(proc *p, const cJSON *h, const char *key, char *out, size_t len, int required, lc_error *err)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(h, key);
    if (!x && !required) {
        out[0] = '\0';
        return LC_OK;
    }
    if (!cJSON_IsString(x) || (required && !x->valuestring[0]))
        return engine_fail(p, "hello", 0, err, "hello reply: \"%s\" is missing or not a string", key);
    one_line(out, len, x->valuestring);
    return LC_OK;
}

static int hello(proc *p, lc_engine_info *info, lc_error *err)
{
    cJSON *req = cJSON_CreateObject(), *h = NULL;
    cJSON_AddNumberToObject(req, "protocol", LC_PROTO_VERSION);
    int rc = call(p, "hello", req, NULL, 0, &h, err);
    if (rc)
        return rc;
    const cJSON *pv = cJSON_GetObjectItemCaseSensitive(h, "protocol");
    if (!cJSON_IsNumber(pv) || pv->valuedouble != LC_PROTO_VERSION) {
        char got[40];
        if (cJSON_IsNumber(pv))
            snprintf(got, sizeof got, "%g", pv->valuedouble);
        else
            snprintf(got, sizeof got, "none");
        cJSON_Delete(h);
        return engine_fail(p, "hello", 0, err, "engine speaks protocol version %s, this harness speaks %d", got,
                           LC_PROTO_VERSION);
    }
    lc_engine_info in = {0};
    char prec[32];
    if ((rc = copy_str(p, h, "name", in.name, sizeof in.name, 1, err)) ||
        (rc = copy_str(p, h, "version", in.version, sizeof in.version, 0, err)) ||
        (rc = copy_str(p, h, "detail", in.detail, sizeof in.detail, 0, err)) ||
        (rc = copy_str(p, h, "precision", prec, sizeof prec, 1, err))) {
        cJSON_Delete(h);
        return rc;
    }
    in.precision = lc_eprec_from_name(prec);
    if (in.precision == LC_EPREC_UNKNOWN) {
        cJSON_Delete(h);
        return engine_fail(p, "hello", 0, err, "hello reply: precision '%s' is none of f64, f32, bf16, f16", prec);
    }
    const cJSON *caps = cJSON_GetObjectItemCaseSensitive(h, "capabilities");
    if (!cJSON_IsArray(caps)) {
        cJSON_Delete(h);
        return engine_fail(p, "hello", 0, err, "hello reply: \"capabilities\" is missing or not an array");
    }
    const cJSON *c;
    cJSON_ArrayForEach(c, caps)
    {
        int k = cJSON_IsString(c) ? lc_cap_from_name(c->valuestring) : -1;
        if (k < 0) {
            char nm[64];
            one_line(nm, sizeof nm, cJSON_IsString(c) ? c->valuestring : "(not a string)");
            cJSON_Delete(h);
            return engine_fail(p, "hello", 0, err, "hello reply: unknown capability '%s'", nm);
        }
        in.caps |= 1u << k;
    }
    cJSON_Delete(h);
    *info = in;
    return LC_OK;
}

/* ---------------------------------------------------------------- operations */

static proc *P(lc_engine *e)
{
    return e->impl;
}

static int parse_model(proc *p, const cJSON *h, lc_model_info *mi, lc_error *err)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(h, "model");
    if (!cJSON_IsObject(m))
        return engine_fail(p, "load", p->next_id - 1, err, "load reply: \"model\" is missing or not an object");
    lc_model_info o = {0};
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(m, "model_type");
    if (!cJSON_IsString(t))
        return engine_fail(p, "load", p->next_id - 1, err, "load reply: model.model_type is not a string");
    one_line(o.model_type, sizeof o.model_type, t->valuestring);
    struct {
        const char *key;
        int *dst;
        long lo, hi;
    } f[] = {
        {"vocab_size", &o.vocab_size, 1, 1 << 24},
        {"hidden_size", &o.hidden_size, 1, 1 << 20},
        {"num_layers", &o.num_layers, 1, 4096},
        {"has_vision", &o.has_vision, 0, 1},
        {"image_token_id", &o.image_token_id, -1, 1 << 24},
        {"video_token_id", &o.video_token_id, -1, 1 << 24},
        {"vision_start_token_id", &o.vision_start_token_id, -1, 1 << 24},
        {"vision_end_token_id", &o.vision_end_token_id, -1, 1 << 24},
        {"rotary_dim", &o.rotary_dim, 0, 1 << 16},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        long v;
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(m, f[i].key);
        if (!cJSON_IsNumber(x) && !cJSON_IsBool(x))
            return engine_fail(p, "load", p->next_id - 1, err, "load reply: model.%s is missing", f[i].key);
        v = cJSON_IsBool(x) ? cJSON_IsTrue(x) : (long)x->valuedouble;
        if (cJSON_IsNumber(x) && (x->valuedouble != floor(x->valuedouble) || x->valuedouble < f[i].lo ||
                                  x->valuedouble > f[i].hi))
            return engine_fail(p, "load", p->next_id - 1, err, "load reply: model.%s is not an integer in [%ld, %ld]",
                               f[i].key, f[i].lo, f[i].hi);
        *f[i].dst = (int)v;
    }
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(m, "rope_theta");
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(m, "mrope_section");
    const cJSON *mi_ = cJSON_GetObjectItemCaseSensitive(m, "mrope_interleaved");
    if (!cJSON_IsNumber(th) || !(th->valuedouble > 0))
        return engine_fail(p, "load", p->next_id - 1, err, "load reply: model.rope_theta is missing or not > 0");
    o.rope_theta = th->valuedouble;
    if (!cJSON_IsArray(ms) || cJSON_GetArraySize(ms) != 3)
        return engine_fail(p, "load", p->next_id - 1, err, "load reply: model.mrope_section is not three integers");
    for (int i = 0; i < 3; i++) {
        const cJSON *x = cJSON_GetArrayItem(ms, i);
        if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > (1 << 16) ||
            x->valuedouble != floor(x->valuedouble))
            return engine_fail(p, "load", p->next_id - 1, err, "load reply: model.mrope_section is not three integers");
        o.mrope_section[i] = (int)x->valuedouble;
    }
    if (!cJSON_IsBool(mi_))
        return engine_fail(p, "load", p->next_id - 1, err, "load reply: model.mrope_interleaved is not a boolean");
    o.mrope_interleaved = cJSON_IsTrue(mi_);
    if (o.rotary_dim % 2)
        return engine_fail(p, "load", p->next_id - 1, err, "load reply: model.rotary_dim %d is odd", o.rotary_dim);
    *mi = o;
    return LC_OK;
}

static int op_load(lc_engine *e, const char *dir, lc_model_info *mi, lc_error *err)
{
    proc *p = P(e);
    cJSON *req = cJSON_CreateObject(), *h = NULL;
    cJSON_AddStringToObject(req, "dir", dir);
    p->n_prompts = 0;
    p->loaded = 0;
    int rc = call(p, "load", req, NULL, 0, &h, err);
    if (rc)
        return rc;
    lc_model_info o;
    rc = parse_model(p, h, &o, err);
    cJSON_Delete(h);
    if (rc)
        return rc;
    char *d = strdup(dir);
    if (!d)
        return lc_fail(err, LC_EINTERNAL, "%s: load: out of memory", p->label);
    free(p->model_dir);
    p->model_dir = d;
    p->mi = o;
    p->loaded = 1;
    if (mi)
        *mi = o;
    return LC_OK;
}

static int need_model(proc *p, const char *op, lc_error *err)
{
    return p->loaded ? LC_OK : lc_fail(err, LC_EINPUT, "%s: %s: no checkpoint loaded", p->label, op);
}

/* A video segment as the protocol writes it: {"video": [frames], "fps": F, "timestamp_ids": [[...]]}
 * ("fps" left out when not given). */
static void add_video_segment(cJSON *o, const lc_pseg *g)
{
    cJSON *fr = cJSON_AddArrayToObject(o, "video"), *ts = cJSON_AddArrayToObject(o, "timestamp_ids");
    for (int f = 0; f < g->n_frames; f++)
        cJSON_AddItemToArray(fr, cJSON_CreateString(g->frames[f]));
    if (g->fps > 0)
        cJSON_AddNumberToObject(o, "fps", g->fps);
    for (int t = 0, at = 0; t < g->n_ts; at += g->ts_len[t], t++) {
        cJSON *grp = cJSON_CreateArray();
        for (int i = 0; i < g->ts_len[t]; i++)
            cJSON_AddItemToArray(grp, cJSON_CreateNumber(g->ts_ids[at + i]));
        cJSON_AddItemToArray(ts, grp);
    }
}

/* The optional fields of a prompt (capabilities pixel_limits and pad_to, which the wrapper has
 * checked): sent only when set, so an engine without them never sees them. */
static void add_prompt_options(cJSON *req, const lc_prompt_in *in)
{
    if (in->image_min_pixels)
        cJSON_AddNumberToObject(req, "image_min_pixels", (double)in->image_min_pixels);
    if (in->image_max_pixels)
        cJSON_AddNumberToObject(req, "image_max_pixels", (double)in->image_max_pixels);
    if (in->pad_to)
        cJSON_AddNumberToObject(req, "pad_to", in->pad_to);
}

static int op_prompt_open(lc_engine *e, const lc_prompt_in *in, lc_prompt_info *out, lc_error *err)
{
    proc *p = P(e);
    const char *op = "prompt_open";
    int rc = need_model(p, op, err);
    if (rc)
        return rc;
    memset(out, 0, sizeof *out);
    cJSON *req = cJSON_CreateObject(), *segs = cJSON_AddArrayToObject(req, "segments"), *h = NULL;
    long text = 0, n_img = 0;
    for (int s = 0; s < in->n_segs; s++) {
        cJSON *o = cJSON_CreateObject();
        if (in->segs[s].type == LC_PSEG_IMAGE) {
            cJSON_AddStringToObject(o, "image", in->segs[s].image);
            n_img++;
        } else if (in->segs[s].type == LC_PSEG_VIDEO) {
            add_video_segment(o, &in->segs[s]);
            n_img++; /* a video is one visual input (one grid) */
        } else {
            cJSON *ids = cJSON_AddArrayToObject(o, "ids");
            for (int i = 0; i < in->segs[s].n_ids; i++)
                cJSON_AddItemToArray(ids, cJSON_CreateNumber(in->segs[s].ids[i]));
            text += in->segs[s].n_ids;
        }
        cJSON_AddItemToArray(segs, o);
    }
    cJSON_AddNumberToObject(req, "vision_from", in->vision_from);
    add_prompt_options(req, in);
    int with_pos = lc_engine_info_has(&e->info, LC_CAP_POSITIONS);
    tspec ts[2] = {
        {.name = "ids", .is_float = 0, .ndim = 1, .dims = {-1}, .max_dim = LC_PROTO_MAX_TOKENS, .required = 1},
        {.name = "positions", .is_float = 0, .ndim = 2, .dims = {3, -1}, .max_dim = LC_PROTO_MAX_TOKENS,
         .required = with_pos},
    };
    if ((rc = call(p, op, req, ts, with_pos ? 2 : 1, &h, err)))
        return rc;
    long id = p->next_id - 1, handle, n, n_images, delta = 0;
    if ((rc = get_int(p, op, h, "prompt", 0, 1L << 30, &handle, err)) ||
        (rc = get_int(p, op, h, "n", text, LC_PROTO_MAX_TOKENS, &n, err)) ||
        (rc = get_int(p, op, h, "n_images", n_img, n_img, &n_images, err)) ||
        (with_pos && (rc = get_int(p, op, h, "rope_delta", -(1L << 30), 1L << 30, &delta, err))))
        goto done;
    if ((int64_t)n != ts[0].got[0] || (with_pos && ts[1].got[1] != (int64_t)n)) {
        rc = engine_fail(p, op, id, err, "prompt of n = %ld tokens, but tensor 'ids' has %lld%s", n,
                         (long long)ts[0].got[0], with_pos ? " (or 'positions' another count)" : "");
        goto done;
    }
    if (in->pad_to && n > in->pad_to) {
        rc = engine_fail(p, op, id, err, "accepted pad_to %d for a prompt of %ld tokens (an input error)", in->pad_to,
                         n);
        goto done;
    }
    const cJSON *grid = cJSON_GetObjectItemCaseSensitive(h, "grid");
    if (n_images > 0 && (!cJSON_IsArray(grid) || cJSON_GetArraySize(grid) != n_images)) {
        rc = engine_fail(p, op, id, err, "reply field \"grid\" is not an array of %ld [t, h, w] triples", n_images);
        goto done;
    }
    out->ids = malloc((size_t)n * sizeof *out->ids + 1);
    out->grid = n_images ? malloc((size_t)n_images * sizeof *out->grid) : NULL;
    if (!out->ids || (n_images && !out->grid)) {
        rc = lc_fail(err, LC_EINTERNAL, "%s: %s: out of memory", p->label, op);
        goto done;
    }
    for (long i = 0; i < n; i++) {
        int64_t v = ((int64_t *)ts[0].data)[i];
        if (v < 0 || v >= p->mi.vocab_size) {
            rc = engine_fail(p, op, id, err, "expanded id %lld at %ld is outside the vocabulary (%d)", (long long)v, i,
                             p->mi.vocab_size);
            goto done;
        }
        out->ids[i] = (int32_t)v;
    }
    for (long k = 0; k < n_images; k++) {
        const cJSON *g = cJSON_GetArrayItem(grid, (int)k);
        for (int j = 0; j < 3; j++) {
            const cJSON *x = cJSON_GetArrayItem(g, j);
            if (!cJSON_IsArray(g) || cJSON_GetArraySize(g) != 3 || !cJSON_IsNumber(x) || x->valuedouble < 1 ||
                x->valuedouble > 1e6 || x->valuedouble != floor(x->valuedouble)) {
                rc = engine_fail(p, op, id, err, "grid of image %ld is not three positive integers", k);
                goto done;
            }
            out->grid[k][j] = (int)x->valuedouble;
        }
    }
    if (with_pos) {
        out->pos = ts[1].data;
        ts[1].data = NULL;
    }
    if (p->n_prompts == p->cap_prompts) {
        int nc = p->cap_prompts ? 2 * p->cap_prompts : 16;
        proc_prompt *np = realloc(p->prompts, (size_t)nc * sizeof *np);
        if (!np) {
            rc = lc_fail(err, LC_EINTERNAL, "%s: %s: out of memory", p->label, op);
            goto done;
        }
        p->prompts = np;
        p->cap_prompts = nc;
    }
    proc_prompt *old = find_prompt(p, (int)handle);
    if (old)
        *old = (proc_prompt){(int)handle, (int)n, in->pad_to};
    else
        p->prompts[p->n_prompts++] = (proc_prompt){(int)handle, (int)n, in->pad_to};
    out->handle = (int)handle;
    out->n = (int)n;
    out->rope_delta = delta;
    out->n_images = (int)n_images;
done:
    if (rc) {
        free(out->ids);
        free(out->grid);
        free(out->pos);
        memset(out, 0, sizeof *out);
    }
    tspec_free(ts, 2);
    cJSON_Delete(h);
    return rc;
}

static void op_prompt_close(lc_engine *e, int prompt)
{
    proc *p = P(e);
    proc_prompt *pp = find_prompt(p, prompt);
    if (pp)
        *pp = p->prompts[--p->n_prompts];
    call_void(p, "prompt_close", "prompt", prompt);
}

static int op_handle(lc_engine *e, const char *op, const char *in_key, int in_val, const char *out_key, int *out,
                     lc_error *err)
{
    proc *p = P(e);
    cJSON *req = cJSON_CreateObject(), *h = NULL;
    if (in_key)
        cJSON_AddNumberToObject(req, in_key, in_val);
    int rc = call(p, op, req, NULL, 0, &h, err);
    if (rc)
        return rc;
    long v;
    rc = get_int(p, op, h, out_key, 0, 1L << 30, &v, err);
    cJSON_Delete(h);
    if (!rc)
        *out = (int)v;
    return rc;
}

static int op_seq_open(lc_engine *e, int *seq, lc_error *err)
{
    int rc = need_model(P(e), "seq_open", err);
    return rc ? rc : op_handle(e, "seq_open", NULL, 0, "seq", seq, err);
}

static void op_seq_close(lc_engine *e, int seq)
{
    call_void(P(e), "seq_close", "seq", seq);
}

/* Any NaN among count values: index of the first, else -1. */
static long first_nan(const double *v, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (isnan(v[i]))
            return (long)i;
    return -1;
}

/* A reply's logits (rows of V values) into dst, or only checked when dst is NULL: a NaN
 * anywhere is the engine's failure, naming its row and index. */
static int take_logits(proc *p, const char *op, long id, const tspec *t, int V, double *dst, lc_error *err)
{
    long k = first_nan(t->data, t->count);
    if (k >= 0)
        return engine_fail(p, op, id, err, "NaN logits (row %ld, index %ld)", k / V, k % V);
    if (dst)
        memcpy(dst, t->data, t->count * sizeof(double));
    return LC_OK;
}

/* A reply's final_hidden (rows of H values) into dst; a NaN is the engine's failure, as in
 * logits. */
static int take_final(proc *p, const char *op, long id, const tspec *t, int H, double *dst, lc_error *err)
{
    long k = first_nan(t->data, t->count);
    if (k >= 0)
        return engine_fail(p, op, id, err, "NaN final_hidden (row %ld, index %ld)", k / H, k % H);
    memcpy(dst, t->data, t->count * sizeof(double));
    return LC_OK;
}

/* A batch reply's final_hidden (B, T, H) of columns [from, from + T) into dst: pad columns
 * NaN whatever the engine sent, a NaN elsewhere the engine's failure. */
static int take_final_padded(proc *p, const char *op, long id, tspec *t, int B, int T, int from, int Lmax,
                             const int *len, double *dst, lc_error *err)
{
    const int H = p->mi.hidden_size;
    double *src = t->data;
    for (int b = 0; b < B; b++)
        for (int j = 0; j < T; j++) {
            double *row = src + ((size_t)b * T + j) * H;
            if (from + j < Lmax - len[b]) {
                for (int i = 0; i < H; i++)
                    row[i] = NAN;
                continue;
            }
            long k = first_nan(row, (size_t)H);
            if (k >= 0)
                return engine_fail(p, op, id, err, "NaN final_hidden (row %d, column %d, index %ld)", b, from + j, k);
        }
    memcpy(dst, src, t->count * sizeof(double));
    return LC_OK;
}

static int op_prefill(lc_engine *e, int seq, int prompt, int from, int to, const lc_prefill_out *out, lc_error *err)
{
    proc *p = P(e);
    const char *op = "prefill";
    int rc = need_model(p, op, err);
    if (rc)
        return rc;
    proc_prompt *pp = find_prompt(p, prompt);
    if (!pp)
        return handle_err(p, op, "prompt", prompt, err);
    if (from < 0 || to <= from || to > pp->n)
        return lc_fail(err, LC_EINPUT, "%s: %s: span [%d, %d) is not inside the prompt's %d tokens", p->label, op,
                       from, to, pp->n);
    static const char *const sel[] = {"none", "last", "all"};
    static const char *const gdn[] = {"auto", "chunked", "recurrent"};
    int T = to - from, V = p->mi.vocab_size, H = p->mi.hidden_size, L = p->mi.num_layers;
    cJSON *req = cJSON_CreateObject(), *h = NULL;
    cJSON_AddNumberToObject(req, "seq", seq);
    cJSON_AddNumberToObject(req, "prompt", prompt);
    cJSON_AddNumberToObject(req, "from", from);
    cJSON_AddNumberToObject(req, "to", to);
    cJSON_AddStringToObject(req, "logits", sel[out->sel]);
    cJSON_AddBoolToObject(req, "hidden", out->hidden != NULL);
    if (out->gdn_mode != LC_GDN_AUTO || out->gdn_chunk) {
        cJSON_AddStringToObject(req, "gdn_mode", gdn[out->gdn_mode]);
        cJSON_AddNumberToObject(req, "gdn_chunk", out->gdn_chunk);
    }
    if (out->final_hidden) /* only when asked: an engine without the capability never sees it */
        cJSON_AddBoolToObject(req, "final_hidden", 1);
    tspec ts[3] = {
        {.name = "logits", .is_float = 1, .required = out->sel != LC_LOGITS_NONE},
        {.name = "hidden", .is_float = 1, .ndim = 3, .dims = {L + 1, T, H}, .required = out->hidden != NULL},
        {.name = "final_hidden", .is_float = 1, .ndim = 2, .dims = {T, H}, .required = 1},
    };
    if (out->sel == LC_LOGITS_ALL) {
        ts[0].ndim = 2;
        ts[0].dims[0] = T;
        ts[0].dims[1] = V;
    } else {
        ts[0].ndim = 1;
        ts[0].dims[0] = V;
    }
    int nspec = 0;
    tspec *use[3];
    if (out->sel != LC_LOGITS_NONE)
        use[nspec++] = &ts[0];
    if (out->hidden)
        use[nspec++] = &ts[1];
    if (out->final_hidden)
        use[nspec++] = &ts[2];
    tspec act[3];
    for (int i = 0; i < nspec; i++)
        act[i] = *use[i];
    long id = p->next_id;
    if ((rc = call(p, op, req, act, nspec, &h, err)))
        return rc;
    for (int i = 0; i < nspec; i++) {
        if (!strcmp(act[i].name, "logits")) {
            if ((rc = take_logits(p, op, id, &act[i], V, out->logits, err)))
                break;
        } else if (!strcmp(act[i].name, "final_hidden")) {
            if ((rc = take_final(p, op, id, &act[i], H, out->final_hidden, err)))
                break;
        } else
            memcpy(out->hidden, act[i].data, act[i].count * sizeof(double));
    }
    tspec_free(act, nspec);
    cJSON_Delete(h);
    return rc;
}

/* decode, and decode_final: with final_hidden the request asks for it ("final_hidden": true)
 * and the reply carries it, (H). */
static int decode_call(lc_engine *e, int seq, int32_t token, double *logits, double *final_hidden, lc_error *err)
{
    proc *p = P(e);
    const char *op = "decode";
    int rc = need_model(p, op, err);
    if (rc)
        return rc;
    int V = p->mi.vocab_size, H = p->mi.hidden_size;
    cJSON *req = cJSON_CreateObject(), *h = NULL;
    cJSON_AddNumberToObject(req, "seq", seq);
    cJSON_AddNumberToObject(req, "token", token);
    cJSON_AddBoolToObject(req, "logits", logits != NULL);
    if (final_hidden)
        cJSON_AddBoolToObject(req, "final_hidden", 1);
    tspec ts[2] = {{.name = "logits", .is_float = 1, .ndim = 1, .dims = {V}, .required = 1},
                   {.name = "final_hidden", .is_float = 1, .ndim = 1, .dims = {H}, .required = 1}};
    if (!logits)
        ts[0] = ts[1];
    const int ns = (logits ? 1 : 0) + (final_hidden ? 1 : 0);
    long id = p->next_id;
    if ((rc = call(p, op, req, ts, ns, &h, err)))
        return rc;
    if (logits) {
        long k = first_nan(ts[0].data, ts[0].count);
        if (k >= 0)
            rc = engine_fail(p, op, id, err, "NaN logits (index %ld)", k);
        else
            memcpy(logits, ts[0].data, (size_t)V * sizeof(double));
    }
    if (!rc && final_hidden)
        rc = take_final(p, op, id, &ts[logits ? 1 : 0], H, final_hidden, err);
    tspec_free(ts, 2);
    cJSON_Delete(h);
    return rc;
}

static int op_decode(lc_engine *e, int seq, int32_t token, double *logits, lc_error *err)
{
    return decode_call(e, seq, token, logits, NULL, err);
}

static int op_decode_final(lc_engine *e, int seq, int32_t token, double *logits, double *final_hidden, lc_error *err)
{
    return decode_call(e, seq, token, logits, final_hidden, err);
}

static int op_snapshot(lc_engine *e, int seq, int *snap, lc_error *err)
{
    return op_handle(e, "snapshot", "seq", seq, "snap", snap, err);
}

static int op_restore(lc_engine *e, int snap, int *seq, lc_error *err)
{
    return op_handle(e, "restore", "snap", snap, "seq", seq, err);
}

static void op_snap_release(lc_engine *e, int snap)
{
    call_void(P(e), "release", "snap", snap);
}

static cJSON *int_array(const int *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

/* batch_prefill, and batch_prefill_final: with final_hidden the request asks for it and the
 * reply carries it, (B, b - a, H), NaN at pads whatever the engine sent. */
static int batch_prefill_call(lc_engine *e, const int *seqs, const int *prompts, int B, int from, int to,
                              double *logits, double *final_hidden, lc_error *err)
{
    proc *p = P(e);
    const char *op = "batch_prefill";
    int rc = need_model(p, op, err);
    if (rc)
        return rc;
    if (B < 1)
        return lc_fail(err, LC_EINPUT, "%s: %s: an empty batch", p->label, op);
    int *len = malloc((size_t)B * sizeof *len), Lmax = 0;
    if (!len)
        return lc_fail(err, LC_EINTERNAL, "%s: %s: out of memory", p->label, op);
    for (int b = 0; b < B; b++) {
        proc_prompt *pp = find_prompt(p, prompts[b]);
        if (!pp) {
            free(len);
            return handle_err(p, op, "prompt", prompts[b], err);
        }
        len[b] = pp->n;
        if (pp->n > Lmax)
            Lmax = pp->n;
        if (pp->pad_to > Lmax)
            Lmax = pp->pad_to;
    }
    if (from < 0 || to <= from || to > Lmax) {
        free(len);
        return lc_fail(err, LC_EINPUT, "%s: %s: columns [%d, %d) are not inside the batch's %d columns", p->label, op,
                       from, to, Lmax);
    }
    int T = to - from, V = p->mi.vocab_size;
    cJSON *req = cJSON_CreateObject(), *h = NULL;
    cJSON_AddItemToObject(req, "seqs", int_array(seqs, B));
    cJSON_AddItemToObject(req, "prompts", int_array(prompts, B));
    cJSON_AddNumberToObject(req, "from", from);
    cJSON_AddNumberToObject(req, "to", to);
    cJSON_AddBoolToObject(req, "logits", logits != NULL);
    if (final_hidden)
        cJSON_AddBoolToObject(req, "final_hidden", 1);
    tspec ts[2] = {{.name = "logits", .is_float = 1, .ndim = 3, .dims = {B, T, V}, .required = 1},
                   {.name = "final_hidden", .is_float = 1, .ndim = 3, .dims = {B, T, p->mi.hidden_size}, .required = 1}};
    if (!logits)
        ts[0] = ts[1];
    long id = p->next_id;
    if ((rc = call(p, op, req, ts, (logits ? 1 : 0) + (final_hidden ? 1 : 0), &h, err))) {
        free(len);
        return rc;
    }
    if (logits) {
        double *src = ts[0].data;
        for (int b = 0; b < B && !rc; b++)
            for (int t = 0; t < T && !rc; t++) {
                double *row = src + ((size_t)b * T + t) * V;
                if (from + t < Lmax - len[b]) { /* a pad column: NaN whatever the engine sent */
                    for (int v = 0; v < V; v++)
                        row[v] = NAN;
                    continue;
                }
                long k = first_nan(row, (size_t)V);
                if (k >= 0)
                    rc = engine_fail(p, op, id, err, "NaN logits (row %d, column %d, index %ld)", b, from + t, k);
            }
        if (!rc)
            memcpy(logits, src, ts[0].count * sizeof(double));
    }
    if (!rc && final_hidden)
        rc = take_final_padded(p, op, id, &ts[logits ? 1 : 0], B, T, from, Lmax, len, final_hidden, err);
    free(len);
    tspec_free(ts, 2);
    cJSON_Delete(h);
    return rc;
}

static int op_batch_prefill(lc_engine *e, const int *seqs, const int *prompts, int B, int from, int to,
                            double *logits, lc_error *err)
{
    return batch_prefill_call(e, seqs, prompts, B, from, to, logits, NULL, err);
}

static int op_batch_prefill_final(lc_engine *e, const int *seqs, const int *prompts, int B, int from, int to,
                                  double *logits, double *final_hidden, lc_error *err)
{
    return batch_prefill_call(e, seqs, prompts, B, from, to, logits, final_hidden, err);
}

/* batch_decode, and batch_decode_final: final_hidden (B, H) when asked. */
static int batch_decode_call(lc_engine *e, const int *seqs, const int32_t *tokens, int B, double *logits,
                             double *final_hidden, lc_error *err)
{
    proc *p = P(e);
    const char *op = "batch_decode";
    int rc = need_model(p, op, err);
    if (rc)
        return rc;
    if (B < 1)
        return lc_fail(err, LC_EINPUT, "%s: %s: an empty batch", p->label, op);
    int V = p->mi.vocab_size;
    cJSON *req = cJSON_CreateObject(), *h = NULL, *tk = cJSON_CreateArray();
    for (int b = 0; b < B; b++)
        cJSON_AddItemToArray(tk, cJSON_CreateNumber(tokens[b]));
    cJSON_AddItemToObject(req, "seqs", int_array(seqs, B));
    cJSON_AddItemToObject(req, "tokens", tk);
    cJSON_AddBoolToObject(req, "logits", logits != NULL);
    if (final_hidden)
        cJSON_AddBoolToObject(req, "final_hidden", 1);
    tspec ts[2] = {{.name = "logits", .is_float = 1, .ndim = 2, .dims = {B, V}, .required = 1},
                   {.name = "final_hidden", .is_float = 1, .ndim = 2, .dims = {B, p->mi.hidden_size}, .required = 1}};
    if (!logits)
        ts[0] = ts[1];
    long id = p->next_id;
    if ((rc = call(p, op, req, ts, (logits ? 1 : 0) + (final_hidden ? 1 : 0), &h, err)))
        return rc;
    if (logits)
        rc = take_logits(p, op, id, &ts[0], V, logits, err);
    if (!rc && final_hidden)
        rc = take_final(p, op, id, &ts[logits ? 1 : 0], p->mi.hidden_size, final_hidden, err);
    tspec_free(ts, 2);
    cJSON_Delete(h);
    return rc;
}

static int op_batch_decode(lc_engine *e, const int *seqs, const int32_t *tokens, int B, double *logits,
                           lc_error *err)
{
    return batch_decode_call(e, seqs, tokens, B, logits, NULL, err);
}

static int op_batch_decode_final(lc_engine *e, const int *seqs, const int32_t *tokens, int B, double *logits,
                                 double *final_hidden, lc_error *err)
{
    return batch_decode_call(e, seqs, tokens, B, logits, final_hidden, err);
}

static int op_state(lc_engine *e, int seq, lc_state *out, lc_error *err)
{
    proc *p = P(e);
    const char *op = "state";
    int rc = need_model(p, op, err);
    if (rc)
        return rc;
    memset(out, 0, sizeof *out);
    cJSON *req = cJSON_CreateObject(), *h = NULL;
    cJSON_AddNumberToObject(req, "seq", seq);
    tspec ts[1] = {
        {.name = "state", .is_float = 1, .ndim = 1, .dims = {-1}, .max_dim = LC_PROTO_MAX_ELEMS, .required = 1}};
    if ((rc = call(p, op, req, ts, 1, &h, err)))
        return rc;
    long len;
    if ((rc = get_int(p, op, h, "len", 0, LC_PROTO_MAX_TOKENS, &len, err))) {
        tspec_free(ts, 1);
        cJSON_Delete(h);
        return rc;
    }
    out->len = (int)len;
    out->data = ts[0].data;
    out->n = ts[0].count;
    cJSON_Delete(h);
    return LC_OK;
}

static int op_vision(lc_engine *e, int prompt, double **embeds, int *rows, lc_error *err)
{
    proc *p = P(e);
    const char *op = "vision";
    int rc = need_model(p, op, err);
    if (rc)
        return rc;
    proc_prompt *pp = find_prompt(p, prompt);
    if (!pp)
        return handle_err(p, op, "prompt", prompt, err);
    cJSON *req = cJSON_CreateObject(), *h = NULL;
    cJSON_AddNumberToObject(req, "prompt", prompt);
    tspec ts[1] = {{.name = "embeds", .is_float = 1, .ndim = 2, .dims = {-1, p->mi.hidden_size}, .max_dim = pp->n,
                    .required = 1}};
    if ((rc = call(p, op, req, ts, 1, &h, err)))
        return rc;
    *embeds = ts[0].data;
    *rows = (int)ts[0].got[0];
    cJSON_Delete(h);
    return LC_OK;
}

static int op_rope(lc_engine *e, const int64_t *pos, int n, double *out, lc_error *err)
{
    proc *p = P(e);
    const char *op = "rope";
    int rc = need_model(p, op, err);
    if (rc)
        return rc;
    cJSON *req = cJSON_CreateObject(), *h = NULL, *pa = cJSON_AddArrayToObject(req, "positions");
    for (int a = 0; a < 3; a++) {
        cJSON *row = cJSON_CreateArray();
        for (int i = 0; i < n; i++)
            cJSON_AddItemToArray(row, cJSON_CreateNumber((double)pos[(size_t)a * n + i]));
        cJSON_AddItemToArray(pa, row);
    }
    tspec ts[1] = {{.name = "rope", .is_float = 1, .ndim = 2, .dims = {n, p->mi.rotary_dim}, .required = 1}};
    if ((rc = call(p, op, req, ts, 1, &h, err)))
        return rc;
    memcpy(out, ts[0].data, ts[0].count * sizeof(double));
    tspec_free(ts, 1);
    cJSON_Delete(h);
    return LC_OK;
}

/* A tensor descriptor of a request ({"name", "dtype", "shape", "bytes"}); appends its payload
 * (f64 or i64, little-endian) at *at. */
static cJSON *request_tensor(const lc_vjp_tensor *t, unsigned char *blob, size_t *at)
{
    cJSON *d = cJSON_CreateObject(), *sh = cJSON_AddArrayToObject(d, "shape");
    const size_t cnt = lc_vjp_count(t->ndim, t->shape);
    cJSON_AddStringToObject(d, "name", t->name);
    cJSON_AddStringToObject(d, "dtype", t->is_int ? "i64" : "f64");
    for (int i = 0; i < t->ndim; i++)
        cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[i]));
    cJSON_AddNumberToObject(d, "bytes", (double)(cnt * 8));
    for (size_t i = 0; i < cnt; i++, *at += 8) {
        if (!t->is_int) {
            lc__wire_put_f64(blob + *at, t->data[i]);
            continue;
        }
        const uint64_t v = (uint64_t)(int64_t)t->data[i];
        for (int b = 0; b < 8; b++)
            blob[*at + b] = (unsigned char)(v >> (8 * b));
    }
    return d;
}

static int op_vjp(lc_engine *e, const lc_vjp_in *in, lc_vjp_result *want, int n_want, lc_error *err)
{
    proc *p = P(e);
    const char *op = "vjp";
    int rc = need_model(p, op, err);
    if (rc)
        return rc;
    size_t bytes = 0;
    for (int i = 0; i < in->n_inputs + in->n_grads; i++) {
        const lc_vjp_tensor *t = i < in->n_inputs ? &in->inputs[i] : &in->grads[i - in->n_inputs];
        if (t->ndim < 0 || t->ndim > LC_PROTO_MAX_DIMS || lc_vjp_count(t->ndim, t->shape) > LC_PROTO_MAX_ELEMS)
            return lc_fail(err, LC_EINPUT, "%s: vjp: tensor '%s' exceeds the protocol's limits", p->label, t->name);
        bytes += 8 * lc_vjp_count(t->ndim, t->shape);
    }
    tspec *ts = calloc((size_t)n_want + 1, sizeof *ts);
    unsigned char *blob = malloc(bytes + 1);
    if (!ts || !blob) {
        free(ts);
        free(blob);
        return lc_fail(err, LC_EINTERNAL, "%s: vjp: out of memory", p->label);
    }
    cJSON *req = cJSON_CreateObject(), *h = NULL;
    cJSON_AddStringToObject(req, "fn", in->fn);
    cJSON *pr = cJSON_AddObjectToObject(req, "params");
    for (int i = 0; i < in->n_params; i++)
        cJSON_AddNumberToObject(pr, in->params[i].name, in->params[i].value);
    size_t at = 0;
    cJSON *ji = cJSON_AddArrayToObject(req, "inputs"), *jg = cJSON_AddArrayToObject(req, "grads");
    for (int i = 0; i < in->n_inputs; i++)
        cJSON_AddItemToArray(ji, request_tensor(&in->inputs[i], blob, &at));
    for (int i = 0; i < in->n_grads; i++)
        cJSON_AddItemToArray(jg, request_tensor(&in->grads[i], blob, &at));
    cJSON *jw = cJSON_AddArrayToObject(req, "want");
    for (int i = 0; i < n_want; i++) {
        cJSON *w = cJSON_CreateObject(), *sh = cJSON_AddArrayToObject(w, "shape");
        cJSON_AddStringToObject(w, "name", want[i].name);
        for (int d = 0; d < want[i].ndim; d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)want[i].shape[d]));
        cJSON_AddItemToArray(jw, w);
        ts[i].name = want[i].name;
        ts[i].is_float = 1;
        ts[i].ndim = want[i].ndim;
        memcpy(ts[i].dims, want[i].shape, (size_t)want[i].ndim * sizeof ts[i].dims[0]);
    }
    rc = call_with(p, op, req, blob, at, ts, n_want, &h, err);
    free(blob);
    if (!rc) {
        for (int i = 0; i < n_want; i++)
            want[i].data = ts[i].seen ? ts[i].data : NULL; /* a result not sent: not computed */
        cJSON_Delete(h);
    }
    free(ts);
    return rc;
}

/* Every handle released, the model kept. */
static int op_reset(lc_engine *e, lc_error *err)
{
    proc *p = P(e);
    cJSON *h = NULL;
    int rc = call(p, "reset", cJSON_CreateObject(), NULL, 0, &h, err);
    cJSON_Delete(h);
    if (!rc)
        p->n_prompts = 0;
    return rc;
}

/* ---------------------------------------------------------------- life cycle */

/* Asks the engine to shut down, gives it a moment, then kills whatever is left; reaps. */
static void proc_shutdown(proc *p)
{
    if (p->pid <= 0)
        return;
    if (!p->dead) {
        double saved = p->timeout_s;
        p->timeout_s = saved < SHUTDOWN_GRACE_S ? saved : SHUTDOWN_GRACE_S;
        cJSON *h = NULL;
        lc_error e = {0};
        if (call(p, "shutdown", cJSON_CreateObject(), NULL, 0, &h, &e) == LC_OK)
            cJSON_Delete(h);
        p->timeout_s = saved;
    }
    if (p->pid > 0) {
        close_fds(p);
        double until = now_s() + SHUTDOWN_GRACE_S;
        while (waitpid(p->pid, NULL, WNOHANG) == 0) {
            if (now_s() >= until) {
                proc_kill(p);
                break;
            }
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        p->pid = 0;
    }
}

/* Spawns the command and reads its hello into e->info; reports name the command beside what
 * the engine says of itself (detail). */
static int start(lc_engine *e, lc_error *err)
{
    proc *p = P(e);
    int rc = proc_spawn(p, err);
    if (rc)
        return rc;
    p->next_id = 0;
    if ((rc = hello(p, &e->info, err)))
        return rc;
    size_t dl = strlen(e->info.detail);
    snprintf(e->info.detail + dl, sizeof e->info.detail - dl, "%scommand: %.200s", dl ? "; " : "", p->cmd);
    return LC_OK;
}

static int op_restart(lc_engine *e, lc_error *err)
{
    proc *p = P(e);
    lc_engine_info before = e->info;
    proc_shutdown(p);
    p->n_prompts = 0;
    int rc = start(e, err);
    if (rc)
        return rc;
    if (strcmp(before.name, e->info.name) || before.caps != e->info.caps || before.precision != e->info.precision)
        return engine_fail(p, "hello", 0, err, "the restarted engine describes itself differently");
    if (p->loaded) {
        lc_model_info was = p->mi;
        char *dir = strdup(p->model_dir);
        if (!dir)
            return lc_fail(err, LC_EINTERNAL, "%s: restart: out of memory", p->label);
        rc = op_load(e, dir, NULL, err);
        free(dir);
        if (!rc && memcmp(&was, &p->mi, sizeof was))
            rc = engine_fail(p, "load", p->next_id - 1, err, "the restarted engine loads the checkpoint differently");
    }
    return rc;
}

static void op_destroy(lc_engine *e)
{
    proc *p = P(e);
    if (!p)
        return;
    proc_shutdown(p);
    free(p->buf);
    free(p->cmd);
    free(p->log_path);
    free(p->model_dir);
    free(p->prompts);
    free(p);
    free(e);
}

/* ---------------------------------------------------------------- serving: step, prefix cache */

static int op_step(lc_engine *e, const lc_step_row *rows, int B, double *logits, lc_error *err)
{
    proc *p = P(e);
    const char *op = "step";
    int rc = need_model(p, op, err);
    if (rc)
        return rc;
    if (B < 1)
        return lc_fail(err, LC_EINPUT, "%s: %s: no rows", p->label, op);
    const int V = p->mi.vocab_size;
    long total = 0;
    cJSON *req = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(req, "rows"), *h = NULL;
    for (int b = 0; b < B; b++) {
        cJSON *w = cJSON_CreateObject();
        cJSON_AddNumberToObject(w, "seq", rows[b].seq);
        if (rows[b].prompt >= 0) {
            proc_prompt *pp = find_prompt(p, rows[b].prompt);
            if (!pp || rows[b].from < 0 || rows[b].to <= rows[b].from || rows[b].to > pp->n) {
                cJSON_Delete(w);
                cJSON_Delete(req);
                return pp ? lc_fail(err, LC_EINPUT, "%s: %s: row %d: span [%d, %d) outside the prompt of %d tokens",
                                    p->label, op, b, rows[b].from, rows[b].to, pp->n)
                          : handle_err(p, op, "prompt", rows[b].prompt, err);
            }
            cJSON_AddNumberToObject(w, "prompt", rows[b].prompt);
            cJSON_AddNumberToObject(w, "from", rows[b].from);
            cJSON_AddNumberToObject(w, "to", rows[b].to);
            total += rows[b].to - rows[b].from;
        } else {
            cJSON_AddNumberToObject(w, "token", rows[b].token);
            total += 1;
        }
        cJSON_AddItemToArray(arr, w);
    }
    cJSON_AddBoolToObject(req, "logits", logits != NULL);
    tspec ts[1] = {{.name = "logits", .is_float = 1, .ndim = 2, .dims = {total, V}, .required = 1}};
    long id = p->next_id;
    if ((rc = call(p, op, req, ts, logits ? 1 : 0, &h, err)))
        return rc;
    if (logits)
        rc = take_logits(p, op, id, &ts[0], V, logits, err);
    tspec_free(ts, 1);
    cJSON_Delete(h);
    return rc;
}

static int op_prefix_store(lc_engine *e, int seq, int prompt, lc_error *err)
{
    proc *p = P(e);
    int rc = need_model(p, "prefix_store", err);
    if (rc)
        return rc;
    cJSON *req = cJSON_CreateObject(), *h = NULL;
    cJSON_AddNumberToObject(req, "seq", seq);
    cJSON_AddNumberToObject(req, "prompt", prompt);
    if ((rc = call(p, "prefix_store", req, NULL, 0, &h, err)))
        return rc;
    cJSON_Delete(h);
    return LC_OK;
}

static int op_prefix_lookup(lc_engine *e, int prompt, int *seq, int *reused, lc_error *err)
{
    proc *p = P(e);
    const char *op = "prefix_lookup";
    int rc = need_model(p, op, err);
    if (rc)
        return rc;
    proc_prompt *pp = find_prompt(p, prompt);
    if (!pp)
        return handle_err(p, op, "prompt", prompt, err);
    cJSON *req = cJSON_CreateObject(), *h = NULL;
    cJSON_AddNumberToObject(req, "prompt", prompt);
    if ((rc = call(p, op, req, NULL, 0, &h, err)))
        return rc;
    long s, n;
    if (!(rc = get_int(p, op, h, "seq", 0, 1L << 30, &s, err)) &&
        !(rc = get_int(p, op, h, "reused", 0, pp->n, &n, err))) {
        *seq = (int)s;
        *reused = (int)n;
    }
    cJSON_Delete(h);
    return rc;
}

static int op_prefix_stats(lc_engine *e, lc_prefix_stats *out, lc_error *err)
{
    proc *p = P(e);
    const char *op = "prefix_stats";
    int rc = need_model(p, op, err);
    if (rc)
        return rc;
    cJSON *h = NULL;
    if ((rc = call(p, op, cJSON_CreateObject(), NULL, 0, &h, err)))
        return rc;
    const char *keys[] = {"lookups", "hits", "tokens_reused", "refused", "stored"};
    int64_t *dst[] = {&out->lookups, &out->hits, &out->tokens_reused, &out->refused, &out->stored};
    for (int k = 0; k < 5 && !rc; k++) {
        long v;
        if (!(rc = get_int(p, op, h, keys[k], 0, 1L << 52, &v, err)))
            *dst[k] = v;
    }
    cJSON_Delete(h);
    return rc;
}

/* ---------------------------------------------------------------- speculative decoding */

static int op_verify(lc_engine *e, int seq, const int32_t *tokens, int n, double *logits, lc_error *err)
{
    proc *p = P(e);
    const char *op = "verify";
    int rc = need_model(p, op, err);
    if (rc)
        return rc;
    if (n < 1)
        return lc_fail(err, LC_EINPUT, "%s: %s: no token", p->label, op);
    const int V = p->mi.vocab_size;
    cJSON *req = cJSON_CreateObject(), *h = NULL, *tk = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(tk, cJSON_CreateNumber(tokens[i]));
    cJSON_AddNumberToObject(req, "seq", seq);
    cJSON_AddItemToObject(req, "tokens", tk);
    tspec ts[1] = {{.name = "logits", .is_float = 1, .ndim = 2, .dims = {n, V}, .required = 1}};
    long id = p->next_id;
    if ((rc = call(p, op, req, ts, 1, &h, err)))
        return rc;
    rc = take_logits(p, op, id, &ts[0], V, logits, err);
    tspec_free(ts, 1);
    cJSON_Delete(h);
    return rc;
}

static int op_accept(lc_engine *e, int seq, int accepted, lc_error *err)
{
    proc *p = P(e);
    const char *op = "accept";
    int rc = need_model(p, op, err);
    if (rc)
        return rc;
    cJSON *req = cJSON_CreateObject(), *h = NULL;
    cJSON_AddNumberToObject(req, "seq", seq);
    cJSON_AddNumberToObject(req, "accepted", accepted);
    if ((rc = call(p, op, req, NULL, 0, &h, err)))
        return rc;
    cJSON_Delete(h);
    return LC_OK;
}

static int op_draft(lc_engine *e, int seq, int32_t next, int k, int32_t *drafts, double *logits, lc_error *err)
{
    proc *p = P(e);
    const char *op = "draft";
    int rc = need_model(p, op, err);
    if (rc)
        return rc;
    const int V = p->mi.vocab_size;
    cJSON *req = cJSON_CreateObject(), *h = NULL;
    cJSON_AddNumberToObject(req, "seq", seq);
    cJSON_AddNumberToObject(req, "next", next);
    cJSON_AddNumberToObject(req, "k", k);
    cJSON_AddBoolToObject(req, "logits", logits != NULL);
    tspec ts[1] = {{.name = "logits", .is_float = 1, .ndim = 2, .dims = {k, V}, .required = 1}};
    long id = p->next_id;
    if ((rc = call(p, op, req, ts, logits ? 1 : 0, &h, err)))
        return rc;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(h, "drafts"), *x;
    if (!cJSON_IsArray(d) || cJSON_GetArraySize(d) != k)
        rc = engine_fail(p, op, id, err, "reply field \"drafts\" is not an array of %d token ids", k);
    int i = 0;
    cJSON_ArrayForEach(x, d)
    {
        if (rc)
            break;
        if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || x->valuedouble < 0 ||
            x->valuedouble >= V)
            rc = engine_fail(p, op, id, err, "reply field \"drafts\"[%d] is not a token id in [0, %d)", i, V);
        else
            drafts[i++] = (int32_t)x->valuedouble;
    }
    if (!rc && logits)
        rc = take_logits(p, op, id, &ts[0], V, logits, err);
    tspec_free(ts, logits ? 1 : 0);
    cJSON_Delete(h);
    return rc;
}

static int op_batch_verify(lc_engine *e, const int *seqs, int B, const int32_t *tokens, const int *counts,
                           double *logits, lc_error *err)
{
    proc *p = P(e);
    const char *op = "batch_verify";
    int rc = need_model(p, op, err);
    if (rc)
        return rc;
    if (B < 1)
        return lc_fail(err, LC_EINPUT, "%s: %s: an empty batch", p->label, op);
    const int V = p->mi.vocab_size;
    int L = 0;
    cJSON *req = cJSON_CreateObject(), *h = NULL, *rows = cJSON_CreateArray();
    for (int b = 0, at = 0; b < B; b++) {
        cJSON *row = cJSON_CreateArray();
        for (int i = 0; i < counts[b]; i++)
            cJSON_AddItemToArray(row, cJSON_CreateNumber(tokens[at++]));
        cJSON_AddItemToArray(rows, row);
        L = counts[b] > L ? counts[b] : L;
    }
    cJSON_AddItemToObject(req, "seqs", int_array(seqs, B));
    cJSON_AddItemToObject(req, "tokens", rows);
    tspec ts[1] = {{.name = "logits", .is_float = 1, .ndim = 3, .dims = {B, L, V}, .required = 1}};
    long id = p->next_id;
    if ((rc = call(p, op, req, ts, 1, &h, err)))
        return rc;
    for (int b = 0; b < B && !rc; b++) {
        long k = first_nan((const double *)ts[0].data + (size_t)b * L * V, (size_t)counts[b] * V);
        if (k >= 0)
            rc = engine_fail(p, op, id, err, "NaN logits (row %d, token %ld, index %ld)", b, k / V, k % V);
    }
    if (!rc && logits)
        memcpy(logits, ts[0].data, ts[0].count * sizeof(double));
    tspec_free(ts, 1);
    cJSON_Delete(h);
    return rc;
}

static const lc_engine_ops proc_ops = {
    .load = op_load,
    .prompt_open = op_prompt_open,
    .prompt_close = op_prompt_close,
    .seq_open = op_seq_open,
    .seq_close = op_seq_close,
    .prefill = op_prefill,
    .decode = op_decode,
    .snapshot = op_snapshot,
    .restore = op_restore,
    .snap_release = op_snap_release,
    .batch_prefill = op_batch_prefill,
    .batch_decode = op_batch_decode,
    .state = op_state,
    .vision = op_vision,
    .rope = op_rope,
    .vjp = op_vjp,
    .restart = op_restart,
    .destroy = op_destroy,
    .reset = op_reset,
    .step = op_step,
    .prefix_store = op_prefix_store,
    .prefix_lookup = op_prefix_lookup,
    .prefix_stats = op_prefix_stats,
    .verify = op_verify,
    .accept = op_accept,
    .draft = op_draft,
    .batch_verify = op_batch_verify,
    .decode_final = op_decode_final,
    .batch_prefill_final = op_batch_prefill_final,
    .batch_decode_final = op_batch_decode_final,
};

int lc_engine_proc_new(lc_engine **out, const char *cmd, double timeout_s, const char *log_path, lc_error *err)
{
    *out = NULL;
    if (!cmd || !cmd[0])
        return lc_fail(err, LC_EINPUT, "--engine: an empty command");
    if (timeout_s < 0 || isnan(timeout_s))
        return lc_fail(err, LC_EINPUT, "--engine-timeout %g: expected a number of seconds > 0", timeout_s);
    /* a write to a child that died must fail with EPIPE, not end this process */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    lc_engine *e = calloc(1, sizeof *e);
    proc *p = calloc(1, sizeof *p);
    if (!e || !p) {
        free(e);
        free(p);
        return lc_fail(err, LC_EINTERNAL, "--engine: out of memory");
    }
    p->to_fd = p->from_fd = -1;
    p->timeout_s = timeout_s > 0 ? timeout_s : DEFAULT_TIMEOUT_S;
    p->cmd = strdup(cmd);
    p->log_path = log_path ? strdup(log_path) : NULL;
    char shown[260];
    one_line(shown, sizeof shown, cmd);
    snprintf(p->label, sizeof p->label, "engine '%s%s'", shown, strlen(cmd) > 256 ? "..." : "");
    e->ops = &proc_ops;
    e->impl = p;
    if (!p->cmd || (log_path && !p->log_path)) {
        op_destroy(e);
        return lc_fail(err, LC_EINTERNAL, "--engine: out of memory");
    }
    int rc = start(e, err);
    if (rc) {
        op_destroy(e);
        return rc;
    }
    *out = e;
    return LC_OK;
}
