/* Unit tests for server/uri.c: strict parsing of request targets. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/uri.h"
#include "tests/lib/fault_alloc.h"
#include "tests/lib/unit_run.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static struct http_uri u;

static void setup(void)
{
	fault_alloc_fail_at(-1);
	memset(&u, 0, sizeof u);
}

static void teardown(void)
{
	fault_alloc_fail_at(-1);
	http_uri_close(&u);
}

/* Parse @raw from an exact-size heap copy (so ASan sees over-reads), which
 * is freed before returning: nothing in @u may point into it. */
static int parse(const char *raw, const char **why)
{
	size_t n = strlen(raw) + 1;
	char *copy = malloc(n);
	int rc;

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, raw, n);
	http_uri_close(&u);
	*why = NULL;
	rc = http_uri_parse(copy, &u, why);
	memset(copy, 'Z', n - 1);
	free(copy);
	return rc;
}

static void parse_ok(const char *raw)
{
	const char *why;

	ck_assert_msg(parse(raw, &why) == 0, "\"%s\": %s", raw, why);
}

/* The argument @i is @name with @value (NULL: a flag without '='). */
static void check_arg(size_t i, const char *name, const char *value)
{
	ck_assert_uint_lt(i, u.n_args);
	ck_assert_str_eq(u.args[i].name, name);
	if (value == NULL) {
		ck_assert(!u.args[i].has_value);
		ck_assert_ptr_nonnull(u.args[i].value);
		ck_assert_str_eq(u.args[i].value, "");
		ck_assert_uint_eq(u.args[i].value_len, 0);
	} else {
		ck_assert(u.args[i].has_value);
		ck_assert_uint_eq(u.args[i].value_len, strlen(value));
		ck_assert_str_eq(u.args[i].value, value);
	}
}

/* ---- the path ------------------------------------------------------------ */

START_TEST(path_plain)
{
	parse_ok("/v1/kv/web/a");
	ck_assert_str_eq(u.path, "/v1/kv/web/a");
	ck_assert_uint_eq(u.path_len, 12);
	ck_assert_uint_eq(u.n_args, 0);

	parse_ok("");
	ck_assert_str_eq(u.path, "");
	ck_assert_uint_eq(u.path_len, 0);
	ck_assert_uint_eq(u.n_args, 0);
}
END_TEST

START_TEST(path_decoding)
{
	static const struct {
		const char *raw, *path;
	} v[] = {
	    {"/v1/kv/a%2Fb", "/v1/kv/a/b"},
	    {"/v1/kv/a%2fb", "/v1/kv/a/b"},
	    {"/v1/kv/a+b", "/v1/kv/a+b"}, /* '+' stays in a path */
	    {"/v1/kv/a%2Bb", "/v1/kv/a+b"},
	    {"/v1/kv/a%20b", "/v1/kv/a b"},
	    {"/v1/kv/%3F%26%3D", "/v1/kv/?&="},
	    {"/v1/kv/%25", "/v1/kv/%"},
	    {"/v1/kv/h%C3%A9", "/v1/kv/h\xc3\xa9"},
	};

	for (size_t i = 0; i < N_OF(v); i++) {
		parse_ok(v[i].raw);
		ck_assert_str_eq(u.path, v[i].path);
		ck_assert_uint_eq(u.path_len, strlen(v[i].path));
		ck_assert_uint_eq(u.n_args, 0);
	}
}
END_TEST

/* %00 puts a NUL inside the path; path_len counts past it. */
START_TEST(path_nul)
{
	parse_ok("/v1/kv/a%00b");
	ck_assert_uint_eq(u.path_len, 10);
	ck_assert_mem_eq(u.path, "/v1/kv/a\0b", 11);
	ck_assert_uint_eq(strlen(u.path), 8);
}
END_TEST

START_TEST(path_bad_escapes)
{
	static const char *const bad[] = {
	    "/v1/kv/%",	    "/v1/kv/%2", "/v1/kv/%zz",	   "/v1/kv/%2g",
	    "/v1/kv/%%",    "/%/x",	 "/v1/kv/a%2?x=1", /* cut by '?' */
	    "/v1/kv/%?x=1", "%",	 "/a%-1",
	};

	for (size_t i = 0; i < N_OF(bad); i++) {
		const char *why;
		ck_assert_msg(parse(bad[i], &why) == BCN_EINVAL,
			      "\"%s\" accepted", bad[i]);
		ck_assert_ptr_nonnull(why);
		ck_assert_ptr_nonnull(strstr(why, "path"));
	}
}
END_TEST

/* ---- the query ----------------------------------------------------------- */

START_TEST(query_form_decoding)
{
	parse_ok("/v1/kv/x?q=a+b%20c%2B&a+b=1&%26=%3D&e=1%262");
	ck_assert_str_eq(u.path, "/v1/kv/x");
	ck_assert_uint_eq(u.n_args, 4);
	check_arg(0, "q", "a b c+"); /* '+' is a space, "%2B" a '+' */
	check_arg(1, "a b", "1");
	check_arg(2, "&", "=");
	check_arg(3, "e", "1&2");
}
END_TEST

