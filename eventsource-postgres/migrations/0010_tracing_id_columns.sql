-- The tracing ids of an event (its metadata's `correlation_id` and `causation_id`) in columns
-- of their own. `Repository::execute` gives every event both ids, about 110 bytes of JSON text
-- that the server parsed into `metadata` on every append and turned back into text on every
-- read: on a projection's catch-up that conversion was the largest part of the read's cost
-- (BENCHMARKS.md, session 27). As `uuid` columns they are 16 bytes each in the binary
-- protocol, both ways, and `metadata` holds only what else the event carries (usually `{}`).
--
-- Rows written before this migration, and rows written by the `append()` and
-- `append_streams()` functions (conflicts, retries and cross-stream decisions, which keep the
-- metadata whole), carry the ids inside `metadata` and NULL here. The store reads an event's
-- ids from the columns where they are set, else from `metadata`: both kinds of row read back
-- as the metadata that was written. Stored events are never rewritten (they are immutable),
-- and adding nullable columns without a default does not rewrite the table.
ALTER TABLE __SCHEMA__.events
    ADD COLUMN correlation_id uuid,
    ADD COLUMN causation_id uuid;
