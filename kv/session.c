/* Sessions and the lock verbs of kv_apply() (see kv.h).
 *
 * A key held by a session has kv.session set and kv.lock_idx counting the
 * times it was acquired. Invalidation (kv_session_destroy) is one
 * deterministic step at the index of its log entry: every key the session
 * holds is released (or deleted) at that index, and released keys enter
 * lock-delay until the leader's clock reading in the entry plus the
 * session's LockDelay. Every server applies the same entry, so every server
 * agrees on which keys are locked and until when. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "kv/kv_int.h"

#define SESS_COLS                                                  \
	"id, name, node, lock_delay, behavior, ttl, node_checks, " \
	"service_checks, cidx, midx"

static const char *const sql[KV_SST_NR] = {
    [KV_SST_GET] = "SELECT " SESS_COLS " FROM kv_sessions WHERE id = ?1",
    [KV_SST_LIST] = "SELECT " SESS_COLS " FROM kv_sessions ORDER BY id",
    [KV_SST_LIST_NODE] =
	"SELECT " SESS_COLS " FROM kv_sessions WHERE node = ?1 ORDER BY id",
    [KV_SST_PUT] = "INSERT INTO kv_sessions(" SESS_COLS
		   ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
    [KV_SST_DEL] = "DELETE FROM kv_sessions WHERE id = ?1",
    [KV_SST_HELD] = "SELECT key FROM kv WHERE session = ?1 ORDER BY key",
    [KV_SST_LOCK] = "UPDATE kv SET session = ?2, lock_idx = lock_idx + 1, "
		    "modify_idx = ?3 WHERE key = ?1",
    [KV_SST_UNLOCK] = "UPDATE kv SET session = NULL, modify_idx = ?2 "
		      "WHERE key = ?1",
    [KV_SST_DELAY_GET] = "SELECT until FROM kv_lockdelay WHERE key = ?1",
    [KV_SST_DELAY_PUT] = "INSERT OR REPLACE INTO kv_lockdelay(key, until) "
			 "VALUES(?1, ?2)",
    [KV_SST_DELAY_DEL] = "DELETE FROM kv_lockdelay WHERE key = ?1",
    [KV_SST_IDX_GET] = "SELECT idx FROM kv_sess_meta WHERE id = 1",
    [KV_SST_IDX_PUT] = "INSERT OR REPLACE INTO kv_sess_meta(id, idx) "
		       "VALUES(1, ?1)",
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS kv_sessions(id TEXT PRIMARY KEY,"
    " name TEXT NOT NULL, node TEXT NOT NULL, lock_delay INTEGER NOT NULL,"
    " behavior INTEGER NOT NULL, ttl INTEGER NOT NULL, node_checks BLOB,"
    " service_checks BLOB, cidx INTEGER NOT NULL, midx INTEGER NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS kv_lockdelay(key TEXT PRIMARY KEY,"
    " until INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS kv_sess_meta("
    " id INTEGER PRIMARY KEY CHECK (id = 1), idx INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS kv_by_session ON kv(session)"
    " WHERE session IS NOT NULL;";

int kv_int_session_schema(sqlite3 *db)
{
	return sqlite3_exec(db, schema, NULL, NULL, NULL) == SQLITE_OK
		   ? 0
		   : BCN_EIO;
}

int kv_int_session_open(struct kv_store *s, char *errmsg)
{
	char *err = NULL;
	int rc = sqlite3_exec(s->db, schema, NULL, NULL, &err);

	if (rc != SQLITE_OK) {
		bcn_errf(errmsg, "session schema: %s",
			 err != NULL ? err : sqlite3_errstr(rc));
		sqlite3_free(err);
		return rc == SQLITE_NOMEM ? BCN_ENOMEM : BCN_EIO;
	}
	for (int i = 0; i < KV_SST_NR; i++) {
		rc = sqlite3_prepare_v3(s->db, sql[i], -1,
					SQLITE_PREPARE_PERSISTENT, &s->sst[i],
					NULL);
		if (rc != SQLITE_OK) {
			bcn_errf(errmsg, "session prepare: %s",
				 sqlite3_errmsg(s->db));
			kv_int_session_close(s);
			return rc == SQLITE_NOMEM ? BCN_ENOMEM : BCN_EIO;
		}
	}
	return 0;
}

void kv_int_session_close(struct kv_store *s)
{
	for (int i = 0; i < KV_SST_NR; i++) {
		sqlite3_finalize(s->sst[i]);
		s->sst[i] = NULL;
	}
}

/* ---- reading ----------------------------------------------------------------
 */

