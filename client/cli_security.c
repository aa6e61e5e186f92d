/* beacon lock, session, secret, acl and keygen: thin commands over the HTTP
 * API (README: "Sessions, locks and leader election", "Securing Beacon"). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/cli.h"
#include "client/client_int.h"

/* One request with a body; the answer's JSON in *@out (may be NULL). */
static int call(struct cli *c, const char *method, const char *path,
		const char *query, const void *body, size_t len, json_t **out,
		struct beacon_meta *m)
{
	struct beacon_req req = {.method = method,
				 .path = path,
				 .query = query,
				 .body = body,
				 .body_len = len,
				 .content_type = "application/json"};
	char *text = NULL;
	size_t tlen = 0;
	int rc = beacon_request(c->b, &req, &text, &tlen, m);

	if (out != NULL) {
		json_error_t err;
		*out = rc == 0 && text != NULL
			   ? json_loadb(text, tlen, JSON_DECODE_ANY, &err)
			   : NULL;
	}
	free(text);
	return rc;
}

/* "/v1/<base><escaped key>" (malloc'd). */
static char *path_of(const char *base, const char *key)
{
	char *esc = beacon_escape(key);
	char *p = NULL;
	size_t n;

	if (esc == NULL)
		return NULL;
	n = strlen(base) + strlen(esc) + 1;
	p = malloc(n);
	if (p != NULL)
		snprintf(p, n, "%s%s", base, esc);
	free(esc);
	return p;
}

/* ---- keygen -------------------------------------------------------------- */

int cli_keygen(struct cli *c, int argc, char **argv)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	unsigned char key[33] = {0};
	char out[45];
	int pos, rc, o = 0;

	if (!cli_parse(c, NULL, 0, argc, argv, &pos, &rc))
		return rc;
	if (pos != argc)
		return cli_usage(c, "keygen takes no arguments");
	if (getrandom(key, 32, 0) != 32) {
		fprintf(stderr, "Error! No randomness: %s\n", strerror(errno));
		return CLI_FAIL;
	}
	for (int i = 0; i < 33; i += 3) {
		unsigned v = (unsigned)key[i] << 16 |
			     (unsigned)key[i + 1] << 8 | key[i + 2];
		out[o++] = b64[v >> 18 & 63];
		out[o++] = b64[v >> 12 & 63];
		out[o++] = i + 1 < 32 ? b64[v >> 6 & 63] : '=';
		out[o++] = i + 2 < 32 ? b64[v & 63] : '=';
	}
	out[44] = '\0';
	printf("%s\n", out);
	memset(key, 0, sizeof key);
	memset(out, 0, sizeof out);
	return CLI_OK;
}

/* ---- secret ---------------------------------------------------------------
 */

