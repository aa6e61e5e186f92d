/* /v1/status/leader and /v1/status/peers. */
#include <string.h>

#include "server/http.h"
#include "server/srv.h"

void http_status_leader(struct http_req *r)
{
	const char *addr =
	    r->srv->cluster != NULL ? cluster_leader_addr(r->srv->cluster) : "";
	struct bcn_buf b;

	bcn_buf_init(&b);
	bcn_buf_put_json_str(&b, addr, strlen(addr));
	http_reply_json(r, 200, &b);
}

void http_status_peers(struct http_req *r)
{
	const char *addrs[64];
	size_t n = r->srv->cluster != NULL
		       ? cluster_voters(r->srv->cluster, addrs, 64)
		       : 0;
	struct bcn_buf b;

	bcn_buf_init(&b);
	bcn_buf_putc(&b, '[');
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			bcn_buf_putc(&b, ',');
		bcn_buf_put_json_str(&b, addrs[i], strlen(addrs[i]));
	}
	bcn_buf_putc(&b, ']');
	http_reply_json(r, 200, &b);
}
