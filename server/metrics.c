#include "server/metrics.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "server/http.h"
#include "dns/server.h"
#include "health/checks.h"
#include "server/srv.h"

#define MAX_STATUS 600

struct route_metrics {
	uint64_t by_status[MAX_STATUS];
	struct cluster_hist latency;
};

struct metrics {
	size_t n; /* routes + 1: the last one counts unmatched paths */
	struct route_metrics *routes;
};

int metrics_init(struct srv *s)
{
	struct metrics *m = bcn_calloc(1, sizeof *m);

	if (m == NULL)
		return BCN_ENOMEM;
	m->n = http_route_count() + 1;
	m->routes = bcn_calloc(m->n, sizeof *m->routes);
	if (m->routes == NULL) {
		bcn_free(m);
		return BCN_ENOMEM;
	}
	s->metrics = m;
	return 0;
}

void metrics_close(struct srv *s)
{
	if (s->metrics == NULL)
		return;
	bcn_free(s->metrics->routes);
	bcn_free(s->metrics);
	s->metrics = NULL;
}

void metrics_http(struct srv *s, int route, unsigned status, double ms)
{
	struct metrics *m = s->metrics;
	struct route_metrics *rm;

	if (m == NULL || status >= MAX_STATUS)
		return;
	rm = &m->routes[route < 0 ? m->n - 1 : (size_t)route];
	rm->by_status[status]++;
	cluster_hist_add(&rm->latency, ms);
}

static const char *route_label(struct metrics *m, size_t i)
{
	return i + 1 == m->n ? "other" : http_route_name(i);
}

static uint64_t rss_bytes(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f == NULL)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &resident) != 2)
		resident = 0;
	fclose(f);
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* The values gathered at scrape time. */
struct snapshot {
	struct cluster_stats cs;
	uint64_t kv_keys, kv_bytes, rss, blocking, held;
	uint64_t nodes, services, checks;
	struct checks_stats ck;
	struct dns_server_stats dns;
	bool ready;
};

static void gather(struct srv *s, struct snapshot *g)
{
	memset(g, 0, sizeof *g);
	cluster_get_stats(s->cluster, &g->cs);
	if (kv_stats(cluster_kv(s->cluster), &g->kv_keys, &g->kv_bytes) != 0)
		g->kv_keys = g->kv_bytes = 0;
	if (cat_stats(cluster_cat(s->cluster), &g->nodes, &g->services,
		      &g->checks) != 0)
		g->nodes = g->services = g->checks = 0;
	if (s->checks != NULL)
		checks_get_stats(s->checks, &g->ck);
	if (s->dns != NULL)
		dns_server_get_stats(s->dns, &g->dns);
	g->rss = rss_bytes();
	g->blocking = s->heap_n;
	for (struct http_req *r = s->held_head; r != NULL; r = r->hnext)
		g->held++;
	g->ready = http_ready(s, NULL);
}

/* ---- Prometheus text format ---------------------------------------------- */

static void prom_head(struct bcn_buf *b, const char *name, const char *type,
		      const char *help)
{
	bcn_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
		       type);
}

static void prom_gauge(struct bcn_buf *b, const char *name, const char *help,
		       double v)
{
	prom_head(b, name, "gauge", help);
	bcn_buf_printf(b, "%s %.17g\n", name, v);
}