int cli_secret(struct cli *c, int argc, char **argv)
{
	const char *verb = strrchr(c->cmd->name, ' ') + 1;
	bool recurse = false;
	struct cli_flag flags[] = {
	    {"recurse", CLI_BOOL, &recurse, NULL, NULL,
	     "delete: every secret under the prefix"},
	};
	struct beacon_meta m = {0};
	char *path = NULL, *data = NULL;
	size_t len = 0;
	json_t *j = NULL;
	int pos, rc;

	if (!cli_parse(c, flags, N_OF(flags), argc, argv, &pos, &rc))
		return rc;
	argc -= pos;
	argv += pos;
	if (strcmp(verb, "rotate") != 0 && strcmp(verb, "list") != 0 &&
	    argc < 1)
		return cli_usage(c, "Missing the secret's path");
	if ((rc = cli_connect(c, 15000)) != 0)
		return rc;
	if (strcmp(verb, "rotate") == 0) {
		rc = call(c, "PUT", "/v1/operator/secrets/rotate", NULL, NULL,
			  0, &j, &m);
		if (rc != 0)
			return cli_fail(rc, &m, "Rotation failed");
		printf("Re-sealing %lld secrets with key %s\n",
		       (long long)json_integer_value(
			   json_object_get(j, "Resealing")),
		       json_string_value(json_object_get(j, "KeyID")));
		json_decref(j);
		return CLI_OK;
	}
	if (strcmp(verb, "list") == 0) {
		path = path_of("/v1/secret/", argc > 0 ? argv[0] : "");
		rc = path != NULL ? cli_get_json(c, path, "keys", &j, &m)
				  : BEACON_ENOMEM;
		if (rc == BEACON_ENOTFOUND)
			rc = 0;
		if (rc != 0) {
			free(path);
			return cli_fail(rc, &m, "Listing secrets failed");
		}
		for (size_t i = 0; i < json_array_size(j); i++)
			printf("%s\n", json_string_value(json_array_get(j, i)));
		json_decref(j);
		free(path);
		return CLI_OK;
	}
	path = path_of("/v1/secret/", argv[0]);
	if (path == NULL)
		return cli_fail(BEACON_ENOMEM, NULL, "Out of memory");
	if (strcmp(verb, "put") == 0) {
		if (argc > 1 && (rc = cli_read_data(argv[1], &data, &len)) != 0)
			goto out;
		rc = call(c, "PUT", path, NULL, data != NULL ? data : "", len,
			  NULL, &m);
		if (data != NULL)
			memset(data, 0, len);
		rc = rc != 0
			 ? cli_fail(rc, &m, "Failed writing secret %s", argv[0])
			 : (printf("Success! Secret written to: %s\n", argv[0]),
			    CLI_OK);
	} else if (strcmp(verb, "delete") == 0) {
		rc = call(c, "DELETE", path, recurse ? "recurse" : NULL, NULL,
			  0, NULL, &m);
		rc = rc != 0
			 ? cli_fail(rc, &m, "Failed deleting %s", argv[0])
			 : (printf("Success! Deleted secret: %s\n", argv[0]),
			    CLI_OK);
	} else {
		json_t *v;
		rc = cli_get_json(c, path, NULL, &j, &m);
		if (rc == BEACON_ENOTFOUND) {
			fprintf(stderr, "Error! No secret exists at: %s\n",
				argv[0]);
			rc = CLI_FAIL;
			goto out;
		}
		if (rc != 0) {
			rc = cli_fail(rc, &m, "Failed reading secret %s",
				      argv[0]);
			goto out;
		}
		v = json_object_get(json_array_get(j, 0), "Value");
		if (json_is_string(v)) {
			size_t n = 0;
			char *raw = beacon__b64_decode(
			    json_string_value(v), strlen(json_string_value(v)),
			    &n);
			if (raw != NULL) {
				fwrite(raw, 1, n, stdout);
				memset(raw, 0, n);
				free(raw);
			}
		}
		printf("\n");
		rc = CLI_OK;
	}
out:
	json_decref(j);
	free(data);
	free(path);
	return rc;
}

/* ---- acl
 * ---------------------------------------------------------------------- */

static void print_token(json_t *t)
{
	printf("AccessorID:   %s\n",
	       json_string_value(json_object_get(t, "AccessorID")));
	printf("SecretID:     %s\n",
	       json_string_value(json_object_get(t, "SecretID")));
	printf("Description:  %s\n",
	       json_string_value(json_object_get(t, "Description")));
}

