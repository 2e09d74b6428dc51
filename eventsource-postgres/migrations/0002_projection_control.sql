-- Projections an operator can trust: each runner registers its projection (a checkpoint row at
-- (0, 0) until it commits) with the events it reads, so that lag counts only those; a reset is
-- a request on that row, after which the checkpoint only moves back to the start (a rebuild).
--
-- `__SCHEMA__` stands for the store's schema.

ALTER TABLE __SCHEMA__.checkpoints
    -- The names and categories the runner reads (empty: all), as `LogFilter` holds them.
    ADD COLUMN event_names text[] NOT NULL DEFAULT '{}',
    ADD COLUMN categories text[] NOT NULL DEFAULT '{}',
    -- Set by `eventsource projection reset` / `request_reset`; cleared by the rebuild.
    ADD COLUMN reset_requested_at timestamptz;
