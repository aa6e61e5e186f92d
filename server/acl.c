#include "server/acl.h"

#include <ctype.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"

static const char *const res_names[ACL_RES_NR] = {
    [ACL_KEY] = "key",		 [ACL_SECRET] = "secret",
    [ACL_SERVICE] = "service",	 [ACL_NODE] = "node",
    [ACL_SESSION] = "session",	 [ACL_AGENT] = "agent",
    [ACL_OPERATOR] = "operator", [ACL_ACL] = "acl",
};

static const char *const access_names[] = {
    [ACL_DENY] = "deny",
    [ACL_READ] = "read",
    [ACL_LIST] = "list",
    [ACL_WRITE] = "write",
};

const char *acl_resource_name(enum acl_resource res)
{
	return res < ACL_RES_NR ? res_names[res] : "?";
}

const char *acl_access_name(enum acl_access a)
{
	return a <= ACL_WRITE ? access_names[a] : "?";
}

void acl_rules_close(struct acl_rules *r)
{
	for (size_t i = 0; i < r->n; i++)
		bcn_free(r->v[i].name);
	bcn_free(r->v);
	memset(r, 0, sizeof *r);
}

static int add_rule(struct acl_rules *r, enum acl_resource res, bool prefix,
		    const char *name, size_t nlen, enum acl_access access)
{
	if (r->n == r->cap) {
		size_t cap = r->cap == 0 ? 8 : r->cap * 2;
		void *v = bcn_realloc(r->v, cap * sizeof *r->v);
		if (v == NULL)
			return BCN_ENOMEM;
		r->v = v;
		r->cap = cap;
	}
	r->v[r->n].name = bcn_strndup(name, nlen);
	if (r->v[r->n].name == NULL)
		return BCN_ENOMEM;
	r->v[r->n].res = res;
	r->v[r->n].prefix = prefix;
	r->v[r->n].access = access;
	r->n++;
	return 0;
}

/* "key_prefix" → ACL_KEY, prefix; "operator" → ACL_OPERATOR. */
static bool resource_of(const char *word, size_t len, enum acl_resource *res,
			bool *prefix)
{
	for (int i = 0; i < ACL_RES_NR; i++) {
		size_t n = strlen(res_names[i]);
		if (len == n && memcmp(word, res_names[i], n) == 0) {
			*res = (enum acl_resource)i;
			*prefix = false;
			return true;
		}
		if (len == n + 7 && memcmp(word, res_names[i], n) == 0 &&
		    memcmp(word + n, "_prefix", 7) == 0) {
			*res = (enum acl_resource)i;
			*prefix = true;
			return true;
		}
	}
	return false;
}

static bool access_of(const char *s, size_t len, enum acl_access *out)
{
	for (int i = ACL_DENY; i <= ACL_WRITE; i++) {
		if (strlen(access_names[i]) == len &&
		    memcmp(s, access_names[i], len) == 0) {
			*out = (enum acl_access)i;
			return true;
		}
	}
	return false;
}

/* A tiny tokenizer for the HCL subset. */
struct lex {
	const char *p;
	int line;
};

static void skip(struct lex *l)
{
	for (;;) {
		while (isspace((unsigned char)*l->p)) {
			if (*l->p == '\n')
				l->line++;
			l->p++;
		}
		if (*l->p == '#' || (l->p[0] == '/' && l->p[1] == '/')) {
			while (*l->p != '\0' && *l->p != '\n')
				l->p++;
			continue;
		}
		return;
	}
}

static bool word(struct lex *l, const char **w, size_t *len)
{
	skip(l);
	*w = l->p;
	while (isalnum((unsigned char)*l->p) || *l->p == '_')
		l->p++;
	*len = (size_t)(l->p - *w);
	return *len > 0;
}

static bool string(struct lex *l, const char **s, size_t *len)
{
	skip(l);
	if (*l->p != '"')
		return false;
	*s = ++l->p;
	while (*l->p != '\0' && *l->p != '"' && *l->p != '\n') {
		if (*l->p == '\\')
			return false; /* no escapes in names: keep it plain */
		l->p++;
	}
	if (*l->p != '"')
		return false;
	*len = (size_t)(l->p - *s);
	l->p++;
	return true;
}

