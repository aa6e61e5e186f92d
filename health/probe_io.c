/* One-shot HTTP and TCP health probes on a libuv loop (health/probe.h).
 *
 * HTTP happy path: probe_http() checks the definition, builds an easy
 * handle and hands it to the context's bcn_curl; libcurl runs it on the
 * loop. http_header_cb() keeps the status line of the last response,
 * http_write_cb() the first output_max + 1 body bytes and the total count.
 * http_done_cb() formats Consul's output and calls back; the probe is
 * freed at once (it owns no uv handle).
 *
 * TCP happy path: probe_tcp() parses "host:port", starts the timeout timer
 * and either connects at once (an address literal) or resolves the name
 * on the thread pool first, then tries each address in turn. A connect,
 * the last address failing, or the timeout decides the result; then every
 * handle is closed, and the last close callback (or the resolver's
 * callback: a request cannot be closed, only cancelled) calls back and
 * frees the probe.
 *
 * Failure modes: a definition that does not parse is refused with
 * BCN_EINVAL and no callback; out of memory at start gives BCN_ENOMEM and
 * no callback. Everything that goes wrong later (refused, timed out,
 * unresolvable, a socket that cannot be made) is a critical result with
 * the reason in the output. */
#include "health/probe.h"

#include <assert.h>
#include <curl/curl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/curl_io.h"
#include "common/parse.h"

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_OUTPUT_MAX 4096
#define MAX_REDIRS	   10
#define USER_AGENT	   "Consul Health Check"	     /* Consul */
#define DEFAULT_ACCEPT	   "Accept: text/plain, text/*, */*" /* Consul */
#define HOST_MAX	   256

struct probe_ctx {
	uv_loop_t *loop;
	struct bcn_curl *curl;
	struct probe *head; /* probes whose callback is still due */
	unsigned live;	    /* probes not yet freed */
	bool curl_open;
	bool closing;
};

enum probe_kind { PROBE_HTTP, PROBE_TCP };

/* A TCP probe's lifecycle (STYLE.md §5). */
enum tp_state { TP_RESOLVING, TP_CONNECTING, TP_CLOSING, TP_NR };
static const unsigned tp_next[TP_NR] = {
    [TP_RESOLVING] = 1u << TP_CONNECTING | 1u << TP_CLOSING,
    [TP_CONNECTING] = 1u << TP_CONNECTING | 1u << TP_CLOSING, /* next addr */
};

struct http_part {
	CURL *easy;
	struct bcn_curl_xfer xfer;
	struct curl_slist *hdrs;
	char *url, *method; /* copies, for the output */
	size_t output_max;
	bool follow;
	struct bcn_buf body; /* the first output_max + 1 bytes */
	uint64_t total;	     /* body bytes received */
	char status[128];    /* "200 OK", of the last response */
	bool hdr_done;	     /* that response's header ended */
	bool location;	     /* that response has a Location */
	char err[CURL_ERROR_SIZE];
};

struct tcp_part {
	enum tp_state state;
	uv_getaddrinfo_t gai;
	uv_connect_t conn;
	uv_tcp_t tcp;
	uv_timer_t timer;
	bool gai_busy, tcp_open, timer_open;
	struct addrinfo *ai, *ai_next; /* resolved; the next to try */
	unsigned pending;	       /* open handles + the resolver request */
	char *hostport;		       /* as given, for the output */
	char host[HOST_MAX];
	char port[6];
	char addr[INET6_ADDRSTRLEN + 16]; /* "ip:port" once known */
	/* The result: @err 0 is success, else the first libuv error met
	 * while resolving (@in_lookup) or connecting (to @addr); or
	 * @timed_out. */
	int err;
	bool in_lookup, timed_out;
};

struct probe {
	struct probe_ctx *ctx;
	struct probe *prev, *next;
	bool linked;
	bool cancelled;
	enum probe_kind kind;
	probe_cb cb;
	void *data;
	union {
		struct http_part http;
		struct tcp_part tcp;
	};
};

/* ---- context and list ---------------------------------------------------- */

