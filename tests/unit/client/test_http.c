/* Unit tests for client/http.c and client/util.c: server addresses, the
 * back-off schedule, failover bookkeeping against dead ports, base64,
 * percent-encoding and the content hash that decides what a watch calls a
 * change. No server is contacted except closed ports on 127.0.0.1. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_int.h"
#include "tests/lib/unit_run.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

START_TEST(addresses_valid)
{
	static const struct {
		const char *in;
		bool https;
		const char *want;
	} ok[] = {
	    {"127.0.0.1:8500", false, "http://127.0.0.1:8500"},
	    {"127.0.0.1", false, "http://127.0.0.1:8500"},
	    {"  10.0.0.1:1 ", false, "http://10.0.0.1:1"},
	    {"http://h:80", false, "http://h:80"},
	    {"http://h:80/", false, "http://h:80"},
	    {"HTTPS://h:8501", false, "https://h:8501"},
	    {"https://h", false, "https://h:8501"},
	    {"h:65535", true, "https://h:65535"},
	    {"[::1]:8500", false, "http://[::1]:8500"},
	    {"[::1]", false, "http://[::1]:8500"},
	    {"beacon.example.com:8500", false,
	     "http://beacon.example.com:8500"},
	};

	for (size_t i = 0; i < N_OF(ok); i++) {
		char *url = NULL;
		ck_assert_msg(beacon__addr_parse(ok[i].in, strlen(ok[i].in),
						 ok[i].https, &url, NULL) == 0,
			      "%s", ok[i].in);
		ck_assert_str_eq(url, ok[i].want);
		free(url);
	}
}
END_TEST

START_TEST(addresses_invalid)
{
	static const char *const bad[] = {
	    "",
	    ":8500",
	    "h:",
	    "h:0",
	    "h:65536",
	    "h:123456",
	    "h:8x",
	    "ftp://h:21",
	    "::1",
	    "[::1",
	    "[::1]x",
	    "http://",
	    "h/path",
	    "user@h:8500",
	    "h:85 00",
	    "h?x",
	    "unix:///var/run/beacon.sock",
	};
	char err[BEACON_ERRMSG_LEN];

	for (size_t i = 0; i < N_OF(bad); i++) {
		char *url = NULL;
		err[0] = '\0';
		ck_assert_msg(beacon__addr_parse(bad[i], strlen(bad[i]), false,
						 &url, err) == BEACON_EINVAL,
			      "%s", bad[i]);
		ck_assert_ptr_null(url);
		ck_assert_msg(err[0] != '\0', "%s", bad[i]);
	}
}
END_TEST

START_TEST(address_lists)
{
	char **urls;
	size_t n;

	ck_assert_int_eq(beacon__addrs_parse(" a:1, ,b:2,,http://c:3 ", false,
					     &urls, &n, NULL),
			 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_str_eq(urls[0], "http://a:1");
	ck_assert_str_eq(urls[1], "http://b:2");
	ck_assert_str_eq(urls[2], "http://c:3");
	beacon_strv_free(urls, n);
	ck_assert_int_eq(beacon__addrs_parse(" , ", false, &urls, &n, NULL),
			 BEACON_EINVAL);
	ck_assert_int_eq(beacon__addrs_parse("a:1,b:x", false, &urls, &n, NULL),
			 BEACON_EINVAL);
}
END_TEST

START_TEST(backoff_doubles_caps_and_jitters)
{
	ck_assert_uint_eq(beacon__backoff_ms(0, 100, 10000, 7), 0);
	ck_assert_uint_eq(beacon__backoff_ms(5, 0, 10000, 7), 0);
	for (unsigned f = 1; f <= 70; f++) {
		uint64_t d = 100;
		for (unsigned i = 1; i < f && d < 10000; i++)
			d *= 2;
		if (d > 10000)
			d = 10000;
		/* Jitter within [d/2, d], both ends reachable. */
		ck_assert_uint_eq(beacon__backoff_ms(f, 100, 10000, 0),
				  d - d / 2);
		ck_assert_uint_eq(beacon__backoff_ms(f, 100, 10000, d / 2), d);
		for (uint64_t r = 0; r < 1000; r += 37) {
			uint64_t v = beacon__backoff_ms(
			    f, 100, 10000, r * 0x9E3779B97F4A7C15ULL);
			ck_assert_uint_ge(v, d - d / 2);
			ck_assert_uint_le(v, d);
		}
	}
	/* Never above the cap, however many failures. */
	ck_assert_uint_le(
	    beacon__backoff_ms(4000000000u, 100, 10000, UINT64_MAX), 10000);
}
END_TEST

