/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the harness file helpers (harness/io/lc_file.c, lc_json.c): checked sizes, size
 * parsing for --max-memory, inputs that are not regular files or too big, atomic outputs, and
 * the JSON rules. Temporary files go under LC_BINARY_DIR/file-tmp.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "check_main.h"
#include "lc_file.h"
#include "lc_json.h"

#define TMP LC_BINARY_DIR "/file-tmp"

START_TEST(test_file_size_arithmetic)
{
    size_t r = 7;
    ck_assert_int_eq(lc_size_mul(SIZE_MAX / 2, 2, &r), 0);
    ck_assert(r == SIZE_MAX - 1);
    ck_assert_int_eq(lc_size_mul(SIZE_MAX / 2 + 1, 2, &r), -1);
    ck_assert(r == SIZE_MAX - 1); /* untouched on overflow */
    ck_assert_int_eq(lc_size_mul(0, SIZE_MAX, &r), 0);
    ck_assert(r == 0);
    ck_assert_int_eq(lc_size_add(SIZE_MAX - 1, 1, &r), 0);
    ck_assert(r == SIZE_MAX);
    ck_assert_int_eq(lc_size_add(SIZE_MAX, 1, &r), -1);
}
END_TEST

static const struct {
    const char *text;
    int ok;
    size_t want;
} size_rows[] = {
    {"4096", 1, 4096}, {"512M", 1, (size_t)512 << 20}, {"2G", 1, (size_t)2 << 30}, {"1T", 1, (size_t)1 << 40},
    {"3k", 1, 3072}, {"2GiB", 1, (size_t)2 << 30}, {"0", 0, 0}, {"-1", 0, 0}, {"+5", 0, 0}, {"", 0, 0},
    {"12X", 0, 0}, {"1G2", 0, 0}, {" 5", 0, 0}, {"99999999999999999999", 0, 0}, {"20000000T", 0, 0},
};

START_TEST(test_file_parse_size)
{
    size_t got = 0;
    int rc = lc_parse_size(size_rows[_i].text, &got);
    ck_assert_msg((rc == 0) == size_rows[_i].ok, "'%s': rc %d", size_rows[_i].text, rc);
    if (size_rows[_i].ok)
        ck_assert_msg(got == size_rows[_i].want, "'%s': %zu", size_rows[_i].text, got);
}
END_TEST

START_TEST(test_file_inputs_refused)
{
    mkdir(TMP, 0755);
    lc_error err;
    char *buf;
    size_t len;
    ck_assert_int_eq(lc_file_read("/dev/zero", NULL, 1 << 20, &buf, &len, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "/dev/zero: not a regular file (a device)"), "%s", err.msg);
    ck_assert_int_eq(lc_file_read(TMP, NULL, 1 << 20, &buf, &len, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "a directory"), "%s", err.msg);
    const char *fifo = TMP "/fifo";
    unlink(fifo);
    ck_assert(mkfifo(fifo, 0644) == 0);
    ck_assert_int_eq(lc_file_read(fifo, NULL, 1 << 20, &buf, &len, &err), LC_EINPUT); /* never blocks */
    ck_assert_msg(strstr(err.msg, "a FIFO"), "%s", err.msg);
    unlink(fifo);
    const char *big = TMP "/big";
    FILE *f = fopen(big, "wb");
    ck_assert(f && fputs("0123456789", f) >= 0 && fclose(f) == 0);
    ck_assert_int_eq(lc_file_read(big, NULL, 9, &buf, &len, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "10 bytes, more than the limit of 9"), "%s", err.msg);
    ck_assert_int_eq(lc_file_read(big, NULL, 10, &buf, &len, &err), LC_OK);
    ck_assert(len == 10 && buf[10] == '\0' && !strcmp(buf, "0123456789"));
    free(buf);
    /* the memory limit caps any cap */
    lc_mem_limit_set(5);
    ck_assert_int_eq(lc_file_read(big, NULL, 10, &buf, &len, &err), LC_EINPUT);
    lc_mem_limit_set(0);
    /* a link leaving its root */
    const char *link = TMP "/link";
    unlink(link);
    ck_assert(symlink("/etc/hostname", link) == 0);
    ck_assert_int_eq(lc_file_read(link, TMP, 1 << 20, &buf, &len, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "outside"), "%s", err.msg);
    unlink(link);
}
END_TEST

