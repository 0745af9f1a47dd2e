/*
 * primehub.c - the PrimeHub operations primehubfs needs (see primehub.h).
 *
 * Every GraphQL document is a constant below, assembled by the compiler;
 * every value travels in "variables", so no user text ever becomes part of
 * a document.  Mutations select the full ImageFields fragment because their
 * answer is what the caller puts in its snapshot (no read-back request).
 *
 * Errors come mapped from graphql.c; this file adds what it was doing
 * ("updateImage tf-2: ...").  A mutation that answers with an error is an
 * error here even when part of it was applied (PrimeHub's updateImage can
 * change the fields and then fail on a group id): the caller re-reads the
 * tree rather than trusting a half-success.  A mutation whose answer was
 * lost, or came back in a shape we cannot read, has err->maybe_applied set.
 */
#include "primehubfs/primehub.h"
#include "net_private.h"
#include "primehubfs/log.h"

#include <curl/curl.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LOG_MAX_BODY ((size_t)8 << 20) /* 8 MiB of build log */

/* Everything the mount shows of an image (not the raw `spec`, whose layout
 * differs between server versions).  Two fragments: the tree lists images
 * WITHOUT their groups, because PrimeHub resolves Image.groups by reading
 * every group's role mappings from Keycloak and matching them per image
 * (seconds of server time at 2,000 images x 100 groups, every refresh),
 * while one image's groups cost it a few Keycloak calls.  Membership is
 * fetched when it is needed (ph_fetch_membership, or ph_get_image). */
#define TREE_IMAGE_FIELDS_FRAGMENT                                                                 \
	"fragment TreeImageFields on Image {\n"                                                    \
	"  id name displayName description type url urlForGpu groupName\n"                         \
	"  useImagePullSecret global isReady logEndpoint\n"                                        \
	"  imageSpec { baseImage pullSecret packages { apt pip conda } cancel updateTime }\n"      \
	"  jobStatus { image phase }\n"                                                            \
	"}\n"

#define IMAGE_FIELDS_FRAGMENT                                                                      \
	"fragment ImageFields on Image {\n"                                                        \
	"  id name displayName description type url urlForGpu groupName\n"                         \
	"  useImagePullSecret global isReady logEndpoint\n"                                        \
	"  groups { id name displayName }\n"                                                       \
	"  imageSpec { baseImage pullSecret packages { apt pip conda } cancel updateTime }\n"      \
	"  jobStatus { image phase }\n"                                                            \
	"}\n"

/* The whole mount in one round trip: the admin images, without membership.
 * Nothing else: the root `groups` list costs PrimeHub a Keycloak read per
 * group (groups.findOne), a third of what a refresh would cost it beside
 * `images` at 2,000 images x 100 groups, and only touch in groups/ and a
 * new pull secret need it (DOC_CATALOG, fetched then). */
static const char DOC_TREE[] = "query PrimehubfsTree($mode: QueryImageMode) {\n"
                               "  images(mode: $mode) { ...TreeImageFields }\n"
                               "}\n" TREE_IMAGE_FIELDS_FRAGMENT;

/* The groups (touch IMAGE/groups/NAME finds the id by name) and the pull
 * secrets valid as useImagePullSecret, asked when one is needed. */
static const char DOC_CATALOG[] = "query PrimehubfsCatalog($pullSecrets: SecretWhereInput) {\n"
                                  "  groups { id name displayName }\n"
                                  "  secrets(where: $pullSecrets) { id name type }\n"
                                  "}\n";

/* Every admin image's groups in one request: what a walk of many images'
 * groups/ and status.json needs, for the price of one Image.groups
 * resolution of the whole list.  Image.groups items are whole groups on
 * the server, so their names cost nothing more. */
static const char DOC_MEMBERSHIP[] = "query PrimehubfsMembership($mode: QueryImageMode) {\n"
                                     "  images(mode: $mode) { id groups { id name displayName } }\n"
                                     "}\n";

static const char DOC_WHOAMI[] = "query PrimehubfsWhoAmI { me { username isAdmin } }\n";

static const char DOC_IMAGE[] = "query PrimehubfsImage($where: ImageWhereUniqueInput!) {\n"
                                "  image(where: $where) { ...ImageFields }\n"
                                "}\n" IMAGE_FIELDS_FRAGMENT;

static const char DOC_CREATE[] = "mutation PrimehubfsCreateImage($data: ImageCreateInput!) {\n"
                                 "  createImage(data: $data) { ...ImageFields }\n"
                                 "}\n" IMAGE_FIELDS_FRAGMENT;

