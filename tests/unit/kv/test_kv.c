/* Unit tests for kv/kv.c: keys, verbs, all-or-nothing transactions,
 * indexes, tombstones, listings, the change record, and every allocation
 * failure of kv_apply() and kv_store_open(). */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "kv/kv.h"
#include "tests/lib/fault_alloc.h"
#include "tests/lib/unit_run.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Fixture: setup() opens ":memory:" and the store, teardown() closes. */
static sqlite3 *db;
static struct kv_store *store;

static void setup(void)
{
	char errmsg[BCN_ERRMSG_LEN] = "";

	fault_alloc_fail_at(-1);
	ck_assert_int_eq(sqlite3_open(":memory:", &db), SQLITE_OK);
	ck_assert_msg(kv_store_open(&store, db, errmsg) == 0, "%s", errmsg);
}

static void teardown(void)
{
	fault_alloc_fail_at(-1);
	kv_store_close(store);
	store = NULL;
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK); /* nothing left open */
	db = NULL;
}

/* ---- helpers ------------------------------------------------------------- */

static struct kv_op op_of(enum kv_verb verb, const char *key, const char *val,
			  uint64_t index)
{
	struct kv_op op = {.verb = verb, .key = key, .index = index};

	if (val != NULL) {
		op.value = val;
		op.value_len = strlen(val);
	}
	return op;
}

/* Apply one op at Raft index @at; returns kv_apply's code, and whether the
 * op went through in @ok. */
static int apply1(enum kv_verb verb, const char *key, const char *val,
		  uint64_t cas, uint64_t at, bool *ok)
{
	struct kv_op op = op_of(verb, key, val, cas);
	struct kv_result res;
	int rc;

	kv_result_init(&res);
	rc = kv_apply(store, &op, 1, at, &res);
	if (ok != NULL)
		*ok = res.ok;
	kv_result_close(&res);
	return rc;
}

static void put(const char *key, const char *val, uint64_t at)
{
	bool ok = false;

	ck_assert_int_eq(apply1(KV_SET, key, val, 0, at, &ok), 0);
	ck_assert(ok);
}

static void del(const char *key, uint64_t at)
{
	bool ok = false;

	ck_assert_int_eq(apply1(KV_DELETE, key, NULL, 0, at, &ok), 0);
	ck_assert(ok);
}

/* True if @key holds exactly @val (NULL: the key is absent). */
static bool holds(const char *key, const char *val)
{
	struct kv_entry e;
	int rc = kv_get(store, key, &e, NULL);
	bool same;

	if (val == NULL)
		return rc == BCN_ENOTFOUND;
	ck_assert_msg(rc == 0 || rc == BCN_ENOTFOUND, "kv_get: %d", rc);
	if (rc != 0)
		return false;
	same = e.value_len == strlen(val) &&
	       (e.value_len == 0 || memcmp(e.value, val, e.value_len) == 0);
	kv_entry_close(&e);
	return same;
}

static uint64_t modify_index(const char *key)
{
	struct kv_entry e;
	uint64_t idx;

	ck_assert_int_eq(kv_get(store, key, &e, NULL), 0);
	idx = e.modify_index;
	kv_entry_close(&e);
	return idx;
}

static uint64_t index_of(const char *key, bool exact)
{
	uint64_t idx = 0;

	ck_assert_int_eq(kv_index(store, key, exact, &idx), 0);
	return idx;
}

/* ---- kv_key_check -------------------------------------------------------- */

START_TEST(key_check_accepts)
{
	static const char *const ok[] = {
	    "a",   "web/foo",	   "web/foo/",	       "a b",	 "a-b_c.d~e",
	    "%2F", "h\xc3\xa9llo", "\xf0\x9f\x98\x80", "?x=1&y", "trailing/",
	};
	char long_key[KV_MAX_KEY_LEN + 1];
	const char *why = NULL;

	for (size_t i = 0; i < N_OF(ok); i++) {
		ck_assert_msg(kv_key_check(ok[i], strlen(ok[i]), false, &why) ==
				  0,
			      "\"%s\": %s", ok[i], why);
		ck_assert_int_eq(kv_key_check(ok[i], strlen(ok[i]), true, &why),
				 0);
	}
	memset(long_key, 'k', sizeof long_key);
	ck_assert_int_eq(kv_key_check(long_key, KV_MAX_KEY_LEN, false, &why),
			 0);
	/* @why may be NULL. */
	ck_assert_int_eq(kv_key_check("a", 1, false, NULL), 0);
}
END_TEST

/* Check that @key[0..len) is rejected in both modes, with a reason. */
static void rejects(const char *key, size_t len)
{
	for (int prefix = 0; prefix <= 1; prefix++) {
		const char *why = NULL;
		ck_assert_msg(
		    kv_key_check(key, len, prefix, &why) == BCN_EINVAL,
		    "key of %zu bytes accepted (prefix %d)", len, prefix);
		ck_assert_ptr_nonnull(why);
		ck_assert_uint_gt(strlen(why), 0);
		ck_assert_int_eq(kv_key_check(key, len, prefix, NULL),
				 BCN_EINVAL);
	}
}

START_TEST(key_check_rules)
{
	char long_key[KV_MAX_KEY_LEN + 2];
	const char *why = NULL;

	/* Empty: an error for a key, fine for a prefix. */
	ck_assert_int_eq(kv_key_check("", 0, false, &why), BCN_EINVAL);
	ck_assert_ptr_nonnull(why);
	ck_assert_int_eq(kv_key_check("", 0, true, &why), 0);

	/* Too long: 1025 bytes, and the limit counts bytes, not characters. */
	memset(long_key, 'k', sizeof long_key);
	rejects(long_key, KV_MAX_KEY_LEN + 1);
	rejects(long_key, KV_MAX_KEY_LEN + 2);
	for (size_t i = 0; i + 1 < KV_MAX_KEY_LEN; i += 2) {
		long_key[i] = (char)0xc3;
		long_key[i + 1] = (char)0xa9;
	}
	long_key[KV_MAX_KEY_LEN] = 'x';
	ck_assert_int_eq(kv_key_check(long_key, KV_MAX_KEY_LEN, false, NULL),
			 0);
	rejects(long_key, KV_MAX_KEY_LEN + 1);

	/* Leading '/'. */
	rejects("/", 1);
	rejects("/a", 2);
	rejects("//a", 3);

	/* "//" anywhere. */
	rejects("a//b", 4);
	rejects("a//", 3);
	rejects("a/b//c/d", 8);

	/* Invalid UTF-8. */
	rejects("\xff", 1);
	rejects("a\xc3", 2);
	rejects("\xc0\xaf", 2);		   /* overlong '/' */
	rejects("\xed\xa0\x80", 3);	   /* surrogate */
	rejects("ok/\xf4\x90\x80\x80", 7); /* above U+10FFFF */
}
END_TEST

