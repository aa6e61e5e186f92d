/* /v1/agent (services and checks), /v1/catalog and /v1/health, as
 * CONSUL-API.md §3–§5 describe them.
 *
 * The agent: every server is the agent of its own node. A request received
 * by server n2 acts on node n2, also after n2 forwarded it to the leader
 * (the forward carries n2's name in X-Beacon-Forwarded).
 *
 * Writes run on the leader: read the catalog, build catalog ops, propose.
 * Reads go through http_read() (default: the leader answers; ?stale: any
 * server) and block on the catalog topic of what they show. */
#include <jansson.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/alloc.h"
#include "common/parse.h"
#include "health/checks.h"
#include "server/forward.h"
#include "server/http.h"
#include "server/json_member.h"
#include "server/srv.h"

#define MAX_CHECKS	32 /* in one service registration */
#define MIN_INTERVAL_MS 1000
#define DEFAULT_TIMEOUT 10000
#define SCRIPTS_DISABLED                                            \
	"Scripts are disabled on this agent; to enable, configure " \
	"'enable_script_checks' or 'enable_local_script_checks' to true"
#define MAINT_SVC_PREFIX "_service_maintenance:"
#define MAINT_NODE	 "_node_maintenance"

static struct cat_store *cat(struct http_req *r)
{
	return cluster_cat(r->srv->cluster);
}

/* The node this request acts for (see the top of the file). */
static const char *agent_node(struct http_req *r)
{
	const char *fwd =
	    MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, FWD_HEADER);

	return fwd != NULL && fwd[0] != '\0' ? fwd : r->srv->cfg->node;
}

/* ---- output -----------------------------------------------------------------
 */

static void jstr(struct bcn_buf *b, const char *s)
{
	bcn_buf_put_json_str(b, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

/* ,"Key": */
static void jkey(struct bcn_buf *b, const char *k)
{
	bcn_buf_printf(b, ",\"%s\":", k);
}

static void jfield(struct bcn_buf *b, const char *k, const char *v)
{
	jkey(b, k);
	jstr(b, v);
}

static void put_list(struct bcn_buf *b, const struct cat_strs *l)
{
	size_t pos = 0;
	const char *s;
	bool first = true;

	bcn_buf_putc(b, '[');
	while ((s = cat_strs_next(l, &pos)) != NULL) {
		if (!first)
			bcn_buf_putc(b, ',');
		first = false;
		jstr(b, s);
	}
	bcn_buf_putc(b, ']');
}

static void put_pairs(struct bcn_buf *b, const struct cat_strs *l)
{
	size_t pos = 0;
	const char *k;
	bool first = true;

	bcn_buf_putc(b, '{');
	while ((k = cat_strs_next(l, &pos)) != NULL) {
		const char *v = cat_strs_next(l, &pos);
		if (!first)
			bcn_buf_putc(b, ',');
		first = false;
		jstr(b, k);
		bcn_buf_putc(b, ':');
		jstr(b, v);
	}
	bcn_buf_putc(b, '}');
}

/* A service's TaggedAddresses: name → {Address, Port}. */
static void put_svc_tagged(struct bcn_buf *b, const struct cat_strs *l)
{
	size_t pos = 0;
	const char *k;
	bool first = true;

	bcn_buf_putc(b, '{');
	while ((k = cat_strs_next(l, &pos)) != NULL) {
		const char *addr = cat_strs_next(l, &pos);
		const char *port = cat_strs_next(l, &pos);
		if (!first)
			bcn_buf_putc(b, ',');
		first = false;
		jstr(b, k);
		bcn_buf_puts(b, ":{\"Address\":");
		jstr(b, addr);
		bcn_buf_printf(b, ",\"Port\":%s}", port);
	}
	bcn_buf_putc(b, '}');
}

/* HTTP check headers: name → [values], repeated names grouped. */
static void put_headers(struct bcn_buf *b, const struct cat_strs *l)
{
	size_t pos = 0;
	const char *k, *prev = NULL;

	if (l->data == NULL) {
		bcn_buf_puts(b, "null");
		return;
	}
	bcn_buf_putc(b, '{');
	while ((k = cat_strs_next(l, &pos)) != NULL) {
		const char *v = cat_strs_next(l, &pos);
		if (prev != NULL && strcmp(prev, k) == 0) {
			bcn_buf_putc(b, ',');
		} else {
			if (prev != NULL)
				bcn_buf_puts(b, "],");
			jstr(b, k);
			bcn_buf_puts(b, ":[");
		}
		jstr(b, v);
		prev = k;
	}
	if (prev != NULL)
		bcn_buf_putc(b, ']');
	bcn_buf_putc(b, '}');
}

/* Go's time.Duration.String() for whole milliseconds: "0s", "500ms",
 * "10s", "1m30s", "1h0m0s", "1.5s". */
void http_put_duration(struct bcn_buf *b, uint64_t ms)
{
	uint64_t h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60;
	uint64_t frac = ms % 1000;

	bcn_buf_putc(b, '"');
	if (ms == 0) {
		bcn_buf_puts(b, "0s");
	} else if (ms < 1000) {
		bcn_buf_printf(b, "%llums", (unsigned long long)ms);
	} else {
		if (h > 0)
			bcn_buf_printf(b, "%lluh", (unsigned long long)h);
		if (h > 0 || m > 0)
			bcn_buf_printf(b, "%llum", (unsigned long long)m);
		bcn_buf_printf(b, "%llu", (unsigned long long)s);
		if (frac > 0) {
			char f[8];
			int n = snprintf(f, sizeof f, "%03llu",
					 (unsigned long long)frac);
			while (n > 0 && f[n - 1] == '0')
				f[--n] = '\0';
			bcn_buf_printf(b, ".%s", f);
		}
		bcn_buf_putc(b, 's');
	}
	bcn_buf_putc(b, '"');
}

static void put_indexes(struct bcn_buf *b, uint64_t c, uint64_t m)
{
	bcn_buf_printf(b, ",\"CreateIndex\":%llu,\"ModifyIndex\":%llu",
		       (unsigned long long)c, (unsigned long long)m);
}

static void put_weights(struct bcn_buf *b, const struct cat_service *v)
{
	bcn_buf_printf(b, "{\"Passing\":%u,\"Warning\":%u}", v->weight_passing,
		       v->weight_warning);
}

/* AgentService, and the Service object of /v1/health/service. */
static void put_agent_service(struct http_req *r, struct bcn_buf *b,
			      const struct cat_service *v)
{
	bcn_buf_putc(b, '{');
	if (v->kind[0] != '\0') {
		bcn_buf_puts(b, "\"Kind\":");
		jstr(b, v->kind);
		bcn_buf_putc(b, ',');
	}
	bcn_buf_puts(b, "\"ID\":");
	jstr(b, v->id);
	jfield(b, "Service", v->name);
	jkey(b, "Tags");
	put_list(b, &v->tags);
	jkey(b, "Meta");
	put_pairs(b, &v->meta);
	bcn_buf_printf(b, ",\"Port\":%u", v->port);
	jfield(b, "Address", v->address);
	if (v->tagged.data != NULL) {
		jkey(b, "TaggedAddresses");
		put_svc_tagged(b, &v->tagged);
	}
	jkey(b, "Weights");
	put_weights(b, v);
	bcn_buf_printf(b, ",\"EnableTagOverride\":%s",
		       v->enable_tag_override ? "true" : "false");
	put_indexes(b, v->create_index, v->modify_index);
	jfield(b, "Datacenter", r->srv->cfg->datacenter);
	bcn_buf_putc(b, '}');
}

static void put_node(struct http_req *r, struct bcn_buf *b,
		     const struct cat_node *n)
{
	bcn_buf_puts(b, "{\"ID\":");
	jstr(b, n->id);
	jfield(b, "Node", n->name);
	jfield(b, "Address", n->address);
	jfield(b, "Datacenter", r->srv->cfg->datacenter);
	jkey(b, "TaggedAddresses");
	put_pairs(b, &n->tagged);
	jkey(b, "Meta");
	put_pairs(b, &n->meta);
	put_indexes(b, n->create_index, n->modify_index);
	bcn_buf_putc(b, '}');
}

/* A ServiceNode: the node and the service flattened. */
static void put_service_node(struct http_req *r, struct bcn_buf *b,
			     const struct cat_node *n,
			     const struct cat_service *v)
{
	static const struct cat_node none = {
	    .name = "", .id = "", .address = ""};

	if (n == NULL)
		n = &none;
	bcn_buf_puts(b, "{\"ID\":");
	jstr(b, n->id);
	jfield(b, "Node", v->node);
	jfield(b, "Address", n->address);
	jfield(b, "Datacenter", r->srv->cfg->datacenter);
	jkey(b, "TaggedAddresses");
	put_pairs(b, &n->tagged);
	jkey(b, "NodeMeta");
	put_pairs(b, &n->meta);
	jfield(b, "ServiceKind", v->kind);
	jfield(b, "ServiceID", v->id);
	jfield(b, "ServiceName", v->name);
	jkey(b, "ServiceTags");
	put_list(b, &v->tags);
	jfield(b, "ServiceAddress", v->address);
	jkey(b, "ServiceTaggedAddresses");
	put_svc_tagged(b, &v->tagged);
	jkey(b, "ServiceWeights");
	put_weights(b, v);
	jkey(b, "ServiceMeta");
	put_pairs(b, &v->meta);
	bcn_buf_printf(b, ",\"ServicePort\":%u", v->port);
	bcn_buf_printf(b, ",\"ServiceEnableTagOverride\":%s",
		       v->enable_tag_override ? "true" : "false");
	put_indexes(b, v->create_index, v->modify_index);
	bcn_buf_putc(b, '}');
}

/* A HealthCheck; @tags: the service's tags (NULL for none). */
static void put_check(struct bcn_buf *b, const struct cat_check *k,
		      const struct cat_strs *tags)
{
	static const struct cat_strs empty;
	const struct cat_check_def *d = &k->def;

	bcn_buf_puts(b, "{\"Node\":");
	jstr(b, k->node);
	jfield(b, "CheckID", k->id);
	jfield(b, "Name", k->name);
	jfield(b, "Status", cat_status_name(k->status));
	jfield(b, "Notes", k->notes);
	jfield(b, "Output", k->output);
	jfield(b, "ServiceID", k->service_id);
	jfield(b, "ServiceName", k->service_name);
	jkey(b, "ServiceTags");
	put_list(b, tags != NULL ? tags : &empty);
	jfield(b, "Type", k->type);
	jkey(b, "Interval");
	if (d->interval_ms > 0)
		http_put_duration(b, d->interval_ms);
	else
		bcn_buf_puts(b, "\"\"");
	jkey(b, "Timeout");
	if (d->interval_ms > 0)
		http_put_duration(b, d->timeout_ms);
	else
		bcn_buf_puts(b, "\"\"");
	bcn_buf_puts(b, ",\"ExposedPort\":0,\"Definition\":{\"Interval\":");
	http_put_duration(b, d->interval_ms);
	bcn_buf_puts(b, ",\"Timeout\":");
	http_put_duration(b, d->timeout_ms);
	bcn_buf_puts(b, ",\"DeregisterCriticalServiceAfter\":");
	http_put_duration(b, d->deregister_after_ms);
	if (d->ttl_ms > 0) {
		bcn_buf_puts(b, ",\"TTL\":");
		http_put_duration(b, d->ttl_ms);
	}
	jfield(b, "HTTP", d->http);
	jkey(b, "Header");
	put_headers(b, &d->header);
	jfield(b, "Method", d->method);
	jfield(b, "Body", d->body);
	jfield(b, "TLSServerName", d->tls_server_name);
	bcn_buf_printf(b, ",\"TLSSkipVerify\":%s",
		       d->tls_skip_verify ? "true" : "false");
	jfield(b, "TCP", d->tcp);
	bcn_buf_putc(b, '}');
	put_indexes(b, k->create_index, k->modify_index);
	bcn_buf_putc(b, '}');
}

/* The tags of the service a check belongs to, looked up in @svcs. */
static const struct cat_strs *tags_in(const struct cat_rows *svcs,
				      const struct cat_check *k)
{
	for (size_t i = 0; i < svcs->n_svcs; i++)
		if (strcmp(svcs->svcs[i].node, k->node) == 0 &&
		    strcmp(svcs->svcs[i].id, k->service_id) == 0)
			return &svcs->svcs[i].tags;
	return NULL;
}

/* A JSON list of checks, each with its service's tags. */
static int put_checks(struct http_req *r, struct bcn_buf *b,
		      const struct cat_rows *rows, bool as_map)
{
	struct cat_rows svcs = {0};
	int rc = 0;

	bcn_buf_putc(b, as_map ? '{' : '[');
	for (size_t i = 0; i < rows->n_chks && rc == 0; i++) {
		const struct cat_check *k = &rows->chks[i];
		const struct cat_strs *tags = NULL;
		if (k->service_id[0] != '\0') {
			tags = tags_in(&svcs, k);
			if (tags == NULL) {
				size_t before = svcs.n_svcs;
				rc = cat_service(cat(r), k->node, k->service_id,
						 &svcs);
				if (rc == BCN_ENOTFOUND)
					rc = 0;
				if (svcs.n_svcs > before)
					tags = &svcs.svcs[before].tags;
			}
		}
		if (i > 0)
			bcn_buf_putc(b, ',');
		if (as_map) {
			jstr(b, k->id);
			bcn_buf_putc(b, ':');
		}
		put_check(b, k, tags);
	}
	bcn_buf_putc(b, as_map ? '}' : ']');
	cat_rows_close(&svcs);
	return rc;
}

/* ---- request bodies -------------------------------------------------------
 */

/* What parsing allocated, freed in one place. */
struct parse {
	void **mem;
	size_t n_mem, cap_mem;
	bool failed;	 /* out of memory */
	unsigned status; /* with an error: the HTTP status */
	char why[512];	 /* with an error: the reply */
};

static void parse_close(struct parse *p)
{
	for (size_t i = 0; i < p->n_mem; i++)
		bcn_free(p->mem[i]);
	bcn_free(p->mem);
}

static void *keep(struct parse *p, void *m)
{
	if (m == NULL) {
		p->failed = true;
		return NULL;
	}
	if (p->n_mem == p->cap_mem) {
		size_t cap = p->cap_mem == 0 ? 16 : p->cap_mem * 2;
		void **v = bcn_realloc(p->mem, cap * sizeof *v);
		if (v == NULL) {
			bcn_free(m);
			p->failed = true;
			return NULL;
		}
		p->mem = v;
		p->cap_mem = cap;
	}
	p->mem[p->n_mem++] = m;
	return m;
}

static const char *pfmt(struct parse *p, const char *fmt, ...) BCN_PRINTF(2, 3);
static const char *pfmt(struct parse *p, const char *fmt, ...)
{
	struct bcn_buf b;
	va_list ap;
	char tmp[2 * CAT_MAX_NAME + 64];

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	bcn_buf_init(&b);
	bcn_buf_puts(&b, tmp);
	const char *s = keep(p, bcn_buf_steal(&b, NULL));
	return s != NULL ? s : "";
}

static bool fail(struct parse *p, unsigned status, const char *fmt, ...)
    BCN_PRINTF(3, 4);
static bool fail(struct parse *p, unsigned status, const char *fmt, ...)
{
	va_list ap;

	if (p->status != 0)
		return false; /* the first error wins */
	p->status = status;
	va_start(ap, fmt);
	vsnprintf(p->why, sizeof p->why, fmt, ap);
	va_end(ap);
	return false;
}

/* A member by its Go name (any case) or its snake-case alias. */
static json_t *member(json_t *obj, const char *name, const char *alias)
{
	json_t *v;

	if (!json_is_object(obj))
		return NULL;
	v = srv_json_member(obj, name);
	if (v == NULL && alias != NULL)
		v = srv_json_member(obj, alias);
	return json_is_null(v) ? NULL : v;
}

/* A string member: "" when absent. */
static bool get_str(struct parse *p, json_t *obj, const char *name,
		    const char *alias, const char **out)
{
	json_t *v = member(obj, name, alias);

	*out = "";
	if (v == NULL)
		return true;
	if (!json_is_string(v))
		return fail(p, 400,
			    "Request decode failed: %s must be a string", name);
	*out = json_string_value(v);
	return true;
}

static bool get_bool(struct parse *p, json_t *obj, const char *name,
		     const char *alias, bool *out)
{
	json_t *v = member(obj, name, alias);

	*out = false;
	if (v == NULL)
		return true;
	if (!json_is_boolean(v))
		return fail(p, 400,
			    "Request decode failed: %s must be a boolean",
			    name);
	*out = json_is_true(v);
	return true;
}

static bool get_uint(struct parse *p, json_t *obj, const char *name,
		     const char *alias, uint64_t max, uint64_t *out)
{
	json_t *v = member(obj, name, alias);

	*out = 0;
	if (v == NULL)
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max)
		return fail(p, 400,
			    "Request decode failed: %s must be an integer "
			    "between 0 and %llu",
			    name, (unsigned long long)max);
	*out = (uint64_t)json_integer_value(v);
	return true;
}

/* A duration: a Go duration string or integer nanoseconds. */
static bool get_dur(struct parse *p, json_t *obj, const char *name,
		    const char *alias, uint64_t *ms)
{
	json_t *v = member(obj, name, alias);

	*ms = 0;
	if (v == NULL)
		return true;
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*ms = (uint64_t)json_integer_value(v) / 1000000;
		return true;
	}
	if (json_is_string(v) &&
	    (json_string_value(v)[0] == '\0' ||
	     bcn_parse_duration_ms(json_string_value(v), ms) == 0))
		return true;
	return fail(p, 400, "Request decode failed: %s: invalid duration",
		    name);
}