void kv_session_close(struct kv_session *s)
{
	bcn_free(s->mem_);
	memset(s, 0, sizeof *s);
}

void kv_session_list_close(struct kv_session_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		kv_session_close(&l->items[i]);
	bcn_free(l->items);
	memset(l, 0, sizeof *l);
}

/* Copy the row under @st into @out: its strings in one block. */
static int row_to_session(sqlite3_stmt *st, struct kv_session *out)
{
	static const int cols[] = {1, 2, 6, 7};
	size_t len[4], total = 0, off = 0;
	const char **dst[4];
	char *mem;

	memset(out, 0, sizeof *out);
	dst[0] = &out->name;
	dst[1] = &out->node;
	dst[2] = &out->node_checks;
	dst[3] = &out->service_checks;
	for (int i = 0; i < 4; i++) {
		len[i] = (size_t)sqlite3_column_bytes(st, cols[i]);
		total += len[i] + 1;
	}
	mem = bcn_malloc(total);
	if (mem == NULL)
		return BCN_ENOMEM;
	for (int i = 0; i < 4; i++) {
		const void *p =
		    i < 2 ? (const void *)sqlite3_column_text(st, cols[i])
			  : sqlite3_column_blob(st, cols[i]);
		if (len[i] > 0)
			memcpy(mem + off, p, len[i]);
		mem[off + len[i]] = '\0';
		*dst[i] = mem + off;
		off += len[i] + 1;
	}
	out->node_checks_len = len[2];
	out->service_checks_len = len[3];
	snprintf(out->id, sizeof out->id, "%s",
		 (const char *)sqlite3_column_text(st, 0));
	out->lock_delay_ms = (uint64_t)sqlite3_column_int64(st, 3);
	out->behavior = sqlite3_column_int(st, 4) == KV_BEHAVIOR_DELETE
			    ? KV_BEHAVIOR_DELETE
			    : KV_BEHAVIOR_RELEASE;
	out->ttl_ms = (uint64_t)sqlite3_column_int64(st, 5);
	out->create_index = (uint64_t)sqlite3_column_int64(st, 8);
	out->modify_index = (uint64_t)sqlite3_column_int64(st, 9);
	out->mem_ = mem;
	return 0;
}

int kv_session_get(struct kv_store *s, const char *id, struct kv_session *out)
{
	sqlite3_stmt *st = s->sst[KV_SST_GET];
	int rc;

	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		rc = row_to_session(st, out);
	else if (rc == SQLITE_DONE)
		rc = BCN_ENOTFOUND;
	else
		rc = rc == SQLITE_NOMEM ? BCN_ENOMEM : BCN_EIO;
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

int kv_session_list(struct kv_store *s, const char *node,
		    struct kv_session_list *out)
{
	sqlite3_stmt *st =
	    s->sst[node != NULL ? KV_SST_LIST_NODE : KV_SST_LIST];
	int rc;

	if (node != NULL)
		sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (out->n == out->cap) {
			size_t cap = out->cap == 0 ? 8 : out->cap * 2;
			void *p =
			    bcn_realloc(out->items, cap * sizeof *out->items);
			if (p == NULL) {
				rc = BCN_ENOMEM;
				break;
			}
			out->items = p;
			out->cap = cap;
		}
		rc = row_to_session(st, &out->items[out->n]);
		if (rc != 0)
			break;
		out->n++;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc == SQLITE_DONE)
		return 0;
	return rc < 0 ? rc : (rc == SQLITE_NOMEM ? BCN_ENOMEM : BCN_EIO);
}

