/* A libbeacon test driver for tests/cluster/test_libbeacon.py.
 *
 *   libbeacon_driver -addrs A,B,C [-cache DIR] [-timeout-ms N]
 *                    [-backoff-min-ms N] [-backoff-max-ms N] [-wait-ms N]
 *
 * Reads one command per line on stdin (words separated by one space, each
 * percent-encoded, "%" alone for the empty string) and answers each with one
 * JSON line on stdout; watch events are JSON lines too, with "event" set, and
 * may come between answers. Commands:
 *
 *   get KEY | list PREFIX | keys PREFIX SEP | put KEY VALUE
 *   cas KEY VALUE INDEX | del KEY | delcas KEY INDEX | deltree PREFIX
 *   register NAME ID PORT TTL_MS | dereg ID | check ID pass|warn|fail
 *   hbstart NAME ID PORT TTL_MS | hbstop ID 0|1
 *   health SERVICE 0|1 | pick SERVICE random|rr N
 *   watch WID key|keyprefix|service|services|nodes|checks KEY 0|1
 *   unwatch WID | quit
 */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/beacon.h"

#define MAX_ARGS    8
#define MAX_WATCHES 16
#define MAX_BEATS   16

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

/* Print @j (stolen) as one line. */
static void emit(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);

	pthread_mutex_lock(&out_mu);
	printf("%s\n", s != NULL ? s : "{\"error\":\"oom\"}");
	fflush(stdout);
	pthread_mutex_unlock(&out_mu);
	free(s);
	json_decref(j);
}

static const char *rc_name(int rc)
{
	switch (rc) {
	case 0:
		return "OK";
	case BEACON_ENOTFOUND:
		return "ENOTFOUND";
	case BEACON_ECONFLICT:
		return "ECONFLICT";
	case BEACON_EUNAVAILABLE:
		return "EUNAVAILABLE";
	case BEACON_ESERVER:
		return "ESERVER";
	case BEACON_EINVAL:
		return "EINVAL";
	case BEACON_EPROTO:
		return "EPROTO";
	}
	return beacon_strerror(rc);
}

