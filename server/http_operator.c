/* Cluster endpoints: /v1/operator/raft/..., /v1/agent/self, /v1/agent/members
 * and /v1/snapshot (CONSUL-API.md §3 and §6). */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/parse.h"
#include "server/http.h"
#include "server/json_member.h"
#include "server/members.h"
#include "server/srv.h"

#define BEACON_VERSION "0.1.0"

/* ---- membership changes ---------------------------------------------- */

static void change_cb(struct cluster_change *ch, int status)
{
	struct http_req *r = ch->data;
	void (*ok)(struct http_req *) = r->change_ok;

	r->proposing = false;
	if (r->completed) {
		http_req_release(r);
		return;
	}
	if (status == 0)
		ok(r);
	else if (status == BCN_ENOTLEADER)
		http_reply_err(r, status);
	else
		http_reply_text(
		    r,
		    status == BCN_EBUSY				      ? 500
		    : status == BCN_EINVAL || status == BCN_ENOTFOUND ? 400
								      : 500,
		    "%s",
		    ch->errmsg[0] != '\0' ? ch->errmsg : bcn_strerror(status));
}

/* Start a change with @start; reply through @ok on success. */
static void change(struct http_req *r, int rc, void (*ok)(struct http_req *))
{
	if (rc != 0) {
		change_cb(r->change, rc);
		return;
	}
	r->change_ok = ok;
	r->proposing = true;
}

static struct cluster_change *change_new(struct http_req *r)
{
	r->change = bcn_calloc(1, sizeof *r->change);
	if (r->change == NULL) {
		http_reply_err(r, BCN_ENOMEM);
		return NULL;
	}
	r->change->data = r;
	return r->change;
}

static void reply_true(struct http_req *r)
{
	struct bcn_buf b;

	bcn_buf_init(&b);
	bcn_buf_puts(&b, "true");
	http_reply_json(r, 200, &b);
}

static void reply_empty(struct http_req *r)
{
	http_reply(r, 200, NULL, "", 0);
}

static void reply_success(struct http_req *r)
{
	struct bcn_buf b;

	bcn_buf_init(&b);
	bcn_buf_puts(&b, "{\"Success\":true}");
	http_reply_json(r, 200, &b);
}

static bool valid_addr(const char *a)
{
	const char *colon = strrchr(a, ':');
	uint64_t port;

	return colon != NULL && colon != a && strlen(a) < 250 &&
	       bcn_parse_u64(colon + 1, &port) == 0 && port > 0 && port < 65536;
}

