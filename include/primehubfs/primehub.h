/*
 * primehub.h - the PrimeHub API operations primehubfs needs.  Every GraphQL
 * document lives in primehub.c, uses variables, and is never built from
 * strings.
 *
 * Ownership: every struct ph_image ** out-parameter receives a new image the
 * caller frees with ph_image_free.  struct ph_tree is filled by ph_fetch_tree
 * and freed with ph_tree_free.  The api borrows the gql_client.
 */
#ifndef PRIMEHUBFS_PRIMEHUB_H
#define PRIMEHUBFS_PRIMEHUB_H

#include <stdbool.h>
#include <stddef.h>
#include <cjson/cJSON.h>
#include "primehubfs/error.h"
#include "primehubfs/graphql.h"
#include "primehubfs/image.h"

struct ph_api;

int ph_api_new(struct gql_client *gql, struct ph_api **out);
/* -o dry_run: every mutation fails with ECANCELED and a message (also
 * logged) naming the operation and its variables; nothing is sent. */
void ph_api_set_dry_run(struct ph_api *api, bool on);
void ph_api_free(struct ph_api *api);
/* The endpoint (borrowed, lives as long as api) and the traffic so far. */
const char *ph_api_endpoint(const struct ph_api *api);
void ph_api_traffic(const struct ph_api *api, struct http_stats *out);

/* Everything the mount lists, fetched in ONE request: the admin
 * (SYSTEM_ONLY) images without their groups (groups_known false: see
 * ph_fetch_membership), and nothing else.  The same struct carries the answer of
 * ph_fetch_catalog: all groups (for touch by name) and the pull secrets
 * usable as useImagePullSecret (type kubernetes), and no images. */
struct ph_tree {
	struct ph_image **images;
	size_t nimages;
	struct ph_group *groups;
	size_t ngroups;
	struct ph_secret *secrets;
	size_t nsecrets;
	/* Malformed entries (an image, group or secret without a string id or
	 * name, or with a field of the wrong type) left out so that one broken
	 * entry cannot hide all the others; logged once per answer.  Names are
	 * kept as the server sent them, whatever bytes they hold: showing or
	 * refusing an odd name is the caller's decision. */
	size_t nskipped;
};
int ph_fetch_tree(struct ph_api *api, struct ph_tree *out, struct ph_err *err);
int ph_fetch_catalog(struct ph_api *api, struct ph_tree *out, struct ph_err *err);
void ph_tree_free(struct ph_tree *t);

/* Which groups each admin image is connected to, in one request
 * (images(mode: SYSTEM_ONLY) { id groups { id name displayName } }).  PrimeHub charges this
 * images x groups of matching and a Keycloak read per group, so it is asked
 * only when many images' groups are wanted at once; one image's groups come
 * with ph_get_image.  Freed with ph_membership_free. */
struct ph_membership_entry {
	char *image_id;
	struct ph_group *groups; /* NULL when none */
	size_t ngroups;
};
struct ph_membership {
	struct ph_membership_entry *items;
	size_t n;
};
int ph_fetch_membership(struct ph_api *api, struct ph_membership *out, struct ph_err *err);
void ph_membership_free(struct ph_membership *m);

/* The mount-time check: `me { username isAdmin }`.  -EACCES with
 * "token rejected by <endpoint>: Invalid API Token" or "user X is not a
 * PrimeHub administrator"; transport errors as http.h. */
int ph_check_admin(struct ph_api *api, char **username_out, struct ph_err *err);

/* image(where:{id}); *out is NULL (and 0 returned) when there is no such image. */
int ph_get_image(struct ph_api *api, const char *id, struct ph_image **out, struct ph_err *err);

int ph_create_image(struct ph_api *api, const struct ph_image_input *in, struct ph_image **out,
                    struct ph_err *err);
int ph_update_image(struct ph_api *api, const char *id, const struct ph_image_input *in,
                    struct ph_image **out, struct ph_err *err);
int ph_delete_image(struct ph_api *api, const char *id, struct ph_err *err);
int ph_rebuild_image(struct ph_api *api, const char *id, const struct ph_build_spec *spec,
                     struct ph_image **out, struct ph_err *err);
int ph_cancel_image_build(struct ph_api *api, const char *id, struct ph_image **out,
                          struct ph_err *err);

/* The URL build.log is fetched from: the path and query of the server's
 * logEndpoint on the GraphQL endpoint's own scheme, host and port, plus
 * follow=false.  *out is malloc'd.  -EPROTO for a logEndpoint that is not an
 * http(s) URL with a path. */
int ph_log_url(const char *endpoint, const char *log_endpoint, char **out, struct ph_err *err);

/* GET the build log (URL as ph_log_url) with the token; *text is malloc'd. */
int ph_fetch_build_log(struct ph_api *api, const char *log_endpoint, char **text, size_t *len,
                       struct ph_err *err);

/* Pure helpers, exposed for unit tests and the fuzzer. */
int ph_decode_image(const cJSON *node, struct ph_image **out, struct ph_err *err);
int ph_decode_tree(const cJSON *data, struct ph_tree *out, struct ph_err *err);
/* A JSON array of groups (null items left out; NULL or JSON null: none);
 * -EPROTO naming `path` at the first malformed one. */
int ph_decode_groups(const cJSON *arr, const char *path, struct ph_group **out, size_t *n,
                     struct ph_err *err);
cJSON *ph_encode_image_input(const struct ph_image_input *in, bool for_create);
cJSON *ph_encode_build_spec(const struct ph_build_spec *spec);

#endif
