/* Unit tests for common/parse.c: the small textual parsers of requests. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/parse.h"
#include "tests/lib/fault_alloc.h"
#include "tests/lib/unit_run.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* ---- bcn_parse_u64 --------------------------------------------------------
 */

START_TEST(u64_valid)
{
	static const struct {
		const char *in;
		uint64_t want;
	} ok[] = {
	    {"0", 0},
	    {"7", 7},
	    {"00042", 42},
	    {"4294967296", 4294967296ULL},
	    {"18446744073709551614", UINT64_MAX - 1},
	    {"18446744073709551615", UINT64_MAX},
	};

	for (size_t i = 0; i < N_OF(ok); i++) {
		uint64_t v = 12345;
		ck_assert_msg(bcn_parse_u64(ok[i].in, &v) == 0, "%s", ok[i].in);
		ck_assert_uint_eq(v, ok[i].want);
	}
}
END_TEST

START_TEST(u64_invalid)
{
	static const char *const bad[] = {
	    "",
	    "18446744073709551616",  /* UINT64_MAX + 1 */
	    "18446744073709551620",  /* overflow in the last digit */
	    "99999999999999999999",  /* overflow by far */
	    "184467440737095516150", /* one digit too many */
	    "-1",
	    "-0",
	    "+1",
	    " 1",
	    "1 ",
	    "1\t",
	    "1 2",
	    "0x10",
	    "1e3",
	    "1.0",
	    "abc",
	    "12a",
	};

	for (size_t i = 0; i < N_OF(bad); i++) {
		uint64_t v = 777;
		ck_assert_msg(bcn_parse_u64(bad[i], &v) == BCN_EINVAL,
			      "\"%s\" accepted", bad[i]);
		ck_assert_uint_eq(v, 777); /* untouched on error */
	}
	ck_assert_int_eq(bcn_parse_u64(NULL, &(uint64_t){0}), BCN_EINVAL);
}
END_TEST

/* ---- bcn_parse_duration_ms ---------------------------------------------- */

START_TEST(duration_valid)
{
	static const struct {
		const char *in;
		uint64_t ms;
	} ok[] = {
	    {"0", 0},
	    {"0s", 0},
	    {"0ms", 0},
	    {"300ms", 300},
	    {"1s", 1000},
	    {"+5s", 5000},
	    {"1.5h", 5400000},
	    {"2h45m", 9900000},
	    {"1m30s", 90000},
	    {"1h1h", 7200000}, /* Go allows a unit twice */
	    {"10m", 600000},
	    {".5s", 500},
	    {"5.s", 5000},
	    {"0.1m", 6000},
	    {"1.1s", 1100},
	    {"1us", 0}, /* rounds down */
	    {"1000us", 1},
	    {"1\xc2\xb5s", 0},	  /* U+00B5 micro sign */
	    {"2000\xc2\xb5s", 2}, /* U+00B5 micro sign */
	    {"3000\xce\xbcs", 3}, /* U+03BC Greek mu */
	    {"999999ns", 0},
	    {"1000000ns", 1},
	    {"1h2m3s4ms5us6ns", 3723004},
	    {"2562047h", 9223369200000ULL},
	    /* Go's largest duration, 2^63-1 ns. */
	    {"9223372036854775807ns", 9223372036854ULL},
	};

	for (size_t i = 0; i < N_OF(ok); i++) {
		uint64_t v = 12345;
		ck_assert_msg(bcn_parse_duration_ms(ok[i].in, &v) == 0,
			      "\"%s\" rejected", ok[i].in);
		ck_assert_msg(v == ok[i].ms, "\"%s\": got %llu, want %llu",
			      ok[i].in, (unsigned long long)v,
			      (unsigned long long)ok[i].ms);
	}
}
END_TEST

