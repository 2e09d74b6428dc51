-- Retiring streams (archive, delete), and the keys of data subjects (crypto-shredding).
--
-- `__SCHEMA__` stands for the store's schema, a validated identifier quoted by the migration
-- runner.

-- An archived stream keeps its events but takes no more; a deleted one has lost them. The head
-- row stays (version and all) as a tombstone, so that the id is never reused.
ALTER TABLE __SCHEMA__.streams
    ADD COLUMN archived_at timestamptz,
    ADD COLUMN deleted_at timestamptz;

-- Every append moves its stream's head (append(), the fast path and the group statement all
-- do), so refusing the move of an archived head refuses every append path at once. A wrong
-- expectation never reaches the row, and stays a conflict.
CREATE FUNCTION __SCHEMA__.reject_archived_append() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.archived_at IS NOT NULL AND NEW.version IS DISTINCT FROM OLD.version THEN
        RAISE EXCEPTION 'stream % is archived: it takes no more appends', OLD.stream_id
            USING ERRCODE = 'ES190', DETAIL = OLD.stream_id;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER streams_archived
    BEFORE UPDATE ON __SCHEMA__.streams
    FOR EACH ROW EXECUTE FUNCTION __SCHEMA__.reject_archived_append();

-- Events stay immutable, with one exception: delete_stream() below removes the rows of the
-- one stream it names. It marks the rows it may delete in a transaction-local setting that
-- only it sets (and clears); any other UPDATE, DELETE or TRUNCATE is refused as before. This
-- guards against mistakes and stray statements, not against a role that can drop triggers.
CREATE OR REPLACE FUNCTION __SCHEMA__.reject_event_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_LEVEL = 'ROW' THEN
        IF TG_TABLE_NAME = 'events' THEN
            IF OLD.stream_id = current_setting('eventsource.deleting_stream', true) THEN
                RETURN OLD;
            END IF;
        ELSIF TG_TABLE_NAME = 'event_tags' THEN
            -- The tag index rows of the stream being deleted (tags may hold personal data).
            IF EXISTS (SELECT 1 FROM __SCHEMA__.events e
                        WHERE e.position = OLD.position
                          AND e.stream_id = current_setting('eventsource.deleting_stream', true)) THEN
                RETURN OLD;
            END IF;
        END IF;
    END IF;
    RAISE EXCEPTION 'events are immutable: % on %.% is not allowed', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'ES001';
END;
$$;

-- Archives p_stream_id and deletes its events, its snapshot and its parked events; returns
-- how many events were deleted (0 for an unknown stream or one deleted before). The head row
-- lock waits for appends in flight and keeps new ones out. Positions are never reused, and
-- global readers do not wait for deleted ones: a projection past them is unaffected, one
-- behind them never sees them.
CREATE FUNCTION __SCHEMA__.delete_stream(p_stream_id text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_deleted bigint;
BEGIN
    UPDATE __SCHEMA__.streams
       SET archived_at = coalesce(archived_at, now()), deleted_at = coalesce(deleted_at, now())
     WHERE stream_id = p_stream_id;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    PERFORM set_config('eventsource.deleting_stream', p_stream_id, true);
    -- The tag index rows first (decisions across streams, migration 6), while the events that
    -- prove they belong to this stream are still there.
    DELETE FROM __SCHEMA__.event_tags g
     USING __SCHEMA__.events e
     WHERE e.stream_id = p_stream_id
       AND g.tag = ANY (e.tags)
       AND g.transaction_id = e.transaction_id
       AND g.position = e.position;
    DELETE FROM __SCHEMA__.events WHERE stream_id = p_stream_id;
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    PERFORM set_config('eventsource.deleting_stream', '', true);
    DELETE FROM __SCHEMA__.snapshots WHERE stream_id = p_stream_id;
    DELETE FROM __SCHEMA__.parked_events WHERE stream_id = p_stream_id;
    RETURN v_deleted;
END;
$$;

-- The data subjects' keys: one live key per subject at most (its newest version). Forgetting
-- deletes the key material and keeps the row, so the subject is known to be forgotten (list
-- them after restoring a backup taken before a forget, and forget them again).
CREATE TABLE __SCHEMA__.subject_keys (
    subject text NOT NULL,
    key_version integer NOT NULL CHECK (key_version > 0),
    key bytea CHECK (key IS NULL OR length(key) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    forgotten_at timestamptz,
    PRIMARY KEY (subject, key_version),
    CHECK ((key IS NULL) = (forgotten_at IS NOT NULL))
);

-- Which streams hold values sealed for which subject: their snapshots are dropped on forget.
CREATE TABLE __SCHEMA__.subject_streams (
    subject text NOT NULL,
    stream_id text NOT NULL,
    PRIMARY KEY (subject, stream_id)
);