/* Two closed ports: both fail, both back off, nothing is tried again
 * until the back-off ends, and the error says so. */
START_TEST(failover_marks_servers_down)
{
	struct beacon_config cfg;
	struct beacon *b;
	struct beacon_meta m;
	struct beacon_kv *kv;

	beacon_config_init(&cfg);
	cfg.addrs = "127.0.0.1:1,127.0.0.1:2";
	cfg.backoff_min_ms = 60000;
	cfg.backoff_max_ms = 60000;
	ck_assert_int_eq(beacon_new(&b, &cfg, NULL), 0);
	ck_assert_uint_eq(beacon__retry_in_ms(b), 0);
	ck_assert_int_eq(beacon_kv_get(b, "k", &kv, &m), BEACON_EUNAVAILABLE);
	ck_assert_ptr_nonnull(strstr(m.error, "no server answered"));
	ck_assert_int_eq(m.status, 0);
	ck_assert_uint_ge(beacon__retry_in_ms(b), 29000);
	ck_assert_uint_eq(b->servers[0].fails, 1);
	ck_assert_uint_eq(b->servers[1].fails, 1);
	/* Both in back-off: fail at once, without trying. */
	ck_assert_int_eq(beacon_kv_get(b, "k", &kv, &m), BEACON_EUNAVAILABLE);
	ck_assert_ptr_nonnull(strstr(m.error, "every server failed recently"));
	ck_assert_uint_eq(b->servers[0].fails, 1);
	beacon_free(b);
}
END_TEST

START_TEST(config_defaults_and_env)
{
	struct beacon *b;
	char err[BEACON_ERRMSG_LEN];

	setenv("BEACON_HTTP_ADDR", "127.0.0.1:7,127.0.0.1:8", 1);
	setenv("CONSUL_HTTP_ADDR", "127.0.0.1:9", 1);
	setenv("BEACON_HTTP_TOKEN", "secret", 1);
	ck_assert_int_eq(beacon_new(&b, NULL, err), 0);
	ck_assert_uint_eq(b->n_servers, 2);
	ck_assert_str_eq(b->servers[1].url, "http://127.0.0.1:8");
	ck_assert_str_eq(b->token, "secret");
	ck_assert_uint_eq(b->timeout_ms, 5000);
	beacon_free(b);
	unsetenv("BEACON_HTTP_ADDR");
	ck_assert_int_eq(beacon_new(&b, NULL, err), 0);
	ck_assert_str_eq(b->servers[0].url, "http://127.0.0.1:9");
	beacon_free(b);
	setenv("BEACON_HTTP_ADDR", "bad:address:x", 1);
	ck_assert_int_eq(beacon_new(&b, NULL, err), BEACON_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "bad:address:x"));
}
END_TEST

START_TEST(tls_server_name_connects_to_the_address)
{
	struct beacon_config cfg;
	struct beacon *b;

	beacon_config_init(&cfg);
	cfg.addrs = "https://10.0.0.1:8501,http://10.0.0.2:8500";
	cfg.tls_server_name = "beacon.internal";
	ck_assert_int_eq(beacon_new(&b, &cfg, NULL), 0);
	ck_assert_str_eq(b->servers[0].req_url, "https://beacon.internal:8501");
	ck_assert_str_eq(b->servers[0].connect_to,
			 "beacon.internal:8501:10.0.0.1:8501");
	ck_assert_str_eq(b->servers[1].req_url, "http://10.0.0.2:8500");
	ck_assert_ptr_null(b->servers[1].connect_to);
	beacon_free(b);
}
END_TEST

/* ---- util.c ----------------------------------------------------------------
 */

START_TEST(base64_round_trip)
{
	static const char *const vec[][2] = {
	    {"", ""},
	    {"f", "Zg=="},
	    {"fo", "Zm8="},
	    {"foo", "Zm9v"},
	    {"foob", "Zm9vYg=="},
	    {"fooba", "Zm9vYmE="},
	    {"foobar", "Zm9vYmFy"},
	};

	for (size_t i = 0; i < N_OF(vec); i++) {
		char *e = beacon__b64_encode(vec[i][0], strlen(vec[i][0]));
		char *d;
		size_t n;
		ck_assert_str_eq(e, vec[i][1]);
		d = beacon__b64_decode(e, strlen(e), &n);
		ck_assert_uint_eq(n, strlen(vec[i][0]));
		ck_assert(memcmp(d, vec[i][0], n) == 0);
		free(e);
		free(d);
	}
}
END_TEST

