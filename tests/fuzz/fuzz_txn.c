/* Fuzz the body of PUT /v1/txn (CONSUL-API.md §6) down to kv_apply().
 *
 * The input is parsed with jansson and walked the way the server's txn
 * parser walks it (server/http_kv.c; its functions are static, so the walk is
 * repeated here): an array of at most KV_MAX_TXN_OPS objects, each with a
 * "KV" member found case-insensitively, holding Verb, Key, Value (base64),
 * Flags and Index. A body the server would reject with 400 or 413 stops
 * here. An accepted one is applied twice to an in-memory store: first as the
 * leader parsed it, then as a follower sees it after the Raft codec's round
 * trip, one index later (so "cas" and "check-index" can match what the first
 * apply wrote). The store is emptied after each input, so that runs are
 * deterministic.
 *
 * Checked: kv_apply() never fails locally on an in-memory store; a failed
 * txn names an op and a reason (valid UTF-8, since it is sent as JSON) and
 * changes nothing (all-or-nothing); the change record after a commit is
 * sorted and every changed key now carries the apply's index. Any violation
 * aborts. */
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/parse.h"
#include "kv/kv.h"
#include "raft/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The first index each input is applied at; any fixed value works. */
#define BASE_INDEX 100

static sqlite3 *db;
static struct kv_store *store;

static void teardown(void)
{
	kv_store_close(store);
	sqlite3_close(db);
	store = NULL;
	db = NULL;
}

static void setup(void)
{
	char errmsg[BCN_ERRMSG_LEN];

	if (store != NULL)
		return;
	if (sqlite3_open(":memory:", &db) != SQLITE_OK)
		abort();
	if (kv_store_open(&store, db, errmsg) != 0)
		abort();
	atexit(teardown);
}

struct txn {
	struct kv_op ops[KV_MAX_TXN_OPS];
	void *values[KV_MAX_TXN_OPS]; /* decoded base64, owned */
	size_t n;
};

static void txn_close(struct txn *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->values[i]);
}

/* Go's encoding/json matches field names case-insensitively. */
static json_t *member(json_t *obj, const char *name)
{
	const char *k;
	json_t *v;

	json_object_foreach (obj, k, v) {
		if (strcasecmp(k, name) == 0)
			return v;
	}
	return NULL;
}

static bool get_u64(json_t *v, uint64_t *out)
{
	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return false;
	*out = (uint64_t)json_integer_value(v);
	return true;
}

/* Parse one {"KV":{...}} into @op. False where the server answers 4xx. */
static bool parse_op(json_t *item, struct kv_op *op, void **value)
{
	json_t *kv = json_is_object(item) ? member(item, "KV") : NULL;
	json_t *verb, *key, *val;
	const char *s, *why = NULL;
	size_t slen;
	long n;

	if (kv == NULL || !json_is_object(kv))
		return false;
	verb = member(kv, "Verb");
	key = member(kv, "Key");
	val = member(kv, "Value");
	op->verb =
	    json_is_string(verb) ? kv_verb_parse(json_string_value(verb)) : 0;
	if (op->verb == 0)
		return false;
	if (op->verb < KV_SET || op->verb >= KV_VERB_NR)
		abort();
	op->key = json_is_string(key) ? json_string_value(key) : "";
	if (kv_key_check(op->key, strlen(op->key),
			 op->verb == KV_GET_TREE || op->verb == KV_DELETE_TREE,
			 &why) != 0) {
		if (why == NULL)
			abort();
		return false;
	}
	if (!get_u64(member(kv, "Flags"), &op->flags) ||
	    !get_u64(member(kv, "Index"), &op->index))
		return false;
	if (val == NULL || json_is_null(val))
		return true;
	if (!json_is_string(val))
		return false;
	s = json_string_value(val);
	slen = strlen(s);
	if (slen / 4 * 3 > KV_MAX_VALUE_LEN + 3)
		return false;
	*value = malloc(slen / 4 * 3 + 3);
	if (*value == NULL)
		return false;
	n = bcn_b64_decode(s, slen, *value);
	if (n < 0 || (size_t)n > KV_MAX_VALUE_LEN)
		return false;
	op->value = *value;
	op->value_len = (size_t)n;
	return true;
}

