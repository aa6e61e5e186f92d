/* The catalog state in SQLite.
 *
 * Happy path of cat_apply(): a savepoint, each op read-compare-write (an op
 * that changes nothing writes nothing and touches no topic, so repeated
 * registrations and unchanged heartbeats never wake a watcher), the topics
 * of what changed get the entry's index, release. A refused op rolls back
 * to the savepoint, with the change record, so callers see all-or-nothing.
 *
 * Rows hold strings as TEXT, lists as packed BLOBs (see struct cat_strs) and
 * a check's definition as one BLOB in the codec's encoding. */
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "health/cat_def.h"
#include "health/catalog.h"

enum {
	ST_NODE_GET,
	ST_NODE_PUT,
	ST_NODE_DEL,
	ST_NODES,
	ST_SVC_GET,
	ST_SVC_PUT,
	ST_SVC_DEL,
	ST_SVC_DEL_NODE,
	ST_SVCS_ALL,
	ST_SVCS_NAME,
	ST_SVCS_NODE,
	ST_SVC_NAMES_NODE,
	ST_CHK_GET,
	ST_CHK_PUT,
	ST_CHK_STATUS,
	ST_CHK_DEL,
	ST_CHK_DEL_SVC,
	ST_CHK_DEL_NODE,
	ST_CHK_RENAME,
	ST_CHKS_ALL,
	ST_CHKS_NODE,
	ST_CHKS_SVC,
	ST_CHKS_HEALTH,
	ST_CHK_IDS_SVC,
	ST_CHK_IDS_NODE,
	ST_TOPIC_GET,
	ST_TOPIC_PUT,
	ST_STATS,
	ST_SAVEPOINT,
	ST_RELEASE,
	ST_ROLLBACK,
	ST_NR
};

#define NODE_COLS "name, id, address, tagged, meta, cidx, midx"
#define SVC_COLS                                                            \
	"node, id, name, kind, tags, address, tagged, meta, port, wp, ww, " \
	"eto, cidx, midx"
#define CHK_COLS                                                          \
	"node, id, name, status, notes, output, svc_id, svc_name, type, " \
	"def, cidx, midx"

