/* KV state in SQLite.
 *
 * Happy path: kv_apply() opens a savepoint, runs each op with prepared
 * statements, records changed keys, releases the savepoint. A failed check
 * or CAS rolls back to the savepoint and reports which op failed: callers see
 * all-or-nothing. A local failure (OOM, I/O) also rolls back and returns an
 * error, so the store never holds half a command. */
#include "kv/kv.h"

#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/parse.h"
#include "kv/kv_int.h"

#define ENTRY_COLS \
	"key, value, flags, create_idx, modify_idx, lock_idx, session"

static const char *const sql[ST_NR] = {
    [ST_GET] = "SELECT " ENTRY_COLS " FROM kv WHERE key = ?1",
    [ST_TOMB_GET] = "SELECT idx FROM kv_tomb WHERE key = ?1",
    [ST_PUT] = "INSERT INTO kv(key, value, flags, create_idx, modify_idx, "
	       "lock_idx, session) VALUES(?1, ?2, ?3, ?4, ?4, 0, NULL) "
	       "ON CONFLICT(key) DO UPDATE SET value = ?2, flags = ?3, "
	       "modify_idx = ?4",
    [ST_DEL] = "DELETE FROM kv WHERE key = ?1",
    [ST_TOMB_PUT] = "INSERT OR REPLACE INTO kv_tomb(key, idx) "
		    "VALUES(?1, ?2)",
    [ST_TOMB_DEL] = "DELETE FROM kv_tomb WHERE key = ?1",
    [ST_SCAN] = "SELECT " ENTRY_COLS " FROM kv WHERE key >= ?1 AND "
		"key < ?2 ORDER BY key",
    [ST_SCAN_OPEN] = "SELECT " ENTRY_COLS " FROM kv WHERE key >= ?1 "
		     "ORDER BY key",
    [ST_MAX] = "SELECT max(modify_idx) FROM kv WHERE key >= ?1 AND "
	       "key < ?2",
    [ST_MAX_OPEN] = "SELECT max(modify_idx) FROM kv WHERE key >= ?1",
    [ST_TMAX] = "SELECT max(idx) FROM kv_tomb WHERE key >= ?1 AND "
		"key < ?2",
    [ST_TMAX_OPEN] = "SELECT max(idx) FROM kv_tomb WHERE key >= ?1",
    [ST_REAP] = "DELETE FROM kv_tomb WHERE idx <= ?1",
    [ST_STATS] = "SELECT count(*), coalesce(sum(length(value)), 0) FROM kv",
    [ST_META_GET] = "SELECT idx FROM kv_meta WHERE id = 1",
    [ST_META_PUT] = "INSERT OR REPLACE INTO kv_meta(id, idx) VALUES(1, ?1)",
    [ST_SAVEPOINT] = "SAVEPOINT kv_apply",
    [ST_RELEASE] = "RELEASE kv_apply",
    [ST_ROLLBACK] = "ROLLBACK TO kv_apply",
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS kv("
    " key TEXT PRIMARY KEY, value BLOB, flags INTEGER NOT NULL,"
    " create_idx INTEGER NOT NULL, modify_idx INTEGER NOT NULL,"
    " lock_idx INTEGER NOT NULL, session TEXT) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS kv_tomb("
    " key TEXT PRIMARY KEY, idx INTEGER NOT NULL) WITHOUT ROWID;"
    /* The KV table's index: the last index that changed any key. */
    "CREATE TABLE IF NOT EXISTS kv_meta("
    " id INTEGER PRIMARY KEY CHECK (id = 1), idx INTEGER NOT NULL);";

int kv_key_check(const char *key, size_t len, bool prefix, const char **why)
{
	const char *dummy;

	if (why == NULL)
		why = &dummy;
	if (len == 0) {
		if (prefix)
			return 0;
		*why = "Missing key name";
		return BCN_EINVAL;
	}
	if (len > KV_MAX_KEY_LEN) {
		*why = "Key too long: the limit is 1024 bytes";
		return BCN_EINVAL;
	}
	if (key[0] == '/') {
		*why = "Key must not start with '/'";
		return BCN_EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)key[i];
		if (c < 0x20 || c == 0x7f) {
			*why = "Key must not contain control characters";
			return BCN_EINVAL;
		}
		if (c == '/' && i + 1 < len && key[i + 1] == '/') {
			*why = "Key must not contain '//'";
			return BCN_EINVAL;
		}
	}
	if (!bcn_utf8_valid(key, len)) {
		*why = "Key must be valid UTF-8";
		return BCN_EINVAL;
	}
	return 0;
}

int kv_store_open(struct kv_store **out, struct sqlite3 *db, char *errmsg)
{
	struct kv_store *s;
	char *err = NULL;
	int rc;

	s = bcn_calloc(1, sizeof *s);
	if (s == NULL)
		return BCN_ENOMEM;
	s->db = db;
	rc = sqlite3_exec(db, schema, NULL, NULL, &err);
	if (rc != SQLITE_OK) {
		bcn_errf(errmsg, "kv schema: %s",
			 err != NULL ? err : sqlite3_errstr(rc));
		sqlite3_free(err);
		rc = rc == SQLITE_NOMEM ? BCN_ENOMEM : BCN_EIO;
		goto err_free;
	}
	for (int i = 0; i < ST_NR; i++) {
		rc = sqlite3_prepare_v3(
		    db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
		if (rc != SQLITE_OK) {
			bcn_errf(errmsg, "kv prepare: %s", sqlite3_errmsg(db));
			rc = rc == SQLITE_NOMEM ? BCN_ENOMEM : BCN_EIO;
			goto err_finalize;
		}
	}
	rc = kv_int_session_open(s, errmsg);
	if (rc == 0) {
		rc = kv_int_secret_open(s, errmsg);
		if (rc != 0)
			kv_int_session_close(s);
	}
	if (rc == 0) {
		rc = kv_int_acl_open(s, errmsg);
		if (rc != 0) {
			kv_int_session_close(s);
			kv_int_secret_close(s);
		}
	}
	if (rc != 0)
		goto err_finalize;
	*out = s;
	return 0;
err_finalize:
	for (int i = 0; i < ST_NR; i++)
		sqlite3_finalize(s->st[i]); /* harmless on NULL */
err_free:
	bcn_free(s);
	return rc;
}

int kv_store_migrate(struct kv_store *s)
{
	int rc = sqlite3_exec(s->db, schema, NULL, NULL, NULL) == SQLITE_OK
		     ? 0
		     : BCN_EIO;

	if (rc == 0)
		rc = kv_int_session_schema(s->db);
	if (rc == 0)
		rc = kv_int_secret_schema(s->db);
	if (rc == 0)
		rc = kv_int_acl_schema(s->db);
	return rc;
}

static void free_keys(char **keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		bcn_free(keys[i]);
	bcn_free(keys);
}

void kv_store_close(struct kv_store *s)
{
	if (s == NULL)
		return;
	for (int i = 0; i < ST_NR; i++)
		sqlite3_finalize(s->st[i]);
	kv_int_session_close(s);
	kv_int_secret_close(s);
	kv_int_acl_close(s);
	free_keys(s->changed, s->n_changed);
	free_keys(s->taken, s->n_taken);
	bcn_free(s);
}

void kv_entry_close(struct kv_entry *e)
{
	bcn_free(e->key);
	bcn_free(e->value);
	bcn_free(e->session);
	memset(e, 0, sizeof *e);
}

void kv_list_close(struct kv_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		kv_entry_close(&l->items[i]);
	bcn_free(l->items);
	memset(l, 0, sizeof *l);
}

static int sqlite_err(int rc)
{
	return rc == SQLITE_NOMEM ? BCN_ENOMEM : BCN_EIO;
}

/* Run a statement that returns no rows, then reset it. */
int kv_int_step_done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : sqlite_err(rc);
}

/* Copy the row under @st (ENTRY_COLS) into @e. */
static int row_to_entry(sqlite3_stmt *st, struct kv_entry *e, bool keys_only)
{
	const unsigned char *key = sqlite3_column_text(st, 0);
	int klen = sqlite3_column_bytes(st, 0);

	memset(e, 0, sizeof *e);
	if (key == NULL)
		return BCN_ENOMEM; /* the key column is never NULL */
	e->key = bcn_strndup((const char *)key, (size_t)klen);
	if (e->key == NULL)
		return BCN_ENOMEM;
	if (!keys_only) {
		const void *v = sqlite3_column_blob(st, 1);
		int vlen = sqlite3_column_bytes(st, 1);
		const unsigned char *sess = sqlite3_column_text(st, 6);
		if (vlen > 0) {
			e->value = bcn_malloc((size_t)vlen);
			if (e->value == NULL)
				goto oom;
			memcpy(e->value, v, (size_t)vlen);
			e->value_len = (size_t)vlen;
		}
		if (sess != NULL) {
			e->session = bcn_strdup((const char *)sess);
			if (e->session == NULL)
				goto oom;
		}
	}
	e->flags = (uint64_t)sqlite3_column_int64(st, 2);
	e->create_index = (uint64_t)sqlite3_column_int64(st, 3);
	e->modify_index = (uint64_t)sqlite3_column_int64(st, 4);
	e->lock_index = (uint64_t)sqlite3_column_int64(st, 5);
	return 0;
oom:
	kv_entry_close(e);
	return BCN_ENOMEM;
}

static struct kv_entry *list_push(struct kv_list *l)
{
	if (l->n == l->cap) {
		size_t cap = l->cap == 0 ? 8 : l->cap * 2;
		struct kv_entry *p = bcn_realloc(l->items, cap * sizeof *p);
		if (p == NULL)
			return NULL;
		l->items = p;
		l->cap = cap;
	}
	return &l->items[l->n];
}

/* The smallest string greater than every string that starts with @prefix:
 * the prefix with its last byte below 0xff incremented. Returns false when
 * there is none (empty prefix, or all 0xff): then the range is open. */
static bool prefix_end(const char *prefix, char *end, size_t cap)
{
	size_t n = strlen(prefix);

	if (n == 0)
		return false;
	if (n >= cap) {
		/* Longer than any key can be: nothing matches, so make the
		 * range empty ([prefix, prefix)) rather than open. */
		memcpy(end, prefix, cap - 1);
		end[cap - 1] = '\0';
		return true;
	}
	memcpy(end, prefix, n + 1);
	while (n > 0) {
		unsigned char c = (unsigned char)end[n - 1];
		if (c < 0xff) {
			end[n - 1] = (char)(c + 1);
			end[n] = '\0';
			return true;
		}
		n--;
	}
	return false;
}

/* Bind the [prefix, end) range to @st (or @st_open). */
static sqlite3_stmt *bind_range(struct kv_store *s, int st, int st_open,
				const char *prefix, char *end, size_t cap)
{
	sqlite3_stmt *stmt;

	if (prefix_end(prefix, end, cap)) {
		stmt = s->st[st];
		sqlite3_bind_text(stmt, 2, end, -1, SQLITE_STATIC);
	} else {
		stmt = s->st[st_open];
	}
	sqlite3_bind_text(stmt, 1, prefix, -1, SQLITE_STATIC);
	return stmt;
}

static int max_of(sqlite3_stmt *st, uint64_t *out)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW) {
		uint64_t v = (uint64_t)sqlite3_column_int64(st, 0);
		if (v > *out)
			*out = v;
		rc = SQLITE_DONE;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : sqlite_err(rc);
}