static const char *member_str(json_t *obj, const char *name)
{
	json_t *v = srv_json_member(obj, name);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* PUT /v1/operator/raft/join {"Name","RaftAddr","HTTPAddr"}: Beacon's own
 * endpoint, used by servers to join or to record themselves. */
/* With ACLs, joining needs operator:write, except for a voter recording
 * its own HTTP address (every follower does, at start): allowed when the
 * request comes from the host that address names, so that nobody else can
 * divert forwarded requests (and their tokens) to an address of theirs. */
static bool join_allowed(struct http_req *r, const char *name, const char *raft,
			 const char *http, bool fresh)
{
	struct cluster_server servers[MEMBERS_MAX];
	char peer[64];
	const char *colon = strrchr(http, ':');
	size_t n;

	if (acl_allows(&r->authz, ACL_OPERATOR, "", ACL_WRITE))
		return true;
	n = r->srv->cluster != NULL
		? cluster_servers(r->srv->cluster, servers, MEMBERS_MAX)
		: 0;
	http_client_ip(r, peer, sizeof peer);
	for (size_t i = 0; i < n && !fresh && colon != NULL; i++) {
		if (strcmp(servers[i].raft_addr, raft) == 0 &&
		    strcmp(servers[i].role, "voter") == 0 &&
		    (servers[i].name[0] == '\0' ||
		     strcmp(servers[i].name, name) == 0) &&
		    strlen(peer) == (size_t)(colon - http) &&
		    strncmp(peer, http, (size_t)(colon - http)) == 0)
			return true;
	}
	return http_acl(r, ACL_OPERATOR, "", ACL_WRITE);
}

void http_op_join(struct http_req *r)
{
	json_error_t jerr;
	json_t *root = json_loadb(r->body.data != NULL ? r->body.data : "",
				  r->body.len, 0, &jerr);
	const char *name, *raft, *http;
	struct cluster_change *ch;
	bool fresh;

	if (root == NULL || !json_is_object(root)) {
		http_reply_text(r, 400, "Request decode failed: %s",
				root == NULL ? jerr.text : "not an object");
		goto out;
	}
	fresh = json_is_true(srv_json_member(root, "Fresh"));
	name = member_str(root, "Name");
	raft = member_str(root, "RaftAddr");
	http = member_str(root, "HTTPAddr");
	if (name == NULL || name[0] == '\0' || strlen(name) > 128 ||
	    raft == NULL || !valid_addr(raft) || http == NULL ||
	    !valid_addr(http)) {
		http_reply_text(r, 400,
				"Name, RaftAddr and HTTPAddr "
				"(host:port) are required");
		goto out;
	}
	if (!join_allowed(r, name, raft, http, fresh))
		goto out;
	if (!http_write_ok(r) || (ch = change_new(r)) == NULL)
		goto out;
	change(r,
	       cluster_join(r->srv->cluster, name, raft, http, fresh, ch,
			    change_cb),
	       reply_true);
out:
	json_decref(root);
}

/* Find a server by ?id= (its name or hex raft ID) or ?address=. */
static bool find_server(struct http_req *r, uint64_t *id)
{
	const struct http_arg *ida = http_arg(r, "id"),
			      *addr = http_arg(r, "address");
	struct cluster_server sv[MEMBERS_MAX];
	size_t n = cluster_servers(r->srv->cluster, sv, MEMBERS_MAX);

	if ((ida == NULL) == (addr == NULL)) {
		http_reply_text(r, 400,
				"Must specify either ?id with the "
				"server's ID or ?address with IP:port "
				"of peer to remove");
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		char hex[32];
		snprintf(hex, sizeof hex, "%llx", (unsigned long long)sv[i].id);
		if ((ida != NULL && (strcmp(ida->value, sv[i].name) == 0 ||
				     strcmp(ida->value, hex) == 0)) ||
		    (addr != NULL &&
		     strcmp(addr->value, sv[i].raft_addr) == 0)) {
			*id = sv[i].id;
			return true;
		}
	}
	http_reply_text(r, 400, "Server not found in the Raft configuration");
	return false;
}

void http_op_peer(struct http_req *r)
{
	struct cluster_change *ch;
	uint64_t id;

	if (!http_write_ok(r) || !find_server(r, &id) ||
	    (ch = change_new(r)) == NULL)
		return;
	change(r, cluster_remove(r->srv->cluster, id, ch, change_cb),
	       reply_empty);
}

void http_op_transfer(struct http_req *r)
{
	struct cluster_change *ch;
	uint64_t id = 0;

	if (!http_write_ok(r))
		return;
	if (http_arg(r, "id") != NULL && !find_server(r, &id))
		return;
	if ((ch = change_new(r)) == NULL)
		return;
	change(r, cluster_transfer(r->srv->cluster, id, ch, change_cb),
	       reply_success);
}

/* ---- reads ------------------------------------------------------------- */

static void config_read(struct http_req *r)
{
	struct cluster_server sv[MEMBERS_MAX];
	size_t n = cluster_servers(r->srv->cluster, sv, MEMBERS_MAX);
	struct bcn_buf b;

	bcn_buf_init(&b);
	bcn_buf_puts(&b, "{\"Servers\":[");
	for (size_t i = 0; i < n; i++) {
		char hex[32];
		snprintf(hex, sizeof hex, "%llx", (unsigned long long)sv[i].id);
		bcn_buf_puts(&b, i > 0 ? ",{\"ID\":" : "{\"ID\":");
		bcn_buf_put_json_str(&b, hex, strlen(hex));
		bcn_buf_puts(&b, ",\"Node\":");
		bcn_buf_put_json_str(&b, sv[i].name, strlen(sv[i].name));
		bcn_buf_puts(&b, ",\"Address\":");
		bcn_buf_put_json_str(&b, sv[i].raft_addr,
				     strlen(sv[i].raft_addr));
		bcn_buf_printf(
		    &b,
		    ",\"Leader\":%s,\"Voter\":%s,\"ProtocolVersion\":"
		    "\"3\",\"LastIndex\":%llu}",
		    sv[i].leader ? "true" : "false",
		    strcmp(sv[i].role, "voter") == 0 ? "true" : "false",
		    (unsigned long long)cluster_applied_index(r->srv->cluster));
	}
	bcn_buf_printf(
	    &b, "],\"Index\":%llu}",
	    (unsigned long long)cluster_applied_index(r->srv->cluster));
	http_set_index(r, cluster_applied_index(r->srv->cluster));
	http_reply_json(r, 200, &b);
}

void http_op_config(struct http_req *r)
{
	http_read(r, config_read);
}

static void put_member(struct http_req *r, struct bcn_buf *b,
		       const struct cluster_server *sv)
{
	const char *name = sv->name[0] != '\0' ? sv->name : sv->raft_addr;
	const char *colon = strrchr(sv->raft_addr, ':');
	size_t hlen = colon != NULL ? (size_t)(colon - sv->raft_addr)
				    : strlen(sv->raft_addr);

	bcn_buf_puts(b, "{\"Name\":");
	bcn_buf_put_json_str(b, name, strlen(name));
	bcn_buf_puts(b, ",\"Addr\":");
	bcn_buf_put_json_str(b, sv->raft_addr, hlen);
	bcn_buf_printf(b, ",\"Port\":%s,\"Tags\":{\"dc\":",
		       colon != NULL ? colon + 1 : "0");
	bcn_buf_put_json_str(b, r->srv->cfg->datacenter,
			     strlen(r->srv->cfg->datacenter));
	bcn_buf_printf(b,
		       ",\"role\":\"consul\",\"vsn\":\"2\",\"http\":\"%s\","
		       "\"raft_role\":\"%s\"},\"Status\":%d,"
		       "\"ProtocolMin\":1,\"ProtocolMax\":5,\"ProtocolCur\":2,"
		       "\"DelegateMin\":2,\"DelegateMax\":5,\"DelegateCur\":4}",
		       sv->http_addr, sv->role,
		       members_alive(r->srv, sv->raft_addr) ? 1 : 4);
}

void http_agent_members(struct http_req *r)
{
	struct cluster_server sv[MEMBERS_MAX];
	size_t n;
	struct bcn_buf b;

	if (r->srv->cluster == NULL) {
		http_reply_err(r, BCN_ESHUTDOWN);
		return;
	}
	n = cluster_servers(r->srv->cluster, sv, MEMBERS_MAX);
	bcn_buf_init(&b);
	bcn_buf_putc(&b, '[');
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			bcn_buf_putc(&b, ',');
		put_member(r, &b, &sv[i]);
	}
	bcn_buf_putc(&b, ']');
	http_reply_json(r, 200, &b);
}

