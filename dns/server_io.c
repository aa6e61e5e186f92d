/* The DNS server's sockets (see dns/server.h).
 *
 * Happy path, UDP: libuv reads up to UDP_BATCH datagrams with one
 * recvmmsg() and hands them to udp_recv_cb() one by one;
 * dns_lookup_answer() writes each reply into the server's output buffer,
 * from which it is copied into the batch's replies; when the batch ends,
 * one sendmmsg() sends them all. Under load that is two system calls per
 * batch instead of two per query, which was most of the server's time
 * (the answers themselves mostly come from the lookup's cache). Without
 * recvmmsg(), or for a datagram read alone, uv_udp_try_send() sends the
 * reply before the callback returns. Only when the socket is full is a
 * reply copied and queued (a bounded number of them; beyond that it is
 * dropped, as a full socket would). TCP: each connection accumulates bytes
 * until a whole frame is in, answers it and queues the reply with
 * uv_write().
 *
 * Failure modes: anything a client sends is handed to the lookup, which
 * answers FORMERR or says to drop it; a TCP client that sends a partial
 * frame and stalls meets the idle timer; one that stops reading is paused,
 * then cut off; a write or read error closes its connection only. Memory
 * is freed from close callbacks: a connection when both of its handles have
 * closed, the server when all of its handles (connections included) have. */
#include "dns/server.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <uv.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/parse.h"
#include "dns/wire.h"

#define MOD	       "dns"
#define FRAME_MAX      (2 + DNS_MAX_MSG)
#define UDP_QUEUE_MAX  256 /* replies waiting for room in a UDP socket */
#define UDP_RCVBUF     (4 << 20)
#define CONN_BUF_FIRST 1024
/* Datagrams per recvmmsg(): libuv's most (UV__MMSG_MAXWIDTH), each in a
 * chunk of 64 KiB of the receive buffer (UV__UDP_DGRAM_MAXSIZE). */
#define UDP_BATCH 20
#define UDP_CHUNK (64 * 1024)

struct fwd;
struct conn;

/* A UDP reply waiting for the end of its recvmmsg() batch. */
struct udp_out {
	struct sockaddr_storage peer;
	size_t len;
};

struct dns_server {
	uv_loop_t *loop;
	struct dns_lookup *lookup;
	struct cat_store *(*cat)(void *data);
	uint64_t (*version)(void *data);
	void *cat_data;
	uv_udp_t udp;
	uv_tcp_t tcp;
	bool udp_init, tcp_init;

	/* Forwarding to the recursor. */
	bool has_recursor;
	struct sockaddr_storage rec_addr;
	uv_udp_t fwd_udp;
	uv_timer_t fwd_timer;
	bool fwd_init, timer_init;
	struct fwd *fwd_head, *fwd_tail; /* by deadline: oldest first */
	size_t n_fwds;
	unsigned fwd_timeout_ms;

	struct conn *conns;
	size_t n_conns;
	unsigned max_conns, idle_ms;
	size_t udp_queued;

	uint64_t rng;
	struct dns_server_stats stats;
	unsigned handles; /* open or closing, connections' included */
	bool stopping;
	void (*stop_cb)(void *data);
	void *stop_data;

	uint8_t *mbuf; /* UDP_BATCH chunks for recvmmsg(), or NULL */
	/* Replies of the current batch, sent with one sendmmsg() when it
	 * ends; out_buf holds UDP_BATCH replies of DNS_LOOKUP_UDP_MAX. */
	uint8_t *out_buf;
	struct udp_out out[UDP_BATCH];
	size_t n_out;
	uint8_t rbuf[DNS_MAX_MSG + 1];
	uint8_t obuf[FRAME_MAX]; /* 2 bytes for a TCP length, then the
				    message */
};

struct conn {
	struct dns_server *d;
	struct conn *prev, *next;
	uv_tcp_t tcp;
	uv_timer_t idle;
	uint8_t *buf;
	size_t len, cap;
	size_t wbytes; /* queued in uv_write()s */
	unsigned open; /* handles not yet closed */
	bool closing;
	bool paused; /* reading stopped: too much unwritten */
	bool eof;    /* close once the replies are out */
};

struct wreq {
	uv_write_t req;
	struct conn *c;
	size_t len;
	uint8_t data[];
};

