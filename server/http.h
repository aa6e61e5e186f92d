/* The HTTP server: libmicrohttpd driven from the loop (its epoll fd in a
 * uv_poll_t, its timeout in a uv_timer_t), a context per request, routing,
 * responses, blocking queries and consistency modes.
 *
 * A request's life: http_uri_log() allocates a struct http_req; the access
 * handler parses and checks it when the headers are in, collects the body,
 * then dispatches to a route. A route answers at once with http_reply*(), or
 * starts something asynchronous (a Raft proposal, a barrier, a blocking
 * query), in which case the connection is suspended until a reply is set.
 * The request is freed when libmicrohttpd reports completion, unless a Raft
 * proposal still refers to it; then it is freed by the proposal's callback. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "raft/cluster.h"
#include "server/acl.h"
#include "server/uri.h"

struct srv;
struct MHD_Connection;
struct MHD_Response;
struct fwd;

enum http_method {
	HTTP_GET = 1 << 0,
	HTTP_PUT = 1 << 1,
	HTTP_DELETE = 1 << 2,
	HTTP_POST = 1 << 3,
	HTTP_OPTIONS = 1 << 4,
	HTTP_OTHER = 1 << 5,
};

enum http_consistency { HTTP_DEFAULT, HTTP_STALE, HTTP_CONSISTENT };

struct http_req;
typedef void (*http_fn)(struct http_req *r);

struct http_req {
	struct srv *srv;
	struct MHD_Connection *conn;
	char *raw_uri;
	struct http_uri uri;
	enum http_method method;
	const char *method_str;
	const char *rest; /* path after the route's prefix */
	size_t rest_len;

	struct bcn_buf body;
	uint64_t body_limit;

	/* Reads: consistency mode, blocking query and the function that
	 * (re)computes the answer. */
	enum http_consistency consistency;
	uint64_t block_index; /* 0: not blocking */
	uint64_t wait_ms;
	uint64_t deadline; /* uv_now() ms; 0 until first watched */
	bool timed_out;
	http_fn read_fn;
	void (*write_done)(struct http_req *r, int status);
	char *watch_key; /* kv key or prefix being watched */
	bool watch_exact;
	bool watch_cat; /* @watch_key is a catalog topic */
	bool watching;
	size_t heap_pos;
	struct http_req *wprev, *wnext;

	/* Set when the answer carries read meta headers. */
	bool meta;
	uint64_t index;

	struct MHD_Response *resp;
	unsigned status;
	bool started, dispatched, suspended, completed;
	bool proposing;	   /* a cluster_req refers to this request */
	bool reading;	   /* a cluster_read refers to this request */
	struct fwd *fwd;   /* a forward to the leader in flight */
	int route_idx;	   /* -1 until routed */
	uint64_t start_ns; /* uv_hrtime() when the request line arrived */
	/* Held while no leader can answer (a bounded wait). */
	http_fn route_fn; /* the route, to run again after a hold */
	http_fn hold_fn;
	uint64_t hold_deadline;
	bool held;
	struct http_req *hprev, *hnext;
	char fwd_failed_leader[256]; /* the leader a forward could not reach */
	uint64_t fwd_failed_at;
	char session_id[40];	/* a session being created */
	struct acl_authz authz; /* who asks (resolved at dispatch) */
	bool filtered;		/* ACLs hid part of a list */
	char acl_secret[40];	/* a token secret just made (wiped after) */
	char acl_accessor[40];	/* the token or policy being written */
	void *acl_list;		/* a listing being built */
	struct cluster_change *change; /* owned; a membership change */
	void (*change_ok)(struct http_req *r);
	struct cluster_req creq;
	struct cluster_read cread;
};

/* Start serving on @addr ("host:port"). */
int http_start(struct srv *s, const char *addr, unsigned max_conns,
	       unsigned idle_timeout_s, char *errmsg) BCN_MUST_CHECK;
/* Stop accepting new connections (for shutdown). */
void http_quiesce(struct srv *s);
/* Answer every waiting blocking query now and stop the daemon once nothing
 * is in flight. */
void http_stop(struct srv *s);
/* End of a loop turn: wake blocking queries whose data changed, expire
 * those whose wait ran out, and let libmicrohttpd run if anything moved. */
void http_tick(struct srv *s);
/* Stop the daemon and free what http_start() made (after the loop
 * stopped serving). */
void http_close(struct srv *s);
/* Number of requests still in flight (for shutdown). */
unsigned http_inflight(struct srv *s);

/* Append @ms as a JSON string in Go's time.Duration format ("10s",
 * "1m30s", "500ms"). */
void http_put_duration(struct bcn_buf *b, uint64_t ms);

/* The client's IP address as text ("" if unknown). */
void http_client_ip(struct http_req *r, char *out, size_t cap);

/* ACLs: true if the request's token may @need on @name of @res; else a
 * 403 reply is set. */
bool http_acl(struct http_req *r, enum acl_resource res, const char *name,
	      enum acl_access need);
/* For filtering lists: true if the item may be read; false marks the reply
 * as filtered (X-Consul-Results-Filtered-By-ACLs). */
