/* error.c - see primehubfs/error.h. */
#include "primehubfs/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int ph_err_set(struct ph_err *err, int errnum, const char *field, const char *fmt, ...)
{
	if (errnum < 0)
		errnum = -errnum;
	if (err) {
		va_list ap;

		err->errnum = errnum;
		snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
		/* One line: a reason with a newline would split log and .error lines. */
		for (char *p = err->msg; *p; p++)
			if (*p == '\n' || *p == '\r')
				*p = ' ';
		err->maybe_applied = false; /* a new error is a new situation */
	}
	return -errnum;
}

void ph_err_prefix(struct ph_err *err, const char *fmt, ...)
{
	char prefix[256];
	size_t plen, mlen;
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	/* Truncation is fine here: the reason is one line for a person. */
	plen = strlen(prefix);
	mlen = strnlen(err->msg, sizeof(err->msg) - 1);
	if (plen + mlen >= sizeof(err->msg))
		mlen = sizeof(err->msg) - 1 - plen;
	memmove(err->msg + plen, err->msg, mlen);
	memcpy(err->msg, prefix, plen);
	err->msg[plen + mlen] = '\0';
}

void ph_err_clear(struct ph_err *err)
{
	if (err)
		memset(err, 0, sizeof(*err));
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s, unsigned *cp)
{
	size_t n;
	unsigned c = s[0], min;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if ((c & 0xE0) == 0xC0) {
		n = 2, c &= 0x1F, min = 0x80;
	} else if ((c & 0xF0) == 0xE0) {
		n = 3, c &= 0x0F, min = 0x800;
	} else if ((c & 0xF8) == 0xF0) {
		n = 4, c &= 0x07, min = 0x10000;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3F);
	}
	if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
		return 0;
	*cp = c;
	return n;
}

static bool unsafe_codepoint(unsigned cp)
{
	return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) ||
	       (cp >= 0x200B && cp <= 0x200F) || (cp >= 0x202A && cp <= 0x202E) ||
	       (cp >= 0x2066 && cp <= 0x2069) || cp == 0xFEFF;
}

size_t ph_escape_line(const char *in, char *out, size_t outsz)
{
	const unsigned char *s = (const unsigned char *)(in ? in : "");
	size_t o = 0;

	if (!outsz)
		return 0;
	while (*s) {
		char esc[16];
		const char *piece = esc;
		size_t plen;
		unsigned cp = 0;
		size_t n = utf8_len(s, &cp);

		if (n == 0) {
			snprintf(esc, sizeof(esc), "\\x%02x", *s);
			n = 1;
		} else if (!unsafe_codepoint(cp)) {
			piece = (const char *)s;
		} else if (cp == '\n') {
			snprintf(esc, sizeof(esc), "\\n");
		} else if (cp == '\t') {
			snprintf(esc, sizeof(esc), "\\t");
		} else if (cp == '\r') {
			snprintf(esc, sizeof(esc), "\\r");
		} else if (cp < 0x100) {
			snprintf(esc, sizeof(esc), "\\x%02x", cp);
		} else {
			snprintf(esc, sizeof(esc), "\\u%04x", cp);
		}
		plen = piece == esc ? strlen(esc) : n;
		if (o + plen + 1 > outsz)
			break;
		memcpy(out + o, piece, plen);
		o += plen;
		s += n;
	}
	out[o] = '\0';
	return o;
}
