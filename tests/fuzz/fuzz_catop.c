/* Fuzz the catalog op codec (health/catalog.h) down to cat_apply().
 *
 * Every catalog entry a follower applies went through cat_op_decode(), so
 * it must reject anything malformed without reading outside the input. On
 * a successful decode:
 *   - cat_op_check() passes (decode refuses what a client may not send);
 *   - the op's strings point into the input;
 *   - re-encoding gives as many bytes as the input (only the flag bytes
 *     may differ), which decode again and re-encode byte for byte;
 *   - the op applies to an in-memory store opened once: first alone on an
 *     empty store, then in a batch after the records it acts on (its node,
 *     service or check). cat_apply() returns 0 (or ENOMEM/EIO), leaves no
 *     transaction open; a refusal names a reason and records no change;
 *     the batch is never refused; what a *_SET wrote reads back with the
 *     same encoding; a delete leaves nothing; the same op applied again
 *     touches no topic (writes that change nothing are no-ops).
 * Every input ends by deleting the op's node, which must empty the store,
 * so runs do not depend on each other (the topic table, which outlives
 * deletions, is dropped with the store every RESET_EVERY inputs).
 * Any violation aborts. */
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "health/catalog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RESET_EVERY 4096

static sqlite3 *db;
static struct cat_store *store;
static uint64_t next_index = 1;
static unsigned runs;

static void teardown(void)
{
	cat_store_close(store);
	sqlite3_close(db);
	store = NULL;
	db = NULL;
}

static void setup(void)
{
	static bool registered;
	char errmsg[BCN_ERRMSG_LEN];

	uint64_t nodes = 1, svcs = 1, chks = 1;

	/* Reuse the store while it is empty (an input that failed locally
	 * may have left records behind). */
	if (store != NULL && ++runs % RESET_EVERY != 0 &&
	    cat_stats(store, &nodes, &svcs, &chks) == 0 &&
	    nodes + svcs + chks == 0)
		return;
	teardown();
	if (sqlite3_open(":memory:", &db) != SQLITE_OK)
		abort();
	if (cat_store_open(&store, db, errmsg) != 0)
		abort();
	next_index = 1;
	if (!registered)
		atexit(teardown);
	registered = true;
}

static bool local_failure(int rc)
{
	return rc == BCN_ENOMEM || rc == BCN_EIO;
}

static bool inside(const char *s, const uint8_t *data, size_t size)
{
	return (const uint8_t *)s >= data &&
	       (const uint8_t *)s + strlen(s) < data + size;
}

/* Encode @op; aborts unless it works (or runs out of memory: NULL). */
static char *encode(const struct cat_op *op, size_t *len)
{
	struct bcn_buf b;
	int rc;

	bcn_buf_init(&b);
	rc = cat_op_encode(op, &b);
	if (rc != 0) {
		bcn_buf_close(&b);
		if (rc != BCN_ENOMEM)
			abort();
		return NULL;
	}
	return bcn_buf_steal(&b, len);
}

/* True if @a and @b encode the same (NULL strings and "" are the same). */
static bool same(const struct cat_op *a, const struct cat_op *b)
{
	size_t la, lb;
	char *x = encode(a, &la), *y = encode(b, &lb);
	bool eq = x == NULL || y == NULL || (la == lb && memcmp(x, y, la) == 0);

	bcn_free(x);
	bcn_free(y);
	return eq;
}

static void check_codec(const struct cat_op *op, const uint8_t *data,
			size_t size)
{
	struct cat_op again;
	size_t len, len2;
	char *out, *out2;

	if (cat_op_check(op, NULL, 0) != 0)
		abort();
	switch (op->verb) {
	case CAT_NODE_SET:
	case CAT_NODE_DELETE:
		if (!inside(op->node.name, data, size))
			abort();
		break;
	case CAT_SERVICE_SET:
	case CAT_SERVICE_DELETE:
		if (!inside(op->svc.node, data, size) ||
		    !inside(op->svc.id, data, size))
			abort();
		break;
	case CAT_CHECK_SET:
	case CAT_CHECK_DELETE:
	case CAT_CHECK_STATUS:
		if (!inside(op->chk.node, data, size) ||
		    !inside(op->chk.id, data, size) ||
		    strcmp(op->chk.service_name, "") != 0)
			abort();
		break;
	default:
		abort();
	}
	out = encode(op, &len);
	if (out == NULL)
		return;
	if (len != size)
		abort();
	if (cat_op_decode(out, len, &again) != 0)
		abort();
	out2 = encode(&again, &len2);
	if (out2 != NULL && (len2 != len || memcmp(out2, out, len) != 0))
		abort();
	bcn_free(out2);
	bcn_free(out);
}

