#include "server/sessions.h"

#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "health/catalog.h"
#include "raft/cluster.h"
#include "server/srv.h"

#define MOD	 "sessions"
#define SWEEP_MS 100
#define RETRY_MS 2000 /* between two destroys of the same session */

struct sess {
	char id[KV_SESSION_ID_LEN + 1];
	uint64_t ttl_ms;
	uint64_t due; /* UINT64_MAX: no TTL */
	uint64_t destroy_sent;
	bool seen; /* during a resync */
};

struct sessions {
	struct sess *v;
	size_t n, cap;
	bool leading;
	bool rescan; /* check every session's node and checks */
	uv_timer_t timer;
	struct srv *s;
};

/* A session expires 1.5 TTL after its last renewal: never before its TTL,
 * with room for a late renewal or a failover before Consul's 2 × TTL. */
static uint64_t grace(uint64_t ttl_ms)
{
	return ttl_ms + ttl_ms / 2;
}

static struct sess *find(struct sessions *ss, const char *id)
{
	for (size_t i = 0; i < ss->n; i++)
		if (strcmp(ss->v[i].id, id) == 0)
			return &ss->v[i];
	return NULL;
}

static struct sess *add(struct sessions *ss, const struct kv_session *ks,
			uint64_t now)
{
	struct sess *e;

	if (ss->n == ss->cap) {
		size_t cap = ss->cap == 0 ? 32 : ss->cap * 2;
		struct sess *v = bcn_realloc(ss->v, cap * sizeof *v);
		if (v == NULL)
			return NULL;
		ss->v = v;
		ss->cap = cap;
	}
	e = &ss->v[ss->n++];
	memset(e, 0, sizeof *e);
	snprintf(e->id, sizeof e->id, "%s", ks->id);
	e->ttl_ms = ks->ttl_ms;
	e->due = ks->ttl_ms > 0 ? now + grace(ks->ttl_ms) : UINT64_MAX;
	return e;
}

/* Bring the list in line with the store: new sessions get a full TTL from
 * now, known ones keep their deadline, gone ones are dropped. */
static void resync(struct sessions *ss)
{
	struct srv *s = ss->s;
	struct kv_session_list l = {0};
	uint64_t now = uv_now(s->loop);
	size_t w = 0;
	int rc = kv_session_list(cluster_kv(s->cluster), NULL, &l);

	if (rc != 0) {
		bcn_warn(MOD, "listing sessions: %s", bcn_strerror(rc));
		return;
	}
	for (size_t i = 0; i < ss->n; i++)
		ss->v[i].seen = false;
	for (size_t i = 0; i < l.n; i++) {
		struct sess *e = find(ss, l.items[i].id);
		if (e == NULL)
			e = add(ss, &l.items[i], now);
		if (e != NULL)
			e->seen = true;
	}
	for (size_t i = 0; i < ss->n; i++)
		if (ss->v[i].seen)
			ss->v[w++] = ss->v[i];
	ss->n = w;
	kv_session_list_close(&l);
}

static void destroyed(struct cluster_req *req, int status)
{
	if (status != 0)
		bcn_debug(MOD, "session destroy: %s", bcn_strerror(status));
	kv_result_close(&req->result);
	bcn_free(req);
}

static void destroy(struct sessions *ss, struct sess *e, const char *why)
{
	struct srv *s = ss->s;
	struct kv_session ks;
	struct cluster_req *req;
	uint64_t now = uv_now(s->loop);

	if (e->destroy_sent != 0 && now - e->destroy_sent < RETRY_MS)
		return;
	req = bcn_calloc(1, sizeof *req);
	if (req == NULL)
		return;
	memset(&ks, 0, sizeof ks);
	snprintf(ks.id, sizeof ks.id, "%s", e->id);
	e->destroy_sent = now;
	if (cluster_propose_session(s->cluster, CMD_SESSION_DESTROY, &ks,
				    srv_now_ms(), req, destroyed) != 0) {
		bcn_free(req);
		return;
	}
	bcn_info(MOD, "invalidating session %s: %s", e->id, why);
}

/* True if @ks's node and every check it names are there and not
 * critical; else @why says what failed. */
