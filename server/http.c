/* HTTP plumbing: libmicrohttpd on the loop, request contexts, routing,
 * replies, consistency modes and blocking queries. The routes themselves
 * live in http_kv.c and http_status.c. */
#include "server/http.h"

#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/parse.h"
#include "server/acl.h"
#include "server/audit.h"
#include "server/forward.h"
#include "server/metrics.h"
#include "server/srv.h"
#include "server/sessions.h"
#include "server/upkeep.h"
#include "health/checks.h"

#define MOD		   "http"
#define WAIT_DEFAULT_MS	   (5 * 60 * 1000ULL)
#define WAIT_MAX_MS	   (10 * 60 * 1000ULL)
#define BODY_DEFAULT_LIMIT (64 * 1024)
/* After a forward could not connect, try the same leader again after this. */
#define FWD_RETRY_MS 100

struct route {
	const char *path;
	bool prefix;
	unsigned methods;
	uint64_t body_limit;
	http_fn fn;
	/* ACLs checked before the route runs: R(resource) (read for GET,
	 * write otherwise) or W(resource) (write always); 0: the route
	 * decides, or no ACL. */
	unsigned acl;
};

#define R(res) ((unsigned)(res) + 1)
#define W(res) (((unsigned)(res) + 1) | 0x100)

static const struct route routes[] = {
    {"/v1/kv/", true, HTTP_GET | HTTP_PUT | HTTP_DELETE, KV_MAX_VALUE_LEN,
     http_kv, 0},
    {"/v1/txn", false, HTTP_PUT, 512 * 1024, http_txn, 0},
    {"/v1/status/leader", false, HTTP_GET, 0, http_status_leader, 0},
    {"/v1/status/peers", false, HTTP_GET, 0, http_status_peers, 0},
    {"/v1/operator/raft/join", false, HTTP_PUT, 0, http_op_join, 0},
    {"/v1/operator/raft/configuration", false, HTTP_GET, 0, http_op_config,
     R(ACL_OPERATOR)},
    {"/v1/operator/raft/peer", false, HTTP_DELETE, 0, http_op_peer,
     R(ACL_OPERATOR)},
    {"/v1/operator/raft/transfer-leader", false, HTTP_POST | HTTP_PUT, 0,
     http_op_transfer, R(ACL_OPERATOR)},
    {"/v1/agent/self", false, HTTP_GET, 0, http_agent_self, R(ACL_AGENT)},
    {"/v1/agent/members", false, HTTP_GET, 0, http_agent_members, R(ACL_AGENT)},
    {"/v1/agent/services", false, HTTP_GET, 0, http_agent_services, 0},
    {"/v1/agent/service/", true, HTTP_GET | HTTP_PUT, 0, http_agent_service, 0},
    {"/v1/agent/checks", false, HTTP_GET, 0, http_agent_checks, 0},
    {"/v1/agent/check/", true, HTTP_GET | HTTP_PUT, 0, http_agent_check, 0},
    {"/v1/agent/maintenance", false, HTTP_PUT, 0, http_agent_maintenance, 0},
    {"/v1/agent/health/service/", true, HTTP_GET, 0, http_agent_health, 0},
    {"/v1/catalog/", true, HTTP_GET | HTTP_PUT, 0, http_catalog, 0},
    {"/v1/health/", true, HTTP_GET, 0, http_health, 0},
    {"/v1/session/", true, HTTP_GET | HTTP_PUT, 0, http_session, 0},
    {"/v1/secret/", true, HTTP_GET | HTTP_PUT | HTTP_DELETE, KV_MAX_VALUE_LEN,
     http_secret, 0},
    {"/v1/operator/secrets", true, HTTP_GET | HTTP_PUT, 0, http_op_secrets,
     R(ACL_OPERATOR)},
    {"/v1/acl/", true, HTTP_GET | HTTP_PUT | HTTP_DELETE, 0, http_acl_route, 0},
    {"/v1/snapshot", false, HTTP_GET | HTTP_PUT, 1024ULL << 20, http_snapshot,
     W(ACL_ACL)},
    {"/v1/agent/metrics", false, HTTP_GET, 0, http_agent_metrics, R(ACL_AGENT)},
    {"/v1/status/live", false, HTTP_GET, 0, http_status_live, 0},
    {"/v1/status/ready", false, HTTP_GET, 0, http_status_ready, 0},
};

static void mhd_run(struct srv *s);

size_t http_route_count(void)
{
	return sizeof routes / sizeof routes[0];
}

const char *http_route_name(size_t i)
{
	return routes[i].path;
}

/* ---- request contexts ---------------------------------------------------- */

static void *uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct srv *s = cls;
	struct http_req *r = bcn_calloc(1, sizeof *r);

	if (r == NULL)
		return NULL;
	r->raw_uri = bcn_strdup(uri);
	if (r->raw_uri == NULL) {
		bcn_free(r);
		return NULL;
	}
	r->srv = s;
	r->conn = conn;
	r->route_idx = -1;
	r->start_ns = uv_hrtime();
	bcn_buf_init(&r->body);
	s->inflight++;
	return r;
}

static void req_free(struct http_req *r)
{
	r->srv->inflight--;
	if (r->resp != NULL)
		MHD_destroy_response(r->resp);
	http_uri_close(&r->uri);
	bcn_buf_close(&r->body);
	bcn_free(r->watch_key);
	bcn_free(r->change);
	bcn_free(r->raw_uri);
	acl_authz_close(&r->authz);
	bcn_free(r);
}

void http_req_release(struct http_req *r)
{
	req_free(r);
}

static void watch_remove(struct http_req *r);

static void unhold(struct http_req *r)
{
	struct srv *s = r->srv;

	r->held = false;
	if (r->hprev != NULL)
		r->hprev->hnext = r->hnext;
	else
		s->held_head = r->hnext;
	if (r->hnext != NULL)
		r->hnext->hprev = r->hprev;
	r->hprev = r->hnext = NULL;
	if (s->held_head == NULL)
		uv_timer_stop(&s->hold_timer);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct http_req *r = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (r == NULL)
		return;
	*con_cls = NULL;
	r->completed = true;
	if (r->status != 0)
		metrics_http(r->srv, r->route_idx, r->status,
			     (double)(uv_hrtime() - r->start_ns) / 1e6);
	audit_request(r);
	if (r->watching)
		watch_remove(r);
	if (r->held)
		unhold(r);
	fwd_cancel(r);
	if (r->reading && r->srv->cluster != NULL) {
		cluster_read_cancel(r->srv->cluster, &r->cread);
		r->reading = false;
	}
	if (r->proposing)
		return; /* freed by the proposal's callback */
	req_free(r);
}

