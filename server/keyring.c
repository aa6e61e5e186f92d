#include "server/keyring.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"

#define KEY_LEN crypto_aead_xchacha20poly1305_ietf_KEYBYTES

struct keyring {
	size_t n;
	struct {
		unsigned char *key; /* sodium_malloc'd */
		char id[KV_SECRET_KEY_ID + 1];
	} keys[KEYRING_MAX];
};

_Static_assert(KEYRING_OVERHEAD ==
		   crypto_aead_xchacha20poly1305_ietf_NPUBBYTES +
		       crypto_aead_xchacha20poly1305_ietf_ABYTES,
	       "KEYRING_OVERHEAD");

static int add_key(struct keyring *k, const char *b64, size_t len, char *errmsg)
{
	unsigned char *key;
	unsigned char h[8];
	size_t bin_len = 0;

	if (k->n == KEYRING_MAX) {
		bcn_errf(errmsg, "at most %d keys", KEYRING_MAX);
		return BCN_EINVAL;
	}
	key = sodium_malloc(KEY_LEN);
	if (key == NULL)
		return BCN_ENOMEM;
	if (sodium_base642bin(key, KEY_LEN, b64, len, " \t\r", &bin_len, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    bin_len != KEY_LEN) {
		sodium_free(key);
		bcn_errf(
		    errmsg,
		    "a key must be the base64 of 32 bytes (beacon keygen)");
		return BCN_EINVAL;
	}
	crypto_generichash(h, sizeof h, key, KEY_LEN, NULL, 0);
	sodium_bin2hex(k->keys[k->n].id, sizeof k->keys[k->n].id, h, sizeof h);
	for (size_t i = 0; i < k->n; i++) {
		if (strcmp(k->keys[i].id, k->keys[k->n].id) == 0) {
			sodium_free(key); /* the same key twice */
			return 0;
		}
	}
	sodium_mprotect_readonly(key);
	k->keys[k->n++].key = key;
	return 0;
}

int keyring_open(struct keyring **out, const char *file, const char *b64,
		 char *errmsg)
{
	struct keyring *k;
	int rc = 0;

	*out = NULL;
	if ((file == NULL || file[0] == '\0') &&
	    (b64 == NULL || b64[0] == '\0'))
		return 0;
	if (sodium_init() < 0) {
		bcn_errf(errmsg, "libsodium failed to initialise");
		return BCN_EIO;
	}
	k = bcn_calloc(1, sizeof *k);
	if (k == NULL)
		return BCN_ENOMEM;
	if (b64 != NULL && b64[0] != '\0')
		rc = add_key(k, b64, strlen(b64), errmsg);
	if (rc == 0 && file != NULL && file[0] != '\0') {
		FILE *f = fopen(file, "r");
		char line[256];
		if (f == NULL) {
			bcn_errf(errmsg, "cannot read key file %s", file);
			rc = BCN_EINVAL;
		}
		while (rc == 0 && f != NULL && fgets(line, sizeof line, f)) {
			size_t n = strcspn(line, "\r\n");
			line[n] = '\0';
			if (n == 0 || line[0] == '#')
				continue;
			rc = add_key(k, line, n, errmsg);
			if (rc == BCN_EINVAL)
				bcn_errf(errmsg,
					 "key file %s: a key must be the "
					 "base64 of 32 bytes (beacon keygen)",
					 file);
		}
		sodium_memzero(line, sizeof line);
		if (f != NULL)
			fclose(f);
		if (rc == 0 && k->n == 0) {
			bcn_errf(errmsg, "key file %s holds no key", file);
			rc = BCN_EINVAL;
		}
	}
	if (rc != 0) {
		keyring_close(k);
		return rc;
	}
	*out = k;
	return 0;
}

void keyring_close(struct keyring *k)
{
	if (k == NULL)
		return;
	for (size_t i = 0; i < k->n; i++)
		sodium_free(k->keys[i].key);
	bcn_free(k);
}

const char *keyring_primary(const struct keyring *k)
{
	return k != NULL && k->n > 0 ? k->keys[0].id : NULL;
}

static int find(const struct keyring *k, const char *id)
{
	for (size_t i = 0; k != NULL && i < k->n; i++)
		if (strcmp(k->keys[i].id, id) == 0)
			return (int)i;
	return -1;
}

bool keyring_has(const struct keyring *k, const char *id)
{
	return find(k, id) >= 0;
}

int keyring_seal(const struct keyring *k, const char *path, const void *plain,
		 size_t len, void **out, size_t *out_len,
		 char key_id[KV_SECRET_KEY_ID + 1])
{
	unsigned char *box;
	unsigned long long clen;

	if (k == NULL || k->n == 0)
		return BCN_ENOTFOUND;
	box = bcn_malloc(len + KEYRING_OVERHEAD);
	if (box == NULL)
		return BCN_ENOMEM;
	randombytes_buf(box, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt(
	    box + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, &clen, plain,
	    len, (const unsigned char *)path, strlen(path), NULL, box,
	    k->keys[0].key);
	*out = box;
	*out_len = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + (size_t)clen;
	memcpy(key_id, k->keys[0].id, KV_SECRET_KEY_ID + 1);
	return 0;
}

int keyring_open_box(const struct keyring *k, const char *path,
		     const char *key_id, const void *boxp, size_t len,
		     void **out, size_t *out_len)
{
	const unsigned char *box = boxp;
	int i = find(k, key_id);
	unsigned char *plain;
	unsigned long long plen;

	if (i < 0)
		return BCN_ENOTFOUND;
	if (len < KEYRING_OVERHEAD)
		return BCN_ECORRUPT;
	plain = bcn_malloc(len - KEYRING_OVERHEAD + 1);
	if (plain == NULL)
		return BCN_ENOMEM;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
		plain, &plen, NULL,
		box + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
		len - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
		(const unsigned char *)path, strlen(path), box,
		k->keys[i].key) != 0) {
		bcn_free(plain);
		return BCN_ECORRUPT;
	}
	plain[plen] = '\0';
	*out = plain;
	*out_len = (size_t)plen;
	return 0;
}

int keyring_generate(char out[45])
{
	unsigned char key[KEY_LEN];

	if (sodium_init() < 0)
		return BCN_EIO;
	randombytes_buf(key, sizeof key);
	sodium_bin2base64(out, 45, key, sizeof key,
			  sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(key, sizeof key);
	return 0;
}