START_TEST(test_file_atomic_write)
{
    mkdir(TMP, 0755);
    lc_error err;
    const char *path = TMP "/out.txt";
    ck_assert_int_eq(lc_file_write_atomic(path, "first", 5, &err), LC_OK);
    ck_assert_int_eq(lc_file_write_atomic(path, "second", 6, &err), LC_OK);
    char *buf;
    size_t len;
    ck_assert_int_eq(lc_file_read(path, NULL, 100, &buf, &len, &err), LC_OK);
    ck_assert_str_eq(buf, "second");
    free(buf);
    ck_assert_int_eq(lc_file_write_atomic(TMP "/no/such/dir/out.txt", "x", 1, &err), LC_EINPUT);
    ck_assert_msg(strstr(err.msg, "no/such/dir/out.txt: cannot create: No such file"), "%s", err.msg);
}
END_TEST

static const struct {
    const char *text;
    const char *error; /* NULL: accepted */
} json_rows[] = {
    {"{\"a\": 1, \"b\": {\"a\": 2}}", NULL},
    {"{\"a\": \"tab\\tnewline\\n\\u0001 kept\"}", NULL},
    {"{\"a\": 1, \"a\": 2}", "key 'a' appears twice in the top-level object"},
    {"{\"o\": {\"k\": 1, \"k\": 1}}", "key 'k' appears twice in object 'o'"},
    {"{\"a\": \"x\\u0000y\"}", "control character or NUL"},
    {"{\"a\": \"x\ty\"}", "control character or NUL"},
    {"{\"a\": 1} x", "parsing stopped at line 1 column 10"},
    {"", "empty"},
    {"{\"a\":\n  [1,,2]}", "line 2"},
};

START_TEST(test_file_json_rules)
{
    cJSON *doc = NULL;
    lc_error err = {0};
    int rc = lc_json_parse("x.json", json_rows[_i].text, strlen(json_rows[_i].text), &doc, &err);
    if (!json_rows[_i].error) {
        ck_assert_msg(rc == LC_OK, "'%s': %s", json_rows[_i].text, err.msg);
        ck_assert_ptr_nonnull(doc);
    } else {
        ck_assert_msg(rc == LC_EINPUT, "'%s' accepted", json_rows[_i].text);
        ck_assert_ptr_null(doc);
        ck_assert_msg(strstr(err.msg, "x.json: ") == err.msg && strstr(err.msg, json_rows[_i].error), "'%s': %s",
                      json_rows[_i].text, err.msg);
    }
    cJSON_Delete(doc);
}
END_TEST

/* Many keys in one object: the duplicate check sorts, it never compares every pair. */
START_TEST(test_file_json_many_keys)
{
    const int n = 50000;
    char *text = malloc((size_t)n * 24 + 16);
    ck_assert(text != NULL);
    size_t at = 0;
    text[at++] = '{';
    for (int i = 0; i < n; i++)
        at += (size_t)sprintf(text + at, "%s\"k%d\": %d", i ? ", " : "", i, i);
    text[at++] = '}';
    cJSON *doc = NULL;
    lc_error err;
    ck_assert_int_eq(lc_json_parse("many.json", text, at, &doc, &err), LC_OK);
    cJSON_Delete(doc);
    free(text);
}
END_TEST

static Suite *file_suite(void)
{
    Suite *s = suite_create("file");
    TCase *tc = tcase_create("sizes");
    tcase_add_test(tc, test_file_size_arithmetic);
    tcase_add_loop_test(tc, test_file_parse_size, 0, (int)(sizeof size_rows / sizeof size_rows[0]));
    suite_add_tcase(s, tc);
    tc = tcase_create("files");
    tcase_add_test(tc, test_file_inputs_refused);
    tcase_add_test(tc, test_file_atomic_write);
    suite_add_tcase(s, tc);
    tc = tcase_create("json");
    tcase_add_loop_test(tc, test_file_json_rules, 0, (int)(sizeof json_rows / sizeof json_rows[0]));
    tcase_add_test(tc, test_file_json_many_keys);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return lc_check_run(file_suite());
}
