/* /v1/kv and /v1/txn, as CONSUL-API.md §1, §2 and §6 describe them. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/parse.h"
#include "server/http.h"
#include "server/json_member.h"
#include "server/sessions.h"
#include "server/srv.h"

/* Append one DirEntry in Consul's field order. */
static void put_entry(struct bcn_buf *b, const struct kv_entry *e)
{
	bcn_buf_printf(b, "{\"LockIndex\":%llu,\"Key\":",
		       (unsigned long long)e->lock_index);
	bcn_buf_put_json_str(b, e->key, strlen(e->key));
	bcn_buf_printf(
	    b, ",\"Flags\":%llu,\"Value\":", (unsigned long long)e->flags);
	if (e->value_len == 0) {
		bcn_buf_puts(b, "null");
	} else if (bcn_buf_reserve(b, bcn_b64_encoded_len(e->value_len) + 2) ==
		   0) {
		bcn_buf_putc(b, '"');
		bcn_b64_encode(e->value, e->value_len, b->data + b->len);
		b->len += bcn_b64_encoded_len(e->value_len);
		bcn_buf_putc(b, '"');
	}
	bcn_buf_printf(b, ",\"CreateIndex\":%llu,\"ModifyIndex\":%llu",
		       (unsigned long long)e->create_index,
		       (unsigned long long)e->modify_index);
	if (e->session != NULL) {
		bcn_buf_puts(b, ",\"Session\":");
		bcn_buf_put_json_str(b, e->session, strlen(e->session));
	}
	bcn_buf_putc(b, '}');
}

/* Drop the entries this request's token may not read (ACLs). */
static void acl_filter(struct http_req *r, struct kv_list *l)
{
	size_t w = 0;

	for (size_t i = 0; i < l->n; i++) {
		if (http_acl_visible(r, ACL_KEY, l->items[i].key))
			l->items[w++] = l->items[i];
		else
			kv_entry_close(&l->items[i]);
	}
	l->n = w;
}

/* The key from the path, checked. Replies 400 and returns NULL if bad. */
static const char *path_key(struct http_req *r, bool prefix)
{
	const char *why = NULL;

	if (kv_key_check(r->rest, r->rest_len, prefix, &why) != 0) {
		http_reply_text(r, 400, "%s", why);
		return NULL;
	}
	return r->rest;
}

/* ---- GET ------------------------------------------------------------------
 */

static void kv_read_keys(struct http_req *r, const char *prefix)
{
	const struct http_arg *sep = http_arg(r, "separator");
	struct kv_list l = {0};
	struct bcn_buf b;
	uint64_t index;
	int rc;

	if (sep == NULL)
		sep = http_arg(r, "seperator"); /* Consul's legacy spelling */
	rc = kv_index(cluster_kv(r->srv->cluster), prefix, false, &index);
	if (rc == 0 && http_block_kv(r, index, prefix, false))
		return;
	if (rc == 0)
		rc = kv_keys(cluster_kv(r->srv->cluster), prefix,
			     sep != NULL ? sep->value : "", &l, &index);
	if (rc != 0) {
		http_reply_err(r, rc);
		goto out;
	}
	acl_filter(r, &l);
	http_set_index(r, index);
	if (l.n == 0 && prefix[0] != '\0') {
		http_reply(r, 404, NULL, "", 0);
		goto out;
	}
	bcn_buf_init(&b);
	bcn_buf_putc(&b, '[');
	for (size_t i = 0; i < l.n; i++) {
		if (i > 0)
			bcn_buf_putc(&b, ',');
		bcn_buf_put_json_str(&b, l.items[i].key,
				     strlen(l.items[i].key));
	}
	bcn_buf_putc(&b, ']');
	http_reply_json(r, 200, &b);
out:
	kv_list_close(&l);
}

static void kv_read_tree(struct http_req *r, const char *prefix)
{
	struct kv_list l = {0};
	struct bcn_buf b;
	uint64_t index;
	int rc;

	rc = kv_index(cluster_kv(r->srv->cluster), prefix, false, &index);
	if (rc == 0 && http_block_kv(r, index, prefix, false))
		return;
	if (rc == 0)
		rc = kv_list(cluster_kv(r->srv->cluster), prefix, false, &l,
			     &index);
	if (rc != 0) {
		http_reply_err(r, rc);
		goto out;
	}
	acl_filter(r, &l);
	http_set_index(r, index);
	if (l.n == 0) {
		http_reply(r, 404, NULL, "", 0);
		goto out;
	}
	bcn_buf_init(&b);
	bcn_buf_putc(&b, '[');
	for (size_t i = 0; i < l.n; i++) {
		if (i > 0)
			bcn_buf_putc(&b, ',');
		put_entry(&b, &l.items[i]);
	}
	bcn_buf_putc(&b, ']');
	http_reply_json(r, 200, &b);
out:
	kv_list_close(&l);
}

