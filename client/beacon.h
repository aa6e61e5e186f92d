/* libbeacon: the C client library of Beacon (and of any server that speaks
 * Consul's HTTP API).
 *
 * A `struct beacon` holds a list of servers, tried in turn: a server that
 * fails is skipped for an exponentially growing, jittered back-off, and
 * every call has a timeout. Reads can go through a disk cache of the last
 * answer the cluster gave: when no server answers, the cached answer is
 * returned and flagged stale (`meta->stale`, `meta->cached`).
 *
 * Threads. A `struct beacon` may be used by several threads at once. Each
 * watch (beacon_watch_start) and each heartbeat (beacon_heartbeat_start)
 * runs its own thread, which makes blocking calls and runs the callback.
 *
 * Errors. Functions return 0 or a negative BEACON_E* code. When a call
 * takes a `struct beacon_meta *meta` (which may be NULL), details of a
 * failure are in meta->error.
 *
 * Memory. Strings and buffers handed to the library are borrowed for the
 * duration of the call. What the library returns is freed with the
 * function named next to it.
 *
 * Link with `pkg-config --cflags --libs beacon` (libcurl, jansson,
 * pthreads). */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define BEACON_API __attribute__((visibility("default")))
#else
#define BEACON_API
#endif

#define BEACON_VERSION	  "0.1.0"
#define BEACON_ERRMSG_LEN 256
#define BEACON_SERVER_LEN 128

/* Error codes. The first six have the values of Beacon's own codes
 * (common/err.h). */
enum {
	BEACON_ENOMEM = -ENOMEM,  /* out of memory */
	BEACON_EIO = -EIO,	  /* a local file could not be read/written */
	BEACON_EINVAL = -1000,	  /* bad argument; or the server said 400 */
	BEACON_ENOTFOUND = -1001, /* no such key, service, ...; or 404 */
	BEACON_ECONFLICT = -1002, /* a check-and-set did not match */
	BEACON_ETOOBIG = -1003,	  /* the server said 413 */
	BEACON_EUNAVAILABLE = -1100, /* no server answered in time */
	BEACON_ESERVER = -1101,	     /* the server failed (5xx) */
	BEACON_EDENIED = -1102,	     /* the server said 401/403 (ACLs) */
	BEACON_EPROTO = -1103,	     /* an answer the library cannot read */
	BEACON_ECANCELED = -1104,    /* stopped by beacon_watch_stop() */
};

/* Return a static, human-readable message for @code (never NULL). */
BEACON_API const char *beacon_strerror(int code);

/* Return the library version, BEACON_VERSION at build time. */
BEACON_API const char *beacon_version(void);

/* ---- client ------------------------------------------------------------ */

enum beacon_consistency {
	BEACON_CONSISTENCY_DEFAULT = 0, /* answered by the leader */
	BEACON_CONSISTENCY_STALE,	/* any server, from its own state */
	BEACON_CONSISTENCY_CONSISTENT,	/* the leader, after a quorum round */
};

/* Caller-allocated. Fill it with beacon_config_init(), then set what you
 * need. Every string is copied by beacon_new(). */
struct beacon_config {
	/* Comma-separated servers, each "host:port", "http://host:port" or
	 * "https://host:port". NULL: $BEACON_HTTP_ADDR, then
	 * $CONSUL_HTTP_ADDR, then "127.0.0.1:8500". */
	const char *addrs;
	/* ACL token, sent as X-Consul-Token. NULL: $BEACON_HTTP_TOKEN, then
	 * $CONSUL_HTTP_TOKEN; none if those are unset. Never logged. */
	const char *token;
	/* TLS, for https:// servers (passed to libcurl). */
	const char *ca_file;	     /* CA bundle to verify servers */
	const char *ca_path;	     /* directory of CA certificates */
	const char *client_cert;     /* PEM client certificate */
	const char *client_key;	     /* PEM key of @client_cert */
	const char *tls_server_name; /* name to verify instead of the host */
	bool tls_skip_verify;	     /* do not verify servers (testing only) */
	/* ?dc= on every request; NULL: the server's own datacenter. */
	const char *datacenter;
	/* Directory of the disk cache of reads (created 0700 if missing);
	 * NULL: no cache. */
	const char *cache_dir;
	enum beacon_consistency consistency; /* of reads */
	unsigned timeout_ms;	     /* one call, all servers; default 5000 */
	unsigned connect_timeout_ms; /* one connection; default 1000 */
	unsigned backoff_min_ms; /* first back-off of a failed server; 100 */
	unsigned backoff_max_ms; /* longest back-off; default 10000 */
	unsigned wait_ms;	 /* blocking-query wait; default 30000 */
	void *reserved[8];
};

