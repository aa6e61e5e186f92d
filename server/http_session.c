/* /v1/session, as CONSUL-API.md §1 and §6 describe it. */
#include <jansson.h>
#include <microhttpd.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "common/alloc.h"
#include "common/parse.h"
#include "server/forward.h"
#include "server/http.h"
#include "server/json_member.h"
#include "server/sessions.h"
#include "server/srv.h"

#define LOCK_DELAY_DEFAULT_MS 15000
#define LOCK_DELAY_MAX_MS     60000
#define TTL_MIN_MS	      10000
#define TTL_MAX_MS	      86400000
#define MAX_SESSION_CHECKS    32

uint64_t srv_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

bool http_session_id_ok(const char *id)
{
	if (id == NULL || strlen(id) != KV_SESSION_ID_LEN)
		return false;
	for (int i = 0; i < KV_SESSION_ID_LEN; i++) {
		char c = id[i];
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? c != '-'
			 : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
			     (c >= 'A' && c <= 'F')))
			return false;
	}
	return true;
}

static struct kv_store *kv(struct http_req *r)
{
	return cluster_kv(r->srv->cluster);
}

/* The node this request acts for (the agent: see http_catalog.c). */
static const char *agent_node(struct http_req *r)
{
	const char *fwd =
	    MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, FWD_HEADER);

	return fwd != NULL && fwd[0] != '\0' ? fwd : r->srv->cfg->node;
}

/* ---- output
 * ------------------------------------------------------------------ */

static void put_ids(struct bcn_buf *b, const char *p, size_t len, bool objs)
{
	bool first = true;

	if (len == 0) {
		bcn_buf_puts(b, objs ? "null" : "[]");
		return;
	}
	bcn_buf_putc(b, '[');
	for (size_t off = 0; off < len;) {
		const char *id = p + off;
		off += strlen(id) + 1;
		if (!first)
			bcn_buf_putc(b, ',');
		first = false;
		if (objs)
			bcn_buf_puts(b, "{\"ID\":");
		bcn_buf_put_json_str(b, id, strlen(id));
		if (objs)
			bcn_buf_puts(b, ",\"Namespace\":\"\"}");
	}
	bcn_buf_putc(b, ']');
}

static void put_session(struct bcn_buf *b, const struct kv_session *s)
{
	bcn_buf_puts(b, "{\"ID\":");
	bcn_buf_put_json_str(b, s->id, strlen(s->id));
	bcn_buf_puts(b, ",\"Name\":");
	bcn_buf_put_json_str(b, s->name, strlen(s->name));
	bcn_buf_puts(b, ",\"Node\":");
	bcn_buf_put_json_str(b, s->node, strlen(s->node));
	bcn_buf_printf(b, ",\"LockDelay\":%llu,\"Behavior\":\"%s\",\"TTL\":",
		       (unsigned long long)s->lock_delay_ms * 1000000ULL,
		       s->behavior == KV_BEHAVIOR_DELETE ? "delete"
							 : "release");
	if (s->ttl_ms > 0)
		http_put_duration(b, s->ttl_ms);
	else
		bcn_buf_puts(b, "\"\"");
	bcn_buf_puts(b, ",\"NodeChecks\":");
	put_ids(b, s->node_checks, s->node_checks_len, false);
	bcn_buf_puts(b, ",\"ServiceChecks\":");
	put_ids(b, s->service_checks, s->service_checks_len, true);
	bcn_buf_printf(b, ",\"CreateIndex\":%llu,\"ModifyIndex\":%llu}",
		       (unsigned long long)s->create_index,
		       (unsigned long long)s->modify_index);
}

static void reply_list(struct http_req *r, const struct kv_session_list *l,
		       uint64_t index)
{
	struct bcn_buf b;

	bcn_buf_init(&b);
	bcn_buf_putc(&b, '[');
	for (size_t i = 0; i < l->n; i++) {
		if (i > 0)
			bcn_buf_putc(&b, ',');
		put_session(&b, &l->items[i]);
	}
	bcn_buf_putc(&b, ']');
	http_set_index(r, index);
	http_reply_json(r, 200, &b);
}

/* ---- create
 * ------------------------------------------------------------------ */

