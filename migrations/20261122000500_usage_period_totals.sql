-- Billable calls per org and billing period (calendar month, UTC). Maintained in the same
-- statement that inserts raw usage events, from the rows actually inserted (like the minute
-- rollups), so quota checks and usage alerts read one row instead of scanning a month of
-- events. Invoices are still computed from the raw events.
CREATE TABLE usage_period_totals (
    org_id          uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    period_start    date NOT NULL,
    -- Σ units of the period's events (billable calls).
    calls           bigint NOT NULL DEFAULT 0 CHECK (calls >= 0),
    -- Every recorded request, billable or not.
    events          bigint NOT NULL DEFAULT 0 CHECK (events >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, period_start)
);
CALL gatehouse_enable_tenant_rls('usage_period_totals');
