/* SPDX-License-Identifier: MIT */
/*
 * JSON as every JSON input of the harness is read (results files today; case files in the
 * catalog): one value (its type is the caller's to check), only whitespace after it, no key twice in one object (the
 * last would otherwise silently win), no NUL byte anywhere, no raw control byte and no \u0000
 * inside strings (escaped control characters other than NUL are valid JSON and kept). Errors name the file, and the line and column
 * or the key.
 */
#ifndef LC_JSON_H
#define LC_JSON_H

#include <stddef.h>

#include "lc_error.h"

struct cJSON;

/* Parses LEN bytes of TEXT (from FILE, for messages) into *out (caller cJSON_Delete's).
 * LC_EINPUT on any violation, LC_EINTERNAL when out of memory. */
int lc_json_parse(const char *file, const char *text, size_t len, struct cJSON **out, lc_error *err);

#endif /* LC_JSON_H */
