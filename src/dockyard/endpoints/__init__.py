"""Registry endpoints: the remote registries (Docker Hub, any OCI registry, Harbor, another dockyard)
the pull-through cache and replication talk to, as data, with their credentials sealed at rest."""
