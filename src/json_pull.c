/*
 * json_pull.c - the strict, resumable JSON pull parser of json_pull.h.
 *
 * A byte-level state machine: `expect` says what may come next between
 * tokens, `tok`/`sub` where we are inside a string, number or literal.  Every
 * piece of state lives in the parser, so a chunk may end anywhere (inside a
 * \u escape, between the halves of a surrogate pair, in a UTF-8 sequence)
 * and the next chunk carries on as if the text had come in one piece: the
 * events never depend on where the chunks were cut.
 *
 * Speed: the bulk of a big answer is string bytes, so a run of plain bytes
 * is found with one scan and appended with one memcpy.
 */
#include "primehubfs/json_pull.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum expect {
	EX_VALUE,        /* a value (top, after ':' or after ',' in an array) */
	EX_VALUE_OR_END, /* after '[' */
	EX_KEY_OR_END,   /* after '{' */
	EX_KEY,          /* after ',' in an object */
	EX_COLON,        /* after a key */
	EX_COMMA_OR_END, /* after a value inside a container */
	EX_DONE,         /* the top value is complete */
};

enum tok { T_NONE, T_STRING, T_NUMBER, T_LITERAL };

enum str_state { S_CHAR, S_ESC, S_HEX, S_LOW_BSL, S_LOW_U };

enum num_state {
	N_MINUS,   /* "-": a digit must follow */
	N_ZERO,    /* "0": no digit may follow */
	N_INT,     /* digits */
	N_DOT,     /* ".": a digit must follow */
	N_FRAC,    /* fraction digits */
	N_EXP,     /* "e": sign or digit */
	N_EXP_SGN, /* "e+": a digit must follow */
	N_EXP_DIG, /* exponent digits */
};

static int fail(struct jp_parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct jp_parser *p, const char *fmt, ...)
{
	char what[96];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(p->msg, sizeof(p->msg), "invalid JSON at byte %llu: %s", jp_offset(p), what);
	p->failed = true;
	return JP_ERROR;
}

void jp_init(struct jp_parser *p, unsigned max_depth, size_t max_token, unsigned flags)
{
	memset(p, 0, sizeof(*p));
	p->max_depth = max_depth ? max_depth : JP_DEFAULT_MAX_DEPTH;
	p->max_token = max_token ? max_token : JP_DEFAULT_MAX_TOKEN;
	p->flags = flags;
	p->expect = EX_VALUE;
}

void jp_clear(struct jp_parser *p)
{
	free(p->stack);
	free(p->buf);
	memset(p, 0, sizeof(*p));
}

void jp_feed(struct jp_parser *p, const void *buf, size_t len)
{
	p->offset += p->in_pos;
	p->in = buf;
	p->in_len = len;
	p->in_pos = 0;
}

void jp_finish(struct jp_parser *p)
{
	p->finished = true;
}

const char *jp_error(const struct jp_parser *p)
{
	return p->failed ? p->msg : "no error";
}

unsigned long long jp_offset(const struct jp_parser *p)
{
	return p->offset + p->in_pos;
}

/* Room for n more bytes of token text and its NUL. */
static int reserve(struct jp_parser *p, size_t n)
{
	size_t cap;
	char *b;

	if (n > p->max_token - p->len)
		return fail(p, "a string or number longer than %zu bytes", p->max_token);
	if (p->len + n + 1 <= p->cap)
		return 0;
	cap = p->cap ? p->cap : 256;
	while (cap < p->len + n + 1)
		cap *= 2;
	b = realloc(p->buf, cap);
	if (!b)
		return fail(p, "out of memory");
	p->buf = b;
	p->cap = cap;
	return 0;
}

static int append(struct jp_parser *p, const void *s, size_t n)
{
	if (reserve(p, n) < 0)
		return JP_ERROR;
	memcpy(p->buf + p->len, s, n);
	p->len += n;
	return 0;
}

/* A value ended: what may follow depends on the container around it. */
static void value_done(struct jp_parser *p)
{
	p->expect = p->depth ? EX_COMMA_OR_END : EX_DONE;
}

static int emit(struct jp_parser *p, struct jp_event *ev, enum jp_type type)
{
	ev->type = type;
	ev->depth = p->depth;
	ev->str = NULL;
	ev->len = 0;
	if (type == JP_KEY || type == JP_STRING || type == JP_NUMBER) {
		if (reserve(p, 0) < 0)
			return JP_ERROR;
		p->buf[p->len] = '\0';
		ev->str = p->buf;
		ev->len = p->len;
	}
	return JP_EVENT;
}

