/* The beacon CLI: shared declarations of client/cli*.c.
 *
 * Commands are rows of one table (cli.c: `commands[]`), each a function
 * that parses its own flags (Go's flag syntax, as Consul's CLI: -name,
 * --name, -name=value, -name value, bool flags without a value, parsing
 * stops at the first argument that is not a flag or after "--") with the
 * HTTP flags every command shares, then talks to the cluster through
 * libbeacon.
 *
 * Exit codes: 0 success; 1 not found, CAS failed, or refused by the
 * server; 2 usage error, or no server could answer. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/beacon.h"

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

enum cli_flag_type {
	CLI_BOOL,     /* bool * */
	CLI_STR,      /* const char ** (points into argv) */
	CLI_U64,      /* uint64_t * */
	CLI_LIST,     /* struct cli_list *: repeatable */
	CLI_DURATION, /* uint64_t * in ms, Go syntax ("10s", "1m30s") */
};

struct cli_flag {
	const char *name; /* without dashes */
	enum cli_flag_type type;
	void *ptr;
	bool *set;	 /* may be NULL: becomes true when the flag is given */
	const char *arg; /* value name in the help ("N"), NULL for bools */
	const char *help;
};

/* The values of a repeatable flag: pointers into argv. */
struct cli_list {
	const char **v; /* malloc'd */
	size_t n;
};

#define CLI_FLAGS_HELP	(-2) /* -h, -help or --help was given */
#define CLI_FLAGS_ERROR (-1) /* message in @err */

/* Parse the flags at the front of @argv[0..argc) against @flags[0..n).
 * Returns the index of the first positional argument (after a "--" if
 * that ended the flags), CLI_FLAGS_HELP, or CLI_FLAGS_ERROR with a
 * message in @err (@errlen bytes). Lists must be freed with
 * cli_list_free() whatever the result. */
int cli_flags_parse(const struct cli_flag *flags, size_t n, int argc,
		    char **argv, char *err, size_t errlen);
void cli_list_free(struct cli_list *l);
/* Go's strconv.ParseBool. Returns false if @s is not a boolean. */
bool cli_parse_bool(const char *s, bool *out);

struct cli;

struct cli_cmd {
	const char *name; /* words: "kv get" */
	int (*run)(struct cli *c, int argc, char **argv);
	const char *args;    /* synopsis after the name */
	const char *summary; /* one line */
	const char *help;    /* more lines, or NULL */
};

/* Options every command takes, and the client made from them. */
struct cli {
	const struct cli_cmd *cmd;
	const char *http_addr, *token, *token_file;
	const char *ca_file, *ca_path, *client_cert, *client_key;
	const char *tls_server_name, *datacenter, *format;
	bool tls_skip_verify, stale;
	uint64_t timeout_ms; /* 0: the command's default */
	bool json;	     /* -format=json */
	char *token_buf;     /* read from the token file */
	struct beacon *b;
};

/* Parse @argv: the command's @flags, then the common ones. Returns true to
 * go on with the positional arguments at *@pos; false with *@rc the exit
 * code (help printed: 0; bad flags: 2). */
bool cli_parse(struct cli *c, const struct cli_flag *flags, size_t n, int argc,
	       char **argv, int *pos, int *rc);
/* Make c->b from the options. Returns 0 or an exit code (message
 * printed). @timeout_ms: the default for this command. */
int cli_connect(struct cli *c, uint64_t timeout_ms);
/* Print "Error! <message>" and the server's detail to stderr; return the
 * exit code for libbeacon code @rc. */
int cli_fail(int rc, const struct beacon_meta *m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Print a usage error; returns CLI_USAGE. */
int cli_usage(struct cli *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The exit code of libbeacon code @rc. */
int cli_exit_code(int rc);
/* Print @j (stolen) as indented JSON and a newline. */
void cli_print_json(json_t *j);
/* GET @path?@query (escaped) and parse the JSON answer into *@out.
 * Returns a libbeacon code; on failure *@out is NULL. */
int cli_get_json(struct cli *c, const char *path, const char *query,
		 json_t **out, struct beacon_meta *m);
/* Read DATA as Consul's CLI does: "-" is stdin, "@file" a file, anything
 * else itself. *@out is malloc'd (free()), NUL-terminated. Returns 0 or
 * prints an error and returns an exit code. */
int cli_read_data(const char *arg, char **out, size_t *len);
/* Read all of @fd. 0 or -1. */
int cli_read_fd(int fd, char **out, size_t *len);

/* A table printed in aligned columns, two spaces apart. */
struct cli_table {
	char **cells; /* malloc'd strings, row-major */
	size_t cols, n;
};
void cli_table_init(struct cli_table *t, size_t cols);
/* Add a row of @t->cols strings (copied; NULL prints as ""). */
void cli_table_row(struct cli_table *t, ...);
void cli_table_print(struct cli_table *t);
void cli_table_close(struct cli_table *t);

/* Commands. */
int cli_kv_get(struct cli *c, int argc, char **argv);
int cli_kv_put(struct cli *c, int argc, char **argv);
int cli_kv_delete(struct cli *c, int argc, char **argv);
int cli_kv_export(struct cli *c, int argc, char **argv);
int cli_kv_import(struct cli *c, int argc, char **argv);
int cli_kv_edit(struct cli *c, int argc, char **argv);
int cli_watch(struct cli *c, int argc, char **argv);
int cli_exec(struct cli *c, int argc, char **argv);
int cli_services(struct cli *c, int argc, char **argv);
int cli_catalog_nodes(struct cli *c, int argc, char **argv);
int cli_catalog_dcs(struct cli *c, int argc, char **argv);
int cli_health(struct cli *c, int argc, char **argv);
int cli_register(struct cli *c, int argc, char **argv);
int cli_deregister(struct cli *c, int argc, char **argv);
int cli_check(struct cli *c, int argc, char **argv);
/* cli_security.c */
int cli_keygen(struct cli *c, int argc, char **argv);
int cli_secret(struct cli *c, int argc, char **argv);
int cli_acl(struct cli *c, int argc, char **argv);
int cli_session(struct cli *c, int argc, char **argv);
int cli_lock(struct cli *c, int argc, char **argv);
int cli_members(struct cli *c, int argc, char **argv);
int cli_raft_list_peers(struct cli *c, int argc, char **argv);
int cli_raft_remove_peer(struct cli *c, int argc, char **argv);
int cli_raft_transfer(struct cli *c, int argc, char **argv);
int cli_snapshot_save(struct cli *c, int argc, char **argv);
int cli_snapshot_restore(struct cli *c, int argc, char **argv);
int cli_snapshot_inspect(struct cli *c, int argc, char **argv);

/* Exec's environment from a KV answer (pure, in cli_flags.c for the unit
 * tests): every key under @prefix becomes NAME=value, NAME being the rest
 * of the key with each byte outside [A-Za-z0-9_] made '_' (and upper-cased
 * if @upcase; '_' put in front of a leading digit). Keys that end in '/'
 * and empty names are skipped; a later duplicate name wins. Returns a
 * malloc'd, sorted, NULL-terminated array of malloc'd strings (free with
 * cli_env_free()), or NULL on OOM or a malformed answer. */
char **cli_env_from_kv(const char *json, size_t len, const char *prefix,
		       bool upcase);
void cli_env_free(char **env);
/* True if the two environments are the same. */
bool cli_env_equal(char *const *a, char *const *b);
