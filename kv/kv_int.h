/* Private to kv/: the store's internals, shared by kv.c (keys) and
 * session.c (sessions and locks). */
#pragma once

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "kv/kv.h"

enum {
	ST_GET,
	ST_TOMB_GET,
	ST_PUT,
	ST_DEL,
	ST_TOMB_PUT,
	ST_TOMB_DEL,
	ST_SCAN,      /* key >= ?1 AND key < ?2 */
	ST_SCAN_OPEN, /* key >= ?1: a prefix with no upper bound */
	ST_MAX,
	ST_MAX_OPEN,
	ST_TMAX,
	ST_TMAX_OPEN,
	ST_REAP,
	ST_STATS,
	ST_META_GET,
	ST_META_PUT,
	ST_SAVEPOINT,
	ST_RELEASE,
	ST_ROLLBACK,
	ST_NR
};

/* session.c's statements. */
enum {
	KV_SST_GET,
	KV_SST_LIST,
	KV_SST_LIST_NODE,
	KV_SST_PUT,
	KV_SST_DEL,
	KV_SST_HELD,
	KV_SST_LOCK,
	KV_SST_UNLOCK,
	KV_SST_DELAY_GET,
	KV_SST_DELAY_PUT,
	KV_SST_DELAY_DEL,
	KV_SST_IDX_GET,
	KV_SST_IDX_PUT,
	KV_SST_NR
};

/* acl.c's statements. */
enum {
	KV_AST_TOK_HASH,
	KV_AST_TOK_GET,
	KV_AST_TOK_ALL,
	KV_AST_TOK_PUT,
	KV_AST_TOK_DEL,
	KV_AST_POL_ID,
	KV_AST_POL_NAME,
	KV_AST_POL_ALL,
	KV_AST_POL_PUT,
	KV_AST_POL_DEL,
	KV_AST_META_GET,
	KV_AST_META_PUT,
	KV_AST_NR
};

/* secret.c's statements. */
enum {
	KV_XST_GET,
	KV_XST_PUT,
	KV_XST_DEL,
	KV_XST_SCAN,
	KV_XST_ALL,
	KV_XST_IDX_GET,
	KV_XST_IDX_PUT,
	KV_XST_NR
};

struct kv_store {
	sqlite3 *db; /* borrowed */
	sqlite3_stmt *st[ST_NR];
	sqlite3_stmt *sst[KV_SST_NR]; /* session.c's */
	sqlite3_stmt *xst[KV_XST_NR]; /* secret.c's */
	sqlite3_stmt *ast[KV_AST_NR]; /* acl.c's */
	/* Keys changed since the last kv_changes_take(); bcn_malloc'd. */
	char **changed;
	size_t n_changed, cap_changed;
	bool changed_all;
	/* Handed out by the last kv_changes_take(); freed at the next one. */
	char **taken;
	size_t n_taken;
};

int kv_int_step_done(sqlite3_stmt *st);
int kv_int_note_change(struct kv_store *s, const char *key);
/* Write @op's key, value and flags (keeping its lock). */
int kv_int_put(struct kv_store *s, const struct kv_op *op, uint64_t index);
int kv_int_delete(struct kv_store *s, const char *key, uint64_t index);
int kv_int_bump_table_index(struct kv_store *s, uint64_t index);
/* A normal failure of op @i: reported in @res; returns 1. */
int kv_int_fail(struct kv_result *res, size_t i, const char *fmt, ...)
    BCN_PRINTF(3, 4);
int kv_int_result_add(struct kv_store *s, struct kv_result *res,
		      const char *key, bool with_value);

/* Create what is missing of each file's tables (after a snapshot made by
 * an older version was loaded). */
int kv_int_session_schema(sqlite3 *db);
int kv_int_secret_schema(sqlite3 *db);
int kv_int_acl_schema(sqlite3 *db);

/* acl.c: its tables and statements. */
int kv_int_acl_open(struct kv_store *s, char *errmsg);
void kv_int_acl_close(struct kv_store *s);

/* secret.c: its table and statements. */
int kv_int_secret_open(struct kv_store *s, char *errmsg);
void kv_int_secret_close(struct kv_store *s);

/* session.c: its tables and statements, and the lock verbs of kv_apply. */
int kv_int_session_open(struct kv_store *s, char *errmsg);
void kv_int_session_close(struct kv_store *s);
int kv_int_lock_op(struct kv_store *s, const struct kv_op *op, size_t i,
		   uint64_t index, struct kv_result *res);