static bool punct(struct lex *l, char c)
{
	skip(l);
	if (*l->p != c)
		return false;
	l->p++;
	return true;
}

static int parse_hcl(const char *text, struct acl_rules *out, char *why,
		     size_t whylen)
{
	struct lex l = {text, 1};
	const char *w, *s;
	size_t wl, sl;

	for (;;) {
		enum acl_resource res;
		enum acl_access acc;
		const char *name = "";
		size_t nlen = 0;
		bool prefix;
		int rc;

		skip(&l);
		if (*l.p == '\0')
			return 0;
		if (!word(&l, &w, &wl) || !resource_of(w, wl, &res, &prefix))
			goto bad;
		if (res == ACL_OPERATOR || res == ACL_ACL) {
			/* operator = "read" */
			if (prefix || !punct(&l, '=') || !string(&l, &s, &sl) ||
			    !access_of(s, sl, &acc))
				goto bad;
		} else {
			/* key_prefix "name" { policy = "read" } */
			if (!string(&l, &name, &nlen) || !punct(&l, '{') ||
			    !word(&l, &w, &wl) || wl != 6 ||
			    memcmp(w, "policy", 6) != 0 || !punct(&l, '=') ||
			    !string(&l, &s, &sl) || !access_of(s, sl, &acc) ||
			    !punct(&l, '}'))
				goto bad;
		}
		rc = add_rule(out, res, prefix, name, nlen, acc);
		if (rc != 0)
			return rc;
	}
bad:
	snprintf(
	    why, whylen,
	    "Failed to parse ACL rules: line %d: expected RESOURCE "
	    "\"NAME\" { policy = \"read|list|write|deny\" } or operator|acl "
	    "= \"POLICY\"",
	    l.line);
	return BCN_EINVAL;
}

/* The same as JSON: {"key_prefix": {"app/": {"policy": "read"}},
 * "operator": "read"}. */
static int parse_json(const char *text, struct acl_rules *out, char *why,
		      size_t whylen)
{
	json_error_t err;
	json_t *root = json_loads(text, 0, &err), *v, *e;
	const char *k, *name;
	int rc = 0;

	if (!json_is_object(root)) {
		snprintf(why, whylen, "Failed to parse ACL rules: %s",
			 root == NULL ? err.text : "expected an object");
		json_decref(root);
		return BCN_EINVAL;
	}
	json_object_foreach (root, k, v) {
		enum acl_resource res;
		enum acl_access acc;
		bool prefix;
		if (rc != 0)
			break;
		if (!resource_of(k, strlen(k), &res, &prefix)) {
			snprintf(why, whylen,
				 "Failed to parse ACL rules: unknown "
				 "resource \"%s\"",
				 k);
			rc = BCN_EINVAL;
			break;
		}
		if (res == ACL_OPERATOR || res == ACL_ACL) {
			const char *p = json_string_value(v);
			if (prefix || p == NULL ||
			    !access_of(p, strlen(p), &acc)) {
				snprintf(why, whylen,
					 "Failed to parse ACL rules: %s "
					 "needs a policy string",
					 k);
				rc = BCN_EINVAL;
				break;
			}
			rc = add_rule(out, res, false, "", 0, acc);
			continue;
		}
		if (!json_is_object(v)) {
			snprintf(why, whylen,
				 "Failed to parse ACL rules: %s needs an "
				 "object of names",
				 k);
			rc = BCN_EINVAL;
			break;
		}
		json_object_foreach (v, name, e) {
			json_t *pol = json_is_object(e)
					  ? json_object_get(e, "policy")
					  : NULL;
			const char *p = json_string_value(pol);
			if (p == NULL || !access_of(p, strlen(p), &acc)) {
				snprintf(why, whylen,
					 "Failed to parse ACL rules: %s "
					 "\"%s\" needs a policy",
					 k, name);
				rc = BCN_EINVAL;
				break;
			}
			rc =
			    add_rule(out, res, prefix, name, strlen(name), acc);
			if (rc != 0)
				break;
		}
	}
	json_decref(root);
	return rc;
}

