/* The client object and its HTTP requests: server list, failover, back-off,
 * timeouts, the read cache.
 *
 * Happy path: beacon__send() takes the server that answered last, sends
 * the request through libcurl (an easy handle driven by its own multi
 * handle, so that a watch can be interrupted from another thread, and so
 * that connections stay open between requests), and returns the answer.
 *
 * Failure modes:
 *  - a server that cannot be reached, times out, or says it has no leader
 *    (500 "No cluster leader", 502-504) is marked failed and skipped for a
 *    back-off that doubles with each consecutive failure (jittered, capped);
 *    the next server is tried at once. A success clears its count.
 *  - a write (not GET, no BEACON_REQ_RETRY) goes to another server only if
 *    nothing was sent (connect failed) or the server said it has no leader
 *    (it proposed nothing); otherwise its outcome is unknown and the call
 *    fails without retrying.
 *  - when every server is failed or in back-off, the call fails at once with
 *    BEACON_EUNAVAILABLE: an application in an outage gets its cached reads
 *    without waiting on timeouts, and a watch sleeps until the first
 *    back-off ends.
 *  - every attempt has a timeout; a non-blocking call as a whole too
 *    (timeout_ms across all servers). */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/client_int.h"

#define POOL_MAX 8

/* ---- configuration and life cycle -------------------------------------- */

BEACON_API void beacon_config_init(struct beacon_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->timeout_ms = 5000;
	cfg->connect_timeout_ms = 1000;
	cfg->backoff_min_ms = 100;
	cfg->backoff_max_ms = 10000;
	cfg->wait_ms = 30000;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_ALL);
}

static bool env_true(const char *name)
{
	const char *v = getenv(name);

	return v != NULL &&
	       (strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0 ||
		strcasecmp(v, "t") == 0);
}

static const char *env_or(const char *a, const char *b)
{
	const char *v = getenv(a);

	if (v != NULL && v[0] != '\0')
		return v;
	v = b != NULL ? getenv(b) : NULL;
	return v != NULL && v[0] != '\0' ? v : NULL;
}

/* mkdir -p @path, mode 0700 for what it creates. */
static int mkdirs(const char *path)
{
	char *p = beacon__strdup(path);
	int rc = 0;

	if (p == NULL)
		return BEACON_ENOMEM;
	for (char *s = p + 1; rc == 0; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;
		*s = '\0';
		if (mkdir(p, 0700) != 0 && errno != EEXIST)
			rc = BEACON_EIO;
		*s = c;
		if (c == '\0')
			break;
	}
	free(p);
	return rc;
}

/* Split "scheme://host:port" (as beacon__addr_parse makes it). */
static void url_split(const char *url, const char **host, size_t *hlen,
		      const char **port)
{
	const char *h = strstr(url, "://") + 3;
	const char *colon = strrchr(h, ':');

	*host = h;
	*hlen = (size_t)(colon - h);
	*port = colon + 1;
}

static int server_init(struct beacon__server *s, char *url,
		       const char *tls_name)
{
	const char *host, *port;
	size_t hlen, n;

	s->url = url;
	if (tls_name == NULL || strncmp(url, "https://", 8) != 0) {
		s->req_url = beacon__strdup(url);
		return s->req_url == NULL ? BEACON_ENOMEM : 0;
	}
	/* Verify @tls_name: ask for it in the URL, connect to the address. */
	url_split(url, &host, &hlen, &port);
	n = strlen(tls_name) + strlen(port) + 16;
	s->req_url = malloc(n);
	s->connect_to = malloc(n + hlen + strlen(port) + 4);
	if (s->req_url == NULL || s->connect_to == NULL)
		return BEACON_ENOMEM;
	snprintf(s->req_url, n, "https://%s:%s", tls_name, port);
	snprintf(s->connect_to, n + hlen + strlen(port) + 4, "%s:%s:%.*s:%s",
		 tls_name, port, (int)hlen, host, port);
	return 0;
}

