/* The DNS interface of beacond: dns/server.h configured from the --dns-*
 * options and fed from this server's own catalog (stale reads). */
#pragma once

#include "common/err.h"

struct srv;

/* Start DNS on --dns-addr unless it is "" (then do nothing). Call after
 * cluster_start(). Returns 0, or an error with the reason in @errmsg. */
int srv_dns_start(struct srv *s, char *errmsg) BCN_MUST_CHECK;

/* Stop DNS, if it runs: from this call on it no longer reads the catalog,
 * so call it before s->cluster goes away. Its handles close on the loop. */
void srv_dns_stop(struct srv *s);
