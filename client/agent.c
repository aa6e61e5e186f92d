/* Service registration, TTL checks and heartbeats: /v1/agent/service/...,
 * /v1/agent/check/... (CONSUL-API.md §3). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/client_int.h"

static json_t *duration(unsigned ms)
{
	char s[32];

	snprintf(s, sizeof s, "%ums", ms);
	return json_string(s);
}

/* The registration body of @svc, malloc'd (jansson's allocator: free with
 * beacon__json_free()). */
static char *service_json(const struct beacon_service *svc)
{
	json_t *o = json_object(), *tags = json_array(), *meta = json_object();
	json_t *check = NULL;
	char *s = NULL;
	bool ok = o != NULL && tags != NULL && meta != NULL;

	if (!ok)
		goto out;
	ok = json_object_set_new(o, "Name", json_string(svc->name)) == 0 &&
	     json_object_set_new(
		 o, "ID", json_string(svc->id != NULL ? svc->id : svc->name)) ==
		 0;
	if (ok && svc->address != NULL)
		ok = json_object_set_new(o, "Address",
					 json_string(svc->address)) == 0;
	if (ok && svc->port > 0)
		ok = json_object_set_new(o, "Port", json_integer(svc->port)) ==
		     0;
	for (size_t i = 0; ok && i < svc->n_tags; i++)
		ok =
		    json_array_append_new(tags, json_string(svc->tags[i])) == 0;
	for (size_t i = 0; ok && i < svc->n_meta; i++)
		ok =
		    json_object_set_new(meta, svc->meta[2 * i],
					json_string(svc->meta[2 * i + 1])) == 0;
	/* Empty lists are left out: the same to Consul, and Beacon's server
	 * (as of this writing) answers "Tags": [] with a 500. */
	if (ok && svc->n_tags > 0)
		ok = json_object_set(o, "Tags", tags) == 0;
	if (ok && svc->n_meta > 0)
		ok = json_object_set(o, "Meta", meta) == 0;
	if (ok && (svc->weight_passing > 0 || svc->weight_warning > 0))
		ok = json_object_set_new(
			 o, "Weights",
			 json_pack("{s:I,s:I}", "Passing",
				   (json_int_t)(svc->weight_passing > 0
						    ? svc->weight_passing
						    : 1),
				   "Warning",
				   (json_int_t)(svc->weight_warning > 0
						    ? svc->weight_warning
						    : 1))) == 0;
	if (ok && (svc->ttl_ms > 0 || svc->http != NULL || svc->tcp != NULL)) {
		check = json_object();
		ok = check != NULL;
		if (ok && svc->ttl_ms > 0)
			ok = json_object_set_new(check, "TTL",
						 duration(svc->ttl_ms)) == 0;
		else if (ok)
			ok = json_object_set_new(
				 check, svc->http != NULL ? "HTTP" : "TCP",
				 json_string(svc->http != NULL ? svc->http
							       : svc->tcp)) ==
				 0 &&
			     json_object_set_new(check, "Interval",
						 duration(svc->interval_ms > 0
							      ? svc->interval_ms
							      : 10000)) == 0;
		if (ok && svc->deregister_after_ms > 0)
			ok = json_object_set_new(
				 check, "DeregisterCriticalServiceAfter",
				 duration(svc->deregister_after_ms)) == 0;
		if (ok)
			ok = json_object_set(o, "Check", check) == 0;
	}
	if (ok)
		s = json_dumps(o, JSON_COMPACT);
out:
	json_decref(check);
	json_decref(tags);
	json_decref(meta);
	json_decref(o);
	return s;
}

static int put(struct beacon *b, struct beacon__conn *conn,
	       const atomic_bool *cancel, const char *path, const char *query,
	       const char *json, struct beacon_meta *meta)
{
	struct beacon_req req = {
	    .method = "PUT",
	    .path = path,
	    .query = query,
	    .body = json,
	    .body_len = json != NULL ? strlen(json) : 0,
	    .content_type = json != NULL ? "application/json" : NULL,
	    .flags = BEACON_REQ_RETRY, /* all idempotent */
	};

	return beacon__send(b, &req, conn, cancel, 0, NULL, NULL, meta);
}

static int do_register(struct beacon *b, struct beacon__conn *conn,
		       const atomic_bool *cancel, const char *json,
		       struct beacon_meta *meta)
{
	return put(b, conn, cancel, "/v1/agent/service/register", NULL, json,
		   meta);
}

