/* Watches: one thread per watch, running a blocking-query loop.
 *
 * Happy path: a first, non-blocking read gives the content and its index;
 * then each read blocks from the last index until the server has something
 * newer or the wait runs out. The callback runs only when the content
 * changed: the hash of the answer with its CreateIndex/ModifyIndex members
 * removed differs from the hash of the last content seen. A timeout (same
 * content, same index), a wake-up for an unrelated write, or a key written
 * again with its same value therefore call nobody.
 *
 * Failure modes:
 *  - no server answers: the read goes to the disk cache (if any); either
 *    way the thread sleeps until the first server's back-off ends, then
 *    reads again. The index is kept, so the first read after the outage
 *    returns at once if anything changed meanwhile.
 *  - the index goes backwards (a restore, reaped tombstones): start again
 *    from index 0, as Consul's clients do; the content hash still decides
 *    whether that is a change.
 *  - beacon_watch_stop(): a flag plus a wake-up of the libcurl multi handle
 *    interrupts a blocking read at once, and the condition variable a
 *    sleep. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/client_int.h"

struct beacon_watch {
	struct beacon *b;
	beacon_watch_cb cb;
	void *data;
	enum beacon_watch_type type;
	char *path;
	char *query;
	bool fire_on_start;
	unsigned wait_ms;
	struct beacon__conn *conn;
	atomic_bool cancel;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* signalled by beacon_watch_stop() */
	bool stop;
};

/* Sleep @ms unless stopped; returns false if stopped. */
static bool nap(struct beacon_watch *w, uint64_t ms)
{
	struct timespec ts;
	bool stop;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->mu);
	while (!w->stop && pthread_cond_timedwait(&w->cv, &w->mu, &ts) == 0)
		;
	stop = w->stop;
	pthread_mutex_unlock(&w->mu);
	return !stop;
}

/* How long to wait before reading again after @fails failed reads. */
static uint64_t retry_delay(struct beacon_watch *w, unsigned fails)
{
	struct beacon *b = w->b;
	uint64_t d = beacon__retry_in_ms(b);
	uint64_t own = beacon__backoff_ms(fails, b->backoff_min_ms,
					  b->backoff_max_ms, beacon__rand(b));

	if (d < own)
		d = own;
	if (d < 10)
		d = 10;
	return d;
}

static void *watch_main(void *arg)
{
	struct beacon_watch *w = arg;
	uint64_t index = 0, last = 0;
	bool have = false;
	unsigned fails = 0;

	for (;;) {
		struct beacon_req req = {
		    .path = w->path,
		    .query = w->query,
		    .index = index,
		    .flags = BEACON_REQ_RETRY | BEACON_REQ_CACHE,
		};
		struct beacon_meta meta;
		struct beacon_watch_event ev = {0};
		uint64_t t0 = beacon__now_ms(), h;
		char *body = NULL;
		size_t len = 0;
		int rc;

		rc = beacon__request(w->b, &req, w->conn, &w->cancel,
				     w->wait_ms, &body, &len, &meta);
		if (rc == BEACON_ECANCELED) {
			free(body);
			break;
		}
		if ((rc != 0 && rc != BEACON_ENOTFOUND) || body == NULL ||
		    (meta.status != 200 && meta.status != 404)) {
			free(body);
			if (fails < 64)
				fails++;
			if (!nap(w, retry_delay(w, fails)))
				break;
			continue;
		}
		ev.stale = meta.cached;
		ev.index = meta.index;
		if (meta.status == 404) {
			ev.body =
			    w->type == BEACON_WATCH_KEYPREFIX ? "[]" : "null";
		} else {
			ev.body = body;
		}
		ev.len = ev.body == body ? len : strlen(ev.body);
		if (beacon__content_hash(ev.body, ev.len, &h) != 0) {
			free(body);
			if (!nap(w, retry_delay(w, 1)))
				break;
			continue;
		}
		if (!have ? w->fire_on_start : h != last)
			w->cb(w->data, &ev);
		have = true;
		last = h;
		free(body);
		if (meta.cached) {
			/* Nobody answered: keep the index, wait, read again. */
			if (fails < 64)
				fails++;
			if (!nap(w, retry_delay(w, fails)))
				break;
			continue;
		}
		fails = 0;
		if (meta.index < index)
			index = 0; /* went backwards: start over */
		else
			index = meta.index;
		/* A server that does not block (or an index stuck at a value
		 * we already have) must not turn this into a busy loop. */
		if (req.index > 0 && meta.index == req.index &&
		    beacon__now_ms() - t0 < w->wait_ms / 2 &&
		    !nap(w,
			 w->b->backoff_min_ms > 50 ? w->b->backoff_min_ms : 50))
			break;
		if (atomic_load(&w->cancel))
			break;
	}
	return NULL;
}

