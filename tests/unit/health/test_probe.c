/* Unit tests for health/probe_io.c: HTTP probes against a tiny HTTP server
 * running in the same libuv loop (statuses, redirects, output capture and
 * its UTF-8-safe cut, timeouts, what is sent), TCP probes to an open and a
 * closed port, by name and after a timeout, cancellation and closing the
 * context with probes in flight, and definitions that do not parse. Every
 * test closes every handle and asserts uv_loop_close() == 0. */
#include <arpa/inet.h>
#include <check.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "health/probe.h"
#include "tests/lib/fault_alloc.h"
#include "tests/lib/unit_run.h"

/* ---- the test HTTP server ------------------------------------------------ */

/* Answers by path; "/hang" never answers, "/partial" sends the header and
 * 5 of the 100 bytes it announces, then waits. */
struct tconn {
	uv_tcp_t tcp;
	uv_write_t wr;
	char req[16384];
	size_t len;
	bool answered;
	char *resp;
	struct tconn *prev, *next;
};

static uv_loop_t loop;
static uv_tcp_t listener;
static int srv_port;
static struct tconn *conns;
static int nreq;	     /* requests answered or held */
static char last_req[16384]; /* the last complete request */

static const char BIG_LEN[] = "100000";
#define BIG_N 100000

static void conn_close_cb(uv_handle_t *h)
{
	struct tconn *c = h->data;

	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	free(c->resp);
	free(c);
}

static void conn_close(struct tconn *c)
{
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct tconn *c = h->data;

	(void)hint;
	*buf = uv_buf_init(c->req + c->len,
			   (unsigned)(sizeof c->req - 1 - c->len));
}

static void write_cb(uv_write_t *w, int status)
{
	struct tconn *c = w->data;

	(void)status;
	if (strstr(c->resp, "Content-Length: 100\r\n") == NULL) /* partial */
		conn_close(c);
}