static bool valid_service(const struct beacon_service *svc)
{
	return svc != NULL && svc->name != NULL && svc->name[0] != '\0' &&
	       (svc->n_tags == 0 || svc->tags != NULL) &&
	       (svc->n_meta == 0 || svc->meta != NULL);
}

BEACON_API int beacon_service_register(struct beacon *b,
				       const struct beacon_service *svc,
				       struct beacon_meta *meta)
{
	char *json;
	int rc;

	beacon__meta_reset(meta);
	if (!valid_service(svc))
		return BEACON_EINVAL;
	json = service_json(svc);
	if (json == NULL)
		return BEACON_ENOMEM;
	rc = do_register(b, NULL, NULL, json, meta);
	beacon__json_free(json);
	return rc;
}

/* "/v1/agent/<what>/<escaped id>", malloc'd. */
static char *id_path(const char *what, const char *id)
{
	char *esc = beacon_escape(id), *p;
	size_t n;

	if (esc == NULL)
		return NULL;
	/* An ID with '/' would name another endpoint. */
	for (char *s = esc; *s != '\0'; s++)
		if (*s == '/') {
			free(esc);
			return NULL;
		}
	n = strlen(what) + strlen(esc) + 16;
	p = malloc(n);
	if (p != NULL)
		snprintf(p, n, "/v1/agent/%s/%s", what, esc);
	free(esc);
	return p;
}

BEACON_API int beacon_service_deregister(struct beacon *b, const char *id,
					 struct beacon_meta *meta)
{
	char *path;
	int rc;

	beacon__meta_reset(meta);
	if (id == NULL || id[0] == '\0' || strchr(id, '/') != NULL)
		return BEACON_EINVAL;
	path = id_path("service/deregister", id);
	if (path == NULL)
		return BEACON_ENOMEM;
	rc = put(b, NULL, NULL, path, NULL, NULL, meta);
	free(path);
	return rc;
}

static int check_update(struct beacon *b, struct beacon__conn *conn,
			const atomic_bool *cancel, const char *check_id,
			enum beacon_health status, const char *note,
			struct beacon_meta *meta)
{
	static const char *const verbs[] = {"check/pass", "check/warn",
					    "check/fail"};
	char *path, *q = NULL, *esc = NULL;
	int rc;

	if (check_id == NULL || check_id[0] == '\0' ||
	    strchr(check_id, '/') != NULL || (unsigned)status > BEACON_CRITICAL)
		return BEACON_EINVAL;
	path = id_path(verbs[status], check_id);
	if (note != NULL) {
		esc = beacon_escape(note);
		q = esc != NULL ? malloc(strlen(esc) + 8) : NULL;
		if (q != NULL)
			snprintf(q, strlen(esc) + 8, "note=%s", esc);
	}
	if (path == NULL || (note != NULL && q == NULL)) {
		rc = BEACON_ENOMEM;
		goto out;
	}
	rc = put(b, conn, cancel, path, q, NULL, meta);
out:
	free(path);
	free(q);
	free(esc);
	return rc;
}

BEACON_API int beacon_check_update(struct beacon *b, const char *check_id,
				   enum beacon_health status, const char *note,
				   struct beacon_meta *meta)
{
	beacon__meta_reset(meta);
	return check_update(b, NULL, NULL, check_id, status, note, meta);
}

/* ---- heartbeats ------------------------------------------------------------
 */

struct beacon_heartbeat {
	struct beacon *b;
	char *json;	/* the registration (jansson-allocated) */
	char *id;	/* service ID */
	char *check_id; /* "service:<id>" */
	unsigned period_ms;
	struct beacon__conn *conn;
	atomic_bool cancel;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* signalled by beacon_heartbeat_stop() */
	bool stop;
};

/* Pass the check; register again if the server does not know it. */
static int beat(struct beacon_heartbeat *hb, struct beacon_meta *meta)
{
	int rc = check_update(hb->b, hb->conn, &hb->cancel, hb->check_id,
			      BEACON_PASSING, NULL, meta);

	/* Consul's answer for an unknown check is a 500 "CheckID ... does not
	 * have associated TTL" (clients match this string to re-register). */
	if ((rc == BEACON_ESERVER &&
	     strstr(meta->error, "does not have associated TTL") != NULL) ||
	    rc == BEACON_ENOTFOUND) {
		rc = do_register(hb->b, hb->conn, &hb->cancel, hb->json, meta);
		if (rc == 0)
			rc = check_update(hb->b, hb->conn, &hb->cancel,
					  hb->check_id, BEACON_PASSING, NULL,
					  meta);
	}
	return rc;
}

