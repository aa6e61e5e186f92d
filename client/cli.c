/* beacon: the command-line client. main(), the command table, the HTTP
 * flags every command shares, and output helpers.
 *
 * A new command is one row of `commands[]` and one function; a group
 * ("kv", "operator raft") needs no row of its own: `beacon kv` lists the
 * rows whose name starts with it. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/cli.h"
#include "client/client_int.h"

static int cli_version(struct cli *c, int argc, char **argv);

static const struct cli_cmd commands[] = {
    {"kv get", cli_kv_get, "[options] [KEY_OR_PREFIX]",
     "Read a value, the entries under a prefix, or key names", NULL},
    {"kv put", cli_kv_put, "[options] KEY [DATA]",
     "Write a value (DATA, @file, or - for stdin)", NULL},
    {"kv delete", cli_kv_delete, "[options] KEY_OR_PREFIX",
     "Delete a key, or every key under a prefix", NULL},
    {"kv export", cli_kv_export, "[options] [PREFIX]",
     "Print the keys under a prefix as Consul's JSON export", NULL},
    {"kv import", cli_kv_import, "[options] [DATA]",
     "Write the keys of a JSON export (DATA, @file, or - / none for stdin)",
     NULL},
    {"kv edit", cli_kv_edit, "[options] KEY",
     "Edit a value in $EDITOR and write it back with check-and-set",
     "If the key changed while it was being edited, nothing is written\n"
     "and the edited text is kept in a file, whose name is printed."},
    {"watch", cli_watch, "[options] [-- HANDLER [ARGS...]]",
     "Run a handler (or print JSON) each time the content changes",
     "-type key -key K | keyprefix -prefix P | service -service S\n"
     "[-tag T] [-passingonly] | services | nodes | checks [-service S |\n"
     "-state S]. The handler gets the JSON on stdin and BEACON_INDEX (and\n"
     "CONSUL_INDEX) in its environment. It runs only when the content\n"
     "changed: never for a mere timeout, never twice for the same content;\n"
     "with -fire-on-start also for the first result."},
    {"exec", cli_exec, "[options] -prefix PREFIX -- COMMAND [ARGS...]",
     "Run a command with the keys under a prefix in its environment",
     "Each key under PREFIX becomes an environment variable (the rest of\n"
     "the key, upper-cased, other characters than [A-Z0-9_] made '_').\n"
     "When they change, the command is restarted (-kill-signal, then\n"
     "SIGKILL after -kill-timeout), or sent -signal instead. Exits with\n"
     "the command's status when it exits by itself."},
    {"services", cli_services, "[options]", "List the services", NULL},
    {"catalog services", cli_services, "[options]", "List the services", NULL},
    {"catalog nodes", cli_catalog_nodes, "[options]", "List the nodes", NULL},
    {"catalog datacenters", cli_catalog_dcs, "[options]",
     "List the datacenters", NULL},
    {"health", cli_health, "[options] SERVICE",
     "List the instances of a service and their health", NULL},
    {"register", cli_register, "[options] [FILE]",
     "Register a service on the server's node (flags, or a JSON file)", NULL},
    {"deregister", cli_deregister, "[options] [SERVICE_ID]",
     "Remove a service registered on the server's node", NULL},
    {"check pass", cli_check, "[options] CHECK_ID",
     "Set a TTL check to passing", NULL},
    {"check warn", cli_check, "[options] CHECK_ID",
     "Set a TTL check to warning", NULL},
    {"check fail", cli_check, "[options] CHECK_ID",
     "Set a TTL check to critical", NULL},
    {"members", cli_members, "[options]", "List the servers", NULL},
    {"operator raft list-peers", cli_raft_list_peers, "[options]",
     "List the Raft configuration", NULL},
    {"operator raft remove-peer", cli_raft_remove_peer,
     "[options] -id ID | -address ADDR", "Remove a server from the cluster",
     NULL},
    {"operator raft transfer-leader", cli_raft_transfer, "[options] [-id ID]",
     "Move leadership to another server", NULL},
    {"snapshot save", cli_snapshot_save, "[options] FILE",
     "Save a backup of the whole state", NULL},
    {"snapshot restore", cli_snapshot_restore, "[options] FILE",
     "Replace the whole state with a backup", NULL},
    {"snapshot inspect", cli_snapshot_inspect, "FILE",
     "Verify a backup file and show what it holds", NULL},
    {"lock", cli_lock, "[options] PREFIX -- COMMAND [ARGS...]",
     "Run a command while holding the lock PREFIX/.lock",
     "Creates a session (-ttl, renewed every TTL/3), waits for the lock,\n"
     "runs COMMAND and releases the lock when it exits (with its status).\n"
     "If the lock is lost (the session was destroyed or expired), COMMAND\n"
     "is stopped (SIGTERM, then SIGKILL after 5s) and the exit code is 1."},
    {"session list", cli_session, "[options]", "List the sessions", NULL},
    {"session destroy", cli_session, "[options] ID",
     "Destroy a session (its locks are released)", NULL},
    {"secret put", cli_secret, "[options] PATH [DATA]",
     "Write a secret (DATA, @file, or - for stdin)", NULL},
    {"secret get", cli_secret, "[options] PATH", "Print a secret's value",
     NULL},
    {"secret delete", cli_secret, "[options] PATH", "Delete a secret", NULL},
    {"secret list", cli_secret, "[options] [PREFIX]",
     "List secret names (never values)", NULL},
    {"secret rotate", cli_secret, "[options]",
     "Re-seal every secret with the servers' first key", NULL},
    {"keygen", cli_keygen, "",
     "Print a new secret key (base64 of 32 random bytes)", NULL},
    {"acl bootstrap", cli_acl, "[options]",
     "Create the first (management) token, once", NULL},
    {"acl policy create", cli_acl, "[options] -name NAME -rules RULES|@FILE",
     "Create an ACL policy", NULL},
    {"acl token create", cli_acl,
     "[options] [-description TEXT] -policy-name NAME...",
     "Create a token; its secret is shown once", NULL},
    {"version", cli_version, "", "Print the version", NULL},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

/* ---- common flags ------------------------------------------------------- */

