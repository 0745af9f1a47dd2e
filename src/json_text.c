/*
 * json_text.c - exact JSON writer and strict JSON syntax check (json_text.h).
 *
 * The writer's output is byte-for-byte what Python's
 * json.dumps(v, indent=2, ensure_ascii=False) prints, plus "\n": a format
 * people already know from the CLI, and one that is stable across library
 * versions (the FUSE layer reports st_size from it).
 */
#include "primehubfs/json_text.h"
#include "primehubfs/error.h" /* PH_PRINTF */

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- UTF-8 */

size_t jt_utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c;
	size_t len;
	uint32_t cp;

	if (n == 0)
		return 0;
	c = s[0];
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0; /* continuation byte, overlong lead 0xc0/0xc1, or > U+10FFFF */
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* --------------------------------------------------------------- writer */

void jt_init(struct jt_writer *w)
{
	memset(w, 0, sizeof(*w));
}

static void put(struct jt_writer *w, const char *s, size_t n)
{
	if (w->failed)
		return;
	if (n + 1 > w->cap - w->len) {
		size_t cap = w->cap ? w->cap : 512;
		char *b;

		while (n + 1 > cap - w->len) {
			if (cap > SIZE_MAX / 2) {
				w->failed = true;
				return;
			}
			cap *= 2;
		}
		b = realloc(w->buf, cap);
		if (!b) {
			w->failed = true;
			return;
		}
		w->buf = b;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = '\0';
}

static void put_str(struct jt_writer *w, const char *s)
{
	put(w, s, strlen(s));
}

/* Python's escaping with ensure_ascii=False: only '"', '\\' and control
 * characters are escaped, the short forms where JSON has them.  Bytes that
 * are not UTF-8 (the server does not check) become U+FFFD so that the
 * output is always valid JSON; a save of that text then differs only where
 * the user edited, because plans diff against the rendered text. */
static void put_escaped(struct jt_writer *w, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n = strlen(str), i = 0;

	put(w, "\"", 1);
	while (i < n) {
		size_t run = i, k;
		char esc[8];

		while (run < n && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' &&
		       s[run] != '\\')
			run++;
		if (run > i) {
			put(w, str + i, run - i);
			i = run;
			continue;
		}
		if (s[i] >= 0x80) {
			k = jt_utf8_seq(s + i, n - i);
			if (k)
				put(w, str + i, k);
			else
				put(w, "\xef\xbf\xbd", 3);
			i += k ? k : 1;
			continue;
		}
		switch (s[i]) {
		case '"':
			put(w, "\\\"", 2);
			break;
		case '\\':
			put(w, "\\\\", 2);
			break;
		case '\n':
			put(w, "\\n", 2);
			break;
		case '\r':
			put(w, "\\r", 2);
			break;
		case '\t':
			put(w, "\\t", 2);
			break;
		case '\b':
			put(w, "\\b", 2);
			break;
		case '\f':
			put(w, "\\f", 2);
			break;
		default:
			snprintf(esc, sizeof(esc), "\\u%04x", s[i]);
			put(w, esc, 6);
			break;
		}
		i++;
	}
	put(w, "\"", 1);
}

/* Separator, newline and indent before a member; false if nothing may be
 * written (failed, a second top-level value, a key where none belongs). */
static bool member(struct jt_writer *w, const char *key)
{
	if (w->failed)
		return false;
	if (w->depth == 0) {
		if (w->len || key) {
			w->failed = true;
			return false;
		}
		return true;
	}
	if (w->is_array[w->depth - 1] != (key == NULL)) {
		w->failed = true;
		return false;
	}
	if (w->count[w->depth - 1]++)
		put(w, ",", 1);
	put(w, "\n", 1);
	for (unsigned d = 0; d < w->depth; d++)
		put(w, "  ", 2);
	if (key) {
		put_escaped(w, key);
		put(w, ": ", 2);
	}
	return true;
}

static void open_container(struct jt_writer *w, const char *key, bool array)
{
	if (!member(w, key))
		return;
	if (w->depth == JT_MAX_DEPTH) {
		w->failed = true;
		return;
	}
	put(w, array ? "[" : "{", 1);
	w->is_array[w->depth] = array;
	w->count[w->depth] = 0;
	w->depth++;
}

static void close_container(struct jt_writer *w, bool array)
{
	if (w->failed)
		return;
	if (w->depth == 0 || w->is_array[w->depth - 1] != array) {
		w->failed = true;
		return;
	}
	w->depth--;
	if (w->count[w->depth]) {
		put(w, "\n", 1);
		for (unsigned d = 0; d < w->depth; d++)
			put(w, "  ", 2);
	}
	put(w, array ? "]" : "}", 1);
}

void jt_object_begin(struct jt_writer *w, const char *key)
{
	open_container(w, key, false);
}

void jt_object_end(struct jt_writer *w)
{
	close_container(w, false);
}

void jt_array_begin(struct jt_writer *w, const char *key)
{
	open_container(w, key, true);
}

void jt_array_end(struct jt_writer *w)
{
	close_container(w, true);
}

void jt_string(struct jt_writer *w, const char *key, const char *s)
{
	if (!member(w, key))
		return;
	if (s)
		put_escaped(w, s);
	else
		put_str(w, "null");
}

void jt_bool(struct jt_writer *w, const char *key, bool b)
{
	if (member(w, key))
		put_str(w, b ? "true" : "false");
}

void jt_null(struct jt_writer *w, const char *key)
{
	if (member(w, key))
		put_str(w, "null");
}

char *jt_finish(struct jt_writer *w, size_t *len)
{
	char *out;

	if (!w->failed && (w->depth != 0 || w->len == 0))
		w->failed = true;
	put(w, "\n", 1);
	if (w->failed) {
		free(w->buf);
		jt_init(w);
		return NULL;
	}
	out = w->buf;
	if (len)
		*len = w->len;
	jt_init(w);
	return out;
}

/* --------------------------------------------------------- syntax check */

struct lex {
	const unsigned char *s;
	size_t n, i;
	unsigned depth;
	struct jt_syntax_error *e;
};

static int fail(struct lex *l, size_t at, const char *fmt, ...) PH_PRINTF(3, 4);

static int fail(struct lex *l, size_t at, const char *fmt, ...)
{
	va_list ap;

	l->e->offset = at;
	va_start(ap, fmt);
	vsnprintf(l->e->hint, sizeof(l->e->hint), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* What sits at l->s[at], for a hint: 'x', the character itself, or a byte. */
static void describe(const struct lex *l, size_t at, char *dst, size_t size)
{
	const unsigned char *p = l->s + at;
	size_t k;

	if (at >= l->n) {
		snprintf(dst, size, "the end of the text");
		return;
	}
	if (*p >= 0x21 && *p < 0x7f) {
		snprintf(dst, size, "'%c'", *p);
		return;
	}
	k = jt_utf8_seq(p, l->n - at);
	if (k > 1)
		snprintf(dst, size, "'%.*s'", (int)k, (const char *)p);
	else
		snprintf(dst, size, "byte 0x%02x", *p);
}

static bool is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alnum(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static void skip_ws(struct lex *l)
{
	while (l->i < l->n && is_ws(l->s[l->i]))
		l->i++;
}

/* The last non-blank byte before `at` is a ',': "[1,]" and "{"a":1,}" are
 * the most common hand-editing mistake and deserve their own hint. */
static bool after_comma(const struct lex *l, size_t at)
{
	while (at > 0 && is_ws(l->s[at - 1]))
		at--;
	return at > 0 && l->s[at - 1] == ',';
}

static int hex4(const struct lex *l, size_t at, unsigned *out)
{
	unsigned v = 0;

	if (l->n - at < 4)
		return -1;
	for (size_t k = 0; k < 4; k++) {
		unsigned char c = l->s[at + k];

		v <<= 4;
		if (is_digit(c))
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	*out = v;
	return 0;
}

static int lex_string(struct lex *l)
{
	size_t start = l->i++;

	for (;;) {
		unsigned char c;
		size_t k;

		if (l->i >= l->n)
			return fail(l, start,
			            "the string that starts here is not closed (missing '\"')");
		c = l->s[l->i];
		if (c == '"') {
			l->i++;
			return 0;
		}
		if (c == '\n' || c == '\r')
			return fail(l, l->i,
			            "line break inside a string (a missing '\"'? write \\n for a "
			            "newline)");
		if (c < 0x20)
			return fail(
			    l, l->i,
			    "control character 0x%02x inside a string (write \\t or \\u00XX)", c);
		if (c >= 0x80) {
			k = jt_utf8_seq(l->s + l->i, l->n - l->i);
			if (!k)
				return fail(l, l->i,
				            "byte 0x%02x is not valid UTF-8 (text must be UTF-8)",
				            c);
			l->i += k;
			continue;
		}
		if (c != '\\') {
			l->i++;
			continue;
		}
		/* An escape. */
		if (l->i + 1 >= l->n)
			return fail(l, start,
			            "the string that starts here is not closed (missing '\"')");
		c = l->s[l->i + 1];
		if (strchr("\"\\/bfnrt", c) && c) {
			l->i += 2;
			continue;
		}
		if (c == 'u') {
			unsigned cp, lo;
			size_t esc = l->i;

			if (hex4(l, esc + 2, &cp))
				return fail(l, esc, "\\u must be followed by four hex digits");
			if (cp == 0)
				return fail(l, esc,
				            "\\u0000 (a NUL character) is not allowed in strings");
			l->i = esc + 6;
			if (cp >= 0xdc00 && cp <= 0xdfff)
				return fail(l, esc,
				            "\\u%04x is half of a surrogate pair without its first "
				            "half",
				            cp);
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (l->n - l->i < 6 || l->s[l->i] != '\\' ||
				    l->s[l->i + 1] != 'u' || hex4(l, l->i + 2, &lo) ||
				    lo < 0xdc00 || lo > 0xdfff)
					return fail(l, esc,
					            "\\u%04x must be followed by the second half "
					            "of its surrogate pair (\\udc00-\\udfff)",
					            cp);
				l->i += 6;
			}
			continue;
		}
		{
			char what[24];

			describe(l, l->i + 1, what, sizeof(what));
			return fail(
			    l, l->i,
			    "invalid escape: backslash before %s (valid: \\\" \\\\ \\/ \\b \\f "
			    "\\n \\r \\t \\uXXXX)",
			    what);
		}
	}
}

static int lex_number(struct lex *l)
{
	size_t start = l->i;

	if (l->s[l->i] == '-')
		l->i++;
	if (l->i < l->n && l->s[l->i] == '0') {
		l->i++;
		if (l->i < l->n && is_digit(l->s[l->i]))
			return fail(l, start, "numbers cannot start with 0 (leading zeros)");
	} else if (l->i < l->n && is_digit(l->s[l->i])) {
		while (l->i < l->n && is_digit(l->s[l->i]))
			l->i++;
	} else {
		return fail(l, start, "'-' must be followed by digits");
	}
	if (l->i < l->n && l->s[l->i] == '.') {
		l->i++;
		if (l->i >= l->n || !is_digit(l->s[l->i]))
			return fail(l, l->i, "digits are needed after the '.' of a number");
		while (l->i < l->n && is_digit(l->s[l->i]))
			l->i++;
	}
	if (l->i < l->n && (l->s[l->i] == 'e' || l->s[l->i] == 'E')) {
		l->i++;
		if (l->i < l->n && (l->s[l->i] == '+' || l->s[l->i] == '-'))
			l->i++;
		if (l->i >= l->n || !is_digit(l->s[l->i]))
			return fail(l, l->i, "digits are needed in the exponent of a number");
		while (l->i < l->n && is_digit(l->s[l->i]))
			l->i++;
	}
	if (l->i < l->n && (is_alnum(l->s[l->i]) || l->s[l->i] == '.'))
		return fail(l, start, "invalid number");
	return 0;
}

static int bad_word(struct lex *l, size_t at, const char *what_for)
{
	size_t end = at;

	while (end < l->n && end - at < 24 && is_alnum(l->s[end]))
		end++;
	return fail(l, at,
	            "unexpected word '%.*s': %s need double quotes; the only bare words are true, "
	            "false and null",
	            (int)(end - at), (const char *)l->s + at, what_for);
}

static int lex_value(struct lex *l);

static int not_closed(struct lex *l, size_t open, const char *what)
{
	unsigned line, col;

	jt_line_col((const char *)l->s, l->n, open, &line, &col);
	return fail(l, l->n,
	            "unexpected end of text: the %s opened at line %u, column %u is not "
	            "closed",
	            what, line, col);
}

static int lex_object(struct lex *l)
{
	size_t open = l->i++;
	char what[24];

	if (++l->depth > JT_CHECK_MAX_DEPTH)
		return fail(l, open, "nested more than %d levels deep", JT_CHECK_MAX_DEPTH);
	skip_ws(l);
	if (l->i < l->n && l->s[l->i] == '}') {
		l->i++;
		l->depth--;
		return 0;
	}
	for (;;) {
		int r;

		skip_ws(l);
		if (l->i >= l->n)
			return not_closed(l, open, "object");
		switch (l->s[l->i]) {
		case '"':
			break;
		case '}':
			return fail(l, l->i, "trailing comma before '}' (remove the last ',')");
		case '\'':
			return fail(l, l->i, "keys need double quotes (\"), not single quotes");
		default:
			if (is_alnum(l->s[l->i]))
				return bad_word(l, l->i, "keys");
			describe(l, l->i, what, sizeof(what));
			return fail(l, l->i, "a key in double quotes was expected, not %s", what);
		}
		r = lex_string(l);
		if (r)
			return r;
		skip_ws(l);
		if (l->i >= l->n)
			return not_closed(l, open, "object");
		if (l->s[l->i] != ':') {
			describe(l, l->i, what, sizeof(what));
			return fail(l, l->i, "':' was expected after the key, not %s", what);
		}
		l->i++;
		r = lex_value(l);
		if (r)
			return r;
		skip_ws(l);
		if (l->i >= l->n)
			return not_closed(l, open, "object");
		if (l->s[l->i] == ',') {
			l->i++;
			continue;
		}
		if (l->s[l->i] == '}') {
			l->i++;
			l->depth--;
			return 0;
		}
		if (l->s[l->i] == '"')
			return fail(l, l->i, "',' was expected before this key (a missing comma?)");
		describe(l, l->i, what, sizeof(what));
		return fail(l, l->i, "',' or '}' was expected after the value, not %s", what);
	}
}

static int lex_array(struct lex *l)
{
	size_t open = l->i++;
	char what[24];

	if (++l->depth > JT_CHECK_MAX_DEPTH)
		return fail(l, open, "nested more than %d levels deep", JT_CHECK_MAX_DEPTH);
	skip_ws(l);
	if (l->i < l->n && l->s[l->i] == ']') {
		l->i++;
		l->depth--;
		return 0;
	}
	for (;;) {
		int r = lex_value(l);

		if (r)
			return r;
		skip_ws(l);
		if (l->i >= l->n)
			return not_closed(l, open, "list");
		if (l->s[l->i] == ',') {
			l->i++;
			continue;
		}
		if (l->s[l->i] == ']') {
			l->i++;
			l->depth--;
			return 0;
		}
		describe(l, l->i, what, sizeof(what));
		return fail(l, l->i, "',' or ']' was expected after the list item, not %s", what);
	}
}

static int lex_literal(struct lex *l, const char *word)
{
	size_t k = strlen(word);

	if (l->n - l->i >= k && memcmp(l->s + l->i, word, k) == 0 &&
	    (l->n - l->i == k || !is_alnum(l->s[l->i + k]))) {
		l->i += k;
		return 0;
	}
	return bad_word(l, l->i, "strings");
}

static int lex_value(struct lex *l)
{
	char what[24];
	unsigned char c;

	skip_ws(l);
	if (l->i >= l->n)
		return fail(l, l->n, "unexpected end of text: a value was expected");
	c = l->s[l->i];
	switch (c) {
	case '{':
		return lex_object(l);
	case '[':
		return lex_array(l);
	case '"':
		return lex_string(l);
	case 't':
		return lex_literal(l, "true");
	case 'f':
		return lex_literal(l, "false");
	case 'n':
		return lex_literal(l, "null");
	case '\'':
		return fail(l, l->i, "strings need double quotes (\"), not single quotes");
	case '}':
	case ']':
		if (after_comma(l, l->i))
			return fail(l, l->i, "trailing comma before '%c' (remove the last ',')", c);
		return fail(l, l->i, "a value was expected before '%c'", c);
	default:
		break;
	}
	if (c == '-' || is_digit(c))
		return lex_number(l);
	if (is_alnum(c))
		return bad_word(l, l->i, "strings");
	describe(l, l->i, what, sizeof(what));
	return fail(l, l->i, "unexpected %s: a value was expected", what);
}

int jt_check(const char *text, size_t len, struct jt_syntax_error *e)
{
	struct lex l = {(const unsigned char *)text, len, 0, 0, e};
	int r;

	memset(e, 0, sizeof(*e));
	skip_ws(&l);
	if (l.i >= l.n)
		return fail(&l, 0, "the text is empty (a JSON object {...} was expected)");
	r = lex_value(&l);
	if (r)
		return r;
	skip_ws(&l);
	if (l.i < l.n)
		return fail(&l, l.i,
		            "more text after the end of the JSON value (only one value "
		            "is allowed)");
	return 0;
}

void jt_line_col(const char *text, size_t len, size_t offset, unsigned *line, unsigned *col)
{
	unsigned ln = 1, cl = 1;

	if (offset > len)
		offset = len;
	for (size_t i = 0; i < offset; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c == '\n') {
			ln++;
			cl = 1;
		} else if ((c & 0xc0) != 0x80) {
			cl++; /* a continuation byte is part of the previous character */
		}
	}
	*line = ln;
	*col = cl;
}

void jt_quote(char *dst, size_t size, const char *s, size_t max_chars)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n, i = 0, o = 0, chars = 0;

	if (size == 0)
		return;
	if (!s) {
		snprintf(dst, size, "null");
		return;
	}
	if (size < 8) {
		dst[0] = '\0';
		return;
	}
	n = strlen(s);
	dst[o++] = '"';
	while (i < n) {
		char piece[8];
		size_t k, plen;

		if (p[i] >= 0x80) {
			k = jt_utf8_seq(p + i, n - i);
			if (k) {
				memcpy(piece, s + i, k);
				plen = k;
			} else {
				k = 1;
				plen = (size_t)snprintf(piece, sizeof(piece), "\\x%02x", p[i]);
			}
		} else if (p[i] == '"' || p[i] == '\\') {
			k = 1;
			piece[0] = '\\';
			piece[1] = (char)p[i];
			plen = 2;
		} else if (p[i] < 0x20 || p[i] == 0x7f) {
			k = 1;
			plen = (size_t)snprintf(piece, sizeof(piece), "\\u%04x", p[i]);
		} else {
			k = 1;
			piece[0] = (char)p[i];
			plen = 1;
		}
		/* room for this piece plus "...\"" and the NUL */
		if (chars >= max_chars || o + plen + 5 > size) {
			memcpy(dst + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(dst + o, piece, plen);
		o += plen;
		i += k;
		chars++;
	}
	dst[o++] = '"';
	dst[o] = '\0';
}