static bool txn_parse(json_t *root, struct txn *t)
{
	size_t i;
	json_t *item;

	if (!json_is_array(root) || json_array_size(root) == 0 ||
	    json_array_size(root) > KV_MAX_TXN_OPS)
		return false;
	json_array_foreach (root, i, item) {
		t->n = i + 1; /* so that txn_close() frees values[i] */
		if (!parse_op(item, &t->ops[i], &t->values[i]))
			return false;
	}
	return true;
}

static void must(int rc)
{
	if (rc != 0)
		abort();
}

/* Apply @ops at @index and check the outcome as described at the top. */
static void apply_checked(const struct kv_op *ops, size_t n, uint64_t index)
{
	uint64_t keys0, bytes0, idx0, keys1, bytes1, idx1;
	struct kv_result res;
	struct kv_changes ch;

	must(kv_stats(store, &keys0, &bytes0));
	must(kv_index(store, "", false, &idx0));
	kv_result_init(&res);
	must(kv_apply(store, ops, n, index, &res));
	kv_changes_take(store, &ch);
	must(kv_stats(store, &keys1, &bytes1));
	must(kv_index(store, "", false, &idx1));
	if (!res.ok) {
		if (res.failed_op >= n || res.what[0] == '\0' ||
		    memchr(res.what, '\0', sizeof res.what) == NULL)
			abort();
		/* The reason goes out as a JSON string ("What"). */
		if (!bcn_utf8_valid(res.what, strlen(res.what)))
			abort();
		if (res.entries.n != 0 || ch.n != 0 || ch.all)
			abort();
		if (keys0 != keys1 || bytes0 != bytes1 || idx0 != idx1)
			abort(); /* all-or-nothing */
	} else {
		for (size_t i = 0; i < res.entries.n; i++)
			if (res.entries.items[i].key == NULL)
				abort();
		for (size_t i = 0; i < ch.n; i++) {
			uint64_t ki;
			if (i > 0 && strcmp(ch.keys[i - 1], ch.keys[i]) > 0)
				abort();
			if (!kv_changes_match(&ch, ch.keys[i], true))
				abort();
			must(kv_index(store, ch.keys[i], true, &ki));
			if (ki != index)
				abort();
		}
	}
	kv_result_close(&res);
}

/* Empty the store, tombstones included, for the next input. */
static void reset(uint64_t index)
{
	struct kv_op all = {.verb = KV_DELETE_TREE, .key = ""};
	struct kv_changes ch;
	uint64_t keys, bytes;

	must(kv_apply(store, &all, 1, index, NULL));
	must(kv_reap(store, INT64_MAX));
	kv_changes_take(store, &ch);
	must(kv_stats(store, &keys, &bytes));
	if (keys != 0 || bytes != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct txn t = {0};
	struct cluster_cmd cmd = {0};
	struct bcn_buf enc;
	json_error_t jerr;
	json_t *root;
	int rc;

	root = json_loadb((const char *)data, size, 0, &jerr);
	if (root == NULL)
		return 0;
	if (!txn_parse(root, &t))
		goto out;

	setup();
	apply_checked(t.ops, t.n, BASE_INDEX);

	/* What a follower applies: the ops after the log's encoding. */
	bcn_buf_init(&enc);
	rc = cluster_cmd_encode_kv(t.ops, t.n, &enc);
	if (rc == 0) {
		must(cluster_cmd_decode(enc.data, enc.len, &cmd));
		if (cmd.type != CMD_KV || cmd.n_ops != t.n)
			abort();
		apply_checked(cmd.ops, cmd.n_ops, BASE_INDEX + 1);
		cluster_cmd_close(&cmd);
	} else if (rc != BCN_ENOMEM) {
		abort();
	}
	bcn_buf_close(&enc);
	reset(BASE_INDEX + 2);
out:
	txn_close(&t);
	json_decref(root);
	return 0;
}