START_TEST(duration_invalid)
{
	static const char *const bad[] = {
	    "",
	    "30", /* a bare number other than "0": Go wants a unit */
	    "1",
	    "00",
	    "-1s",
	    "-0",
	    "-",
	    "+",
	    "1x",
	    "1m1x",
	    "1S", /* units are case-sensitive */
	    "1H",
	    "s",
	    ".s",
	    ".",
	    "1.2.3s",
	    "1e3s",
	    " 1s",
	    "1s ",
	    "1 s",
	    "1s1",
	    "1mss",
	    "1\xc2s", /* half a micro sign */
	    "2562048h",
	    "9223372036854775808ns", /* 2^63 ns */
	    "99999999999999999999999999h",
	    "2562047h47m16.854775808s",
	    "2562047h2562047h",
	};

	for (size_t i = 0; i < N_OF(bad); i++) {
		uint64_t v = 777;
		ck_assert_msg(bcn_parse_duration_ms(bad[i], &v) == BCN_EINVAL,
			      "\"%s\" accepted as %llu", bad[i],
			      (unsigned long long)v);
		ck_assert_uint_eq(v, 777);
	}
	ck_assert_int_eq(bcn_parse_duration_ms(NULL, &(uint64_t){0}),
			 BCN_EINVAL);
}
END_TEST

/* ---- bcn_parse_bool ------------------------------------------------------ */

START_TEST(bool_values)
{
	static const char *const yes[] = {"",	  "1",	  "t",	 "T",
					  "TRUE", "true", "True"};
	static const char *const no[] = {"0",	  "f",	   "F",
					 "FALSE", "false", "False"};
	static const char *const bad[] = {"yes", "no",	  "tRUE", "2",
					  " ",	 "true ", "on",	  "-1",
					  "00",	 "TrUe",  "y"};
	bool b;

	for (size_t i = 0; i < N_OF(yes); i++) {
		b = false;
		ck_assert_msg(bcn_parse_bool(yes[i], &b) == 0, "%s", yes[i]);
		ck_assert(b);
	}
	for (size_t i = 0; i < N_OF(no); i++) {
		b = true;
		ck_assert_msg(bcn_parse_bool(no[i], &b) == 0, "%s", no[i]);
		ck_assert(!b);
	}
	for (size_t i = 0; i < N_OF(bad); i++) {
		b = true;
		ck_assert_msg(bcn_parse_bool(bad[i], &b) == BCN_EINVAL, "%s",
			      bad[i]);
		ck_assert(b); /* untouched */
	}
}
END_TEST

/* ---- bcn_utf8_valid ------------------------------------------------------ */

struct bytes {
	const char *s;
	size_t n;
};

#define B(lit)                       \
	{                            \
		lit, sizeof(lit) - 1 \
	}

START_TEST(utf8_valid)
{
	static const struct bytes ok[] = {
	    B(""),
	    B("plain ascii/key"),
	    B("\x00"), /* NUL is valid UTF-8 (keys reject it elsewhere) */
	    B("\x7f"),
	    B("\xc2\x80"),	   /* U+0080, the smallest 2-byte */
	    B("\xdf\xbf"),	   /* U+07FF */
	    B("\xe0\xa0\x80"),	   /* U+0800, the smallest 3-byte */
	    B("\xed\x9f\xbf"),	   /* U+D7FF, just below surrogates */
	    B("\xee\x80\x80"),	   /* U+E000, just above */
	    B("\xef\xbf\xbf"),	   /* U+FFFF */
	    B("\xf0\x90\x80\x80"), /* U+10000, the smallest 4-byte */
	    B("\xf4\x8f\xbf\xbf"), /* U+10FFFF, the largest code point */
	    B("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"),
	};

	for (size_t i = 0; i < N_OF(ok); i++)
		ck_assert_msg(bcn_utf8_valid(ok[i].s, ok[i].n), "case %zu", i);
}
END_TEST

