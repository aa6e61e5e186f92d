/* The server: what main() owns and every part of server/ reaches. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "server/config.h"
#include "server/members.h"

struct MHD_Daemon;
struct cluster;
struct http_req;
struct fwd;
struct metrics;
struct bcn_curl;
struct dns_server;

struct srv {
	uv_loop_t *loop;
	const struct config *cfg;
	struct cluster *cluster;

	struct MHD_Daemon *mhd;
	uv_poll_t mhd_poll;
	bool mhd_poll_open;
	uv_timer_t mhd_timer;
	bool mhd_kick;	   /* run MHD at the end of this turn */
	unsigned inflight; /* requests not yet completed */

	/* Blocking queries: all of them, and a min-heap by deadline. */
	struct http_req *watch_head;
	struct http_req **heap;
	size_t heap_n, heap_cap;
	uv_timer_t watch_timer;

	/* Requests waiting for a leader (http.c), retried every turn and on a
	 * timer, failed after --leader-wait. */
	struct http_req *held_head;
	uv_timer_t hold_timer;

	/* Forwarding to the leader (forward.c): libcurl on the loop, opened
	 * at the first forward, closed by fwd_close(). */
	struct bcn_curl *curl;
	struct fwd *fwds;

	/* Membership upkeep (members.c). */
	uv_timer_t members_timer;
	struct member_probe probes[MEMBERS_MAX];
	bool join_busy;
	bool promote_busy;   /* a spare's promotion in flight (members.c) */
	uint64_t promote_at; /* uv_now() of the last one */

	struct checks *checks;	   /* the check runner (health/checks.h) */
	struct sessions *sessions; /* session TTLs (sessions.c) */
	struct keyring *keyring;   /* NULL: no secrets here (keyring.h) */
	int audit_fd;		   /* -1: no audit log (audit.h) */
	char *tls_cert_pem, *tls_key_pem, *tls_ca_pem; /* while HTTPS runs */
	void *rate;		/* per-client request buckets (http.c) */
	struct dns_server *dns; /* DNS (srv_dns.c); NULL if off */
	uint64_t leader_since;	/* uv_now() when this server began serving */

	struct metrics *metrics;
	uv_signal_t sighup;
	int argc;
	char **argv;

	uv_prepare_t prepare;
	uv_signal_t sigterm, sigint;
	uv_timer_t stop_timer;
	bool stopping;
	int exit_code;
	uint64_t rng;
};

/* A random number for jitter. */
uint64_t srv_random(struct srv *s);
/* The wall clock in milliseconds since the epoch: the time the leader writes
 * into the log for lock-delays. */
uint64_t srv_now_ms(void);
/* A new random session ID (a version 4 UUID). */
void srv_session_uuid(struct srv *s, char out[37]);
/* True if @id looks like a session ID: 36 characters of hex digits and
 * dashes in the 8-4-4-4-12 form. */
bool http_session_id_ok(const char *id);
