/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of SHA-256 (harness/synth/sha256.c) against the FIPS 180-2 / NIST example
 * vectors, and streaming: any split of the message gives the one-shot digest.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"
#include "check_main.h"

static void digest_of(const void *data, size_t len, char hex[65])
{
    lc_sha256 s;
    uint8_t d[32];
    lc_sha256_init(&s);
    lc_sha256_update(&s, data, len);
    lc_sha256_final(&s, d);
    lc_sha256_hex(d, hex);
}

typedef struct {
    const char *msg;
    const char *hex;
} vector;

/* FIPS 180-2 appendix B and the NIST examples (empty message, 448- and 896-bit messages) */
static const vector vectors[] = {
    {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrst"
     "nopqrstu",
     "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
};

START_TEST(test_sha256_fips_vectors)
{
    const vector *v = &vectors[_i];
    char hex[65];
    digest_of(v->msg, strlen(v->msg), hex);
    ck_assert_msg(!strcmp(hex, v->hex), "sha256(\"%s\") = %s, expected %s", v->msg, hex, v->hex);
}
END_TEST

/* FIPS 180-2 B.3: one million 'a', fed in blocks of 1000 */
START_TEST(test_sha256_million_a)
{
    char block[1000], hex[65];
    memset(block, 'a', sizeof block);
    lc_sha256 s;
    uint8_t d[32];
    lc_sha256_init(&s);
    for (int i = 0; i < 1000; i++)
        lc_sha256_update(&s, block, sizeof block);
    lc_sha256_final(&s, d);
    lc_sha256_hex(d, hex);
    ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
END_TEST

/* every split point of messages of 0..200 bytes (padding boundaries 55, 56, 63, 64, 119, 120
 * included) gives the one-shot digest */
START_TEST(test_sha256_streaming_splits)
{
    unsigned char msg[200];
    for (int i = 0; i < 200; i++)
        msg[i] = (unsigned char)(i * 37 + 11);
    for (size_t len = 0; len <= sizeof msg; len++) {
        char one[65];
        digest_of(msg, len, one);
        for (size_t cut = 0; cut <= len; cut += (len > 130 ? 7 : 1)) {
            lc_sha256 s;
            uint8_t d[32];
            char hex[65];
            lc_sha256_init(&s);
            lc_sha256_update(&s, msg, cut);
            lc_sha256_update(&s, msg + cut, 0);
            lc_sha256_update(&s, msg + cut, len - cut);
            lc_sha256_final(&s, d);
            lc_sha256_hex(d, hex);
            ck_assert_msg(!strcmp(hex, one), "length %zu split at %zu: %s, one-shot %s", len, cut, hex, one);
        }
    }
}
END_TEST

static Suite *sha256_suite(void)
{
    Suite *s = suite_create("sha256");
    TCase *tc = tcase_create("digest");
    tcase_add_loop_test(tc, test_sha256_fips_vectors, 0, (int)(sizeof vectors / sizeof vectors[0]));
    tcase_add_test(tc, test_sha256_million_a);
    tcase_add_test(tc, test_sha256_streaming_splits);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return lc_check_run(sha256_suite());
}