BEACON_API int beacon_new(struct beacon **out, const struct beacon_config *cfg,
			  char *errmsg)
{
	struct beacon_config defaults;
	struct beacon *b;
	char **urls = NULL;
	size_t n = 0;
	const char *addrs, *token;
	bool https = env_true("BEACON_HTTP_SSL") || env_true("CONSUL_HTTP_SSL");
	int rc;

	if (errmsg != NULL)
		errmsg[0] = '\0';
	if (cfg == NULL) {
		beacon_config_init(&defaults);
		cfg = &defaults;
	}
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK) {
		if (errmsg != NULL)
			snprintf(errmsg, BEACON_ERRMSG_LEN, "libcurl: %s",
				 curl_easy_strerror(curl_init_rc));
		return BEACON_ENOMEM;
	}
	addrs = cfg->addrs != NULL
		    ? cfg->addrs
		    : env_or("BEACON_HTTP_ADDR", "CONSUL_HTTP_ADDR");
	if (addrs == NULL)
		addrs = BEACON__DEFAULT_ADDR;
	rc = beacon__addrs_parse(addrs, https, &urls, &n, errmsg);
	if (rc != 0)
		return rc;
	b = calloc(1, sizeof *b);
	if (b == NULL) {
		beacon_strv_free(urls, n);
		return BEACON_ENOMEM;
	}
	pthread_mutex_init(&b->mu, NULL);
	b->servers = calloc(n, sizeof *b->servers);
	if (b->servers == NULL) {
		beacon_strv_free(urls, n);
		rc = BEACON_ENOMEM;
		goto err_free;
	}
	for (size_t i = 0; i < n; i++) {
		b->n_servers++;
		rc = server_init(&b->servers[i], urls[i], cfg->tls_server_name);
		urls[i] = NULL; /* owned by the server now */
		if (rc != 0) {
			beacon_strv_free(urls, n);
			goto err_free;
		}
	}
	free(urls);
	token = cfg->token != NULL
		    ? cfg->token
		    : env_or("BEACON_HTTP_TOKEN", "CONSUL_HTTP_TOKEN");
	b->token =
	    token != NULL && token[0] != '\0' ? beacon__strdup(token) : NULL;
	b->ca_file = beacon__strdup(cfg->ca_file);
	b->ca_path = beacon__strdup(cfg->ca_path);
	b->client_cert = beacon__strdup(cfg->client_cert);
	b->client_key = beacon__strdup(cfg->client_key);
	b->dc = beacon__strdup(cfg->datacenter);
	b->cache_dir = beacon__strdup(cfg->cache_dir);
	if ((token != NULL && token[0] != '\0' && b->token == NULL) ||
	    (cfg->ca_file != NULL && b->ca_file == NULL) ||
	    (cfg->ca_path != NULL && b->ca_path == NULL) ||
	    (cfg->client_cert != NULL && b->client_cert == NULL) ||
	    (cfg->client_key != NULL && b->client_key == NULL) ||
	    (cfg->datacenter != NULL && b->dc == NULL) ||
	    (cfg->cache_dir != NULL && b->cache_dir == NULL)) {
		rc = BEACON_ENOMEM;
		goto err_free;
	}
	b->tls_skip_verify = cfg->tls_skip_verify;
	b->consistency = cfg->consistency;
	b->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 5000;
	b->connect_timeout_ms =
	    cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 1000;
	if (b->connect_timeout_ms > b->timeout_ms)
		b->connect_timeout_ms = b->timeout_ms;
	b->backoff_min_ms = cfg->backoff_min_ms;
	b->backoff_max_ms = cfg->backoff_max_ms >= cfg->backoff_min_ms
				? cfg->backoff_max_ms
				: cfg->backoff_min_ms;
	b->wait_ms = cfg->wait_ms > 0 ? cfg->wait_ms : 30000;
	b->rng = ((uint64_t)beacon__wall_ms() << 20) ^ (uint64_t)getpid() ^
		 (uint64_t)(uintptr_t)b;
	if (b->rng == 0)
		b->rng = 1;
	if (b->cache_dir != NULL && mkdirs(b->cache_dir) != 0) {
		if (errmsg != NULL)
			snprintf(errmsg, BEACON_ERRMSG_LEN,
				 "cannot create the cache directory %s: %s",
				 b->cache_dir, strerror(errno));
		rc = BEACON_EIO;
		goto err_free;
	}
	*out = b;
	return 0;
err_free:
	beacon_free(b);
	return rc;
}

