/*
 * json_pull.h - a strict, resumable JSON pull parser: text goes in chunk by
 * chunk as it arrives (a libcurl write callback), events come out one at a
 * time, and no chunk is kept once its events are out.  Memory is the nesting
 * stack plus the longest single string or number, never the document.
 *
 * Strict (RFC 8259): one value, whitespace around it and nothing else; no
 * trailing commas, leading zeros, raw control characters in strings, unknown
 * escapes, or \u escapes that are not a character (a lone or reversed
 * surrogate); nesting bounded.  Raw bytes >= 0x80 in strings are validated
 * as UTF-8 unless JP_RAW_BYTES is given (the tree decoder keeps a server's
 * odd bytes as they are, for the layers above to show or refuse).
 *
 * Use:
 *     jp_init(&p, 0, 0);
 *     for each chunk:  jp_feed(&p, buf, len);
 *                      while ((r = jp_next(&p, &ev)) == JP_EVENT) use(ev);
 *                      (r is JP_MORE: feed the next chunk; JP_ERROR: stop)
 *     at the end:      jp_finish(&p); then jp_next until JP_DONE or JP_ERROR
 *     jp_clear(&p);
 *
 * Pure: no I/O, no globals.  Ownership: the parser owns its buffers
 * (jp_clear frees them); an event's str points into the parser and is valid
 * until the next jp_next, jp_feed or jp_clear; the fed chunk is borrowed
 * until jp_next returns JP_MORE for it.
 */
#ifndef PRIMEHUBFS_JSON_PULL_H
#define PRIMEHUBFS_JSON_PULL_H

#include <stdbool.h>
#include <stddef.h>

#define JP_DEFAULT_MAX_DEPTH 512
#define JP_DEFAULT_MAX_TOKEN ((size_t)16 << 20) /* the longest string or number */

enum jp_flags {
	JP_RAW_BYTES = 1u << 0, /* pass bytes >= 0x80 in strings unvalidated */
};

enum jp_type {
	JP_NONE,
	JP_OBJECT_BEGIN,
	JP_OBJECT_END,
	JP_ARRAY_BEGIN,
	JP_ARRAY_END,
	JP_KEY,    /* str/len: the key, unescaped */
	JP_STRING, /* str/len: the value, unescaped (may hold a NUL from \u0000) */
	JP_NUMBER, /* str/len: the number's text, as written */
	JP_TRUE,
	JP_FALSE,
	JP_NULL,
};

enum jp_status {
	JP_ERROR = -1, /* malformed or too deep/long: jp_error says why and where */
	JP_MORE = 0,   /* the chunk is used up: feed more (or finish) */
	JP_EVENT = 1,  /* *ev holds the next event */
	JP_DONE = 2,   /* finished, the value was complete and nothing followed it */
};

struct jp_event {
	enum jp_type type;
	const char *str; /* KEY, STRING, NUMBER: NUL-terminated as well */
	size_t len;
	/* Containers around the event: 0 for the top value; a BEGIN has the
	 * depth of the container it opens minus one, its END the same. */
	unsigned depth;
};

struct jp_parser {
	const unsigned char *in; /* the current chunk (borrowed) */
	size_t in_len, in_pos;
	unsigned long long offset; /* bytes of the chunks before this one */
	bool finished;
	unsigned flags;
	unsigned char *stack; /* 'o' or 'a' per open container */
	unsigned depth, max_depth;
	int expect; /* the structural state (json_pull.c) */
	int tok;    /* the token in progress, if any */
	int sub;    /* its state */
	bool tok_is_key;
	unsigned u_val, u_hi; /* a \u escape's value; a high surrogate waiting */
	int u_digits;
	int u8_need; /* UTF-8 continuation bytes still due */
	unsigned char u8_lo, u8_hi;
	const char *lit; /* the literal being matched */
	char *buf;       /* the token's text */
	size_t len, cap, max_token;
	bool failed;
	char msg[128];
};

/* max_depth, max_token: 0 for the defaults above. */
void jp_init(struct jp_parser *p, unsigned max_depth, size_t max_token, unsigned flags);
void jp_clear(struct jp_parser *p);

/* The next chunk; call only after jp_next returned JP_MORE (or first). */
void jp_feed(struct jp_parser *p, const void *buf, size_t len);
/* No more input after the current chunk. */
void jp_finish(struct jp_parser *p);
int jp_next(struct jp_parser *p, struct jp_event *ev);

/* After JP_ERROR: "invalid JSON at byte 1234: expected ':' after a key" (bytes
 * counted from 0: the one where the text went wrong). */
const char *jp_error(const struct jp_parser *p);
/* Bytes consumed so far. */
unsigned long long jp_offset(const struct jp_parser *p);

#endif
