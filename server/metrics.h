/* Metrics: HTTP requests by route and status with latency histograms, and
 * the state gathered at scrape time (raft, KV, blocking queries, memory,
 * snapshots). Served by GET /v1/agent/metrics as JSON, or in Prometheus's
 * text format with ?format=prometheus. */
#pragma once

#include "common/err.h"

struct srv;

int metrics_init(struct srv *s) BCN_MUST_CHECK;
void metrics_close(struct srv *s);
/* Count one finished request on route @route (-1: no route matched). */
void metrics_http(struct srv *s, int route, unsigned status, double ms);
