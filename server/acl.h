/* ACL rules and decisions (CONSUL-API.md §7).
 *
 * A policy's rules are a subset of Consul's HCL, or the same as JSON:
 *
 *   key_prefix "app/" { policy = "read" }     key "app/x" { policy = "write" }
 *   secret_prefix "db/" { policy = "read" }   service_prefix "" { ... }
 *   node_prefix "" { ... }   session_prefix "" { ... }   agent_prefix "" {...}
 *   operator = "read"        acl = "write"
 *
 * with policy one of deny, read, list, write (write ⊃ list ⊃ read). For a
 * resource and a name, the longest matching rule wins (an exact rule beats
 * a prefix rule of the same length); among a token's policies, equally long
 * rules combine to the strongest, except that deny beats everything. No
 * matching rule: the default policy, except for reading secrets, which
 * needs an explicit rule. A management token may do everything. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "kv/kv.h"

enum acl_access { ACL_DENY = 0, ACL_READ, ACL_LIST, ACL_WRITE };

enum acl_resource {
	ACL_KEY,
	ACL_SECRET,
	ACL_SERVICE,
	ACL_NODE,
	ACL_SESSION,
	ACL_AGENT,
	ACL_OPERATOR,
	ACL_ACL,
	ACL_RES_NR
};

#define ACL_ANONYMOUS	"00000000-0000-0000-0000-000000000002"
#define ACL_GLOBAL_MGMT "00000000-0000-0000-0000-000000000001"

struct acl_rule {
	enum acl_resource res;
	bool prefix;
	enum acl_access access;
	char *name;
};

struct acl_rules {
	struct acl_rule *v;
	size_t n, cap;
};

/* Parse @text and append its rules to @out. BCN_EINVAL with a reason in
 * @why on a syntax error or an unknown resource or policy. */
int acl_rules_parse(const char *text, struct acl_rules *out, char *why,
		    size_t whylen) BCN_MUST_CHECK;
void acl_rules_close(struct acl_rules *r);

/* Who a request is, for ACL decisions. */
struct acl_authz {
	bool enabled;	    /* --acl-enabled */
	bool default_allow; /* --acl-default-policy allow */
	bool management;
	bool anonymous; /* no token given */
	/* Unknown on this follower: allowed here because the request goes
	 * to the leader, which decides (reads and writes, never ?stale). */
	bool deferred;
	char accessor[KV_ACL_ID_LEN + 1];
	struct acl_rules rules;
};

/* The hash under which a token's secret is stored. */
void acl_hash_secret(const char *secret, unsigned char out[KV_ACL_HASH_LEN]);

/* Resolve @secret (NULL or "": anonymous) into @out. BCN_ENOTFOUND for a
 * token that does not exist ("ACL not found"). */
int acl_resolve(struct kv_store *kv, const char *secret, bool enabled,
		bool default_allow, struct acl_authz *out) BCN_MUST_CHECK;
void acl_authz_close(struct acl_authz *a);

bool acl_allows(const struct acl_authz *a, enum acl_resource res,
		const char *name, enum acl_access need);
const char *acl_resource_name(enum acl_resource res);
const char *acl_access_name(enum acl_access a);
