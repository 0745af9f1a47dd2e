/* test_config.c - endpoint and token precedence, as the SDK orders them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "primehubfs/config.h"
#include "unit.h"

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

	/* Environment beats the file; token_file beats the file but not the env. */
	set_env(1, "PRIMEHUB_API_ENDPOINT", "http://env.example/api/graphql");
	in.token_file = tokfile;
	CHECK_INT(config_resolve(&in, &c, &err), 0);
	CHECK_STR(c.endpoint, "http://env.example/api/graphql");
	CHECK_STR(c.token, "token-from-file"); /* whitespace and newline trimmed */
	CHECK_STR(c.token_source, "token_file");
	config_clear(&c);
	set_env(2, "PRIMEHUB_API_TOKEN", "env-token");
	CHECK_INT(config_resolve(&in, &c, &err), 0);
	CHECK_STR(c.token, "env-token");
	config_clear(&c);

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

	unlink(cfgfile);
	unlink(other);
	unlink(tokfile);
	rmdir(cfgdir);
	rmdir(dir);
	UNIT_DONE();
}
