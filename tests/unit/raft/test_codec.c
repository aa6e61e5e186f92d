/* Unit tests for raft/codec.c: the binary command format of the Raft log. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "raft/codec.h"
#include "tests/lib/fault_alloc.h"
#include "tests/lib/unit_run.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Bytes of one encoded op before padding: verb, key blob with its NUL, value
 * blob, flags, index. */
static size_t op_len(const struct kv_op *op)
{
	return 1 + 4 + strlen(op->key) + 1 + 4 + op->value_len + 8 + 8 + 4 +
	       (op->session != NULL ? strlen(op->session) : 0) + 8;
}

/* An exact-size heap copy of @p, so that ASan sees any read past @n. */
static void *copy_of(const void *p, size_t n)
{
	void *c = malloc(n == 0 ? 1 : n);

	ck_assert_ptr_nonnull(c);
	if (n > 0)
		memcpy(c, p, n);
	return c;
}

/* Decode @p[0..n) from an exact-size copy; returns the code. On success the
 * command is checked for internal consistency and closed. */
static int decode_copy(const void *p, size_t n)
{
	struct cluster_cmd cmd;
	void *c = copy_of(p, n);
	int rc = cluster_cmd_decode(c, n, &cmd);

	if (rc == 0 && cmd.type == CMD_KV) {
		ck_assert_uint_ge(cmd.n_ops, 1);
		ck_assert_uint_le(cmd.n_ops, KV_MAX_TXN_OPS);
		for (size_t i = 0; i < cmd.n_ops; i++) {
			const char *k = cmd.ops[i].key;
			ck_assert(k >= (const char *)c &&
				  k < (const char *)c + n);
			ck_assert_uint_lt(strlen(k), n); /* NUL inside */
			ck_assert_uint_le(cmd.ops[i].value_len,
					  KV_MAX_VALUE_LEN);
		}
	}
	if (rc != 0) { /* a failed decode leaves nothing to free */
		ck_assert_ptr_null(cmd.ops);
		ck_assert_uint_eq(cmd.n_ops, 0);
	}
	cluster_cmd_close(&cmd);
	free(c);
	return rc;
}

/* A hand-built CMD_KV with one op, for malformed variants. */
struct raw_op {
	uint8_t version, type;
	uint32_t n;
	uint8_t verb;
	const void *key;
	size_t key_len; /* bytes of the key blob, NUL included or not */
	size_t value_len;
	uint8_t value_byte;
};

static void raw_encode(const struct raw_op *r, struct bcn_buf *out)
{
	bcn_buf_put_u8(out, r->version);
	bcn_buf_put_u8(out, r->type);
	bcn_buf_put_u32(out, r->n);
	for (uint32_t i = 0; i < (r->n > 2 ? 2 : r->n); i++) {
		char *value = malloc(r->value_len + 1);
		ck_assert_ptr_nonnull(value);
		memset(value, r->value_byte, r->value_len);
		bcn_buf_put_u8(out, r->verb);
		bcn_buf_put_blob(out, r->key, r->key_len);
		bcn_buf_put_blob(out, value, r->value_len);
		bcn_buf_put_u64(out, 1);
		bcn_buf_put_u64(out, 2);
		free(value);
	}
	while (out->len % 8 != 0)
		bcn_buf_put_u8(out, 0);
	ck_assert(!bcn_buf_failed(out));
}

/* Version 1's layout (no session, no clock), which decoding still takes:
 * entries written before sessions existed. */
static const struct raw_op good_raw = {
    .version = 1,
    .type = CMD_KV,
    .n = 1,
    .verb = KV_SET,
    .key = "web/a",
    .key_len = 6,
    .value_len = 3,
    .value_byte = 'v',
};

static int decode_raw(const struct raw_op *r)
{
	struct bcn_buf b;
	int rc;

	bcn_buf_init(&b);
	raw_encode(r, &b);
	rc = decode_copy(b.data, b.len);
	bcn_buf_close(&b);
	return rc;
}

static void setup(void)
{
	fault_alloc_fail_at(-1);
}

/* ---- round trips --------------------------------------------------------- */