static void ctx_maybe_free(struct probe_ctx *p)
{
	if (p->closing && p->live == 0 && !p->curl_open)
		bcn_free(p);
}

static void link_probe(struct probe_ctx *p, struct probe *pr)
{
	pr->next = p->head;
	if (p->head != NULL)
		p->head->prev = pr;
	p->head = pr;
	pr->linked = true;
	p->live++;
}

static void unlink_probe(struct probe *pr)
{
	struct probe_ctx *p = pr->ctx;

	if (!pr->linked)
		return;
	if (pr->prev != NULL)
		pr->prev->next = pr->next;
	else
		p->head = pr->next;
	if (pr->next != NULL)
		pr->next->prev = pr->prev;
	pr->prev = pr->next = NULL;
	pr->linked = false;
}

/* Free @pr (unlinked, its handles closed); may free the context. */
static void probe_free(struct probe *pr)
{
	struct probe_ctx *p = pr->ctx;

	assert(!pr->linked);
	if (pr->kind == PROBE_HTTP) {
		bcn_curl_remove(&pr->http.xfer);
		if (pr->http.easy != NULL)
			curl_easy_cleanup(pr->http.easy);
		curl_slist_free_all(pr->http.hdrs);
		bcn_buf_close(&pr->http.body);
		bcn_free(pr->http.url);
		bcn_free(pr->http.method);
	} else {
		uv_freeaddrinfo(pr->tcp.ai); /* harmless on NULL */
		bcn_free(pr->tcp.hostport);
	}
	bcn_free(pr);
	assert(p->live > 0);
	p->live--;
	ctx_maybe_free(p);
}

/* Report @status/@out, unless cancelled, then free @pr. */
static void probe_finish(struct probe *pr, enum cat_status status,
			 struct bcn_buf *out)
{
	if (!pr->cancelled) {
		unlink_probe(pr); /* the callback may close the context */
		pr->cb(pr->data, status,
		       bcn_buf_failed(out) || out->data == NULL
			   ? "probe output lost: out of memory"
			   : out->data);
	}
	probe_free(pr);
}

static void curl_closed_cb(void *data)
{
	struct probe_ctx *p = data;

	p->curl_open = false;
	ctx_maybe_free(p);
}

int probe_ctx_open(struct probe_ctx **out, struct uv_loop_s *loop)
{
	struct probe_ctx *p = bcn_calloc(1, sizeof *p);
	int rc;

	if (p == NULL)
		return BCN_ENOMEM;
	rc = bcn_curl_open(&p->curl, loop);
	if (rc != 0) {
		bcn_free(p);
		return rc;
	}
	p->loop = loop;
	p->curl_open = true;
	*out = p;
	return 0;
}

void probe_ctx_close(struct probe_ctx *p)
{
	assert(!p->closing);
	p->closing = true;
	while (p->head != NULL)
		probe_cancel(p->head);
	bcn_curl_close(p->curl, curl_closed_cb, p);
}

/* ---- text ---------------------------------------------------------------- */

/* Append @s[0..n) as valid UTF-8: each NUL byte and each byte that does
 * not start a valid sequence becomes U+FFFD, as Go's encoders do, so that
 * the output can go into JSON and C strings unchanged. */
static void put_utf8(struct bcn_buf *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, run = 0;

	if (n == 0)
		return;
	while (i < n) {
		size_t len = u[i] < 0x80	     ? 1
			     : (u[i] & 0xe0) == 0xc0 ? 2
			     : (u[i] & 0xf0) == 0xe0 ? 3
			     : (u[i] & 0xf8) == 0xf0 ? 4
						     : 0;

		if (u[i] != 0 && len != 0 && len <= n - i &&
		    (len == 1 || bcn_utf8_valid(s + i, len))) {
			i += len;
			continue;
		}
		bcn_buf_put(b, s + run, i - run);
		bcn_buf_puts(b, "\xef\xbf\xbd");
		run = ++i;
	}
	bcn_buf_put(b, s + run, n - run);
}

