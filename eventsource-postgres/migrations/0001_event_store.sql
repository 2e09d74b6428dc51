-- The event store: streams, events, snapshots, projection checkpoints, and the append function.
--
-- `__SCHEMA__` stands for the store's schema, a validated identifier quoted by the migration
-- runner; `__CHANNEL__` for the NOTIFY channel derived from it.

-- The head of every stream: O(1) current version, and the row appends lock.
CREATE TABLE __SCHEMA__.streams (
    stream_id text PRIMARY KEY,
    version bigint NOT NULL CHECK (version > 0)
);

CREATE TABLE __SCHEMA__.events (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The writing transaction: global reads order by (transaction_id, position) and stop below
    -- the oldest running transaction, so that an event committed late is never skipped.
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    stream_id text NOT NULL,
    -- The part of the stream id before the first '-', as `StreamId::category` computes it.
    category text NOT NULL GENERATED ALWAYS AS (split_part(stream_id, '-', 1)) STORED,
    version bigint NOT NULL CHECK (version > 0),
    event_id uuid NOT NULL,
    name text NOT NULL,
    schema_version bigint NOT NULL,
    payload jsonb NOT NULL,
    metadata jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_event_id_unique UNIQUE (event_id),
    CONSTRAINT events_stream_version_unique UNIQUE (stream_id, version)
);

-- Global reads, all and filtered by category or by name, in checkpoint order.
CREATE INDEX events_checkpoint_idx ON __SCHEMA__.events (transaction_id, position);
CREATE INDEX events_category_checkpoint_idx ON __SCHEMA__.events (category, transaction_id, position);
CREATE INDEX events_name_checkpoint_idx ON __SCHEMA__.events (name, transaction_id, position);

-- Events are facts: nothing rewrites or removes them.
CREATE FUNCTION __SCHEMA__.reject_event_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable: % on %.% is not allowed', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'ES001';
END;
$$;

CREATE TRIGGER events_immutable
    BEFORE UPDATE OR DELETE ON __SCHEMA__.events
    FOR EACH ROW EXECUTE FUNCTION __SCHEMA__.reject_event_change();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON __SCHEMA__.events
    FOR EACH STATEMENT EXECUTE FUNCTION __SCHEMA__.reject_event_change();

-- The newest snapshot of each stream.
CREATE TABLE __SCHEMA__.snapshots (
    stream_id text PRIMARY KEY,
    version bigint NOT NULL CHECK (version >= 0),
    state_fingerprint text NOT NULL,
    state jsonb NOT NULL,
    taken_at timestamptz NOT NULL
);

-- Where each projection is in the global log, written in the same transaction as its read model.
CREATE TABLE __SCHEMA__.checkpoints (
    projection text PRIMARY KEY,
    transaction_id bigint NOT NULL CHECK (transaction_id >= 0),
    position bigint NOT NULL CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- What to answer for a batch some of whose ids are stored: 'replayed' with the original
-- append's versions and positions if all of them are stored in this stream at consecutive
-- versions in batch order (an exact retry), else 'duplicate' naming the first stored id of
-- another stream, or else the first stored id (batch order). As MemoryStore decides.
CREATE FUNCTION __SCHEMA__.stored_batch(
    p_stream_id text,
    p_event_ids uuid[],
    OUT outcome text,
    OUT first_version bigint,
    OUT last_version bigint,
    OUT first_position bigint,
    OUT last_position bigint,
    OUT event_id uuid,
    OUT existing_stream text,
    OUT existing_version bigint
)
LANGUAGE plpgsql AS $$
DECLARE
    v_found integer;
    v_foreign integer;
    v_offsets integer;
BEGIN
    SELECT count(*)::integer,
           (count(*) FILTER (WHERE e.stream_id <> p_stream_id))::integer,
           count(DISTINCT e.version - t.ord)::integer
      INTO v_found, v_foreign, v_offsets
      FROM unnest(p_event_ids) WITH ORDINALITY AS t(id, ord)
      JOIN __SCHEMA__.events e ON e.event_id = t.id;
    IF v_found = cardinality(p_event_ids) AND v_foreign = 0 AND v_offsets = 1 THEN
        outcome := 'replayed';
        SELECT min(e.version), max(e.version)
          INTO first_version, last_version
          FROM __SCHEMA__.events e WHERE e.event_id = ANY (p_event_ids);
        SELECT e.position INTO first_position
          FROM __SCHEMA__.events e WHERE e.stream_id = p_stream_id AND e.version = first_version;
        SELECT e.position INTO last_position
          FROM __SCHEMA__.events e WHERE e.stream_id = p_stream_id AND e.version = last_version;
    ELSE
        outcome := 'duplicate';
        SELECT e.event_id, e.stream_id, e.version
          INTO event_id, existing_stream, existing_version
          FROM unnest(p_event_ids) WITH ORDINALITY AS t(id, ord)
          JOIN __SCHEMA__.events e ON e.event_id = t.id
         ORDER BY (e.stream_id = p_stream_id), t.ord
         LIMIT 1;
    END IF;
END;
$$;

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
CREATE FUNCTION __SCHEMA__.append(
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
            (stream_id, version, event_id, name, schema_version, payload, metadata)
        SELECT p_stream_id, first_version + t.ord - 1, t.id, t.name, t.schema_version,
               t.payload, t.metadata
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
