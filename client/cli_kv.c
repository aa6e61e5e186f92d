/* beacon kv get|put|delete|export|import|edit, with Consul's flags and
 * messages (CONSUL-API.md §9). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/cli.h"
#include "client/client_int.h"

extern char **environ;

static json_t *kv_json(const struct beacon_kv *kv)
{
	char *b64 = kv->value_len > 0
			? beacon__b64_encode(kv->value, kv->value_len)
			: NULL;
	json_t *o = json_pack("{s:I,s:s,s:I,s:o,s:I,s:I}", "LockIndex",
			      (json_int_t)kv->lock_index, "Key", kv->key,
			      "Flags", (json_int_t)kv->flags, "Value",
			      b64 != NULL ? json_string(b64) : json_null(),
			      "CreateIndex", (json_int_t)kv->create_index,
			      "ModifyIndex", (json_int_t)kv->modify_index);

	if (o != NULL && kv->session != NULL)
		json_object_set_new(o, "Session", json_string(kv->session));
	free(b64);
	return o;
}

static void print_value(const struct beacon_kv *kv, bool b64)
{
	if (b64) {
		char *s = beacon__b64_encode(kv->value, kv->value_len);
		if (s != NULL)
			fputs(s, stdout);
		free(s);
	} else {
		fwrite(kv->value, 1, kv->value_len, stdout);
	}
}

/* Consul's -detailed block (tabwriter: values at column 17). */
static void print_detailed(const struct beacon_kv *kv, bool b64)
{
	printf("%-17s%" PRIu64 "\n", "CreateIndex", kv->create_index);
	printf("%-17s%" PRIu64 "\n", "Flags", kv->flags);
	printf("%-17s%s\n", "Key", kv->key);
	printf("%-17s%" PRIu64 "\n", "LockIndex", kv->lock_index);
	printf("%-17s%" PRIu64 "\n", "ModifyIndex", kv->modify_index);
	printf("%-17s%s\n", "Session", kv->session != NULL ? kv->session : "-");
	printf("%-17s", "Value");
	print_value(kv, b64);
	putchar('\n');
}

int cli_kv_get(struct cli *c, int argc, char **argv)
{
	bool recurse = false, keys = false, detailed = false, b64 = false;
	const char *sep = "/", *key;
	struct cli_flag flags[] = {
	    {"recurse", CLI_BOOL, &recurse, NULL, NULL,
	     "every entry under the prefix, as key:value lines"},
	    {"keys", CLI_BOOL, &keys, NULL, NULL,
	     "only the key names under the prefix"},
	    {"separator", CLI_STR, &sep, NULL, "SEP",
	     "with -keys: list up to this separator (default \"/\"; \"\" for "
	     "all)"},
	    {"detailed", CLI_BOOL, &detailed, NULL, NULL,
	     "print every field of the entries"},
	    {"base64", CLI_BOOL, &b64, NULL, NULL,
	     "print values base64-encoded"},
	};
	struct beacon_meta m = {0};
	int pos, rc;

	if (!cli_parse(c, flags, N_OF(flags), argc, argv, &pos, &rc))
		return rc;
	argc -= pos;
	argv += pos;
	if (argc > 1)
		return cli_usage(c, "Too many arguments (expected 1, got %d)",
				 argc);
	key = argc == 1 ? argv[0] : "";
	if (key[0] == '\0' && !keys && !recurse)
		return cli_usage(c, "Missing KEY argument");
	if ((rc = cli_connect(c, 10000)) != 0)
		return rc;
	if (keys) {
		char **v;
		size_t n;
		rc = beacon_kv_keys(c->b, key, sep, &v, &n, &m);
		if (rc != 0)
			return cli_fail(rc, &m, "Failed to list keys under %s",
					key);
		if (c->json) {
			json_t *a = json_array();
			for (size_t i = 0; i < n; i++)
				json_array_append_new(a, json_string(v[i]));
			cli_print_json(a);
		} else {
			for (size_t i = 0; i < n; i++)
				printf("%s\n", v[i]);
		}
		beacon_strv_free(v, n);
	} else if (recurse) {
		struct beacon_kv_list l;
		rc = beacon_kv_list(c->b, key, &l, &m);
		if (rc != 0)
			return cli_fail(rc, &m, "Failed to read keys under %s",
					key);
		if (c->json) {
			json_t *a = json_array();
			for (size_t i = 0; i < l.n; i++)
				json_array_append_new(a, kv_json(&l.items[i]));
			cli_print_json(a);
		}
		for (size_t i = 0; !c->json && i < l.n; i++) {
			if (detailed) {
				if (i > 0)
					putchar('\n');
				print_detailed(&l.items[i], b64);
			} else {
				printf("%s:", l.items[i].key);
				print_value(&l.items[i], b64);
				putchar('\n');
			}
		}
		beacon_kv_list_close(&l);
	} else {
		struct beacon_kv *kv;
		rc = beacon_kv_get(c->b, key, &kv, &m);
		if (rc == BEACON_ENOTFOUND) {
			fprintf(stderr, "Error! No key exists at: %s\n", key);
			return CLI_FAIL;
		}
		if (rc != 0)
			return cli_fail(rc, &m, "Failed to get %s", key);
		if (c->json) {
			cli_print_json(kv_json(kv));
		} else if (detailed) {
			print_detailed(kv, b64);
		} else if (kv->value_len > 0) {
			print_value(kv, b64);
			putchar('\n');
		}
		beacon_kv_free(kv);
	}
	return CLI_OK;
}

