-- Deadlines: process managers' messages to their future selves (issue 21). A deadline is due
-- at `due_at`; a runner claims due rows with FOR UPDATE SKIP LOCKED, handles each (its
-- commands keyed by the deadline's id) and sets `fired_at` in the claiming transaction, so each
-- fires once however many runners there are and whatever crashes.
--
-- `__SCHEMA__` stands for the store's schema.

CREATE TABLE __SCHEMA__.deadlines (
    -- Derived from (process, instance, scheduling trigger, index): the idempotency key of the
    -- schedule (a repeat inserts nothing) and of the commands the deadline causes.
    id uuid PRIMARY KEY,
    process text NOT NULL,
    instance text NOT NULL,
    due_at timestamptz NOT NULL,
    payload jsonb NOT NULL,
    correlation_id uuid,
    causation_id uuid NOT NULL,
    -- The version of the scheduling step in the instance's stream: a later step cancels only
    -- what earlier steps scheduled.
    scheduled_by bigint NOT NULL CHECK (scheduled_by >= 0),
    scheduled_at timestamptz NOT NULL DEFAULT now(),
    fired_at timestamptz,
    outcome text,
    cancelled_at timestamptz,
    CHECK (fired_at IS NULL OR cancelled_at IS NULL)
);

-- What the runners claim: the pending deadlines of one process, by due time.
CREATE INDEX deadlines_pending ON __SCHEMA__.deadlines (process, due_at, id)
    WHERE fired_at IS NULL AND cancelled_at IS NULL;

-- What a completing instance cancels.
CREATE INDEX deadlines_pending_instance ON __SCHEMA__.deadlines (process, instance)
    WHERE fired_at IS NULL AND cancelled_at IS NULL;
