/* SPDX-License-Identifier: MIT */
/*
 * What a results file records about the run beside the cases (cli.h): the source revision,
 * the catalog's hash and the hashes of the checkpoints the cases used.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "lc_file.h"
#include "sha256.h"
#include "synth.h"

#ifndef LC_SOURCE_ROOT
#define LC_SOURCE_ROOT "."
#endif

/* Checkpoints larger than this are recorded by name with an empty hash: hashing a real-scale
 * checkpoint (gigabytes) would cost more than the run. */
#define HASH_MAX_BYTES ((long long)512 << 20)

void lc_run_meta_git(char *out, size_t n, const char *root)
{
    char cmd[4400];
    out[0] = '\0';
    if (strchr(root, '\'') != NULL)
        return;
    snprintf(cmd, sizeof cmd, "git -C '%s' describe --always --dirty --abbrev=12 2>/dev/null", root);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return;
    if (fgets(out, (int)n, p) == NULL)
        out[0] = '\0';
    out[strcspn(out, "\r\n")] = '\0';
    if (pclose(p) != 0)
        out[0] = '\0';
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int lc_run_meta_catalog(char hex[65], const char *dir)
{
    char *names[512];
    int n = 0;
    hex[0] = '\0';
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    for (struct dirent *e; (e = readdir(d)) != NULL && n < 512;) {
        const size_t len = strlen(e->d_name);
        if (len > 5 && !strcmp(e->d_name + len - 5, ".json") && e->d_name[0] != '.')
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], by_name);
    lc_sha256 s;
    lc_sha256_init(&s);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char path[4400 + 256];
        char *buf = NULL;
        size_t len = 0;
        lc_error err = {0};
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (!rc && lc_file_read(path, NULL, (size_t)64 << 20, &buf, &len, &err) == 0) {
            lc_sha256_update(&s, names[i], strlen(names[i]) + 1);
            lc_sha256_update(&s, buf, len);
        } else {
            rc = -1;
        }
        free(buf);
        free(names[i]);
    }
    uint8_t dg[32];
    lc_sha256_final(&s, dg);
    if (!rc && n > 0)
        lc_sha256_hex(dg, hex);
    return rc;
}

static long long dir_bytes(const char *dir)
{
    long long total = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        char p[4096 + 520 + 260];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode))
            total += (long long)st.st_size;
    }
    closedir(d);
    return total;
}

void lc_run_meta_checkpoints(lc_run_result *r, const char *root)
{
    for (int i = 0; i < r->n_cases; i++) {
        const char *ck = r->cases[i].checkpoint;
        int seen = !ck[0];
        for (int j = 0; j < r->n_checkpoints && !seen; j++)
            seen = !strcmp(r->checkpoints[j].path, ck);
        if (seen || r->n_checkpoints == LC_MAX_CHECKPOINTS)
            continue;
        lc_checkpoint_hash *h = &r->checkpoints[r->n_checkpoints++];
        snprintf(h->path, sizeof h->path, "%s", ck);
        char dir[4096 + 520];
        lc_error err = {0};
        snprintf(dir, sizeof dir, "%s%s%s", ck[0] == '/' ? "" : root, ck[0] == '/' ? "" : "/", ck);
        const long long bytes = dir_bytes(dir);
        if (bytes < 0 || bytes > HASH_MAX_BYTES || lc_synth_dir_hash(dir, h->sha256, &err) != 0)
            h->sha256[0] = '\0';
    }
}