static json_t *result(const char *op, int rc, const struct beacon_meta *m)
{
	return json_pack("{s:s,s:s,s:b,s:b,s:I,s:s,s:s,s:I}", "op", op, "rc",
			 rc_name(rc), "stale", m->stale, "cached", m->cached,
			 "index", (json_int_t)m->index, "server", m->server,
			 "error", m->error, "age_ms", (json_int_t)m->age_ms);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static void pct_decode(char *s)
{
	char *o = s;

	for (; *s != '\0'; s++) {
		if (s[0] == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
			*o++ = (char)(hexval(s[1]) * 16 + hexval(s[2]));
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

struct watch_slot {
	char id[64];
	struct beacon_watch *w;
};

static void on_event(void *data, const struct beacon_watch_event *ev)
{
	struct watch_slot *s = data;

	emit(json_pack("{s:s,s:s,s:I,s:b,s:s%}", "event", "watch", "id", s->id,
		       "index", (json_int_t)ev->index, "stale", ev->stale,
		       "body", ev->body, ev->len));
}

static struct watch_slot watches[MAX_WATCHES];

static struct {
	char id[64];
	struct beacon_heartbeat *hb;
} beats[MAX_BEATS];

static enum beacon_watch_type watch_type(const char *s)
{
	if (strcmp(s, "key") == 0)
		return BEACON_WATCH_KEY;
	if (strcmp(s, "keyprefix") == 0)
		return BEACON_WATCH_KEYPREFIX;
	if (strcmp(s, "service") == 0)
		return BEACON_WATCH_SERVICE;
	if (strcmp(s, "services") == 0)
		return BEACON_WATCH_SERVICES;
	if (strcmp(s, "nodes") == 0)
		return BEACON_WATCH_NODES;
	return BEACON_WATCH_CHECKS;
}

static void instances_json(json_t *o, const struct beacon_instances *l)
{
	json_t *a = json_array();

	for (size_t i = 0; i < l->n; i++)
		json_array_append_new(
		    a, json_pack("{s:s,s:s,s:s,s:i,s:i,s:i}", "node",
				 l->items[i].node, "id", l->items[i].id,
				 "address", l->items[i].address, "port",
				 (int)l->items[i].port, "weight",
				 (int)l->items[i].weight, "status",
				 (int)l->items[i].status));
	json_object_set_new(o, "instances", a);
}

static void command(struct beacon *b, int n, char **v)
{
	struct beacon_meta m;
	json_t *o;
	int rc;

	memset(&m, 0, sizeof m);
	if (strcmp(v[0], "get") == 0 && n == 2) {
		struct beacon_kv *kv = NULL;
		rc = beacon_kv_get(b, v[1], &kv, &m);
		o = result("get", rc, &m);
		if (kv != NULL) {
			json_object_set_new(
			    o, "value", json_stringn(kv->value, kv->value_len));
			json_object_set_new(
			    o, "modify_index",
			    json_integer((json_int_t)kv->modify_index));
			json_object_set_new(
			    o, "flags", json_integer((json_int_t)kv->flags));
		}
		beacon_kv_free(kv);
	} else if (strcmp(v[0], "list") == 0 && n == 2) {
		struct beacon_kv_list l;
		json_t *items = json_object();
		rc = beacon_kv_list(b, v[1], &l, &m);
		o = result("list", rc, &m);
		for (size_t i = 0; rc == 0 && i < l.n; i++)
			json_object_set_new(items, l.items[i].key,
					    json_stringn(l.items[i].value,
							 l.items[i].value_len));
		json_object_set_new(o, "items", items);
		if (rc == 0)
			beacon_kv_list_close(&l);
	} else if (strcmp(v[0], "keys") == 0 && n == 3) {
		char **k;
		size_t nk;
		json_t *a = json_array();
		rc = beacon_kv_keys(b, v[1], v[2], &k, &nk, &m);
		o = result("keys", rc, &m);
		for (size_t i = 0; rc == 0 && i < nk; i++)
			json_array_append_new(a, json_string(k[i]));
		json_object_set_new(o, "keys", a);
		if (rc == 0)
			beacon_strv_free(k, nk);
	} else if (strcmp(v[0], "put") == 0 && n == 3) {
		rc = beacon_kv_put(b, v[1], v[2], strlen(v[2]), 0, &m);
		o = result("put", rc, &m);
	} else if (strcmp(v[0], "cas") == 0 && n == 4) {
		rc = beacon_kv_cas(b, v[1], v[2], strlen(v[2]), 0,
				   strtoull(v[3], NULL, 10), &m);
		o = result("cas", rc, &m);
	} else if (strcmp(v[0], "del") == 0 && n == 2) {
		rc = beacon_kv_delete(b, v[1], &m);
		o = result("del", rc, &m);
	} else if (strcmp(v[0], "delcas") == 0 && n == 3) {
		rc =
		    beacon_kv_delete_cas(b, v[1], strtoull(v[2], NULL, 10), &m);
		o = result("delcas", rc, &m);
	} else if (strcmp(v[0], "deltree") == 0 && n == 2) {
		rc = beacon_kv_delete_tree(b, v[1], &m);
		o = result("deltree", rc, &m);
	} else if ((strcmp(v[0], "register") == 0 ||
		    strcmp(v[0], "hbstart") == 0) &&
		   n == 5) {
		struct beacon_service svc = {
		    .name = v[1],
		    .id = v[2],
		    .port = (unsigned)atoi(v[3]),
		    .ttl_ms = (unsigned)atoi(v[4]),
		    .address = "127.0.0.1",
		};
		if (v[0][0] == 'r') {
			rc = beacon_service_register(b, &svc, &m);
		} else {
			size_t i = 0;
			while (i < MAX_BEATS && beats[i].hb != NULL)
				i++;
			rc = BEACON_ENOMEM;
			if (i < MAX_BEATS) {
				rc = beacon_heartbeat_start(b, &svc,
							    &beats[i].hb, &m);
				snprintf(beats[i].id, sizeof beats[i].id, "%s",
					 v[2]);
			}
		}
		o = result(v[0], rc, &m);
	} else if (strcmp(v[0], "hbstop") == 0 && n == 3) {
		rc = BEACON_ENOTFOUND;
		for (size_t i = 0; i < MAX_BEATS; i++)
			if (beats[i].hb != NULL &&
			    strcmp(beats[i].id, v[1]) == 0) {
				beacon_heartbeat_stop(beats[i].hb,
						      atoi(v[2]) != 0);
				beats[i].hb = NULL;
				rc = 0;
			}
		o = result("hbstop", rc, &m);
	} else if (strcmp(v[0], "dereg") == 0 && n == 2) {
		rc = beacon_service_deregister(b, v[1], &m);
		o = result("dereg", rc, &m);
	} else if (strcmp(v[0], "check") == 0 && n == 3) {
		enum beacon_health h =
		    strcmp(v[2], "pass") == 0	? BEACON_PASSING
		    : strcmp(v[2], "warn") == 0 ? BEACON_WARNING
						: BEACON_CRITICAL;
		rc = beacon_check_update(b, v[1], h, "from the driver", &m);
		o = result("check", rc, &m);
	} else if (strcmp(v[0], "health") == 0 && n == 3) {
		struct beacon_instances l;
		rc = beacon_health_service(b, v[1], NULL, atoi(v[2]) != 0, &l,
					   &m);
		o = result("health", rc, &m);
		if (rc == 0) {
			instances_json(o, &l);
			beacon_instances_close(&l);
		}
	} else if (strcmp(v[0], "pick") == 0 && n == 4) {
		struct beacon_instances l;
		json_t *a = json_array();
		rc = beacon_health_service(b, v[1], NULL, false, &l, &m);
		o = result("pick", rc, &m);
		for (int i = 0; rc == 0 && i < atoi(v[3]); i++) {
			const struct beacon_instance *in = beacon_pick(
			    b, &l,
			    strcmp(v[2], "rr") == 0 ? BEACON_LB_ROUND_ROBIN
						    : BEACON_LB_RANDOM);
			json_array_append_new(
			    a, in != NULL ? json_string(in->id) : json_null());
		}
		json_object_set_new(o, "picks", a);
		if (rc == 0)
			beacon_instances_close(&l);
	} else if (strcmp(v[0], "watch") == 0 && n == 5) {
		struct beacon_watch_spec spec = {
		    .type = watch_type(v[2]),
		    .key = v[3],
		    .fire_on_start = atoi(v[4]) != 0,
		};
		size_t i = 0;
		while (i < MAX_WATCHES && watches[i].w != NULL)
			i++;
		rc = BEACON_ENOMEM;
		if (i < MAX_WATCHES) {
			snprintf(watches[i].id, sizeof watches[i].id, "%s",
				 v[1]);
			rc = beacon_watch_start(b, &spec, on_event, &watches[i],
						&watches[i].w);
		}
		o = result("watch", rc, &m);
	} else if (strcmp(v[0], "unwatch") == 0 && n == 2) {
		rc = BEACON_ENOTFOUND;
		for (size_t i = 0; i < MAX_WATCHES; i++)
			if (watches[i].w != NULL &&
			    strcmp(watches[i].id, v[1]) == 0) {
				beacon_watch_stop(watches[i].w);
				watches[i].w = NULL;
				rc = 0;
			}
		o = result("unwatch", rc, &m);
	} else {
		o = json_pack("{s:s,s:s}", "op", v[0], "rc", "EUSAGE");
	}
	emit(o);
}

int main(int argc, char **argv)
{
	struct beacon_config cfg;
	struct beacon *b;
	char err[BEACON_ERRMSG_LEN], line[65536];
	int rc;

	beacon_config_init(&cfg);
	for (int i = 1; i + 1 < argc; i += 2) {
		unsigned v = (unsigned)strtoul(argv[i + 1], NULL, 10);
		if (strcmp(argv[i], "-addrs") == 0)
			cfg.addrs = argv[i + 1];
		else if (strcmp(argv[i], "-cache") == 0)
			cfg.cache_dir = argv[i + 1];
		else if (strcmp(argv[i], "-timeout-ms") == 0)
			cfg.timeout_ms = v;
		else if (strcmp(argv[i], "-backoff-min-ms") == 0)
			cfg.backoff_min_ms = v;
		else if (strcmp(argv[i], "-backoff-max-ms") == 0)
			cfg.backoff_max_ms = v;
		else if (strcmp(argv[i], "-wait-ms") == 0)
			cfg.wait_ms = v;
	}
	rc = beacon_new(&b, &cfg, err);
	if (rc != 0) {
		fprintf(stderr, "beacon_new: %s: %s\n", beacon_strerror(rc),
			err);
		return 2;
	}
	emit(json_pack("{s:s}", "op", "ready"));
	while (fgets(line, sizeof line, stdin) != NULL) {
		char *args[MAX_ARGS], *save = NULL, *t;
		int n = 0;
		line[strcspn(line, "\r\n")] = '\0';
		for (t = strtok_r(line, " ", &save); t != NULL && n < MAX_ARGS;
		     t = strtok_r(NULL, " ", &save)) {
			if (strcmp(t, "%") == 0)
				t[0] = '\0'; /* "%" is the empty string */
			pct_decode(t);
			args[n++] = t;
		}
		if (n == 0)
			continue;
		if (strcmp(args[0], "quit") == 0)
			break;
		command(b, n, args);
	}
	for (size_t i = 0; i < MAX_WATCHES; i++)
		beacon_watch_stop(watches[i].w);
	for (size_t i = 0; i < MAX_BEATS; i++)
		beacon_heartbeat_stop(beats[i].hb, false);
	beacon_free(b);
	emit(json_pack("{s:s}", "op", "bye"));
	return 0;
}
