/* The check runner (see checks.h).
 *
 * Each check the leader runs has an entry: a dense array for the sweep and
 * a hash table for lookups by "node\0id". A timer sweeps every entry every
 * sweep_ms: cheap next to the rest (10k checks cost well under a
 * millisecond) and far simpler than a deadline heap; deadlines are exact
 * to one sweep.
 *
 * What the runner keeps in memory is what the log must not carry:
 * deadlines, probes in flight, when a check turned critical (as seen by
 * this leader), the newest unwritten output. The catalog holds the rest and
 * is re-read whenever a decision depends on it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/alloc.h"
#include "common/log.h"
#include "health/checks.h"
#include "health/probe.h"

#define MOD "checks"
/* Between two attempts to remove a critical service. */
#define DEREG_RETRY_MS 5000

enum kind { K_NONE, K_TTL, K_HTTP, K_TCP };

struct entry {
	char *key; /* "node\0id" */
	size_t key_len;
	const char *node, *id; /* into @key */
	char *svc_id;	       /* "" for a node-level check */
	enum kind kind;
	uint64_t ttl_ms, interval_ms, timeout_ms, dereg_ms;
	uint64_t due; /* TTL deadline or next probe; UINT64_MAX: none */
	enum cat_status status;	 /* as last seen in the catalog */
	uint64_t critical_since; /* 0 when not critical */
	uint64_t dereg_sent;
	uint64_t output_at;   /* last output write proposed */
	char *pending_output; /* newest unwritten output */
	enum cat_status pending_status;
	struct probe *probe;
	size_t pos; /* in the dense array */
	struct entry *hnext;
	struct checks *k;
};

struct checks {
	uv_loop_t *loop;
	struct cat_store *cat;
	struct checks_options o;
	checks_propose_fn propose;
	void *data;
	struct probe_ctx *probes;
	uv_timer_t timer;
	bool leading;
	struct entry **v;
	size_t n, cap;
	struct entry **buckets;
	size_t n_buckets; /* a power of two */
	struct checks_stats stats;
};

/* ---- the table ---------------------------------------------------------- */