/* ---- replies ------------------------------------------------------------- */

static void add_meta(struct http_req *r)
{
	struct cluster *c = r->srv->cluster;
	char v[32];
	uint64_t lc;

	if (!r->meta || c == NULL)
		return;
	snprintf(v, sizeof v, "%llu",
		 (unsigned long long)(r->index == 0 ? 1 : r->index));
	MHD_add_response_header(r->resp, "X-Consul-Index", v);
	MHD_add_response_header(r->resp, "X-Consul-KnownLeader",
				cluster_leader_addr(c)[0] != '\0' ? "true"
								  : "false");
	lc = cluster_last_contact_ms(c);
	snprintf(v, sizeof v, "%llu",
		 (unsigned long long)(lc == UINT64_MAX ? 0 : lc));
	MHD_add_response_header(r->resp, "X-Consul-LastContact", v);
	MHD_add_response_header(r->resp, "X-Consul-Effective-Consistency",
				r->consistency == HTTP_STALE ? "stale"
				: r->consistency == HTTP_CONSISTENT
				    ? "consistent"
				    : "leader");
	MHD_add_response_header(
	    r->resp, "X-Consul-Default-ACL-Policy",
	    strcmp(r->srv->cfg->acl_default_policy, "deny") == 0 &&
		    r->srv->cfg->acl_enabled
		? "deny"
		: "allow");
	if (r->filtered && !r->authz.anonymous)
		MHD_add_response_header(
		    r->resp, "X-Consul-Results-Filtered-By-ACLs", "true");
}

/* Hand the response to libmicrohttpd, now or when the connection resumes. */
static void deliver(struct http_req *r)
{
	if (r->suspended) {
		r->suspended = false;
		MHD_resume_connection(r->conn);
		r->srv->mhd_kick = true;
	}
}

static void set_response(struct http_req *r, unsigned status,
			 struct MHD_Response *resp, const char *ctype)
{
	if (r->status != 0 || r->completed) {
		if (resp != NULL)
			MHD_destroy_response(resp);
		return;
	}
	if (resp == NULL) {
		/* Out of memory for the reply itself: a static 500. */
		static char oom[] = "Out of memory\n";
		resp = MHD_create_response_from_buffer(sizeof oom - 1, oom,
						       MHD_RESPMEM_PERSISTENT);
		status = 500;
		ctype = "text/plain; charset=utf-8";
		if (resp == NULL) {
			r->status = 500; /* the access handler closes */
			deliver(r);
			return;
		}
	}
	r->status = status;
	r->resp = resp;
	if (ctype != NULL)
		MHD_add_response_header(resp, "Content-Type", ctype);
	add_meta(r);
	deliver(r);
}

void http_reply(struct http_req *r, unsigned status, const char *ctype,
		const void *body, size_t len)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(
	    len, (void *)(len > 0 ? body : ""), MHD_RESPMEM_MUST_COPY);

	set_response(r, status, resp, ctype);
}

void http_reply_json(struct http_req *r, unsigned status, struct bcn_buf *b)
{
	struct MHD_Response *resp = NULL;
	size_t len;
	char *data;

	if (bcn_buf_failed(b)) {
		bcn_buf_close(b);
		http_reply_text(r, 500, "Out of memory");
		return;
	}
	data = bcn_buf_steal(b, &len);
	if (data == NULL) {
		http_reply(r, status, "application/json", "", 0);
		return;
	}
	resp = MHD_create_response_from_buffer_with_free_callback(len, data,
								  bcn_free);
	if (resp == NULL)
		bcn_free(data);
	set_response(r, status, resp, "application/json");
}

void http_reply_text(struct http_req *r, unsigned status, const char *fmt, ...)
{
	char msg[1200];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof msg - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof msg - 2)
		n = (int)sizeof msg - 2;
	if (status >= 400)
		bcn_debug(MOD, "%s %s -> %u %s", r->method_str, r->raw_uri,
			  status, msg);
	msg[n++] = '\n';
	http_reply(r, status, "text/plain; charset=utf-8", msg, (size_t)n);
}

void http_reply_err(struct http_req *r, int code)
{
	switch (code) {
	case BCN_ENOTLEADER:
		http_reply_text(r, 500, "No cluster leader");
		break;
	case BCN_EUNKNOWN:
		http_reply_text(r, 500,
				"Unknown outcome: leadership was lost before "
				"the write was confirmed; it may or may not "
				"have been applied");
		break;
	case BCN_ESHUTDOWN:
		http_reply_text(r, 503, "Server is shutting down");
		break;
	default:
		http_reply_text(r, (unsigned)bcn_err_http_status(code), "%s",
				bcn_strerror(code));
	}
}

void http_add_header(struct http_req *r, const char *name, const char *value)
{
	if (r->resp != NULL)
		MHD_add_response_header(r->resp, name, value);
}

void http_set_index(struct http_req *r, uint64_t index)
{
	r->meta = true;
	r->index = index;
}

/* ---- parameters ---------------------------------------------------------- */

const struct http_arg *http_arg(struct http_req *r, const char *name)
{
	return http_uri_arg(&r->uri, name);
}

bool http_flag(struct http_req *r, const char *name)
{
	return http_uri_arg(&r->uri, name) != NULL;
}

bool http_arg_u64(struct http_req *r, const char *name, uint64_t *out,
		  bool *present, const char *errtext)
{
	const struct http_arg *a = http_uri_arg(&r->uri, name);

	if (present != NULL)
		*present = a != NULL;
	if (a == NULL)
		return true;
	if (bcn_parse_u64(a->value, out) != 0) {
		http_reply_text(r, 400, "%s", errtext);
		return false;
	}
	return true;
}

static bool check_dc(struct http_req *r)
{
	const struct http_arg *dc = http_arg(r, "dc");

	if (dc != NULL && dc->value[0] != '\0' &&
	    strcmp(dc->value, r->srv->cfg->datacenter) != 0) {
		http_reply_text(r, 500, "No path to datacenter");
		return false;
	}
	return true;
}

/* ---- blocking queries ---------------------------------------------------- */

static void heap_swap(struct srv *s, size_t a, size_t b)
{
	struct http_req *t = s->heap[a];

	s->heap[a] = s->heap[b];
	s->heap[b] = t;
	s->heap[a]->heap_pos = a;
	s->heap[b]->heap_pos = b;
}