struct usend {
	uv_udp_send_t req;
	struct dns_server *d;
	uint8_t data[];
};

struct fwd {
	struct fwd *prev, *next;
	uint64_t deadline; /* uv_now() */
	uint16_t id;	   /* in the forwarded query */
	uint16_t client_id;
	struct conn *conn; /* a TCP client; NULL when UDP or gone */
	bool tcp;
	struct sockaddr_storage peer; /* a UDP client */
	size_t qlen;
	uint8_t query[]; /* as the client sent it */
};

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint64_t rand_cb(void *data)
{
	struct dns_server *d = data;

	/* xorshift64: shuffling only; forward IDs come from uv_random(). */
	d->rng ^= d->rng << 13;
	d->rng ^= d->rng >> 7;
	d->rng ^= d->rng << 17;
	return d->rng;
}

/* "HOST:PORT", "[V6]:PORT", or with @defport >= 0 also "HOST" and a bare
 * IPv6 address. */
static int parse_addr(const char *s, int defport, struct sockaddr_storage *ss)
{
	char host[64];
	const char *port = NULL, *colon;
	size_t hlen;
	uint64_t p;

	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (end == NULL || (end[1] != ':' && end[1] != '\0'))
			return BCN_EINVAL;
		hlen = (size_t)(end - s - 1);
		s++;
		if (end[1] == ':')
			port = end + 2;
	} else if ((colon = strchr(s, ':')) != NULL &&
		   strchr(colon + 1, ':') == NULL) {
		hlen = (size_t)(colon - s);
		port = colon + 1;
	} else {
		hlen = strlen(s);
	}
	if (hlen == 0 || hlen >= sizeof host)
		return BCN_EINVAL;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (port != NULL) {
		if (bcn_parse_u64(port, &p) != 0 || p > 65535)
			return BCN_EINVAL;
	} else if (defport >= 0) {
		p = (uint64_t)defport;
	} else {
		return BCN_EINVAL;
	}
	memset(ss, 0, sizeof *ss);
	if (uv_ip4_addr(host, (int)p, (struct sockaddr_in *)ss) == 0 ||
	    uv_ip6_addr(host, (int)p, (struct sockaddr_in6 *)ss) == 0)
		return 0;
	return BCN_EINVAL;
}

static bool same_addr(const struct sockaddr *a,
		      const struct sockaddr_storage *b)
{
	if (a->sa_family != b->ss_family)
		return false;
	if (a->sa_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a,
					 *y = (const void *)b;

		return x->sin_port == y->sin_port &&
		       x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->sa_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a,
					  *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		       memcmp(&x->sin6_addr, &y->sin6_addr,
			      sizeof x->sin6_addr) == 0;
	}
	return false;
}

/* ---- life cycle ---------------------------------------------------------- */

static void maybe_finish(struct dns_server *d)
{
	void (*cb)(void *data) = d->stop_cb;
	void *data = d->stop_data;

	if (!d->stopping || d->handles > 0)
		return;
	dns_lookup_free(d->lookup);
	bcn_free(d->mbuf);
	bcn_free(d->out_buf);
	bcn_free(d);
	if (cb != NULL)
		cb(data);
}

static void handle_closed(uv_handle_t *h)
{
	struct dns_server *d = h->data;

	d->handles--;
	maybe_finish(d);
}

static void close_handle(uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, handle_closed);
}

static void fwd_unlink(struct dns_server *d, struct fwd *f)
{
	if (f->prev != NULL)
		f->prev->next = f->next;
	else
		d->fwd_head = f->next;
	if (f->next != NULL)
		f->next->prev = f->prev;
	else
		d->fwd_tail = f->prev;
	d->n_fwds--;
}

static void conn_close(struct conn *c);

/* Close everything; the last close callback frees @d. */
static void shut(struct dns_server *d)
{
	d->stopping = true;
	if (d->udp_init)
		close_handle((uv_handle_t *)&d->udp);
	if (d->tcp_init)
		close_handle((uv_handle_t *)&d->tcp);
	if (d->fwd_init)
		close_handle((uv_handle_t *)&d->fwd_udp);
	if (d->timer_init)
		close_handle((uv_handle_t *)&d->fwd_timer);
	for (struct conn *c = d->conns; c != NULL; c = c->next)
		conn_close(c);
	while (d->fwd_head != NULL) {
		struct fwd *f = d->fwd_head;

		fwd_unlink(d, f);
		bcn_free(f);
	}
}

