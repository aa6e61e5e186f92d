/* beacond: one process, one libuv loop, one thread.
 *
 * Start-up: configuration, the replicated state (cluster_start), the HTTP
 * API. Every loop turn ends in prepare_cb(): commit the apply batch, notice
 * leadership changes, wake blocking queries, run libmicrohttpd if a reply
 * is waiting. Shutdown on SIGTERM/SIGINT: stop accepting, answer blocking
 * queries, close raft (pending writes get "unknown outcome"), let replies
 * drain, stop HTTP, exit 0. */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "raft/cluster.h"
#include "server/config.h"
#include "server/http.h"
#include "server/audit.h"
#include "server/keyring.h"
#include "server/metrics.h"
#include "server/srv.h"
#include "server/sessions.h"
#include "server/srv_dns.h"
#include "server/upkeep.h"

#define MOD	 "main"
#define DRAIN_MS 2000

uint64_t srv_random(struct srv *s)
{
	/* xorshift64: jitter only, nothing secret. */
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 7;
	s->rng ^= s->rng << 17;
	return s->rng;
}

static void handle_close_cb(uv_handle_t *h)
{
	(void)h;
}

static void close_all(struct srv *s)
{
	http_close(s);
	if (s->mhd_poll_open)
		uv_close((uv_handle_t *)&s->mhd_poll, handle_close_cb);
	uv_close((uv_handle_t *)&s->mhd_timer, handle_close_cb);
	uv_close((uv_handle_t *)&s->watch_timer, handle_close_cb);
	uv_close((uv_handle_t *)&s->hold_timer, handle_close_cb);
	uv_close((uv_handle_t *)&s->members_timer, handle_close_cb);
	uv_close((uv_handle_t *)&s->prepare, handle_close_cb);
	uv_close((uv_handle_t *)&s->sigterm, handle_close_cb);
	uv_close((uv_handle_t *)&s->sigint, handle_close_cb);
	uv_close((uv_handle_t *)&s->sighup, handle_close_cb);
	uv_close((uv_handle_t *)&s->stop_timer, handle_close_cb);
}

/* After raft closed: give replies up to DRAIN_MS to leave, then close. */
static void drain_cb(uv_timer_t *t)
{
	struct srv *s = t->data;
	static uint64_t waited;

	http_tick(s);
	if (http_inflight(s) > 0 && waited < DRAIN_MS) {
		waited += 20;
		uv_timer_start(&s->stop_timer, drain_cb, 20, 0);
		return;
	}
	bcn_info(MOD, "stopped");
	close_all(s);
}

static void cluster_stopped_cb(void *data)
{
	struct srv *s = data;

	uv_timer_start(&s->stop_timer, drain_cb, 0, 0);
}

static void begin_stop(struct srv *s, int exit_code)
{
	struct cluster *c = s->cluster;

	if (s->stopping)
		return;
	s->stopping = true;
	s->exit_code = exit_code;
	members_stop(s);
	upkeep_stop(s);
	sessions_stop(s);
	http_quiesce(s);
	http_stop(s);
	srv_dns_stop(s);
	s->cluster = NULL; /* no request touches it from now on */
	cluster_stop(c, cluster_stopped_cb, s);
}

/* SIGHUP: apply what can change without a restart (the log level and
 * format), read again from flags, environment and config file. */
static void sighup_cb(uv_signal_t *h, int signum)
{
	struct srv *s = h->data;
	char errmsg[BCN_ERRMSG_LEN] = "";
	enum bcn_log_level lvl;
	struct config c;

	(void)signum;
	if (config_reload(&c, s->argc, s->argv, errmsg) != 0) {
		bcn_warn(MOD, "SIGHUP: configuration not reloaded: %s", errmsg);
	} else if (bcn_log_level_parse(c.log_level, &lvl) != 0 ||
		   (strcmp(c.log_format, "text") != 0 &&
		    strcmp(c.log_format, "json") != 0)) {
		bcn_warn(MOD,
			 "SIGHUP: bad log level '%s' or format '%s'; "
			 "nothing changed",
			 c.log_level, c.log_format);
	} else {
		bcn_log_min = lvl;
		bcn_log_set_json(strcmp(c.log_format, "json") == 0);
		bcn_info(MOD, "SIGHUP: reloaded: log level %s, format %s",
			 c.log_level, c.log_format);
	}
	config_close(&c);
}

static void signal_cb(uv_signal_t *h, int signum)
{
	struct srv *s = h->data;

	bcn_info(MOD, "signal %d: shutting down", signum);
	begin_stop(s, 0);
}

/* Deferred from prepare_cb so that raft_close never runs inside a raft
 * callback. */
static void unavailable_cb(uv_timer_t *t)
{
	struct srv *s = t->data;

	bcn_error(MOD, "raft became unavailable (I/O failure?); exiting");
	begin_stop(s, 1);
}

static void prepare_cb(uv_prepare_t *p)
{
	struct srv *s = p->data;

	if (s->cluster != NULL && cluster_tick(s->cluster) && !s->stopping)
		uv_timer_start(&s->stop_timer, unavailable_cb, 0, 0);
	http_tick(s);
}