static void heap_up(struct srv *s, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (s->heap[p]->deadline <= s->heap[i]->deadline)
			break;
		heap_swap(s, i, p);
		i = p;
	}
}

static void heap_down(struct srv *s, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		if (l < s->heap_n &&
		    s->heap[l]->deadline < s->heap[m]->deadline)
			m = l;
		if (l + 1 < s->heap_n &&
		    s->heap[l + 1]->deadline < s->heap[m]->deadline)
			m = l + 1;
		if (m == i)
			return;
		heap_swap(s, i, m);
		i = m;
	}
}

static void watch_timer_cb(uv_timer_t *t);

static void watch_timer_arm(struct srv *s)
{
	uint64_t now = uv_now(s->loop), when;

	if (s->heap_n == 0) {
		uv_timer_stop(&s->watch_timer);
		return;
	}
	when = s->heap[0]->deadline;
	uv_timer_start(&s->watch_timer, watch_timer_cb,
		       when > now ? when - now : 0, 0);
}

static void watch_remove(struct http_req *r)
{
	struct srv *s = r->srv;
	size_t i = r->heap_pos;

	if (!r->watching)
		return;
	r->watching = false;
	if (r->wprev != NULL)
		r->wprev->wnext = r->wnext;
	else
		s->watch_head = r->wnext;
	if (r->wnext != NULL)
		r->wnext->wprev = r->wprev;
	r->wprev = r->wnext = NULL;
	s->heap_n--;
	if (i != s->heap_n) {
		heap_swap(s, i, s->heap_n);
		heap_down(s, i);
		heap_up(s, i);
	}
}

static void read_attempt(struct http_req *r);
static bool watch_add(struct http_req *r, uint64_t index, const char *key,
		      bool exact);

bool http_block_kv(struct http_req *r, uint64_t index, const char *key,
		   bool exact)
{
	r->watch_cat = false;
	return watch_add(r, index, key, exact);
}

bool http_block_cat(struct http_req *r, uint64_t index, const char *topic)
{
	r->watch_cat = true;
	return watch_add(r, index, topic, true);
}

static bool watch_add(struct http_req *r, uint64_t index, const char *key,
		      bool exact)
{
	struct srv *s = r->srv;

	if (r->block_index == 0 || index > r->block_index || r->timed_out ||
	    s->stopping)
		return false;
	if (r->watch_key == NULL || strcmp(r->watch_key, key) != 0) {
		char *k = bcn_strdup(key);
		if (k == NULL)
			return false; /* answer now rather than fail */
		bcn_free(r->watch_key);
		r->watch_key = k;
	}
	r->watch_exact = exact;
	if (s->heap_n == s->heap_cap) {
		size_t cap = s->heap_cap == 0 ? 64 : s->heap_cap * 2;
		struct http_req **h = bcn_realloc(s->heap, cap * sizeof *h);
		if (h == NULL)
			return false;
		s->heap = h;
		s->heap_cap = cap;
	}
	if (r->deadline == 0) {
		/* Consul adds up to wait/16 of jitter so that many clients
		 * do not return at the same instant. */
		uint64_t jitter = r->wait_ms / 16;
		r->deadline = uv_now(s->loop) + r->wait_ms +
			      (jitter > 0 ? srv_random(s) % jitter : 0);
	}
	r->watching = true;
	r->wnext = s->watch_head;
	r->wprev = NULL;
	if (s->watch_head != NULL)
		s->watch_head->wprev = r;
	s->watch_head = r;
	r->heap_pos = s->heap_n;
	s->heap[s->heap_n++] = r;
	heap_up(s, r->heap_pos);
	watch_timer_arm(s);
	return true;
}

static void watch_timer_cb(uv_timer_t *t)
{
	struct srv *s = t->data;
	uint64_t now = uv_now(s->loop);

	while (s->heap_n > 0 && s->heap[0]->deadline <= now) {
		struct http_req *r = s->heap[0];
		watch_remove(r);
		r->timed_out = true;
		read_attempt(r);
	}
	watch_timer_arm(s);
}

/* ---- reads --------------------------------------------------------------- */

static void read_barrier_cb(struct cluster_read *rd, int status)
{
	struct http_req *r = rd->data;

	r->reading = false;
	if (status != 0)
		http_reply_err(r, status);
	else
		r->read_fn(r);
}

static void hold_timer_cb(uv_timer_t *t);

static void hold(struct http_req *r, http_fn retry)
{
	struct srv *s = r->srv;

	r->hold_fn = retry;
	r->held = true;
	r->hprev = NULL;
	r->hnext = s->held_head;
	if (s->held_head != NULL)
		s->held_head->hprev = r;
	else
		uv_timer_start(&s->hold_timer, hold_timer_cb, 20, 20);
	s->held_head = r;
}

/* This server cannot answer @r now: forward it to the leader, or wait (at
 * most --leader-wait) for one to be elected, or fail. A request forwarded
 * to us is never forwarded again: it waits for us to serve or fails. */
static void not_serving(struct http_req *r, http_fn retry)
{
	struct srv *s = r->srv;
	struct cluster *c = s->cluster;
	char leader[256];
	bool forwarded = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
						     FWD_HEADER) != NULL;
	uint64_t now = uv_now(s->loop);

	if (!forwarded && !cluster_is_leader(c) &&
	    cluster_leader_http(c, leader, sizeof leader) &&
	    (strcmp(leader, r->fwd_failed_leader) != 0 ||
	     now - r->fwd_failed_at >= FWD_RETRY_MS)) {
		r->hold_fn = retry; /* for http_forward_failed() */
		fwd_start(r);
		return;
	}
	if (forwarded && !cluster_is_leader(c)) {
		/* The sender's view of the leader is out of date. Say so at
		 * once: nothing was applied here, so it may try again. */
		http_reply_text(r, 503, "No cluster leader");
		http_add_header(r, FWD_NOT_LEADER, "true");
		return;
	}
	if (r->hold_deadline == 0)
		r->hold_deadline = now + s->cfg->leader_wait;
	if (now < r->hold_deadline) {
		hold(r, retry);
		return;
	}
	http_reply_err(r, BCN_ENOTLEADER);
}

