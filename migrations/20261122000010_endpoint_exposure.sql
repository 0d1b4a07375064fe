-- How an endpoint exposes what its domain servers offer.
ALTER TABLE endpoints
    -- false: the tools of the endpoint's only server keep their own names (with one server there
    -- is nothing to shadow). Ignored (tools are namespaced) whenever the endpoint has more servers.
    ADD COLUMN namespace_tools boolean NOT NULL DEFAULT true,
    -- Upstream prompts and resources are exposed only when enabled, to callers holding the named
    -- scope (NULL: any caller authorized for the endpoint). A scope is referenced by name: if it is
    -- deleted, no token can carry it and access closes rather than opens.
    ADD COLUMN expose_prompts boolean NOT NULL DEFAULT false,
    ADD COLUMN prompts_scope text,
    ADD COLUMN expose_resources boolean NOT NULL DEFAULT false,
    ADD COLUMN resources_scope text;
