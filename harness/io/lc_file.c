/* SPDX-License-Identifier: MIT */
/* Input files, checked sizes, the memory limit and atomic outputs (see lc_file.h). */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lc_file.h"

/* ---------------------------------------------------------------- checked sizes */

int lc_size_mul(size_t a, size_t b, size_t *out)
{
    if (a && b > SIZE_MAX / a)
        return -1;
    *out = a * b;
    return 0;
}

int lc_size_add(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a)
        return -1;
    *out = a + b;
    return 0;
}

/* ---------------------------------------------------------------- the memory limit */

/* set once by the CLI before any file is read; 0 means the default */
static size_t mem_limit_bytes;

size_t lc_mem_limit(void)
{
    if (mem_limit_bytes)
        return mem_limit_bytes;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0)
        return (size_t)4 << 30;
    size_t total;
    if (lc_size_mul((size_t)pages, (size_t)page, &total))
        return SIZE_MAX / 2;
    return total / 2;
}

void lc_mem_limit_set(size_t bytes)
{
    mem_limit_bytes = bytes;
}

int lc_parse_size(const char *s, size_t *out)
{
    if (!s || *s < '0' || *s > '9') /* strtoull would take spaces and signs */
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno)
        return -1;
    size_t mult = 1;
    if (*end) {
        switch (*end) {
        case 'K': case 'k': mult = (size_t)1 << 10; break;
        case 'M': case 'm': mult = (size_t)1 << 20; break;
        case 'G': case 'g': mult = (size_t)1 << 30; break;
        case 'T': case 't': mult = (size_t)1 << 40; break;
        default: return -1;
        }
        end++;
        if (*end == 'i' && (end[1] == 'B' || end[1] == 'b'))
            end += 2;
        else if (*end == 'B' || *end == 'b')
            end++;
        if (*end)
            return -1;
    }
    size_t r;
    if (v == 0 || v > SIZE_MAX || lc_size_mul((size_t)v, mult, &r))
        return -1;
    *out = r;
    return 0;
}

/* ---------------------------------------------------------------- reading */

static int within(const char *root, const char *real)
{
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/')
        return 1;
    return !strncmp(real, root, n) && (real[n] == '/' || real[n] == '\0');
}