void http_forward_failed(struct http_req *r)
{
	struct srv *s = r->srv;

	if (s->cluster == NULL || s->stopping) {
		http_reply_err(r, BCN_ESHUTDOWN);
		return;
	}
	cluster_leader_http(s->cluster, r->fwd_failed_leader,
			    sizeof r->fwd_failed_leader);
	r->fwd_failed_at = uv_now(s->loop);
	not_serving(r, r->hold_fn);
}

static void retry_held(struct srv *s, bool expired_only)
{
	struct http_req *r = s->held_head, *next;
	uint64_t now = uv_now(s->loop);

	for (; r != NULL; r = next) {
		next = r->hnext;
		if (expired_only && now < r->hold_deadline && !s->stopping)
			continue;
		unhold(r);
		if (s->stopping)
			http_reply_err(r, BCN_ESHUTDOWN);
		else
			r->hold_fn(r); /* may hold @r again, at the head */
	}
}

static void hold_timer_cb(uv_timer_t *t)
{
	retry_held(t->data, true);
}

static void read_attempt(struct http_req *r)
{
	struct cluster *c = r->srv->cluster;
	int rc;

	if (c == NULL || r->srv->stopping) {
		http_reply_err(r, BCN_ESHUTDOWN);
		return;
	}
	if (r->consistency != HTTP_STALE && !cluster_serving(c)) {
		not_serving(r, read_attempt);
		return;
	}
	if (r->authz.deferred) {
		/* Never served here on an unresolved token (see
		 * resolve_token): this server leads now, and did not know it.
		 */
		http_reply_text(r, 403, "ACL not found");
		return;
	}
	if (r->consistency == HTTP_CONSISTENT) {
		r->cread.data = r;
		rc = cluster_read_barrier(c, &r->cread, read_barrier_cb);
		if (rc != 0)
			http_reply_err(r, rc);
		else
			r->reading = true;
		return;
	}
	r->read_fn(r);
}

void http_read(struct http_req *r, http_fn fn)
{
	bool stale = http_flag(r, "stale"), cons = http_flag(r, "consistent");
	const struct http_arg *wait;
	bool has_index;

	r->read_fn = fn;
	if (!check_dc(r))
		return;
	if (stale && cons) {
		http_reply_text(r, 400,
				"Cannot specify ?stale with "
				"?consistent, conflicting semantics.");
		return;
	}
	r->consistency = stale	? HTTP_STALE
			 : cons ? HTTP_CONSISTENT
				: HTTP_DEFAULT;
	if (!http_arg_u64(r, "index", &r->block_index, &has_index,
			  "Invalid index"))
		return;
	r->wait_ms = WAIT_DEFAULT_MS;
	wait = http_arg(r, "wait");
	if (wait != NULL) {
		if (bcn_parse_duration_ms(wait->value, &r->wait_ms) != 0) {
			http_reply_text(r, 400, "Invalid wait time");
			return;
		}
		if (r->wait_ms > WAIT_MAX_MS)
			r->wait_ms = WAIT_MAX_MS;
	}
	read_attempt(r);
}

/* ---- writes -------------------------------------------------------------- */

bool http_write_ok(struct http_req *r)
{
	if (!check_dc(r))
		return false;
	if (r->srv->cluster == NULL || r->srv->stopping) {
		http_reply_err(r, BCN_ESHUTDOWN);
		return false;
	}
	if (!cluster_serving(r->srv->cluster)) {
		not_serving(r, r->route_fn);
		return false;
	}
	if (r->authz.deferred) {
		http_reply_text(r, 403, "ACL not found");
		return false;
	}
	return true;
}

static void propose_cb(struct cluster_req *req, int status)
{
	struct http_req *r = req->data;

	r->proposing = false;
	if (r->completed) {
		kv_result_close(&req->result);
		req_free(r);
		return;
	}
	r->write_done(r, status);
	/* @write_done may have proposed again on the same request (a ?ttl
	 * PUT: session, then write): that result is in flight. */
	if (!r->proposing)
		kv_result_close(&req->result);
}

void http_restore(struct http_req *r,
		  void (*done)(struct http_req *r, int status))
{
	char why[256];
	int rc;

	r->write_done = done;
	r->creq.data = r;
	rc = cluster_restore(r->srv->cluster, r->body.data, r->body.len,
			     &r->creq, propose_cb, why, sizeof why);
	if (rc == BCN_EINVAL) {
		http_reply_text(
		    r, 400, "Snapshot refused: %s; nothing was restored", why);
		return;
	}
	if (rc != 0) {
		http_reply_err(r, rc);
		return;
	}
	r->proposing = true;
}

void http_propose_cat(struct http_req *r, const struct cat_op *ops, size_t n,
		      void (*done)(struct http_req *r, int status))
{
	int rc;

	r->write_done = done;
	r->creq.data = r;
	rc = cluster_propose_cat(r->srv->cluster, ops, n, &r->creq, propose_cb);
	if (rc != 0) {
		http_reply_err(r, rc);
		return;
	}
	r->proposing = true;
}

void http_propose_session(struct http_req *r, enum cluster_session_op op,
			  const struct kv_session *sess,
			  void (*done)(struct http_req *r, int status))
{
	int rc;

	r->write_done = done;
	r->creq.data = r;
	rc = cluster_propose_session(r->srv->cluster, op, sess, srv_now_ms(),
				     &r->creq, propose_cb);
	if (rc != 0) {
		http_reply_err(r, rc);
		return;
	}
	r->proposing = true;
}

void http_propose_acl(struct http_req *r, enum kv_acl_op op,
		      const struct kv_acl_token *t,
		      const struct kv_acl_policy *p)
{
	int rc;

	r->creq.data = r;
	rc = cluster_propose_acl(r->srv->cluster, op, t, p, &r->creq,
				 propose_cb);
	if (rc != 0) {
		http_reply_err(r, rc);
		return;
	}
	r->proposing = true;
}

int http_propose_secret(struct http_req *r, enum cluster_secret_op op,
			const char *path, const char *key_id, const void *box,
			size_t len, bool cas, uint64_t cas_index)
{
	int rc;

	r->creq.data = r;
	rc = cluster_propose_secret(r->srv->cluster, op, path, key_id, box, len,
				    cas, cas_index, &r->creq, propose_cb);
	if (rc != 0) {
		http_reply_err(r, rc);
		return rc;
	}
	r->proposing = true;
	return 0;
}

