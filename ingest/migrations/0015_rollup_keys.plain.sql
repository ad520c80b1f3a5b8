-- The 15-minute and hourly rollups' keys carry what is summed over many buckets of a few points
-- (consumption, readings, samples), so that a meter's year of quarter-hours (peak demand) or the
-- ragged ends of a period are read from the key alone, an index-only scan, instead of one table
-- row per bucket scattered across a table written in time order.
ALTER TABLE zayton.rollup_15m
    DROP CONSTRAINT rollup_15m_pkey,
    ADD PRIMARY KEY (point_id, bucket) INCLUDE (consumption, readings, samples);
ALTER TABLE zayton.rollup_hour
    DROP CONSTRAINT rollup_hour_pkey,
    ADD PRIMARY KEY (point_id, bucket) INCLUDE (consumption, readings, samples);
