/* Fuzz the state-image check (raft/image.h) and what follows a restore.
 *
 * The input is a SQLite database image, as inside a backup once its header
 * and checksum are stripped (a client who knows the format can seal any
 * image). image_check() must refuse it with a reason or accept it; an
 * accepted image is then loaded the way every server loads a restore
 * (backup into a store's database, then the schema completed) and the
 * store must keep working: KV writes, CAS, deletes of everything,
 * tombstone reaping, catalog registrations and deletions of every node,
 * and the reads behind the HTTP API all return 0 (or "not found" where
 * that is an answer, or out of memory). Anything else would stop every
 * server at the next entry, so it aborts.
 *
 * The writes use Raft index 100, below the indexes a real image holds:
 * a backup from a busy cluster restored into a young one does that. */
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "health/catalog.h"
#include "kv/kv.h"
#include "raft/cluster.h"
#include "raft/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INDEX 100

/* A state database of this version, with its stores open. */
struct state {
	sqlite3 *db;
	struct kv_store *kv;
	struct cat_store *cat;
};

static void state_close(struct state *s)
{
	kv_store_close(s->kv);
	cat_store_close(s->cat);
	sqlite3_close(s->db);
	memset(s, 0, sizeof *s);
}

static void state_open(struct state *s)
{
	char errmsg[BCN_ERRMSG_LEN];

	memset(s, 0, sizeof *s);
	if (sqlite3_open(":memory:", &s->db) != SQLITE_OK ||
	    sqlite3_exec(s->db, cluster_servers_schema, NULL, NULL, NULL) !=
		SQLITE_OK ||
	    kv_store_open(&s->kv, s->db, errmsg) != 0 ||
	    cat_store_open(&s->cat, s->db, errmsg) != 0)
		abort();
}

static struct state expected;

static void teardown(void)
{
	state_close(&expected);
}

static bool fine(int rc)
{
	return rc == 0 || rc == BCN_ENOMEM;
}

/* As load_image() in raft/cluster.c: the image replaces the database,
 * then the schema is completed. */
static bool load(struct state *s, const uint8_t *data, size_t size)
{
	int rc = image_load(s->db, data, size);

	if (rc == BCN_ENOMEM)
		return false;
	if (rc != 0 ||
	    sqlite3_exec(s->db, cluster_servers_schema, NULL, NULL, NULL) !=
		SQLITE_OK ||
	    !fine(kv_store_migrate(s->kv)) || !fine(cat_store_migrate(s->cat)))
		abort(); /* it passed the check */
	return true;
}

static void use_kv(struct kv_store *kv)
{
	struct kv_op ops[3];
	struct kv_result res;
	struct kv_entry e;
	struct kv_list l = {0};
	uint64_t index, keys, bytes;
	int rc;

	memset(ops, 0, sizeof ops);
	ops[0] = (struct kv_op){
	    .verb = KV_SET, .key = "fuzz/a", .value = "v", .value_len = 1};
	ops[1] = (struct kv_op){
	    .verb = KV_CAS, .key = "fuzz/b", .value = "w", .value_len = 1};
	kv_result_init(&res);
	res.want_entries = true;
	if (!fine(kv_apply(kv, ops, 2, INDEX, &res)))
		abort();
	kv_result_close(&res);
	rc = kv_get(kv, "fuzz/a", &e, &index);
	if (rc == 0)
		kv_entry_close(&e);
	else if (rc != BCN_ENOTFOUND && rc != BCN_ENOMEM)
		abort();
	if (!fine(kv_list(kv, "", false, &l, &index)))
		abort();
	kv_list_close(&l);
	memset(&l, 0, sizeof l);
	if (!fine(kv_keys(kv, "", "/", &l, &index)))
		abort();
	kv_list_close(&l);
	if (!fine(kv_stats(kv, &keys, &bytes)))
		abort();
	ops[0] = (struct kv_op){.verb = KV_DELETE_TREE, .key = ""};
	if (!fine(kv_apply(kv, ops, 1, INDEX + 1, NULL)))
		abort();
	if (!fine(kv_reap(kv, INDEX + 1)))
		abort();
}

static void use_catalog(struct cat_store *cat)
{
	struct cat_rows rows = {0};
	struct cat_op ops[3];
	uint64_t index, n, sv, ch;

	memset(ops, 0, sizeof ops);
	ops[0].verb = CAT_NODE_SET;
	ops[0].node = (struct cat_node){
	    .name = "fuzz-node", .id = "", .address = "127.0.0.1"};
	ops[1].verb = CAT_SERVICE_SET;
	ops[1].svc = (struct cat_service){.node = "fuzz-node",
					  .id = "web1",
					  .name = "web",
					  .kind = "",
					  .address = "",
					  .port = 80,
					  .weight_passing = 1,
					  .weight_warning = 1};
	ops[2].verb = CAT_CHECK_SET;
	ops[2].chk = (struct cat_check){.node = "fuzz-node",
					.id = "c1",
					.name = "c1",
					.status = CAT_PASSING,
					.output = "",
					.notes = "",
					.service_id = "web1",
					.service_name = "web",
					.type = "ttl",
					.def = {.http = "",
						.method = "",
						.body = "",
						.tcp = "",
						.tls_server_name = "",
						.ttl_ms = 10000}};
	if (!fine(cat_apply(cat, ops, 3, INDEX + 2, NULL)))
		abort();
	if (!fine(cat_health_service(cat, "web", &rows)) ||
	    !fine(cat_checks(cat, NULL, NULL, 0, &rows)) ||
	    !fine(cat_services(cat, NULL, NULL, &rows)) ||
	    !fine(cat_index(cat, "s/web", &index)) ||
	    !fine(cat_stats(cat, &n, &sv, &ch)))
		abort();
	cat_rows_close(&rows);
	memset(&rows, 0, sizeof rows);
	if (!fine(cat_nodes(cat, &rows)))
		abort();
	/* Every node goes, with its services and checks. */
	for (size_t i = 0; i < rows.n_nodes; i++) {
		struct cat_op del = {.verb = CAT_NODE_DELETE};

		del.node.name = rows.nodes[i].name;
		if (!fine(cat_apply(cat, &del, 1, INDEX + 3, NULL)))
			abort();
	}
	cat_rows_close(&rows);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[256];
	struct state live;
	int rc;

	if (expected.db == NULL) {
		state_open(&expected);
		atexit(teardown);
	}
	rc = image_check(expected.db, data, size, why, sizeof why);
	if (rc == BCN_ENOMEM)
		return 0;
	if (rc != 0) {
		if (rc != BCN_EINVAL || why[0] == '\0')
			abort(); /* a refusal says why */
		return 0;
	}
	state_open(&live);
	if (load(&live, data, size)) {
		use_kv(live.kv);
		use_catalog(live.cat);
	}
	state_close(&live);
	return 0;
}