static const char DOC_UPDATE[] = "mutation PrimehubfsUpdateImage($data: ImageUpdateInput!, "
                                 "$where: ImageWhereUniqueInput!) {\n"
                                 "  updateImage(data: $data, where: $where) { ...ImageFields }\n"
                                 "}\n" IMAGE_FIELDS_FRAGMENT;

static const char DOC_DELETE[] =
    "mutation PrimehubfsDeleteImage($where: ImageWhereUniqueInput!) {\n"
    "  deleteImage(where: $where) { id }\n"
    "}\n";

static const char DOC_REBUILD[] = "mutation PrimehubfsRebuildImage($data: ImageSpecUpdateInput!, "
                                  "$where: ImageWhereUniqueInput!) {\n"
                                  "  rebuildImage(data: $data, where: $where) { ...ImageFields }\n"
                                  "}\n" IMAGE_FIELDS_FRAGMENT;

static const char DOC_CANCEL[] =
    "mutation PrimehubfsCancelImageBuild($where: ImageWhereUniqueInput!) {\n"
    "  cancelImageBuild(where: $where) { ...ImageFields }\n"
    "}\n" IMAGE_FIELDS_FRAGMENT;

struct ph_api {
	struct gql_client *gql; /* borrowed */
	bool dry_run;           /* -o dry_run: mutations are described, not sent */
};

void ph_api_set_dry_run(struct ph_api *api, bool on)
{
	api->dry_run = on;
}

const char *ph_api_endpoint(const struct ph_api *api)
{
	return gql_client_endpoint(api->gql);
}

void ph_api_traffic(const struct ph_api *api, struct http_stats *out)
{
	http_client_stats(gql_client_http(api->gql), out);
}

int ph_api_new(struct gql_client *gql, struct ph_api **out)
{
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	(*out)->gql = gql;
	return 0;
}

void ph_api_free(struct ph_api *api)
{
	free(api);
}

static int nomem(struct ph_err *err)
{
	return ph_err_set(err, ENOMEM, NULL, "out of memory");
}

/* {"where": {"id": id}} added to vars; false on ENOMEM. */
static bool add_where_id(cJSON *vars, const char *id)
{
	cJSON *where = cJSON_AddObjectToObject(vars, "where");

	return where && cJSON_AddStringToObject(where, "id", id);
}

/* vars[key] = item, taking ownership of item even on failure. */
static bool add_owned(cJSON *vars, const char *key, cJSON *item)
{
	if (!item)
		return false;
	if (!cJSON_AddItemToObject(vars, key, item)) {
		cJSON_Delete(item);
		return false;
	}
	return true;
}

/*
 * Run one document whose root field `field` answers an Image, and decode it
 * into *out.  When null_ok, a null answer without an error gives *out = NULL
 * (image() on a missing id); otherwise that is a protocol error.  what/id
 * name the operation in messages.  out may be NULL (deleteImage selects only
 * the id).  Takes ownership of vars.
 */
static int run_image_op(struct ph_api *api, const char *what, const char *id, const char *doc,
                        cJSON *vars, const char *field, bool null_ok, struct ph_image **out,
                        struct ph_err *err)
{
	/* Every image operation but the image() read changes something. */
	bool mutation = strcmp(field, "image") != 0;
	const cJSON *node;
	cJSON *data = NULL;
	bool maybe_applied = false;
	int ret;

