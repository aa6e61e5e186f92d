/* Unit tests for client/cli_args.c: Go-style flag parsing of the CLI and
 * the environment `beacon exec` makes from a KV prefix. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/cli.h"
#include "tests/lib/fault_alloc.h"
#include "tests/lib/unit_run.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

struct opts {
	bool recurse, cas;
	const char *sep;
	uint64_t index, wait;
	bool index_set;
	struct cli_list tags;
};

static int parse(struct opts *o, int argc, char **argv, char *err)
{
	struct cli_flag flags[] = {
	    {"recurse", CLI_BOOL, &o->recurse, NULL, NULL, ""},
	    {"cas", CLI_BOOL, &o->cas, NULL, NULL, ""},
	    {"separator", CLI_STR, &o->sep, NULL, "S", ""},
	    {"modify-index", CLI_U64, &o->index, &o->index_set, "N", ""},
	    {"wait", CLI_DURATION, &o->wait, NULL, "D", ""},
	    {"tag", CLI_LIST, &o->tags, NULL, "T", ""},
	};

	memset(o, 0, sizeof *o);
	o->sep = "/";
	return cli_flags_parse(flags, N_OF(flags), argc, argv, err, 256);
}

#define ARGV(...)	   ((char *[]){__VA_ARGS__, NULL})
#define ARGC(...)	   ((int)(sizeof((char *[]){__VA_ARGS__}) / sizeof(char *)))
#define PARSE(o, err, ...) parse(o, ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), err)

START_TEST(go_flag_forms)
{
	struct opts o;
	char err[256];

	ck_assert_int_eq(PARSE(&o, err, "-recurse", "--cas", "-separator=:",
			       "--modify-index", "42", "-wait=1m30s", "key"),
			 6);
	ck_assert(o.recurse && o.cas);
	ck_assert_str_eq(o.sep, ":");
	ck_assert_uint_eq(o.index, 42);
	ck_assert(o.index_set);
	ck_assert_uint_eq(o.wait, 90000);
	cli_list_free(&o.tags);

	/* -flag=false for bools; "" is a valid string value. */
	ck_assert_int_eq(PARSE(&o, err, "-recurse=false", "-separator=", "k"),
			 2);
	ck_assert(!o.recurse);
	ck_assert_str_eq(o.sep, "");
	ck_assert(!o.index_set);
	cli_list_free(&o.tags);
}
END_TEST

START_TEST(flags_stop_at_positionals)
{
	struct opts o;
	char err[256];

	/* Go's flag package: the first non-flag ends the flags. */
	ck_assert_int_eq(PARSE(&o, err, "key", "-recurse"), 0);
	ck_assert(!o.recurse);
	/* "-" is stdin, a positional. */
	ck_assert_int_eq(PARSE(&o, err, "-cas", "-", "-recurse"), 1);
	/* "--" ends the flags and is skipped. */
	ck_assert_int_eq(PARSE(&o, err, "-cas", "--", "-recurse", "x"), 2);
	ck_assert(!o.recurse);
	ck_assert_int_eq(PARSE(&o, err, "-cas"), 1);
	cli_list_free(&o.tags);
}
END_TEST

START_TEST(repeatable_flags)
{
	struct opts o;
	char err[256];

	ck_assert_int_eq(PARSE(&o, err, "-tag", "a", "-tag=b", "--tag", "c"),
			 5);
	ck_assert_uint_eq(o.tags.n, 3);
	ck_assert_str_eq(o.tags.v[0], "a");
	ck_assert_str_eq(o.tags.v[2], "c");
	cli_list_free(&o.tags);
}
END_TEST

START_TEST(flag_errors)
{
	static const struct {
		const char *arg, *arg2, *msg;
	} bad[] = {
	    {"-nope", NULL, "flag provided but not defined: -nope"},
	    {"-modify-index", NULL, "flag needs an argument: -modify-index"},
	    {"-modify-index=x", NULL, "invalid value \"x\" for flag"},
	    {"-modify-index=-1", NULL, "invalid value"},
	    {"-wait=30", NULL, "invalid value \"30\""},
	    {"-recurse=maybe", NULL, "invalid value"},
	    {"---recurse", NULL, "bad flag syntax"},
	    {"-=x", NULL, "bad flag syntax"},
	};
	struct opts o;
	char err[256];

	for (size_t i = 0; i < N_OF(bad); i++) {
		char *argv[] = {(char *)bad[i].arg, NULL};
		err[0] = '\0';
		ck_assert_msg(parse(&o, 1, argv, err) == CLI_FLAGS_ERROR, "%s",
			      bad[i].arg);
		ck_assert_msg(strstr(err, bad[i].msg) != NULL, "%s: %s",
			      bad[i].arg, err);
		cli_list_free(&o.tags);
	}
}
END_TEST

START_TEST(help_flags)
{
	struct opts o;
	char err[256];

	ck_assert_int_eq(PARSE(&o, err, "-h"), CLI_FLAGS_HELP);
	ck_assert_int_eq(PARSE(&o, err, "--help"), CLI_FLAGS_HELP);
	ck_assert_int_eq(PARSE(&o, err, "-cas", "-help"), CLI_FLAGS_HELP);
	cli_list_free(&o.tags);
}
END_TEST

