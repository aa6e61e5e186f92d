/* Healthy-instance lookups (/v1/health/service/:name, CONSUL-API.md §5) and
 * choosing one: random by weight, or smooth weighted round-robin (the
 * nginx algorithm: every pick adds each candidate's weight to its counter,
 * takes the largest and subtracts the total from it, so a 5:1:1 set goes
 * a a b a c a a rather than a a a a a b c). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_int.h"

#define RR_MAX 4096 /* round-robin counters kept; then they start over */

static void instance_close(struct beacon_instance *in)
{
	free(in->node);
	free(in->id);
	free(in->service);
	free(in->address);
	beacon_strv_free(in->tags, in->n_tags);
}

BEACON_API void beacon_instances_close(struct beacon_instances *l)
{
	for (size_t i = 0; i < l->n; i++)
		instance_close(&l->items[i]);
	free(l->items);
	l->items = NULL;
	l->n = 0;
}

static const char *str(json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);

	return json_is_string(v) ? json_string_value(v) : "";
}

static unsigned uint_of(json_t *o, const char *name, unsigned dflt)
{
	json_t *v = json_object_get(o, name);

	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > 0x7fffffff)
		return dflt;
	return (unsigned)json_integer_value(v);
}

static int instance_from_json(json_t *e, struct beacon_instance *in)
{
	json_t *node = json_object_get(e, "Node");
	json_t *svc = json_object_get(e, "Service");
	json_t *checks = json_object_get(e, "Checks");
	json_t *tags, *weights, *c;
	const char *addr;
	size_t i;

	memset(in, 0, sizeof *in);
	if (!json_is_object(node) || !json_is_object(svc))
		return BEACON_EPROTO;
	addr = str(svc, "Address");
	if (addr[0] == '\0')
		addr = str(node, "Address");
	in->node = beacon__strdup(str(node, "Node"));
	in->id = beacon__strdup(str(svc, "ID"));
	in->service = beacon__strdup(str(svc, "Service"));
	in->address = beacon__strdup(addr);
	if (in->node == NULL || in->id == NULL || in->service == NULL ||
	    in->address == NULL)
		return BEACON_ENOMEM;
	in->port = uint_of(svc, "Port", 0);
	tags = json_object_get(svc, "Tags");
	if (json_is_array(tags) && json_array_size(tags) > 0) {
		json_t *t;
		in->tags = calloc(json_array_size(tags), sizeof *in->tags);
		if (in->tags == NULL)
			return BEACON_ENOMEM;
		json_array_foreach (tags, i, t) {
			in->tags[in->n_tags] = beacon__strdup(
			    json_is_string(t) ? json_string_value(t) : "");
			if (in->tags[in->n_tags] == NULL)
				return BEACON_ENOMEM;
			in->n_tags++;
		}
	}
	in->status = BEACON_PASSING;
	json_array_foreach (checks, i, c) {
		const char *st = str(c, "Status");
		enum beacon_health h =
		    strcmp(st, "passing") == 0	 ? BEACON_PASSING
		    : strcmp(st, "warning") == 0 ? BEACON_WARNING
						 : BEACON_CRITICAL;
		if (h > in->status)
			in->status = h;
	}
	weights = json_object_get(svc, "Weights");
	in->weight = in->status == BEACON_WARNING
			 ? uint_of(weights, "Warning", 1)
			 : uint_of(weights, "Passing", 1);
	return 0;
}

BEACON_API int beacon_health_service(struct beacon *b, const char *service,
				     const char *tag, bool passing_only,
				     struct beacon_instances *out,
				     struct beacon_meta *meta)
{
	char *esc = NULL, *path = NULL, *query = NULL, *etag = NULL;
	char *body = NULL;
	json_t *root = NULL, *e;
	size_t len, i, qn;
	int rc;