void dns_server_stop(struct dns_server *d, void (*cb)(void *data), void *data)
{
	if (d == NULL || d->stopping)
		return;
	d->stop_cb = cb;
	d->stop_data = data;
	shut(d);
	/* A started server has its two listeners closing: the callback
	 * comes from handle_closed(), never from here. */
}

/* ---- sending ------------------------------------------------------------- */

static void udp_sent_cb(uv_udp_send_t *req, int status)
{
	struct usend *u = (struct usend *)req;

	if (status < 0 && status != UV_ECANCELED)
		bcn_debug(MOD, "UDP send: %s", uv_strerror(status));
	u->d->udp_queued--;
	bcn_free(u);
}

static void udp_send(struct dns_server *d, uv_udp_t *h,
		     const struct sockaddr *to, const uint8_t *msg, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)msg, (unsigned)len);
	struct usend *u;
	int rc = uv_udp_try_send(h, &b, 1, to);

	if (rc >= 0)
		return;
	if (rc != UV_EAGAIN && rc != UV_ENOBUFS) {
		bcn_debug(MOD, "UDP send: %s", uv_strerror(rc));
		return;
	}
	if (d->udp_queued >= UDP_QUEUE_MAX)
		return; /* as if the socket had been full */
	u = bcn_malloc(sizeof *u + len);
	if (u == NULL)
		return;
	u->d = d;
	memcpy(u->data, msg, len);
	b = uv_buf_init((char *)u->data, (unsigned)len);
	rc = uv_udp_send(&u->req, h, &b, 1, to, udp_sent_cb);
	if (rc != 0) {
		bcn_free(u);
		return;
	}
	d->udp_queued++;
}

static void conn_process(struct conn *c);
static void conn_start_reading(struct conn *c);

static void write_cb(uv_write_t *req, int status)
{
	struct wreq *w = (struct wreq *)req;
	struct conn *c = w->c;

	c->wbytes -= w->len;
	bcn_free(w);
	if (c->closing)
		return;
	if (status < 0) {
		bcn_debug(MOD, "TCP write: %s", uv_strerror(status));
		conn_close(c);
	} else if (c->eof && c->wbytes == 0) {
		conn_close(c);
	} else if (c->paused && c->wbytes < DNS_TCP_WBUF_MAX / 2) {
		c->paused = false;
		conn_process(c); /* frames that arrived before the pause */
		if (!c->paused && !c->closing)
			conn_start_reading(c);
	}
}

/* Queue @msg[0..@len) (length prefix included) on @c. */
static void conn_write(struct conn *c, const uint8_t *msg, size_t len)
{
	struct wreq *w;
	uv_buf_t b;

	if (c->closing)
		return;
	w = bcn_malloc(sizeof *w + len);
	if (w == NULL) {
		conn_close(c);
		return;
	}
	w->c = c;
	w->len = len;
	memcpy(w->data, msg, len);
	b = uv_buf_init((char *)w->data, (unsigned)len);
	if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb) != 0) {
		bcn_free(w);
		conn_close(c);
		return;
	}
	c->wbytes += len;
}

/* ---- forwarding ---------------------------------------------------------- */

/* Answer @f's client with @msg[0..@len), the ID put back. @msg is in
 * d->obuf + 2, so that a TCP length prefix fits in front. */
static void fwd_reply(struct dns_server *d, struct fwd *f, uint8_t *msg,
		      size_t len)
{
	put16(msg, f->client_id);
	if (!f->tcp) {
		udp_send(d, &d->udp, (const struct sockaddr *)&f->peer, msg,
			 len);
	} else if (f->conn != NULL) {
		put16(msg - 2, (uint16_t)len);
		conn_write(f->conn, msg - 2, len + 2);
	}
}

static void fwd_fail(struct dns_server *d, struct fwd *f)
{
	size_t len;

	if (dns_lookup_error(f->query, f->qlen, DNS_RCODE_SERVFAIL, true,
			     d->obuf + 2, DNS_MAX_MSG, &len) == 0)
		fwd_reply(d, f, d->obuf + 2, len);
}