static int success(struct cli *c, const char *key, const char *what,
		   const char *msg)
{
	if (c->json)
		cli_print_json(json_pack("{s:s,s:b,s:s}", "Key", key, "Success",
					 1, "Operation", what));
	else
		printf("%s%s\n", msg, key);
	return CLI_OK;
}

/* kv put -acquire/-release -session: true is success, false exit 1. */
static int lock_put(struct cli *c, const char *key, const char *data,
		    size_t len, bool acquire, const char *session)
{
	char *esc = beacon_escape(key), *sesc = beacon_escape(session);
	char *path = NULL, *query = NULL, *body = NULL;
	struct beacon_req req = {.method = "PUT"};
	struct beacon_meta m = {0};
	size_t n, blen = 0;
	int rc = BEACON_ENOMEM;

	if (esc != NULL && sesc != NULL) {
		n = strlen(esc) + 8;
		path = malloc(n);
		if (path != NULL)
			snprintf(path, n, "/v1/kv/%s", esc);
		n = strlen(sesc) + 10;
		query = malloc(n);
		if (query != NULL)
			snprintf(query, n, "%s=%s",
				 acquire ? "acquire" : "release", sesc);
	}
	if (path != NULL && query != NULL) {
		req.path = path;
		req.query = query;
		req.body = data != NULL ? data : "";
		req.body_len = len;
		rc = beacon_request(c->b, &req, &body, &blen, &m);
	}
	if (rc != 0) {
		rc = cli_fail(rc, &m, "Failed to %s the lock on %s",
			      acquire ? "acquire" : "release", key);
	} else if (body == NULL || strncmp(body, "true", 4) != 0) {
		fprintf(stderr, "Error! Did not %s the lock on %s\n",
			acquire ? "acquire" : "release", key);
		rc = CLI_FAIL;
	} else {
		printf("Success! Lock %s on: %s\n",
		       acquire ? "acquired" : "released", key);
		rc = CLI_OK;
	}
	free(esc);
	free(sesc);
	free(path);
	free(query);
	free(body);
	return rc;
}