/* A packed list from a JSON array of strings. */
static bool get_list(struct parse *p, json_t *obj, const char *name,
		     struct cat_strs *out)
{
	json_t *v = member(obj, name, NULL), *e;
	struct bcn_buf b;
	size_t i;

	memset(out, 0, sizeof *out);
	if (v == NULL)
		return true;
	if (!json_is_array(v))
		return fail(p, 400,
			    "Request decode failed: %s must be a list of "
			    "strings",
			    name);
	bcn_buf_init(&b);
	json_array_foreach (v, i, e) {
		if (!json_is_string(e)) {
			bcn_buf_close(&b);
			return fail(p, 400,
				    "Request decode failed: %s must be a list "
				    "of strings",
				    name);
		}
		bcn_buf_put(&b, json_string_value(e),
			    strlen(json_string_value(e)) + 1);
	}
	/* An empty list is no list (and nothing to keep). */
	out->len = b.len;
	out->data = b.len > 0 ? keep(p, bcn_buf_steal(&b, NULL)) : NULL;
	if (b.len == 0)
		bcn_buf_close(&b);
	if (out->data == NULL)
		out->len = 0;
	return !p->failed;
}

/* Pairs from an object of strings (Meta, a node's TaggedAddresses), or,
 * with @lists, of lists of strings (HTTP headers). */
static bool get_pairs(struct parse *p, json_t *obj, const char *name,
		      const char *alias, bool lists, struct cat_strs *out)
{
	json_t *v = member(obj, name, alias), *e, *x;
	struct bcn_buf b;
	const char *k;
	size_t i;

	memset(out, 0, sizeof *out);
	if (v == NULL)
		return true;
	if (!json_is_object(v))
		return fail(p, 400,
			    "Request decode failed: %s must be an "
			    "object",
			    name);
	bcn_buf_init(&b);
	json_object_foreach (v, k, e) {
		if (!lists && json_is_string(e)) {
			bcn_buf_put(&b, k, strlen(k) + 1);
			bcn_buf_put(&b, json_string_value(e),
				    strlen(json_string_value(e)) + 1);
			continue;
		}
		if (lists && json_is_array(e)) {
			json_array_foreach (e, i, x) {
				if (!json_is_string(x))
					break;
				bcn_buf_put(&b, k, strlen(k) + 1);
				bcn_buf_put(&b, json_string_value(x),
					    strlen(json_string_value(x)) + 1);
			}
			if (i == json_array_size(e))
				continue;
		}
		bcn_buf_close(&b);
		return fail(p, 400,
			    "Request decode failed: %s: bad value for \"%s\"",
			    name, k);
	}
	out->len = b.len;
	out->data = b.len > 0 ? keep(p, bcn_buf_steal(&b, NULL)) : NULL;
	if (b.len == 0)
		bcn_buf_close(&b);
	return !p->failed;
}

