-- The tracing ids of an event (its metadata's `correlation_id` and `causation_id`) in columns
-- of their own. `Repository::execute` gives every event both ids, about 110 bytes of JSON text
-- that the server parsed into `metadata` on every append and turned back into text on every
-- read: on a projection's catch-up that conversion was the largest part of the read's cost
-- (BENCHMARKS.md, session 27). As `uuid` columns they are 16 bytes each in the binary
-- protocol, both ways, and `metadata` holds only what else the event carries (usually `{}`).
--
-- Rows written before this migration carry the ids inside `metadata` and NULL here. The store
-- reads an event's ids from the columns where they are set, else from `metadata`: both kinds
-- of row read back as the metadata that was written. Stored events are never rewritten (they
-- are immutable), and adding nullable columns without a default does not rewrite the table.
ALTER TABLE __SCHEMA__.events
    ADD COLUMN correlation_id uuid,
    ADD COLUMN causation_id uuid;

-- The two append functions (`append()` of migration 4, `append_streams()` of migration 6)
-- again, with two changes: they write the tracing-id columns (`p_correlation_ids`,
-- `p_causation_ids`, one element per event), and they NOTIFY only when `p_notify` says so.
--
-- Why the second: a transaction that NOTIFYs takes a database-wide lock when it commits and
-- holds it until its commit is flushed (PostgreSQL's `PreCommit_Notify`), so every such
-- transaction commits after the other, one flush each, whatever rows they touch. Decisions on
-- disjoint boundaries, which never wait for each other's locks, waited there (`Lock:object` in
-- `pg_stat_activity`; BENCHMARKS.md, session 27). The store now passes
-- `p_notify = false` for the transactions it commits itself and signals listeners after the
-- commit (as its other appends already do); an append inside the caller's transaction
-- (`append_in`, `append_streams_in`) still passes true, so that listeners hear of it when,
-- and only if, that transaction commits.
DROP FUNCTION __SCHEMA__.append(text, bigint, uuid[], text[], bigint[], jsonb[], jsonb[]);

DROP FUNCTION __SCHEMA__.append_streams(text[], bigint[], integer[], uuid[], text[], bigint[],
    jsonb[], jsonb[], text[], integer[], jsonb, bigint, bigint[]);

-- append() of migration 4, with the tracing-id columns and `p_notify`.
CREATE FUNCTION __SCHEMA__.append(
    p_stream_id text,
    p_expected bigint,
    p_event_ids uuid[],
    p_names text[],
    p_schema_versions bigint[],
    p_payloads jsonb[],
    p_metadata jsonb[],
    p_correlation_ids uuid[],
    p_causation_ids uuid[],
    p_notify boolean,
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
        OR cardinality(p_payloads) <> v_count OR cardinality(p_metadata) <> v_count
        OR coalesce(cardinality(p_correlation_ids), 0) <> v_count
        OR coalesce(cardinality(p_causation_ids), 0) <> v_count THEN
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
             metadata, correlation_id, causation_id)
        SELECT (SELECT __SCHEMA__.logical_xact_id()), p_stream_id, first_version + t.ord - 1,
               t.id, t.name, t.schema_version, t.payload, t.metadata, t.correlation_id,
               t.causation_id
          FROM unnest(p_event_ids, p_names, p_schema_versions, p_payloads, p_metadata,
                      p_correlation_ids, p_causation_ids)
               WITH ORDINALITY AS t(id, name, schema_version, payload, metadata,
                                    correlation_id, causation_id, ord)
         ORDER BY t.ord
        RETURNING position
    )
    SELECT min(i.position), max(i.position) INTO first_position, last_position FROM inserted i;

    IF p_notify THEN
        PERFORM pg_notify('__CHANNEL__', last_position::text);
    END IF;
    outcome := 'appended';
END;
$$;

