/* The service catalog: nodes, services and their health checks, in the
 * SQLite state, as CONSUL-API.md §3–§5 describe them.
 *
 * Pure logic over a borrowed SQLite connection: no HTTP, no Raft, no loop.
 * The raft module calls cat_apply() for committed commands, in log order,
 * on every server; the server module calls the read functions; the check
 * runner (checks_io.c) decides status changes on the leader.
 *
 * Indexes, and why they are precise: every change records "topics", and
 * each topic keeps the last index that changed it:
 *   "s/<name>"  a service name: its instances, their checks, the node-level
 *               checks and the address of the nodes they run on;
 *   "n/<node>"  a node: its record, services and checks;
 *   "S"         the list of service names and tags;
 *   "N"         the list of nodes;
 *   "C"         any check (for /v1/health/state).
 * A blocking query on /v1/health/service/web watches "s/web" and wakes
 * only when that topic changed. Topic rows outlive what they name, so an
 * index never goes backwards after a deregistration. Unknown names get the
 * catalog's overall index (at least 1). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"

struct sqlite3;
struct cat_store;

#define CAT_MAX_NAME   512   /* node names, service and check IDs */
#define CAT_MAX_STR    65536 /* notes, output, HTTP bodies, ... */
#define CAT_MAX_OUTPUT 4096  /* default OutputMaxSize */
#define CAT_MAX_LIST   64    /* tags, meta keys, headers */
#define CAT_MAX_OPS    64    /* in one cat_apply() */
#define CAT_NODE_CHECK "serfHealth"
#define CAT_SERVER_SVC "consul"

enum cat_status { CAT_PASSING = 1, CAT_WARNING, CAT_CRITICAL };

const char *cat_status_name(enum cat_status s);
/* Parse "passing", "warning", "critical"; 0 if none of them. */
enum cat_status cat_status_parse(const char *s);

/* A list of strings packed as "a\0b\0": tags; or pairs "k\0v\0": meta,
 * tagged addresses, HTTP headers (a name may repeat). The bytes are owned
 * by whoever owns the record (see each struct). */
struct cat_strs {
	const char *data;
	size_t len;
};

/* Iterate: @pos starts at 0; returns the next string or NULL at the end. */
const char *cat_strs_next(const struct cat_strs *l, size_t *pos);
size_t cat_strs_count(const struct cat_strs *l);
bool cat_strs_has(const struct cat_strs *l, const char *s);

struct cat_node {
	const char *name;
	const char *id; /* "" if none */
	const char *address;
	struct cat_strs tagged; /* pairs: "lan" → "10.0.0.1" */
	struct cat_strs meta;	/* pairs */
	uint64_t create_index, modify_index;
};

struct cat_service {
	const char *node;
	const char *id;
	const char *name;
	const char *kind;	/* "" for a typical service */
	struct cat_strs tags;	/* list */
	const char *address;	/* "" → consumers use the node's */
	struct cat_strs tagged; /* triples: name, address, port (decimal) */
	struct cat_strs meta;	/* pairs */
	uint32_t port;
	uint32_t weight_passing, weight_warning;
	bool enable_tag_override;
	uint64_t create_index, modify_index;
};

/* What a check does; the runner reads it, the API shows it as Definition. */
struct cat_check_def {
	uint64_t interval_ms, timeout_ms, ttl_ms;
	uint64_t deregister_after_ms; /* DeregisterCriticalServiceAfter */
	const char *http, *method, *body, *tcp, *tls_server_name;
	struct cat_strs header; /* pairs */
	bool tls_skip_verify, disable_redirects;
	uint32_t output_max; /* 0 → CAT_MAX_OUTPUT */
};

struct cat_check {
	const char *node;
	const char *id;
	const char *name;
	enum cat_status status;
	const char *notes, *output;
	const char *service_id;	  /* "" for a node-level check */
	const char *service_name; /* "" for a node-level check */
	const char *type;	  /* "ttl", "http", "tcp", "maintenance", "" */
	struct cat_check_def def;
	uint64_t create_index, modify_index;
};

/* ---- commands ------------------------------------------------------------ */

enum cat_verb {
	CAT_NODE_SET = 1,   /* upsert @node */
	CAT_NODE_DELETE,    /* @node.name with its services and checks */
	CAT_SERVICE_SET,    /* upsert @svc (its node must exist) */
	CAT_SERVICE_DELETE, /* @svc.node, @svc.id with its checks */
	CAT_CHECK_SET,	    /* upsert @chk; @keep_status: an existing check
			       keeps its status and output */
	CAT_CHECK_DELETE,   /* @chk.node, @chk.id */
	CAT_CHECK_STATUS,   /* @chk.node, @chk.id → @chk.status, @chk.output;
			       no-op if missing or unchanged */
	CAT_VERB_NR
};

struct cat_op {
	enum cat_verb verb;
	bool keep_status;
	struct cat_node node;
	struct cat_service svc;
	struct cat_check chk;
};

