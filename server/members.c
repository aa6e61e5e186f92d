#include "server/members.h"

#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "raft/cluster.h"
#include "server/forward.h"
#include "server/srv.h"
#include "server/upkeep.h"

#define MOD		"members"
#define TICK_MS		1000
#define PROBE_EVERY_MS	2000
#define ALIVE_WITHIN_MS 5000

static struct member_probe *probe_for(struct srv *s, const char *raft_addr)
{
	struct member_probe *free_slot = NULL;

	for (size_t i = 0; i < MEMBERS_MAX; i++) {
		if (strcmp(s->probes[i].raft_addr, raft_addr) == 0)
			return &s->probes[i];
		if (free_slot == NULL && s->probes[i].raft_addr[0] == '\0')
			free_slot = &s->probes[i];
	}
	if (free_slot != NULL)
		snprintf(free_slot->raft_addr, sizeof free_slot->raft_addr,
			 "%s", raft_addr);
	return free_slot;
}

static void probe_done(struct srv *s, void *data, long status, const char *body)
{
	struct member_probe *p = data;

	(void)body;
	p->busy = false;
	if (status == 200 && !s->stopping)
		p->last_ok = uv_now(s->loop);
}

static void join_done(struct srv *s, void *data, long status, const char *body)
{
	(void)data;
	s->join_busy = false;
	if (status == 200)
		bcn_info(MOD, "recorded in the cluster");
	else if (!s->stopping)
		bcn_debug(MOD, "join/record: HTTP %ld %s", status, body);
}

static void ask_to_join(struct srv *s)
{
	char target[300], url[400], body[1024];
	const struct config *cfg = s->cfg;

	bool fresh = cfg->join[0] != '\0' && cluster_fresh(s->cluster);

	if (s->join_busy || (!fresh && cluster_self_recorded(s->cluster)))
		return;
	if (!cluster_leader_http(s->cluster, target, sizeof target)) {
		if (cfg->join[0] == '\0')
			return;
		snprintf(target, sizeof target, "%s", cfg->join);
	}
	snprintf(url, sizeof url, "%s%s/v1/operator/raft/join",
		 strncmp(target, "http://", 7) == 0 ? "" : "http://", target);
	/* Names and addresses were validated at start-up: no quoting needed
	 * beyond what JSON requires of them, which they never contain. */
	snprintf(body, sizeof body,
		 "{\"Name\":\"%s\",\"RaftAddr\":\"%s\",\"HTTPAddr\":\"%s\","
		 "\"Fresh\":%s}",
		 cfg->node, cfg->raft_addr, cfg->http_addr,
		 fresh ? "true" : "false");
	if (fwd_call(s, url, "PUT", body, 60000, join_done, NULL) == 0)
		s->join_busy = true;
}

static void promote_done(struct cluster_change *ch, int status)
{
	struct srv *s = ch->data;

	s->promote_busy = false;
	if (status != 0)
		bcn_warn(MOD, "promoting a spare server: %s (%s)",
			 bcn_strerror(status), ch->errmsg);
	else
		bcn_info(MOD, "promoted a spare server to voter");
	bcn_free(ch);
}

/* The leader's repair of an interrupted join: a server that is in the
 * configuration as a spare (a join added it, then the leader changed or
 * failed before promoting it), that recorded itself and answers probes, is
 * made a voter. Nothing else retries that step: the server believes it is
 * a member and never asks again. */
static void promote_spares(struct srv *s, const struct cluster_server *sv,
			   size_t n)
{
	uint64_t now = uv_now(s->loop);

	if (s->promote_busy || now - s->promote_at < 5000 ||
	    !cluster_serving(s->cluster))
		return;
	for (size_t i = 0; i < n; i++) {
		struct cluster_change *ch;
		if (strcmp(sv[i].role, "voter") == 0 || sv[i].name[0] == '\0' ||
		    sv[i].http_addr[0] == '\0' ||
		    !members_alive(s, sv[i].raft_addr))
			continue;
		ch = bcn_calloc(1, sizeof *ch);
		if (ch == NULL)
			return;
		ch->data = s;
		s->promote_at = now;
		if (cluster_join(s->cluster, sv[i].name, sv[i].raft_addr,
				 sv[i].http_addr, false, ch,
				 promote_done) != 0) {
			bcn_free(ch);
			return;
		}
		bcn_info(MOD, "promoting spare server %s", sv[i].name);
		s->promote_busy = true;
		return;
	}
}

static void tick_cb(uv_timer_t *t)
{
	struct srv *s = t->data;
	struct cluster_server servers[MEMBERS_MAX];
	size_t n;
	uint64_t now = uv_now(s->loop);

	if (s->cluster == NULL || s->stopping)
		return;
	if (cluster_is_leader(s->cluster)) {
		cluster_record_self(s->cluster);
		upkeep_servers(s);
	} else
		ask_to_join(s);
	n = cluster_servers(s->cluster, servers, MEMBERS_MAX);
	for (size_t i = 0; i < n; i++) {
		struct member_probe *p;
		char url[400];

		if (servers[i].http_addr[0] == '\0' ||
		    strcmp(servers[i].raft_addr, s->cfg->raft_addr) == 0)
			continue;
		p = probe_for(s, servers[i].raft_addr);
		if (p == NULL || p->busy || now - p->last_try < PROBE_EVERY_MS)
			continue;
		p->last_try = now;
		snprintf(url, sizeof url, "http://%s/v1/status/leader",
			 servers[i].http_addr);
		if (fwd_call(s, url, "GET", "", 1500, probe_done, p) == 0)
			p->busy = true;
	}
	if (cluster_is_leader(s->cluster))
		promote_spares(s, servers, n);
}

void members_start(struct srv *s)
{
	uv_timer_start(&s->members_timer, tick_cb, 200, TICK_MS);
}

void members_stop(struct srv *s)
{
	uv_timer_stop(&s->members_timer);
}

bool members_alive(struct srv *s, const char *raft_addr)
{
	if (strcmp(raft_addr, s->cfg->raft_addr) == 0)
		return true;
	for (size_t i = 0; i < MEMBERS_MAX; i++) {
		const struct member_probe *p = &s->probes[i];
		if (strcmp(p->raft_addr, raft_addr) == 0)
			return p->last_ok != 0 &&
			       uv_now(s->loop) - p->last_ok < ALIVE_WITHIN_MS;
	}
	return false;
}
