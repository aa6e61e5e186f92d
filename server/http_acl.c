/* /v1/acl: bootstrap, tokens and policies (CONSUL-API.md §7).
 *
 *   PUT    /v1/acl/bootstrap            → the management token, once
 *   PUT    /v1/acl/token {"Description","Policies":[{"ID"|"Name"}]} GET
 * /v1/acl/token/:accessor, /v1/acl/token/self, /v1/acl/tokens DELETE
 * /v1/acl/token/:accessor PUT    /v1/acl/policy {"Name","Description","Rules"}
 *   GET    /v1/acl/policy/:id, /v1/acl/policy/name/:name, /v1/acl/policies
 *   DELETE /v1/acl/policy/:id
 *
 * Secrets are made on the leader from the system's CSPRNG and returned
 * once, when the token is created: the state keeps only their hash, so a
 * read of a token shows its accessor, never its secret. */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "server/http.h"
#include "server/json_member.h"
#include "server/srv.h"

#define BOOTSTRAP_DESC "Bootstrap Token (Global Management)"

static struct kv_store *kv(struct http_req *r)
{
	return cluster_kv(r->srv->cluster);
}

static void uuid(char out[KV_ACL_ID_LEN + 1])
{
	unsigned char b[16];

	randombytes_buf(b, sizeof b);
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, KV_ACL_ID_LEN + 1,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
		 "%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9],
		 b[10], b[11], b[12], b[13], b[14], b[15]);
	sodium_memzero(b, sizeof b);
}

/* ---- output ----------------------------------------------------------------
 */

