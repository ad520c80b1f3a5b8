-- Readings on TimescaleDB: a hypertable with one-day chunks, created by TimescaleDB as data
-- arrives. The twin of 0002_readings.plain.sql; the function keeps the ingester's code the same
-- on both paths.

CREATE TABLE zayton.readings (
    point_id    integer NOT NULL,
    ts          timestamptz NOT NULL,
    value       double precision,
    quality     smallint NOT NULL DEFAULT 0,
    PRIMARY KEY (point_id, ts)
);

SELECT create_hypertable('zayton.readings', by_range('ts', INTERVAL '1 day'));

CREATE FUNCTION zayton.ensure_readings_partitions(first_day date, last_day date)
RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$;