static bool healthy(struct srv *s, const struct kv_session *ks, char *why,
		    size_t len)
{
	struct cat_store *cat = cluster_cat(s->cluster);
	struct cat_rows rows = {0};
	const struct {
		const char *p;
		size_t len;
	} lists[2] = {{ks->node_checks, ks->node_checks_len},
		      {ks->service_checks, ks->service_checks_len}};
	bool ok = true;

	if (cat_node(cat, ks->node, &rows) != 0) {
		snprintf(why, len, "node %s is gone", ks->node);
		ok = false;
	}
	for (int l = 0; ok && l < 2; l++) {
		for (size_t off = 0; ok && off < lists[l].len;) {
			const char *id = lists[l].p + off;
			off += strlen(id) + 1;
			if (cat_check(cat, ks->node, id, &rows) != 0) {
				snprintf(why, len, "check %s is gone", id);
				ok = false;
			} else if (rows.chks[rows.n_chks - 1].status ==
				   CAT_CRITICAL) {
				snprintf(why, len, "check %s is critical", id);
				ok = false;
			}
		}
	}
	cat_rows_close(&rows);
	return ok;
}

static void rescan(struct sessions *ss)
{
	struct srv *s = ss->s;
	char why[600];

	for (size_t i = 0; i < ss->n; i++) {
		struct kv_session ks;
		if (kv_session_get(cluster_kv(s->cluster), ss->v[i].id, &ks) !=
		    0)
			continue;
		if (!healthy(s, &ks, why, sizeof why))
			destroy(ss, &ss->v[i], why);
		kv_session_close(&ks);
	}
}

static void sweep_cb(uv_timer_t *t)
{
	struct sessions *ss = t->data;
	uint64_t now = uv_now(ss->s->loop);

	if (!ss->leading || ss->s->cluster == NULL)
		return;
	if (ss->rescan) {
		ss->rescan = false;
		rescan(ss);
	}
	for (size_t i = 0; i < ss->n; i++)
		if (ss->v[i].due <= now)
			destroy(ss, &ss->v[i], "TTL expired");
}

int sessions_start(struct srv *s)
{
	struct sessions *ss = bcn_calloc(1, sizeof *ss);

	if (ss == NULL)
		return BCN_ENOMEM;
	ss->s = s;
	uv_timer_init(s->loop, &ss->timer);
	ss->timer.data = ss;
	uv_timer_start(&ss->timer, sweep_cb, SWEEP_MS, SWEEP_MS);
	s->sessions = ss;
	return 0;
}

static void closed(uv_handle_t *h)
{
	struct sessions *ss = h->data;

	bcn_free(ss->v);
	bcn_free(ss);
}

void sessions_stop(struct srv *s)
{
	if (s->sessions == NULL)
		return;
	uv_close((uv_handle_t *)&s->sessions->timer, closed);
	s->sessions = NULL;
}

void sessions_turn(struct srv *s, bool leading, bool sessions_changed,
		   bool checks_changed)
{
	struct sessions *ss = s->sessions;

	if (ss == NULL)
		return;
	if (leading != ss->leading) {
		ss->leading = leading;
		ss->n = 0;
		if (leading) {
			resync(ss); /* a full TTL for every session */
			ss->rescan = true;
			bcn_info(MOD, "leading: tracking %zu sessions", ss->n);
		}
		return;
	}
	if (!leading)
		return;
	if (sessions_changed) {
		resync(ss);
		ss->rescan = true; /* a new session's checks may be down */
	}
	if (checks_changed)
		ss->rescan = true;
}

int sessions_renew(struct srv *s, const char *id)
{
	struct sessions *ss = s->sessions;
	struct kv_session ks;
	struct sess *e;
	int rc;

	if (ss == NULL)
		return BCN_ESHUTDOWN;
	rc = kv_session_get(cluster_kv(s->cluster), id, &ks);
	if (rc != 0)
		return rc;
	e = find(ss, id);
	if (e == NULL)
		e = add(ss, &ks, uv_now(s->loop));
	if (e != NULL && e->ttl_ms > 0)
		e->due = uv_now(s->loop) + grace(e->ttl_ms);
	kv_session_close(&ks);
	return 0;
}
