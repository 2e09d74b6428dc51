-- Fresh planner statistics on the tables every read plans against (issue 22).
--
-- By default autovacuum analyzes a table once 10 % of it has changed: at 100 million events,
-- after 10 million new ones. Until then the planner's picture of `events` (how many rows a
-- name, a category or a checkpoint range holds) is stale. The reads are written to keep the
-- same plan whatever the statistics say (see sql/family.rs and the plan test in sql/plans.rs),
-- so this is not what keeps them fast; it keeps the estimates `eventsource status` shows and
-- the plans of ad-hoc queries close to the truth, as pyeventsourcing does for its tables.
-- Analyzing costs a sample of 30,000 rows whatever the table's size.
--
-- `__SCHEMA__` stands for the store's schema, a validated identifier quoted by the migration
-- runner.

ALTER TABLE __SCHEMA__.events SET (
    autovacuum_analyze_scale_factor = 0.01,
    autovacuum_analyze_threshold = 1000
);
ALTER TABLE __SCHEMA__.streams SET (
    autovacuum_analyze_scale_factor = 0.01,
    autovacuum_analyze_threshold = 1000
);
