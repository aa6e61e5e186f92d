#include "server/forward.h"

#include <curl/curl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/alloc.h"
#include "common/curl_io.h"
#include "common/log.h"
#include "server/http.h"
#include "server/srv.h"

#define MOD	     "fwd"
#define FWD_MAX_BODY (64u << 20)

struct fwd {
	struct srv *s;
	struct http_req *r; /* NULL for an internal call */
	fwd_done_cb done;   /* internal calls */
	void *data;
	CURL *easy;
	struct bcn_curl_xfer xfer;
	struct curl_slist *hdrs;
	struct bcn_buf body;	/* the leader's answer */
	struct bcn_buf headers; /* "name\0value\0" pairs to relay */
	char err[CURL_ERROR_SIZE];
	struct fwd *prev, *next;
};

static int ensure_multi(struct srv *s)
{
	if (s->curl != NULL)
		return 0;
	return bcn_curl_open(&s->curl, s->loop);
}

static size_t write_cb(char *p, size_t size, size_t n, void *data)
{
	struct fwd *f = data;

	if (f->body.len + n > FWD_MAX_BODY)
		return 0; /* abort the transfer */
	bcn_buf_put(&f->body, p, size * n);
	return bcn_buf_failed(&f->body) ? 0 : n;
}

/* Relay the headers that carry meaning for clients. */
static size_t header_cb(char *p, size_t size, size_t n, void *data)
{
	static const char *const keep[] = {FWD_NOT_LEADER, "Content-Type",
					   "Allow", "X-Content-Type-Options",
					   "Content-Security-Policy"};
	struct fwd *f = data;
	size_t len = size * n;
	char *colon = memchr(p, ':', len);
	size_t nlen, vstart, vend;
	bool relay = false;

	if (colon == NULL)
		return len;
	nlen = (size_t)(colon - p);
	if (nlen > 9 && strncasecmp(p, "X-Consul-", 9) == 0)
		relay = true;
	for (size_t i = 0; !relay && i < sizeof keep / sizeof keep[0]; i++)
		relay = nlen == strlen(keep[i]) &&
			strncasecmp(p, keep[i], nlen) == 0;
	if (!relay)
		return len;
	vstart = nlen + 1;
	while (vstart < len && p[vstart] == ' ')
		vstart++;
	vend = len;
	while (vend > vstart && (p[vend - 1] == '\r' || p[vend - 1] == '\n'))
		vend--;
	bcn_buf_put(&f->headers, p, nlen);
	bcn_buf_putc(&f->headers, '\0');
	bcn_buf_put(&f->headers, p + vstart, vend - vstart);
	bcn_buf_putc(&f->headers, '\0');
	return len;
}

static void fwd_free(struct srv *s, struct fwd *f)
{
	if (f->prev != NULL)
		f->prev->next = f->next;
	else
		s->fwds = f->next;
	if (f->next != NULL)
		f->next->prev = f->prev;
	bcn_curl_remove(&f->xfer);
	curl_easy_cleanup(f->easy);
	curl_slist_free_all(f->hdrs);
	bcn_buf_close(&f->body);
	bcn_buf_close(&f->headers);
	if (f->r != NULL)
		f->r->fwd = NULL;
	bcn_free(f);
}

static void finish(struct srv *s, struct fwd *f, CURLcode res)
{
	struct http_req *r = f->r;
	const char *ctype = NULL;
	long status = 0;

	if (r == NULL) {
		curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &status);
		bcn_buf_putc(&f->body, '\0');
		f->done(s, f->data, res == CURLE_OK ? status : 0,
			f->body.data != NULL ? f->body.data : "");
		fwd_free(s, f);
		return;
	}

	if (res != CURLE_OK) {
		double connect_s = 0;
		bcn_debug(MOD, "forward %s %s: %s", r->method_str, r->raw_uri,
			  f->err[0] != '\0' ? f->err : curl_easy_strerror(res));
		curl_easy_getinfo(f->easy, CURLINFO_CONNECT_TIME, &connect_s);
		if (res == CURLE_COULDNT_CONNECT ||
		    (res == CURLE_OPERATION_TIMEDOUT && connect_s == 0)) {
			/* Nothing was sent: the leader we knew is gone or
			 * unreachable. Wait for the next one, as for any
			 * request without a leader. */
			fwd_free(s, f);
			http_forward_failed(r);
			return;
		}
		if (r->method == HTTP_GET)
			http_reply_text(r, 500, "No cluster leader");
		else
			http_reply_err(r, BCN_EUNKNOWN);
		fwd_free(s, f);
		return;
	}
	curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &status);
	for (size_t i = 0; i < f->headers.len;) {
		const char *name = f->headers.data + i;
		const char *val = name + strlen(name) + 1;
		if (strcasecmp(name, "Content-Type") == 0)
			ctype = val;
		if (status == 503 && strcasecmp(name, FWD_NOT_LEADER) == 0) {
			fwd_free(s, f);
			http_forward_failed(r);
			return;
		}
		i += strlen(name) + strlen(val) + 2;
	}
	http_reply(r, (unsigned)status, ctype, f->body.data, f->body.len);
	for (size_t i = 0; i < f->headers.len;) {
		const char *name = f->headers.data + i;
		const char *val = name + strlen(name) + 1;
		if (strcasecmp(name, "Content-Type") != 0)
			http_add_header(r, name, val);
		i += strlen(name) + strlen(val) + 2;
	}
	fwd_free(s, f);
}