/* A service's TaggedAddresses: {name: {Address, Port}} as triples. */
static bool get_svc_tagged(struct parse *p, json_t *obj, struct cat_strs *out)
{
	json_t *v = member(obj, "TaggedAddresses", "tagged_addresses"), *e;
	struct bcn_buf b;
	const char *k, *addr;
	uint64_t port;

	memset(out, 0, sizeof *out);
	if (v == NULL)
		return true;
	if (!json_is_object(v))
		return fail(p, 400,
			    "Request decode failed: TaggedAddresses "
			    "must be an object");
	bcn_buf_init(&b);
	json_object_foreach (v, k, e) {
		if (!json_is_object(e) ||
		    !get_str(p, e, "Address", NULL, &addr) ||
		    !get_uint(p, e, "Port", NULL, 65535, &port)) {
			bcn_buf_close(&b);
			return fail(p, 400,
				    "Request decode failed: TaggedAddresses: "
				    "bad value for \"%s\"",
				    k);
		}
		bcn_buf_put(&b, k, strlen(k) + 1);
		bcn_buf_put(&b, addr, strlen(addr) + 1);
		bcn_buf_printf(&b, "%llu", (unsigned long long)port);
		bcn_buf_putc(&b, '\0');
	}
	out->len = b.len;
	out->data = b.len > 0 ? keep(p, bcn_buf_steal(&b, NULL)) : NULL;
	if (b.len == 0)
		bcn_buf_close(&b);
	return !p->failed;
}

static json_t *parse_body(struct http_req *r, struct parse *p, bool empty_ok)
{
	json_error_t err;
	json_t *root;

	if (r->body.len == 0) {
		if (empty_ok)
			return json_object();
		fail(p, 400, "Request decode failed: EOF");
		return NULL;
	}
	root = json_loadb(r->body.data, r->body.len, JSON_DECODE_ANY, &err);
	if (root == NULL) {
		fail(p, 400, "Request decode failed: %s", err.text);
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		fail(p, 400, "Request decode failed: expected a JSON object");
		return NULL;
	}
	return root;
}

/* The check fields shared by agent registrations. @c gets what the body
 * says; defaults are applied by the caller. Returns false on an error in
 * @p. */
static bool parse_check_def(struct parse *p, json_t *o, struct cat_check *c)
{
	struct cat_check_def *d = &c->def;
	static const char *const unsupported[][2] = {
	    {"GRPC", "gRPC"},	       {"UDP", "UDP"},
	    {"H2PING", "H2PING"},      {"AliasNode", "alias"},
	    {"AliasService", "alias"}, {"OSService", "OS service"},
	};
	static const char *const script[][2] = {
	    {"Args", "args"}, {"ScriptArgs", "script_args"},
	    {"Script", NULL}, {"DockerContainerID", "docker_container_id"},
	    {"Shell", NULL},
	};
	uint64_t omax;

	for (size_t i = 0; i < sizeof script / sizeof script[0]; i++)
		if (member(o, script[i][0], script[i][1]) != NULL)
			return fail(p, 400, "%s", SCRIPTS_DISABLED);
	for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0];
	     i++) {
		json_t *v = member(o, unsupported[i][0], NULL);
		if (v != NULL &&
		    !(json_is_string(v) && json_string_value(v)[0] == '\0'))
			return fail(p, 400,
				    "Invalid check: %s checks are not "
				    "supported by Beacon",
				    unsupported[i][1]);
	}
	if (!get_dur(p, o, "TTL", NULL, &d->ttl_ms) ||
	    !get_dur(p, o, "Interval", NULL, &d->interval_ms) ||
	    !get_dur(p, o, "Timeout", NULL, &d->timeout_ms) ||
	    !get_dur(p, o, "DeregisterCriticalServiceAfter",
		     "deregister_critical_service_after",
		     &d->deregister_after_ms) ||
	    !get_str(p, o, "HTTP", NULL, &d->http) ||
	    !get_str(p, o, "Method", NULL, &d->method) ||
	    !get_str(p, o, "Body", NULL, &d->body) ||
	    !get_str(p, o, "TCP", NULL, &d->tcp) ||
	    !get_str(p, o, "TLSServerName", "tls_server_name",
		     &d->tls_server_name) ||
	    !get_bool(p, o, "TLSSkipVerify", "tls_skip_verify",
		      &d->tls_skip_verify) ||
	    !get_bool(p, o, "DisableRedirects", "disable_redirects",
		      &d->disable_redirects) ||
	    !get_pairs(p, o, "Header", NULL, true, &d->header) ||
	    !get_uint(p, o, "OutputMaxSize", "output_max_size", CAT_MAX_STR,
		      &omax))
		return false;
	d->output_max = (uint32_t)omax;
	return true;
}

/* Consul's CheckType.Validate, then the type and the defaults. */
static bool finish_check(struct parse *p, struct cat_check *c)
{
	struct cat_check_def *d = &c->def;
	bool interval_check = d->http[0] != '\0' || d->tcp[0] != '\0';

	if (d->interval_ms > 0 && d->ttl_ms > 0)
		return fail(p, 400,
			    "Invalid check: Interval and TTL cannot "
			    "both be specified");
	if (interval_check && d->interval_ms == 0)
		return fail(p, 400,
			    "Invalid check: Interval must be > 0 for "
			    "Script, HTTP, H2PING, TCP or UDP checks");
	if (!interval_check && d->ttl_ms == 0)
		return fail(p, 400,
			    "Invalid check: TTL must be > 0 for TTL checks");
	if (d->http[0] != '\0' && d->tcp[0] != '\0')
		return fail(p, 400,
			    "Invalid check: HTTP and TCP cannot both "
			    "be specified");
	if (d->http[0] != '\0' && strncmp(d->http, "http://", 7) != 0 &&
	    strncmp(d->http, "https://", 8) != 0)
		return fail(p, 400,
			    "Invalid check: HTTP must be an http:// "
			    "or https:// URL");
	if (d->tcp[0] != '\0' && strrchr(d->tcp, ':') == NULL)
		return fail(p, 400, "Invalid check: TCP must be \"host:port\"");
	if (interval_check) {
		if (d->interval_ms < MIN_INTERVAL_MS)
			d->interval_ms = MIN_INTERVAL_MS;
		if (d->timeout_ms == 0)
			d->timeout_ms = DEFAULT_TIMEOUT;
	}
	if (d->output_max == 0)
		d->output_max = CAT_MAX_OUTPUT;
	c->type = d->ttl_ms > 0 ? "ttl" : d->http[0] != '\0' ? "http" : "tcp";
	return true;
}

/* A check of an agent registration. @status_given: the body set Status. */
static bool parse_agent_check(struct parse *p, json_t *o, struct cat_check *c,
			      bool *status_given)
{
	const char *status;

	if (!json_is_object(o))
		return fail(p, 400,
			    "Request decode failed: a check must be "
			    "an object");
	if (!get_str(p, o, "CheckID", "check_id", &c->id) ||
	    (c->id[0] == '\0' && !get_str(p, o, "ID", NULL, &c->id)) ||
	    !get_str(p, o, "Name", NULL, &c->name) ||
	    !get_str(p, o, "Notes", NULL, &c->notes) ||
	    !get_str(p, o, "Status", NULL, &status) ||
	    !get_str(p, o, "ServiceID", "service_id", &c->service_id) ||
	    !parse_check_def(p, o, c))
		return false;
	*status_given = status[0] != '\0';
	c->status = *status_given ? cat_status_parse(status) : CAT_CRITICAL;
	if (c->status == 0)
		return fail(p, 400, "Bad check status");
	c->output = "";
	return finish_check(p, c);
}

/* ---- writes ----------------------------------------------------------------
 */

/* Reply once a catalog proposal is done: 200 with @body (NULL: empty). */
static void written(struct http_req *r, int status, const char *body)
{
	const struct cat_result *res = &r->creq.cat;

	if (status != 0) {
		http_reply_err(r, status);
		return;
	}
	if (!res->ok) {
		http_reply_text(
		    r, strstr(res->what, "does not exist") != NULL ? 404 : 400,
		    "%s", res->what);
		return;
	}
	if (body == NULL) {
		http_reply(r, 200, NULL, "", 0);
	} else {
		struct bcn_buf b;
		bcn_buf_init(&b);
		bcn_buf_puts(&b, body);
		http_reply_json(r, 200, &b);
	}
}

static void written_empty(struct http_req *r, int status)
{
	written(r, status, NULL);
}

static void written_true(struct http_req *r, int status)
{
	written(r, status, "true");
}

/* ACLs on a write: false (with the 403 already set, which later replies
 * cannot replace) if the token may not write @name of @res. */
static bool acl_ok(struct http_req *r, struct parse *p, enum acl_resource res,
		   const char *name)
{
	if (http_acl(r, res, name, ACL_WRITE))
		return true;
	p->status = 403;
	return false;
}

/* The right a change of check @k needs: its service's, or its node's. */
static bool check_acl_ok(struct http_req *r, struct parse *p,
			 const struct cat_check *k)
{
	return k->service_id[0] != '\0'
		   ? acl_ok(r, p, ACL_SERVICE, k->service_name)
		   : acl_ok(r, p, ACL_NODE, k->node);
}

static bool check_visible(struct http_req *r, const struct cat_check *k)
{
	return k->service_id[0] != '\0'
		   ? http_acl_visible(r, ACL_SERVICE, k->service_name)
		   : http_acl_visible(r, ACL_NODE, k->node);
}

/* Drop from @rows what the token may not read: services (by their name
 * and their node's), nodes, checks. Strings stay in the rows' blocks. */