BEACON_API void beacon_free(struct beacon *b)
{
	if (b == NULL)
		return;
	for (size_t i = 0; i < b->n_servers; i++) {
		free(b->servers[i].url);
		free(b->servers[i].req_url);
		free(b->servers[i].connect_to);
	}
	free(b->servers);
	while (b->idle != NULL) {
		struct beacon__conn *c = b->idle;
		b->idle = c->next;
		beacon__conn_free(c);
	}
	for (size_t i = 0; i < b->n_rr; i++)
		free(b->rr[i].key);
	free(b->rr);
	free(b->token);
	free(b->ca_file);
	free(b->ca_path);
	free(b->client_cert);
	free(b->client_key);
	free(b->dc);
	free(b->cache_dir);
	pthread_mutex_destroy(&b->mu);
	free(b);
}

BEACON_API void beacon_strv_free(char **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* ---- addresses and back-off (pure) -------------------------------------- */

int beacon__addr_parse(const char *in, size_t n, bool https, char **url,
		       char *errmsg)
{
	const char *scheme = https ? "https" : "http";
	const char *host, *port = NULL, *sep;
	size_t hlen, plen = 0;
	unsigned long pv = 0;
	char *u;

	while (n > 0 && (*in == ' ' || *in == '\t')) {
		in++;
		n--;
	}
	while (n > 0 && (in[n - 1] == ' ' || in[n - 1] == '\t'))
		n--;
	sep = n >= 3 ? memmem(in, n, "://", 3) : NULL;
	if (sep != NULL) {
		size_t sl = (size_t)(sep - in);
		if (sl == 4 && strncasecmp(in, "http", 4) == 0)
			scheme = "http";
		else if (sl == 5 && strncasecmp(in, "https", 5) == 0)
			scheme = "https";
		else
			goto bad_scheme;
		n -= sl + 3;
		in = sep + 3;
	}
	while (n > 0 && in[n - 1] == '/')
		n--;
	for (size_t i = 0; i < n; i++)
		if (strchr("/?#@ \t\r\n", in[i]) != NULL || in[i] == '\0')
			goto bad;
	if (n > 0 && in[0] == '[') {
		const char *close = memchr(in, ']', n);
		if (close == NULL)
			goto bad;
		host = in;
		hlen = (size_t)(close - in) + 1;
		if (hlen < n) {
			if (in[hlen] != ':')
				goto bad;
			port = in + hlen + 1;
			plen = n - hlen - 1;
		}
	} else {
		const char *colon = memchr(in, ':', n);
		host = in;
		hlen = colon != NULL ? (size_t)(colon - in) : n;
		if (colon != NULL) {
			if (memchr(colon + 1, ':', n - hlen - 1) != NULL) {
				if (errmsg != NULL)
					snprintf(errmsg, BEACON_ERRMSG_LEN,
						 "bad server address \"%.*s\": "
						 "write IPv6 addresses in "
						 "brackets, [::1]:8500",
						 (int)n, in);
				return BEACON_EINVAL;
			}
			port = colon + 1;
			plen = n - hlen - 1;
		}
	}
	if (hlen == 0 || hlen > 253)
		goto bad;
	if (port != NULL) {
		if (plen == 0 || plen > 5)
			goto bad;
		for (size_t i = 0; i < plen; i++) {
			if (port[i] < '0' || port[i] > '9')
				goto bad;
			pv = pv * 10 + (unsigned long)(port[i] - '0');
		}
		if (pv == 0 || pv > 65535)
			goto bad;
	} else {
		pv = strcmp(scheme, "https") == 0 ? BEACON__DEFAULT_PORT + 1
						  : BEACON__DEFAULT_PORT;
	}
	u = malloc(hlen + 32);
	if (u == NULL)
		return BEACON_ENOMEM;
	snprintf(u, hlen + 32, "%s://%.*s:%lu", scheme, (int)hlen, host, pv);
	*url = u;
	return 0;
bad_scheme:
	if (errmsg != NULL)
		snprintf(errmsg, BEACON_ERRMSG_LEN,
			 "bad server address \"%.*s\": the scheme must be "
			 "http or https",
			 (int)n, in);
	return BEACON_EINVAL;
bad:
	if (errmsg != NULL)
		snprintf(errmsg, BEACON_ERRMSG_LEN,
			 "bad server address \"%.*s\": expected host:port "
			 "or http[s]://host:port",
			 (int)n, in);
	return BEACON_EINVAL;
}

int beacon__addrs_parse(const char *list, bool https, char ***urls, size_t *n,
			char *errmsg)
{
	size_t cap = 1, count = 0;
	char **v;
	const char *p = list;

	for (const char *s = list; *s != '\0'; s++)
		cap += *s == ',';
	v = calloc(cap, sizeof *v);
	if (v == NULL)
		return BEACON_ENOMEM;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
		size_t blank = 0;
		while (blank < len && (p[blank] == ' ' || p[blank] == '\t'))
			blank++;
		if (blank < len) {
			int rc = beacon__addr_parse(p, len, https, &v[count],
						    errmsg);
			if (rc != 0) {
				beacon_strv_free(v, count);
				return rc;
			}
			count++;
		}
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	if (count == 0) {
		free(v);
		if (errmsg != NULL)
			snprintf(errmsg, BEACON_ERRMSG_LEN,
				 "no server address given");
		return BEACON_EINVAL;
	}
	*urls = v;
	*n = count;
	return 0;
}

uint64_t beacon__backoff_ms(unsigned fails, unsigned min_ms, unsigned max_ms,
			    uint64_t rnd)
{
	uint64_t d = min_ms;

	if (fails == 0 || d == 0)
		return 0;
	for (unsigned i = 1; i < fails && d < max_ms; i++)
		d *= 2;
	if (d > max_ms)
		d = max_ms;
	return d - d / 2 + rnd % (d / 2 + 1);
}

uint64_t beacon__retry_in_ms(struct beacon *b)
{
	uint64_t now = beacon__now_ms(), best = UINT64_MAX;

	pthread_mutex_lock(&b->mu);
	for (size_t i = 0; i < b->n_servers; i++) {
		uint64_t at = b->servers[i].retry_at;
		uint64_t wait = at > now ? at - now : 0;
		if (wait < best)
			best = wait;
	}
	pthread_mutex_unlock(&b->mu);
	return best == UINT64_MAX ? 0 : best;
}

static void server_failed(struct beacon *b, size_t i)
{
	uint64_t rnd = beacon__rand(b), now = beacon__now_ms();

	pthread_mutex_lock(&b->mu);
	if (b->servers[i].fails < 64)
		b->servers[i].fails++;
	b->servers[i].retry_at =
	    now + beacon__backoff_ms(b->servers[i].fails, b->backoff_min_ms,
				     b->backoff_max_ms, rnd);
	if (b->current == i)
		b->current = (i + 1) % b->n_servers;
	pthread_mutex_unlock(&b->mu);
}

static void server_ok(struct beacon *b, size_t i)
{
	pthread_mutex_lock(&b->mu);
	b->servers[i].fails = 0;
	b->servers[i].retry_at = 0;
	b->current = i;
	pthread_mutex_unlock(&b->mu);
}

/* ---- connections ----------------------------------------------------------
 */

struct beacon__conn *beacon__conn_new(void)
{
	struct beacon__conn *c = calloc(1, sizeof *c);

	if (c == NULL)
		return NULL;
	c->easy = curl_easy_init();
	c->multi = curl_multi_init();
	if (c->easy == NULL || c->multi == NULL) {
		beacon__conn_free(c);
		return NULL;
	}
	return c;
}

void beacon__conn_free(struct beacon__conn *c)
{
	if (c == NULL)
		return;
	if (c->easy != NULL)
		curl_easy_cleanup(c->easy);
	if (c->multi != NULL)
		curl_multi_cleanup(c->multi);
	free(c);
}

void beacon__conn_wakeup(struct beacon__conn *c)
{
	curl_multi_wakeup(c->multi);
}

static struct beacon__conn *conn_get(struct beacon *b)
{
	struct beacon__conn *c;

	pthread_mutex_lock(&b->mu);
	c = b->idle;
	if (c != NULL) {
		b->idle = c->next;
		b->n_idle--;
	}
	pthread_mutex_unlock(&b->mu);
	return c != NULL ? c : beacon__conn_new();
}

static void conn_put(struct beacon *b, struct beacon__conn *c)
{
	pthread_mutex_lock(&b->mu);
	if (b->n_idle < POOL_MAX) {
		c->next = b->idle;
		b->idle = c;
		b->n_idle++;
		c = NULL;
	}
	pthread_mutex_unlock(&b->mu);
	beacon__conn_free(c);
}

/* ---- one HTTP exchange -------------------------------------------------- */

struct answer {
	int status;
	uint64_t index;
	bool known_leader;
	char *body;
	size_t len, cap;
	bool too_big;
};

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
	struct answer *a = ud;
	size_t n = size * nmemb;

	if (a->len + n + 1 > a->cap) {
		size_t cap = a->cap > 0 ? a->cap : 4096;
		char *nb;
		if (a->len + n + 1 > BEACON__MAX_BODY) {
			a->too_big = true;
			return 0;
		}
		while (cap < a->len + n + 1)
			cap *= 2;
		nb = realloc(a->body, cap);
		if (nb == NULL)
			return 0;
		a->body = nb;
		a->cap = cap;
	}
	memcpy(a->body + a->len, p, n);
	a->len += n;
	a->body[a->len] = '\0';
	return n;
}