/* Apply @ops at the next index. Returns false after a local failure (the
 * caller stops there); @res says whether the ops went through. */
static bool apply(const struct cat_op *ops, size_t n, struct cat_result *res)
{
	int rc = cat_apply(store, ops, n, next_index++, res);

	if (!sqlite3_get_autocommit(db))
		abort(); /* a transaction left open */
	if (rc != 0) {
		if (!local_failure(rc))
			abort();
		return false;
	}
	if (!res->ok) {
		struct cat_changes c;
		if (res->failed_op >= n || res->what[0] == '\0')
			abort();
		cat_changes_take(store, &c);
		if (c.n != 0 || c.n_checks != 0)
			abort(); /* a refused batch changed something */
	}
	return true;
}

/* The node the op acts on. */
static const char *node_of(const struct cat_op *op)
{
	switch (op->verb) {
	case CAT_NODE_SET:
	case CAT_NODE_DELETE:
		return op->node.name;
	case CAT_SERVICE_SET:
	case CAT_SERVICE_DELETE:
		return op->svc.node;
	default:
		return op->chk.node;
	}
}

/* What @op acts on, before it in a batch: returns the number of ops. */
static size_t prepare(const struct cat_op *op, struct cat_op *pre)
{
	const char *node = node_of(op);
	size_t n = 0;

	memset(pre, 0, 4 * sizeof *pre);
	pre[n].verb = CAT_NODE_SET;
	pre[n].node.name = node;
	pre[n].node.address = "192.0.2.1";
	n++;
	switch (op->verb) {
	case CAT_NODE_SET:
	case CAT_NODE_DELETE:
	case CAT_SERVICE_SET:
	case CAT_SERVICE_DELETE:
		/* A service under another name and a check of it: a rename,
		 * and checks to delete with it. */
		pre[n].verb = CAT_SERVICE_SET;
		pre[n].svc.node = node;
		pre[n].svc.id = op->verb == CAT_SERVICE_SET ||
					op->verb == CAT_SERVICE_DELETE
				    ? op->svc.id
				    : "fz-svc";
		pre[n].svc.name = "fz";
		pre[n].svc.weight_passing = 1;
		n++;
		pre[n].verb = CAT_CHECK_SET;
		pre[n].chk.node = node;
		pre[n].chk.id = "fz-chk";
		pre[n].chk.name = "fz-chk";
		pre[n].chk.status = CAT_CRITICAL;
		pre[n].chk.service_id = pre[n - 1].svc.id;
		n++;
		break;
	default:
		if (op->verb == CAT_CHECK_SET && op->chk.service_id != NULL &&
		    op->chk.service_id[0] != '\0') {
			pre[n].verb = CAT_SERVICE_SET;
			pre[n].svc.node = node;
			pre[n].svc.id = op->chk.service_id;
			pre[n].svc.name = "fz";
			pre[n].svc.weight_passing = 1;
			n++;
		}
		/* The check itself, with another status and output. */
		pre[n].verb = CAT_CHECK_SET;
		pre[n].chk.node = node;
		pre[n].chk.id = op->chk.id;
		pre[n].chk.name = "fz-chk";
		pre[n].chk.status = CAT_CRITICAL;
		pre[n].chk.output = "fz";
		pre[n].chk.service_id =
		    op->verb == CAT_CHECK_SET ? op->chk.service_id : "";
		n++;
		break;
	}
	return n;
}