int cli_kv_put(struct cli *c, int argc, char **argv)
{
	bool cas = false, b64 = false, index_set = false;
	bool acquire = false, release = false;
	const char *session = NULL;
	uint64_t fl = 0, index = 0;
	struct cli_flag flags[] = {
	    {"acquire", CLI_BOOL, &acquire, NULL, NULL,
	     "take the key's lock for -session"},
	    {"release", CLI_BOOL, &release, NULL, NULL,
	     "give the key's lock of -session back"},
	    {"session", CLI_STR, &session, NULL, "ID",
	     "the session of -acquire or -release"},
	    {"flags", CLI_U64, &fl, NULL, "N", "flags to store (default 0)"},
	    {"cas", CLI_BOOL, &cas, NULL, NULL,
	     "write only if the key's ModifyIndex is -modify-index (0: only "
	     "if the key does not exist)"},
	    {"modify-index", CLI_U64, &index, &index_set, "N",
	     "the ModifyIndex for -cas"},
	    {"base64", CLI_BOOL, &b64, NULL, NULL,
	     "DATA is base64: decode it first"},
	};
	struct beacon_meta m = {0};
	char *data = NULL, *raw;
	size_t len = 0;
	const char *key;
	int pos, rc;

	if (!cli_parse(c, flags, N_OF(flags), argc, argv, &pos, &rc))
		return rc;
	argc -= pos;
	argv += pos;
	if (argc < 1)
		return cli_usage(c, "Missing KEY argument");
	if (argc > 2)
		return cli_usage(
		    c, "Too many arguments (expected 1 or 2, got %d)", argc);
	key = argv[0];
	if (cas && !index_set)
		return cli_usage(c, "Must specify -modify-index with -cas!");
	if (argc == 2 && (rc = cli_read_data(argv[1], &data, &len)) != 0)
		return rc;
	if (b64 && data != NULL) {
		raw = beacon__b64_decode(data, strcspn(data, "\r\n"), &len);
		free(data);
		if (raw == NULL) {
			fprintf(stderr, "Error! Cannot base 64 decode data\n");
			return CLI_FAIL;
		}
		data = raw;
	}
	if ((acquire || release) && (session == NULL || cas)) {
		free(data);
		return cli_usage(c, "-acquire and -release need -session (and "
				    "no -cas)");
	}
	rc = cli_connect(c, 10000);
	if (rc == 0 && (acquire || release)) {
		rc = lock_put(c, key, data, len, acquire, session);
		free(data);
		return rc;
	}
	if (rc == 0) {
		rc = cas ? beacon_kv_cas(c->b, key, data != NULL ? data : "",
					 len, fl, index, &m)
			 : beacon_kv_put(c->b, key, data != NULL ? data : "",
					 len, fl, &m);
		if (rc == BEACON_ECONFLICT) {
			fprintf(stderr,
				"Error! Did not write to %s: CAS failed\n",
				key);
			rc = CLI_FAIL;
		} else if (rc != 0) {
			rc = cli_fail(rc, &m, "Failed writing data to %s", key);
		} else {
			rc = success(c, key, "put",
				     "Success! Data written to: ");
		}
	}
	free(data);
	return rc;
}

int cli_kv_delete(struct cli *c, int argc, char **argv)
{
	bool recurse = false, cas = false, index_set = false;
	uint64_t index = 0;
	struct cli_flag flags[] = {
	    {"recurse", CLI_BOOL, &recurse, NULL, NULL,
	     "delete every key that starts with the prefix"},
	    {"cas", CLI_BOOL, &cas, NULL, NULL,
	     "delete only if the key's ModifyIndex is -modify-index"},
	    {"modify-index", CLI_U64, &index, &index_set, "N",
	     "the ModifyIndex for -cas"},
	};
	struct beacon_meta m = {0};
	const char *key;
	int pos, rc;

	if (!cli_parse(c, flags, N_OF(flags), argc, argv, &pos, &rc))
		return rc;
	argc -= pos;
	argv += pos;
	if (argc > 1)
		return cli_usage(c, "Too many arguments (expected 1, got %d)",
				 argc);
	key = argc == 1 ? argv[0] : "";
	if (key[0] == '\0' && !recurse)
		return cli_usage(c, "Missing KEY argument");
	if (cas && recurse)
		return cli_usage(c, "Cannot specify both -cas and -recurse!");
	if (cas && (!index_set || index == 0))
		return cli_usage(c, "Must specify -modify-index with -cas!");
	if ((rc = cli_connect(c, 10000)) != 0)
		return rc;
	if (recurse) {
		rc = beacon_kv_delete_tree(c->b, key, &m);
		if (rc != 0)
			return cli_fail(rc, &m, "Error deleting prefix %s",
					key);
		return success(c, key, "delete-tree",
			       "Success! Deleted keys with prefix: ");
	}
	rc = cas ? beacon_kv_delete_cas(c->b, key, index, &m)
		 : beacon_kv_delete(c->b, key, &m);
	if (rc == BEACON_ECONFLICT) {
		fprintf(stderr, "Error! Did not delete key %s: CAS failed\n",
			key);
		return CLI_FAIL;
	}
	if (rc != 0)
		return cli_fail(rc, &m, "Error deleting key %s", key);
	return success(c, key, "delete", "Success! Deleted key: ");
}

