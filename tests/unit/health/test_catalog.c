/* Unit tests for health/catalog.c and health/cat_codec.c: the op codec
 * (round trips, every truncation, damaged encodings), cat_op_check()'s
 * Consul-style reasons, cat_apply() (all-or-nothing batches, refusals,
 * writes that change nothing, keep_status), the topics and indexes that
 * blocking queries watch, the reads, and every allocation failure of
 * cat_apply(), the reads and cat_store_open().
 *
 * BEACON_CATOP_SEEDS=<dir> makes the test "write_seed_corpus" write the
 * seed inputs of tests/fuzz/corpus/catop/ (seed-NNN) into <dir>; without
 * it that test does nothing. */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "health/catalog.h"
#include "tests/lib/fault_alloc.h"
#include "tests/lib/unit_run.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))
/* A packed list from a literal that spells every NUL but the last one. */
#define STRS(lit) ((struct cat_strs){(lit), sizeof(lit) - 1})

/* Fixture: setup() opens ":memory:" and the store, teardown() closes. */
static sqlite3 *db;
static struct cat_store *store;

static void setup(void)
{
	char errmsg[BCN_ERRMSG_LEN] = "";

	fault_alloc_fail_at(-1);
	ck_assert_int_eq(sqlite3_open(":memory:", &db), SQLITE_OK);
	ck_assert_msg(cat_store_open(&store, db, errmsg) == 0, "%s", errmsg);
}

static void teardown(void)
{
	fault_alloc_fail_at(-1);
	cat_store_close(store);
	store = NULL;
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK); /* nothing left open */
	db = NULL;
}

/* ---- helpers: ops -------------------------------------------------------- */

static struct cat_op node_op(const char *name, const char *address)
{
	struct cat_op op = {.verb = CAT_NODE_SET};

	op.node.name = name;
	op.node.id = "";
	op.node.address = address;
	return op;
}

static struct cat_op node_del(const char *name)
{
	struct cat_op op = {.verb = CAT_NODE_DELETE};

	op.node.name = name;
	return op;
}

static struct cat_op svc_op(const char *node, const char *id, const char *name,
			    uint32_t port)
{
	struct cat_op op = {.verb = CAT_SERVICE_SET};

	op.svc.node = node;
	op.svc.id = id;
	op.svc.name = name;
	op.svc.kind = "";
	op.svc.address = "";
	op.svc.port = port;
	op.svc.weight_passing = 1;
	op.svc.weight_warning = 1;
	return op;
}

static struct cat_op svc_del(const char *node, const char *id)
{
	struct cat_op op = {.verb = CAT_SERVICE_DELETE};

	op.svc.node = node;
	op.svc.id = id;
	return op;
}

/* A check named after its id; @svc_id "" for a node-level check. */
static struct cat_op chk_op(const char *node, const char *id,
			    const char *svc_id, enum cat_status status)
{
	struct cat_op op = {.verb = CAT_CHECK_SET};

	op.chk.node = node;
	op.chk.id = id;
	op.chk.name = id;
	op.chk.status = status;
	op.chk.notes = "";
	op.chk.output = "";
	op.chk.service_id = svc_id;
	op.chk.type = "ttl";
	op.chk.def.ttl_ms = 30000;
	return op;
}

static struct cat_op chk_del(const char *node, const char *id)
{
	struct cat_op op = {.verb = CAT_CHECK_DELETE};

	op.chk.node = node;
	op.chk.id = id;
	return op;
}

static struct cat_op chk_status(const char *node, const char *id,
				enum cat_status status, const char *output)
{
	struct cat_op op = {.verb = CAT_CHECK_STATUS};

	op.chk.node = node;
	op.chk.id = id;
	op.chk.status = status;
	op.chk.output = output;
	return op;
}

/* Every field set, tags, meta, tagged addresses, headers with a repeated
 * name: the record of @verb plus the two others. */
static struct cat_op full_op(enum cat_verb verb)
{
	struct cat_op op = {.verb = verb, .keep_status = true};

	op.node.name = "node-1";
	op.node.id = "0b5c8a6e-5c5e-4a55-9b64-2a1f0c3d9e01";
	op.node.address = "10.0.0.1";
	op.node.tagged = STRS("lan\0"
			      "10.0.0.1\0"
			      "wan\0"
			      "198.51.100.1\0");
	op.node.meta = STRS("rack\0"
			    "r1\0"
			    "env\0"
			    "prod\0");

	op.svc.node = "node-1";
	op.svc.id = "web-1";
	op.svc.name = "web";
	op.svc.kind = "connect-proxy";
	op.svc.tags = STRS("primary\0"
			   "v2\0"
			   "h\xc3\xa9\0");
	op.svc.address = "10.0.0.2";
	op.svc.tagged = STRS("lan_ipv4\0"
			     "10.0.0.2\0"
			     "8080\0"
			     "wan\0"
			     "198.51.100.2\0"
			     "80\0");
	op.svc.meta = STRS("version\0"
			   "1.2.3\0"
			   "team_a-b\0"
			   "\0");
	op.svc.port = 8080;
	op.svc.weight_passing = 3;
	op.svc.weight_warning = 2;
	op.svc.enable_tag_override = true;

	op.chk.node = "node-1";
	op.chk.id = "service:web-1";
	op.chk.name = "web health";
	op.chk.status = verb == CAT_CHECK_DELETE ? 0 : CAT_WARNING;
	op.chk.notes = "checks /health";
	op.chk.output = "HTTP GET http://10.0.0.2:8080/health: 429";
	op.chk.service_id = "web-1";
	op.chk.service_name = "";
	op.chk.type = "http";
	op.chk.def.interval_ms = 10000;
	op.chk.def.timeout_ms = 2500;
	op.chk.def.ttl_ms = 0x0102030405060708ull;
	op.chk.def.deregister_after_ms = 90000;
	op.chk.def.http = "http://10.0.0.2:8080/health";
	op.chk.def.method = "POST";
	op.chk.def.body = "{\"ping\":1}";
	op.chk.def.tcp = "10.0.0.2:8080";
	op.chk.def.tls_server_name = "web.example";
	op.chk.def.header = STRS("X-Trace\0"
				 "a\0"
				 "X-Trace\0"
				 "b\0"
				 "Accept\0"
				 "*/*\0");
	op.chk.def.tls_skip_verify = true;
	op.chk.def.disable_redirects = true;
	op.chk.def.output_max = 8192;
	return op;
}

/* Encode @op into a bcn_malloc'd buffer; the caller frees it. */
static char *encode(const struct cat_op *op, size_t *len)
{
	struct bcn_buf b;
	char *data;

	bcn_buf_init(&b);
	ck_assert_int_eq(cat_op_encode(op, &b), 0);
	data = bcn_buf_steal(&b, len);
	ck_assert_ptr_nonnull(data);
	return data;
}

/* Decode @buf[0..len) from an exact-size copy, so that ASan catches a read
 * past the end. */
static int decode_exact(const void *buf, size_t len)
{
	char *copy = malloc(len > 0 ? len : 1);
	struct cat_op op;
	int rc;

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, buf, len);
	rc = cat_op_decode(copy, len, &op);
	free(copy);
	return rc;
}

/* ---- helpers: text of records, to compare them whole --------------------- */

static const char *S(const char *s)
{
	return s != NULL ? s : "(null)";
}

static void strs_text(struct bcn_buf *b, const struct cat_strs *l)
{
	size_t len = l->data != NULL ? l->len : 0;

	bcn_buf_printf(b, "[%zu:", len);
	for (size_t i = 0; i < len; i++)
		bcn_buf_putc(b, l->data[i] == '\0' ? '|' : l->data[i]);
	bcn_buf_puts(b, "]");
}

static void node_text(struct bcn_buf *b, const struct cat_node *n, bool idx)
{
	bcn_buf_printf(b, "node %s id=%s addr=%s tagged=", S(n->name), S(n->id),
		       S(n->address));
	strs_text(b, &n->tagged);
	bcn_buf_puts(b, " meta=");
	strs_text(b, &n->meta);
	if (idx)
		bcn_buf_printf(b, " @%llu/%llu",
			       (unsigned long long)n->create_index,
			       (unsigned long long)n->modify_index);
	bcn_buf_puts(b, "\n");
}

static void svc_text(struct bcn_buf *b, const struct cat_service *v, bool idx)
{
	bcn_buf_printf(b, "svc %s/%s name=%s kind=%s addr=%s tags=", S(v->node),
		       S(v->id), S(v->name), S(v->kind), S(v->address));
	strs_text(b, &v->tags);
	bcn_buf_puts(b, " tagged=");
	strs_text(b, &v->tagged);
	bcn_buf_puts(b, " meta=");
	strs_text(b, &v->meta);
	bcn_buf_printf(b, " port=%u w=%u/%u eto=%d", v->port, v->weight_passing,
		       v->weight_warning, v->enable_tag_override);
	if (idx)
		bcn_buf_printf(b, " @%llu/%llu",
			       (unsigned long long)v->create_index,
			       (unsigned long long)v->modify_index);
	bcn_buf_puts(b, "\n");
}

static void chk_text(struct bcn_buf *b, const struct cat_check *k, bool idx)
{
	const struct cat_check_def *d = &k->def;

	bcn_buf_printf(b,
		       "chk %s/%s name=%s status=%d notes=%s output=%s "
		       "svc=%s type=%s",
		       S(k->node), S(k->id), S(k->name), (int)k->status,
		       S(k->notes), S(k->output), S(k->service_id), S(k->type));
	bcn_buf_printf(
	    b,
	    " def=%llu/%llu/%llu/%llu http=%s method=%s body=%s "
	    "tcp=%s sni=%s header=",
	    (unsigned long long)d->interval_ms,
	    (unsigned long long)d->timeout_ms, (unsigned long long)d->ttl_ms,
	    (unsigned long long)d->deregister_after_ms, S(d->http),
	    S(d->method), S(d->body), S(d->tcp), S(d->tls_server_name));
	strs_text(b, &d->header);
	bcn_buf_printf(b, " skip=%d noredir=%d max=%u", d->tls_skip_verify,
		       d->disable_redirects, d->output_max);
	/* Not in the op encoding: the store fills it in. */
	if (idx)
		bcn_buf_printf(b, " svc_name=%s @%llu/%llu", S(k->service_name),
			       (unsigned long long)k->create_index,
			       (unsigned long long)k->modify_index);
	bcn_buf_puts(b, "\n");
}

/* The text of the record @op's verb carries; the caller frees it. */
static char *op_text(const struct cat_op *op)
{
	struct bcn_buf b;
	char *s;

	bcn_buf_init(&b);
	bcn_buf_printf(&b, "verb=%d keep=%d\n", op->verb, op->keep_status);
	switch (op->verb) {
	case CAT_NODE_SET:
	case CAT_NODE_DELETE:
		node_text(&b, &op->node, false);
		break;
	case CAT_SERVICE_SET:
	case CAT_SERVICE_DELETE:
		svc_text(&b, &op->svc, false);
		break;
	default:
		chk_text(&b, &op->chk, false);
		break;
	}
	ck_assert(!bcn_buf_failed(&b));
	s = bcn_buf_steal(&b, NULL);
	ck_assert_ptr_nonnull(s);
	return s;
}

static void rows_text(struct bcn_buf *b, const struct cat_rows *r)
{
	for (size_t i = 0; i < r->n_nodes; i++)
		node_text(b, &r->nodes[i], true);
	for (size_t i = 0; i < r->n_svcs; i++)
		svc_text(b, &r->svcs[i], true);
	for (size_t i = 0; i < r->n_chks; i++)
		chk_text(b, &r->chks[i], true);
}

static uint64_t idx(const char *topic)
{
	uint64_t i = 0;

	ck_assert_int_eq(cat_index(store, topic, &i), 0);
	return i;
}

/* Every record, with its indexes, and the index of every topic the tests
 * use: what "the store is unchanged" compares. The caller frees it. */
