#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *bcn_strerror(int code)
{
	switch (code) {
#define BCN_ERR_MSG(name, c, status, msg) \
	case name:                        \
		return msg;
		BCN_ERR_TABLE(BCN_ERR_MSG)
#undef BCN_ERR_MSG
	}
	if (code < 0 && code > -1000)
		return strerror(-code);
	return "unknown error";
}

const char *bcn_errname(int code)
{
	switch (code) {
#define BCN_ERR_NAME(name, c, status, msg) \
	case name:                         \
		return #name;
		BCN_ERR_TABLE(BCN_ERR_NAME)
#undef BCN_ERR_NAME
	}
	return "errno";
}

int bcn_err_http_status(int code)
{
	switch (code) {
#define BCN_ERR_STATUS(name, c, status, msg) \
	case name:                           \
		return status;
		BCN_ERR_TABLE(BCN_ERR_STATUS)
#undef BCN_ERR_STATUS
	}
	return 500;
}

void bcn_errf(char *errmsg, const char *fmt, ...)
{
	va_list ap;

	if (errmsg == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(errmsg, BCN_ERRMSG_LEN, fmt, ap);
	va_end(ap);
}