static const char *const sql[ST_NR] = {
    [ST_NODE_GET] = "SELECT " NODE_COLS " FROM cat_nodes WHERE name = ?1",
    [ST_NODE_PUT] = "INSERT OR REPLACE INTO cat_nodes(" NODE_COLS
		    ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_NODE_DEL] = "DELETE FROM cat_nodes WHERE name = ?1",
    [ST_NODES] = "SELECT " NODE_COLS " FROM cat_nodes ORDER BY name",
    [ST_SVC_GET] =
	"SELECT " SVC_COLS " FROM cat_svcs WHERE node = ?1 AND id = ?2",
    [ST_SVC_PUT] = "INSERT OR REPLACE INTO cat_svcs(" SVC_COLS
		   ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
		   "?12, ?13, ?14)",
    [ST_SVC_DEL] = "DELETE FROM cat_svcs WHERE node = ?1 AND id = ?2",
    [ST_SVC_DEL_NODE] = "DELETE FROM cat_svcs WHERE node = ?1",
    [ST_SVCS_ALL] = "SELECT " SVC_COLS " FROM cat_svcs ORDER BY node, id",
    [ST_SVCS_NAME] =
	"SELECT " SVC_COLS " FROM cat_svcs WHERE name = ?1 ORDER BY node, id",
    [ST_SVCS_NODE] =
	"SELECT " SVC_COLS " FROM cat_svcs WHERE node = ?1 ORDER BY id",
    [ST_SVC_NAMES_NODE] = "SELECT DISTINCT name FROM cat_svcs WHERE "
			  "node = ?1",
    [ST_CHK_GET] =
	"SELECT " CHK_COLS " FROM cat_checks WHERE node = ?1 AND id = ?2",
    [ST_CHK_PUT] = "INSERT OR REPLACE INTO cat_checks(" CHK_COLS
		   ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
		   "?12)",
    [ST_CHK_STATUS] = "UPDATE cat_checks SET status = ?3, output = ?4, "
		      "midx = ?5 WHERE node = ?1 AND id = ?2",
    [ST_CHK_DEL] = "DELETE FROM cat_checks WHERE node = ?1 AND id = ?2",
    [ST_CHK_DEL_SVC] = "DELETE FROM cat_checks WHERE node = ?1 AND "
		       "svc_id = ?2",
    [ST_CHK_DEL_NODE] = "DELETE FROM cat_checks WHERE node = ?1",
    [ST_CHK_RENAME] = "UPDATE cat_checks SET svc_name = ?3 WHERE node = ?1 "
		      "AND svc_id = ?2",
    [ST_CHKS_ALL] =
	"SELECT " CHK_COLS " FROM cat_checks WHERE ?1 = 0 OR status = ?1 "
	"ORDER BY node, id",
    [ST_CHKS_NODE] =
	"SELECT " CHK_COLS " FROM cat_checks WHERE node = ?1 ORDER BY id",
    [ST_CHKS_SVC] = "SELECT " CHK_COLS
		    " FROM cat_checks WHERE svc_name = ?1 AND svc_id != '' "
		    "ORDER BY node, id",
    /* The node-level checks of one node. Named index: ordered by id, the
     * planner would rather walk every check of the node in key order. */
    [ST_CHKS_HEALTH] =
	"SELECT " CHK_COLS " FROM cat_checks INDEXED BY cat_checks_node_svc "
	"WHERE node = ?1 AND svc_id = '' ORDER BY id",
    [ST_CHK_IDS_SVC] = "SELECT id FROM cat_checks WHERE node = ?1 AND "
		       "svc_id = ?2",
    [ST_CHK_IDS_NODE] = "SELECT id FROM cat_checks WHERE node = ?1",
    [ST_TOPIC_GET] = "SELECT idx FROM cat_topics WHERE topic = ?1",
    [ST_TOPIC_PUT] = "INSERT OR REPLACE INTO cat_topics(topic, idx) "
		     "VALUES(?1, ?2)",
    [ST_STATS] = "SELECT (SELECT count(*) FROM cat_nodes), "
		 "(SELECT count(*) FROM cat_svcs), "
		 "(SELECT count(*) FROM cat_checks)",
    [ST_SAVEPOINT] = "SAVEPOINT cat_apply",
    [ST_RELEASE] = "RELEASE cat_apply",
    [ST_ROLLBACK] = "ROLLBACK TO cat_apply",
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS cat_nodes(name TEXT PRIMARY KEY,"
    " id TEXT NOT NULL, address TEXT NOT NULL, tagged BLOB, meta BLOB,"
    " cidx INTEGER NOT NULL, midx INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS cat_svcs(node TEXT NOT NULL,"
    " id TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL, tags BLOB,"
    " address TEXT NOT NULL, tagged BLOB, meta BLOB, port INTEGER NOT NULL,"
    " wp INTEGER NOT NULL, ww INTEGER NOT NULL, eto INTEGER NOT NULL,"
    " cidx INTEGER NOT NULL, midx INTEGER NOT NULL,"
    " PRIMARY KEY(node, id)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS cat_svcs_name ON cat_svcs(name);"
    "CREATE TABLE IF NOT EXISTS cat_checks(node TEXT NOT NULL,"
    " id TEXT NOT NULL, name TEXT NOT NULL, status INTEGER NOT NULL,"
    " notes TEXT NOT NULL, output TEXT NOT NULL, svc_id TEXT NOT NULL,"
    " svc_name TEXT NOT NULL, type TEXT NOT NULL, def BLOB NOT NULL,"
    " cidx INTEGER NOT NULL, midx INTEGER NOT NULL,"
    " PRIMARY KEY(node, id)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS cat_checks_svc ON cat_checks(svc_name);"
    "CREATE INDEX IF NOT EXISTS cat_checks_node_svc ON cat_checks(node,"
    " svc_id);"
    /* Topic → last index that changed it; "" is the whole catalog. */
    "CREATE TABLE IF NOT EXISTS cat_topics(topic TEXT PRIMARY KEY,"
    " idx INTEGER NOT NULL) WITHOUT ROWID;";

struct cat_store {
	sqlite3 *db; /* borrowed */
	sqlite3_stmt *st[ST_NR];
	/* Changed since the last take: topics, then "node\0id" of checks. */
	char **changed;
	size_t n_changed, cap_changed;
	char **chk_changed;
	size_t n_chk_changed, cap_chk_changed;
	bool changed_all;
	/* Handed out by the last take; freed at the next one. */
	char **taken, **chk_taken;
	size_t n_taken, n_chk_taken;
	uint64_t index; /* of the op being applied */
};

/* ---- plumbing -------------------------------------------------------------
 */

static int sqlerr(int rc)
{
	return rc == SQLITE_NOMEM ? BCN_ENOMEM : BCN_EIO;
}

static int step_done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : sqlerr(rc);
}

static void bind_str(sqlite3_stmt *st, int col, const char *s)
{
	sqlite3_bind_text(st, col, s != NULL ? s : "", -1, SQLITE_STATIC);
}

static void bind_strs(sqlite3_stmt *st, int col, const struct cat_strs *l)
{
	if (l->data == NULL || l->len == 0)
		sqlite3_bind_null(st, col);
	else
		sqlite3_bind_blob(st, col, l->data, (int)l->len, SQLITE_STATIC);
}

static void bind_u64(sqlite3_stmt *st, int col, uint64_t v)
{
	sqlite3_bind_int64(st, col, (sqlite3_int64)v);
}

static void free_strs(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		bcn_free(v[i]);
	bcn_free(v);
}

int cat_store_open(struct cat_store **out, struct sqlite3 *db, char *errmsg)
{
	struct cat_store *s;
	char *err = NULL;
	int rc;

	s = bcn_calloc(1, sizeof *s);
	if (s == NULL)
		return BCN_ENOMEM;
	s->db = db;
	rc = sqlite3_exec(db, schema, NULL, NULL, &err);
	if (rc != SQLITE_OK) {
		bcn_errf(errmsg, "catalog schema: %s",
			 err != NULL ? err : sqlite3_errstr(rc));
		sqlite3_free(err);
		rc = sqlerr(rc);
		goto err_free;
	}
	for (int i = 0; i < ST_NR; i++) {
		rc = sqlite3_prepare_v3(
		    db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
		if (rc != SQLITE_OK) {
			bcn_errf(errmsg, "catalog prepare: %s",
				 sqlite3_errmsg(db));
			rc = sqlerr(rc);
			goto err_finalize;
		}
	}
	*out = s;
	return 0;
err_finalize:
	for (int i = 0; i < ST_NR; i++)
		sqlite3_finalize(s->st[i]);
err_free:
	bcn_free(s);
	return rc;
}

int cat_store_migrate(struct cat_store *s)
{
	return sqlite3_exec(s->db, schema, NULL, NULL, NULL) == SQLITE_OK
		   ? 0
		   : BCN_EIO;
}

void cat_store_close(struct cat_store *s)
{
	if (s == NULL)
		return;
	for (int i = 0; i < ST_NR; i++)
		sqlite3_finalize(s->st[i]);
	free_strs(s->changed, s->n_changed);
	free_strs(s->chk_changed, s->n_chk_changed);
	free_strs(s->taken, s->n_taken);
	free_strs(s->chk_taken, s->n_chk_taken);
	bcn_free(s);
}

/* ---- rows ------------------------------------------------------------------
 * A row's strings live in one block: the column values copied back to back,
 * each NUL-terminated, and the record's pointers aimed into it. */

void cat_rows_close(struct cat_rows *r)
{
	for (size_t i = 0; i < r->n_blocks; i++)
		bcn_free(r->blocks[i]);
	bcn_free(r->blocks);
	bcn_free(r->nodes);
	bcn_free(r->svcs);
	bcn_free(r->chks);
	memset(r, 0, sizeof *r);
}

static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
	void *p;
	size_t c;

	if (n < *cap)
		return 0;
	c = *cap == 0 ? 8 : *cap * 2;
	p = bcn_realloc(*arr, c * size);
	if (p == NULL)
		return BCN_ENOMEM;
	*arr = p;
	*cap = c;
	return 0;
}