static size_t common_flags(struct cli *c, struct cli_flag *f)
{
	const struct cli_flag common[] = {
	    {"http-addr", CLI_STR, &c->http_addr, NULL, "ADDRS",
	     "servers, comma-separated host:port or http[s]://host:port; "
	     "$BEACON_HTTP_ADDR, $CONSUL_HTTP_ADDR, 127.0.0.1:8500"},
	    {"token", CLI_STR, &c->token, NULL, "TOKEN",
	     "ACL token; $BEACON_HTTP_TOKEN, $CONSUL_HTTP_TOKEN"},
	    {"token-file", CLI_STR, &c->token_file, NULL, "FILE",
	     "file holding the ACL token; $BEACON_HTTP_TOKEN_FILE"},
	    {"ca-file", CLI_STR, &c->ca_file, NULL, "FILE",
	     "CA bundle for HTTPS; $BEACON_CACERT"},
	    {"ca-path", CLI_STR, &c->ca_path, NULL, "DIR",
	     "directory of CA certificates; $BEACON_CAPATH"},
	    {"client-cert", CLI_STR, &c->client_cert, NULL, "FILE",
	     "client certificate for HTTPS; $BEACON_CLIENT_CERT"},
	    {"client-key", CLI_STR, &c->client_key, NULL, "FILE",
	     "key of the client certificate; $BEACON_CLIENT_KEY"},
	    {"tls-server-name", CLI_STR, &c->tls_server_name, NULL, "NAME",
	     "name to verify in the server certificate"},
	    {"tls-skip-verify", CLI_BOOL, &c->tls_skip_verify, NULL, NULL,
	     "do not verify the server certificate"},
	    {"datacenter", CLI_STR, &c->datacenter, NULL, "DC",
	     "datacenter to query"},
	    {"stale", CLI_BOOL, &c->stale, NULL, NULL,
	     "let any server answer reads from its own state"},
	    {"format", CLI_STR, &c->format, NULL, "text|json",
	     "output format (default text)"},
	    {"timeout", CLI_DURATION, &c->timeout_ms, NULL, "DURATION",
	     "time allowed for each request, all servers included"},
	};
	memcpy(f, common, sizeof common);
	return sizeof common / sizeof common[0];
}