static void fwd_timeout_cb(uv_timer_t *t)
{
	struct dns_server *d = t->data;
	uint64_t now = uv_now(d->loop);

	while (d->fwd_head != NULL && d->fwd_head->deadline <= now) {
		struct fwd *f = d->fwd_head;

		bcn_debug(MOD, "recursor: no answer in time");
		fwd_unlink(d, f);
		fwd_fail(d, f);
		bcn_free(f);
	}
	if (d->fwd_head != NULL)
		uv_timer_start(&d->fwd_timer, fwd_timeout_cb,
			       d->fwd_head->deadline - now, 0);
}

/* True if the question of @a[0..@alen) is that of @b[0..@blen). */
static bool same_question(const uint8_t *a, size_t alen, const uint8_t *b,
			  size_t blen)
{
	struct dns_reader ra, rb;
	struct dns_header ha, hb;
	struct dns_question qa, qb;

	return dns_reader_init(&ra, &ha, a, alen) == 0 &&
	       dns_reader_init(&rb, &hb, b, blen) == 0 &&
	       ha.count[DNS_SEC_QUESTION] == 1 &&
	       hb.count[DNS_SEC_QUESTION] == 1 &&
	       dns_reader_question(&ra, &qa) == 0 &&
	       dns_reader_question(&rb, &qb) == 0 &&
	       dns_name_equal(&qa.name, &qb.name) && qa.qtype == qb.qtype &&
	       qa.qclass == qb.qclass;
}

static void fwd_recv_cb(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
			const struct sockaddr *addr, unsigned flags)
{
	struct dns_server *d = h->data;
	const uint8_t *p = (const uint8_t *)buf->base;
	struct fwd *f;
	size_t len;

	if (nread < DNS_HEADER_LEN || addr == NULL ||
	    (flags & UV_UDP_PARTIAL) || d->stopping ||
	    !same_addr(addr, &d->rec_addr) || !(p[2] & 0x80))
		return;
	len = (size_t)nread;
	for (f = d->fwd_head; f != NULL; f = f->next)
		if (f->id == get16(p))
			break;
	if (f == NULL || !same_question(p, len, f->query, f->qlen))
		return; /* late, or not for us */
	fwd_unlink(d, f);
	memcpy(d->obuf + 2, p, len);
	fwd_reply(d, f, d->obuf + 2, len);
	bcn_free(f);
}

static void fwd_start(struct dns_server *d, const uint8_t *msg, size_t len,
		      const struct sockaddr *peer, struct conn *c)
{
	struct fwd *f = NULL;
	uint16_t id = 0;
	bool unique = false;
	size_t olen;

	if (len < DNS_HEADER_LEN)
		return;
	if (d->n_fwds < DNS_FWD_MAX)
		f = bcn_calloc(1, sizeof *f + len);
	if (f == NULL) {
		struct fwd tmp = {.tcp = c != NULL, .conn = c};

		/* Refuse politely: SERVFAIL, as a timeout would. */
		if (peer != NULL)
			memcpy(&tmp.peer, peer,
			       peer->sa_family == AF_INET6
				   ? sizeof(struct sockaddr_in6)
				   : sizeof(struct sockaddr_in));
		tmp.client_id = get16(msg);
		if (dns_lookup_error(msg, len, DNS_RCODE_SERVFAIL, true,
				     d->obuf + 2, DNS_MAX_MSG, &olen) == 0)
			fwd_reply(d, &tmp, d->obuf + 2, olen);
		return;
	}
	for (int tries = 0; tries < 8 && !unique; tries++) {
		if (uv_random(NULL, NULL, &id, sizeof id, 0, NULL) != 0)
			id = (uint16_t)rand_cb(d);
		unique = true;
		for (struct fwd *o = d->fwd_head; o != NULL && unique;
		     o = o->next)
			unique = o->id != id;
	}
	f->id = id;
	f->client_id = get16(msg);
	f->tcp = c != NULL;
	f->conn = c;
	if (peer != NULL)
		memcpy(&f->peer, peer,
		       peer->sa_family == AF_INET6
			   ? sizeof(struct sockaddr_in6)
			   : sizeof(struct sockaddr_in));
	f->qlen = len;
	memcpy(f->query, msg, len);
	f->deadline = uv_now(d->loop) + d->fwd_timeout_ms;
	f->prev = d->fwd_tail;
	if (d->fwd_tail != NULL)
		d->fwd_tail->next = f;
	else
		d->fwd_head = f;
	d->fwd_tail = f;
	d->n_fwds++;
	if (f == d->fwd_head)
		uv_timer_start(&d->fwd_timer, fwd_timeout_cb, d->fwd_timeout_ms,
			       0);
	memcpy(d->obuf, msg, len);
	put16(d->obuf, id);
	udp_send(d, &d->fwd_udp, (const struct sockaddr *)&d->rec_addr, d->obuf,
		 len);
}