/* A duration member: a Go duration string, or a number of nanoseconds. */
static bool dur_member(json_t *root, const char *name, uint64_t *ms,
		       bool *present)
{
	json_t *v = root != NULL ? srv_json_member(root, name) : NULL;

	*present = v != NULL && !json_is_null(v);
	if (!*present)
		return true;
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*ms = (uint64_t)json_integer_value(v) / 1000000;
		return true;
	}
	if (json_is_string(v)) {
		if (json_string_value(v)[0] == '\0') {
			*present = false;
			return true;
		}
		return bcn_parse_duration_ms(json_string_value(v), ms) == 0;
	}
	return false;
}

/* Pack a JSON list of check IDs (strings, or objects with "ID") into @b. */
static bool pack_checks(json_t *v, struct bcn_buf *b, size_t *n)
{
	size_t i;
	json_t *e;

	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_array(v))
		return false;
	json_array_foreach (v, i, e) {
		json_t *id = json_is_object(e) ? srv_json_member(e, "ID") : e;
		const char *s =
		    json_is_string(id) ? json_string_value(id) : NULL;
		if (s == NULL || s[0] == '\0' || strlen(s) > 512 ||
		    ++*n > MAX_SESSION_CHECKS)
			return false;
		bcn_buf_put(b, s, strlen(s) + 1);
	}
	return true;
}

void srv_session_uuid(struct srv *s, char out[KV_SESSION_ID_LEN + 1])
{
	uint8_t b[16];

	if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
		/* No entropy source: fall back to the jitter generator,
		 * still unique enough for an ID (not a secret). */
		for (size_t i = 0; i < sizeof b; i += 8) {
			uint64_t x = srv_random(s);
			memcpy(b + i, &x, 8);
		}
	}
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	snprintf(out, KV_SESSION_ID_LEN + 1,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
		 "%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9],
		 b[10], b[11], b[12], b[13], b[14], b[15]);
}

static void created(struct http_req *r, int status)
{
	struct bcn_buf b;

	if (status != 0) {
		http_reply_err(r, status);
		return;
	}
	if (!r->creq.result.ok) {
		http_reply_text(r, 500, "Session ID collision; try again");
		return;
	}
	bcn_buf_init(&b);
	bcn_buf_puts(&b, "{\"ID\":");
	bcn_buf_put_json_str(&b, r->session_id, strlen(r->session_id));
	bcn_buf_putc(&b, '}');
	http_reply_json(r, 200, &b);
}

/* Consul refuses a session whose node or checks are missing or critical. */
static bool checks_usable(struct http_req *r, const char *node,
			  const struct bcn_buf *l)
{
	struct cat_store *cat = cluster_cat(r->srv->cluster);
	struct cat_rows rows = {0};
	bool ok = true;

	if (cat_node(cat, node, &rows) != 0) {
		http_reply_text(r, 500, "Missing node registration");
		ok = false;
	}
	for (size_t off = 0; ok && off < l->len;) {
		const char *id = l->data + off;
		off += strlen(id) + 1;
		if (cat_check(cat, node, id, &rows) != 0) {
			http_reply_text(r, 500,
					"Missing check '%s' registration", id);
			ok = false;
		} else if (rows.chks[rows.n_chks - 1].status == CAT_CRITICAL) {
			http_reply_text(r, 500,
					"Check '%s' is in critical state", id);
			ok = false;
		}
	}
	cat_rows_close(&rows);
	return ok;
}