/* Whether @key exists, and its ModifyIndex, without copying the row. */
static int peek(struct kv_store *s, const char *key, bool *exists,
		uint64_t *modify_index)
{
	sqlite3_stmt *st = s->st[ST_GET];
	int rc;

	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	*exists = rc == SQLITE_ROW;
	*modify_index = *exists ? (uint64_t)sqlite3_column_int64(st, 4)
				: 0; /* ENTRY_COLS */
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sqlite_err(rc);
}

int kv_index(struct kv_store *s, const char *key, bool exact, uint64_t *index)
{
	char end[KV_MAX_KEY_LEN + 2];
	uint64_t idx = 0;
	int rc;

	if (exact) {
		bool exists;

		rc = peek(s, key, &exists, &idx);
		if (rc != 0)
			return rc;
	} else {
		rc = max_of(
		    bind_range(s, ST_MAX, ST_MAX_OPEN, key, end, sizeof end),
		    &idx);
		if (rc == 0)
			rc = max_of(bind_range(s, ST_TMAX, ST_TMAX_OPEN, key,
					       end, sizeof end),
				    &idx);
		if (rc != 0)
			return rc;
	}
	if (idx == 0) {
		/* Nothing there: the table's index, as Consul answers. */
		idx = 1;
		rc = max_of(s->st[ST_META_GET], &idx);
		if (rc != 0)
			return rc;
	}
	*index = idx;
	return 0;
}