/* Set @w->path and @w->query for @spec. */
static int watch_target(struct beacon_watch *w,
			const struct beacon_watch_spec *spec)
{
	const char *key = spec->key != NULL ? spec->key : "";
	char *esc = beacon_escape(key), *etag = NULL;
	const char *prefix = NULL, *query = NULL;
	size_t n;
	int rc = 0;

	if (esc == NULL)
		return BEACON_ENOMEM;
	switch (spec->type) {
	case BEACON_WATCH_KEY:
		if (key[0] == '\0')
			rc = BEACON_EINVAL;
		prefix = "/v1/kv/";
		break;
	case BEACON_WATCH_KEYPREFIX:
		prefix = "/v1/kv/";
		query = "recurse";
		break;
	case BEACON_WATCH_SERVICE:
		if (key[0] == '\0' || strchr(key, '/') != NULL)
			rc = BEACON_EINVAL;
		prefix = "/v1/health/service/";
		if (spec->tag != NULL) {
			etag = beacon_escape(spec->tag);
			if (etag == NULL) {
				rc = BEACON_ENOMEM;
				break;
			}
			n = strlen(etag) + 16;
			w->query = malloc(n);
			if (w->query == NULL)
				rc = BEACON_ENOMEM;
			else
				snprintf(w->query, n, "%stag=%s",
					 spec->passing_only ? "passing&" : "",
					 etag);
		} else if (spec->passing_only) {
			query = "passing";
		}
		break;
	case BEACON_WATCH_SERVICES:
		prefix = "/v1/catalog/services";
		free(esc);
		esc = beacon__strdup("");
		break;
	case BEACON_WATCH_NODES:
		prefix = "/v1/catalog/nodes";
		free(esc);
		esc = beacon__strdup("");
		break;
	case BEACON_WATCH_CHECKS:
		if (strchr(key, '/') != NULL)
			rc = BEACON_EINVAL;
		if (key[0] != '\0') {
			prefix = "/v1/health/checks/";
		} else {
			const char *st =
			    spec->state != NULL ? spec->state : "any";
			if (strcmp(st, "any") != 0 &&
			    strcmp(st, "passing") != 0 &&
			    strcmp(st, "warning") != 0 &&
			    strcmp(st, "critical") != 0)
				rc = BEACON_EINVAL;
			prefix = "/v1/health/state/";
			free(esc);
			esc = beacon__strdup(st);
		}
		break;
	default:
		rc = BEACON_EINVAL;
	}
	if (rc == 0 && esc == NULL)
		rc = BEACON_ENOMEM;
	if (rc == 0) {
		n = strlen(prefix) + strlen(esc) + 1;
		w->path = malloc(n);
		if (w->path == NULL)
			rc = BEACON_ENOMEM;
		else
			snprintf(w->path, n, "%s%s", prefix, esc);
	}
	if (rc == 0 && query != NULL && w->query == NULL) {
		w->query = beacon__strdup(query);
		if (w->query == NULL)
			rc = BEACON_ENOMEM;
	}
	free(esc);
	free(etag);
	return rc;
}

static void watch_free(struct beacon_watch *w)
{
	free(w->path);
	free(w->query);
	beacon__conn_free(w->conn);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}

BEACON_API int beacon_watch_start(struct beacon *b,
				  const struct beacon_watch_spec *spec,
				  beacon_watch_cb cb, void *data,
				  struct beacon_watch **out)
{
	struct beacon_watch *w;
	pthread_condattr_t ca;
	int rc;

	*out = NULL;
	if (spec == NULL || cb == NULL)
		return BEACON_EINVAL;
	w = calloc(1, sizeof *w);
	if (w == NULL)
		return BEACON_ENOMEM;
	pthread_mutex_init(&w->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	atomic_init(&w->cancel, false);
	w->b = b;
	w->cb = cb;
	w->data = data;
	w->type = spec->type;
	w->fire_on_start = spec->fire_on_start;
	w->wait_ms = spec->wait_ms > 0 ? spec->wait_ms : b->wait_ms;
	rc = watch_target(w, spec);
	if (rc != 0)
		goto err_free;
	w->conn = beacon__conn_new();
	if (w->conn == NULL) {
		rc = BEACON_ENOMEM;
		goto err_free;
	}
	if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
		rc = BEACON_ENOMEM;
		goto err_free;
	}
	*out = w;
	return 0;
err_free:
	watch_free(w);
	return rc;
}

BEACON_API void beacon_watch_stop(struct beacon_watch *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	atomic_store(&w->cancel, true);
	beacon__conn_wakeup(w->conn);
	pthread_join(w->thread, NULL);
	watch_free(w);
}