/* The length of the longest prefix of @s[0..n) no longer than @max that
 * does not end inside a UTF-8 sequence. Bytes that are not valid UTF-8
 * are cut anywhere. */
static size_t utf8_cut(const char *s, size_t n, size_t max)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t start = max, need;

	if (n <= max)
		return n;
	/* Find the lead byte of the sequence that holds byte @max. */
	while (start > 0 && max - start < 3 && (u[start] & 0xc0) == 0x80)
		start--;
	if ((u[start] & 0xc0) != 0xc0 || start == max)
		return max;
	need = (u[start] & 0xe0) == 0xc0   ? 2
	       : (u[start] & 0xf0) == 0xe0 ? 3
	       : (u[start] & 0xf8) == 0xf0 ? 4
					   : 1;
	return start + need > max ? start : max;
}

/* ---- HTTP ---------------------------------------------------------------- */

static bool is_tchar(unsigned char c)
{
	/* RFC 9110 §5.6.2 token characters. */
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool is_token(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_tchar((unsigned char)s[i]))
			return false;
	return true;
}

/* Go's http.StatusText for the codes an HTTP/2 response may carry without
 * a reason phrase (Go builds resp.Status from it). */
static const char *status_text(long code)
{
	static const struct {
		int code;
		const char *text;
	} t[] = {
	    {100, "Continue"},
	    {101, "Switching Protocols"},
	    {200, "OK"},
	    {201, "Created"},
	    {202, "Accepted"},
	    {203, "Non-Authoritative Information"},
	    {204, "No Content"},
	    {205, "Reset Content"},
	    {206, "Partial Content"},
	    {300, "Multiple Choices"},
	    {301, "Moved Permanently"},
	    {302, "Found"},
	    {303, "See Other"},
	    {304, "Not Modified"},
	    {307, "Temporary Redirect"},
	    {308, "Permanent Redirect"},
	    {400, "Bad Request"},
	    {401, "Unauthorized"},
	    {403, "Forbidden"},
	    {404, "Not Found"},
	    {405, "Method Not Allowed"},
	    {406, "Not Acceptable"},
	    {408, "Request Timeout"},
	    {409, "Conflict"},
	    {410, "Gone"},
	    {412, "Precondition Failed"},
	    {413, "Request Entity Too Large"},
	    {415, "Unsupported Media Type"},
	    {418, "I'm a teapot"},
	    {421, "Misdirected Request"},
	    {422, "Unprocessable Entity"},
	    {425, "Too Early"},
	    {428, "Precondition Required"},
	    {429, "Too Many Requests"},
	    {500, "Internal Server Error"},
	    {501, "Not Implemented"},
	    {502, "Bad Gateway"},
	    {503, "Service Unavailable"},
	    {504, "Gateway Timeout"},
	    {505, "HTTP Version Not Supported"},
	};

	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (t[i].code == code)
			return t[i].text;
	return "";
}

/* A status line: keep "<code> <reason>" as Go's resp.Status has it. */
static void http_status_line(struct http_part *h, const char *p, size_t len)
{
	const char *sp = memchr(p, ' ', len), *end = p + len;
	bool h1 = len >= 7 && memcmp(p, "HTTP/1.", 7) == 0;

	while (end > p && (end[-1] == '\r' || end[-1] == '\n'))
		end--;
	if (sp == NULL)
		sp = end;
	while (sp < end && *sp == ' ')
		sp++;
	if (h1) {
		snprintf(h->status, sizeof h->status, "%.*s", (int)(end - sp),
			 sp);
	} else {
		/* HTTP/2 and 3 carry no reason phrase ("HTTP/2 200 "). */
		long code = 0;
		for (const char *q = sp; q < end && *q >= '0' && *q <= '9'; q++)
			code = code * 10 + (*q - '0');
		snprintf(h->status, sizeof h->status, "%03ld %s", code % 1000,
			 status_text(code));
	}
}