/* Match header @name (case-insensitive) in the line @p[0..n); point @val at
 * its trimmed value. */
static bool header_is(const char *p, size_t n, const char *name,
		      const char **val, size_t *vlen)
{
	size_t nl = strlen(name);

	if (n <= nl || strncasecmp(p, name, nl) != 0 || p[nl] != ':')
		return false;
	p += nl + 1;
	n -= nl + 1;
	while (n > 0 && (*p == ' ' || *p == '\t')) {
		p++;
		n--;
	}
	while (n > 0 &&
	       (p[n - 1] == '\r' || p[n - 1] == '\n' || p[n - 1] == ' '))
		n--;
	*val = p;
	*vlen = n;
	return true;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
	struct answer *a = ud;
	size_t n = size * nmemb, vlen;
	const char *v;

	if (n >= 5 && strncmp(p, "HTTP/", 5) == 0) {
		a->index = 0; /* a new response (after a 100 Continue) */
		a->known_leader = false;
	} else if (header_is(p, n, "X-Consul-Index", &v, &vlen)) {
		uint64_t x = 0;
		for (size_t i = 0; i < vlen && v[i] >= '0' && v[i] <= '9'; i++)
			x = x * 10 + (uint64_t)(v[i] - '0');
		a->index = x;
	} else if (header_is(p, n, "X-Consul-KnownLeader", &v, &vlen)) {
		a->known_leader = vlen == 4 && strncmp(v, "true", 4) == 0;
	}
	return n;
}

