/* Unit tests for common/buf.c: the growable buffer and the read cursor. */
#include <check.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "tests/lib/fault_alloc.h"
#include "tests/lib/unit_run.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static struct bcn_buf b;

static void setup(void)
{
	fault_alloc_fail_at(-1);
	bcn_buf_init(&b);
}

static void teardown(void)
{
	fault_alloc_fail_at(-1);
	bcn_buf_close(&b);
}

/* ---- growth and text ----------------------------------------------------- */

START_TEST(init_is_empty)
{
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_eq(b.cap, 0);
	ck_assert(!bcn_buf_failed(&b));
	bcn_buf_close(&b); /* closing an empty buffer is fine */
	bcn_buf_close(&b);
}
END_TEST

START_TEST(growth_keeps_content)
{
	size_t prev_cap = 0;

	for (size_t i = 0; i < 10000; i++) {
		bcn_buf_putc(&b, (char)('a' + i % 26));
		ck_assert_uint_eq(b.len, i + 1);
		ck_assert_uint_ge(b.cap, b.len + 1); /* room for the NUL */
		ck_assert_uint_ge(b.cap, prev_cap);
		ck_assert_int_eq(b.data[b.len], '\0');
		prev_cap = b.cap;
	}
	for (size_t i = 0; i < 10000; i++)
		ck_assert_int_eq(b.data[i], 'a' + i % 26);
	ck_assert_uint_eq(strlen(b.data), 10000);
	ck_assert(!bcn_buf_failed(&b));
}
END_TEST

/* Doubling: a large append lands in one step, not byte by byte. */
START_TEST(growth_is_geometric)
{
	static char big[5000];
	long allocs;

	memset(big, 'z', sizeof big);
	fault_alloc_fail_at(-1);
	for (int i = 0; i < 100; i++)
		bcn_buf_put(&b, big, sizeof big);
	allocs = fault_alloc_count();
	ck_assert_uint_eq(b.len, 100 * sizeof big);
	ck_assert_int_le(allocs, 20); /* log2(500000 / 64) + 1 = 14 */
}
END_TEST

START_TEST(reserve_does_not_change_len)
{
	ck_assert_int_eq(bcn_buf_reserve(&b, 100), 0);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_ge(b.cap, 101);
	bcn_buf_puts(&b, "abc");
	ck_assert_int_eq(bcn_buf_reserve(&b, 0), 0);
	ck_assert_uint_eq(b.len, 3);
	ck_assert_str_eq(b.data, "abc");
}
END_TEST

START_TEST(put_puts_putc)
{
	bcn_buf_put(&b, "", 0);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_ptr_nonnull(b.data);
	ck_assert_str_eq(b.data, "");
	bcn_buf_puts(&b, "hello");
	bcn_buf_putc(&b, ',');
	bcn_buf_putc(&b, ' ');
	bcn_buf_put(&b, "world!!!", 5);
	ck_assert_uint_eq(b.len, 12);
	ck_assert_str_eq(b.data, "hello, world");
	/* Binary data with NULs is kept whole. */
	bcn_buf_put(&b, "\0x\0", 3);
	ck_assert_uint_eq(b.len, 15);
	ck_assert_mem_eq(b.data + 12, "\0x\0", 4); /* plus the NUL */
}
END_TEST

START_TEST(printf_appends)
{
	char want[600];

	bcn_buf_printf(&b, "%s=%d", "a", 42);
	ck_assert_str_eq(b.data, "a=42");
	bcn_buf_printf(&b, "%s", "");
	ck_assert_uint_eq(b.len, 4);
	bcn_buf_printf(&b, "/%llu", (unsigned long long)UINT64_MAX);
	ck_assert_str_eq(b.data, "a=42/18446744073709551615");
	/* Longer than the first allocation, so it grows in the middle. */
	bcn_buf_reset(&b);
	bcn_buf_puts(&b, "x");
	bcn_buf_printf(&b, "%0500d|", 7);
	memset(want, '0', sizeof want);
	want[0] = 'x';
	want[500] = '7';
	want[501] = '|';
	want[502] = '\0';
	ck_assert_uint_eq(b.len, 502);
	ck_assert_str_eq(b.data, want);
}
END_TEST

