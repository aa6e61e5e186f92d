/* /v1/secret/<path> and /v1/operator/secrets: secrets sealed before they
 * enter the log (server/keyring.h), readable only by a server that holds
 * the key.
 *
 *   PUT    /v1/secret/<path>[?cas=N]  body: the value   → true/false
 *   GET    /v1/secret/<path>          → [{"Path","Value"(base64),"KeyID",
 *                                        "CreateIndex","ModifyIndex"}]
 *   GET    /v1/secret/<prefix>?keys   → ["path", ...] (names, never values)
 *   DELETE /v1/secret/<path>[?recurse] → true
 *   GET    /v1/operator/secrets       → {"KeyID", "Keys": {id: count}}
 *   PUT    /v1/operator/secrets/rotate → re-seal under the first key
 *
 * Reads take index/wait and the consistency modes as KV does. A value is
 * never logged, never in an error, never in metrics: error texts name the
 * path and the key ID at most. */
#include <sodium.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/parse.h"
#include "server/http.h"
#include "server/keyring.h"
#include "server/srv.h"

#define MOD "secret"

static struct kv_store *kv(struct http_req *r)
{
	return cluster_kv(r->srv->cluster);
}

/* Without a key this server cannot serve secrets: say so, every time. */
static bool have_keys(struct http_req *r)
{
	if (r->srv->keyring != NULL)
		return true;
	http_reply_text(r, 503,
			"Secrets are unavailable on this server: it was "
			"started without an encryption key "
			"(--encrypt-key-file or BEACON_ENCRYPT_KEY)");
	return false;
}

static const char *path_of(struct http_req *r, bool prefix)
{
	const char *why = NULL;

	if (kv_key_check(r->rest, r->rest_len, prefix, &why) != 0) {
		http_reply_text(r, 400, "%s", why);
		return NULL;
	}
	return r->rest;
}

static bool watch_secret(struct http_req *r, uint64_t index, const char *path,
			 bool exact)
{
	char mark[KV_MAX_KEY_LEN + 2];

	snprintf(mark, sizeof mark, "%s%s", KV_SECRET_MARK, path);
	return http_block_kv(r, index, mark, exact);
}

/* ---- reads
 * ------------------------------------------------------------------- */

static void secret_keys_read(struct http_req *r)
{
	struct kv_secret_list l = {0};
	struct bcn_buf b;
	uint64_t index;
	int rc = kv_secret_index(kv(r), NULL, &index);

	if (rc == 0 && watch_secret(r, index, r->rest, false))
		return;
	if (rc == 0)
		rc = kv_secret_list(kv(r), r->rest, false, &l);
	if (rc != 0) {
		http_reply_err(r, rc);
		goto out;
	}
	http_set_index(r, index);
	if (l.n == 0 && r->rest[0] != '\0') {
		http_reply(r, 404, NULL, "", 0);
		goto out;
	}
	bcn_buf_init(&b);
	bcn_buf_putc(&b, '[');
	for (size_t i = 0, n = 0; i < l.n; i++) {
		if (!acl_allows(&r->authz, ACL_SECRET, l.items[i].path,
				ACL_LIST)) {
			r->filtered = true;
			continue;
		}
		if (n++ > 0)
			bcn_buf_putc(&b, ',');
		bcn_buf_put_json_str(&b, l.items[i].path,
				     strlen(l.items[i].path));
	}
	bcn_buf_putc(&b, ']');
	http_reply_json(r, 200, &b);
out:
	kv_secret_list_close(&l);
}