int kv_session_index(struct kv_store *s, uint64_t *index)
{
	sqlite3_stmt *st = s->sst[KV_SST_IDX_GET];
	int rc = sqlite3_step(st);

	*index = 0;
	if (rc == SQLITE_ROW)
		*index = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return rc == SQLITE_NOMEM ? BCN_ENOMEM : BCN_EIO;
	if (*index == 0)
		return kv_index(s, "", false, index);
	return 0;
}

/* ---- applying -------------------------------------------------------------
 */

static int sessions_touched(struct kv_store *s, uint64_t index)
{
	sqlite3_stmt *st = s->sst[KV_SST_IDX_PUT];
	int rc;

	sqlite3_bind_int64(st, 1, (sqlite3_int64)index);
	rc = kv_int_step_done(st);
	return rc != 0 ? rc : kv_int_note_change(s, KV_SESSIONS_KEY);
}

static void bind_list(sqlite3_stmt *st, int col, const char *p, size_t len)
{
	if (p == NULL || len == 0)
		sqlite3_bind_null(st, col);
	else
		sqlite3_bind_blob(st, col, p, (int)len, SQLITE_STATIC);
}

int kv_session_create(struct kv_store *s, const struct kv_session *sess,
		      uint64_t index, bool *ok)
{
	sqlite3_stmt *st = s->sst[KV_SST_PUT];
	struct kv_session cur;
	int rc = kv_session_get(s, sess->id, &cur);

	*ok = false;
	if (rc == 0) {
		kv_session_close(&cur);
		return 0; /* the ID is taken */
	}
	if (rc != BCN_ENOTFOUND)
		return rc;
	sqlite3_bind_text(st, 1, sess->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, sess->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, sess->node, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)sess->lock_delay_ms);
	sqlite3_bind_int(st, 5, (int)sess->behavior);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)sess->ttl_ms);
	bind_list(st, 7, sess->node_checks, sess->node_checks_len);
	bind_list(st, 8, sess->service_checks, sess->service_checks_len);
	sqlite3_bind_int64(st, 9, (sqlite3_int64)index);
	rc = kv_int_step_done(st);
	if (rc == 0)
		rc = sessions_touched(s, index);
	*ok = rc == 0;
	return rc;
}

/* The keys @id holds, sorted. */
static int held_keys(struct kv_store *s, const char *id, struct kv_list *out)
{
	sqlite3_stmt *st = s->sst[KV_SST_HELD];
	int rc;

	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *k = (const char *)sqlite3_column_text(st, 0);
		if (out->n == out->cap) {
			size_t cap = out->cap == 0 ? 8 : out->cap * 2;
			void *p =
			    bcn_realloc(out->items, cap * sizeof *out->items);
			if (p == NULL) {
				rc = BCN_ENOMEM;
				break;
			}
			out->items = p;
			out->cap = cap;
		}
		memset(&out->items[out->n], 0, sizeof out->items[0]);
		out->items[out->n].key = bcn_strdup(k != NULL ? k : "");
		if (out->items[out->n].key == NULL) {
			rc = BCN_ENOMEM;
			break;
		}
		out->n++;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc == SQLITE_DONE)
		return 0;
	return rc < 0 ? rc : (rc == SQLITE_NOMEM ? BCN_ENOMEM : BCN_EIO);
}

static int unlock_key(struct kv_store *s, const char *key, uint64_t index)
{
	sqlite3_stmt *st = s->sst[KV_SST_UNLOCK];
	int rc;

	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)index);
	rc = kv_int_step_done(st);
	if (rc == 0)
		rc = kv_int_bump_table_index(s, index);
	return rc != 0 ? rc : kv_int_note_change(s, key);
}