/* Run the transfer set up on @c until it ends or @cancel is set. */
static CURLcode run(struct beacon__conn *c, const atomic_bool *cancel,
		    bool *canceled)
{
	CURLcode res = CURLE_OK;
	CURLMsg *m;
	int running = 1, q;

	*canceled = false;
	if (curl_multi_add_handle(c->multi, c->easy) != CURLM_OK)
		return CURLE_FAILED_INIT;
	/* Bounded by the transfer's CURLOPT_TIMEOUT_MS. */
	for (;;) {
		if (curl_multi_perform(c->multi, &running) != CURLM_OK) {
			res = CURLE_FAILED_INIT;
			break;
		}
		if (running == 0)
			break;
		if (cancel != NULL && atomic_load(cancel)) {
			*canceled = true;
			break;
		}
		if (curl_multi_poll(c->multi, NULL, 0, 1000, NULL) !=
		    CURLM_OK) {
			res = CURLE_FAILED_INIT;
			break;
		}
	}
	while ((m = curl_multi_info_read(c->multi, &q)) != NULL)
		if (m->msg == CURLMSG_DONE && m->easy_handle == c->easy)
			res = m->data.result;
	curl_multi_remove_handle(c->multi, c->easy);
	return res;
}

/* The outcome of one attempt. */
enum attempt {
	ANSWERED,	 /* a server answered (any status but below) */
	FAILED_UNSENT,	 /* could not connect: nothing was sent */
	FAILED_NOLEADER, /* the server answered that it cannot serve now */
	FAILED_SENT,	 /* the request may have been received */
	CANCELED,
	NOMEM,
};

static bool no_leader(const struct answer *a)
{
	static const char msg[] = "No cluster leader";

	return a->status == 502 || a->status == 503 || a->status == 504 ||
	       (a->status == 500 && a->len >= sizeof msg - 1 &&
		memcmp(a->body, msg, sizeof msg - 1) == 0);
}

