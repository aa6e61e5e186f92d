/* One-shot health probes on a libuv loop: an HTTP request (libcurl's multi
 * interface on the loop, common/curl_io.h) or a TCP connect, each bounded
 * by a timeout, each reporting a check status and Consul's output text.
 *
 * Outcomes, as Consul's agent reports them (agent/checks/check.go):
 *   HTTP: any 2xx → passing, 429 → warning, anything else or a transport
 *         error → critical. Output "HTTP <METHOD> <url>: <code> <reason>
 *         Output: <body>" or "HTTP <METHOD> <url>: <error>" (libcurl's
 *         error text). <code> <reason> is the final response's status line
 *         as sent (Go's resp.Status). The body is cut to output_max bytes
 *         (never inside a UTF-8 sequence) and suffixed " ... (captured N of
 *         M bytes)" when cut; N is the bytes kept, M the body's length. An
 *         error while reading the body after the final response's header
 *         (a timeout, a short body) still reports by status, as Consul does.
 *         Consul keeps the last bytes of a long body and adds no suffix; we
 *         keep the first ones and say so.
 *   TCP:  connected → passing, "TCP connect <host:port>: Success"; else
 *         critical, Go's net.Dial text: "dial tcp <ip:port>: connect:
 *         <reason>" (uv_strerror, e.g. "connection refused"), "dial tcp
 *         <ip:port>: i/o timeout", or "dial tcp: lookup <host>: <reason>".
 *         Every resolved address is tried in turn; the first error shows.
 * Output is valid UTF-8: NUL bytes and invalid sequences from the network
 * become U+FFFD.
 *
 * Every callback fires exactly once per started probe, from the loop and
 * never from inside probe_http()/probe_tcp(), unless the probe was
 * cancelled with probe_cancel() or the context closed first. A callback
 * may start probes, cancel others, or close the context. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "health/catalog.h"

struct uv_loop_s;
struct probe_ctx;
struct probe;

/* @status is CAT_PASSING, CAT_WARNING or CAT_CRITICAL; @output is
 * NUL-terminated and valid only during the call. The probe is gone when
 * the callback runs: do not probe_cancel() it. */
typedef void (*probe_cb)(void *data, enum cat_status status,
			 const char *output);

/* Create a context on @loop (borrowed; it must outlive the context).
 * Returns 0 or BCN_ENOMEM. */
int probe_ctx_open(struct probe_ctx **out,
		   struct uv_loop_s *loop) BCN_MUST_CHECK;
/* Cancel every probe in flight (their callbacks do not fire) and release
 * the context once its handles are closed: the loop must run for that.
 * May be called from a probe's callback; no probe may start after it. */
void probe_ctx_close(struct probe_ctx *p);

struct probe_http_def {
	const char *url;	/* http:// or https:// */
	const char *method;	/* NULL or "" → GET */
	const char *headers;	/* "Name\0value\0" pairs, repeated names ok */
	size_t headers_len;	/* bytes in @headers */
	const char *body;	/* NULL: none */
	uint64_t timeout_ms;	/* 0 → 10 s */
	bool tls_skip_verify;	/* TLSSkipVerify */
	bool disable_redirects; /* else up to 10 redirects are followed */
	size_t output_max;	/* 0 → 4096 */
};

/* Start an HTTP probe; @def and what it points to are borrowed (copied).
 * On success @*out (if @out is not NULL) identifies it for probe_cancel().
 * Sends Consul's User-Agent ("Consul Health Check") and Accept unless
 * @def->headers has them; never through a proxy; a fresh connection each
 * time. Returns 0, BCN_ENOMEM, or BCN_EINVAL for a URL libcurl refuses or
 * that is not http(s), a method that is not an HTTP token, or headers that
 * are not whole pairs, have a name that is not a token or a value with CR
 * or LF. On error the callback never fires. */
int probe_http(struct probe_ctx *p, const struct probe_http_def *def,
	       probe_cb cb, void *data, struct probe **out) BCN_MUST_CHECK;

/* Start a TCP probe of "host:port" (host: IPv4, [IPv6] or a name resolved
 * with getaddrinfo on the loop's thread pool; the port numeric, 1-65535).
 * @timeout_ms (0 → 10 s) bounds resolution and connect together. On
 * success @*out as for probe_http(). Returns 0, BCN_ENOMEM, or BCN_EINVAL
 * if @hostport does not parse (Go's net.SplitHostPort, and a non-empty
 * host); on error the callback never fires. */
int probe_tcp(struct probe_ctx *p, const char *hostport, uint64_t timeout_ms,
	      probe_cb cb, void *data, struct probe **out) BCN_MUST_CHECK;

/* Stop @pr, whose callback has not fired yet; it never will. */
void probe_cancel(struct probe *pr);