int kv_get(struct kv_store *s, const char *key, struct kv_entry *out,
	   uint64_t *index)
{
	sqlite3_stmt *st = s->st[ST_GET];
	int rc;

	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		rc = row_to_entry(st, out, false);
	else if (rc == SQLITE_DONE)
		rc = BCN_ENOTFOUND;
	else
		rc = sqlite_err(rc);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (index != NULL && (rc == 0 || rc == BCN_ENOTFOUND)) {
		int rc2 = rc == 0 ? 0 : kv_index(s, key, true, index);
		if (rc == 0)
			*index = out->modify_index;
		if (rc2 != 0)
			return rc2;
	}
	return rc;
}

/* Scan [prefix...) calling @fn on each row; stops on a non-zero return. */
static int scan(struct kv_store *s, const char *prefix,
		int (*fn)(sqlite3_stmt *st, void *arg), void *arg)
{
	char end[KV_MAX_KEY_LEN + 2];
	sqlite3_stmt *st =
	    bind_range(s, ST_SCAN, ST_SCAN_OPEN, prefix, end, sizeof end);
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		rc = fn(st, arg);
		if (rc != 0)
			break;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc == SQLITE_DONE)
		return 0;
	return rc < 0 ? rc : sqlite_err(rc);
}

struct list_arg {
	struct kv_list *out;
	bool keys_only;
};