START_TEST(key_check_control_chars)
{
	for (int c = 0; c < 0x20; c++) {
		char key[3] = {'a', (char)c, 'b'};
		rejects(key, 3);
		key[0] = (char)c;
		rejects(key, 3); /* at the start */
		key[0] = 'a';
		key[2] = (char)c;
		rejects(key, 3); /* at the end */
	}
	rejects("a\x7f"
		"b",
		3);
	rejects("\x7f", 1);
	/* 0x20 and the C1 range encoded as UTF-8 are not C0 controls. */
	ck_assert_int_eq(kv_key_check("a b", 3, false, NULL), 0);
	ck_assert_int_eq(kv_key_check("\xc2\x85", 2, false, NULL), 0);
}
END_TEST

/* ---- verbs --------------------------------------------------------------- */

START_TEST(verb_names)
{
	static const struct {
		const char *name;
		enum kv_verb verb;
		bool writes;
	} v[] = {
	    {"set", KV_SET, true},
	    {"cas", KV_CAS, true},
	    {"get", KV_GET, false},
	    {"get-tree", KV_GET_TREE, false},
	    {"check-index", KV_CHECK_INDEX, false},
	    {"check-not-exists", KV_CHECK_NOT_EXISTS, false},
	    {"delete", KV_DELETE, true},
	    {"delete-tree", KV_DELETE_TREE, true},
	    {"delete-cas", KV_DELETE_CAS, true},
	    {"lock", KV_LOCK, true},
	    {"unlock", KV_UNLOCK, true},
	    {"check-session", KV_CHECK_SESSION, false},
	};
	static const char *const unknown[] = {
	    "", "lock ", "Unlock", "check_session", "SET", "set ", "deletetree",
	};

	for (size_t i = 0; i < N_OF(v); i++) {
		ck_assert_int_eq(kv_verb_parse(v[i].name), v[i].verb);
		ck_assert_int_eq(kv_verb_writes(v[i].verb), v[i].writes);
	}
	for (size_t i = 0; i < N_OF(unknown); i++)
		ck_assert_int_eq(kv_verb_parse(unknown[i]), 0);
}
END_TEST

START_TEST(set_creates_then_updates)
{
	struct kv_op op = op_of(KV_SET, "web/a", "v1", 0);
	struct kv_result res;
	struct kv_entry e;
	uint64_t idx = 0;

	op.flags = 42;
	kv_result_init(&res);
	ck_assert_int_eq(kv_apply(store, &op, 1, 5, &res), 0);
	ck_assert(res.ok);
	/* A set's result is the entry without its value. */
	ck_assert_uint_eq(res.entries.n, 1);
	ck_assert_str_eq(res.entries.items[0].key, "web/a");
	ck_assert_ptr_null(res.entries.items[0].value);
	ck_assert_uint_eq(res.entries.items[0].modify_index, 5);
	kv_result_close(&res);

	ck_assert_int_eq(kv_get(store, "web/a", &e, &idx), 0);
	ck_assert_str_eq(e.key, "web/a");
	ck_assert_uint_eq(e.value_len, 2);
	ck_assert_mem_eq(e.value, "v1", 2);
	ck_assert_uint_eq(e.flags, 42);
	ck_assert_uint_eq(e.create_index, 5);
	ck_assert_uint_eq(e.modify_index, 5);
	ck_assert_uint_eq(e.lock_index, 0);
	ck_assert_ptr_null(e.session);
	ck_assert_uint_eq(idx, 5);
	kv_entry_close(&e);

	op = op_of(KV_SET, "web/a", "second", 0);
	op.flags = UINT64_MAX; /* survives the int64 column */
	ck_assert_int_eq(kv_apply(store, &op, 1, 9, NULL), 0);
	ck_assert_int_eq(kv_get(store, "web/a", &e, NULL), 0);
	ck_assert_uint_eq(e.value_len, 6);
	ck_assert_mem_eq(e.value, "second", 6);
	ck_assert_uint_eq(e.flags, UINT64_MAX);
	ck_assert_uint_eq(e.create_index, 5); /* kept */
	ck_assert_uint_eq(e.modify_index, 9);
	kv_entry_close(&e);
}
END_TEST

START_TEST(set_values_empty_binary_large)
{
	static const char bin[] = "a\0b\0\xff";
	struct kv_op op = op_of(KV_SET, "bin", NULL, 0);
	struct kv_entry e;
	char *big;

	/* Empty value: NULL with length 0. */
	put("empty", "", 3);
	ck_assert_int_eq(kv_get(store, "empty", &e, NULL), 0);
	ck_assert_ptr_null(e.value);
	ck_assert_uint_eq(e.value_len, 0);
	kv_entry_close(&e);

	/* NUL bytes inside a value are kept. */
	op.value = bin;
	op.value_len = sizeof bin;
	ck_assert_int_eq(kv_apply(store, &op, 1, 4, NULL), 0);
	ck_assert_int_eq(kv_get(store, "bin", &e, NULL), 0);
	ck_assert_uint_eq(e.value_len, sizeof bin);
	ck_assert_mem_eq(e.value, bin, sizeof bin);
	kv_entry_close(&e);

	/* The largest value. */
	big = malloc(KV_MAX_VALUE_LEN);
	ck_assert_ptr_nonnull(big);
	for (size_t i = 0; i < KV_MAX_VALUE_LEN; i++)
		big[i] = (char)(i % 251);
	op = op_of(KV_SET, "big", NULL, 0);
	op.value = big;
	op.value_len = KV_MAX_VALUE_LEN;
	ck_assert_int_eq(kv_apply(store, &op, 1, 5, NULL), 0);
	ck_assert_int_eq(kv_get(store, "big", &e, NULL), 0);
	ck_assert_uint_eq(e.value_len, KV_MAX_VALUE_LEN);
	ck_assert_mem_eq(e.value, big, KV_MAX_VALUE_LEN);
	kv_entry_close(&e);
	free(big);
}
END_TEST

START_TEST(cas_zero_means_create_only)
{
	bool ok;

	ck_assert_int_eq(apply1(KV_CAS, "k", "first", 0, 3, &ok), 0);
	ck_assert(ok);
	ck_assert(holds("k", "first"));
	ck_assert_uint_eq(modify_index("k"), 3);

	ck_assert_int_eq(apply1(KV_CAS, "k", "second", 0, 4, &ok), 0);
	ck_assert(!ok);
	ck_assert(holds("k", "first"));
	ck_assert_uint_eq(modify_index("k"), 3);
}
END_TEST