	if (out)
		*out = NULL;
	if (mutation && api->dry_run) {
		/* Everything up to here (validation, planning, the fresh read
		 * a save compares with) ran as usual: say what would go. */
		char *json = cJSON_PrintUnformatted(vars);

		log_info("dry run: would send %s with %s", field, json ? json : "(out of memory)");
		ret = ph_err_set(
		    err, ECANCELED, NULL,
		    "dry run (-o dry_run): nothing was sent; it would send %s with %.300s", field,
		    json ? json : "(out of memory)");
		free(json);
		cJSON_Delete(vars);
		goto out;
	}
	ret = mutation ? gql_execute_mutation(api->gql, doc, vars, &data, err)
	               : gql_execute(api->gql, doc, vars, &data, err);
	maybe_applied = ret < 0 && err && err->maybe_applied;
	cJSON_Delete(vars);
	if (ret < 0)
		goto out;
	/* From here on the server did answer: a mutation ran, and an answer we
	 * cannot read says nothing about what it changed. */
	maybe_applied = mutation;
	node = cJSON_GetObjectItemCaseSensitive(data, field);
	if (!node) {
		ret = ph_err_set(err, EPROTO, NULL, "unexpected answer from server: no %s", field);
	} else if (cJSON_IsNull(node)) {
		if (!null_ok)
			ret = ph_err_set(
			    err, EPROTO, NULL,
			    "unexpected answer from server: %s is null without an error", field);
	} else if (out) {
		ret = ph_decode_image(node, out, err);
		if (ret == 0)
			(*out)->groups_known = true; /* every such document asks groups */
	} else if (!cJSON_IsObject(node)) {
		ret = ph_err_set(err, EPROTO, NULL,
		                 "unexpected answer from server: %s is not an object", field);
	}
out:
	if (ret < 0)
		ph_err_prefix(err, "%s%s%s: ", what, id ? " " : "", id ? id : "");
	if (err)
		err->maybe_applied = ret < 0 && maybe_applied; /* after the last ph_err_set */
	cJSON_Delete(data);
	return ret;
}

int ph_fetch_tree(struct ph_api *api, struct ph_tree *out, struct ph_err *err)
{
	cJSON *vars = cJSON_CreateObject();
	int ret;

	memset(out, 0, sizeof(*out));
	if (!vars || !cJSON_AddStringToObject(vars, "mode", "SYSTEM_ONLY")) {
		cJSON_Delete(vars);
		return nomem(err);
	}
	/* Decoded as it arrives: at 10^5 images the answer is tens of MB, and
	 * holding it whole plus a cJSON tree of it cost ~6x its size. */
	ret = ph_fetch_tree_streamed(api->gql, DOC_TREE, vars, PH_LIST_IMAGES, out, err);
	cJSON_Delete(vars);
	if (ret < 0)
		ph_err_prefix(err, "listing images: ");
	return ret;
}

int ph_fetch_catalog(struct ph_api *api, struct ph_tree *out, struct ph_err *err)
{
	cJSON *vars = cJSON_CreateObject(), *ps;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!vars || !(ps = cJSON_AddObjectToObject(vars, "pullSecrets")) ||
	    !cJSON_AddTrueToObject(ps, "ifDockerConfigJson")) {
		cJSON_Delete(vars);
		return nomem(err);
	}
	/* The same decoder as the tree: its leniency with a malformed group
	 * or secret (left out, not fatal) applies here too. */
	ret = ph_fetch_tree_streamed(api->gql, DOC_CATALOG, vars, PH_LIST_GROUPS | PH_LIST_SECRETS,
	                             out, err);
	cJSON_Delete(vars);
	if (ret < 0)
		ph_err_prefix(err, "listing groups and pull secrets: ");
	return ret;
}

int ph_check_admin(struct ph_api *api, char **username_out, struct ph_err *err)
{
	const cJSON *me, *name, *admin;
	cJSON *data = NULL;
	int ret;

	if (username_out)
		*username_out = NULL;
	/* The token message from graphql.c already names the endpoint. */
	ret = gql_execute(api->gql, DOC_WHOAMI, NULL, &data, err);
	if (ret < 0)
		goto out;
	me = cJSON_GetObjectItemCaseSensitive(data, "me");
	if (!cJSON_IsObject(me)) {
		ret = ph_err_set(err, EPROTO, NULL,
		                 "unexpected answer from server: me is not an object");
		goto out;
	}
	name = cJSON_GetObjectItemCaseSensitive(me, "username");
	admin = cJSON_GetObjectItemCaseSensitive(me, "isAdmin");
	if (!cJSON_IsString(name) || !name->valuestring) {
		ret = ph_err_set(err, EPROTO, NULL,
		                 "unexpected answer from server: me.username is not a string");
		goto out;
	}
	if (!cJSON_IsTrue(admin)) {
		ret = ph_err_set(err, EACCES, NULL,
		                 "user %s is not a PrimeHub administrator (admin images need the "
		                 "realm-admin role)",
		                 name->valuestring);
		goto out;
	}
	if (username_out) {
		*username_out = strdup(name->valuestring);
		if (!*username_out)
			ret = nomem(err);
	}
out:
	cJSON_Delete(data);
	return ret;
}

static int check_id(const char *what, const char *id, struct ph_err *err)
{
	if (!id || !*id)
		return ph_err_set(err, EINVAL, NULL, "%s: no image id", what);
	return 0;
}