static void secret_read(struct http_req *r)
{
	struct kv_secret sec;
	struct bcn_buf b;
	void *plain = NULL;
	size_t plen = 0;
	uint64_t index;
	int rc = kv_secret_index(kv(r), r->rest, &index);

	if (rc == 0 && watch_secret(r, index, r->rest, true))
		return;
	if (rc == 0)
		rc = kv_secret_get(kv(r), r->rest, &sec);
	if (rc == BCN_ENOTFOUND) {
		http_set_index(r, index);
		http_reply(r, 404, NULL, "", 0);
		return;
	}
	if (rc != 0) {
		http_reply_err(r, rc);
		return;
	}
	rc = keyring_open_box(r->srv->keyring, sec.path, sec.key_id, sec.box,
			      sec.box_len, &plain, &plen);
	if (rc == BCN_ENOTFOUND) {
		http_reply_text(r, 503,
				"Secret \"%s\" is sealed with key %s, which "
				"this server does not have",
				sec.path, sec.key_id);
	} else if (rc == BCN_ECORRUPT) {
		bcn_error(MOD, "secret %s does not open with key %s", sec.path,
			  sec.key_id);
		http_reply_text(r, 500,
				"Secret \"%s\" does not open with key %s: "
				"a different key with the same ID, or "
				"damaged data",
				sec.path, sec.key_id);
	} else if (rc != 0) {
		http_reply_err(r, rc);
	} else {
		bcn_buf_init(&b);
		bcn_buf_puts(&b, "[{\"Path\":");
		bcn_buf_put_json_str(&b, sec.path, strlen(sec.path));
		bcn_buf_puts(&b, ",\"Value\":");
		if (plen == 0) {
			bcn_buf_puts(&b, "null");
		} else if (bcn_buf_reserve(&b, bcn_b64_encoded_len(plen) + 2) ==
			   0) {
			bcn_buf_putc(&b, '"');
			bcn_b64_encode(plain, plen, b.data + b.len);
			b.len += bcn_b64_encoded_len(plen);
			bcn_buf_putc(&b, '"');
		}
		bcn_buf_printf(&b,
			       ",\"KeyID\":\"%s\",\"CreateIndex\":%llu,"
			       "\"ModifyIndex\":%llu}]",
			       sec.key_id, (unsigned long long)sec.create_index,
			       (unsigned long long)sec.modify_index);
		http_set_index(r, index);
		http_reply_json(r, 200, &b);
		/* The reply holds its own copy; wipe ours and the JSON. */
		sodium_memzero(b.data, b.cap);
		bcn_buf_close(&b);
	}
	if (plain != NULL) {
		sodium_memzero(plain, plen);
		bcn_free(plain);
	}
	kv_secret_close(&sec);
}

/* ---- writes
 * ------------------------------------------------------------------ */

static void written(struct http_req *r, int status)
{
	struct bcn_buf b;

	if (status != 0) {
		http_reply_err(r, status);
		return;
	}
	bcn_buf_init(&b);
	bcn_buf_puts(&b, r->creq.result.ok ? "true" : "false");
	http_reply_json(r, 200, &b);
}

static void propose_secret(struct http_req *r, enum cluster_secret_op op,
			   const char *path, const char *key_id,
			   const void *box, size_t len, bool cas,
			   uint64_t cas_index)
{
	int rc;

	r->write_done = written;
	r->creq.data = r;
	rc = http_propose_secret(r, op, path, key_id, box, len, cas, cas_index);
	(void)rc;
}

static void secret_put(struct http_req *r)
{
	char key_id[KV_SECRET_KEY_ID + 1];
	const char *path = path_of(r, false);
	uint64_t cas = 0;
	bool has_cas;
	void *box = NULL;
	size_t blen;
	int rc;

	if (path == NULL || !http_acl(r, ACL_SECRET, path, ACL_WRITE) ||
	    !http_arg_u64(r, "cas", &cas, &has_cas, "Invalid cas index") ||
	    !have_keys(r) || !http_write_ok(r))
		return;
	rc = keyring_seal(r->srv->keyring, path, r->body.data, r->body.len,
			  &box, &blen, key_id);
	/* The plaintext is sealed: wipe the request's copy now. */
	if (r->body.data != NULL)
		sodium_memzero(r->body.data, r->body.cap);
	if (rc != 0) {
		http_reply_err(r, rc);
		return;
	}
	propose_secret(r, CMD_SECRET_PUT, path, key_id, box, blen, has_cas,
		       cas);
	bcn_free(box);
}

static void secret_delete(struct http_req *r)
{
	bool tree = http_flag(r, "recurse");
	const char *path = path_of(r, tree);

	if (path == NULL || !http_acl(r, ACL_SECRET, path, ACL_WRITE) ||
	    !http_write_ok(r))
		return;
	propose_secret(r, tree ? CMD_SECRET_DELETE_TREE : CMD_SECRET_DELETE,
		       path, "", NULL, 0, false, 0);
}

void http_secret(struct http_req *r)
{
	switch (r->method) {
	case HTTP_GET:
		if (http_flag(r, "recurse")) {
			http_reply_text(r, 400,
					"Secrets are listed by name only: use "
					"?keys");
			return;
		}
		if (path_of(r, http_flag(r, "keys")) == NULL)
			return;
		if (http_flag(r, "keys"))
			http_read(r, secret_keys_read);
		else if (http_acl(r, ACL_SECRET, r->rest, ACL_READ) &&
			 have_keys(r))
			http_read(r, secret_read);
		break;
	case HTTP_PUT:
		secret_put(r);
		break;
	case HTTP_DELETE:
		secret_delete(r);
		break;
	default:
		http_method_not_allowed(r, HTTP_GET | HTTP_PUT | HTTP_DELETE);
	}
}