/* ---- export / import ---------------------------------------------------- */

/* A JSON string literal of @s, as jansson writes it. */
static void put_json_str(const char *s)
{
	json_t *j = json_string(s);
	char *d = j != NULL ? json_dumps(j, JSON_ENCODE_ANY) : NULL;

	fputs(d != NULL ? d : "\"\"", stdout);
	if (d != NULL)
		beacon__json_free(d);
	json_decref(j);
}

int cli_kv_export(struct cli *c, int argc, char **argv)
{
	struct beacon_kv_list l;
	struct beacon_meta m = {0};
	const char *prefix;
	int pos, rc;

	if (!cli_parse(c, NULL, 0, argc, argv, &pos, &rc))
		return rc;
	argc -= pos;
	argv += pos;
	if (argc > 1)
		return cli_usage(c, "Too many arguments (expected 1, got %d)",
				 argc);
	prefix = argc == 1 ? argv[0] : "";
	if ((rc = cli_connect(c, 30000)) != 0)
		return rc;
	rc = beacon_kv_list(c->b, prefix, &l, &m);
	if (rc != 0)
		return cli_fail(rc, &m, "Failed to read keys under %s", prefix);
	/* Consul's layout (Go's json.MarshalIndent with a tab). */
	if (l.n == 0)
		printf("[]\n");
	for (size_t i = 0; i < l.n; i++) {
		char *b64 =
		    beacon__b64_encode(l.items[i].value, l.items[i].value_len);
		printf("%s\t{\n\t\t\"key\": ", i == 0 ? "[\n" : ",\n");
		put_json_str(l.items[i].key);
		printf(",\n\t\t\"flags\": %" PRIu64 ",\n\t\t\"value\": \"%s\"\n"
		       "\t}",
		       l.items[i].flags, b64 != NULL ? b64 : "");
		free(b64);
		if (i + 1 == l.n)
			printf("\n]\n");
	}
	beacon_kv_list_close(&l);
	return CLI_OK;
}