/* ---- answering ----------------------------------------------------------- */

/* Answer @msg[0..@len) into d->obuf + 2. */
static enum dns_action answer(struct dns_server *d, const uint8_t *msg,
			      size_t len, bool tcp, size_t *out_len)
{
	struct dns_lookup_req req = {
	    .msg = msg,
	    .len = len,
	    .tcp = tcp,
	    .now = (uint32_t)time(NULL),
	    .rand = rand_cb,
	    .rand_data = d,
	    .version = d->version != NULL ? d->version(d->cat_data) : 0,
	};
	struct cat_store *cat = d->cat(d->cat_data);
	enum dns_action act;

	act =
	    dns_lookup_answer(d->lookup, cat, &req, d->obuf + 2,
			      tcp ? DNS_MAX_MSG : DNS_LOOKUP_UDP_MAX, out_len);
	if (tcp)
		d->stats.tcp++;
	else
		d->stats.udp++;
	if (act == DNS_ACT_FORWARD) {
		d->stats.forwarded++;
	} else if (act == DNS_ACT_DROP || *out_len < DNS_HEADER_LEN) {
		d->stats.dropped++;
	} else {
		unsigned rcode = d->obuf[2 + 3] & 0x0f;
		if (rcode == DNS_RCODE_NOERROR)
			d->stats.noerror++;
		else if (rcode == DNS_RCODE_NXDOMAIN)
			d->stats.nxdomain++;
		else
			d->stats.other_rcode++;
		if (d->obuf[2 + 2] & (DNS_FLAG_TC >> 8))
			d->stats.truncated++;
	}
	return act;
}

void dns_server_get_stats(const struct dns_server *d,
			  struct dns_server_stats *out)
{
	*out = d->stats;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct dns_server *d = h->data;

	(void)suggested;
	/* One buffer: each datagram is handled before the next is read. */
	*buf = uv_buf_init((char *)d->rbuf, sizeof d->rbuf);
}

/* With recvmmsg() (UV_UDP_RECVMMSG), libuv reads up to UDP_BATCH datagrams
 * in one system call into chunks of this buffer and hands each to
 * udp_recv_cb() in turn (UV_UDP_MMSG_CHUNK), then the buffer itself
 * (UV_UDP_MMSG_FREE, nothing to free: it is the server's). */
static void udp_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct dns_server *d = h->data;

	if (d->mbuf == NULL) {
		alloc_cb(h, suggested, buf);
		return;
	}
	*buf = uv_buf_init((char *)d->mbuf, UDP_BATCH * UDP_CHUNK);
}

static size_t addr_len(const struct sockaddr *a)
{
	return a->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					: sizeof(struct sockaddr_in);
}

/* Send the replies of the batch: one sendmmsg() while the socket takes
 * them, and what it does not take through udp_send() (queued, or dropped
 * as a full socket would). Not while libuv has sends queued: they go
 * first. */
