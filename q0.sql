SELECT name, payload FROM events WHERE stream_id = $$account-7$$ AND version > 0 ORDER BY version;