static size_t http_header_cb(char *p, size_t size, size_t n, void *data)
{
	struct probe *pr = data;
	struct http_part *h = &pr->http;
	size_t len = size * n;

	if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		/* A new response (an interim one, or after a redirect):
		 * what came before belongs to another. */
		http_status_line(h, p, len);
		h->hdr_done = false;
		h->location = false;
		h->total = 0;
		bcn_buf_reset(&h->body);
	} else if (len >= 9 && strncasecmp(p, "Location:", 9) == 0) {
		h->location = true;
	} else if (len <= 2 && (len == 0 || p[0] == '\r' || p[0] == '\n')) {
		h->hdr_done = true;
	}
	return len;
}

static size_t http_write_cb(char *p, size_t size, size_t n, void *data)
{
	struct probe *pr = data;
	struct http_part *h = &pr->http;
	size_t len = size * n, keep = h->output_max + 1;

	h->total += len;
	if (h->body.len < keep) {
		keep -= h->body.len;
		bcn_buf_put(&h->body, p, len < keep ? len : keep);
	}
	return bcn_buf_failed(&h->body) ? 0 : len;
}

/* Consul reads the body after the status and ignores errors while doing
 * so (agent/checks/check.go, CheckHTTP.check): an error after the final
 * response's header still yields a result from its status. */
static bool body_error(const struct http_part *h, CURLcode res)
{
	if (!h->hdr_done || (h->follow && h->location))
		return false;
	return res == CURLE_OPERATION_TIMEDOUT || res == CURLE_RECV_ERROR ||
	       res == CURLE_PARTIAL_FILE || res == CURLE_WRITE_ERROR ||
	       res == CURLE_BAD_CONTENT_ENCODING;
}

static void http_done_cb(struct bcn_curl_xfer *x, CURLcode res)
{
	struct probe *pr = x->data;
	struct http_part *h = &pr->http;
	enum cat_status status = CAT_CRITICAL;
	struct bcn_buf out;
	long code = 0;

	bcn_buf_init(&out);
	bcn_buf_printf(&out, "HTTP %s ", h->method);
	put_utf8(&out, h->url, strlen(h->url));
	bcn_buf_puts(&out, ": ");
	curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &code);
	if (res == CURLE_OK || (code > 0 && body_error(h, res))) {
		size_t cut = utf8_cut(h->body.data, h->body.len, h->output_max);

		if (code >= 200 && code <= 299)
			status = CAT_PASSING;
		else if (code == 429)
			status = CAT_WARNING;
		put_utf8(&out, h->status, strlen(h->status));
		bcn_buf_puts(&out, " Output: ");
		put_utf8(&out, h->body.data, cut);
		if (h->total > h->output_max)
			bcn_buf_printf(&out,
				       " ... (captured %zu of %llu bytes)", cut,
				       (unsigned long long)h->total);
	} else {
		const char *e =
		    h->err[0] != '\0' ? h->err : curl_easy_strerror(res);
		put_utf8(&out, e, strlen(e));
	}
	probe_finish(pr, status, &out);
	bcn_buf_close(&out);
}

/* Refuse what libcurl would refuse later, or what is not HTTP(S). */
static int check_url(const char *url)
{
	CURLU *u = curl_url();
	char *scheme = NULL;
	int rc = 0;

	if (u == NULL)
		return BCN_ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
		rc = BCN_EINVAL;
	curl_free(scheme);
	curl_url_cleanup(u);
	return rc;
}

/* Walk "name\0value\0" pairs; BCN_EINVAL if they are not whole pairs, a
 * name is not a token or a value holds CR or LF. Sets the has_* flags
 * for the headers we otherwise add. */
struct hdr_seen {
	bool accept, expect, ctype, encoding;
};

static int check_headers(const char *h, size_t len, struct hdr_seen *seen)
{
	size_t i = 0;

	if (len > 0 && (h == NULL || h[len - 1] != '\0'))
		return BCN_EINVAL;
	while (i < len) {
		const char *name = h + i, *val;
		size_t nlen = strlen(name), vlen;

		if (i + nlen + 1 >= len)
			return BCN_EINVAL; /* a name without a value */
		val = name + nlen + 1;
		vlen = strlen(val);
		if (!is_token(name, nlen) || strpbrk(val, "\r\n") != NULL)
			return BCN_EINVAL;
		seen->accept |= strcasecmp(name, "Accept") == 0;
		seen->expect |= strcasecmp(name, "Expect") == 0;
		seen->ctype |= strcasecmp(name, "Content-Type") == 0;
		seen->encoding |= strcasecmp(name, "Accept-Encoding") == 0;
		i += nlen + vlen + 2;
	}
	return 0;
}

