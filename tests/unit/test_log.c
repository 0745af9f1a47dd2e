/* test_log.c - every log line is one terminal-safe line: names with line
 * breaks, ANSI escapes or a right-to-left override cannot forge, colour or
 * reorder a line.  stderr (the foreground log) is redirected to a file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "primehubfs/log.h"
#include "unit.h"

static char *slurp(FILE *f)
{
	static char buf[65536];
	size_t n;

	fflush(stderr);
	rewind(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	return buf;
}

int main(void)
{
	FILE *capture = tmpfile();
	int saved = dup(2);
	char *text, big[3000];

	CHECK(capture != NULL && saved >= 0);
	fflush(stderr);
	dup2(fileno(capture), 2);

	log_setup(false, false);
	log_warn("mkdir '%s' refused", "evil\x1b[31mred\xe2\x80\xae"
	                               "etalp\nprimehubfs: info: forged");
	log_debug("not shown without -d");
	log_info("a\\b \xff tab\there");
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[10] = '\n';
	log_error("%s", big);
	text = slurp(capture);

	dup2(saved, 2);
	close(saved);

	CHECK(strchr(text, '\x1b') == NULL);
	CHECK(strstr(text, "\xe2\x80\xae") == NULL);
	CHECK_CONTAINS(text,
	               "primehubfs: warning: mkdir 'evil\\x1b[31mred\\u202eetalp\\nprimehubfs: "
	               "info: forged' refused\n");
	CHECK(strstr(text, "not shown") == NULL);
	CHECK_CONTAINS(text, "primehubfs: info: a\\b \\xff tab\\there\n");
	/* Exactly three lines: nothing a message held started a line of its own. */
	{
		int lines = 0;

		for (const char *p = text; *p; p++)
			lines += *p == '\n';
		CHECK_INT(lines, 3);
	}
	CHECK_CONTAINS(text, "primehubfs: error: xxxxxxxxxx\\nxxx");
	fclose(capture);
	UNIT_DONE();
}
