/* libcurl's multi interface on a libuv loop.
 *
 * One struct bcn_curl holds a CURLM whose sockets live in uv_poll_t handles
 * and whose timeout lives in a uv_timer_t, all on one loop. Callers make
 * their own easy handles, set every option they need, and add them with a
 * struct bcn_curl_xfer they embed; its @cb fires when the transfer ends.
 *
 * libcurl's ownership rules, as this glue uses them:
 * - An easy handle stays the caller's: the glue adds it to the multi handle
 *   and removes it again before @cb fires or in bcn_curl_remove(); the
 *   caller calls curl_easy_cleanup() after that (and never before).
 * - The glue owns CURLOPT_PRIVATE of every easy handle it holds (it points
 *   at the struct bcn_curl_xfer); callers keep their state in @data.
 * - Nothing here calls curl_global_init(): the program does, once, before
 *   any thread exists (server/main.c; tests call it in main()). */
#pragma once

#include <curl/curl.h>

#include "common/err.h"

struct uv_loop_s;
struct bcn_curl;
struct bcn_curl_xfer;

/* @res is the transfer's result (CURLE_OK or a libcurl error). The easy
 * handle is out of the multi handle already: the callback may clean it up,
 * free @x, add transfers, remove others, even bcn_curl_close() the
 * context. */
typedef void (*bcn_curl_done_cb)(struct bcn_curl_xfer *x, CURLcode res);

/* One transfer; the caller embeds it and keeps it alive while it is added.
 * Fields other than @data are the glue's. */
struct bcn_curl_xfer {
	void *data; /* the caller's; never touched by the glue */
	CURL *easy;
	bcn_curl_done_cb cb;
	struct bcn_curl *c; /* non-NULL while added */
};

/* Create a context on @loop (borrowed; it must outlive the context).
 * Returns 0 or BCN_ENOMEM; on error nothing is left to close. */
int bcn_curl_open(struct bcn_curl **out, struct uv_loop_s *loop) BCN_MUST_CHECK;

/* Start @easy (configured by the caller; still the caller's) as @x. @cb
 * fires exactly once, from the loop and never from inside this call, when
 * the transfer completes or fails; it does not fire if @x is removed first
 * with bcn_curl_remove(). Returns 0 or BCN_ENOMEM (then @cb never fires
 * and @x is not added). Not allowed after bcn_curl_close(). */
int bcn_curl_add(struct bcn_curl *c, struct bcn_curl_xfer *x, CURL *easy,
		 bcn_curl_done_cb cb) BCN_MUST_CHECK;

/* Stop @x if it is added (its callback will not fire); a no-op if it is
 * not, e.g. once its callback ran. The easy handle is the caller's again. */
void bcn_curl_remove(struct bcn_curl_xfer *x);

/* Release @c: the multi handle at once, its uv handles once closed, then
 * @close_cb (may be NULL) fires with @data from the loop. Every transfer
 * must have completed or been removed. May be called from a transfer's
 * callback; the loop must run for the release to finish. */
void bcn_curl_close(struct bcn_curl *c, void (*close_cb)(void *data),
		    void *data);