static int push(struct jp_parser *p, unsigned char kind, struct jp_event *ev)
{
	if (p->depth >= p->max_depth) {
		p->in_pos--; /* the place is the bracket itself */
		return fail(p, "nested deeper than %u", p->max_depth);
	}
	if (!p->stack) {
		/* Allocated once at its bound: a few hundred bytes. */
		p->stack = malloc(p->max_depth);
		if (!p->stack)
			return fail(p, "out of memory");
	}
	emit(p, ev, kind == 'o' ? JP_OBJECT_BEGIN : JP_ARRAY_BEGIN);
	p->stack[p->depth++] = kind;
	p->expect = kind == 'o' ? EX_KEY_OR_END : EX_VALUE_OR_END;
	return JP_EVENT;
}

static int pop(struct jp_parser *p, unsigned char kind, struct jp_event *ev)
{
	p->depth--;
	emit(p, ev, kind == 'o' ? JP_OBJECT_END : JP_ARRAY_END);
	value_done(p);
	return JP_EVENT;
}

/* The UTF-8 encoding of code point cp. */
static int append_cp(struct jp_parser *p, unsigned cp)
{
	unsigned char b[4];
	size_t n;

	if (cp < 0x80) {
		b[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (unsigned char)(0xc0 | cp >> 6);
		b[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (unsigned char)(0xe0 | cp >> 12);
		b[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (unsigned char)(0xf0 | cp >> 18);
		b[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		b[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return append(p, b, n);
}

static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The lead byte of a UTF-8 sequence: how many continuation bytes follow and
 * the range of the first one (which rules out overlong forms, surrogates
 * and code points past U+10FFFF); -1 if c cannot start a sequence. */
static int utf8_lead(unsigned char c, unsigned char *lo, unsigned char *hi)
{
	*lo = 0x80;
	*hi = 0xbf;
	if (c >= 0xc2 && c <= 0xdf)
		return 1;
	if (c == 0xe0)
		*lo = 0xa0;
	else if (c == 0xed)
		*hi = 0x9f;
	if (c >= 0xe0 && c <= 0xef)
		return 2;
	if (c == 0xf0)
		*lo = 0x90;
	else if (c == 0xf4)
		*hi = 0x8f;
	if (c >= 0xf0 && c <= 0xf4)
		return 3;
	return -1;
}

/* Whether c goes into a string as it is, without a second look. */
static inline bool plain(const struct jp_parser *p, unsigned char c)
{
	return c >= 0x20 && c != '"' && c != '\\' && (c < 0x80 || (p->flags & JP_RAW_BYTES));
}

#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* The end of the run of plain bytes in in[at..len): eight bytes at a time
 * while none of them needs a look (a quote, a backslash, a control byte,
 * or in strict mode a byte >= 0x80), then byte by byte.  Most of a big
 * answer is string bytes, so this loop is most of the parser's time. */
static size_t plain_run(const struct jp_parser *p, const unsigned char *in, size_t at, size_t len)
{
	uint64_t high = (p->flags & JP_RAW_BYTES) ? 0 : HIGHS;

	while (len - at >= 8) {
		uint64_t v, q, b;

		memcpy(&v, in + at, 8);
		q = v ^ (ONES * '"');
		b = v ^ (ONES * '\\');
		if ((((q - ONES) & ~q) | ((b - ONES) & ~b) | ((v - ONES * 0x20) & ~v) |
		     (v & high)) &
		    HIGHS)
			break;
		at += 8;
	}
	while (at < len && plain(p, in[at]))
		at++;
	return at;
}

/* Bytes of a string from the current chunk; JP_EVENT when it ends. */
static int string_bytes(struct jp_parser *p, struct jp_event *ev)
{
	while (p->in_pos < p->in_len) {
		unsigned char c = p->in[p->in_pos];
		int h;

		if (p->sub == S_CHAR && p->u8_need == 0 && plain(p, c)) {
			size_t start = p->in_pos, end = plain_run(p, p->in, start + 1, p->in_len);

			if (append(p, p->in + start, end - start) < 0)
				return JP_ERROR;
			p->in_pos = end;
			continue;
		}
		switch (p->sub) {
		case S_CHAR:
			if (p->u8_need) {
				if (c < p->u8_lo || c > p->u8_hi)
					return fail(p, "invalid UTF-8 in a string");
				p->u8_lo = 0x80;
				p->u8_hi = 0xbf;
				p->u8_need--;
				break;
			}
			if (c == '"') {
				p->in_pos++;
				p->tok = T_NONE;
				if (p->tok_is_key) {
					p->expect = EX_COLON;
					return emit(p, ev, JP_KEY);
				}
				value_done(p);
				return emit(p, ev, JP_STRING);
			}
			if (c == '\\') {
				p->sub = S_ESC;
				p->in_pos++;
				continue;
			}
			if (c < 0x20)
				return fail(p, "a control character (0x%02x) in a string", c);
			/* c >= 0x80 and UTF-8 is checked */
			p->u8_need = utf8_lead(c, &p->u8_lo, &p->u8_hi);
			if (p->u8_need < 0) {
				p->u8_need = 0;
				return fail(p, "invalid UTF-8 in a string");
			}
			break;
		case S_ESC: {
			static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
			const char *at = c ? strchr(from, c) : NULL;

			if (c == 'u') {
				p->sub = S_HEX;
				p->u_val = 0;
				p->u_digits = 0;
				p->in_pos++;
				continue;
			}
			if (!at)
				return fail(p, "an unknown escape in a string");
			if (append(p, &to[at - from], 1) < 0)
				return JP_ERROR;
			p->sub = S_CHAR;
			p->in_pos++;
			continue;
		}
		case S_HEX:
			h = hex_value(c);
			if (h < 0)
				return fail(p, "a \\u escape without four hex digits");
			p->u_val = p->u_val << 4 | (unsigned)h;
			p->in_pos++;
			if (++p->u_digits < 4)
				continue;
			p->sub = S_CHAR;
			if (p->u_hi) {
				unsigned hi = p->u_hi;

				p->u_hi = 0;
				if (p->u_val < 0xdc00 || p->u_val > 0xdfff)
					return fail(p, "a high surrogate without its low half");
				if (append_cp(p, 0x10000 + ((hi - 0xd800) << 10) +
				                     (p->u_val - 0xdc00)) < 0)
					return JP_ERROR;
			} else if (p->u_val >= 0xd800 && p->u_val <= 0xdbff) {
				p->u_hi = p->u_val;
				p->sub = S_LOW_BSL;
			} else if (p->u_val >= 0xdc00 && p->u_val <= 0xdfff) {
				return fail(p, "a low surrogate without its high half");
			} else if (append_cp(p, p->u_val) < 0) {
				return JP_ERROR;
			}
			continue;
		case S_LOW_BSL:
			if (c != '\\')
				return fail(p, "a high surrogate without its low half");
			p->sub = S_LOW_U;
			break;
		case S_LOW_U:
			if (c != 'u')
				return fail(p, "a high surrogate without its low half");
			p->sub = S_HEX;
			p->u_val = 0;
			p->u_digits = 0;
			break;
		}
		/* The byte goes in as it is (a checked UTF-8 byte) or not at
		 * all (the "\u" between surrogate halves). */
		if (p->sub == S_CHAR && append(p, &c, 1) < 0)
			return JP_ERROR;
		p->in_pos++;
	}
	return JP_MORE;
}

static bool num_complete(int s)
{
	return s == N_ZERO || s == N_INT || s == N_FRAC || s == N_EXP_DIG;
}

/* The number state after c, or -1 if c cannot continue the number. */
static int num_step(int s, unsigned char c)
{
	bool digit = c >= '0' && c <= '9';

	switch (s) {
	case N_MINUS:
		return c == '0' ? N_ZERO : digit ? N_INT : -1;
	case N_ZERO:
		return c == '.' ? N_DOT : (c == 'e' || c == 'E') ? N_EXP : -1;
	case N_INT:
		return digit ? N_INT : c == '.' ? N_DOT : (c == 'e' || c == 'E') ? N_EXP : -1;
	case N_DOT:
		return digit ? N_FRAC : -1;
	case N_FRAC:
		return digit ? N_FRAC : (c == 'e' || c == 'E') ? N_EXP : -1;
	case N_EXP:
		return digit ? N_EXP_DIG : (c == '+' || c == '-') ? N_EXP_SGN : -1;
	case N_EXP_SGN:
	case N_EXP_DIG:
		return digit ? N_EXP_DIG : -1;
	}
	return -1;
}

/* Bytes of a number; it ends at the first byte that cannot continue it
 * (left for the structural states) or at the end of the input. */
static int number_bytes(struct jp_parser *p, struct jp_event *ev)
{
	while (p->in_pos < p->in_len) {
		unsigned char c = p->in[p->in_pos];
		int next = num_step(p->sub, c);

		if (next < 0) {
			if (!num_complete(p->sub))
				return fail(p, "a malformed number");
			p->tok = T_NONE;
			value_done(p);
			return emit(p, ev, JP_NUMBER);
		}
		if (append(p, &c, 1) < 0)
			return JP_ERROR;
		p->sub = next;
		p->in_pos++;
	}
	return JP_MORE;
}

static int literal_bytes(struct jp_parser *p, struct jp_event *ev)
{
	while (p->in_pos < p->in_len) {
		if (p->in[p->in_pos] != (unsigned char)p->lit[p->sub])
			return fail(p, "an unknown word (not true, false or null)");
		p->in_pos++;
		if (p->lit[++p->sub] == '\0') {
			p->tok = T_NONE;
			value_done(p);
			return emit(p, ev,
			            p->lit[0] == 't'   ? JP_TRUE
			            : p->lit[0] == 'f' ? JP_FALSE
			                               : JP_NULL);
		}
	}
	return JP_MORE;
}

static int start_value(struct jp_parser *p, unsigned char c, struct jp_event *ev)
{
	switch (c) {
	case '{':
		p->in_pos++;
		return push(p, 'o', ev);
	case '[':
		p->in_pos++;
		return push(p, 'a', ev);
	case '"':
		p->in_pos++;
		p->tok = T_STRING;
		p->tok_is_key = false;
		p->sub = S_CHAR;
		p->len = 0;
		return JP_MORE;
	case 't':
	case 'f':
	case 'n':
		p->tok = T_LITERAL;
		p->lit = c == 't' ? "true" : c == 'f' ? "false" : "null";
		p->sub = 0;
		return JP_MORE;
	default:
		if (c == '-' || (c >= '0' && c <= '9')) {
			p->in_pos++;
			p->tok = T_NUMBER;
			p->len = 0;
			p->sub = c == '-' ? N_MINUS : c == '0' ? N_ZERO : N_INT;
			return append(p, &c, 1) < 0 ? JP_ERROR : JP_MORE;
		}
		return fail(p, "expected a value");
	}
}

static int structural(struct jp_parser *p, unsigned char c, struct jp_event *ev)
{
	unsigned char top = p->depth ? p->stack[p->depth - 1] : 0;

	switch (p->expect) {
	case EX_VALUE_OR_END:
		if (c == ']') {
			p->in_pos++;
			return pop(p, 'a', ev);
		}
		/* fall through */
	case EX_VALUE:
		return start_value(p, c, ev);
	case EX_KEY_OR_END:
		if (c == '}') {
			p->in_pos++;
			return pop(p, 'o', ev);
		}
		/* fall through */
	case EX_KEY:
		if (c != '"')
			return fail(p, p->expect == EX_KEY ? "expected a key after ','"
			                                   : "expected a key or '}'");
		p->in_pos++;
		p->tok = T_STRING;
		p->tok_is_key = true;
		p->sub = S_CHAR;
		p->len = 0;
		return JP_MORE;
	case EX_COLON:
		if (c != ':')
			return fail(p, "expected ':' after a key");
		p->in_pos++;
		p->expect = EX_VALUE;
		return JP_MORE;
	case EX_COMMA_OR_END:
		p->in_pos++;
		if (c == ',') {
			p->expect = top == 'o' ? EX_KEY : EX_VALUE;
			return JP_MORE;
		}
		if (c == (top == 'o' ? '}' : ']'))
			return pop(p, top, ev);
		p->in_pos--;
		return fail(p, top == 'o' ? "expected ',' or '}'" : "expected ',' or ']'");
	default: /* EX_DONE */
		return fail(p, "text after the end of the value");
	}
}

int jp_next(struct jp_parser *p, struct jp_event *ev)
{
	int r;

	if (p->failed)
		return JP_ERROR;
	while (p->in_pos < p->in_len) {
		unsigned char c = p->in[p->in_pos];

		switch (p->tok) {
		case T_STRING:
			r = string_bytes(p, ev);
			break;
		case T_NUMBER:
			r = number_bytes(p, ev);
			break;
		case T_LITERAL:
			r = literal_bytes(p, ev);
			break;
		default:
			if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
				p->in_pos++;
				continue;
			}
			r = structural(p, c, ev);
			break;
		}
		if (r != JP_MORE)
			return r;
	}
	if (!p->finished)
		return JP_MORE;
	if (p->tok == T_NUMBER) {
		if (!num_complete(p->sub))
			return fail(p, "a malformed number");
		p->tok = T_NONE;
		value_done(p);
		return emit(p, ev, JP_NUMBER);
	}
	if (p->tok != T_NONE || p->expect != EX_DONE)
		return fail(p, "the text ends before the value does");
	return JP_DONE;
}
