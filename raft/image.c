#include "raft/image.h"

#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health/catalog.h"
#include "kv/kv.h"
#include "raft/cluster.h"

static int refuse(char *why, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(char *why, size_t cap, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, cap, fmt, ap);
	va_end(ap);
	return BCN_EINVAL;
}

/* The text of a one-row, one-column query on @db; "" if no row. */
static int query_text(sqlite3 *db, const char *sql, char *out, size_t cap)
{
	sqlite3_stmt *st;
	int rc;

	out[0] = '\0';
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return sqlite3_errcode(db);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(st, 0);
		snprintf(out, cap, "%s", t != NULL ? (const char *)t : "");
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc;
}

static bool nomem(int rc)
{
	return (rc & 0xff) == SQLITE_NOMEM;
}

/* Every schema object of @img is one of @expected, with the same SQL. An
 * automatic index (SQL NULL) belongs to its table, whose SQL is compared. */
static int check_schema(sqlite3 *expected, sqlite3 *img, char *why, size_t cap)
{
	sqlite3_stmt *list = NULL, *find = NULL;
	int rc;

	rc = sqlite3_prepare_v2(img,
				"SELECT type, name, sql FROM sqlite_schema "
				"ORDER BY rowid",
				-1, &list, NULL);
	if (rc != SQLITE_OK) {
		rc = nomem(rc) ? BCN_ENOMEM
			       : refuse(why, cap, "not a database of ours: %s",
					sqlite3_errmsg(img));
		goto out;
	}
	if (sqlite3_prepare_v2(expected,
			       "SELECT sql FROM sqlite_schema "
			       "WHERE type = ?1 AND name = ?2",
			       -1, &find, NULL) != SQLITE_OK) {
		rc = BCN_ENOMEM; /* our own schema: only memory can fail */
		goto out;
	}
	while ((rc = sqlite3_step(list)) == SQLITE_ROW) {
		const char *type = (const char *)sqlite3_column_text(list, 0);
		const char *name = (const char *)sqlite3_column_text(list, 1);
		const char *sql = (const char *)sqlite3_column_text(list, 2);
		const char *want;
		int frc;

		if (type == NULL || name == NULL) {
			rc = refuse(why, cap, "a schema entry without a name");
			goto out;
		}
		sqlite3_reset(find);
		sqlite3_bind_text(find, 1, type, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(find, 2, name, -1, SQLITE_TRANSIENT);
		frc = sqlite3_step(find);
		if (frc != SQLITE_ROW && frc != SQLITE_DONE) {
			rc = BCN_ENOMEM;
			goto out;
		}
		if (frc == SQLITE_DONE) {
			rc = refuse(why, cap,
				    "%.16s %.64s is not part of this "
				    "version's state",
				    type, name);
			goto out;
		}
		want = (const char *)sqlite3_column_text(find, 0);
		if ((want == NULL) != (sql == NULL) ||
		    (want != NULL && strcmp(want, sql) != 0)) {
			rc = refuse(why, cap,
				    "%.16s %.64s differs from this "
				    "version's",
				    type, name);
			goto out;
		}
	}
	if (rc != SQLITE_DONE) {
		rc = nomem(rc) ? BCN_ENOMEM
			       : refuse(why, cap, "unreadable schema: %s",
					sqlite3_errmsg(img));
		goto out;
	}
	rc = 0;
out:
	sqlite3_finalize(list);
	sqlite3_finalize(find);
	return rc;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct cat_node *)a)->name,
		      ((const struct cat_node *)b)->name);
}

static bool has_node(const struct cat_rows *r, const char *name)
{
	struct cat_node key = {.name = name};

	return bsearch(&key, r->nodes, r->n_nodes, sizeof key, by_name) != NULL;
}

