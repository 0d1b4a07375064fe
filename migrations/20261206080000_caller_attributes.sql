-- Caller attributes: per-org named values an admin sets on each member (a profile field) and on
-- each service token, carried in the dataplane's snapshot and signed into a hosted SQL call's
-- caller context, where a backend's policies read them with `gatehouse.claim(name)`.

-- The attributes an org defines; values exist only for defined names.
CREATE TABLE caller_attributes (
    org_id      uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, name)
);
CALL gatehouse_enable_tenant_rls('caller_attributes');

-- A member's value of an attribute (gone with the membership or the attribute).
CREATE TABLE member_attribute_values (
    org_id      uuid NOT NULL,
    user_id     uuid NOT NULL,
    name        text NOT NULL,
    value       text NOT NULL CHECK (length(value) BETWEEN 1 AND 1000),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id, name),
    FOREIGN KEY (org_id, user_id) REFERENCES memberships (org_id, user_id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, name) REFERENCES caller_attributes (org_id, name) ON DELETE CASCADE
);
CALL gatehouse_enable_tenant_rls('member_attribute_values');

-- A service token's value of an attribute (gone with the token or the attribute).
CREATE TABLE service_token_attribute_values (
    org_id           uuid NOT NULL,
    service_token_id uuid NOT NULL,
    name             text NOT NULL,
    value            text NOT NULL CHECK (length(value) BETWEEN 1 AND 1000),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, service_token_id, name),
    FOREIGN KEY (org_id, service_token_id) REFERENCES service_tokens (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, name) REFERENCES caller_attributes (org_id, name) ON DELETE CASCADE
);
CALL gatehouse_enable_tenant_rls('service_token_attribute_values');