static void udp_flush(struct dns_server *d)
{
	struct mmsghdr msgs[UDP_BATCH];
	struct iovec iov[UDP_BATCH];
	size_t n = d->n_out, i = 0;
	uv_os_fd_t fd;

	d->n_out = 0;
	if (n == 0)
		return;
	if (uv_udp_get_send_queue_count(&d->udp) == 0 &&
	    uv_fileno((uv_handle_t *)&d->udp, &fd) == 0) {
		memset(msgs, 0, n * sizeof *msgs);
		for (size_t k = 0; k < n; k++) {
			iov[k].iov_base = d->out_buf + k * DNS_LOOKUP_UDP_MAX;
			iov[k].iov_len = d->out[k].len;
			msgs[k].msg_hdr.msg_name = &d->out[k].peer;
			msgs[k].msg_hdr.msg_namelen = (socklen_t)addr_len(
			    (const struct sockaddr *)&d->out[k].peer);
			msgs[k].msg_hdr.msg_iov = &iov[k];
			msgs[k].msg_hdr.msg_iovlen = 1;
		}
		while (i < n) {
			int k = sendmmsg(fd, msgs + i, (unsigned)(n - i), 0);

			if (k > 0) {
				i += (size_t)k;
			} else if (errno == EAGAIN || errno == EWOULDBLOCK ||
				   errno == ENOBUFS) {
				break; /* full: udp_send() queues the rest */
			} else if (errno != EINTR) {
				/* sendmmsg() stops at a failed message and
				 * reports it on the next call: skip it. */
				bcn_debug(MOD, "UDP send: %s",
					  uv_strerror(-errno));
				i++;
			}
		}
	}
	for (; i < n; i++)
		udp_send(d, &d->udp, (const struct sockaddr *)&d->out[i].peer,
			 d->out_buf + i * DNS_LOOKUP_UDP_MAX, d->out[i].len);
}

/* Reply @len bytes of d->obuf + 2 to @to: at the end of the batch if this
 * datagram came in one, else now. */
static void udp_reply(struct dns_server *d, const struct sockaddr *to,
		      size_t len, unsigned flags)
{
	struct udp_out *o;

	if (!(flags & UV_UDP_MMSG_CHUNK) || d->out_buf == NULL ||
	    len > DNS_LOOKUP_UDP_MAX) {
		udp_send(d, &d->udp, to, d->obuf + 2, len);
		return;
	}
	if (d->n_out == UDP_BATCH)
		udp_flush(d);
	o = &d->out[d->n_out];
	memcpy(&o->peer, to, addr_len(to));
	o->len = len;
	memcpy(d->out_buf + d->n_out * DNS_LOOKUP_UDP_MAX, d->obuf + 2, len);
	d->n_out++;
}

static void udp_recv_cb(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
			const struct sockaddr *addr, unsigned flags)
{
	struct dns_server *d = h->data;
	size_t len;

	/* Anything but a datagram of a batch ends it (UV_UDP_MMSG_FREE
	 * normally). */
	if (!(flags & UV_UDP_MMSG_CHUNK) && !d->stopping)
		udp_flush(d);
	if (nread < 0) {
		bcn_debug(MOD, "UDP receive: %s", uv_strerror((int)nread));
		return;
	}
	if (addr == NULL || (flags & UV_UDP_PARTIAL) || d->stopping)
		return;
	switch (
	    answer(d, (const uint8_t *)buf->base, (size_t)nread, false, &len)) {
	case DNS_ACT_REPLY:
		udp_reply(d, addr, len, flags);
		break;
	case DNS_ACT_FORWARD:
		fwd_start(d, (const uint8_t *)buf->base, (size_t)nread, addr,
			  NULL);
		break;
	case DNS_ACT_DROP:
		break;
	}
}

/* ---- TCP connections ----------------------------------------------------- */

static void conn_handle_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct dns_server *d = c->d;

	d->handles--;
	if (--c->open > 0)
		return;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		d->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	d->n_conns--;
	bcn_free(c->buf);
	bcn_free(c);
	maybe_finish(d);
}

static void conn_close(struct conn *c)
{
	struct dns_server *d = c->d;

	if (c->closing)
		return;
	c->closing = true;
	for (struct fwd *f = d->fwd_head; f != NULL; f = f->next)
		if (f->conn == c)
			f->conn = NULL; /* its reply has nowhere to go */
	uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
	uv_close((uv_handle_t *)&c->idle, conn_handle_closed);
}

static void idle_cb(uv_timer_t *t)
{
	conn_close(t->data);
}

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;

	(void)suggested;
	if (c->cap - c->len < 512 && c->cap < FRAME_MAX) {
		size_t cap = c->cap == 0 ? CONN_BUF_FIRST : 2 * c->cap;
		uint8_t *nb;

		cap = cap > FRAME_MAX ? FRAME_MAX : cap;
		nb = bcn_realloc(c->buf, cap);
		if (nb != NULL) {
			c->buf = nb;
			c->cap = cap;
		}
	}
	/* A zero-length buffer makes libuv report UV_ENOBUFS. */
	*buf =
	    uv_buf_init((char *)c->buf + c->len, (unsigned)(c->cap - c->len));
}

