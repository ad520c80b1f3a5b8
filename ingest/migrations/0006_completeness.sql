-- Data completeness: readings received against readings expected at each device's poll
-- interval, which gateways report in their status (devices[].interval_s). A point's first_seen
-- is the time of its first data (its registration time only for points registered before).
ALTER TABLE zayton.devices ADD COLUMN interval_s double precision CHECK (interval_s > 0);

-- Completeness of every point whose device has a known interval, over [from_ts, to_ts):
--   expected  polls in the period at the device's interval, counted from the period's start, or
--             from the 15-minute bucket of the point's first data (points.first_seen) when that
--             is later, up to to_ts or now, whichever is earlier;
--   received  rows stored, of any quality (a bad reading is still an answered poll);
--   valid     rows with a value;
--   ratio     received / expected.
-- Periods align to 15-minute buckets (the finest rollup both storage paths keep).
CREATE FUNCTION zayton.completeness(from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (point_id integer, expected double precision, received bigint, valid bigint,
               ratio double precision)
LANGUAGE sql STABLE AS $$
    WITH got AS (
        SELECT q.point_id, sum(q.readings)::bigint AS received,
               sum(q.samples)::bigint AS valid
        FROM zayton.rollup_15m q
        WHERE q.bucket >= from_ts AND q.bucket < to_ts
        GROUP BY q.point_id
    ), span AS (
        SELECT p.id AS point_id, d.interval_s, coalesce(g.received, 0) AS received,
               coalesce(g.valid, 0) AS valid,
               greatest(from_ts, date_bin('15 minutes', p.first_seen,
                                          timestamptz '2000-01-01 00:00+00')) AS start,
               least(to_ts, now()) AS stop
        FROM zayton.points p
        JOIN zayton.devices d ON d.id = p.device_id
        LEFT JOIN got g ON g.point_id = p.id
        WHERE d.interval_s IS NOT NULL
    )
    SELECT s.point_id, e.expected, s.received, s.valid, s.received / e.expected
    FROM span s
    CROSS JOIN LATERAL (SELECT floor(extract(epoch FROM s.stop - s.start) / s.interval_s)
                        AS expected) e
    WHERE e.expected > 0
$$;