void http_propose(struct http_req *r, const struct kv_op *ops, size_t n,
		  void (*done)(struct http_req *r, int status))
{
	int rc;

	r->write_done = done;
	r->creq.data = r;
	rc = cluster_propose_kv(r->srv->cluster, ops, n, &r->creq, propose_cb);
	if (rc != 0) {
		http_reply_err(r, rc);
		return;
	}
	r->proposing = true;
}

/* ---- dispatch ------------------------------------------------------------ */

static const struct route *route_find(const char *path, size_t len)
{
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
		size_t n = strlen(routes[i].path);
		if (routes[i].prefix
			? len >= n && memcmp(path, routes[i].path, n) == 0
			: len == n && memcmp(path, routes[i].path, n) == 0)
			return &routes[i];
	}
	return NULL;
}

static enum http_method parse_method(const char *m)
{
	if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0)
		return HTTP_GET;
	if (strcmp(m, "PUT") == 0)
		return HTTP_PUT;
	if (strcmp(m, "DELETE") == 0)
		return HTTP_DELETE;
	if (strcmp(m, "POST") == 0)
		return HTTP_POST;
	if (strcmp(m, "OPTIONS") == 0)
		return HTTP_OPTIONS;
	return HTTP_OTHER;
}

static void allow_list(unsigned methods, char *out, size_t cap);

void http_method_not_allowed(struct http_req *r, unsigned methods)
{
	char allow[64];

	allow_list(methods, allow, sizeof allow);
	http_reply_text(r, 405, "method %s not allowed", r->method_str);
	if (r->resp != NULL)
		MHD_add_response_header(r->resp, "Allow", allow);
}

static void allow_list(unsigned methods, char *out, size_t cap)
{
	static const struct {
		unsigned m;
		const char *name;
	} names[] = {{HTTP_GET, "GET"},
		     {HTTP_PUT, "PUT"},
		     {HTTP_DELETE, "DELETE"},
		     {HTTP_POST, "POST"}};
	size_t n = (size_t)snprintf(out, cap, "OPTIONS");

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if ((methods & names[i].m) && n < cap)
			n += (size_t)snprintf(out + n, cap - n, ",%s",
					      names[i].name);
}

/* Framing headers, checked before anything else: a message whose length
 * could be read two ways (two Content-Lengths, a NUL inside one, both
 * Content-Length and Transfer-Encoding) is how requests get smuggled past
 * a proxy, so it is refused and the connection closed (RFC 9112 §6.3). */
struct framing {
	unsigned n_length, n_te;
	bool bad_length, bad_te;
};

static enum MHD_Result framing_header(void *cls, enum MHD_ValueKind kind,
				      const char *key, size_t key_size,
				      const char *value, size_t value_size)
{
	struct framing *f = cls;

	(void)kind;
	if (key_size == 14 && strncasecmp(key, "Content-Length", 14) == 0) {
		f->n_length++;
		if (value == NULL || value_size == 0 ||
		    strlen(value) != value_size ||
		    strspn(value, "0123456789") != value_size)
			f->bad_length = true;
	} else if (key_size == 17 &&
		   strncasecmp(key, "Transfer-Encoding", 17) == 0) {
		f->n_te++;
		if (value == NULL || strcasecmp(value, "chunked") != 0)
			f->bad_te = true;
	}
	return MHD_YES;
}

/* Reply @status with @msg and close the connection afterwards. */
static void refuse_framing(struct http_req *r, unsigned status, const char *msg)
{
	http_reply_text(r, status, "%s", msg);
	http_add_header(r, "Connection", "close");
}

/* Check the request line and headers. Returns the route, or NULL with a
 * reply set. */
static const struct route *check_request(struct http_req *r)
{
	const struct route *rt;
	const char *why = NULL, *cl;
	char allow[64];
	uint64_t len = 0;
	struct framing f = {0};

	MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND, framing_header,
				    &f);
	if (f.n_length > 1 || f.bad_length) {
		refuse_framing(r, 400, "Invalid Content-Length");
		return NULL;
	}
	if (f.n_te > 1 || f.bad_te) {
		refuse_framing(r, 501,
			       "Transfer-Encoding not supported: "
			       "only chunked");
		return NULL;
	}
	if (f.n_te > 0 && f.n_length > 0) {
		refuse_framing(r, 400,
			       "Both Content-Length and "
			       "Transfer-Encoding");
		return NULL;
	}

	if (http_uri_parse(r->raw_uri, &r->uri, &why) != 0) {
		if (why == NULL)
			http_reply_text(r, 500, "Out of memory");
		else
			http_reply_text(r, 400, "%s", why);
		return NULL;
	}
	rt = route_find(r->uri.path, r->uri.path_len);
	if (rt == NULL) {
		http_reply_text(r, 404,
				"Invalid URL path: not a recognized "
				"HTTP API endpoint");
		return NULL;
	}
	allow_list(rt->methods, allow, sizeof allow);
	if (r->method == HTTP_OPTIONS) {
		http_reply(r, 200, NULL, "", 0);
		MHD_add_response_header(r->resp, "Allow", allow);
		return NULL;
	}
	if (!(rt->methods & r->method)) {
		http_method_not_allowed(r, rt->methods);
		return NULL;
	}
	r->body_limit =
	    rt->body_limit > 0 ? rt->body_limit : BODY_DEFAULT_LIMIT;
	cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
					 MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl != NULL && bcn_parse_u64(cl, &len) == 0 && len > r->body_limit) {
		if (rt->fn == http_kv)
			http_reply_text(
			    r, 413,
			    "Request body(%llu bytes) too large, max size: "
			    "%llu bytes. See https://developer.hashicorp."
			    "com/docs/agent/config/config-files#kv_max_"
			    "value_size.",
			    (unsigned long long)len,
			    (unsigned long long)r->body_limit);
		else
			http_reply_text(r, 413,
					"Request body too large, max size: "
					"%llu bytes",
					(unsigned long long)r->body_limit);
		return NULL;
	}
	r->route_idx = (int)(rt - routes);
	r->rest = r->uri.path + strlen(rt->path);
	r->rest_len = r->uri.path_len - strlen(rt->path);
	return rt;
}

static enum MHD_Result queue(struct http_req *r)
{
	enum MHD_Result ret;

	if (r->resp == NULL)
		return MHD_NO; /* could not build even an error: close */
	ret = MHD_queue_response(r->conn, r->status, r->resp);
	MHD_destroy_response(r->resp);
	r->resp = NULL;
	return ret;
}