static enum attempt attempt(struct beacon *b, const struct beacon__server *s,
			    const char *target, const struct beacon_req *req,
			    long timeout_ms, struct beacon__conn *c,
			    const atomic_bool *cancel, struct answer *a,
			    char *err, size_t errlen)
{
	CURL *e = c->easy;
	struct curl_slist *hdrs = NULL, *h, *cto = NULL;
	char *url, *tok, ctype[256];
	const char *method = req->method != NULL ? req->method : "GET";
	size_t ul = strlen(s->req_url) + strlen(target) + 1;
	bool canceled;
	CURLcode res;
	long status = 0;
	enum attempt out;

	url = malloc(ul);
	if (url == NULL)
		return NOMEM;
	snprintf(url, ul, "%s%s", s->req_url, target);
	curl_easy_reset(e);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, a);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, a);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)b->connect_timeout_ms < timeout_ms
			     ? (long)b->connect_timeout_ms
			     : timeout_ms);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, NULL);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "libbeacon/" BEACON_VERSION);
	if (strcmp(method, "GET") != 0)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	if (req->body != NULL ||
	    (strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0)) {
		/* POSTFIELDS sends a Content-Length (0 for no body), which a
		 * bodiless PUT needs; the custom method replaces POST. */
		curl_easy_setopt(
		    e, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)(req->body != NULL ? req->body_len : 0));
		curl_easy_setopt(e, CURLOPT_POSTFIELDS,
				 req->body != NULL ? req->body : "");
		snprintf(ctype, sizeof ctype, "Content-Type: %s",
			 req->content_type != NULL
			     ? req->content_type
			     : "application/octet-stream");
		hdrs = curl_slist_append(hdrs, ctype);
	}
	h = curl_slist_append(hdrs, "Expect:");
	hdrs = h != NULL ? h : hdrs;
	if (b->token != NULL) {
		size_t tl = strlen(b->token) + 32;
		tok = malloc(tl);
		if (tok == NULL) {
			curl_slist_free_all(hdrs);
			free(url);
			return NOMEM;
		}
		snprintf(tok, tl, "X-Consul-Token: %s", b->token);
		h = curl_slist_append(hdrs, tok);
		free(tok); /* curl_slist_append() copies */
		if (h == NULL) {
			curl_slist_free_all(hdrs);
			free(url);
			return NOMEM;
		}
		hdrs = h;
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
	if (s->connect_to != NULL) {
		cto = curl_slist_append(NULL, s->connect_to);
		curl_easy_setopt(e, CURLOPT_CONNECT_TO, cto);
	}
	if (b->ca_file != NULL)
		curl_easy_setopt(e, CURLOPT_CAINFO, b->ca_file);
	if (b->ca_path != NULL)
		curl_easy_setopt(e, CURLOPT_CAPATH, b->ca_path);
	if (b->client_cert != NULL)
		curl_easy_setopt(e, CURLOPT_SSLCERT, b->client_cert);
	if (b->client_key != NULL)
		curl_easy_setopt(e, CURLOPT_SSLKEY, b->client_key);
	if (b->tls_skip_verify) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	}

	res = run(c, cancel, &canceled);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	a->status = (int)status;
	if (canceled) {
		out = CANCELED;
	} else if (res == CURLE_OK) {
		out = no_leader(a) ? FAILED_NOLEADER : ANSWERED;
		if (out == FAILED_NOLEADER)
			snprintf(err, errlen, "%s: %d %.*s", s->url, a->status,
				 (int)(a->len < 120 ? a->len : 120),
				 a->body != NULL ? a->body : "");
	} else {
		out = res == CURLE_COULDNT_CONNECT ||
			      res == CURLE_COULDNT_RESOLVE_HOST
			  ? FAILED_UNSENT
			  : FAILED_SENT;
		if (a->too_big)
			snprintf(err, errlen,
				 "%s: answer larger than %zu bytes", s->url,
				 BEACON__MAX_BODY);
		else if (res == CURLE_WRITE_ERROR)
			out = NOMEM;
		else
			snprintf(err, errlen, "%s: %s", s->url,
				 curl_easy_strerror(res));
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(e, CURLOPT_CONNECT_TO, NULL);
	curl_slist_free_all(hdrs);
	curl_slist_free_all(cto);
	free(url);
	return out;
}