START_TEST(base64_rejects_malformed)
{
	static const char *const bad[] = {
	    "Z", "Zm9v!", "Zh==", "Zm9=v", "====", "Zm 9v"};
	size_t n;

	for (size_t i = 0; i < N_OF(bad); i++)
		ck_assert_msg(beacon__b64_decode(bad[i], strlen(bad[i]), &n) ==
				  NULL,
			      "%s", bad[i]);
}
END_TEST

START_TEST(escape_keeps_slashes)
{
	char *s = beacon_escape("app/a b/ü?&=%#x~._-");

	ck_assert_str_eq(s, "app/a%20b/%C3%BC%3F%26%3D%25%23x~._-");
	free(s);
}
END_TEST

START_TEST(content_hash_ignores_indexes)
{
	static const char a[] =
	    "[{\"Key\":\"k\",\"Value\":\"dg==\",\"CreateIndex\":5,"
	    "\"ModifyIndex\":5,\"Flags\":0}]";
	static const char b[] =
	    "[{\"ModifyIndex\":9,\"Key\":\"k\",\"Flags\":0,\"CreateIndex\":5,"
	    "\"Value\":\"dg==\"}]";
	static const char c[] =
	    "[{\"Key\":\"k\",\"Value\":\"dw==\",\"CreateIndex\":5,"
	    "\"ModifyIndex\":9,\"Flags\":0}]";
	uint64_t ha, hb, hc, hn, hx;

	ck_assert_int_eq(beacon__content_hash(a, strlen(a), &ha), 0);
	ck_assert_int_eq(beacon__content_hash(b, strlen(b), &hb), 0);
	ck_assert_int_eq(beacon__content_hash(c, strlen(c), &hc), 0);
	ck_assert_int_eq(beacon__content_hash("null", 4, &hn), 0);
	ck_assert_int_eq(beacon__content_hash("not json", 8, &hx), 0);
	ck_assert_uint_eq(ha, hb); /* written again, same value */
	ck_assert_uint_ne(ha, hc); /* another value */
	ck_assert_uint_ne(ha, hn);
	ck_assert_uint_ne(hn, hx);
}
END_TEST

START_TEST(status_codes_map)
{
	ck_assert_int_eq(beacon__status_rc(200), 0);
	ck_assert_int_eq(beacon__status_rc(204), 0);
	ck_assert_int_eq(beacon__status_rc(400), BEACON_EINVAL);
	ck_assert_int_eq(beacon__status_rc(403), BEACON_EDENIED);
	ck_assert_int_eq(beacon__status_rc(404), BEACON_ENOTFOUND);
	ck_assert_int_eq(beacon__status_rc(409), BEACON_ECONFLICT);
	ck_assert_int_eq(beacon__status_rc(413), BEACON_ETOOBIG);
	ck_assert_int_eq(beacon__status_rc(500), BEACON_ESERVER);
	ck_assert_int_eq(beacon__status_rc(429), BEACON_ESERVER);
	for (int rc = -1200; rc <= 0; rc++)
		ck_assert_ptr_nonnull(beacon_strerror(rc));
}
END_TEST

static Suite *http_suite(void)
{
	Suite *s = suite_create("client/http");
	TCase *tc = tcase_create("core");
	TCase *u = tcase_create("util");

	tcase_add_test(tc, addresses_valid);
	tcase_add_test(tc, addresses_invalid);
	tcase_add_test(tc, address_lists);
	tcase_add_test(tc, backoff_doubles_caps_and_jitters);
	tcase_add_test(tc, failover_marks_servers_down);
	tcase_add_test(tc, config_defaults_and_env);
	tcase_add_test(tc, tls_server_name_connects_to_the_address);
	suite_add_tcase(s, tc);

	tcase_add_test(u, base64_round_trip);
	tcase_add_test(u, base64_rejects_malformed);
	tcase_add_test(u, escape_keeps_slashes);
	tcase_add_test(u, content_hash_ignores_indexes);
	tcase_add_test(u, status_codes_map);
	suite_add_tcase(s, u);
	return s;
}

int main(void)
{
	return unit_run(http_suite());
}