START_TEST(utf8_invalid)
{
	static const struct bytes bad[] = {
	    B("\x80"),			   /* lone continuation */
	    B("\xbf"),			   /* lone continuation */
	    B("\xc0\x80"),		   /* overlong NUL */
	    B("\xc0\xaf"),		   /* overlong '/' */
	    B("\xc1\xbf"),		   /* overlong U+007F */
	    B("\xe0\x80\xaf"),		   /* overlong '/' in 3 bytes */
	    B("\xe0\x9f\xbf"),		   /* overlong U+07FF */
	    B("\xf0\x80\x80\xaf"),	   /* overlong '/' in 4 bytes */
	    B("\xf0\x8f\xbf\xbf"),	   /* overlong U+FFFF */
	    B("\xed\xa0\x80"),		   /* U+D800, a surrogate */
	    B("\xed\xbf\xbf"),		   /* U+DFFF, a surrogate */
	    B("\xed\xa0\xbd\xed\xb8\x80"), /* CESU-8 pair */
	    B("\xf4\x90\x80\x80"),	   /* U+110000, above the maximum */
	    B("\xf5\x80\x80\x80"),
	    B("\xf7\xbf\xbf\xbf"),
	    B("\xf8\x88\x80\x80\x80"),	   /* 5-byte form */
	    B("\xfc\x84\x80\x80\x80\x80"), /* 6-byte form */
	    B("\xfe"),
	    B("\xff"),
	    B("\xc3"),		/* truncated 2-byte */
	    B("\xe2\x82"),	/* truncated 3-byte */
	    B("\xf0\x9f\x98"),	/* truncated 4-byte */
	    B("abc\xf0\x9f"),	/* truncated at the end */
	    B("\xc3("),		/* bad continuation */
	    B("\xe2\x28\xa1"),	/* bad continuation */
	    B("\xf0\x9f\x98("), /* bad last continuation */
	    B("\xc3\xa9\xa9"),	/* extra continuation */
	};

	for (size_t i = 0; i < N_OF(bad); i++)
		ck_assert_msg(!bcn_utf8_valid(bad[i].s, bad[i].n),
			      "case %zu accepted", i);
}
END_TEST

/* The length bounds the scan: bytes past @n are never looked at. */
START_TEST(utf8_length_bound)
{
	const char s[] = "ok\xc3\xa9";

	ck_assert(bcn_utf8_valid(s, 2));
	ck_assert(!bcn_utf8_valid(s, 3)); /* cut inside U+00E9 */
	ck_assert(bcn_utf8_valid(s, 4));
}
END_TEST

/* ---- bcn_pct_decode ------------------------------------------------------ */

START_TEST(pct_decode_valid)
{
	static const struct {
		struct bytes in, out;
	} ok[] = {
	    {B(""), B("")},
	    {B("abc"), B("abc")},
	    {B("a%2Fb"), B("a/b")},
	    {B("a%2fb"), B("a/b")}, /* lower-case hex */
	    {B("a+b"), B("a+b")},   /* '+' untouched */
	    {B("%2B"), B("+")},
	    {B("%20"), B(" ")},
	    {B("%25"), B("%")},
	    {B("%2525"), B("%25")}, /* one level only */
	    {B("%00"), B("\0")},
	    {B("a%00b"), B("a\0b")},
	    {B("%ff%FE"), B("\xff\xfe")},
	    {B("%e2%82%ac"), B("\xe2\x82\xac")},
	};
	char out[64];

	for (size_t i = 0; i < N_OF(ok); i++) {
		long n;

		memset(out, 'X', sizeof out);
		n = bcn_pct_decode(ok[i].in.s, ok[i].in.n, out);
		ck_assert_int_eq(n, (long)ok[i].out.n);
		ck_assert_mem_eq(out, ok[i].out.s, ok[i].out.n);
	}
}
END_TEST

START_TEST(pct_decode_invalid)
{
	static const struct bytes bad[] = {
	    B("%"),
	    B("%2"),
	    B("a%"),
	    B("a%2"),
	    B("%G0"),
	    B("%0G"),
	    B("%%"),
	    B("%%20"),
	    B("%-1"),
	    B("% 1"),
	    B("%+1"),
	    B("%\x00"
	      "0"),
	    B("abc%zz"),
	    B("%2x"),
	};
	char out[64];

	for (size_t i = 0; i < N_OF(bad); i++)
		ck_assert_msg(bcn_pct_decode(bad[i].s, bad[i].n, out) == -1,
			      "case %zu accepted", i);
}
END_TEST

/* Decoding may alias: the output never runs ahead of the input. */
START_TEST(pct_decode_in_place)
{
	char s[] = "x%41%42y%2F";
	long n = bcn_pct_decode(s, strlen(s), s);

	ck_assert_int_eq(n, 5);
	ck_assert_mem_eq(s, "xABy/", 5);
}
END_TEST

/* The length bounds the input: a '%' escape cut by @n is malformed. */
START_TEST(pct_decode_length_bound)
{
	char out[8];

	ck_assert_int_eq(bcn_pct_decode("ab%41", 2, out), 2);
	ck_assert_int_eq(bcn_pct_decode("ab%41", 4, out), -1);
}
END_TEST

/* ---- base64 ------------------------------------------------------------- */

