/* The key/value state: keys, values, CAS, prefix queries, tombstones and the
 * record of what changed for blocking queries.
 *
 * Pure logic over a borrowed SQLite connection: no HTTP, no Raft. The raft
 * module calls kv_apply() for committed commands, in log order, on every
 * server; the server module calls the read functions.
 *
 * Indexes are Raft log indexes. As in Consul: a key's index is its
 * ModifyIndex; a missing key's index is the table's (the last index that
 * changed any key, or 1); a prefix's index is the largest ModifyIndex or
 * tombstone index under it, or the table's when there is nothing under it.
 * A delete moves a prefix's index forward (tombstones keep it monotonic).
 * Blocking queries are woken only by changes under their own key or prefix
 * (kv_changes_match), whatever the index. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct sqlite3;
struct kv_store;

#define KV_MAX_KEY_LEN	 1024
#define KV_MAX_VALUE_LEN 524288 /* Consul's kv_max_value_size */
#define KV_MAX_TXN_OPS	 128

/* Check @key[0..len) against Beacon's key grammar: 1..KV_MAX_KEY_LEN bytes of
 * valid UTF-8, no control characters (< 0x20, 0x7f), no leading '/', no "//".
 * With @prefix, the empty string is allowed too. On violation returns
 * BCN_EINVAL and points @why at a static one-line reason. */
int kv_key_check(const char *key, size_t len, bool prefix,
		 const char **why) BCN_MUST_CHECK;

/* Open the KV tables on @db (borrowed; must outlive the store), creating them
 * if needed. Returns 0, BCN_ENOMEM or BCN_EIO (details in @errmsg). */
int kv_store_open(struct kv_store **out, struct sqlite3 *db,
		  char *errmsg) BCN_MUST_CHECK;
void kv_store_close(struct kv_store *s);
/* Create the tables and indexes a state image loaded from an older
 * snapshot lacks (idempotent). */
int kv_store_migrate(struct kv_store *s) BCN_MUST_CHECK;

struct kv_entry {
	char *key;   /* owned, NUL-terminated */
	void *value; /* owned; NULL when empty */
	size_t value_len;
	uint64_t flags;
	uint64_t create_index;
	uint64_t modify_index;
	uint64_t lock_index;
	char *session; /* owned; NULL when unlocked */
};

void kv_entry_close(struct kv_entry *e);

/* A list of entries owned by the caller. */
struct kv_list {
	struct kv_entry *items;
	size_t n, cap;
};

void kv_list_close(struct kv_list *l);

/* Read @key. Returns 0 and fills @out (close it with kv_entry_close()),
 * BCN_ENOTFOUND, BCN_ENOMEM or BCN_EIO. @index, if not NULL, gets the key's
 * index as defined above, found or not. */
int kv_get(struct kv_store *s, const char *key, struct kv_entry *out,
	   uint64_t *index) BCN_MUST_CHECK;

/* Append every entry whose key starts with @prefix to @out, sorted by key.
 * With @keys_only, values are not loaded. @index gets the prefix's index. */
int kv_list(struct kv_store *s, const char *prefix, bool keys_only,
	    struct kv_list *out, uint64_t *index) BCN_MUST_CHECK;

/* Consul's ?keys&separator: the distinct key names under @prefix, each cut
 * after the first @sep that follows the prefix (no cut when @sep is empty).
 * Results are owned by @out as kv_entry.key with no value. */
int kv_keys(struct kv_store *s, const char *prefix, const char *sep,
	    struct kv_list *out, uint64_t *index) BCN_MUST_CHECK;

/* The index of @prefix (or of one key with @exact). */
int kv_index(struct kv_store *s, const char *key, bool exact,
	     uint64_t *index) BCN_MUST_CHECK;

/* Number of keys and bytes of values stored. */
int kv_stats(struct kv_store *s, uint64_t *keys,
	     uint64_t *bytes) BCN_MUST_CHECK;

/* Operations, as in Consul's /v1/txn KV verbs. A plain PUT is one KV_SET, a
 * PUT ?cas one KV_CAS, and so on. */
enum kv_verb {
	KV_SET = 1,
	KV_CAS,
	KV_GET,
	KV_GET_TREE,
	KV_CHECK_INDEX,
	KV_CHECK_NOT_EXISTS,
	KV_DELETE,
	KV_DELETE_TREE,
	KV_DELETE_CAS,
	KV_LOCK,	  /* ?acquire: take the key's lock for @session */
	KV_UNLOCK,	  /* ?release: give it back */
	KV_CHECK_SESSION, /* fail unless @session holds the key */
	KV_VERB_NR
};

/* Parse a Consul verb name ("set", "delete-tree", "lock", ...). Returns 0
 * if unknown. */
enum kv_verb kv_verb_parse(const char *name);

/* True if the verb writes. */
bool kv_verb_writes(enum kv_verb v);