START_TEST(kv_round_trip_one)
{
	struct kv_op op = {
	    .verb = KV_CAS,
	    .key = "web/a",
	    .value = "hello",
	    .value_len = 5,
	    .flags = 0x0102030405060708ull,
	    .index = UINT64_MAX,
	};
	struct cluster_cmd cmd;
	struct bcn_buf b;

	bcn_buf_init(&b);
	ck_assert_int_eq(cluster_cmd_encode_kv(&op, 1, &b), 0);
	ck_assert_uint_eq(b.len % 8, 0);
	ck_assert_uint_eq(b.len, (6 + op_len(&op) + 7) / 8 * 8);
	ck_assert_uint_eq((uint8_t)b.data[0], CLUSTER_CODEC_VERSION);
	ck_assert_uint_eq((uint8_t)b.data[1], CMD_KV);

	ck_assert_int_eq(cluster_cmd_decode(b.data, b.len, &cmd), 0);
	ck_assert_int_eq(cmd.type, CMD_KV);
	ck_assert_uint_eq(cmd.n_ops, 1);
	ck_assert_int_eq(cmd.ops[0].verb, KV_CAS);
	ck_assert_str_eq(cmd.ops[0].key, "web/a");
	ck_assert_uint_eq(cmd.ops[0].value_len, 5);
	ck_assert_mem_eq(cmd.ops[0].value, "hello", 5);
	ck_assert_uint_eq(cmd.ops[0].flags, op.flags);
	ck_assert_uint_eq(cmd.ops[0].index, UINT64_MAX);
	/* Keys and values point into the log buffer: no copies. */
	ck_assert(cmd.ops[0].key > b.data && cmd.ops[0].key < b.data + b.len);
	ck_assert((const char *)cmd.ops[0].value > b.data &&
		  (const char *)cmd.ops[0].value < b.data + b.len);
	cluster_cmd_close(&cmd);
	ck_assert_ptr_null(cmd.ops);
	cluster_cmd_close(&cmd); /* twice is harmless */
	bcn_buf_close(&b);
}
END_TEST

START_TEST(kv_round_trip_max_ops)
{
	struct kv_op ops[KV_MAX_TXN_OPS];
	char keys[KV_MAX_TXN_OPS][32];
	static char values[KV_MAX_TXN_OPS * 8];
	struct cluster_cmd cmd;
	struct bcn_buf b;
	size_t want = 6;

	for (size_t i = 0; i < sizeof values; i++)
		values[i] = (char)i;
	for (size_t i = 0; i < KV_MAX_TXN_OPS; i++) {
		snprintf(keys[i], sizeof keys[i], "k/%zu%s", i,
			 i % 3 == 0 ? "/\xc3\xa9" : "");
		ops[i] = (struct kv_op){
		    .verb = (enum kv_verb)(KV_SET + i % (KV_VERB_NR - 1)),
		    .key = keys[i],
		    .value = i % 4 == 0 ? NULL : values + i,
		    .value_len = i % 4 == 0 ? 0 : i % 13 * 7,
		    .flags = i * 0x100000001ull,
		    .index = UINT64_MAX - i,
		};
		want += op_len(&ops[i]);
	}
	bcn_buf_init(&b);
	ck_assert_int_eq(cluster_cmd_encode_kv(ops, KV_MAX_TXN_OPS, &b), 0);
	ck_assert_uint_eq(b.len % 8, 0);
	ck_assert_uint_eq(b.len, (want + 7) / 8 * 8);

	ck_assert_int_eq(cluster_cmd_decode(b.data, b.len, &cmd), 0);
	ck_assert_int_eq(cmd.type, CMD_KV);
	ck_assert_uint_eq(cmd.n_ops, KV_MAX_TXN_OPS);
	for (size_t i = 0; i < KV_MAX_TXN_OPS; i++) {
		const struct kv_op *d = &cmd.ops[i];
		ck_assert_int_eq(d->verb, ops[i].verb);
		ck_assert_str_eq(d->key, ops[i].key);
		ck_assert_uint_eq(d->value_len, ops[i].value_len);
		if (d->value_len == 0)
			ck_assert_ptr_null(d->value); /* empty: NULL */
		else
			ck_assert_mem_eq(d->value, ops[i].value, d->value_len);
		ck_assert_uint_eq(d->flags, ops[i].flags);
		ck_assert_uint_eq(d->index, ops[i].index);
	}
	cluster_cmd_close(&cmd);
	bcn_buf_close(&b);
}
END_TEST

