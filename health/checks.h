/* The check runner: on the leader, TTL deadlines, HTTP and TCP probes, and
 * DeregisterCriticalServiceAfter, over the catalog's checks.
 *
 * Only changes are written: the runner compares what it sees with the
 * catalog and proposes a CAT_CHECK_STATUS when the status differs, or when
 * only the output differs and the last output write of that check is older
 * than the output interval (then the newest output is kept and written when
 * the interval is over). A heartbeat that changes nothing writes nothing.
 *
 * Failover: a server that becomes leader loads every check and gives each
 * TTL a full TTL from that moment, and each critical check a full
 * DeregisterCriticalServiceAfter, so a failover never turns a live service
 * critical or removes it early. Followers run nothing. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "health/catalog.h"

struct uv_loop_s;
struct checks;

/* Propose @ops on the runner's behalf (fire and forget). Returns 0 if the
 * proposal was made; the runner does not wait for it. */
typedef int (*checks_propose_fn)(void *data, const struct cat_op *ops,
				 size_t n);

struct checks_options {
	uint64_t output_interval_ms; /* rate limit of output-only writes */
	uint64_t sweep_ms;	     /* granularity of deadlines */
};

int checks_open(struct checks **out, struct uv_loop_s *loop,
		struct cat_store *cat, const struct checks_options *o,
		checks_propose_fn propose, void *data) BCN_MUST_CHECK;
/* Cancel every probe and release the runner (asynchronously: its timer is
 * closed on the loop). The catalog must stay open until this returns. */
void checks_close(struct checks *k);

/* Tell the runner whether this server leads (and serves). Cheap when
 * nothing changed; call it every loop turn. */
void checks_set_leader(struct checks *k, bool leading);
/* The catalog changed (cat_changes_take): resync the checks it names. */
void checks_changed(struct checks *k, const struct cat_changes *c);

/* A TTL heartbeat received by the leader for check @id of @node: restarts
 * its TTL. Returns BCN_ENOTFOUND if there is no such TTL check (Consul
 * answers `CheckID "<id>" does not have associated TTL`). On 0, @write
 * says whether the caller should write @status and @output now (a status
 * change, or an output change past the rate limit). */
int checks_ttl_beat(struct checks *k, const char *node, const char *id,
		    enum cat_status status, const char *output,
		    bool *write) BCN_MUST_CHECK;

struct checks_stats {
	uint64_t checks;       /* known to the runner (leader only) */
	uint64_t beats;	       /* TTL heartbeats received */
	uint64_t writes;       /* status or output changes proposed */
	uint64_t ttl_expired;  /* TTLs that ran out */
	uint64_t probes;       /* HTTP and TCP probes completed */
	uint64_t deregistered; /* services removed for being critical */
};

void checks_get_stats(struct checks *k, struct checks_stats *out);
