/* libcurl's multi interface driven by a libuv loop (common/curl_io.h).
 *
 * Happy path: bcn_curl_add() hands an easy handle to the multi handle, and
 * libcurl asks, through sock_cb() and timer_cb(), to watch sockets and to
 * be woken. Each socket gets a uv_poll_t; the wake-up is one uv_timer_t.
 * When one fires we call curl_multi_socket_action() and then dispatch():
 * every finished transfer is taken out of the multi handle and its
 * callback runs.
 *
 * Failure modes: a socket we cannot watch (no memory, bad fd) is reported
 * to libcurl by returning -1 from sock_cb(), which fails the transfers on
 * it. A callback may close the context; the teardown then waits for the
 * dispatch loop to end, so that nothing touches freed state. The struct is
 * freed only from the last close callback of its handles. */
#include "common/curl_io.h"

#include <assert.h>
#include <stdbool.h>
#include <uv.h>

#include "common/alloc.h"

struct sock {
	uv_poll_t poll;
	curl_socket_t fd;
	struct bcn_curl *c;
	struct sock *prev, *next;
};

struct bcn_curl {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	struct sock *socks;
	unsigned xfers;	       /* transfers added and not yet done */
	unsigned open_handles; /* the timer and polls not yet closed */
	unsigned dispatching;  /* depth of dispatch() on the stack */
	bool closing;
	void (*close_cb)(void *data);
	void *close_data;
};

static void handle_closed(struct bcn_curl *c)
{
	void (*cb)(void *data) = c->close_cb;
	void *data = c->close_data;

	assert(c->open_handles > 0);
	if (--c->open_handles > 0)
		return;
	assert(c->closing);
	bcn_free(c);
	if (cb != NULL)
		cb(data);
}

static void sock_close_cb(uv_handle_t *h)
{
	struct sock *s = h->data;
	struct bcn_curl *c = s->c;

	bcn_free(s);
	handle_closed(c);
}

static void timer_close_cb(uv_handle_t *h)
{
	handle_closed(h->data);
}

static void sock_drop(struct bcn_curl *c, struct sock *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		c->socks = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	uv_poll_stop(&s->poll);
	uv_close((uv_handle_t *)&s->poll, sock_close_cb);
}

static void teardown(struct bcn_curl *c)
{
	assert(c->xfers == 0);
	/* Stop watching before libcurl closes the sockets it still caches,
	 * so that no poll outlives its fd; libcurl's CURL_POLL_REMOVE calls
	 * from the cleanup then find nothing assigned. */
	while (c->socks != NULL) {
		curl_multi_assign(c->multi, c->socks->fd, NULL);
		sock_drop(c, c->socks);
	}
	curl_multi_cleanup(c->multi);
	c->multi = NULL;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, timer_close_cb);
}

/* Run the callback of every finished transfer. */
static void dispatch(struct bcn_curl *c)
{
	CURLMsg *m;
	int left;

	c->dispatching++;
	while (!c->closing &&
	       (m = curl_multi_info_read(c->multi, &left)) != NULL) {
		CURL *easy = m->easy_handle;
		CURLcode res = m->data.result;
		struct bcn_curl_xfer *x;
		char *priv = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
		x = (struct bcn_curl_xfer *)(void *)priv;
		assert(x != NULL && x->c == c && x->easy == easy);
		/* @m is invalid from here on (curl_multi_info_read(3)). */
		bcn_curl_remove(x);
		x->cb(x, res);
	}
	if (--c->dispatching == 0 && c->closing)
		teardown(c);
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
	struct sock *s = p->data;
	struct bcn_curl *c = s->c;
	int flags = 0, running;

	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(c->multi, s->fd, flags, &running);
	dispatch(c);
}

static int sock_cb(CURL *e, curl_socket_t fd, int what, void *userp,
		   void *socketp)
{
	struct bcn_curl *c = userp;
	struct sock *s = socketp;
	int ev = 0;

	(void)e;
	if (what == CURL_POLL_REMOVE) {
		if (s != NULL) {
			curl_multi_assign(c->multi, fd, NULL);
			sock_drop(c, s);
		}
		return 0;
	}
	if (c->closing)
		return -1;
	if (s == NULL) {
		s = bcn_calloc(1, sizeof *s);
		if (s == NULL)
			return -1;
		if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
			bcn_free(s);
			return -1;
		}
		c->open_handles++;
		s->fd = fd;
		s->c = c;
		s->poll.data = s;
		s->next = c->socks;
		if (c->socks != NULL)
			c->socks->prev = s;
		c->socks = s;
		curl_multi_assign(c->multi, fd, s);
	}
	if (what & CURL_POLL_IN)
		ev |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		ev |= UV_WRITABLE;
	uv_poll_start(&s->poll, ev, poll_cb);
	return 0;
}

static void timeout_cb(uv_timer_t *t)
{
	struct bcn_curl *c = t->data;
	int running;

	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	dispatch(c);
}

/* libcurl's CURLMOPT_TIMERFUNCTION: only (re)arm the timer here; calling
 * back into libcurl from inside it is not allowed. */
static int timer_cb(CURLM *m, long ms, void *userp)
{
	struct bcn_curl *c = userp;

	(void)m;
	if (ms < 0)
		uv_timer_stop(&c->timer);
	else if (!c->closing)
		uv_timer_start(&c->timer, timeout_cb, (uint64_t)ms, 0);
	return 0;
}

int bcn_curl_open(struct bcn_curl **out, struct uv_loop_s *loop)
{
	struct bcn_curl *c = bcn_calloc(1, sizeof *c);

	if (c == NULL)
		return BCN_ENOMEM;
	c->multi = curl_multi_init();
	if (c->multi == NULL) {
		bcn_free(c);
		return BCN_ENOMEM;
	}
	c->loop = loop;
	uv_timer_init(loop, &c->timer); /* cannot fail */
	c->timer.data = c;
	c->open_handles = 1;
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	*out = c;
	return 0;
}

int bcn_curl_add(struct bcn_curl *c, struct bcn_curl_xfer *x, CURL *easy,
		 bcn_curl_done_cb cb)
{
	assert(!c->closing);
	x->easy = easy;
	x->cb = cb;
	curl_easy_setopt(easy, CURLOPT_PRIVATE, x);
	/* This arms the timer (timer_cb) and never completes the transfer
	 * here, so @cb cannot fire from inside this call. */
	if (curl_multi_add_handle(c->multi, easy) != CURLM_OK) {
		x->c = NULL;
		return BCN_ENOMEM;
	}
	x->c = c;
	c->xfers++;
	return 0;
}

void bcn_curl_remove(struct bcn_curl_xfer *x)
{
	struct bcn_curl *c = x->c;

	if (c == NULL)
		return;
	x->c = NULL;
	assert(c->xfers > 0);
	c->xfers--;
	curl_multi_remove_handle(c->multi, x->easy);
}

void bcn_curl_close(struct bcn_curl *c, void (*close_cb)(void *data),
		    void *data)
{
	assert(!c->closing);
	assert(c->xfers == 0);
	c->closing = true;
	c->close_cb = close_cb;
	c->close_data = data;
	if (c->dispatching == 0)
		teardown(c);
}