/* Every padding length 0..7 appears, and each decodes. */
START_TEST(kv_every_padding)
{
	static const char key[] = "abcdefgh";

	for (size_t vlen = 0; vlen < 8; vlen++) {
		struct kv_op op = {.verb = KV_SET,
				   .key = key,
				   .value = "12345678",
				   .value_len = vlen};
		struct bcn_buf b;

		bcn_buf_init(&b);
		ck_assert_int_eq(cluster_cmd_encode_kv(&op, 1, &b), 0);
		ck_assert_uint_eq(b.len % 8, 0);
		ck_assert_uint_eq(b.len, (6 + op_len(&op) + 7) / 8 * 8);
		ck_assert_int_eq(decode_copy(b.data, b.len), 0);
		bcn_buf_close(&b);
	}
}
END_TEST

/* Encoding appends: a command after other bytes in @out. */
START_TEST(kv_encode_appends)
{
	struct kv_op op = {.verb = KV_DELETE, .key = "x"};
	struct cluster_cmd cmd;
	struct bcn_buf b;

	bcn_buf_init(&b);
	bcn_buf_puts(&b, "12345678");
	ck_assert_int_eq(cluster_cmd_encode_kv(&op, 1, &b), 0);
	ck_assert_mem_eq(b.data, "12345678", 8);
	ck_assert_uint_eq(b.len % 8, 0);
	ck_assert_int_eq(cluster_cmd_decode(b.data + 8, b.len - 8, &cmd), 0);
	ck_assert_int_eq(cmd.ops[0].verb, KV_DELETE);
	ck_assert_str_eq(cmd.ops[0].key, "x");
	ck_assert_ptr_null(cmd.ops[0].value);
	cluster_cmd_close(&cmd);
	bcn_buf_close(&b);
}
END_TEST

START_TEST(kv_encode_rejects_counts)
{
	struct kv_op ops[KV_MAX_TXN_OPS + 1];
	struct bcn_buf b;

	for (size_t i = 0; i < N_OF(ops); i++)
		ops[i] = (struct kv_op){.verb = KV_SET, .key = "k"};
	bcn_buf_init(&b);
	ck_assert_int_eq(cluster_cmd_encode_kv(ops, 0, &b), BCN_EINVAL);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_int_eq(cluster_cmd_encode_kv(ops, KV_MAX_TXN_OPS + 1, &b),
			 BCN_EINVAL);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_int_eq(cluster_cmd_encode_kv(ops, SIZE_MAX, &b), BCN_EINVAL);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_int_eq(cluster_cmd_encode_kv(ops, KV_MAX_TXN_OPS, &b), 0);
	bcn_buf_close(&b);
}
END_TEST

START_TEST(kv_encode_rejects_big_value)
{
	struct kv_op op = {.verb = KV_SET, .key = "k"};
	struct bcn_buf b;
	char *big = calloc(1, KV_MAX_VALUE_LEN + 1);

	ck_assert_ptr_nonnull(big);
	op.value = big;
	op.value_len = KV_MAX_VALUE_LEN + 1;
	bcn_buf_init(&b);
	ck_assert_int_eq(cluster_cmd_encode_kv(&op, 1, &b), BCN_EINVAL);
	bcn_buf_close(&b);

	/* The largest value is fine and decodes. */
	op.value_len = KV_MAX_VALUE_LEN;
	ck_assert_int_eq(cluster_cmd_encode_kv(&op, 1, &b), 0);
	ck_assert_int_eq(decode_copy(b.data, b.len), 0);
	bcn_buf_close(&b);
	free(big);
}
END_TEST

START_TEST(reap_round_trip)
{
	static const uint64_t v[] = {0, 1, 0x8000000000000000ull, UINT64_MAX};

	for (size_t i = 0; i < N_OF(v); i++) {
		struct cluster_cmd cmd;
		struct bcn_buf b;

		bcn_buf_init(&b);
		ck_assert_int_eq(cluster_cmd_encode_reap(v[i], &b), 0);
		ck_assert_uint_eq(b.len, 16); /* 10 bytes, padded */
		ck_assert_int_eq(cluster_cmd_decode(b.data, b.len, &cmd), 0);
		ck_assert_int_eq(cmd.type, CMD_REAP);
		ck_assert_uint_eq(cmd.reap_before, v[i]);
		ck_assert_ptr_null(cmd.ops);
		ck_assert_uint_eq(cmd.n_ops, 0);
		cluster_cmd_close(&cmd);

		/* Truncated anywhere in the 10 bytes: corrupt. */
		for (size_t l = 0; l < 10; l++)
			ck_assert_int_eq(decode_copy(b.data, l), BCN_ECORRUPT);
		/* Without some or all of its padding: still the command. */
		for (size_t l = 10; l <= 16; l++)
			ck_assert_int_eq(decode_copy(b.data, l), 0);
		/* 8 more zero bytes: trailing data. */
		bcn_buf_put_u64(&b, 0);
		ck_assert_int_eq(decode_copy(b.data, b.len), BCN_ECORRUPT);
		bcn_buf_close(&b);
	}
}
END_TEST

