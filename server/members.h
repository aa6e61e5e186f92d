/* Membership upkeep, once a second:
 * - the leader records itself in the replicated state (name, addresses);
 * - a follower, or a new server started with --join, asks the leader (or
 *   the --join address) to record it, through PUT /v1/operator/raft/join,
 *   which also adds and promotes a server that is not a member yet;
 * - every server probes the others' HTTP API, so that /v1/agent/members
 *   can say which are alive. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct srv;

#define MEMBERS_MAX 16

struct member_probe {
	char raft_addr[256];
	uint64_t last_ok; /* uv_now() of the last answer; 0 never */
	uint64_t last_try;
	bool busy;
};

void members_start(struct srv *s);
void members_stop(struct srv *s);
/* True if the server at @raft_addr answered a probe lately (this server
 * itself always counts as alive). */
bool members_alive(struct srv *s, const char *raft_addr);