static void kv_read_one(struct http_req *r, const char *key)
{
	struct kv_entry e;
	struct bcn_buf b;
	uint64_t index;
	int rc;

	rc = kv_index(cluster_kv(r->srv->cluster), key, true, &index);
	if (rc == 0 && http_block_kv(r, index, key, true))
		return;
	if (rc == 0)
		rc = kv_get(cluster_kv(r->srv->cluster), key, &e, &index);
	if (rc == BCN_ENOTFOUND) {
		http_set_index(r, index);
		http_reply(r, 404, NULL, "", 0);
		return;
	}
	if (rc != 0) {
		http_reply_err(r, rc);
		return;
	}
	http_set_index(r, index);
	if (http_flag(r, "raw")) {
		/* Consul's raw mode: the bytes, served so that a browser
		 * never renders them. */
		http_reply(r, 200, "text/plain", e.value, e.value_len);
		http_add_header(r, "X-Content-Type-Options", "nosniff");
		http_add_header(r, "Content-Security-Policy", "sandbox");
	} else {
		bcn_buf_init(&b);
		bcn_buf_putc(&b, '[');
		put_entry(&b, &e);
		bcn_buf_putc(&b, ']');
		http_reply_json(r, 200, &b);
	}
	kv_entry_close(&e);
}

static void kv_read(struct http_req *r)
{
	bool keys = http_flag(r, "keys"), recurse = http_flag(r, "recurse");
	/* The key was checked before http_read(); re-reading it here keeps
	 * the function usable for the wake-ups of a blocking query. */
	if (keys)
		kv_read_keys(r, r->rest);
	else if (recurse)
		kv_read_tree(r, r->rest);
	else
		kv_read_one(r, r->rest);
}

/* ---- PUT / DELETE ---------------------------------------------------------
 */

static void kv_written(struct http_req *r, int status)
{
	if (status != 0) {
		http_reply_err(r, status);
		return;
	}
	if (!r->creq.result.ok &&
	    strncmp(r->creq.result.what, "invalid session", 15) == 0) {
		/* Consul answers an unknown session with 500. */
		http_reply_text(r, 500, "%s", r->creq.result.what);
		return;
	}
	struct bcn_buf b;
	bcn_buf_init(&b);
	bcn_buf_puts(&b, r->creq.result.ok ? "true" : "false");
	http_reply_json(r, 200, &b);
}

static bool conflicting(struct http_req *r, const char *const *names, size_t n)
{
	size_t count = 0;

	for (size_t i = 0; i < n; i++)
		count += http_flag(r, names[i]);
	if (count > 1) {
		const char *q = strchr(r->raw_uri, '?');
		http_reply_text(r, 400, "Conflicting flags: %s",
				q != NULL ? q + 1 : "");
		return true;
	}
	return false;
}

/* ---- ?ttl: keys that vanish unless refreshed (Beacon's extension) -------
 *
 * PUT /v1/kv/<key>?ttl=30s writes the key held by a session of its own
 * (named "kv-ttl:<key>", TTL as given, behavior delete, no checks); the
 * same PUT again refreshes it (renews the session, writes the value). The
 * key is deleted 1.5 × TTL after the last refresh (never before the TTL,
 * within 2 × TTL), by the session machinery. */

#define TTL_SESSION_PREFIX "kv-ttl:"

/* The session that keeps @key alive, if any: the key's holder, when it is
 * the key's own TTL session (a lock by another session is not one). */
static bool ttl_session_of(struct http_req *r, const char *key, char *id)
{
	struct kv_store *kv = cluster_kv(r->srv->cluster);
	struct kv_entry e;
	struct kv_session sess;
	size_t plen = strlen(TTL_SESSION_PREFIX);
	bool found = false;

	if (kv_get(kv, key, &e, NULL) != 0)
		return false;
	if (e.session != NULL && kv_session_get(kv, e.session, &sess) == 0) {
		found = strncmp(sess.name, TTL_SESSION_PREFIX, plen) == 0 &&
			strcmp(sess.name + plen, key) == 0;
		if (found)
			snprintf(id, KV_SESSION_ID_LEN + 1, "%s", sess.id);
		kv_session_close(&sess);
	}
	kv_entry_close(&e);
	return found;
}