static void acl_filter_rows_opt(struct http_req *r, struct cat_rows *rows,
				bool by_node)
{
	size_t w = 0;

	if (!r->authz.enabled || r->authz.management)
		return;
	for (size_t i = 0; i < rows->n_svcs; i++) {
		const struct cat_service *v = &rows->svcs[i];
		if (http_acl_visible(r, ACL_SERVICE, v->name) &&
		    (!by_node || http_acl_visible(r, ACL_NODE, v->node)))
			rows->svcs[w++] = *v;
	}
	rows->n_svcs = w;
	w = 0;
	for (size_t i = 0; i < rows->n_nodes; i++)
		if (http_acl_visible(r, ACL_NODE, rows->nodes[i].name))
			rows->nodes[w++] = rows->nodes[i];
	rows->n_nodes = w;
	w = 0;
	for (size_t i = 0; i < rows->n_chks; i++)
		if (check_visible(r, &rows->chks[i]))
			rows->chks[w++] = rows->chks[i];
	rows->n_chks = w;
}

static void acl_filter_rows(struct http_req *r, struct cat_rows *rows)
{
	acl_filter_rows_opt(r, rows, true);
}

/* The ops to add: up to 2 + MAX_CHECKS × 2. */
struct ops {
	struct cat_op v[2 + 2 * MAX_CHECKS];
	size_t n;
};

static struct cat_op *op_add(struct ops *o, enum cat_verb verb)
{
	struct cat_op *op = &o->v[o->n++];

	memset(op, 0, sizeof *op);
	op->verb = verb;
	return op;
}

/* Register the agent's node if the catalog does not have it yet (a server
 * that never recorded itself there). Its address: the host of its Raft
 * address. */
static bool agent_node_op(struct http_req *r, struct parse *p, struct ops *o,
			  const char *node)
{
	struct cluster_server servers[MEMBERS_MAX];
	struct cat_rows rows = {0};
	const char *addr = "127.0.0.1";
	size_t n;
	int rc = cat_node(cat(r), node, &rows);

	cat_rows_close(&rows);
	if (rc == 0)
		return true;
	if (rc != BCN_ENOTFOUND)
		return fail(p, 500, "%s", bcn_strerror(rc));
	n = cluster_servers(r->srv->cluster, servers, MEMBERS_MAX);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(servers[i].name, node) == 0) {
			const char *colon = strrchr(servers[i].raft_addr, ':');
			size_t hl = colon != NULL
					? (size_t)(colon - servers[i].raft_addr)
					: strlen(servers[i].raft_addr);
			addr = pfmt(p, "%.*s", (int)hl, servers[i].raft_addr);
		}
	}
	struct cat_op *op = op_add(o, CAT_NODE_SET);
	op->node.name = node;
	op->node.id = "";
	op->node.address = addr;
	return true;
}

/* Check every op as the state machine will, to answer 400 before
 * proposing. */
static bool ops_ok(struct parse *p, const struct ops *o)
{
	char why[512];

	for (size_t i = 0; i < o->n; i++)
		if (cat_op_check(&o->v[i], why, sizeof why) != 0)
			return fail(p, 400, "%s", why);
	return true;
}

static void propose_or_fail(struct http_req *r, struct parse *p, struct ops *o,
			    void (*done)(struct http_req *r, int status))
{
	if (p->failed)
		http_reply_err(r, BCN_ENOMEM);
	else if (p->status != 0 || !ops_ok(p, o))
		http_reply_text(r, p->status, "%s", p->why);
	else if (o->n == 0) {
		r->creq.cat.ok = true; /* nothing to change: done */
		done(r, 0);
	} else
		http_propose_cat(r, o->v, o->n, done);
}

/* PUT /v1/agent/service/register */
static void service_register(struct http_req *r)
{
	const char *node = agent_node(r);
	struct parse p = {0};
	struct ops *o = NULL;
	struct cat_service *v;
	struct cat_rows cur = {0};
	json_t *root, *chk, *chks;
	bool given[MAX_CHECKS], replace = false;
	size_t n_chks = 0, first_chk;
	uint64_t port, wp = 1, ww = 1;
	const struct http_arg *rep = http_arg(r, "replace-existing-checks");

	if (!http_write_ok(r))
		return;
	if (rep != NULL)
		replace =
		    rep->value[0] == '\0' || strcmp(rep->value, "true") == 0;
	root = parse_body(r, &p, false);
	o = bcn_calloc(1, sizeof *o);
	if (o == NULL)
		p.failed = true;
	if (root == NULL || o == NULL)
		goto out;
	if (!agent_node_op(r, &p, o, node))
		goto out;
	v = &op_add(o, CAT_SERVICE_SET)->svc;
	v->node = node;
	json_t *weights = member(root, "Weights", NULL);
	if (!get_str(&p, root, "ID", "service_id", &v->id) ||
	    !get_str(&p, root, "Name", NULL, &v->name) ||
	    !get_str(&p, root, "Kind", NULL, &v->kind) ||
	    !get_str(&p, root, "Address", NULL, &v->address) ||
	    !get_list(&p, root, "Tags", &v->tags) ||
	    !get_pairs(&p, root, "Meta", NULL, false, &v->meta) ||
	    !get_svc_tagged(&p, root, &v->tagged) ||
	    !get_uint(&p, root, "Port", NULL, 65535, &port) ||
	    !get_bool(&p, root, "EnableTagOverride", "enable_tag_override",
		      &v->enable_tag_override) ||
	    (weights != NULL &&
	     (!get_uint(&p, weights, "Passing", NULL, UINT32_MAX, &wp) ||
	      !get_uint(&p, weights, "Warning", NULL, UINT32_MAX, &ww))))
		goto out;
	if (v->name[0] == '\0') {
		fail(&p, 400, "Missing service name");
		goto out;
	}
	if (v->id[0] == '\0')
		v->id = v->name;
	v->port = (uint32_t)port;
	v->weight_passing = weights != NULL ? (uint32_t)wp : 1;
	v->weight_warning = weights != NULL ? (uint32_t)ww : 1;

	/* Check, then Checks, numbered as Consul does when there are
	 * several: service:<id>:1, :2, ... */
	chk = member(root, "Check", NULL);
	chks = member(root, "Checks", NULL);
	if (chks != NULL && !json_is_array(chks)) {
		fail(&p, 400, "Request decode failed: Checks must be a list");
		goto out;
	}
	size_t total =
	    (chk != NULL) + (chks != NULL ? json_array_size(chks) : 0);
	if (total > MAX_CHECKS) {
		fail(&p, 400, "Too many checks: at most %d", MAX_CHECKS);
		goto out;
	}
	first_chk = o->n;
	for (size_t i = 0; i < total; i++) {
		json_t *co = chk != NULL
				 ? (i == 0 ? chk : json_array_get(chks, i - 1))
				 : json_array_get(chks, i);
		struct cat_op *op = op_add(o, CAT_CHECK_SET);
		struct cat_check *c = &op->chk;
		if (!parse_agent_check(&p, co, c, &given[n_chks]))
			goto out;
		c->node = node;
		c->service_id = v->id;
		if (c->id[0] == '\0')
			c->id = total > 1
				    ? pfmt(&p, "service:%s:%zu", v->id, i + 1)
				    : pfmt(&p, "service:%s", v->id);
		if (c->name[0] == '\0')
			c->name = pfmt(&p, "Service '%s' check", v->name);
		op->keep_status = !given[n_chks];
		n_chks++;
	}
	if (!acl_ok(r, &p, ACL_SERVICE, v->name))
		goto out;
	if (replace) {
		/* Drop the service's checks that this registration does not
		 * name. */
		int rc = cat_checks(cat(r), node, NULL, 0, &cur);
		if (rc != 0) {
			http_reply_err(r, rc);
			goto out_nomsg;
		}
		for (size_t i = 0; i < cur.n_chks; i++) {
			const struct cat_check *c = &cur.chks[i];
			bool named = false;
			if (strcmp(c->service_id, v->id) != 0 ||
			    strncmp(c->id, MAINT_SVC_PREFIX,
				    strlen(MAINT_SVC_PREFIX)) == 0)
				continue;
			for (size_t j = first_chk; j < o->n && !named; j++)
				named = o->v[j].verb == CAT_CHECK_SET &&
					strcmp(o->v[j].chk.id, c->id) == 0;
			if (!named) {
				struct cat_op *op = op_add(o, CAT_CHECK_DELETE);
				op->chk.node = node;
				op->chk.id = c->id;
			}
		}
	}
out:
	if (root != NULL || p.status != 0 || p.failed)
		propose_or_fail(r, &p, o, written_empty);
	else
		http_reply_err(r, BCN_ENOMEM);
out_nomsg:
	cat_rows_close(&cur);
	json_decref(root);
	bcn_free(o);
	parse_close(&p);
}

/* PUT /v1/agent/check/register */
static void check_register(struct http_req *r)
{
	const char *node = agent_node(r);
	struct parse p = {0};
	struct ops o;
	struct cat_op *op;
	bool given = false;
	json_t *root;

	if (!http_write_ok(r))
		return;
	o.n = 0;
	root = parse_body(r, &p, false);
	if (root == NULL)
		goto out;
	if (!agent_node_op(r, &p, &o, node))
		goto out;
	op = op_add(&o, CAT_CHECK_SET);
	if (!parse_agent_check(&p, root, &op->chk, &given))
		goto out;
	op->keep_status = !given;
	op->chk.node = node;
	if (op->chk.name[0] == '\0') {
		fail(&p, 400, "Missing check name");
		goto out;
	}
	if (op->chk.id[0] == '\0')
		op->chk.id = op->chk.name;
	if (op->chk.service_id[0] != '\0') {
		struct cat_rows rows = {0};
		int rc = cat_service(cat(r), node, op->chk.service_id, &rows);
		if (rc == BCN_ENOTFOUND)
			fail(&p, 404, "ServiceID \"%s\" does not exist",
			     op->chk.service_id);
		else if (rc != 0)
			fail(&p, 500, "%s", bcn_strerror(rc));
		else
			(void)acl_ok(r, &p, ACL_SERVICE, rows.svcs[0].name);
		cat_rows_close(&rows);
	} else {
		(void)acl_ok(r, &p, ACL_NODE, node);
	}
out:
	propose_or_fail(r, &p, &o, written_empty);
	json_decref(root);
	parse_close(&p);
}

