/* The answer cache of dns/lookup.c (internal to dns/): whole wire answers
 * by query, so that a repeated question costs a hash lookup and a copy
 * instead of a catalog read and an encoding.
 *
 * An entry is keyed by the bytes dns_cache_key() builds from a query (all
 * of it but the ID, the question's name lower-cased, plus the transport and
 * the output capacity) and holds up to @n_var answers, one per shuffle
 * variant, each filled on demand. It is valid at one catalog index (@gen)
 * and, if @now_dep, for one second (@now): a lookup at another index or
 * second drops it. The caller decides what may be cached and what makes it
 * valid; this file only keeps the bytes.
 *
 * Bounded in entries and in bytes (keys, answers and bookkeeping), the
 * least recently used out first. The index is set-associative
 * (DNS_CACHE_WAYS entries per set): a query costs the same bounded work
 * whatever the keys hash to, so colliding keys can only evict each other,
 * never slow a lookup down. Pure: no clock, no randomness of its own. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct dns_cache;

#define DNS_CACHE_QUERY_MAX 512 /* longer queries are not cached */
#define DNS_CACHE_KEY_MAX   (5 + DNS_CACHE_QUERY_MAX)
#define DNS_CACHE_WAYS	    4

struct dns_cache_key {
	uint8_t b[DNS_CACHE_KEY_MAX];
	size_t len;
	size_t qname_len; /* wire bytes of the question's name, at offset 12
			     of the query and of its answer */
	uint64_t hash;
};

/* What dns_cache_put() stores: answer @ans[0..@len) (borrowed; copied) as
 * variant @var of @n_var, valid at index @gen and, if @now_dep, at second
 * @now only. */
struct dns_cache_ans {
	uint64_t gen;
	uint32_t now;
	bool now_dep;
	uint32_t n_var;
	uint32_t var;
	const void *ans;
	size_t len;
};

struct dns_cache_stats {
	uint64_t hits, misses;
	uint64_t inserts;   /* answers stored */
	uint64_t evictions; /* entries dropped for room */
	uint64_t stale;	    /* entries dropped at another index or second */
	size_t entries, bytes;
};

/* Create a cache of at most @max_entries entries (at least 1) and
 * @max_bytes bytes. Returns 0 or BCN_ENOMEM. Free it with
 * dns_cache_free(). */
int dns_cache_new(struct dns_cache **out, size_t max_entries,
		  size_t max_bytes) BCN_MUST_CHECK;
void dns_cache_free(struct dns_cache *c);

/* Drop every entry and hash keys with @seed from now on. */
void dns_cache_reset(struct dns_cache *c, uint64_t seed);

/* Build into @k the key of the query @msg[0..@len), asked over TCP if
 * @tcp, answered into at most @cap bytes. Returns 0, or BCN_EINVAL if the
 * query cannot be cached: over DNS_CACHE_QUERY_MAX bytes, or no plain
 * (uncompressed, in bounds) name at offset 12. A key says nothing of
 * whether the query is valid: the caller caches only what it answered. */
int dns_cache_key(const struct dns_cache *c, struct dns_cache_key *k,
		  const void *msg, size_t len, bool tcp,
		  size_t cap) BCN_MUST_CHECK;

/* The answer cached for @k at index @gen and second @now, variant @r
 * modulo the entry's number of variants; sets *@len. Returns NULL if there
 * is none (an entry at another index or second is dropped). The bytes
 * stay valid until the next call on @c; the caller patches its copy (ID,
 * the question's spelling). */
const uint8_t *dns_cache_get(struct dns_cache *c, const struct dns_cache_key *k,
			     uint64_t gen, uint32_t now, uint64_t r,
			     size_t *len);

/* Store @a under @k, replacing an entry of another index, second or
 * number of variants, and evicting the least recently used entries beyond
 * the bounds. Returns 0; BCN_ETOOBIG if the entry would take more than an
 * eighth of the byte bound; BCN_EINVAL if @a->var is not below @a->n_var;
 * BCN_ENOMEM. On an error nothing new is cached (an older entry may be
 * gone). */
int dns_cache_put(struct dns_cache *c, const struct dns_cache_key *k,
		  const struct dns_cache_ans *a) BCN_MUST_CHECK;

void dns_cache_get_stats(const struct dns_cache *c,
			 struct dns_cache_stats *out);