START_TEST(server_round_trip)
{
	char longest[CLUSTER_MAX_NAME];
	struct cluster_cmd cmd;
	struct bcn_buf b;
	size_t body = 2 + 4 + 5 + 4 + 14 + 4 + 14;

	bcn_buf_init(&b);
	ck_assert_int_eq(cluster_cmd_encode_server("node1", "127.0.0.1:8300",
						   "127.0.0.1:8500", &b),
			 0);
	ck_assert_uint_eq(b.len, (body + 7) / 8 * 8);
	ck_assert_int_eq(cluster_cmd_decode(b.data, b.len, &cmd), 0);
	ck_assert_int_eq(cmd.type, CMD_SERVER);
	ck_assert_str_eq(cmd.server_name, "node1");
	ck_assert_str_eq(cmd.server_raft, "127.0.0.1:8300");
	ck_assert_str_eq(cmd.server_http, "127.0.0.1:8500");
	ck_assert_ptr_null(cmd.ops);
	cluster_cmd_close(&cmd);
	for (size_t l = 0; l < body; l++)
		ck_assert_msg(decode_copy(b.data, l) == BCN_ECORRUPT,
			      "truncated at %zu accepted", l);
	bcn_buf_close(&b);

	/* Empty strings, and the longest allowed. */
	memset(longest, 'n', sizeof longest - 1);
	longest[sizeof longest - 1] = '\0';
	ck_assert_int_eq(cluster_cmd_encode_server("", longest, "", &b), 0);
	ck_assert_int_eq(cluster_cmd_decode(b.data, b.len, &cmd), 0);
	ck_assert_str_eq(cmd.server_name, "");
	ck_assert_str_eq(cmd.server_raft, longest);
	ck_assert_str_eq(cmd.server_http, "");
	cluster_cmd_close(&cmd);
	bcn_buf_close(&b);
}
END_TEST

/* A hand-built CMD_SERVER whose raft address is @raft[0..n). */
static int decode_server_raw(const char *raft, size_t n)
{
	struct bcn_buf b;
	int rc;

	bcn_buf_init(&b);
	bcn_buf_put_u8(&b, CLUSTER_CODEC_VERSION);
	bcn_buf_put_u8(&b, CMD_SERVER);
	bcn_buf_put_blob(&b, "node", 4);
	bcn_buf_put_blob(&b, raft, n);
	bcn_buf_put_blob(&b, "h:1", 3);
	while (b.len % 8 != 0)
		bcn_buf_put_u8(&b, 0);
	rc = decode_copy(b.data, b.len);
	bcn_buf_close(&b);
	return rc;
}

START_TEST(server_rejects_bad_names)
{
	static char name[CLUSTER_MAX_NAME + 1];
	struct bcn_buf b;

	memset(name, 'n', sizeof name - 1);
	bcn_buf_init(&b);
	ck_assert_int_eq(cluster_cmd_encode_server(name, "r", "h", &b),
			 BCN_EINVAL);
	bcn_buf_close(&b);
	ck_assert_int_eq(cluster_cmd_encode_server("n", "r", name, &b),
			 BCN_EINVAL);
	bcn_buf_close(&b);

	ck_assert_int_eq(decode_server_raw("a:1", 3), 0);
	ck_assert_int_eq(decode_server_raw(name, CLUSTER_MAX_NAME - 1), 0);
	ck_assert_int_eq(decode_server_raw(name, CLUSTER_MAX_NAME),
			 BCN_ECORRUPT);
	ck_assert_int_eq(decode_server_raw("a\0b", 3), BCN_ECORRUPT);
	ck_assert_int_eq(decode_server_raw("ab\0", 3), BCN_ECORRUPT);
}
END_TEST

