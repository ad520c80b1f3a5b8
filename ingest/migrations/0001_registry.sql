-- Registry of what reports to the platform, the latest value of every point, and dead letters.
-- Gateways and devices register themselves from the traffic they send.

CREATE TABLE zayton.gateways (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site        text NOT NULL,
    name        text NOT NULL,
    firm        text,
    uplink      text,
    state       text,
    software    text,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    last_seq    bigint,
    UNIQUE (site, name)
);

CREATE TABLE zayton.devices (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site        text NOT NULL,
    name        text NOT NULL,
    gateway_id  integer REFERENCES zayton.gateways (id),
    first_seen  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (site, name)
);

CREATE TABLE zayton.points (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   integer NOT NULL REFERENCES zayton.devices (id),
    name        text NOT NULL,
    unit        text,
    kind        text NOT NULL DEFAULT 'gauge' CHECK (kind IN ('gauge', 'counter', 'state')),
    first_seen  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (device_id, name)
);

-- quality: 0 good, 1 uncertain, 2 bad (wire.payload.Quality).
CREATE TABLE zayton.latest (
    point_id    integer PRIMARY KEY REFERENCES zayton.points (id),
    ts          timestamptz NOT NULL,
    value       double precision,
    quality     smallint NOT NULL
);

CREATE TABLE zayton.dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    reason      text NOT NULL
);
CREATE INDEX dead_letters_received_at ON zayton.dead_letters (received_at);