int kv_session_destroy(struct kv_store *s, const char *id, uint64_t now_ms,
		       uint64_t index, bool *ok)
{
	struct kv_session sess;
	struct kv_list held = {0};
	int rc = kv_session_get(s, id, &sess);

	*ok = false;
	if (rc == BCN_ENOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	rc = held_keys(s, id, &held);
	for (size_t i = 0; rc == 0 && i < held.n; i++) {
		const char *key = held.items[i].key;
		if (sess.behavior == KV_BEHAVIOR_DELETE) {
			rc = kv_int_delete(s, key, index);
			continue;
		}
		rc = unlock_key(s, key, index);
		if (rc == 0 && sess.lock_delay_ms > 0) {
			sqlite3_stmt *st = s->sst[KV_SST_DELAY_PUT];
			sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
			sqlite3_bind_int64(
			    st, 2,
			    (sqlite3_int64)(now_ms + sess.lock_delay_ms));
			rc = kv_int_step_done(st);
		}
	}
	if (rc == 0) {
		sqlite3_stmt *st = s->sst[KV_SST_DEL];
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
		rc = kv_int_step_done(st);
	}
	if (rc == 0)
		rc = sessions_touched(s, index);
	kv_list_close(&held);
	kv_session_close(&sess);
	*ok = rc == 0;
	return rc;
}

/* The time until which @key is in lock-delay (0: none). */
static int delay_of(struct kv_store *s, const char *key, uint64_t *until)
{
	sqlite3_stmt *st = s->sst[KV_SST_DELAY_GET];
	int rc;

	*until = 0;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*until = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE
		   ? 0
		   : (rc == SQLITE_NOMEM ? BCN_ENOMEM : BCN_EIO);
}

int kv_int_lock_op(struct kv_store *s, const struct kv_op *op, size_t i,
		   uint64_t index, struct kv_result *res)
{
	struct kv_session sess;
	struct kv_entry cur;
	bool exists, mine;
	uint64_t until;
	int rc;

	if (op->session == NULL || op->session[0] == '\0')
		return kv_int_fail(res, i, "missing session");
	rc = kv_get(s, op->key, &cur, NULL);
	if (rc != 0 && rc != BCN_ENOTFOUND)
		return rc;
	exists = rc == 0;
	mine = exists && cur.session != NULL &&
	       strcmp(cur.session, op->session) == 0;
	if (op->verb == KV_CHECK_SESSION) {
		if (!mine)
			rc = kv_int_fail(
			    res, i,
			    "failed session check for key \"%s\", current "
			    "session \"%s\" != \"%s\"",
			    op->key,
			    exists && cur.session != NULL ? cur.session : "",
			    op->session);
		else
			rc = kv_int_result_add(s, res, op->key, false);
		goto out;
	}
	if (op->verb == KV_UNLOCK) {
		if (!mine) {
			rc = kv_int_fail(res, i,
					 "failed to release lock for key "
					 "\"%s\": not held by session \"%s\"",
					 op->key, op->session);
			goto out;
		}
		rc = kv_int_put(s, op, index);
		if (rc == 0)
			rc = unlock_key(s, op->key, index);
		if (rc == 0)
			rc = kv_int_result_add(s, res, op->key, false);
		goto out;
	}
	/* KV_LOCK */
	rc = kv_session_get(s, op->session, &sess);
	if (rc == BCN_ENOTFOUND) {
		rc = kv_int_fail(res, i, "invalid session \"%s\"", op->session);
		goto out;
	}
	if (rc != 0)
		goto out;
	kv_session_close(&sess);
	if (exists && cur.session != NULL && !mine) {
		rc = kv_int_fail(res, i,
				 "failed to acquire lock for key \"%s\": "
				 "held by another session",
				 op->key);
		goto out;
	}
	if (!mine) {
		rc = delay_of(s, op->key, &until);
		if (rc == 0 && until > op->now_ms) {
			rc = kv_int_fail(
			    res, i,
			    "failed to acquire lock for key "
			    "\"%s\": in lock-delay for %llu ms",
			    op->key, (unsigned long long)(until - op->now_ms));
			goto out;
		}
	}
	rc = rc != 0 ? rc : kv_int_put(s, op, index);
	if (rc == 0 && !mine) {
		sqlite3_stmt *st = s->sst[KV_SST_LOCK];
		sqlite3_bind_text(st, 1, op->key, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, op->session, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, (sqlite3_int64)index);
		rc = kv_int_step_done(st);
		if (rc == 0) {
			st = s->sst[KV_SST_DELAY_DEL];
			sqlite3_bind_text(st, 1, op->key, -1, SQLITE_STATIC);
			rc = kv_int_step_done(st);
		}
	}
	if (rc == 0)
		rc = kv_int_result_add(s, res, op->key, false);
out:
	if (exists)
		kv_entry_close(&cur);
	return rc;
}