/* "/path?query&dc=..&stale&index=..&wait=..ms" */
static char *build_target(struct beacon *b, const struct beacon_req *req,
			  unsigned wait_ms, bool reading)
{
	size_t n = strlen(req->path) + (req->query ? strlen(req->query) : 0) +
		   (b->dc ? strlen(b->dc) * 3 : 0) + 96;
	char *t = malloc(n), sep = '?';
	size_t o;

	if (t == NULL)
		return NULL;
	o = (size_t)snprintf(t, n, "%s", req->path);
	if (req->query != NULL && req->query[0] != '\0') {
		o += (size_t)snprintf(t + o, n - o, "?%s", req->query);
		sep = '&';
	}
	if (b->dc != NULL) {
		char *dc = beacon_escape(b->dc);
		if (dc == NULL) {
			free(t);
			return NULL;
		}
		o += (size_t)snprintf(t + o, n - o, "%cdc=%s", sep, dc);
		sep = '&';
		free(dc);
	}
	if (reading && b->consistency != BEACON_CONSISTENCY_DEFAULT) {
		o += (size_t)snprintf(t + o, n - o, "%c%s", sep,
				      b->consistency == BEACON_CONSISTENCY_STALE
					  ? "stale"
					  : "consistent");
		sep = '&';
	}
	if (req->index > 0)
		snprintf(t + o, n - o, "%cindex=%" PRIu64 "&wait=%ums", sep,
			 req->index, wait_ms);
	return t;
}

static void fill_meta(struct beacon_meta *m, const struct beacon__server *s,
		      const struct answer *a)
{
	if (m == NULL)
		return;
	m->status = a->status;
	m->index = a->index;
	m->known_leader = a->known_leader;
	snprintf(m->server, sizeof m->server, "%s", s->url);
}

/* The answer's error text (plain text bodies) into @m->error. */
static void answer_error(struct beacon_meta *m, const struct answer *a)
{
	size_t n = a->len;

	if (m == NULL)
		return;
	while (n > 0 && (a->body[n - 1] == '\n' || a->body[n - 1] == '\r'))
		n--;
	if (n > 0)
		beacon__errf(m, "%.*s", (int)(n < 200 ? n : 200), a->body);
	else
		beacon__errf(m, "HTTP %d", a->status);
}

int beacon__send(struct beacon *b, const struct beacon_req *req,
		 struct beacon__conn *conn, const atomic_bool *cancel,
		 unsigned wait_ms, char **body, size_t *len,
		 struct beacon_meta *meta)
{
	const char *method = req->method != NULL ? req->method : "GET";
	bool reading = strcmp(method, "GET") == 0;
	bool retry_any = reading || (req->flags & BEACON_REQ_RETRY) != 0;
	bool blocking = req->index > 0;
	uint64_t start = beacon__now_ms(), now;
	long per_try = (long)b->timeout_ms;
	struct beacon__conn *c = conn;
	char err[BEACON_ERRMSG_LEN] = "", *target;
	size_t first, tried = 0, skipped = 0;
	int rc = BEACON_EUNAVAILABLE;

	beacon__meta_reset(meta);
	if (body != NULL)
		*body = NULL;
	if (len != NULL)
		*len = 0;
	if (req->path == NULL || req->path[0] != '/')
		return BEACON_EINVAL;
	if (blocking)
		per_try += (long)wait_ms + (long)(wait_ms / 16) + 1000;
	target = build_target(b, req, wait_ms, reading);
	if (target == NULL)
		return BEACON_ENOMEM;
	if (c == NULL && (c = conn_get(b)) == NULL) {
		free(target);
		return BEACON_ENOMEM;
	}
	pthread_mutex_lock(&b->mu);
	first = b->current;
	pthread_mutex_unlock(&b->mu);