static char *dump(void)
{
	static const char *const topics[] = {
	    "",	    "N",     "S",    "C",     "n/n1",  "n/n2",
	    "n/n3", "s/web", "s/db", "s/www", "s/api", "s/none",
	};
	struct cat_rows r = {0};
	struct bcn_buf b;
	uint64_t nn, ns, nc;
	char *s;

	bcn_buf_init(&b);
	ck_assert_int_eq(cat_nodes(store, &r), 0);
	ck_assert_int_eq(cat_services(store, NULL, NULL, &r), 0);
	ck_assert_int_eq(cat_checks(store, NULL, NULL, 0, &r), 0);
	rows_text(&b, &r);
	cat_rows_close(&r);
	for (size_t i = 0; i < N_OF(topics); i++)
		bcn_buf_printf(&b, "topic \"%s\" %llu\n", topics[i],
			       (unsigned long long)idx(topics[i]));
	ck_assert_int_eq(cat_stats(store, &nn, &ns, &nc), 0);
	bcn_buf_printf(&b, "stats %llu %llu %llu\n", (unsigned long long)nn,
		       (unsigned long long)ns, (unsigned long long)nc);
	ck_assert(!bcn_buf_failed(&b));
	s = bcn_buf_steal(&b, NULL);
	ck_assert_ptr_nonnull(s);
	return s;
}

/* ---- helpers: apply ------------------------------------------------------ */

/* Apply @ops at Raft index @at; it must succeed and leave no transaction. */
static void apply_ok(const struct cat_op *ops, size_t n, uint64_t at)
{
	struct cat_result res;
	int rc = cat_apply(store, ops, n, at, &res);

	ck_assert_msg(rc == 0, "cat_apply at %llu: %d", (unsigned long long)at,
		      rc);
	ck_assert_msg(res.ok, "op %zu refused: %s", res.failed_op, res.what);
	ck_assert(sqlite3_get_autocommit(db));
}

static void apply1(struct cat_op op, uint64_t at)
{
	apply_ok(&op, 1, at);
}

/* Apply @ops expecting op @failed to be refused; returns res.what. */
static const char *apply_refused(const struct cat_op *ops, size_t n,
				 uint64_t at, size_t failed)
{
	static struct cat_result res;

	ck_assert_int_eq(cat_apply(store, ops, n, at, &res), 0);
	ck_assert_msg(!res.ok, "ops applied at %llu", (unsigned long long)at);
	ck_assert_uint_eq(res.failed_op, failed);
	ck_assert_uint_gt(strlen(res.what), 0);
	ck_assert(sqlite3_get_autocommit(db));
	return res.what;
}

static struct cat_changes take(void)
{
	struct cat_changes c;

	cat_changes_take(store, &c);
	return c;
}

/* True if @c names check @node/@id ("node\0id"). */
static bool has_check(const struct cat_changes *c, const char *node,
		      const char *id)
{
	for (size_t i = 0; i < c->n_checks; i++) {
		const char *k = c->checks[i];
		if (strcmp(k, node) == 0 && strcmp(k + strlen(k) + 1, id) == 0)
			return true;
	}
	return false;
}

static void assert_sorted_distinct(const struct cat_changes *c)
{
	for (size_t i = 1; i < c->n; i++)
		ck_assert_msg(strcmp(c->topics[i - 1], c->topics[i]) < 0,
			      "\"%s\" before \"%s\"", c->topics[i - 1],
			      c->topics[i]);
}

/* n1 (10.0.0.1) with web1 (web) and db1 (db), n2 (10.0.0.2) with web3
 * (web), n3 with api1 (api); node-level serfHealth on n1 and n2; a
 * check per service. Indexes 2..13. The change record is taken. */
static void populate(void)
{
	const struct cat_op ops[] = {
	    node_op("n1", "10.0.0.1"),
	    svc_op("n1", "web1", "web", 80),
	    svc_op("n1", "db1", "db", 5432),
	    node_op("n2", "10.0.0.2"),
	    svc_op("n2", "web3", "web", 80),
	    node_op("n3", "10.0.0.3"),
	    svc_op("n3", "api1", "api", 443),
	    chk_op("n1", "serfHealth", "", CAT_PASSING),
	    chk_op("n2", "serfHealth", "", CAT_WARNING),
	    chk_op("n1", "web1-chk", "web1", CAT_CRITICAL),
	    chk_op("n1", "db1-chk", "db1", CAT_PASSING),
	    chk_op("n2", "web3-chk", "web3", CAT_PASSING),
	};

	for (size_t i = 0; i < N_OF(ops); i++)
		apply1(ops[i], 2 + i);
	(void)take();
}

/* ---- strings, statuses --------------------------------------------------- */

START_TEST(status_names)
{
	ck_assert_str_eq(cat_status_name(CAT_PASSING), "passing");
	ck_assert_str_eq(cat_status_name(CAT_WARNING), "warning");
	ck_assert_str_eq(cat_status_name(CAT_CRITICAL), "critical");
	ck_assert_str_eq(cat_status_name(0), "critical");
	ck_assert_str_eq(cat_status_name((enum cat_status)99), "critical");
	ck_assert_int_eq(cat_status_parse("passing"), CAT_PASSING);
	ck_assert_int_eq(cat_status_parse("warning"), CAT_WARNING);
	ck_assert_int_eq(cat_status_parse("critical"), CAT_CRITICAL);
	ck_assert_int_eq(cat_status_parse(""), 0);
	ck_assert_int_eq(cat_status_parse("Passing"), 0);
	ck_assert_int_eq(cat_status_parse("maintenance"), 0);
}
END_TEST

START_TEST(strs_helpers)
{
	const struct cat_strs l = STRS("a\0"
				       "\0"
				       "bc\0");
	const struct cat_strs none = {NULL, 0};
	size_t pos = 0;

	ck_assert_str_eq(cat_strs_next(&l, &pos), "a");
	ck_assert_str_eq(cat_strs_next(&l, &pos), "");
	ck_assert_str_eq(cat_strs_next(&l, &pos), "bc");
	ck_assert_ptr_null(cat_strs_next(&l, &pos));
	ck_assert_uint_eq(cat_strs_count(&l), 3);
	ck_assert(cat_strs_has(&l, "bc"));
	ck_assert(cat_strs_has(&l, ""));
	ck_assert(!cat_strs_has(&l, "b"));
	pos = 0;
	ck_assert_ptr_null(cat_strs_next(&none, &pos));
	ck_assert_uint_eq(cat_strs_count(&none), 0);
	ck_assert(!cat_strs_has(&none, ""));
}
END_TEST

/* ---- op codec ------------------------------------------------------------ */

START_TEST(codec_round_trip_every_verb)
{
	for (int verb = CAT_NODE_SET; verb < CAT_VERB_NR; verb++) {
		struct cat_op op = full_op((enum cat_verb)verb), back;
		size_t len, len2;
		char *buf = encode(&op, &len), *again, *want, *got;

		ck_assert_msg(cat_op_decode(buf, len, &back) == 0, "verb %d",
			      verb);
		want = op_text(&op);
		got = op_text(&back);
		ck_assert_str_eq(got, want);
		/* The decoded strings point into the blob. */
		switch (verb) {
		case CAT_NODE_SET:
		case CAT_NODE_DELETE:
			ck_assert(back.node.name > buf &&
				  back.node.name < buf + len);
			ck_assert(back.node.meta.data > buf &&
				  back.node.meta.data < buf + len);
			break;
		case CAT_SERVICE_SET:
		case CAT_SERVICE_DELETE:
			ck_assert(back.svc.id > buf && back.svc.id < buf + len);
			ck_assert(back.svc.tags.data > buf &&
				  back.svc.tags.data < buf + len);
			break;
		default:
			ck_assert(back.chk.def.http > buf &&
				  back.chk.def.http < buf + len);
			ck_assert_str_eq(back.chk.service_name, "");
			break;
		}
		/* One encoding per op. */
		again = encode(&back, &len2);
		ck_assert_uint_eq(len2, len);
		ck_assert_mem_eq(again, buf, len);
		bcn_free(want);
		bcn_free(got);
		bcn_free(again);
		bcn_free(buf);
	}
}
END_TEST

/* Empty lists and NULL strings encode as empty and come back as NULL
 * lists and "" strings; keep_status false survives. */
START_TEST(codec_round_trip_minimal)
{
	struct cat_op ops[] = {
	    node_op("a", "b"),
	    svc_op("n", "i", "s", 0),
	    chk_op("n", "c", "", CAT_PASSING),
	    chk_del("n", "c"),
	    chk_status("n", "c", CAT_CRITICAL, NULL),
	    node_del("n"),
	    svc_del("n", "i"),
	};

	for (size_t i = 0; i < N_OF(ops); i++) {
		struct cat_op back;
		size_t len, len2;
		char *buf = encode(&ops[i], &len), *again;

		ck_assert_int_eq(cat_op_decode(buf, len, &back), 0);
		ck_assert_int_eq(back.verb, ops[i].verb);
		ck_assert(!back.keep_status);
		ck_assert_ptr_null(back.node.tagged.data);
		ck_assert_ptr_null(back.svc.tags.data);
		ck_assert_ptr_null(back.chk.def.header.data);
		if (ops[i].verb == CAT_CHECK_STATUS)
			ck_assert_str_eq(back.chk.output, "");
		again = encode(&back, &len2);
		ck_assert_uint_eq(len2, len);
		ck_assert_mem_eq(again, buf, len);
		bcn_free(again);
		bcn_free(buf);
	}
}
END_TEST

START_TEST(codec_rejects_every_truncation)
{
	for (int verb = CAT_NODE_SET; verb < CAT_VERB_NR; verb++) {
		struct cat_op op = full_op((enum cat_verb)verb);
		size_t len;
		char *buf = encode(&op, &len);

		ck_assert_int_eq(decode_exact(buf, len), 0);
		for (size_t n = 0; n < len; n++)
			ck_assert_msg(decode_exact(buf, n) == BCN_ECORRUPT,
				      "verb %d: %zu of %zu bytes accepted",
				      verb, n, len);
		bcn_free(buf);
	}
}
END_TEST

START_TEST(codec_rejects_trailing_bytes)
{
	for (int verb = CAT_NODE_SET; verb < CAT_VERB_NR; verb++) {
		struct cat_op op = full_op((enum cat_verb)verb);
		size_t len;
		char *buf = encode(&op, &len);
		char *more = malloc(len + 8);

		ck_assert_ptr_nonnull(more);
		memcpy(more, buf, len);
		memset(more + len, 0, 8);
		for (size_t extra = 1; extra <= 8; extra++)
			ck_assert_int_eq(decode_exact(more, len + extra),
					 BCN_ECORRUPT);
		more[len] = 'x';
		ck_assert_int_eq(decode_exact(more, len + 1), BCN_ECORRUPT);
		free(more);
		bcn_free(buf);
	}
}
END_TEST

START_TEST(codec_rejects_bad_version_and_verb)
{
	static const uint8_t versions[] = {0, 2, 0x81, 0xff};
	static const uint8_t verbs[] = {0, CAT_VERB_NR, CAT_VERB_NR + 1, 0xff};
	struct cat_op op = full_op(CAT_NODE_SET);
	struct bcn_buf b;
	size_t len;
	char *buf = encode(&op, &len);

	ck_assert_int_eq(buf[0], 1); /* the version this test knows */
	for (size_t i = 0; i < N_OF(versions); i++) {
		buf[0] = (char)versions[i];
		ck_assert_int_eq(decode_exact(buf, len), BCN_ECORRUPT);
	}
	buf[0] = 1;
	for (size_t i = 0; i < N_OF(verbs); i++) {
		buf[1] = (char)verbs[i];
		ck_assert_int_eq(decode_exact(buf, len), BCN_ECORRUPT);
	}
	bcn_free(buf);
	/* Nor does the encoder take an unknown verb. */
	bcn_buf_init(&b);
	op.verb = CAT_VERB_NR;
	ck_assert_int_eq(cat_op_encode(&op, &b), BCN_EINVAL);
	op.verb = 0;
	ck_assert_int_eq(cat_op_encode(&op, &b), BCN_EINVAL);
	bcn_buf_close(&b);
}
END_TEST