START_TEST(b64_known_vectors)
{
	/* RFC 4648 §10. */
	static const struct {
		const char *plain, *enc;
	} v[] = {
	    {"", ""},
	    {"f", "Zg=="},
	    {"fo", "Zm8="},
	    {"foo", "Zm9v"},
	    {"foob", "Zm9vYg=="},
	    {"fooba", "Zm9vYmE="},
	    {"foobar", "Zm9vYmFy"},
	};
	char enc[32], dec[32];

	for (size_t i = 0; i < N_OF(v); i++) {
		size_t n = strlen(v[i].plain);
		ck_assert_uint_eq(bcn_b64_encoded_len(n), strlen(v[i].enc));
		memset(enc, 'X', sizeof enc);
		bcn_b64_encode(v[i].plain, n, enc);
		ck_assert_str_eq(enc, v[i].enc);
		ck_assert_int_eq(bcn_b64_decode(enc, strlen(enc), dec),
				 (long)n);
		ck_assert_mem_eq(dec, v[i].plain, n);
	}
	/* '+' and '/' of the standard alphabet. */
	bcn_b64_encode("\xfb\xff", 2, enc);
	ck_assert_str_eq(enc, "+/8=");
	ck_assert_int_eq(bcn_b64_decode("+/8=", 4, dec), 2);
	ck_assert_mem_eq(dec, "\xfb\xff", 2);
}
END_TEST

/* Every length 0..10 with varied bytes: encode, then decode both the padded
 * and the unpadded form. */
START_TEST(b64_round_trip)
{
	unsigned char in[10], dec[16];
	char enc[32];

	for (size_t n = 0; n <= sizeof in; n++) {
		for (unsigned seed = 0; seed < 64; seed++) {
			size_t elen = bcn_b64_encoded_len(n), bare;

			for (size_t i = 0; i < n; i++)
				in[i] = (unsigned char)(seed * 37 + i * 101 +
							(seed & 1 ? 0xf0 : 0));
			memset(enc, 'X', sizeof enc);
			bcn_b64_encode(in, n, enc);
			ck_assert_uint_eq(elen, (n + 2) / 3 * 4);
			ck_assert_uint_eq(strlen(enc), elen); /* NUL placed */
			ck_assert_int_eq(bcn_b64_decode(enc, elen, dec),
					 (long)n);
			ck_assert_mem_eq(dec, in, n);

			bare = elen;
			while (bare > 0 && enc[bare - 1] == '=')
				bare--;
			ck_assert_uint_eq(elen - bare, (3 - n % 3) % 3);
			ck_assert_int_eq(bcn_b64_decode(enc, bare, dec),
					 (long)n);
			ck_assert_mem_eq(dec, in, n);
		}
	}
}
END_TEST

START_TEST(b64_rejects_malformed)
{
	static const char *const bad[] = {
	    "Z",	  /* a lone sextet cannot hold a byte */
	    "Zm9vY",	  /* ditto after a full group */
	    "Zh==",	  /* non-zero leftover bits (canonical: Zg==) */
	    "Zm9=",	  /* non-zero leftover bits (canonical: Zm8=) */
	    "QR==",	  /* canonical: QQ== */
	    "QUJ=",	  /* canonical: QUI= */
	    "Zm9v Zg==",  /* space */
	    "Zm9v\nZg==", /* newline */
	    "Zm-v",	  /* URL alphabet */
	    "Zm_v",	  /* URL alphabet */
	    "Zg=a",	  /* padding in the middle */
	    "Z=g=",	  /* padding in the middle */
	    "Zg===",	  /* three pad characters */
	    "====",	  "Zm9v!",
	};
	unsigned char out[16];

	for (size_t i = 0; i < N_OF(bad); i++)
		ck_assert_msg(bcn_b64_decode(bad[i], strlen(bad[i]), out) == -1,
			      "\"%s\" accepted", bad[i]);
	/* A NUL inside the counted input is not base64. */
	ck_assert_int_eq(bcn_b64_decode("Zm\0v", 4, out), -1);
}
END_TEST

