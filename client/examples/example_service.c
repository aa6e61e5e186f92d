/* An application using libbeacon: it registers itself with a TTL check and
 * keeps it passing, reads its configuration from the KV prefix
 * <name>/config/, reacts when that configuration changes, and finds a
 * healthy instance of a service it depends on. Everything it reads goes
 * through the disk cache, so it keeps its configuration through an outage
 * of the whole cluster.
 *
 *   build/examples/example-service -name web -port 8080 \
 *       -cache-dir /var/cache/web [-depends db] [-ttl-ms 10000]
 *
 * Servers come from $BEACON_HTTP_ADDR (comma-separated). Stop it with
 * SIGINT or SIGTERM: it deregisters itself.
 *
 * Built against the installed library:
 *   cc example_service.c $(pkg-config --cflags --libs beacon) */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/beacon.h"

struct app {
	struct beacon *b;
	char prefix[256];
	pthread_mutex_t mu; /* stdout is shared with the watch thread */
};

/* Print the configuration: what a real service would apply. */
static void apply_config(struct app *a, const struct beacon_kv_list *l,
			 const char *why, bool stale)
{
	pthread_mutex_lock(&a->mu);
	printf("%s%s: %zu keys\n", why, stale ? " (stale, from the cache)" : "",
	       l->n);
	for (size_t i = 0; i < l->n; i++)
		printf("  %s = %.*s\n", l->items[i].key,
		       (int)l->items[i].value_len, l->items[i].value);
	fflush(stdout);
	pthread_mutex_unlock(&a->mu);
}

/* Runs on the watch's thread, only when the configuration changed. The
 * event carries the answer's JSON; this reads the prefix again instead,
 * through the same (thread-safe) client. */
static void config_changed(void *data, const struct beacon_watch_event *ev)
{
	struct app *a = data;
	struct beacon_kv_list l;
	struct beacon_meta meta;
	char why[64];

	if (beacon_kv_list(a->b, a->prefix, &l, &meta) != 0)
		return;
	snprintf(why, sizeof why, "config changed (index %llu)",
		 (unsigned long long)ev->index);
	apply_config(a, &l, why, ev->stale || meta.stale);
	beacon_kv_list_close(&l);
}

static unsigned num(const char *s)
{
	return (unsigned)strtoul(s, NULL, 10);
}

int main(int argc, char **argv)
{
	const char *name = "example", *cache = NULL, *depends = NULL;
	unsigned port = 0, ttl_ms = 10000;
	struct beacon_config cfg;
	struct beacon_service svc = {0};
	struct beacon_watch_spec spec = {0};
	struct beacon_kv_list conf;
	struct beacon_meta meta;
	struct beacon_heartbeat *hb = NULL;
	struct beacon_watch *w = NULL;
	struct beacon *b;
	struct app a;
	char err[BEACON_ERRMSG_LEN];
	sigset_t set;
	int rc, sig;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "-name") == 0)
			name = argv[i + 1];
		else if (strcmp(argv[i], "-port") == 0)
			port = num(argv[i + 1]);
		else if (strcmp(argv[i], "-cache-dir") == 0)
			cache = argv[i + 1];
		else if (strcmp(argv[i], "-depends") == 0)
			depends = argv[i + 1];
		else if (strcmp(argv[i], "-ttl-ms") == 0)
			ttl_ms = num(argv[i + 1]);
	}
	memset(&a, 0, sizeof a);
	pthread_mutex_init(&a.mu, NULL);
	snprintf(a.prefix, sizeof a.prefix, "%s/config/", name);

	/* Signals go to sigwait() below, not to the library's threads. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	beacon_config_init(&cfg);
	cfg.cache_dir = cache;
	cfg.timeout_ms = 2000;
	rc = beacon_new(&b, &cfg, err);
	if (rc != 0) {
		fprintf(stderr, "beacon_new: %s: %s\n", beacon_strerror(rc),
			err);
		return 1;
	}
	a.b = b;

	/* 1. Register, and keep the TTL check passing from a thread. */
	svc.name = name;
	svc.port = port;
	svc.ttl_ms = ttl_ms;
	svc.deregister_after_ms = 60000;
	rc = beacon_heartbeat_start(b, &svc, &hb, &meta);
	if (rc != 0)
		fprintf(stderr, "register: %s: %s (going on without)\n",
			beacon_strerror(rc), meta.error);
	else
		printf("registered %s, heart-beating every %u ms\n", name,
		       ttl_ms / 3);

	/* 2. Read the configuration (from the cache if no server answers). */
	rc = beacon_kv_list(b, a.prefix, &conf, &meta);
	if (rc != 0) {
		fprintf(stderr, "config: %s: %s\n", beacon_strerror(rc),
			meta.error);
	} else {
		apply_config(&a, &conf, "config", meta.stale);
		beacon_kv_list_close(&conf);
	}

	/* 3. Find an instance of what we depend on. */
	if (depends != NULL) {
		struct beacon_instances l;
		rc = beacon_health_service(b, depends, NULL, true, &l, &meta);
		if (rc == 0) {
			const struct beacon_instance *in =
			    beacon_pick(b, &l, BEACON_LB_ROUND_ROBIN);
			if (in != NULL)
				printf("using %s at %s:%u%s\n", depends,
				       in->address, in->port,
				       meta.stale ? " (stale)" : "");
			else
				printf("no healthy %s\n", depends);
			beacon_instances_close(&l);
		}
	}
	fflush(stdout);

	/* 4. React to configuration changes. */
	spec.type = BEACON_WATCH_KEYPREFIX;
	spec.key = a.prefix;
	rc = beacon_watch_start(b, &spec, config_changed, &a, &w);
	if (rc != 0)
		fprintf(stderr, "watch: %s\n", beacon_strerror(rc));

	while (sigwait(&set, &sig) != 0)
		;
	printf("stopping on signal %d\n", sig);
	fflush(stdout);
	beacon_watch_stop(w);
	beacon_heartbeat_stop(hb, true);
	beacon_free(b);
	pthread_mutex_destroy(&a.mu);
	return 0;
}