START_TEST(reset_keeps_memory)
{
	char *data;
	size_t cap;

	bcn_buf_puts(&b, "some text");
	data = b.data;
	cap = b.cap;
	bcn_buf_reset(&b);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_ptr_eq(b.data, data);
	ck_assert_uint_eq(b.cap, cap);
	ck_assert_str_eq(b.data, "");
	bcn_buf_puts(&b, "new");
	ck_assert_str_eq(b.data, "new");
}
END_TEST

START_TEST(steal_hands_over)
{
	size_t len = 99;
	char *p;

	ck_assert_ptr_null(bcn_buf_steal(&b, &len)); /* empty */
	ck_assert_uint_eq(len, 0);
	bcn_buf_puts(&b, "owned");
	p = bcn_buf_steal(&b, &len);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(len, 5);
	ck_assert_str_eq(p, "owned");
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_eq(b.cap, 0);
	bcn_free(p); /* ASan checks this came from bcn_malloc */
	bcn_buf_puts(&b, "again");
	p = bcn_buf_steal(&b, NULL); /* @len may be NULL */
	ck_assert_str_eq(p, "again");
	bcn_free(p);
}
END_TEST

/* ---- binary encoding and the cursor -------------------------------------- */

START_TEST(ints_are_big_endian)
{
	static const uint8_t want[] = {
	    0xab,					    /* u8 */
	    0x01, 0x02, 0x03, 0x04,			    /* u32 */
	    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* u64 */
	    0x00, 0x00, 0x00, 0x03, 'k',  'e',	'y',	    /* blob */
	    0x00, 0x00, 0x00, 0x00,			    /* empty blob */
	};

	bcn_buf_put_u8(&b, 0xab);
	bcn_buf_put_u32(&b, 0x01020304u);
	bcn_buf_put_u64(&b, 0x0102030405060708ull);
	bcn_buf_put_blob(&b, "key", 3);
	bcn_buf_put_blob(&b, NULL, 0);
	ck_assert(!bcn_buf_failed(&b));
	ck_assert_uint_eq(b.len, sizeof want);
	ck_assert_mem_eq(b.data, want, sizeof want);
}
END_TEST

START_TEST(cursor_round_trip)
{
	static const uint32_t u32s[] = {0, 1, 0x80, 0xff00ff00u, UINT32_MAX};
	static const uint64_t u64s[] = {0, 1, 1ull << 32, 1ull << 63,
					UINT64_MAX};
	static char big[70000];
	struct bcn_cursor c;
	const void *p;
	size_t len;

	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (char)(i * 7);
	for (size_t i = 0; i < N_OF(u32s); i++) {
		bcn_buf_put_u8(&b, (uint8_t)i);
		bcn_buf_put_u32(&b, u32s[i]);
		bcn_buf_put_u64(&b, u64s[i]);
		bcn_buf_put_blob(&b, big, i * 1000);
	}
	bcn_buf_put_blob(&b, big, sizeof big);
	ck_assert(!bcn_buf_failed(&b));

	bcn_cursor_init(&c, b.data, b.len);
	for (size_t i = 0; i < N_OF(u32s); i++) {
		ck_assert_uint_eq(bcn_cursor_u8(&c), i);
		ck_assert_uint_eq(bcn_cursor_u32(&c), u32s[i]);
		ck_assert_uint_eq(bcn_cursor_u64(&c), u64s[i]);
		p = bcn_cursor_blob(&c, &len);
		ck_assert_uint_eq(len, i * 1000);
		ck_assert_ptr_nonnull(p);
		ck_assert_mem_eq(p, big, len);
	}
	p = bcn_cursor_blob(&c, &len);
	ck_assert_uint_eq(len, sizeof big);
	ck_assert_mem_eq(p, big, sizeof big);
	/* Points into the buffer: no copy. */
	ck_assert_ptr_eq(p, b.data + b.len - sizeof big);
	ck_assert(!c.err);
	ck_assert_uint_eq(c.left, 0);
}
END_TEST

