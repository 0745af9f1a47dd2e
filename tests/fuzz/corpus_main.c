/*
 * corpus_main.c - runs a libFuzzer target without libFuzzer, for the unit
 * suite: LLVMFuzzerTestOneInput on every file of the corpus directories
 * given as arguments, on every prefix of each (the shapes a cut-off answer
 * takes), and on a fixed set of byte mutations (flips, zeroes, 0xff,
 * duplicated and dropped bytes).  Deterministic, so a failure reproduces;
 * each input sits in a buffer of exactly its size, so ASan sees any read
 * past its end.  The target aborts on a broken invariant; this program
 * fails when a directory is missing or holds no file.
 *
 * Usage: corpus_runner DIR...
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SEED   (1 << 20)
#define MUTATIONS  200
#define PREFIX_MAX 8192 /* every prefix of seeds up to this size */

static unsigned long long runs;

static void run_copy(const uint8_t *data, size_t size)
{
	uint8_t *copy = malloc(size ? size : 1);

	if (!copy) {
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	memcpy(copy, data, size);
	LLVMFuzzerTestOneInput(copy, size);
	free(copy);
	runs++;
}

static uint32_t next_rand(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void run_seed(const uint8_t *data, size_t size, uint32_t seed)
{
	uint8_t *m = malloc(size + 1);

	run_copy(data, size);
	if (size <= PREFIX_MAX)
		for (size_t n = 0; n < size; n++)
			run_copy(data, n);
	if (!m || !size) {
		free(m);
		return;
	}
	for (int i = 0; i < MUTATIONS; i++) {
		size_t at = next_rand(&seed) % size, n = size;

		memcpy(m, data, size);
		switch (next_rand(&seed) % 5) {
		case 0:
			m[at] ^= (uint8_t)(1u << (next_rand(&seed) % 8));
			break;
		case 1:
			m[at] = 0;
			break;
		case 2:
			m[at] = 0xff;
			break;
		case 3: /* duplicate a byte */
			memmove(m + at + 1, m + at, size - at);
			n = size + 1;
			break;
		default: /* drop a byte */
			memmove(m + at, m + at + 1, size - at - 1);
			n = size - 1;
			break;
		}
		run_copy(m, n);
	}
	free(m);
}

static int run_dir(const char *dir)
{
	struct dirent *e;
	DIR *d = opendir(dir);
	int files = 0;

	if (!d) {
		perror(dir);
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		char path[4096];
		uint8_t *buf;
		size_t n;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		f = fopen(path, "rb");
		if (!f) {
			perror(path);
			closedir(d);
			return -1;
		}
		buf = malloc(MAX_SEED);
		n = buf ? fread(buf, 1, MAX_SEED, f) : 0;
		fclose(f);
		if (!buf) {
			closedir(d);
			return -1;
		}
		run_seed(buf, n, 2463534242u ^ (uint32_t)n);
		free(buf);
		files++;
	}
	closedir(d);
	if (!files) {
		fprintf(stderr, "%s: no corpus files\n", dir);
		return -1;
	}
	printf("%s: %d seed(s)\n", dir, files);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR...\n", argv[0]);
		return 2;
	}
	for (int i = 1; i < argc; i++)
		if (run_dir(argv[i]) < 0)
			return 1;
	printf("%llu inputs, no invariant broken\n", runs);
	return 0;
}