/* Deregister a service or a check of the agent's node: a no-op if it is
 * not there. */
static void agent_deregister(struct http_req *r, bool service, const char *id)
{
	struct parse p = {0};
	struct ops o = {.n = 0};
	struct cat_op *op;

	if (!http_write_ok(r))
		return;
	if (id[0] == '\0') {
		http_reply_text(r, 400,
				service ? "Missing service ID"
					: "Missing check ID");
		return;
	}
	{
		struct cat_rows rows = {0};
		int rc = service ? cat_service(cat(r), agent_node(r), id, &rows)
				 : cat_check(cat(r), agent_node(r), id, &rows);
		bool ok =
		    rc != 0 ||
		    (service ? acl_ok(r, &p, ACL_SERVICE, rows.svcs[0].name)
			     : check_acl_ok(r, &p, &rows.chks[0]));
		cat_rows_close(&rows);
		if (!ok) {
			parse_close(&p);
			return;
		}
	}
	op = op_add(&o, service ? CAT_SERVICE_DELETE : CAT_CHECK_DELETE);
	if (service) {
		op->svc.node = agent_node(r);
		op->svc.id = id;
	} else {
		op->chk.node = agent_node(r);
		op->chk.id = id;
	}
	propose_or_fail(r, &p, &o, written_empty);
	parse_close(&p);
}

/* Cut @s to @max bytes as Consul does, never inside a UTF-8 sequence. */
static const char *cap_output(struct parse *p, const char *s, size_t max)
{
	size_t n = strlen(s), cut = max;

	if (n <= max)
		return s;
	while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
		cut--;
	return pfmt(p, "%.*s ... (captured %zu of %zu bytes)", (int)cut, s, cut,
		    n);
}

/* pass/warn/fail/update: a TTL heartbeat. */
static void check_ttl(struct http_req *r, enum cat_status st, const char *id,
		      const char *output)
{
	const char *node = agent_node(r);
	struct cat_rows rows = {0};
	struct parse p = {0};
	struct ops o = {.n = 0};
	bool write = false;
	int rc;

	checks_set_leader(r->srv->checks, true); /* http_write_ok() said so */
	rc = cat_check(cat(r), node, id, &rows);
	if (rc == 0 && !check_acl_ok(r, &p, &rows.chks[0]))
		goto out;
	if (rc == 0) {
		size_t max = rows.chks[0].def.output_max;
		output = cap_output(&p, output, max > 0 ? max : CAT_MAX_OUTPUT);
		rc = checks_ttl_beat(r->srv->checks, node, id, st, output,
				     &write);
	}
	if (rc == BCN_ENOTFOUND) {
		http_reply_text(
		    r, 500, "CheckID \"%s\" does not have associated TTL", id);
	} else if (rc != 0) {
		http_reply_err(r, rc);
	} else {
		if (write) {
			struct cat_op *op = op_add(&o, CAT_CHECK_STATUS);
			op->chk.node = node;
			op->chk.id = id;
			op->chk.status = st;
			op->chk.output = output;
		}
		propose_or_fail(r, &p, &o, written_empty);
	}
out:
	cat_rows_close(&rows);
	parse_close(&p);
}

static void check_update(struct http_req *r, const char *id)
{
	struct parse p = {0};
	const char *status = "", *output = "";
	json_t *root = parse_body(r, &p, false);
	enum cat_status st = 0;

	if (root != NULL && get_str(&p, root, "Status", NULL, &status) &&
	    get_str(&p, root, "Output", NULL, &output)) {
		st = cat_status_parse(status);
		if (st == 0)
			fail(&p, 400, "Invalid check status: '%s'", status);
	}
	if (p.status != 0)
		http_reply_text(r, p.status, "%s", p.why);
	else
		check_ttl(r, st, id, output);
	json_decref(root);
	parse_close(&p);
}

/* Maintenance mode: a critical check that takes a service (or the whole
 * node) out of ?passing and DNS. */
static void maintenance(struct http_req *r, const char *svc_id)
{
	const char *node = agent_node(r);
	const struct http_arg *en = http_arg(r, "enable");
	const struct http_arg *reason = http_arg(r, "reason");
	struct parse p = {0};
	struct ops o = {.n = 0};
	struct cat_op *op;
	bool enable;

	if (!http_write_ok(r))
		return;
	if (en == NULL || en->value[0] == '\0') {
		http_reply_text(r, 400, "Missing value for enable");
		return;
	}
	if (bcn_parse_bool(en->value, &enable) != 0) {
		http_reply_text(r, 400, "Invalid value for enable: \"%s\"",
				en->value);
		return;
	}
	if (svc_id != NULL) {
		struct cat_rows rows = {0};
		int rc = cat_service(cat(r), node, svc_id, &rows);
		bool ok =
		    rc != 0 || acl_ok(r, &p, ACL_SERVICE, rows.svcs[0].name);
		cat_rows_close(&rows);
		if (!ok)
			goto out;
		if (rc == BCN_ENOTFOUND) {
			http_reply_text(r, 404, "Unknown service ID \"%s\"",
					svc_id);
			return;
		}
		if (rc != 0) {
			http_reply_err(r, rc);
			return;
		}
	} else if (!acl_ok(r, &p, ACL_NODE, node) ||
		   !agent_node_op(r, &p, &o, node)) {
		goto out;
	}
	op = op_add(&o, enable ? CAT_CHECK_SET : CAT_CHECK_DELETE);
	op->chk.node = node;
	op->chk.id = svc_id != NULL ? pfmt(&p, MAINT_SVC_PREFIX "%s", svc_id)
				    : MAINT_NODE;
	if (enable) {
		op->chk.name = svc_id != NULL ? "Service Maintenance Mode"
					      : "Node Maintenance Mode";
		op->chk.notes =
		    reason != NULL && reason->value[0] != '\0'
			? reason->value
			: pfmt(&p,
			       "Maintenance mode is enabled for this %s, but "
			       "no reason was provided. This is a default "
			       "message.",
			       svc_id != NULL ? "service" : "node");
		op->chk.status = CAT_CRITICAL;
		op->chk.output = "";
		op->chk.service_id = svc_id != NULL ? svc_id : "";
		op->chk.type = "maintenance";
	}
out:
	propose_or_fail(r, &p, &o, written_empty);
	parse_close(&p);
}

/* ---- agent reads -------------------------------------------------------- */

/* The entries the leader keeps for every server (upkeep.c) are catalog
 * entries, not the agent's own: Consul's agent endpoints do not list them
 * either. */
static bool server_entry(const char *svc_id, const char *check_id)
{
	return (svc_id != NULL && strcmp(svc_id, CAT_SERVER_SVC) == 0) ||
	       (check_id != NULL && strcmp(check_id, CAT_NODE_CHECK) == 0);
}

static void agent_services_read(struct http_req *r)
{
	struct cat_rows rows = {0};
	struct bcn_buf b;
	int rc = cat_services(cat(r), NULL, agent_node(r), &rows);

	if (rc != 0) {
		http_reply_err(r, rc);
		goto out;
	}
	acl_filter_rows(r, &rows);
	bcn_buf_init(&b);
	bcn_buf_putc(&b, '{');
	for (size_t i = 0, n = 0; i < rows.n_svcs; i++) {
		if (server_entry(rows.svcs[i].id, NULL))
			continue;
		if (n++ > 0)
			bcn_buf_putc(&b, ',');
		jstr(&b, rows.svcs[i].id);
		bcn_buf_putc(&b, ':');
		put_agent_service(r, &b, &rows.svcs[i]);
	}
	bcn_buf_putc(&b, '}');
	http_reply_json(r, 200, &b);
out:
	cat_rows_close(&rows);
}

void http_agent_services(struct http_req *r)
{
	if (http_arg(r, "filter") != NULL) {
		http_reply_text(r, 400, "Beacon does not support ?filter yet");
		return;
	}
	http_read(r, agent_services_read);
}

static void agent_service_read(struct http_req *r)
{
	struct cat_rows rows = {0};
	struct bcn_buf b;
	int rc = server_entry(r->rest, NULL)
		     ? BCN_ENOTFOUND
		     : cat_service(cat(r), agent_node(r), r->rest, &rows);

	if (rc == BCN_ENOTFOUND) {
		http_reply_text(r, 404, "unknown service ID: %s", r->rest);
	} else if (rc != 0) {
		http_reply_err(r, rc);
	} else if (http_acl(r, ACL_SERVICE, rows.svcs[0].name, ACL_READ)) {
		char hash[17];
		bcn_buf_init(&b);
		put_agent_service(r, &b, &rows.svcs[0]);
		/* ContentHash: what changes when the service does. */
		snprintf(hash, sizeof hash, "%016llx",
			 (unsigned long long)rows.svcs[0].modify_index);
		b.len--; /* the closing brace */
		bcn_buf_printf(&b, ",\"ContentHash\":\"%s\"}", hash);
		http_reply_json(r, 200, &b);
	}
	cat_rows_close(&rows);
}

static void agent_checks_read(struct http_req *r)
{
	struct cat_rows rows = {0};
	struct bcn_buf b;
	int rc = cat_checks(cat(r), agent_node(r), NULL, 0, &rows);
	size_t w = 0;

	acl_filter_rows(r, &rows);
	for (size_t i = 0; i < rows.n_chks; i++)
		if (!server_entry(NULL, rows.chks[i].id))
			rows.chks[w++] = rows.chks[i];
	rows.n_chks = w;
	bcn_buf_init(&b);
	if (rc == 0)
		rc = put_checks(r, &b, &rows, true);
	if (rc != 0) {
		bcn_buf_close(&b);
		http_reply_err(r, rc);
	} else {
		http_reply_json(r, 200, &b);
	}
	cat_rows_close(&rows);
}

void http_agent_checks(struct http_req *r)
{
	if (http_arg(r, "filter") != NULL) {
		http_reply_text(r, 400, "Beacon does not support ?filter yet");
		return;
	}
	http_read(r, agent_checks_read);
}