static void session_create(struct http_req *r)
{
	struct kv_session s;
	struct bcn_buf nchecks, schecks;
	json_t *root = NULL, *v;
	json_error_t err;
	const char *name = "", *node = agent_node(r), *behavior = "release";
	bool present, has_checks = false;
	size_t n = 0;

	memset(&s, 0, sizeof s);
	bcn_buf_init(&nchecks);
	bcn_buf_init(&schecks);
	if (!http_write_ok(r))
		return;
	if (r->body.len > 0) {
		root = json_loadb(r->body.data, r->body.len, JSON_DECODE_ANY,
				  &err);
		if (root == NULL || !json_is_object(root)) {
			http_reply_text(r, 400, "Request decode failed: %s",
					root == NULL ? err.text
						     : "expected an object");
			goto out;
		}
	}
#define STR_MEMBER(field, var)                                               \
	do {                                                                 \
		v = root != NULL ? srv_json_member(root, field) : NULL;      \
		if (v != NULL && !json_is_null(v)) {                         \
			if (!json_is_string(v)) {                            \
				http_reply_text(r, 400,                      \
						"Request decode failed: %s " \
						"must be a string",          \
						field);                      \
				goto out;                                    \
			}                                                    \
			if (json_string_value(v)[0] != '\0')                 \
				var = json_string_value(v);                  \
		}                                                            \
	} while (0)
	STR_MEMBER("Name", name);
	STR_MEMBER("Node", node);
	STR_MEMBER("Behavior", behavior);
#undef STR_MEMBER
	if (strcmp(behavior, "release") != 0 &&
	    strcmp(behavior, "delete") != 0) {
		http_reply_text(r, 400, "Invalid Behavior setting '%s'",
				behavior);
		goto out;
	}
	s.behavior =
	    behavior[0] == 'd' ? KV_BEHAVIOR_DELETE : KV_BEHAVIOR_RELEASE;
	s.lock_delay_ms = LOCK_DELAY_DEFAULT_MS;
	if (!dur_member(root, "LockDelay", &s.lock_delay_ms, &present)) {
		http_reply_text(r, 400,
				"Request decode failed: LockDelay: "
				"invalid duration");
		goto out;
	}
	if (s.lock_delay_ms > LOCK_DELAY_MAX_MS) {
		http_reply_text(r, 400, "Invalid LockDelay: at most 60s");
		goto out;
	}
	v = root != NULL ? srv_json_member(root, "TTL") : NULL;
	if (v != NULL && !json_is_null(v) && !json_is_string(v)) {
		/* Consul's TTL is a string ("30s"), never a number. */
		http_reply_text(r, 400,
				"Request decode failed: TTL must be a "
				"duration string such as \"30s\"");
		goto out;
	}
	if (!dur_member(root, "TTL", &s.ttl_ms, &present)) {
		http_reply_text(r, 400,
				"Request decode failed: TTL: invalid "
				"duration");
		goto out;
	}
	if (present && s.ttl_ms != 0 &&
	    (s.ttl_ms < TTL_MIN_MS || s.ttl_ms > TTL_MAX_MS)) {
		v = srv_json_member(root, "TTL");
		http_reply_text(r, 400,
				"Invalid Session TTL '%s', must be between "
				"[10s=24h0m0s]",
				json_is_string(v) ? json_string_value(v) : "?");
		goto out;
	}
	/* Checks (legacy) and NodeChecks are node checks; without either,
	 * the node's serfHealth, as Consul does. */
	v = root != NULL ? srv_json_member(root, "NodeChecks") : NULL;
	if (v == NULL || json_is_null(v))
		v = root != NULL ? srv_json_member(root, "Checks") : NULL;
	has_checks = v != NULL && !json_is_null(v);
	if (!pack_checks(v, &nchecks, &n) ||
	    !pack_checks(root != NULL ? srv_json_member(root, "ServiceChecks")
				      : NULL,
			 &schecks, &n)) {
		http_reply_text(r, 400,
				"Request decode failed: checks must be "
				"a list of check IDs (at most 32)");
		goto out;
	}
	if (!has_checks)
		bcn_buf_put(&nchecks, CAT_NODE_CHECK, sizeof CAT_NODE_CHECK);
	if (strlen(name) > 4096 || strlen(node) > CAT_MAX_NAME ||
	    bcn_buf_failed(&nchecks) || bcn_buf_failed(&schecks)) {
		http_reply_text(r, 400,
				"Invalid session: name or node too "
				"long");
		goto out;
	}
	if (!http_acl(r, ACL_SESSION, node, ACL_WRITE) ||
	    !checks_usable(r, node, &nchecks) ||
	    !checks_usable(r, node, &schecks))
		goto out;
	s.name = name;
	s.node = node;
	s.node_checks = nchecks.data;
	s.node_checks_len = nchecks.len;
	s.service_checks = schecks.data;
	s.service_checks_len = schecks.len;
	srv_session_uuid(r->srv, s.id);
	snprintf(r->session_id, sizeof r->session_id, "%s", s.id);
	http_propose_session(r, CMD_SESSION_CREATE, &s, created);
out:
	bcn_buf_close(&nchecks);
	bcn_buf_close(&schecks);
	json_decref(root);
}

/* ---- destroy, renew, reads
 * ---------------------------------------------------- */

static void destroyed(struct http_req *r, int status)
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

/* The session's node's write right; a missing session needs none. */
static bool session_acl(struct http_req *r, const char *id)
{
	struct kv_session s;
	bool ok;

	if (kv_session_get(kv(r), id, &s) != 0)
		return true;
	ok = http_acl(r, ACL_SESSION, s.node, ACL_WRITE);
	kv_session_close(&s);
	return ok;
}