static int list_row(sqlite3_stmt *st, void *argp)
{
	struct list_arg *a = argp;
	struct kv_entry *e = list_push(a->out);
	int rc;

	if (e == NULL)
		return BCN_ENOMEM;
	rc = row_to_entry(st, e, a->keys_only);
	if (rc == 0)
		a->out->n++;
	return rc;
}

int kv_list(struct kv_store *s, const char *prefix, bool keys_only,
	    struct kv_list *out, uint64_t *index)
{
	struct list_arg a = {out, keys_only};
	int rc = scan(s, prefix, list_row, &a);

	if (rc == 0 && index != NULL)
		rc = kv_index(s, prefix, false, index);
	return rc;
}

struct keys_arg {
	struct kv_list *out;
	size_t plen;
	const char *sep;
};

static int keys_row(sqlite3_stmt *st, void *argp)
{
	struct keys_arg *a = argp;
	const char *key = (const char *)sqlite3_column_text(st, 0);
	size_t klen = (size_t)sqlite3_column_bytes(st, 0);
	struct kv_entry *e;

	if (key == NULL)
		return BCN_ENOMEM;
	if (a->sep[0] != '\0') {
		const char *cut = strstr(key + a->plen, a->sep);
		if (cut != NULL)
			klen = (size_t)(cut - key) + strlen(a->sep);
	}
	/* Keys come sorted, so every key cut to the same name is adjacent. */
	if (a->out->n > 0) {
		const char *last = a->out->items[a->out->n - 1].key;
		if (strlen(last) == klen && memcmp(last, key, klen) == 0)
			return 0;
	}
	e = list_push(a->out);
	if (e == NULL)
		return BCN_ENOMEM;
	memset(e, 0, sizeof *e);
	e->key = bcn_strndup(key, klen);
	if (e->key == NULL)
		return BCN_ENOMEM;
	a->out->n++;
	return 0;
}

