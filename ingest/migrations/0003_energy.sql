-- The registry of who and what reports (park, firm, workshop or line, gateway, device, point),
-- counter deltas and events, batch-level deduplication, and the business data of firms.

CREATE TABLE zayton.parks (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A firm is known by the code its gateways report (Status.firm). onboarded_on is the day its
-- first live data arrived: what the 上云上平台 count is made of.
CREATE TABLE zayton.firms (
    id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code            text NOT NULL UNIQUE,
    name            text,
    park_id         integer REFERENCES zayton.parks (id),
    above_scale     boolean NOT NULL DEFAULT false,
    onboarded_on    date,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE zayton.workshops (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    firm_id     integer NOT NULL REFERENCES zayton.firms (id),
    parent_id   integer REFERENCES zayton.workshops (id),
    name        text NOT NULL,
    kind        text NOT NULL DEFAULT 'workshop' CHECK (kind IN ('workshop', 'line')),
    digital     boolean NOT NULL DEFAULT false,
    UNIQUE (firm_id, name)
);

ALTER TABLE zayton.gateways
    ADD COLUMN firm_id integer REFERENCES zayton.firms (id),
    ADD COLUMN alarms text[] NOT NULL DEFAULT '{}',
    ADD COLUMN outbox_batches integer,
    ADD COLUMN status_at timestamptz;

-- metering_level as in GB 17167: 1 site boundary, 2 main secondary, 3 main equipment.
ALTER TABLE zayton.devices
    ADD COLUMN firm_id integer REFERENCES zayton.firms (id),
    ADD COLUMN workshop_id integer REFERENCES zayton.workshops (id),
    ADD COLUMN metering_level smallint CHECK (metering_level BETWEEN 1 AND 3),
    ADD COLUMN profile text,
    ADD COLUMN state text CHECK (state IN ('online', 'failing', 'offline')),
    ADD COLUMN last_success timestamptz,
    ADD COLUMN failures integer,
    ADD COLUMN error text;

-- carrier: what a counter counts (electricity, natural_gas, steam, water, pv, product, …).
ALTER TABLE zayton.points ADD COLUMN carrier text;

-- Counters: the consumption since the previous counted reading, worked out at the edge.
ALTER TABLE zayton.readings ADD COLUMN delta double precision;

CREATE TABLE zayton.counter_events (
    point_id    integer NOT NULL REFERENCES zayton.points (id),
    ts          timestamptz NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('wrap', 'reset', 'replacement', 'glitch', 'jump')),
    before      double precision,
    after       double precision,
    amount      double precision,
    detail      text NOT NULL DEFAULT '',
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (point_id, ts, kind)
);

-- Every telemetry batch taken, by gateway and sequence number: a redelivered batch (same digest)
-- is skipped whole; another batch under a sequence number already taken is a dead letter.
CREATE TABLE zayton.batches (
    gateway_id  integer NOT NULL REFERENCES zayton.gateways (id),
    seq         bigint NOT NULL,
    digest      bytea NOT NULL,
    readings    integer NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, seq)
);
CREATE INDEX batches_received_at ON zayton.batches (received_at);

-- Business data per firm and month (the first day of the month). Money in 10,000 yuan.
CREATE TABLE zayton.firm_months (
    firm_id         integer NOT NULL REFERENCES zayton.firms (id),
    month           date NOT NULL CHECK (extract(day FROM month) = 1),
    output_value    numeric(14, 2) CHECK (output_value >= 0),
    value_added     numeric(14, 2),
    price_basis     text,
    tax             numeric(14, 2),
    land_area_m2    numeric(14, 2) CHECK (land_area_m2 > 0),
    headcount       integer CHECK (headcount >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (firm_id, month)
);

-- The time zone in which days and months are counted (statistics windows start at 00:00 local).
CREATE FUNCTION zayton.local_zone() RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'Asia/Shanghai' $$;