int cli_kv_import(struct cli *c, int argc, char **argv)
{
	const char *prefix = "";
	struct cli_flag flags[] = {
	    {"prefix", CLI_STR, &prefix, NULL, "PREFIX",
	     "put this (and a '/') in front of every key"},
	};
	json_error_t jerr;
	json_t *root, *e;
	char *data;
	size_t len, i;
	int pos, rc;

	if (!cli_parse(c, flags, N_OF(flags), argc, argv, &pos, &rc))
		return rc;
	argc -= pos;
	argv += pos;
	if (argc > 1)
		return cli_usage(c, "Too many arguments (expected 1, got %d)",
				 argc);
	rc = cli_read_data(argc == 1 ? argv[0] : "-", &data, &len);
	if (rc != 0)
		return rc;
	root = json_loadb(data, len, 0, &jerr);
	free(data);
	if (!json_is_array(root)) {
		fprintf(stderr, "Error! Cannot parse the export: %s\n",
			root == NULL ? jerr.text : "not a JSON array");
		json_decref(root);
		return CLI_FAIL;
	}
	/* Check every entry before writing any. */
	json_array_foreach (root, i, e) {
		json_t *k = json_object_get(e, "key");
		json_t *v = json_object_get(e, "value");
		json_t *f = json_object_get(e, "flags");
		if (!json_is_string(k) || json_string_length(k) == 0 ||
		    !(v == NULL || json_is_null(v) || json_is_string(v)) ||
		    !(f == NULL ||
		      (json_is_integer(f) && json_integer_value(f) >= 0))) {
			fprintf(stderr,
				"Error! Entry %zu of the export is not "
				"{\"key\": ..., \"flags\": N, \"value\": "
				"base64}\n",
				i);
			json_decref(root);
			return CLI_FAIL;
		}
	}
	if ((rc = cli_connect(c, 10000)) != 0) {
		json_decref(root);
		return rc;
	}
	json_array_foreach (root, i, e) {
		const char *k = json_string_value(json_object_get(e, "key"));
		json_t *v = json_object_get(e, "value");
		json_t *f = json_object_get(e, "flags");
		struct beacon_meta m = {0};
		size_t vlen = 0, kl = strlen(prefix) + strlen(k) + 2;
		char *val = NULL, *key = malloc(kl);

		if (json_is_string(v))
			val = beacon__b64_decode(json_string_value(v),
						 json_string_length(v), &vlen);
		if (key == NULL || (json_is_string(v) && val == NULL)) {
			fprintf(stderr, "Error! Bad base64 value for %s\n", k);
			free(key);
			free(val);
			rc = CLI_FAIL;
			break;
		}
		snprintf(key, kl, "%s%s%s", prefix,
			 prefix[0] != '\0' && prefix[strlen(prefix) - 1] != '/'
			     ? "/"
			     : "",
			 k);
		rc = beacon_kv_put(
		    c->b, key, val != NULL ? val : "", vlen,
		    f != NULL ? (uint64_t)json_integer_value(f) : 0, &m);
		if (rc != 0) {
			rc = cli_fail(rc, &m, "Failed to write %s", key);
		} else if (!c->json) {
			printf("Imported: %s\n", key);
		}
		free(key);
		free(val);
		if (rc != 0)
			break;
	}
	if (rc == 0 && c->json)
		cli_print_json(json_pack("{s:I}", "Imported",
					 (json_int_t)json_array_size(root)));
	json_decref(root);
	return rc;
}

/* ---- edit -----------------------------------------------------------------
 */

/* Run $VISUAL/$EDITOR (default vi) on @path through the shell, as git
 * does: "$EDITOR" "$@". Returns its exit status, or -1. */
static int run_editor(const char *path)
{
	const char *ed = getenv("VISUAL");
	char *cmd, *argv[6];
	pid_t pid;
	int st, rc;

	if (ed == NULL || ed[0] == '\0')
		ed = getenv("EDITOR");
	if (ed == NULL || ed[0] == '\0')
		ed = "vi";
	cmd = malloc(strlen(ed) + 16);
	if (cmd == NULL)
		return -1;
	snprintf(cmd, strlen(ed) + 16, "%s \"$@\"", ed);
	argv[0] = "sh";
	argv[1] = "-c";
	argv[2] = cmd;
	argv[3] = (char *)ed;
	argv[4] = (char *)path;
	argv[5] = NULL;
	rc = posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ);
	free(cmd);
	if (rc != 0)
		return -1;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A temporary file named after the key's last part, holding @val. */