/* Node "ab" of a NODE_DELETE: u8 version, verb, keep | u32 2 | 'a' 'b' NUL
 * | ... so the name's bytes are at 7 and 8 and its NUL at 9. */
START_TEST(codec_rejects_bad_strings)
{
	struct cat_op op = node_del("ab");
	size_t len;
	char *buf = encode(&op, &len);

	ck_assert_int_eq(decode_exact(buf, len), 0);
	ck_assert_int_eq(buf[6], 2);
	ck_assert_int_eq(buf[7], 'a');
	ck_assert_int_eq(buf[9], '\0');
	buf[9] = 'c'; /* no NUL */
	ck_assert_int_eq(decode_exact(buf, len), BCN_ECORRUPT);
	buf[9] = '\0';
	buf[8] = '\0'; /* an interior NUL */
	ck_assert_int_eq(decode_exact(buf, len), BCN_ECORRUPT);
	buf[8] = 'b';
	buf[6] = 3; /* a length past the NUL */
	ck_assert_int_eq(decode_exact(buf, len), BCN_ECORRUPT);
	buf[3] = buf[4] = buf[5] = buf[6] = (char)0xff; /* a huge length */
	ck_assert_int_eq(decode_exact(buf, len), BCN_ECORRUPT);
	bcn_free(buf);
}
END_TEST

/* Tags "t": in a SERVICE_DELETE of n/i, after 3 + node (4+1+1) + id
 * (4+1+1) + name (4+0+1) + kind (4+0+1) = 25 bytes comes u32 2, 't', NUL. */
START_TEST(codec_rejects_bad_lists)
{
	struct cat_op op = svc_del("n", "i");
	size_t len;
	char *buf;

	op.svc.tags = STRS("t\0");
	buf = encode(&op, &len);
	ck_assert_int_eq(decode_exact(buf, len), 0);
	ck_assert_int_eq(buf[28], 2);
	ck_assert_int_eq(buf[29], 't');
	ck_assert_int_eq(buf[30], '\0');
	buf[30] = 'u'; /* a list whose last string has no NUL */
	ck_assert_int_eq(decode_exact(buf, len), BCN_ECORRUPT);
	buf[30] = '\0';
	buf[28] = 3; /* runs into the next field */
	ck_assert_int_eq(decode_exact(buf, len), BCN_ECORRUPT);
	buf[25] = 1; /* far past the end */
	ck_assert_int_eq(decode_exact(buf, len), BCN_ECORRUPT);
	bcn_free(buf);
}
END_TEST

/* Status of a CHECK_STATUS n/c: after 3 + node (4+1+1) + id (4+1+1) +
 * name (4+0+1) = 20 bytes. */
START_TEST(codec_rejects_bad_status)
{
	static const uint8_t bad[] = {CAT_CRITICAL + 1, 0x7f, 0xff};
	struct cat_op op = chk_status("n", "c", CAT_PASSING, "out");
	size_t len;
	char *buf = encode(&op, &len);

	ck_assert_int_eq(decode_exact(buf, len), 0);
	ck_assert_int_eq(buf[20], CAT_PASSING);
	for (size_t i = 0; i < N_OF(bad); i++) {
		buf[20] = (char)bad[i];
		ck_assert_int_eq(decode_exact(buf, len), BCN_ECORRUPT);
	}
	buf[20] = 0; /* a status update without a status */
	ck_assert_int_eq(decode_exact(buf, len), BCN_ECORRUPT);
	buf[1] = CAT_CHECK_DELETE; /* fine for a delete */
	ck_assert_int_eq(decode_exact(buf, len), 0);
	buf[20] = CAT_WARNING; /* a delete with a status */
	ck_assert_int_eq(decode_exact(buf, len), BCN_ECORRUPT);
	bcn_free(buf);
}
END_TEST

/* Strings and lists up to CAT_MAX_STR decode; one byte more does not. */
START_TEST(codec_string_limits)
{
	struct cat_op op = chk_op("n", "c", "", CAT_PASSING);
	char *big = malloc(CAT_MAX_STR + 2);
	size_t len;
	char *buf;

	ck_assert_ptr_nonnull(big);
	memset(big, 'x', CAT_MAX_STR + 1);
	big[CAT_MAX_STR] = '\0';
	op.chk.notes = big;
	buf = encode(&op, &len);
	ck_assert_int_eq(decode_exact(buf, len), 0);
	bcn_free(buf);

	big[CAT_MAX_STR] = 'x';
	big[CAT_MAX_STR + 1] = '\0';
	buf = encode(&op, &len);
	ck_assert_int_eq(decode_exact(buf, len), BCN_ECORRUPT);
	bcn_free(buf);

	op.chk.notes = "";
	big[CAT_MAX_STR + 1] = '\0'; /* a list of one string, 65537 bytes */
	op.chk.def.header = (struct cat_strs){big, CAT_MAX_STR + 2};
	buf = encode(&op, &len);
	ck_assert_int_eq(decode_exact(buf, len), BCN_ECORRUPT);
	bcn_free(buf);
	free(big);
}
END_TEST

/* Decoding also applies cat_op_check(): a well-formed encoding of an op a
 * client may not send is refused. */
START_TEST(codec_rejects_what_check_refuses)
{
	struct cat_op ops[] = {
	    svc_op("n", "i", "", 80),
	    svc_op("n", "i", "web", 80),
	    node_op("", "10.0.0.1"),
	    chk_op("n", "c", "", 0),
	};
	size_t len;
	char *buf;

	ops[1].svc.address = "0.0.0.0";
	for (size_t i = 0; i < N_OF(ops); i++) {
		ck_assert_int_eq(cat_op_check(&ops[i], NULL, 0), BCN_EINVAL);
		buf = encode(&ops[i], &len);
		ck_assert_int_eq(decode_exact(buf, len), BCN_ECORRUPT);
		bcn_free(buf);
	}
}
END_TEST

/* ---- cat_op_check -------------------------------------------------------- */

/* cat_op_check(@op) refuses with a reason containing @want. */
static void refused_with(const struct cat_op *op, const char *want)
{
	char why[256] = "";

	ck_assert_int_eq(cat_op_check(op, why, sizeof why), BCN_EINVAL);
	ck_assert_msg(strstr(why, want) != NULL, "\"%s\" lacks \"%s\"", why,
		      want);
	ck_assert_int_eq(cat_op_check(op, NULL, 0), BCN_EINVAL);
	ck_assert_int_eq(cat_op_check(op, why, 1), BCN_EINVAL);
	ck_assert_str_eq(why, "");
}

static void accepted(const struct cat_op *op)
{
	char why[256] = "";

	ck_assert_msg(cat_op_check(op, why, sizeof why) == 0, "%s", why);
}

START_TEST(check_accepts_full_ops)
{
	for (int verb = CAT_NODE_SET; verb < CAT_VERB_NR; verb++) {
		struct cat_op op = full_op((enum cat_verb)verb);
		accepted(&op);
	}
	/* Names at the limit, in bytes. */
	char name[CAT_MAX_NAME + 2];
	struct cat_op op = node_op(name, "10.0.0.1");

	memset(name, 'n', sizeof name);
	name[CAT_MAX_NAME] = '\0';
	accepted(&op);
	name[CAT_MAX_NAME] = 'n';
	name[CAT_MAX_NAME + 1] = '\0';
	refused_with(&op, "Invalid node name");
}
END_TEST

START_TEST(check_service_rules)
{
	static const char *const bad_addr[] = {"0.0.0.0", "::", "[::]"};
	struct cat_op op = svc_op("n1", "web1", "", 80);

	refused_with(&op, "Missing service name");
	op.svc.name = NULL;
	refused_with(&op, "Missing service name");
	op.svc.name = "web";
	accepted(&op);
	for (size_t i = 0; i < N_OF(bad_addr); i++) {
		op.svc.address = bad_addr[i];
		refused_with(&op, "Invalid service address");
	}
	op.svc.address = "10.0.0.5";
	accepted(&op);
	op.svc.node = "";
	refused_with(&op, "Must provide node");
	op.svc.node = "n1";
	op.svc.id = "";
	refused_with(&op, "Missing service ID");
	op.svc.id = "web1";
	op.svc.port = 65536;
	refused_with(&op, "Invalid service port");
	op.svc.port = 65535;
	op.svc.weight_passing = 0;
	refused_with(&op, "Passing must be greater than 0");
	op.svc.weight_passing = 1;
	op.svc.tagged = STRS("lan\0"
			     "10.0.0.1\0"); /* not a triple */
	refused_with(&op, "Invalid service record");
	op.svc.tagged = STRS("lan\0"
			     "10.0.0.1\0"
			     "80\0");
	accepted(&op);
	/* A delete needs only the node and the id. */
	op = svc_del("n1", "web1");
	accepted(&op);
	op.svc.id = NULL;
	refused_with(&op, "Missing service ID");
}
END_TEST

START_TEST(check_node_rules)
{
	struct cat_op op = node_op("n1", "");

	refused_with(&op, "Must provide address");
	op.node.address = "10.0.0.1";
	accepted(&op);
	op.node.name = "";
	refused_with(&op, "Must provide node");
	op.node.name = "a\tb";
	refused_with(&op, "Invalid node name");
	op.node.name = "n1";
	op.node.tagged = STRS("lan\0");
	refused_with(&op, "Invalid node record");
	op = node_del("n1");
	accepted(&op);
	op.node.name = NULL;
	refused_with(&op, "Must provide node");
}
END_TEST

/* A meta list of @pairs pairs "k<i>" → @vlen 'v's, in @buf. */
static struct cat_strs make_meta(char *buf, size_t cap, int pairs, size_t vlen)
{
	size_t off = 0;

	for (int i = 0; i < pairs; i++) {
		int n = snprintf(buf + off, cap - off, "k%d", i);
		ck_assert(n > 0 && off + (size_t)n + vlen + 2 <= cap);
		off += (size_t)n + 1;
		memset(buf + off, 'v', vlen);
		off += vlen;
		buf[off++] = '\0';
	}
	return (struct cat_strs){buf, off};
}

START_TEST(check_meta_rules)
{
	static const char *const bad_keys[] = {
	    "a.b", "a b", "a/b", "caf\xc3\xa9", "a:b",
	};
	static char buf[80000];
	char key[140];
	struct cat_op ops[2] = {svc_op("n1", "web1", "web", 80),
				node_op("n1", "10.0.0.1")};

	for (int w = 0; w < 2; w++) {
		struct cat_strs *meta =
		    w == 0 ? &ops[0].svc.meta : &ops[1].node.meta;
		struct cat_op *op = &ops[w];

		*meta = STRS("consul-version\0"
			     "1\0");
		refused_with(op, "reserved");
		*meta = STRS("Consul-Version\0"
			     "1\0"); /* the check is case-sensitive */
		accepted(op);
		for (size_t i = 0; i < N_OF(bad_keys); i++) {
			snprintf(buf, sizeof buf, "%s", bad_keys[i]);
			meta->data = buf;
			meta->len = strlen(buf) + 3;
			memcpy(buf + strlen(buf) + 1, "v", 2);
			refused_with(op, "Invalid meta key");
		}
		*meta = STRS("\0"
			     "v\0");
		refused_with(op, "Invalid meta key");
		memset(key, 'k', 128);
		key[128] = '\0';
		key[129] = 'v';
		key[130] = '\0';
		*meta = (struct cat_strs){key, 131};
		accepted(op);
		memset(key, 'k', 129);
		key[129] = '\0';
		key[130] = '\0';
		*meta = (struct cat_strs){key, 131};
		refused_with(op, "Invalid meta key");

		*meta = make_meta(buf, sizeof buf, 64, 512);
		accepted(op);
		*meta = make_meta(buf, sizeof buf, 65, 1);
		refused_with(op, "at most 64 pairs");
		*meta = make_meta(buf, sizeof buf, 1, 513);
		refused_with(op, "longer than 512");
		*meta = STRS("key\0"); /* a key without a value */
		refused_with(op, "Invalid meta");
		meta->data = NULL;
		meta->len = 0;
	}
}
END_TEST