int ph_get_image(struct ph_api *api, const char *id, struct ph_image **out, struct ph_err *err)
{
	cJSON *vars;

	*out = NULL;
	if (check_id("image", id, err))
		return -EINVAL;
	vars = cJSON_CreateObject();
	if (!vars || !add_where_id(vars, id)) {
		cJSON_Delete(vars);
		return nomem(err);
	}
	/* PrimeHub answers an unknown id with data.image == null and no error. */
	return run_image_op(api, "image", id, DOC_IMAGE, vars, "image", true, out, err);
}

int ph_create_image(struct ph_api *api, const struct ph_image_input *in, struct ph_image **out,
                    struct ph_err *err)
{
	cJSON *vars;

	*out = NULL;
	if (!(in->set & PH_IN_NAME) || !in->name || !*in->name)
		return ph_err_set(err, EINVAL, "name", "createImage: name is required");
	vars = cJSON_CreateObject();
	if (!vars || !add_owned(vars, "data", ph_encode_image_input(in, true))) {
		cJSON_Delete(vars);
		return nomem(err);
	}
	return run_image_op(api, "createImage", in->name, DOC_CREATE, vars, "createImage", false,
	                    out, err);
}

int ph_update_image(struct ph_api *api, const char *id, const struct ph_image_input *in,
                    struct ph_image **out, struct ph_err *err)
{
	cJSON *vars;

	*out = NULL;
	if (check_id("updateImage", id, err))
		return -EINVAL;
	vars = cJSON_CreateObject();
	if (!vars || !add_owned(vars, "data", ph_encode_image_input(in, false)) ||
	    !add_where_id(vars, id)) {
		cJSON_Delete(vars);
		return nomem(err);
	}
	return run_image_op(api, "updateImage", id, DOC_UPDATE, vars, "updateImage", false, out,
	                    err);
}

int ph_delete_image(struct ph_api *api, const char *id, struct ph_err *err)
{
	cJSON *vars;

	if (check_id("deleteImage", id, err))
		return -EINVAL;
	vars = cJSON_CreateObject();
	if (!vars || !add_where_id(vars, id)) {
		cJSON_Delete(vars);
		return nomem(err);
	}
	return run_image_op(api, "deleteImage", id, DOC_DELETE, vars, "deleteImage", false, NULL,
	                    err);
}

int ph_rebuild_image(struct ph_api *api, const char *id, const struct ph_build_spec *spec,
                     struct ph_image **out, struct ph_err *err)
{
	cJSON *vars;

	*out = NULL;
	if (check_id("rebuildImage", id, err))
		return -EINVAL;
	if (!spec)
		return ph_err_set(err, EINVAL, "imageSpec", "rebuildImage %s: no imageSpec", id);
	vars = cJSON_CreateObject();
	if (!vars || !add_owned(vars, "data", ph_encode_build_spec(spec)) ||
	    !add_where_id(vars, id)) {
		cJSON_Delete(vars);
		return nomem(err);
	}
	return run_image_op(api, "rebuildImage", id, DOC_REBUILD, vars, "rebuildImage", false, out,
	                    err);
}

int ph_cancel_image_build(struct ph_api *api, const char *id, struct ph_image **out,
                          struct ph_err *err)
{
	cJSON *vars;

	*out = NULL;
	if (check_id("cancelImageBuild", id, err))
		return -EINVAL;
	vars = cJSON_CreateObject();
	if (!vars || !add_where_id(vars, id)) {
		cJSON_Delete(vars);
		return nomem(err);
	}
	return run_image_op(api, "cancelImageBuild", id, DOC_CANCEL, vars, "cancelImageBuild",
	                    false, out, err);
}

/* The log endpoint's {"code", "message"} error body, or a snippet. */
static void log_error_text(const struct http_response *resp, char *out, size_t outsz)
{
	cJSON *root = cJSON_ParseWithLength(resp->body, resp->len);
	const cJSON *msg = cJSON_GetObjectItemCaseSensitive(root, "message");

	if (cJSON_IsString(msg) && msg->valuestring) {
		snprintf(out, outsz, "%s", msg->valuestring);
	} else if (resp->content_type && strncasecmp(resp->content_type, "text/html", 9) == 0) {
		snprintf(out, outsz, "(an HTML page)");
	} else {
		net_snippet(resp->body, resp->len, out, outsz);
	}
	cJSON_Delete(root);
}

