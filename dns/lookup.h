/* Answer one DNS query from the service catalog (CONSUL-API.md §8).
 *
 * Pure logic: no sockets, no loop, no clock and no randomness of its own
 * (the caller passes the time and a random source). The server's I/O
 * (dns/server_io.c) hands each query here and sends back what comes out;
 * the unit tests and the fuzzer do the same over an in-memory catalog.
 *
 * Names served, case-insensitively, under the domain and the alternate
 * domain (an answer uses the one the question used):
 *   [<tag>.]<service>.service[.<dc>[.dc]].<domain>
 *   _<service>._<tag|tcp>[.service][.<dc>[.dc]].<domain>   (RFC 2782)
 *   <node>.node[.<dc>[.dc]].<domain>
 *   <hex>.addr[.<dc>[.dc]].<domain>      8 hex digits: A, 32: AAAA
 *   <domain>                             SOA, NS
 *   <reversed address>.in-addr.arpa / .ip6.arpa   PTR of the nodes that
 *                                        have that address */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct cat_store;
struct dns_cache_stats;
struct dns_lookup;

/* The largest UDP reply, whatever a client's EDNS0 buffer size says: the
 * size we advertise in our OPT record, and the cap on amplification. */
#define DNS_LOOKUP_UDP_MAX 4096

/* The answer cache's defaults (see dns_lookup_answer()), and the most
 * shuffle orders it keeps of one answer: 120 = 5!, so the answers over up
 * to five instances (or servers, for NS) are cached in every order. */
#define DNS_LOOKUP_CACHE_ENTRIES  4096
#define DNS_LOOKUP_CACHE_BYTES	  (4u << 20)
#define DNS_LOOKUP_CACHE_VARIANTS 120

struct dns_lookup_config {
	const char *domain;	   /* "consul" (a final dot is allowed) */
	const char *alt_domain;	   /* NULL or "": none */
	const char *datacenter;	   /* "dc1" */
	bool only_passing;	   /* drop instances in warning too */
	bool enable_truncate;	   /* set TC when records were dropped */
	bool recursor;		   /* a recursor takes names we do not serve */
	unsigned udp_answer_limit; /* answers in a reply of at most 512 bytes */
	uint32_t node_ttl;	   /* seconds: node, addr, NS, PTR records */
	/* Seconds per service, "name=dur,prefix*=dur,*=dur" (Go durations,
	 * e.g. "web=10s,api*=5s,*=0s"): an exact name beats the longest
	 * matching prefix, which beats "*"; unmatched services get 0. NULL
	 * or "": 0 for all. */
	const char *service_ttl;
	/* The answer cache: at most this many queries and bytes (0: the
	 * defaults above); @no_cache: none (every answer is built). */
	size_t cache_entries;
	size_t cache_bytes;
	bool no_cache;
};

/* Create a lookup context from @c (copied). Returns 0; BCN_EINVAL with
 * the reason in @errmsg for a bad domain, datacenter or service_ttl; or
 * BCN_ENOMEM. Free it with dns_lookup_free(). */
int dns_lookup_new(struct dns_lookup **out, const struct dns_lookup_config *c,
		   char *errmsg) BCN_MUST_CHECK;
void dns_lookup_free(struct dns_lookup *l);

enum dns_action {
	DNS_ACT_REPLY,	 /* send the reply written to the buffer */
	DNS_ACT_DROP,	 /* send nothing (not a query at all) */
	DNS_ACT_FORWARD, /* a name we do not serve: send the query to the
			    recursor (only with config.recursor) */
};

struct dns_lookup_req {
	const void *msg; /* the query as received; borrowed for the call */
	size_t len;
	bool tcp;     /* sizes: TCP up to 65535 bytes, UDP see below */
	uint32_t now; /* seconds since the epoch: the SOA serial */
	uint64_t (*rand)(void *data); /* shuffles the answers */
	void *rand_data;
	/* 0, or a number that changes whenever the catalog may have changed
	 * (the Raft applied index): the catalog's own index is then read
	 * once per version instead of once per query. */
	uint64_t version;
};

/* Answer @req from @cat into @out[0..@cap) and set *@len.
 *
 * A UDP reply fits in 512 bytes, or in the client's EDNS0 buffer size (at
 * most DNS_LOOKUP_UDP_MAX); one of at most 512 bytes carries at most
 * udp_answer_limit answers. Records that do not fit are dropped from the
 * end (shuffled first), with TC set if enable_truncate, and at least one
 * answer is kept when it fits alone; an additional record is sent only with
 * the SRV or NS record it serves. @cap should be 65535 for TCP; a smaller
 * @cap lowers the limit.
 *
 * Always answers something, even when @cat is NULL or fails (SERVFAIL):
 * the return value says what to do with it. Uses @l's name caches, so a
 * context serves one catalog at a time and one call at a time.
 *
 * Answers are cached whole, by the query's bytes but its ID and the case
 * of its name (those are patched into a copy), @req->tcp and @cap: a hit
 * gives the same bytes as building the answer would. An answer is valid
 * while the catalog's overall index stays where it was built (any catalog
 * change drops every answer), and one with an SOA (whose serial is
 * @req->now) within the same second only. Shuffled answers are kept per
 * order: a query draws one number from @req->rand, which picks the order
 * (uniformly among the n! orders of n instances); answers with more than
 * DNS_LOOKUP_CACHE_VARIANTS orders are not cached, nor are SERVFAIL,
 * FORMERR, forwards and drops. */
enum dns_action dns_lookup_answer(struct dns_lookup *l, struct cat_store *cat,
				  const struct dns_lookup_req *req, void *out,
				  size_t cap, size_t *len);

/* The answer cache's counters (all zero without a cache). */
void dns_lookup_cache_stats(const struct dns_lookup *l,
			    struct dns_cache_stats *out);

/* Write into @out[0..@cap) an answer with rcode @rcode (SERVFAIL when a
 * forward fails) to the query @msg[0..@len), question and OPT echoed, RA set
 * if @ra. Returns 0, or BCN_EINVAL if @msg is not a query we would answer
 * (then send nothing). */
int dns_lookup_error(const void *msg, size_t len, unsigned rcode, bool ra,
		     void *out, size_t cap, size_t *out_len) BCN_MUST_CHECK;
