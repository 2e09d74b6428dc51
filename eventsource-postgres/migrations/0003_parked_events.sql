-- Dead letters: events a projection with `FailurePolicy::Park` could not apply, parked with
-- their error so that it goes on with the rest; an operator lists, retries or discards them.
--
-- `__SCHEMA__` stands for the store's schema.

CREATE TABLE __SCHEMA__.parked_events (
    projection text NOT NULL,
    -- The event (its row in `events` holds the rest).
    position bigint NOT NULL,
    event_id uuid NOT NULL,
    stream_id text NOT NULL,
    version bigint NOT NULL,
    name text NOT NULL,
    -- The last failure, bounded by the runner.
    error text NOT NULL,
    attempts integer NOT NULL CHECK (attempts >= 0),
    parked_at timestamptz NOT NULL DEFAULT now(),
    -- Set by `eventsource projection retry`; the runner applies the event at its next catch-up.
    retry_requested_at timestamptz,
    PRIMARY KEY (projection, position)
);
