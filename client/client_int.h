/* libbeacon internals, shared by the files of client/ (the library and the
 * CLI, which links the static library). Nothing here is part of the API:
 * the shared library hides it (-fvisibility=hidden). */
#pragma once

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/beacon.h"

/* Largest answer body accepted (snapshots are the big ones: the server
 * takes up to 1 GiB). */
#define BEACON__MAX_BODY     ((size_t)1100 << 20)
#define BEACON__DEFAULT_ADDR "127.0.0.1:8500"
#define BEACON__DEFAULT_PORT 8500

struct beacon__server {
	char *url;	   /* base URL as configured: "http://host:port" */
	char *req_url;	   /* base URL requests use (tls_server_name) */
	char *connect_to;  /* libcurl CONNECT_TO entry, or NULL */
	unsigned fails;	   /* consecutive failures */
	uint64_t retry_at; /* monotonic ms before which it is skipped */
};

/* One libcurl easy handle with the multi handle that drives it (and keeps
 * its connections alive between requests). */
struct beacon__conn {
	void *easy;  /* CURL * */
	void *multi; /* CURLM * */
	struct beacon__conn *next;
};

struct beacon__rr {
	char *key; /* "service\nnode\nid" */
	int64_t current;
};

struct beacon {
	pthread_mutex_t mu; /* guards everything below that changes */
	struct beacon__server *servers;
	size_t n_servers;
	size_t current;		   /* index of the server that answered last */
	struct beacon__conn *idle; /* pool of unused connections */
	size_t n_idle;
	uint64_t rng;
	struct beacon__rr *rr; /* round-robin state of beacon_pick() */
	size_t n_rr;

	/* Immutable after beacon_new(). */
	char *token;
	char *ca_file, *ca_path, *client_cert, *client_key;
	bool tls_skip_verify;
	char *dc;
	char *cache_dir;
	enum beacon_consistency consistency;
	unsigned timeout_ms, connect_timeout_ms;
	unsigned backoff_min_ms, backoff_max_ms;
	unsigned wait_ms;
};

/* ---- util.c ------------------------------------------------------------- */

uint64_t beacon__now_ms(void); /* monotonic */
int64_t beacon__wall_ms(void); /* Unix time */
/* A uniformly random 64-bit value (xorshift64*, state in @b, locked). */
uint64_t beacon__rand(struct beacon *b);
uint64_t beacon__fnv1a(const void *p, size_t n, uint64_t h);
#define BEACON__FNV_INIT 14695981039346656037ULL
char *beacon__strdup(const char *s); /* NULL for NULL or OOM */
char *beacon__strndup(const char *s, size_t n);
/* Format into @m->error (if @m is not NULL). */
void beacon__errf(struct beacon_meta *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void beacon__meta_reset(struct beacon_meta *m);
/* Free memory that jansson allocated (json_dumps). */
void beacon__json_free(void *p);
/* Hash of a JSON answer's content: the document with every CreateIndex and
 * ModifyIndex member removed, keys sorted. Bodies that are not JSON hash
 * as bytes. Returns 0 or BEACON_ENOMEM. */
int beacon__content_hash(const char *body, size_t len, uint64_t *out);
/* Map an HTTP status to a return code (0 for 2xx). */
int beacon__status_rc(int status);
/* Base64 (standard alphabet, padding). Return malloc'd strings/bytes
 * (free()), NULL on OOM or (decode) malformed input. */
char *beacon__b64_encode(const void *p, size_t n);
char *beacon__b64_decode(const char *s, size_t n, size_t *out_len);

/* ---- http.c ------------------------------------------------------------- */

/* Parse one server address ("host[:port]" or "http[s]://host[:port][/]")
 * into a malloc'd base URL "scheme://host:port". @https picks the scheme of
 * a bare host:port. Returns 0 or BEACON_EINVAL (details in @errmsg, which
 * may be NULL) or BEACON_ENOMEM. */
int beacon__addr_parse(const char *in, size_t n, bool https, char **url,
		       char *errmsg);
/* Split @list at commas (blanks around entries ignored, empty entries
 * skipped) and parse each. *@urls: malloc'd array of malloc'd strings. */
int beacon__addrs_parse(const char *list, bool https, char ***urls, size_t *n,
			char *errmsg);
/* Back-off after @fails consecutive failures (>= 1): @min_ms doubled per
 * failure, capped at @max_ms, then jittered into [d/2, d] by @rnd. */
uint64_t beacon__backoff_ms(unsigned fails, unsigned min_ms, unsigned max_ms,
			    uint64_t rnd);
/* Milliseconds until some server may be tried again (0: one may now). */
uint64_t beacon__retry_in_ms(struct beacon *b);

struct beacon__conn *beacon__conn_new(void);
void beacon__conn_free(struct beacon__conn *c);
/* Interrupt a transfer running on @c from another thread (its cancel flag
 * must be set first). */
void beacon__conn_wakeup(struct beacon__conn *c);

/* beacon_request() with a connection of the caller's (@conn; NULL takes
 * one from the pool), a cancel flag checked while the transfer runs (may
 * be NULL), and the blocking wait (ms; used when req->index > 0). */
int beacon__send(struct beacon *b, const struct beacon_req *req,
		 struct beacon__conn *conn, const atomic_bool *cancel,
		 unsigned wait_ms, char **body, size_t *len,
		 struct beacon_meta *meta);

/* beacon__send() through the disk cache when req->flags has
 * BEACON_REQ_CACHE (beacon_request() is this with the pool and no cancel
 * flag). */
int beacon__request(struct beacon *b, const struct beacon_req *req,
		    struct beacon__conn *conn, const atomic_bool *cancel,
		    unsigned wait_ms, char **body, size_t *len,
		    struct beacon_meta *meta);

/* A GET of @path?@query through the cache, retried on every server.
 * *@body is always set on 0 and on BEACON_ENOTFOUND. */
int beacon__get(struct beacon *b, const char *path, const char *query,
		char **body, size_t *len, struct beacon_meta *meta);

/* ---- cache.c ------------------------------------------------------------ */

struct beacon__cache_entry {
	char *key;	 /* the request it answers: "GET /v1/...?..." */
	int status;	 /* 200 or 404 */
	uint64_t index;	 /* X-Consul-Index */
	int64_t time_ms; /* Unix ms when it was read from a server */
	char *body;	 /* malloc'd, NUL-terminated */
	size_t len;
};

/* The file name of @key inside the cache directory: 16 hex digits of its
 * FNV-1a hash and ".cache" (@out: at least 24 bytes). */
void beacon__cache_name(const char *key, char *out, size_t size);
/* Serialise @e into a malloc'd buffer (free()). Returns 0 or ENOMEM. */
int beacon__cache_encode(const struct beacon__cache_entry *e, char **out,
			 size_t *len);
/* Parse @buf into @e (close with beacon__cache_entry_close()). Returns 0,
 * BEACON_EPROTO if it is not a whole, intact entry, BEACON_ENOTFOUND if it
 * is one for another key (a hash collision), or BEACON_ENOMEM. */
int beacon__cache_decode(const char *buf, size_t len, const char *key,
			 struct beacon__cache_entry *e);
void beacon__cache_entry_close(struct beacon__cache_entry *e);
/* Read the entry of @key from @dir. 0, BEACON_ENOTFOUND, or an error. */
int beacon__cache_load(const char *dir, const char *key,
		       struct beacon__cache_entry *e);
/* Write the entry (temp file, fsync, rename) unless the file already holds
 * the same answer. 0 or BEACON_EIO/BEACON_ENOMEM. */
int beacon__cache_store(const char *dir, const struct beacon__cache_entry *e);
