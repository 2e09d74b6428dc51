-- A global order that survives moving the store to another PostgreSQL cluster.
--
-- `events.transaction_id` was the writing transaction's xid8: a counter of the cluster, which
-- pg_dump / pg_restore, logical replication or a dump into a managed database do not carry
-- over. It becomes a LOGICAL transaction id: the cluster's id plus a per-store offset,
--
--     logical id = pg_current_xact_id() + transaction_offset.value
--
-- Within one cluster the map is monotone (the offset only ever rises, while no append is in
-- flight), so the read barrier `transaction_id < logical_xmin()` keeps every guarantee of the
-- xid it replaces. After a move, `PostgresStore::migrate` raises the offset above every stored
-- id (see migrate.rs), and the stored ids and checkpoints stay valid as they are.
--
-- `__SCHEMA__` stands for the store's schema, a validated identifier quoted by the migration
-- runner.

-- The offset: one row, 0 until a move is repaired; only ever raised.
CREATE TABLE __SCHEMA__.transaction_offset (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    value bigint NOT NULL DEFAULT 0 CHECK (value >= 0),
    raised_at timestamptz
);
INSERT INTO __SCHEMA__.transaction_offset (singleton, value) VALUES (true, 0);

-- The logical id of the calling transaction (assigning it an xid, as pg_current_xact_id does).
CREATE FUNCTION __SCHEMA__.logical_xact_id() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT pg_current_xact_id()::text::bigint + o.value FROM __SCHEMA__.transaction_offset o
$$;

-- The read barrier: every transaction with a lower logical id has ended.
CREATE FUNCTION __SCHEMA__.logical_xmin() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint + o.value
      FROM __SCHEMA__.transaction_offset o
$$;

-- The logical id of the next transaction to start: no stored id of this store may reach it.
CREATE FUNCTION __SCHEMA__.logical_xmax() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint + o.value
      FROM __SCHEMA__.transaction_offset o
$$;

-- xid8 -> bigint, once (rewrites the table and its three checkpoint-order indexes). The
-- offset is 0, so every stored id and checkpoint keeps its value.
ALTER TABLE __SCHEMA__.events
    ALTER COLUMN transaction_id DROP DEFAULT,
    ALTER COLUMN transaction_id TYPE bigint USING transaction_id::text::bigint,
    ALTER COLUMN transaction_id SET DEFAULT __SCHEMA__.logical_xact_id();

-- append() as in 0001, but computing the logical transaction id once per batch (the column's
-- default calls a SQL function per row).
-- Appends a batch to a stream in one statement: checks for a retry of stored ids, checks the
-- expected version while moving the stream head (so a losing writer draws no positions),
-- inserts the rows, and notifies listeners.
--
-- p_expected: NULL = any version, -1 = the stream must exist, n >= 0 = exactly version n
-- (0 = no stream).
--
-- outcome: 'appended' | 'replayed' (all ids already stored by one earlier append of this
-- stream, nothing written) | 'conflict' (actual_version says where the stream is) |
-- 'duplicate' (event_id is stored at existing_stream / existing_version).
CREATE OR REPLACE FUNCTION __SCHEMA__.append(
    p_stream_id text,
    p_expected bigint,
    p_event_ids uuid[],
    p_names text[],
    p_schema_versions bigint[],
    p_payloads jsonb[],
    p_metadata jsonb[],
    OUT outcome text,
    OUT first_version bigint,
    OUT last_version bigint,
    OUT first_position bigint,
    OUT last_position bigint,
    OUT actual_version bigint,
    OUT event_id uuid,
    OUT existing_stream text,
    OUT existing_version bigint
)
LANGUAGE plpgsql AS $$
DECLARE
    v_count integer := cardinality(p_event_ids);