static char *make_resp(const char *path)
{
	char *r = malloc(BIG_N + 1024);

	ck_assert_ptr_nonnull(r);
	if (strncmp(path, "/200 ", 5) == 0)
		strcpy(r, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
	else if (strncmp(path, "/500 ", 5) == 0)
		strcpy(r, "HTTP/1.1 500 Internal Server Error\r\n"
			  "Content-Length: 4\r\n\r\nboom");
	else if (strncmp(path, "/429 ", 5) == 0)
		strcpy(r, "HTTP/1.1 429 Too Many Requests\r\n"
			  "Content-Length: 9\r\n\r\nslow down");
	else if (strncmp(path, "/301 ", 5) == 0)
		strcpy(r, "HTTP/1.1 301 Moved Permanently\r\nLocation: /200\r\n"
			  "Content-Length: 5\r\n\r\nmoved");
	else if (strncmp(path, "/noreason ", 10) == 0)
		strcpy(r, "HTTP/1.1 204\r\n\r\n");
	else if (strncmp(path, "/utf8 ", 6) == 0) /* € is E2 82 AC */
		strcpy(r, "HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n"
			  "abcdefghi\xe2\x82\xacxyz");
	else if (strncmp(path, "/bad8 ", 6) == 0)
		memcpy(r,
		       "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
		       "a\xff"
		       "b\0c",
		       sizeof "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" +
			   5);
	else if (strncmp(path, "/partial ", 9) == 0)
		strcpy(r, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
			  "hello");
	else if (strncmp(path, "/big ", 5) == 0) {
		int n = snprintf(
		    r, 1024, "HTTP/1.1 200 OK\r\nContent-Length: %s\r\n\r\n",
		    BIG_LEN);
		memset(r + n, 'x', BIG_N);
		r[n + BIG_N] = '\0';
	} else
		strcpy(r,
		       "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
	return r;
}

static size_t resp_len(const char *r)
{
	const char *body = strstr(r, "\r\n\r\n") + 4;
	const char *cl = strstr(r, "Content-Length: ");

	/* /partial sends less than it announces; /bad8 holds a NUL. */
	if (cl == NULL || strstr(r, "Content-Length: 100\r\n") != NULL)
		return strlen(r);
	return (size_t)(body - r) + strtoul(cl + 16, NULL, 10);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct tconn *c = s->data;
	const char *end, *path;
	size_t want;
	uv_buf_t out;

	(void)buf;
	if (n < 0) {
		conn_close(c);
		return;
	}
	c->len += (size_t)n;
	c->req[c->len] = '\0';
	end = strstr(c->req, "\r\n\r\n");
	if (c->answered || end == NULL)
		return;
	want = (size_t)(end + 4 - c->req);
	if (strstr(c->req, "Content-Length: ") != NULL)
		want +=
		    strtoul(strstr(c->req, "Content-Length: ") + 16, NULL, 10);
	if (c->len < want)
		return;
	c->answered = true;
	nreq++;
	memcpy(last_req, c->req, c->len + 1);
	path = strchr(c->req, ' ') + 1;
	if (strncmp(path, "/hang ", 6) == 0)
		return;
	c->resp = make_resp(path);
	out = uv_buf_init(c->resp, (unsigned)resp_len(c->resp));
	c->wr.data = c;
	ck_assert_int_eq(uv_write(&c->wr, s, &out, 1, write_cb), 0);
}

static void conn_cb(uv_stream_t *l, int status)
{
	struct tconn *c = calloc(1, sizeof *c);

	ck_assert_int_eq(status, 0);
	ck_assert_ptr_nonnull(c);
	uv_tcp_init(&loop, &c->tcp);
	c->tcp.data = c;
	c->next = conns;
	if (conns != NULL)
		conns->prev = c;
	conns = c;
	ck_assert_int_eq(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
	uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

static void server_start(void)
{
	struct sockaddr_in sin;
	struct sockaddr_storage ss;
	int len = sizeof ss;

	uv_ip4_addr("127.0.0.1", 0, &sin);
	uv_tcp_init(&loop, &listener);
	ck_assert_int_eq(
	    uv_tcp_bind(&listener, (const struct sockaddr *)&sin, 0), 0);
	ck_assert_int_eq(uv_listen((uv_stream_t *)&listener, 64, conn_cb), 0);
	uv_tcp_getsockname(&listener, (struct sockaddr *)&ss, &len);
	srv_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void server_stop(void)
{
	if (!uv_is_closing((uv_handle_t *)&listener))
		uv_close((uv_handle_t *)&listener, NULL);
	for (struct tconn *c = conns; c != NULL; c = c->next)
		conn_close(c);
}

/* A port with nothing listening: bound, then closed again. */
static int closed_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	getsockname(fd, (struct sockaddr *)&sin, &len);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

/* ---- fixture and results ------------------------------------------------- */

static struct probe_ctx *ctx;
static int seq;

struct result {
	int calls;
	int order; /* seq at the call */
	enum cat_status status;
	char out[8192];
};

static void record_cb(void *data, enum cat_status status, const char *output)
{
	struct result *r = data;

	r->calls++;
	r->order = ++seq;
	r->status = status;
	snprintf(r->out, sizeof r->out, "%s", output);
}

static void setup(void)
{
	fault_alloc_fail_at(-1);
	seq = 0;
	nreq = 0;
	last_req[0] = '\0';
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	server_start();
	ck_assert_int_eq(probe_ctx_open(&ctx, &loop), 0);
}

static void teardown(void)
{
	fault_alloc_fail_at(-1);
	if (ctx != NULL)
		probe_ctx_close(ctx);
	ctx = NULL;
	server_stop();
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(uv_loop_close(&loop), 0); /* every handle closed */
}

static void run_until(const int *count, int want)
{
	while (*count < want)
		uv_run(&loop, UV_RUN_ONCE);
}

static void flag_cb(uv_timer_t *t)
{
	*(bool *)t->data = true;
}

/* Run the loop for @ms: whatever is due in that time happens. */
static void run_for(uint64_t ms)
{
	uv_timer_t t;
	bool fired = false;

	uv_timer_init(&loop, &t);
	t.data = &fired;
	uv_timer_start(&t, flag_cb, ms, 0);
	while (!fired)
		uv_run(&loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&loop, UV_RUN_NOWAIT); /* its close callback */
}

static char url[256];

static const char *url_of(const char *path)
{
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", srv_port, path);
	return url;
}

/* Start one HTTP probe, check that it does not call back at once, run
 * until it does. */
static void http_once(const struct probe_http_def *def, struct result *r)
{
	memset(r, 0, sizeof *r);
	ck_assert_int_eq(probe_http(ctx, def, record_cb, r, NULL), 0);
	ck_assert_int_eq(r->calls, 0); /* never from inside probe_http() */
	run_until(&r->calls, 1);
	run_for(20); /* and exactly once */
	ck_assert_int_eq(r->calls, 1);
}

static void tcp_once(const char *hostport, uint64_t timeout_ms,
		     struct result *r)
{
	memset(r, 0, sizeof *r);
	ck_assert_int_eq(
	    probe_tcp(ctx, hostport, timeout_ms, record_cb, r, NULL), 0);
	ck_assert_int_eq(r->calls, 0); /* never from inside probe_tcp() */
	run_until(&r->calls, 1);
	run_for(20);
	ck_assert_int_eq(r->calls, 1);
}

static void expect(const struct result *r, enum cat_status st,
		   const char *out_fmt, ...) BCN_PRINTF(3, 4);
static void expect(const struct result *r, enum cat_status st,
		   const char *out_fmt, ...)
{
	char want[8192];
	va_list ap;

	va_start(ap, out_fmt);
	vsnprintf(want, sizeof want, out_fmt, ap);
	va_end(ap);
	ck_assert_int_eq(r->status, st);
	ck_assert_str_eq(r->out, want);
}

/* ---- HTTP -----------------------------------------------------------------
 */

START_TEST(http_200_passing)
{
	struct probe_http_def d = {.url = url_of("/200")};
	struct result r;

	http_once(&d, &r);
	expect(&r, CAT_PASSING, "HTTP GET %s: 200 OK Output: ok", url);
	ck_assert_int_eq(nreq, 1);
	ck_assert_ptr_nonnull(strstr(last_req, "GET /200 HTTP/1.1\r\n"));
	ck_assert_ptr_nonnull(
	    strstr(last_req, "\r\nUser-Agent: Consul Health Check\r\n"));
	ck_assert_ptr_nonnull(
	    strstr(last_req, "\r\nAccept: text/plain, text/*, */*\r\n"));
}
END_TEST

START_TEST(http_500_critical)
{
	struct probe_http_def d = {.url = url_of("/500")};
	struct result r;

	http_once(&d, &r);
	expect(&r, CAT_CRITICAL,
	       "HTTP GET %s: 500 Internal Server Error Output: boom", url);
}
END_TEST

START_TEST(http_429_warning)
{
	struct probe_http_def d = {.url = url_of("/429")};
	struct result r;

	http_once(&d, &r);
	expect(&r, CAT_WARNING,
	       "HTTP GET %s: 429 Too Many Requests Output: slow down", url);
}
END_TEST

START_TEST(http_no_reason_phrase)
{
	struct probe_http_def d = {.url = url_of("/noreason")};
	struct result r;

	http_once(&d, &r);
	expect(&r, CAT_PASSING, "HTTP GET %s: 204 Output: ", url);
}
END_TEST

START_TEST(http_redirect_followed)
{
	struct probe_http_def d = {.url = url_of("/301")};
	struct result r;

	http_once(&d, &r);
	/* The URL shown is the check's, the status the final one's. */
	expect(&r, CAT_PASSING, "HTTP GET %s: 200 OK Output: ok", url);
	ck_assert_int_eq(nreq, 2);
}
END_TEST

START_TEST(http_redirect_disabled)
{
	struct probe_http_def d = {.url = url_of("/301"),
				   .disable_redirects = true};
	struct result r;

	http_once(&d, &r);
	expect(&r, CAT_CRITICAL,
	       "HTTP GET %s: 301 Moved Permanently Output: moved", url);
	ck_assert_int_eq(nreq, 1);
}
END_TEST

START_TEST(http_cut_never_splits_utf8)
{
	/* Body "abcdefghi€xyz", 15 bytes, € at bytes 9..11. */
	struct probe_http_def d = {.url = url_of("/utf8"), .output_max = 10};
	struct result r;

	http_once(&d, &r);
	expect(&r, CAT_PASSING,
	       "HTTP GET %s: 200 OK Output: abcdefghi ... (captured 9 of 15 "
	       "bytes)",
	       url);
	d.output_max = 11;
	http_once(&d, &r);
	expect(&r, CAT_PASSING,
	       "HTTP GET %s: 200 OK Output: abcdefghi ... (captured 9 of 15 "
	       "bytes)",
	       url);
	d.output_max = 12;
	http_once(&d, &r);
	expect(&r, CAT_PASSING,
	       "HTTP GET %s: 200 OK Output: abcdefghi\xe2\x82\xac ... "
	       "(captured 12 of 15 bytes)",
	       url);
	d.output_max = 15; /* exactly fits: no suffix */
	http_once(&d, &r);
	expect(&r, CAT_PASSING,
	       "HTTP GET %s: 200 OK Output: abcdefghi\xe2\x82\xacxyz", url);
}
END_TEST

START_TEST(http_big_body_capped_at_default)
{
	struct probe_http_def d = {.url = url_of("/big")};
	struct result r;
	char want[8192];
	int n;

	http_once(&d, &r);
	n = snprintf(want, sizeof want, "HTTP GET %s: 200 OK Output: ", url);
	memset(want + n, 'x', 4096);
	snprintf(want + n + 4096, sizeof want - (size_t)n - 4096,
		 " ... (captured 4096 of %d bytes)", BIG_N);
	ck_assert_int_eq(r.status, CAT_PASSING);
	ck_assert_str_eq(r.out, want);
}
END_TEST

START_TEST(http_invalid_utf8_replaced)
{
	struct probe_http_def d = {.url = url_of("/bad8")};
	struct result r;

	http_once(&d, &r);
	expect(&r, CAT_PASSING,
	       "HTTP GET %s: 200 OK Output: a\xef\xbf\xbd"
	       "b\xef\xbf\xbd"
	       "c",
	       url);
}
END_TEST

START_TEST(http_timeout_critical)
{
	struct probe_http_def d = {.url = url_of("/hang"), .timeout_ms = 200};
	struct result r;
	char want[512];
	uint64_t t0 = uv_now(&loop);

	http_once(&d, &r);
	ck_assert_int_eq(r.status, CAT_CRITICAL);
	snprintf(want, sizeof want, "HTTP GET %s: Operation timed out after ",
		 url);
	ck_assert_msg(strncmp(r.out, want, strlen(want)) == 0, "%s", r.out);
	ck_assert_uint_ge(uv_now(&loop) - t0, 190);
	ck_assert_uint_lt(uv_now(&loop) - t0, 2000);
}
END_TEST

START_TEST(http_body_error_after_header_uses_status)
{
	/* Consul ignores errors while reading the body. */
	struct probe_http_def d = {.url = url_of("/partial"),
				   .timeout_ms = 300};
	struct result r;

	http_once(&d, &r);
	expect(&r, CAT_PASSING, "HTTP GET %s: 200 OK Output: hello", url);
}
END_TEST

START_TEST(http_refused_critical)
{
	char u[64], want[128];
	struct probe_http_def d = {.url = u};
	struct result r;

	snprintf(u, sizeof u, "http://127.0.0.1:%d/", closed_port());
	http_once(&d, &r);
	ck_assert_int_eq(r.status, CAT_CRITICAL);
	snprintf(want, sizeof want, "HTTP GET %s: Failed to connect to ", u);
	ck_assert_msg(strncmp(r.out, want, strlen(want)) == 0, "%s", r.out);
}
END_TEST

START_TEST(http_method_headers_body)
{
	static const char hdrs[] = "X-A\0one\0X-A\0two\0X-Empty\0\0Accept\0"
				   "application/json";
	struct probe_http_def d = {.url = url_of("/200"),
				   .method = "PUT",
				   .headers = hdrs,
				   .headers_len = sizeof hdrs,
				   .body = "hello"};
	struct result r;

	http_once(&d, &r);
	expect(&r, CAT_PASSING, "HTTP PUT %s: 200 OK Output: ok", url);
	ck_assert_msg(strncmp(last_req, "PUT /200 HTTP/1.1\r\n", 19) == 0, "%s",
		      last_req);
	ck_assert_ptr_nonnull(strstr(last_req, "\r\nX-A: one\r\n"));
	ck_assert_ptr_nonnull(strstr(last_req, "\r\nX-A: two\r\n"));
	ck_assert_ptr_nonnull(strstr(last_req, "\r\nX-Empty:"));
	ck_assert_ptr_nonnull(strstr(last_req, "\r\nAccept: application/json"));
	ck_assert_ptr_null(strstr(last_req, "text/plain")); /* replaced */
	ck_assert_ptr_null(strstr(last_req, "Expect:"));
	ck_assert_ptr_null(strstr(last_req, "Content-Type:"));
	ck_assert_ptr_nonnull(strstr(last_req, "\r\nContent-Length: 5\r\n"));
	ck_assert_ptr_nonnull(strstr(last_req, "\r\n\r\nhello"));
}
END_TEST

START_TEST(http_post_without_body)
{
	struct probe_http_def d = {.url = url_of("/200"), .method = "POST"};
	struct result r;

	http_once(&d, &r);
	expect(&r, CAT_PASSING, "HTTP POST %s: 200 OK Output: ok", url);
	ck_assert(strncmp(last_req, "POST /200 HTTP/1.1\r\n", 20) == 0);
	ck_assert_ptr_nonnull(strstr(last_req, "\r\nContent-Length: 0\r\n"));
}
END_TEST

START_TEST(http_bad_definitions)
{
	static const char *const bad_urls[] = {
	    "ftp://127.0.0.1/", "file:///etc/passwd", "not a url",
	    "127.0.0.1:80/x",	"http://[::1/",	      "",
	};
	static const char odd[] = "X-A\0one\0X-B"; /* a name, no value */
	static const char badname[] = "X A\0one";
	static const char crlf[] = "X-A\0one\r\nX-Evil: 1";
	struct probe_http_def d = {.url = url_of("/200")};
	struct result r = {0};

	for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
		d.url = bad_urls[i];
		ck_assert_int_eq(probe_http(ctx, &d, record_cb, &r, NULL),
				 BCN_EINVAL);
	}
	d.url = NULL;
	ck_assert_int_eq(probe_http(ctx, &d, record_cb, &r, NULL), BCN_EINVAL);
	d.url = url_of("/200");
	d.method = "GE T";
	ck_assert_int_eq(probe_http(ctx, &d, record_cb, &r, NULL), BCN_EINVAL);
	d.method = NULL;
	d.headers = odd;
	d.headers_len = sizeof odd;
	ck_assert_int_eq(probe_http(ctx, &d, record_cb, &r, NULL), BCN_EINVAL);
	d.headers = badname;
	d.headers_len = sizeof badname;
	ck_assert_int_eq(probe_http(ctx, &d, record_cb, &r, NULL), BCN_EINVAL);
	d.headers = crlf;
	d.headers_len = sizeof crlf;
	ck_assert_int_eq(probe_http(ctx, &d, record_cb, &r, NULL), BCN_EINVAL);
	d.headers_len = 3; /* not NUL-terminated */
	ck_assert_int_eq(probe_http(ctx, &d, record_cb, &r, NULL), BCN_EINVAL);
	run_for(50);
	ck_assert_int_eq(r.calls, 0);
	ck_assert_int_eq(nreq, 0);
}
END_TEST

/* ---- TCP ------------------------------------------------------------------
 */

START_TEST(tcp_open_port_passing)
{
	char hp[64];
	struct result r;

	snprintf(hp, sizeof hp, "127.0.0.1:%d", srv_port);
	tcp_once(hp, 0, &r);
	expect(&r, CAT_PASSING, "TCP connect %s: Success", hp);
}
END_TEST

START_TEST(tcp_closed_port_critical)
{
	char hp[64];
	struct result r;

	snprintf(hp, sizeof hp, "127.0.0.1:%d", closed_port());
	tcp_once(hp, 0, &r);
	expect(&r, CAT_CRITICAL, "dial tcp %s: connect: connection refused",
	       hp);
}
END_TEST

START_TEST(tcp_by_name)
{
	char hp[64];
	struct result r;

	snprintf(hp, sizeof hp, "localhost:%d", srv_port);
	tcp_once(hp, 2000, &r);
	expect(&r, CAT_PASSING, "TCP connect %s: Success", hp);
}
END_TEST

START_TEST(tcp_ipv6_refused)
{
	char hp[64], want[128];
	struct result r;

	snprintf(hp, sizeof hp, "[::1]:%d", closed_port());
	tcp_once(hp, 2000, &r);
	ck_assert_int_eq(r.status, CAT_CRITICAL);
	/* "connection refused", or no IPv6 here at all. */
	snprintf(want, sizeof want, "dial tcp %s: connect: ", hp);
	ck_assert_msg(strncmp(r.out, want, strlen(want)) == 0, "%s", r.out);
}
END_TEST

START_TEST(tcp_timeout)
{
	/* A listener whose accept queue is full drops further SYNs, so a
	 * connect to it hangs until our timer fires. */
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof sin;
	int lfd = socket(AF_INET, SOCK_STREAM, 0), fill[4];
	char hp[64];
	struct result r;
	uint64_t t0;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sin, sizeof sin), 0);
	ck_assert_int_eq(listen(lfd, 0), 0);
	getsockname(lfd, (struct sockaddr *)&sin, &len);
	for (int i = 0; i < 4; i++) {
		fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		connect(fill[i], (struct sockaddr *)&sin, sizeof sin);
	}
	usleep(50000);
	snprintf(hp, sizeof hp, "127.0.0.1:%d", ntohs(sin.sin_port));
	t0 = uv_now(&loop);
	tcp_once(hp, 300, &r);
	expect(&r, CAT_CRITICAL, "dial tcp %s: i/o timeout", hp);
	ck_assert_uint_ge(uv_now(&loop) - t0, 290);
	for (int i = 0; i < 4; i++)
		close(fill[i]);
	close(lfd);
}
END_TEST

START_TEST(tcp_connect_fails_at_once)
{
	/* connect(2) refuses a broadcast address at once; the report still
	 * comes from the loop. */
	struct result r;

	tcp_once("255.255.255.255:80", 0, &r);
	ck_assert_int_eq(r.status, CAT_CRITICAL);
	ck_assert_msg(
	    strncmp(r.out, "dial tcp 255.255.255.255:80: connect: ", 38) == 0,
	    "%s", r.out);
}
END_TEST

START_TEST(tcp_unparsable)
{
	static const char *const bad[] = {
	    "",
	    "nocolon",
	    "127.0.0.1:",
	    "127.0.0.1:0",
	    "127.0.0.1:65536",
	    "127.0.0.1:99999",
	    "127.0.0.1:8o",
	    ":80",
	    "::1:80",
	    "[::1:80",
	    "[::1]80",
	    "[::1]",
	    "a]b:80",
	    "[]:80",
	    "127.0.0.1:+80",
	    "127.0.0.1:123456",
	};
	struct result r = {0};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(probe_tcp(ctx, bad[i], 100, record_cb, &r,
					NULL) == BCN_EINVAL,
			      "%s", bad[i]);
	run_for(50);
	ck_assert_int_eq(r.calls, 0);
}
END_TEST

/* ---- cancel and close -----------------------------------------------------
 */

START_TEST(cancel_in_flight)
{
	struct probe_http_def d = {.url = url_of("/hang"), .timeout_ms = 200};
	struct probe *h, *t1, *t2, *t3;
	struct result rh = {0}, r1 = {0}, r2 = {0}, r3 = {0}, rk = {0};
	char hp[64], name[64];

	snprintf(hp, sizeof hp, "127.0.0.1:%d", srv_port);
	snprintf(name, sizeof name, "localhost:%d", srv_port);
	ck_assert_int_eq(probe_http(ctx, &d, record_cb, &rh, &h), 0);
	ck_assert_int_eq(probe_tcp(ctx, hp, 200, record_cb, &r1, &t1), 0);
	ck_assert_int_eq(probe_tcp(ctx, name, 200, record_cb, &r2, &t2), 0);
	/* Decided already (connect(2) failed at once), report still due. */
	ck_assert_int_eq(
	    probe_tcp(ctx, "255.255.255.255:80", 200, record_cb, &r3, &t3), 0);
	ck_assert_int_eq(probe_tcp(ctx, hp, 1000, record_cb, &rk, NULL), 0);
	/* Cancelled before the loop ran: connecting, resolving, closing. */
	probe_cancel(t1);
	probe_cancel(t2);
	probe_cancel(t3);
	/* The HTTP probe is in flight once the server holds its request. */
	run_until(&nreq, 1);
	probe_cancel(h);
	run_for(400); /* past every timeout */
	ck_assert_int_eq(rh.calls + r1.calls + r2.calls + r3.calls, 0);
	ck_assert_int_eq(rk.calls, 1); /* the one not cancelled reports */
	ck_assert_int_eq(rk.status, CAT_PASSING);
}
END_TEST

START_TEST(ctx_close_in_flight)
{
	struct probe_http_def d = {.url = url_of("/hang")};
	struct result r[6] = {{0}};
	char hp[64], name[64], closed[64];

	snprintf(hp, sizeof hp, "127.0.0.1:%d", srv_port);
	snprintf(name, sizeof name, "localhost:%d", srv_port);
	snprintf(closed, sizeof closed, "127.0.0.1:%d", closed_port());
	ck_assert_int_eq(probe_http(ctx, &d, record_cb, &r[0], NULL), 0);
	run_until(&nreq, 1); /* the server holds it */
	d.url = url_of("/200");
	ck_assert_int_eq(probe_http(ctx, &d, record_cb, &r[1], NULL), 0);
	ck_assert_int_eq(probe_tcp(ctx, hp, 0, record_cb, &r[2], NULL), 0);
	ck_assert_int_eq(probe_tcp(ctx, name, 0, record_cb, &r[3], NULL), 0);
	ck_assert_int_eq(probe_tcp(ctx, closed, 0, record_cb, &r[4], NULL), 0);
	ck_assert_int_eq(
	    probe_tcp(ctx, "255.255.255.255:80", 0, record_cb, &r[5], NULL), 0);
	probe_ctx_close(ctx);
	ctx = NULL;
	server_stop();
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	for (int i = 0; i < 6; i++)
		ck_assert_int_eq(r[i].calls, 0);
}
END_TEST

/* A callback that closes the context: the other probes never report. */
static void close_ctx_cb(void *data, enum cat_status status, const char *output)
{
	record_cb(data, status, output);
	probe_ctx_close(ctx);
	ctx = NULL;
}

START_TEST(ctx_close_from_callbacks)
{
	struct probe_http_def d = {.url = url_of("/200")};
	struct result a = {0}, b = {0};
	char hp[64];

	/* From an HTTP probe's callback (inside the curl dispatch). */
	ck_assert_int_eq(probe_http(ctx, &d, close_ctx_cb, &a, NULL), 0);
	d.url = url_of("/hang");
	ck_assert_int_eq(probe_http(ctx, &d, record_cb, &b, NULL), 0);
	run_until(&a.calls, 1);
	ck_assert_ptr_null(ctx);
	run_for(50);
	ck_assert_int_eq(b.calls, 0);

	/* From a TCP probe's callback. */
	memset(&a, 0, sizeof a);
	ck_assert_int_eq(probe_ctx_open(&ctx, &loop), 0);
	snprintf(hp, sizeof hp, "127.0.0.1:%d", srv_port);
	ck_assert_int_eq(probe_tcp(ctx, hp, 0, close_ctx_cb, &a, NULL), 0);
	ck_assert_int_eq(probe_http(ctx, &d, record_cb, &b, NULL), 0);
	run_until(&a.calls, 1);
	ck_assert_int_eq(a.status, CAT_PASSING);
	run_for(50);
	ck_assert_int_eq(a.calls, 1);
	ck_assert_int_eq(b.calls, 0);
}
END_TEST

/* Callbacks in completion order, each exactly once. */
START_TEST(many_probes_each_once)
{
	struct probe_http_def d = {.url = url_of("/200")};
	struct result r[20];
	int done = 0;
	char hp[64];

	snprintf(hp, sizeof hp, "127.0.0.1:%d", srv_port);
	memset(r, 0, sizeof r);
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(probe_http(ctx, &d, record_cb, &r[i], NULL),
				 0);
	for (int i = 10; i < 20; i++)
		ck_assert_int_eq(probe_tcp(ctx, hp, 0, record_cb, &r[i], NULL),
				 0);
	while (done < 20) {
		uv_run(&loop, UV_RUN_ONCE);
		done = 0;
		for (int i = 0; i < 20; i++)
			done += r[i].calls;
	}
	run_for(20);
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(r[i].calls, 1);
		ck_assert_int_eq(r[i].status, CAT_PASSING);
	}
	ck_assert_int_eq(seq, 20);
}
END_TEST

/* ---- out of memory --------------------------------------------------------
 */

START_TEST(start_survives_every_oom)
{
	struct probe_http_def d = {
	    .url = url_of("/200"), .headers = "X-A\0one\0", .headers_len = 8};
	char hp[64], name[64];

	snprintf(hp, sizeof hp, "127.0.0.1:%d", srv_port);
	snprintf(name, sizeof name, "localhost:%d", srv_port);
	for (int kind = 0; kind < 3; kind++) {
		for (long n = 0;; n++) {
			struct result r = {0};
			int rc;

			fault_alloc_fail_at(n);
			if (kind == 0)
				rc = probe_http(ctx, &d, record_cb, &r, NULL);
			else
				rc = probe_tcp(ctx, kind == 1 ? hp : name, 0,
					       record_cb, &r, NULL);
			fault_alloc_fail_at(-1);
			if (rc != 0) {
				ck_assert_int_eq(rc, BCN_ENOMEM);
				run_for(10);
				ck_assert_int_eq(r.calls, 0);
				continue;
			}
			run_until(&r.calls, 1);
			ck_assert_int_eq(r.status, CAT_PASSING);
			break;
		}
	}
}
END_TEST

START_TEST(ctx_open_survives_every_oom)
{
	probe_ctx_close(ctx);
	ctx = NULL;
	for (long n = 0;; n++) {
		int rc;

		fault_alloc_fail_at(n);
		rc = probe_ctx_open(&ctx, &loop);
		fault_alloc_fail_at(-1);
		if (rc == 0)
			break;
		ck_assert_int_eq(rc, BCN_ENOMEM);
	}
}
END_TEST

static Suite *probe_suite(void)
{
	Suite *s = suite_create("probe");
	TCase *http = tcase_create("http");
	TCase *tcp = tcase_create("tcp");
	TCase *life = tcase_create("lifecycle");

	tcase_add_checked_fixture(http, setup, teardown);
	tcase_set_timeout(http, 20);
	tcase_add_test(http, http_200_passing);
	tcase_add_test(http, http_500_critical);
	tcase_add_test(http, http_429_warning);
	tcase_add_test(http, http_no_reason_phrase);
	tcase_add_test(http, http_redirect_followed);
	tcase_add_test(http, http_redirect_disabled);
	tcase_add_test(http, http_cut_never_splits_utf8);
	tcase_add_test(http, http_big_body_capped_at_default);
	tcase_add_test(http, http_invalid_utf8_replaced);
	tcase_add_test(http, http_timeout_critical);
	tcase_add_test(http, http_body_error_after_header_uses_status);
	tcase_add_test(http, http_refused_critical);
	tcase_add_test(http, http_method_headers_body);
	tcase_add_test(http, http_post_without_body);
	tcase_add_test(http, http_bad_definitions);
	suite_add_tcase(s, http);

	tcase_add_checked_fixture(tcp, setup, teardown);
	tcase_set_timeout(tcp, 20);
	tcase_add_test(tcp, tcp_open_port_passing);
	tcase_add_test(tcp, tcp_closed_port_critical);
	tcase_add_test(tcp, tcp_by_name);
	tcase_add_test(tcp, tcp_ipv6_refused);
	tcase_add_test(tcp, tcp_timeout);
	tcase_add_test(tcp, tcp_connect_fails_at_once);
	tcase_add_test(tcp, tcp_unparsable);
	suite_add_tcase(s, tcp);

	tcase_add_checked_fixture(life, setup, teardown);
	tcase_set_timeout(life, 60);
	tcase_add_test(life, cancel_in_flight);
	tcase_add_test(life, ctx_close_in_flight);
	tcase_add_test(life, ctx_close_from_callbacks);
	tcase_add_test(life, many_probes_each_once);
	tcase_add_test(life, start_survives_every_oom);
	tcase_add_test(life, ctx_open_survives_every_oom);
	suite_add_tcase(s, life);
	return s;
}

int main(void)
{
	int rc;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = unit_run(probe_suite());
	curl_global_cleanup();
	return rc;
}
