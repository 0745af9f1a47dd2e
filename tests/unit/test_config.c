/* test_config.c - endpoint and token precedence, as the SDK orders them; the
 * token's checks, the warning about exposed token files, and re-reading the
 * token after the server rejected it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "primehubfs/config.h"
#include "unit.h"

/* A literal and its length without the NUL. */
#define TXT(s) s, sizeof(s) - 1

static const char *fake_env[8][2];

static char *fake_getenv(const char *name)
{
	for (int i = 0; i < 8 && fake_env[i][0]; i++)
		if (strcmp(fake_env[i][0], name) == 0)
			return (char *)fake_env[i][1];
	return NULL;
}

static void set_env(int i, const char *name, const char *value)
{
	fake_env[i][0] = name;
	fake_env[i][1] = value;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	fputs(text, f);
	fclose(f);
}

int main(void)
{
	char dir[] = "/tmp/phfs-config-XXXXXX", home[256], cfgdir[300], cfgfile[320], other[320],
	     tokfile[320];
	struct ph_config_input in = {.getenv_fn = fake_getenv};
	struct ph_config c;
	struct ph_err err;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(home, sizeof(home), "%s", dir);
	snprintf(cfgdir, sizeof(cfgdir), "%s/.primehub", home);
	mkdir(cfgdir, 0700);
	snprintf(cfgfile, sizeof(cfgfile), "%s/config.json", cfgdir);
	snprintf(other, sizeof(other), "%s/other.json", home);
	snprintf(tokfile, sizeof(tokfile), "%s/token", home);
	write_file(cfgfile, "{\"endpoint\": \"http://file.example/api/graphql\", "
	                    "\"api-token\": \"file-token\", \"group\": {}}");
	write_file(other, "{\"endpoint\": \"https://other.example/api/graphql\", "
	                  "\"api-token\": \"other-token\"}");
	write_file(tokfile, "  token-from-file\n");
	set_env(0, "HOME", home);

	/* Only the config file. */
	CHECK_INT(config_resolve(&in, &c, &err), 0);
	CHECK_STR(c.endpoint, "http://file.example/api/graphql");
	CHECK_STR(c.token, "file-token");
	CHECK_STR(c.token_source, "the config file");
	config_clear(&c);

	/* Environment beats the file; token_file (the command line) beats both. */
	set_env(1, "PRIMEHUB_API_ENDPOINT", "http://env.example/api/graphql");
	in.token_file = tokfile;
	CHECK_INT(config_resolve(&in, &c, &err), 0);
	CHECK_STR(c.endpoint, "http://env.example/api/graphql");
	CHECK_STR(c.token, "token-from-file"); /* whitespace and newline trimmed */
	CHECK_STR(c.token_source, "token_file");
	config_clear(&c);
	set_env(2, "PRIMEHUB_API_TOKEN", "env-token");
	CHECK_INT(config_resolve(&in, &c, &err), 0);
	CHECK_STR(c.token, "token-from-file");
	CHECK_STR(c.token_source, "token_file");
	config_clear(&c);
	in.token_file = NULL;
	CHECK_INT(config_resolve(&in, &c, &err), 0);
	CHECK_STR(c.token, "env-token");
	CHECK_STR(c.token_source, "PRIMEHUB_API_TOKEN");
	config_clear(&c);
	/* A token_file that cannot be read is refused, not replaced by the
	 * environment's token. */
	in.token_file = "/nonexistent/token";
	CHECK_INT(config_resolve(&in, &c, &err), -ENOENT);
	CHECK_CONTAINS(err.msg, "/nonexistent/token");
	in.token_file = tokfile;

	/* The command line beats everything for the endpoint. */
	in.endpoint_arg = "https://arg.example/api/graphql";
	CHECK_INT(config_resolve(&in, &c, &err), 0);
	CHECK_STR(c.endpoint, "https://arg.example/api/graphql");
	CHECK_STR(c.endpoint_source, "the command line");
	config_clear(&c);

	/* -o config= names another file. */
	set_env(1, "UNUSED", "");
	set_env(2, "UNUSED", "");
	in.endpoint_arg = NULL;
	in.token_file = NULL;
	in.config_path = other;
	CHECK_INT(config_resolve(&in, &c, &err), 0);
	CHECK_STR(c.endpoint, "https://other.example/api/graphql");
	CHECK_STR(c.token, "other-token");
	config_clear(&c);

	/* A named config file that is missing is an error; the default is not. */
	in.config_path = "/nonexistent/primehub.json";
	CHECK_INT(config_resolve(&in, &c, &err), -ENOENT);
	CHECK_CONTAINS(err.msg, "/nonexistent/primehub.json");
	in.config_path = NULL;
	set_env(0, "HOME", "/nonexistent-home");
	CHECK_INT(config_resolve(&in, &c, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "no PrimeHub endpoint");
	in.endpoint_arg = "http://x/api/graphql";
	CHECK_INT(config_resolve(&in, &c, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "no API token");

	/* Not a URL; a token file that cannot be read; an empty token. */
	in.endpoint_arg = "example.com";
	set_env(2, "PRIMEHUB_API_TOKEN", "t");
	CHECK_INT(config_resolve(&in, &c, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "not an http:// or https:// URL");
	in.endpoint_arg = "http://x/api/graphql";
	set_env(2, "UNUSED", "");
	in.token_file = "/nonexistent/token";
	CHECK_INT(config_resolve(&in, &c, &err), -ENOENT);
	CHECK_CONTAINS(err.msg, "/nonexistent/token");
	write_file(tokfile, "\n  \n");
	in.token_file = tokfile;
	CHECK_INT(config_resolve(&in, &c, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "empty");

	/* A config file that is not a JSON object. */
	write_file(other, "[1, 2]");
	in.token_file = NULL;
	in.config_path = other;
	CHECK_INT(config_resolve(&in, &c, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "not a JSON object");

	/* The pure parsers: NUL bytes and line breaks inside a token are
	 * refused (they would end the Authorization header and start another). */
	{
		char *t = NULL, *ep = NULL;

		CHECK_INT(config_token_from_text(TXT(" \tabc.DEF-123_x\r\n"), "T", &t, &err), 0);
		CHECK_STR(t, "abc.DEF-123_x");
		config_free_token(t);
		CHECK_INT(config_token_from_text("abc\0def", 7, "T", &t, &err), -EINVAL);
		CHECK(t == NULL);
		CHECK_CONTAINS(err.msg, "at byte 4");
		CHECK_INT(config_token_from_text("abc\r\nX-Evil: 1", 15, "T", &t, &err), -EINVAL);
		CHECK_CONTAINS(err.msg, "the API token from T");
		CHECK_INT(config_token_from_text("two words", 9, "T", &t, &err), -EINVAL);
		CHECK_INT(config_token_from_text("caf\xc3\xa9", 5, "T", &t, &err), -EINVAL);
		CHECK_INT(config_token_from_text(" \n ", 3, "T", &t, &err), -EINVAL);
		CHECK_CONTAINS(err.msg, "empty");
		CHECK_INT(config_token_from_text("", 0, "T", &t, &err), -EINVAL);

		CHECK_INT(config_parse_text(TXT("{\"endpoint\":\"\",\"api-token\":\" k \"}"), "C",
		                            &ep, &t, &err),
		          0);
		CHECK(ep == NULL);
		CHECK_STR(t, "k");
		free(ep);
		config_free_token(t);
		/* Only len bytes count: the text need not be NUL-terminated. */
		CHECK_INT(config_parse_text("{\"api-token\":\"a\"}XXXX", 17, "C", &ep, &t, &err),
		          0);
		CHECK_STR(t, "a");
		config_free_token(t);
		CHECK_INT(config_parse_text("{\"api-token\":\"a\"}", 10, "C", &ep, &t, &err),
		          -EINVAL);
		CHECK(ep == NULL && t == NULL);
		CHECK_INT(config_parse_text(TXT("{\"api-token\": 5, \"endpoint\": [1]}"), "C", &ep,
		                            &t, &err),
		          0);
		CHECK(ep == NULL && t == NULL);
		CHECK_INT(config_parse_text(TXT("\"text\""), "C.json", &ep, &t, &err), -EINVAL);
		CHECK_CONTAINS(err.msg, "C.json is not a JSON object");
	}

	/* A token with a line break from the environment or the config file is
	 * refused as well, naming where it came from. */
	in.config_path = NULL;
	in.token_file = NULL;
	in.endpoint_arg = "http://127.0.0.1/api/graphql"; /* loopback: no clear-text warning */
	set_env(0, "HOME", home);
	set_env(2, "PRIMEHUB_API_TOKEN", "tok\nen");
	CHECK_INT(config_resolve(&in, &c, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "PRIMEHUB_API_TOKEN");
	set_env(2, "UNUSED", "");
	write_file(cfgfile, "{\"api-token\": \"a b\"}");
	CHECK_INT(config_resolve(&in, &c, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, cfgfile);

	/* Exposed secrets: a token file or a config file with a token that
	 * group or others may open draws one warning each; 0600 draws none,
	 * and neither does a config file without a token. */
	write_file(tokfile, "secret-token\n");
	chmod(tokfile, 0644);
	chmod(cfgfile, 0600);
	write_file(cfgfile, "{\"api-token\": \"file-token\"}");
	in.token_file = tokfile;
	CHECK_INT(config_resolve(&in, &c, &err), 0);
	CHECK_INT(c.nwarnings, 1);
	CHECK_CONTAINS(c.warning[0], "the token file");
	CHECK_CONTAINS(c.warning[0], tokfile);
	CHECK_CONTAINS(c.warning[0], "mode 0644");
	CHECK_CONTAINS(c.warning[0], "chmod 600");
	CHECK(strstr(c.warning[0], "secret-token") == NULL);
	config_clear(&c);
	chmod(tokfile, 0600);
	chmod(cfgfile, 0640);
	CHECK_INT(config_resolve(&in, &c, &err), 0);
	CHECK_INT(c.nwarnings, 1);
	CHECK_CONTAINS(c.warning[0], "the config file");
	CHECK_CONTAINS(c.warning[0], "mode 0640");
	config_clear(&c);
	chmod(cfgfile, 0600);
	CHECK_INT(config_resolve(&in, &c, &err), 0);
	CHECK_INT(c.nwarnings, 0);
	config_clear(&c);
	write_file(cfgfile, "{\"endpoint\": \"http://e/api/graphql\"}");
	chmod(cfgfile, 0644);
	CHECK_INT(config_resolve(&in, &c, &err), 0);
	CHECK_INT(c.nwarnings, 0);

	/* Reloading: the token file is read again; the environment cannot
	 * change, so there is nothing to reload from it. */
	{
		char *t = NULL;

		CHECK_STR(c.token_path, tokfile);
		write_file(tokfile, "  new-token\n");
		CHECK_INT(config_reload_token(&c, &t, &err), 0);
		CHECK_STR(t, "new-token");
		config_free_token(t);
		write_file(tokfile, "bad token\n");
		CHECK_INT(config_reload_token(&c, &t, &err), -EINVAL);
		CHECK(t == NULL);
		unlink(tokfile);
		CHECK_INT(config_reload_token(&c, &t, &err), -ENOENT);
		config_clear(&c);

		in.token_file = NULL;
		write_file(cfgfile, "{\"api-token\": \"json-token\"}");
		CHECK_INT(config_resolve(&in, &c, &err), 0);
		CHECK_STR(c.token_path, cfgfile);
		write_file(cfgfile, "{\"api-token\": \"json-token-2\", \"endpoint\": \"x\"}");
		CHECK_INT(config_reload_token(&c, &t, &err), 0);
		CHECK_STR(t, "json-token-2");
		config_free_token(t);
		write_file(cfgfile, "{}");
		CHECK_INT(config_reload_token(&c, &t, &err), -EINVAL);
		CHECK_CONTAINS(err.msg, "no \"api-token\"");
		config_clear(&c);

		set_env(2, "PRIMEHUB_API_TOKEN", "env-token");
		CHECK_INT(config_resolve(&in, &c, &err), 0);
		CHECK(c.token_path == NULL);
		CHECK_INT(config_reload_token(&c, &t, &err), -ENOENT);
		CHECK_CONTAINS(err.msg, "PRIMEHUB_API_TOKEN");
		config_clear(&c);
		set_env(2, "UNUSED", "");
	}

	/* Plain http to another host carries the token in clear text: one
	 * warning.  To this machine, or over https, none. */
	{
		static const struct {
			const char *endpoint;
			int warns;
		} cases[] = {
		    {"http://primehub.example.com/api/graphql", 1},
		    {"http://10.0.0.5:8080/api/graphql", 1},
		    {"http://user@127.0.0.1.evil.example/api/graphql", 1},
		    {"http://[2001:db8::1]/api/graphql", 1},
		    {"https://primehub.example.com/api/graphql", 0},
		    {"http://127.0.0.1:5000/api/graphql", 0},
		    {"http://localhost:5000/api/graphql", 0},
		    {"http://[::1]:5000/api/graphql", 0},
		};

		set_env(2, "PRIMEHUB_API_TOKEN", "env-token");
		for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			in.endpoint_arg = cases[i].endpoint;
			CHECK_INT(config_resolve(&in, &c, &err), 0);
			CHECK_INT(c.nwarnings, cases[i].warns);
			if (cases[i].warns)
				CHECK_CONTAINS(c.warning[0], "plain http");
			config_clear(&c);
		}
		set_env(2, "UNUSED", "");
		in.endpoint_arg = "http://127.0.0.1/api/graphql";
	}

	/* A file over the size limit is refused, not cut. */
	{
		FILE *f = fopen(tokfile, "w");

		for (int i = 0; i < CONFIG_MAX_FILE + 1; i++)
			fputc('a', f);
		fclose(f);
		in.token_file = tokfile;
		CHECK_INT(config_resolve(&in, &c, &err), -EFBIG);
		in.token_file = NULL;
	}

	unlink(cfgfile);
	unlink(other);
	unlink(tokfile);
	rmdir(cfgdir);
	rmdir(dir);
	UNIT_DONE();
}
