/* Error codes shared by every module.
 *
 * Fallible functions return 0 or a negative code. Codes that mirror errno are
 * -errno (so libuv's UV_E* pass through unchanged); Beacon's own start at
 * -1000. One table maps each code to its name, message and HTTP status; both
 * bcn_strerror() and the HTTP layer read it. */
#pragma once

#include <errno.h>
#include <stddef.h>

#define BCN_MUST_CHECK	 __attribute__((warn_unused_result))
#define BCN_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Size of the caller-provided buffer that carries error details. */
#define BCN_ERRMSG_LEN 256

/* X(name, code, http status, message) */
#define BCN_ERR_TABLE(X)                                   \
	X(BCN_ENOMEM, -ENOMEM, 500, "out of memory")       \
	X(BCN_EIO, -EIO, 500, "I/O error")                 \
	X(BCN_EINVAL, -1000, 400, "invalid argument")      \
	X(BCN_ENOTFOUND, -1001, 404, "not found")          \
	X(BCN_ECONFLICT, -1002, 409, "conflict")           \
	X(BCN_ETOOBIG, -1003, 413, "too large")            \
	X(BCN_ECORRUPT, -1004, 500, "corrupt data")        \
	X(BCN_ENOTLEADER, -1005, 500, "No cluster leader") \
	X(BCN_EUNKNOWN, -1006, 500, "outcome unknown")     \
	X(BCN_ESHUTDOWN, -1007, 503, "shutting down")      \
	X(BCN_EINTERNAL, -1008, 500, "internal error")     \
	X(BCN_EMETHOD, -1009, 405, "method not allowed")   \
	X(BCN_EBUSY, -1010, 429, "too many requests")

enum {
#define BCN_ERR_ENUM(name, code, status, msg) name = (code),
	BCN_ERR_TABLE(BCN_ERR_ENUM)
#undef BCN_ERR_ENUM
};

/* Return a static message for @code (never NULL). */
const char *bcn_strerror(int code);

/* Return the static symbolic name of @code ("BCN_EINVAL"), or "errno". */
const char *bcn_errname(int code);

/* Return the HTTP status that answers a request failing with @code. */
int bcn_err_http_status(int code);

/* Format details into @errmsg (BCN_ERRMSG_LEN bytes) unless it is NULL. */
void bcn_errf(char *errmsg, const char *fmt, ...) BCN_PRINTF(2, 3);
