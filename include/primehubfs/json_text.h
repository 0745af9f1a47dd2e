/*
 * json_text.h - the spec layer's own JSON text tools (internal to the spec
 * layer; other layers use spec.h):
 *
 *   - a writer that produces exact, stable bytes: the output of Python's
 *     json.dumps(v, indent=2, ensure_ascii=False) plus a final newline
 *     (two-space indent, ", " never, ": " after keys, one array item per
 *     line, empty containers as [] and {}).  cJSON_Print uses tabs and its
 *     own spacing, and st_size must not depend on a library's mood.
 *   - a strict syntax check (RFC 8259 plus: valid UTF-8, no \u0000, bounded
 *     nesting) that reports the exact place and a short hint, because
 *     cJSON's error position is often a few characters off and cJSON
 *     accepts some text that is not JSON (raw control characters in
 *     strings, leading zeros).
 *
 * Pure: no I/O, no globals.  Ownership: jt_finish hands the buffer to the
 * caller (free()); everything else borrows.
 */
#ifndef PRIMEHUBFS_JSON_TEXT_H
#define PRIMEHUBFS_JSON_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#define JT_MAX_DEPTH       32 /* writer nesting; spec/status need 4 */
#define JT_CHECK_MAX_DEPTH 64 /* reader nesting; deeper text is refused */

struct jt_writer {
	char *buf;
	size_t len, cap;
	unsigned depth;
	size_t count[JT_MAX_DEPTH]; /* members written so far at each open level */
	bool is_array[JT_MAX_DEPTH];
	bool failed; /* out of memory or misuse: jt_finish gives NULL */
};

void jt_init(struct jt_writer *w);
/* `key` is the member name inside an object and NULL inside an array or at
 * the top level. */
void jt_object_begin(struct jt_writer *w, const char *key);
void jt_object_end(struct jt_writer *w);
void jt_array_begin(struct jt_writer *w, const char *key);
void jt_array_end(struct jt_writer *w);
void jt_string(struct jt_writer *w, const char *key, const char *s); /* NULL -> null */
void jt_bool(struct jt_writer *w, const char *key, bool b);
void jt_null(struct jt_writer *w, const char *key);
/* Appends the final newline and returns the text (caller frees), or NULL on
 * ENOMEM/misuse (then everything is already freed).  *len may be NULL. */
char *jt_finish(struct jt_writer *w, size_t *len);

/* Length (1-4) of the valid UTF-8 sequence at s[0..n), or 0 if invalid
 * (overlong, surrogate, above U+10FFFF, truncated, stray continuation). */
size_t jt_utf8_seq(const unsigned char *s, size_t n);

struct jt_syntax_error {
	size_t offset;  /* byte offset of the problem */
	char hint[160]; /* what is wrong there, for a person */
};

/* 0 if text[0..len) is exactly one strict JSON value surrounded by optional
 * whitespace; else -EINVAL with *e filled.  Never reads past len. */
int jt_check(const char *text, size_t len, struct jt_syntax_error *e);

/* 1-based line and column (in characters, a tab is one) of `offset`. */
void jt_line_col(const char *text, size_t len, size_t offset, unsigned *line, unsigned *col);

/* Writes s as a JSON string literal into dst (always NUL-terminated),
 * cutting it to about max_chars characters with "..." so that user text
 * quoted in an error message stays short and on one line. */
void jt_quote(char *dst, size_t size, const char *s, size_t max_chars);

#endif
