/* Unit tests for client/cache.c: the disk cache's file format (round trip,
 * every damaged form is a miss, hash collisions are a miss) and its files
 * (atomic replacement, no temp files left, identical answers not
 * rewritten). */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/client_int.h"
#include "tests/lib/unit_run.h"

static char dir[64];

static void setup(void)
{
	snprintf(dir, sizeof dir, "/tmp/beacon-cache-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[512];

	while (d != NULL && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' &&
		    (e->d_name[1] == '\0' || strcmp(e->d_name, "..") == 0))
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		unlink(p);
	}
	if (d != NULL)
		closedir(d);
	rmdir(dir);
}

static struct beacon__cache_entry entry(const char *key, const char *body)
{
	struct beacon__cache_entry e = {
	    .key = (char *)key,
	    .status = 200,
	    .index = 42,
	    .time_ms = 1763773200123,
	    .body = (char *)body,
	    .len = strlen(body),
	};
	return e;
}

static size_t count_files(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	while (d != NULL && (e = readdir(d)) != NULL)
		n += e->d_name[0] != '.' || strncmp(e->d_name, ".tmp", 4) == 0;
	if (d != NULL)
		closedir(d);
	return n;
}

START_TEST(encode_decode_round_trip)
{
	static const char body[] = "[{\"Key\":\"a\",\"Value\":\"Yg==\"}]";
	struct beacon__cache_entry e = entry("GET /v1/kv/a?recurse", body), d;
	char *buf;
	size_t len;

	ck_assert_int_eq(beacon__cache_encode(&e, &buf, &len), 0);
	ck_assert(strncmp(buf, "BEACON-CACHE 1\nkey GET /v1/kv/a?recurse\n",
			  40) == 0);
	ck_assert_int_eq(beacon__cache_decode(buf, len, e.key, &d), 0);
	ck_assert_str_eq(d.key, e.key);
	ck_assert_int_eq(d.status, 200);
	ck_assert_uint_eq(d.index, 42);
	ck_assert_int_eq(d.time_ms, 1763773200123);
	ck_assert_uint_eq(d.len, strlen(body));
	ck_assert_str_eq(d.body, body);
	beacon__cache_entry_close(&d);
	/* Any key is accepted with NULL. */
	ck_assert_int_eq(beacon__cache_decode(buf, len, NULL, &d), 0);
	beacon__cache_entry_close(&d);
	free(buf);
}
END_TEST

START_TEST(binary_and_empty_bodies)
{
	static const char bin[] = {'a', '\0', '\n', '\n', 'z'};
	struct beacon__cache_entry e = entry("k", ""), d;
	char *buf;
	size_t len;

	e.body = (char *)bin;
	e.len = sizeof bin;
	e.status = 404;
	ck_assert_int_eq(beacon__cache_encode(&e, &buf, &len), 0);
	ck_assert_int_eq(beacon__cache_decode(buf, len, "k", &d), 0);
	ck_assert_uint_eq(d.len, sizeof bin);
	ck_assert(memcmp(d.body, bin, sizeof bin) == 0);
	ck_assert_int_eq(d.status, 404);
	beacon__cache_entry_close(&d);
	free(buf);

	e.body = "";
	e.len = 0;
	ck_assert_int_eq(beacon__cache_encode(&e, &buf, &len), 0);
	ck_assert_int_eq(beacon__cache_decode(buf, len, "k", &d), 0);
	ck_assert_uint_eq(d.len, 0);
	ck_assert_str_eq(d.body, "");
	beacon__cache_entry_close(&d);
	free(buf);
}
END_TEST

START_TEST(damaged_files_are_misses)
{
	struct beacon__cache_entry e = entry("GET /v1/kv/x", "[1,2,3]"), d;
	char *buf, *copy;
	size_t len;

	ck_assert_int_eq(beacon__cache_encode(&e, &buf, &len), 0);
	/* Every truncation. */
	for (size_t n = 0; n < len; n++)
		ck_assert_int_eq(beacon__cache_decode(buf, n, e.key, &d),
				 BEACON_EPROTO);
	/* Every single-byte change, except inside the key (a different
	 * key: ENOTFOUND) or in digits that stay digits of a valid but
	 * different header (time, index): those still parse. */
	copy = malloc(len);
	for (size_t i = 0; i < len; i++) {
		int rc;
		memcpy(copy, buf, len);
		copy[i] ^= 0x40;
		rc = beacon__cache_decode(copy, len, e.key, &d);
		if (rc == 0) {
			/* Only a changed time or index may go unnoticed,
			 * and then the body is still the right one. */
			ck_assert_str_eq(d.body, "[1,2,3]");
			beacon__cache_entry_close(&d);
		} else {
			ck_assert(rc == BEACON_EPROTO ||
				  rc == BEACON_ENOTFOUND);
		}
	}
	/* A byte too many. */
	free(copy);
	copy = malloc(len + 1);
	memcpy(copy, buf, len);
	copy[len] = 'x';
	ck_assert_int_eq(beacon__cache_decode(copy, len + 1, e.key, &d),
			 BEACON_EPROTO);
	free(copy);
	free(buf);
}
END_TEST

