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

-- The first statement of every batch of a projection runner, in the batch's transaction:
-- lock the projection's checkpoint row, then check that the runner's lease session still holds
-- the lease's advisory lock (key `p_key`, which pg_locks shows as its high and low halves). In
-- that order: a new lease holder takes the same row lock when it registers, so once this batch
-- holds the row, a runner that took the lease meanwhile waits for the batch to end, and one
-- that took it before is seen here. A function, so that the order is that of its statements.
CREATE FUNCTION __SCHEMA__.lease_fence(p_projection text, p_pid integer, p_key bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM __SCHEMA__.checkpoints WHERE projection = p_projection FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the checkpoint row of projection % was deleted', p_projection
            USING ERRCODE = 'ES011';
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_locks l
         WHERE l.locktype = 'advisory' AND l.granted AND l.pid = p_pid AND l.objsubid = 1
           AND l.classid::bigint = (p_key >> 32) & 4294967295
           AND l.objid::bigint = p_key & 4294967295
    ) THEN
        RAISE EXCEPTION 'the session holding the lease of projection % (server process %) no longer holds its lock',
            p_projection, p_pid USING ERRCODE = 'ES010';
    END IF;
END;
$$;