static char *edit_file(const char *key, const char *val, size_t len)
{
	const char *tmp = getenv("TMPDIR"), *base = strrchr(key, '/');
	char safe[48], *path;
	size_t n = 0, pl;
	int fd;

	base = base != NULL ? base + 1 : key;
	for (; *base != '\0' && n + 1 < sizeof safe; base++)
		safe[n++] = (strchr("._-", *base) != NULL ||
			     (*base >= 'a' && *base <= 'z') ||
			     (*base >= 'A' && *base <= 'Z') ||
			     (*base >= '0' && *base <= '9'))
				? *base
				: '_';
	safe[n] = '\0';
	if (tmp == NULL || tmp[0] == '\0')
		tmp = "/tmp";
	pl = strlen(tmp) + n + 32;
	path = malloc(pl);
	if (path == NULL)
		return NULL;
	snprintf(path, pl, "%s/beacon-edit-XXXXXX%s%s", tmp, n > 0 ? "-" : "",
		 safe);
	fd = mkstemps(path, n > 0 ? (int)n + 1 : 0);
	if (fd < 0) {
		free(path);
		return NULL;
	}
	while (len > 0) {
		ssize_t w = write(fd, val, len);
		if (w < 0) {
			close(fd);
			unlink(path);
			free(path);
			return NULL;
		}
		val += w;
		len -= (size_t)w;
	}
	close(fd);
	return path;
}

int cli_kv_edit(struct cli *c, int argc, char **argv)
{
	struct beacon_kv *kv = NULL;
	struct beacon_meta m = {0};
	const char *key, *old = "";
	char *path = NULL, *text = NULL;
	size_t old_len = 0, len;
	uint64_t index = 0, fl = 0;
	int pos, rc, st, fd;

	if (!cli_parse(c, NULL, 0, argc, argv, &pos, &rc))
		return rc;
	argc -= pos;
	argv += pos;
	if (argc != 1)
		return cli_usage(c, "Expected one KEY argument, got %d", argc);
	key = argv[0];
	if ((rc = cli_connect(c, 10000)) != 0)
		return rc;
	rc = beacon_kv_get(c->b, key, &kv, &m);
	if (rc != 0 && rc != BEACON_ENOTFOUND)
		return cli_fail(rc, &m, "Failed to read %s", key);
	if (kv != NULL) {
		old = kv->value;
		old_len = kv->value_len;
		index = kv->modify_index; /* 0 for a new key: create only */
		fl = kv->flags;
	}
	path = edit_file(key, old, old_len);
	if (path == NULL) {
		rc = cli_fail(BEACON_EIO, NULL,
			      "Cannot write a temporary file: %s",
			      strerror(errno));
		goto out;
	}
	st = run_editor(path);
	if (st != 0) {
		fprintf(stderr,
			"Error! The editor exited with status %d; nothing was "
			"written to %s (the text is in %s)\n",
			st, key, path);
		rc = CLI_FAIL;
		goto out_keep;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || cli_read_fd(fd, &text, &len) != 0) {
		fprintf(stderr, "Error! Cannot read back %s: %s\n", path,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		rc = CLI_FAIL;
		goto out_keep;
	}
	close(fd);
	if ((kv != NULL && len == old_len && memcmp(text, old, len) == 0) ||
	    (kv == NULL && len == 0)) {
		printf("No changes to %s; nothing written.\n", key);
		unlink(path);
		rc = CLI_OK;
		goto out;
	}
	rc = beacon_kv_cas(c->b, key, text, len, fl, index, &m);
	if (rc == BEACON_ECONFLICT) {
		fprintf(stderr,
			"Error! %s was changed by someone else while you were "
			"editing it; nothing was written.\n"
			"Your edited text is kept in %s\n",
			key, path);
		rc = CLI_FAIL;
		goto out_keep;
	}
	if (rc != 0) {
		rc = cli_fail(rc, &m, "Failed to write %s (your text is in %s)",
			      key, path);
		goto out_keep;
	}
	unlink(path);
	rc = success(c, key, "edit", "Success! Data written to: ");
	goto out;
out_keep:
	if (c->json)
		cli_print_json(json_pack("{s:s,s:b,s:s}", "Key", key, "Success",
					 0, "KeptIn", path));
out:
	free(text);
	free(path);
	beacon_kv_free(kv);
	return rc;
}
