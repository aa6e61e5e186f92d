/* The disk cache of reads: one file per request, named after a hash of the
 * request, holding the last answer a server gave to it.
 *
 * A file is a short text header, a blank line, then the body:
 *
 *   BEACON-CACHE 1
 *   key GET /v1/kv/app/config?recurse
 *   status 200
 *   index 42
 *   time 1763773200123
 *   size 118
 *   sum 8f3a...(16 hex digits: FNV-1a 64 of the body)
 *
 *   <118 bytes of body>
 *
 * Files are replaced atomically (temp file in the same directory, fsync,
 * rename), so a reader sees the old answer or the new one, never a mix; a
 * file that does not parse, is cut short or fails its sum is a miss, as is
 * one whose key differs (two requests with the same hash). */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/client_int.h"

#define MAGIC "BEACON-CACHE 1\n"

void beacon__cache_name(const char *key, char *out, size_t size)
{
	snprintf(out, size, "%016" PRIx64 ".cache",
		 beacon__fnv1a(key, strlen(key), BEACON__FNV_INIT));
}

int beacon__cache_encode(const struct beacon__cache_entry *e, char **out,
			 size_t *len)
{
	char head[1024];
	int hn;
	char *buf;

	if (strchr(e->key, '\n') != NULL || strlen(e->key) > 900)
		return BEACON_EINVAL;
	hn =
	    snprintf(head, sizeof head,
		     MAGIC "key %s\nstatus %d\nindex %" PRIu64 "\ntime %" PRId64
			   "\nsize %zu\nsum %016" PRIx64 "\n\n",
		     e->key, e->status, e->index, e->time_ms, e->len,
		     beacon__fnv1a(e->body, e->len, BEACON__FNV_INIT));
	if (hn < 0 || (size_t)hn >= sizeof head)
		return BEACON_EINVAL;
	buf = malloc((size_t)hn + e->len + 1);
	if (buf == NULL)
		return BEACON_ENOMEM;
	memcpy(buf, head, (size_t)hn);
	if (e->len > 0)
		memcpy(buf + hn, e->body, e->len);
	buf[(size_t)hn + e->len] = '\0';
	*out = buf;
	*len = (size_t)hn + e->len;
	return 0;
}

/* Take the line "<name> <value>\n" at *@p (before @end): point @val at the
 * value and @vlen at its length, and advance *@p. */
static bool field(const char **p, const char *end, const char *name,
		  const char **val, size_t *vlen)
{
	size_t nl = strlen(name);
	const char *eol;

	if ((size_t)(end - *p) < nl + 1 || memcmp(*p, name, nl) != 0 ||
	    (*p)[nl] != ' ')
		return false;
	eol = memchr(*p + nl + 1, '\n', (size_t)(end - *p - (long)nl - 1));
	if (eol == NULL)
		return false;
	*val = *p + nl + 1;
	*vlen = (size_t)(eol - *val);
	*p = eol + 1;
	return true;
}

/* Parse an unsigned decimal of exactly @n bytes (at most 19 digits). */
static bool num(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0 || n > 19)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

static bool hex64(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	if (n != 16)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else
			return false;
		v = v << 4 | d;
	}
	*out = v;
	return true;
}

int beacon__cache_decode(const char *buf, size_t len, const char *key,
			 struct beacon__cache_entry *e)
{
	const char *p = buf, *end = buf + len, *v;
	size_t vn, ml = strlen(MAGIC);
	uint64_t status, index, tm, size, sum;

	memset(e, 0, sizeof *e);
	if (len < ml || memcmp(buf, MAGIC, ml) != 0)
		return BEACON_EPROTO;
	p += ml;
	if (!field(&p, end, "key", &v, &vn))
		return BEACON_EPROTO;
	if (key != NULL && (vn != strlen(key) || memcmp(v, key, vn) != 0))
		return BEACON_ENOTFOUND;
	e->key = beacon__strndup(v, vn);
	if (e->key == NULL)
		return BEACON_ENOMEM;
	if (!field(&p, end, "status", &v, &vn) || !num(v, vn, &status) ||
	    status < 100 || status > 599 || !field(&p, end, "index", &v, &vn) ||
	    !num(v, vn, &index) || !field(&p, end, "time", &v, &vn) ||
	    !num(v, vn, &tm) || !field(&p, end, "size", &v, &vn) ||
	    !num(v, vn, &size) || !field(&p, end, "sum", &v, &vn) ||
	    !hex64(v, vn, &sum) || p >= end || *p != '\n')
		goto err_proto;
	p++;
	if ((uint64_t)(end - p) != size ||
	    beacon__fnv1a(p, (size_t)size, BEACON__FNV_INIT) != sum)
		goto err_proto;
	e->body = beacon__strndup(p, (size_t)size);
	if (e->body == NULL) {
		beacon__cache_entry_close(e);
		return BEACON_ENOMEM;
	}
	e->len = (size_t)size;
	e->status = (int)status;
	e->index = index;
	e->time_ms = (int64_t)tm;
	return 0;
err_proto:
	beacon__cache_entry_close(e);
	return BEACON_EPROTO;
}