static int add_header(struct http_part *h, const char *line)
{
	struct curl_slist *l = curl_slist_append(h->hdrs, line);

	if (l == NULL)
		return BCN_ENOMEM;
	h->hdrs = l;
	return 0;
}

static int build_headers(struct http_part *h, const char *hs, size_t len,
			 const struct hdr_seen *seen)
{
	struct bcn_buf line;
	int rc = 0;

	/* What Go sends unless told otherwise, or what libcurl adds and Go
	 * does not (an empty "Name:" removes a libcurl header). */
	if (!seen->accept)
		rc = add_header(h, DEFAULT_ACCEPT);
	if (rc == 0 && !seen->expect)
		rc = add_header(h, "Expect:");
	if (rc == 0 && !seen->ctype)
		rc = add_header(h, "Content-Type:");
	bcn_buf_init(&line);
	for (size_t i = 0; rc == 0 && i < len;) {
		const char *name = hs + i, *val = name + strlen(name) + 1;

		bcn_buf_reset(&line);
		/* "Name;" is libcurl's way to send an empty value. */
		bcn_buf_printf(&line, val[0] != '\0' ? "%s: %s" : "%s;", name,
			       val);
		rc = bcn_buf_failed(&line) ? BCN_ENOMEM
					   : add_header(h, line.data);
		i += strlen(name) + strlen(val) + 2;
	}
	bcn_buf_close(&line);
	return rc;
}

static void http_setopts(struct probe *pr, const struct probe_http_def *def,
			 const struct hdr_seen *seen)
{
	struct http_part *h = &pr->http;
	CURL *e = h->easy;
	uint64_t tmo =
	    def->timeout_ms != 0 ? def->timeout_ms : DEFAULT_TIMEOUT_MS;
	bool get = strcmp(h->method, "GET") == 0;
	bool head = strcmp(h->method, "HEAD") == 0;
	bool post = strcmp(h->method, "POST") == 0;

	curl_easy_setopt(e, CURLOPT_URL, def->url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->hdrs);
	curl_easy_setopt(e, CURLOPT_USERAGENT, USER_AGENT);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, pr);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, http_header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, pr);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, h->err);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
			 (long)(tmo < LONG_MAX ? tmo : LONG_MAX));
	/* Consul disables keep-alives for checks: each probe dials anew. */
	curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
	curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
	/* A probe checks the target itself, never a proxy on the way. */
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	if (!seen->encoding) /* Go's transport asks for gzip and inflates */
		curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "gzip");
	if (h->follow) {
		curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
		curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)MAX_REDIRS);
	}
	if (def->tls_skip_verify) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (head) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else if (def->body != NULL ||
		   (!get && (post || strcmp(h->method, "PUT") == 0 ||
			     strcmp(h->method, "PATCH") == 0))) {
		/* A body (possibly empty: Go sends Content-Length: 0). */
		const char *b = def->body != NULL ? def->body : "";
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)strlen(b));
		curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, b);
		if (!post)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, h->method);
	} else if (get) {
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	} else {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, h->method);
	}
}