void http_agent_self(struct http_req *r)
{
	const struct config *cfg = r->srv->cfg;
	struct cluster *c = r->srv->cluster;
	struct cluster_server me;
	struct bcn_buf b;
	char hex[32];

	if (c == NULL) {
		http_reply_err(r, BCN_ESHUTDOWN);
		return;
	}
	memset(&me, 0, sizeof me);
	me.id = cluster_node_id(cfg->node);
	snprintf(me.name, sizeof me.name, "%s", cfg->node);
	snprintf(me.raft_addr, sizeof me.raft_addr, "%s", cfg->raft_addr);
	snprintf(me.http_addr, sizeof me.http_addr, "%s", cfg->http_addr);
	me.role = "voter";
	snprintf(hex, sizeof hex, "%llx", (unsigned long long)me.id);
	bcn_buf_init(&b);
	bcn_buf_puts(&b, "{\"Config\":{\"Datacenter\":");
	bcn_buf_put_json_str(&b, cfg->datacenter, strlen(cfg->datacenter));
	bcn_buf_puts(&b, ",\"PrimaryDatacenter\":");
	bcn_buf_put_json_str(&b, cfg->datacenter, strlen(cfg->datacenter));
	bcn_buf_puts(&b, ",\"NodeName\":");
	bcn_buf_put_json_str(&b, cfg->node, strlen(cfg->node));
	bcn_buf_printf(
	    &b,
	    ",\"NodeID\":\"%s\",\"Server\":true,\"Version\":\"%s\","
	    "\"Revision\":\"beacon\",\"BuildDate\":\"\"},\"Member\":",
	    hex, BEACON_VERSION);
	put_member(r, &b, &me);
	bcn_buf_printf(&b,
		       ",\"Stats\":{\"raft\":{\"state\":\"%s\","
		       "\"applied_index\":\"%llu\",\"leader_addr\":",
		       cluster_is_leader(c) ? "Leader" : "Follower",
		       (unsigned long long)cluster_applied_index(c));
	bcn_buf_put_json_str(&b, cluster_leader_addr(c),
			     strlen(cluster_leader_addr(c)));
	bcn_buf_puts(&b, "}},\"Meta\":{}}");
	http_reply_json(r, 200, &b);
}

/* ---- snapshots ---------------------------------------------------------- */

static void snapshot_read(struct http_req *r)
{
	void *data = NULL;
	size_t len = 0, off, ilen;
	uint64_t index = 0;
	int rc = cluster_backup(r->srv->cluster, &data, &len);

	if (rc == 0)
		rc = cluster_snapshot_verify(data, len, &off, &ilen, &index);
	if (rc != 0) {
		bcn_free(data);
		http_reply_err(r, rc);
		return;
	}
	http_set_index(r, index);
	http_reply(r, 200, "application/octet-stream", data, len);
	bcn_free(data);
}

static void restored(struct http_req *r, int status)
{
	if (status != 0)
		http_reply_err(r, status);
	else
		http_reply(r, 200, NULL, "", 0);
}

void http_snapshot(struct http_req *r)
{
	size_t off, ilen;

	if (r->method == HTTP_GET) {
		http_read(r, snapshot_read);
		return;
	}
	if (cluster_snapshot_verify(r->body.data, r->body.len, &off, &ilen,
				    NULL) != 0) {
		http_reply_text(r, 400,
				"Snapshot is truncated or corrupt "
				"(bad header or checksum); nothing "
				"was restored");
		return;
	}
	if (!http_write_ok(r))
		return;
	http_restore(r, restored);
}