START_TEST(cas_index)
{
	struct kv_op op;
	struct kv_result res;
	bool ok;

	put("k", "v1", 10);
	/* Wrong index: a normal failure that names the op. */
	op = op_of(KV_CAS, "k", "v2", 9);
	kv_result_init(&res);
	ck_assert_int_eq(kv_apply(store, &op, 1, 11, &res), 0);
	ck_assert(!res.ok);
	ck_assert_uint_eq(res.failed_op, 0);
	ck_assert_ptr_nonnull(strstr(res.what, "\"k\""));
	ck_assert_ptr_nonnull(strstr(res.what, "index is stale"));
	ck_assert_uint_eq(res.entries.n, 0);
	kv_result_close(&res);
	ck_assert(holds("k", "v1"));

	/* Right index. */
	ck_assert_int_eq(apply1(KV_CAS, "k", "v2", 10, 12, &ok), 0);
	ck_assert(ok);
	ck_assert(holds("k", "v2"));
	ck_assert_uint_eq(modify_index("k"), 12);

	/* The old index is now stale. */
	ck_assert_int_eq(apply1(KV_CAS, "k", "v3", 10, 13, &ok), 0);
	ck_assert(!ok);
	ck_assert(holds("k", "v2"));

	/* A non-zero index on a missing key fails (Consul). */
	ck_assert_int_eq(apply1(KV_CAS, "missing", "x", 12, 14, &ok), 0);
	ck_assert(!ok);
	ck_assert(holds("missing", NULL));
}
END_TEST

START_TEST(get_verb)
{
	struct kv_op op = op_of(KV_GET, "k", NULL, 0);
	struct kv_result res;

	put("k", "value", 7);
	kv_result_init(&res);
	ck_assert_int_eq(kv_apply(store, &op, 1, 8, &res), 0);
	ck_assert(res.ok);
	ck_assert_uint_eq(res.entries.n, 1);
	ck_assert_str_eq(res.entries.items[0].key, "k");
	ck_assert_uint_eq(res.entries.items[0].value_len, 5);
	ck_assert_mem_eq(res.entries.items[0].value, "value", 5);
	ck_assert_uint_eq(res.entries.items[0].modify_index, 7);
	kv_result_close(&res);

	op.key = "nope";
	kv_result_init(&res);
	ck_assert_int_eq(kv_apply(store, &op, 1, 8, &res), 0);
	ck_assert(!res.ok);
	ck_assert_ptr_nonnull(strstr(res.what, "doesn't exist"));
	ck_assert_uint_eq(res.entries.n, 0);
	kv_result_close(&res);

	/* Without a result, a read is a no-op. */
	op.key = "k";
	ck_assert_int_eq(kv_apply(store, &op, 1, 8, NULL), 0);
}
END_TEST

START_TEST(get_tree_verb)
{
	struct kv_op op = op_of(KV_GET_TREE, "web/", NULL, 0);
	struct kv_result res;

	put("web/b", "2", 3);
	put("web/a", "1", 4);
	put("webx", "x", 5);
	put("a", "0", 6);
	kv_result_init(&res);
	ck_assert_int_eq(kv_apply(store, &op, 1, 9, &res), 0);
	ck_assert(res.ok);
	ck_assert_uint_eq(res.entries.n, 2);
	ck_assert_str_eq(res.entries.items[0].key, "web/a");
	ck_assert_mem_eq(res.entries.items[0].value, "1", 1);
	ck_assert_str_eq(res.entries.items[1].key, "web/b");
	ck_assert_mem_eq(res.entries.items[1].value, "2", 1);
	kv_result_close(&res);

	/* An empty tree is not a failure. */
	op.key = "none/";
	kv_result_init(&res);
	ck_assert_int_eq(kv_apply(store, &op, 1, 9, &res), 0);
	ck_assert(res.ok);
	ck_assert_uint_eq(res.entries.n, 0);
	kv_result_close(&res);
	ck_assert_int_eq(kv_apply(store, &op, 1, 9, NULL), 0);
}
END_TEST

START_TEST(check_index_verb)
{
	struct kv_op op = op_of(KV_CHECK_INDEX, "k", NULL, 4);
	struct kv_result res;

	put("k", "v", 4);
	kv_result_init(&res);
	ck_assert_int_eq(kv_apply(store, &op, 1, 9, &res), 0);
	ck_assert(res.ok);
	ck_assert_uint_eq(res.entries.n, 1);
	ck_assert_str_eq(res.entries.items[0].key, "k");
	ck_assert_ptr_null(res.entries.items[0].value); /* no value */
	kv_result_close(&res);

	op.index = 5;
	kv_result_init(&res);
	ck_assert_int_eq(kv_apply(store, &op, 1, 9, &res), 0);
	ck_assert(!res.ok);
	ck_assert_ptr_nonnull(strstr(res.what, "4 != 5"));
	kv_result_close(&res);

	op.key = "missing";
	op.index = 0;
	kv_result_init(&res);
	ck_assert_int_eq(kv_apply(store, &op, 1, 9, &res), 0);
	ck_assert(!res.ok);
	ck_assert_ptr_nonnull(strstr(res.what, "doesn't exist"));
	kv_result_close(&res);
}
END_TEST

START_TEST(check_not_exists_verb)
{
	struct kv_op op = op_of(KV_CHECK_NOT_EXISTS, "k", NULL, 0);
	struct kv_result res;

	kv_result_init(&res);
	ck_assert_int_eq(kv_apply(store, &op, 1, 9, &res), 0);
	ck_assert(res.ok);
	ck_assert_uint_eq(res.entries.n, 0);
	kv_result_close(&res);

	put("k", "v", 10);
	kv_result_init(&res);
	ck_assert_int_eq(kv_apply(store, &op, 1, 11, &res), 0);
	ck_assert(!res.ok);
	ck_assert_ptr_nonnull(strstr(res.what, "exists"));
	kv_result_close(&res);
}
END_TEST

START_TEST(delete_verb)
{
	uint64_t idx = 0;
	struct kv_entry e;

	put("k", "v", 5);
	del("k", 8);
	ck_assert(holds("k", NULL));
	ck_assert_int_eq(kv_get(store, "k", &e, &idx), BCN_ENOTFOUND);
	ck_assert_uint_eq(idx, 8); /* the tombstone's */

	/* Deleting what is not there succeeds and leaves no tombstone. */
	del("never", 9);
	/* A missing key has the table's index: 8, the last change. */
	ck_assert_uint_eq(index_of("never", true), 8);
	ck_assert_uint_eq(index_of("k", true), 8);
	/* Deleting a deleted key keeps the first tombstone. */
	del("k", 10);
	ck_assert_uint_eq(index_of("k", true), 8);
}
END_TEST

START_TEST(delete_tree_verb)
{
	put("web/a", "1", 2);
	put("web/b/c", "2", 3);
	put("web", "3", 4);
	put("webx", "4", 5);
	put("other", "5", 6);
	ck_assert_int_eq(apply1(KV_DELETE_TREE, "web/", NULL, 0, 10, NULL), 0);
	ck_assert(holds("web/a", NULL));
	ck_assert(holds("web/b/c", NULL));
	ck_assert(holds("web", "3"));
	ck_assert(holds("webx", "4"));
	ck_assert(holds("other", "5"));
	ck_assert_uint_eq(index_of("web/a", true), 10);
	ck_assert_uint_eq(index_of("web/b/c", true), 10);
	ck_assert_uint_eq(index_of("web/", false), 10);

	/* An empty prefix deletes everything. */
	ck_assert_int_eq(apply1(KV_DELETE_TREE, "", NULL, 0, 11, NULL), 0);
	ck_assert(holds("web", NULL));
	ck_assert(holds("webx", NULL));
	ck_assert(holds("other", NULL));
	ck_assert_uint_eq(index_of("", false), 11);
}
END_TEST