bool http_acl_visible(struct http_req *r, enum acl_resource res,
		      const char *name);

/* Replies. Each sets the response once; later calls are ignored. */
void http_reply(struct http_req *r, unsigned status, const char *ctype,
		const void *body, size_t len);
void http_reply_json(struct http_req *r, unsigned status, struct bcn_buf *b);
void http_reply_text(struct http_req *r, unsigned status, const char *fmt, ...)
    BCN_PRINTF(3, 4);
/* Reply for an error code from a lower layer. */
void http_reply_err(struct http_req *r, int code);
/* Add a header to the reply already set (no-op if none). */
void http_add_header(struct http_req *r, const char *name, const char *value);
/* Attach read meta headers (X-Consul-Index and friends) to the reply. */
void http_set_index(struct http_req *r, uint64_t index);

/* Parameters. */
const struct http_arg *http_arg(struct http_req *r, const char *name);
bool http_flag(struct http_req *r, const char *name);
/* Parse an optional uint64 parameter; on a bad value replies 400 with
 * @errtext and returns false. */
bool http_arg_u64(struct http_req *r, const char *name, uint64_t *out,
		  bool *present, const char *errtext);

/* Begin a read: checks ?dc, the consistency mode and the blocking
 * parameters, then calls @fn now, after a barrier, or not at all (an error
 * reply is set). @fn computes the answer; to block it calls http_watch_kv()
 * and returns without replying. */
void http_read(struct http_req *r, http_fn fn);
/* From a read function: true if the caller should block instead of
 * answering with @index; then the request waits for a change of @key (or
 * prefix) or the end of its wait, and @fn runs again. */
bool http_block_kv(struct http_req *r, uint64_t index, const char *key,
		   bool exact);

/* The same for a catalog topic (health/catalog.h). */
bool http_block_cat(struct http_req *r, uint64_t index, const char *topic);

/* Begin a write: checks ?dc and leadership. On false a reply is set. */
bool http_write_ok(struct http_req *r);
/* Propose @ops; @done runs with the outcome (not if the client went away). */
void http_propose(struct http_req *r, const struct kv_op *ops, size_t n,
		  void (*done)(struct http_req *r, int status));

void http_propose_cat(struct http_req *r, const struct cat_op *ops, size_t n,
		      void (*done)(struct http_req *r, int status));
void http_propose_session(struct http_req *r, enum cluster_session_op op,
			  const struct kv_session *s,
			  void (*done)(struct http_req *r, int status));
/* Propose a sealed secret's write; @r->write_done must be set. */
int http_propose_secret(struct http_req *r, enum cluster_secret_op op,
			const char *path, const char *key_id, const void *box,
			size_t len, bool cas, uint64_t cas_index);
void http_propose_acl(struct http_req *r, enum kv_acl_op op,
		      const struct kv_acl_token *t,
		      const struct kv_acl_policy *p);
/* Reply 405 with the Allow header for @methods. */
void http_method_not_allowed(struct http_req *r, unsigned methods);

/* A forward of @r never reached the leader (nothing was sent): wait for a
 * leader again, within --leader-wait. */
void http_forward_failed(struct http_req *r);
/* Propose the backup in the request body as the new state. */
void http_restore(struct http_req *r,
		  void (*done)(struct http_req *r, int status));
/* Free a request whose client went away while an operation referred to it
 * (for callbacks that set @proposing). */
void http_req_release(struct http_req *r);

/* The routes, for metrics labels. */
size_t http_route_count(void);
const char *http_route_name(size_t i);
/* True if this server can serve (see /v1/status/ready); else @why, if not
 * NULL, says why. */
bool http_ready(struct srv *s, const char **why);

/* Routes (http_kv.c, http_status.c, http_operator.c, metrics.c). */
void http_agent_metrics(struct http_req *r);
void http_status_live(struct http_req *r);
void http_status_ready(struct http_req *r);
void http_op_join(struct http_req *r);
void http_op_peer(struct http_req *r);
void http_op_transfer(struct http_req *r);
void http_op_config(struct http_req *r);
void http_agent_self(struct http_req *r);
void http_agent_members(struct http_req *r);
void http_snapshot(struct http_req *r);
void http_kv(struct http_req *r);
void http_txn(struct http_req *r);
void http_status_leader(struct http_req *r);
void http_status_peers(struct http_req *r);
/* http_catalog.c: /v1/agent (services, checks), /v1/catalog, /v1/health */
void http_agent_services(struct http_req *r);
void http_agent_service(struct http_req *r);
void http_agent_checks(struct http_req *r);
void http_agent_check(struct http_req *r);
void http_agent_maintenance(struct http_req *r);
void http_agent_health(struct http_req *r);
void http_catalog(struct http_req *r);
void http_health(struct http_req *r);
/* http_session.c: /v1/session */
void http_session(struct http_req *r);
/* http_secret.c: /v1/secret, /v1/operator/secrets */
void http_secret(struct http_req *r);
void http_op_secrets(struct http_req *r);
/* http_acl.c: /v1/acl */
void http_acl_route(struct http_req *r);