int kv_keys(struct kv_store *s, const char *prefix, const char *sep,
	    struct kv_list *out, uint64_t *index)
{
	struct keys_arg a = {out, strlen(prefix), sep != NULL ? sep : ""};
	int rc = scan(s, prefix, keys_row, &a);

	if (rc == 0 && index != NULL)
		rc = kv_index(s, prefix, false, index);
	return rc;
}

int kv_stats(struct kv_store *s, uint64_t *keys, uint64_t *bytes)
{
	sqlite3_stmt *st = s->st[ST_STATS];
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW) {
		*keys = (uint64_t)sqlite3_column_int64(st, 0);
		*bytes = (uint64_t)sqlite3_column_int64(st, 1);
		rc = SQLITE_DONE;
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : sqlite_err(rc);
}

static const char *const verb_names[KV_VERB_NR] = {
    [KV_SET] = "set",
    [KV_CAS] = "cas",
    [KV_GET] = "get",
    [KV_GET_TREE] = "get-tree",
    [KV_CHECK_INDEX] = "check-index",
    [KV_CHECK_NOT_EXISTS] = "check-not-exists",
    [KV_DELETE] = "delete",
    [KV_DELETE_TREE] = "delete-tree",
    [KV_DELETE_CAS] = "delete-cas",
    [KV_LOCK] = "lock",
    [KV_UNLOCK] = "unlock",
    [KV_CHECK_SESSION] = "check-session",
};

enum kv_verb kv_verb_parse(const char *name)
{
	for (int v = KV_SET; v < KV_VERB_NR; v++)
		if (strcmp(name, verb_names[v]) == 0)
			return (enum kv_verb)v;
	return 0;
}

bool kv_verb_writes(enum kv_verb v)
{
	return v == KV_SET || v == KV_CAS || v == KV_DELETE ||
	       v == KV_DELETE_TREE || v == KV_DELETE_CAS || v == KV_LOCK ||
	       v == KV_UNLOCK;
}

void kv_result_init(struct kv_result *r)
{
	memset(r, 0, sizeof *r);
	r->ok = true;
	r->want_entries = true;
}

void kv_result_close(struct kv_result *r)
{
	kv_list_close(&r->entries);
	kv_result_init(r);
}

/* Remember that @key changed, for blocking queries. */
int kv_int_note_change(struct kv_store *s, const char *key)
{
	char *k;

	if (s->changed_all)
		return 0;
	if (s->n_changed == s->cap_changed) {
		size_t cap = s->cap_changed == 0 ? 16 : s->cap_changed * 2;
		char **p = bcn_realloc(s->changed, cap * sizeof *p);
		if (p == NULL)
			goto all;
		s->changed = p;
		s->cap_changed = cap;
	}
	k = bcn_strdup(key);
	if (k == NULL)
		goto all;
	s->changed[s->n_changed++] = k;
	return 0;
all:
	/* Out of memory for the record: wake everyone instead, which is
	 * always correct (a blocking query re-checks its index). */
	s->changed_all = true;
	return 0;
}

/* Add the current row of @key to @res (a copy), if anyone is listening. */
int kv_int_result_add(struct kv_store *s, struct kv_result *res,
		      const char *key, bool with_value)
{
	struct kv_entry *e;
	int rc;

	if (res == NULL || !res->want_entries)
		return 0;
	e = list_push(&res->entries);
	if (e == NULL)
		return BCN_ENOMEM;
	rc = kv_get(s, key, e, NULL);
	if (rc != 0)
		return rc == BCN_ENOTFOUND ? BCN_EINTERNAL : rc;
	if (!with_value) {
		bcn_free(e->value);
		e->value = NULL;
		e->value_len = 0;
	}
	res->entries.n++;
	return 0;
}