START_TEST(delete_cas_verb)
{
	struct kv_op op = op_of(KV_DELETE_CAS, "k", NULL, 4);
	struct kv_result res;
	bool ok;

	put("k", "v", 5);
	kv_result_init(&res);
	ck_assert_int_eq(kv_apply(store, &op, 1, 9, &res), 0);
	ck_assert(!res.ok);
	ck_assert_ptr_nonnull(strstr(res.what, "index is stale"));
	kv_result_close(&res);
	ck_assert(holds("k", "v"));

	/* Index 0 never matches an existing key. */
	ck_assert_int_eq(apply1(KV_DELETE_CAS, "k", NULL, 0, 9, &ok), 0);
	ck_assert(!ok);
	ck_assert(holds("k", "v"));

	ck_assert_int_eq(apply1(KV_DELETE_CAS, "k", NULL, 5, 9, &ok), 0);
	ck_assert(ok);
	ck_assert(holds("k", NULL));
	ck_assert_uint_eq(index_of("k", true), 9);
}
END_TEST

/* An op sees the writes of the ops before it in the same command. */
START_TEST(ops_see_earlier_ops)
{
	struct kv_op ops[] = {
	    op_of(KV_SET, "a", "1", 0),
	    op_of(KV_CHECK_INDEX, "a", NULL, 20),
	    op_of(KV_GET, "a", NULL, 0),
	    op_of(KV_DELETE, "a", NULL, 0),
	    op_of(KV_CHECK_NOT_EXISTS, "a", NULL, 0),
	    op_of(KV_CAS, "a", "2", 0),
	    op_of(KV_GET_TREE, "", NULL, 0),
	};
	struct kv_result res;

	kv_result_init(&res);
	ck_assert_int_eq(kv_apply(store, ops, N_OF(ops), 20, &res), 0);
	ck_assert_msg(res.ok, "op %zu: %s", res.failed_op, res.what);
	/* Entries in op order: set, check-index, get, cas, get-tree. */
	ck_assert_uint_eq(res.entries.n, 5);
	ck_assert_ptr_null(res.entries.items[0].value);
	ck_assert_ptr_null(res.entries.items[1].value);
	ck_assert_mem_eq(res.entries.items[2].value, "1", 1);
	ck_assert_ptr_null(res.entries.items[3].value);
	ck_assert_mem_eq(res.entries.items[4].value, "2", 1);
	kv_result_close(&res);
	ck_assert(holds("a", "2"));
}
END_TEST

/* A failing op later in the list leaves the earlier writes undone. */
START_TEST(txn_all_or_nothing)
{
	struct kv_op ops[] = {
	    op_of(KV_SET, "a", "new", 0),
	    op_of(KV_DELETE, "b", NULL, 0),
	    op_of(KV_SET, "c", "new", 0),
	    op_of(KV_DELETE_TREE, "t/", NULL, 0),
	    op_of(KV_GET, "a", NULL, 0),
	    op_of(KV_CHECK_INDEX, "c", NULL, 3),
	    op_of(KV_SET, "never", "x", 0),
	};
	struct kv_changes ch;
	struct kv_result res;

	put("b", "old-b", 2);
	put("c", "old-c", 3);
	put("t/1", "t", 4);
	kv_changes_take(store, &ch);

	/* check-index on "c" sees index 30 (set by op 2), not 3. */
	kv_result_init(&res);
	ck_assert_int_eq(kv_apply(store, ops, N_OF(ops), 30, &res), 0);
	ck_assert(!res.ok);
	ck_assert_uint_eq(res.failed_op, 5);
	ck_assert_ptr_nonnull(strstr(res.what, "30 != 3"));
	ck_assert_uint_eq(res.entries.n, 0); /* partial results dropped */
	kv_result_close(&res);

	ck_assert(holds("a", NULL));
	ck_assert(holds("b", "old-b"));
	ck_assert(holds("c", "old-c"));
	ck_assert(holds("t/1", "t"));
	ck_assert(holds("never", NULL));
	ck_assert_uint_eq(modify_index("c"), 3);
	ck_assert_uint_eq(index_of("a", true), 4); /* the table's index */
	ck_assert_uint_eq(index_of("", false), 4);
	ck_assert(sqlite3_get_autocommit(db)); /* no transaction left open */
	/* Nothing is recorded as changed. */
	kv_changes_take(store, &ch);
	ck_assert_uint_eq(ch.n, 0);
	ck_assert(!ch.all);

	/* The same without a result. */
	ck_assert_int_eq(kv_apply(store, ops, N_OF(ops), 30, NULL), 0);
	ck_assert(holds("a", NULL));
	ck_assert(holds("b", "old-b"));
	ck_assert(holds("t/1", "t"));

	/* And the first op failing. */
	ops[0] = op_of(KV_CAS, "b", "x", 99);
	kv_result_init(&res);
	ck_assert_int_eq(kv_apply(store, ops, N_OF(ops), 31, &res), 0);
	ck_assert(!res.ok);
	ck_assert_uint_eq(res.failed_op, 0);
	kv_result_close(&res);
	ck_assert(holds("b", "old-b"));
}
END_TEST

/* A verb out of range is refused and rolls back the ops before it. */
START_TEST(txn_bad_verb_rolls_back)
{
	struct kv_op ops[] = {
	    op_of(KV_SET, "a", "1", 0),
	    op_of(KV_VERB_NR, "b", "2", 0),
	};
	struct kv_result res;

	kv_result_init(&res);
	ck_assert_int_lt(kv_apply(store, ops, 2, 5, &res), 0);
	kv_result_close(&res);
	ck_assert(holds("a", NULL));
	ck_assert(holds("b", NULL));
	ck_assert(sqlite3_get_autocommit(db));
}
END_TEST

/* ---- indexes and tombstones ---------------------------------------------- */

START_TEST(index_exact)
{
	ck_assert_uint_eq(index_of("k", true), 1); /* nothing: 1 */
	put("k", "v", 5);
	ck_assert_uint_eq(index_of("k", true), 5);
	put("k", "v2", 7); /* a real change (Consul skips no-op sets) */
	ck_assert_uint_eq(index_of("k", true), 7);
	del("k", 9);
	ck_assert_uint_eq(index_of("k", true), 9); /* the tombstone's */
	put("k", "back", 12);
	ck_assert_uint_eq(index_of("k", true), 12);
	del("k", 15);
	ck_assert_uint_eq(index_of("k", true), 15);
	/* Exact means exact: neither a longer nor a shorter key counts. */
	put("k/sub", "v", 20);
	/* Missing keys have the table's index (Consul). */
	ck_assert_uint_eq(index_of("k", true), 20);
	ck_assert_uint_eq(index_of("k/", true), 20);
}
END_TEST