/* Encode @op into @out (one self-contained blob; strings carry their NUL
 * so that a decoded op points into the blob). */
int cat_op_encode(const struct cat_op *op, struct bcn_buf *out) BCN_MUST_CHECK;
/* Decode @buf[0..len) into @op, pointing into @buf. BCN_ECORRUPT if
 * malformed (truncated, trailing bytes, unknown verb, a string without its
 * NUL, a limit exceeded). */
int cat_op_decode(const void *buf, size_t len,
		  struct cat_op *op) BCN_MUST_CHECK;

/* Check @op as a client request before it is proposed: names present and
 * within limits, statuses valid, a check's service on the same node.
 * Returns 0 or BCN_EINVAL with a Consul-style reason in @why. */
int cat_op_check(const struct cat_op *op, char *why,
		 size_t whylen) BCN_MUST_CHECK;

/* ---- the store ------------------------------------------------------------
 */

int cat_store_open(struct cat_store **out, struct sqlite3 *db,
		   char *errmsg) BCN_MUST_CHECK;
void cat_store_close(struct cat_store *s);
/* Create the tables and indexes a state image loaded from an older
 * snapshot lacks (idempotent). */
int cat_store_migrate(struct cat_store *s) BCN_MUST_CHECK;

/* Outcome of cat_apply(): with !ok, which op failed and why (Consul's
 * words, e.g. a service on a node that does not exist). */
struct cat_result {
	bool ok;
	size_t failed_op;
	char what[CAT_MAX_NAME + 128];
};

/* Apply @ops all-or-nothing at Raft index @index. Deterministic. A refused
 * op is a normal outcome (@res->ok false, return 0, nothing changed).
 * Returns BCN_ENOMEM or BCN_EIO only for local failures. @res may be NULL. */
int cat_apply(struct cat_store *s, const struct cat_op *ops, size_t n,
	      uint64_t index, struct cat_result *res) BCN_MUST_CHECK;

/* ---- reads ------------------------------------------------------------------
 * Results are owned by a cat_rows, which keeps every string they point at;
 * cat_rows_close() frees it all. */

struct cat_rows {
	struct cat_node *nodes;
	struct cat_service *svcs;
	struct cat_check *chks;
	size_t n_nodes, n_svcs, n_chks;
	size_t cap_nodes, cap_svcs, cap_chks;
	char **blocks; /* one per row: the strings it points at */
	size_t n_blocks, cap_blocks;
};

void cat_rows_close(struct cat_rows *r);

/* The index of @topic (see above), or the catalog's if it was never
 * touched. */
int cat_index(struct cat_store *s, const char *topic,
	      uint64_t *index) BCN_MUST_CHECK;

/* Each appends to @out, sorted (nodes by name; services by node, id;
 * checks by node, id). */
int cat_nodes(struct cat_store *s, struct cat_rows *out) BCN_MUST_CHECK;
/* BCN_ENOTFOUND if the node does not exist. */
int cat_node(struct cat_store *s, const char *name,
	     struct cat_rows *out) BCN_MUST_CHECK;
/* Every service (all nodes), or those named @name, or those on @node. A
 * NULL argument does not filter. */
int cat_services(struct cat_store *s, const char *name, const char *node,
		 struct cat_rows *out) BCN_MUST_CHECK;
/* One service instance: BCN_ENOTFOUND if missing. */
int cat_service(struct cat_store *s, const char *node, const char *id,
		struct cat_rows *out) BCN_MUST_CHECK;
/* Checks filtered by any of: @node, @service_name, @status (0: any). */
int cat_checks(struct cat_store *s, const char *node, const char *service_name,
	       enum cat_status status, struct cat_rows *out) BCN_MUST_CHECK;
/* One check: BCN_ENOTFOUND if missing. */
int cat_check(struct cat_store *s, const char *node, const char *id,
	      struct cat_rows *out) BCN_MUST_CHECK;

/* Health of every instance of @name: the instances in @out->svcs, the
 * nodes they run on in @out->nodes (one per distinct node), and all their
 * checks (the service's own and the node-level ones) in @out->chks. */
int cat_health_service(struct cat_store *s, const char *name,
		       struct cat_rows *out) BCN_MUST_CHECK;

/* Counts, for metrics. */
int cat_stats(struct cat_store *s, uint64_t *nodes, uint64_t *services,
	      uint64_t *checks) BCN_MUST_CHECK;

/* ---- changes, for blocking queries and the check runner ------------------ */

/* Topics changed since the last take, sorted, distinct; @checks lists
 * "<node>\0<check id>" of every check set, deleted or changed (for the
 * check runner). @all after a restore. Valid until the next take or
 * apply. */
struct cat_changes {
	char **topics;
	size_t n;
	char **checks;
	size_t n_checks;
	bool all;
};

void cat_changes_take(struct cat_store *s, struct cat_changes *out);
void cat_changes_mark_all(struct cat_store *s);
bool cat_changes_match(const struct cat_changes *c, const char *topic);