/* Answer every whole frame in @c's buffer, unless paused. */
static void conn_process(struct conn *c)
{
	struct dns_server *d = c->d;
	size_t off = 0, len;

	while (!c->closing && !c->paused && c->len - off >= 2) {
		size_t flen = get16(c->buf + off);
		const uint8_t *msg = c->buf + off + 2;

		if (c->len - off - 2 < flen)
			break;
		off += 2 + flen;
		switch (answer(d, msg, flen, true, &len)) {
		case DNS_ACT_REPLY:
			put16(d->obuf, (uint16_t)len);
			conn_write(c, d->obuf, len + 2);
			break;
		case DNS_ACT_FORWARD:
			fwd_start(d, msg, flen, NULL, c);
			break;
		case DNS_ACT_DROP:
			conn_close(c); /* not DNS: nothing more to read */
			break;
		}
		if (!c->closing)
			uv_timer_start(&c->idle, idle_cb, d->idle_ms, 0);
		if (c->wbytes >= DNS_TCP_WBUF_MAX && !c->closing) {
			c->paused = true;
			uv_read_stop((uv_stream_t *)&c->tcp);
		}
	}
	if (c->closing)
		return;
	memmove(c->buf, c->buf + off, c->len - off);
	c->len -= off;
}

static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;

	(void)buf;
	if (nread == UV_EOF && c->wbytes > 0) {
		c->eof = true; /* write_cb closes once the replies are out */
		uv_read_stop(s);
		return;
	}
	if (nread < 0) {
		if (nread != UV_EOF)
			bcn_debug(MOD, "TCP read: %s", uv_strerror((int)nread));
		conn_close(c);
		return;
	}
	c->len += (size_t)nread;
	conn_process(c);
}

/* Also when a pause ends (write_cb()). */
static void conn_start_reading(struct conn *c)
{
	if (uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb,
			  conn_read_cb) != 0)
		conn_close(c);
}

static void connection_cb(uv_stream_t *server, int status)
{
	struct dns_server *d = server->data;
	struct conn *c;

	if (status < 0 || d->stopping) {
		bcn_debug(MOD, "TCP accept: %s", uv_strerror(status));
		return;
	}
	c = bcn_calloc(1, sizeof *c);
	if (c == NULL) {
		bcn_warn(MOD, "TCP accept: out of memory");
		return;
	}
	c->d = d;
	uv_tcp_init(d->loop, &c->tcp);
	uv_timer_init(d->loop, &c->idle);
	c->tcp.data = c->idle.data = c;
	c->open = 2;
	d->handles += 2;
	c->next = d->conns;
	if (d->conns != NULL)
		d->conns->prev = c;
	d->conns = c;
	d->n_conns++;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
	    d->n_conns > d->max_conns) {
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	uv_timer_start(&c->idle, idle_cb, d->idle_ms, 0);
	conn_start_reading(c);
}

/* ---- start --------------------------------------------------------------- */