START_TEST(index_prefix)
{
	ck_assert_uint_eq(index_of("", false), 1);
	ck_assert_uint_eq(index_of("web/", false), 1);
	put("web/a", "1", 5);
	put("web/b", "2", 7);
	put("other", "3", 20);
	ck_assert_uint_eq(index_of("web/", false), 7);
	ck_assert_uint_eq(index_of("web/a", false), 5);
	ck_assert_uint_eq(index_of("w", false), 7);
	ck_assert_uint_eq(index_of("", false), 20);
	ck_assert_uint_eq(index_of("x", false), 20); /* nothing: the table's */

	/* A delete under the prefix moves it forward... */
	del("web/a", 25);
	ck_assert_uint_eq(index_of("web/", false), 25);
	/* ...and one elsewhere does not. */
	del("other", 30);
	ck_assert_uint_eq(index_of("web/", false), 25);
	ck_assert_uint_eq(index_of("", false), 30);
	/* A key equal to the prefix is under it. */
	put("web/", "dir", 31);
	ck_assert_uint_eq(index_of("web/", false), 31);
}
END_TEST

START_TEST(reap_drops_tombstones)
{
	put("web/a", "1", 5);
	put("web/b", "2", 7);
	put("x", "3", 8);
	del("web/b", 10);
	del("x", 30);
	ck_assert_uint_eq(index_of("web/", false), 10);

	ck_assert_int_eq(kv_reap(store, 9), 0); /* both are newer */
	ck_assert_uint_eq(index_of("web/", false), 10);
	ck_assert_uint_eq(index_of("x", false), 30);

	ck_assert_int_eq(kv_reap(store, 10), 0);	 /* <= 10 goes */
	ck_assert_uint_eq(index_of("web/b", false), 30); /* nothing: table */
	ck_assert_uint_eq(index_of("web/", false), 5);
	ck_assert_uint_eq(index_of("x", false), 30);

	ck_assert_int_eq(kv_reap(store, 1000), 0);
	ck_assert_uint_eq(index_of("", false), 5);
	/* Reaping never lowers the table's index. */
	ck_assert_uint_eq(index_of("x", true), 30);
	/* Live keys are untouched. */
	ck_assert(holds("web/a", "1"));
}
END_TEST

START_TEST(get_reports_index)
{
	struct kv_entry e;
	uint64_t idx = 0;

	ck_assert_int_eq(kv_get(store, "k", &e, &idx), BCN_ENOTFOUND);
	ck_assert_uint_eq(idx, 1);
	ck_assert_int_eq(kv_get(store, "k", &e, NULL), BCN_ENOTFOUND);
	put("k", "v", 4);
	ck_assert_int_eq(kv_get(store, "k", &e, &idx), 0);
	ck_assert_uint_eq(idx, 4);
	kv_entry_close(&e);
}
END_TEST

/* ---- listings ------------------------------------------------------------ */

START_TEST(list_sorted)
{
	static const char *const keys[] = {
	    "b", "a/2", "a/10", "c", "a/1", "\xc3\xa9", "a", "A", "a/1/x"};
	/* Byte order: 'A' < 'a' < 'b' < 'c' < 0xc3. */
	static const char *const want[] = {"A",	  "a", "a/1", "a/1/x",	 "a/10",
					   "a/2", "b", "c",   "\xc3\xa9"};
	struct kv_list l = {0};
	uint64_t idx = 0;

	for (size_t i = 0; i < N_OF(keys); i++)
		put(keys[i], keys[i], 10 + i);
	ck_assert_int_eq(kv_list(store, "", false, &l, &idx), 0);
	ck_assert_uint_eq(l.n, N_OF(want));
	for (size_t i = 0; i < l.n; i++) {
		ck_assert_str_eq(l.items[i].key, want[i]);
		ck_assert_uint_eq(l.items[i].value_len, strlen(want[i]));
		ck_assert_mem_eq(l.items[i].value, want[i], strlen(want[i]));
	}
	ck_assert_uint_eq(idx, 10 + N_OF(keys) - 1);
	kv_list_close(&l);

	ck_assert_int_eq(kv_list(store, "a/", true, &l, &idx), 0);
	ck_assert_uint_eq(l.n, 4);
	ck_assert_str_eq(l.items[0].key, "a/1");
	ck_assert_str_eq(l.items[3].key, "a/2");
	for (size_t i = 0; i < l.n; i++)
		ck_assert_ptr_null(l.items[i].value); /* keys only */
	ck_assert_uint_eq(idx, 18);		      /* a/1/x */
	kv_list_close(&l);

	ck_assert_int_eq(kv_list(store, "zzz", false, &l, &idx), 0);
	ck_assert_uint_eq(l.n, 0);
	ck_assert_uint_eq(idx, 18); /* nothing there: the table's index */
	kv_list_close(&l);
}
END_TEST

/* Enough keys to grow the list several times. */
START_TEST(list_many)
{
	char key[32];
	struct kv_list l = {0};

	for (int i = 0; i < 500; i++) {
		snprintf(key, sizeof key, "many/%04d", 499 - i);
		put(key, "v", (uint64_t)i + 1);
	}
	ck_assert_int_eq(kv_list(store, "many/", false, &l, NULL), 0);
	ck_assert_uint_eq(l.n, 500);
	for (int i = 0; i < 500; i++) {
		snprintf(key, sizeof key, "many/%04d", i);
		ck_assert_str_eq(l.items[i].key, key);
	}
	kv_list_close(&l);
}
END_TEST

START_TEST(keys_with_separator)
{
	static const char *const keys[] = {
	    "web/subdir/x",	 "web/foo", "web/bar", "web/subdir/y",
	    "web/subdir/z/deep", "webx",    "a/b"};
	struct kv_list l = {0};
	uint64_t idx = 0;

	for (size_t i = 0; i < N_OF(keys); i++)
		put(keys[i], "v", 10 + i);

	ck_assert_int_eq(kv_keys(store, "web/", "/", &l, &idx), 0);
	ck_assert_uint_eq(l.n, 3);
	ck_assert_str_eq(l.items[0].key, "web/bar");
	ck_assert_str_eq(l.items[1].key, "web/foo");
	ck_assert_str_eq(l.items[2].key, "web/subdir/");
	for (size_t i = 0; i < l.n; i++)
		ck_assert_ptr_null(l.items[i].value);
	ck_assert_uint_eq(idx, 14);
	kv_list_close(&l);

	/* No separator: every key under the prefix, whole. */
	ck_assert_int_eq(kv_keys(store, "web/", "", &l, NULL), 0);
	ck_assert_uint_eq(l.n, 5);
	ck_assert_str_eq(l.items[4].key, "web/subdir/z/deep");
	kv_list_close(&l);
	ck_assert_int_eq(kv_keys(store, "web/", NULL, &l, NULL), 0);
	ck_assert_uint_eq(l.n, 5);
	kv_list_close(&l);

	/* From the root. */
	ck_assert_int_eq(kv_keys(store, "", "/", &l, NULL), 0);
	ck_assert_uint_eq(l.n, 3);
	ck_assert_str_eq(l.items[0].key, "a/");
	ck_assert_str_eq(l.items[1].key, "web/");
	ck_assert_str_eq(l.items[2].key, "webx");
	kv_list_close(&l);

	/* The cut is after the prefix: a prefix without its '/'. */
	ck_assert_int_eq(kv_keys(store, "web", "/", &l, NULL), 0);
	ck_assert_uint_eq(l.n, 2);
	ck_assert_str_eq(l.items[0].key, "web/");
	ck_assert_str_eq(l.items[1].key, "webx");
	kv_list_close(&l);

	/* A separator of several bytes. */
	ck_assert_int_eq(kv_keys(store, "web/", "di", &l, NULL), 0);
	ck_assert_uint_eq(l.n, 3);
	ck_assert_str_eq(l.items[2].key, "web/subdi");
	kv_list_close(&l);
}
END_TEST