	out->items = NULL;
	out->n = 0;
	beacon__meta_reset(meta);
	if (service == NULL || service[0] == '\0' || strchr(service, '/'))
		return BEACON_EINVAL;
	esc = beacon_escape(service);
	etag = tag != NULL ? beacon_escape(tag) : NULL;
	path = esc != NULL ? malloc(strlen(esc) + 32) : NULL;
	qn = (etag != NULL ? strlen(etag) : 0) + 32;
	query = malloc(qn);
	if (path == NULL || query == NULL || (tag != NULL && etag == NULL)) {
		rc = BEACON_ENOMEM;
		goto out;
	}
	snprintf(path, strlen(esc) + 32, "/v1/health/service/%s", esc);
	snprintf(query, qn, "%s%s%s", passing_only ? "passing" : "",
		 etag != NULL ? (passing_only ? "&tag=" : "tag=") : "",
		 etag != NULL ? etag : "");
	rc = beacon__get(b, path, query, &body, &len, meta);
	if (rc != 0)
		goto out;
	root = json_loadb(body, len, 0, NULL);
	if (!json_is_array(root)) {
		beacon__errf(meta, "bad health answer");
		rc = BEACON_EPROTO;
		goto out;
	}
	if (json_array_size(root) > 0) {
		out->items = calloc(json_array_size(root), sizeof *out->items);
		if (out->items == NULL) {
			rc = BEACON_ENOMEM;
			goto out;
		}
	}
	json_array_foreach (root, i, e) {
		rc = instance_from_json(e, &out->items[i]);
		out->n = i + 1;
		if (rc != 0)
			break;
	}
	if (rc != 0)
		beacon_instances_close(out);
out:
	json_decref(root);
	free(body);
	free(esc);
	free(etag);
	free(path);
	free(query);
	return rc;
}

static bool eligible(const struct beacon_instance *in)
{
	return in->status != BEACON_CRITICAL && in->weight > 0;
}

static const struct beacon_instance *
pick_random(struct beacon *b, const struct beacon_instances *l)
{
	uint64_t total = 0, r;

	for (size_t i = 0; i < l->n; i++)
		if (eligible(&l->items[i]))
			total += l->items[i].weight;
	if (total == 0)
		return NULL;
	r = beacon__rand(b) % total;
	for (size_t i = 0; i < l->n; i++) {
		if (!eligible(&l->items[i]))
			continue;
		if (r < l->items[i].weight)
			return &l->items[i];
		r -= l->items[i].weight;
	}
	return NULL;
}

/* The counter of @in, created at 0. Called with b->mu held. */
static int64_t *rr_counter(struct beacon *b, const struct beacon_instance *in)
{
	size_t n = strlen(in->service) + strlen(in->node) + strlen(in->id) + 3;
	char *key = malloc(n);
	struct beacon__rr *nrr;

	if (key == NULL)
		return NULL;
	snprintf(key, n, "%s\n%s\n%s", in->service, in->node, in->id);
	for (size_t i = 0; i < b->n_rr; i++) {
		if (strcmp(b->rr[i].key, key) == 0) {
			free(key);
			return &b->rr[i].current;
		}
	}
	if (b->n_rr >= RR_MAX) {
		for (size_t i = 0; i < b->n_rr; i++)
			free(b->rr[i].key);
		b->n_rr = 0;
	}
	nrr = realloc(b->rr, (b->n_rr + 1) * sizeof *b->rr);
	if (nrr == NULL) {
		free(key);
		return NULL;
	}
	b->rr = nrr;
	b->rr[b->n_rr].key = key;
	b->rr[b->n_rr].current = 0;
	return &b->rr[b->n_rr++].current;
}

static const struct beacon_instance *pick_rr(struct beacon *b,
					     const struct beacon_instances *l)
{
	const struct beacon_instance *best = NULL;
	int64_t total = 0, best_val = 0, *best_c;

	pthread_mutex_lock(&b->mu);
	for (size_t i = 0; i < l->n; i++) {
		const struct beacon_instance *in = &l->items[i];
		int64_t *c;
		if (!eligible(in))
			continue;
		c = rr_counter(b, in);
		if (c == NULL)
			continue; /* OOM: this one sits out a turn */
		*c += in->weight;
		total += in->weight;
		if (best == NULL || *c > best_val) {
			best = in;
			best_val = *c;
		}
	}
	/* rr_counter() may move the array: look the winner up again. */
	if (best != NULL && (best_c = rr_counter(b, best)) != NULL)
		*best_c -= total;
	pthread_mutex_unlock(&b->mu);
	return best;
}

BEACON_API const struct beacon_instance *
beacon_pick(struct beacon *b, const struct beacon_instances *l,
	    enum beacon_lb lb)
{
	if (l == NULL || l->n == 0)
		return NULL;
	return lb == BEACON_LB_ROUND_ROBIN ? pick_rr(b, l) : pick_random(b, l);
}
