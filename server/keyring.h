/* The secrets' keys and the sealing itself (libsodium's
 * XChaCha20-Poly1305: a fresh random nonce per value, the secret's path as
 * associated data, so a box moved to another path does not open).
 *
 * A key is 32 random bytes, written as base64 (`beacon keygen`); its ID is
 * the first 8 bytes of its BLAKE2b hash, in hex, stored beside every box so
 * that a server can tell "not my key" from "corrupt". The first key of the
 * ring seals; every key opens. The bytes live in sodium_malloc'd memory
 * (guarded, locked, wiped on release). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "kv/kv.h"

#define KEYRING_MAX	 8
#define KEYRING_OVERHEAD (24 + 16) /* nonce + tag */

struct keyring;

/* Load keys from @file (one base64 key a line, '#' comments) and/or @b64
 * (one key, put first). Both empty: *@out is NULL and 0 is returned (no
 * secrets on this server). BCN_EINVAL with @errmsg for a bad key or file. */
int keyring_open(struct keyring **out, const char *file, const char *b64,
		 char *errmsg) BCN_MUST_CHECK;
void keyring_close(struct keyring *k);

/* The ID of the sealing key (NULL without a ring). */
const char *keyring_primary(const struct keyring *k);
/* True if the ring holds key @id. */
bool keyring_has(const struct keyring *k, const char *id);

/* Seal @len bytes of @plain for @path: @out gets len + KEYRING_OVERHEAD
 * bytes (bcn_malloc'd) and @key_id the sealing key's ID. */
int keyring_seal(const struct keyring *k, const char *path, const void *plain,
		 size_t len, void **out, size_t *out_len,
		 char key_id[KV_SECRET_KEY_ID + 1]) BCN_MUST_CHECK;
/* Open @box sealed for @path with key @key_id: @out (bcn_malloc'd, a NUL
 * after the bytes) and @out_len. BCN_ENOTFOUND: not a key of this ring;
 * BCN_ECORRUPT: it does not open (wrong key with the same ID, tampered). */
int keyring_open_box(const struct keyring *k, const char *path,
		     const char *key_id, const void *box, size_t len,
		     void **out, size_t *out_len) BCN_MUST_CHECK;

/* A new key as base64 into @out (45 bytes with the NUL). */
int keyring_generate(char out[45]) BCN_MUST_CHECK;