/* Split "verb/arg" in the route's rest: @verb matched, the rest in @arg. */
static bool verb_is(struct http_req *r, const char *verb, const char **arg)
{
	size_t n = strlen(verb);

	if (strncmp(r->rest, verb, n) != 0)
		return false;
	if (r->rest[n] == '\0') {
		*arg = r->rest + n;
		return true;
	}
	if (r->rest[n] != '/')
		return false;
	*arg = r->rest + n + 1;
	return true;
}

/* /v1/agent/service/... */
void http_agent_service(struct http_req *r)
{
	const char *arg;

	if (verb_is(r, "register", &arg) && arg[0] == '\0') {
		if (r->method != HTTP_PUT)
			http_method_not_allowed(r, HTTP_PUT);
		else
			service_register(r);
	} else if (verb_is(r, "deregister", &arg)) {
		agent_deregister(r, true, arg); /* GET or PUT (§10.3) */
	} else if (verb_is(r, "maintenance", &arg)) {
		if (r->method != HTTP_PUT)
			http_method_not_allowed(r, HTTP_PUT);
		else if (arg[0] == '\0')
			http_reply_text(r, 400, "Missing service ID");
		else
			maintenance(r, arg);
	} else if (r->method != HTTP_GET) {
		http_method_not_allowed(r, HTTP_GET);
	} else if (r->rest[0] == '\0') {
		http_reply_text(r, 400, "Missing service ID");
	} else {
		http_read(r, agent_service_read);
	}
}

/* /v1/agent/check/... */
void http_agent_check(struct http_req *r)
{
	static const struct {
		const char *verb;
		enum cat_status st;
	} ttl[] = {{"pass", CAT_PASSING},
		   {"warn", CAT_WARNING},
		   {"fail", CAT_CRITICAL}};
	const char *arg;

	if (verb_is(r, "register", &arg) && arg[0] == '\0') {
		if (r->method != HTTP_PUT)
			http_method_not_allowed(r, HTTP_PUT);
		else
			check_register(r);
		return;
	}
	if (verb_is(r, "deregister", &arg)) {
		agent_deregister(r, false, arg);
		return;
	}
	for (size_t i = 0; i < sizeof ttl / sizeof ttl[0]; i++) {
		if (verb_is(r, ttl[i].verb, &arg)) {
			const struct http_arg *note = http_arg(r, "note");
			if (!http_write_ok(r))
				return;
			if (arg[0] == '\0') {
				http_reply_text(r, 400, "Missing check ID");
				return;
			}
			check_ttl(r, ttl[i].st, arg,
				  note != NULL ? note->value : "");
			return;
		}
	}
	if (verb_is(r, "update", &arg)) {
		if (r->method != HTTP_PUT)
			http_method_not_allowed(r, HTTP_PUT);
		else if (!http_write_ok(r))
			return;
		else if (arg[0] == '\0')
			http_reply_text(r, 400, "Missing check ID");
		else
			check_update(r, arg);
		return;
	}
	http_reply_text(r, 404,
			"Invalid URL path: not a recognized HTTP API endpoint");
}

/* PUT /v1/agent/maintenance */
void http_agent_maintenance(struct http_req *r)
{
	maintenance(r, NULL);
}

/* ---- /v1/agent/health/service/name/:name and /id/:id -------------------- */

/* The worst status among @svc's checks and its node's. */
static enum cat_status aggregate(const struct cat_rows *rows,
				 const struct cat_service *v)
{
	enum cat_status worst = CAT_PASSING;

	for (size_t i = 0; i < rows->n_chks; i++) {
		const struct cat_check *k = &rows->chks[i];
		if (strcmp(k->node, v->node) != 0 ||
		    (k->service_id[0] != '\0' &&
		     strcmp(k->service_id, v->id) != 0))
			continue;
		if (k->status > worst)
			worst = k->status;
	}
	return worst;
}

static unsigned status_code(enum cat_status s)
{
	return s == CAT_PASSING ? 200 : s == CAT_WARNING ? 429 : 503;
}

static void agent_health_read(struct http_req *r)
{
	const char *node = agent_node(r), *arg;
	bool by_id = verb_is(r, "id", &arg);
	bool text = false;
	const struct http_arg *fmt = http_arg(r, "format");
	struct cat_rows rows = {0};
	enum cat_status worst = CAT_PASSING;
	struct bcn_buf b;
	size_t found = 0;
	int rc;

	if (!by_id && !verb_is(r, "name", &arg)) {
		http_reply_text(r, 404,
				"Invalid URL path: not a recognized "
				"HTTP API endpoint");
		return;
	}
	text = fmt != NULL && strcmp(fmt->value, "text") == 0;
	rc = cat_services(cat(r), NULL, node, &rows);
	if (rc == 0)
		rc = cat_checks(cat(r), node, NULL, 0, &rows);
	if (rc != 0) {
		http_reply_err(r, rc);
		goto out;
	}
	acl_filter_rows(r, &rows);
	bcn_buf_init(&b);
	if (!by_id)
		bcn_buf_putc(&b, '[');
	for (size_t i = 0; i < rows.n_svcs; i++) {
		const struct cat_service *v = &rows.svcs[i];
		enum cat_status st;
		struct cat_rows mine = {0};
		if (strcmp(by_id ? v->id : v->name, arg) != 0)
			continue;
		st = aggregate(&rows, v);
		if (st > worst)
			worst = st;
		if (found++ > 0)
			bcn_buf_putc(&b, ',');
		bcn_buf_puts(&b, "{\"AggregatedStatus\":");
		jstr(&b, cat_status_name(st));
		bcn_buf_puts(&b, ",\"Service\":");
		put_agent_service(r, &b, v);
		bcn_buf_puts(&b, ",\"Checks\":");
		for (size_t j = 0; j < rows.n_chks; j++) {
			const struct cat_check *k = &rows.chks[j];
			if (strcmp(k->service_id, v->id) == 0 ||
			    k->service_id[0] == '\0') {
				/* A shallow copy: the strings stay in
				 * @rows. */
				if (mine.n_chks == mine.cap_chks) {
					size_t cap = mine.cap_chks == 0
							 ? 8
							 : mine.cap_chks * 2;
					void *nv = bcn_realloc(
					    mine.chks, cap * sizeof *mine.chks);
					if (nv == NULL)
						break;
					mine.chks = nv;
					mine.cap_chks = cap;
				}
				mine.chks[mine.n_chks++] = *k;
			}
		}
		rc = put_checks(r, &b, &mine, false);
		bcn_free(mine.chks);
		bcn_buf_putc(&b, '}');
		if (by_id)
			break;
	}
	if (!by_id)
		bcn_buf_putc(&b, ']');
	if (found == 0) {
		bcn_buf_close(&b);
		if (text)
			http_reply(r, 404, "text/plain", "", 0);
		else
			http_reply_text(r, 404, "ServiceName %s Not Found",
					arg);
		goto out;
	}
	if (text) {
		const char *name = cat_status_name(worst);
		bcn_buf_close(&b);
		http_reply(r, status_code(worst), "text/plain", name,
			   strlen(name));
	} else {
		http_reply_json(r, status_code(worst), &b);
	}
out:
	cat_rows_close(&rows);
}

void http_agent_health(struct http_req *r)
{
	http_read(r, agent_health_read);
}

/* ---- /v1/catalog ------------------------------------------------------------
 */

/* True if every ?tag= of the request is among @tags. */
static bool tags_match(struct http_req *r, const struct cat_strs *tags)
{
	for (size_t i = 0; i < r->uri.n_args; i++)
		if (strcmp(r->uri.args[i].name, "tag") == 0 &&
		    !cat_strs_has(tags, r->uri.args[i].value))
			return false;
	return true;
}

/* True if @n has every ?node-meta=k:v of the request. */
static bool node_meta_match(struct http_req *r, const struct cat_node *n)
{
	for (size_t i = 0; i < r->uri.n_args; i++) {
		const char *v = r->uri.args[i].value, *colon;
		size_t pos = 0;
		const char *k;
		bool found = false;
		if (strcmp(r->uri.args[i].name, "node-meta") != 0)
			continue;
		if (n == NULL)
			return false;
		colon = strchr(v, ':');
		while (!found && (k = cat_strs_next(&n->meta, &pos)) != NULL) {
			const char *mv = cat_strs_next(&n->meta, &pos);
			found = colon != NULL &&
				strlen(k) == (size_t)(colon - v) &&
				strncmp(k, v, (size_t)(colon - v)) == 0 &&
				strcmp(mv, colon + 1) == 0;
		}
		if (!found)
			return false;
	}
	return true;
}

static const struct cat_node *node_in(const struct cat_rows *rows,
				      const char *name)
{
	for (size_t i = 0; i < rows->n_nodes; i++)
		if (strcmp(rows->nodes[i].name, name) == 0)
			return &rows->nodes[i];
	return NULL;
}

/* The index of @topic; blocks if the request asks to. True if the caller
 * should answer now (with @index set on the reply). */
static bool index_or_block(struct http_req *r, const char *topic,
			   uint64_t *index)
{
	int rc = cat_index(cat(r), topic, index);

	if (rc != 0) {
		http_reply_err(r, rc);
		return false;
	}
	if (http_block_cat(r, *index, topic))
		return false;
	http_set_index(r, *index);
	return true;
}

static void reply_rows_err(struct http_req *r, struct bcn_buf *b, int rc)
{
	if (rc != 0) {
		bcn_buf_close(b);
		http_reply_err(r, rc);
	} else {
		http_reply_json(r, 200, b);
	}
}

static void catalog_nodes_read(struct http_req *r)
{
	struct cat_rows rows = {0};
	struct bcn_buf b;
	uint64_t index;
	size_t n = 0;
	int rc;

	if (!index_or_block(r, "N", &index))
		return;
	bcn_buf_init(&b);
	rc = cat_nodes(cat(r), &rows);
	acl_filter_rows(r, &rows);
	bcn_buf_putc(&b, '[');
	for (size_t i = 0; rc == 0 && i < rows.n_nodes; i++) {
		if (!node_meta_match(r, &rows.nodes[i]))
			continue;
		if (n++ > 0)
			bcn_buf_putc(&b, ',');
		put_node(r, &b, &rows.nodes[i]);
	}
	bcn_buf_putc(&b, ']');
	reply_rows_err(r, &b, rc);
	cat_rows_close(&rows);
}