/* The columns of @st to copy, and where they land. */
struct col_copy {
	int col;
	bool blob; /* a packed list or a definition */
	const char **str;
	struct cat_strs *strs;
};

static int copy_row(struct cat_rows *r, sqlite3_stmt *st,
		    const struct col_copy *cols, size_t n, char **block_out)
{
	size_t total = 0, off = 0;
	char *block;

	for (size_t i = 0; i < n; i++)
		total += (size_t)sqlite3_column_bytes(st, cols[i].col) + 1;
	if (grow((void **)&r->blocks, &r->cap_blocks, r->n_blocks,
		 sizeof *r->blocks) != 0)
		return BCN_ENOMEM;
	block = bcn_malloc(total > 0 ? total : 1);
	if (block == NULL)
		return BCN_ENOMEM;
	r->blocks[r->n_blocks++] = block;
	for (size_t i = 0; i < n; i++) {
		const void *p =
		    cols[i].blob
			? sqlite3_column_blob(st, cols[i].col)
			: (const void *)sqlite3_column_text(st, cols[i].col);
		size_t len = (size_t)sqlite3_column_bytes(st, cols[i].col);
		if (len > 0)
			memcpy(block + off, p, len);
		block[off + len] = '\0';
		if (cols[i].str != NULL)
			*cols[i].str = block + off;
		if (cols[i].strs != NULL) {
			cols[i].strs->data = len > 0 ? block + off : NULL;
			cols[i].strs->len = len;
		}
		off += len + 1;
	}
	if (block_out != NULL)
		*block_out = block;
	return 0;
}

static uint64_t col_u64(sqlite3_stmt *st, int col)
{
	return (uint64_t)sqlite3_column_int64(st, col);
}

static int row_node(struct cat_rows *r, sqlite3_stmt *st)
{
	struct cat_node *n;

	if (grow((void **)&r->nodes, &r->cap_nodes, r->n_nodes,
		 sizeof *r->nodes) != 0)
		return BCN_ENOMEM;
	n = &r->nodes[r->n_nodes];
	memset(n, 0, sizeof *n);
	const struct col_copy cols[] = {
	    {0, false, &n->name, NULL},	   {1, false, &n->id, NULL},
	    {2, false, &n->address, NULL}, {3, true, NULL, &n->tagged},
	    {4, true, NULL, &n->meta},
	};
	if (copy_row(r, st, cols, sizeof cols / sizeof cols[0], NULL) != 0)
		return BCN_ENOMEM;
	n->create_index = col_u64(st, 5);
	n->modify_index = col_u64(st, 6);
	r->n_nodes++;
	return 0;
}

static int row_svc(struct cat_rows *r, sqlite3_stmt *st)
{
	struct cat_service *v;

	if (grow((void **)&r->svcs, &r->cap_svcs, r->n_svcs, sizeof *r->svcs) !=
	    0)
		return BCN_ENOMEM;
	v = &r->svcs[r->n_svcs];
	memset(v, 0, sizeof *v);
	const struct col_copy cols[] = {
	    {0, false, &v->node, NULL},	 {1, false, &v->id, NULL},
	    {2, false, &v->name, NULL},	 {3, false, &v->kind, NULL},
	    {4, true, NULL, &v->tags},	 {5, false, &v->address, NULL},
	    {6, true, NULL, &v->tagged}, {7, true, NULL, &v->meta},
	};
	if (copy_row(r, st, cols, sizeof cols / sizeof cols[0], NULL) != 0)
		return BCN_ENOMEM;
	v->port = (uint32_t)sqlite3_column_int64(st, 8);
	v->weight_passing = (uint32_t)sqlite3_column_int64(st, 9);
	v->weight_warning = (uint32_t)sqlite3_column_int64(st, 10);
	v->enable_tag_override = sqlite3_column_int(st, 11) != 0;
	v->create_index = col_u64(st, 12);
	v->modify_index = col_u64(st, 13);
	r->n_svcs++;
	return 0;
}

