-- Writers no longer wait for a rollup refresh.
--
-- Until now each write marked its 15-minute buckets in rollup_stale with an upsert, and a
-- refresh held those marks locked while it recomputed, so a write to a bucket being refreshed
-- waited for the whole refresh. Writers now append to rollup_dirty, which has no key and so never
-- blocks; a refresh first moves the marks it can see (those of committed writes) into
-- rollup_stale. A write still in progress keeps its marks for the next refresh, which then sees
-- its rows: nothing is missed, and nobody waits.
CREATE TABLE zayton.rollup_dirty (bucket timestamptz NOT NULL);

ALTER FUNCTION zayton.refresh_rollups(timestamptz) RENAME TO recompute_stale_rollups;

CREATE FUNCTION zayton.refresh_rollups(up_to timestamptz DEFAULT 'infinity')
RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    WITH moved AS (DELETE FROM zayton.rollup_dirty RETURNING bucket)
    INSERT INTO zayton.rollup_stale SELECT DISTINCT bucket FROM moved ORDER BY 1
    ON CONFLICT DO NOTHING;
    RETURN zayton.recompute_stale_rollups(up_to);
END
$$;

-- The ingester updates every reporting point's latest value: leave room on each page so the
-- new version of a row fits beside the old (a HOT update, no new index entry).
ALTER TABLE zayton.latest SET (fillfactor = 50);
