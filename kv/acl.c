/* ACL tokens and policies in the replicated state (see kv.h). The server
 * module owns what they mean; this file only stores them, refusing what
 * would leave the tables inconsistent (a second bootstrap, two policies of
 * one name, a token naming a missing policy). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "kv/kv_int.h"

#define TOK_COLS                                                             \
	"accessor, hash, description, policies, management, created, cidx, " \
	"midx"
#define POL_COLS "id, name, description, rules, cidx, midx"

static const char *const sql[KV_AST_NR] = {
    [KV_AST_TOK_HASH] = "SELECT " TOK_COLS " FROM acl_tokens WHERE hash = ?1",
    [KV_AST_TOK_GET] =
	"SELECT " TOK_COLS " FROM acl_tokens WHERE accessor = ?1",
    [KV_AST_TOK_ALL] = "SELECT " TOK_COLS " FROM acl_tokens ORDER BY accessor",
    [KV_AST_TOK_PUT] = "INSERT INTO acl_tokens(" TOK_COLS
		       ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) ON "
		       "CONFLICT(accessor) DO UPDATE SET description = ?3, "
		       "policies = ?4, management = ?5, midx = ?7",
    [KV_AST_TOK_DEL] = "DELETE FROM acl_tokens WHERE accessor = ?1",
    [KV_AST_POL_ID] = "SELECT " POL_COLS " FROM acl_policies WHERE id = ?1",
    [KV_AST_POL_NAME] = "SELECT " POL_COLS " FROM acl_policies WHERE name = ?1",
    [KV_AST_POL_ALL] = "SELECT " POL_COLS " FROM acl_policies ORDER BY id",
    [KV_AST_POL_PUT] = "INSERT INTO acl_policies(" POL_COLS
		       ") VALUES(?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT(id) DO "
		       "UPDATE SET name = ?2, description = ?3, rules = ?4, "
		       "midx = ?5",
    [KV_AST_POL_DEL] = "DELETE FROM acl_policies WHERE id = ?1",
    [KV_AST_META_GET] = "SELECT bootstrap, idx FROM acl_meta WHERE id = 1",
    [KV_AST_META_PUT] = "INSERT INTO acl_meta(id, bootstrap, idx) VALUES(1, "
			"?1, ?2) ON CONFLICT(id) DO UPDATE SET bootstrap = "
			"max(bootstrap, ?1), idx = ?2",
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS acl_tokens(accessor TEXT PRIMARY KEY,"
    " hash BLOB NOT NULL UNIQUE, description TEXT NOT NULL, policies BLOB,"
    " management INTEGER NOT NULL, created INTEGER NOT NULL,"
    " cidx INTEGER NOT NULL, midx INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS acl_policies(id TEXT PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE, description TEXT NOT NULL,"
    " rules TEXT NOT NULL, cidx INTEGER NOT NULL, midx INTEGER NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS acl_meta(id INTEGER PRIMARY KEY CHECK"
    " (id = 1), bootstrap INTEGER NOT NULL, idx INTEGER NOT NULL);";

int kv_int_acl_schema(sqlite3 *db)
{
	return sqlite3_exec(db, schema, NULL, NULL, NULL) == SQLITE_OK
		   ? 0
		   : BCN_EIO;
}

static int sqlerr(int rc)
{
	return rc == SQLITE_NOMEM ? BCN_ENOMEM : BCN_EIO;
}

int kv_int_acl_open(struct kv_store *s, char *errmsg)
{
	char *err = NULL;
	int rc = sqlite3_exec(s->db, schema, NULL, NULL, &err);

	if (rc != SQLITE_OK) {
		bcn_errf(errmsg, "acl schema: %s",
			 err != NULL ? err : sqlite3_errstr(rc));
		sqlite3_free(err);
		return sqlerr(rc);
	}
	for (int i = 0; i < KV_AST_NR; i++) {
		rc = sqlite3_prepare_v3(s->db, sql[i], -1,
					SQLITE_PREPARE_PERSISTENT, &s->ast[i],
					NULL);
		if (rc != SQLITE_OK) {
			bcn_errf(errmsg, "acl prepare: %s",
				 sqlite3_errmsg(s->db));
			kv_int_acl_close(s);
			return sqlerr(rc);
		}
	}
	return 0;
}

void kv_int_acl_close(struct kv_store *s)
{
	for (int i = 0; i < KV_AST_NR; i++) {
		sqlite3_finalize(s->ast[i]);
		s->ast[i] = NULL;
	}
}

void kv_acl_token_close(struct kv_acl_token *t)
{
	bcn_free(t->mem_);
	memset(t, 0, sizeof *t);
}

void kv_acl_policy_close(struct kv_acl_policy *p)
{
	bcn_free(p->mem_);
	memset(p, 0, sizeof *p);
}

/* Copy columns @cols of @st into one block; @dst[i] points at each. */
static char *copy_cols(sqlite3_stmt *st, const int *cols, const char ***dst,
		       size_t *lens, size_t n)
{
	size_t total = 0, off = 0;
	char *mem;

	for (size_t i = 0; i < n; i++)
		total += (size_t)sqlite3_column_bytes(st, cols[i]) + 1;
	mem = bcn_malloc(total);
	if (mem == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const void *p = sqlite3_column_blob(st, cols[i]);
		size_t len = (size_t)sqlite3_column_bytes(st, cols[i]);
		if (len > 0)
			memcpy(mem + off, p, len);
		mem[off + len] = '\0';
		*dst[i] = mem + off;
		if (lens != NULL)
			lens[i] = len;
		off += len + 1;
	}
	return mem;
}