static void done_cb(struct bcn_curl_xfer *x, CURLcode res)
{
	struct fwd *f = x->data;

	finish(f->s, f, res);
}

static bool tls(const struct srv *s)
{
	return s->cfg->tls_cert[0] != '\0';
}

/* Servers talk to each other as clients do: HTTPS verified against
 * --tls-ca, with this server's certificate as the client's (for
 * --tls-verify-incoming). */
static void set_tls(const struct srv *s, CURL *e)
{
	const struct config *c = s->cfg;

	if (!tls(s)) {
		curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
		return;
	}
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
	if (c->tls_ca[0] != '\0')
		curl_easy_setopt(e, CURLOPT_CAINFO, c->tls_ca);
	curl_easy_setopt(e, CURLOPT_SSLCERT, c->tls_cert);
	curl_easy_setopt(e, CURLOPT_SSLKEY, c->tls_key);
}

static bool add_header(struct fwd *f, const char *line)
{
	struct curl_slist *l = curl_slist_append(f->hdrs, line);

	if (l == NULL)
		return false;
	f->hdrs = l;
	return true;
}

void fwd_start(struct http_req *r)
{
	static const char *const pass[] = {"X-Consul-Token", "Authorization",
					   "Content-Type"};
	struct srv *s = r->srv;
	char leader[256], url[4096 + 300], line[1200];
	const char *v;
	struct fwd *f;
	bool ok = true;

	if (MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, FWD_HEADER) !=
		NULL ||
	    s->cluster == NULL ||
	    !cluster_leader_http(s->cluster, leader, sizeof leader)) {
		http_reply_err(r, BCN_ENOTLEADER);
		return;
	}
	if (ensure_multi(s) != 0 || (f = bcn_calloc(1, sizeof *f)) == NULL) {
		http_reply_err(r, BCN_ENOMEM);
		return;
	}
	f->s = s;
	f->r = r;
	f->xfer.data = f;
	f->easy = curl_easy_init();
	if (f->easy == NULL) {
		bcn_free(f);
		http_reply_err(r, BCN_ENOMEM);
		return;
	}
	snprintf(url, sizeof url, "%s://%s%s", tls(s) ? "https" : "http",
		 leader, r->raw_uri);
	snprintf(line, sizeof line, "%s: %s", FWD_HEADER, s->cfg->node);
	ok &= add_header(f, line);
	ok &= add_header(f, "Expect:");
	for (size_t i = 0; i < sizeof pass / sizeof pass[0]; i++) {
		v = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
						pass[i]);
		snprintf(line, sizeof line, "%s:%s%s", pass[i],
			 v != NULL ? " " : "", v != NULL ? v : "");
		ok &= add_header(f, line);
	}
	curl_easy_setopt(f->easy, CURLOPT_URL, url);
	curl_easy_setopt(f->easy, CURLOPT_HTTPHEADER, f->hdrs);
	curl_easy_setopt(f->easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(f->easy, CURLOPT_WRITEDATA, f);
	curl_easy_setopt(f->easy, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(f->easy, CURLOPT_HEADERDATA, f);
	curl_easy_setopt(f->easy, CURLOPT_ERRORBUFFER, f->err);
	curl_easy_setopt(f->easy, CURLOPT_NOSIGNAL, 1L);
	set_tls(s, f->easy);
	curl_easy_setopt(f->easy, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
	/* A blocking query holds up to 10 min + wait/16 on the leader. */
	curl_easy_setopt(f->easy, CURLOPT_TIMEOUT_MS,
			 (long)(11 * 60 * 1000 + 30000));
	if (r->method == HTTP_GET) {
		curl_easy_setopt(f->easy, CURLOPT_HTTPGET, 1L);
	} else {
		curl_easy_setopt(f->easy, CURLOPT_CUSTOMREQUEST, r->method_str);
		/* A write goes on a connection of its own. On a reused one,
		 * libcurl silently sends the request again on a fresh
		 * connection when the old one died: the first copy may have
		 * been applied, and a refused second connect would then read
		 * as "nothing was sent" (the fault suite saw writes applied
		 * twice, and applied although answered No cluster leader).
		 * On a fresh connection, a failed connect means exactly that.
		 */
		curl_easy_setopt(f->easy, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(f->easy, CURLOPT_FORBID_REUSE, 1L);
		curl_easy_setopt(f->easy, CURLOPT_POSTFIELDS,
				 r->body.data != NULL ? r->body.data : "");
		curl_easy_setopt(f->easy, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)r->body.len);
	}
	f->next = s->fwds;
	if (s->fwds != NULL)
		s->fwds->prev = f;
	s->fwds = f;
	r->fwd = f;
	if (!ok || bcn_curl_add(s->curl, &f->xfer, f->easy, done_cb) != 0) {
		fwd_free(s, f);
		http_reply_err(r, BCN_ENOMEM);
	}
}

int fwd_call(struct srv *s, const char *url_in, const char *method,
	     const char *body, long timeout_ms, fwd_done_cb done, void *data)
{
	struct fwd *f;
	bool ok = true;
	char url[1200];

	/* Callers write http://; with TLS every server speaks HTTPS. */
	if (tls(s) && strncmp(url_in, "http://", 7) == 0)
		snprintf(url, sizeof url, "https://%s", url_in + 7);
	else
		snprintf(url, sizeof url, "%s", url_in);

	if (ensure_multi(s) != 0 || (f = bcn_calloc(1, sizeof *f)) == NULL)
		return BCN_ENOMEM;
	f->s = s;
	f->done = done;
	f->data = data;
	f->xfer.data = f;
	f->easy = curl_easy_init();
	if (s->cfg->acl_token[0] != '\0') {
		char line[600];
		snprintf(line, sizeof line, "X-Consul-Token: %s",
			 s->cfg->acl_token);
		ok = add_header(f, line);
	}
	if (f->easy == NULL || !ok || !add_header(f, "Expect:") ||
	    !add_header(f, "Content-Type: application/json")) {
		if (f->easy != NULL)
			curl_easy_cleanup(f->easy);
		curl_slist_free_all(f->hdrs);
		bcn_free(f);
		return BCN_ENOMEM;
	}
	curl_easy_setopt(f->easy, CURLOPT_URL, url);
	curl_easy_setopt(f->easy, CURLOPT_HTTPHEADER, f->hdrs);
	curl_easy_setopt(f->easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(f->easy, CURLOPT_WRITEDATA, f);
	curl_easy_setopt(f->easy, CURLOPT_ERRORBUFFER, f->err);
	curl_easy_setopt(f->easy, CURLOPT_NOSIGNAL, 1L);
	set_tls(s, f->easy);
	curl_easy_setopt(f->easy, CURLOPT_CONNECTTIMEOUT_MS,
			 timeout_ms < 2000 ? timeout_ms : 2000L);
	curl_easy_setopt(f->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(f->easy, CURLOPT_CUSTOMREQUEST, method);
	if (strcmp(method, "GET") != 0)
		curl_easy_setopt(f->easy, CURLOPT_COPYPOSTFIELDS, body);
	f->next = s->fwds;
	if (s->fwds != NULL)
		s->fwds->prev = f;
	s->fwds = f;
	if (bcn_curl_add(s->curl, &f->xfer, f->easy, done_cb) != 0) {
		fwd_free(s, f);
		return BCN_ENOMEM;
	}
	return 0;
}

void fwd_cancel(struct http_req *r)
{
	if (r->fwd != NULL)
		fwd_free(r->srv, r->fwd);
}

void fwd_close(struct srv *s)
{
	while (s->fwds != NULL) {
		struct fwd *f = s->fwds;
		if (f->r != NULL)
			http_reply_err(f->r, BCN_ESHUTDOWN);
		else
			f->done(s, f->data, 0, "");
		fwd_free(s, f);
	}
	if (s->curl != NULL) {
		bcn_curl_close(s->curl, NULL, NULL);
		s->curl = NULL;
	}
}