static void catalog_services_read(struct http_req *r)
{
	struct cat_rows rows = {0}, nodes = {0};
	struct bcn_buf b;
	uint64_t index;
	int rc;

	if (!index_or_block(r, "S", &index))
		return;
	bcn_buf_init(&b);
	rc = cat_services(cat(r), NULL, NULL, &rows);
	acl_filter_rows_opt(r, &rows, false); /* names only: no node shown */
	if (rc == 0 && http_arg(r, "node-meta") != NULL)
		rc = cat_nodes(cat(r), &nodes);
	/* name → union of tags; names sorted. */
	size_t *order = rc == 0 && rows.n_svcs > 0
			    ? bcn_calloc(rows.n_svcs, sizeof *order)
			    : NULL;
	size_t n_order = 0;
	if (rc == 0 && rows.n_svcs > 0 && order == NULL)
		rc = BCN_ENOMEM;
	for (size_t i = 0; rc == 0 && i < rows.n_svcs; i++) {
		size_t j = n_order;
		if (http_arg(r, "node-meta") != NULL &&
		    !node_meta_match(r, node_in(&nodes, rows.svcs[i].node)))
			continue;
		while (j > 0 && strcmp(rows.svcs[order[j - 1]].name,
				       rows.svcs[i].name) > 0) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
		n_order++;
	}
	bcn_buf_putc(&b, '{');
	for (size_t i = 0; rc == 0 && i < n_order;) {
		const char *name = rows.svcs[order[i]].name;
		size_t end = i, nt = 0;
		while (end < n_order &&
		       strcmp(rows.svcs[order[end]].name, name) == 0)
			end++;
		if (i > 0)
			bcn_buf_putc(&b, ',');
		jstr(&b, name);
		bcn_buf_puts(&b, ":[");
		for (size_t j = i; j < end; j++) {
			size_t pos = 0;
			const char *t;
			const struct cat_strs *tags = &rows.svcs[order[j]].tags;
			while ((t = cat_strs_next(tags, &pos)) != NULL) {
				bool dup = false;
				/* Seen in an earlier instance, or earlier in
				 * this one? */
				for (size_t q = i; q < j && !dup; q++)
					dup = cat_strs_has(
					    &rows.svcs[order[q]].tags, t);
				for (size_t p2 = 0; !dup && p2 < pos;) {
					const char *u =
					    cat_strs_next(tags, &p2);
					if (u == t)
						break;
					dup = strcmp(u, t) == 0;
				}
				if (dup)
					continue;
				if (nt++ > 0)
					bcn_buf_putc(&b, ',');
				jstr(&b, t);
			}
		}
		bcn_buf_putc(&b, ']');
		i = end;
	}
	bcn_buf_putc(&b, '}');
	bcn_free(order);
	reply_rows_err(r, &b, rc);
	cat_rows_close(&rows);
	cat_rows_close(&nodes);
}

static char *topic_of(char kind, const char *name)
{
	struct bcn_buf b;

	bcn_buf_init(&b);
	bcn_buf_printf(&b, "%c/%s", kind, name);
	return bcn_buf_steal(&b, NULL);
}

/* The service or node name after "<verb>/": the rest of the path. */
static const char *name_arg(struct http_req *r, const char *verb)
{
	return r->rest + strlen(verb) + 1;
}

static void catalog_service_read(struct http_req *r)
{
	const char *name = name_arg(r, "service");
	struct cat_rows rows = {0};
	struct bcn_buf b;
	char *topic = topic_of('s', name);
	uint64_t index;
	size_t n = 0;
	int rc;

	if (topic == NULL) {
		http_reply_err(r, BCN_ENOMEM);
		return;
	}
	if (!index_or_block(r, topic, &index)) {
		bcn_free(topic);
		return;
	}
	bcn_free(topic);
	bcn_buf_init(&b);
	rc = cat_health_service(cat(r), name, &rows);
	acl_filter_rows(r, &rows);
	bcn_buf_putc(&b, '[');
	for (size_t i = 0; rc == 0 && i < rows.n_svcs; i++) {
		const struct cat_service *v = &rows.svcs[i];
		const struct cat_node *nd = node_in(&rows, v->node);
		if (!tags_match(r, &v->tags) || !node_meta_match(r, nd))
			continue;
		if (n++ > 0)
			bcn_buf_putc(&b, ',');
		put_service_node(r, &b, nd, v);
	}
	bcn_buf_putc(&b, ']');
	reply_rows_err(r, &b, rc);
	cat_rows_close(&rows);
}

/* /v1/catalog/node/:node (services as a map) and node-services (a list). */
static void catalog_node_read(struct http_req *r)
{
	bool list = strncmp(r->rest, "node-services/", 14) == 0;
	const char *name = name_arg(r, list ? "node-services" : "node");
	struct cat_rows rows = {0};
	struct bcn_buf b;
	char *topic = topic_of('n', name);
	uint64_t index;
	int rc;

	if (topic == NULL) {
		http_reply_err(r, BCN_ENOMEM);
		return;
	}
	if (!index_or_block(r, topic, &index)) {
		bcn_free(topic);
		return;
	}
	bcn_free(topic);
	bcn_buf_init(&b);
	rc = cat_node(cat(r), name, &rows);
	if (rc == 0 && !http_acl_visible(r, ACL_NODE, name))
		rc = BCN_ENOTFOUND; /* as if it were not there */
	if (rc == BCN_ENOTFOUND) {
		bcn_buf_puts(&b, "null");
		http_reply_json(r, 200, &b);
		goto out;
	}
	if (rc == 0)
		rc = cat_services(cat(r), NULL, name, &rows);
	if (rc == 0)
		acl_filter_rows(r, &rows);
	bcn_buf_puts(&b, "{\"Node\":");
	if (rc == 0)
		put_node(r, &b, &rows.nodes[0]);
	bcn_buf_puts(&b, list ? ",\"Services\":[" : ",\"Services\":{");
	for (size_t i = 0; rc == 0 && i < rows.n_svcs; i++) {
		if (i > 0)
			bcn_buf_putc(&b, ',');
		if (!list) {
			jstr(&b, rows.svcs[i].id);
			bcn_buf_putc(&b, ':');
		}
		put_agent_service(r, &b, &rows.svcs[i]);
	}
	bcn_buf_puts(&b, list ? "]}" : "}}");
	reply_rows_err(r, &b, rc);
out:
	cat_rows_close(&rows);
}

static void catalog_datacenters(struct http_req *r)
{
	struct bcn_buf b;

	bcn_buf_init(&b);
	bcn_buf_putc(&b, '[');
	jstr(&b, r->srv->cfg->datacenter);
	bcn_buf_putc(&b, ']');
	http_reply_json(r, 200, &b);
}

/* A catalog check: "Definition" holds what an agent check has at the top
 * level. Catalog checks are stored, never run (as in Consul). */
static bool parse_catalog_check(struct parse *p, json_t *o, const char *node,
				struct cat_check *c)
{
	const char *status;
	json_t *def;

	if (!json_is_object(o))
		return fail(p, 400,
			    "Request decode failed: Check must be "
			    "an object");
	if (!get_str(p, o, "CheckID", "check_id", &c->id) ||
	    !get_str(p, o, "Name", NULL, &c->name) ||
	    !get_str(p, o, "Notes", NULL, &c->notes) ||
	    !get_str(p, o, "Output", NULL, &c->output) ||
	    !get_str(p, o, "Status", NULL, &status) ||
	    !get_str(p, o, "ServiceID", "service_id", &c->service_id))
		return false;
	def = member(o, "Definition", NULL);
	if (def != NULL && !parse_check_def(p, def, c))
		return false;
	if (c->def.output_max == 0)
		c->def.output_max = CAT_MAX_OUTPUT;
	c->status = status[0] != '\0' ? cat_status_parse(status) : CAT_CRITICAL;
	if (c->status == 0)
		return fail(p, 400, "Bad check status");
	if (c->name[0] == '\0')
		return fail(p, 400, "Missing check name");
	if (c->id[0] == '\0')
		c->id = c->name;
	c->node = node;
	c->type = "";
	return true;
}

