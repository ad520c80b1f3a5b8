-- Rollups on plain PostgreSQL: tables of 15-minute, hourly, daily and monthly aggregates of
-- every point, kept exact by recomputing the 15-minute buckets that received rows since the last
-- refresh, then the hours, days and months that hold them. Days and months are local
-- (zayton.local_zone()). The twin of 0004_rollups.timescale.sql: same names, same columns.
--
-- readings: rows of the bucket; samples: rows with a value; consumption: sum of counter deltas.

CREATE INDEX readings_ts ON zayton.readings USING brin (ts) WITH (pages_per_range = 32);

CREATE TABLE zayton.rollup_15m (
    point_id    integer NOT NULL,
    bucket      timestamptz NOT NULL,
    readings    integer NOT NULL,
    samples     integer NOT NULL,
    value_sum   double precision,
    value_min   double precision,
    value_max   double precision,
    consumption double precision,
    PRIMARY KEY (point_id, bucket)
);
CREATE TABLE zayton.rollup_hour (LIKE zayton.rollup_15m INCLUDING ALL);
CREATE TABLE zayton.rollup_day (LIKE zayton.rollup_15m INCLUDING ALL);
CREATE TABLE zayton.rollup_month (LIKE zayton.rollup_15m INCLUDING ALL);
CREATE INDEX rollup_15m_bucket ON zayton.rollup_15m (bucket);
CREATE INDEX rollup_hour_bucket ON zayton.rollup_hour (bucket);
CREATE INDEX rollup_day_bucket ON zayton.rollup_day (bucket);
CREATE INDEX rollup_month_bucket ON zayton.rollup_month (bucket);

-- 15-minute buckets that received rows since they were last rolled up. Writers mark them in the
-- transaction that inserts the rows (INSERT … ON CONFLICT DO UPDATE, which locks the mark, so a
-- refresh taking it waits for that transaction and then sees its rows).
CREATE TABLE zayton.rollup_stale (bucket timestamptz PRIMARY KEY);

-- Recompute every stale bucket before up_to and what contains it; returns the buckets done.
CREATE FUNCTION zayton.refresh_rollups(up_to timestamptz DEFAULT 'infinity')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    zone    text := zayton.local_zone();
    stale   timestamptz[];
    hours   timestamptz[];
    days    timestamptz[];
    months  timestamptz[];
BEGIN
    WITH taken AS (
        DELETE FROM zayton.rollup_stale WHERE bucket IN (
            SELECT bucket FROM zayton.rollup_stale WHERE bucket < up_to
            ORDER BY bucket FOR UPDATE)
        RETURNING bucket)
    SELECT coalesce(array_agg(bucket ORDER BY bucket), '{}') INTO stale FROM taken;
    IF cardinality(stale) = 0 THEN
        RETURN 0;
    END IF;

    DELETE FROM zayton.rollup_15m WHERE bucket = ANY (stale);
    INSERT INTO zayton.rollup_15m
    SELECT r.point_id, s.bucket, count(*), count(r.value), sum(r.value), min(r.value),
           max(r.value), sum(r.delta)
    FROM unnest(stale) AS s (bucket)
    JOIN zayton.readings r ON r.ts >= s.bucket AND r.ts < s.bucket + interval '15 minutes'
    GROUP BY r.point_id, s.bucket;

    hours := ARRAY(SELECT DISTINCT date_trunc('hour', b) FROM unnest(stale) AS b);
    DELETE FROM zayton.rollup_hour WHERE bucket = ANY (hours);
    INSERT INTO zayton.rollup_hour
    SELECT q.point_id, h.bucket, sum(q.readings), sum(q.samples), sum(q.value_sum),
           min(q.value_min), max(q.value_max), sum(q.consumption)
    FROM unnest(hours) AS h (bucket)
    JOIN zayton.rollup_15m q ON q.bucket >= h.bucket AND q.bucket < h.bucket + interval '1 hour'
    GROUP BY q.point_id, h.bucket;

    days := ARRAY(SELECT DISTINCT date_trunc('day', b, zone) FROM unnest(hours) AS b);
    DELETE FROM zayton.rollup_day WHERE bucket = ANY (days);
    INSERT INTO zayton.rollup_day
    SELECT q.point_id, d.bucket, sum(q.readings), sum(q.samples), sum(q.value_sum),
           min(q.value_min), max(q.value_max), sum(q.consumption)
    FROM unnest(days) AS d (bucket)
    JOIN zayton.rollup_hour q
      ON q.bucket >= d.bucket AND q.bucket < (d.bucket AT TIME ZONE zone + interval '1 day') AT TIME ZONE zone
    GROUP BY q.point_id, d.bucket;

    months := ARRAY(SELECT DISTINCT date_trunc('month', b, zone) FROM unnest(days) AS b);
    DELETE FROM zayton.rollup_month WHERE bucket = ANY (months);
    INSERT INTO zayton.rollup_month
    SELECT q.point_id, m.bucket, sum(q.readings), sum(q.samples), sum(q.value_sum),
           min(q.value_min), max(q.value_max), sum(q.consumption)
    FROM unnest(months) AS m (bucket)
    JOIN zayton.rollup_day q
      ON q.bucket >= m.bucket AND q.bucket < (m.bucket AT TIME ZONE zone + interval '1 month') AT TIME ZONE zone
    GROUP BY q.point_id, m.bucket;

    RETURN cardinality(stale);
END
$$;

-- Retention: drop the day partitions of readings that end before keep_from; returns how many.
CREATE FUNCTION zayton.drop_readings_before(keep_from date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    part    record;
    dropped integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('zayton.readings partitions'));
    FOR part IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'zayton.readings'::regclass
          AND c.relname ~ '^readings_\d{8}$'
          AND to_date(substr(c.relname, 10), 'YYYYMMDD') < keep_from
    LOOP
        EXECUTE format('DROP TABLE zayton.%I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$$;