/* ---- rotation
 * ------------------------------------------------------------------ */

static void resealed(struct cluster_req *req, int status)
{
	if (status != 0)
		bcn_warn(MOD, "re-sealing a secret: %s", bcn_strerror(status));
	kv_result_close(&req->result);
	bcn_free(req);
}

/* Re-seal every secret not sealed with the first key; each write is a CAS
 * on the secret's index, so a concurrent update wins. */
static void rotate(struct http_req *r)
{
	const struct keyring *ring = r->srv->keyring;
	struct kv_secret_list l = {0};
	struct bcn_buf b;
	size_t resealing = 0, unreadable = 0;
	int rc;

	if (!have_keys(r) || !http_write_ok(r))
		return;
	rc = kv_secret_list(kv(r), "", true, &l);
	for (size_t i = 0; rc == 0 && i < l.n; i++) {
		const struct kv_secret *s = &l.items[i];
		char key_id[KV_SECRET_KEY_ID + 1];
		struct cluster_req *req;
		void *plain = NULL, *box = NULL;
		size_t plen, blen;
		if (strcmp(s->key_id, keyring_primary(ring)) == 0)
			continue;
		if (keyring_open_box(ring, s->path, s->key_id, s->box,
				     s->box_len, &plain, &plen) != 0) {
			unreadable++;
			continue;
		}
		rc = keyring_seal(ring, s->path, plain, plen, &box, &blen,
				  key_id);
		sodium_memzero(plain, plen);
		bcn_free(plain);
		req = rc == 0 ? bcn_calloc(1, sizeof *req) : NULL;
		if (req != NULL &&
		    cluster_propose_secret(r->srv->cluster, CMD_SECRET_PUT,
					   s->path, key_id, box, blen, true,
					   s->modify_index, req, resealed) == 0)
			resealing++;
		else
			bcn_free(req);
		bcn_free(box);
	}
	kv_secret_list_close(&l);
	if (rc != 0) {
		http_reply_err(r, rc);
		return;
	}
	bcn_info(MOD,
		 "rotating: re-sealing %zu secrets with key %s (%zu "
		 "sealed with keys this server lacks)",
		 resealing, keyring_primary(ring), unreadable);
	bcn_buf_init(&b);
	bcn_buf_printf(
	    &b, "{\"KeyID\":\"%s\",\"Resealing\":%zu,\"Unreadable\":%zu}",
	    keyring_primary(ring), resealing, unreadable);
	http_reply_json(r, 200, &b);
}

static void status_read(struct http_req *r)
{
	struct kv_secret_list l = {0};
	struct bcn_buf b;
	const char *primary = keyring_primary(r->srv->keyring);
	int rc = kv_secret_list(kv(r), "", false, &l);

	if (rc != 0) {
		http_reply_err(r, rc);
		return;
	}
	bcn_buf_init(&b);
	bcn_buf_puts(&b, "{\"KeyID\":");
	if (primary != NULL)
		bcn_buf_put_json_str(&b, primary, strlen(primary));
	else
		bcn_buf_puts(&b, "null");
	bcn_buf_puts(&b, ",\"Keys\":{");
	/* Count per key ID: few IDs, a linear scan per secret. */
	for (size_t i = 0, groups = 0; i < l.n; i++) {
		size_t n = 0;
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen =
			    strcmp(l.items[j].key_id, l.items[i].key_id) == 0;
		if (seen)
			continue;
		for (size_t j = i; j < l.n; j++)
			n += strcmp(l.items[j].key_id, l.items[i].key_id) == 0;
		bcn_buf_printf(&b, "%s\"%s\":%zu", groups++ > 0 ? "," : "",
			       l.items[i].key_id, n);
	}
	bcn_buf_puts(&b, "}}");
	kv_secret_list_close(&l);
	http_reply_json(r, 200, &b);
}

void http_op_secrets(struct http_req *r)
{
	if (strcmp(r->rest, "/rotate") == 0) {
		if (r->method != HTTP_PUT)
			http_method_not_allowed(r, HTTP_PUT);
		else
			rotate(r);
	} else if (r->rest[0] == '\0') {
		if (r->method != HTTP_GET)
			http_method_not_allowed(r, HTTP_GET);
		else
			http_read(r, status_read);
	} else {
		http_reply_text(r, 404,
				"Invalid URL path: not a recognized "
				"HTTP API endpoint");
	}
}
