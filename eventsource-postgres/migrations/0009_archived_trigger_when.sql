-- The archived-stream guard of migration 7, as a trigger with a WHEN condition: every append
-- moves its stream's head, and a plpgsql call per head move cost the append path about 10 µs
-- of server time (a third of a one-row INSERT; BENCHMARKS.md, session 26). The condition is
-- the function's own test, evaluated by the executor without entering plpgsql: the function
-- only runs for the move of an archived head, which it refuses as before (SQLSTATE ES190).
DROP TRIGGER streams_archived ON __SCHEMA__.streams;

CREATE TRIGGER streams_archived
    BEFORE UPDATE ON __SCHEMA__.streams
    FOR EACH ROW
    WHEN (OLD.archived_at IS NOT NULL AND NEW.version IS DISTINCT FROM OLD.version)
    EXECUTE FUNCTION __SCHEMA__.reject_archived_append();