void http_client_ip(struct http_req *r, char *out, size_t cap)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
	    r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;

	out[0] = '\0';
	if (sa != NULL && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
			  out, (socklen_t)cap);
	else if (sa != NULL && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6,
			  &((const struct sockaddr_in6 *)sa)->sin6_addr, out,
			  (socklen_t)cap);
}

/* The request's token: X-Consul-Token, then Authorization: Bearer, then
 * ?token= (python-consul's way). */
static const char *token_of(struct http_req *r)
{
	const char *t = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
						    "X-Consul-Token");
	const struct http_arg *a;

	if (t != NULL && t[0] != '\0')
		return t;
	t = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
					"Authorization");
	if (t != NULL && strncasecmp(t, "Bearer ", 7) == 0)
		return t + 7;
	a = http_arg(r, "token");
	return a != NULL ? a->value : NULL;
}

/* Who is asking. False with a 403 for an unknown token. */
static bool resolve_token(struct http_req *r)
{
	const struct config *cfg = r->srv->cfg;
	int rc;

	if (r->srv->cluster == NULL)
		return true; /* shutting down: the route answers */
	rc = acl_resolve(
	    cluster_kv(r->srv->cluster), token_of(r), cfg->acl_enabled,
	    strcmp(cfg->acl_default_policy, "deny") != 0, &r->authz);
	if (rc == BCN_ENOTFOUND && !cluster_is_leader(r->srv->cluster) &&
	    !http_flag(r, "stale") && routes[r->route_idx].acl == 0) {
		/* A token this follower has not seen yet (just made?): the
		 * request goes to the leader, which decides. Nothing is
		 * served from here on its strength. */
		r->authz.enabled = true;
		r->authz.management = true;
		r->authz.deferred = true;
		return true;
	}
	if (rc == BCN_ENOTFOUND) {
		http_reply_text(r, 403, "ACL not found");
		return false;
	}
	if (rc != 0) {
		http_reply_err(r, rc);
		return false;
	}
	return true;
}

/* The route-level ACL of @r's route (see struct route). */
static bool route_acl(struct http_req *r)
{
	unsigned acl = routes[r->route_idx].acl;
	enum acl_resource res;

	if (acl == 0)
		return true;
	res = (enum acl_resource)((acl & 0xff) - 1);
	return http_acl(r, res, res == ACL_AGENT ? r->srv->cfg->node : "",
			(acl & 0x100) || r->method != HTTP_GET ? ACL_WRITE
							       : ACL_READ);
}

bool http_acl(struct http_req *r, enum acl_resource res, const char *name,
	      enum acl_access need)
{
	if (acl_allows(&r->authz, res, name, need))
		return true;
	if (r->authz.anonymous)
		http_reply_text(r, 403,
				"Permission denied: anonymous token lacks "
				"permission '%s:%s' on \"%s\"",
				acl_resource_name(res), acl_access_name(need),
				name != NULL ? name : "");
	else
		http_reply_text(r, 403,
				"Permission denied: token with AccessorID "
				"'%s' lacks permission '%s:%s' on \"%s\"",
				r->authz.accessor, acl_resource_name(res),
				acl_access_name(need),
				name != NULL ? name : "");
	return false;
}

bool http_acl_visible(struct http_req *r, enum acl_resource res,
		      const char *name)
{
	if (acl_allows(&r->authz, res, name, ACL_READ))
		return true;
	r->filtered = true;
	return false;
}

static bool client_cert_ok(struct http_req *r);

/* ---- per-client request rate ------------------------------------------------
 * A token bucket per client IP (--http-rate-limit per second, --http-rate-
 * burst deep), in a small open-addressing table; the oldest buckets are
 * forgotten when it fills (a full bucket is the same as none). */

#define RATE_SLOTS 4096

struct rate_slot {
	char ip[48];
	double tokens;
	uint64_t at; /* uv_now() of the last refill */
};