/* Write @key held by session @sid (the refresh, or after the create). */
static void ttl_write(struct http_req *r, const char *sid)
{
	struct kv_op op = {.verb = KV_LOCK};

	op.key = r->rest;
	op.session = sid;
	op.now_ms = srv_now_ms();
	op.value = r->body.data;
	op.value_len = r->body.len;
	(void)http_arg_u64(r, "flags", &op.flags, NULL, "Invalid flags");
	r->creq.no_entries = true;
	http_propose(r, &op, 1, kv_written);
}

static void ttl_session_made(struct http_req *r, int status)
{
	if (status != 0 || !r->creq.result.ok) {
		http_reply_err(r, status != 0 ? status : BCN_EINTERNAL);
		return;
	}
	kv_result_close(&r->creq.result);
	ttl_write(r, r->session_id);
}

static void kv_put_ttl(struct http_req *r, const char *key, uint64_t ttl_ms)
{
	struct kv_session sess;
	char name[KV_MAX_KEY_LEN + 16];
	char sid[KV_SESSION_ID_LEN + 1];

	if (ttl_session_of(r, key, sid) && sessions_renew(r->srv, sid) == 0) {
		snprintf(r->session_id, sizeof r->session_id, "%s", sid);
		ttl_write(r, r->session_id);
		return;
	}
	memset(&sess, 0, sizeof sess);
	srv_session_uuid(r->srv, sess.id);
	snprintf(name, sizeof name, "%s%s", TTL_SESSION_PREFIX, key);
	sess.name = name;
	sess.node = r->srv->cfg->node;
	sess.behavior = KV_BEHAVIOR_DELETE;
	sess.ttl_ms = ttl_ms;
	snprintf(r->session_id, sizeof r->session_id, "%s", sess.id);
	http_propose_session(r, CMD_SESSION_CREATE, &sess, ttl_session_made);
}

static void kv_put(struct http_req *r)
{
	static const char *const excl[] = {"cas", "acquire", "release"};
	struct kv_op op = {0};
	bool has_cas;
	const char *key;

	if (conflicting(r, excl, 3))
		return;
	if (http_flag(r, "acquire") || http_flag(r, "release")) {
		const struct http_arg *a = http_arg(r, "acquire");
		op.verb = a != NULL ? KV_LOCK : KV_UNLOCK;
		if (a == NULL)
			a = http_arg(r, "release");
		if (!http_session_id_ok(a->value)) {
			http_reply_text(r, 400, "Invalid session ID: \"%s\"",
					a->value);
			return;
		}
		op.session = a->value;
	}
	key = path_key(r, false);
	if (key == NULL || !http_acl(r, ACL_KEY, key, ACL_WRITE))
		return;
	if (!http_arg_u64(r, "flags", &op.flags, NULL, "Invalid flags") ||
	    !http_arg_u64(r, "cas", &op.index, &has_cas, "Invalid cas index"))
		return;
	if (http_arg(r, "ttl") != NULL) {
		uint64_t ttl_ms;
		if (op.session != NULL || has_cas) {
			http_reply_text(r, 400,
					"?ttl cannot be combined with "
					"?cas, ?acquire or ?release");
			return;
		}
		if (bcn_parse_duration_ms(http_arg(r, "ttl")->value, &ttl_ms) !=
			0 ||
		    ttl_ms < 10000 || ttl_ms > 86400000) {
			http_reply_text(r, 400,
					"Invalid ttl: a duration from "
					"10s to 24h");
			return;
		}
		if (http_write_ok(r))
			kv_put_ttl(r, key, ttl_ms);
		return;
	}
	if (!http_write_ok(r))
		return;
	if (op.session == NULL)
		op.verb = has_cas ? KV_CAS : KV_SET;
	op.now_ms = srv_now_ms();
	op.key = key;
	r->creq.no_entries = true; /* true/false is the whole answer */
	op.value = r->body.data;
	op.value_len = r->body.len;
	http_propose(r, &op, 1, kv_written);
}

static void kv_delete(struct http_req *r)
{
	static const char *const excl[] = {"cas", "recurse"};
	struct kv_op op = {0};
	bool recurse = http_flag(r, "recurse"), has_cas;
	const char *key;

	if (conflicting(r, excl, 2))
		return;
	key = path_key(r, recurse);
	if (key == NULL || !http_acl(r, ACL_KEY, key, ACL_WRITE))
		return;
	if (!http_arg_u64(r, "cas", &op.index, &has_cas, "Invalid cas index"))
		return;
	if (!http_write_ok(r))
		return;
	op.verb = recurse   ? KV_DELETE_TREE
		  : has_cas ? KV_DELETE_CAS
			    : KV_DELETE;
	op.key = key;
	r->creq.no_entries = true;
	http_propose(r, &op, 1, kv_written);
}