START_TEST(another_key_is_a_miss)
{
	struct beacon__cache_entry e = entry("GET /v1/kv/a", "x"), d;
	char *buf;
	size_t len;

	ck_assert_int_eq(beacon__cache_encode(&e, &buf, &len), 0);
	ck_assert_int_eq(beacon__cache_decode(buf, len, "GET /v1/kv/b", &d),
			 BEACON_ENOTFOUND);
	ck_assert_int_eq(beacon__cache_decode(buf, len, "GET /v1/kv/", &d),
			 BEACON_ENOTFOUND);
	free(buf);
}
END_TEST

START_TEST(keys_with_newlines_are_refused)
{
	struct beacon__cache_entry e = entry("GET /v1/kv/a\nstatus 200", "x");
	char *buf;
	size_t len;

	ck_assert_int_eq(beacon__cache_encode(&e, &buf, &len), BEACON_EINVAL);
}
END_TEST

START_TEST(names_are_stable_hex)
{
	char a[32], b[32], c[32];

	beacon__cache_name("GET /v1/kv/a", a, sizeof a);
	beacon__cache_name("GET /v1/kv/a", b, sizeof b);
	beacon__cache_name("GET /v1/kv/b", c, sizeof c);
	ck_assert_str_eq(a, b);
	ck_assert_str_ne(a, c);
	ck_assert_uint_eq(strlen(a), 16 + strlen(".cache"));
	ck_assert_uint_eq(strspn(a, "0123456789abcdef"), 16);
}
END_TEST

START_TEST(store_then_load)
{
	struct beacon__cache_entry e = entry("GET /v1/kv/app?recurse", "[42]"),
				   d;

	ck_assert_int_eq(beacon__cache_load(dir, e.key, &d), BEACON_ENOTFOUND);
	ck_assert_int_eq(beacon__cache_store(dir, &e), 0);
	ck_assert_int_eq(beacon__cache_load(dir, e.key, &d), 0);
	ck_assert_str_eq(d.body, "[42]");
	ck_assert_uint_eq(d.index, 42);
	beacon__cache_entry_close(&d);
	/* A newer answer replaces it; no temp file is left behind. */
	e.body = "[43]";
	e.index = 43;
	ck_assert_int_eq(beacon__cache_store(dir, &e), 0);
	ck_assert_int_eq(beacon__cache_load(dir, e.key, &d), 0);
	ck_assert_str_eq(d.body, "[43]");
	beacon__cache_entry_close(&d);
	ck_assert_uint_eq(count_files(), 1);
}
END_TEST

START_TEST(same_answer_is_not_rewritten)
{
	struct beacon__cache_entry e = entry("GET /v1/kv/s", "[1]"), d;
	char name[32], path[128];
	struct stat st1, st2;

	ck_assert_int_eq(beacon__cache_store(dir, &e), 0);
	beacon__cache_name(e.key, name, sizeof name);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	ck_assert_int_eq(stat(path, &st1), 0);
	e.time_ms += 1000; /* within a minute: same file */
	ck_assert_int_eq(beacon__cache_store(dir, &e), 0);
	ck_assert_int_eq(stat(path, &st2), 0);
	ck_assert_uint_eq(st1.st_ino, st2.st_ino);
	/* More than a minute later, the time is refreshed. */
	e.time_ms += 120000;
	ck_assert_int_eq(beacon__cache_store(dir, &e), 0);
	ck_assert_int_eq(beacon__cache_load(dir, e.key, &d), 0);
	ck_assert_int_eq(d.time_ms, e.time_ms);
	beacon__cache_entry_close(&d);
}
END_TEST

START_TEST(garbage_file_is_a_miss)
{
	struct beacon__cache_entry d;
	char name[32], path[128];
	int fd;

	beacon__cache_name("GET /v1/kv/g", name, sizeof name);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "BEACON-CACHE 1\nkey", 18), 18);
	close(fd);
	ck_assert_int_eq(beacon__cache_load(dir, "GET /v1/kv/g", &d),
			 BEACON_ENOTFOUND);
}
END_TEST

START_TEST(unwritable_dir_is_eio)
{
	struct beacon__cache_entry e = entry("GET /v1/kv/u", "[]");

	ck_assert_int_eq(beacon__cache_store("/nonexistent/beacon/cache", &e),
			 BEACON_EIO);
}
END_TEST

static Suite *cache_suite(void)
{
	Suite *s = suite_create("client/cache");
	TCase *fmt = tcase_create("format");
	TCase *files = tcase_create("files");

	tcase_add_test(fmt, encode_decode_round_trip);
	tcase_add_test(fmt, binary_and_empty_bodies);
	tcase_add_test(fmt, damaged_files_are_misses);
	tcase_add_test(fmt, another_key_is_a_miss);
	tcase_add_test(fmt, keys_with_newlines_are_refused);
	tcase_add_test(fmt, names_are_stable_hex);
	suite_add_tcase(s, fmt);

	tcase_add_checked_fixture(files, setup, teardown);
	tcase_add_test(files, store_then_load);
	tcase_add_test(files, same_answer_is_not_rewritten);
	tcase_add_test(files, garbage_file_is_a_miss);
	tcase_add_test(files, unwritable_dir_is_eio);
	suite_add_tcase(s, files);
	return s;
}

int main(void)
{
	return unit_run(cache_suite());
}