START_TEST(restore_round_trip)
{
	static char image[1000];
	struct cluster_cmd cmd;
	struct bcn_buf b;

	for (size_t i = 0; i < sizeof image; i++)
		image[i] = (char)(i * 31);
	bcn_buf_init(&b);
	ck_assert_int_eq(cluster_cmd_encode_restore(image, sizeof image, &b),
			 0);
	ck_assert_uint_eq(b.len % 8, 0);
	ck_assert_uint_eq(b.len, (2 + 4 + sizeof image + 7) / 8 * 8);
	ck_assert_int_eq(cluster_cmd_decode(b.data, b.len, &cmd), 0);
	ck_assert_int_eq(cmd.type, CMD_RESTORE);
	ck_assert_uint_eq(cmd.image_len, sizeof image);
	ck_assert_ptr_eq(cmd.image, b.data + 6); /* not copied */
	ck_assert_mem_eq(cmd.image, image, sizeof image);
	cluster_cmd_close(&cmd);
	for (size_t l = 0; l < 6 + sizeof image; l++)
		ck_assert_int_eq(decode_copy(b.data, l), BCN_ECORRUPT);
	bcn_buf_put_u64(&b, 0);
	ck_assert_int_eq(decode_copy(b.data, b.len), BCN_ECORRUPT);
	bcn_buf_close(&b);

	ck_assert_int_eq(cluster_cmd_encode_restore(NULL, 0, &b), 0);
	ck_assert_uint_eq(b.len, 8);
	ck_assert_int_eq(cluster_cmd_decode(b.data, b.len, &cmd), 0);
	ck_assert_int_eq(cmd.type, CMD_RESTORE);
	ck_assert_uint_eq(cmd.image_len, 0);
	cluster_cmd_close(&cmd);
	bcn_buf_close(&b);
}
END_TEST

/* ---- decoding malformed input -------------------------------------------- */

START_TEST(decode_truncated_everywhere)
{
	struct kv_op ops[3] = {
	    {.verb = KV_SET, .key = "a/b", .value = "xyz", .value_len = 3},
	    {.verb = KV_DELETE_TREE, .key = "c/"},
	    {.verb = KV_CHECK_INDEX, .key = "d", .index = 9},
	};
	struct bcn_buf b;
	size_t body = 6;

	for (size_t i = 0; i < N_OF(ops); i++)
		body += op_len(&ops[i]);
	bcn_buf_init(&b);
	ck_assert_int_eq(cluster_cmd_encode_kv(ops, N_OF(ops), &b), 0);
	ck_assert_uint_gt(b.len, body); /* some padding to cut */
	for (size_t l = 0; l < body; l++)
		ck_assert_msg(decode_copy(b.data, l) == BCN_ECORRUPT,
			      "truncated at %zu of %zu accepted", l, body);
	for (size_t l = body; l <= b.len; l++)
		ck_assert_int_eq(decode_copy(b.data, l), 0);
	bcn_buf_close(&b);
}
END_TEST

START_TEST(decode_rejects_version)
{
	static const uint8_t versions[] = {0, CLUSTER_CODEC_VERSION + 1, 255};

	for (size_t i = 0; i < N_OF(versions); i++) {
		struct raw_op r = good_raw;
		r.version = versions[i];
		ck_assert_int_eq(decode_raw(&r), BCN_ECORRUPT);
	}
	ck_assert_int_eq(decode_raw(&good_raw), 0);
}
END_TEST

START_TEST(decode_rejects_type)
{
	static const uint8_t types[] = {0, CMD_RESTORE + 1, 255};

	for (size_t i = 0; i < N_OF(types); i++) {
		struct raw_op r = good_raw;
		r.type = types[i];
		ck_assert_int_eq(decode_raw(&r), BCN_ECORRUPT);
	}
}
END_TEST

START_TEST(decode_rejects_verb)
{
	static const uint8_t verbs[] = {0, KV_VERB_NR, KV_VERB_NR + 1, 255};

	for (size_t i = 0; i < N_OF(verbs); i++) {
		struct raw_op r = good_raw;
		r.verb = verbs[i];
		ck_assert_int_eq(decode_raw(&r), BCN_ECORRUPT);
	}
	for (int v = KV_SET; v < KV_VERB_NR; v++) {
		struct raw_op r = good_raw;
		r.verb = (uint8_t)v;
		ck_assert_int_eq(decode_raw(&r), 0);
	}
}
END_TEST