/* After the batch: what the op wrote reads back, a delete left nothing. */
static void check_written(const struct cat_op *op)
{
	struct cat_rows r = {0};
	struct cat_op back = {.verb = op->verb};
	struct cat_op want = *op;
	int rc;

	want.keep_status = false;
	switch (op->verb) {
	case CAT_NODE_SET:
		rc = cat_node(store, op->node.name, &r);
		if (rc == 0)
			back.node = r.nodes[0];
		break;
	case CAT_SERVICE_SET:
		rc = cat_service(store, op->svc.node, op->svc.id, &r);
		if (rc == 0)
			back.svc = r.svcs[0];
		break;
	case CAT_CHECK_SET:
	case CAT_CHECK_STATUS:
		rc = cat_check(store, op->chk.node, op->chk.id, &r);
		if (rc != 0)
			break;
		back.chk = r.chks[0];
		if (op->verb == CAT_CHECK_STATUS) {
			/* Only these two change. */
			if (back.chk.status != op->chk.status ||
			    strcmp(back.chk.output, op->chk.output != NULL
							? op->chk.output
							: "") != 0)
				abort();
			back.chk = want.chk = r.chks[0];
		} else if (op->keep_status) {
			/* It existed: the status and output it had. */
			if (back.chk.status != CAT_CRITICAL ||
			    strcmp(back.chk.output, "fz") != 0)
				abort();
			want.chk.status = back.chk.status;
			want.chk.output = back.chk.output;
		}
		if (strcmp(back.chk.service_name,
			   back.chk.service_id[0] != '\0' ? "fz" : "") != 0)
			abort();
		break;
	case CAT_NODE_DELETE:
		rc = cat_node(store, op->node.name, &r);
		goto gone;
	case CAT_SERVICE_DELETE:
		rc = cat_service(store, op->svc.node, op->svc.id, &r);
		if (rc == BCN_ENOTFOUND)
			rc = cat_check(store, op->svc.node, "fz-chk", &r);
		goto gone;
	case CAT_CHECK_DELETE:
		rc = cat_check(store, op->chk.node, op->chk.id, &r);
		goto gone;
	default:
		abort();
	}
	if (rc != 0) {
		if (!local_failure(rc))
			abort(); /* the record is missing */
	} else if (!same(&back, &want)) {
		abort();
	}
	cat_rows_close(&r);
	return;
gone:
	if (rc != BCN_ENOTFOUND && !local_failure(rc))
		abort();
	cat_rows_close(&r);
}

/* The reads, over whatever the store holds. */
static void read_all(const struct cat_op *op)
{
	struct cat_rows r = {0};
	int rc = cat_nodes(store, &r);

	if (rc == 0)
		rc = cat_services(store, NULL, NULL, &r);
	if (rc == 0)
		rc = cat_checks(store, NULL, NULL, 0, &r);
	if (rc == 0 && op->verb == CAT_SERVICE_SET)
		rc = cat_health_service(store, op->svc.name, &r);
	if (rc == 0)
		rc = cat_health_service(store, "fz", &r);
	if (rc != 0 && !local_failure(rc))
		abort();
	cat_rows_close(&r);
}

static void check_apply(const struct cat_op *op)
{
	struct cat_op batch[5];
	struct cat_result res;
	struct cat_changes c;
	struct cat_op del = {.verb = CAT_NODE_DELETE};
	uint64_t nodes, svcs, chks;
	size_t n;

	/* Alone, on an empty store: a SERVICE_SET or CHECK_SET is refused
	 * (no node), the other ops but NODE_SET find nothing to change. */
	cat_changes_take(store, &c);
	if (!apply(op, 1, &res))
		goto out;
	if (res.ok !=
	    (op->verb != CAT_SERVICE_SET && op->verb != CAT_CHECK_SET))
		abort();
	cat_changes_take(store, &c);
	if (op->verb == CAT_NODE_SET) {
		char topic[CAT_MAX_NAME + 3] = "n/";
		strcat(topic, op->node.name);
		if (!cat_changes_match(&c, topic) ||
		    !cat_changes_match(&c, "N") || !cat_changes_match(&c, ""))
			abort();
	} else if (c.n != 0 || c.n_checks != 0) {
		abort();
	}

	/* After what it acts on. */
	n = prepare(op, batch);
	batch[n++] = *op;
	if (!apply(batch, n, &res))
		goto out;
	if (!res.ok)
		abort(); /* everything it needs is there */
	check_written(op);
	read_all(op);

	/* Again: nothing changes. */
	cat_changes_take(store, &c);
	if (!apply(op, 1, &res))
		goto out;
	if (!res.ok)
		abort();
	cat_changes_take(store, &c);
	if (c.n != 0 || c.n_checks != 0)
		abort();
out:
	del.node.name = node_of(op);
	if (cat_apply(store, &del, 1, next_index++, NULL) != 0)
		return;
	if (cat_stats(store, &nodes, &svcs, &chks) == 0 &&
	    (nodes != 0 || svcs != 0 || chks != 0))
		abort(); /* the node took everything with it */
	cat_changes_take(store, &c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cat_op op;
	int rc;

	rc = cat_op_decode(data, size, &op);
	if (rc != 0) {
		if (rc != BCN_ECORRUPT)
			abort();
		return 0;
	}
	check_codec(&op, data, size);
	setup();
	check_apply(&op);
	return 0;
}
