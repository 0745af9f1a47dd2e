"""PrimeHub GraphQL API emulator (admin-images subset) for primehubfs tests.

Run ``contrib/primehub-emulator --help``.  The behaviour it reproduces is
summed up in docs/primehub-facts.md; module map:

* ``schema.graphql`` the served schema subset
* ``jscompat``  graphql-js 14.7 coercion, validation and message texts
* ``pipeline``  the Apollo Server request pipeline and response cache
* ``resolvers`` field resolvers and the graphql-shield rules
* ``store``     server state and the semantics of every operation
* ``builds``    the image-builder controller and its clock
* ``seed``      sample and synthetic data
* ``server``    HTTP endpoints, test-control endpoints
* ``cli``       command line
"""