struct kv_op {
	enum kv_verb verb;
	const char *key;   /* borrowed, NUL-terminated */
	const void *value; /* borrowed */
	size_t value_len;
	uint64_t flags;
	uint64_t index;	     /* for cas, check-index, delete-cas */
	const char *session; /* lock, unlock, check-session; else NULL */
	uint64_t now_ms;     /* lock: the leader's wall clock (lock-delay) */
};

/* Outcome of kv_apply(). */
struct kv_result {
	bool ok;	  /* false: an op failed and nothing changed */
	size_t failed_op; /* with !ok: which op */
	/* with !ok: Consul's reason text; room for any key, so that a
	 * message is never cut inside a UTF-8 sequence */
	char what[KV_MAX_KEY_LEN + 128];
	struct kv_list entries; /* result entries, in op order */
	bool want_entries;	/* false: skip them (a plain PUT needs none) */
};

void kv_result_init(struct kv_result *r);
void kv_result_close(struct kv_result *r);

/* Apply @ops all-or-nothing at Raft index @index. Deterministic: everything
 * comes from @ops. A failed check or CAS is a normal outcome (@res->ok false,
 * return 0). Returns BCN_ENOMEM or BCN_EIO only for local failures, after
 * which the store is unchanged. @res may be NULL when nobody waits for the
 * outcome (a follower): then no result entries are copied. */
int kv_apply(struct kv_store *s, const struct kv_op *ops, size_t n,
	     uint64_t index, struct kv_result *res) BCN_MUST_CHECK;

/* Drop tombstones whose index is <= @before. Deterministic. */
int kv_reap(struct kv_store *s, uint64_t before) BCN_MUST_CHECK;

/* What changed since the last kv_changes_take(), for waking blocking queries.
 * @all is true when the whole state was replaced (restore). The keys are
 * sorted and stay valid until the next kv_changes_take() or kv_apply(). */
struct kv_changes {
	char **keys;
	size_t n;
	bool all;
};

void kv_changes_take(struct kv_store *s, struct kv_changes *out);
void kv_changes_mark_all(struct kv_store *s);

/* True if a change of @key can affect a query on @watched (a key, or a prefix
 * when !@exact), given @c. */
bool kv_changes_match(const struct kv_changes *c, const char *watched,
		      bool exact);

/* ---- sessions (kv/session.c) ----------------------------------------------
 *
 * A session holds locks on keys (KV_LOCK). Invalidating it (destroy, TTL
 * expiry, a failed check: decided by the leader, which writes the time into
 * the log) releases its keys, or deletes them with behavior "delete", and
 * puts the released keys in lock-delay: KV_LOCK by any session fails until
 * the delay has passed on the leader's clock. Sessions are watched through
 * the reserved key KV_SESSIONS_KEY (kv_changes_match with it, exact), and
 * their index is that key's. */

#define KV_SESSION_ID_LEN 36
#define KV_SESSIONS_KEY	  "\001sessions" /* not a valid key: no clash */

enum kv_behavior { KV_BEHAVIOR_RELEASE = 0, KV_BEHAVIOR_DELETE = 1 };

struct kv_session {
	char id[KV_SESSION_ID_LEN + 1];
	const char *name, *node; /* owned when read from the store */
	uint64_t lock_delay_ms;
	enum kv_behavior behavior;
	uint64_t ttl_ms; /* 0: none */
	/* Packed lists "a\0b\0": node check IDs, service check IDs. */
	const char *node_checks, *service_checks;
	size_t node_checks_len, service_checks_len;
	uint64_t create_index, modify_index;
	void *mem_; /* what a read allocated */
};

struct kv_session_list {
	struct kv_session *items;
	size_t n, cap;
};

void kv_session_close(struct kv_session *s);
void kv_session_list_close(struct kv_session_list *l);

/* Read a session: 0, BCN_ENOTFOUND, BCN_ENOMEM or BCN_EIO. */
int kv_session_get(struct kv_store *s, const char *id,
		   struct kv_session *out) BCN_MUST_CHECK;
/* Every session, or those of @node; sorted by ID. */
int kv_session_list(struct kv_store *s, const char *node,
		    struct kv_session_list *out) BCN_MUST_CHECK;
/* The sessions' index (last create or destroy, or the KV table's). */
int kv_session_index(struct kv_store *s, uint64_t *index) BCN_MUST_CHECK;

/* Apply a create at @index; @sess->id must not exist (then @ok false). */
int kv_session_create(struct kv_store *s, const struct kv_session *sess,
		      uint64_t index, bool *ok) BCN_MUST_CHECK;
/* Invalidate @id at @index, the leader's clock reading @now_ms: release or
 * delete its keys, start their lock-delay, drop the session. A missing
 * session is a no-op (@ok false). */
int kv_session_destroy(struct kv_store *s, const char *id, uint64_t now_ms,
		       uint64_t index, bool *ok) BCN_MUST_CHECK;

/* ---- secrets (kv/secret.c) ------------------------------------------------
 *
 * Secrets are stored sealed: the leader encrypts a value before it enters
 * the log, so this module only ever sees a "box" (nonce, ciphertext, tag)
 * and the ID of the key that sealed it. Paths follow the key grammar
 * (kv_key_check). A change of a secret is noted as KV_SECRET_MARK + path in
 * the change record, for blocking queries. */

