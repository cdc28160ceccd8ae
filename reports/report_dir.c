/* SPDX-License-Identifier: MIT */
/*
 * The report directory, written whole (reports.h): every file into a fresh directory next to
 * the target, then one rename puts it in place. An existing report directory is swapped out
 * atomically (renameat2 RENAME_EXCHANGE; where the file system lacks it, moved aside first)
 * and removed, so nothing of an earlier run (old plots, a report of other cases) remains.
 *
 * Only a directory that holds nothing but report files is ever replaced: `--report .` or a
 * home directory is refused, never emptied.
 */
#define _GNU_SOURCE /* renameat2 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "report_util.h"
#include "reports.h"

#define PATH_CAP 4096

/* What a report directory may hold: this version's files, the PNG plots of earlier versions,
 * and temporary files of an interrupted writer. */
static int report_file(const char *name)
{
    static const char *const names[] = {"report.md", "report.html", "results.json", "junit.xml"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i]))
            return 1;
    const size_t n = strlen(name);
    return (n > 4 && !strcmp(name + n - 4, ".png")) || strstr(name, ".tmp-") != NULL;
}

/* The parent directory of path into buf ("." when path has no '/'). */
static void parent_of(char *buf, size_t n, const char *path)
{
    snprintf(buf, n, "%s", path);
    size_t len = strlen(buf);
    while (len > 1 && buf[len - 1] == '/')
        buf[--len] = '\0';
    char *slash = strrchr(buf, '/');
    if (slash == NULL)
        snprintf(buf, n, ".");
    else if (slash == buf)
        buf[1] = '\0';
    else
        *slash = '\0';
}

int lc_report_dir_check(const char *dir, lc_error *err)
{
    char parent[PATH_CAP];
    struct stat st;
    if (dir == NULL || dir[0] == '\0')
        return lc_fail(err, LC_EINPUT, "report: empty output directory");
    if (strlen(dir) + 32 >= PATH_CAP)
        return lc_fail(err, LC_EINPUT, "%.200s...: report directory path too long", dir);
    parent_of(parent, sizeof parent, dir);
    if (stat(parent, &st) != 0)
        return lc_fail(err, LC_EINPUT, "%s: cannot create the report directory: %s: %s", dir, parent,
                       strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return lc_fail(err, LC_EINPUT, "%s: cannot create the report directory: %s is not a directory", dir, parent);
    if (access(parent, W_OK | X_OK) != 0)
        return lc_fail(err, LC_EINPUT, "%s: cannot write the report directory: %s: %s", dir, parent, strerror(errno));
    if (lstat(dir, &st) != 0) {
        if (errno == ENOENT)
            return LC_OK;
        return lc_fail(err, LC_EINPUT, "%s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return lc_fail(err, LC_EINPUT, "%s: exists and is not a directory: refusing to replace it", dir);
    if (access(dir, W_OK | X_OK) != 0)
        return lc_fail(err, LC_EINPUT, "%s: cannot write the report directory: %s", dir, strerror(errno));
    DIR *d = opendir(dir);
    if (d == NULL)
        return lc_fail(err, LC_EINPUT, "%s: %s", dir, strerror(errno));
    int rc = LC_OK;
    for (struct dirent *e; rc == LC_OK && (e = readdir(d)) != NULL;) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[PATH_CAP + 512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (!report_file(e->d_name) || lstat(p, &st) != 0 || !S_ISREG(st.st_mode))
            rc = lc_fail(err, LC_EINPUT,
                         "%s: holds '%s', which no report writes: refusing to replace the directory "
                         "(choose another --report, or empty it)",
                         dir, e->d_name);
    }
    closedir(d);
    return rc;
}

/* Removes a directory that holds only regular files (a report directory); best effort. */
static void remove_flat_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char p[PATH_CAP + 512];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static void sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static int write_all(const lc_run_result *r, const lc_run_result *base, const char *tmp, lc_error *err)
{
    char p[PATH_CAP + 128];
    snprintf(p, sizeof p, "%s/results.json", tmp);
    int rc = lc_report_json_write(r, p, err);
    snprintf(p, sizeof p, "%s/report.md", tmp);
    if (!rc)
        rc = lc_report_md_write(r, base, p, err);
    snprintf(p, sizeof p, "%s/junit.xml", tmp);
    if (!rc)
        rc = lc_report_junit_write(r, p, err);
    snprintf(p, sizeof p, "%s/report.html", tmp);
    if (!rc)
        rc = lc_report_html_write(r, base, p, err);
    return rc;
}

int lc_report_dir_write(const lc_run_result *r, const lc_run_result *base, const char *dir, lc_error *err)
{
    static unsigned counter;
    char tmp[PATH_CAP + 64], parent[PATH_CAP], clean[PATH_CAP];
    int rc = lc_report_dir_check(dir, err);
    if (rc)
        return rc;
    snprintf(clean, sizeof clean, "%s", dir);
    for (size_t len = strlen(clean); len > 1 && clean[len - 1] == '/';)
        clean[--len] = '\0';
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld-%u", clean, (long)getpid(), counter++);
    if (mkdir(tmp, 0777) != 0)
        return lc_fail(err, LC_EINPUT, "%s: cannot create the report directory: %s", tmp, strerror(errno));
    rc = write_all(r, base, tmp, err);
    if (rc) {
        remove_flat_dir(tmp);
        /* the message names the file the user asked for, not the temporary directory */
        char *at = err ? strstr(err->msg, tmp) : NULL;
        if (at) {
            char rest[sizeof err->msg];
            snprintf(rest, sizeof rest, "%s", at + strlen(tmp));
            snprintf(at, sizeof err->msg - (size_t)(at - err->msg), "%s%s", clean, rest);
        }
        return rc;
    }
    struct stat st;
    if (lstat(clean, &st) != 0) {
        if (rename(tmp, clean) != 0) {
            const int e = errno;
            remove_flat_dir(tmp);
            return lc_fail(err, LC_EINPUT, "%s: cannot put the report in place: %s", clean, strerror(e));
        }
    } else if (renameat2(AT_FDCWD, tmp, AT_FDCWD, clean, RENAME_EXCHANGE) == 0) {
        remove_flat_dir(tmp); /* now the earlier report */
    } else {
        /* no atomic exchange here: move the earlier report aside, then the new one in */
        char old[PATH_CAP + 64];
        snprintf(old, sizeof old, "%s.old-%ld-%u", clean, (long)getpid(), counter++);
        if (rename(clean, old) != 0 || rename(tmp, clean) != 0) {
            const int e = errno;
            if (access(clean, F_OK) != 0)
                rename(old, clean);
            remove_flat_dir(tmp);
            return lc_fail(err, LC_EINPUT, "%s: cannot put the report in place: %s", clean, strerror(e));
        }
        remove_flat_dir(old);
    }
    parent_of(parent, sizeof parent, clean);
    sync_dir(parent);
    return LC_OK;
}
