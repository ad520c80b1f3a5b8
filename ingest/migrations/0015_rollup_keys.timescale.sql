-- The twin of 0015_rollup_keys.plain.sql: on the continuous aggregates, an index on the point
-- and bucket carrying consumption, readings and samples, for the same index-only scans.
CREATE INDEX rollup_15m_point_bucket ON zayton.rollup_15m (point_id, bucket)
    INCLUDE (consumption, readings, samples);
CREATE INDEX rollup_hour_point_bucket ON zayton.rollup_hour (point_id, bucket)
    INCLUDE (consumption, readings, samples);