START_TEST(stats_count)
{
	uint64_t keys = 99, bytes = 99;

	ck_assert_int_eq(kv_stats(store, &keys, &bytes), 0);
	ck_assert_uint_eq(keys, 0);
	ck_assert_uint_eq(bytes, 0);
	put("a", "123", 1);
	put("b", "", 2);
	put("c", "45", 3);
	ck_assert_int_eq(kv_stats(store, &keys, &bytes), 0);
	ck_assert_uint_eq(keys, 3);
	ck_assert_uint_eq(bytes, 5);
}
END_TEST

/* ---- the change record --------------------------------------------------- */

START_TEST(changes_take)
{
	struct kv_changes ch;

	kv_changes_take(store, &ch);
	ck_assert_uint_eq(ch.n, 0);
	ck_assert(!ch.all);

	put("web/b", "1", 2);
	put("a", "1", 3);
	put("web/a", "1", 4);
	del("a", 5);
	del("missing", 6); /* deleted nothing: not a change */
	kv_changes_take(store, &ch);
	ck_assert(!ch.all);
	ck_assert_uint_eq(ch.n, 4);
	for (size_t i = 1; i < ch.n; i++) /* sorted */
		ck_assert_int_le(strcmp(ch.keys[i - 1], ch.keys[i]), 0);
	ck_assert_str_eq(ch.keys[0], "a");
	ck_assert_str_eq(ch.keys[3], "web/b");
	ck_assert(!kv_changes_match(&ch, "missing", true));

	/* Taken: the next take is empty. */
	kv_changes_take(store, &ch);
	ck_assert_uint_eq(ch.n, 0);

	/* A failed check changes nothing. */
	ck_assert_int_eq(apply1(KV_CAS, "web/b", "x", 1, 7, NULL), 0);
	kv_changes_take(store, &ch);
	ck_assert_uint_eq(ch.n, 0);

	/* delete-tree records every key it removed. */
	ck_assert_int_eq(apply1(KV_DELETE_TREE, "web/", NULL, 0, 8, NULL), 0);
	kv_changes_take(store, &ch);
	ck_assert_uint_eq(ch.n, 2);
	ck_assert_str_eq(ch.keys[0], "web/a");
	ck_assert_str_eq(ch.keys[1], "web/b");

	kv_changes_mark_all(store);
	kv_changes_take(store, &ch);
	ck_assert(ch.all);
	kv_changes_take(store, &ch);
	ck_assert(!ch.all);
}
END_TEST

START_TEST(changes_match)
{
	char *keys[] = {"a/b", "c", "web/x", "web/y/z"};
	struct kv_changes ch = {keys, N_OF(keys), false};
	struct kv_changes none = {NULL, 0, false};
	struct kv_changes all = {NULL, 0, true};

	/* Exact. */
	ck_assert(kv_changes_match(&ch, "c", true));
	ck_assert(kv_changes_match(&ch, "a/b", true));
	ck_assert(kv_changes_match(&ch, "web/y/z", true));
	ck_assert(!kv_changes_match(&ch, "a", true));
	ck_assert(!kv_changes_match(&ch, "web", true));
	ck_assert(!kv_changes_match(&ch, "web/y", true));
	ck_assert(!kv_changes_match(&ch, "zzz", true));
	ck_assert(!kv_changes_match(&ch, "", true));
	/* Prefix. */
	ck_assert(kv_changes_match(&ch, "", false));
	ck_assert(kv_changes_match(&ch, "a", false));
	ck_assert(kv_changes_match(&ch, "a/", false));
	ck_assert(kv_changes_match(&ch, "a/b", false));
	ck_assert(!kv_changes_match(&ch, "a/bc", false));
	ck_assert(!kv_changes_match(&ch, "a/a", false));
	ck_assert(kv_changes_match(&ch, "w", false));
	ck_assert(kv_changes_match(&ch, "web/", false));
	ck_assert(kv_changes_match(&ch, "web/y/", false));
	ck_assert(!kv_changes_match(&ch, "web/z", false));
	ck_assert(!kv_changes_match(&ch, "b", false));
	ck_assert(!kv_changes_match(&ch, "d", false));
	ck_assert(!kv_changes_match(&ch, "0", false));
	/* Nothing changed / everything changed. */
	ck_assert(!kv_changes_match(&none, "", false));
	ck_assert(!kv_changes_match(&none, "c", true));
	ck_assert(kv_changes_match(&all, "anything", true));
	ck_assert(kv_changes_match(&all, "", false));
}
END_TEST

/* ---- allocation failures (STYLE.md §7) ----------------------------------- */

/* Each loop fails allocation n = 0, 1, 2, ... of one call, on a fresh store,
 * until a run no longer reaches allocation n. A failing run must return
 * BCN_ENOMEM (or BCN_EIO where SQLite reports it so) and change nothing. A
 * run may also succeed despite the failure (SQLite's benign failures, or
 * the change record falling back to "wake everyone"): then the whole
 * command must have applied. Stopping at the first success would miss every
 * allocation after such a tolerated one. */
#define MAX_ATTEMPTS 100000

/* Close the fixture's store and database and open fresh ones. */
static void reopen(void)
{
	teardown();
	setup();
}

/* Returns how many runs failed; asserts the loop ended. */
static int oom_loop(void (*prepare)(void), int (*run)(struct kv_result *res),
		    void (*check_unchanged)(int n), void (*check_done)(int n),
		    bool with_res)
{
	int n, failures = 0;

	for (n = 0; n < MAX_ATTEMPTS; n++) {
		struct kv_result res;
		int rc, fired;

		reopen();
		prepare();
		kv_result_init(&res);
		fault_alloc_fail_at(n);
		rc = run(with_res ? &res : NULL);
		fired = fault_alloc_fired();
		fault_alloc_fail_at(-1);
		if (rc == 0) {
			ck_assert_msg(res.ok, "n=%d: %s", n, res.what);
			check_done(n);
		} else {
			ck_assert_msg(rc == BCN_ENOMEM || rc == BCN_EIO,
				      "n=%d: rc %d", n, rc);
			ck_assert_msg(fired, "n=%d: failed with no fault", n);
			ck_assert_uint_eq(res.entries.n, 0);
			check_unchanged(n);
			failures++;
		}
		ck_assert_msg(sqlite3_get_autocommit(db),
			      "n=%d: transaction left open", n);
		kv_result_close(&res);
		if (!fired)
			break;
	}
	ck_assert_int_lt(n, MAX_ATTEMPTS);
	return failures;
}