int cli_acl(struct cli *c, int argc, char **argv)
{
	const char *name = c->cmd->name, *pname = NULL, *desc = "",
		   *rules = NULL;
	struct cli_list policies = {0};
	struct cli_flag flags[] = {
	    {"name", CLI_STR, &pname, NULL, "NAME", "policy create: its name"},
	    {"rules", CLI_STR, &rules, NULL, "RULES",
	     "policy create: the rules, @file or - for stdin"},
	    {"description", CLI_STR, &desc, NULL, "TEXT", "a description"},
	    {"policy-name", CLI_LIST, &policies, NULL, "NAME",
	     "token create: a policy (repeatable)"},
	};
	struct beacon_meta m = {0};
	json_t *j = NULL, *body = NULL;
	char *text = NULL, *dump = NULL;
	size_t len;
	int pos, rc;

	if (!cli_parse(c, flags, N_OF(flags), argc, argv, &pos, &rc)) {
		cli_list_free(&policies);
		return rc;
	}
	if ((rc = cli_connect(c, 15000)) != 0)
		goto out;
	if (strcmp(name, "acl bootstrap") == 0) {
		rc = call(c, "PUT", "/v1/acl/bootstrap", NULL, NULL, 0, &j, &m);
		if (rc != 0) {
			rc = cli_fail(rc, &m, "Failed ACL bootstrapping");
			goto out;
		}
		print_token(j);
	} else if (strcmp(name, "acl policy create") == 0) {
		if (pname == NULL || rules == NULL) {
			rc = cli_usage(c, "Need -name and -rules");
			goto out;
		}
		if ((rc = cli_read_data(rules, &text, &len)) != 0)
			goto out;
		body = json_pack("{s:s,s:s,s:s}", "Name", pname, "Description",
				 desc, "Rules", text);
		dump = body != NULL ? json_dumps(body, 0) : NULL;
		rc = dump != NULL ? call(c, "PUT", "/v1/acl/policy", NULL, dump,
					 strlen(dump), &j, &m)
				  : BEACON_ENOMEM;
		if (rc != 0) {
			rc = cli_fail(rc, &m, "Failed to create policy");
			goto out;
		}
		printf("ID:    %s\nName:  %s\n",
		       json_string_value(json_object_get(j, "ID")),
		       json_string_value(json_object_get(j, "Name")));
	} else {
		json_t *list = json_array();
		for (size_t i = 0; i < policies.n; i++)
			json_array_append_new(
			    list, json_pack("{s:s}", "Name", policies.v[i]));
		body = json_pack("{s:s,s:o}", "Description", desc, "Policies",
				 list);
		dump = body != NULL ? json_dumps(body, 0) : NULL;
		rc = dump != NULL ? call(c, "PUT", "/v1/acl/token", NULL, dump,
					 strlen(dump), &j, &m)
				  : BEACON_ENOMEM;
		if (rc != 0) {
			rc = cli_fail(rc, &m, "Failed to create token");
			goto out;
		}
		print_token(j);
	}
	rc = CLI_OK;
out:
	json_decref(j);
	json_decref(body);
	beacon__json_free(dump);
	free(text);
	cli_list_free(&policies);
	return rc;
}

/* ---- session
 * ------------------------------------------------------------------ */

int cli_session(struct cli *c, int argc, char **argv)
{
	bool destroy = strcmp(c->cmd->name, "session destroy") == 0;
	struct beacon_meta m = {0};
	json_t *j = NULL;
	char *path;
	int pos, rc;

	if (!cli_parse(c, NULL, 0, argc, argv, &pos, &rc))
		return rc;
	argc -= pos;
	argv += pos;
	if (destroy && argc != 1)
		return cli_usage(c, "Give one session ID");
	if ((rc = cli_connect(c, 10000)) != 0)
		return rc;
	if (destroy) {
		path = path_of("/v1/session/destroy/", argv[0]);
		rc = path != NULL
			 ? call(c, "PUT", path, NULL, NULL, 0, NULL, &m)
			 : BEACON_ENOMEM;
		free(path);
		if (rc != 0)
			return cli_fail(rc, &m, "Failed to destroy session");
		printf("Destroyed session: %s\n", argv[0]);
		return CLI_OK;
	}
	rc = cli_get_json(c, "/v1/session/list", NULL, &j, &m);
	if (rc != 0)
		return cli_fail(rc, &m, "Failed to list sessions");
	if (c->json) {
		cli_print_json(j);
		return CLI_OK;
	}
	printf("%-36s  %-10s  %-12s  %-6s  %s\n", "ID", "Node", "Name", "TTL",
	       "Behavior");
	for (size_t i = 0; i < json_array_size(j); i++) {
		json_t *s = json_array_get(j, i);
		printf("%-36s  %-10s  %-12s  %-6s  %s\n",
		       json_string_value(json_object_get(s, "ID")),
		       json_string_value(json_object_get(s, "Node")),
		       json_string_value(json_object_get(s, "Name")),
		       json_string_value(json_object_get(s, "TTL")),
		       json_string_value(json_object_get(s, "Behavior")));
	}
	json_decref(j);
	return CLI_OK;
}