#define KV_SECRET_MARK	 "\002"
#define KV_SECRET_KEY_ID 16 /* hex characters */

struct kv_secret {
	char *path;
	void *box;
	size_t box_len;
	char key_id[KV_SECRET_KEY_ID + 1];
	uint64_t create_index, modify_index;
};

struct kv_secret_list {
	struct kv_secret *items;
	size_t n, cap;
};

void kv_secret_close(struct kv_secret *s);
void kv_secret_list_close(struct kv_secret_list *l);

/* 0, BCN_ENOTFOUND, BCN_ENOMEM or BCN_EIO. */
int kv_secret_get(struct kv_store *s, const char *path,
		  struct kv_secret *out) BCN_MUST_CHECK;
/* Secrets under @prefix, sorted by path; with !@boxes, paths only (and
 * the key IDs). */
int kv_secret_list(struct kv_store *s, const char *prefix, bool boxes,
		   struct kv_secret_list *out) BCN_MUST_CHECK;
/* The index of @path (its ModifyIndex) or, when missing or a prefix, the
 * secrets' table index. */
int kv_secret_index(struct kv_store *s, const char *path,
		    uint64_t *index) BCN_MUST_CHECK;
/* Store @box for @path at @index. With @cas: only if the secret's
 * ModifyIndex is @cas (0: only if missing); else @ok false. */
int kv_secret_put(struct kv_store *s, const char *path, const char *key_id,
		  const void *box, size_t len, bool cas, uint64_t cas_index,
		  uint64_t index, bool *ok) BCN_MUST_CHECK;
/* Delete @path, or everything under it with @tree. */
int kv_secret_delete(struct kv_store *s, const char *path, bool tree,
		     uint64_t index) BCN_MUST_CHECK;

/* ---- ACL tokens and policies (kv/acl.c) -----------------------------------
 *
 * Replicated as any state; the server module parses rules and decides.
 * Tokens are stored by a hash of their secret, never the secret itself. */

#define KV_ACL_ID_LEN	36
#define KV_ACL_HASH_LEN 32

struct kv_acl_token {
	char accessor[KV_ACL_ID_LEN + 1];
	unsigned char hash[KV_ACL_HASH_LEN];
	const char *description;
	const char *policies; /* packed policy IDs "a\0b\0" */
	size_t policies_len;
	bool management;
	uint64_t create_time_ms;
	uint64_t create_index, modify_index;
	void *mem_;
};

struct kv_acl_policy {
	char id[KV_ACL_ID_LEN + 1];
	const char *name, *description, *rules;
	uint64_t create_index, modify_index;
	void *mem_;
};

void kv_acl_token_close(struct kv_acl_token *t);
void kv_acl_policy_close(struct kv_acl_policy *p);

/* Look up: 0, BCN_ENOTFOUND, BCN_ENOMEM or BCN_EIO. */
int kv_acl_token_by_hash(struct kv_store *s,
			 const unsigned char hash[KV_ACL_HASH_LEN],
			 struct kv_acl_token *out) BCN_MUST_CHECK;
int kv_acl_token_get(struct kv_store *s, const char *accessor,
		     struct kv_acl_token *out) BCN_MUST_CHECK;
int kv_acl_policy_get(struct kv_store *s, const char *id_or_name, bool by_name,
		      struct kv_acl_policy *out) BCN_MUST_CHECK;
/* Every token or policy, by ID: @cb(@arg, item) for each; the item is
 * valid during the call only. */
int kv_acl_tokens(struct kv_store *s,
		  void (*cb)(void *arg, const struct kv_acl_token *t),
		  void *arg) BCN_MUST_CHECK;
int kv_acl_policies(struct kv_store *s,
		    void (*cb)(void *arg, const struct kv_acl_policy *p),
		    void *arg) BCN_MUST_CHECK;
/* The index at which ACLs were bootstrapped (0: never). */
int kv_acl_bootstrapped(struct kv_store *s, uint64_t *index) BCN_MUST_CHECK;
/* The ACL tables' index (last change, at least 1). */
int kv_acl_index(struct kv_store *s, uint64_t *index) BCN_MUST_CHECK;

enum kv_acl_op {
	KV_ACL_BOOTSTRAP = 1, /* @token, only if never bootstrapped */
	KV_ACL_TOKEN_SET,
	KV_ACL_TOKEN_DELETE,
	KV_ACL_POLICY_SET, /* fails if another policy has the name */
	KV_ACL_POLICY_DELETE,
	KV_ACL_OP_NR
};

/* Apply at @index; @ok false when refused (bootstrapped already, a name
 * taken, a token naming a policy that does not exist). */
int kv_acl_apply(struct kv_store *s, enum kv_acl_op op,
		 const struct kv_acl_token *token,
		 const struct kv_acl_policy *policy, uint64_t index,
		 bool *ok) BCN_MUST_CHECK;
