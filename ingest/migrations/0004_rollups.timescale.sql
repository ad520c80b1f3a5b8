-- Rollups on TimescaleDB: hierarchical continuous aggregates (15 minutes, hour, day, month),
-- refreshed by policies, plus compression and retention of raw readings. Days and months are
-- local (the zone of zayton.local_zone(), written out here because a continuous aggregate takes
-- a constant). The twin of 0004_rollups.plain.sql: same names, same columns.

CREATE MATERIALIZED VIEW zayton.rollup_15m WITH (timescaledb.continuous) AS
SELECT point_id, time_bucket(interval '15 minutes', ts) AS bucket,
       count(*)::integer AS readings, count(value)::integer AS samples,
       sum(value) AS value_sum, min(value) AS value_min, max(value) AS value_max,
       sum(delta) AS consumption
FROM zayton.readings
GROUP BY point_id, time_bucket(interval '15 minutes', ts)
WITH NO DATA;

CREATE MATERIALIZED VIEW zayton.rollup_hour WITH (timescaledb.continuous) AS
SELECT point_id, time_bucket(interval '1 hour', bucket) AS bucket,
       sum(readings)::integer AS readings, sum(samples)::integer AS samples,
       sum(value_sum) AS value_sum, min(value_min) AS value_min, max(value_max) AS value_max,
       sum(consumption) AS consumption
FROM zayton.rollup_15m
GROUP BY point_id, time_bucket(interval '1 hour', bucket)
WITH NO DATA;

CREATE MATERIALIZED VIEW zayton.rollup_day WITH (timescaledb.continuous) AS
SELECT point_id, time_bucket(interval '1 day', bucket, 'Asia/Shanghai') AS bucket,
       sum(readings)::integer AS readings, sum(samples)::integer AS samples,
       sum(value_sum) AS value_sum, min(value_min) AS value_min, max(value_max) AS value_max,
       sum(consumption) AS consumption
FROM zayton.rollup_hour
GROUP BY point_id, time_bucket(interval '1 day', bucket, 'Asia/Shanghai')
WITH NO DATA;

CREATE MATERIALIZED VIEW zayton.rollup_month WITH (timescaledb.continuous) AS
SELECT point_id, time_bucket(interval '1 month', bucket, 'Asia/Shanghai') AS bucket,
       sum(readings)::integer AS readings, sum(samples)::integer AS samples,
       sum(value_sum) AS value_sum, min(value_min) AS value_min, max(value_max) AS value_max,
       sum(consumption) AS consumption
FROM zayton.rollup_day
GROUP BY point_id, time_bucket(interval '1 month', bucket, 'Asia/Shanghai')
WITH NO DATA;

SELECT add_continuous_aggregate_policy('zayton.rollup_15m',
    start_offset => interval '400 days', end_offset => NULL, schedule_interval => interval '30 seconds');
SELECT add_continuous_aggregate_policy('zayton.rollup_hour',
    start_offset => interval '400 days', end_offset => NULL, schedule_interval => interval '1 minute');
SELECT add_continuous_aggregate_policy('zayton.rollup_day',
    start_offset => interval '400 days', end_offset => NULL, schedule_interval => interval '5 minutes');
SELECT add_continuous_aggregate_policy('zayton.rollup_month',
    start_offset => interval '400 days', end_offset => NULL, schedule_interval => interval '15 minutes');

ALTER TABLE zayton.readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'point_id',
    timescaledb.compress_orderby = 'ts');
SELECT add_compression_policy('zayton.readings', interval '7 days');

-- Rollups are refreshed by the policies above, and on demand by ingest.rollups.refresh
-- (refresh_continuous_aggregate per view, in order); nothing marks stale buckets on this path:
-- TimescaleDB logs invalidations itself.

-- Retention: drop the chunks of readings that end before keep_from; returns how many. keep_from
-- starts at 00:00 UTC, as the day partitions of the plain path are UTC days, whatever the
-- session's time zone (keep_from::timestamptz would take the session's).
CREATE FUNCTION zayton.drop_readings_before(keep_from date)
RETURNS integer LANGUAGE sql AS $$
    SELECT count(*)::integer
    FROM drop_chunks('zayton.readings', older_than => keep_from::timestamp AT TIME ZONE 'UTC')
$$;
