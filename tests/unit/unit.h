/*
 * unit.h - the smallest test harness that reports honestly: every CHECK
 * counts, a failed CHECK prints file:line and the expression, and the
 * program's exit status is non-zero if anything failed.  Each test binary
 * ends with UNIT_DONE(), which prints "N passed, N failed".
 */
#ifndef PRIMEHUBFS_UNIT_H
#define PRIMEHUBFS_UNIT_H

#include <stdio.h>
#include <string.h>

static int unit_passed, unit_failed;

#define CHECK(expr)                                                                        \
	do {                                                                               \
		if (expr) {                                                                \
			unit_passed++;                                                     \
		} else {                                                                   \
			unit_failed++;                                                     \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr); \
		}                                                                          \
	} while (0)

#define CHECK_INT(a, b)                                                                    \
	do {                                                                               \
		long long unit_a_ = (long long)(a), unit_b_ = (long long)(b);              \
		if (unit_a_ == unit_b_) {                                                  \
			unit_passed++;                                                     \
		} else {                                                                   \
			unit_failed++;                                                     \
			fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__,   \
				__LINE__, #a, unit_a_, #b, unit_b_);                       \
		}                                                                          \
	} while (0)

#define CHECK_STR(a, b)                                                                    \
	do {                                                                               \
		const char *unit_a_ = (a), *unit_b_ = (b);                                 \
		if (unit_a_ && unit_b_ && strcmp(unit_a_, unit_b_) == 0) {                 \
			unit_passed++;                                                     \
		} else if (!unit_a_ && !unit_b_) {                                         \
			unit_passed++;                                                     \
		} else {                                                                   \
			unit_failed++;                                                     \
			fprintf(stderr, "%s:%d: %s is \"%s\", expected \"%s\"\n", __FILE__,     \
				__LINE__, #a, unit_a_ ? unit_a_ : "(null)",                \
				unit_b_ ? unit_b_ : "(null)");                             \
		}                                                                          \
	} while (0)

/* Substring check, for human messages. */
#define CHECK_CONTAINS(hay, needle)                                                        \
	do {                                                                               \
		const char *unit_h_ = (hay), *unit_n_ = (needle);                          \
		if (unit_h_ && strstr(unit_h_, unit_n_)) {                                 \
			unit_passed++;                                                     \
		} else {                                                                   \
			unit_failed++;                                                     \
			fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__,   \
				__LINE__, unit_h_ ? unit_h_ : "(null)", unit_n_);          \
		}                                                                          \
	} while (0)

#define UNIT_DONE()                                                                        \
	do {                                                                               \
		printf("%d passed, %d failed\n", unit_passed, unit_failed);                \
		return (unit_failed || !unit_passed) ? 1 : 0;                              \
	} while (0)

#endif