START_TEST(check_check_rules)
{
	struct cat_op op = chk_op("n1", "c1", "web1", CAT_PASSING);

	accepted(&op);
	op.chk.name = "";
	refused_with(&op, "Missing check name");
	op.chk.name = NULL;
	refused_with(&op, "Missing check name");
	op.chk.name = "c1";
	op.chk.status = 0;
	refused_with(&op, "Bad check status");
	op.chk.status = CAT_CRITICAL + 1;
	refused_with(&op, "Bad check status");
	op.chk.status = CAT_CRITICAL;
	op.chk.id = "";
	refused_with(&op, "Missing check ID");
	op.chk.id = "c1";
	op.chk.node = NULL;
	refused_with(&op, "Must provide node");
	op.chk.node = "n1";
	op.chk.service_id = "a\nb";
	refused_with(&op, "Invalid service ID");
	op.chk.service_id = "web1";
	op.chk.def.header = STRS("X-A\0");
	refused_with(&op, "Invalid check");
	op.chk.def.header.data = NULL;
	accepted(&op);

	op = chk_status("n1", "c1", 0, "x");
	refused_with(&op, "Bad check status");
	op.chk.status = (enum cat_status)7;
	refused_with(&op, "Bad check status");
	op.chk.status = CAT_WARNING;
	accepted(&op);
	op = chk_del("n1", "c1");
	accepted(&op);
	op.chk.status = CAT_PASSING;
	refused_with(&op, "Bad check status");
}
END_TEST

START_TEST(check_rejects_invalid_utf8)
{
	static const char *const bad[] = {
	    "\xff", "a\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
	};

	for (size_t i = 0; i < N_OF(bad); i++) {
		struct cat_op op = node_op(bad[i], "10.0.0.1");
		refused_with(&op, "Invalid node name");
		op = node_op("n1", bad[i]);
		refused_with(&op, "Invalid node record");
		op = svc_op("n1", "web1", bad[i], 80);
		refused_with(&op, "Invalid service name");
		op = svc_op("n1", "web1", "web", 80);
		op.svc.kind = bad[i];
		refused_with(&op, "Invalid service record");
		op = svc_op("n1", bad[i], "web", 80);
		refused_with(&op, "Missing service ID");
		op = chk_op("n1", "c1", "", CAT_PASSING);
		op.chk.output = bad[i];
		refused_with(&op, "Invalid check output");
		op = chk_status("n1", "c1", CAT_PASSING, bad[i]);
		refused_with(&op, "Invalid check output");
		op = chk_op("n1", "c1", "", CAT_PASSING);
		op.chk.name = bad[i];
		refused_with(&op, "Invalid check name");
		op = chk_op("n1", "c1", "", CAT_PASSING);
		op.chk.notes = bad[i];
		refused_with(&op, "Invalid check");
	}
	{
		struct cat_op op = svc_op("n1", "web1", "web", 80);
		op.svc.tags = STRS("ok\0"
				   "\xff\0");
		refused_with(&op, "Invalid service record");
		op = svc_op("n1", "web1", "web", 80);
		op.svc.meta = STRS("k\0"
				   "\xff\0");
		refused_with(&op, "Invalid meta");
	}
}
END_TEST

START_TEST(check_unknown_verb)
{
	struct cat_op op = node_op("n1", "10.0.0.1");

	op.verb = CAT_VERB_NR;
	refused_with(&op, "Unknown operation");
	op.verb = 0;
	refused_with(&op, "Unknown operation");
}
END_TEST

/* ---- apply --------------------------------------------------------------- */

START_TEST(apply_node_service_check)
{
	struct cat_op n = full_op(CAT_NODE_SET), v = full_op(CAT_SERVICE_SET);
	struct cat_op k = full_op(CAT_CHECK_SET);
	struct cat_rows r = {0};

	apply1(n, 5);
	apply1(v, 6);
	apply1(k, 7);

	ck_assert_int_eq(cat_node(store, "node-1", &r), 0);
	ck_assert_uint_eq(r.n_nodes, 1);
	ck_assert_str_eq(r.nodes[0].name, "node-1");
	ck_assert_str_eq(r.nodes[0].id, n.node.id);
	ck_assert_str_eq(r.nodes[0].address, "10.0.0.1");
	ck_assert_uint_eq(r.nodes[0].meta.len, n.node.meta.len);
	ck_assert_mem_eq(r.nodes[0].meta.data, n.node.meta.data,
			 n.node.meta.len);
	ck_assert_uint_eq(r.nodes[0].tagged.len, n.node.tagged.len);
	ck_assert_uint_eq(r.nodes[0].create_index, 5);
	ck_assert_uint_eq(r.nodes[0].modify_index, 5);

	ck_assert_int_eq(cat_service(store, "node-1", "web-1", &r), 0);
	ck_assert_uint_eq(r.n_svcs, 1);
	ck_assert_str_eq(r.svcs[0].name, "web");
	ck_assert_str_eq(r.svcs[0].kind, "connect-proxy");
	ck_assert_str_eq(r.svcs[0].address, "10.0.0.2");
	ck_assert_uint_eq(cat_strs_count(&r.svcs[0].tags), 3);
	ck_assert(cat_strs_has(&r.svcs[0].tags, "h\xc3\xa9"));
	ck_assert_uint_eq(r.svcs[0].tagged.len, v.svc.tagged.len);
	ck_assert_mem_eq(r.svcs[0].meta.data, v.svc.meta.data, v.svc.meta.len);
	ck_assert_uint_eq(r.svcs[0].port, 8080);
	ck_assert_uint_eq(r.svcs[0].weight_passing, 3);
	ck_assert_uint_eq(r.svcs[0].weight_warning, 2);
	ck_assert(r.svcs[0].enable_tag_override);
	ck_assert_uint_eq(r.svcs[0].create_index, 6);
	ck_assert_uint_eq(r.svcs[0].modify_index, 6);

	ck_assert_int_eq(cat_check(store, "node-1", "service:web-1", &r), 0);
	ck_assert_uint_eq(r.n_chks, 1);
	{
		struct cat_op back = {.verb = CAT_CHECK_SET, .keep_status = 1};
		char *want = op_text(&k), *got;
		back.chk = r.chks[0];
		got = op_text(&back);
		ck_assert_str_eq(got, want); /* every definition field */
		bcn_free(want);
		bcn_free(got);
	}
	ck_assert_str_eq(r.chks[0].service_name, "web");
	ck_assert_int_eq(r.chks[0].status, CAT_WARNING);
	ck_assert_uint_eq(r.chks[0].create_index, 7);
	ck_assert_uint_eq(r.chks[0].modify_index, 7);
	cat_rows_close(&r);

	/* An update keeps the create index. */
	v.svc.port = 9090;
	apply1(v, 9);
	ck_assert_int_eq(cat_service(store, "node-1", "web-1", &r), 0);
	ck_assert_uint_eq(r.svcs[0].port, 9090);
	ck_assert_uint_eq(r.svcs[0].create_index, 6);
	ck_assert_uint_eq(r.svcs[0].modify_index, 9);
	cat_rows_close(&r);
	ck_assert_uint_eq(idx(""), 9);
}
END_TEST

START_TEST(apply_service_on_missing_node_rolls_back)
{
	const struct cat_op ops[] = {
	    node_op("n1", "10.0.0.1"),
	    svc_op("n1", "web1", "web", 80),
	    svc_op("ghost", "web2", "web", 80),
	};
	struct cat_changes c;
	struct cat_rows r = {0};
	const char *what;
	char *before;

	apply1(node_op("n0", "10.0.0.9"), 3);
	(void)take();
	before = dump();
	what = apply_refused(ops, N_OF(ops), 10, 2);
	ck_assert_msg(strstr(what, "\"ghost\"") != NULL, "%s", what);
	ck_assert_msg(strstr(what, "Node") != NULL, "%s", what);
	/* The NODE_SET and the SERVICE_SET before it are undone. */
	ck_assert_int_eq(cat_node(store, "n1", &r), BCN_ENOTFOUND);
	ck_assert_int_eq(cat_service(store, "n1", "web1", &r), BCN_ENOTFOUND);
	cat_rows_close(&r);
	c = take();
	ck_assert_uint_eq(c.n, 0);
	ck_assert_uint_eq(c.n_checks, 0);
	ck_assert(!c.all);
	{
		char *after = dump();
		ck_assert_str_eq(after, before);
		bcn_free(after);
	}
	ck_assert_uint_eq(idx(""), 3);
	ck_assert_uint_eq(idx("n/n1"), 3);
	bcn_free(before);

	/* @res may be NULL: still refused, still nothing. */
	ck_assert_int_eq(cat_apply(store, ops, N_OF(ops), 11, NULL), 0);
	ck_assert_int_eq(cat_node(store, "n1", &r), BCN_ENOTFOUND);
	cat_rows_close(&r);
	ck_assert_uint_eq(take().n, 0);
}
END_TEST

START_TEST(apply_check_refusals)
{
	const struct cat_op svc_missing[] = {
	    chk_op("n1", "c0", "", CAT_PASSING),
	    chk_op("n1", "c1", "x", CAT_PASSING),
	};
	struct cat_op node_missing = chk_op("n9", "c1", "", CAT_PASSING);
	struct cat_rows r = {0};
	const char *what;

	apply1(node_op("n1", "10.0.0.1"), 2);
	(void)take();
	what = apply_refused(svc_missing, N_OF(svc_missing), 3, 1);
	ck_assert_str_eq(what, "ServiceID \"x\" does not exist");
	ck_assert_int_eq(cat_check(store, "n1", "c0", &r), BCN_ENOTFOUND);
	what = apply_refused(&node_missing, 1, 4, 0);
	ck_assert_msg(strstr(what, "\"n9\"") != NULL, "%s", what);
	/* A service on another node does not count. */
	apply1(node_op("n2", "10.0.0.2"), 5);
	apply1(svc_op("n2", "x", "web", 80), 6);
	(void)take();
	what = apply_refused(&svc_missing[1], 1, 7, 0);
	ck_assert_str_eq(what, "ServiceID \"x\" does not exist");
	ck_assert_uint_eq(take().n, 0);
	ck_assert_uint_eq(idx(""), 6);
	cat_rows_close(&r);
}
END_TEST

/* A repeated registration or heartbeat writes nothing: no topic, no index,
 * no modify index moves. */
START_TEST(apply_unchanged_writes_touch_nothing)
{
	struct cat_op ops[] = {
	    full_op(CAT_NODE_SET),
	    full_op(CAT_SERVICE_SET),
	    full_op(CAT_CHECK_SET),
	    chk_op("node-1", "serfHealth", "", CAT_PASSING),
	    chk_status("node-1", "serfHealth", CAT_PASSING, ""),
	};
	struct cat_changes c;
	char *before, *after;

	ops[2].keep_status = false;
	apply_ok(ops, 4, 5);
	c = take();
	ck_assert_uint_gt(c.n, 0);
	before = dump();
	/* One by one, then all at once, then the status update with a NULL
	 * output (the same as ""). */
	for (size_t i = 0; i < N_OF(ops); i++) {
		apply1(ops[i], 10 + i);
		c = take();
		ck_assert_msg(c.n == 0, "op %zu touched \"%s\"", i,
			      c.topics[0]);
		ck_assert_uint_eq(c.n_checks, 0);
	}
	apply_ok(ops, N_OF(ops), 20);
	ops[4].chk.output = NULL;
	apply1(ops[4], 21);
	/* keep_status with another status: the check keeps its own. */
	ops[2].keep_status = true;
	ops[2].chk.status = CAT_CRITICAL;
	ops[2].chk.output = "different";
	apply1(ops[2], 22);
	c = take();
	ck_assert_uint_eq(c.n, 0);
	ck_assert_uint_eq(c.n_checks, 0);
	after = dump();
	ck_assert_str_eq(after, before);
	bcn_free(before);
	bcn_free(after);
}
END_TEST

START_TEST(apply_empty_lists_are_unchanged)
{
	struct cat_op op = node_op("n1", "10.0.0.1");
	static const char empty[] = "";

	apply1(op, 2);
	(void)take();
	op.node.meta = (struct cat_strs){empty, 0};
	apply1(op, 3);
	ck_assert_uint_eq(take().n, 0);
	ck_assert_uint_eq(idx("n/n1"), 2);
}
END_TEST