START_TEST(decode_rejects_bad_keys)
{
	struct raw_op r = good_raw;

	r.key = "web/a";
	r.key_len = 5; /* no NUL */
	ck_assert_int_eq(decode_raw(&r), BCN_ECORRUPT);
	r.key = "we\0b/a";
	r.key_len = 7; /* NUL inside and at the end */
	ck_assert_int_eq(decode_raw(&r), BCN_ECORRUPT);
	r.key = "\0";
	r.key_len = 2; /* two NULs */
	ck_assert_int_eq(decode_raw(&r), BCN_ECORRUPT);
	r.key = "";
	r.key_len = 0; /* an empty blob: not even a NUL */
	ck_assert_int_eq(decode_raw(&r), BCN_ECORRUPT);
	/* The empty key (just its NUL) is well-formed as far as the codec
	 * goes; key rules are kv_key_check()'s job. */
	r.key = "";
	r.key_len = 1;
	ck_assert_int_eq(decode_raw(&r), 0);
}
END_TEST

START_TEST(decode_rejects_counts)
{
	static const uint32_t bad[] = {0, KV_MAX_TXN_OPS + 1, UINT32_MAX};

	for (size_t i = 0; i < N_OF(bad); i++) {
		struct raw_op r = good_raw;
		r.n = bad[i];
		ck_assert_int_eq(decode_raw(&r), BCN_ECORRUPT);
	}
	/* A count larger than the ops present: truncated. */
	{
		struct raw_op r = good_raw;
		r.n = 3; /* raw_encode writes two */
		ck_assert_int_eq(decode_raw(&r), BCN_ECORRUPT);
		r.n = 2;
		ck_assert_int_eq(decode_raw(&r), 0);
	}
}
END_TEST

START_TEST(decode_rejects_big_value)
{
	struct raw_op r = good_raw;

	r.value_len = KV_MAX_VALUE_LEN + 1;
	ck_assert_int_eq(decode_raw(&r), BCN_ECORRUPT);
	r.value_len = KV_MAX_VALUE_LEN;
	ck_assert_int_eq(decode_raw(&r), 0);
}
END_TEST

/* A value blob whose length runs past the end, and the same for the key. */
START_TEST(decode_rejects_overlong_blobs)
{
	struct bcn_buf b;

	bcn_buf_init(&b);
	bcn_buf_put_u8(&b, CLUSTER_CODEC_VERSION);
	bcn_buf_put_u8(&b, CMD_KV);
	bcn_buf_put_u32(&b, 1);
	bcn_buf_put_u8(&b, KV_SET);
	bcn_buf_put_u32(&b, 1000); /* key length */
	bcn_buf_put(&b, "k\0", 2);
	while (b.len % 8 != 0)
		bcn_buf_put_u8(&b, 0);
	ck_assert_int_eq(decode_copy(b.data, b.len), BCN_ECORRUPT);

	bcn_buf_reset(&b);
	bcn_buf_put_u8(&b, CLUSTER_CODEC_VERSION);
	bcn_buf_put_u8(&b, CMD_KV);
	bcn_buf_put_u32(&b, 1);
	bcn_buf_put_u8(&b, KV_SET);
	bcn_buf_put_blob(&b, "k", 2);
	bcn_buf_put_u32(&b, UINT32_MAX); /* value length */
	bcn_buf_put_u64(&b, 0);
	bcn_buf_put_u64(&b, 0);
	ck_assert_int_eq(decode_copy(b.data, b.len), BCN_ECORRUPT);
	bcn_buf_close(&b);
}
END_TEST

START_TEST(decode_rejects_nonzero_padding)
{
	struct kv_op op = {
	    .verb = KV_SET, .key = "k", .value = "v", .value_len = 1};
	struct bcn_buf b;
	size_t body = 6 + op_len(&op);

	bcn_buf_init(&b);
	ck_assert_int_eq(cluster_cmd_encode_kv(&op, 1, &b), 0);
	ck_assert_uint_gt(b.len, body);
	for (size_t i = body; i < b.len; i++) {
		char *c = copy_of(b.data, b.len);
		struct cluster_cmd cmd;
		c[i] = 1;
		ck_assert_int_eq(cluster_cmd_decode(c, b.len, &cmd),
				 BCN_ECORRUPT);
		c[i] = (char)0x80;
		ck_assert_int_eq(cluster_cmd_decode(c, b.len, &cmd),
				 BCN_ECORRUPT);
		free(c);
	}
	bcn_buf_close(&b);
}
END_TEST

