/* The KV API: /v1/kv (CONSUL-API.md §1). */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_int.h"

/* "/v1/kv/<escaped key>", malloc'd. */
static char *kv_path(const char *key)
{
	char *esc = beacon_escape(key), *p;
	size_t n;

	if (esc == NULL)
		return NULL;
	n = strlen(esc) + 8;
	p = malloc(n);
	if (p != NULL)
		snprintf(p, n, "/v1/kv/%s", esc);
	free(esc);
	return p;
}

static bool get_u64(json_t *o, const char *name, uint64_t *out)
{
	json_t *v = json_object_get(o, name);

	if (v == NULL || json_is_null(v)) {
		*out = 0;
		return true;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return false;
	*out = (uint64_t)json_integer_value(v);
	return true;
}

/* Fill @kv from one entry of a KV answer. */
static int kv_from_json(json_t *o, struct beacon_kv *kv)
{
	json_t *key = json_object_get(o, "Key");
	json_t *val = json_object_get(o, "Value");
	json_t *ses = json_object_get(o, "Session");

	memset(kv, 0, sizeof *kv);
	if (!json_is_object(o) || !json_is_string(key) ||
	    !(val == NULL || json_is_null(val) || json_is_string(val)) ||
	    !get_u64(o, "Flags", &kv->flags) ||
	    !get_u64(o, "CreateIndex", &kv->create_index) ||
	    !get_u64(o, "ModifyIndex", &kv->modify_index) ||
	    !get_u64(o, "LockIndex", &kv->lock_index))
		return BEACON_EPROTO;
	kv->key = beacon__strdup(json_string_value(key));
	if (kv->key == NULL)
		return BEACON_ENOMEM;
	if (json_is_string(val)) {
		kv->value =
		    beacon__b64_decode(json_string_value(val),
				       json_string_length(val), &kv->value_len);
		if (kv->value == NULL)
			return BEACON_EPROTO;
	} else {
		kv->value = calloc(1, 1);
		if (kv->value == NULL)
			return BEACON_ENOMEM;
	}
	if (json_is_string(ses) && json_string_length(ses) > 0) {
		kv->session = beacon__strdup(json_string_value(ses));
		if (kv->session == NULL)
			return BEACON_ENOMEM;
	}
	return 0;
}

static void kv_close(struct beacon_kv *kv)
{
	free(kv->key);
	free(kv->value);
	free(kv->session);
}

BEACON_API void beacon_kv_free(struct beacon_kv *kv)
{
	if (kv == NULL)
		return;
	kv_close(kv);
	free(kv);
}

BEACON_API void beacon_kv_list_close(struct beacon_kv_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		kv_close(&l->items[i]);
	free(l->items);
	l->items = NULL;
	l->n = 0;
}

/* Parse a KV answer (a JSON array of entries) into @l. */
static int kv_parse(const char *body, size_t len, struct beacon_kv_list *l,
		    struct beacon_meta *meta)
{
	json_error_t jerr;
	json_t *root = json_loadb(body, len, 0, &jerr), *v;
	size_t i;
	int rc = 0;

	l->items = NULL;
	l->n = 0;
	if (!json_is_array(root)) {
		beacon__errf(meta, "bad KV answer: %s",
			     root == NULL ? jerr.text : "not an array");
		json_decref(root);
		return BEACON_EPROTO;
	}
	if (json_array_size(root) > 0) {
		l->items = calloc(json_array_size(root), sizeof *l->items);
		if (l->items == NULL) {
			json_decref(root);
			return BEACON_ENOMEM;
		}
	}
	json_array_foreach (root, i, v) {
		rc = kv_from_json(v, &l->items[i]);
		l->n = i + 1;
		if (rc != 0)
			break;
	}
	json_decref(root);
	if (rc != 0) {
		if (rc == BEACON_EPROTO)
			beacon__errf(meta, "bad KV entry in the answer");
		beacon_kv_list_close(l);
	}
	return rc;
}

BEACON_API int beacon_kv_get(struct beacon *b, const char *key,
			     struct beacon_kv **out, struct beacon_meta *meta)
{
	struct beacon_kv_list l;
	char *path, *body = NULL;
	size_t len;
	int rc;

	*out = NULL;
	if (key == NULL || key[0] == '\0')
		return BEACON_EINVAL;
	path = kv_path(key);
	if (path == NULL)
		return BEACON_ENOMEM;
	rc = beacon__get(b, path, NULL, &body, &len, meta);
	free(path);
	if (rc == 0)
		rc = kv_parse(body, len, &l, meta);
	free(body);
	if (rc != 0)
		return rc;
	if (l.n != 1) {
		beacon_kv_list_close(&l);
		beacon__errf(meta, "expected one KV entry");
		return BEACON_EPROTO;
	}
	*out = l.items; /* an array of one is one */
	return 0;
}

BEACON_API int beacon_kv_list(struct beacon *b, const char *prefix,
			      struct beacon_kv_list *out,
			      struct beacon_meta *meta)
{
	char *path = kv_path(prefix != NULL ? prefix : ""), *body = NULL;
	size_t len;
	int rc;

	out->items = NULL;
	out->n = 0;
	if (path == NULL)
		return BEACON_ENOMEM;
	rc = beacon__get(b, path, "recurse", &body, &len, meta);
	free(path);
	if (rc == 0)
		rc = kv_parse(body, len, out, meta);
	else if (rc == BEACON_ENOTFOUND)
		rc = 0;
	free(body);
	return rc;
}

BEACON_API int beacon_kv_keys(struct beacon *b, const char *prefix,
			      const char *separator, char ***keys, size_t *n,
			      struct beacon_meta *meta)
{
	char *path = kv_path(prefix != NULL ? prefix : ""), *body = NULL;
	char *query = NULL, *sep = NULL;
	json_t *root = NULL, *v;
	size_t len, i;
	int rc;

	*keys = NULL;
	*n = 0;
	if (separator != NULL && separator[0] != '\0') {
		sep = beacon_escape(separator);
		query = sep != NULL ? malloc(strlen(sep) + 16) : NULL;
		if (query != NULL)
			snprintf(query, strlen(sep) + 16, "keys&separator=%s",
				 sep);
	}
	if (path == NULL ||
	    (separator != NULL && separator[0] != '\0' && query == NULL)) {
		rc = BEACON_ENOMEM;
		goto out;
	}
	rc = beacon__get(b, path, query != NULL ? query : "keys", &body, &len,
			 meta);
	if (rc == BEACON_ENOTFOUND) {
		rc = 0;
		goto out;
	}
	if (rc != 0)
		goto out;
	root = json_loadb(body, len, 0, NULL);
	if (!json_is_array(root)) {
		beacon__errf(meta, "bad keys answer");
		rc = BEACON_EPROTO;
		goto out;
	}
	*keys = calloc(json_array_size(root) + 1, sizeof **keys);
	if (*keys == NULL) {
		rc = BEACON_ENOMEM;
		goto out;
	}
	json_array_foreach (root, i, v) {
		if (!json_is_string(v)) {
			rc = BEACON_EPROTO;
			break;
		}
		(*keys)[i] = beacon__strdup(json_string_value(v));
		if ((*keys)[i] == NULL) {
			rc = BEACON_ENOMEM;
			break;
		}
		*n = i + 1;
	}
	if (rc != 0) {
		beacon_strv_free(*keys, *n);
		*keys = NULL;
		*n = 0;
	}
out:
	json_decref(root);
	free(body);
	free(path);
	free(query);
	free(sep);
	return rc;
}

/* A KV write answered "true" or "false". */
static int kv_write(struct beacon *b, const char *method, const char *key,
		    const char *query, const void *value, size_t len,
		    bool retry, struct beacon_meta *meta)
{
	struct beacon_req req = {
	    .method = method,
	    .query = query,
	    .body = value,
	    .body_len = len,
	    .flags = retry ? BEACON_REQ_RETRY : 0,
	};
	char *path = kv_path(key), *body = NULL;
	size_t blen;
	int rc;

	if (path == NULL)
		return BEACON_ENOMEM;
	req.path = path;
	if (strcmp(method, "PUT") == 0 && value == NULL)
		req.body = "";
	rc = beacon__send(b, &req, NULL, NULL, 0, &body, &blen, meta);
	free(path);
	if (rc == 0) {
		if (blen >= 4 && strncmp(body, "true", 4) == 0)
			rc = 0;
		else if (blen >= 5 && strncmp(body, "false", 5) == 0)
			rc = BEACON_ECONFLICT;
		else
			rc = BEACON_EPROTO;
		if (rc == BEACON_ECONFLICT)
			beacon__errf(meta, "CAS failed");
		else if (rc == BEACON_EPROTO)
			beacon__errf(meta, "expected true or false, got %.40s",
				     body);
	}
	free(body);
	return rc;
}

BEACON_API int beacon_kv_put(struct beacon *b, const char *key,
			     const void *value, size_t len, uint64_t flags,
			     struct beacon_meta *meta)
{
	char q[48];

	if (key == NULL || key[0] == '\0')
		return BEACON_EINVAL;
	snprintf(q, sizeof q, "flags=%" PRIu64, flags);
	/* Writing the same value twice is harmless: retry anywhere. */
	return kv_write(b, "PUT", key, flags != 0 ? q : NULL, value, len, true,
			meta);
}

BEACON_API int beacon_kv_cas(struct beacon *b, const char *key,
			     const void *value, size_t len, uint64_t flags,
			     uint64_t modify_index, struct beacon_meta *meta)
{
	char q[96];

	if (key == NULL || key[0] == '\0')
		return BEACON_EINVAL;
	snprintf(q, sizeof q, "cas=%" PRIu64 "&flags=%" PRIu64, modify_index,
		 flags);
	return kv_write(b, "PUT", key, q, value, len, false, meta);
}

BEACON_API int beacon_kv_delete(struct beacon *b, const char *key,
				struct beacon_meta *meta)
{
	if (key == NULL || key[0] == '\0')
		return BEACON_EINVAL;
	return kv_write(b, "DELETE", key, NULL, NULL, 0, true, meta);
}

BEACON_API int beacon_kv_delete_cas(struct beacon *b, const char *key,
				    uint64_t modify_index,
				    struct beacon_meta *meta)
{
	char q[48];

	if (key == NULL || key[0] == '\0' || modify_index == 0)
		return BEACON_EINVAL;
	snprintf(q, sizeof q, "cas=%" PRIu64, modify_index);
	return kv_write(b, "DELETE", key, q, NULL, 0, false, meta);
}

BEACON_API int beacon_kv_delete_tree(struct beacon *b, const char *prefix,
				     struct beacon_meta *meta)
{
	return kv_write(b, "DELETE", prefix != NULL ? prefix : "", "recurse",
			NULL, 0, true, meta);
}
