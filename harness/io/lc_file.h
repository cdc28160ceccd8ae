/* SPDX-License-Identifier: MIT */
/*
 * Files the harness reads and writes, and the sizes it computes from them.
 *
 * Reading: every input goes through lc_file_open_input / lc_file_read: opened without ever
 * blocking (a FIFO, a device or a directory is refused), its size checked against a cap
 * before anything is read, and, where a root applies, refused when it resolves (symlinks
 * followed) outside that root.
 *
 * Sizes: every size computed from a file's declared values goes through lc_size_mul /
 * lc_size_add (overflow checked), and every allocation from a declared size is bounded by
 * the file's real size and by the memory limit (lc_mem_limit): the `--max-memory` option of
 * the CLI, by default half of this machine's physical memory.
 *
 * Writing: every output is written into a temporary file in the destination directory
 * ("<target>.tmp-<pid>-<n>"), checked on every write, fsync'ed, closed, and only then renamed
 * over the target; on any failure (ENOSPC, EFBIG, EROFS, ...) the temporary file is removed,
 * the earlier output stays byte-identical, and the error names the path and the system's
 * reason.
 */
#ifndef LC_FILE_H
#define LC_FILE_H

#include <stddef.h>
#include <stdio.h>

#include "lc_error.h"

/* ---------------------------------------------------------------- checked sizes */

/* a * b / a + b into *out; -1 (out untouched) when the result does not fit a size_t. */
int lc_size_mul(size_t a, size_t b, size_t *out);
int lc_size_add(size_t a, size_t b, size_t *out);

/* ---------------------------------------------------------------- the memory limit */

/* The bound on any allocation sized from a file's declared values, in bytes. */
size_t lc_mem_limit(void);
/* Sets it (0: back to the default, half of the physical memory). Called once by the CLI. */
void lc_mem_limit_set(size_t bytes);
/* Parses "4096", "512M", "2G", "1T" (powers of 1024); -1 on anything else or 0. */
int lc_parse_size(const char *s, size_t *out);

/* ---------------------------------------------------------------- reading */

/* Opens PATH read-only without blocking; refuses anything but a regular file, a file larger
 * than max_bytes, and (root not NULL) a file that resolves outside root. *fd_out is the
 * caller's to close; *size_out its size. LC_EINPUT with a message naming PATH. */
int lc_file_open_input(const char *path, const char *root, size_t max_bytes, int *fd_out, size_t *size_out,
                       lc_error *err);

/* The same, then the whole file into a malloc'ed buffer with a NUL after the last byte
 * (caller frees). max_bytes is further bounded by lc_mem_limit(). */
int lc_file_read(const char *path, const char *root, size_t max_bytes, char **buf_out, size_t *len_out,
                 lc_error *err);

/* ---------------------------------------------------------------- writing */

/* An output being written: f writes into tmp, which becomes path on commit. */
typedef struct {
    FILE *f;
    char path[4096];
    char tmp[4160];
} lc_afile;

/* Creates the temporary file next to path (exclusively, mode 0666 less the umask).
 * On failure nothing exists on disk and err names path. */
int lc_afile_open(lc_afile *af, const char *path, lc_error *err);
/* Checks every write, flushes, fsyncs, closes and renames the temporary file over path.
 * On any failure the temporary file is removed, path is untouched, and err names path and
 * the system's reason. af is closed either way. */
int lc_afile_commit(lc_afile *af, lc_error *err);
/* Closes and removes the temporary file. Safe on a closed or zeroed af. */
void lc_afile_abort(lc_afile *af);

/* Writes len bytes to path atomically (lc_afile_open + fwrite + commit). */
int lc_file_write_atomic(const char *path, const void *data, size_t len, lc_error *err);

/* Ignores SIGXFSZ, so that a write past the file-size limit fails with EFBIG (and is reported
 * like a full disk) instead of killing the process. */
void lc_file_ignore_sigxfsz(void);

#endif /* LC_FILE_H */