struct beacon;

/* Set @cfg to the defaults above (all strings NULL). */
BEACON_API void beacon_config_init(struct beacon_config *cfg);

/* Create a client from @cfg (borrowed; NULL means all defaults). Contacts
 * no server. Returns 0 and *@out (free with beacon_free()), BEACON_EINVAL
 * for a malformed address (details in @errmsg, BEACON_ERRMSG_LEN bytes, may
 * be NULL), BEACON_EIO if the cache directory cannot be created, or
 * BEACON_ENOMEM. */
BEACON_API int beacon_new(struct beacon **out, const struct beacon_config *cfg,
			  char *errmsg);

/* Free @b. Every watch and heartbeat of @b must be stopped first. */
BEACON_API void beacon_free(struct beacon *b);

/* What a call learnt about its answer. Caller-allocated; every call that
 * takes one fills it (on success and failure). */
struct beacon_meta {
	uint64_t index;	   /* X-Consul-Index of the answer; 0 if none */
	int status;	   /* HTTP status; 0 when no server answered */
	bool stale;	   /* not a fresh answer of the cluster */
	bool cached;	   /* answered from the disk cache */
	bool known_leader; /* X-Consul-KnownLeader */
	int64_t age_ms;	   /* @cached: how old the cached answer is */
	char server[BEACON_SERVER_LEN]; /* base URL that answered */
	char error[BEACON_ERRMSG_LEN];	/* details of a failure, or "" */
	char reserved[64];
};

/* ---- raw requests -------------------------------------------------------- */

#define BEACON_REQ_RETRY (1u << 0) /* safe to resend to another server */
#define BEACON_REQ_CACHE (1u << 1) /* read through the disk cache */

/* One HTTP request, for endpoints without a wrapper below. */
struct beacon_req {
	const char *method;	  /* NULL: "GET" */
	const char *path;	  /* percent-encoded, "/v1/..." */
	const char *query;	  /* "a=1&b", percent-encoded, or NULL */
	const void *body;	  /* NULL: none */
	size_t body_len;	  /* bytes of @body */
	const char *content_type; /* of @body; NULL: application/octet-stream */
	uint64_t index;		  /* > 0: a blocking query from this index */
	unsigned flags;		  /* BEACON_REQ_* */
	void *reserved[4];
};

/* Send @req to the first server that answers. GETs are sent again to the
 * next server on any failure (connection, timeout, "No cluster leader");
 * other methods only when nothing was sent, or with BEACON_REQ_RETRY.
 * The datacenter and consistency of the configuration are added.
 *
 * Returns 0 for a 2xx answer, BEACON_ENOTFOUND for 404 (the body is still
 * returned), BEACON_EINVAL (400), BEACON_EDENIED (401, 403),
 * BEACON_ECONFLICT (409), BEACON_ETOOBIG (413), BEACON_ESERVER (other
 * answers), BEACON_EUNAVAILABLE (no answer) or BEACON_ENOMEM. With
 * BEACON_REQ_CACHE, a 200 or 404 answer is cached and, when no server
 * answers, the cached one is returned (meta->cached). *@body (may be NULL
 * if unwanted) is a malloc'd, NUL-terminated copy of the answer's body
 * (free() it), set whenever a server or the cache answered; NULL
 * otherwise. */
BEACON_API int beacon_request(struct beacon *b, const struct beacon_req *req,
			      char **body, size_t *len,
			      struct beacon_meta *meta);

/* Return a malloc'd copy of @s (free() it) with every byte other than
 * A-Z a-z 0-9 - . _ ~ and '/' percent-encoded; NULL on OOM. */
BEACON_API char *beacon_escape(const char *s);

/* ---- KV ------------------------------------------------------------------ */

struct beacon_kv {
	char *key;
	char *value;	  /* the bytes, plus a NUL; "" for an empty value */
	size_t value_len; /* without the NUL */
	uint64_t flags;
	uint64_t create_index;
	uint64_t modify_index;
	uint64_t lock_index;
	char *session; /* holder of the lock, or NULL */
};

struct beacon_kv_list {
	struct beacon_kv *items; /* sorted by key */
	size_t n;
};

/* Read @key. Returns 0 and *@out (free with beacon_kv_free()),
 * BEACON_ENOTFOUND, or an error. Cached. */
