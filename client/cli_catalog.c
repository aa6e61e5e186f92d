/* beacon services, catalog nodes|datacenters, health, register,
 * deregister, check pass|warn|fail, members. */
#include <inttypes.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/cli.h"
#include "client/client_int.h"

static const char *jstr(json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);

	return json_is_string(v) ? json_string_value(v) : "";
}

static int by_string(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* @pos positional arguments are not allowed. */
static int no_args(struct cli *c, int argc)
{
	return argc > 0 ? cli_usage(c,
				    "Too many arguments (expected 0, got "
				    "%d)",
				    argc)
			: 0;
}

int cli_services(struct cli *c, int argc, char **argv)
{
	bool tags = false;
	struct cli_flag flags[] = {
	    {"tags", CLI_BOOL, &tags, NULL, NULL, "also list each one's tags"},
	};
	struct beacon_meta m = {0};
	struct cli_table t;
	const char **names;
	const char *name;
	json_t *root, *v;
	size_t n = 0;
	int pos, rc;

	if (!cli_parse(c, flags, N_OF(flags), argc, argv, &pos, &rc))
		return rc;
	if ((rc = no_args(c, argc - pos)) != 0 ||
	    (rc = cli_connect(c, 10000)) != 0)
		return rc;
	rc = cli_get_json(c, "/v1/catalog/services", NULL, &root, &m);
	if (rc != 0)
		return cli_fail(rc, &m, "Error listing services");
	if (c->json) {
		cli_print_json(root);
		return CLI_OK;
	}
	names = calloc(json_object_size(root) + 1, sizeof *names);
	if (names == NULL) {
		json_decref(root);
		return CLI_FAIL;
	}
	json_object_foreach (root, name, v) {
		names[n++] = name;
	}
	qsort(names, n, sizeof *names, by_string);
	cli_table_init(&t, 2);
	for (size_t i = 0; i < n; i++) {
		json_t *tl = json_object_get(root, names[i]), *tag;
		char buf[4096] = "";
		size_t k, o = 0;
		json_array_foreach (tl, k, tag) {
			o += (size_t)snprintf(
			    buf + o, o < sizeof buf ? sizeof buf - o : 0,
			    "%s%s", k > 0 ? "," : "",
			    json_is_string(tag) ? json_string_value(tag) : "");
		}
		cli_table_row(&t, names[i], tags ? buf : "");
	}
	cli_table_print(&t);
	cli_table_close(&t);
	free(names);
	json_decref(root);
	return CLI_OK;
}

int cli_catalog_nodes(struct cli *c, int argc, char **argv)
{
	struct beacon_meta m = {0};
	struct cli_table t;
	json_t *root, *n;
	size_t i;
	int pos, rc;

	if (!cli_parse(c, NULL, 0, argc, argv, &pos, &rc))
		return rc;
	if ((rc = no_args(c, argc - pos)) != 0 ||
	    (rc = cli_connect(c, 10000)) != 0)
		return rc;
	rc = cli_get_json(c, "/v1/catalog/nodes", NULL, &root, &m);
	if (rc != 0)
		return cli_fail(rc, &m, "Error listing nodes");
	if (c->json) {
		cli_print_json(root);
		return CLI_OK;
	}
	cli_table_init(&t, 4);
	cli_table_row(&t, "Node", "ID", "Address", "DC");
	json_array_foreach (root, i, n) {
		char id[9];
		snprintf(id, sizeof id, "%s", jstr(n, "ID"));
		cli_table_row(&t, jstr(n, "Node"), id, jstr(n, "Address"),
			      jstr(n, "Datacenter"));
	}
	cli_table_print(&t);
	cli_table_close(&t);
	json_decref(root);
	return CLI_OK;
}

int cli_catalog_dcs(struct cli *c, int argc, char **argv)
{
	struct beacon_meta m = {0};
	json_t *root, *d;
	size_t i;
	int pos, rc;

	if (!cli_parse(c, NULL, 0, argc, argv, &pos, &rc))
		return rc;
	if ((rc = no_args(c, argc - pos)) != 0 ||
	    (rc = cli_connect(c, 10000)) != 0)
		return rc;
	rc = cli_get_json(c, "/v1/catalog/datacenters", NULL, &root, &m);
	if (rc != 0)
		return cli_fail(rc, &m, "Error listing datacenters");
	if (c->json) {
		cli_print_json(root);
		return CLI_OK;
	}
	json_array_foreach (root, i, d) {
		printf("%s\n", json_is_string(d) ? json_string_value(d) : "");
	}
	json_decref(root);
	return CLI_OK;
}

static const char *health_name(enum beacon_health h)
{
	return h == BEACON_PASSING   ? "passing"
	       : h == BEACON_WARNING ? "warning"
				     : "critical";
}

int cli_health(struct cli *c, int argc, char **argv)
{
	bool passing = false;
	const char *tag = NULL;
	struct cli_flag flags[] = {
	    {"passing", CLI_BOOL, &passing, NULL, NULL,
	     "only instances whose checks all pass"},
	    {"tag", CLI_STR, &tag, NULL, "TAG", "only instances with this tag"},
	};
	struct beacon_instances l;
	struct beacon_meta m = {0};
	struct cli_table t;
	int pos, rc;

	if (!cli_parse(c, flags, N_OF(flags), argc, argv, &pos, &rc))
		return rc;
	argc -= pos;
	argv += pos;
	if (argc != 1)
		return cli_usage(c, "Expected one SERVICE argument, got %d",
				 argc);
	if ((rc = cli_connect(c, 10000)) != 0)
		return rc;
	if (c->json) {
		char *esc = beacon_escape(argv[0]), *path, q[1024];
		char *etag = tag != NULL ? beacon_escape(tag) : NULL;
		json_t *root;
		path = esc != NULL ? malloc(strlen(esc) + 32) : NULL;
		if (path == NULL || (tag != NULL && etag == NULL)) {
			free(esc);
			free(etag);
			free(path);
			return CLI_FAIL;
		}
		snprintf(path, strlen(esc) + 32, "/v1/health/service/%s", esc);
		snprintf(q, sizeof q, "%s%s%s", passing ? "passing" : "",
			 etag != NULL ? (passing ? "&tag=" : "tag=") : "",
			 etag != NULL ? etag : "");
		rc = cli_get_json(c, path, q, &root, &m);
		free(esc);
		free(etag);
		free(path);
		if (rc != 0)
			return cli_fail(rc, &m, "Error reading %s", argv[0]);
		rc = json_array_size(root) > 0 ? CLI_OK : CLI_FAIL;
		cli_print_json(root);
		return rc;
	}
	rc = beacon_health_service(c->b, argv[0], tag, passing, &l, &m);
	if (rc != 0)
		return cli_fail(rc, &m, "Error reading %s", argv[0]);
	if (l.n == 0) {
		fprintf(stderr, "Error! No%s instances of service: %s\n",
			passing ? " passing" : "", argv[0]);
		return CLI_FAIL;
	}
	cli_table_init(&t, 6);
	cli_table_row(&t, "Node", "ServiceID", "Address", "Port", "Status",
		      "Tags");
	for (size_t i = 0; i < l.n; i++) {
		const struct beacon_instance *in = &l.items[i];
		char port[16], tags[2048] = "";
		size_t o = 0;
		snprintf(port, sizeof port, "%u", in->port);
		for (size_t k = 0; k < in->n_tags && o < sizeof tags; k++)
			o += (size_t)snprintf(tags + o, sizeof tags - o, "%s%s",
					      k > 0 ? "," : "", in->tags[k]);
		cli_table_row(&t, in->node, in->id, in->address, port,
			      health_name(in->status), tags);
	}
	cli_table_print(&t);
	cli_table_close(&t);
	beacon_instances_close(&l);
	return CLI_OK;
}

/* ---- register / deregister / check ----------------------------------------
 */

static int put_json(struct cli *c, const char *path, const char *query,
		    json_t *body, struct beacon_meta *m)
{
	char *s = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
	struct beacon_req req = {
	    .method = "PUT",
	    .path = path,
	    .query = query,
	    .body = s,
	    .body_len = s != NULL ? strlen(s) : 0,
	    .content_type = "application/json",
	    .flags = BEACON_REQ_RETRY,
	};
	int rc = beacon_request(c->b, &req, NULL, NULL, m);

	if (s != NULL)
		beacon__json_free(s);
	return rc;
}

/* Service definitions in a file: {"service": {...}}, {"services": [...]},
 * or a bare definition (keys in any case, as the server takes them). */
static json_t *file_services(const char *path)
{
	char *data;
	size_t len;
	json_error_t jerr;
	json_t *root, *one = NULL, *many = NULL, *v, *list;
	const char *k;

	char *at = malloc(strlen(path) + 2);

	if (at == NULL)
		return NULL;
	/* A FILE is a file, "-" stdin. */
	snprintf(at, strlen(path) + 2, "%s%s", strcmp(path, "-") ? "@" : "",
		 path);
	if (cli_read_data(at, &data, &len) != 0) {
		free(at);
		return NULL;
	}
	free(at);
	root = json_loadb(data, len, 0, &jerr);
	free(data);
	if (!json_is_object(root)) {
		fprintf(stderr, "Error! %s: %s\n", path,
			root == NULL ? jerr.text : "not a JSON object");
		json_decref(root);
		return NULL;
	}
	json_object_foreach (root, k, v) {
		if (strcasecmp(k, "service") == 0)
			one = v;
		else if (strcasecmp(k, "services") == 0)
			many = v;
	}
	list = json_array();
	if (json_is_array(many))
		json_array_extend(list, many);
	else if (json_is_object(one))
		json_array_append(list, one);
	else
		json_array_append(list, root);
	json_decref(root);
	return list;
}

int cli_register(struct cli *c, int argc, char **argv)
{
	const char *name = NULL, *id = NULL, *address = NULL, *http = NULL;
	const char *tcp = NULL, *status = NULL;
	uint64_t port = 0, ttl = 0, interval = 0, timeout = 0, dereg = 0;
	struct cli_list tags = {0}, meta = {0};
	struct cli_flag flags[] = {
	    {"name", CLI_STR, &name, NULL, "NAME", "service name"},
	    {"id", CLI_STR, &id, NULL, "ID", "service ID (default: the name)"},
	    {"address", CLI_STR, &address, NULL, "ADDR",
	     "service address (default: the node's)"},
	    {"port", CLI_U64, &port, NULL, "PORT", "service port"},
	    {"tag", CLI_LIST, &tags, NULL, "TAG", "a tag (repeatable)"},
	    {"meta", CLI_LIST, &meta, NULL, "KEY=VALUE",
	     "a metadata pair (repeatable)"},
	    {"ttl", CLI_DURATION, &ttl, NULL, "DURATION",
	     "add a TTL check of this TTL (check ID service:<id>)"},
	    {"http", CLI_STR, &http, NULL, "URL", "add an HTTP check"},
	    {"tcp", CLI_STR, &tcp, NULL, "HOST:PORT", "add a TCP check"},
	    {"interval", CLI_DURATION, &interval, NULL, "DURATION",
	     "interval of the HTTP/TCP check (default 10s)"},
	    {"timeout", CLI_DURATION, &timeout, NULL, "DURATION",
	     "timeout of the HTTP/TCP check"},
	    {"deregister-after", CLI_DURATION, &dereg, NULL, "DURATION",
	     "remove the service after its check was critical this long"},
	    {"status", CLI_STR, &status, NULL, "STATUS",
	     "initial check status (passing, warning, critical)"},
	};
	struct beacon_meta m = {0};
	json_t *list = NULL, *svc, *check = NULL;
	char d[32];
	size_t i;
	int pos, rc, checks;

	/* The check's -timeout shadows the common one (ours come first). */
	if (!cli_parse(c, flags, N_OF(flags), argc, argv, &pos, &rc))
		goto out;
	argc -= pos;
	argv += pos;
	checks = (ttl > 0) + (http != NULL) + (tcp != NULL);
	if (argc > 1 || (argc == 1 && name != NULL)) {
		rc = cli_usage(c, "Give either a FILE or -name, not both");
		goto out;
	}
	if (argc == 0 && (name == NULL || name[0] == '\0')) {
		rc = cli_usage(c, "Missing -name (or a FILE)");
		goto out;
	}
	if (checks > 1) {
		rc = cli_usage(c, "Give at most one of -ttl, -http and -tcp");
		goto out;
	}
	if (argc == 1) {
		list = file_services(argv[0]);
		if (list == NULL) {
			rc = CLI_FAIL;
			goto out;
		}
	} else {
		svc = json_pack("{s:s}", "Name", name);
		if (id != NULL)
			json_object_set_new(svc, "ID", json_string(id));
		if (address != NULL)
			json_object_set_new(svc, "Address",
					    json_string(address));
		if (port > 0)
			json_object_set_new(svc, "Port",
					    json_integer((json_int_t)port));
		if (tags.n > 0) {
			json_t *a = json_array();
			for (size_t k = 0; k < tags.n; k++)
				json_array_append_new(a,
						      json_string(tags.v[k]));
			json_object_set_new(svc, "Tags", a);
		}
		if (meta.n > 0) {
			json_t *o = json_object();
			for (size_t k = 0; k < meta.n; k++) {
				const char *eq = strchr(meta.v[k], '=');
				char *key;
				if (eq == NULL) {
					json_decref(o);
					json_decref(svc);
					rc = cli_usage(c,
						       "-meta wants KEY=VALUE, "
						       "got %s",
						       meta.v[k]);
					goto out;
				}
				key = strndup(meta.v[k],
					      (size_t)(eq - meta.v[k]));
				json_object_set_new(o, key,
						    json_string(eq + 1));
				free(key);
			}
			json_object_set_new(svc, "Meta", o);
		}
		if (checks > 0) {
			check = json_object();
			if (ttl > 0) {
				snprintf(d, sizeof d, "%" PRIu64 "ms", ttl);
				json_object_set_new(check, "TTL",
						    json_string(d));
			} else {
				json_object_set_new(
				    check, http != NULL ? "HTTP" : "TCP",
				    json_string(http != NULL ? http : tcp));
				snprintf(d, sizeof d, "%" PRIu64 "ms",
					 interval > 0 ? interval : 10000);
				json_object_set_new(check, "Interval",
						    json_string(d));
				if (timeout > 0) {
					snprintf(d, sizeof d, "%" PRIu64 "ms",
						 timeout);
					json_object_set_new(check, "Timeout",
							    json_string(d));
				}
			}
			if (dereg > 0) {
				snprintf(d, sizeof d, "%" PRIu64 "ms", dereg);
				json_object_set_new(
				    check, "DeregisterCriticalServiceAfter",
				    json_string(d));
			}
			if (status != NULL)
				json_object_set_new(check, "Status",
						    json_string(status));
			json_object_set_new(svc, "Check", check);
		}
		list = json_array();
		json_array_append_new(list, svc);
	}
	if ((rc = cli_connect(c, 10000)) != 0)
		goto out;
	json_array_foreach (list, i, svc) {
		const char *k, *nm = "";
		json_t *v;
		json_object_foreach (svc, k, v) {
			if (strcasecmp(k, "name") == 0 && json_is_string(v))
				nm = json_string_value(v);
		}
		rc = put_json(c, "/v1/agent/service/register", NULL, svc, &m);
		if (rc != 0) {
			rc = cli_fail(rc, &m, "Error registering service %s",
				      nm);
			goto out;
		}
		if (!c->json)
			printf("Registered service: %s\n", nm);
	}
	if (c->json)
		cli_print_json(json_pack("{s:I}", "Registered",
					 (json_int_t)json_array_size(list)));
	rc = CLI_OK;
out:
	json_decref(list);
	cli_list_free(&tags);
	cli_list_free(&meta);
	return rc;
}

int cli_deregister(struct cli *c, int argc, char **argv)
{
	const char *id = NULL;
	struct cli_flag flags[] = {
	    {"id", CLI_STR, &id, NULL, "ID", "the service ID"},
	};
	struct beacon_meta m = {0};
	int pos, rc;

	if (!cli_parse(c, flags, N_OF(flags), argc, argv, &pos, &rc))
		return rc;
	argc -= pos;
	argv += pos;
	if (argc > 1 || (argc == 1 && id != NULL))
		return cli_usage(c, "Give the service ID once");
	if (argc == 1)
		id = argv[0];
	if (id == NULL || id[0] == '\0')
		return cli_usage(c, "Missing the service ID");
	if ((rc = cli_connect(c, 10000)) != 0)
		return rc;
	rc = beacon_service_deregister(c->b, id, &m);
	if (rc != 0)
		return cli_fail(rc, &m, "Error deregistering service %s", id);
	if (c->json)
		cli_print_json(json_pack("{s:s,s:b}", "ID", id, "Success", 1));
	else
		printf("Deregistered service: %s\n", id);
	return CLI_OK;
}

int cli_check(struct cli *c, int argc, char **argv)
{
	const char *note = NULL, *verb = strrchr(c->cmd->name, ' ') + 1;
	struct cli_flag flags[] = {
	    {"note", CLI_STR, &note, NULL, "TEXT", "the check's output"},
	};
	enum beacon_health h = strcmp(verb, "pass") == 0   ? BEACON_PASSING
			       : strcmp(verb, "warn") == 0 ? BEACON_WARNING
							   : BEACON_CRITICAL;
	struct beacon_meta m = {0};
	int pos, rc;

	if (!cli_parse(c, flags, N_OF(flags), argc, argv, &pos, &rc))
		return rc;
	argc -= pos;
	argv += pos;
	if (argc != 1)
		return cli_usage(c, "Expected one CHECK_ID argument, got %d",
				 argc);
	if ((rc = cli_connect(c, 10000)) != 0)
		return rc;
	rc = beacon_check_update(c->b, argv[0], h, note, &m);
	if (rc != 0)
		return cli_fail(rc, &m, "Error updating check %s", argv[0]);
	if (c->json)
		cli_print_json(json_pack("{s:s,s:s}", "CheckID", argv[0],
					 "Status", health_name(h)));
	else
		printf("Success! Check %s is %s\n", argv[0], health_name(h));
	return CLI_OK;
}

/* ---- members --------------------------------------------------------------
 */

static const char *member_status(json_int_t s)
{
	switch (s) {
	case 1:
		return "alive";
	case 2:
		return "leaving";
	case 3:
		return "left";
	case 4:
		return "failed";
	}
	return "none";
}

int cli_members(struct cli *c, int argc, char **argv)
{
	bool detailed = false;
	const char *status_re = NULL;
	struct cli_flag flags[] = {
	    {"detailed", CLI_BOOL, &detailed, NULL, NULL,
	     "show every tag of each member"},
	    {"status", CLI_STR, &status_re, NULL, "REGEXP",
	     "only members whose status matches"},
	};
	struct beacon_meta m = {0};
	struct cli_table t;
	regex_t re;
	json_t *root, *e;
	size_t i;
	int pos, rc;

	if (!cli_parse(c, flags, N_OF(flags), argc, argv, &pos, &rc))
		return rc;
	if ((rc = no_args(c, argc - pos)) != 0)
		return rc;
	if (status_re != NULL &&
	    regcomp(&re, status_re, REG_EXTENDED | REG_NOSUB) != 0)
		return cli_usage(c, "Bad -status regular expression");
	if ((rc = cli_connect(c, 10000)) != 0)
		goto out;
	rc = cli_get_json(c, "/v1/agent/members", NULL, &root, &m);
	if (rc != 0) {
		rc = cli_fail(rc, &m, "Error retrieving members");
		goto out;
	}
	if (status_re != NULL) {
		for (i = json_array_size(root); i-- > 0;) {
			json_t *st =
			    json_object_get(json_array_get(root, i), "Status");
			if (regexec(&re, member_status(json_integer_value(st)),
				    0, NULL, 0) != 0)
				json_array_remove(root, i);
		}
	}
	if (c->json) {
		cli_print_json(root);
		rc = CLI_OK;
		goto out;
	}
	cli_table_init(&t, detailed ? 4 : 9);
	if (detailed)
		cli_table_row(&t, "Node", "Address", "Status", "Tags");
	else
		cli_table_row(&t, "Node", "Address", "Status", "Type", "Build",
			      "Protocol", "DC", "Partition", "Segment");
	json_array_foreach (root, i, e) {
		json_t *tags = json_object_get(e, "Tags"), *tv;
		char addr[300], tl[2048] = "";
		const char *k, *build = jstr(tags, "build");
		size_t o = 0;
		snprintf(addr, sizeof addr, "%s:%" JSON_INTEGER_FORMAT,
			 jstr(e, "Addr"),
			 json_integer_value(json_object_get(e, "Port")));
		json_object_foreach (tags, k, tv) {
			if (o < sizeof tl)
				o += (size_t)snprintf(
				    tl + o, sizeof tl - o, "%s%s=%s",
				    o > 0 ? "," : "", k,
				    json_is_string(tv) ? json_string_value(tv)
						       : "");
		}
		if (detailed)
			cli_table_row(&t, jstr(e, "Name"), addr,
				      member_status(json_integer_value(
					  json_object_get(e, "Status"))),
				      tl);
		else
			cli_table_row(&t, jstr(e, "Name"), addr,
				      member_status(json_integer_value(
					  json_object_get(e, "Status"))),
				      strcmp(jstr(tags, "role"), "consul") == 0
					  ? "server"
					  : "client",
				      build[0] != '\0' ? build : BEACON_VERSION,
				      jstr(tags, "vsn"), jstr(tags, "dc"),
				      "default", "<all>");
	}
	cli_table_print(&t);
	cli_table_close(&t);
	json_decref(root);
	rc = CLI_OK;
out:
	if (status_re != NULL)
		regfree(&re);
	return rc;
}