static int row_token(sqlite3_stmt *st, struct kv_acl_token *t)
{
	static const int cols[] = {2, 3};
	const char **dst[] = {&t->description, &t->policies};
	size_t lens[2];
	const char *acc = (const char *)sqlite3_column_text(st, 0);

	memset(t, 0, sizeof *t);
	t->mem_ = copy_cols(st, cols, dst, lens, 2);
	if (t->mem_ == NULL)
		return BCN_ENOMEM;
	t->policies_len = lens[1];
	snprintf(t->accessor, sizeof t->accessor, "%s", acc != NULL ? acc : "");
	if (sqlite3_column_bytes(st, 1) == KV_ACL_HASH_LEN)
		memcpy(t->hash, sqlite3_column_blob(st, 1), KV_ACL_HASH_LEN);
	t->management = sqlite3_column_int(st, 4) != 0;
	t->create_time_ms = (uint64_t)sqlite3_column_int64(st, 5);
	t->create_index = (uint64_t)sqlite3_column_int64(st, 6);
	t->modify_index = (uint64_t)sqlite3_column_int64(st, 7);
	return 0;
}

static int row_policy(sqlite3_stmt *st, struct kv_acl_policy *p)
{
	static const int cols[] = {1, 2, 3};
	const char **dst[] = {&p->name, &p->description, &p->rules};
	const char *id = (const char *)sqlite3_column_text(st, 0);

	memset(p, 0, sizeof *p);
	p->mem_ = copy_cols(st, cols, dst, NULL, 3);
	if (p->mem_ == NULL)
		return BCN_ENOMEM;
	snprintf(p->id, sizeof p->id, "%s", id != NULL ? id : "");
	p->create_index = (uint64_t)sqlite3_column_int64(st, 4);
	p->modify_index = (uint64_t)sqlite3_column_int64(st, 5);
	return 0;
}

/* Step @st (bound) once: a row into @out via @fn, or BCN_ENOTFOUND. */
static int one(sqlite3_stmt *st, int (*fn)(sqlite3_stmt *, void *), void *out)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		rc = fn(st, out);
	else
		rc = rc == SQLITE_DONE ? BCN_ENOTFOUND : sqlerr(rc);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

static int token_fn(sqlite3_stmt *st, void *out)
{
	return row_token(st, out);
}

static int policy_fn(sqlite3_stmt *st, void *out)
{
	return row_policy(st, out);
}

int kv_acl_token_by_hash(struct kv_store *s,
			 const unsigned char hash[KV_ACL_HASH_LEN],
			 struct kv_acl_token *out)
{
	sqlite3_stmt *st = s->ast[KV_AST_TOK_HASH];

	sqlite3_bind_blob(st, 1, hash, KV_ACL_HASH_LEN, SQLITE_STATIC);
	return one(st, token_fn, out);
}

int kv_acl_token_get(struct kv_store *s, const char *accessor,
		     struct kv_acl_token *out)
{
	sqlite3_stmt *st = s->ast[KV_AST_TOK_GET];

	sqlite3_bind_text(st, 1, accessor, -1, SQLITE_STATIC);
	return one(st, token_fn, out);
}

int kv_acl_policy_get(struct kv_store *s, const char *id_or_name, bool by_name,
		      struct kv_acl_policy *out)
{
	sqlite3_stmt *st = s->ast[by_name ? KV_AST_POL_NAME : KV_AST_POL_ID];

	sqlite3_bind_text(st, 1, id_or_name, -1, SQLITE_STATIC);
	return one(st, policy_fn, out);
}

int kv_acl_tokens(struct kv_store *s,
		  void (*cb)(void *arg, const struct kv_acl_token *t),
		  void *arg)
{
	sqlite3_stmt *st = s->ast[KV_AST_TOK_ALL];
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct kv_acl_token t;
		rc = row_token(st, &t);
		if (rc != 0)
			break;
		cb(arg, &t);
		kv_acl_token_close(&t);
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : (rc < 0 ? rc : sqlerr(rc));
}