static int row_chk(struct cat_rows *r, sqlite3_stmt *st)
{
	struct cat_check *k;
	struct cat_strs def;
	struct bcn_cursor c;

	if (grow((void **)&r->chks, &r->cap_chks, r->n_chks, sizeof *r->chks) !=
	    0)
		return BCN_ENOMEM;
	k = &r->chks[r->n_chks];
	memset(k, 0, sizeof *k);
	const struct col_copy cols[] = {
	    {0, false, &k->node, NULL},
	    {1, false, &k->id, NULL},
	    {2, false, &k->name, NULL},
	    {4, false, &k->notes, NULL},
	    {5, false, &k->output, NULL},
	    {6, false, &k->service_id, NULL},
	    {7, false, &k->service_name, NULL},
	    {8, false, &k->type, NULL},
	    {9, true, NULL, &def},
	};
	if (copy_row(r, st, cols, sizeof cols / sizeof cols[0], NULL) != 0)
		return BCN_ENOMEM;
	k->status = (enum cat_status)sqlite3_column_int(st, 3);
	bcn_cursor_init(&c, def.data, def.len);
	if (cat_def_decode(&c, &k->def) != 0 || c.left != 0)
		return BCN_ECORRUPT;
	k->create_index = col_u64(st, 10);
	k->modify_index = col_u64(st, 11);
	r->n_chks++;
	return 0;
}

typedef int (*row_fn)(struct cat_rows *r, sqlite3_stmt *st);

/* Run @st (already bound) and add every row with @fn. Resets @st. */
static int collect(sqlite3_stmt *st, row_fn fn, struct cat_rows *out,
		   size_t *found)
{
	int rc, n = 0;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int e = fn(out, st);
		if (e != 0) {
			sqlite3_reset(st);
			sqlite3_clear_bindings(st);
			return e;
		}
		n++;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (found != NULL)
		*found = (size_t)n;
	return rc == SQLITE_DONE ? 0 : sqlerr(rc);
}

/* ---- topics and the change record ---------------------------------------- */

static int record(char ***v, size_t *n, size_t *cap, const char *s, size_t len)
{
	char *copy;

	if (grow((void **)v, cap, *n, sizeof **v) != 0)
		return BCN_ENOMEM;
	copy = bcn_malloc(len + 1);
	if (copy == NULL)
		return BCN_ENOMEM;
	memcpy(copy, s, len);
	copy[len] = '\0';
	(*v)[(*n)++] = copy;
	return 0;
}

/* Give @kind/@name (kind 0: a global topic named @name) the current index,
 * and note it for the watchers. */
static int touch(struct cat_store *s, char kind, const char *name)
{
	char topic[CAT_MAX_NAME + 3];
	sqlite3_stmt *st = s->st[ST_TOPIC_PUT];
	int rc;

	if (kind != 0)
		snprintf(topic, sizeof topic, "%c/%s", kind, name);
	else
		snprintf(topic, sizeof topic, "%s", name);
	bind_str(st, 1, topic);
	bind_u64(st, 2, s->index);
	rc = step_done(st);
	if (rc == 0)
		rc = record(&s->changed, &s->n_changed, &s->cap_changed, topic,
			    strlen(topic));
	return rc;
}

static int touch_check(struct cat_store *s, const char *node, const char *id)
{
	size_t nl = strlen(node), il = strlen(id);
	char key[2 * CAT_MAX_NAME + 2];

	memcpy(key, node, nl + 1);
	memcpy(key + nl + 1, id, il + 1);
	return record(&s->chk_changed, &s->n_chk_changed, &s->cap_chk_changed,
		      key, nl + 1 + il);
}

/* Touch "s/<name>" of every service on @node: its node changed, or a
 * node-level check did. */