static void prepare_nothing(void)
{
}

static int run_set(struct kv_result *res)
{
	struct kv_op op = op_of(KV_SET, "a", "1", 0);

	return kv_apply(store, &op, 1, 7, res);
}

static void set_unchanged(int n)
{
	ck_assert_msg(holds("a", NULL), "n=%d: \"a\" was written", n);
	ck_assert_uint_eq(index_of("a", true), 1);
}

static void set_done(int n)
{
	struct kv_changes ch;

	ck_assert_msg(holds("a", "1"), "n=%d", n);
	ck_assert_uint_eq(modify_index("a"), 7);
	/* The wake-up still happens (precisely, or for everyone). */
	kv_changes_take(store, &ch);
	ck_assert_msg(kv_changes_match(&ch, "a", true), "n=%d", n);
}

START_TEST(apply_set_survives_every_oom)
{
	ck_assert_int_gt(
	    oom_loop(prepare_nothing, run_set, set_unchanged, set_done, true),
	    0);
}
END_TEST

/* The same with @res NULL, as on a follower. */
START_TEST(apply_set_no_result_survives_every_oom)
{
	ck_assert_int_gt(
	    oom_loop(prepare_nothing, run_set, set_unchanged, set_done, false),
	    0);
}
END_TEST

/* A 3-op transaction over existing keys b and c. */
static void prepare_txn3(void)
{
	struct kv_changes ch;

	put("b", "old-b", 3);
	put("c", "old-c", 4);
	kv_changes_take(store, &ch);
}

static int run_txn3(struct kv_result *res)
{
	struct kv_op ops[] = {
	    op_of(KV_SET, "a", "1", 0),
	    op_of(KV_CAS, "b", "new-b", 3),
	    op_of(KV_DELETE, "c", NULL, 0),
	};
	int rc = kv_apply(store, ops, N_OF(ops), 10, res);

	if (rc == 0 && res != NULL)
		ck_assert_uint_eq(res->entries.n, 2); /* set and cas */
	return rc;
}

static void txn3_unchanged(int n)
{
	ck_assert_msg(holds("a", NULL), "n=%d: \"a\" was written", n);
	ck_assert_msg(holds("b", "old-b"), "n=%d: \"b\" changed", n);
	ck_assert_msg(holds("c", "old-c"), "n=%d: \"c\" was deleted", n);
	ck_assert_uint_eq(modify_index("b"), 3);
	ck_assert_uint_eq(modify_index("c"), 4);
	ck_assert_uint_eq(index_of("", false), 4);
}

static void txn3_done(int n)
{
	struct kv_changes ch;

	ck_assert_msg(holds("a", "1"), "n=%d", n);
	ck_assert_msg(holds("b", "new-b"), "n=%d", n);
	ck_assert_msg(holds("c", NULL), "n=%d", n);
	ck_assert_uint_eq(index_of("c", true), 10);
	kv_changes_take(store, &ch);
	ck_assert(kv_changes_match(&ch, "a", true));
	ck_assert(kv_changes_match(&ch, "b", true));
	ck_assert(kv_changes_match(&ch, "c", true));
}

START_TEST(apply_txn_survives_every_oom)
{
	ck_assert_int_gt(
	    oom_loop(prepare_txn3, run_txn3, txn3_unchanged, txn3_done, true),
	    2);
}
END_TEST

START_TEST(apply_txn_no_result_survives_every_oom)
{
	ck_assert_int_gt(
	    oom_loop(prepare_txn3, run_txn3, txn3_unchanged, txn3_done, false),
	    2);
}
END_TEST

/* Reads and a delete-tree inside one transaction. */
static void prepare_tree(void)
{
	char key[16];

	put("b", "old-b", 3);
	put("c", "old-c", 4);
	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof key, "t/%02d", i);
		put(key, "t", 4);
	}
}

static int run_tree(struct kv_result *res)
{
	struct kv_op ops[] = {
	    op_of(KV_GET_TREE, "", NULL, 0),
	    op_of(KV_GET, "b", NULL, 0),
	    op_of(KV_CHECK_INDEX, "c", NULL, 4),
	    op_of(KV_DELETE_TREE, "t/", NULL, 0),
	    op_of(KV_SET, "a", "1", 0),
	};
	int rc = kv_apply(store, ops, N_OF(ops), 10, res);

	if (rc == 0 && res != NULL) /* 22 + get + check-index + set */
		ck_assert_uint_eq(res->entries.n, 25);
	return rc;
}

static void tree_unchanged(int n)
{
	ck_assert_msg(holds("a", NULL), "n=%d", n);
	ck_assert_msg(holds("t/00", "t") && holds("t/19", "t"),
		      "n=%d: the tree was deleted", n);
	ck_assert_uint_eq(index_of("t/", false), 4);
}

static void tree_done(int n)
{
	struct kv_list l = {0};

	ck_assert_int_eq(kv_list(store, "t/", true, &l, NULL), 0);
	ck_assert_msg(l.n == 0, "n=%d: %zu keys left", n, l.n);
	kv_list_close(&l);
	ck_assert_uint_eq(index_of("t/", false), 10);
	ck_assert_msg(holds("a", "1"), "n=%d", n);
}

START_TEST(apply_tree_txn_survives_every_oom)
{
	ck_assert_int_gt(
	    oom_loop(prepare_tree, run_tree, tree_unchanged, tree_done, true),
	    2);
}
END_TEST

/* Readers clean up after themselves under every failure. */
START_TEST(reads_survive_every_oom)
{
	char key[16];
	int n;

	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof key, "r/%02d/x", i);
		put(key, "value", (uint64_t)i + 1);
	}
	for (n = 0; n < MAX_ATTEMPTS; n++) {
		struct kv_list l = {0}, k = {0};
		struct kv_entry e;
		uint64_t idx;
		int rc1, rc2, rc3, fired;

		fault_alloc_fail_at(n);
		rc1 = kv_list(store, "r/", false, &l, &idx);
		rc2 = kv_keys(store, "r/", "/", &k, &idx);
		rc3 = kv_get(store, "r/05/x", &e, &idx);
		fired = fault_alloc_fired();
		fault_alloc_fail_at(-1);
		ck_assert(rc1 == 0 || rc1 == BCN_ENOMEM || rc1 == BCN_EIO);
		ck_assert(rc2 == 0 || rc2 == BCN_ENOMEM || rc2 == BCN_EIO);
		ck_assert(rc3 == 0 || rc3 == BCN_ENOMEM || rc3 == BCN_EIO);
		if (rc1 == 0)
			ck_assert_uint_eq(l.n, 20);
		if (rc2 == 0)
			ck_assert_uint_eq(k.n, 20);
		kv_list_close(&l);
		kv_list_close(&k);
		if (rc3 == 0)
			kv_entry_close(&e);
		if (!fired) {
			ck_assert(rc1 == 0 && rc2 == 0 && rc3 == 0);
			break;
		}
	}
	ck_assert_int_lt(n, MAX_ATTEMPTS);
	ck_assert_int_gt(n, 20);
}
END_TEST