/* ---- lock
 * ------------------------------------------------------------------------ */

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* Stop @child and its process group: SIGTERM, then SIGKILL after 5 s.
 * Returns its status. */
static int stop_child(pid_t child)
{
	int st = 0;
	uint64_t deadline = now_ms() + 5000;

	kill(-child, SIGTERM);
	while (waitpid(child, &st, WNOHANG) == 0) {
		if (now_ms() > deadline) {
			kill(-child, SIGKILL);
			waitpid(child, &st, 0);
			break;
		}
		sleep_ms(50);
	}
	return st;
}

/* Does @sid still hold @key? 1 yes, 0 no, <0 could not tell. */
static int holds(struct cli *c, const char *kpath, const char *sid)
{
	struct beacon_meta m = {0};
	json_t *j = NULL;
	int rc = cli_get_json(c, kpath, NULL, &j, &m), held;
	const char *s;

	if (rc == BEACON_ENOTFOUND)
		return 0;
	if (rc != 0)
		return -1;
	s = json_string_value(json_object_get(json_array_get(j, 0), "Session"));
	held = s != NULL && strcmp(s, sid) == 0;
	json_decref(j);
	return held;
}

int cli_lock(struct cli *c, int argc, char **argv)
{
	uint64_t ttl_ms = 15000, delay_ms = 1000;
	const char *name = "beacon lock";
	struct cli_flag flags[] = {
	    {"ttl", CLI_DURATION, &ttl_ms, NULL, "DUR",
	     "the session's TTL (10s to 24h; default 15s)"},
	    {"lock-delay", CLI_DURATION, &delay_ms, NULL, "DUR",
	     "after a holder dies, nobody may take the lock this long "
	     "(default 1s)"},
	    {"name", CLI_STR, &name, NULL, "NAME", "the session's name"},
	};
	struct beacon_meta m = {0};
	char *body = NULL, *kpath = NULL, *key = NULL, *rpath = NULL, sid[64];
	char ttl[32], delay[32];
	json_t *j = NULL;
	pid_t child = -1;
	int pos, rc, st = 0;
	uint64_t last_renew;
	bool lost = false;

	if (!cli_parse(c, flags, N_OF(flags), argc, argv, &pos, &rc))
		return rc;
	argc -= pos;
	argv += pos;
	/* PREFIX [--] COMMAND [ARGS...] */
	if (argc >= 2 && strcmp(argv[1], "--") == 0) {
		argv[1] = argv[0];
		argc--;
		argv++;
	}
	if (argc < 2 || argv[0][0] == '\0')
		return cli_usage(c, "Usage: beacon lock [options] PREFIX -- "
				    "COMMAND [ARGS...]");
	if (ttl_ms < 10000 || ttl_ms > 86400000)
		return cli_usage(c, "-ttl must be between 10s and 24h");
	if ((rc = cli_connect(c, 10000)) != 0)
		return rc;
	/* Consul's layout: the lock is PREFIX/.lock. */
	key = malloc(strlen(argv[0]) + 8);
	if (key == NULL)
		return cli_fail(BEACON_ENOMEM, NULL, "Out of memory");
	snprintf(key, strlen(argv[0]) + 8, "%s%s.lock", argv[0],
		 argv[0][strlen(argv[0]) - 1] == '/' ? "" : "/");
	kpath = path_of("/v1/kv/", key);
	snprintf(ttl, sizeof ttl, "%llums", (unsigned long long)ttl_ms);
	snprintf(delay, sizeof delay, "%llums", (unsigned long long)delay_ms);
	j = json_pack("{s:s, s:s, s:s, s:s}", "Name", name, "TTL", ttl,
		      "LockDelay", delay, "Behavior", "release");
	body = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	j = NULL;
	if (kpath == NULL || body == NULL) {
		rc = cli_fail(BEACON_ENOMEM, NULL, "Out of memory");
		goto out;
	}
	rc = call(c, "PUT", "/v1/session/create", NULL, body, strlen(body), &j,
		  &m);
	if (rc != 0 || json_string_value(json_object_get(j, "ID")) == NULL) {
		rc = cli_fail(rc != 0 ? rc : BEACON_EPROTO, &m,
			      "Failed to create a session");
		goto out;
	}
	snprintf(sid, sizeof sid, "%s",
		 json_string_value(json_object_get(j, "ID")));
	json_decref(j);
	j = NULL;
	rpath = path_of("/v1/session/renew/", sid);
	if (rpath == NULL) {
		rc = cli_fail(BEACON_ENOMEM, NULL, "Out of memory");
		goto destroy;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	last_renew = now_ms();
	/* Wait for the lock: try, then sleep a little (bounded by signals). */
	for (;;) {
		char q[100];
		snprintf(q, sizeof q, "acquire=%s", sid);
		rc = call(c, "PUT", kpath, q, "", 0, &j, &m);
		if (rc == 0 && json_is_true(j))
			break;
		json_decref(j);
		j = NULL;
		/* Busy, or no leader for now: wait. Anything else (denied,
		 * a bad key) will not change by waiting. */
		if (rc != 0 && rc != BEACON_EUNAVAILABLE &&
		    rc != BEACON_ESERVER) {
			rc = cli_fail(rc, &m, "Failed to acquire %s", key);
			goto destroy;
		}
		if (got_signal) {
			rc = CLI_FAIL;
			goto destroy;
		}
		if (now_ms() - last_renew > ttl_ms / 3) {
			rc = call(c, "PUT", rpath, NULL, NULL, 0, NULL, &m);
			last_renew = now_ms();
			if (rc == BEACON_ENOTFOUND) {
				rc = cli_fail(rc, &m, "The session is gone");
				goto out; /* nothing to destroy */
			}
		}
		sleep_ms(250);
	}
	json_decref(j);
	j = NULL;
	fprintf(stderr, "beacon lock: holding %s (session %s)\n", key, sid);
	child = fork();
	if (child == 0) {
		/* Its own process group, so that stopping it stops
		 * everything it started. */
		setpgid(0, 0);
		signal(SIGPIPE, SIG_DFL); /* ignored by beacon, kept by exec */
		execvp(argv[1], argv + 1);
		fprintf(stderr, "beacon lock: cannot run %s: %s\n", argv[1],
			strerror(errno));
		_exit(127);
	}
	if (child < 0) {
		rc = cli_fail(BEACON_EIO, NULL, "fork: %s", strerror(errno));
		goto release;
	}
	setpgid(child, child); /* also here: no race with the child's */
	/* Hold it: renew every TTL/3, check that we still hold it. */
	for (;;) {
		pid_t w = waitpid(child, &st, WNOHANG);
		if (w == child) {
			child = -1;
			break;
		}
		if (got_signal) {
			kill(-child, got_signal);
			waitpid(child, &st, 0);
			child = -1;
			break;
		}
		if (now_ms() - last_renew > ttl_ms / 3) {
			int r = call(c, "PUT", rpath, NULL, NULL, 0, NULL, &m);
			last_renew = now_ms();
			if (r == BEACON_ENOTFOUND ||
			    holds(c, kpath, sid) == 0) {
				lost = true;
				fprintf(stderr,
					"beacon lock: lost the lock on %s: "
					"stopping the command\n",
					key);
				st = stop_child(child);
				child = -1;
				break;
			}
		}
		sleep_ms(100);
	}
	rc = lost	     ? CLI_FAIL
	     : WIFEXITED(st) ? WEXITSTATUS(st)
			     : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
release:
	if (!lost) {
		char q[100];
		snprintf(q, sizeof q, "release=%s", sid);
		call(c, "PUT", kpath, q, "", 0, NULL, &m);
	}
destroy : {
	char *dpath = path_of("/v1/session/destroy/", sid);
	if (dpath != NULL)
		call(c, "PUT", dpath, NULL, NULL, 0, NULL, &m);
	free(dpath);
}
out:
	json_decref(j);
	beacon__json_free(body);
	free(key);
	free(kpath);
	free(rpath);
	return rc;
}
