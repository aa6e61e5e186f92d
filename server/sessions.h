/* Sessions on the leader: TTL deadlines and invalidation when a session's
 * node or one of its checks fails. Only invalidations go through Raft (a
 * destroy with the leader's clock, for lock-delays); renewals reset a
 * deadline in memory. A new leader gives every session a full TTL from its
 * election. A session expires 1.5 TTL after its last renewal (or the
 * election): never before its TTL, and within Consul's promise of 2 × TTL
 * even across a failover of up to half a TTL. */
#pragma once

#include <stdbool.h>

#include "common/err.h"

struct srv;
struct kv_session;

int sessions_start(struct srv *s) BCN_MUST_CHECK;
void sessions_stop(struct srv *s);
/* Each loop turn: leadership, and what changed (see http_tick). */
void sessions_turn(struct srv *s, bool leading, bool sessions_changed,
		   bool checks_changed);
/* Renew @id on the leader. BCN_ENOTFOUND if there is no such session. */
int sessions_renew(struct srv *s, const char *id) BCN_MUST_CHECK;