/* Whether a URL part may travel in a log URL: printable ASCII only. */
static bool url_part_ok(const char *p)
{
	for (; p && *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return false;
	return true;
}

int ph_log_url(const char *endpoint, const char *log_endpoint, char **out, struct ph_err *err)
{
	CURLU *ep = curl_url(), *log = curl_url();
	char *path = NULL, *query = NULL, *scheme = NULL, *user = NULL;
	int ret = 0;

	*out = NULL;
	if (!ep || !log) {
		ret = nomem(err);
		goto out;
	}
	if (!log_endpoint || !*log_endpoint) {
		ret = ph_err_set(err, ENOENT, NULL, "build log: the image has no log endpoint");
		goto out;
	}
	/* PrimeHub builds logEndpoint from its own GRAPHQL_HOST setting, which
	 * may name another host (or scheme, or port) than the endpoint the
	 * administrator gave.  The token must go to that endpoint only, so
	 * only the path and query of logEndpoint are used, on the endpoint's
	 * own scheme, host and port. */
	if (curl_url_set(log, CURLUPART_URL, log_endpoint, 0) != CURLUE_OK ||
	    curl_url_get(log, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) ||
	    curl_url_get(log, CURLUPART_PATH, &path, 0) != CURLUE_OK || !url_part_ok(path) ||
	    path[0] != '/' || strlen(path) < 2) {
		char shown[160];

		net_snippet(log_endpoint, strlen(log_endpoint), shown, sizeof(shown));
		ret =
		    ph_err_set(err, EPROTO, NULL,
		               "build log: unexpected answer from server: logEndpoint %s is not an "
		               "http(s) URL with a path",
		               shown);
		goto out;
	}
	if (curl_url_get(log, CURLUPART_USER, &user, 0) == CURLUE_OK) {
		ret = ph_err_set(err, EPROTO, NULL,
		                 "build log: unexpected answer from server: logEndpoint carries a "
		                 "user name");
		goto out;
	}
	if (curl_url_get(log, CURLUPART_QUERY, &query, 0) != CURLUE_OK)
		query = NULL;
	if (query && !url_part_ok(query)) {
		ret = ph_err_set(err, EPROTO, NULL,
		                 "build log: unexpected answer from server: bad logEndpoint query");
		goto out;
	}
	if (curl_url_set(ep, CURLUPART_URL, endpoint, 0) != CURLUE_OK ||
	    curl_url_set(ep, CURLUPART_PATH, path, 0) != CURLUE_OK ||
	    curl_url_set(ep, CURLUPART_QUERY, query, 0) != CURLUE_OK ||
	    curl_url_set(ep, CURLUPART_QUERY, "follow=false", CURLU_APPENDQUERY) != CURLUE_OK ||
	    curl_url_set(ep, CURLUPART_FRAGMENT, NULL, 0) != CURLUE_OK) {
		ret = ph_err_set(err, EINVAL, NULL, "build log: cannot make the log URL from %s",
		                 endpoint);
		goto out;
	}
	{
		char *url = NULL;

		if (curl_url_get(ep, CURLUPART_URL, &url, 0) != CURLUE_OK || !url) {
			ret = nomem(err);
			goto out;
		}
		*out = strdup(url);
		curl_free(url);
		if (!*out)
			ret = nomem(err);
	}
out:
	curl_free(scheme);
	curl_free(path);
	curl_free(query);
	curl_free(user);
	curl_url_cleanup(ep);
	curl_url_cleanup(log);
	return ret;
}

int ph_fetch_build_log(struct ph_api *api, const char *log_endpoint, char **text, size_t *len,
                       struct ph_err *err)
{
	const char *headers[] = {NULL, "Accept: application/json", NULL};
	struct http_request req = {.method = "GET", .headers = headers, .max_body = LOG_MAX_BODY};
	struct http_response resp;
	char why[256];
	char *url, *auth;
	int ret;

	*text = NULL;
	*len = 0;
	ret = ph_log_url(gql_client_endpoint(api->gql), log_endpoint, &url, err);
	if (ret < 0)
		return ret;
	auth = gql_client_auth_header(api->gql);
	if (!auth) {
		free(url);
		return nomem(err);
	}
	headers[0] = auth;
	req.url = url;
	gql_client_abort_hook(api->gql, &req.abort_cb, &req.abort_arg);

	ret = http_perform(gql_client_http(api->gql), &req, &resp, err);
	free(url);
	gql_free_auth_header(auth);
	if (ret < 0) {
		ph_err_prefix(err, "build log: ");
		return ret;
	}
	if (resp.status >= 200 && resp.status <= 299) {
		*text = resp.body; /* the caller owns it now */
		*len = resp.len;
		resp.body = NULL;
		http_response_free(&resp);
		return 0;
	}
	if (resp.status >= 300 && resp.status <= 399) {
		char where[NET_SNIPPET_MAX + 16];

		net_snippet(resp.location, resp.location ? strlen(resp.location) : 0, where,
		            sizeof(where));
		ret = ph_err_set(err, EIO, NULL,
		                 "build log: PrimeHub answered HTTP %ld redirecting to %s; "
		                 "primehubfs does not follow redirects (the token goes to the "
		                 "endpoint only)",
		                 resp.status, resp.location ? where : "(no Location)");
		http_response_free(&resp);
		return ret;
	}
	log_error_text(&resp, why, sizeof(why));
	switch (resp.status) {
	case 400: /* the image has no build job (yet) */
		ret = ph_err_set(err, ENOENT, NULL, "build log: no build job yet (HTTP 400: %s)",
		                 why);
		break;
	case 401:
	case 403:
		ret = ph_err_set(err, EACCES, NULL, "build log: permission denied (HTTP %ld: %s)",
		                 resp.status, why);
		break;
	case 404:
		ret = ph_err_set(err, ENOENT, NULL, "build log: not found (HTTP 404: %s)", why);
		break;
	default:
		ret = ph_err_set(err, EIO, NULL, "build log: HTTP %ld from server: %s", resp.status,
		                 why);
		break;
	}
	http_response_free(&resp);
	return ret;
}

void ph_membership_free(struct ph_membership *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++) {
		free(m->items[i].image_id);
		for (size_t k = 0; k < m->items[i].ngroups; k++)
			ph_group_clear(&m->items[i].groups[k]);
		free(m->items[i].groups);
	}
	free(m->items);
	memset(m, 0, sizeof(*m));
}

