/* beacon watch and beacon exec: both ride on libbeacon's watches (one
 * thread running blocking queries, calling back only on a change of
 * content) while the main thread waits for signals.
 *
 * Signals are blocked in every thread before the watch starts; the main
 * thread takes them with sigwait() (watch) or a signalfd (exec), and every
 * child starts with an empty mask and default dispositions. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/cli.h"
#include "client/client_int.h"

extern char **environ;

static const int handled[] = {SIGINT,  SIGTERM, SIGHUP, SIGQUIT,
			      SIGUSR1, SIGUSR2, SIGCHLD};

static void handled_set(sigset_t *s)
{
	sigemptyset(s);
	for (size_t i = 0; i < N_OF(handled); i++)
		sigaddset(s, handled[i]);
}

/* Spawn attributes for a child: no blocked signals, default actions. */
static void child_attr(posix_spawnattr_t *a)
{
	sigset_t none, def;

	posix_spawnattr_init(a);
	sigemptyset(&none);
	handled_set(&def);
	sigaddset(&def, SIGPIPE);
	posix_spawnattr_setsigmask(a, &none);
	posix_spawnattr_setsigdefault(a, &def);
	posix_spawnattr_setflags(a, POSIX_SPAWN_SETSIGMASK |
					POSIX_SPAWN_SETSIGDEF);
}

/* environ without the variables named in @extra, then @extra. Returns a
 * malloc'd array of borrowed pointers. */
static char **merge_env(char *const *extra)
{
	size_t n = 0, k = 0, o = 0;
	char **env;

	while (environ[n] != NULL)
		n++;
	while (extra[k] != NULL)
		k++;
	env = calloc(n + k + 1, sizeof *env);
	if (env == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		size_t nl = strcspn(environ[i], "=");
		bool shadowed = false;
		for (size_t j = 0; j < k && !shadowed; j++)
			shadowed = strncmp(extra[j], environ[i], nl + 1) == 0;
		if (!shadowed)
			env[o++] = environ[i];
	}
	for (size_t j = 0; j < k; j++)
		env[o++] = extra[j];
	return env;
}

