#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum bcn_log_level bcn_log_min = BCN_LOG_INFO;
static int log_json;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int bcn_log_level_parse(const char *s, enum bcn_log_level *out)
{
	for (unsigned i = 0; i < sizeof level_names / sizeof level_names[0];
	     i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum bcn_log_level)i;
			return 0;
		}
	}
	return BCN_EINVAL;
}

void bcn_log_set_json(int json)
{
	log_json = json;
}

/* Append @s to @out as the inside of a JSON string. */
static size_t json_escape(char *out, size_t cap, const char *s)
{
	size_t n = 0;

	for (; *s != '\0' && n + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[n++] = '\\';
			out[n++] = (char)c;
		} else if (c < 0x20) {
			n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
		} else {
			out[n++] = (char)c;
		}
	}
	out[n] = '\0';
	return n;
}

void bcn_log_write(enum bcn_log_level lvl, const char *module, const char *fmt,
		   ...)
{
	char msg[1024];
	char ts[40];
	struct timespec now;
	struct tm tm;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
	if (log_json) {
		char esc[2048];
		json_escape(esc, sizeof esc, msg);
		fprintf(stderr,
			"{\"time\":\"%s.%03ldZ\",\"level\":\"%s\","
			"\"module\":\"%s\",\"msg\":\"%s\"}\n",
			ts, now.tv_nsec / 1000000, level_names[lvl], module,
			esc);
	} else {
		fprintf(stderr, "%s.%03ldZ %-5s %-6s %s\n", ts,
			now.tv_nsec / 1000000, level_names[lvl], module, msg);
	}
}