static bool rate_ok(struct http_req *r)
{
	struct srv *s = r->srv;
	const struct config *c = s->cfg;
	struct rate_slot *slot = NULL;
	char ip[48];
	uint64_t now = uv_now(s->loop), h = 1469598103934665603ULL;

	if (c->http_rate_limit == 0)
		return true;
	if (s->rate == NULL) {
		s->rate = bcn_calloc(RATE_SLOTS, sizeof(struct rate_slot));
		if (s->rate == NULL)
			return true; /* no memory for limits: serve */
	}
	http_client_ip(r, ip, sizeof ip);
	for (const char *p = ip; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	/* Probe 8 slots: this client's, else an empty one, else the one
	 * idle longest. */
	for (unsigned i = 0; i < 8; i++) {
		struct rate_slot *sl =
		    &((struct rate_slot *)s->rate)[(h + i) % RATE_SLOTS];
		if (strcmp(sl->ip, ip) == 0) {
			slot = sl;
			break;
		}
		if (slot == NULL || (slot->ip[0] != '\0' &&
				     (sl->ip[0] == '\0' || sl->at < slot->at)))
			slot = sl;
	}
	if (strcmp(slot->ip, ip) != 0) {
		snprintf(slot->ip, sizeof slot->ip, "%s", ip);
		slot->tokens = (double)c->http_rate_burst;
		slot->at = now;
	}
	slot->tokens +=
	    (double)(now - slot->at) * (double)c->http_rate_limit / 1000.0;
	if (slot->tokens > (double)c->http_rate_burst)
		slot->tokens = (double)c->http_rate_burst;
	slot->at = now;
	if (slot->tokens < 1.0) {
		http_reply_text(r, 429,
				"Too many requests from %s: the limit "
				"is %llu per second",
				ip, (unsigned long long)c->http_rate_limit);
		http_add_header(r, "Retry-After", "1");
		return false;
	}
	slot->tokens -= 1.0;
	return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
				  const char *url, const char *method,
				  const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct srv *s = cls;
	struct http_req *r = *con_cls;
	const struct route *rt;

	(void)url;
	(void)version;
	if (r == NULL)
		return MHD_NO; /* no memory for a context */
	if (!r->started) {
		r->started = true;
		r->conn = conn;
		r->method_str = method;
		r->method = parse_method(method);
		if (!client_cert_ok(r) || !rate_ok(r))
			return queue(r);
		rt = check_request(r);
		if (rt == NULL)
			return queue(r);
		r->read_fn = rt->fn; /* the route, until dispatch */
		return MHD_YES;
	}
	if (*upload_size > 0) {
		if (r->status == 0 &&
		    r->body.len + *upload_size > r->body_limit) {
			http_reply_text(r, 413,
					"Request body too large, max size: "
					"%llu bytes",
					(unsigned long long)r->body_limit);
			*upload_size = 0;
			return queue(r);
		}
		bcn_buf_put(&r->body, upload, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	if (r->status != 0)
		return queue(r);
	if (r->dispatched)
		return MHD_YES; /* resumed with nothing yet: wait */
	r->dispatched = true;
	if (bcn_buf_failed(&r->body)) {
		http_reply_text(r, 500, "Out of memory");
	} else if (s->stopping) {
		http_reply_err(r, BCN_ESHUTDOWN);
	} else if (resolve_token(r) && route_acl(r)) {
		http_fn fn = r->read_fn;
		r->read_fn = NULL;
		r->route_fn = fn;
		fn(r);
	}
	if (r->status != 0)
		return queue(r);
	r->suspended = true;
	MHD_suspend_connection(conn);
	return MHD_YES;
}

/* ---- the daemon on the loop ---------------------------------------------- */

static void mhd_timer_cb(uv_timer_t *t)
{
	mhd_run(t->data);
}

static void mhd_poll_cb(uv_poll_t *p, int status, int events)
{
	(void)status;
	(void)events;
	mhd_run(p->data);
}

static void mhd_run(struct srv *s)
{
	MHD_UNSIGNED_LONG_LONG ms;

	s->mhd_kick = false;
	if (s->mhd == NULL)
		return;
	MHD_run(s->mhd);
	if (MHD_get_timeout(s->mhd, &ms) == MHD_YES)
		uv_timer_start(&s->mhd_timer, mhd_timer_cb, ms, 0);
	else
		uv_timer_stop(&s->mhd_timer);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];

	(void)cls;
	vsnprintf(msg, sizeof msg, fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	bcn_debug(MOD, "libmicrohttpd: %s", msg);
}

static char *slurp(const char *path, char *errmsg)
{
	FILE *f = fopen(path, "r");
	struct bcn_buf b;
	char chunk[4096];
	size_t n;

	if (f == NULL) {
		bcn_errf(errmsg, "cannot read %s", path);
		return NULL;
	}
	bcn_buf_init(&b);
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len < (1 << 20))
		bcn_buf_put(&b, chunk, n);
	fclose(f);
	bcn_buf_putc(&b, '\0');
	if (bcn_buf_failed(&b)) {
		bcn_buf_close(&b);
		bcn_errf(errmsg, "out of memory reading %s", path);
		return NULL;
	}
	return bcn_buf_steal(&b, NULL);
}

/* --tls-cert/--tls-key (and --tls-ca for client certificates): HTTPS
 * only. The PEM texts stay in @s while the daemon runs. */
static int tls_load(struct srv *s, unsigned *flags, struct MHD_OptionItem *opts,
		    char *errmsg)
{
	const struct config *c = s->cfg;
	size_t n = 0;

	if (c->tls_cert[0] == '\0') {
		if (c->tls_key[0] != '\0' || c->tls_verify_incoming) {
			bcn_errf(errmsg, "--tls-key and --tls-verify-incoming "
					 "need --tls-cert");
			return BCN_EINVAL;
		}
		opts[0] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
		return 0;
	}
	if (c->tls_key[0] == '\0' ||
	    (c->tls_verify_incoming && c->tls_ca[0] == '\0')) {
		bcn_errf(errmsg, "--tls-cert needs --tls-key (and "
				 "--tls-verify-incoming needs --tls-ca)");
		return BCN_EINVAL;
	}
	s->tls_cert_pem = slurp(c->tls_cert, errmsg);
	s->tls_key_pem =
	    s->tls_cert_pem != NULL ? slurp(c->tls_key, errmsg) : NULL;
	if (s->tls_key_pem == NULL)
		return BCN_EINVAL;
	opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0,
					    s->tls_cert_pem};
	opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0,
					    s->tls_key_pem};
	if (c->tls_verify_incoming) {
		s->tls_ca_pem = slurp(c->tls_ca, errmsg);
		if (s->tls_ca_pem == NULL)
			return BCN_EINVAL;
		opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST,
						    0, s->tls_ca_pem};
	}
	opts[n] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
	*flags |= MHD_USE_TLS;
	return 0;
}

/* With --tls-verify-incoming: the client's certificate must verify
 * against --tls-ca. */
static bool client_cert_ok(struct http_req *r)
{
	const union MHD_ConnectionInfo *ci;
	unsigned status = 0;

	if (!r->srv->cfg->tls_verify_incoming)
		return true;
	ci = MHD_get_connection_info(r->conn,
				     MHD_CONNECTION_INFO_GNUTLS_SESSION);
	if (ci == NULL || ci->tls_session == NULL ||
	    gnutls_certificate_verify_peers2((gnutls_session_t)ci->tls_session,
					     &status) != 0 ||
	    status != 0) {
		http_reply_text(r, 403,
				"A client certificate signed by the "
				"cluster's CA is required");
		http_add_header(r, "Connection", "close");
		return false;
	}
	return true;
}

