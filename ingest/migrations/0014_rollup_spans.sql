-- Reading any period from the coarsest rollups that fit it. A year is twelve monthly buckets per
-- point, not 35,040 quarter-hours; a period with ragged ends is read as the months, days, hours
-- and quarter-hours it is made of. Completeness reads them too, for the points asked about only.

-- The spans of [from_ts, to_ts) that whole buckets of each rollup cover, coarsest first. Bounds
-- are taken to the next 15-minute boundary, so the spans hold the 15-minute buckets that start
-- in the period. Days and months are local (zayton.local_zone()); the zone's offset from UTC is
-- a whole number of hours, as the hourly rollups assume.
--   2026-01-31 23:00 → 2026-03-02 00:15: hour [23:00, 1 Feb), month [1 Feb, 1 Mar),
--   day [1 Mar, 2 Mar), 15m [2 Mar 00:00, 00:15).
CREATE FUNCTION zayton.rollup_spans(from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (resolution text, lo timestamptz, hi timestamptz)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    zone    text := zayton.local_zone();
    names   text[] := ARRAY['15m', 'hour', 'day', 'month'];
    units   text[] := ARRAY['15 minutes', 'hour', 'day', 'month'];
    rise    timestamptz[];  -- rise[i]: the first boundary of level i at or after the start
    fall    timestamptz[];  -- fall[i]: the last boundary of level i at or before the end
    top     integer := 1;   -- the coarsest level with a whole bucket inside
    origin  constant timestamptz := '2000-01-01 00:00+00';
BEGIN
    rise[1] := date_bin('15 minutes', from_ts - interval '1 microsecond', origin)
               + interval '15 minutes';
    fall[1] := date_bin('15 minutes', to_ts - interval '1 microsecond', origin)
               + interval '15 minutes';
    IF rise[1] >= fall[1] THEN
        RETURN;
    END IF;
    FOR i IN 2..4 LOOP
        fall[i] := date_trunc(units[i], fall[1], zone);
        rise[i] := date_trunc(units[i], rise[1], zone);
        IF rise[i] < rise[1] THEN
            rise[i] := (rise[i] AT TIME ZONE zone + ('1 ' || units[i])::interval) AT TIME ZONE zone;
        END IF;
        IF rise[i] < fall[i] THEN
            top := i;
        END IF;
    END LOOP;
    resolution := names[top]; lo := rise[top]; hi := fall[top];
    RETURN NEXT;
    FOR i IN REVERSE top - 1 .. 1 LOOP
        IF rise[i] < rise[i + 1] THEN
            resolution := names[i]; lo := rise[i]; hi := rise[i + 1];
            RETURN NEXT;
        END IF;
        IF fall[i + 1] < fall[i] THEN
            resolution := names[i]; lo := fall[i + 1]; hi := fall[i];
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;

-- The rollup rows that make up [from_ts, to_ts) (as zayton.rollup_spans splits it), of the
-- points given, or of every point when point_ids is NULL. Each span is one query planned with
-- its bounds, on the rollup's (point_id, bucket) key when points are given.
CREATE FUNCTION zayton.rollup_between(from_ts timestamptz, to_ts timestamptz,
                                      point_ids integer[] DEFAULT NULL)
RETURNS TABLE (point_id integer, bucket timestamptz, readings integer, samples integer,
               value_sum double precision, value_min double precision,
               value_max double precision, consumption double precision)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    span   record;
    query  text;
BEGIN
    FOR span IN SELECT * FROM zayton.rollup_spans(from_ts, to_ts) LOOP
        query := format(
            'SELECT q.point_id, q.bucket, q.readings, q.samples, q.value_sum, q.value_min,
                    q.value_max, q.consumption
             FROM zayton.%I q WHERE q.bucket >= $1 AND q.bucket < $2',
            'rollup_' || span.resolution);
        IF point_ids IS NULL THEN
            RETURN QUERY EXECUTE query USING span.lo, span.hi;
        ELSE
            RETURN QUERY EXECUTE query || ' AND q.point_id = ANY ($3)'
                USING span.lo, span.hi, point_ids;
        END IF;
    END LOOP;
END
$$;

-- Completeness as 0006 defines it, now of the points given (every point when NULL), with the
-- received readings read from the coarsest rollups that fit the period.
DROP FUNCTION zayton.completeness(timestamptz, timestamptz);
CREATE FUNCTION zayton.completeness(from_ts timestamptz, to_ts timestamptz,
                                    point_ids integer[] DEFAULT NULL)
RETURNS TABLE (point_id integer, expected double precision, received bigint, valid bigint,
               ratio double precision)
LANGUAGE sql STABLE AS $$
    WITH got AS (
        SELECT q.point_id, sum(q.readings)::bigint AS received,
               sum(q.samples)::bigint AS valid
        FROM zayton.rollup_between(from_ts, to_ts, point_ids) q
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
        WHERE d.interval_s IS NOT NULL AND (point_ids IS NULL OR p.id = ANY (point_ids))
    )
    SELECT s.point_id, e.expected, s.received, s.valid, s.received / e.expected
    FROM span s
    CROSS JOIN LATERAL (SELECT floor(extract(epoch FROM s.stop - s.start) / s.interval_s)
                        AS expected) e
    WHERE e.expected > 0
$$;
