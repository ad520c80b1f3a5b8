-- Plain PostgreSQL's twin changes how writers mark buckets for its own rollups; TimescaleDB
-- tracks that itself.

-- The ingester updates every reporting point's latest value: leave room on each page so the
-- new version of a row fits beside the old (a HOT update, no new index entry).
ALTER TABLE zayton.latest SET (fillfactor = 50);
