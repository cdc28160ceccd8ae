/* SPDX-License-Identifier: MIT */
/*
 * A check fixture: the in-process reference engine loaded with the tiny dense checkpoint, in
 * `eng` and `mi`, for the tests of one TCase (tcase_add_checked_fixture(tc, dense_setup,
 * dense_teardown)). Header-only, one copy per test executable.
 */
#ifndef LC_TESTS_DENSE_FIXTURE_H
#define LC_TESTS_DENSE_FIXTURE_H

#include <check.h>

#include "lc_engine.h"

#define DENSE LC_SOURCE_DIR "/golden/tiny-dense"

static lc_engine *eng;
static lc_model_info mi;

static void dense_setup(void)
{
    lc_error err = {0};
    ck_assert_msg(lc_engine_ref_new(&eng, NULL, &err) == LC_OK, "%s", err.msg);
    ck_assert_msg(lc_engine_load(eng, DENSE, &mi, &err) == LC_OK, "%s", err.msg);
}

static void dense_teardown(void)
{
    lc_engine_free(eng);
    eng = NULL;
}

#endif /* LC_TESTS_DENSE_FIXTURE_H */