START_TEST(bools)
{
	static const char *const t[] = {"1", "t", "T", "true", "TRUE", "True"};
	static const char *const f[] = {"0",	 "f",	  "F",
					"false", "FALSE", "False"};
	bool v;

	for (size_t i = 0; i < N_OF(t); i++) {
		ck_assert(cli_parse_bool(t[i], &v) && v);
		ck_assert(cli_parse_bool(f[i], &v) && !v);
	}
	ck_assert(!cli_parse_bool("yes", &v));
	ck_assert(!cli_parse_bool("", &v));
}
END_TEST

/* ---- exec's environment ----------------------------------------------------
 */

static const char kv[] =
    "[{\"Key\":\"app/config/\",\"Value\":null},"
    "{\"Key\":\"app/config/db_url\",\"Value\":\"cGc6Ly9h\"},"	 /* pg://a */
    "{\"Key\":\"app/config/http.port\",\"Value\":\"ODA4MA==\"}," /* 8080 */
    "{\"Key\":\"app/config/sub/dir/\",\"Value\":null},"
    "{\"Key\":\"app/config/sub/x-y\",\"Value\":\"MQ==\"}," /* 1 */
    "{\"Key\":\"app/config/9lives\",\"Value\":null},"
    "{\"Key\":\"app/config/DB_URL\",\"Value\":\"cGc6Ly9i\"}]"; /* pg://b */

START_TEST(env_from_prefix)
{
	char **env = cli_env_from_kv(kv, strlen(kv), "app/config", true);

	ck_assert_ptr_nonnull(env);
	/* Sorted by name; DB_URL twice: the later key wins. */
	ck_assert_str_eq(env[0], "DB_URL=pg://b");
	ck_assert_str_eq(env[1], "HTTP_PORT=8080");
	ck_assert_str_eq(env[2], "SUB_X_Y=1");
	ck_assert_str_eq(env[3], "_9LIVES=");
	ck_assert_ptr_null(env[4]);
	cli_env_free(env);

	env = cli_env_from_kv(kv, strlen(kv), "app/config/", false);
	ck_assert_ptr_nonnull(env);
	ck_assert_str_eq(env[0], "DB_URL=pg://b");
	ck_assert_str_eq(env[1], "_9lives=");
	ck_assert_str_eq(env[2], "db_url=pg://a");
	ck_assert_str_eq(env[3], "http_port=8080");
	ck_assert_str_eq(env[4], "sub_x_y=1");
	ck_assert_ptr_null(env[5]);
	cli_env_free(env);
}
END_TEST

START_TEST(env_empty_and_bad)
{
	char **env = cli_env_from_kv("[]", 2, "p", true), **nul;

	ck_assert_ptr_nonnull(env);
	ck_assert_ptr_null(env[0]);
	nul = cli_env_from_kv("null", 4, "p", true);
	ck_assert_ptr_nonnull(nul);
	ck_assert(cli_env_equal(env, nul));
	cli_env_free(env);
	cli_env_free(nul);
	ck_assert_ptr_null(cli_env_from_kv("{}", 2, "p", true));
	ck_assert_ptr_null(cli_env_from_kv("[{\"Key\":1}]", 11, "p", true));
	ck_assert_ptr_null(cli_env_from_kv(
	    "[{\"Key\":\"p/a\",\"Value\":\"!!\"}]", 28, "p", true));
}
END_TEST

START_TEST(env_equality)
{
	static const char a[] = "[{\"Key\":\"p/a\",\"Value\":\"MQ==\"}]";
	static const char a2[] =
	    "[{\"Key\":\"p/a\",\"Value\":\"MQ==\",\"ModifyIndex\":99}]";
	static const char b[] = "[{\"Key\":\"p/a\",\"Value\":\"Mg==\"}]";
	char **ea = cli_env_from_kv(a, strlen(a), "p", true);
	char **ea2 = cli_env_from_kv(a2, strlen(a2), "p", true);
	char **eb = cli_env_from_kv(b, strlen(b), "p", true);
	char **none = cli_env_from_kv("[]", 2, "p", true);

	ck_assert(cli_env_equal(ea, ea2));
	ck_assert(!cli_env_equal(ea, eb));
	ck_assert(!cli_env_equal(ea, none));
	ck_assert(!cli_env_equal(none, ea));
	cli_env_free(ea);
	cli_env_free(ea2);
	cli_env_free(eb);
	cli_env_free(none);
}
END_TEST

/* Every failed allocation of jansson's (the fault allocator's hook) gives
 * NULL, never a crash or a leak. */
START_TEST(env_survives_oom)
{
	for (long n = 0; n < 200; n++) {
		char **env;
		fault_alloc_fail_at(n);
		env = cli_env_from_kv(kv, strlen(kv), "app/config", true);
		fault_alloc_fail_at(-1);
		cli_env_free(env);
		if (!fault_alloc_fired())
			break;
	}
}
END_TEST

static Suite *cli_suite(void)
{
	Suite *s = suite_create("client/cli_args");
	TCase *tc = tcase_create("flags");
	TCase *env = tcase_create("exec env");

	tcase_add_test(tc, go_flag_forms);
	tcase_add_test(tc, flags_stop_at_positionals);
	tcase_add_test(tc, repeatable_flags);
	tcase_add_test(tc, flag_errors);
	tcase_add_test(tc, help_flags);
	tcase_add_test(tc, bools);
	suite_add_tcase(s, tc);

	tcase_add_test(env, env_from_prefix);
	tcase_add_test(env, env_empty_and_bad);
	tcase_add_test(env, env_equality);
	tcase_add_test(env, env_survives_oom);
	suite_add_tcase(s, env);
	return s;
}

int main(void)
{
	return unit_run(cli_suite());
}