static void catalog_register(struct http_req *r)
{
	struct parse p = {0};
	struct ops *o = bcn_calloc(1, sizeof *o);
	json_t *root = NULL, *svc, *chk, *chks, *e;
	const char *node = "";
	bool skip = false;
	size_t i;

	if (o == NULL) {
		http_reply_err(r, BCN_ENOMEM);
		return;
	}
	root = parse_body(r, &p, false);
	if (root == NULL)
		goto out;
	struct cat_op *nop = op_add(o, CAT_NODE_SET);
	if (!get_str(&p, root, "Node", NULL, &node) ||
	    !get_str(&p, root, "ID", NULL, &nop->node.id) ||
	    !get_str(&p, root, "Address", NULL, &nop->node.address) ||
	    !get_pairs(&p, root, "TaggedAddresses", NULL, false,
		       &nop->node.tagged) ||
	    !get_pairs(&p, root, "NodeMeta", NULL, false, &nop->node.meta) ||
	    !get_bool(&p, root, "SkipNodeUpdate", NULL, &skip))
		goto out;
	nop->node.name = node;
	if (skip) {
		struct cat_rows rows = {0};
		if (cat_node(cat(r), node, &rows) == 0)
			o->n = 0; /* keep the node as it is */
		cat_rows_close(&rows);
	}
	svc = member(root, "Service", NULL);
	if (svc != NULL) {
		struct cat_service *v = &op_add(o, CAT_SERVICE_SET)->svc;
		json_t *weights = member(svc, "Weights", NULL);
		uint64_t port, wp = 1, ww = 1;
		if (!json_is_object(svc)) {
			fail(&p, 400,
			     "Request decode failed: Service must "
			     "be an object");
			goto out;
		}
		v->node = node;
		if (!get_str(&p, svc, "ID", NULL, &v->id) ||
		    !get_str(&p, svc, "Service", NULL, &v->name) ||
		    !get_str(&p, svc, "Kind", NULL, &v->kind) ||
		    !get_str(&p, svc, "Address", NULL, &v->address) ||
		    !get_list(&p, svc, "Tags", &v->tags) ||
		    !get_pairs(&p, svc, "Meta", NULL, false, &v->meta) ||
		    !get_svc_tagged(&p, svc, &v->tagged) ||
		    !get_uint(&p, svc, "Port", NULL, 65535, &port) ||
		    !get_bool(&p, svc, "EnableTagOverride", NULL,
			      &v->enable_tag_override) ||
		    (weights != NULL && (!get_uint(&p, weights, "Passing", NULL,
						   UINT32_MAX, &wp) ||
					 !get_uint(&p, weights, "Warning", NULL,
						   UINT32_MAX, &ww))))
			goto out;
		if (v->name[0] == '\0') {
			fail(&p, 400, "Must provide service name");
			goto out;
		}
		if (v->id[0] == '\0')
			v->id = v->name;
		v->port = (uint32_t)port;
		v->weight_passing = (uint32_t)wp;
		v->weight_warning = (uint32_t)ww;
	}
	if (!acl_ok(r, &p, ACL_NODE, node) ||
	    (svc != NULL &&
	     !acl_ok(r, &p, ACL_SERVICE, o->v[o->n - 1].svc.name)))
		goto out;
	chk = member(root, "Check", NULL);
	chks = member(root, "Checks", NULL);
	if (chks != NULL && !json_is_array(chks)) {
		fail(&p, 400, "Request decode failed: Checks must be a list");
		goto out;
	}
	if ((chk != NULL) + (chks != NULL ? json_array_size(chks) : 0) >
	    MAX_CHECKS) {
		fail(&p, 400, "Too many checks: at most %d", MAX_CHECKS);
		goto out;
	}
	if (chk != NULL &&
	    !parse_catalog_check(&p, chk, node, &op_add(o, CAT_CHECK_SET)->chk))
		goto out;
	json_array_foreach (chks, i, e) {
		if (!parse_catalog_check(&p, e, node,
					 &op_add(o, CAT_CHECK_SET)->chk))
			goto out;
	}
out:
	propose_or_fail(r, &p, o, written_true);
	json_decref(root);
	bcn_free(o);
	parse_close(&p);
}

static void catalog_deregister(struct http_req *r)
{
	struct parse p = {0};
	struct ops o = {.n = 0};
	const char *node = "", *sid = "", *cid = "";
	json_t *root = parse_body(r, &p, false);
	struct cat_op *op;

	if (root == NULL || !get_str(&p, root, "Node", NULL, &node) ||
	    !get_str(&p, root, "ServiceID", "service_id", &sid) ||
	    !get_str(&p, root, "CheckID", "check_id", &cid))
		goto out;
	if (!acl_ok(r, &p, ACL_NODE, node))
		goto out;
	if (sid[0] != '\0') {
		op = op_add(&o, CAT_SERVICE_DELETE);
		op->svc.node = node;
		op->svc.id = sid;
	}
	if (cid[0] != '\0') {
		op = op_add(&o, CAT_CHECK_DELETE);
		op->chk.node = node;
		op->chk.id = cid;
	}
	if (o.n == 0) {
		op = op_add(&o, CAT_NODE_DELETE);
		op->node.name = node;
	}
out:
	propose_or_fail(r, &p, &o, written_true);
	json_decref(root);
	parse_close(&p);
}

void http_catalog(struct http_req *r)
{
	const char *arg;
	bool put = r->method == HTTP_PUT;

	if (http_arg(r, "filter") != NULL) {
		http_reply_text(r, 400, "Beacon does not support ?filter yet");
		return;
	}
	if (strcmp(r->rest, "register") == 0 ||
	    strcmp(r->rest, "deregister") == 0) {
		if (!put)
			http_method_not_allowed(r, HTTP_PUT);
		else if (http_write_ok(r))
			(r->rest[0] == 'r' ? catalog_register
					   : catalog_deregister)(r);
		return;
	}
	if (r->method != HTTP_GET) {
		http_method_not_allowed(r, HTTP_GET);
		return;
	}
	if (strcmp(r->rest, "datacenters") == 0)
		catalog_datacenters(r);
	else if (strcmp(r->rest, "nodes") == 0)
		http_read(r, catalog_nodes_read);
	else if (strcmp(r->rest, "services") == 0)
		http_read(r, catalog_services_read);
	else if (verb_is(r, "service", &arg))
		arg[0] == '\0' ? http_reply_text(r, 400, "Missing service name")
			       : http_read(r, catalog_service_read);
	else if (verb_is(r, "node", &arg) || verb_is(r, "node-services", &arg))
		arg[0] == '\0' ? http_reply_text(r, 400, "Missing node name")
			       : http_read(r, catalog_node_read);
	else
		http_reply_text(r, 404,
				"Invalid URL path: not a recognized "
				"HTTP API endpoint");
}

/* ---- /v1/health
 * -------------------------------------------------------------- */

static bool passing_arg(struct http_req *r, bool *passing)
{
	const struct http_arg *a = http_arg(r, "passing");

	*passing = false;
	if (a == NULL)
		return true;
	if (bcn_parse_bool(a->value, passing) != 0) {
		http_reply_text(r, 400, "Invalid value for ?passing");
		return false;
	}
	return true;
}

static void health_service_read(struct http_req *r)
{
	const char *name = name_arg(r, "service");
	struct cat_rows rows = {0};
	struct bcn_buf b;
	char *topic = topic_of('s', name);
	uint64_t index;
	bool passing;
	size_t n = 0;
	int rc;

	if (topic == NULL) {
		http_reply_err(r, BCN_ENOMEM);
		return;
	}
	if (!passing_arg(r, &passing) || !index_or_block(r, topic, &index)) {
		bcn_free(topic);
		return;
	}
	bcn_free(topic);
	bcn_buf_init(&b);
	rc = cat_health_service(cat(r), name, &rows);
	acl_filter_rows(r, &rows);
	bcn_buf_putc(&b, '[');
	for (size_t i = 0; rc == 0 && i < rows.n_svcs; i++) {
		const struct cat_service *v = &rows.svcs[i];
		const struct cat_node *nd = node_in(&rows, v->node);
		if (!tags_match(r, &v->tags) || !node_meta_match(r, nd))
			continue;
		if (passing && aggregate(&rows, v) != CAT_PASSING)
			continue;
		if (n++ > 0)
			bcn_buf_putc(&b, ',');
		bcn_buf_puts(&b, "{\"Node\":");
		if (nd != NULL)
			put_node(r, &b, nd);
		else
			bcn_buf_puts(&b, "null");
		bcn_buf_puts(&b, ",\"Service\":");
		put_agent_service(r, &b, v);
		bcn_buf_puts(&b, ",\"Checks\":[");
		size_t nc = 0;
		for (size_t j = 0; j < rows.n_chks; j++) {
			const struct cat_check *k = &rows.chks[j];
			if (strcmp(k->node, v->node) != 0 ||
			    (k->service_id[0] != '\0' &&
			     strcmp(k->service_id, v->id) != 0))
				continue;
			if (nc++ > 0)
				bcn_buf_putc(&b, ',');
			put_check(&b, k,
				  k->service_id[0] != '\0' ? &v->tags : NULL);
		}
		bcn_buf_puts(&b, "]}");
	}
	bcn_buf_putc(&b, ']');
	reply_rows_err(r, &b, rc);
	cat_rows_close(&rows);
}

/* checks/:service, state/:state, node/:node: lists of HealthCheck. */
static void health_checks_read(struct http_req *r)
{
	struct cat_rows rows = {0};
	struct bcn_buf b;
	const char *arg = NULL;
	char *topic = NULL;
	enum cat_status st = 0;
	uint64_t index;
	bool any_state = false;
	int rc;

	if (verb_is(r, "checks", &arg)) {
		topic = topic_of('s', arg);
	} else if (verb_is(r, "node", &arg)) {
		topic = topic_of('n', arg);
	} else {
		(void)verb_is(r, "state", &arg);
		any_state = strcmp(arg, "any") == 0;
		st = cat_status_parse(arg);
		if (!any_state && st == 0) {
			http_reply_text(r, 400, "Invalid check state: %s", arg);
			return;
		}
		topic = bcn_strdup("C");
	}
	if (topic == NULL) {
		http_reply_err(r, BCN_ENOMEM);
		return;
	}
	if (!index_or_block(r, topic, &index)) {
		bcn_free(topic);
		return;
	}
	if (topic[0] == 's')
		rc = cat_checks(cat(r), NULL, arg, 0, &rows);
	else if (topic[0] == 'n')
		rc = cat_checks(cat(r), arg, NULL, 0, &rows);
	else
		rc = cat_checks(cat(r), NULL, NULL, st, &rows);
	bcn_free(topic);
	bcn_buf_init(&b);
	if (rc == 0) {
		acl_filter_rows(r, &rows);
		rc = put_checks(r, &b, &rows, false);
	}
	reply_rows_err(r, &b, rc);
	cat_rows_close(&rows);
}

void http_health(struct http_req *r)
{
	const char *arg;

	if (http_arg(r, "filter") != NULL) {
		http_reply_text(r, 400, "Beacon does not support ?filter yet");
		return;
	}
	if (verb_is(r, "service", &arg))
		arg[0] == '\0' ? http_reply_text(r, 400, "Missing service name")
			       : http_read(r, health_service_read);
	else if (verb_is(r, "checks", &arg))
		arg[0] == '\0' ? http_reply_text(r, 400, "Missing service name")
			       : http_read(r, health_checks_read);
	else if (verb_is(r, "state", &arg))
		arg[0] == '\0' ? http_reply_text(r, 400, "Missing check state")
			       : http_read(r, health_checks_read);
	else if (verb_is(r, "node", &arg))
		arg[0] == '\0' ? http_reply_text(r, 400, "Missing node name")
			       : http_read(r, health_checks_read);
	else
		http_reply_text(r, 404,
				"Invalid URL path: not a recognized "
				"HTTP API endpoint");
}