int kv_acl_policies(struct kv_store *s,
		    void (*cb)(void *arg, const struct kv_acl_policy *p),
		    void *arg)
{
	sqlite3_stmt *st = s->ast[KV_AST_POL_ALL];
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct kv_acl_policy p;
		rc = row_policy(st, &p);
		if (rc != 0)
			break;
		cb(arg, &p);
		kv_acl_policy_close(&p);
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : (rc < 0 ? rc : sqlerr(rc));
}

static int meta(struct kv_store *s, uint64_t *bootstrap, uint64_t *index)
{
	sqlite3_stmt *st = s->ast[KV_AST_META_GET];
	int rc = sqlite3_step(st);

	*bootstrap = *index = 0;
	if (rc == SQLITE_ROW) {
		*bootstrap = (uint64_t)sqlite3_column_int64(st, 0);
		*index = (uint64_t)sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sqlerr(rc);
}

int kv_acl_bootstrapped(struct kv_store *s, uint64_t *index)
{
	uint64_t idx;

	return meta(s, index, &idx);
}

int kv_acl_index(struct kv_store *s, uint64_t *index)
{
	uint64_t boot;
	int rc = meta(s, &boot, index);

	if (rc == 0 && *index == 0)
		*index = 1;
	return rc;
}

static int touch(struct kv_store *s, uint64_t bootstrap, uint64_t index)
{
	sqlite3_stmt *st = s->ast[KV_AST_META_PUT];

	sqlite3_bind_int64(st, 1, (sqlite3_int64)bootstrap);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)index);
	return kv_int_step_done(st);
}

static int token_put(struct kv_store *s, const struct kv_acl_token *t,
		     uint64_t index, bool *ok)
{
	sqlite3_stmt *st = s->ast[KV_AST_TOK_PUT];

	/* Every policy it names must exist. */
	for (size_t off = 0; off < t->policies_len;) {
		struct kv_acl_policy p;
		const char *id = t->policies + off;
		int rc = kv_acl_policy_get(s, id, false, &p);
		off += strlen(id) + 1;
		if (rc == BCN_ENOTFOUND)
			return 0;
		if (rc != 0)
			return rc;
		kv_acl_policy_close(&p);
	}
	sqlite3_bind_text(st, 1, t->accessor, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, t->hash, KV_ACL_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, t->description, -1, SQLITE_STATIC);
	if (t->policies_len > 0)
		sqlite3_bind_blob(st, 4, t->policies, (int)t->policies_len,
				  SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 4);
	sqlite3_bind_int(st, 5, t->management);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)t->create_time_ms);
	sqlite3_bind_int64(st, 7, (sqlite3_int64)index);
	*ok = true;
	return kv_int_step_done(st);
}

int kv_acl_apply(struct kv_store *s, enum kv_acl_op op,
		 const struct kv_acl_token *token,
		 const struct kv_acl_policy *policy, uint64_t index, bool *ok)
{
	uint64_t boot, idx;
	sqlite3_stmt *st;
	int rc = meta(s, &boot, &idx);

	*ok = false;
	if (rc != 0)
		return rc;
	switch (op) {
	case KV_ACL_BOOTSTRAP:
		if (boot != 0)
			return 0;
		rc = token_put(s, token, index, ok);
		boot = index;
		break;
	case KV_ACL_TOKEN_SET:
		rc = token_put(s, token, index, ok);
		break;
	case KV_ACL_TOKEN_DELETE:
		st = s->ast[KV_AST_TOK_DEL];
		sqlite3_bind_text(st, 1, token->accessor, -1, SQLITE_STATIC);
		rc = kv_int_step_done(st);
		*ok = rc == 0 && sqlite3_changes(s->db) > 0;
		break;
	case KV_ACL_POLICY_SET: {
		struct kv_acl_policy cur;
		rc = kv_acl_policy_get(s, policy->name, true, &cur);
		if (rc == 0) {
			bool other = strcmp(cur.id, policy->id) != 0;
			kv_acl_policy_close(&cur);
			if (other)
				return 0; /* the name is taken */
		} else if (rc != BCN_ENOTFOUND) {
			return rc;
		}
		st = s->ast[KV_AST_POL_PUT];
		sqlite3_bind_text(st, 1, policy->id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, policy->name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, policy->description, -1,
				  SQLITE_STATIC);
		sqlite3_bind_text(st, 4, policy->rules, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, (sqlite3_int64)index);
		rc = kv_int_step_done(st);
		*ok = rc == 0;
		break;
	}
	case KV_ACL_POLICY_DELETE:
		st = s->ast[KV_AST_POL_DEL];
		sqlite3_bind_text(st, 1, policy->id, -1, SQLITE_STATIC);
		rc = kv_int_step_done(st);
		*ok = rc == 0 && sqlite3_changes(s->db) > 0;
		break;
	default:
		return 0;
	}
	if (rc == 0 && *ok)
		rc = touch(s, boot, index);
	return rc;
}