void http_kv(struct http_req *r)
{
	switch (r->method) {
	case HTTP_GET:
		if (path_key(r, http_flag(r, "keys") ||
				    http_flag(r, "recurse")) == NULL)
			return;
		/* One key: its read right; a listing is filtered instead. */
		if (!http_flag(r, "keys") && !http_flag(r, "recurse") &&
		    !http_acl(r, ACL_KEY, r->rest, ACL_READ))
			return;
		http_read(r, kv_read);
		break;
	case HTTP_PUT:
		kv_put(r);
		break;
	case HTTP_DELETE:
		kv_delete(r);
		break;
	default:
		http_reply_text(r, 405, "method %s not allowed", r->method_str);
	}
}

/* ---- /v1/txn --------------------------------------------------------------
 */

struct txn {
	struct kv_op ops[KV_MAX_TXN_OPS];
	void *values[KV_MAX_TXN_OPS]; /* decoded base64, owned */
	size_t n;
	bool writes;
};

static void txn_close(struct txn *t)
{
	for (size_t i = 0; i < t->n; i++)
		bcn_free(t->values[i]);
}

static bool get_u64(json_t *v, uint64_t *out)
{
	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return false;
	*out = (uint64_t)json_integer_value(v);
	return true;
}

/* Parse the body into @t. Replies and returns false on bad input. The ops'
 * keys point into @root. */
static bool txn_parse(struct http_req *r, json_t *root, struct txn *t)
{
	size_t i;
	json_t *item;

	if (!json_is_array(root)) {
		http_reply_text(r, 400,
				"Failed to parse body: expected a "
				"JSON array of operations");
		return false;
	}
	if (json_array_size(root) > KV_MAX_TXN_OPS) {
		http_reply_text(r, 413,
				"Transaction contains too many operations "
				"(%zu > %d)",
				json_array_size(root), KV_MAX_TXN_OPS);
		return false;
	}
	json_array_foreach (root, i, item) {
		struct kv_op *op = &t->ops[i];
		json_t *kv =
		    json_is_object(item) ? srv_json_member(item, "KV") : NULL;
		json_t *verb, *key, *val;
		const char *why = NULL;

		if (kv == NULL || !json_is_object(kv)) {
			http_reply_text(r, 400,
					"Failed to parse body: "
					"operation %zu: only KV "
					"operations are supported",
					i);
			return false;
		}
		verb = srv_json_member(kv, "Verb");
		key = srv_json_member(kv, "Key");
		val = srv_json_member(kv, "Value");
		op->verb = json_is_string(verb)
			       ? kv_verb_parse(json_string_value(verb))
			       : 0;
		if (op->verb == 0) {
			http_reply_text(r, 400,
					"Failed to parse body: "
					"operation %zu: unknown or "
					"unsupported verb",
					i);
			return false;
		}
		op->key = json_is_string(key) ? json_string_value(key) : "";
		if (kv_key_check(op->key, strlen(op->key),
				 op->verb == KV_GET_TREE ||
				     op->verb == KV_DELETE_TREE,
				 &why) != 0) {
			http_reply_text(r, 400,
					"Failed to parse body: "
					"operation %zu: %s",
					i, why);
			return false;
		}
		if (op->verb == KV_LOCK || op->verb == KV_UNLOCK ||
		    op->verb == KV_CHECK_SESSION) {
			json_t *sess = srv_json_member(kv, "Session");
			op->session =
			    json_is_string(sess) ? json_string_value(sess) : "";
			if (!http_session_id_ok(op->session)) {
				http_reply_text(r, 400,
						"Failed to parse body: "
						"operation %zu: invalid "
						"Session",
						i);
				return false;
			}
		}
		if (!get_u64(srv_json_member(kv, "Flags"), &op->flags) ||
		    !get_u64(srv_json_member(kv, "Index"), &op->index)) {
			http_reply_text(r, 400,
					"Failed to parse body: "
					"operation %zu: Flags and "
					"Index must be unsigned "
					"integers",
					i);
			return false;
		}
		if (val != NULL && !json_is_null(val)) {
			const char *s =
			    json_is_string(val) ? json_string_value(val) : NULL;
			size_t slen = s != NULL ? strlen(s) : 0;
			long n;
			if (s == NULL) {
				http_reply_text(r, 400,
						"Failed to parse "
						"body: operation %zu: "
						"Value must be base64",
						i);
				return false;
			}
			if (slen / 4 * 3 > KV_MAX_VALUE_LEN + 3) {
				http_reply_text(r, 413,
						"Value for key \"%s\" is too "
						"large (%zu > %d bytes)",
						op->key, slen / 4 * 3,
						KV_MAX_VALUE_LEN);
				return false;
			}
			t->values[i] = bcn_malloc(slen / 4 * 3 + 3);
			if (t->values[i] == NULL) {
				http_reply_text(r, 500, "Out of memory");
				t->n = i;
				return false;
			}
			n = bcn_b64_decode(s, slen, t->values[i]);
			if (n < 0) {
				t->n = i + 1;
				http_reply_text(r, 400,
						"Failed to parse "
						"body: operation %zu: "
						"Value is not valid "
						"base64",
						i);
				return false;
			}
			if ((size_t)n > KV_MAX_VALUE_LEN) {
				t->n = i + 1;
				http_reply_text(r, 413,
						"Value for key \"%s\" is too "
						"large (%ld > %d bytes)",
						op->key, n, KV_MAX_VALUE_LEN);
				return false;
			}
			op->value = t->values[i];
			op->value_len = (size_t)n;
		}
		t->n = i + 1;
		t->writes |= kv_verb_writes(op->verb);
		if (!http_acl(r, ACL_KEY, op->key,
			      kv_verb_writes(op->verb) ? ACL_WRITE : ACL_READ))
			return false;
	}
	return true;
}