START_TEST(cursor_over_read_sets_err)
{
	static const uint8_t three[] = {1, 2, 3};
	struct bcn_cursor c;
	size_t len = 99;

	/* u32 over 3 bytes fails and consumes nothing... */
	bcn_cursor_init(&c, three, sizeof three);
	ck_assert_uint_eq(bcn_cursor_u32(&c), 0);
	ck_assert(c.err);
	/* ...and the error is sticky: even bytes that exist read as 0. */
	ck_assert_uint_eq(bcn_cursor_u8(&c), 0);
	ck_assert(c.err);

	bcn_cursor_init(&c, three, sizeof three);
	ck_assert_uint_eq(bcn_cursor_u8(&c), 1);
	ck_assert_uint_eq(bcn_cursor_u8(&c), 2);
	ck_assert_uint_eq(bcn_cursor_u8(&c), 3);
	ck_assert(!c.err);
	ck_assert_uint_eq(c.left, 0);
	ck_assert_uint_eq(bcn_cursor_u8(&c), 0);
	ck_assert(c.err);

	bcn_cursor_init(&c, three, 0);
	ck_assert_uint_eq(bcn_cursor_u64(&c), 0);
	ck_assert(c.err);

	bcn_cursor_init(&c, NULL, 0);
	ck_assert_ptr_null(bcn_cursor_blob(&c, &len));
	ck_assert_uint_eq(len, 0);
	ck_assert(c.err);
}
END_TEST

/* A blob whose length prefix runs past the end is an error, not a read
 * out of bounds (ASan would see one). */
START_TEST(cursor_blob_too_long)
{
	struct bcn_cursor c;
	size_t len = 99;
	uint8_t *copy;

	bcn_buf_put_u32(&b, 5);
	bcn_buf_put(&b, "abcd", 4);
	/* An exact-size heap copy, so any over-read is caught. */
	copy = malloc(b.len);
	ck_assert_ptr_nonnull(copy);
	memcpy(copy, b.data, b.len);
	bcn_cursor_init(&c, copy, b.len);
	ck_assert_ptr_null(bcn_cursor_blob(&c, &len));
	ck_assert_uint_eq(len, 0);
	ck_assert(c.err);
	free(copy);

	/* Length UINT32_MAX on a short buffer. */
	bcn_buf_reset(&b);
	bcn_buf_put_u32(&b, UINT32_MAX);
	bcn_buf_put(&b, "x", 1);
	bcn_cursor_init(&c, b.data, b.len);
	ck_assert_ptr_null(bcn_cursor_blob(&c, &len));
	ck_assert(c.err);

	/* Exactly the bytes there are: fine. */
	bcn_buf_reset(&b);
	bcn_buf_put_blob(&b, "abcd", 4);
	bcn_cursor_init(&c, b.data, b.len);
	ck_assert_ptr_nonnull(bcn_cursor_blob(&c, &len));
	ck_assert_uint_eq(len, 4);
	ck_assert(!c.err);
}
END_TEST

/* ---- JSON strings -------------------------------------------------------- */

static void check_json(const char *in, size_t n, const char *want)
{
	bcn_buf_reset(&b);
	bcn_buf_put_json_str(&b, in, n);
	ck_assert(!bcn_buf_failed(&b));
	ck_assert_uint_eq(b.len, strlen(want));
	ck_assert_str_eq(b.data, want);
}