int acl_rules_parse(const char *text, struct acl_rules *out, char *why,
		    size_t whylen)
{
	const char *p = text;

	while (isspace((unsigned char)*p))
		p++;
	return *p == '{' ? parse_json(p, out, why, whylen)
			 : parse_hcl(p, out, why, whylen);
}

void acl_hash_secret(const char *secret, unsigned char out[KV_ACL_HASH_LEN])
{
	crypto_generichash(out, KV_ACL_HASH_LEN, (const unsigned char *)secret,
			   strlen(secret), NULL, 0);
}

int acl_resolve(struct kv_store *kv, const char *secret, bool enabled,
		bool default_allow, struct acl_authz *out)
{
	unsigned char hash[KV_ACL_HASH_LEN];
	struct kv_acl_token t;
	int rc;

	memset(out, 0, sizeof *out);
	out->enabled = enabled;
	out->default_allow = default_allow;
	if (!enabled)
		return 0;
	if (secret == NULL || secret[0] == '\0') {
		out->anonymous = true;
		snprintf(out->accessor, sizeof out->accessor, "%s",
			 ACL_ANONYMOUS);
		return 0;
	}
	acl_hash_secret(secret, hash);
	rc = kv_acl_token_by_hash(kv, hash, &t);
	/* SQLite found the row by its hash; compare again in constant time
	 * so that nothing about a near miss leaks through timing. */
	if (rc == 0 && sodium_memcmp(t.hash, hash, sizeof hash) != 0) {
		kv_acl_token_close(&t);
		rc = BCN_ENOTFOUND;
	}
	if (rc != 0)
		return rc;
	snprintf(out->accessor, sizeof out->accessor, "%s", t.accessor);
	out->management = t.management;
	for (size_t off = 0; rc == 0 && off < t.policies_len;) {
		struct kv_acl_policy p;
		char why[256];
		const char *id = t.policies + off;
		off += strlen(id) + 1;
		if (strcmp(id, ACL_GLOBAL_MGMT) == 0) {
			out->management = true;
			continue;
		}
		if (kv_acl_policy_get(kv, id, false, &p) != 0)
			continue; /* deleted since: grants nothing */
		rc = acl_rules_parse(p.rules, &out->rules, why, sizeof why);
		if (rc == BCN_EINVAL)
			rc = 0; /* validated when written; never fatal */
		kv_acl_policy_close(&p);
	}
	kv_acl_token_close(&t);
	if (rc != 0)
		acl_authz_close(out);
	return rc;
}

void acl_authz_close(struct acl_authz *a)
{
	acl_rules_close(&a->rules);
}

bool acl_allows(const struct acl_authz *a, enum acl_resource res,
		const char *name, enum acl_access need)
{
	long best = -1;
	enum acl_access got = ACL_DENY;

	if (!a->enabled || a->management)
		return true;
	if (name == NULL)
		name = "";
	for (size_t i = 0; i < a->rules.n; i++) {
		const struct acl_rule *r = &a->rules.v[i];
		size_t n = strlen(r->name);
		long spec;
		if (r->res != res)
			continue;
		if (r->prefix ? strncmp(name, r->name, n) != 0
			      : strcmp(name, r->name) != 0)
			continue;
		spec = (long)n * 2 + (r->prefix ? 0 : 1);
		if (spec > best) {
			best = spec;
			got = r->access;
		} else if (spec == best && got != ACL_DENY &&
			   (r->access == ACL_DENY || r->access > got)) {
			got = r->access;
		}
	}
	if (best < 0) {
		/* Reading a secret's value needs an explicit rule. */
		if (res == ACL_SECRET && need == ACL_READ)
			return false;
		return a->default_allow;
	}
	return got != ACL_DENY && got >= need;
}