#define N_COMMON 16 /* room for common_flags() */

static void print_flags(const struct cli_flag *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char head[64];
		snprintf(head, sizeof head, "-%s%s%s", f[i].name,
			 f[i].arg != NULL ? "=" : "",
			 f[i].arg != NULL ? f[i].arg : "");
		fprintf(stdout, "  %-26s %s\n", head, f[i].help);
	}
}

static void cmd_help(struct cli *c, const struct cli_flag *flags, size_t n)
{
	struct cli_flag common[N_COMMON];
	size_t nc = common_flags(c, common);

	printf("Usage: beacon %s %s\n\n  %s\n", c->cmd->name, c->cmd->args,
	       c->cmd->summary);
	if (c->cmd->help != NULL) {
		const char *p = c->cmd->help;
		putchar('\n');
		while (*p != '\0') {
			size_t l = strcspn(p, "\n");
			printf("  %.*s\n", (int)l, p);
			p += l + (p[l] == '\n');
		}
	}
	if (n > 0) {
		printf("\nOptions:\n");
		print_flags(flags, n);
	}
	printf("\nHTTP options:\n");
	print_flags(common, nc);
}

bool cli_parse(struct cli *c, const struct cli_flag *flags, size_t n, int argc,
	       char **argv, int *pos, int *rc)
{
	struct cli_flag *all = calloc(n + N_COMMON, sizeof *all);
	char err[256];
	size_t nc;
	int r;

	if (all == NULL) {
		fprintf(stderr, "Error! out of memory\n");
		*rc = CLI_FAIL;
		return false;
	}
	if (n > 0)
		memcpy(all, flags, n * sizeof *flags);
	nc = common_flags(c, all + n);
	r = cli_flags_parse(all, n + nc, argc, argv, err, sizeof err);
	free(all);
	if (r == CLI_FLAGS_HELP) {
		cmd_help(c, flags, n);
		*rc = CLI_OK;
		return false;
	}
	if (r == CLI_FLAGS_ERROR) {
		*rc = cli_usage(c, "%s", err);
		return false;
	}
	if (c->format != NULL && strcmp(c->format, "json") != 0 &&
	    strcmp(c->format, "text") != 0) {
		*rc = cli_usage(c, "-format must be text or json");
		return false;
	}
	c->json = c->format != NULL && strcmp(c->format, "json") == 0;
	*pos = r;
	return true;
}

int cli_usage(struct cli *c, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "Error! ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (c != NULL && c->cmd != NULL)
		fprintf(stderr,
			"\nUsage: beacon %s %s (beacon %s -h for help)\n",
			c->cmd->name, c->cmd->args, c->cmd->name);
	else
		fputc('\n', stderr);
	return CLI_USAGE;
}

int cli_exit_code(int rc)
{
	switch (rc) {
	case 0:
		return CLI_OK;
	case BEACON_EUNAVAILABLE:
	case BEACON_ESERVER:
		return CLI_USAGE; /* the cluster could not answer */
	default:
		return CLI_FAIL;
	}
}

int cli_fail(int rc, const struct beacon_meta *m, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "Error! ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (m != NULL && m->error[0] != '\0')
		fprintf(stderr, ": %s", m->error);
	else if (rc != 0)
		fprintf(stderr, ": %s", beacon_strerror(rc));
	fputc('\n', stderr);
	return cli_exit_code(rc);
}

static const char *env2(const char *a, const char *b)
{
	const char *v = getenv(a);

	if (v == NULL || v[0] == '\0')
		v = getenv(b);
	return v != NULL && v[0] != '\0' ? v : NULL;
}