static int wait_child(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- watch ----------------------------------------------------------------
 */

struct watch_run {
	char **argv; /* handler, or NULL to print */
	char *cmd;   /* -shell: the handler words joined */
	bool shell;
};

static void run_handler(struct watch_run *w,
			const struct beacon_watch_event *ev)
{
	char idx[2][48], *extra[3], **env, *sh[4];
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	const char *p = ev->body;
	size_t left = ev->len;
	pid_t pid;
	int fds[2], rc, st;

	snprintf(idx[0], sizeof idx[0], "BEACON_INDEX=%" PRIu64, ev->index);
	snprintf(idx[1], sizeof idx[1], "CONSUL_INDEX=%" PRIu64, ev->index);
	extra[0] = idx[0];
	extra[1] = idx[1];
	extra[2] = NULL;
	env = merge_env(extra);
	if (env == NULL || pipe2(fds, O_CLOEXEC) != 0) {
		fprintf(stderr, "beacon watch: cannot run the handler: %s\n",
			strerror(errno));
		free(env);
		return;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[0], 0);
	child_attr(&attr);
	sh[0] = "sh";
	sh[1] = "-c";
	sh[2] = w->cmd;
	sh[3] = NULL;
	rc = w->shell
		 ? posix_spawn(&pid, "/bin/sh", &fa, &attr, sh, env)
		 : posix_spawnp(&pid, w->argv[0], &fa, &attr, w->argv, env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	free(env);
	close(fds[0]);
	if (rc != 0) {
		close(fds[1]);
		fprintf(stderr, "beacon watch: cannot run %s: %s\n",
			w->shell ? w->cmd : w->argv[0], strerror(rc));
		return;
	}
	/* The handler may not read it all: EPIPE (SIGPIPE is ignored). */
	while (left > 0) {
		ssize_t n = write(fds[1], p, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		p += n;
		left -= (size_t)n;
	}
	close(fds[1]);
	st = wait_child(pid);
	if (st != 0)
		fprintf(stderr,
			"beacon watch: the handler exited with status %d\n",
			st);
}

static void on_change(void *data, const struct beacon_watch_event *ev)
{
	struct watch_run *w = data;

	if (w->argv == NULL) {
		json_t *j =
		    json_loadb(ev->body, ev->len, JSON_DECODE_ANY, NULL);
		if (j != NULL)
			cli_print_json(j);
		else
			printf("%.*s\n", (int)ev->len, ev->body);
		fflush(stdout);
		return;
	}
	run_handler(w, ev);
}

static char *join_words(int argc, char **argv)
{
	size_t n = 1;
	char *s;

	for (int i = 0; i < argc; i++)
		n += strlen(argv[i]) + 1;
	s = malloc(n);
	if (s == NULL)
		return NULL;
	s[0] = '\0';
	for (int i = 0; i < argc; i++) {
		if (i > 0)
			strcat(s, " ");
		strcat(s, argv[i]);
	}
	return s;
}

int cli_watch(struct cli *c, int argc, char **argv)
{
	const char *type = NULL, *key = NULL, *prefix = NULL, *service = NULL;
	const char *tag = NULL, *state = NULL;
	bool passing = false, fire = false, shell = true, prefix_set = false;
	uint64_t wait_ms = 0;
	struct cli_flag flags[] = {
	    {"type", CLI_STR, &type, NULL, "TYPE",
	     "key, keyprefix, service, services, nodes or checks"},
	    {"key", CLI_STR, &key, NULL, "KEY", "the key (-type key)"},
	    {"prefix", CLI_STR, &prefix, &prefix_set, "PREFIX",
	     "the prefix (-type keyprefix)"},
	    {"service", CLI_STR, &service, NULL, "NAME",
	     "the service (-type service; -type checks)"},
	    {"tag", CLI_STR, &tag, NULL, "TAG", "only instances with this tag"},
	    {"passingonly", CLI_BOOL, &passing, NULL, NULL,
	     "only instances whose checks pass"},
	    {"state", CLI_STR, &state, NULL, "STATE",
	     "-type checks without -service: any, passing, warning, critical"},
	    {"fire-on-start", CLI_BOOL, &fire, NULL, NULL,
	     "also run the handler for the first result"},
	    {"shell", CLI_BOOL, &shell, NULL, NULL,
	     "run the handler through sh -c (default true)"},
	    {"wait", CLI_DURATION, &wait_ms, NULL, "DURATION",
	     "how long each blocking query may wait (default 5m)"},
	};
	struct beacon_watch_spec spec = {0};
	struct watch_run w = {0};
	struct beacon_watch *wt;
	sigset_t set;
	int pos, rc, sig;

	if (!cli_parse(c, flags, N_OF(flags), argc, argv, &pos, &rc))
		return rc;
	argc -= pos;
	argv += pos;
	if (type == NULL)
		return cli_usage(c, "Missing -type");
	if (strcmp(type, "key") == 0) {
		spec.type = BEACON_WATCH_KEY;
		spec.key = key;
		if (key == NULL || key[0] == '\0')
			return cli_usage(c, "-type key needs -key");
	} else if (strcmp(type, "keyprefix") == 0) {
		spec.type = BEACON_WATCH_KEYPREFIX;
		spec.key = prefix;
		if (!prefix_set)
			return cli_usage(c, "-type keyprefix needs -prefix");
	} else if (strcmp(type, "service") == 0) {
		spec.type = BEACON_WATCH_SERVICE;
		spec.key = service;
		if (service == NULL || service[0] == '\0')
			return cli_usage(c, "-type service needs -service");
	} else if (strcmp(type, "services") == 0) {
		spec.type = BEACON_WATCH_SERVICES;
	} else if (strcmp(type, "nodes") == 0) {
		spec.type = BEACON_WATCH_NODES;
	} else if (strcmp(type, "checks") == 0) {
		spec.type = BEACON_WATCH_CHECKS;
		spec.key = service;
		spec.state = state;
		if (service != NULL && state != NULL)
			return cli_usage(c, "-service and -state exclude each "
					    "other");
	} else {
		return cli_usage(c, "Unknown -type %s", type);
	}
	spec.tag = tag;
	spec.passing_only = passing;
	spec.fire_on_start = fire;
	spec.wait_ms = (unsigned)(wait_ms > 0 ? wait_ms : 300000);
	if (argc > 0) {
		w.argv = argv;
		w.shell = shell;
		if (shell && (w.cmd = join_words(argc, argv)) == NULL)
			return CLI_FAIL;
	}
	rc = cli_connect(c, 10000);
	if (rc != 0)
		goto out;
	/* Block the signals before the watch thread exists, so that it
	 * inherits the mask and only sigwait() below takes them. */
	handled_set(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	/* Back-off for a long-running watch (cli_connect() sets none). */
	c->b->backoff_min_ms = 250;
	c->b->backoff_max_ms = 10000;
	rc = beacon_watch_start(c->b, &spec, on_change, &w, &wt);
	if (rc != 0) {
		rc = cli_fail(rc, NULL, "Cannot start the watch");
		goto out;
	}
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP ||
		    sig == SIGQUIT)
			break;
	}
	beacon_watch_stop(wt);
	rc = CLI_OK;
out:
	free(w.cmd);
	return rc;
}

/* ---- exec -----------------------------------------------------------------
 */

static const struct {
	const char *name;
	int sig;
} signames[] = {
    {"HUP", SIGHUP},	 {"INT", SIGINT},   {"QUIT", SIGQUIT},
    {"KILL", SIGKILL},	 {"USR1", SIGUSR1}, {"USR2", SIGUSR2},
    {"TERM", SIGTERM},	 {"CONT", SIGCONT}, {"STOP", SIGSTOP},
    {"WINCH", SIGWINCH},
};

static int parse_signal(const char *s)
{
	char *end;
	long n;

	if (strncmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; i < N_OF(signames); i++)
		if (strcasecmp(s, signames[i].name) == 0)
			return signames[i].sig;
	n = strtol(s, &end, 10);
	return *s != '\0' && *end == '\0' && n > 0 && n < 65 ? (int)n : -1;
}

struct exec_run {
	pthread_mutex_t mu;
	char **pending; /* the newest environment, from the watch */
	const char *prefix;
	bool upcase;
	int notify; /* write end of the pipe to the main thread */
};

static void on_config(void *data, const struct beacon_watch_event *ev)
{
	struct exec_run *x = data;
	char **env = cli_env_from_kv(ev->body, ev->len, x->prefix, x->upcase);
	ssize_t n;

	if (env == NULL) {
		fprintf(stderr, "beacon exec: cannot read the configuration\n");
		return;
	}
	pthread_mutex_lock(&x->mu);
	cli_env_free(x->pending);
	x->pending = env;
	pthread_mutex_unlock(&x->mu);
	do
		n = write(x->notify, "x", 1);
	while (n < 0 && errno == EINTR);
}

static int spawn_child(char **argv, char *const *conf, pid_t *pid)
{
	posix_spawnattr_t attr;
	char **env = merge_env(conf);
	int rc;

	if (env == NULL)
		return ENOMEM;
	child_attr(&attr);
	rc = posix_spawnp(pid, argv[0], NULL, &attr, argv, env);
	posix_spawnattr_destroy(&attr);
	free(env);
	return rc;
}

/* Stop @pid: @sig, then SIGKILL after @timeout_ms. Returns its status.
 * @sfd delivers SIGCHLD (and the other handled signals, which are
 * forwarded meanwhile). */
static int stop_child(pid_t pid, int sig, uint64_t timeout_ms, int sfd)
{
	uint64_t end = beacon__now_ms() + timeout_ms;
	int st;

	kill(pid, sig);
	for (;;) {
		struct pollfd p = {.fd = sfd, .events = POLLIN};
		struct signalfd_siginfo si;
		uint64_t now = beacon__now_ms();
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st)
					     : 128 + WTERMSIG(st);
		if (now >= end) {
			kill(pid, SIGKILL);
			return wait_child(pid);
		}
		if (poll(&p, 1, (int)(end - now)) > 0 &&
		    read(sfd, &si, sizeof si) == sizeof si &&
		    si.ssi_signo != SIGCHLD)
			kill(pid, (int)si.ssi_signo);
	}
}

static char **initial_env(struct cli *c, const char *prefix, bool upcase,
			  int *rc)
{
	struct beacon_meta m = {0};
	struct beacon_req req = {.query = "recurse"};
	char *esc = beacon_escape(prefix), *path, *body = NULL, **env;
	size_t len = 0, n;

	path = esc != NULL ? malloc(strlen(esc) + 8) : NULL;
	if (path == NULL) {
		free(esc);
		*rc = CLI_FAIL;
		return NULL;
	}
	n = strlen(esc) + 8;
	snprintf(path, n, "/v1/kv/%s", esc);
	req.path = path;
	*rc = beacon_request(c->b, &req, &body, &len, &m);
	free(esc);
	free(path);
	if (*rc != 0 && *rc != BEACON_ENOTFOUND) {
		free(body);
		*rc = cli_fail(*rc, &m, "Cannot read %s", prefix);
		return NULL;
	}
	env = *rc == BEACON_ENOTFOUND
		  ? cli_env_from_kv("[]", 2, prefix, upcase)
		  : cli_env_from_kv(body, len, prefix, upcase);
	free(body);
	*rc = env != NULL ? 0 : CLI_FAIL;
	if (env == NULL)
		fprintf(stderr, "Error! Cannot read the keys under %s\n",
			prefix);
	return env;
}

int cli_exec(struct cli *c, int argc, char **argv)
{
	const char *prefix = NULL, *reload = NULL, *killsig = "TERM";
	bool upcase = true;
	uint64_t kill_timeout = 5000, wait_ms = 0;
	struct cli_flag flags[] = {
	    {"prefix", CLI_STR, &prefix, NULL, "PREFIX",
	     "the keys to put in the environment"},
	    {"signal", CLI_STR, &reload, NULL, "SIGNAL",
	     "on a change, send this signal instead of restarting"},
	    {"kill-signal", CLI_STR, &killsig, NULL, "SIGNAL",
	     "signal that stops the command for a restart (default TERM)"},
	    {"kill-timeout", CLI_DURATION, &kill_timeout, NULL, "DURATION",
	     "then SIGKILL after this long (default 5s)"},
	    {"upcase", CLI_BOOL, &upcase, NULL, NULL,
	     "upper-case the variable names (default true)"},
	    {"wait", CLI_DURATION, &wait_ms, NULL, "DURATION",
	     "how long each blocking query may wait (default 5m)"},
	};
	struct beacon_watch_spec spec = {.type = BEACON_WATCH_KEYPREFIX,
					 .fire_on_start = true};
	struct exec_run x = {.notify = -1};
	struct beacon_watch *wt = NULL;
	char **current = NULL;
	int pos, rc, ksig, rsig = 0, sfd = -1, fds[2] = {-1, -1};
	sigset_t set;
	pid_t child;

	if (!cli_parse(c, flags, N_OF(flags), argc, argv, &pos, &rc))
		return rc;
	argc -= pos;
	argv += pos;
	if (prefix == NULL)
		return cli_usage(c, "Missing -prefix");
	if (argc == 0)
		return cli_usage(c, "Missing the command to run");
	ksig = parse_signal(killsig);
	if (ksig < 0)
		return cli_usage(c, "Unknown signal %s", killsig);
	if (reload != NULL && (rsig = parse_signal(reload)) < 0)
		return cli_usage(c, "Unknown signal %s", reload);
	if ((rc = cli_connect(c, 10000)) != 0)
		return rc;
	c->b->backoff_min_ms = 250;
	c->b->backoff_max_ms = 10000;
	current = initial_env(c, prefix, upcase, &rc);
	if (current == NULL)
		return rc;
	handled_set(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sfd < 0 || pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
		rc = cli_fail(BEACON_EIO, NULL, "signalfd/pipe: %s",
			      strerror(errno));
		goto out;
	}
	rc = spawn_child(argv, current, &child);
	if (rc != 0) {
		fprintf(stderr, "Error! Cannot run %s: %s\n", argv[0],
			strerror(rc));
		rc = CLI_FAIL;
		goto out;
	}
	pthread_mutex_init(&x.mu, NULL);
	x.prefix = prefix;
	x.upcase = upcase;
	x.notify = fds[1];
	spec.key = prefix;
	spec.wait_ms = (unsigned)(wait_ms > 0 ? wait_ms : 300000);
	rc = beacon_watch_start(c->b, &spec, on_config, &x, &wt);
	if (rc != 0) {
		kill(child, ksig);
		wait_child(child);
		rc = cli_fail(rc, NULL, "Cannot start the watch");
		goto out_mu;
	}
	for (;;) {
		struct pollfd p[2] = {{.fd = sfd, .events = POLLIN},
				      {.fd = fds[0], .events = POLLIN}};
		struct signalfd_siginfo si;
		char **env;
		char drain[64];
		int st;

		if (poll(p, 2, -1) < 0)
			continue;
		if ((p[0].revents & POLLIN) &&
		    read(sfd, &si, sizeof si) == sizeof si) {
			if (si.ssi_signo != SIGCHLD) {
				kill(child, (int)si.ssi_signo);
			} else if (waitpid(child, &st, WNOHANG) == child) {
				rc = WIFEXITED(st) ? WEXITSTATUS(st)
						   : 128 + WTERMSIG(st);
				break;
			}
		}
		if (!(p[1].revents & POLLIN))
			continue;
		while (read(fds[0], drain, sizeof drain) > 0)
			;
		pthread_mutex_lock(&x.mu);
		env = x.pending;
		x.pending = NULL;
		pthread_mutex_unlock(&x.mu);
		if (env == NULL || cli_env_equal(env, current)) {
			cli_env_free(env);
			continue;
		}
		cli_env_free(current);
		current = env;
		if (rsig > 0) {
			fprintf(stderr,
				"beacon exec: configuration changed; "
				"sending signal %d\n",
				rsig);
			kill(child, rsig);
			continue;
		}
		fprintf(stderr,
			"beacon exec: configuration changed; restarting %s\n",
			argv[0]);
		stop_child(child, ksig, kill_timeout, sfd);
		rc = spawn_child(argv, current, &child);
		if (rc != 0) {
			fprintf(stderr, "Error! Cannot run %s: %s\n", argv[0],
				strerror(rc));
			rc = CLI_FAIL;
			break;
		}
	}
	beacon_watch_stop(wt);
out_mu:
	cli_env_free(x.pending);
	pthread_mutex_destroy(&x.mu);
out:
	cli_env_free(current);
	if (sfd >= 0)
		close(sfd);
	if (fds[0] >= 0) {
		close(fds[0]);
		close(fds[1]);
	}
	return rc;
}
