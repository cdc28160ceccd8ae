/* SPDX-License-Identifier: MIT */
/* The one way every Check executable here runs its suite and turns the result into an exit
 * code (0 all passed, 1 otherwise); the fork mode comes from CK_FORK (the CTest registration
 * sets CK_FORK=no so valgrind sees one process). Per-test results reach CTest three ways: the
 * verbosity from CK_VERBOSITY (the registration sets "verbose": one line per test, passed or
 * failed, in the test's output), Check's XML log where CK_XML_LOG_FILE_NAME names it (the
 * registration writes build/tests/check-xml/<test>.xml), and two CTest measurements, the
 * tests run and failed. */
#ifndef LC_CHECK_MAIN_H
#define LC_CHECK_MAIN_H

#include <check.h>
#include <stdio.h>

static inline int lc_check_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    printf("<DartMeasurement name=\"checks_run\" type=\"numeric/integer\">%d</DartMeasurement>\n"
           "<DartMeasurement name=\"checks_failed\" type=\"numeric/integer\">%d</DartMeasurement>\n",
           srunner_ntests_run(sr), failed);
    srunner_free(sr);
    return failed ? 1 : 0;
}

#endif /* LC_CHECK_MAIN_H */
