/* The pure parts of the CLI, unit-tested on their own: Go-style flag
 * parsing, and the environment `beacon exec` derives from a KV prefix. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/cli.h"
#include "client/client_int.h"
#include "common/parse.h"

bool cli_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"1",	  "t",	  "T",
					  "true", "TRUE", "True"};
	static const char *const no[] = {"0",	  "f",	   "F",
					 "false", "FALSE", "False"};

	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		if (strcmp(s, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcmp(s, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

void cli_list_free(struct cli_list *l)
{
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static const struct cli_flag *find(const struct cli_flag *flags, size_t n,
				   const char *name, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(flags[i].name) == len &&
		    strncmp(flags[i].name, name, len) == 0)
			return &flags[i];
	return NULL;
}

static bool set_value(const struct cli_flag *f, const char *v, char *err,
		      size_t errlen)
{
	struct cli_list *l;
	const char **nv;
	uint64_t u;

	switch (f->type) {
	case CLI_STR:
		*(const char **)f->ptr = v;
		return true;
	case CLI_U64:
		if (bcn_parse_u64(v, &u) != 0)
			break;
		*(uint64_t *)f->ptr = u;
		return true;
	case CLI_DURATION:
		if (bcn_parse_duration_ms(v, &u) != 0)
			break;
		*(uint64_t *)f->ptr = u;
		return true;
	case CLI_LIST:
		l = f->ptr;
		nv = realloc(l->v, (l->n + 1) * sizeof *l->v);
		if (nv == NULL) {
			snprintf(err, errlen, "out of memory");
			return false;
		}
		l->v = nv;
		l->v[l->n++] = v;
		return true;
	case CLI_BOOL:
		if (!cli_parse_bool(v, (bool *)f->ptr))
			break;
		return true;
	}
	snprintf(err, errlen, "invalid value \"%s\" for flag -%s", v, f->name);
	return false;
}

int cli_flags_parse(const struct cli_flag *flags, size_t n, int argc,
		    char **argv, char *err, size_t errlen)
{
	int i = 0;

	while (i < argc) {
		const char *a = argv[i], *name, *eq;
		const struct cli_flag *f;
		size_t len;

		if (a[0] != '-' || a[1] == '\0')
			break; /* a positional argument, or "-" (stdin) */
		if (strcmp(a, "--") == 0)
			return i + 1;
		name = a[1] == '-' ? a + 2 : a + 1;
		if (name[0] == '\0' || name[0] == '-' || name[0] == '=') {
			snprintf(err, errlen, "bad flag syntax: %s", a);
			return CLI_FLAGS_ERROR;
		}
		eq = strchr(name, '=');
		len = eq != NULL ? (size_t)(eq - name) : strlen(name);
		f = find(flags, n, name, len);
		if (f == NULL && ((len == 1 && name[0] == 'h') ||
				  (len == 4 && strncmp(name, "help", 4) == 0)))
			return CLI_FLAGS_HELP;
		if (f == NULL) {
			snprintf(err, errlen,
				 "flag provided but not defined: -%.*s",
				 (int)len, name);
			return CLI_FLAGS_ERROR;
		}
		if (f->type == CLI_BOOL && eq == NULL) {
			*(bool *)f->ptr = true;
		} else {
			const char *v = eq != NULL ? eq + 1 : NULL;
			if (v == NULL) {
				if (i + 1 >= argc) {
					snprintf(err, errlen,
						 "flag needs an argument: -%s",
						 f->name);
					return CLI_FLAGS_ERROR;
				}
				v = argv[++i];
			}
			if (!set_value(f, v, err, errlen))
				return CLI_FLAGS_ERROR;
		}
		if (f->set != NULL)
			*f->set = true;
		i++;
	}
	return i;
}

/* ---- exec's environment ------------------------------------------------- */

void cli_env_free(char **env)
{
	if (env == NULL)
		return;
	for (char **e = env; *e != NULL; e++)
		free(*e);
	free(env);
}