START_TEST(apply_keep_status)
{
	struct cat_op k = chk_op("n1", "c1", "", CAT_CRITICAL);
	struct cat_rows r = {0};

	apply1(node_op("n1", "10.0.0.1"), 2);
	k.chk.output = "boom";
	apply1(k, 3);

	/* An existing check keeps status and output; the rest is written. */
	k.keep_status = true;
	k.chk.status = CAT_PASSING;
	k.chk.output = "";
	k.chk.notes = "new notes";
	apply1(k, 4);
	ck_assert_int_eq(cat_check(store, "n1", "c1", &r), 0);
	ck_assert_int_eq(r.chks[0].status, CAT_CRITICAL);
	ck_assert_str_eq(r.chks[0].output, "boom");
	ck_assert_str_eq(r.chks[0].notes, "new notes");
	ck_assert_uint_eq(r.chks[0].create_index, 3);
	ck_assert_uint_eq(r.chks[0].modify_index, 4);
	cat_rows_close(&r);

	/* A new check gets the status given. */
	k.chk.id = "c2";
	k.chk.status = CAT_WARNING;
	k.chk.output = "starting";
	apply1(k, 5);
	ck_assert_int_eq(cat_check(store, "n1", "c2", &r), 0);
	ck_assert_int_eq(r.chks[0].status, CAT_WARNING);
	ck_assert_str_eq(r.chks[0].output, "starting");
	cat_rows_close(&r);

	/* Without keep_status the given status wins. */
	k.chk.id = "c1";
	k.keep_status = false;
	k.chk.status = CAT_PASSING;
	k.chk.output = "ok";
	apply1(k, 6);
	ck_assert_int_eq(cat_check(store, "n1", "c1", &r), 0);
	ck_assert_int_eq(r.chks[0].status, CAT_PASSING);
	ck_assert_str_eq(r.chks[0].output, "ok");
	cat_rows_close(&r);
}
END_TEST

START_TEST(apply_check_status)
{
	struct cat_rows r = {0};
	struct cat_changes c;
	char *before, *after;

	populate();
	before = dump();
	/* Missing check, missing node: no-ops, not refusals. */
	apply1(chk_status("n1", "nope", CAT_CRITICAL, "x"), 20);
	apply1(chk_status("n9", "serfHealth", CAT_CRITICAL, "x"), 21);
	apply1(chk_del("n1", "nope"), 22);
	c = take();
	ck_assert_uint_eq(c.n, 0);
	ck_assert_uint_eq(c.n_checks, 0);
	after = dump();
	ck_assert_str_eq(after, before);
	bcn_free(after);
	bcn_free(before);

	/* The output alone is a change. */
	apply1(chk_status("n1", "db1-chk", CAT_PASSING, "fine"), 23);
	ck_assert_int_eq(cat_check(store, "n1", "db1-chk", &r), 0);
	ck_assert_int_eq(r.chks[0].status, CAT_PASSING);
	ck_assert_str_eq(r.chks[0].output, "fine");
	ck_assert_uint_eq(r.chks[0].create_index, 12);
	ck_assert_uint_eq(r.chks[0].modify_index, 23);
	ck_assert_str_eq(r.chks[0].type, "ttl"); /* the rest is kept */
	ck_assert_uint_eq(r.chks[0].def.ttl_ms, 30000);
	cat_rows_close(&r);
	c = take();
	ck_assert(cat_changes_match(&c, "s/db"));
	ck_assert(cat_changes_match(&c, "C"));
	ck_assert(cat_changes_match(&c, "n/n1"));
	ck_assert(!cat_changes_match(&c, "s/web"));
	ck_assert(has_check(&c, "n1", "db1-chk"));
	ck_assert_uint_eq(idx("s/db"), 23);
	ck_assert_uint_eq(idx("s/web"), 13);

	apply1(chk_status("n1", "db1-chk", CAT_CRITICAL, "fine"), 24);
	ck_assert_int_eq(cat_check(store, "n1", "db1-chk", &r), 0);
	ck_assert_int_eq(r.chks[0].status, CAT_CRITICAL);
	cat_rows_close(&r);
	ck_assert_uint_eq(idx("C"), 24);
}
END_TEST

START_TEST(apply_unknown_verb_refused)
{
	struct cat_op ops[] = {node_op("n1", "10.0.0.1"),
			       node_op("n2", "10.0.0.2")};
	struct cat_rows r = {0};

	ops[1].verb = CAT_VERB_NR;
	(void)apply_refused(ops, N_OF(ops), 2, 1);
	ck_assert_int_eq(cat_node(store, "n1", &r), BCN_ENOTFOUND);
	cat_rows_close(&r);
	ck_assert_uint_eq(take().n, 0);
}
END_TEST

/* Later ops of a batch see the earlier ones; the whole batch has one
 * index. */
START_TEST(apply_batch_sees_itself)
{
	const struct cat_op ops[] = {
	    node_op("n1", "10.0.0.1"),
	    svc_op("n1", "web1", "web", 80),
	    chk_op("n1", "c1", "web1", CAT_PASSING),
	    chk_status("n1", "c1", CAT_CRITICAL, "down"),
	};
	struct cat_rows r = {0};

	apply_ok(ops, N_OF(ops), 7);
	ck_assert_int_eq(cat_check(store, "n1", "c1", &r), 0);
	ck_assert_int_eq(r.chks[0].status, CAT_CRITICAL);
	ck_assert_uint_eq(r.chks[0].create_index, 7);
	cat_rows_close(&r);
	ck_assert_uint_eq(idx(""), 7);
	ck_assert_uint_eq(idx("s/web"), 7);
	/* An empty batch changes nothing. */
	apply_ok(ops, 0, 8);
	ck_assert_uint_eq(idx(""), 7);
}
END_TEST

/* ---- topics and indexes -------------------------------------------------- */

START_TEST(index_of_fresh_store)
{
	ck_assert_uint_eq(idx(""), 1);
	ck_assert_uint_eq(idx("s/web"), 1);
	ck_assert_uint_eq(idx("N"), 1);
	apply1(node_op("n1", "10.0.0.1"), 4);
	ck_assert_uint_eq(idx("N"), 4);
	ck_assert_uint_eq(idx("n/n1"), 4);
	ck_assert_uint_eq(idx("s/unknown"), 4); /* the catalog's */
	ck_assert_uint_eq(idx("n/unknown"), 4);
}
END_TEST

START_TEST(topics_of_a_service_change)
{
	struct cat_op v = svc_op("n1", "web1", "web", 81);
	struct cat_changes c;

	populate();
	apply1(v, 20);
	c = take();
	assert_sorted_distinct(&c);
	ck_assert(cat_changes_match(&c, "s/web"));
	ck_assert(cat_changes_match(&c, "S"));
	ck_assert(cat_changes_match(&c, "n/n1"));
	ck_assert(cat_changes_match(&c, ""));
	ck_assert(!cat_changes_match(&c, "s/db")); /* same node */
	ck_assert(!cat_changes_match(&c, "s/api"));
	ck_assert(!cat_changes_match(&c, "n/n2")); /* web3 is there */
	ck_assert(!cat_changes_match(&c, "N"));
	ck_assert(!cat_changes_match(&c, "C"));
	ck_assert_uint_eq(c.n, 4);
	ck_assert_uint_eq(c.n_checks, 0);
	ck_assert_uint_eq(idx("s/web"), 20);
	ck_assert_uint_eq(idx("s/db"), 12);
	ck_assert_uint_eq(idx("n/n2"), 13);
	ck_assert_uint_eq(idx(""), 20);
}
END_TEST

START_TEST(topics_of_a_node_level_check)
{
	struct cat_changes c;

	populate();
	apply1(chk_status("n1", "serfHealth", CAT_CRITICAL, "gone"), 20);
	c = take();
	assert_sorted_distinct(&c);
	ck_assert(cat_changes_match(&c, "s/web"));
	ck_assert(cat_changes_match(&c, "s/db"));
	ck_assert(cat_changes_match(&c, "n/n1"));
	ck_assert(cat_changes_match(&c, "C"));
	ck_assert(cat_changes_match(&c, ""));
	ck_assert(!cat_changes_match(&c, "s/api"));
	ck_assert(!cat_changes_match(&c, "n/n2"));
	ck_assert(!cat_changes_match(&c, "S"));
	ck_assert_uint_eq(c.n_checks, 1);
	ck_assert(has_check(&c, "n1", "serfHealth"));

	/* A new node-level check, and its deletion, likewise. */
	apply1(chk_op("n1", "maint", "", CAT_CRITICAL), 21);
	c = take();
	ck_assert(cat_changes_match(&c, "s/web"));
	ck_assert(cat_changes_match(&c, "s/db"));
	ck_assert(has_check(&c, "n1", "maint"));
	apply1(chk_del("n1", "maint"), 22);
	c = take();
	ck_assert(cat_changes_match(&c, "s/web"));
	ck_assert(cat_changes_match(&c, "s/db"));
	ck_assert(!cat_changes_match(&c, "s/api"));
	ck_assert(has_check(&c, "n1", "maint"));
	ck_assert_uint_eq(idx("s/db"), 22);
}
END_TEST

/* The node's address is every instance's default address. */
START_TEST(topics_of_a_node_change)
{
	struct cat_changes c;

	populate();
	apply1(node_op("n1", "10.0.0.99"), 20);
	c = take();
	ck_assert(cat_changes_match(&c, "N"));
	ck_assert(cat_changes_match(&c, "n/n1"));
	ck_assert(cat_changes_match(&c, "s/web"));
	ck_assert(cat_changes_match(&c, "s/db"));
	ck_assert(!cat_changes_match(&c, "s/api"));
	ck_assert(!cat_changes_match(&c, "C"));
	ck_assert(!cat_changes_match(&c, "n/n2"));
}
END_TEST

START_TEST(service_rename)
{
	struct cat_rows r = {0};
	struct cat_changes c;

	populate();
	apply1(svc_op("n1", "web1", "www", 80), 20);
	c = take();
	ck_assert(cat_changes_match(&c, "s/web"));
	ck_assert(cat_changes_match(&c, "s/www"));
	ck_assert(cat_changes_match(&c, "S"));
	ck_assert(!cat_changes_match(&c, "s/db"));
	ck_assert_uint_eq(idx("s/web"), 20);
	ck_assert_uint_eq(idx("s/www"), 20);
	/* Its checks follow it. */
	ck_assert_int_eq(cat_check(store, "n1", "web1-chk", &r), 0);
	ck_assert_str_eq(r.chks[0].service_name, "www");
	ck_assert_uint_eq(r.chks[0].modify_index, 11); /* the check did not */
	cat_rows_close(&r);
	ck_assert_int_eq(cat_checks(store, NULL, "www", 0, &r), 0);
	ck_assert_uint_eq(r.n_chks, 1);
	ck_assert_str_eq(r.chks[0].id, "web1-chk");
	cat_rows_close(&r);
	ck_assert_int_eq(cat_checks(store, NULL, "web", 0, &r), 0);
	ck_assert_uint_eq(r.n_chks, 1);
	ck_assert_str_eq(r.chks[0].id, "web3-chk");
	cat_rows_close(&r);
	ck_assert_int_eq(cat_health_service(store, "web", &r), 0);
	ck_assert_uint_eq(r.n_svcs, 1);
	ck_assert_str_eq(r.svcs[0].id, "web3");
	cat_rows_close(&r);
	/* A new check of the renamed service takes the new name. */
	apply1(chk_op("n1", "web1-chk2", "web1", CAT_PASSING), 21);
	ck_assert_int_eq(cat_check(store, "n1", "web1-chk2", &r), 0);
	ck_assert_str_eq(r.chks[0].service_name, "www");
	cat_rows_close(&r);
}
END_TEST

