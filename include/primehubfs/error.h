/*
 * error.h - an errno plus the one-line human reason that travels with it.
 *
 * Every function that can fail returns 0 or a negative errno (as FUSE
 * operations do) and, when given a non-NULL struct ph_err, fills it with the
 * same errno (positive) and a reason a person can act on.  The reason is what
 * ends up in the log and in a directory's .error file, so it names the field
 * and says what is allowed, never "invalid input".
 *
 * Ownership: struct ph_err is a plain value; callers own it (usually on the
 * stack).  Nothing in it is heap-allocated.
 */
#ifndef PRIMEHUBFS_ERROR_H
#define PRIMEHUBFS_ERROR_H

#include <stdbool.h>
#include <stddef.h>

#if defined(__GNUC__)
#define PH_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define PH_PRINTF(fmt, args)
#endif

struct ph_err {
	int errnum;     /* positive errno, 0 when no error was recorded */
	char field[64]; /* spec.json field the reason is about, "" if none */
	char msg[512];  /* one line, no trailing newline */
	/* Set by the network layer when a request may have reached the server
	 * and been applied although no answer came back (a timeout or a reset
	 * after the request was sent).  A mutation that fails this way must not
	 * be sent again; the caller re-reads what the server now holds. */
	bool maybe_applied;
};

/* Record an error; returns -errnum so callers can `return ph_err_set(...)`.
 * err may be NULL (the reason is then dropped).  field may be NULL. */
int ph_err_set(struct ph_err *err, int errnum, const char *field, const char *fmt, ...)
    PH_PRINTF(4, 5);

/* Prefix an existing message with more context ("createImage: " + msg). */
void ph_err_prefix(struct ph_err *err, const char *fmt, ...) PH_PRINTF(2, 3);

void ph_err_clear(struct ph_err *err);

/*
 * Copy `in` into `out` (outsz bytes, always NUL-terminated) as one line that
 * is safe to show on a terminal: control characters (C0, DEL, C1), the
 * Unicode bidirectional and invisible format controls (U+200B-U+200F,
 * U+202A-U+202E, U+2066-U+2069) and bytes that are not valid UTF-8 are
 * written as escapes (\n, \t, \xNN, \u202e); a backslash stays one
 * backslash.  Names come from the server and from users, and a name with a
 * newline or an ANSI escape must not forge a line in .error or the log.
 * Returns the length written; a cut never splits an escape or a character.
 */
size_t ph_escape_line(const char *in, char *out, size_t outsz);

#endif