int dns_server_start(struct dns_server **out, struct uv_loop_s *loop,
		     const struct dns_server_options *o, char *errmsg)
{
	struct dns_lookup_config lc = o->lookup;
	struct sockaddr_storage ss;
	struct dns_server *d;
	int rc;

	if (parse_addr(o->addr != NULL ? o->addr : "", -1, &ss) != 0) {
		bcn_errf(errmsg, "bad --dns-addr '%s' (want HOST:PORT)",
			 o->addr != NULL ? o->addr : "");
		return BCN_EINVAL;
	}
	d = bcn_calloc(1, sizeof *d);
	if (d == NULL)
		return BCN_ENOMEM;
	d->loop = loop;
	d->cat = o->cat;
	d->version = o->version;
	d->cat_data = o->cat_data;
	d->max_conns =
	    o->max_tcp_conns > 0 ? o->max_tcp_conns : DNS_TCP_MAX_CONNS;
	d->idle_ms = o->tcp_idle_ms > 0 ? o->tcp_idle_ms : DNS_TCP_IDLE_MS;
	d->fwd_timeout_ms = o->recursor_timeout_ms > 0
				? o->recursor_timeout_ms
				: DNS_RECURSOR_TIMEOUT_MS;
	if (uv_random(NULL, NULL, &d->rng, sizeof d->rng, 0, NULL) != 0 ||
	    d->rng == 0)
		d->rng = (uint64_t)time(NULL) | 1;
	if (o->recursor != NULL && o->recursor[0] != '\0') {
		if (parse_addr(o->recursor, 53, &d->rec_addr) != 0) {
			bcn_errf(errmsg,
				 "bad --dns-recursor '%s' (want HOST[:PORT])",
				 o->recursor);
			bcn_free(d);
			return BCN_EINVAL;
		}
		d->has_recursor = true;
	}
	lc.recursor = d->has_recursor;
	rc = dns_lookup_new(&d->lookup, &lc, errmsg);
	if (rc != 0) {
		bcn_free(d);
		return rc;
	}

	/* recvmmsg() if libuv and the kernel have it: fewer system calls
	 * under load. The buffer is only touched where datagrams land. If an
	 * allocation fails, one datagram per call into rbuf (a single chunk)
	 * and replies sent one by one: slower, not wrong. */
	rc = uv_udp_init_ex(loop, &d->udp, ss.ss_family | UV_UDP_RECVMMSG);
	if (rc == 0 && uv_udp_using_recvmmsg(&d->udp) == 1) {
		d->mbuf = bcn_malloc(UDP_BATCH * UDP_CHUNK);
		d->out_buf = bcn_malloc(UDP_BATCH * DNS_LOOKUP_UDP_MAX);
	}
	if (rc == 0) {
		d->udp_init = true;
		d->handles++;
		d->udp.data = d;
		rc = uv_udp_bind(&d->udp, (const struct sockaddr *)&ss, 0);
	}
	if (rc == 0) {
		(void)uv_recv_buffer_size((uv_handle_t *)&d->udp,
					  &(int){UDP_RCVBUF});
		rc = uv_udp_recv_start(&d->udp, udp_alloc_cb, udp_recv_cb);
	}
	if (rc != 0) {
		bcn_errf(errmsg, "DNS on UDP %s: %s", o->addr, uv_strerror(rc));
		goto err_shut;
	}
	rc = uv_tcp_init(loop, &d->tcp);
	if (rc == 0) {
		d->tcp_init = true;
		d->handles++;
		d->tcp.data = d;
		rc = uv_tcp_bind(&d->tcp, (const struct sockaddr *)&ss, 0);
	}
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&d->tcp, 128, connection_cb);
	if (rc != 0) {
		bcn_errf(errmsg, "DNS on TCP %s: %s", o->addr, uv_strerror(rc));
		goto err_shut;
	}
	if (d->has_recursor) {
		struct sockaddr_storage any;

		memset(&any, 0, sizeof any);
		rc =
		    d->rec_addr.ss_family == AF_INET6
			? uv_ip6_addr("::", 0, (struct sockaddr_in6 *)&any)
			: uv_ip4_addr("0.0.0.0", 0, (struct sockaddr_in *)&any);
		if (rc == 0)
			rc = uv_udp_init(loop, &d->fwd_udp);
		if (rc == 0) {
			d->fwd_init = true;
			d->handles++;
			d->fwd_udp.data = d;
			rc = uv_udp_bind(&d->fwd_udp,
					 (const struct sockaddr *)&any, 0);
		}
		if (rc == 0)
			rc = uv_udp_recv_start(&d->fwd_udp, alloc_cb,
					       fwd_recv_cb);
		if (rc == 0)
			rc = uv_timer_init(loop, &d->fwd_timer);
		if (rc == 0) {
			d->timer_init = true;
			d->handles++;
			d->fwd_timer.data = d;
		}
		if (rc != 0) {
			bcn_errf(errmsg, "DNS recursor socket: %s",
				 uv_strerror(rc));
			goto err_shut;
		}
	}
	bcn_info(
	    MOD, "DNS on %s (UDP and TCP), domain %s%s%s%s", o->addr, lc.domain,
	    lc.alt_domain != NULL && lc.alt_domain[0] != '\0' ? " and " : "",
	    lc.alt_domain != NULL ? lc.alt_domain : "",
	    d->has_recursor ? ", recursor set" : "");
	*out = d;
	return 0;
err_shut:
	shut(d); /* frees @d from the loop; no callback */
	if (d->handles == 0)
		maybe_finish(d);
	return rc;
}