-- append_streams() of migration 6, with the tracing-id columns and `p_notify`.
CREATE FUNCTION __SCHEMA__.append_streams(
    p_streams text[],
    p_expected bigint[],
    p_counts integer[],
    p_event_ids uuid[],
    p_names text[],
    p_schema_versions bigint[],
    p_payloads jsonb[],
    p_metadata jsonb[],
    p_tags text[],
    p_tag_events integer[],
    p_query jsonb,
    p_unseen_from bigint,
    p_unseen bigint[],
    p_correlation_ids uuid[],
    p_causation_ids uuid[],
    p_notify boolean
)
RETURNS TABLE (
    request integer,
    outcome text,
    first_version bigint,
    last_version bigint,
    first_position bigint,
    last_position bigint,
    actual_version bigint,
    event_id uuid,
    existing_stream text,
    existing_version bigint,
    match_position bigint,
    match_name text,
    match_stream text
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_requests integer := coalesce(cardinality(p_streams), 0);
    v_events integer := coalesce(cardinality(p_event_ids), 0);
    v_key bigint;
    v_actual bigint[];
    v_before integer[];
    v_low bigint;
    v_positions bigint[];
    v_position_streams text[];
    v_i integer;
BEGIN
    IF v_requests = 0
        OR coalesce(cardinality(p_expected), 0) <> v_requests
        OR coalesce(cardinality(p_counts), 0) <> v_requests
        OR EXISTS (SELECT 1 FROM unnest(p_counts) AS c(n) WHERE c.n IS NULL OR c.n < 1)
        OR v_events <> (SELECT sum(c.n) FROM unnest(p_counts) AS c(n))
        OR coalesce(cardinality(p_names), 0) <> v_events
        OR coalesce(cardinality(p_schema_versions), 0) <> v_events
        OR coalesce(cardinality(p_payloads), 0) <> v_events
        OR coalesce(cardinality(p_metadata), 0) <> v_events
        OR coalesce(cardinality(p_correlation_ids), 0) <> v_events
        OR coalesce(cardinality(p_causation_ids), 0) <> v_events
        OR coalesce(cardinality(p_tags), 0) <> coalesce(cardinality(p_tag_events), 0) THEN
        RAISE EXCEPTION 'append_streams: the argument arrays do not fit together'
            USING ERRCODE = 'ES003';
    END IF;

    -- 1. The boundary locks, in key order (two calls never wait for each other in a cycle).
    FOR v_key IN
        SELECT DISTINCT hashtextextended('__SCHEMA__ tag ' || t.tag, 0)
          FROM (SELECT u.tag FROM unnest(p_tags) AS u(tag)
                UNION ALL
                SELECT q.item -> 'tags' ->> 0
                  FROM jsonb_array_elements(coalesce(p_query, '[]'::jsonb)) AS q(item)) AS t
         WHERE t.tag IS NOT NULL
         ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(v_key);
    END LOOP;

    -- 2. The stream heads that exist, locked in stream order, as the group writer locks them.
    PERFORM 1 FROM __SCHEMA__.streams s
      WHERE s.stream_id = ANY (p_streams) ORDER BY s.stream_id FOR UPDATE;

    -- 3. A retry of stored ids, checked first (as append() does): if every stream's batch is
    -- stored as given, the original results; if only some ids are, a duplicate.
    IF EXISTS (SELECT 1 FROM __SCHEMA__.events e WHERE e.event_id = ANY (p_event_ids)) THEN
        SELECT array_agg(x.before ORDER BY x.i) INTO v_before
          FROM (SELECT c.i, (sum(c.n) OVER (ORDER BY c.i) - c.n)::integer AS before
                  FROM unnest(p_counts) WITH ORDINALITY AS c(n, i)) AS x;
        RETURN QUERY
        SELECT r.i::integer, s.outcome, s.first_version, s.last_version, s.first_position,
               s.last_position, NULL::bigint, s.event_id, s.existing_stream,
               s.existing_version, NULL::bigint, NULL::text, NULL::text
          FROM unnest(p_streams, p_counts) WITH ORDINALITY AS r(stream_id, n, i),
               LATERAL __SCHEMA__.stored_batch(
                   r.stream_id, p_event_ids[v_before[r.i] + 1 : v_before[r.i] + r.n]) AS s
         WHERE NOT EXISTS (
                   SELECT 1
                     FROM unnest(p_streams, p_counts) WITH ORDINALITY AS o(stream_id, n, i),
                          LATERAL __SCHEMA__.stored_batch(
                              o.stream_id,
                              p_event_ids[v_before[o.i] + 1 : v_before[o.i] + o.n]) AS b
                    WHERE b.outcome <> 'replayed')
         ORDER BY r.i;
        IF FOUND THEN
            RETURN;
        END IF;
        RETURN QUERY
        SELECT (SELECT max(b.i) FROM unnest(v_before) WITH ORDINALITY AS b(before, i)
                 WHERE b.before < t.ord)::integer,
               'duplicate'::text, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint,
               NULL::bigint, e.event_id, e.stream_id, e.version, NULL::bigint, NULL::text,
               NULL::text
          FROM unnest(p_event_ids) WITH ORDINALITY AS t(id, ord)
          JOIN __SCHEMA__.events e ON e.event_id = t.id
         ORDER BY t.ord
         LIMIT 1;
        RETURN;
    END IF;

    -- 4. The condition, read after the locks (a new snapshot for this statement): the first
    -- matching event the decision's read did not see. No read barrier here: a committed
    -- event counts whether or not global reads may show it yet.
    IF p_query IS NOT NULL AND jsonb_array_length(p_query) > 0 THEN
        v_low := least(p_unseen_from, (SELECT min(u.x) FROM unnest(p_unseen) AS u(x)));
        RETURN QUERY
        SELECT 0, 'condition'::text, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint,
               NULL::bigint, NULL::uuid, NULL::text, NULL::bigint, m.position, m.name,
               m.stream_id
          FROM jsonb_array_elements(p_query) AS q(item)
          CROSS JOIN LATERAL (
              SELECT e.position, e.name, e.stream_id, e.transaction_id
                FROM __SCHEMA__.event_tags g
                JOIN __SCHEMA__.events e ON e.position = g.position
               WHERE g.tag = q.item -> 'tags' ->> 0
                 AND g.transaction_id >= v_low
                 AND (g.transaction_id >= p_unseen_from OR g.transaction_id = ANY (p_unseen))
                 AND e.tags @> ARRAY(SELECT jsonb_array_elements_text(q.item -> 'tags'))
                 AND (jsonb_array_length(q.item -> 'names') = 0
                      OR e.name IN (SELECT jsonb_array_elements_text(q.item -> 'names')))
               ORDER BY g.transaction_id, g.position
               LIMIT 1
          ) AS m
         ORDER BY m.transaction_id, m.position
         LIMIT 1;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

    -- 5. The expectations: every stream that fails is reported, and nothing is written.
    SELECT array_agg(coalesce(s.version, 0) ORDER BY r.i) INTO v_actual
      FROM unnest(p_streams) WITH ORDINALITY AS r(stream_id, i)
      LEFT JOIN __SCHEMA__.streams s ON s.stream_id = r.stream_id;
    RETURN QUERY
    SELECT r.i::integer, 'conflict'::text, NULL::bigint, NULL::bigint, NULL::bigint,
           NULL::bigint, v_actual[r.i], NULL::uuid, NULL::text, NULL::bigint, NULL::bigint,
           NULL::text, NULL::text
      FROM unnest(p_expected) WITH ORDINALITY AS r(expected, i)
     WHERE NOT (r.expected IS NULL
                OR (r.expected = -1 AND v_actual[r.i] > 0)
                OR (r.expected >= 0 AND v_actual[r.i] = r.expected))
     ORDER BY r.i;
    IF FOUND THEN
        RETURN;
    END IF;

    -- 6. Move the heads, in stream order. A stream that was missing had no row to lock: if
    -- another writer created it meanwhile, the expectation was checked against a stale head.
    FOR v_i IN
        SELECT r.i FROM unnest(p_streams) WITH ORDINALITY AS r(stream_id, i) ORDER BY r.stream_id
    LOOP
        IF v_actual[v_i] = 0 THEN
            INSERT INTO __SCHEMA__.streams (stream_id, version)
                VALUES (p_streams[v_i], p_counts[v_i])
                ON CONFLICT (stream_id) DO NOTHING;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'stream % was created by a concurrent append', p_streams[v_i]
                    USING ERRCODE = 'ES020';
            END IF;
        ELSE
            UPDATE __SCHEMA__.streams s SET version = s.version + p_counts[v_i]
             WHERE s.stream_id = p_streams[v_i];
        END IF;
    END LOOP;

    -- 7. The events (one logical transaction id for the call), then their tags.
    WITH req AS (
        SELECT r.stream_id, r.n, v_actual[r.i] AS actual,
               (sum(r.n) OVER (ORDER BY r.i) - r.n)::integer AS before
          FROM unnest(p_streams, p_counts) WITH ORDINALITY AS r(stream_id, n, i)
    ),
    event_tag_lists AS (
        SELECT t.ev, array_agg(DISTINCT t.tag ORDER BY t.tag) AS tags
          FROM unnest(p_tags, p_tag_events) AS t(tag, ev)
         GROUP BY t.ev
    ),
    inserted AS (
        INSERT INTO __SCHEMA__.events
            (transaction_id, stream_id, version, event_id, name, schema_version, payload,
             metadata, correlation_id, causation_id, tags)
        SELECT x.id, r.stream_id, r.actual + (t.ord - r.before), t.id, t.name,
               t.schema_version, t.payload, t.metadata, t.correlation_id, t.causation_id,
               coalesce(l.tags, '{}')
          FROM (SELECT __SCHEMA__.logical_xact_id() AS id) AS x,
               unnest(p_event_ids, p_names, p_schema_versions, p_payloads, p_metadata,
                      p_correlation_ids, p_causation_ids)
                   WITH ORDINALITY AS t(id, name, schema_version, payload, metadata,
                                        correlation_id, causation_id, ord)
               JOIN req r ON t.ord > r.before AND t.ord <= r.before + r.n
               LEFT JOIN event_tag_lists l ON l.ev = t.ord
         ORDER BY t.ord
        RETURNING transaction_id, position, stream_id, tags
    ),
    tagged AS (
        INSERT INTO __SCHEMA__.event_tags (tag, transaction_id, position)
        SELECT u.tag, i.transaction_id, i.position FROM inserted i, unnest(i.tags) AS u(tag)
    )
    SELECT array_agg(i.position ORDER BY i.position), array_agg(i.stream_id ORDER BY i.position)
      INTO v_positions, v_position_streams
      FROM inserted i;

    RETURN QUERY
    SELECT r.i::integer, 'appended'::text, v_actual[r.i] + 1, v_actual[r.i] + r.n,
           min(p.position), max(p.position), v_actual[r.i], NULL::uuid, NULL::text,
           NULL::bigint, NULL::bigint, NULL::text, NULL::text
      FROM unnest(p_streams, p_counts) WITH ORDINALITY AS r(stream_id, n, i)
      JOIN unnest(v_positions, v_position_streams) AS p(position, stream_id)
        ON p.stream_id = r.stream_id
     GROUP BY r.i, r.n
     ORDER BY r.i;

    IF p_notify THEN
        PERFORM pg_notify('__CHANNEL__', v_positions[cardinality(v_positions)]::text);
    END IF;
END;
$$;
