/* SPDX-License-Identifier: MIT */
/*
 * The engine's worker pool: every parallel loop of the engine, BLAS calls included, runs as a
 * list of fixed work items handed to these workers. OpenBLAS itself is kept at one thread, so
 * a BLAS call is always one item computed by one thread.
 *
 * Determinism: how a loop is cut into items depends only on the shapes of the call, never on
 * the number of workers, and every item writes its own outputs (no reduction is ever split
 * between items). Which worker runs which item changes nothing but the time: results are
 * bitwise the same on any thread count.
 *
 * The pool is the engine's one piece of process state. Its size comes from qref_set_threads,
 * else the environment (QREF_THREADS, then OPENBLAS_NUM_THREADS, then OMP_NUM_THREADS), else
 * the CPUs online. It starts on first use and its threads are joined at process exit.
 * A parallel loop started while the pool is busy (from another thread, or from inside an item)
 * runs its items in the calling thread, in order, with the caller's worker index.
 *
 * Subnormals. On x86 every item runs with flush-to-zero and denormals-are-zero set (MXCSR FTZ
 * and DAZ): the helpers set both once, the calling thread for the length of the loop (its own
 * setting is restored after). Products that meet subnormals run many times slower on some CPUs
 * (the decays of the chunked GDN put a band of them into every chunk); flushing them changes
 * values below 1.2e-38 (float) or 2.2e-308 (double) only. Items see the same environment on
 * any worker, so results stay bitwise the same on any thread count. Elsewhere the floating-point
 * environment is left as it is.
 */
#define _POSIX_C_SOURCE 200809L
#include <assert.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

#if defined(__x86_64__) || defined(__SSE2__)
#include <xmmintrin.h>
#define QREF__MXCSR_FTZ_DAZ 0x8040u
static unsigned fp_flush_enter(void)
{
    const unsigned old = _mm_getcsr();
    _mm_setcsr(old | QREF__MXCSR_FTZ_DAZ);
    return old;
}
static void fp_flush_leave(unsigned old) { _mm_setcsr(old); }
#else
static unsigned fp_flush_enter(void) { return 0; }
static void fp_flush_leave(unsigned old) { (void)old; }
#endif

#include "qref_internal.h"

#define QREF__MAX_THREADS 256
/* Polls of the job counter a worker makes before it sleeps on the condition variable. */
#define QREF__SPIN 300

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    pthread_t th[QREF__MAX_THREADS];
    atomic_int nthreads;        /* workers including the calling thread; 0 = not started */
    int stop;
    atomic_ulong gen;           /* bumped once per job */
    unsigned long start_gen;    /* gen when the helpers were started */
    atomic_int busy;            /* a job is being dispatched or run */
    qref__task_fn fn;
    void *ctx;
    int n_items;
    atomic_int next;            /* next item to take */
    atomic_int running;         /* helper threads still inside the current job */
} pool_state;

static pool_state pool = {.lock = PTHREAD_MUTEX_INITIALIZER,
                          .wake = PTHREAD_COND_INITIALIZER,
                          .done = PTHREAD_COND_INITIALIZER};
static pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER;
static int requested;           /* qref_set_threads value, 0 = from the environment */
static _Thread_local int worker_id = -1;

/* ---------------------------------------------------------------- running items */

static void run_items(int wid)
{
    int i;
    while ((i = atomic_fetch_add(&pool.next, 1)) < pool.n_items)
        pool.fn(pool.ctx, i, wid);
}

static void *worker_main(void *arg)
{
    const int wid = (int)(intptr_t)arg;
    worker_id = wid;
    (void)fp_flush_enter();                                 /* for the thread's life */
    unsigned long seen = pool.start_gen;
    for (;;) {
        unsigned long g;
        int spins = 0;
        while ((g = atomic_load(&pool.gen)) == seen && spins < QREF__SPIN) {
            spins++;
            sched_yield();
        }
        if (g == seen) {
            pthread_mutex_lock(&pool.lock);
            while ((g = atomic_load(&pool.gen)) == seen && !pool.stop)
                pthread_cond_wait(&pool.wake, &pool.lock);
            const int stop = pool.stop;
            pthread_mutex_unlock(&pool.lock);
            if (stop)
                return NULL;
        }
        seen = g;
        run_items(wid);
        if (atomic_fetch_sub(&pool.running, 1) == 1) {
            pthread_mutex_lock(&pool.lock);
            pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.lock);
        }
    }
}

/* ---------------------------------------------------------------- starting and stopping */

static int env_threads(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return 0;
    char *end;
    long n = strtol(v, &end, 10);
    return *end == '\0' && n > 0 ? (int)(n < QREF__MAX_THREADS ? n : QREF__MAX_THREADS) : 0;
}

static int wanted_threads(void)
{
    int n = requested;
    if (!n)
        n = env_threads("QREF_THREADS");
    if (!n)
        n = env_threads("OPENBLAS_NUM_THREADS");
    if (!n)
        n = env_threads("OMP_NUM_THREADS");
    if (!n) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)(c < QREF__MAX_THREADS ? c : QREF__MAX_THREADS) : 1;
    }
    return n;
}