START_TEST(service_delete)
{
	struct cat_rows r = {0};
	struct cat_changes c;
	uint64_t web_before;

	populate();
	apply1(svc_op("n1", "web1", "web", 82), 30);
	web_before = idx("s/web");
	ck_assert_uint_eq(web_before, 30);
	(void)take();
	apply1(svc_del("n1", "web1"), 31);
	c = take();
	ck_assert(cat_changes_match(&c, "s/web"));
	ck_assert(cat_changes_match(&c, "S"));
	ck_assert(cat_changes_match(&c, "C"));
	ck_assert(cat_changes_match(&c, "n/n1"));
	ck_assert(!cat_changes_match(&c, "s/db"));
	ck_assert(has_check(&c, "n1", "web1-chk"));
	ck_assert(!has_check(&c, "n1", "serfHealth"));
	ck_assert_int_eq(cat_service(store, "n1", "web1", &r), BCN_ENOTFOUND);
	ck_assert_int_eq(cat_check(store, "n1", "web1-chk", &r), BCN_ENOTFOUND);
	ck_assert_int_eq(cat_check(store, "n1", "serfHealth", &r), 0);
	ck_assert_int_eq(cat_check(store, "n1", "db1-chk", &r), 0);
	cat_rows_close(&r);
	ck_assert_uint_ge(idx("s/web"), web_before);
	ck_assert_uint_eq(idx("s/web"), 31);

	/* The last instance: the topic outlives its name, and later changes
	 * elsewhere never take it back. */
	apply1(svc_del("n2", "web3"), 32);
	apply1(node_op("n9", "10.0.0.9"), 33);
	ck_assert_uint_eq(idx("s/web"), 32);
	ck_assert_int_eq(cat_services(store, "web", NULL, &r), 0);
	ck_assert_uint_eq(r.n_svcs, 0);
	cat_rows_close(&r);
	/* Unknown topics get the catalog's index. */
	ck_assert_uint_eq(idx("s/never"), 33);
	ck_assert_uint_ge(idx("s/never"), 1);
	/* Deleting what is not there changes nothing. */
	(void)take();
	apply1(svc_del("n1", "web1"), 34);
	apply1(svc_del("n7", "x"), 35);
	ck_assert_uint_eq(take().n, 0);
	ck_assert_uint_eq(idx(""), 33);
}
END_TEST

