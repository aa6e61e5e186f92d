#include "server/audit.h"

#include <fcntl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"
#include "server/forward.h"
#include "server/http.h"
#include "server/srv.h"

#define MOD "audit"

int audit_open(struct srv *s, const char *path, char *errmsg)
{
	s->audit_fd = -1;
	if (path == NULL || path[0] == '\0')
		return 0;
	s->audit_fd =
	    open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (s->audit_fd < 0) {
		bcn_errf(errmsg, "audit log %s: %s", path, strerror(errno));
		return BCN_EIO;
	}
	return 0;
}

void audit_close(struct srv *s)
{
	if (s->audit_fd >= 0)
		close(s->audit_fd);
	s->audit_fd = -1;
}

void audit_request(struct http_req *r)
{
	struct srv *s = r->srv;
	struct bcn_buf b;
	struct timeval tv;
	struct tm tm;
	char when[40], client[64];
	const char *fwd;
	time_t secs;

	if (s->audit_fd < 0 || r->status == 0 || r->uri.path == NULL)
		return;
	if (r->method == HTTP_GET &&
	    strncmp(r->uri.path, "/v1/secret/", 11) != 0)
		return;
	if (r->method == HTTP_OPTIONS)
		return;
	gettimeofday(&tv, NULL);
	secs = tv.tv_sec;
	gmtime_r(&secs, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
	http_client_ip(r, client, sizeof client);
	fwd = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, FWD_HEADER);
	bcn_buf_init(&b);
	bcn_buf_printf(&b, "{\"time\":\"%s.%03ldZ\",\"accessor\":", when,
		       (long)(tv.tv_usec / 1000));
	bcn_buf_put_json_str(&b, r->authz.accessor, strlen(r->authz.accessor));
	bcn_buf_puts(&b, ",\"client\":");
	bcn_buf_put_json_str(&b, client, strlen(client));
	bcn_buf_puts(&b, ",\"method\":");
	bcn_buf_put_json_str(&b, r->method_str, strlen(r->method_str));
	bcn_buf_puts(&b, ",\"path\":");
	bcn_buf_put_json_str(&b, r->uri.path, r->uri.path_len);
	bcn_buf_printf(&b, ",\"status\":%u", r->status);
	if (fwd != NULL) {
		bcn_buf_puts(&b, ",\"forwarded_by\":");
		bcn_buf_put_json_str(&b, fwd, strlen(fwd));
	}
	bcn_buf_puts(&b, "}\n");
	if (!bcn_buf_failed(&b) &&
	    write(s->audit_fd, b.data, b.len) != (ssize_t)b.len)
		bcn_warn(MOD, "writing the audit log: %s", strerror(errno));
	bcn_buf_close(&b);
}