int cli_read_fd(int fd, char **out, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap), *nb;

	if (buf == NULL)
		return -1;
	for (;;) {
		ssize_t r;
		if (n + 1 >= cap) {
			if (cap >= BEACON__MAX_BODY) {
				free(buf);
				errno = EFBIG;
				return -1;
			}
			nb = realloc(buf, cap * 2);
			if (nb == NULL) {
				free(buf);
				return -1;
			}
			buf = nb;
			cap *= 2;
		}
		r = read(fd, buf + n, cap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(buf);
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

static int read_token_file(struct cli *c, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t n;

	if (fd < 0 || cli_read_fd(fd, &c->token_buf, &n) != 0) {
		fprintf(stderr, "Error! Cannot read the token file %s: %s\n",
			path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return CLI_USAGE;
	}
	close(fd);
	while (n > 0 &&
	       (c->token_buf[n - 1] == '\n' || c->token_buf[n - 1] == '\r' ||
		c->token_buf[n - 1] == ' '))
		c->token_buf[--n] = '\0';
	return 0;
}

int cli_connect(struct cli *c, uint64_t timeout_ms)
{
	struct beacon_config cfg;
	char err[BEACON_ERRMSG_LEN];
	const char *tf, *verify;
	int rc;

	beacon_config_init(&cfg);
	cfg.addrs = c->http_addr;
	/* Consul's order: -token, -token-file, then the environment. */
	cfg.token = c->token;
	tf = c->token_file;
	if (cfg.token == NULL && tf == NULL &&
	    env2("BEACON_HTTP_TOKEN", "CONSUL_HTTP_TOKEN") == NULL)
		tf = env2("BEACON_HTTP_TOKEN_FILE", "CONSUL_HTTP_TOKEN_FILE");
	if (cfg.token == NULL && tf != NULL) {
		rc = read_token_file(c, tf);
		if (rc != 0)
			return rc;
		cfg.token = c->token_buf;
	}
	cfg.ca_file = c->ca_file != NULL
			  ? c->ca_file
			  : env2("BEACON_CACERT", "CONSUL_CACERT");
	cfg.ca_path = c->ca_path != NULL
			  ? c->ca_path
			  : env2("BEACON_CAPATH", "CONSUL_CAPATH");
	cfg.client_cert = c->client_cert != NULL ? c->client_cert
						 : env2("BEACON_CLIENT_CERT",
							"CONSUL_CLIENT_CERT");
	cfg.client_key = c->client_key != NULL
			     ? c->client_key
			     : env2("BEACON_CLIENT_KEY", "CONSUL_CLIENT_KEY");
	cfg.tls_server_name =
	    c->tls_server_name != NULL
		? c->tls_server_name
		: env2("BEACON_TLS_SERVER_NAME", "CONSUL_TLS_SERVER_NAME");
	verify = env2("BEACON_HTTP_SSL_VERIFY", "CONSUL_HTTP_SSL_VERIFY");
	cfg.tls_skip_verify = c->tls_skip_verify;
	if (verify != NULL) {
		bool v = true;
		if (cli_parse_bool(verify, &v) && !v)
			cfg.tls_skip_verify = true;
	}
	cfg.datacenter = c->datacenter;
	cfg.consistency =
	    c->stale ? BEACON_CONSISTENCY_STALE : BEACON_CONSISTENCY_DEFAULT;
	cfg.timeout_ms =
	    (unsigned)(c->timeout_ms > 0 ? c->timeout_ms : timeout_ms);
	/* One command, one pass over the servers: no back-off to honour. */
	cfg.backoff_min_ms = 0;
	cfg.backoff_max_ms = 0;
	rc = beacon_new(&c->b, &cfg, err);
	if (rc != 0) {
		if (rc == BEACON_EINVAL)
			return cli_usage(NULL, "%s", err);
		return cli_fail(rc, NULL, "%s", err[0] ? err : "libbeacon");
	}
	return 0;
}

void cli_print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(4) | JSON_ENCODE_ANY);

	if (s != NULL) {
		fputs(s, stdout);
		fputc('\n', stdout);
		beacon__json_free(s);
	}
	json_decref(j);
}

int cli_get_json(struct cli *c, const char *path, const char *query,
		 json_t **out, struct beacon_meta *m)
{
	struct beacon_req req = {.path = path, .query = query};
	json_error_t jerr;
	char *body = NULL;
	size_t len;
	int rc = beacon_request(c->b, &req, &body, &len, m);

	*out = NULL;
	if (rc == 0) {
		*out = json_loadb(body, len, JSON_DECODE_ANY, &jerr);
		if (*out == NULL) {
			snprintf(m->error, sizeof m->error,
				 "bad JSON from the server: %s", jerr.text);
			rc = BEACON_EPROTO;
		}
	}
	free(body);
	return rc;
}

int cli_read_data(const char *arg, char **out, size_t *len)
{
	int fd;

	if (strcmp(arg, "-") == 0) {
		if (cli_read_fd(0, out, len) != 0) {
			fprintf(stderr, "Error! Cannot read stdin: %s\n",
				strerror(errno));
			return CLI_FAIL;
		}
		return 0;
	}
	if (arg[0] != '@') {
		*out = strdup(arg);
		*len = strlen(arg);
		return *out != NULL ? 0 : CLI_FAIL;
	}
	fd = open(arg + 1, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || cli_read_fd(fd, out, len) != 0) {
		fprintf(stderr, "Error! Cannot read %s: %s\n", arg + 1,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return CLI_FAIL;
	}
	close(fd);
	return 0;
}

/* ---- tables ------------------------------------------------------------- */

void cli_table_init(struct cli_table *t, size_t cols)
{
	t->cells = NULL;
	t->cols = cols;
	t->n = 0;
}

void cli_table_row(struct cli_table *t, ...)
{
	char **nc = realloc(t->cells, (t->n + 1) * t->cols * sizeof *nc);
	va_list ap;

	if (nc == NULL)
		return;
	t->cells = nc;
	va_start(ap, t);
	for (size_t i = 0; i < t->cols; i++) {
		const char *s = va_arg(ap, const char *);
		t->cells[t->n * t->cols + i] = strdup(s != NULL ? s : "");
	}
	va_end(ap);
	t->n++;
}

void cli_table_print(struct cli_table *t)
{
	size_t *w = calloc(t->cols, sizeof *w);

	if (w == NULL)
		return;
	for (size_t r = 0; r < t->n; r++)
		for (size_t i = 0; i < t->cols; i++) {
			const char *s = t->cells[r * t->cols + i];
			size_t l = s != NULL ? strlen(s) : 0;
			if (l > w[i])
				w[i] = l;
		}
	for (size_t r = 0; r < t->n; r++) {
		size_t last = t->cols;
		/* No trailing blanks: stop after the last non-empty cell. */
		while (last > 1 &&
		       (t->cells[r * t->cols + last - 1] == NULL ||
			t->cells[r * t->cols + last - 1][0] == '\0'))
			last--;
		for (size_t i = 0; i < last; i++) {
			const char *s = t->cells[r * t->cols + i];
			s = s != NULL ? s : "";
			if (i + 1 < last)
				printf("%-*s  ", (int)w[i], s);
			else
				printf("%s", s);
		}
		putchar('\n');
	}
	free(w);
}

void cli_table_close(struct cli_table *t)
{
	for (size_t i = 0; i < t->n * t->cols; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->n = 0;
}

/* ---- dispatch ----------------------------------------------------------- */

static int cli_version(struct cli *c, int argc, char **argv)
{
	int pos, rc;

	if (!cli_parse(c, NULL, 0, argc, argv, &pos, &rc))
		return rc;
	if (c->json)
		cli_print_json(json_pack("{s:s}", "Version", BEACON_VERSION));
	else
		printf("Beacon v%s\n", BEACON_VERSION);
	return CLI_OK;
}

/* How many words of @name match @argv (0 if not all of them do). */
static int match_words(const char *name, int argc, char **argv)
{
	int w = 0;

	while (*name != '\0') {
		size_t l = strcspn(name, " ");
		if (w >= argc || strlen(argv[w]) != l ||
		    strncmp(argv[w], name, l) != 0)
			return 0;
		w++;
		name += l + (name[l] == ' ');
	}
	return w;
}

/* True if @argv[0..argc) are the first words of some command. */
static bool is_group(int argc, char **argv, const char **what)
{
	for (size_t i = 0; i < N_COMMANDS; i++) {
		const char *name = commands[i].name;
		int w = 0;
		for (; w < argc; w++) {
			size_t l = strcspn(name, " ");
			if (name[l] != ' ' || strlen(argv[w]) != l ||
			    strncmp(argv[w], name, l) != 0)
				break;
			name += l + 1;
		}
		if (w == argc && argc > 0) {
			*what = commands[i].name;
			return true;
		}
	}
	return false;
}

static void usage(FILE *f, const char *group, size_t glen)
{
	fprintf(f,
		"Usage: beacon [HTTP options] %.*s%sCOMMAND [options] "
		"[args]\n\n",
		(int)glen, group != NULL ? group : "", glen > 0 ? " " : "");
	fprintf(f, "Commands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++) {
		if (group != NULL && (strncmp(commands[i].name, group, glen) ||
				      commands[i].name[glen] != ' '))
			continue;
		fprintf(f, "  %-30s %s\n", commands[i].name,
			commands[i].summary);
	}
	fprintf(f, "\nbeacon COMMAND -h shows the options of a command.\n"
		   "Exit codes: 0 success; 1 not found, check-and-set failed "
		   "or refused;\n2 usage error or no server answered.\n");
}

int main(int argc, char **argv)
{
	struct cli c;
	struct cli_flag common[N_COMMON];
	const struct cli_cmd *best = NULL;
	const char *group, *help_argv[] = {"-h", NULL};
	char err[256];
	bool help = false;
	int words = 0, pos, rc;

	memset(&c, 0, sizeof c);
	/* A handler or editor that exits early must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	argc--;
	argv++;
	/* HTTP options may come before the command too. */
	pos = cli_flags_parse(common, common_flags(&c, common), argc, argv, err,
			      sizeof err);
	if (pos == CLI_FLAGS_HELP) {
		usage(stdout, NULL, 0);
		return CLI_OK;
	}
	if (pos == CLI_FLAGS_ERROR)
		return cli_usage(NULL, "%s", err);
	argc -= pos;
	argv += pos;
	if (argc == 0) {
		usage(stderr, NULL, 0);
		return CLI_USAGE;
	}
	if (strcmp(argv[0], "help") == 0 || strcmp(argv[0], "--version") == 0 ||
	    strcmp(argv[0], "-version") == 0) {
		if (argv[0][0] == '-') {
			printf("Beacon v%s\n", BEACON_VERSION);
			return CLI_OK;
		}
		argc--;
		argv++;
		help = true;
		if (argc == 0) {
			usage(stdout, NULL, 0);
			return CLI_OK;
		}
	}
	for (size_t i = 0; i < N_COMMANDS; i++) {
		int w = match_words(commands[i].name, argc, argv);
		if (w > words) {
			words = w;
			best = &commands[i];
		}
	}
	if (best == NULL) {
		int g = argc;
		/* The longest run of leading words that names a group. */
		while (g > 0 && !is_group(g, argv, &group))
			g--;
		if (g > 0) {
			size_t glen = 0;
			for (int i = 0; i < g; i++)
				glen += strlen(argv[i]) + (i > 0);
			usage(help ? stdout : stderr, group, glen);
			return help ? CLI_OK : CLI_USAGE;
		}
		fprintf(stderr, "Error! Unknown command: %s\n\n", argv[0]);
		usage(stderr, NULL, 0);
		return CLI_USAGE;
	}
	c.cmd = best;
	if (help)
		rc = best->run(&c, 1, (char **)help_argv);
	else
		rc = best->run(&c, argc - words, argv + words);
	beacon_free(c.b);
	free(c.token_buf);
	fflush(stdout);
	return rc;
}