int probe_http(struct probe_ctx *p, const struct probe_http_def *def,
	       probe_cb cb, void *data, struct probe **out)
{
	const char *method =
	    def->method != NULL && def->method[0] != '\0' ? def->method : "GET";
	struct hdr_seen seen = {0};
	struct probe *pr;
	int rc;

	assert(!p->closing);
	if (def->url == NULL || !is_token(method, strlen(method)) ||
	    check_headers(def->headers, def->headers_len, &seen) != 0)
		return BCN_EINVAL;
	rc = check_url(def->url);
	if (rc != 0)
		return rc;
	pr = bcn_calloc(1, sizeof *pr);
	if (pr == NULL)
		return BCN_ENOMEM;
	pr->ctx = p;
	pr->kind = PROBE_HTTP;
	pr->cb = cb;
	pr->data = data;
	pr->http.xfer.data = pr;
	pr->http.output_max =
	    def->output_max != 0 ? def->output_max : DEFAULT_OUTPUT_MAX;
	pr->http.follow = !def->disable_redirects;
	pr->http.url = bcn_strdup(def->url);
	pr->http.method = bcn_strdup(method);
	rc = BCN_ENOMEM;
	if (pr->http.url == NULL || pr->http.method == NULL)
		goto err_free;
	pr->http.easy = curl_easy_init();
	if (pr->http.easy == NULL)
		goto err_free;
	rc = build_headers(&pr->http, def->headers, def->headers_len, &seen);
	if (rc != 0)
		goto err_free;
	http_setopts(pr, def, &seen);
	rc = bcn_curl_add(p->curl, &pr->http.xfer, pr->http.easy, http_done_cb);
	if (rc != 0)
		goto err_free;
	link_probe(p, pr);
	if (out != NULL)
		*out = pr;
	return 0;
err_free:
	p->live++; /* probe_free() counts it down */
	probe_free(pr);
	return rc;
}

/* ---- TCP ----------------------------------------------------------------- */

static void tcp_move(struct tcp_part *t, enum tp_state to)
{
	assert(tp_next[t->state] & (1u << to));
	t->state = to;
}

static void tcp_report(struct probe *pr)
{
	struct tcp_part *t = &pr->tcp;
	struct bcn_buf out;

	bcn_buf_init(&out);
	if (!t->timed_out && t->err == 0) {
		bcn_buf_puts(&out, "TCP connect ");
		put_utf8(&out, t->hostport, strlen(t->hostport));
		bcn_buf_puts(&out, ": Success");
		probe_finish(pr, CAT_PASSING, &out);
	} else {
		/* Go's net.OpError texts (net.Dial), which Consul reports. */
		if (t->in_lookup) {
			bcn_buf_puts(&out, "dial tcp: lookup ");
			put_utf8(&out, t->host, strlen(t->host));
		} else {
			bcn_buf_printf(&out, "dial tcp %s", t->addr);
		}
		if (t->timed_out)
			bcn_buf_puts(&out, ": i/o timeout");
		else if (t->in_lookup && t->err == UV_EAI_NONAME)
			bcn_buf_puts(&out, ": no such host");
		else
			bcn_buf_printf(&out, ": %s%s",
				       t->in_lookup ? "" : "connect: ",
				       uv_strerror(t->err));
		probe_finish(pr, CAT_CRITICAL, &out);
	}
	bcn_buf_close(&out);
}

static void tcp_maybe_done(struct probe *pr)
{
	if (pr->tcp.state != TP_CLOSING || pr->tcp.pending > 0)
		return;
	if (pr->cancelled)
		probe_free(pr);
	else
		tcp_report(pr);
}

static void tcp_close_cb(uv_handle_t *h)
{
	struct probe *pr = h->data;

	assert(pr->tcp.pending > 0);
	pr->tcp.pending--;
	tcp_maybe_done(pr);
}

/* The result is decided (or the probe cancelled): close everything. The
 * report follows once the last handle and the resolver are done. */
static void tcp_close(struct probe *pr)
{
	struct tcp_part *t = &pr->tcp;

	tcp_move(t, TP_CLOSING);
	if (t->gai_busy)
		uv_cancel((uv_req_t *)&t->gai); /* else its callback comes */
	if (t->tcp_open) {
		t->tcp_open = false;
		uv_close((uv_handle_t *)&t->tcp, tcp_close_cb);
	}
	if (t->timer_open) {
		t->timer_open = false;
		uv_close((uv_handle_t *)&t->timer, tcp_close_cb);
	}
}