BEACON_API int beacon_kv_get(struct beacon *b, const char *key,
			     struct beacon_kv **out, struct beacon_meta *meta);
BEACON_API void beacon_kv_free(struct beacon_kv *kv);

/* Read every key that starts with @prefix ("" for all) into @out (close it
 * with beacon_kv_list_close()). No key is not an error: n = 0. Cached. */
BEACON_API int beacon_kv_list(struct beacon *b, const char *prefix,
			      struct beacon_kv_list *out,
			      struct beacon_meta *meta);
BEACON_API void beacon_kv_list_close(struct beacon_kv_list *l);

/* The key names under @prefix; with a non-empty @separator, cut after its
 * first occurrence past the prefix (Consul's ?keys&separator). *@keys is a
 * malloc'd array of *@n malloc'd strings: free with beacon_strv_free().
 * Cached. */
BEACON_API int beacon_kv_keys(struct beacon *b, const char *prefix,
			      const char *separator, char ***keys, size_t *n,
			      struct beacon_meta *meta);
BEACON_API void beacon_strv_free(char **v, size_t n);

/* Write @value (@len bytes) with @flags. */
BEACON_API int beacon_kv_put(struct beacon *b, const char *key,
			     const void *value, size_t len, uint64_t flags,
			     struct beacon_meta *meta);

/* Write only if the key's ModifyIndex is still @modify_index (0: only if
 * the key does not exist). Returns 0 or BEACON_ECONFLICT. */
BEACON_API int beacon_kv_cas(struct beacon *b, const char *key,
			     const void *value, size_t len, uint64_t flags,
			     uint64_t modify_index, struct beacon_meta *meta);

/* Delete @key (0 also if it did not exist). */
BEACON_API int beacon_kv_delete(struct beacon *b, const char *key,
				struct beacon_meta *meta);
/* Delete @key only if its ModifyIndex is @modify_index (> 0). Returns 0 or
 * BEACON_ECONFLICT. */
BEACON_API int beacon_kv_delete_cas(struct beacon *b, const char *key,
				    uint64_t modify_index,
				    struct beacon_meta *meta);
/* Delete every key that starts with @prefix ("" deletes everything). */
BEACON_API int beacon_kv_delete_tree(struct beacon *b, const char *prefix,
				     struct beacon_meta *meta);

/* ---- services ------------------------------------------------------------ */

/* A service registration (PUT /v1/agent/service/register on the server that
 * answers: in Beacon each server is the agent of its own node). With
 * @ttl_ms, @http or @tcp it carries one check, "service:<id>". */
struct beacon_service {
	const char *name;    /* required */
	const char *id;	     /* NULL: @name */
	const char *address; /* NULL: the node's */
	unsigned port;
	const char *const *tags; /* @n_tags strings */
	size_t n_tags;
	const char *const *meta; /* @n_meta pairs: key, value, key, ... */
	size_t n_meta;
	unsigned weight_passing;      /* 0: 1 */
	unsigned weight_warning;      /* 0: 1 */
	unsigned ttl_ms;	      /* a TTL check */
	const char *http;	      /* an HTTP check of this URL */
	const char *tcp;	      /* a TCP check of "host:port" */
	unsigned interval_ms;	      /* of @http/@tcp; 0: 10 s */
	unsigned deregister_after_ms; /* DeregisterCriticalServiceAfter */
	void *reserved[8];
};

BEACON_API int beacon_service_register(struct beacon *b,
				       const struct beacon_service *svc,
				       struct beacon_meta *meta);
BEACON_API int beacon_service_deregister(struct beacon *b, const char *id,
					 struct beacon_meta *meta);

enum beacon_health {
	BEACON_PASSING = 0,
	BEACON_WARNING,
	BEACON_CRITICAL,
};

/* Set the status of TTL check @check_id ("service:<id>" for the check of
 * a registration) with an optional @note. BEACON_ESERVER if the server does
 * not know it as a TTL check. */
BEACON_API int beacon_check_update(struct beacon *b, const char *check_id,
				   enum beacon_health status, const char *note,
				   struct beacon_meta *meta);

struct beacon_heartbeat;

/* Register @svc (which needs @ttl_ms; copied) and keep its TTL check
 * passing from a thread, every @ttl_ms / 3. If a server no longer knows the
 * check (after a failover to another server, or a restore), the thread
 * registers the service again. Returns 0 once the first registration and
 * pass succeeded, and *@out (stop with beacon_heartbeat_stop()). */
