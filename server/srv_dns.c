#include "server/srv_dns.h"

#include "dns/server.h"
#include "raft/cluster.h"
#include "server/srv.h"

static struct cat_store *dns_cat(void *data)
{
	struct srv *s = data;

	return s->cluster != NULL && !s->stopping ? cluster_cat(s->cluster)
						  : NULL;
}

/* Every catalog change is a Raft entry applied (or a snapshot restored),
 * which moves the applied index: the DNS answer cache may trust the
 * catalog's index while it stays. */
static uint64_t dns_version(void *data)
{
	struct srv *s = data;

	return s->cluster != NULL ? cluster_applied_index(s->cluster) : 0;
}

int srv_dns_start(struct srv *s, char *errmsg)
{
	const struct config *c = s->cfg;
	struct dns_server_options o = {
	    .addr = c->dns_addr,
	    .recursor = c->dns_recursor,
	    .lookup =
		{
		    .domain = c->dns_domain,
		    .alt_domain = c->dns_alt_domain,
		    .datacenter = c->datacenter,
		    .only_passing = c->dns_only_passing,
		    .enable_truncate = c->dns_enable_truncate,
		    .udp_answer_limit = (unsigned)c->dns_udp_answer_limit,
		    .node_ttl = (uint32_t)(c->dns_node_ttl / 1000),
		    .service_ttl = c->dns_service_ttl,
		},
	    .cat = dns_cat,
	    .version = dns_version,
	    .cat_data = s,
	};

	if (c->dns_addr[0] == '\0')
		return 0;
	return dns_server_start(&s->dns, s->loop, &o, errmsg);
}

void srv_dns_stop(struct srv *s)
{
	dns_server_stop(s->dns, NULL, NULL);
	s->dns = NULL;
}
