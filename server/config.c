#include "server/config.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/parse.h"

enum opt_type { T_STR, T_UINT, T_BOOL, T_DUR };

struct opt {
	const char *name;
	enum opt_type type;
	const char *def;
	uint64_t min, max;
	const char *help;
	size_t off;
};

static const struct opt opts[] = {
#define CONFIG_OPT(n, type, def, min, max, help) \
	{#n, T_##type, def, min, max, help, offsetof(struct config, n)},
    CONFIG_TABLE(CONFIG_OPT)
#undef CONFIG_OPT
};
#define N_OPTS (sizeof opts / sizeof opts[0])

static const char *const type_names[] = {"string", "number", "bool",
					 "duration"};

/* Set option @o of @c from text @v, which came from @src. */
static int set_opt(struct config *c, const struct opt *o, const char *v,
		   const char *src, char *errmsg)
{
	void *field = (char *)c + o->off;
	uint64_t u = 0;
	bool b;

	switch (o->type) {
	case T_STR: {
		char *s = bcn_strdup(v);
		if (s == NULL)
			return BCN_ENOMEM;
		bcn_free(*(char **)field);
		*(char **)field = s;
		return 0;
	}
	case T_BOOL:
		if (bcn_parse_bool(v, &b) != 0 || v[0] == '\0')
			goto bad;
		*(bool *)field = b;
		return 0;
	case T_UINT:
		if (bcn_parse_u64(v, &u) != 0)
			goto bad;
		break;
	case T_DUR:
		if (bcn_parse_duration_ms(v, &u) != 0)
			goto bad;
		break;
	}
	if (u < o->min || u > o->max) {
		bcn_errf(errmsg, "%s %s: %s is out of range [%llu, %llu]%s",
			 src, o->name, v, (unsigned long long)o->min,
			 (unsigned long long)o->max,
			 o->type == T_DUR ? " ms" : "");
		return BCN_EINVAL;
	}
	*(uint64_t *)field = u;
	return 0;
bad:
	bcn_errf(errmsg, "%s %s: '%s' is not a valid %s", src, o->name, v,
		 type_names[o->type]);
	return BCN_EINVAL;
}

/* Match "http-addr" or "http_addr" against the option name. */
static const struct opt *find_opt(const char *name, size_t len)
{
	for (size_t i = 0; i < N_OPTS; i++) {
		const char *n = opts[i].name;
		size_t k;
		if (strlen(n) != len)
			continue;
		for (k = 0; k < len; k++) {
			char a = name[k] == '-' ? '_' : name[k];
			if (a != n[k])
				break;
		}
		if (k == len)
			return &opts[i];
	}
	return NULL;
}

static int load_file(struct config *c, const char *path, char *errmsg)
{
	json_error_t jerr;
	json_t *root = json_load_file(path, 0, &jerr);
	const char *key;
	json_t *val;
	int rc = 0;

	if (root == NULL) {
		bcn_errf(errmsg, "config file %s: %s (line %d)", path,
			 jerr.text, jerr.line);
		return BCN_EINVAL;
	}
	if (!json_is_object(root)) {
		bcn_errf(errmsg, "config file %s: not a JSON object", path);
		json_decref(root);
		return BCN_EINVAL;
	}
	json_object_foreach (root, key, val) {
		const struct opt *o = find_opt(key, strlen(key));
		char num[32];
		const char *v = num;

		if (o == NULL || strcmp(o->name, "config_file") == 0) {
			bcn_errf(errmsg, "config file %s: unknown option '%s'",
				 path, key);
			rc = BCN_EINVAL;
			break;
		}
		if (json_is_string(val))
			v = json_string_value(val);
		else if (json_is_integer(val) && json_integer_value(val) >= 0)
			snprintf(num, sizeof num, "%lld",
				 (long long)json_integer_value(val));
		else if (json_is_boolean(val))
			v = json_is_true(val) ? "true" : "false";
		else {
			bcn_errf(errmsg, "config file %s: bad value for '%s'",
				 path, key);
			rc = BCN_EINVAL;
			break;
		}
		rc = set_opt(c, o, v, "config file", errmsg);
		if (rc != 0)
			break;
	}
	json_decref(root);
	return rc;
}

static void env_name(const struct opt *o, char *out, size_t cap)
{
	size_t n = (size_t)snprintf(out, cap, "BEACON_%s", o->name);

	for (size_t i = 7; i < n && i < cap; i++)
		if (out[i] >= 'a' && out[i] <= 'z')
			out[i] = (char)(out[i] - 'a' + 'A');
}

static void flag_name(const struct opt *o, char *out, size_t cap)
{
	size_t n = (size_t)snprintf(out, cap, "--%s", o->name);

	for (size_t i = 2; i < n && i < cap; i++)
		if (out[i] == '_')
			out[i] = '-';
}

static void print_help(void)
{
	char flag[64], env[64];

	printf("Usage: beacond [OPTIONS]\n\n"
	       "Beacon server: a Raft-replicated service registry and "
	       "configuration store\nthat speaks Consul's HTTP API.\n\n"
	       "Every option is also an environment variable and a config-"
	       "file key.\nPrecedence: flag, environment, config file, "
	       "default.\n\n");
	for (size_t i = 0; i < N_OPTS; i++) {
		flag_name(&opts[i], flag, sizeof flag);
		env_name(&opts[i], env, sizeof env);
		printf("  %-26s %s\n  %-26s env %s, default \"%s\"\n", flag,
		       opts[i].help, "", env, opts[i].def);
	}
	printf("  %-26s %s\n  %-26s %s\n", "--print-config",
	       "print the effective configuration as JSON and exit", "--help",
	       "print this help and exit");
}

static void print_config(const struct config *c)
{
	printf("{\n");
	for (size_t i = 0; i < N_OPTS; i++) {
		const void *f = (const char *)c + opts[i].off;
		printf("  \"%s\": ", opts[i].name);
		switch (opts[i].type) {
		case T_STR: {
			/* A key never leaves the process, not even here. */
			bool hide = (strcmp(opts[i].name, "encrypt_key") == 0 ||
				     strcmp(opts[i].name, "acl_token") == 0) &&
				    (*(char *const *)f)[0] != '\0';
			json_t *s = json_string(hide ? "(redacted)"
						     : *(char *const *)f);
			char *d =
			    s != NULL ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
			printf("%s", d != NULL ? d : "null");
			free(d);
			json_decref(s);
			break;
		}
		case T_BOOL:
			printf("%s", *(const bool *)f ? "true" : "false");
			break;
		case T_UINT:
			printf("%llu",
			       (unsigned long long)*(const uint64_t *)f);
			break;
		case T_DUR:
			printf("\"%llums\"",
			       (unsigned long long)*(const uint64_t *)f);
			break;
		}
		printf("%s\n", i + 1 < N_OPTS ? "," : "");
	}
	printf("}\n");
}

static int load(struct config *c, int argc, char **argv, char *errmsg,
		bool reload);

int config_load(struct config *c, int argc, char **argv, char *errmsg)
{
	return load(c, argc, argv, errmsg, false);
}

int config_reload(struct config *c, int argc, char **argv, char *errmsg)
{
	return load(c, argc, argv, errmsg, true);
}

static int load(struct config *c, int argc, char **argv, char *errmsg,
		bool reload)
{
	const char *file = NULL;
	bool print = false;
	char buf[64];
	int rc;

	memset(c, 0, sizeof *c);
	for (size_t i = 0; i < N_OPTS; i++) {
		rc = set_opt(c, &opts[i], opts[i].def, "default", errmsg);
		if (rc != 0)
			return rc;
	}
	/* The config file's own location: flag, then environment. */
	file = getenv("BEACON_CONFIG_FILE");
	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--config-file=", 14) == 0)
			file = argv[i] + 14;
		else if (strcmp(argv[i], "--config-file") == 0 && i + 1 < argc)
			file = argv[i + 1];
	}
	if (file != NULL && file[0] != '\0') {
		rc = load_file(c, file, errmsg);
		if (rc != 0)
			return rc;
	}
	for (size_t i = 0; i < N_OPTS; i++) {
		const char *v;
		env_name(&opts[i], buf, sizeof buf);
		v = getenv(buf);
		if (v != NULL) {
			rc = set_opt(c, &opts[i], v, buf, errmsg);
			if (rc != 0)
				return rc;
		}
	}
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *val, *eq;
		const struct opt *o;

		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			print_help();
			return 1;
		}
		if (strcmp(arg, "--print-config") == 0) {
			print = true;
			continue;
		}
		if (strncmp(arg, "--", 2) != 0) {
			bcn_errf(errmsg,
				 "unexpected argument '%s' (see --help)", arg);
			return BCN_EINVAL;
		}
		arg += 2;
		eq = strchr(arg, '=');
		o = find_opt(arg,
			     eq != NULL ? (size_t)(eq - arg) : strlen(arg));
		if (o == NULL) {
			bcn_errf(errmsg, "unknown option '%s' (see --help)",
				 argv[i]);
			return BCN_EINVAL;
		}
		if (eq != NULL) {
			val = eq + 1;
		} else if (o->type == T_BOOL &&
			   (i + 1 >= argc ||
			    strncmp(argv[i + 1], "--", 2) == 0)) {
			val = "true"; /* "--dev" alone */
		} else if (i + 1 < argc) {
			val = argv[++i];
		} else {
			bcn_errf(errmsg, "option '%s' needs a value", argv[i]);
			return BCN_EINVAL;
		}
		flag_name(o, buf, sizeof buf);
		rc = set_opt(c, o, val, buf, errmsg);
		if (rc != 0)
			return rc;
	}
	if (c->node[0] == '\0') {
		char host[256] = "beacon";
		gethostname(host, sizeof host - 1);
		host[sizeof host - 1] = '\0';
		rc = set_opt(c, find_opt("node", 4), host, "hostname", errmsg);
		if (rc != 0)
			return rc;
	}
	for (const char *p = c->node; *p != '\0'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
		      *p == '.') ||
		    p - c->node >= 128) {
			bcn_errf(errmsg,
				 "--node '%s': use at most 128 letters, "
				 "digits, '-', '_' and '.'",
				 c->node);
			return BCN_EINVAL;
		}
	}
	if (c->raft_heartbeat >= c->raft_election_timeout) {
		bcn_errf(errmsg, "--raft-heartbeat must be shorter than "
				 "--raft-election-timeout");
		return BCN_EINVAL;
	}
	if (print && !reload) {
		print_config(c);
		return 1;
	}
	if (reload)
		return 0; /* no side effects: just the values */
	if (c->dev && c->data_dir[0] == '\0') {
		char tmpl[] = "/tmp/beacon-dev-XXXXXX";
		if (mkdtemp(tmpl) == NULL) {
			bcn_errf(errmsg, "--dev: cannot create a temporary "
					 "directory");
			return BCN_EIO;
		}
		c->dev_dir = bcn_strdup(tmpl);
		rc = c->dev_dir == NULL ? BCN_ENOMEM
					: set_opt(c, find_opt("data_dir", 8),
						  tmpl, "--dev", errmsg);
		if (rc != 0)
			return rc;
	}
	if (c->data_dir[0] == '\0') {
		bcn_errf(errmsg, "--data-dir (or BEACON_DATA_DIR) is required "
				 "unless --dev is given");
		return BCN_EINVAL;
	}
	return 0;
}

void config_close(struct config *c)
{
	for (size_t i = 0; i < N_OPTS; i++)
		if (opts[i].type == T_STR)
			bcn_free(*(char **)((char *)c + opts[i].off));
	bcn_free(c->dev_dir);
	memset(c, 0, sizeof *c);
}