BEACON_API int beacon_heartbeat_start(struct beacon *b,
				      const struct beacon_service *svc,
				      struct beacon_heartbeat **out,
				      struct beacon_meta *meta);

/* Stop the thread (at most one request's timeout), deregister the service
 * if @deregister, free @hb. */
BEACON_API void beacon_heartbeat_stop(struct beacon_heartbeat *hb,
				      bool deregister);

/* ---- health -------------------------------------------------------------- */

struct beacon_instance {
	char *node;    /* node name */
	char *id;      /* service ID */
	char *service; /* service name */
	char *address; /* the service's address, else the node's */
	unsigned port;
	char **tags; /* @n_tags strings */
	size_t n_tags;
	unsigned weight;	   /* Weights.Passing (Warning if in warning) */
	enum beacon_health status; /* worst of its checks */
};

struct beacon_instances {
	struct beacon_instance *items;
	size_t n;
};

/* The instances of @service (with @tag if not NULL; only those whose
 * checks all pass if @passing_only) into @out (close it with
 * beacon_instances_close()). An unknown service is n = 0. Cached. */
BEACON_API int beacon_health_service(struct beacon *b, const char *service,
				     const char *tag, bool passing_only,
				     struct beacon_instances *out,
				     struct beacon_meta *meta);
BEACON_API void beacon_instances_close(struct beacon_instances *l);

enum beacon_lb {
	BEACON_LB_RANDOM = 0,  /* random, in proportion to weight */
	BEACON_LB_ROUND_ROBIN, /* smooth weighted round-robin */
};

/* Choose one instance of @l by @lb, skipping critical ones and weight 0.
 * Round-robin state lives in @b, per service and instance, so successive
 * calls over fresh lookups still take turns. Returns a pointer into @l, or
 * NULL if none qualifies. */
BEACON_API const struct beacon_instance *
beacon_pick(struct beacon *b, const struct beacon_instances *l,
	    enum beacon_lb lb);

/* ---- watches ------------------------------------------------------------- */

enum beacon_watch_type {
	BEACON_WATCH_KEY = 0,	/* /v1/kv/<key> */
	BEACON_WATCH_KEYPREFIX, /* /v1/kv/<key>?recurse */
	BEACON_WATCH_SERVICE,	/* /v1/health/service/<key> */
	BEACON_WATCH_SERVICES,	/* /v1/catalog/services */
	BEACON_WATCH_NODES,	/* /v1/catalog/nodes */
	BEACON_WATCH_CHECKS,	/* /v1/health/checks/<key>, or
				   /v1/health/state/<state> */
};

struct beacon_watch_spec {
	enum beacon_watch_type type;
	const char *key;    /* key, prefix or service name */
	const char *tag;    /* SERVICE: only instances with this tag */
	bool passing_only;  /* SERVICE: only passing instances */
	const char *state;  /* CHECKS without @key: "any" (default), ... */
	bool fire_on_start; /* also call back with the first answer */
	unsigned wait_ms;   /* blocking wait; 0: the configuration's */
	void *reserved[4];
};

/* What changed. Borrowed for the duration of the callback. */
struct beacon_watch_event {
	const char *body; /* the answer's JSON: "null" for a missing key,
			     "[]" for an empty prefix */
	size_t len;
	uint64_t index; /* X-Consul-Index it was read at */
	bool stale;	/* from the disk cache: no server answered */
};

/* Runs on the watch's thread. */
typedef void (*beacon_watch_cb)(void *data,
				const struct beacon_watch_event *ev);

struct beacon_watch;

/* Watch what @spec names with blocking queries, on a thread of its own.
 * @cb is called when the content changes: never on a mere timeout, never
 * twice in a row for the same content (indexes are not content: writing a
 * key's same value again is not a change), and with the first answer only
 * if @spec->fire_on_start. While no server answers, the thread retries
 * with back-off; if the first answer has to come from the cache, it is
 * delivered with ev->stale. After an outage the watch resumes from the
 * index it had and delivers what changed meanwhile. Returns 0 and *@out
 * (stop with beacon_watch_stop()), BEACON_EINVAL or BEACON_ENOMEM. */
BEACON_API int beacon_watch_start(struct beacon *b,
				  const struct beacon_watch_spec *spec,
				  beacon_watch_cb cb, void *data,
				  struct beacon_watch **out);

/* Stop and free @w: interrupts a blocking query at once, waits for a
 * running callback to return. @cb is never called after this returns.
 * Must not be called from @cb. */
BEACON_API void beacon_watch_stop(struct beacon_watch *w);

#ifdef __cplusplus
}
#endif