START_TEST(decode_rejects_trailing_data)
{
	struct kv_op op = {
	    .verb = KV_SET, .key = "key", .value = "v", .value_len = 1};
	struct bcn_buf b;
	size_t body = 6 + op_len(&op);

	bcn_buf_init(&b);
	ck_assert_int_eq(cluster_cmd_encode_kv(&op, 1, &b), 0);
	for (int extra = 1; extra <= 16; extra++) {
		bcn_buf_put_u8(&b, 0);
		/* Under 8 zero bytes after the command read as padding; 8
		 * or more are trailing data. */
		ck_assert_int_eq(decode_copy(b.data, b.len),
				 b.len - body >= 8 ? BCN_ECORRUPT : 0);
	}
	bcn_buf_close(&b);

	/* A second command glued after the first. */
	bcn_buf_init(&b);
	ck_assert_int_eq(cluster_cmd_encode_kv(&op, 1, &b), 0);
	ck_assert_int_eq(cluster_cmd_encode_kv(&op, 1, &b), 0);
	ck_assert_int_eq(decode_copy(b.data, b.len), BCN_ECORRUPT);
	bcn_buf_close(&b);
}
END_TEST

START_TEST(decode_rejects_empty)
{
	struct cluster_cmd cmd;

	ck_assert_int_eq(cluster_cmd_decode(NULL, 0, &cmd), BCN_ECORRUPT);
	ck_assert_ptr_null(cmd.ops);
	ck_assert_int_eq(decode_copy("\x01", 1), BCN_ECORRUPT);
	ck_assert_int_eq(decode_copy("\x01\x01", 2), BCN_ECORRUPT);
	ck_assert_int_eq(decode_copy("\x01\x02", 2), BCN_ECORRUPT);
}
END_TEST

/* Flip bytes of valid commands: the decoder answers 0 or BCN_ECORRUPT and
 * never reads out of bounds or leaks (the sanitizers watch). */
START_TEST(decode_survives_mutations)
{
	struct kv_op ops[4] = {
	    {.verb = KV_SET,
	     .key = "a",
	     .value = "0123456789",
	     .value_len = 10},
	    {.verb = KV_CAS, .key = "bb/cc", .index = 3},
	    {.verb = KV_GET_TREE, .key = ""},
	    {.verb = KV_DELETE_CAS, .key = "d", .index = 77},
	};
	uint32_t seed = 12345;
	struct bcn_buf b;

	bcn_buf_init(&b);
	ck_assert_int_eq(cluster_cmd_encode_kv(ops, N_OF(ops), &b), 0);
	for (int iter = 0; iter < 20000; iter++) {
		char *c = copy_of(b.data, b.len);
		size_t len = b.len;
		int flips = 1 + iter % 3, rc;

		for (int f = 0; f < flips; f++) {
			seed = seed * 1103515245u + 12345u;
			c[(seed >> 8) % len] = (char)(seed >> 24);
		}
		if (iter % 5 == 0) {
			seed = seed * 1103515245u + 12345u;
			len = (seed >> 8) % (len + 1);
		}
		rc = decode_copy(c, len);
		ck_assert(rc == 0 || rc == BCN_ECORRUPT);
		free(c);
	}
	bcn_buf_close(&b);
}
END_TEST

/* ---- allocation failure -------------------------------------------------- */

START_TEST(decode_oom)
{
	struct kv_op ops[2] = {
	    {.verb = KV_SET, .key = "a", .value = "1", .value_len = 1},
	    {.verb = KV_DELETE, .key = "b"},
	};
	struct cluster_cmd cmd;
	struct bcn_buf b;
	int n;

	bcn_buf_init(&b);
	ck_assert_int_eq(cluster_cmd_encode_kv(ops, 2, &b), 0);
	for (n = 0; n < 100; n++) {
		int rc, fired;

		fault_alloc_fail_at(n);
		rc = cluster_cmd_decode(b.data, b.len, &cmd);
		fired = fault_alloc_fired();
		fault_alloc_fail_at(-1);
		if (fired) {
			ck_assert_int_eq(rc, BCN_ENOMEM);
			ck_assert_ptr_null(cmd.ops);
			ck_assert_uint_eq(cmd.n_ops, 0);
			cluster_cmd_close(&cmd);
			continue;
		}
		ck_assert_int_eq(rc, 0);
		ck_assert_uint_eq(cmd.n_ops, 2);
		ck_assert_str_eq(cmd.ops[1].key, "b");
		cluster_cmd_close(&cmd);
		break;
	}
	ck_assert_int_gt(n, 0);
	ck_assert_int_lt(n, 100);
	/* REAP allocates nothing. */
	bcn_buf_reset(&b);
	ck_assert_int_eq(cluster_cmd_encode_reap(5, &b), 0);
	fault_alloc_fail_at(0);
	ck_assert_int_eq(cluster_cmd_decode(b.data, b.len, &cmd), 0);
	ck_assert(!fault_alloc_fired());
	fault_alloc_fail_at(-1);
	bcn_buf_close(&b);
}
END_TEST