/* The parsers are pure: they never allocate. */
START_TEST(parsers_never_allocate)
{
	uint64_t v;
	bool b;
	char out[32];

	fault_alloc_fail_at(-1);
	ck_assert_int_eq(bcn_parse_u64("123", &v), 0);
	ck_assert_int_eq(bcn_parse_duration_ms("1h2m", &v), 0);
	ck_assert_int_eq(bcn_parse_bool("true", &b), 0);
	ck_assert(bcn_utf8_valid("\xc3\xa9", 2));
	ck_assert_int_eq(bcn_pct_decode("%41", 3, out), 1);
	bcn_b64_encode("abc", 3, out);
	ck_assert_int_eq(bcn_b64_decode(out, 4, out + 8), 3);
	ck_assert_int_eq(fault_alloc_count(), 0);
}
END_TEST

/* ---- Bugs found while writing these tests (left failing, see report) ----- */

/* BUG: fractional durations lose a millisecond. The fraction is summed in
 * binary floating point (0.001 is not exact), then truncated, so "0.001s"
 * gives 0 ms and "0.003s" 2 ms; Go's time.ParseDuration is exact. */
START_TEST(duration_fraction_is_exact)
{
	static const struct {
		const char *in;
		uint64_t ms;
	} v[] = {
	    {"0.001s", 1},    {"0.003s", 3}, {"0.009s", 9},
	    {"1.001s", 1001}, {"0.5ms", 0},  {"1.5ms", 1},
	};
	char s[32];
	unsigned bad = 0;
	uint64_t got;

	for (size_t i = 0; i < N_OF(v); i++) {
		got = 0;
		ck_assert_int_eq(bcn_parse_duration_ms(v[i].in, &got), 0);
		ck_assert_msg(got == v[i].ms, "\"%s\": got %llu, want %llu",
			      v[i].in, (unsigned long long)got,
			      (unsigned long long)v[i].ms);
	}
	/* Every millisecond count written as seconds with 3 decimals. */
	for (unsigned ms = 0; ms < 100000; ms++) {
		snprintf(s, sizeof s, "%u.%03us", ms / 1000, ms % 1000);
		if (bcn_parse_duration_ms(s, &got) != 0 || got != ms)
			bad++;
	}
	ck_assert_msg(bad == 0, "%u of 100000 \"S.mmms\" durations wrong", bad);
}
END_TEST

/* BUG: bcn_b64_decode strips up to two '=' whatever the length, so padding
 * that no encoder produces is accepted: on a complete group ("QUJD="),
 * too much ("QUI=="), too little ("QQ=") or alone ("=", "=="). The header
 * promises -1 for anything that is not canonical (padding optional); Go's
 * StdEncoding and RawStdEncoding both reject all of these. */
START_TEST(b64_rejects_bad_padding)
{
	static const char *const bad[] = {
	    "QUJD=", "QUJD==", "QUI==", "QQ=", "=", "=="};
	unsigned char out[16];

	for (size_t i = 0; i < N_OF(bad); i++) {
		long n = bcn_b64_decode(bad[i], strlen(bad[i]), out);
		ck_assert_msg(n == -1, "\"%s\" accepted (length %ld)", bad[i],
			      n);
	}
}
END_TEST

static Suite *parse_suite(void)
{
	Suite *s = suite_create("parse");
	TCase *tc = tcase_create("core");
	TCase *bugs = tcase_create("regressions");

	tcase_add_test(tc, u64_valid);
	tcase_add_test(tc, u64_invalid);
	tcase_add_test(tc, duration_valid);
	tcase_add_test(tc, duration_invalid);
	tcase_add_test(tc, bool_values);
	tcase_add_test(tc, utf8_valid);
	tcase_add_test(tc, utf8_invalid);
	tcase_add_test(tc, utf8_length_bound);
	tcase_add_test(tc, pct_decode_valid);
	tcase_add_test(tc, pct_decode_invalid);
	tcase_add_test(tc, pct_decode_in_place);
	tcase_add_test(tc, pct_decode_length_bound);
	tcase_add_test(tc, b64_known_vectors);
	tcase_add_test(tc, b64_round_trip);
	tcase_add_test(tc, b64_rejects_malformed);
	tcase_add_test(tc, parsers_never_allocate);
	suite_add_tcase(s, tc);

	tcase_add_test(bugs, duration_fraction_is_exact);
	tcase_add_test(bugs, b64_rejects_bad_padding);
	suite_add_tcase(s, bugs);
	return s;
}

int main(void)
{
	return unit_run(parse_suite());
}