/* The connect or lookup ended with @err (0: connected). */
static void tcp_decide(struct probe *pr, int err)
{
	pr->tcp.err = err;
	tcp_close(pr);
}

static void tcp_connect(struct probe *pr, const struct sockaddr *sa);

/* Closed after a failed connect: try the next address, as Go's dialer
 * does (net.Dial's dialSerial), unless the probe ended meanwhile. */
static void tcp_retry_cb(uv_handle_t *h)
{
	struct probe *pr = h->data;
	struct tcp_part *t = &pr->tcp;
	const struct addrinfo *ai = t->ai_next;

	assert(t->pending > 0);
	t->pending--;
	if (t->state == TP_CLOSING) {
		tcp_maybe_done(pr);
		return;
	}
	t->ai_next = ai->ai_next;
	tcp_connect(pr, ai->ai_addr);
}

/* Connecting to @t->addr failed with @err: keep the first error, as Go
 * reports it, and try the next address or give up. */
static void tcp_connect_failed(struct probe *pr, int err)
{
	struct tcp_part *t = &pr->tcp;

	if (t->err == 0)
		t->err = err;
	if (t->ai_next == NULL) {
		tcp_close(pr);
		return;
	}
	t->tcp_open = false;
	uv_close((uv_handle_t *)&t->tcp, tcp_retry_cb);
}

static void tcp_connect_cb(uv_connect_t *req, int status)
{
	struct probe *pr = req->data;

	if (pr->tcp.state == TP_CLOSING)
		return; /* UV_ECANCELED from uv_close() */
	if (status == 0)
		tcp_decide(pr, 0);
	else
		tcp_connect_failed(pr, status);
}

static void tcp_timeout_cb(uv_timer_t *timer)
{
	struct probe *pr = timer->data;

	pr->tcp.timed_out = true;
	tcp_close(pr);
}

static void tcp_addr_name(struct tcp_part *t, const struct sockaddr *sa)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET6) {
		uv_ip6_name((const struct sockaddr_in6 *)(const void *)sa, ip,
			    sizeof ip);
		snprintf(t->addr, sizeof t->addr, "[%s]:%s", ip, t->port);
	} else {
		uv_ip4_name((const struct sockaddr_in *)(const void *)sa, ip,
			    sizeof ip);
		snprintf(t->addr, sizeof t->addr, "%s:%s", ip, t->port);
	}
}

static void tcp_connect(struct probe *pr, const struct sockaddr *sa)
{
	struct tcp_part *t = &pr->tcp;
	int rc;

	tcp_move(t, TP_CONNECTING);
	t->in_lookup = false;
	if (t->err == 0) /* the first failure's address is the one shown */
		tcp_addr_name(t, sa);
	uv_tcp_init(pr->ctx->loop, &t->tcp); /* no socket yet: cannot fail */
	t->tcp.data = pr;
	t->tcp_open = true;
	t->pending++;
	t->conn.data = pr;
	/* connect(2) runs now, so @sa need not outlive this call. An error
	 * here is reported from the close callbacks, never from the
	 * caller's stack. */
	rc = uv_tcp_connect(&t->conn, &t->tcp, sa, tcp_connect_cb);
	if (rc != 0)
		tcp_connect_failed(pr, rc);
}

static void tcp_gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct probe *pr = req->data;
	struct tcp_part *t = &pr->tcp;

	t->gai_busy = false;
	assert(t->pending > 0);
	t->pending--;
	if (t->state == TP_CLOSING) {
		uv_freeaddrinfo(res);
		tcp_maybe_done(pr);
	} else if (status != 0 || res == NULL) {
		uv_freeaddrinfo(res);
		tcp_decide(pr, status != 0 ? status : UV_EAI_NONAME);
	} else {
		t->ai = res;
		t->ai_next = res->ai_next;
		tcp_connect(pr, res->ai_addr);
	}
}

/* Split "host:port" or "[host]:port" the way Go's net.SplitHostPort does,
 * with a numeric port 1..65535 and a non-empty host. */