int main(int argc, char **argv)
{
	char errmsg[BCN_ERRMSG_LEN] = "";
	struct cluster_options co;
	struct config cfg;
	struct srv s;
	uv_loop_t loop;
	int rc;

	signal(SIGPIPE, SIG_IGN); /* a dead peer must not kill us */
	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = config_load(&cfg, argc, argv, errmsg);
	if (rc != 0) {
		config_close(&cfg);
		if (rc == 1)
			return 0;
		fprintf(stderr, "beacond: %s\n", errmsg);
		return 2;
	}
	if (bcn_log_level_parse(cfg.log_level, &bcn_log_min) != 0 ||
	    (strcmp(cfg.log_format, "text") != 0 &&
	     strcmp(cfg.log_format, "json") != 0)) {
		fprintf(stderr, "beacond: bad --log-level or --log-format\n");
		config_close(&cfg);
		return 2;
	}
	bcn_log_set_json(strcmp(cfg.log_format, "json") == 0);

	memset(&s, 0, sizeof s);
	s.cfg = &cfg;
	s.rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^
		0x9e3779b97f4a7c15ULL;
	if (keyring_open(&s.keyring, cfg.encrypt_key_file, cfg.encrypt_key,
			 errmsg) != 0) {
		fprintf(stderr, "beacond: encryption key: %s\n", errmsg);
		config_close(&cfg);
		return 2;
	}
	if (s.keyring != NULL)
		bcn_info(MOD, "secrets: sealing with key %s",
			 keyring_primary(s.keyring));
	else
		bcn_warn(MOD, "no encryption key (--encrypt-key-file or "
			      "BEACON_ENCRYPT_KEY): secret requests will be "
			      "refused");
	if (audit_open(&s, cfg.audit_log, errmsg) != 0) {
		fprintf(stderr, "beacond: %s\n", errmsg);
		keyring_close(s.keyring);
		config_close(&cfg);
		return 2;
	}
	uv_loop_init(&loop);
	s.loop = &loop;

	co = (struct cluster_options){
	    .node = cfg.node,
	    .data_dir = cfg.data_dir,
	    .raft_addr = cfg.raft_addr,
	    .http_addr = cfg.http_addr,
	    .join = cfg.join[0] != '\0',
	    .initial_cluster = cfg.initial_cluster,
	    .election_timeout_ms = (unsigned)cfg.raft_election_timeout,
	    .heartbeat_ms = (unsigned)cfg.raft_heartbeat,
	    .snapshot_threshold = (unsigned)cfg.snapshot_threshold,
	    .snapshot_trailing = (unsigned)cfg.snapshot_trailing,
	    .cache_kib = (unsigned)cfg.cache_kib,
	    .tombstone_ttl_ms = cfg.tombstone_ttl,
	};
	rc = cluster_start(&s.cluster, &loop, &co, errmsg);
	if (rc != 0) {
		fprintf(stderr, "beacond: %s\n", errmsg);
		goto out_loop;
	}
	uv_prepare_init(&loop, &s.prepare);
	s.prepare.data = &s;
	uv_prepare_start(&s.prepare, prepare_cb);
	uv_timer_init(&loop, &s.stop_timer);
	s.stop_timer.data = &s;
	uv_timer_init(&loop, &s.mhd_timer);
	s.mhd_timer.data = &s;
	uv_timer_init(&loop, &s.watch_timer);
	s.watch_timer.data = &s;
	uv_timer_init(&loop, &s.hold_timer);
	s.hold_timer.data = &s;
	uv_timer_init(&loop, &s.members_timer);
	s.members_timer.data = &s;
	uv_signal_init(&loop, &s.sigterm);
	uv_signal_init(&loop, &s.sigint);
	s.sigterm.data = s.sigint.data = &s;
	uv_signal_start(&s.sigterm, signal_cb, SIGTERM);
	uv_signal_start(&s.sigint, signal_cb, SIGINT);
	uv_signal_init(&loop, &s.sighup);
	s.sighup.data = &s;
	uv_signal_start(&s.sighup, sighup_cb, SIGHUP);
	s.argc = argc;
	s.argv = argv;

	rc = metrics_init(&s);
	if (rc == 0)
		rc = upkeep_start(&s);
	if (rc == 0)
		rc = sessions_start(&s);
	if (rc != 0)
		bcn_errf(errmsg, "out of memory");
	else
		rc = http_start(&s, cfg.http_addr, (unsigned)cfg.http_max_conns,
				(unsigned)(cfg.http_idle_timeout / 1000),
				errmsg);
	if (rc == 0)
		rc = srv_dns_start(&s, errmsg);
	if (rc != 0) {
		fprintf(stderr, "beacond: %s\n", errmsg);
		begin_stop(&s, 1);
	}
	if (!s.stopping)
		members_start(&s);
	uv_run(&loop, UV_RUN_DEFAULT);
	metrics_close(&s);
	rc = s.exit_code;
out_loop:
	if (uv_loop_close(&loop) != 0) {
		bcn_warn(MOD, "loop closed with handles still open");
		rc = rc == 0 ? 1 : rc;
	}
	if (cfg.dev_dir != NULL) {
		char cmd[4200];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", cfg.dev_dir);
		if (system(cmd) != 0)
			bcn_warn(MOD, "could not remove %s", cfg.dev_dir);
	}
	keyring_close(s.keyring);
	audit_close(&s);
	config_close(&cfg);
	curl_global_cleanup();
	return rc == 0 ? 0 : 1;
}
