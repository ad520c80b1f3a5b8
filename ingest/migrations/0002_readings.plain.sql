-- Readings on plain PostgreSQL: one partition per UTC day, so that retention is a DROP TABLE and
-- each day's primary-key index stays small. The twin of 0002_readings.timescale.sql.

CREATE TABLE zayton.readings (
    point_id    integer NOT NULL,
    ts          timestamptz NOT NULL,
    value       double precision,
    quality     smallint NOT NULL DEFAULT 0,
    PRIMARY KEY (point_id, ts)
) PARTITION BY RANGE (ts);

-- Create the partitions of every UTC day from first_day to last_day that does not have one yet;
-- returns how many it created. Safe to call concurrently from several ingesters.
CREATE FUNCTION zayton.ensure_readings_partitions(first_day date, last_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    day     date := first_day;
    created integer := 0;
    part    text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('zayton.readings partitions'));
    WHILE day <= last_day LOOP
        part := 'readings_' || to_char(day, 'YYYYMMDD');
        IF to_regclass('zayton.' || part) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE zayton.%I PARTITION OF zayton.readings FOR VALUES FROM (%L) TO (%L)',
                part, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        END IF;
        day := day + 1;
    END LOOP;
    RETURN created;
END
$$;

SELECT zayton.ensure_readings_partitions(current_date - 1, current_date + 7);