static void txn_answer(struct http_req *r, const struct kv_result *res)
{
	struct bcn_buf b;

	bcn_buf_init(&b);
	if (!res->ok) {
		bcn_buf_printf(&b,
			       "{\"Results\":null,\"Errors\":[{\"OpIndex\":%zu,"
			       "\"What\":",
			       res->failed_op);
		bcn_buf_put_json_str(&b, res->what, strlen(res->what));
		bcn_buf_puts(&b, "}]}");
		http_reply_json(r, 409, &b);
		return;
	}
	bcn_buf_puts(&b, "{\"Results\":[");
	for (size_t i = 0; i < res->entries.n; i++) {
		if (i > 0)
			bcn_buf_putc(&b, ',');
		bcn_buf_puts(&b, "{\"KV\":");
		put_entry(&b, &res->entries.items[i]);
		bcn_buf_putc(&b, '}');
	}
	bcn_buf_puts(&b, "],\"Errors\":null}");
	http_reply_json(r, 200, &b);
}

static void txn_written(struct http_req *r, int status)
{
	if (status != 0)
		http_reply_err(r, status);
	else
		txn_answer(r, &r->creq.result);
}

/* A read-only transaction is answered from local state, like a read. */
static void txn_read(struct http_req *r)
{
	json_error_t jerr;
	json_t *root = json_loadb(r->body.data != NULL ? r->body.data : "",
				  r->body.len, 0, &jerr);
	struct kv_result res;
	struct txn t = {0};
	int rc;

	if (root == NULL || !txn_parse(r, root, &t))
		goto out;
	kv_result_init(&res);
	rc = kv_apply(cluster_kv(r->srv->cluster), t.ops, t.n, 0, &res);
	if (rc != 0)
		http_reply_err(r, rc);
	else
		txn_answer(r, &res);
	kv_result_close(&res);
out:
	txn_close(&t);
	json_decref(root);
}

void http_txn(struct http_req *r)
{
	json_error_t jerr;
	json_t *root;
	struct txn t = {0};

	root = json_loadb(r->body.data != NULL ? r->body.data : "", r->body.len,
			  0, &jerr);
	if (root == NULL) {
		http_reply_text(r, 400, "Failed to parse body: %s", jerr.text);
		return;
	}
	if (!txn_parse(r, root, &t))
		goto out;
	if (t.n == 0) {
		http_reply_text(r, 400,
				"Failed to parse body: the "
				"transaction has no operations");
		goto out;
	}
	if (!t.writes) {
		/* Parsed again in txn_read, which may run after a barrier. */
		http_read(r, txn_read);
		goto out;
	}
	if (http_write_ok(r)) {
		for (size_t i = 0; i < t.n; i++)
			t.ops[i].now_ms = srv_now_ms();
		http_propose(r, t.ops, t.n, txn_written);
	}
out:
	txn_close(&t);
	json_decref(root);
}