/* kv_store_open on a fresh database and on one whose tables exist: every
 * failure returns a negative code and frees what it made (LSan checks at
 * the child's exit). */
START_TEST(store_open_survives_every_oom)
{
	for (int fresh = 0; fresh <= 1; fresh++) {
		int n, failures = 0;

		for (n = 0; n < MAX_ATTEMPTS; n++) {
			char errmsg[BCN_ERRMSG_LEN] = "";
			struct kv_store *s = NULL;
			sqlite3 *d;
			int rc, fired;

			if (fresh)
				ck_assert_int_eq(sqlite3_open(":memory:", &d),
						 SQLITE_OK);
			else
				d = db;
			fault_alloc_fail_at(n);
			rc = kv_store_open(&s, d, errmsg);
			fired = fault_alloc_fired();
			fault_alloc_fail_at(-1);
			if (rc == 0) {
				/* The store works. */
				struct kv_op op = op_of(KV_SET, "k", "v", 0);
				ck_assert_int_eq(kv_apply(s, &op, 1, 2, NULL),
						 0);
				kv_store_close(s);
			} else {
				ck_assert_msg(rc == BCN_ENOMEM || rc == BCN_EIO,
					      "n=%d: rc %d", n, rc);
				ck_assert(fired);
				if (rc == BCN_EIO) /* SQLite's reason kept */
					ck_assert_uint_gt(strlen(errmsg), 0);
				failures++;
			}
			/* Every statement was finalized: close succeeds. */
			if (fresh)
				ck_assert_int_eq(sqlite3_close(d), SQLITE_OK);
			if (!fired)
				break;
		}
		ck_assert_int_lt(n, MAX_ATTEMPTS);
		ck_assert_int_gt(failures, 0);
	}
}
END_TEST

/* ---- Bugs found while writing these tests (left failing, see report) ----- */

/* BUG: prefix_end() (kv/kv.c) gives up on prefixes of KV_MAX_KEY_LEN + 2
 * bytes or more (its buffer is that size) and the caller then scans the
 * open range "key >= prefix". So kv_list() returns, kv_index() counts and
 * delete-tree deletes keys that do not start with the prefix: here "b",
 * which sorts after "aaa...a". kv_list()'s contract is "every entry whose
 * key starts with @prefix". (The HTTP layer caps keys at 1024 bytes, so
 * this is latent there; kv_apply() and the codec do not check.) */
START_TEST(long_prefix_matches_nothing)
{
	static char p[KV_MAX_KEY_LEN + 3];
	struct kv_list l = {0};
	uint64_t idx = 0;

	memset(p, 'a', KV_MAX_KEY_LEN + 2); /* 1026 bytes */
	put("b", "x", 5);
	ck_assert_int_eq(kv_list(store, p, false, &l, &idx), 0);
	ck_assert_msg(l.n == 0, "kv_list: %zu entries, first \"%s\"", l.n,
		      l.n > 0 ? l.items[0].key : "");
	kv_list_close(&l);
	ck_assert_msg(idx == 5, "prefix index %llu, want 5 (the table's)",
		      (unsigned long long)idx);
	ck_assert_int_eq(apply1(KV_DELETE_TREE, p, NULL, 0, 6, NULL), 0);
	ck_assert_msg(holds("b", "x"), "delete-tree of a 1026-byte prefix "
				       "deleted \"b\"");
}
END_TEST

static Suite *kv_suite(void)
{
	Suite *s = suite_create("kv");
	TCase *keys = tcase_create("keys");
	TCase *verbs = tcase_create("verbs");
	TCase *idx = tcase_create("indexes");
	TCase *lists = tcase_create("lists");
	TCase *oom = tcase_create("oom");
	TCase *bugs = tcase_create("regressions");

	tcase_add_test(keys, key_check_accepts);
	tcase_add_test(keys, key_check_rules);
	tcase_add_test(keys, key_check_control_chars);
	tcase_add_test(keys, verb_names);
	tcase_add_test(keys, changes_match);
	suite_add_tcase(s, keys);

	tcase_add_checked_fixture(verbs, setup, teardown);
	tcase_add_test(verbs, set_creates_then_updates);
	tcase_add_test(verbs, set_values_empty_binary_large);
	tcase_add_test(verbs, cas_zero_means_create_only);
	tcase_add_test(verbs, cas_index);
	tcase_add_test(verbs, get_verb);
	tcase_add_test(verbs, get_tree_verb);
	tcase_add_test(verbs, check_index_verb);
	tcase_add_test(verbs, check_not_exists_verb);
	tcase_add_test(verbs, delete_verb);
	tcase_add_test(verbs, delete_tree_verb);
	tcase_add_test(verbs, delete_cas_verb);
	tcase_add_test(verbs, ops_see_earlier_ops);
	tcase_add_test(verbs, txn_all_or_nothing);
	tcase_add_test(verbs, txn_bad_verb_rolls_back);
	suite_add_tcase(s, verbs);

	tcase_add_checked_fixture(idx, setup, teardown);
	tcase_add_test(idx, index_exact);
	tcase_add_test(idx, index_prefix);
	tcase_add_test(idx, reap_drops_tombstones);
	tcase_add_test(idx, get_reports_index);
	tcase_add_test(idx, changes_take);
	suite_add_tcase(s, idx);

	tcase_add_checked_fixture(lists, setup, teardown);
	tcase_add_test(lists, list_sorted);
	tcase_add_test(lists, list_many);
	tcase_add_test(lists, keys_with_separator);
	tcase_add_test(lists, stats_count);
	suite_add_tcase(s, lists);

	tcase_add_checked_fixture(oom, setup, teardown);
	tcase_set_timeout(oom, 60);
	tcase_add_test(oom, apply_set_survives_every_oom);
	tcase_add_test(oom, apply_set_no_result_survives_every_oom);
	tcase_add_test(oom, apply_txn_survives_every_oom);
	tcase_add_test(oom, apply_txn_no_result_survives_every_oom);
	tcase_add_test(oom, apply_tree_txn_survives_every_oom);
	tcase_add_test(oom, reads_survive_every_oom);
	tcase_add_test(oom, store_open_survives_every_oom);
	suite_add_tcase(s, oom);

	tcase_add_checked_fixture(bugs, setup, teardown);
	tcase_add_test(bugs, long_prefix_matches_nothing);
	suite_add_tcase(s, bugs);
	return s;
}

int main(void)
{
	return unit_run(kv_suite());
}