START_TEST(query_flags_and_empty_values)
{
	parse_ok("/v1/kv/x?recurse&keys=&separator=/&raw");
	ck_assert_uint_eq(u.n_args, 4);
	check_arg(0, "recurse", NULL);
	check_arg(1, "keys", "");
	check_arg(2, "separator", "/");
	check_arg(3, "raw", NULL);

	/* An empty name is still a parameter. */
	parse_ok("/x?=v&=");
	ck_assert_uint_eq(u.n_args, 2);
	check_arg(0, "", "v");
	check_arg(1, "", "");

	/* Only the first '=' splits; '?' inside the query is data. */
	parse_ok("/x?a=b=c&d=e?f");
	check_arg(0, "a", "b=c");
	check_arg(1, "d", "e?f");
}
END_TEST

/* A NUL in a parameter would let "index%00junk" pass for "index" (names
 * and values are compared as C strings): refused. */
START_TEST(query_value_nul)
{
	static const char *const bad[] = {"/x?a=1%002&b", "/x?index%00junk=5",
					  "/x?a=%00", "/x?%00"};
	const char *why = NULL;

	for (size_t i = 0; i < N_OF(bad); i++) {
		ck_assert_msg(parse(bad[i], &why) == BCN_EINVAL, "\"%s\"",
			      bad[i]);
		ck_assert_ptr_nonnull(why);
		http_uri_close(&u);
	}
}
END_TEST

START_TEST(query_empty_segments)
{
	static const struct {
		const char *raw;
		size_t n;
	} v[] = {
	    {"/x?", 0},		 {"/x?&", 0},  {"/x?&&&", 0}, {"/x?a&&b", 2},
	    {"/x?a=1&&b=2&", 2}, {"/x?&a", 1}, {"/x?a&", 1},  {"/x?&&a&&", 1},
	};

	for (size_t i = 0; i < N_OF(v); i++) {
		parse_ok(v[i].raw);
		ck_assert_str_eq(u.path, "/x");
		ck_assert_msg(u.n_args == v[i].n, "\"%s\": %zu args", v[i].raw,
			      u.n_args);
	}
	parse_ok("/x?a=1&&b=2&");
	check_arg(0, "a", "1");
	check_arg(1, "b", "2");
}
END_TEST

START_TEST(query_repeated_first_wins)
{
	const struct http_arg *a;

	parse_ok("/x?index=1&wait=5s&index=2&index");
	ck_assert_uint_eq(u.n_args, 4);
	a = http_uri_arg(&u, "index");
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_eq(a, &u.args[0]);
	ck_assert_str_eq(a->value, "1");
	a = http_uri_arg(&u, "wait");
	ck_assert_ptr_nonnull(a);
	ck_assert_str_eq(a->value, "5s");
	ck_assert_ptr_null(http_uri_arg(&u, "missing"));
	ck_assert_ptr_null(http_uri_arg(&u, "inde"));
	ck_assert_ptr_null(http_uri_arg(&u, "index2"));
	ck_assert_ptr_null(http_uri_arg(&u, ""));

	/* Decoded names are what is looked up. */
	parse_ok("/x?%72ecurse");
	ck_assert_ptr_nonnull(http_uri_arg(&u, "recurse"));
}
END_TEST

START_TEST(query_bad_escapes)
{
	static const char *const bad[] = {
	    "/x?a=%zz", "/x?a=%2",	"/x?a=%",  "/x?%=1",	   "/x?a%=1",
	    "/x?%zz",	"/x?ok=1&b=%4", "/x?a=%%", "/x?a=1%2&b=2", "/x?a=+%+",
	};

	for (size_t i = 0; i < N_OF(bad); i++) {
		const char *why;
		ck_assert_msg(parse(bad[i], &why) == BCN_EINVAL,
			      "\"%s\" accepted", bad[i]);
		ck_assert_ptr_nonnull(why);
		ck_assert_ptr_nonnull(strstr(why, "query"));
	}
}
END_TEST

/* Build "/x?" followed by @n parameters "pI=I" (or flags "pI"). */
static void many_params(char *out, size_t cap, int n, bool flags, bool gaps)
{
	size_t len = (size_t)snprintf(out, cap, "/x?");

	for (int i = 0; i < n; i++) {
		len += (size_t)snprintf(out + len, cap - len, "%sp%d%s%.0d&",
					gaps ? "&&" : "", i, flags ? "" : "=",
					flags ? 0 : i + 1);
		ck_assert_uint_lt(len, cap);
	}
}