/* Takes the pool for the caller alone (dispatch, start or stop), waiting for a job in flight. */
static void claim(void)
{
    int expected = 0;
    while (!atomic_compare_exchange_weak(&pool.busy, &expected, 1))
        expected = 0, sched_yield();
}

static void release(void) { atomic_store(&pool.busy, 0); }

/* Joins every helper (config_lock held, pool claimed). */
static void pool_stop(void)
{
    if (atomic_load(&pool.nthreads) <= 1) {
        atomic_store(&pool.nthreads, 0);
        return;
    }
    pthread_mutex_lock(&pool.lock);
    pool.stop = 1;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 1; i < atomic_load(&pool.nthreads); i++)
        pthread_join(pool.th[i], NULL);
    pool.stop = 0;
    atomic_store(&pool.nthreads, 0);
}

/* In a child of fork() the helpers are gone: the pool starts afresh on first use. */
static void pool_after_fork(void);
static void register_fork_handler(void) { pthread_atfork(NULL, NULL, pool_after_fork); }

static void pool_after_fork(void)
{
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.done, NULL);
    pthread_mutex_init(&config_lock, NULL);
    pool.stop = 0;
    atomic_store(&pool.nthreads, 0);
    atomic_store(&pool.busy, 0);
    worker_id = -1;
}

/* Starts n - 1 helpers (config_lock held, pool claimed); fewer when thread creation fails. */
static void pool_start(int n)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_fork_handler);
    openblas_set_num_threads(1);
    pool.start_gen = atomic_load(&pool.gen);
    int started = 1;
    for (int i = 1; i < n; i++) {
        if (pthread_create(&pool.th[i], NULL, worker_main, (void *)(intptr_t)i) != 0)
            break;
        started = i + 1;
    }
    atomic_store(&pool.nthreads, started);
}

static void ensure_started(void)
{
    if (atomic_load(&pool.nthreads))
        return;
    pthread_mutex_lock(&config_lock);
    if (!atomic_load(&pool.nthreads)) {
        claim();
        pool_start(wanted_threads());
        release();
    }
    pthread_mutex_unlock(&config_lock);
}

__attribute__((destructor)) static void pool_at_exit(void)
{
    pthread_mutex_lock(&config_lock);
    int expected = 0;
    if (atomic_compare_exchange_strong(&pool.busy, &expected, 1)) {  /* never wait at exit */
        pool_stop();
        release();
    }
    pthread_mutex_unlock(&config_lock);
}

/* ---------------------------------------------------------------- per-thread scratch */

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_ok;

static void scratch_init(void) { scratch_ok = pthread_key_create(&scratch_key, free) == 0; }

/* The buffer is a header (its capacity) followed by the bytes, aligned as max_align_t. */
typedef union {
    size_t cap;
    max_align_t align;
} scratch_head;

void *qref__thread_scratch(size_t bytes)
{
    pthread_once(&scratch_once, scratch_init);
    if (!scratch_ok || bytes > SIZE_MAX - sizeof(scratch_head))
        return NULL;
    scratch_head *h = pthread_getspecific(scratch_key);
    if (h && h->cap >= bytes)
        return h + 1;
    scratch_head *n = malloc(sizeof *n + bytes);
    if (!n)
        return NULL;
    n->cap = bytes;
    if (pthread_setspecific(scratch_key, n) != 0) {
        free(n);
        return NULL;
    }
    free(h);
    return n + 1;
}

/* ---------------------------------------------------------------- public */

void qref_set_threads(int n)
{
    pthread_mutex_lock(&config_lock);
    requested = n > 0 ? (n < QREF__MAX_THREADS ? n : QREF__MAX_THREADS) : 0;
    claim();
    pool_stop();
    pool_start(wanted_threads());
    release();
    pthread_mutex_unlock(&config_lock);
}

int qref_threads(void)
{
    ensure_started();
    return atomic_load(&pool.nthreads);
}

int qref__workers(void)
{
    return qref_threads();
}

void qref__parallel(int n_items, qref__task_fn fn, void *ctx)
{
    if (n_items <= 0)
        return;
    ensure_started();
    const unsigned fp = fp_flush_enter();
    int expected = 0;
    if (n_items == 1 || atomic_load(&pool.nthreads) <= 1 || worker_id > 0 ||
        !atomic_compare_exchange_strong(&pool.busy, &expected, 1)) {
        const int wid = worker_id > 0 ? worker_id : 0;
        for (int i = 0; i < n_items; i++)
            fn(ctx, i, wid);
        fp_flush_leave(fp);
        return;
    }
    const int helpers = atomic_load(&pool.nthreads) - 1;
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n_items = n_items;
    atomic_store(&pool.next, 0);
    atomic_store(&pool.running, helpers);
    pthread_mutex_lock(&pool.lock);
    atomic_fetch_add(&pool.gen, 1);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    worker_id = 0;
    run_items(0);
    worker_id = -1;
    pthread_mutex_lock(&pool.lock);
    while (atomic_load(&pool.running) > 0)
        pthread_cond_wait(&pool.done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    release();
    fp_flush_leave(fp);
}

/* ---------------------------------------------------------------- stage timers */

double qref__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