BEGIN
    IF v_count IS NULL OR v_count = 0 THEN
        RAISE EXCEPTION 'append to stream % has no events', p_stream_id USING ERRCODE = 'ES002';
    END IF;
    IF cardinality(p_names) <> v_count OR cardinality(p_schema_versions) <> v_count
        OR cardinality(p_payloads) <> v_count OR cardinality(p_metadata) <> v_count THEN
        RAISE EXCEPTION 'append to stream %: the event arrays differ in length', p_stream_id
            USING ERRCODE = 'ES003';
    END IF;

    -- A retry of stored ids, checked first: a retry with a now stale expectation is still a retry.
    IF EXISTS (SELECT 1 FROM __SCHEMA__.events e WHERE e.event_id = ANY (p_event_ids)) THEN
        SELECT * INTO outcome, first_version, last_version, first_position, last_position,
                      event_id, existing_stream, existing_version
          FROM __SCHEMA__.stored_batch(p_stream_id, p_event_ids);
        RETURN;
    END IF;

    -- Check the expectation and move the head in one statement; the row lock it takes
    -- serializes writers of this stream until commit.
    IF p_expected IS NULL THEN
        INSERT INTO __SCHEMA__.streams AS s (stream_id, version) VALUES (p_stream_id, v_count)
            ON CONFLICT (stream_id) DO UPDATE SET version = s.version + v_count
            RETURNING s.version INTO last_version;
    ELSIF p_expected = 0 THEN
        INSERT INTO __SCHEMA__.streams (stream_id, version) VALUES (p_stream_id, v_count)
            ON CONFLICT (stream_id) DO NOTHING
            RETURNING version INTO last_version;
    ELSIF p_expected = -1 THEN
        UPDATE __SCHEMA__.streams s SET version = s.version + v_count
         WHERE s.stream_id = p_stream_id
        RETURNING s.version INTO last_version;
    ELSE
        UPDATE __SCHEMA__.streams s SET version = s.version + v_count
         WHERE s.stream_id = p_stream_id AND s.version = p_expected
        RETURNING s.version INTO last_version;
    END IF;

    IF last_version IS NULL THEN
        -- The writer we lost to may have been this batch's own first attempt, committed while
        -- we waited for its lock: this statement's snapshot sees it.
        IF EXISTS (SELECT 1 FROM __SCHEMA__.events e WHERE e.event_id = ANY (p_event_ids)) THEN
            SELECT * INTO outcome, first_version, last_version, first_position, last_position,
                          event_id, existing_stream, existing_version
              FROM __SCHEMA__.stored_batch(p_stream_id, p_event_ids);
            RETURN;
        END IF;
        outcome := 'conflict';
        SELECT coalesce(max(s.version), 0) INTO actual_version
          FROM __SCHEMA__.streams s WHERE s.stream_id = p_stream_id;
        RETURN;
    END IF;

    first_version := last_version - v_count + 1;
    actual_version := first_version - 1;

    IF v_count > 1 AND cardinality(ARRAY(SELECT DISTINCT unnest(p_event_ids))) <> v_count THEN
        -- Undo the head move: nothing of a rejected batch may stay.
        RAISE EXCEPTION 'the batch for stream % repeats an event id', p_stream_id
            USING ERRCODE = 'ES004', DETAIL = actual_version::text;
    END IF;

    WITH inserted AS (
        INSERT INTO __SCHEMA__.events
            (transaction_id, stream_id, version, event_id, name, schema_version, payload,
             metadata)
        SELECT (SELECT __SCHEMA__.logical_xact_id()), p_stream_id, first_version + t.ord - 1,
               t.id, t.name, t.schema_version, t.payload, t.metadata
          FROM unnest(p_event_ids, p_names, p_schema_versions, p_payloads, p_metadata)
               WITH ORDINALITY AS t(id, name, schema_version, payload, metadata, ord)
         ORDER BY t.ord
        RETURNING position
    )
    SELECT min(i.position), max(i.position) INTO first_position, last_position FROM inserted i;

    PERFORM pg_notify('__CHANNEL__', last_position::text);
    outcome := 'appended';
END;
$$;