START_TEST(encode_oom)
{
	struct kv_op ops[KV_MAX_TXN_OPS];
	static char value[4096];
	int n;

	for (size_t i = 0; i < N_OF(ops); i++)
		ops[i] = (struct kv_op){.verb = KV_SET,
					.key = "some/key",
					.value = value,
					.value_len = sizeof value};
	for (n = 0; n < 1000; n++) {
		struct bcn_buf b;
		int rc, fired;

		bcn_buf_init(&b);
		fault_alloc_fail_at(n);
		rc = cluster_cmd_encode_kv(ops, N_OF(ops), &b);
		fired = fault_alloc_fired();
		fault_alloc_fail_at(-1);
		if (fired) {
			ck_assert_int_eq(rc, BCN_ENOMEM);
			ck_assert(bcn_buf_failed(&b));
		} else {
			ck_assert_int_eq(rc, 0);
			ck_assert_int_eq(decode_copy(b.data, b.len), 0);
		}
		bcn_buf_close(&b);
		if (!fired)
			break;
	}
	ck_assert_int_gt(n, 0);
	ck_assert_int_lt(n, 1000);

	for (n = 0;; n++) {
		struct bcn_buf b;
		int rc, fired;

		bcn_buf_init(&b);
		fault_alloc_fail_at(n);
		rc = cluster_cmd_encode_reap(1, &b);
		fired = fault_alloc_fired();
		fault_alloc_fail_at(-1);
		ck_assert_int_eq(rc, fired ? BCN_ENOMEM : 0);
		bcn_buf_close(&b);
		if (!fired)
			break;
	}
	ck_assert_int_eq(n, 1);
}
END_TEST

static Suite *codec_suite(void)
{
	Suite *s = suite_create("codec");
	TCase *rt = tcase_create("round-trip");
	TCase *bad = tcase_create("malformed");
	TCase *oom = tcase_create("oom");

	tcase_add_checked_fixture(rt, setup, NULL);
	tcase_add_test(rt, kv_round_trip_one);
	tcase_add_test(rt, kv_round_trip_max_ops);
	tcase_add_test(rt, kv_every_padding);
	tcase_add_test(rt, kv_encode_appends);
	tcase_add_test(rt, kv_encode_rejects_counts);
	tcase_add_test(rt, kv_encode_rejects_big_value);
	tcase_add_test(rt, reap_round_trip);
	tcase_add_test(rt, server_round_trip);
	tcase_add_test(rt, server_rejects_bad_names);
	tcase_add_test(rt, restore_round_trip);
	suite_add_tcase(s, rt);

	tcase_add_checked_fixture(bad, setup, NULL);
	tcase_add_test(bad, decode_truncated_everywhere);
	tcase_add_test(bad, decode_rejects_version);
	tcase_add_test(bad, decode_rejects_type);
	tcase_add_test(bad, decode_rejects_verb);
	tcase_add_test(bad, decode_rejects_bad_keys);
	tcase_add_test(bad, decode_rejects_counts);
	tcase_add_test(bad, decode_rejects_big_value);
	tcase_add_test(bad, decode_rejects_overlong_blobs);
	tcase_add_test(bad, decode_rejects_nonzero_padding);
	tcase_add_test(bad, decode_rejects_trailing_data);
	tcase_add_test(bad, decode_rejects_empty);
	tcase_add_test(bad, decode_survives_mutations);
	suite_add_tcase(s, bad);

	tcase_add_checked_fixture(oom, setup, NULL);
	tcase_add_test(oom, decode_oom);
	tcase_add_test(oom, encode_oom);
	suite_add_tcase(s, oom);
	return s;
}

int main(void)
{
	return unit_run(codec_suite());
}
