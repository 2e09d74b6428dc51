-- Decisions across streams (issue 18): tags on events, the tag index, and append_streams(),
-- the one call behind atomic multi-stream appends, conditional appends and tagged appends.
--
-- `__SCHEMA__` stands for the store's schema, a validated identifier quoted by the migration
-- runner; `__CHANNEL__` for the NOTIFY channel derived from it.

-- The event's tags, sorted and distinct: what a query item's "carries all of these tags" is
-- checked against once the tag index has found the candidates. A constant default: adding
-- the column rewrites nothing.
ALTER TABLE __SCHEMA__.events ADD COLUMN tags text[] NOT NULL DEFAULT '{}';

-- The tag index, one row per (tag, event). Why a table rather than a GIN index on
-- `events.tags`: both questions a decision asks are ranges of one tag in checkpoint order.
-- The read ("every event tagged course:7") is `tag = $1 ORDER BY transaction_id, position`,
-- and the condition check ("any event tagged course:7 that the read did not see") is
-- `tag = $1 AND transaction_id >= <the read's oldest unseen transaction>`: a btree range
-- that touches only the boundary's newest events, however large it grew. A GIN index
-- answers neither in order nor by range: it returns every event of the tag, which the check
-- would then filter by transaction.
CREATE TABLE __SCHEMA__.event_tags (
    tag text NOT NULL,
    transaction_id bigint NOT NULL,
    position bigint NOT NULL,
    PRIMARY KEY (tag, transaction_id, position)
);

CREATE TRIGGER event_tags_immutable
    BEFORE UPDATE OR DELETE ON __SCHEMA__.event_tags
    FOR EACH ROW EXECUTE FUNCTION __SCHEMA__.reject_event_change();

CREATE TRIGGER event_tags_no_truncate
    BEFORE TRUNCATE ON __SCHEMA__.event_tags
    FOR EACH STATEMENT EXECUTE FUNCTION __SCHEMA__.reject_event_change();

ALTER TABLE __SCHEMA__.event_tags SET (
    autovacuum_analyze_scale_factor = 0.01,
    autovacuum_analyze_threshold = 1000
);

-- Appends to several streams in one transaction, all or nothing, optionally on the condition
-- that no event matching a query was written after a read.
--
-- p_streams, p_expected, p_counts: one element per stream (p_expected as in append(): NULL
-- any, -1 exists, n >= 0 exactly n). The events of all streams in order in the p_event_ids ..
-- p_metadata arrays, p_counts[i] of them for stream i. p_tags[k] is a tag of event
-- p_tag_events[k] (1-based over the whole call).
-- p_query: NULL (no condition) or [{"names": [...], "tags": [...]}, ...], each item's tags
-- sorted; p_unseen_from and p_unseen: what the read did not see (every logical transaction
-- from p_unseen_from on, and those listed).
--
-- One row per stream: outcome 'appended' or 'replayed'; or the failure: rows 'conflict' (one
-- per failing stream, actual_version), one row 'duplicate' (event_id stored at
-- existing_stream / existing_version), or one row 'condition' (request 0, the first matching
-- event the read did not see). SQLSTATE ES020 when a stream it found missing was created
-- meanwhile (the caller calls again).
--
-- Locking, at READ COMMITTED: first transaction-scoped advisory locks on each tag the call
-- writes and on the first tag of each query item, in key order; then the stream heads, in
-- stream order. A matching event carries its item's first tag, so its writer held that lock:
-- once this call holds it, every such writer has committed (and this function's next
-- statement, with a new snapshot, sees its events) or waits until this one commits. The
-- check therefore needs no SERIALIZABLE and sees what it must; tags of disjoint boundaries
-- never wait for each other.
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
    p_unseen bigint[]
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
             metadata, tags)
        SELECT x.id, r.stream_id, r.actual + (t.ord - r.before), t.id, t.name,
               t.schema_version, t.payload, t.metadata, coalesce(l.tags, '{}')
          FROM (SELECT __SCHEMA__.logical_xact_id() AS id) AS x,
               unnest(p_event_ids, p_names, p_schema_versions, p_payloads, p_metadata)
                   WITH ORDINALITY AS t(id, name, schema_version, payload, metadata, ord)
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

    PERFORM pg_notify('__CHANNEL__', v_positions[cardinality(v_positions)]::text);
END;
$$;
