/* Replays a committed corpus through one fuzz target, without libFuzzer, so
 * that `make check` runs every saved input under ASan and UBSan (Knot's
 * tests-fuzz does the same).
 *
 * Usage: replay_<name> <dir>    every regular file in <dir>, in sorted order
 *        replay_<name> <file>   just that file (to reproduce one crash)
 *
 * Exits 0 after the last input, 1 if the directory is missing, unreadable or
 * holds no inputs. A crash is the sanitizer's, as under libFuzzer. Each input
 * is copied into a buffer of exactly its size, so that an overread trips
 * ASan as it would under the fuzzer. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* From the sanitizer runtime, when there is one. */
void __sanitizer_print_stack_trace(void) __attribute__((weak));

/* The input being run, for the crash message. */
static const char *current;

/* An abort() from a target's own check gets no report from the sanitizers:
 * name the input and print the stack, then die of the signal as before. */
static void on_crash(int sig)
{
	static const char msg[] = "replay: crashed on input ";

	if (current != NULL) {
		(void)!write(STDERR_FILENO, msg, sizeof msg - 1);
		(void)!write(STDERR_FILENO, current, strlen(current));
		(void)!write(STDERR_FILENO, "\n", 1);
	}
	if (__sanitizer_print_stack_trace != NULL)
		__sanitizer_print_stack_trace();
	signal(sig, SIG_DFL);
	raise(sig);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read @path whole and run it. Returns 0, or -1 after printing why. */
static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *data = NULL;
	size_t size = 0, cap = 0;

	if (f == NULL) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (;;) {
		size_t got;
		if (size == cap) {
			size_t ncap = cap == 0 ? 4096 : cap * 2;
			uint8_t *p = realloc(data, ncap);
			if (p == NULL) {
				fprintf(stderr, "replay: %s: out of memory\n",
					path);
				free(data);
				fclose(f);
				return -1;
			}
			data = p;
			cap = ncap;
		}
		got = fread(data + size, 1, cap - size, f);
		size += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		fprintf(stderr, "replay: %s: read error\n", path);
		free(data);
		fclose(f);
		return -1;
	}
	fclose(f);
	/* An exact-size copy: the spare capacity above would hide overreads. */
	uint8_t *exact = malloc(size > 0 ? size : 1);
	if (exact == NULL) {
		free(data);
		return -1;
	}
	memcpy(exact, data, size);
	free(data);
	current = path;
	LLVMFuzzerTestOneInput(exact, size);
	current = NULL;
	free(exact);
	return 0;
}

int main(int argc, char **argv)
{
	const char *dir;
	struct dirent *de;
	struct stat st;
	char **names = NULL;
	size_t n = 0, cap = 0, ran = 0;
	char path[4096];
	DIR *d;
	int status = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s <corpus-dir | input-file>\n",
			argv[0]);
		return 1;
	}
	dir = argv[1];
	signal(SIGABRT, on_crash);
	if (stat(dir, &st) == 0 && S_ISREG(st.st_mode)) {
		if (run_file(dir) != 0)
			return 1;
		printf("replay %s: 1 inputs\n", dir);
		return 0;
	}
	d = opendir(dir);
	if (d == NULL) {
		fprintf(stderr, "replay %s: %s\n", dir, strerror(errno));
		return 1;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			size_t ncap = cap == 0 ? 64 : cap * 2;
			char **p = realloc(names, ncap * sizeof *p);
			if (p == NULL) {
				status = 1;
				break;
			}
			names = p;
			cap = ncap;
		}
		names[n] = strdup(de->d_name);
		if (names[n] == NULL) {
			status = 1;
			break;
		}
		n++;
	}
	closedir(d);
	if (status != 0) {
		fprintf(stderr, "replay %s: out of memory\n", dir);
		goto out;
	}
	if (n > 1)
		qsort(names, n, sizeof *names, cmp_name);
	for (size_t i = 0; i < n; i++) {
		int len = snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		if (len < 0 || (size_t)len >= sizeof path) {
			fprintf(stderr, "replay %s: name too long: %s\n", dir,
				names[i]);
			status = 1;
			goto out;
		}
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		if (run_file(path) != 0) {
			status = 1;
			goto out;
		}
		ran++;
	}
	printf("replay %s: %zu inputs\n", dir, ran);
	if (ran == 0) {
		fprintf(stderr, "replay %s: no inputs\n", dir);
		status = 1;
	}
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return status;
}