START_TEST(json_str_escapes)
{
	check_json("", 0, "\"\"");
	check_json("plain", 5, "\"plain\"");
	check_json("say \"hi\"", 8, "\"say \\\"hi\\\"\"");
	check_json("a\\b", 3, "\"a\\\\b\"");
	check_json("\n\r\t", 3, "\"\\n\\r\\t\"");
	check_json("\x01\x1f", 2, "\"\\u0001\\u001f\"");
	check_json("\b\f", 2, "\"\\u0008\\u000c\"");
	check_json("a\0b", 3, "\"a\\u0000b\"");
	check_json("<script>&", 9, "\"\\u003cscript\\u003e\\u0026\"");
	check_json("\x7f", 1, "\"\x7f\""); /* DEL is not escaped (Go) */
	check_json("/", 1, "\"/\"");
	check_json("h\xc3\xa9 \xe2\x82\xac", 7, "\"h\xc3\xa9 \xe2\x82\xac\"");
	/* Only @n bytes are read. */
	check_json("abcdef", 3, "\"abc\"");
}
END_TEST

/* Every ASCII byte, between two letters, escapes to JSON that jansson reads
 * back as the same string. */
START_TEST(json_str_all_ascii_parse_back)
{
	for (int c = 0; c < 0x80; c++) {
		char in[3] = {'a', (char)c, 'b'};
		json_error_t err;
		json_t *j;

		bcn_buf_reset(&b);
		bcn_buf_put_json_str(&b, in, 3);
		ck_assert(!bcn_buf_failed(&b));
		j = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL,
			       &err);
		ck_assert_msg(j != NULL, "byte 0x%02x: %s: %s", c, b.data,
			      err.text);
		ck_assert(json_is_string(j));
		ck_assert_uint_eq(json_string_length(j), 3);
		ck_assert_mem_eq(json_string_value(j), in, 3);
		if (c < 0x20 || c == '<' || c == '>' || c == '&')
			ck_assert_ptr_null(memchr(b.data, c, b.len));
		json_decref(j);
	}
}
END_TEST

/* ---- allocation failure -------------------------------------------------- */

/* The first allocation fails: nothing is appended, ever, until reset. */
START_TEST(failed_first_allocation)
{
	fault_alloc_fail_at(0);
	bcn_buf_puts(&b, "x");
	ck_assert(fault_alloc_fired());
	fault_alloc_fail_at(-1);
	ck_assert(bcn_buf_failed(&b));
	ck_assert_uint_eq(b.len, 0);
	ck_assert_ptr_null(b.data);

	/* Memory is back, but the buffer stays failed: all are no-ops. */
	bcn_buf_puts(&b, "abc");
	bcn_buf_putc(&b, 'd');
	bcn_buf_printf(&b, "%d", 5);
	bcn_buf_put_u8(&b, 1);
	bcn_buf_put_u32(&b, 1);
	bcn_buf_put_u64(&b, 1);
	bcn_buf_put_blob(&b, "e", 1);
	bcn_buf_put_json_str(&b, "f", 1);
	ck_assert_int_eq(bcn_buf_reserve(&b, 1), BCN_ENOMEM);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_ptr_null(b.data);
	ck_assert(bcn_buf_failed(&b));
	ck_assert_int_eq(fault_alloc_count(), 0); /* not even tried */

	bcn_buf_reset(&b);
	ck_assert(!bcn_buf_failed(&b));
	bcn_buf_puts(&b, "ok");
	ck_assert_str_eq(b.data, "ok");
}
END_TEST

/* A failed growth keeps what was there (realloc's old block is kept). */
START_TEST(failed_growth_keeps_content)
{
	static char big[200];

	memset(big, 'b', sizeof big);
	bcn_buf_puts(&b, "kept");
	fault_alloc_fail_at(0);
	bcn_buf_put(&b, big, sizeof big);
	ck_assert(fault_alloc_fired());
	fault_alloc_fail_at(-1);
	ck_assert(bcn_buf_failed(&b));
	ck_assert_uint_eq(b.len, 4);
	ck_assert_str_eq(b.data, "kept");
	bcn_buf_putc(&b, '!'); /* would fit, but the buffer has failed */
	bcn_buf_printf(&b, "%s", "x");
	ck_assert_uint_eq(b.len, 4);
	ck_assert_str_eq(b.data, "kept");
}
END_TEST