static int by_name(const void *a, const void *b)
{
	const char *x = *(char *const *)a, *y = *(char *const *)b;
	size_t xl = strcspn(x, "="), yl = strcspn(y, "=");
	int c = strncmp(x, y, xl < yl ? xl : yl);

	return c != 0 ? c : (xl > yl) - (xl < yl);
}

/* "NAME=value" for the key @key under @prefix, or NULL with *@skip. */
static char *env_entry(const char *key, const char *prefix, const char *val,
		       size_t vlen, bool upcase, bool *skip)
{
	size_t pl = strlen(prefix), kl, o = 0;
	const char *rel;
	char *s;

	*skip = true;
	if (strncmp(key, prefix, pl) != 0)
		return NULL;
	rel = key + pl;
	while (*rel == '/')
		rel++;
	kl = strlen(rel);
	if (kl == 0 || rel[kl - 1] == '/')
		return NULL;
	*skip = false;
	/* A value cannot carry a NUL into the environment: cut it there. */
	vlen = strnlen(val, vlen);
	s = malloc(kl + vlen + 3);
	if (s == NULL)
		return NULL;
	if (rel[0] >= '0' && rel[0] <= '9')
		s[o++] = '_';
	for (size_t i = 0; i < kl; i++) {
		char ch = rel[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		      (ch >= '0' && ch <= '9') || ch == '_'))
			ch = '_';
		else if (upcase && ch >= 'a' && ch <= 'z')
			ch = (char)(ch - 'a' + 'A');
		s[o++] = ch;
	}
	s[o++] = '=';
	memcpy(s + o, val, vlen);
	s[o + vlen] = '\0';
	return s;
}

char **cli_env_from_kv(const char *body, size_t len, const char *prefix,
		       bool upcase)
{
	json_t *root = json_loadb(body, len, JSON_DECODE_ANY, NULL), *e;
	char **env;
	size_t i, n = 0;

	if (json_is_null(root)) {
		json_decref(root);
		return calloc(1, sizeof(char *));
	}
	if (!json_is_array(root)) {
		json_decref(root);
		return NULL;
	}
	env = calloc(json_array_size(root) + 1, sizeof *env);
	if (env == NULL)
		goto err;
	json_array_foreach (root, i, e) {
		json_t *k = json_object_get(e, "Key");
		json_t *v = json_object_get(e, "Value");
		char *val = NULL;
		size_t vlen = 0;
		bool skip;

		if (!json_is_string(k))
			goto err;
		if (json_is_string(v)) {
			val = beacon__b64_decode(json_string_value(v),
						 json_string_length(v), &vlen);
			if (val == NULL)
				goto err;
		}
		env[n] = env_entry(json_string_value(k), prefix,
				   val != NULL ? val : "", vlen, upcase, &skip);
		free(val);
		if (skip)
			continue;
		if (env[n] == NULL)
			goto err;
		n++;
	}
	json_decref(root);
	/* Stable by name, so that the later of two keys mapping to the same
	 * name is the one kept. */
	for (size_t a = 1; a < n; a++)
		for (size_t b = a; b > 0 && by_name(&env[b - 1], &env[b]) > 0;
		     b--) {
			char *t = env[b];
			env[b] = env[b - 1];
			env[b - 1] = t;
		}
	for (size_t a = 0; a + 1 < n;) {
		if (by_name(&env[a], &env[a + 1]) == 0) {
			free(env[a]);
			memmove(&env[a], &env[a + 1], (n - a) * sizeof *env);
			n--;
		} else {
			a++;
		}
	}
	return env;
err:
	json_decref(root);
	cli_env_free(env);
	return NULL;
}

bool cli_env_equal(char *const *a, char *const *b)
{
	for (; *a != NULL && *b != NULL; a++, b++)
		if (strcmp(*a, *b) != 0)
			return false;
	return *a == NULL && *b == NULL;
}
