-- A plan's `seats` caps the members of every org on it. Enforced here, on every way a member is
-- added (invitation, SSO just-in-time provisioning, anything added later), so that no code path
-- can forget it. The org row is locked first: two concurrent additions to a one-seat-left org
-- are serialized, and only one of them gets the seat. Lowering a plan's seats removes no one;
-- it only stops additions until members leave.
CREATE FUNCTION gatehouse_memberships_seats() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cap   integer;
    taken integer;
BEGIN
    SELECT p.seats INTO cap
      FROM orgs o JOIN plans p ON p.id = o.plan_id
     WHERE o.id = NEW.org_id
       FOR NO KEY UPDATE OF o;
    IF cap IS NULL THEN
        RETURN NEW;
    END IF;
    SELECT count(*) INTO taken FROM memberships WHERE org_id = NEW.org_id;
    IF taken >= cap THEN
        RAISE EXCEPTION 'every seat of the org''s plan (%) is taken', cap
            USING ERRCODE = 'check_violation', CONSTRAINT = 'memberships_seats';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER memberships_seats BEFORE INSERT ON memberships
    FOR EACH ROW EXECUTE FUNCTION gatehouse_memberships_seats();