START_TEST(failed_on_impossible_sizes)
{
	ck_assert_int_eq(bcn_buf_reserve(&b, SIZE_MAX), BCN_ENOMEM);
	ck_assert(bcn_buf_failed(&b));
	bcn_buf_reset(&b);
	ck_assert_int_eq(bcn_buf_reserve(&b, SIZE_MAX / 2), BCN_ENOMEM);
	ck_assert(bcn_buf_failed(&b));
	/* A blob longer than its u32 prefix can say: never read. */
	bcn_buf_reset(&b);
	bcn_buf_puts(&b, "ab");
	bcn_buf_put_blob(&b, "x", (size_t)UINT32_MAX + 1);
	ck_assert(bcn_buf_failed(&b));
	ck_assert_uint_eq(b.len, 2);
}
END_TEST

/* Fail each allocation of a mixed sequence in turn: the buffer is either
 * complete or failed, and when failed it holds a prefix of the complete
 * output cut at an append boundary. */
static void build(struct bcn_buf *out)
{
	static char big[300];

	memset(big, 'q', sizeof big);
	bcn_buf_puts(out, "{\"Key\":");
	bcn_buf_put_json_str(out, "a<b>\"c\"", 7);
	bcn_buf_printf(out, ",\"Flags\":%d", 42);
	bcn_buf_put_blob(out, big, sizeof big);
	bcn_buf_put_u64(out, 7);
	bcn_buf_put(out, big, sizeof big);
	bcn_buf_printf(out, "%0900d", 1);
	bcn_buf_putc(out, '}');
}

START_TEST(fail_every_allocation)
{
	struct bcn_buf want;
	int n;

	bcn_buf_init(&want);
	build(&want);
	ck_assert(!bcn_buf_failed(&want));
	for (n = 0;; n++) {
		bcn_buf_reset(&b);
		bcn_buf_close(&b);
		fault_alloc_fail_at(n);
		build(&b);
		fault_alloc_fail_at(-1);
		if (!bcn_buf_failed(&b))
			break;
		ck_assert_uint_lt(b.len, want.len);
		if (b.len > 0)
			ck_assert_mem_eq(b.data, want.data, b.len);
	}
	ck_assert_int_gt(n, 0);
	ck_assert_uint_eq(b.len, want.len);
	ck_assert_mem_eq(b.data, want.data, want.len);
	bcn_buf_close(&want);
}
END_TEST

static Suite *buf_suite(void)
{
	Suite *s = suite_create("buf");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, init_is_empty);
	tcase_add_test(tc, growth_keeps_content);
	tcase_add_test(tc, growth_is_geometric);
	tcase_add_test(tc, reserve_does_not_change_len);
	tcase_add_test(tc, put_puts_putc);
	tcase_add_test(tc, printf_appends);
	tcase_add_test(tc, reset_keeps_memory);
	tcase_add_test(tc, steal_hands_over);
	tcase_add_test(tc, ints_are_big_endian);
	tcase_add_test(tc, cursor_round_trip);
	tcase_add_test(tc, cursor_over_read_sets_err);
	tcase_add_test(tc, cursor_blob_too_long);
	tcase_add_test(tc, json_str_escapes);
	tcase_add_test(tc, json_str_all_ascii_parse_back);
	tcase_add_test(tc, failed_first_allocation);
	tcase_add_test(tc, failed_growth_keeps_content);
	tcase_add_test(tc, failed_on_impossible_sizes);
	tcase_add_test(tc, fail_every_allocation);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return unit_run(buf_suite());
}
