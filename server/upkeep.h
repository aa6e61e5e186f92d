/* The catalog's upkeep on this server: the check runner (health/checks.h),
 * which proposes through here, and, on the leader, the servers' own
 * catalog entries: each server is a node with a "serfHealth" check
 * (passing while it answers the leader's probes) and an instance of the
 * "consul" service, as Consul shows its servers. */
#pragma once

#include "common/err.h"

struct srv;

int upkeep_start(struct srv *s) BCN_MUST_CHECK;
/* Before the cluster closes: the runner reads its catalog. */
void upkeep_stop(struct srv *s);
/* Once a loop turn: tell the runner whether this server leads. */
void upkeep_turn(struct srv *s);
/* Once a second on the leader (members.c): the servers' entries. */
void upkeep_servers(struct srv *s);
