/* The DNS server: UDP and TCP listeners on the loop that answer from the
 * local catalog through dns/lookup.h (stale reads, as Consul serves DNS: a
 * server cut off from the leader keeps answering), and forward the names
 * we do not serve to a recursor if one is configured.
 *
 * TCP (RFC 7766): 2-byte length framing, any number of queries per
 * connection, answered in order; a connection is closed after
 * DNS_TCP_IDLE_MS without a complete query, or when its client stops
 * reading our replies for long enough that DNS_TCP_WBUF_MAX bytes queue up
 * (reading pauses first). Connections beyond the cap are accepted and
 * closed at once, so that clients fail fast instead of waiting in the
 * backlog.
 *
 * Forwarding: the query goes unchanged but for its ID (a fresh random one)
 * over UDP to the recursor; the reply is accepted only from the recursor's
 * address, with our ID and the same question, and relayed with the
 * client's ID. No reply within the timeout, or too many forwards pending:
 * SERVFAIL. */
#pragma once

#include <stdint.h>

#include "common/err.h"
#include "dns/lookup.h"

struct uv_loop_s;
struct cat_store;
struct dns_server;

#define DNS_TCP_MAX_CONNS	1024
#define DNS_TCP_IDLE_MS		10000
#define DNS_TCP_WBUF_MAX	(256 * 1024)
#define DNS_RECURSOR_TIMEOUT_MS 2000
#define DNS_FWD_MAX		1024 /* forwards pending at once */

struct dns_server_options {
	const char *addr;     /* "HOST:PORT" (IPv6 as "[::1]:8600") */
	const char *recursor; /* NULL or "": none; "HOST[:PORT]", port 53 */
	/* The lookup's configuration; its @recursor is set from the above. */
	struct dns_lookup_config lookup;
	/* The catalog to answer from, asked for every query: NULL answers
	 * SERVFAIL. */
	struct cat_store *(*cat)(void *data);
	void *cat_data;
	/* NULL, or (called with @cat_data) a number that changes whenever
	 * the catalog may have changed, 0 if unknown: see the @version of
	 * struct dns_lookup_req. */
	uint64_t (*version)(void *data);
	unsigned max_tcp_conns;	      /* 0: DNS_TCP_MAX_CONNS */
	unsigned tcp_idle_ms;	      /* 0: DNS_TCP_IDLE_MS */
	unsigned recursor_timeout_ms; /* 0: DNS_RECURSOR_TIMEOUT_MS */
};

/* Bind UDP and TCP on @o->addr and start answering on @loop; @o is copied
 * (its strings too). Returns 0, or an error (a bad address or lookup
 * configuration: BCN_EINVAL; a libuv error such as UV_EADDRINUSE) with the
 * reason in @errmsg, after which whatever was opened closes by itself on
 * the loop. */
int dns_server_start(struct dns_server **out, struct uv_loop_s *loop,
		     const struct dns_server_options *o,
		     char *errmsg) BCN_MUST_CHECK;

/* Stop answering at once (no catalog access after this call), close every
 * handle and connection, drop pending forwards, and free @d; then call
 * @cb(@data) if @cb is not NULL, never from inside this call. */
void dns_server_stop(struct dns_server *d, void (*cb)(void *data), void *data);

/* Counters since start, for metrics. */
struct dns_server_stats {
	uint64_t udp, tcp;	     /* queries received */
	uint64_t noerror, nxdomain;  /* answers by rcode */
	uint64_t other_rcode;	     /* FORMERR, SERVFAIL, NOTIMP, REFUSED... */
	uint64_t truncated;	     /* UDP answers with TC set */
	uint64_t forwarded, dropped; /* to the recursor; not answered */
};

void dns_server_get_stats(const struct dns_server *d,
			  struct dns_server_stats *out);