void beacon__cache_entry_close(struct beacon__cache_entry *e)
{
	free(e->key);
	free(e->body);
	memset(e, 0, sizeof *e);
}

static char *entry_path(const char *dir, const char *key)
{
	char name[32];
	size_t n = strlen(dir);
	char *path = malloc(n + sizeof name + 2);

	if (path == NULL)
		return NULL;
	beacon__cache_name(key, name, sizeof name);
	snprintf(path, n + sizeof name + 2, "%s/%s", dir, name);
	return path;
}

/* Read all of @path (at most @max bytes) into a malloc'd buffer. */
static int read_file(const char *path, size_t max, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;
	size_t got = 0;

	if (fd < 0)
		return BEACON_ENOTFOUND;
	if (fstat(fd, &st) != 0 || st.st_size < 0 ||
	    (uint64_t)st.st_size > max) {
		close(fd);
		return BEACON_EPROTO;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		close(fd);
		return BEACON_ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	buf[got] = '\0';
	*out = buf;
	*len = got;
	return 0;
}

int beacon__cache_load(const char *dir, const char *key,
		       struct beacon__cache_entry *e)
{
	char *path = entry_path(dir, key), *buf;
	size_t len;
	int rc;

	memset(e, 0, sizeof *e);
	if (path == NULL)
		return BEACON_ENOMEM;
	rc = read_file(path, BEACON__MAX_BODY + 2048, &buf, &len);
	free(path);
	if (rc != 0)
		return rc == BEACON_ENOMEM ? rc : BEACON_ENOTFOUND;
	rc = beacon__cache_decode(buf, len, key, e);
	free(buf);
	if (rc == BEACON_EPROTO)
		rc = BEACON_ENOTFOUND;
	return rc;
}

static bool same_answer(const struct beacon__cache_entry *a,
			const struct beacon__cache_entry *b)
{
	return a->status == b->status && a->index == b->index &&
	       a->len == b->len &&
	       (a->len == 0 || memcmp(a->body, b->body, a->len) == 0);
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0)
			return BEACON_EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int beacon__cache_store(const char *dir, const struct beacon__cache_entry *e)
{
	struct beacon__cache_entry old;
	char *path, *tmp = NULL, *buf = NULL;
	size_t len, dn = strlen(dir);
	int fd, rc;

	/* The same answer again (a re-read, a watch that woke up for
	 * nothing): leave the file alone, unless its time (when the cluster
	 * last confirmed it) is more than a minute old. */
	if (beacon__cache_load(dir, e->key, &old) == 0) {
		bool same =
		    same_answer(&old, e) && e->time_ms - old.time_ms < 60000;
		beacon__cache_entry_close(&old);
		if (same)
			return 0;
	}
	rc = beacon__cache_encode(e, &buf, &len);
	if (rc != 0)
		return rc;
	path = entry_path(dir, e->key);
	tmp = malloc(dn + 32);
	if (path == NULL || tmp == NULL) {
		rc = BEACON_ENOMEM;
		goto out;
	}
	snprintf(tmp, dn + 32, "%s/.tmp.XXXXXX", dir);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rc = BEACON_EIO;
		goto out;
	}
	rc = write_all(fd, buf, len);
	if (rc == 0 && fsync(fd) != 0)
		rc = BEACON_EIO;
	if (close(fd) != 0 && rc == 0)
		rc = BEACON_EIO;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = BEACON_EIO;
	if (rc != 0)
		unlink(tmp);
out:
	free(buf);
	free(path);
	free(tmp);
	return rc;
}
