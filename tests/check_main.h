/* The one way every Check executable here runs its suite and turns the result into an exit
 * code (0 all passed, 1 otherwise); the fork mode comes from CK_FORK (the CTest registration
 * sets CK_FORK=no so valgrind sees one process). */
#ifndef LC_CHECK_MAIN_H
#define LC_CHECK_MAIN_H

#include <check.h>

static inline int lc_check_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

#endif /* LC_CHECK_MAIN_H */