/* One image's {id groups { id name displayName }}; -EPROTO when it is not
 * that shape. */
static int decode_membership_entry(const cJSON *node, struct ph_membership_entry *e,
                                   struct ph_err *err)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(node, "id");
	const cJSON *groups = cJSON_GetObjectItemCaseSensitive(node, "groups");
	char path[300];

	if (!cJSON_IsString(id) || !id->valuestring)
		return ph_err_set(err, EPROTO, NULL,
		                  "unexpected answer from server: an image without an id");
	if (!cJSON_IsArray(groups) && !cJSON_IsNull(groups))
		return ph_err_set(err, EPROTO, NULL,
		                  "unexpected answer from server: groups of %s is not a list",
		                  id->valuestring);
	e->image_id = strdup(id->valuestring);
	if (!e->image_id)
		return nomem(err);
	/* Nulls (groups the server could not resolve) are left out. */
	snprintf(path, sizeof(path), "groups of %s", id->valuestring);
	return ph_decode_groups(groups, path, &e->groups, &e->ngroups, err);
}

int ph_fetch_membership(struct ph_api *api, struct ph_membership *out, struct ph_err *err)
{
	cJSON *vars = cJSON_CreateObject(), *data = NULL;
	const cJSON *images, *node;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!vars || !cJSON_AddStringToObject(vars, "mode", "SYSTEM_ONLY")) {
		cJSON_Delete(vars);
		return nomem(err);
	}
	ret = gql_execute(api->gql, DOC_MEMBERSHIP, vars, &data, err);
	cJSON_Delete(vars);
	if (ret < 0)
		goto out;
	images = cJSON_GetObjectItemCaseSensitive(data, "images");
	if (!cJSON_IsArray(images)) {
		ret =
		    ph_err_set(err, EPROTO, NULL, "unexpected answer from server: no images list");
		goto out;
	}
	out->items = calloc((size_t)cJSON_GetArraySize(images) + 1, sizeof(*out->items));
	if (!out->items) {
		ret = nomem(err);
		goto out;
	}
	cJSON_ArrayForEach(node, images)
	{
		if (cJSON_IsNull(node))
			continue;
		ret = decode_membership_entry(node, &out->items[out->n], err);
		out->n++; /* counted even when half-filled: freed by ph_membership_free */
		if (ret < 0)
			goto out;
	}
out:
	cJSON_Delete(data);
	if (ret < 0) {
		ph_membership_free(out);
		ph_err_prefix(err, "listing group membership: ");
	}
	return ret;
}