int lc_file_open_input(const char *path, const char *root, size_t max_bytes, int *fd_out, size_t *size_out,
                       lc_error *err)
{
    *fd_out = -1;
    *size_out = 0;
    /* O_NONBLOCK: a FIFO without a writer must not hang the open; cleared for regular files */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return lc_fail(err, LC_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return lc_fail(err, LC_EINPUT, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return lc_fail(err, LC_EINPUT, "%s: not a regular file (%s)", path,
                       S_ISDIR(sb.st_mode) ? "a directory" : S_ISFIFO(sb.st_mode) ? "a FIFO"
                       : S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode) ? "a device" : "a special file");
    }
    if ((uint64_t)sb.st_size > (uint64_t)max_bytes) {
        close(fd);
        return lc_fail(err, LC_EINPUT, "%s: %lld bytes, more than the limit of %zu for this file", path,
                       (long long)sb.st_size, max_bytes);
    }
    if (root) {
        char rr[PATH_MAX], real[PATH_MAX];
        if (!realpath(root, rr) || !realpath(path, real)) {
            int e = errno;
            close(fd);
            return lc_fail(err, LC_EINPUT, "%s: cannot resolve: %s", path, strerror(e));
        }
        if (!within(rr, real)) {
            close(fd);
            return lc_fail(err, LC_EINPUT, "%s: resolves to %s, outside %s", path, real, rr);
        }
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *fd_out = fd;
    *size_out = (size_t)sb.st_size;
    return LC_OK;
}

int lc_file_read(const char *path, const char *root, size_t max_bytes, char **buf_out, size_t *len_out,
                 lc_error *err)
{
    *buf_out = NULL;
    *len_out = 0;
    if (max_bytes > lc_mem_limit())
        max_bytes = lc_mem_limit();
    int fd;
    size_t size;
    int rc = lc_file_open_input(path, root, max_bytes, &fd, &size, err);
    if (rc)
        return rc;
    char *buf = malloc(size + 1);
    if (!buf) {
        close(fd);
        return lc_fail(err, LC_EINTERNAL, "%s: out of memory for %zu bytes", path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            close(fd);
            free(buf);
            return lc_fail(err, LC_EINPUT, "%s: %s after %zu of %zu bytes", path,
                           e ? strerror(e) : "the file shrank while being read", got, size);
        }
        got += (size_t)r;
    }
    close(fd);
    buf[size] = '\0';
    *buf_out = buf;
    *len_out = size;
    return LC_OK;
}

/* ---------------------------------------------------------------- writing */

int lc_afile_open(lc_afile *af, const char *path, lc_error *err)
{
    memset(af, 0, sizeof *af);
    if (path == NULL || path[0] == '\0')
        return lc_fail(err, LC_EINPUT, "empty output path");
    if (strlen(path) >= sizeof af->path)
        return lc_fail(err, LC_EINPUT, "%.200s...: output path longer than %zu bytes", path, sizeof af->path - 1);
    memcpy(af->path, path, strlen(path) + 1);
    for (int k = 0; k < 100; k++) {
        snprintf(af->tmp, sizeof af->tmp, "%s.tmp-%ld-%d", path, (long)getpid(), k);
        const int fd = open(af->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0) {
            if (errno == EEXIST)
                continue;
            const int e = errno;
            af->tmp[0] = '\0';
            return lc_fail(err, LC_EINPUT, "%s: cannot create: %s%s", path, strerror(e),
                           e == ENOENT ? " (does its directory exist?)" : "");
        }
        af->f = fdopen(fd, "w");
        if (af->f == NULL) {
            const int e = errno;
            close(fd);
            unlink(af->tmp);
            af->tmp[0] = '\0';
            return lc_fail(err, LC_EINPUT, "%s: cannot open for writing: %s", path, strerror(e));
        }
        return LC_OK;
    }
    af->tmp[0] = '\0';
    return lc_fail(err, LC_EINPUT, "%s: cannot create a temporary file next to it", path);
}

/* fsync of the directory holding path, so the rename itself is durable (best effort: some
 * file systems refuse fsync on directories). */
static void sync_dir(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_CLOEXEC | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

int lc_afile_commit(lc_afile *af, lc_error *err)
{
    int e = 0, bad = 0;
    errno = 0;
    if (fflush(af->f) != 0 || ferror(af->f)) {
        e = errno;
        bad = 1;
    }
    if (!bad && fsync(fileno(af->f)) != 0) {
        e = errno;
        bad = 1;
    }
    if (fclose(af->f) != 0 && !bad) {
        e = errno;
        bad = 1;
    }
    af->f = NULL;
    if (bad) {
        unlink(af->tmp);
        af->tmp[0] = '\0';
        return lc_fail(err, LC_EINPUT, "%s: write failed: %s", af->path, e ? strerror(e) : "I/O error");
    }
    if (rename(af->tmp, af->path) != 0) {
        e = errno;
        unlink(af->tmp);
        af->tmp[0] = '\0';
        return lc_fail(err, LC_EINPUT, "%s: cannot move the finished file into place: %s", af->path, strerror(e));
    }
    af->tmp[0] = '\0';
    sync_dir(af->path);
    return LC_OK;
}

void lc_afile_abort(lc_afile *af)
{
    if (af->f)
        fclose(af->f);
    af->f = NULL;
    if (af->tmp[0])
        unlink(af->tmp);
    af->tmp[0] = '\0';
}

int lc_file_write_atomic(const char *path, const void *data, size_t len, lc_error *err)
{
    lc_afile af;
    int rc = lc_afile_open(&af, path, err);
    if (rc)
        return rc;
    if (len && fwrite(data, 1, len, af.f) != len) {
        int e = errno;
        lc_afile_abort(&af);
        return lc_fail(err, LC_EINPUT, "%s: write failed: %s", path, e ? strerror(e) : "I/O error");
    }
    return lc_afile_commit(&af, err);
}

void lc_file_ignore_sigxfsz(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGXFSZ, &sa, NULL);
}
