SELECT e.version, e.position, e.name, e.schema_version, e.payload FROM events e WHERE e.stream_id = $$account-7$$ AND e.version > 0 ORDER BY e.version;