static void deadline_in(struct timespec *ts, uint64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(ms / 1000);
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void *heartbeat_main(void *arg)
{
	struct beacon_heartbeat *hb = arg;
	uint64_t delay = hb->period_ms;

	for (;;) {
		struct beacon_meta meta;
		struct timespec ts;
		bool stop;
		int rc;

		deadline_in(&ts, delay);
		pthread_mutex_lock(&hb->mu);
		while (!hb->stop &&
		       pthread_cond_timedwait(&hb->cv, &hb->mu, &ts) == 0)
			;
		stop = hb->stop;
		pthread_mutex_unlock(&hb->mu);
		if (stop)
			break;
		rc = beat(hb, &meta);
		if (rc == BEACON_ECANCELED)
			break;
		/* A miss: try again sooner, but no sooner than the first
		 * server's back-off ends. */
		delay = hb->period_ms;
		if (rc != 0) {
			uint64_t retry = beacon__retry_in_ms(hb->b);
			delay = hb->period_ms / 3 > retry ? hb->period_ms / 3
							  : retry;
			if (delay > hb->period_ms)
				delay = hb->period_ms;
			if (delay == 0)
				delay = 1;
		}
	}
	return NULL;
}

static void heartbeat_free(struct beacon_heartbeat *hb)
{
	beacon__json_free(hb->json);
	free(hb->id);
	free(hb->check_id);
	beacon__conn_free(hb->conn);
	pthread_cond_destroy(&hb->cv);
	pthread_mutex_destroy(&hb->mu);
	free(hb);
}

BEACON_API int beacon_heartbeat_start(struct beacon *b,
				      const struct beacon_service *svc,
				      struct beacon_heartbeat **out,
				      struct beacon_meta *meta)
{
	struct beacon_heartbeat *hb;
	pthread_condattr_t ca;
	const char *id;
	size_t n;
	int rc;

	beacon__meta_reset(meta);
	*out = NULL;
	if (!valid_service(svc) || svc->ttl_ms == 0)
		return BEACON_EINVAL;
	id = svc->id != NULL ? svc->id : svc->name;
	hb = calloc(1, sizeof *hb);
	if (hb == NULL)
		return BEACON_ENOMEM;
	pthread_mutex_init(&hb->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&hb->cv, &ca);
	pthread_condattr_destroy(&ca);
	atomic_init(&hb->cancel, false);
	hb->b = b;
	hb->period_ms = svc->ttl_ms / 3 > 0 ? svc->ttl_ms / 3 : 1;
	hb->json = service_json(svc);
	hb->id = beacon__strdup(id);
	n = strlen(id) + 16;
	hb->check_id = malloc(n);
	hb->conn = beacon__conn_new();
	if (hb->json == NULL || hb->id == NULL || hb->check_id == NULL ||
	    hb->conn == NULL) {
		rc = BEACON_ENOMEM;
		goto err_free;
	}
	snprintf(hb->check_id, n, "service:%s", id);
	rc = do_register(b, hb->conn, NULL, hb->json, meta);
	if (rc == 0)
		rc = check_update(b, hb->conn, NULL, hb->check_id,
				  BEACON_PASSING, NULL, meta);
	if (rc != 0)
		goto err_free;
	if (pthread_create(&hb->thread, NULL, heartbeat_main, hb) != 0) {
		rc = BEACON_ENOMEM;
		goto err_free;
	}
	*out = hb;
	return 0;
err_free:
	heartbeat_free(hb);
	return rc;
}

BEACON_API void beacon_heartbeat_stop(struct beacon_heartbeat *hb,
				      bool deregister)
{
	if (hb == NULL)
		return;
	pthread_mutex_lock(&hb->mu);
	hb->stop = true;
	pthread_cond_signal(&hb->cv);
	pthread_mutex_unlock(&hb->mu);
	atomic_store(&hb->cancel, true);
	beacon__conn_wakeup(hb->conn);
	pthread_join(hb->thread, NULL);
	if (deregister)
		(void)beacon_service_deregister(hb->b, hb->id, NULL);
	heartbeat_free(hb);
}
