#include "server/upkeep.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "health/checks.h"
#include "raft/cluster.h"
#include "server/srv.h"

#define MOD "upkeep"
/* A new leader waits this long before it calls other servers dead: its
 * probes need time to reach them first. */
#define GRACE_MS     6000
#define ALIVE_OUTPUT "Agent alive and reachable"
#define DEAD_OUTPUT  "Agent not live or unreachable"

static void proposed(struct cluster_req *req, int status)
{
	if (status != 0)
		bcn_debug(MOD, "catalog proposal: %s", bcn_strerror(status));
	kv_result_close(&req->result);
	bcn_free(req);
}

static int propose(void *data, const struct cat_op *ops, size_t n)
{
	struct srv *s = data;
	struct cluster_req *req;
	int rc;

	if (s->cluster == NULL || s->stopping)
		return BCN_ESHUTDOWN;
	req = bcn_calloc(1, sizeof *req);
	if (req == NULL)
		return BCN_ENOMEM;
	req->data = s;
	rc = cluster_propose_cat(s->cluster, ops, n, req, proposed);
	if (rc != 0)
		bcn_free(req);
	return rc;
}

int upkeep_start(struct srv *s)
{
	struct checks_options o = {
	    .output_interval_ms = s->cfg->check_output_interval,
	    .sweep_ms = 100,
	};

	return checks_open(&s->checks, s->loop, cluster_cat(s->cluster), &o,
			   propose, s);
}

void upkeep_stop(struct srv *s)
{
	checks_close(s->checks);
	s->checks = NULL;
}

void upkeep_turn(struct srv *s)
{
	bool serving = s->cluster != NULL && cluster_serving(s->cluster);

	if (serving && s->leader_since == 0) {
		s->leader_since = uv_now(s->loop);
		upkeep_servers(s); /* at once: clients may ask right away */
	} else if (!serving)
		s->leader_since = 0;
	if (s->checks != NULL)
		checks_set_leader(s->checks, serving);
}

/* Does the catalog hold @node, its consul instance and its serfHealth
 * check as @want says? */
static bool up_to_date(struct cat_store *cat, const struct cat_op *want)
{
	struct cat_rows rows = {0};
	bool ok =
	    cat_node(cat, want[0].node.name, &rows) == 0 &&
	    strcmp(rows.nodes[0].address, want[0].node.address) == 0 &&
	    cat_service(cat, want[1].svc.node, want[1].svc.id, &rows) == 0 &&
	    rows.svcs[0].port == want[1].svc.port &&
	    cat_check(cat, want[2].chk.node, want[2].chk.id, &rows) == 0 &&
	    (want[2].keep_status || rows.chks[0].status == want[2].chk.status);

	cat_rows_close(&rows);
	return ok;
}

void upkeep_servers(struct srv *s)
{
	struct cluster_server servers[MEMBERS_MAX];
	struct cat_store *cat;
	uint64_t now = uv_now(s->loop);
	size_t n;

	if (s->cluster == NULL || !cluster_serving(s->cluster) ||
	    s->leader_since == 0)
		return;
	cat = cluster_cat(s->cluster);
	n = cluster_servers(s->cluster, servers, MEMBERS_MAX);
	for (size_t i = 0; i < n; i++) {
		/* This server may not have recorded its name yet. */
		if (servers[i].name[0] == '\0' &&
		    strcmp(servers[i].raft_addr, s->cfg->raft_addr) == 0)
			snprintf(servers[i].name, sizeof servers[i].name, "%s",
				 s->cfg->node);
	}
	for (size_t i = 0; i < n; i++) {
		struct cluster_server *sv = &servers[i];
		const char *colon = strrchr(sv->raft_addr, ':');
		char host[256];
		unsigned port = colon != NULL ? (unsigned)atoi(colon + 1) : 0;
		bool self = strcmp(sv->name, s->cfg->node) == 0;
		bool alive = self || members_alive(s, sv->raft_addr);
		bool grace = !self && now - s->leader_since < GRACE_MS;
		struct cat_op ops[3];

		if (sv->name[0] == '\0' || colon == NULL)
			continue;
		snprintf(host, sizeof host, "%.*s",
			 (int)(colon - sv->raft_addr), sv->raft_addr);
		memset(ops, 0, sizeof ops);
		ops[0].verb = CAT_NODE_SET;
		ops[0].node = (struct cat_node){
		    .name = sv->name, .id = "", .address = host};
		ops[1].verb = CAT_SERVICE_SET;
		ops[1].svc = (struct cat_service){.node = sv->name,
						  .id = "consul",
						  .name = "consul",
						  .kind = "",
						  .address = "",
						  .port = port,
						  .weight_passing = 1,
						  .weight_warning = 1};
		ops[2].verb = CAT_CHECK_SET;
		ops[2].keep_status = grace; /* no verdict on others yet */
		ops[2].chk = (struct cat_check){
		    .node = sv->name,
		    .id = CAT_NODE_CHECK,
		    .name = "Serf Health Status",
		    .status = alive || grace ? CAT_PASSING : CAT_CRITICAL,
		    .notes = "",
		    .output = alive || grace ? ALIVE_OUTPUT : DEAD_OUTPUT,
		    .service_id = "",
		    .type = "",
		    .def = {.output_max = CAT_MAX_OUTPUT},
		};
		if (up_to_date(cat, ops))
			continue;
		if (propose(s, ops, 3) != 0)
			bcn_debug(MOD, "could not update server %s", sv->name);
	}
}