int kv_int_fail(struct kv_result *res, size_t i, const char *fmt, ...)
{
	va_list ap;

	if (res != NULL) {
		res->ok = false;
		res->failed_op = i;
		va_start(ap, fmt);
		vsnprintf(res->what, sizeof res->what, fmt, ap);
		va_end(ap);
	}
	return 1; /* a normal failure: roll back, return 0 to the caller */
}

int kv_int_bump_table_index(struct kv_store *s, uint64_t index)
{
	sqlite3_stmt *st = s->st[ST_META_PUT];

	sqlite3_bind_int64(st, 1, (sqlite3_int64)index);
	return kv_int_step_done(st);
}

int kv_int_put(struct kv_store *s, const struct kv_op *op, uint64_t index)
{
	sqlite3_stmt *st = s->st[ST_PUT];
	int rc;

	sqlite3_bind_text(st, 1, op->key, -1, SQLITE_STATIC);
	if (op->value_len > 0)
		sqlite3_bind_blob(st, 2, op->value, (int)op->value_len,
				  SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 2);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)op->flags);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)index);
	rc = kv_int_step_done(st);
	if (rc != 0)
		return rc;
	st = s->st[ST_TOMB_DEL];
	sqlite3_bind_text(st, 1, op->key, -1, SQLITE_STATIC);
	rc = kv_int_step_done(st);
	if (rc == 0)
		rc = kv_int_bump_table_index(s, index);
	if (rc != 0)
		return rc;
	return kv_int_note_change(s, op->key);
}

int kv_int_delete(struct kv_store *s, const char *key, uint64_t index)
{
	sqlite3_stmt *st = s->st[ST_DEL];
	int rc;

	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = kv_int_step_done(st);
	if (rc != 0)
		return rc;
	if (sqlite3_changes(s->db) == 0)
		return 0; /* nothing was there: no tombstone, no wake-up */
	st = s->st[ST_TOMB_PUT];
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)index);
	rc = kv_int_step_done(st);
	if (rc == 0)
		rc = kv_int_bump_table_index(s, index);
	if (rc != 0)
		return rc;
	return kv_int_note_change(s, key);
}

static int do_delete_tree(struct kv_store *s, const char *prefix,
			  uint64_t index)
{
	struct kv_list keys = {0};
	int rc = kv_list(s, prefix, true, &keys, NULL);

	for (size_t i = 0; rc == 0 && i < keys.n; i++)
		rc = kv_int_delete(s, keys.items[i].key, index);
	kv_list_close(&keys);
	return rc;
}

/* Run one op. Returns 0, 1 for a failed check (reported in @res), or a
 * negative error. */