static int touch_node_services(struct cat_store *s, const char *node)
{
	sqlite3_stmt *st = s->st[ST_SVC_NAMES_NODE];
	int rc, e = 0;
	struct {
		char **v;
		size_t n, cap;
	} names = {0};

	/* Collect first: touch() writes while the SELECT is open. */
	bind_str(st, 1, node);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && e == 0) {
		const char *n = (const char *)sqlite3_column_text(st, 0);
		e = record(&names.v, &names.n, &names.cap, n, strlen(n));
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (e == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
		e = sqlerr(rc);
	for (size_t i = 0; i < names.n && e == 0; i++)
		e = touch(s, 's', names.v[i]);
	free_strs(names.v, names.n);
	return e;
}

int cat_index(struct cat_store *s, const char *topic, uint64_t *index)
{
	sqlite3_stmt *st = s->st[ST_TOPIC_GET];
	int rc;

	*index = 0;
	for (int pass = 0; pass < 2 && *index == 0; pass++) {
		bind_str(st, 1, pass == 0 ? topic : "");
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			*index = col_u64(st, 0);
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			return sqlerr(rc);
	}
	if (*index == 0)
		*index = 1; /* Consul: index 1 is always safe */
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort @v and drop duplicates; returns the new count. */
static size_t sort_unique(char **v, size_t n)
{
	size_t w = 0;

	if (n > 1)
		qsort(v, n, sizeof *v, cmp_str);
	for (size_t i = 0; i < n; i++) {
		if (w > 0 && strcmp(v[w - 1], v[i]) == 0) {
			bcn_free(v[i]);
			continue;
		}
		v[w++] = v[i];
	}
	return w;
}

void cat_changes_take(struct cat_store *s, struct cat_changes *out)
{
	free_strs(s->taken, s->n_taken);
	free_strs(s->chk_taken, s->n_chk_taken);
	s->taken = s->changed;
	s->n_taken = sort_unique(s->changed, s->n_changed);
	/* Check keys hold a NUL inside: sort by the node part then the id
	 * would need a custom compare; order does not matter to the runner,
	 * duplicates are harmless. */
	s->chk_taken = s->chk_changed;
	s->n_chk_taken = s->n_chk_changed;
	out->topics = s->taken;
	out->n = s->n_taken;
	out->checks = s->chk_taken;
	out->n_checks = s->n_chk_taken;
	out->all = s->changed_all;
	s->changed = s->chk_changed = NULL;
	s->n_changed = s->cap_changed = 0;
	s->n_chk_changed = s->cap_chk_changed = 0;
	s->changed_all = false;
}

void cat_changes_mark_all(struct cat_store *s)
{
	s->changed_all = true;
}

bool cat_changes_match(const struct cat_changes *c, const char *topic)
{
	size_t lo = 0, hi = c->n;

	if (c->all)
		return true;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int d = strcmp(c->topics[mid], topic);
		if (d == 0)
			return true;
		if (d < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* ---- apply ------------------------------------------------------------------
 */

/* A refused op: rolls back (return 1 to the loop in cat_apply). */
static int refuse(struct cat_result *res, size_t i, const char *fmt, ...)
    BCN_PRINTF(3, 4);
static int refuse(struct cat_result *res, size_t i, const char *fmt, ...)
{
	va_list ap;

	if (res != NULL) {
		res->ok = false;
		res->failed_op = i;
		va_start(ap, fmt);
		vsnprintf(res->what, sizeof res->what, fmt, ap);
		va_end(ap);
	}
	return 1;
}

/* Encode a record without its indexes, to tell whether a write changes
 * anything. */
static int same_encoding(const struct cat_op *a, const struct cat_op *b,
			 bool *same)
{
	struct bcn_buf x, y;
	int rc;

	bcn_buf_init(&x);
	bcn_buf_init(&y);
	rc = cat_op_encode(a, &x);
	if (rc == 0)
		rc = cat_op_encode(b, &y);
	*same = rc == 0 && x.len == y.len && memcmp(x.data, y.data, x.len) == 0;
	bcn_buf_close(&x);
	bcn_buf_close(&y);
	return rc;
}

static int get_node(struct cat_store *s, const char *name, struct cat_rows *r,
		    size_t *found)
{
	bind_str(s->st[ST_NODE_GET], 1, name);
	return collect(s->st[ST_NODE_GET], row_node, r, found);
}

static int get_svc(struct cat_store *s, const char *node, const char *id,
		   struct cat_rows *r, size_t *found)
{
	bind_str(s->st[ST_SVC_GET], 1, node);
	bind_str(s->st[ST_SVC_GET], 2, id);
	return collect(s->st[ST_SVC_GET], row_svc, r, found);
}

static int get_chk(struct cat_store *s, const char *node, const char *id,
		   struct cat_rows *r, size_t *found)
{
	bind_str(s->st[ST_CHK_GET], 1, node);
	bind_str(s->st[ST_CHK_GET], 2, id);
	return collect(s->st[ST_CHK_GET], row_chk, r, found);
}

static int node_set(struct cat_store *s, const struct cat_node *n)
{
	sqlite3_stmt *st = s->st[ST_NODE_PUT];
	struct cat_rows cur = {0};
	size_t found;
	uint64_t cidx = s->index;
	int rc = get_node(s, n->name, &cur, &found);

	if (rc == 0 && found > 0) {
		struct cat_op a = {.verb = CAT_NODE_SET, .node = *n};
		struct cat_op b = {.verb = CAT_NODE_SET, .node = cur.nodes[0]};
		bool same;
		rc = same_encoding(&a, &b, &same);
		if (rc == 0 && same)
			rc = -1; /* nothing to do */
		cidx = cur.nodes[0].create_index;
	}
	cat_rows_close(&cur);
	if (rc != 0)
		return rc < -1 ? rc : 0;
	bind_str(st, 1, n->name);
	bind_str(st, 2, n->id);
	bind_str(st, 3, n->address);
	bind_strs(st, 4, &n->tagged);
	bind_strs(st, 5, &n->meta);
	bind_u64(st, 6, cidx);
	bind_u64(st, 7, s->index);
	rc = step_done(st);
	if (rc == 0)
		rc = touch(s, 0, "N");
	if (rc == 0)
		rc = touch(s, 'n', n->name);
	if (rc == 0)
		rc = touch_node_services(s, n->name);
	return rc;
}

/* Note every check of @st's result (bound by the caller) as changed. */
static int touch_check_ids(struct cat_store *s, sqlite3_stmt *st,
			   const char *node)
{
	int rc, e = 0;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW && e == 0)
		e = touch_check(s, node,
				(const char *)sqlite3_column_text(st, 0));
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (e == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
		e = sqlerr(rc);
	return e;
}

static int node_delete(struct cat_store *s, const char *name)
{
	struct cat_rows cur = {0};
	size_t found;
	int rc = get_node(s, name, &cur, &found);

	cat_rows_close(&cur);
	if (rc != 0 || found == 0)
		return rc;
	rc = touch_node_services(s, name);
	if (rc == 0) {
		bind_str(s->st[ST_CHK_IDS_NODE], 1, name);
		rc = touch_check_ids(s, s->st[ST_CHK_IDS_NODE], name);
	}
	bind_str(s->st[ST_CHK_DEL_NODE], 1, name);
	if (rc == 0)
		rc = step_done(s->st[ST_CHK_DEL_NODE]);
	bind_str(s->st[ST_SVC_DEL_NODE], 1, name);
	if (rc == 0)
		rc = step_done(s->st[ST_SVC_DEL_NODE]);
	bind_str(s->st[ST_NODE_DEL], 1, name);
	if (rc == 0)
		rc = step_done(s->st[ST_NODE_DEL]);
	if (rc == 0)
		rc = touch(s, 0, "N");
	if (rc == 0)
		rc = touch(s, 0, "S");
	if (rc == 0)
		rc = touch(s, 0, "C");
	if (rc == 0)
		rc = touch(s, 'n', name);
	return rc;
}

static int svc_set(struct cat_store *s, const struct cat_service *v,
		   struct cat_result *res, size_t i)
{
	sqlite3_stmt *st = s->st[ST_SVC_PUT];
	struct cat_rows cur = {0};
	size_t found;
	uint64_t cidx = s->index;
	char old_name[CAT_MAX_NAME + 1] = "";
	int rc = get_node(s, v->node, &cur, &found);

	if (rc == 0 && found == 0) {
		cat_rows_close(&cur);
		return refuse(res, i, "Node \"%s\" is not registered", v->node);
	}
	if (rc == 0)
		rc = get_svc(s, v->node, v->id, &cur, &found);
	if (rc == 0 && found > 0) {
		struct cat_op a = {.verb = CAT_SERVICE_SET, .svc = *v};
		struct cat_op b = {.verb = CAT_SERVICE_SET, .svc = cur.svcs[0]};
		bool same;
		rc = same_encoding(&a, &b, &same);
		if (rc == 0 && same)
			rc = -1;
		cidx = cur.svcs[0].create_index;
		snprintf(old_name, sizeof old_name, "%s", cur.svcs[0].name);
	}
	cat_rows_close(&cur);
	if (rc != 0)
		return rc < -1 ? rc : 0;
	bind_str(st, 1, v->node);
	bind_str(st, 2, v->id);
	bind_str(st, 3, v->name);
	bind_str(st, 4, v->kind);
	bind_strs(st, 5, &v->tags);
	bind_str(st, 6, v->address);
	bind_strs(st, 7, &v->tagged);
	bind_strs(st, 8, &v->meta);
	bind_u64(st, 9, v->port);
	bind_u64(st, 10, v->weight_passing);
	bind_u64(st, 11, v->weight_warning);
	bind_u64(st, 12, v->enable_tag_override);
	bind_u64(st, 13, cidx);
	bind_u64(st, 14, s->index);
	rc = step_done(st);
	if (rc == 0 && old_name[0] != '\0' && strcmp(old_name, v->name) != 0) {
		/* Renamed: its checks follow, and the old name's watchers
		 * see it go. */
		st = s->st[ST_CHK_RENAME];
		bind_str(st, 1, v->node);
		bind_str(st, 2, v->id);
		bind_str(st, 3, v->name);
		rc = step_done(st);
		if (rc == 0)
			rc = touch(s, 's', old_name);
		if (rc == 0)
			rc = touch(s, 0, "C");
	}
	if (rc == 0)
		rc = touch(s, 0, "S");
	if (rc == 0)
		rc = touch(s, 's', v->name);
	if (rc == 0)
		rc = touch(s, 'n', v->node);
	return rc;
}

static int svc_delete(struct cat_store *s, const char *node, const char *id)
{
	struct cat_rows cur = {0};
	size_t found;
	int rc = get_svc(s, node, id, &cur, &found);

	if (rc != 0 || found == 0) {
		cat_rows_close(&cur);
		return rc;
	}
	rc = touch(s, 's', cur.svcs[0].name);
	cat_rows_close(&cur);
	if (rc == 0) {
		bind_str(s->st[ST_CHK_IDS_SVC], 1, node);
		bind_str(s->st[ST_CHK_IDS_SVC], 2, id);
		rc = touch_check_ids(s, s->st[ST_CHK_IDS_SVC], node);
	}
	if (rc == 0) {
		bind_str(s->st[ST_CHK_DEL_SVC], 1, node);
		bind_str(s->st[ST_CHK_DEL_SVC], 2, id);
		rc = step_done(s->st[ST_CHK_DEL_SVC]);
	}
	if (rc == 0) {
		bind_str(s->st[ST_SVC_DEL], 1, node);
		bind_str(s->st[ST_SVC_DEL], 2, id);
		rc = step_done(s->st[ST_SVC_DEL]);
	}
	if (rc == 0)
		rc = touch(s, 0, "S");
	if (rc == 0)
		rc = touch(s, 0, "C");
	if (rc == 0)
		rc = touch(s, 'n', node);
	return rc;
}

/* The topics a change of a check touches. */
static int touch_chk(struct cat_store *s, const char *node, const char *id,
		     const char *svc_name, bool node_level)
{
	int rc = touch(s, 0, "C");

	if (rc == 0)
		rc = touch(s, 'n', node);
	if (rc == 0)
		rc = node_level ? touch_node_services(s, node)
				: touch(s, 's', svc_name);
	if (rc == 0)
		rc = touch_check(s, node, id);
	return rc;
}

static int chk_set(struct cat_store *s, const struct cat_op *op,
		   struct cat_result *res, size_t i)
{
	const struct cat_check *k = &op->chk;
	sqlite3_stmt *st = s->st[ST_CHK_PUT];
	struct cat_rows cur = {0};
	struct cat_check want = *k;
	struct bcn_buf def;
	size_t found;
	uint64_t cidx = s->index;
	bool node_level = k->service_id == NULL || k->service_id[0] == '\0';
	/* What the check belonged to before, if it moves. */
	char old_svc[CAT_MAX_NAME + 1] = "";
	bool old_node_level = false, existed = false;
	int rc = get_node(s, k->node, &cur, &found);

	if (rc == 0 && found == 0) {
		cat_rows_close(&cur);
		return refuse(res, i, "Node \"%s\" is not registered", k->node);
	}
	want.service_name = "";
	if (rc == 0 && !node_level) {
		rc = get_svc(s, k->node, k->service_id, &cur, &found);
		if (rc == 0 && found == 0) {
			cat_rows_close(&cur);
			return refuse(res, i, "ServiceID \"%s\" does not exist",
				      k->service_id);
		}
		if (rc == 0)
			want.service_name = cur.svcs[0].name;
	}
	if (rc == 0)
		rc = get_chk(s, k->node, k->id, &cur, &found);
	if (rc == 0 && found > 0) {
		const struct cat_check *c = &cur.chks[0];
		struct cat_op a = {.verb = CAT_CHECK_SET, .chk = want};
		struct cat_op b = {.verb = CAT_CHECK_SET, .chk = *c};
		bool same;
		if (op->keep_status) {
			a.chk.status = want.status = c->status;
			a.chk.output = want.output = c->output;
		}
		rc = same_encoding(&a, &b, &same);
		if (rc == 0 && same &&
		    strcmp(c->service_name, want.service_name) == 0)
			rc = -1;
		cidx = c->create_index;
		existed = true;
		old_node_level = c->service_id[0] == '\0';
		snprintf(old_svc, sizeof old_svc, "%s", c->service_name);
	}
	if (rc != 0) {
		cat_rows_close(&cur);
		return rc < -1 ? rc : 0;
	}
	bcn_buf_init(&def);
	cat_def_encode(&want.def, &def);
	if (bcn_buf_failed(&def)) {
		bcn_buf_close(&def);
		cat_rows_close(&cur);
		return BCN_ENOMEM;
	}
	bind_str(st, 1, want.node);
	bind_str(st, 2, want.id);
	bind_str(st, 3, want.name);
	bind_u64(st, 4, (uint64_t)want.status);
	bind_str(st, 5, want.notes);
	bind_str(st, 6, want.output);
	bind_str(st, 7, want.service_id);
	bind_str(st, 8, want.service_name);
	bind_str(st, 9, want.type);
	sqlite3_bind_blob(st, 10, def.data, (int)def.len, SQLITE_STATIC);
	bind_u64(st, 11, cidx);
	bind_u64(st, 12, s->index);
	rc = step_done(st);
	bcn_buf_close(&def);
	if (rc == 0)
		rc = touch_chk(s, want.node, want.id, want.service_name,
			       node_level);
	/* A check that moved: whatever it counted for before changed too. */
	if (rc == 0 && existed && old_node_level && !node_level)
		rc = touch_node_services(s, want.node);
	else if (rc == 0 && existed && !old_node_level &&
		 strcmp(old_svc, want.service_name) != 0)
		rc = touch(s, 's', old_svc);
	cat_rows_close(&cur);
	return rc;
}

static int chk_delete_or_status(struct cat_store *s, const struct cat_op *op)
{
	const struct cat_check *k = &op->chk;
	struct cat_rows cur = {0};
	size_t found;
	int rc = get_chk(s, k->node, k->id, &cur, &found);
	const struct cat_check *c = cur.chks;

	if (rc != 0 || found == 0)
		goto out;
	if (op->verb == CAT_CHECK_STATUS) {
		sqlite3_stmt *st = s->st[ST_CHK_STATUS];
		if (c->status == k->status &&
		    strcmp(c->output, k->output != NULL ? k->output : "") == 0)
			goto out; /* a heartbeat that changes nothing */
		bind_str(st, 1, k->node);
		bind_str(st, 2, k->id);
		bind_u64(st, 3, (uint64_t)k->status);
		bind_str(st, 4, k->output);
		bind_u64(st, 5, s->index);
		rc = step_done(st);
	} else {
		bind_str(s->st[ST_CHK_DEL], 1, k->node);
		bind_str(s->st[ST_CHK_DEL], 2, k->id);
		rc = step_done(s->st[ST_CHK_DEL]);
	}
	if (rc == 0)
		rc = touch_chk(s, c->node, c->id, c->service_name,
			       c->service_id[0] == '\0');
out:
	cat_rows_close(&cur);
	return rc;
}

static int run_op(struct cat_store *s, const struct cat_op *op, size_t i,
		  struct cat_result *res)
{
	switch (op->verb) {
	case CAT_NODE_SET:
		return node_set(s, &op->node);
	case CAT_NODE_DELETE:
		return node_delete(s, op->node.name);
	case CAT_SERVICE_SET:
		return svc_set(s, &op->svc, res, i);
	case CAT_SERVICE_DELETE:
		return svc_delete(s, op->svc.node, op->svc.id);
	case CAT_CHECK_SET:
		return chk_set(s, op, res, i);
	case CAT_CHECK_DELETE:
	case CAT_CHECK_STATUS:
		return chk_delete_or_status(s, op);
	default:
		return refuse(res, i, "unknown catalog operation");
	}
}

int cat_apply(struct cat_store *s, const struct cat_op *ops, size_t n,
	      uint64_t index, struct cat_result *res)
{
	size_t changed_before = s->n_changed;
	size_t chk_before = s->n_chk_changed;
	int rc;

	if (res != NULL) {
		res->ok = true;
		res->failed_op = 0;
		res->what[0] = '\0';
	}
	s->index = index;
	rc = step_done(s->st[ST_SAVEPOINT]);
	if (rc != 0) {
		if (res != NULL) {
			res->ok = false;
			snprintf(res->what, sizeof res->what, "%s",
				 bcn_strerror(rc));
		}
		return rc;
	}
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = run_op(s, &ops[i], i, res);
	/* The overall index moves only if a topic did. */
	if (rc == 0 && s->n_changed > changed_before)
		rc = touch(s, 0, "");
	if (rc == 0)
		rc = step_done(s->st[ST_RELEASE]);
	if (rc == 0)
		return 0;
	/* A failed op, or even a failed RELEASE (out of memory): undo. */
	step_done(s->st[ST_ROLLBACK]);
	step_done(s->st[ST_RELEASE]);
	while (s->n_changed > changed_before)
		bcn_free(s->changed[--s->n_changed]);
	while (s->n_chk_changed > chk_before)
		bcn_free(s->chk_changed[--s->n_chk_changed]);
	if (rc > 0)
		return 0; /* refused: @res says why */
	if (res != NULL) {
		res->ok = false;
		snprintf(res->what, sizeof res->what, "%s", bcn_strerror(rc));
	}
	return rc;
}

/* ---- reads ------------------------------------------------------------------
 */

int cat_nodes(struct cat_store *s, struct cat_rows *out)
{
	return collect(s->st[ST_NODES], row_node, out, NULL);
}

int cat_node(struct cat_store *s, const char *name, struct cat_rows *out)
{
	size_t found;
	int rc = get_node(s, name, out, &found);

	return rc != 0 ? rc : (found == 0 ? BCN_ENOTFOUND : 0);
}

int cat_services(struct cat_store *s, const char *name, const char *node,
		 struct cat_rows *out)
{
	sqlite3_stmt *st;

	if (name != NULL) {
		st = s->st[ST_SVCS_NAME];
		bind_str(st, 1, name);
	} else if (node != NULL) {
		st = s->st[ST_SVCS_NODE];
		bind_str(st, 1, node);
	} else {
		st = s->st[ST_SVCS_ALL];
	}
	return collect(st, row_svc, out, NULL);
}

int cat_service(struct cat_store *s, const char *node, const char *id,
		struct cat_rows *out)
{
	size_t found;
	int rc = get_svc(s, node, id, out, &found);

	return rc != 0 ? rc : (found == 0 ? BCN_ENOTFOUND : 0);
}

int cat_checks(struct cat_store *s, const char *node, const char *service_name,
	       enum cat_status status, struct cat_rows *out)
{
	sqlite3_stmt *st;
	size_t before = out->n_chks, w;
	int rc;

	if (node != NULL) {
		st = s->st[ST_CHKS_NODE];
		bind_str(st, 1, node);
	} else if (service_name != NULL) {
		st = s->st[ST_CHKS_SVC];
		bind_str(st, 1, service_name);
	} else {
		st = s->st[ST_CHKS_ALL];
		bind_u64(st, 1, (uint64_t)status);
	}
	rc = collect(st, row_chk, out, NULL);
	if (rc != 0)
		return rc;
	/* Filters the statement did not apply. */
	w = before;
	for (size_t i = before; i < out->n_chks; i++) {
		const struct cat_check *k = &out->chks[i];
		if (status != 0 && k->status != status)
			continue;
		if (service_name != NULL &&
		    (k->service_id[0] == '\0' ||
		     strcmp(k->service_name, service_name) != 0))
			continue;
		out->chks[w++] = *k;
	}
	out->n_chks = w;
	return 0;
}

int cat_check(struct cat_store *s, const char *node, const char *id,
	      struct cat_rows *out)
{
	size_t found;
	int rc = get_chk(s, node, id, out, &found);

	return rc != 0 ? rc : (found == 0 ? BCN_ENOTFOUND : 0);
}

/* Checks in (node, id) order, as every read returns them. */
static int cmp_check(const void *a, const void *b)
{
	const struct cat_check *x = a, *y = b;
	int d = strcmp(x->node, y->node);

	return d != 0 ? d : strcmp(x->id, y->id);
}

int cat_health_service(struct cat_store *s, const char *name,
		       struct cat_rows *out)
{
	size_t first = out->n_svcs, first_chk = out->n_chks;
	int rc;

	/* Each piece through an index: the instances by name, their nodes
	 * and node-level checks by node, the service's checks by name. A
	 * single OR query would scan every check of the catalog. */
	rc = cat_services(s, name, NULL, out);
	for (size_t i = first; rc == 0 && i < out->n_svcs; i++) {
		const char *node = out->svcs[i].node;
		/* Services come sorted by node: one lookup per node. */
		if (i > first && strcmp(out->svcs[i - 1].node, node) == 0)
			continue;
		rc = get_node(s, node, out, NULL);
		if (rc == 0) {
			bind_str(s->st[ST_CHKS_HEALTH], 1, node);
			rc = collect(s->st[ST_CHKS_HEALTH], row_chk, out, NULL);
		}
	}
	if (rc == 0)
		rc = cat_checks(s, NULL, name, 0, out);
	if (rc == 0 && out->n_chks - first_chk > 1)
		qsort(out->chks + first_chk, out->n_chks - first_chk,
		      sizeof *out->chks, cmp_check);
	return rc;
}

int cat_stats(struct cat_store *s, uint64_t *nodes, uint64_t *services,
	      uint64_t *checks)
{
	sqlite3_stmt *st = s->st[ST_STATS];
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW) {
		*nodes = col_u64(st, 0);
		*services = col_u64(st, 1);
		*checks = col_u64(st, 2);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : sqlerr(rc);
}