	for (size_t k = 0; k < b->n_servers; k++) {
		size_t i = (first + k) % b->n_servers;
		struct beacon__server *s = &b->servers[i];
		struct answer a = {0};
		long budget = per_try;
		enum attempt r;
		bool waiting;

		now = beacon__now_ms();
		pthread_mutex_lock(&b->mu);
		waiting = s->retry_at > now;
		pthread_mutex_unlock(&b->mu);
		if (waiting) {
			skipped++;
			continue;
		}
		if (!blocking) {
			long left = (long)b->timeout_ms - (long)(now - start);
			if (left < 10) {
				if (err[0] == '\0')
					snprintf(err, sizeof err,
						 "timed out after %u ms",
						 b->timeout_ms);
				break;
			}
			budget = left;
		}
		tried++;
		r = attempt(b, s, target, req, budget, c, cancel, &a, err,
			    sizeof err);
		if (r == ANSWERED) {
			server_ok(b, i);
			fill_meta(meta, s, &a);
			rc = beacon__status_rc(a.status);
			if (rc != 0 && rc != BEACON_ENOTFOUND)
				answer_error(meta, &a);
			if (body != NULL) {
				if (a.body == NULL)
					a.body = calloc(1, 1);
				if (a.body == NULL)
					rc = BEACON_ENOMEM;
				*body = a.body;
				a.body = NULL;
			}
			if (len != NULL)
				*len = a.len;
			free(a.body);
			goto out;
		}
		free(a.body);
		if (r == CANCELED || r == NOMEM) {
			rc = r == CANCELED ? BEACON_ECANCELED : BEACON_ENOMEM;
			goto out;
		}
		server_failed(b, i);
		if (r == FAILED_SENT && !retry_any) {
			beacon__errf(meta,
				     "%s (the request may or may not have "
				     "been carried out)",
				     err);
			rc = BEACON_EUNAVAILABLE;
			goto out;
		}
	}
	if (tried == 0 && skipped > 0)
		beacon__errf(
		    meta,
		    "every server failed recently; next try in %" PRIu64 " ms",
		    beacon__retry_in_ms(b));
	else
		beacon__errf(meta, "no server answered: %s", err);
	rc = BEACON_EUNAVAILABLE;
out:
	free(target);
	if (conn == NULL)
		conn_put(b, c);
	return rc;
}

int beacon__request(struct beacon *b, const struct beacon_req *req,
		    struct beacon__conn *conn, const atomic_bool *cancel,
		    unsigned wait_ms, char **body, size_t *len,
		    struct beacon_meta *meta)
{
	const char *method = req->method != NULL ? req->method : "GET";
	struct beacon_meta local;
	char *key, *mybody = NULL;
	size_t kn, mylen = 0;
	int rc;

	if (!(req->flags & BEACON_REQ_CACHE) || b->cache_dir == NULL ||
	    strcmp(method, "GET") != 0 || req->path == NULL)
		return beacon__send(b, req, conn, cancel, wait_ms, body, len,
				    meta);
	/* The cache needs the status and the body even if the caller does
	 * not want them. */
	if (meta == NULL)
		meta = &local;
	if (body == NULL)
		body = &mybody;
	if (len == NULL)
		len = &mylen;
	kn = strlen(req->path) + (req->query ? strlen(req->query) : 0) + 8;
	key = malloc(kn);
	if (key == NULL)
		return BEACON_ENOMEM;
	snprintf(key, kn, "GET %s%s%s", req->path,
		 req->query != NULL && req->query[0] ? "?" : "",
		 req->query != NULL ? req->query : "");
	rc = beacon__send(b, req, conn, cancel, wait_ms, body, len, meta);
	if ((rc == 0 || rc == BEACON_ENOTFOUND) &&
	    (meta->status == 200 || meta->status == 404) && *body != NULL) {
		struct beacon__cache_entry e = {
		    .key = key,
		    .status = meta->status,
		    .index = meta->index,
		    .time_ms = beacon__wall_ms(),
		    .body = *body,
		    .len = *len,
		};
		(void)beacon__cache_store(b->cache_dir, &e);
	} else if (rc == BEACON_EUNAVAILABLE) {
		struct beacon__cache_entry e;
		if (beacon__cache_load(b->cache_dir, key, &e) == 0) {
			rc = e.status == 200 ? 0 : BEACON_ENOTFOUND;
			meta->status = e.status;
			meta->index = e.index;
			meta->stale = true;
			meta->cached = true;
			meta->age_ms = beacon__wall_ms() - e.time_ms;
			meta->server[0] = '\0';
			*body = e.body;
			*len = e.len;
			e.body = NULL;
			beacon__cache_entry_close(&e);
		}
	}
	free(mybody);
	free(key);
	return rc;
}

BEACON_API int beacon_request(struct beacon *b, const struct beacon_req *req,
			      char **body, size_t *len,
			      struct beacon_meta *meta)
{
	return beacon__request(b, req, NULL, NULL, b->wait_ms, body, len, meta);
}

int beacon__get(struct beacon *b, const char *path, const char *query,
		char **body, size_t *len, struct beacon_meta *meta)
{
	struct beacon_req req = {
	    .path = path,
	    .query = query,
	    .flags = BEACON_REQ_RETRY | BEACON_REQ_CACHE,
	};

	return beacon__request(b, &req, NULL, NULL, b->wait_ms, body, len,
			       meta);
}