static int run_op(struct kv_store *s, const struct kv_op *op, size_t i,
		  uint64_t index, struct kv_result *res)
{
	uint64_t cur_index;
	bool exists;
	int rc;

	/* Ops that check nothing here read nothing first (KV_SET is the hot
	 * path; the lock ops read the row themselves). */
	switch (op->verb) {
	case KV_GET_TREE:
		if (res == NULL || !res->want_entries)
			return 0;
		return kv_list(s, op->key, false, &res->entries, NULL);
	case KV_DELETE_TREE:
		return do_delete_tree(s, op->key, index);
	case KV_SET:
		rc = kv_int_put(s, op, index);
		return rc != 0 ? rc : kv_int_result_add(s, res, op->key, false);
	case KV_LOCK:
	case KV_UNLOCK:
	case KV_CHECK_SESSION:
		return kv_int_lock_op(s, op, i, index, res);
	case KV_DELETE:
		return kv_int_delete(s, op->key, index);
	default:
		break;
	}

	rc = peek(s, op->key, &exists, &cur_index);
	if (rc != 0)
		return rc;
	switch (op->verb) {
	case KV_CAS:
		if (op->index == 0 ? exists : cur_index != op->index)
			return kv_int_fail(
			    res, i, "failed to set key \"%s\", index is stale",
			    op->key);
		rc = kv_int_put(s, op, index);
		return rc != 0 ? rc : kv_int_result_add(s, res, op->key, false);
	case KV_GET:
		if (!exists)
			return kv_int_fail(res, i, "key \"%s\" doesn't exist",
					   op->key);
		return kv_int_result_add(s, res, op->key, true);
	case KV_CHECK_INDEX:
		if (!exists)
			return kv_int_fail(res, i, "key \"%s\" doesn't exist",
					   op->key);
		if (cur_index != op->index)
			return kv_int_fail(res, i,
					   "current modify index %llu != %llu",
					   (unsigned long long)cur_index,
					   (unsigned long long)op->index);
		return kv_int_result_add(s, res, op->key, false);
	case KV_CHECK_NOT_EXISTS:
		if (exists)
			return kv_int_fail(res, i, "key \"%s\" exists",
					   op->key);
		return 0;
	case KV_DELETE_CAS:
		if (!exists)
			return 0; /* Consul: nothing to delete is a success */
		if (op->index == 0 || cur_index != op->index)
			return kv_int_fail(
			    res, i,
			    "failed to delete key \"%s\", index is "
			    "stale",
			    op->key);
		return kv_int_delete(s, op->key, index);
	default:
		return BCN_EINVAL;
	}
}

int kv_apply(struct kv_store *s, const struct kv_op *ops, size_t n,
	     uint64_t index, struct kv_result *res)
{
	size_t changed_before = s->n_changed;
	int rc;

	rc = kv_int_step_done(s->st[ST_SAVEPOINT]);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		rc = run_op(s, &ops[i], i, index, res);
		if (rc != 0)
			break;
	}
	if (rc == 0)
		rc = kv_int_step_done(s->st[ST_RELEASE]);
	if (rc == 0)
		return 0;
	/* A failed op, or even a failed RELEASE (out of memory): undo the
	 * data, the change record and any partial results. */
	kv_int_step_done(s->st[ST_ROLLBACK]);
	kv_int_step_done(s->st[ST_RELEASE]);
	while (s->n_changed > changed_before)
		bcn_free(s->changed[--s->n_changed]);
	if (res != NULL)
		kv_list_close(&res->entries);
	return rc > 0 ? 0 : rc;
}

int kv_reap(struct kv_store *s, uint64_t before)
{
	sqlite3_stmt *st = s->st[ST_REAP];

	if (before > INT64_MAX) /* SQLite integers are signed */
		before = INT64_MAX;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)before);
	return kv_int_step_done(st);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void kv_changes_take(struct kv_store *s, struct kv_changes *out)
{
	free_keys(s->taken, s->n_taken);
	s->taken = s->changed;
	s->n_taken = s->n_changed;
	if (s->n_taken > 1)
		qsort(s->taken, s->n_taken, sizeof *s->taken, cmp_str);
	out->keys = s->taken;
	out->n = s->n_taken;
	out->all = s->changed_all;
	s->changed = NULL;
	s->n_changed = s->cap_changed = 0;
	s->changed_all = false;
}

void kv_changes_mark_all(struct kv_store *s)
{
	s->changed_all = true;
}

bool kv_changes_match(const struct kv_changes *c, const char *watched,
		      bool exact)
{
	size_t lo = 0, hi = c->n, wlen = strlen(watched);

	if (c->all)
		return true;
	/* Lower bound: the first changed key >= @watched. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(c->keys[mid], watched) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == c->n)
		return false;
	if (exact)
		return strcmp(c->keys[lo], watched) == 0;
	return strncmp(c->keys[lo], watched, wlen) == 0;
}