static void put_time(struct bcn_buf *b, uint64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char when[40];

	gmtime_r(&t, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
	bcn_buf_printf(b, "\"%s.%03lluZ\"", when,
		       (unsigned long long)(ms % 1000));
}

/* A token; @secret only when it was just made. */
static void put_token(struct http_req *r, struct bcn_buf *b,
		      const struct kv_acl_token *t, const char *secret)
{
	bool first = true;

	bcn_buf_puts(b, "{\"AccessorID\":");
	bcn_buf_put_json_str(b, t->accessor, strlen(t->accessor));
	if (secret != NULL) {
		bcn_buf_puts(b, ",\"SecretID\":");
		bcn_buf_put_json_str(b, secret, strlen(secret));
		/* Legacy clients read "ID" as the secret. */
		bcn_buf_puts(b, ",\"ID\":");
		bcn_buf_put_json_str(b, secret, strlen(secret));
	}
	bcn_buf_puts(b, ",\"Description\":");
	bcn_buf_put_json_str(b, t->description, strlen(t->description));
	bcn_buf_puts(b, ",\"Policies\":[");
	if (t->management) {
		bcn_buf_puts(b, "{\"ID\":\"" ACL_GLOBAL_MGMT
				"\",\"Name\":\"global-management\"}");
		first = false;
	}
	for (size_t off = 0; off < t->policies_len;) {
		const char *id = t->policies + off;
		struct kv_acl_policy p;
		off += strlen(id) + 1;
		if (!first)
			bcn_buf_putc(b, ',');
		first = false;
		bcn_buf_puts(b, "{\"ID\":");
		bcn_buf_put_json_str(b, id, strlen(id));
		if (kv_acl_policy_get(kv(r), id, false, &p) == 0) {
			bcn_buf_puts(b, ",\"Name\":");
			bcn_buf_put_json_str(b, p.name, strlen(p.name));
			kv_acl_policy_close(&p);
		}
		bcn_buf_putc(b, '}');
	}
	bcn_buf_puts(b, "],\"Local\":false,\"CreateTime\":");
	put_time(b, t->create_time_ms);
	bcn_buf_printf(b, ",\"CreateIndex\":%llu,\"ModifyIndex\":%llu}",
		       (unsigned long long)t->create_index,
		       (unsigned long long)t->modify_index);
}

static void put_policy(struct bcn_buf *b, const struct kv_acl_policy *p)
{
	bcn_buf_puts(b, "{\"ID\":");
	bcn_buf_put_json_str(b, p->id, strlen(p->id));
	bcn_buf_puts(b, ",\"Name\":");
	bcn_buf_put_json_str(b, p->name, strlen(p->name));
	bcn_buf_puts(b, ",\"Description\":");
	bcn_buf_put_json_str(b, p->description, strlen(p->description));
	bcn_buf_puts(b, ",\"Rules\":");
	bcn_buf_put_json_str(b, p->rules, strlen(p->rules));
	bcn_buf_printf(b, ",\"CreateIndex\":%llu,\"ModifyIndex\":%llu}",
		       (unsigned long long)p->create_index,
		       (unsigned long long)p->modify_index);
}

/* ---- writes
 * -------------------------------------------------------------------- */

/* After a token write: the token as stored, with the secret made for it. */
static void token_written(struct http_req *r, int status)
{
	struct kv_acl_token t;
	struct bcn_buf b;
	int rc;

	if (status != 0) {
		http_reply_err(r, status);
		goto wipe;
	}
	if (!r->creq.result.ok) {
		uint64_t boot = 0;
		if (r->rest[0] == 'b' && kv_acl_bootstrapped(kv(r), &boot) == 0)
			http_reply_text(r, 403,
					"Permission denied: ACL bootstrap no "
					"longer allowed (reset index: %llu)",
					(unsigned long long)boot);
		else
			http_reply_text(r, 400,
					"Invalid token: a policy it names "
					"does not exist");
		goto wipe;
	}
	rc = kv_acl_token_get(kv(r), r->acl_accessor, &t);
	if (rc != 0) {
		http_reply_err(r, rc);
		goto wipe;
	}
	bcn_buf_init(&b);
	put_token(r, &b, &t, r->acl_secret);
	http_reply_json(r, 200, &b);
	kv_acl_token_close(&t);
wipe:
	sodium_memzero(r->acl_secret, sizeof r->acl_secret);
}

static void bootstrap(struct http_req *r)
{
	struct kv_acl_token t;
	uint64_t boot;
	int rc;

	if (!http_write_ok(r))
		return;
	rc = kv_acl_bootstrapped(kv(r), &boot);
	if (rc == 0 && boot != 0) {
		http_reply_text(r, 403,
				"Permission denied: ACL bootstrap no longer "
				"allowed (reset index: %llu)",
				(unsigned long long)boot);
		return;
	}
	memset(&t, 0, sizeof t);
	uuid(t.accessor);
	uuid(r->acl_secret);
	acl_hash_secret(r->acl_secret, t.hash);
	t.description = BOOTSTRAP_DESC;
	t.management = true;
	t.create_time_ms = srv_now_ms();
	snprintf(r->acl_accessor, sizeof r->acl_accessor, "%s", t.accessor);
	r->write_done = token_written;
	http_propose_acl(r, KV_ACL_BOOTSTRAP, &t, NULL);
}

/* Policies named by ID or by name in a token's body, as packed IDs. */
static bool token_policies(struct http_req *r, json_t *list,
			   struct bcn_buf *out)
{
	size_t i;
	json_t *e;

	if (list == NULL || json_is_null(list))
		return true;
	if (!json_is_array(list)) {
		http_reply_text(r, 400,
				"Request decode failed: Policies must "
				"be a list");
		return false;
	}
	json_array_foreach (list, i, e) {
		json_t *id =
		    json_is_object(e) ? srv_json_member(e, "ID") : NULL;
		json_t *name =
		    json_is_object(e) ? srv_json_member(e, "Name") : NULL;
		struct kv_acl_policy p;
		int rc;
		if (json_is_string(id) && json_string_value(id)[0] != '\0')
			rc = kv_acl_policy_get(kv(r), json_string_value(id),
					       false, &p);
		else if (json_is_string(name))
			rc = kv_acl_policy_get(kv(r), json_string_value(name),
					       true, &p);
		else
			rc = BCN_EINVAL;
		if (rc != 0) {
			http_reply_text(r, 400,
					"Invalid Policy: policy %zu does not "
					"exist",
					i);
			return false;
		}
		bcn_buf_put(out, p.id, strlen(p.id) + 1);
		kv_acl_policy_close(&p);
	}
	return true;
}

static void token_create(struct http_req *r)
{
	struct kv_acl_token t;
	struct bcn_buf pols;
	json_error_t err;
	json_t *root, *desc;

	if (!http_write_ok(r))
		return;
	root = json_loadb(r->body.data != NULL ? r->body.data : "{}",
			  r->body.len > 0 ? r->body.len : 2, 0, &err);
	if (!json_is_object(root)) {
		http_reply_text(r, 400, "Request decode failed: %s",
				root == NULL ? err.text : "expected an object");
		json_decref(root);
		return;
	}
	memset(&t, 0, sizeof t);
	bcn_buf_init(&pols);
	desc = srv_json_member(root, "Description");
	t.description = json_is_string(desc) ? json_string_value(desc) : "";
	if (token_policies(r, srv_json_member(root, "Policies"), &pols)) {
		uuid(t.accessor);
		uuid(r->acl_secret);
		acl_hash_secret(r->acl_secret, t.hash);
		t.policies = pols.data;
		t.policies_len = pols.len;
		t.create_time_ms = srv_now_ms();
		snprintf(r->acl_accessor, sizeof r->acl_accessor, "%s",
			 t.accessor);
		r->write_done = token_written;
		http_propose_acl(r, KV_ACL_TOKEN_SET, &t, NULL);
	}
	bcn_buf_close(&pols);
	json_decref(root);
}

static void deleted(struct http_req *r, int status)
{
	struct bcn_buf b;

	if (status != 0) {
		http_reply_err(r, status);
		return;
	}
	bcn_buf_init(&b);
	bcn_buf_puts(&b, "true");
	http_reply_json(r, 200, &b);
}

static void policy_written(struct http_req *r, int status)
{
	struct kv_acl_policy p;
	struct bcn_buf b;

	if (status != 0) {
		http_reply_err(r, status);
		return;
	}
	if (!r->creq.result.ok) {
		http_reply_text(r, 400,
				"Invalid Policy: a policy with this "
				"name already exists");
		return;
	}
	if (kv_acl_policy_get(kv(r), r->acl_accessor, false, &p) != 0) {
		http_reply_text(r, 500, "policy vanished");
		return;
	}
	bcn_buf_init(&b);
	put_policy(&b, &p);
	http_reply_json(r, 200, &b);
	kv_acl_policy_close(&p);
}

/* PUT /v1/acl/policy (create) or /v1/acl/policy/:id (update). */
static void policy_set(struct http_req *r, const char *id)
{
	struct kv_acl_policy p;
	struct acl_rules rules = {0};
	json_error_t err;
	json_t *root, *v;
	char why[300];

	if (!http_write_ok(r))
		return;
	root = json_loadb(r->body.data != NULL ? r->body.data : "", r->body.len,
			  0, &err);
	if (!json_is_object(root)) {
		http_reply_text(r, 400, "Request decode failed: %s",
				root == NULL ? err.text : "expected an object");
		json_decref(root);
		return;
	}
	memset(&p, 0, sizeof p);
	v = srv_json_member(root, "Name");
	p.name = json_is_string(v) ? json_string_value(v) : "";
	v = srv_json_member(root, "Description");
	p.description = json_is_string(v) ? json_string_value(v) : "";
	v = srv_json_member(root, "Rules");
	p.rules = json_is_string(v) ? json_string_value(v) : "";
	if (p.name[0] == '\0' || strlen(p.name) > 128) {
		http_reply_text(r, 400, "Invalid Policy: no name set");
	} else if (acl_rules_parse(p.rules, &rules, why, sizeof why) != 0) {
		http_reply_text(r, 400, "%s", why);
	} else {
		if (id != NULL)
			snprintf(p.id, sizeof p.id, "%s", id);
		else
			uuid(p.id);
		snprintf(r->acl_accessor, sizeof r->acl_accessor, "%s", p.id);
		r->write_done = policy_written;
		http_propose_acl(r, KV_ACL_POLICY_SET, NULL, &p);
	}
	acl_rules_close(&rules);
	json_decref(root);
}

/* ---- reads
 * ------------------------------------------------------------------------ */

static void list_token(void *arg, const struct kv_acl_token *t)
{
	struct http_req *r = arg;
	struct bcn_buf *b = (struct bcn_buf *)r->acl_list;

	if (b->len > 1)
		bcn_buf_putc(b, ',');
	put_token(r, b, t, NULL);
}

static void list_policy(void *arg, const struct kv_acl_policy *p)
{
	struct bcn_buf *b = arg;

	if (b->len > 1)
		bcn_buf_putc(b, ',');
	put_policy(b, p);
}

static void acl_read(struct http_req *r)
{
	const char *rest = r->rest;
	struct bcn_buf b;
	uint64_t index;
	int rc = kv_acl_index(kv(r), &index);

	bcn_buf_init(&b);
	if (rc == 0 && strcmp(rest, "tokens") == 0) {
		bcn_buf_putc(&b, '[');
		r->acl_list = &b;
		rc = kv_acl_tokens(kv(r), list_token, r);
		r->acl_list = NULL;
		bcn_buf_putc(&b, ']');
	} else if (rc == 0 && strcmp(rest, "policies") == 0) {
		bcn_buf_putc(&b, '[');
		rc = kv_acl_policies(kv(r), list_policy, &b);
		bcn_buf_putc(&b, ']');
	} else if (rc == 0 && strncmp(rest, "token/", 6) == 0) {
		struct kv_acl_token t;
		const char *acc = rest + 6;
		if (strcmp(acc, "self") == 0)
			acc = r->authz.accessor;
		rc = kv_acl_token_get(kv(r), acc, &t);
		if (rc == 0) {
			put_token(r, &b, &t, NULL);
			kv_acl_token_close(&t);
		}
	} else if (rc == 0 && strncmp(rest, "policy/", 7) == 0) {
		struct kv_acl_policy p;
		bool by_name = strncmp(rest + 7, "name/", 5) == 0;
		rc = kv_acl_policy_get(kv(r), rest + 7 + (by_name ? 5 : 0),
				       by_name, &p);
		if (rc == 0) {
			put_policy(&b, &p);
			kv_acl_policy_close(&p);
		}
	} else if (rc == 0) {
		rc = BCN_EINVAL;
	}
	if (rc == BCN_ENOTFOUND) {
		bcn_buf_close(&b);
		http_reply_text(r, 403, "ACL not found");
		return;
	}
	if (rc == BCN_EINVAL) {
		bcn_buf_close(&b);
		http_reply_text(r, 404,
				"Invalid URL path: not a recognized "
				"HTTP API endpoint");
		return;
	}
	if (rc != 0) {
		bcn_buf_close(&b);
		http_reply_err(r, rc);
		return;
	}
	http_set_index(r, index);
	http_reply_json(r, 200, &b);
}

void http_acl_route(struct http_req *r)
{
	const char *rest = r->rest;

	if (!r->srv->cfg->acl_enabled) {
		http_reply_text(r, 401, "ACL support disabled");
		return;
	}
	if (strcmp(rest, "bootstrap") == 0) {
		if (r->method != HTTP_PUT)
			http_method_not_allowed(r, HTTP_PUT);
		else
			bootstrap(r);
		return;
	}
	/* token/self: any valid token may read itself. */
	if (!(r->method == HTTP_GET && strcmp(rest, "token/self") == 0) &&
	    !http_acl(r, ACL_ACL, "",
		      r->method == HTTP_GET ? ACL_READ : ACL_WRITE))
		return;
	if (r->method == HTTP_GET) {
		if (strcmp(rest, "token/self") == 0 && r->authz.anonymous) {
			http_reply_text(r, 403, "ACL not found");
			return;
		}
		http_read(r, acl_read);
	} else if (r->method == HTTP_PUT && strcmp(rest, "token") == 0) {
		token_create(r);
	} else if (r->method == HTTP_PUT && strcmp(rest, "policy") == 0) {
		policy_set(r, NULL);
	} else if (r->method == HTTP_PUT && strncmp(rest, "policy/", 7) == 0) {
		policy_set(r, rest + 7);
	} else if (r->method == HTTP_DELETE &&
		   (strncmp(rest, "token/", 6) == 0 ||
		    strncmp(rest, "policy/", 7) == 0)) {
		struct kv_acl_token t;
		struct kv_acl_policy p;
		bool token = rest[0] == 't';
		if (!http_write_ok(r))
			return;
		memset(&t, 0, sizeof t);
		memset(&p, 0, sizeof p);
		snprintf(t.accessor, sizeof t.accessor, "%s", rest + 6);
		snprintf(p.id, sizeof p.id, "%s", rest + 7);
		r->write_done = deleted;
		http_propose_acl(
		    r, token ? KV_ACL_TOKEN_DELETE : KV_ACL_POLICY_DELETE, &t,
		    &p);
	} else {
		http_reply_text(r, 404,
				"Invalid URL path: not a recognized "
				"HTTP API endpoint");
	}
}
