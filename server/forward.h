/* Forwarding a request that a follower cannot answer to the leader's HTTP
 * API, and relaying the leader's answer (status, headers, body). libcurl's
 * multi interface runs on the loop: its sockets in uv_poll_t handles, its
 * timeout in a uv_timer_t.
 *
 * A forwarded request carries X-Beacon-Forwarded; a server that receives one
 * and does not lead answers "No cluster leader" instead of forwarding again,
 * so a request makes at most one hop. */
#pragma once

#include <stdbool.h>

struct srv;
struct http_req;

#define FWD_HEADER "X-Beacon-Forwarded"
/* On a 503 to a forwarded request: the receiver does not lead, and nothing
 * was applied; the sender may try the next leader. */
#define FWD_NOT_LEADER "X-Beacon-Not-Leader"

/* Forward @r to the leader, or reply "No cluster leader" if no leader is
 * known or @r was forwarded already. Replies in every case (later). */
void fwd_start(struct http_req *r);
/* An internal call (a server's own request to another server). @done gets
 * the HTTP status (0 if the call failed) and the NUL-terminated body; it
 * fires exactly once, also at shutdown. @body (a C string) is copied. */
typedef void (*fwd_done_cb)(struct srv *s, void *data, long status,
			    const char *body);
int fwd_call(struct srv *s, const char *url, const char *method,
	     const char *body, long timeout_ms, fwd_done_cb done, void *data);
/* The client went away: drop the forward of @r, if any. */
void fwd_cancel(struct http_req *r);
/* Fail every forward in flight and release libcurl (shutdown). */
void fwd_close(struct srv *s);
