-- Plan targets as editable data (api/plan.py): one row per target, each with the document it
-- comes from. A target whose figure is assigned from the level above (a binding decline) has no
-- value until it is set, and a note says who assigns it. The loader checks the indicator, unit
-- and counting against its closed set; the table checks what it can on its own.
CREATE TABLE zayton.targets (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]*$'),
    level       text NOT NULL CHECK (level IN ('province', 'city', 'district', 'zone')),
    scope       text NOT NULL CHECK (scope ~ '^[a-z0-9][a-z0-9-]*$'),
    indicator   text NOT NULL,
    name        text NOT NULL,
    counting    text NOT NULL
        CHECK (counting IN ('cumulative', 'per_year', 'level', 'ceiling', 'decline')),
    value       double precision CHECK (value >= 0),
    unit        text NOT NULL,
    start_year  smallint NOT NULL CHECK (start_year BETWEEN 2000 AND 2100),
    end_year    smallint NOT NULL CHECK (end_year BETWEEN 2000 AND 2100),
    baseline    double precision,
    binding     boolean NOT NULL DEFAULT false,
    source      text NOT NULL CHECK (source <> ''),
    note        text NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (end_year >= start_year),
    CHECK (value IS NOT NULL OR note <> '')
);
-- One target per scope, indicator and way of counting over one period.
CREATE UNIQUE INDEX targets_key ON zayton.targets
    (scope, indicator, counting, start_year, end_year);