static void session_destroy(struct http_req *r, const char *id)
{
	struct kv_session s;

	if (!http_write_ok(r))
		return;
	if (!http_session_id_ok(id)) {
		http_reply_text(r, 400, "Invalid session ID: \"%s\"", id);
		return;
	}
	if (!session_acl(r, id))
		return;
	memset(&s, 0, sizeof s);
	snprintf(s.id, sizeof s.id, "%s", id);
	http_propose_session(r, CMD_SESSION_DESTROY, &s, destroyed);
}

static void session_renew(struct http_req *r, const char *id)
{
	struct kv_session s;
	struct bcn_buf b;
	int rc;

	if (!http_write_ok(r) ||
	    (http_session_id_ok(id) && !session_acl(r, id)))
		return;
	rc =
	    http_session_id_ok(id) ? sessions_renew(r->srv, id) : BCN_ENOTFOUND;
	if (rc == BCN_ENOTFOUND) {
		http_reply_text(r, 404, "Session id '%s' not found", id);
		return;
	}
	if (rc == 0)
		rc = kv_session_get(kv(r), id, &s);
	if (rc != 0) {
		http_reply_err(r, rc);
		return;
	}
	bcn_buf_init(&b);
	bcn_buf_putc(&b, '[');
	put_session(&b, &s);
	bcn_buf_putc(&b, ']');
	http_reply_json(r, 200, &b);
	kv_session_close(&s);
}

/* info/:id, node/:node, list: blocking on the sessions' index. */
static void session_read(struct http_req *r)
{
	struct kv_session_list l = {0};
	uint64_t index;
	int rc = kv_session_index(kv(r), &index);

	if (rc == 0 && http_block_kv(r, index, KV_SESSIONS_KEY, true))
		return;
	if (rc == 0 && strncmp(r->rest, "info/", 5) == 0) {
		struct kv_session s;
		rc = kv_session_get(kv(r), r->rest + 5, &s);
		if (rc == 0) {
			l.items = bcn_malloc(sizeof *l.items);
			if (l.items == NULL) {
				kv_session_close(&s);
				rc = BCN_ENOMEM;
			} else {
				l.items[0] = s;
				l.n = l.cap = 1;
			}
		} else if (rc == BCN_ENOTFOUND) {
			rc = 0;
		}
	} else if (rc == 0) {
		rc = kv_session_list(
		    kv(r),
		    strncmp(r->rest, "node/", 5) == 0 ? r->rest + 5 : NULL, &l);
	}
	if (rc == 0) {
		size_t w = 0;
		for (size_t i = 0; i < l.n; i++) {
			if (http_acl_visible(r, ACL_SESSION, l.items[i].node))
				l.items[w++] = l.items[i];
			else
				kv_session_close(&l.items[i]);
		}
		l.n = w;
	}
	if (rc != 0)
		http_reply_err(r, rc);
	else
		reply_list(r, &l, index);
	kv_session_list_close(&l);
}

void http_session(struct http_req *r)
{
	const char *rest = r->rest;

	if (strcmp(rest, "create") == 0) {
		if (r->method != HTTP_PUT)
			http_method_not_allowed(r, HTTP_PUT);
		else
			session_create(r);
	} else if (strncmp(rest, "destroy/", 8) == 0) {
		if (r->method != HTTP_PUT)
			http_method_not_allowed(r, HTTP_PUT);
		else
			session_destroy(r, rest + 8);
	} else if (strncmp(rest, "renew/", 6) == 0) {
		if (r->method != HTTP_PUT)
			http_method_not_allowed(r, HTTP_PUT);
		else
			session_renew(r, rest + 6);
	} else if (strncmp(rest, "info/", 5) == 0 ||
		   strncmp(rest, "node/", 5) == 0 ||
		   strcmp(rest, "list") == 0) {
		if (r->method != HTTP_GET)
			http_method_not_allowed(r, HTTP_GET);
		else if (rest[4] == '/' && rest[5] == '\0')
			http_reply_text(r, 400, "Missing %s",
					rest[0] == 'i' ? "session" : "node");
		else
			http_read(r, session_read);
	} else {
		http_reply_text(r, 404,
				"Invalid URL path: not a recognized "
				"HTTP API endpoint");
	}
}
