/* The audit log (--audit-log PATH): one JSON line per write and per secret
 * read, appended with a single write(2) on an O_APPEND descriptor:
 *
 *   {"time":"2026-11-22T01:02:03.456Z","accessor":"<token accessor>",
 *    "client":"127.0.0.1","method":"PUT","path":"/v1/kv/app/x",
 *    "status":200,"forwarded_by":"n2"}
 *
 * Never a token's secret (the accessor only), never a query string (it may
 * carry ?token=), never a body (it may carry a secret). */
#pragma once

#include "common/err.h"

struct srv;
struct http_req;

int audit_open(struct srv *s, const char *path, char *errmsg) BCN_MUST_CHECK;
void audit_close(struct srv *s);
/* At the end of @r: log it if it is a write or a secret read. */
void audit_request(struct http_req *r);