int http_start(struct srv *s, const char *addr, unsigned max_conns,
	       unsigned idle_timeout_s, char *errmsg)
{
	struct sockaddr_storage ss;
	const union MHD_DaemonInfo *info;
	char host[256];
	const char *colon = strrchr(addr, ':');
	unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC;
	struct MHD_OptionItem tls_opts[4];
	uint64_t port;
	size_t hlen;

	if (colon == NULL || bcn_parse_u64(colon + 1, &port) != 0 ||
	    port > 65535 || (size_t)(colon - addr) >= sizeof host) {
		bcn_errf(errmsg, "bad --http-addr '%s' (want HOST:PORT)", addr);
		return BCN_EINVAL;
	}
	hlen = (size_t)(colon - addr);
	memcpy(host, addr, hlen);
	host[hlen] = '\0';
	if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
		memmove(host, host + 1, hlen - 2);
		host[hlen - 2] = '\0';
	}
	memset(&ss, 0, sizeof ss);
	if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&ss) != 0) {
		if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&ss) !=
		    0) {
			bcn_errf(errmsg,
				 "bad --http-addr '%s': not an IP "
				 "address",
				 addr);
			return BCN_EINVAL;
		}
		flags |= MHD_USE_IPv6;
	}
	if (tls_load(s, &flags, tls_opts, errmsg) != 0)
		return BCN_EINVAL;
	s->mhd = MHD_start_daemon(
	    flags, (uint16_t)port, NULL, NULL, on_request, s, MHD_OPTION_ARRAY,
	    tls_opts, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	    MHD_OPTION_URI_LOG_CALLBACK, uri_log, s,
	    MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
	    MHD_OPTION_CONNECTION_LIMIT, max_conns,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT,
	    (unsigned)s->cfg->http_max_conns_per_client,
	    MHD_OPTION_CONNECTION_TIMEOUT, idle_timeout_s,
	    MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024,
	    /* Per-connection pool: libmicrohttpd zeroes it for every request,
	     * so 32 KiB (its default) costs a 32 KiB memset per request.
	     * 16 KiB holds the longest request line and headers we take. */
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(16 * 1024),
	    /* HTTP/1.1 without Host and spaces in the URL: 400 (as Consul) */
	    MHD_OPTION_STRICT_FOR_CLIENT, (int)1, MHD_OPTION_EXTERNAL_LOGGER,
	    mhd_log, NULL, MHD_OPTION_END);
	if (s->mhd == NULL) {
		bcn_errf(errmsg, "cannot listen on %s (address in use?)", addr);
		return BCN_EIO;
	}
	info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	uv_poll_init(s->loop, &s->mhd_poll, info->epoll_fd);
	s->mhd_poll.data = s;
	s->mhd_poll_open = true;
	uv_poll_start(&s->mhd_poll, UV_READABLE, mhd_poll_cb);
	bcn_info(MOD, "%s API on %s",
		 s->tls_cert_pem != NULL ? "HTTPS" : "HTTP", addr);
	mhd_run(s);
	return 0;
}

void http_quiesce(struct srv *s)
{
	MHD_socket fd;

	if (s->mhd == NULL)
		return;
	fd = MHD_quiesce_daemon(s->mhd);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
}

void http_stop(struct srv *s)
{
	/* Answer every blocking query with what it has now. */
	while (s->heap_n > 0) {
		struct http_req *r = s->heap[0];
		watch_remove(r);
		r->timed_out = true;
		http_reply_err(r, BCN_ESHUTDOWN);
	}
	uv_timer_stop(&s->watch_timer);
	retry_held(s, false); /* s->stopping: each gets 503 */
	uv_timer_stop(&s->hold_timer);
	fwd_close(s);
	s->mhd_kick = true;
}

unsigned http_inflight(struct srv *s)
{
	return s->inflight;
}

void http_close(struct srv *s)
{
	if (s->mhd != NULL) {
		MHD_stop_daemon(s->mhd);
		s->mhd = NULL;
	}
	bcn_free(s->heap);
	s->heap = NULL;
	bcn_free(s->rate);
	s->rate = NULL;
	bcn_free(s->tls_cert_pem);
	if (s->tls_key_pem != NULL)
		memset(s->tls_key_pem, 0, strlen(s->tls_key_pem));
	bcn_free(s->tls_key_pem);
	bcn_free(s->tls_ca_pem);
	s->tls_cert_pem = s->tls_key_pem = s->tls_ca_pem = NULL;
}

void http_tick(struct srv *s)
{
	struct kv_changes ch;
	struct cat_changes cc;

	upkeep_turn(s);
	if (s->cluster != NULL) {
		kv_changes_take(cluster_kv(s->cluster), &ch);
		cat_changes_take(cluster_cat(s->cluster), &cc);
		sessions_turn(s, cluster_serving(s->cluster),
			      ch.all ||
				  kv_changes_match(&ch, KV_SESSIONS_KEY, true),
			      cc.all || cc.n_checks > 0);
		if (s->checks != NULL && (cc.n_checks > 0 || cc.all))
			checks_changed(s->checks, &cc);
		if ((ch.n > 0 || ch.all || cc.n > 0 || cc.all) &&
		    s->watch_head != NULL) {
			struct http_req *r = s->watch_head, *next;
			for (; r != NULL; r = next) {
				next = r->wnext;
				if (r->watch_cat
					? !cat_changes_match(&cc, r->watch_key)
					: !kv_changes_match(&ch, r->watch_key,
							    r->watch_exact))
					continue;
				watch_remove(r);
				read_attempt(r);
				/* read_attempt may re-add @r at the head:
				 * @next was taken before, so no loop. */
			}
		}
	}
	if (s->held_head != NULL && s->cluster != NULL) {
		char leader[256];
		if (cluster_serving(s->cluster) ||
		    cluster_leader_http(s->cluster, leader, sizeof leader))
			retry_held(s, false);
	}
	if (s->mhd_kick)
		mhd_run(s);
}

/* ---- liveness and readiness ---------------------------------------------- */

bool http_ready(struct srv *s, const char **why)
{
	static char buf[160];
	struct cluster *c = s->cluster;
	struct cluster_stats st;
	uint64_t lc;
	const char *dummy;

	if (why == NULL)
		why = &dummy;
	if (c == NULL || s->stopping) {
		*why = "shutting down";
		return false;
	}
	if (cluster_serving(c))
		return true;
	if (cluster_is_leader(c)) {
		*why = "elected, not serving yet";
		return false;
	}
	if (cluster_leader_addr(c)[0] == '\0') {
		*why = "no known leader";
		return false;
	}
	lc = cluster_last_contact_ms(c);
	if (lc > 2 * s->cfg->raft_election_timeout) {
		*why = "no recent contact with the leader";
		return false;
	}
	cluster_get_stats(c, &st);
	if (st.commit_index > st.applied_index + 1000) {
		snprintf(buf, sizeof buf, "catching up: applied %llu of %llu",
			 (unsigned long long)st.applied_index,
			 (unsigned long long)st.commit_index);
		*why = buf;
		return false;
	}
	return true;
}

void http_status_live(struct http_req *r)
{
	struct bcn_buf b;

	bcn_buf_init(&b);
	bcn_buf_puts(&b, "true");
	http_reply_json(r, 200, &b);
}

void http_status_ready(struct http_req *r)
{
	const char *why = "";
	bool ok = http_ready(r->srv, &why);
	struct bcn_buf b;

	bcn_buf_init(&b);
	bcn_buf_printf(&b, "{\"Ready\":%s", ok ? "true" : "false");
	if (!ok) {
		bcn_buf_puts(&b, ",\"Reason\":");
		bcn_buf_put_json_str(&b, why, strlen(why));
	}
	bcn_buf_putc(&b, '}');
	http_reply_json(r, ok ? 200 : 503, &b);
}