static bool has_service(const struct cat_rows *r, const char *node,
			const char *id, const char *name)
{
	/* Sorted by node, then ID. */
	size_t lo = 0, hi = r->n_svcs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct cat_service *sv = &r->svcs[mid];
		int c = strcmp(sv->node, node);

		if (c == 0)
			c = strcmp(sv->id, id);
		if (c == 0)
			return strcmp(sv->name, name) == 0;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* Every service on a node of the catalog, every check on one, and a
 * service check on its service: what the readers take for granted. */
static int check_catalog(struct cat_store *cat, char *why, size_t cap)
{
	struct cat_rows r = {0};
	int rc;

	rc = cat_nodes(cat, &r);
	if (rc == 0)
		rc = cat_services(cat, NULL, NULL, &r);
	if (rc == 0)
		rc = cat_checks(cat, NULL, NULL, 0, &r);
	if (rc != 0) {
		if (rc != BCN_ENOMEM)
			rc = refuse(why, cap, "unreadable catalog: %s",
				    bcn_strerror(rc));
		goto out;
	}
	for (size_t i = 0; i < r.n_svcs; i++)
		if (!has_node(&r, r.svcs[i].node)) {
			rc = refuse(why, cap,
				    "service %.64s on node %.64s, "
				    "which is not in the catalog",
				    r.svcs[i].id, r.svcs[i].node);
			goto out;
		}
	for (size_t i = 0; i < r.n_chks; i++) {
		const struct cat_check *ch = &r.chks[i];

		if (!has_node(&r, ch->node) ||
		    (ch->service_id[0] != '\0' &&
		     !has_service(&r, ch->node, ch->service_id,
				  ch->service_name))) {
			rc = refuse(why, cap,
				    "check %.64s of node %.64s without its "
				    "node or service",
				    ch->id, ch->node);
			goto out;
		}
	}
out:
	cat_rows_close(&r);
	return rc;
}

static void ignore_token(void *arg, const struct kv_acl_token *t)
{
	(void)arg;
	(void)t;
}

static void ignore_policy(void *arg, const struct kv_acl_policy *p)
{
	(void)arg;
	(void)p;
}

static int check_kv(struct kv_store *kv, char *why, size_t cap)
{
	struct kv_list l = {0};
	struct kv_session_list sl = {0};
	struct kv_secret_list xl = {0};
	uint64_t index;
	const char *what = "keys";
	int rc;

	rc = kv_list(kv, "", false, &l, &index);
	if (rc == 0 && (what = "sessions") != NULL)
		rc = kv_session_list(kv, NULL, &sl);
	if (rc == 0 && (what = "secrets") != NULL)
		rc = kv_secret_list(kv, "", true, &xl);
	if (rc == 0 && (what = "ACL tokens") != NULL)
		rc = kv_acl_tokens(kv, ignore_token, NULL);
	if (rc == 0 && (what = "ACL policies") != NULL)
		rc = kv_acl_policies(kv, ignore_policy, NULL);
	kv_list_close(&l);
	kv_session_list_close(&sl);
	kv_secret_list_close(&xl);
	if (rc != 0 && rc != BCN_ENOMEM)
		rc = refuse(why, cap, "unreadable %s: %s", what,
			    bcn_strerror(rc));
	return rc;
}

/* A private, writable copy of @img in @out, with SQLite's advice for a
 * database from elsewhere: no schema-defined functions with side effects,
 * no writes to the schema, every cell size checked. */
static int open_copy(const void *img, size_t len, sqlite3 **out, char *why,
		     size_t cap)
{
	unsigned char *copy;
	sqlite3 *db = NULL;
	int rc;

	*out = NULL;
	if (sqlite3_open_v2(":memory:", &db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_MEMORY,
			    NULL) != SQLITE_OK ||
	    (copy = sqlite3_malloc64(len)) == NULL) {
		sqlite3_close(db);
		return BCN_ENOMEM;
	}
	memcpy(copy, img, len);
	sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
	sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
	rc = sqlite3_deserialize(
	    db, "main", copy, (sqlite3_int64)len, (sqlite3_int64)len,
	    SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "PRAGMA cell_size_check = ON", NULL, NULL,
				  NULL);
	if (rc != SQLITE_OK) {
		rc = nomem(rc) ? BCN_ENOMEM
			       : refuse(why, cap, "not a database: %s",
					sqlite3_errmsg(db));
		sqlite3_close(db);
		return rc;
	}
	*out = db;
	return 0;
}

/* @pragma reads the same on @db as on @expected. */
static int same_pragma(sqlite3 *expected, sqlite3 *db, const char *pragma,
		       char *why, size_t cap)
{
	char sql[64], have[64], want[64];
	int rc;

	snprintf(sql, sizeof sql, "PRAGMA %s", pragma);
	rc = query_text(db, sql, have, sizeof have);
	if (rc != SQLITE_OK)
		return nomem(rc) ? BCN_ENOMEM
				 : refuse(why, cap, "not a database: %s",
					  sqlite3_errmsg(db));
	if (query_text(expected, sql, want, sizeof want) != SQLITE_OK)
		return BCN_ENOMEM; /* our own database */
	if (strcmp(have, want) != 0)
		return refuse(why, cap, "%s %s, not %s", pragma, have, want);
	return 0;
}

/* Complete the schema as a server does after a load and read everything
 * back through the stores. */
static int check_content(sqlite3 *db, char *why, size_t cap)
{
	char errmsg[BCN_ERRMSG_LEN];
	struct kv_store *kv = NULL;
	struct cat_store *cat = NULL;
	int rc;

	rc = sqlite3_exec(db, cluster_servers_schema, NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		rc = nomem(rc)
			 ? BCN_ENOMEM
			 : refuse(why, cap, "unusable: %s", sqlite3_errmsg(db));
		goto out;
	}
	rc = kv_store_open(&kv, db, errmsg);
	if (rc == 0)
		rc = cat_store_open(&cat, db, errmsg);
	if (rc != 0) {
		if (rc != BCN_ENOMEM)
			rc = refuse(why, cap, "unusable: %s", errmsg);
		goto out;
	}
	rc = check_kv(kv, why, cap);
	if (rc == 0)
		rc = check_catalog(cat, why, cap);
out:
	kv_store_close(kv);
	cat_store_close(cat);
	return rc;
}

int image_check(sqlite3 *expected, const void *img, size_t len, char *why,
		size_t cap)
{
	char msg[256];
	sqlite3 *db;
	int rc;

	why[0] = '\0';
	if (len < 512 || len > INT64_MAX)
		return refuse(why, cap, "not a database (%zu bytes)", len);
	rc = open_copy(img, len, &db, why, cap);
	if (rc != 0)
		return rc;
	rc = same_pragma(expected, db, "encoding", why, cap);
	if (rc == 0)
		rc = same_pragma(expected, db, "page_size", why, cap);
	/* The schema before integrity_check, which evaluates the image's
	 * CHECK constraints: they must be ours. */
	if (rc == 0)
		rc = check_schema(expected, db, why, cap);
	if (rc != 0)
		goto out;
	rc = query_text(db, "PRAGMA integrity_check(1)", msg, sizeof msg);
	for (char *p = msg; *p != '\0'; p++)
		if (*p == '\n')
			*p = ' ';
	if (rc != SQLITE_OK || strcmp(msg, "ok") != 0) {
		rc = nomem(rc)
			 ? BCN_ENOMEM
			 : refuse(why, cap, "damaged: %s",
				  rc != SQLITE_OK ? sqlite3_errmsg(db) : msg);
		goto out;
	}
	rc = check_content(db, why, cap);
out:
	sqlite3_close(db);
	return rc;
}

int image_load(sqlite3 *dst, const void *img, size_t len)
{
	sqlite3 *src = NULL;
	sqlite3_backup *bk;
	int rc;

	if (len > INT64_MAX)
		return BCN_ECORRUPT;
	rc = sqlite3_open_v2(":memory:", &src,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_MEMORY, NULL);
	/* Borrowed and read only: the backup only reads it. */
	if (rc == SQLITE_OK)
		rc = sqlite3_deserialize(src, "main",
					 (unsigned char *)(uintptr_t)img,
					 (sqlite3_int64)len, (sqlite3_int64)len,
					 SQLITE_DESERIALIZE_READONLY);
	if (rc == SQLITE_OK) {
		bk = sqlite3_backup_init(dst, "main", src, "main");
		if (bk == NULL) {
			rc = sqlite3_errcode(dst);
		} else {
			rc = sqlite3_backup_step(bk, -1);
			sqlite3_backup_finish(bk);
			rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
		}
	}
	sqlite3_close(src); /* harmless on NULL */
	if (rc == SQLITE_OK)
		return 0;
	return nomem(rc) ? BCN_ENOMEM : BCN_ECORRUPT;
}