static uint64_t hash(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static size_t key_make(char *out, const char *node, const char *id)
{
	size_t nl = strlen(node), il = strlen(id);

	memcpy(out, node, nl + 1);
	memcpy(out + nl + 1, id, il + 1);
	return nl + 1 + il;
}

static struct entry *find(struct checks *k, const char *key, size_t len)
{
	struct entry *e;

	if (k->n_buckets == 0)
		return NULL;
	e = k->buckets[hash(key, len) & (k->n_buckets - 1)];
	for (; e != NULL; e = e->hnext)
		if (e->key_len == len && memcmp(e->key, key, len) == 0)
			return e;
	return NULL;
}

static int rehash(struct checks *k)
{
	size_t nb = k->n_buckets == 0 ? 64 : k->n_buckets * 2;
	struct entry **b = bcn_calloc(nb, sizeof *b);

	if (b == NULL)
		return BCN_ENOMEM;
	for (size_t i = 0; i < k->n; i++) {
		struct entry *e = k->v[i];
		size_t h = hash(e->key, e->key_len) & (nb - 1);
		e->hnext = b[h];
		b[h] = e;
	}
	bcn_free(k->buckets);
	k->buckets = b;
	k->n_buckets = nb;
	return 0;
}

static void entry_free(struct entry *e)
{
	if (e->probe != NULL)
		probe_cancel(e->probe);
	bcn_free(e->key);
	bcn_free(e->svc_id);
	bcn_free(e->pending_output);
	bcn_free(e);
}

static void remove_entry(struct checks *k, struct entry *e)
{
	struct entry **pp =
	    &k->buckets[hash(e->key, e->key_len) & (k->n_buckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	k->v[e->pos] = k->v[--k->n];
	k->v[e->pos]->pos = e->pos;
	entry_free(e);
}

static struct entry *add_entry(struct checks *k, const char *key, size_t len)
{
	struct entry *e;
	size_t h;

	if (k->n == k->cap) {
		size_t cap = k->cap == 0 ? 64 : k->cap * 2;
		struct entry **v = bcn_realloc(k->v, cap * sizeof *v);
		if (v == NULL)
			return NULL;
		k->v = v;
		k->cap = cap;
	}
	if (k->n >= k->n_buckets && rehash(k) != 0)
		return NULL;
	e = bcn_calloc(1, sizeof *e);
	if (e == NULL)
		return NULL;
	e->key = bcn_malloc(len + 1);
	if (e->key == NULL) {
		bcn_free(e);
		return NULL;
	}
	memcpy(e->key, key, len);
	e->key[len] = '\0';
	e->key_len = len;
	e->node = e->key;
	e->id = e->key + strlen(e->key) + 1;
	e->due = UINT64_MAX;
	e->k = k;
	e->pos = k->n;
	k->v[k->n++] = e;
	h = hash(key, len) & (k->n_buckets - 1);
	e->hnext = k->buckets[h];
	k->buckets[h] = e;
	return e;
}

static void clear(struct checks *k)
{
	for (size_t i = 0; i < k->n; i++)
		entry_free(k->v[i]);
	k->n = 0;
	memset(k->buckets, 0, k->n_buckets * sizeof *k->buckets);
}

/* ---- syncing with the catalog -------------------------------------------- */

static enum kind kind_of(const struct cat_check *c)
{
	if (strcmp(c->type, "ttl") == 0)
		return K_TTL;
	if (strcmp(c->type, "http") == 0)
		return K_HTTP;
	if (strcmp(c->type, "tcp") == 0)
		return K_TCP;
	return K_NONE;
}

/* Bring @e (new if @fresh) in line with its row @c. */
static void sync_entry(struct checks *k, struct entry *e,
		       const struct cat_check *c, bool fresh)
{
	uint64_t now = uv_now(k->loop);
	enum kind kind = kind_of(c);
	bool redefined = fresh || kind != e->kind ||
			 c->def.ttl_ms != e->ttl_ms ||
			 c->def.interval_ms != e->interval_ms;

	if (strcmp(e->svc_id != NULL ? e->svc_id : "", c->service_id) != 0) {
		char *s = bcn_strdup(c->service_id);
		if (s != NULL) {
			bcn_free(e->svc_id);
			e->svc_id = s;
		}
	}
	e->kind = kind;
	e->ttl_ms = c->def.ttl_ms;
	e->interval_ms = c->def.interval_ms;
	e->timeout_ms = c->def.timeout_ms;
	e->dereg_ms = c->def.deregister_after_ms;
	if (redefined) {
		if (kind == K_TTL)
			e->due = now + e->ttl_ms;
		else if (kind == K_HTTP || kind == K_TCP)
			/* Spread the first probes over one interval. */
			e->due = now + (e->interval_ms > 0
					    ? (uint64_t)rand() % e->interval_ms
					    : 0);
		else
			e->due = UINT64_MAX;
	}
	if (c->status == CAT_CRITICAL) {
		if (e->critical_since == 0 || e->status != CAT_CRITICAL)
			e->critical_since = now;
	} else {
		e->critical_since = 0;
		e->dereg_sent = 0;
	}
	e->status = c->status;
}

static void sync_key(struct checks *k, const char *key, size_t len)
{
	const char *node = key, *id = key + strlen(key) + 1;
	struct cat_rows rows = {0};
	struct entry *e = find(k, key, len);
	int rc = cat_check(k->cat, node, id, &rows);

	if (rc == BCN_ENOTFOUND) {
		if (e != NULL)
			remove_entry(k, e);
	} else if (rc == 0) {
		bool fresh = e == NULL;
		if (fresh)
			e = add_entry(k, key, len);
		if (e != NULL)
			sync_entry(k, e, &rows.chks[0], fresh);
		else
			bcn_warn(MOD, "out of memory: check %s not run", id);
	} else {
		bcn_warn(MOD, "reading check %s: %s", id, bcn_strerror(rc));
	}
	cat_rows_close(&rows);
}

static void load_all(struct checks *k)
{
	struct cat_rows rows = {0};
	char key[2 * CAT_MAX_NAME + 2];
	int rc = cat_checks(k->cat, NULL, NULL, 0, &rows);

	if (rc != 0)
		bcn_warn(MOD, "loading checks: %s", bcn_strerror(rc));
	for (size_t i = 0; i < rows.n_chks; i++) {
		const struct cat_check *c = &rows.chks[i];
		size_t len = key_make(key, c->node, c->id);
		struct entry *e = add_entry(k, key, len);
		if (e == NULL) {
			bcn_warn(MOD, "out of memory: check %s not run", c->id);
			continue;
		}
		sync_entry(k, e, c, true);
	}
	cat_rows_close(&rows);
	bcn_info(MOD, "leading: running %zu checks", k->n);
}

void checks_changed(struct checks *k, const struct cat_changes *c)
{
	if (!k->leading)
		return;
	if (c->all) {
		clear(k);
		load_all(k);
		return;
	}
	for (size_t i = 0; i < c->n_checks; i++) {
		const char *key = c->checks[i];
		sync_key(k, key,
			 strlen(key) + 1 + strlen(key + strlen(key) + 1));
	}
}

/* ---- writing --------------------------------------------------------------
 */

static void write_status(struct checks *k, struct entry *e, enum cat_status st,
			 const char *output)
{
	struct cat_op op = {.verb = CAT_CHECK_STATUS};

	op.chk.node = e->node;
	op.chk.id = e->id;
	op.chk.status = st;
	op.chk.output = output;
	if (k->propose(k->data, &op, 1) == 0) {
		k->stats.writes++;
		e->output_at = uv_now(k->loop);
		bcn_free(e->pending_output);
		e->pending_output = NULL;
	}
}

/* A new result for @e: write it if it changes the status, or the output
 * past the rate limit; otherwise keep the output for later. */
static void report(struct checks *k, struct entry *e, enum cat_status st,
		   const char *output)
{
	struct cat_rows rows = {0};
	uint64_t now = uv_now(k->loop);

	if (cat_check(k->cat, e->node, e->id, &rows) != 0) {
		cat_rows_close(&rows);
		return;
	}
	if (rows.chks[0].status != st) {
		write_status(k, e, st, output);
	} else if (strcmp(rows.chks[0].output, output) != 0) {
		if (now - e->output_at >= k->o.output_interval_ms) {
			write_status(k, e, st, output);
		} else {
			char *copy = bcn_strdup(output);
			if (copy != NULL) {
				bcn_free(e->pending_output);
				e->pending_output = copy;
				e->pending_status = st;
			}
		}
	} else {
		bcn_free(e->pending_output);
		e->pending_output = NULL;
	}
	cat_rows_close(&rows);
}

int checks_ttl_beat(struct checks *k, const char *node, const char *id,
		    enum cat_status status, const char *output, bool *write)
{
	char key[2 * CAT_MAX_NAME + 2];
	struct cat_rows rows = {0};
	struct entry *e;
	size_t len;
	uint64_t now = uv_now(k->loop);
	int rc;

	*write = false;
	if (strlen(node) > CAT_MAX_NAME || strlen(id) > CAT_MAX_NAME)
		return BCN_ENOTFOUND;
	len = key_make(key, node, id);
	k->stats.beats++;
	if (k->leading && find(k, key, len) == NULL)
		sync_key(k, key, len); /* registered in this very turn */
	e = find(k, key, len);
	if (e == NULL || e->kind != K_TTL)
		return BCN_ENOTFOUND;
	e->due = now + e->ttl_ms;
	rc = cat_check(k->cat, node, id, &rows);
	if (rc == 0) {
		const struct cat_check *c = &rows.chks[0];
		if (c->status != status) {
			*write = true;
		} else if (strcmp(c->output, output) != 0) {
			if (now - e->output_at >= k->o.output_interval_ms) {
				*write = true;
			} else {
				char *copy = bcn_strdup(output);
				if (copy != NULL) {
					bcn_free(e->pending_output);
					e->pending_output = copy;
					e->pending_status = status;
				}
			}
		}
		if (*write) {
			e->output_at = now;
			k->stats.writes++;
			bcn_free(e->pending_output);
			e->pending_output = NULL;
		}
	}
	cat_rows_close(&rows);
	return rc == BCN_ENOTFOUND ? BCN_ENOTFOUND : rc;
}

/* ---- probes and the sweep ----------------------------------------------- */

static void probe_done(void *data, enum cat_status st, const char *output)
{
	struct entry *e = data;
	struct checks *k = e->k;

	e->probe = NULL;
	k->stats.probes++;
	report(k, e, st, output);
}

static void start_probe(struct checks *k, struct entry *e)
{
	struct cat_rows rows = {0};
	const struct cat_check *c;
	int rc;

	if (cat_check(k->cat, e->node, e->id, &rows) != 0) {
		cat_rows_close(&rows);
		return;
	}
	c = &rows.chks[0];
	if (e->kind == K_HTTP) {
		struct probe_http_def d = {
		    .url = c->def.http,
		    .method = c->def.method,
		    .headers = c->def.header.data,
		    .headers_len = c->def.header.len,
		    .body = c->def.body[0] != '\0' ? c->def.body : NULL,
		    .timeout_ms = c->def.timeout_ms,
		    .tls_skip_verify = c->def.tls_skip_verify,
		    .disable_redirects = c->def.disable_redirects,
		    .output_max = c->def.output_max,
		};
		rc = probe_http(k->probes, &d, probe_done, e, &e->probe);
	} else {
		rc = probe_tcp(k->probes, c->def.tcp, c->def.timeout_ms,
			       probe_done, e, &e->probe);
	}
	if (rc != 0) {
		char out[CAT_MAX_NAME + 128];
		e->probe = NULL;
		snprintf(out, sizeof out, "Invalid check target: %s",
			 e->kind == K_HTTP ? c->def.http : c->def.tcp);
		report(k, e, CAT_CRITICAL, out);
	}
	cat_rows_close(&rows);
}

static void expire(struct checks *k, struct entry *e)
{
	struct cat_rows rows = {0};
	char out[CAT_MAX_OUTPUT + 64];

	if (cat_check(k->cat, e->node, e->id, &rows) == 0 &&
	    rows.chks[0].status != CAT_CRITICAL) {
		const char *last = rows.chks[0].output;
		if (last[0] != '\0')
			snprintf(out, sizeof out,
				 "TTL expired (last output before timeout "
				 "follows): %s",
				 last);
		else
			snprintf(out, sizeof out, "TTL expired");
		k->stats.ttl_expired++;
		write_status(k, e, CAT_CRITICAL, out);
	}
	cat_rows_close(&rows);
}

static void deregister(struct checks *k, struct entry *e, uint64_t now)
{
	struct cat_op op = {.verb = CAT_SERVICE_DELETE};

	op.svc.node = e->node;
	op.svc.id = e->svc_id;
	e->dereg_sent = now;
	if (k->propose(k->data, &op, 1) == 0) {
		k->stats.deregistered++;
		bcn_info(MOD,
			 "deregistering service %s on %s: check %s critical "
			 "for %llu ms",
			 e->svc_id, e->node, e->id,
			 (unsigned long long)(now - e->critical_since));
	}
}

static void sweep_cb(uv_timer_t *t)
{
	struct checks *k = t->data;
	uint64_t now = uv_now(k->loop);

	if (!k->leading)
		return;
	for (size_t i = 0; i < k->n; i++) {
		struct entry *e = k->v[i];
		if (e->kind == K_TTL && e->due <= now) {
			e->due = UINT64_MAX;
			expire(k, e);
		} else if ((e->kind == K_HTTP || e->kind == K_TCP) &&
			   e->due <= now && e->probe == NULL) {
			e->due =
			    now + (e->interval_ms > 0 ? e->interval_ms : 1000);
			start_probe(k, e);
		}
		if (e->pending_output != NULL &&
		    now - e->output_at >= k->o.output_interval_ms)
			write_status(k, e, e->pending_status,
				     e->pending_output);
		if (e->dereg_ms > 0 && e->critical_since != 0 &&
		    now - e->critical_since >= e->dereg_ms &&
		    e->svc_id != NULL && e->svc_id[0] != '\0' &&
		    (e->dereg_sent == 0 ||
		     now - e->dereg_sent >= DEREG_RETRY_MS))
			deregister(k, e, now);
	}
}

/* ---- life cycle ------------------------------------------------------------
 */

int checks_open(struct checks **out, uv_loop_t *loop, struct cat_store *cat,
		const struct checks_options *o, checks_propose_fn propose,
		void *data)
{
	struct checks *k = bcn_calloc(1, sizeof *k);
	int rc;

	if (k == NULL)
		return BCN_ENOMEM;
	k->loop = loop;
	k->cat = cat;
	k->o = *o;
	if (k->o.sweep_ms == 0)
		k->o.sweep_ms = 100;
	k->propose = propose;
	k->data = data;
	rc = probe_ctx_open(&k->probes, loop);
	if (rc == 0)
		rc = rehash(k);
	if (rc != 0) {
		if (k->probes != NULL)
			probe_ctx_close(k->probes);
		bcn_free(k->buckets);
		bcn_free(k);
		return rc;
	}
	uv_timer_init(loop, &k->timer);
	k->timer.data = k;
	uv_timer_start(&k->timer, sweep_cb, k->o.sweep_ms, k->o.sweep_ms);
	*out = k;
	return 0;
}

static void timer_closed(uv_handle_t *h)
{
	bcn_free(h->data);
}

void checks_close(struct checks *k)
{
	if (k == NULL)
		return;
	clear(k);
	probe_ctx_close(k->probes);
	bcn_free(k->v);
	bcn_free(k->buckets);
	uv_close((uv_handle_t *)&k->timer, timer_closed);
}

void checks_set_leader(struct checks *k, bool leading)
{
	if (leading == k->leading)
		return;
	k->leading = leading;
	clear(k);
	if (leading)
		load_all(k);
	else
		bcn_info(MOD, "not leading: checks stopped");
}

void checks_get_stats(struct checks *k, struct checks_stats *out)
{
	*out = k->stats;
	out->checks = k->n;
}
