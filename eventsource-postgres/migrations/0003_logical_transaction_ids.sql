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
