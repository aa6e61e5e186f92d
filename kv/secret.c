/* Sealed secrets (see kv.h). Rows hold the box the leader made and the ID
 * of the key that sealed it; nothing here can read a value. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "kv/kv_int.h"

#define SECRET_COLS "path, key_id, box, cidx, midx"

static const char *const sql[KV_XST_NR] = {
    [KV_XST_GET] = "SELECT " SECRET_COLS " FROM kv_secrets WHERE path = ?1",
    [KV_XST_PUT] = ("INSERT INTO kv_secrets(" SECRET_COLS ") VALUES(?1, ?2, "
		    "?3, ?4, ?4) ON CONFLICT(path) DO UPDATE SET key_id = ?2, "
		    "box = ?3, midx = ?4"),
    [KV_XST_DEL] = "DELETE FROM kv_secrets WHERE path = ?1",
    [KV_XST_SCAN] = ("SELECT " SECRET_COLS " FROM kv_secrets WHERE path >= "
		     "?1 AND substr(path, 1, length(?1)) = ?1 ORDER BY path"),
    [KV_XST_ALL] = "SELECT " SECRET_COLS " FROM kv_secrets ORDER BY path",
    [KV_XST_IDX_GET] = "SELECT idx FROM kv_secret_meta WHERE id = 1",
    [KV_XST_IDX_PUT] = "INSERT OR REPLACE INTO kv_secret_meta(id, idx) "
		       "VALUES(1, ?1)",
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS kv_secrets(path TEXT PRIMARY KEY,"
    " key_id TEXT NOT NULL, box BLOB NOT NULL, cidx INTEGER NOT NULL,"
    " midx INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS kv_secret_meta("
    " id INTEGER PRIMARY KEY CHECK (id = 1), idx INTEGER NOT NULL);";

int kv_int_secret_schema(sqlite3 *db)
{
	return sqlite3_exec(db, schema, NULL, NULL, NULL) == SQLITE_OK
		   ? 0
		   : BCN_EIO;
}

static int sqlerr(int rc)
{
	return rc == SQLITE_NOMEM ? BCN_ENOMEM : BCN_EIO;
}

int kv_int_secret_open(struct kv_store *s, char *errmsg)
{
	char *err = NULL;
	int rc = sqlite3_exec(s->db, schema, NULL, NULL, &err);

	if (rc != SQLITE_OK) {
		bcn_errf(errmsg, "secret schema: %s",
			 err != NULL ? err : sqlite3_errstr(rc));
		sqlite3_free(err);
		return sqlerr(rc);
	}
	for (int i = 0; i < KV_XST_NR; i++) {
		rc = sqlite3_prepare_v3(s->db, sql[i], -1,
					SQLITE_PREPARE_PERSISTENT, &s->xst[i],
					NULL);
		if (rc != SQLITE_OK) {
			bcn_errf(errmsg, "secret prepare: %s",
				 sqlite3_errmsg(s->db));
			kv_int_secret_close(s);
			return sqlerr(rc);
		}
	}
	return 0;
}

void kv_int_secret_close(struct kv_store *s)
{
	for (int i = 0; i < KV_XST_NR; i++) {
		sqlite3_finalize(s->xst[i]);
		s->xst[i] = NULL;
	}
}

void kv_secret_close(struct kv_secret *s)
{
	bcn_free(s->path);
	bcn_free(s->box);
	memset(s, 0, sizeof *s);
}

void kv_secret_list_close(struct kv_secret_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		kv_secret_close(&l->items[i]);
	bcn_free(l->items);
	memset(l, 0, sizeof *l);
}

static int row_to_secret(sqlite3_stmt *st, struct kv_secret *out, bool box)
{
	const char *path = (const char *)sqlite3_column_text(st, 0);
	const char *kid = (const char *)sqlite3_column_text(st, 1);
	size_t blen = (size_t)sqlite3_column_bytes(st, 2);

	memset(out, 0, sizeof *out);
	out->path = bcn_strdup(path != NULL ? path : "");
	if (out->path == NULL)
		return BCN_ENOMEM;
	snprintf(out->key_id, sizeof out->key_id, "%s", kid != NULL ? kid : "");
	if (box && blen > 0) {
		out->box = bcn_malloc(blen);
		if (out->box == NULL) {
			kv_secret_close(out);
			return BCN_ENOMEM;
		}
		memcpy(out->box, sqlite3_column_blob(st, 2), blen);
		out->box_len = blen;
	}
	out->create_index = (uint64_t)sqlite3_column_int64(st, 3);
	out->modify_index = (uint64_t)sqlite3_column_int64(st, 4);
	return 0;
}

int kv_secret_get(struct kv_store *s, const char *path, struct kv_secret *out)
{
	sqlite3_stmt *st = s->xst[KV_XST_GET];
	int rc;

	sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		rc = row_to_secret(st, out, true);
	else
		rc = rc == SQLITE_DONE ? BCN_ENOTFOUND : sqlerr(rc);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

int kv_secret_list(struct kv_store *s, const char *prefix, bool boxes,
		   struct kv_secret_list *out)
{
	sqlite3_stmt *st = s->xst[prefix[0] != '\0' ? KV_XST_SCAN : KV_XST_ALL];
	int rc;

	if (prefix[0] != '\0')
		sqlite3_bind_text(st, 1, prefix, -1, SQLITE_STATIC);
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
		rc = row_to_secret(st, &out->items[out->n], boxes);
		if (rc != 0)
			break;
		out->n++;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : (rc < 0 ? rc : sqlerr(rc));
}

int kv_secret_index(struct kv_store *s, const char *path, uint64_t *index)
{
	struct kv_secret sec;
	sqlite3_stmt *st;
	int rc = path != NULL ? kv_secret_get(s, path, &sec) : BCN_ENOTFOUND;

	if (rc == 0) {
		*index = sec.modify_index;
		kv_secret_close(&sec);
		return 0;
	}
	if (rc != BCN_ENOTFOUND)
		return rc;
	st = s->xst[KV_XST_IDX_GET];
	rc = sqlite3_step(st);
	*index = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return sqlerr(rc);
	if (*index == 0)
		*index = 1;
	return 0;
}

/* The change record and the table index, for every write. */
static int touched(struct kv_store *s, const char *path, uint64_t index)
{
	sqlite3_stmt *st = s->xst[KV_XST_IDX_PUT];
	char mark[KV_MAX_KEY_LEN + 2];
	int rc;

	sqlite3_bind_int64(st, 1, (sqlite3_int64)index);
	rc = kv_int_step_done(st);
	snprintf(mark, sizeof mark, "%s%s", KV_SECRET_MARK, path);
	return rc != 0 ? rc : kv_int_note_change(s, mark);
}