static void prom_counter(struct bcn_buf *b, const char *name, const char *help,
			 uint64_t v)
{
	prom_head(b, name, "counter", help);
	bcn_buf_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

/* One histogram series (in seconds) with @labels ("" or `k="v",`). */
static void prom_hist(struct bcn_buf *b, const char *name, const char *labels,
		      const struct cluster_hist *h)
{
	uint64_t cum = 0;

	for (unsigned i = 0; i < CLUSTER_HIST_BUCKETS; i++) {
		cum += h->buckets[i];
		if (i + 1 < CLUSTER_HIST_BUCKETS)
			bcn_buf_printf(b, "%s_bucket{%sle=\"%g\"} %llu\n", name,
				       labels, cluster_hist_bounds_ms[i] / 1000,
				       (unsigned long long)cum);
		else
			bcn_buf_printf(b, "%s_bucket{%sle=\"+Inf\"} %llu\n",
				       name, labels, (unsigned long long)cum);
	}
	if (labels[0] != '\0') {
		/* Drop the trailing comma for _sum and _count. */
		size_t n = strlen(labels) - 1;
		bcn_buf_printf(b, "%s_sum{%.*s} %.9f\n%s_count{%.*s} %llu\n",
			       name, (int)n, labels, h->sum_ms / 1000, name,
			       (int)n, labels, (unsigned long long)h->count);
	} else {
		bcn_buf_printf(b, "%s_sum %.9f\n%s_count %llu\n", name,
			       h->sum_ms / 1000, name,
			       (unsigned long long)h->count);
	}
}

static void prometheus(struct srv *s, struct bcn_buf *b)
{
	static const char *const states[] = {"leader", "follower", "candidate",
					     "unavailable"};
	struct metrics *m = s->metrics;
	struct snapshot g;

	gather(s, &g);
	prom_head(b, "beacon_raft_state", "gauge",
		  "1 for this server's current Raft state");
	for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
		bcn_buf_printf(b, "beacon_raft_state{state=\"%s\"} %d\n",
			       states[i], strcmp(g.cs.state, states[i]) == 0);
	prom_gauge(b, "beacon_raft_term", "current Raft term",
		   (double)g.cs.term);
	prom_gauge(b, "beacon_raft_commit_index", "Raft commit index",
		   (double)g.cs.commit_index);
	prom_gauge(b, "beacon_raft_applied_index",
		   "last index applied to this server's state",
		   (double)g.cs.applied_index);
	prom_gauge(b, "beacon_raft_last_index", "last index of the Raft log",
		   (double)g.cs.last_index);
	prom_counter(b, "beacon_raft_leader_changes_total",
		     "times the leader known to this server changed",
		     g.cs.leader_changes);
	prom_head(b, "beacon_raft_apply_duration_seconds", "histogram",
		  "time from proposal to applied, on the leader");
	prom_hist(b, "beacon_raft_apply_duration_seconds", "", &g.cs.apply);
	prom_counter(b, "beacon_snapshots_total",
		     "Raft snapshots taken by this server", g.cs.snapshots);
	prom_gauge(b, "beacon_snapshot_last_bytes", "size of the last snapshot",
		   (double)g.cs.snapshot_last_bytes);
	prom_gauge(b, "beacon_snapshot_last_duration_seconds",
		   "time the last snapshot held the loop (database copy)",
		   g.cs.snapshot_last_ms / 1000);
	prom_gauge(b, "beacon_kv_keys", "keys in the KV store",
		   (double)g.kv_keys);
	prom_gauge(b, "beacon_kv_bytes", "bytes of KV values",
		   (double)g.kv_bytes);
	prom_gauge(b, "beacon_catalog_nodes", "nodes in the catalog",
		   (double)g.nodes);
	prom_gauge(b, "beacon_catalog_services",
		   "service instances in the catalog", (double)g.services);
	prom_gauge(b, "beacon_catalog_checks", "health checks in the catalog",
		   (double)g.checks);
	prom_gauge(b, "beacon_checks_running",
		   "checks run by this server (the leader)",
		   (double)g.ck.checks);
	prom_counter(b, "beacon_checks_heartbeats_total",
		     "TTL heartbeats received by this leader", g.ck.beats);
	prom_counter(b, "beacon_checks_writes_total",
		     "check status or output changes written", g.ck.writes);
	prom_counter(b, "beacon_checks_ttl_expired_total",
		     "TTL checks that ran out", g.ck.ttl_expired);
	prom_counter(b, "beacon_checks_probes_total",
		     "HTTP and TCP probes completed", g.ck.probes);
	prom_counter(b, "beacon_checks_deregistered_total",
		     "services removed after DeregisterCriticalServiceAfter",
		     g.ck.deregistered);
	prom_head(b, "beacon_dns_queries_total", "counter",
		  "DNS queries received, by transport");
	bcn_buf_printf(b,
		       "beacon_dns_queries_total{transport=\"udp\"} %llu\n"
		       "beacon_dns_queries_total{transport=\"tcp\"} %llu\n",
		       (unsigned long long)g.dns.udp,
		       (unsigned long long)g.dns.tcp);
	prom_head(b, "beacon_dns_answers_total", "counter",
		  "DNS answers, by outcome");
	bcn_buf_printf(b,
		       "beacon_dns_answers_total{rcode=\"noerror\"} %llu\n"
		       "beacon_dns_answers_total{rcode=\"nxdomain\"} %llu\n"
		       "beacon_dns_answers_total{rcode=\"other\"} %llu\n"
		       "beacon_dns_answers_total{rcode=\"forwarded\"} %llu\n"
		       "beacon_dns_answers_total{rcode=\"dropped\"} %llu\n",
		       (unsigned long long)g.dns.noerror,
		       (unsigned long long)g.dns.nxdomain,
		       (unsigned long long)g.dns.other_rcode,
		       (unsigned long long)g.dns.forwarded,
		       (unsigned long long)g.dns.dropped);
	prom_counter(b, "beacon_dns_truncated_total",
		     "UDP answers cut to fit, with TC set", g.dns.truncated);
	prom_gauge(b, "beacon_http_blocking_queries",
		   "blocking queries waiting for a change", (double)g.blocking);
	prom_gauge(b, "beacon_http_waiting_for_leader",
		   "requests waiting for a leader", (double)g.held);
	prom_gauge(b, "beacon_http_inflight_requests",
		   "HTTP requests not yet completed", (double)s->inflight);
	prom_gauge(b, "beacon_ready", "1 if this server reports ready",
		   g.ready ? 1 : 0);
	prom_gauge(b, "beacon_process_resident_memory_bytes",
		   "resident memory (VmRSS)", (double)g.rss);

	prom_head(b, "beacon_http_requests_total", "counter",
		  "HTTP requests by route and status");
	for (size_t i = 0; i < m->n; i++)
		for (unsigned code = 0; code < MAX_STATUS; code++)
			if (m->routes[i].by_status[code] > 0)
				bcn_buf_printf(
				    b,
				    "beacon_http_requests_total{route=\"%s\","
				    "code=\"%u\"} %llu\n",
				    route_label(m, i), code,
				    (unsigned long long)m->routes[i]
					.by_status[code]);
	prom_head(b, "beacon_http_request_duration_seconds", "histogram",
		  "HTTP request latency by route");
	for (size_t i = 0; i < m->n; i++) {
		char labels[128];
		if (m->routes[i].latency.count == 0)
			continue;
		snprintf(labels, sizeof labels, "route=\"%s\",",
			 route_label(m, i));
		prom_hist(b, "beacon_http_request_duration_seconds", labels,
			  &m->routes[i].latency);
	}
}

/* ---- JSON (Consul's /v1/agent/metrics shape) --------------------------- */

static void json_gauge(struct bcn_buf *b, bool *first, const char *name,
		       double v)
{
	bcn_buf_printf(b, "%s{\"Name\":\"%s\",\"Value\":%.17g,\"Labels\":{}}",
		       *first ? "" : ",", name, v);
	*first = false;
}

static void json_sample(struct bcn_buf *b, bool *first, const char *name,
			const char *route, const struct cluster_hist *h)
{
	bcn_buf_printf(b,
		       "%s{\"Name\":\"%s\",\"Count\":%llu,\"Sum\":%.6f,"
		       "\"Mean\":%.6f,\"Labels\":{",
		       *first ? "" : ",", name, (unsigned long long)h->count,
		       h->sum_ms, h->count > 0 ? h->sum_ms / h->count : 0.0);
	if (route != NULL)
		bcn_buf_printf(b, "\"route\":\"%s\"", route);
	bcn_buf_puts(b, "}}");
	*first = false;
}

static void json(struct srv *s, struct bcn_buf *b)
{
	struct metrics *m = s->metrics;
	struct snapshot g;
	char ts[64];
	time_t now = time(NULL);
	struct tm tm;
	bool first = true;

	gather(s, &g);
	gmtime_r(&now, &tm);
	strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S +0000 UTC", &tm);
	bcn_buf_printf(b, "{\"Timestamp\":\"%s\",\"Gauges\":[", ts);
	json_gauge(b, &first, "beacon.raft.term", (double)g.cs.term);
	json_gauge(b, &first, "beacon.raft.commit_index",
		   (double)g.cs.commit_index);
	json_gauge(b, &first, "beacon.raft.applied_index",
		   (double)g.cs.applied_index);
	json_gauge(b, &first, "beacon.raft.leader",
		   strcmp(g.cs.state, "leader") == 0);
	json_gauge(b, &first, "beacon.snapshot.last_bytes",
		   (double)g.cs.snapshot_last_bytes);
	json_gauge(b, &first, "beacon.snapshot.last_ms", g.cs.snapshot_last_ms);
	json_gauge(b, &first, "beacon.kv.keys", (double)g.kv_keys);
	json_gauge(b, &first, "beacon.kv.bytes", (double)g.kv_bytes);
	json_gauge(b, &first, "beacon.catalog.nodes", (double)g.nodes);
	json_gauge(b, &first, "beacon.catalog.services", (double)g.services);
	json_gauge(b, &first, "beacon.catalog.checks", (double)g.checks);
	json_gauge(b, &first, "beacon.checks.running", (double)g.ck.checks);
	json_gauge(b, &first, "beacon.checks.heartbeats", (double)g.ck.beats);
	json_gauge(b, &first, "beacon.checks.writes", (double)g.ck.writes);
	json_gauge(b, &first, "beacon.dns.queries",
		   (double)(g.dns.udp + g.dns.tcp));
	json_gauge(b, &first, "beacon.dns.nxdomain", (double)g.dns.nxdomain);
	json_gauge(b, &first, "beacon.dns.truncated", (double)g.dns.truncated);
	json_gauge(b, &first, "beacon.http.blocking_queries",
		   (double)g.blocking);
	json_gauge(b, &first, "beacon.http.waiting_for_leader", (double)g.held);
	json_gauge(b, &first, "beacon.ready", g.ready);
	json_gauge(b, &first, "beacon.runtime.rss_bytes", (double)g.rss);
	bcn_buf_puts(b, "],\"Points\":[],\"Counters\":[");
	first = true;
	bcn_buf_printf(b,
		       "{\"Name\":\"beacon.raft.leader_changes\","
		       "\"Count\":%llu,\"Labels\":{}},"
		       "{\"Name\":\"beacon.raft.snapshots\",\"Count\":%llu,"
		       "\"Labels\":{}}",
		       (unsigned long long)g.cs.leader_changes,
		       (unsigned long long)g.cs.snapshots);
	for (size_t i = 0; i < m->n; i++)
		for (unsigned code = 0; code < MAX_STATUS; code++)
			if (m->routes[i].by_status[code] > 0)
				bcn_buf_printf(
				    b,
				    ",{\"Name\":\"beacon.http.requests\","
				    "\"Count\":%llu,\"Labels\":{\"route\":"
				    "\"%s\",\"code\":\"%u\"}}",
				    (unsigned long long)m->routes[i]
					.by_status[code],
				    route_label(m, i), code);
	bcn_buf_puts(b, "],\"Samples\":[");
	first = true;
	json_sample(b, &first, "beacon.raft.apply_ms", NULL, &g.cs.apply);
	for (size_t i = 0; i < m->n; i++)
		if (m->routes[i].latency.count > 0)
			json_sample(b, &first, "beacon.http.request_ms",
				    route_label(m, i), &m->routes[i].latency);
	bcn_buf_puts(b, "]}");
}

void http_agent_metrics(struct http_req *r)
{
	const struct http_arg *fmt = http_arg(r, "format");
	struct bcn_buf b;

	if (r->srv->cluster == NULL) {
		http_reply_err(r, BCN_ESHUTDOWN);
		return;
	}
	bcn_buf_init(&b);
	if (fmt != NULL && strcmp(fmt->value, "prometheus") == 0) {
		prometheus(r->srv, &b);
		if (bcn_buf_failed(&b)) {
			bcn_buf_close(&b);
			http_reply_err(r, BCN_ENOMEM);
			return;
		}
		http_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8",
			   b.data, b.len);
		bcn_buf_close(&b);
		return;
	}
	if (fmt != NULL && fmt->value[0] != '\0') {
		http_reply_text(r, 400,
				"Unknown format: use ?format=prometheus "
				"or no format for JSON");
		bcn_buf_close(&b);
		return;
	}
	json(r->srv, &b);
	http_reply_json(r, 200, &b);
}
