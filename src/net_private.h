/*
 * net_private.h - what the network layer's own files share and nobody else
 * needs: not part of the interface in include/primehubfs/.
 */
#ifndef PRIMEHUBFS_NET_PRIVATE_H
#define PRIMEHUBFS_NET_PRIVATE_H

#include "primehubfs/graphql.h"
#include "primehubfs/http.h"

/* The abort hook set by gql_client_set_abort, so the REST log fetch in
 * primehub.c can be interrupted like a GraphQL request. */
void gql_client_abort_hook(const struct gql_client *c, http_abort_fn *cb, void **arg);

#endif