static int split_hostport(const char *hp, struct tcp_part *t, int *portp)
{
	const char *colon, *host = hp, *hend;
	size_t plen;
	unsigned long port = 0;

	if (hp[0] == '[') {
		host = hp + 1;
		hend = strchr(host, ']');
		if (hend == NULL || hend[1] != ':')
			return BCN_EINVAL;
		colon = hend + 1;
	} else {
		colon = strrchr(hp, ':');
		if (colon == NULL || memchr(hp, ':', (size_t)(colon - hp)))
			return BCN_EINVAL; /* none, or too many colons */
		hend = colon;
		if (memchr(hp, '[', (size_t)(hend - hp)) != NULL ||
		    memchr(hp, ']', (size_t)(hend - hp)) != NULL)
			return BCN_EINVAL;
	}
	if (hend == host || (size_t)(hend - host) >= sizeof t->host)
		return BCN_EINVAL;
	plen = strlen(colon + 1);
	if (plen == 0 || plen > 5)
		return BCN_EINVAL;
	for (size_t i = 0; i < plen; i++) {
		char c = colon[1 + i];
		if (c < '0' || c > '9')
			return BCN_EINVAL;
		port = port * 10 + (unsigned long)(c - '0');
	}
	if (port == 0 || port > 65535)
		return BCN_EINVAL;
	memcpy(t->host, host, (size_t)(hend - host));
	t->host[hend - host] = '\0';
	snprintf(t->port, sizeof t->port, "%lu", port);
	*portp = (int)port;
	return 0;
}

int probe_tcp(struct probe_ctx *p, const char *hostport, uint64_t timeout_ms,
	      probe_cb cb, void *data, struct probe **out)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV};
	struct sockaddr_in6 sin6;
	struct sockaddr_in sin;
	struct probe *pr;
	struct tcp_part *t;
	int port, rc;

	assert(!p->closing);
	pr = bcn_calloc(1, sizeof *pr);
	if (pr == NULL)
		return BCN_ENOMEM;
	pr->ctx = p;
	pr->kind = PROBE_TCP;
	pr->cb = cb;
	pr->data = data;
	t = &pr->tcp;
	rc = split_hostport(hostport, t, &port);
	if (rc != 0)
		goto err_free;
	t->hostport = bcn_strdup(hostport);
	if (t->hostport == NULL) {
		rc = BCN_ENOMEM;
		goto err_free;
	}
	t->state = TP_RESOLVING;
	t->in_lookup = true;
	uv_timer_init(p->loop, &t->timer); /* cannot fail */
	t->timer.data = pr;
	t->timer_open = true;
	t->pending = 1;
	uv_timer_start(&t->timer, tcp_timeout_cb,
		       timeout_ms != 0 ? timeout_ms : DEFAULT_TIMEOUT_MS, 0);
	link_probe(p, pr);
	if (out != NULL)
		*out = pr;
	if (uv_ip4_addr(t->host, port, &sin) == 0) {
		tcp_connect(pr, (const struct sockaddr *)&sin);
	} else if (strchr(t->host, ':') != NULL &&
		   uv_ip6_addr(t->host, port, &sin6) == 0) {
		tcp_connect(pr, (const struct sockaddr *)&sin6);
	} else {
		t->gai.data = pr;
		rc = uv_getaddrinfo(p->loop, &t->gai, tcp_gai_cb, t->host,
				    t->port, &hints);
		if (rc != 0) {
			tcp_decide(pr,
				   rc); /* reported from the close callback */
		} else {
			t->gai_busy = true;
			t->pending++;
		}
	}
	return 0;
err_free:
	p->live++; /* probe_free() counts it down */
	probe_free(pr);
	return rc;
}

/* ---- cancel -------------------------------------------------------------- */

void probe_cancel(struct probe *pr)
{
	assert(!pr->cancelled && pr->linked);
	pr->cancelled = true;
	unlink_probe(pr);
	if (pr->kind == PROBE_HTTP) {
		probe_free(pr); /* removes the transfer; no handle to close */
		return;
	}
	if (pr->tcp.state != TP_CLOSING)
		tcp_close(pr);
}