START_TEST(query_param_limit)
{
	static char raw[4096];
	const char *why;

	many_params(raw, sizeof raw, HTTP_MAX_ARGS, false, false);
	parse_ok(raw);
	ck_assert_uint_eq(u.n_args, HTTP_MAX_ARGS);
	check_arg(63, "p63", "64");

	many_params(raw, sizeof raw, HTTP_MAX_ARGS, true, true);
	parse_ok(raw); /* empty segments do not count */
	ck_assert_uint_eq(u.n_args, HTTP_MAX_ARGS);
	check_arg(0, "p0", NULL);

	many_params(raw, sizeof raw, HTTP_MAX_ARGS + 1, false, false);
	ck_assert_int_eq(parse(raw, &why), BCN_EINVAL);
	ck_assert_ptr_nonnull(why);
	ck_assert_ptr_nonnull(strstr(why, "parameters"));

	many_params(raw, sizeof raw, 500, true, false);
	ck_assert_int_eq(parse(raw, &why), BCN_EINVAL);
}
END_TEST

/* The single allocation is sized for the worst case: many one-letter flags
 * (each decodes to a name, its NUL and an empty value). ASan watches. */
START_TEST(worst_case_sizes)
{
	static char raw[1024];
	size_t len = 0;

	raw[len++] = '?';
	for (int i = 0; i < HTTP_MAX_ARGS; i++) {
		raw[len++] = (char)('a' + i % 26);
		raw[len++] = '&';
	}
	raw[--len] = '\0';
	parse_ok(raw);
	ck_assert_uint_eq(u.n_args, HTTP_MAX_ARGS);
	ck_assert_uint_eq(u.path_len, 0);
	check_arg(63, "l", NULL);

	/* No '&' at all between "?" and the end. */
	parse_ok("?");
	ck_assert_uint_eq(u.n_args, 0);
	parse_ok("?a");
	check_arg(0, "a", NULL);
	parse_ok("?=");
	check_arg(0, "", "");
}
END_TEST

/* Random targets from a small alphabet: 0 or BCN_EINVAL, never a crash,
 * an over-read or a leak; every string fits the single allocation. */
START_TEST(random_targets)
{
	static const char alphabet[] = "a=&%+?2F0/";
	uint32_t seed = 4242;
	char raw[160];

	for (int iter = 0; iter < 20000; iter++) {
		const char *why;
		size_t len;
		int rc;

		seed = seed * 1103515245u + 12345u;
		len = (seed >> 8) % (sizeof raw - 1);
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			raw[i] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
		}
		raw[len] = '\0';
		rc = parse(raw, &why);
		ck_assert(rc == 0 || rc == BCN_EINVAL);
		if (rc == BCN_EINVAL)
			ck_assert_ptr_nonnull(why);
		else
			for (size_t i = 0; i < u.n_args; i++)
				ck_assert_uint_le(strlen(u.args[i].name), len);
	}
}
END_TEST

/* ---- allocation failure and cleanup -------------------------------------- */

START_TEST(oom)
{
	const char *why = NULL;
	int n;

	for (n = 0;; n++) {
		int rc, fired;

		fault_alloc_fail_at(n);
		rc = http_uri_parse("/v1/kv/a%2Fb?recurse&index=5", &u, &why);
		fired = fault_alloc_fired();
		fault_alloc_fail_at(-1);
		if (!fired) {
			ck_assert_int_eq(rc, 0);
			ck_assert_str_eq(u.path, "/v1/kv/a/b");
			http_uri_close(&u);
			break;
		}
		ck_assert_int_eq(rc, BCN_ENOMEM);
		ck_assert_ptr_null(u.mem);
		ck_assert_ptr_null(u.path);
		ck_assert_uint_eq(u.n_args, 0);
		http_uri_close(&u); /* "in every case" */
	}
	ck_assert_int_eq(n, 1); /* one allocation, as documented */
}
END_TEST

START_TEST(close_after_error_and_twice)
{
	const char *why;

	ck_assert_int_eq(http_uri_parse("/a?b=%zz", &u, &why), BCN_EINVAL);
	http_uri_close(&u);
	ck_assert_ptr_null(u.mem);
	ck_assert_uint_eq(u.n_args, 0);
	http_uri_close(&u);
	ck_assert_int_eq(http_uri_parse("/%", &u, &why), BCN_EINVAL);
	http_uri_close(&u);
}
END_TEST

static Suite *uri_suite(void)
{
	Suite *s = suite_create("uri");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, path_plain);
	tcase_add_test(tc, path_decoding);
	tcase_add_test(tc, path_nul);
	tcase_add_test(tc, path_bad_escapes);
	tcase_add_test(tc, query_form_decoding);
	tcase_add_test(tc, query_flags_and_empty_values);
	tcase_add_test(tc, query_value_nul);
	tcase_add_test(tc, query_empty_segments);
	tcase_add_test(tc, query_repeated_first_wins);
	tcase_add_test(tc, query_bad_escapes);
	tcase_add_test(tc, query_param_limit);
	tcase_add_test(tc, worst_case_sizes);
	tcase_add_test(tc, random_targets);
	tcase_add_test(tc, oom);
	tcase_add_test(tc, close_after_error_and_twice);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(uri_suite());
}