int kv_secret_put(struct kv_store *s, const char *path, const char *key_id,
		  const void *box, size_t len, bool cas, uint64_t cas_index,
		  uint64_t index, bool *ok)
{
	sqlite3_stmt *st = s->xst[KV_XST_PUT];
	int rc;

	*ok = false;
	if (cas) {
		struct kv_secret cur;
		rc = kv_secret_get(s, path, &cur);
		if (rc != 0 && rc != BCN_ENOTFOUND)
			return rc;
		if (cas_index == 0 ? rc == 0
				   : rc != 0 || cur.modify_index != cas_index) {
			if (rc == 0)
				kv_secret_close(&cur);
			return 0;
		}
		if (rc == 0)
			kv_secret_close(&cur);
	}
	sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, key_id, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 3, box, (int)len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)index);
	rc = kv_int_step_done(st);
	if (rc == 0)
		rc = touched(s, path, index);
	*ok = rc == 0;
	return rc;
}

int kv_secret_delete(struct kv_store *s, const char *path, bool tree,
		     uint64_t index)
{
	struct kv_secret_list l = {0};
	int rc;

	if (!tree) {
		sqlite3_stmt *st = s->xst[KV_XST_DEL];
		sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
		rc = kv_int_step_done(st);
		if (rc == 0 && sqlite3_changes(s->db) > 0)
			rc = touched(s, path, index);
		return rc;
	}
	rc = kv_secret_list(s, path, false, &l);
	for (size_t i = 0; rc == 0 && i < l.n; i++)
		rc = kv_secret_delete(s, l.items[i].path, false, index);
	kv_secret_list_close(&l);
	return rc;
}