START_TEST(node_delete)
{
	struct cat_rows r = {0};
	struct cat_changes c;
	uint64_t n, v, k;

	populate();
	apply1(node_del("n1"), 20);
	c = take();
	assert_sorted_distinct(&c);
	ck_assert(cat_changes_match(&c, "N"));
	ck_assert(cat_changes_match(&c, "S"));
	ck_assert(cat_changes_match(&c, "C"));
	ck_assert(cat_changes_match(&c, "n/n1"));
	ck_assert(cat_changes_match(&c, "s/web"));
	ck_assert(cat_changes_match(&c, "s/db"));
	ck_assert(!cat_changes_match(&c, "s/api"));
	ck_assert(!cat_changes_match(&c, "n/n2"));
	ck_assert_uint_eq(c.n_checks, 3);
	ck_assert(has_check(&c, "n1", "serfHealth"));
	ck_assert(has_check(&c, "n1", "web1-chk"));
	ck_assert(has_check(&c, "n1", "db1-chk"));
	ck_assert_int_eq(cat_node(store, "n1", &r), BCN_ENOTFOUND);
	ck_assert_int_eq(cat_services(store, NULL, "n1", &r), 0);
	ck_assert_uint_eq(r.n_svcs, 0);
	ck_assert_int_eq(cat_checks(store, "n1", NULL, 0, &r), 0);
	ck_assert_uint_eq(r.n_chks, 0);
	cat_rows_close(&r);
	ck_assert_int_eq(cat_stats(store, &n, &v, &k), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(v, 2);
	ck_assert_uint_eq(k, 2);
	ck_assert_uint_eq(idx("n/n1"), 20);
	ck_assert_uint_eq(idx("s/db"), 20);
	/* Again: nothing to delete, nothing touched. */
	apply1(node_del("n1"), 21);
	ck_assert_uint_eq(take().n, 0);
	ck_assert_uint_eq(idx(""), 20);
}
END_TEST

START_TEST(changes_checks_list)
{
	struct cat_changes c;

	populate();
	apply1(chk_op("n2", "web3-chk", "web3", CAT_CRITICAL), 20);
	apply1(chk_status("n1", "web1-chk", CAT_PASSING, "ok"), 21);
	apply1(chk_del("n1", "db1-chk"), 22);
	c = take();
	ck_assert_uint_eq(c.n_checks, 3);
	ck_assert(has_check(&c, "n2", "web3-chk"));
	ck_assert(has_check(&c, "n1", "web1-chk"));
	ck_assert(has_check(&c, "n1", "db1-chk"));
	ck_assert(!has_check(&c, "n1", "serfHealth"));
	/* The record is emptied by a take. */
	c = take();
	ck_assert_uint_eq(c.n, 0);
	ck_assert_uint_eq(c.n_checks, 0);
	ck_assert(!c.all);
	ck_assert(!cat_changes_match(&c, ""));
}
END_TEST

START_TEST(changes_mark_all)
{
	struct cat_changes c;

	cat_changes_mark_all(store);
	c = take();
	ck_assert(c.all);
	ck_assert(cat_changes_match(&c, "s/anything"));
	c = take();
	ck_assert(!c.all);
	ck_assert(!cat_changes_match(&c, "s/anything"));
}
END_TEST

/* ---- reads --------------------------------------------------------------- */

START_TEST(reads_sorted)
{
	static const char *const want_svcs[][2] = {
	    {"n1", "db1"}, {"n1", "web1"}, {"n2", "web3"}, {"n3", "api1"}};
	struct cat_rows r = {0};

	populate();
	ck_assert_int_eq(cat_nodes(store, &r), 0);
	ck_assert_uint_eq(r.n_nodes, 3);
	ck_assert_str_eq(r.nodes[0].name, "n1");
	ck_assert_str_eq(r.nodes[1].name, "n2");
	ck_assert_str_eq(r.nodes[2].name, "n3");
	cat_rows_close(&r);

	ck_assert_int_eq(cat_services(store, NULL, NULL, &r), 0);
	ck_assert_uint_eq(r.n_svcs, N_OF(want_svcs));
	for (size_t i = 0; i < N_OF(want_svcs); i++) {
		ck_assert_str_eq(r.svcs[i].node, want_svcs[i][0]);
		ck_assert_str_eq(r.svcs[i].id, want_svcs[i][1]);
	}
	cat_rows_close(&r);

	/* By name; results append to what @out holds. */
	apply1(svc_op("n1", "web0", "web", 80), 20);
	ck_assert_int_eq(cat_services(store, "web", NULL, &r), 0);
	ck_assert_int_eq(cat_services(store, NULL, "n1", &r), 0);
	ck_assert_uint_eq(r.n_svcs, 6);
	ck_assert_str_eq(r.svcs[0].id, "web0");
	ck_assert_str_eq(r.svcs[1].id, "web1");
	ck_assert_str_eq(r.svcs[2].id, "web3");
	ck_assert_str_eq(r.svcs[3].id, "db1"); /* n1's, by id */
	ck_assert_str_eq(r.svcs[4].id, "web0");
	ck_assert_str_eq(r.svcs[5].id, "web1");
	cat_rows_close(&r);
	ck_assert_int_eq(cat_services(store, "nothing", NULL, &r), 0);
	ck_assert_int_eq(cat_services(store, NULL, "n9", &r), 0);
	ck_assert_uint_eq(r.n_svcs, 0);
	cat_rows_close(&r);
}
END_TEST

START_TEST(reads_check_filters)
{
	struct cat_rows r = {0};

	populate();
	ck_assert_int_eq(cat_checks(store, NULL, NULL, 0, &r), 0);
	ck_assert_uint_eq(r.n_chks, 5);
	ck_assert_str_eq(r.chks[0].id, "db1-chk"); /* by node, then id */
	ck_assert_str_eq(r.chks[1].id, "serfHealth");
	ck_assert_str_eq(r.chks[2].id, "web1-chk");
	ck_assert_str_eq(r.chks[3].node, "n2");
	ck_assert_str_eq(r.chks[3].id, "serfHealth");
	ck_assert_str_eq(r.chks[4].id, "web3-chk");
	cat_rows_close(&r);

	ck_assert_int_eq(cat_checks(store, "n2", NULL, 0, &r), 0);
	ck_assert_uint_eq(r.n_chks, 2);
	ck_assert_str_eq(r.chks[0].id, "serfHealth");
	ck_assert_str_eq(r.chks[1].id, "web3-chk");
	cat_rows_close(&r);

	/* By service name: its checks, not the node-level ones. */
	ck_assert_int_eq(cat_checks(store, NULL, "web", 0, &r), 0);
	ck_assert_uint_eq(r.n_chks, 2);
	ck_assert_str_eq(r.chks[0].id, "web1-chk");
	ck_assert_str_eq(r.chks[1].id, "web3-chk");
	cat_rows_close(&r);

	ck_assert_int_eq(cat_checks(store, NULL, NULL, CAT_CRITICAL, &r), 0);
	ck_assert_uint_eq(r.n_chks, 1);
	ck_assert_str_eq(r.chks[0].id, "web1-chk");
	cat_rows_close(&r);
	ck_assert_int_eq(cat_checks(store, NULL, NULL, CAT_PASSING, &r), 0);
	ck_assert_uint_eq(r.n_chks, 3);
	cat_rows_close(&r);

	/* Filters combine. */
	ck_assert_int_eq(cat_checks(store, "n2", NULL, CAT_WARNING, &r), 0);
	ck_assert_uint_eq(r.n_chks, 1);
	ck_assert_str_eq(r.chks[0].id, "serfHealth");
	cat_rows_close(&r);
	ck_assert_int_eq(cat_checks(store, "n1", "db", 0, &r), 0);
	ck_assert_uint_eq(r.n_chks, 1);
	ck_assert_str_eq(r.chks[0].id, "db1-chk");
	cat_rows_close(&r);
	ck_assert_int_eq(cat_checks(store, "n1", "web", CAT_PASSING, &r), 0);
	ck_assert_uint_eq(r.n_chks, 0);
	ck_assert_int_eq(cat_checks(store, NULL, "web", CAT_PASSING, &r), 0);
	ck_assert_uint_eq(r.n_chks, 1);
	ck_assert_str_eq(r.chks[0].id, "web3-chk");
	cat_rows_close(&r);
	ck_assert_int_eq(cat_checks(store, "n9", NULL, 0, &r), 0);
	ck_assert_int_eq(cat_checks(store, NULL, "nothing", 0, &r), 0);
	ck_assert_uint_eq(r.n_chks, 0);
	cat_rows_close(&r);
}
END_TEST

START_TEST(reads_health_service)
{
	struct cat_rows r = {0};

	populate();
	apply1(svc_op("n1", "web2", "web", 8080), 20);
	apply1(chk_op("n3", "serfHealth", "", CAT_PASSING), 21);
	ck_assert_int_eq(cat_health_service(store, "web", &r), 0);
	ck_assert_uint_eq(r.n_svcs, 3);
	ck_assert_str_eq(r.svcs[0].id, "web1");
	ck_assert_str_eq(r.svcs[1].id, "web2");
	ck_assert_str_eq(r.svcs[2].id, "web3");
	ck_assert_uint_eq(r.n_nodes, 2); /* one each */
	ck_assert_str_eq(r.nodes[0].name, "n1");
	ck_assert_str_eq(r.nodes[0].address, "10.0.0.1");
	ck_assert_str_eq(r.nodes[1].name, "n2");
	ck_assert_uint_eq(r.n_chks, 4);
	ck_assert_str_eq(r.chks[0].node, "n1");
	ck_assert_str_eq(r.chks[0].id, "serfHealth");
	ck_assert_str_eq(r.chks[0].service_id, "");
	ck_assert_str_eq(r.chks[1].id, "web1-chk");
	ck_assert_str_eq(r.chks[1].service_name, "web");
	ck_assert_str_eq(r.chks[2].node, "n2");
	ck_assert_str_eq(r.chks[2].id, "serfHealth");
	ck_assert_str_eq(r.chks[3].id, "web3-chk");
	cat_rows_close(&r);

	ck_assert_int_eq(cat_health_service(store, "api", &r), 0);
	ck_assert_uint_eq(r.n_svcs, 1);
	ck_assert_uint_eq(r.n_nodes, 1);
	ck_assert_str_eq(r.nodes[0].name, "n3");
	ck_assert_uint_eq(r.n_chks, 1);
	ck_assert_str_eq(r.chks[0].id, "serfHealth");
	cat_rows_close(&r);

	ck_assert_int_eq(cat_health_service(store, "nothing", &r), 0);
	ck_assert_uint_eq(r.n_svcs + r.n_nodes + r.n_chks, 0);
	cat_rows_close(&r);
}
END_TEST

START_TEST(reads_not_found)
{
	struct cat_rows r = {0};
	uint64_t n = 9, v = 9, k = 9;

	ck_assert_int_eq(cat_stats(store, &n, &v, &k), 0);
	ck_assert_uint_eq(n + v + k, 0);
	ck_assert_int_eq(cat_node(store, "n1", &r), BCN_ENOTFOUND);
	ck_assert_int_eq(cat_service(store, "n1", "web1", &r), BCN_ENOTFOUND);
	ck_assert_int_eq(cat_check(store, "n1", "c1", &r), BCN_ENOTFOUND);
	populate();
	ck_assert_int_eq(cat_node(store, "n4", &r), BCN_ENOTFOUND);
	ck_assert_int_eq(cat_service(store, "n1", "web3", &r), BCN_ENOTFOUND);
	ck_assert_int_eq(cat_service(store, "n2", "nope", &r), BCN_ENOTFOUND);
	ck_assert_int_eq(cat_check(store, "n2", "web1-chk", &r), BCN_ENOTFOUND);
	ck_assert_uint_eq(r.n_nodes + r.n_svcs + r.n_chks, 0);
	ck_assert_int_eq(cat_stats(store, &n, &v, &k), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(v, 4);
	ck_assert_uint_eq(k, 5);
	cat_rows_close(&r);
}
END_TEST

/* ---- allocation failures ------------------------------------------------- */

/* Enough for the largest loop here; each run of a loop restarts from a
 * fresh store. */
#define MAX_ATTEMPTS 100000

static void reopen(void)
{
	teardown();
	setup();
}

/* A batch over populate()'s state that takes every path of cat_apply():
 * new node, service and check, a status update, a rename, a service and a
 * node delete, keep_status, an address change, a check delete and a
 * write that changes nothing. */
static int run_big_batch(struct cat_result *res, bool refuse_last)
{
	struct cat_op ops[] = {
	    node_op("n4", "10.0.0.4"),
	    svc_op("n4", "web4", "web", 80),
	    chk_op("n4", "web4-chk", "web4", CAT_CRITICAL),
	    chk_status("n1", "serfHealth", CAT_WARNING, "flaky"),
	    svc_op("n1", "web1", "www", 80),
	    svc_del("n1", "db1"),
	    node_del("n3"),
	    chk_op("n4", "serfHealth", "", CAT_PASSING),
	    node_op("n1", "10.0.0.9"),
	    chk_del("n2", "web3-chk"),
	    node_op("n4", "10.0.0.4"),
	    svc_op("n9", "x", "x", 1),
	};

	ops[0].node.meta = STRS("rack\0"
				"r4\0");
	ops[1].svc.tags = STRS("a\0"
			       "b\0");
	ops[7].keep_status = true;
	ops[10].node.meta = ops[0].node.meta; /* the same as ops[0] */
	return cat_apply(store, ops, N_OF(ops) - (refuse_last ? 0 : 1), 40,
			 res);
}

/* Run the batch with the n-th allocation failing, for every n, on a fresh
 * populated store each time. A failure must leave the store, its indexes
 * and the change record as they were, and no transaction open; the run
 * with no fault gives @want_done. Returns the number of failed runs. */
static int batch_oom_loop(bool with_res, bool refuse_last,
			  const char *want_done)
{
	int n, failures = 0;

	for (n = 0; n < MAX_ATTEMPTS; n++) {
		struct cat_result res;
		struct cat_changes c;
		char *before, *after;
		int rc, fired;

		reopen();
		populate();
		before = dump();
		fault_alloc_fail_at(n);
		rc = run_big_batch(with_res ? &res : NULL, refuse_last);
		fired = fault_alloc_fired();
		fault_alloc_fail_at(-1);
		ck_assert_msg(rc == 0 || rc == BCN_ENOMEM || rc == BCN_EIO,
			      "n=%d: rc %d", n, rc);
		ck_assert_msg(sqlite3_get_autocommit(db),
			      "n=%d: transaction left open", n);
		after = dump();
		c = take();
		if (rc == 0 && !refuse_last) {
			if (with_res)
				ck_assert_msg(res.ok, "n=%d: %s", n, res.what);
			ck_assert_msg(strcmp(after, want_done) == 0,
				      "n=%d: state\n%s\nwant\n%s", n, after,
				      want_done);
			ck_assert_msg(cat_changes_match(&c, "s/www"), "n=%d",
				      n);
			ck_assert(has_check(&c, "n4", "web4-chk"));
		} else {
			if (rc != 0) {
				ck_assert_msg(fired,
					      "n=%d: failed with no "
					      "fault",
					      n);
				failures++;
			}
			/* With rc != 0, res.ok is not checked here: see
			 * apply_savepoint_oom_leaves_res_ok below. */
			if (rc == 0 && with_res) {
				ck_assert(!res.ok);
				ck_assert_uint_eq(res.failed_op, 11);
			}
			ck_assert_msg(strcmp(after, before) == 0,
				      "n=%d (rc %d): state\n%s\nwas\n%s", n, rc,
				      after, before);
			ck_assert_msg(c.n == 0 && c.n_checks == 0,
				      "n=%d: %zu topics, %zu checks recorded",
				      n, c.n, c.n_checks);
		}
		bcn_free(before);
		bcn_free(after);
		if (!fired)
			break;
	}
	ck_assert_int_lt(n, MAX_ATTEMPTS);
	return failures;
}

static char *big_batch_done(void)
{
	struct cat_result res;
	char *s;

	reopen();
	populate();
	ck_assert_int_eq(run_big_batch(&res, false), 0);
	ck_assert_msg(res.ok, "%s", res.what);
	s = dump();
	/* What the batch did, roughly: the dump is the precise record. */
	ck_assert_ptr_nonnull(strstr(s, "svc n1/web1 name=www"));
	ck_assert_ptr_null(strstr(s, "node n3"));
	ck_assert_ptr_null(strstr(s, "db1"));
	return s;
}

/* The three batch loops below currently end in a LeakSanitizer report
 * (the child exits 1): the CHECK_SET leak documented at
 * check_set_oom_frees_definition. They pass once that is fixed. */
START_TEST(apply_batch_survives_every_oom)
{
	char *done = big_batch_done();

	ck_assert_int_gt(batch_oom_loop(true, false, done), 10);
	bcn_free(done);
}
END_TEST

START_TEST(apply_batch_no_result_survives_every_oom)
{
	char *done = big_batch_done();

	ck_assert_int_gt(batch_oom_loop(false, false, done), 10);
	bcn_free(done);
}
END_TEST

/* The same batch with a refused last op: every outcome leaves the store
 * as it was. */
START_TEST(apply_refused_batch_survives_every_oom)
{
	ck_assert_int_gt(batch_oom_loop(true, true, NULL), 10);
}
END_TEST

/* Readers clean up after themselves under every failure (LSan checks at
 * the child's exit). */
START_TEST(reads_survive_every_oom)
{
	int n;

	populate();
	for (n = 0; n < MAX_ATTEMPTS; n++) {
		struct cat_rows a = {0}, b = {0}, c = {0}, d = {0}, e = {0};
		uint64_t i1 = 0, s1, s2, s3;
		int rc[9], fired;

		fault_alloc_fail_at(n);
		rc[0] = cat_nodes(store, &a);
		rc[1] = cat_services(store, NULL, NULL, &b);
		rc[2] = cat_checks(store, NULL, "web", 0, &c);
		rc[3] = cat_health_service(store, "web", &d);
		rc[4] = cat_node(store, "n1", &e);
		rc[5] = cat_service(store, "n1", "web1", &e);
		rc[6] = cat_check(store, "n1", "web1-chk", &e);
		rc[7] = cat_index(store, "s/web", &i1);
		rc[8] = cat_stats(store, &s1, &s2, &s3);
		fired = fault_alloc_fired();
		fault_alloc_fail_at(-1);
		for (size_t i = 0; i < N_OF(rc); i++)
			ck_assert_msg(rc[i] == 0 || rc[i] == BCN_ENOMEM ||
					  rc[i] == BCN_EIO,
				      "n=%d: read %zu: rc %d", n, i, rc[i]);
		if (rc[0] == 0)
			ck_assert_uint_eq(a.n_nodes, 3);
		if (rc[1] == 0)
			ck_assert_uint_eq(b.n_svcs, 4);
		if (rc[2] == 0)
			ck_assert_uint_eq(c.n_chks, 2);
		if (rc[3] == 0)
			ck_assert(d.n_svcs == 2 && d.n_nodes == 2 &&
				  d.n_chks == 4);
		if (rc[7] == 0)
			ck_assert_uint_eq(i1, 13);
		cat_rows_close(&a);
		cat_rows_close(&b);
		cat_rows_close(&c);
		cat_rows_close(&d);
		cat_rows_close(&e);
		ck_assert(sqlite3_get_autocommit(db));
		if (!fired) {
			for (size_t i = 0; i < N_OF(rc); i++)
				ck_assert_int_eq(rc[i], 0);
			break;
		}
	}
	ck_assert_int_lt(n, MAX_ATTEMPTS);
	ck_assert_int_gt(n, 20);
}
END_TEST

START_TEST(store_open_survives_every_oom)
{
	for (int fresh = 0; fresh <= 1; fresh++) {
		int n, failures = 0;

		for (n = 0; n < MAX_ATTEMPTS; n++) {
			char errmsg[BCN_ERRMSG_LEN] = "";
			struct cat_store *s = NULL;
			sqlite3 *d;
			int rc, fired;

			if (fresh)
				ck_assert_int_eq(sqlite3_open(":memory:", &d),
						 SQLITE_OK);
			else
				d = db;
			fault_alloc_fail_at(n);
			rc = cat_store_open(&s, d, errmsg);
			fired = fault_alloc_fired();
			fault_alloc_fail_at(-1);
			if (rc == 0) {
				struct cat_op op = node_op("n1", "10.0.0.1");
				ck_assert_int_eq(cat_apply(s, &op, 1, 2, NULL),
						 0);
				cat_store_close(s);
			} else {
				ck_assert_msg(rc == BCN_ENOMEM || rc == BCN_EIO,
					      "n=%d: rc %d", n, rc);
				ck_assert(fired);
				if (rc == BCN_EIO)
					ck_assert_uint_gt(strlen(errmsg), 0);
				failures++;
			}
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

/* ---- the fuzz corpus's seeds --------------------------------------------- */

static void write_seed(const char *dir, int *seq, const struct cat_op *op)
{
	char path[4096];
	size_t len;
	char *buf = encode(op, &len);
	FILE *f;

	ck_assert_int_eq(decode_exact(buf, len), 0);
	snprintf(path, sizeof path, "%s/seed-%03d", dir, ++*seq);
	f = fopen(path, "wb");
	ck_assert_msg(f != NULL, "%s", path);
	ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
	bcn_free(buf);
}

START_TEST(write_seed_corpus)
{
	const char *dir = getenv("BEACON_CATOP_SEEDS");
	static char meta64[8192];
	struct cat_op op;
	int seq = 0;

	if (dir == NULL || dir[0] == '\0')
		return;
	/* Every verb with every field, then small ones of each verb. */
	for (int verb = CAT_NODE_SET; verb < CAT_VERB_NR; verb++) {
		op = full_op((enum cat_verb)verb);
		write_seed(dir, &seq, &op);
	}
	op = node_op("n1", "10.0.0.1");
	write_seed(dir, &seq, &op);
	op = node_op("node-\xc3\xa9", "2001:db8::1");
	op.node.tagged = STRS("lan\0"
			      "2001:db8::1\0");
	write_seed(dir, &seq, &op);
	op.node.meta = make_meta(meta64, sizeof meta64, 64, 8);
	write_seed(dir, &seq, &op);
	op = node_del("n1");
	write_seed(dir, &seq, &op);
	op = svc_op("n1", "web1", "web", 80);
	write_seed(dir, &seq, &op);
	op = svc_op("n1", "redis", "redis", 6379);
	op.svc.tags = STRS("primary\0");
	op.svc.meta = STRS("version\0"
			   "7\0");
	write_seed(dir, &seq, &op);
	op = svc_op("n1", "consul", CAT_SERVER_SVC, 8300);
	write_seed(dir, &seq, &op);
	op = svc_op("n1", "web1", "www", 65535);
	op.svc.address = "10.1.1.1";
	op.svc.weight_warning = 0;
	write_seed(dir, &seq, &op);
	op = svc_del("n1", "web1");
	write_seed(dir, &seq, &op);
	op = chk_op("n1", CAT_NODE_CHECK, "", CAT_PASSING);
	op.chk.type = "";
	write_seed(dir, &seq, &op);
	op = chk_op("n1", "web1-ttl", "web1", CAT_CRITICAL);
	write_seed(dir, &seq, &op);
	op.keep_status = true;
	write_seed(dir, &seq, &op);
	op = chk_op("n1", "web1-http", "web1", CAT_WARNING);
	op.chk.type = "http";
	op.chk.def.ttl_ms = 0;
	op.chk.def.interval_ms = 10000;
	op.chk.def.timeout_ms = 1000;
	op.chk.def.http = "http://127.0.0.1:8080/health";
	op.chk.def.method = "GET";
	op.chk.def.header = STRS("X-A\0"
				 "1\0"
				 "X-A\0"
				 "2\0");
	write_seed(dir, &seq, &op);
	op = chk_op("n1", "web1-tcp", "web1", CAT_PASSING);
	op.chk.type = "tcp";
	op.chk.def.tcp = "127.0.0.1:8080";
	op.chk.def.deregister_after_ms = 60000;
	write_seed(dir, &seq, &op);
	op = chk_op("n1", "_node_maintenance", "", CAT_CRITICAL);
	op.chk.type = "maintenance";
	op.chk.notes = "reboot";
	write_seed(dir, &seq, &op);
	op = chk_del("n1", "web1-ttl");
	write_seed(dir, &seq, &op);
	op = chk_status("n1", CAT_NODE_CHECK, CAT_CRITICAL, "Agent not live");
	write_seed(dir, &seq, &op);
	op = chk_status("n1", "web1-ttl", CAT_PASSING, "");
	write_seed(dir, &seq, &op);
	op = chk_status("n1", "web1-ttl", CAT_WARNING, "h\xc3\xa9");
	write_seed(dir, &seq, &op);
}
END_TEST

/* ---- bugs found while writing these tests (left failing) ----------------- */

/* BUG (health/catalog.c, chk_set()): when cat_def_encode() runs out of
 * memory, chk_set() returns BCN_ENOMEM without bcn_buf_close(&def), so
 * the blocks the buffer had already grown leak. Every cat_apply() with a
 * CHECK_SET can hit it. This loop fails the n-th allocation of one
 * CHECK_SET for every n; the leak is reported by LeakSanitizer when the
 * forked child exits ("Early exit with return value 1"). */
START_TEST(check_set_oom_frees_definition)
{
	struct cat_op op = full_op(CAT_CHECK_SET);
	int n;

	apply1(full_op(CAT_NODE_SET), 2);
	apply1(full_op(CAT_SERVICE_SET), 3);
	for (n = 0; n < MAX_ATTEMPTS; n++) {
		int rc, fired;

		fault_alloc_fail_at(n);
		rc = cat_apply(store, &op, 1, 4, NULL);
		fired = fault_alloc_fired();
		fault_alloc_fail_at(-1);
		ck_assert(rc == 0 || rc == BCN_ENOMEM || rc == BCN_EIO);
		if (rc == 0 && !fired)
			break;
		if (rc == 0) { /* a tolerated failure: undo and go on */
			struct cat_op del = chk_del("node-1", "service:web-1");
			apply1(del, 5);
		}
	}
	ck_assert_int_lt(n, MAX_ATTEMPTS);
}
END_TEST

/* BUG (health/catalog.c, cat_apply()): when the SAVEPOINT statement
 * itself fails (the first allocation of an apply), cat_apply() returns
 * BCN_ENOMEM with @res->ok still true and @res->what empty, where every
 * later failure sets ok = false and what = bcn_strerror(rc). A caller
 * that looks at res.ok alone (as the "(ok false, return 0)" refusal path
 * invites) takes the failed apply for a success. */
START_TEST(apply_failure_sets_res_not_ok)
{
	struct cat_op op = node_op("n1", "10.0.0.1");
	int n;

	for (n = 0; n < MAX_ATTEMPTS; n++) {
		struct cat_result res;
		int rc, fired;

		fault_alloc_fail_at(n);
		rc = cat_apply(store, &op, 1, 2, &res);
		fired = fault_alloc_fired();
		fault_alloc_fail_at(-1);
		if (rc != 0) {
			ck_assert_msg(!res.ok,
				      "n=%d: cat_apply returned %d (%s) with "
				      "res.ok true, what \"%s\"",
				      n, rc, bcn_strerror(rc), res.what);
			ck_assert_uint_gt(strlen(res.what), 0);
		}
		if (!fired)
			break;
	}
	ck_assert_int_lt(n, MAX_ATTEMPTS);
}
END_TEST

/* BUG (health/catalog.c, chk_set() → touch_chk()): a CHECK_SET that moves
 * an existing check to another ServiceID touches only the new service's
 * topic. The old service's health (/v1/health/service/web, watching
 * "s/web") lost a check, but its index does not move, so a blocking query
 * on it never wakes and a client keeps the stale answer. chk_set() must
 * also touch the old row's service (or the node's services if it was a
 * node-level check). */
START_TEST(check_moved_to_another_service_touches_the_old_one)
{
	struct cat_rows r = {0};
	struct cat_changes c;
	uint64_t web_before;

	populate();
	ck_assert_int_eq(cat_health_service(store, "web", &r), 0);
	ck_assert_uint_eq(r.n_chks, 4); /* with n1's web1-chk */
	cat_rows_close(&r);
	web_before = idx("s/web");

	apply1(chk_op("n1", "web1-chk", "db1", CAT_CRITICAL), 20);
	ck_assert_int_eq(cat_health_service(store, "web", &r), 0);
	ck_assert_uint_eq(r.n_chks, 3); /* web's health did change */
	cat_rows_close(&r);
	c = take();
	ck_assert(cat_changes_match(&c, "s/db"));
	ck_assert_msg(cat_changes_match(&c, "s/web"),
		      "s/web not touched, though web lost check web1-chk");
	ck_assert_uint_gt(idx("s/web"), web_before);
}
END_TEST

/* The same bug from the other side: a node-level check re-registered as a
 * service's check stops counting for every other service on the node, but
 * only the new service's topic is touched. */
START_TEST(node_check_made_service_check_touches_node_services)
{
	struct cat_rows r = {0};
	struct cat_changes c;

	populate();
	apply1(chk_op("n1", "serfHealth", "db1", CAT_PASSING), 20);
	ck_assert_int_eq(cat_health_service(store, "web", &r), 0);
	ck_assert_uint_eq(r.n_chks, 3); /* n1's serfHealth is gone */
	cat_rows_close(&r);
	c = take();
	ck_assert(cat_changes_match(&c, "s/db"));
	ck_assert_msg(cat_changes_match(&c, "s/web"),
		      "s/web not touched, though web on n1 lost the "
		      "node-level check serfHealth");
}
END_TEST

static Suite *catalog_suite(void)
{
	Suite *s = suite_create("catalog");
	TCase *codec = tcase_create("codec");
	TCase *check = tcase_create("check");
	TCase *apply = tcase_create("apply");
	TCase *topics = tcase_create("topics");
	TCase *reads = tcase_create("reads");
	TCase *oom = tcase_create("oom");
	TCase *seeds = tcase_create("seeds");
	TCase *bugs = tcase_create("regressions");

	tcase_add_test(codec, status_names);
	tcase_add_test(codec, strs_helpers);
	tcase_add_test(codec, codec_round_trip_every_verb);
	tcase_add_test(codec, codec_round_trip_minimal);
	tcase_add_test(codec, codec_rejects_every_truncation);
	tcase_add_test(codec, codec_rejects_trailing_bytes);
	tcase_add_test(codec, codec_rejects_bad_version_and_verb);
	tcase_add_test(codec, codec_rejects_bad_strings);
	tcase_add_test(codec, codec_rejects_bad_lists);
	tcase_add_test(codec, codec_rejects_bad_status);
	tcase_add_test(codec, codec_string_limits);
	tcase_add_test(codec, codec_rejects_what_check_refuses);
	suite_add_tcase(s, codec);

	tcase_add_test(check, check_accepts_full_ops);
	tcase_add_test(check, check_service_rules);
	tcase_add_test(check, check_node_rules);
	tcase_add_test(check, check_meta_rules);
	tcase_add_test(check, check_check_rules);
	tcase_add_test(check, check_rejects_invalid_utf8);
	tcase_add_test(check, check_unknown_verb);
	suite_add_tcase(s, check);

	tcase_add_checked_fixture(apply, setup, teardown);
	tcase_add_test(apply, apply_node_service_check);
	tcase_add_test(apply, apply_service_on_missing_node_rolls_back);
	tcase_add_test(apply, apply_check_refusals);
	tcase_add_test(apply, apply_unchanged_writes_touch_nothing);
	tcase_add_test(apply, apply_empty_lists_are_unchanged);
	tcase_add_test(apply, apply_keep_status);
	tcase_add_test(apply, apply_check_status);
	tcase_add_test(apply, apply_unknown_verb_refused);
	tcase_add_test(apply, apply_batch_sees_itself);
	suite_add_tcase(s, apply);

	tcase_add_checked_fixture(topics, setup, teardown);
	tcase_add_test(topics, index_of_fresh_store);
	tcase_add_test(topics, topics_of_a_service_change);
	tcase_add_test(topics, topics_of_a_node_level_check);
	tcase_add_test(topics, topics_of_a_node_change);
	tcase_add_test(topics, service_rename);
	tcase_add_test(topics, service_delete);
	tcase_add_test(topics, node_delete);
	tcase_add_test(topics, changes_checks_list);
	tcase_add_test(topics, changes_mark_all);
	suite_add_tcase(s, topics);

	tcase_add_checked_fixture(reads, setup, teardown);
	tcase_add_test(reads, reads_sorted);
	tcase_add_test(reads, reads_check_filters);
	tcase_add_test(reads, reads_health_service);
	tcase_add_test(reads, reads_not_found);
	suite_add_tcase(s, reads);

	tcase_add_checked_fixture(oom, setup, teardown);
	tcase_set_timeout(oom, 600);
	tcase_add_test(oom, apply_batch_survives_every_oom);
	tcase_add_test(oom, apply_batch_no_result_survives_every_oom);
	tcase_add_test(oom, apply_refused_batch_survives_every_oom);
	tcase_add_test(oom, reads_survive_every_oom);
	tcase_add_test(oom, store_open_survives_every_oom);
	suite_add_tcase(s, oom);

	tcase_add_test(seeds, write_seed_corpus);
	suite_add_tcase(s, seeds);

	tcase_add_checked_fixture(bugs, setup, teardown);
	tcase_set_timeout(bugs, 60);
	tcase_add_test(bugs, check_set_oom_frees_definition);
	tcase_add_test(bugs, apply_failure_sets_res_not_ok);
	tcase_add_test(bugs,
		       check_moved_to_another_service_touches_the_old_one);
	tcase_add_test(bugs,
		       node_check_made_service_check_touches_node_services);
	suite_add_tcase(s, bugs);
	return s;
}

int main(void)
{
	return unit_run(catalog_suite());
}
