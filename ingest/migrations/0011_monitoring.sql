-- Online monitoring of key energy-using units (重点用能单位能耗在线监测): the units and their
-- 16-digit data items, values entered by hand, and the outbox of indicator sets with their
-- delivery to each data centre (api/monitoring/, docs/monitoring.md). Plain tables: the same on
-- both storage paths.

-- A firm registered as a key energy-using unit, under the code the province knows it by.
-- realtime_minutes: 15, or 30 / 60 where the province relaxes it. basis: how electricity is
-- converted to standard coal. total_code: the data item of the total comprehensive energy
-- consumption (NULL: Zayton's default). total_carriers: the boundary carriers the total counts.
CREATE TABLE zayton.monitoring_units (
    firm_id          integer PRIMARY KEY REFERENCES zayton.firms (id),
    unit_code        text NOT NULL UNIQUE CHECK (unit_code <> ''),
    region           text,
    format           text NOT NULL DEFAULT 'zayton-json',
    realtime_minutes smallint NOT NULL DEFAULT 15 CHECK (realtime_minutes IN (15, 30, 60)),
    basis            text NOT NULL DEFAULT 'equivalent'
                     CHECK (basis IN ('equivalent', 'generation')),
    total_code       text CHECK (total_code ~ '^[0-9]{16}$'),
    total_carriers   text[] NOT NULL DEFAULT '{electricity,electricity_export,natural_gas,steam,heat,raw_coal,diesel,gasoline,pv}',
    enabled          boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- The code of the default item of a carrier's boundary counters: for one firm, or for every
-- firm (firm_id NULL); without a row, Zayton's default (api/monitoring/codes.py).
CREATE TABLE zayton.monitoring_defaults (
    firm_id     integer REFERENCES zayton.firms (id),
    carrier     text NOT NULL,
    code        text NOT NULL CHECK (code ~ '^[0-9]{16}$'),
    name        text
);
CREATE UNIQUE INDEX monitoring_defaults_key
    ON zayton.monitoring_defaults (coalesce(firm_id, 0), carrier);

-- Data items configured for a unit. source 4: an instrument item, the sum of its points'
-- consumption times their factors; source 5: entered by hand (monitoring_manual).
-- frequencies: 0 real-time, 1 day, 2 month.
CREATE TABLE zayton.monitoring_items (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    firm_id     integer NOT NULL REFERENCES zayton.firms (id),
    code        text NOT NULL CHECK (code ~ '^[0-9]{16}$'),
    name        text NOT NULL,
    source      smallint NOT NULL CHECK (source IN (4, 5)),
    unit        text NOT NULL,
    frequencies smallint[] NOT NULL DEFAULT '{0,1,2}'
                CHECK (frequencies <@ '{0,1,2}'::smallint[] AND cardinality(frequencies) > 0),
    UNIQUE (firm_id, code)
);

CREATE TABLE zayton.monitoring_item_points (
    item_id     integer NOT NULL REFERENCES zayton.monitoring_items (id) ON DELETE CASCADE,
    point_id    integer NOT NULL REFERENCES zayton.points (id),
    factor      double precision NOT NULL DEFAULT 1,
    PRIMARY KEY (item_id, point_id)
);

-- Non-metered data an operator enters: one value per manual item, frequency and period.
CREATE TABLE zayton.monitoring_manual (
    item_id      integer NOT NULL REFERENCES zayton.monitoring_items (id) ON DELETE CASCADE,
    frequency    smallint NOT NULL CHECK (frequency IN (0, 1, 2)),
    period_start timestamptz NOT NULL,
    value        double precision NOT NULL,
    entered_by   text NOT NULL CHECK (entered_by <> ''),
    note         text NOT NULL DEFAULT '',
    entered_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (item_id, frequency, period_start)
);

-- The outbox: every indicator set built, with the body of its latest revision in its format.
-- A set rebuilt with other values becomes its next revision and is delivered again.
CREATE TABLE zayton.monitoring_sets (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    firm_id      integer NOT NULL REFERENCES zayton.firms (id),
    unit_code    text NOT NULL,
    frequency    smallint NOT NULL CHECK (frequency IN (0, 1, 2)),
    period_start timestamptz NOT NULL,
    period_end   timestamptz NOT NULL CHECK (period_end > period_start),
    revision     integer NOT NULL CHECK (revision > 0),
    message_id   text NOT NULL,
    built_at     timestamptz NOT NULL,
    present      integer NOT NULL,
    expected     integer NOT NULL,
    format       text NOT NULL,
    content_type text NOT NULL,
    payload      bytea NOT NULL,
    UNIQUE (firm_id, frequency, period_start)
);
CREATE INDEX monitoring_sets_period_end ON zayton.monitoring_sets (period_end);

CREATE TABLE zayton.monitoring_set_items (
    set_id      bigint NOT NULL REFERENCES zayton.monitoring_sets (id) ON DELETE CASCADE,
    code        text NOT NULL,
    name        text NOT NULL,
    source      smallint NOT NULL,
    unit        text NOT NULL,
    value       double precision,
    present     integer NOT NULL,
    expected    integer NOT NULL,
    PRIMARY KEY (set_id, code)
);

-- Delivery of a set to one endpoint (data centre), each acknowledged on its own. revision: the
-- set revision this state is about; an acknowledgement of an older one changes nothing.
CREATE TABLE zayton.monitoring_deliveries (
    set_id          bigint NOT NULL REFERENCES zayton.monitoring_sets (id) ON DELETE CASCADE,
    endpoint        text NOT NULL,
    revision        integer NOT NULL,
    acknowledged_at timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    last_attempt_at timestamptz,
    last_error      text,
    next_attempt_at timestamptz NOT NULL,
    PRIMARY KEY (set_id, endpoint)
);
CREATE INDEX monitoring_deliveries_due ON zayton.monitoring_deliveries (endpoint, next_attempt_at)
    WHERE acknowledged_at IS NULL;
