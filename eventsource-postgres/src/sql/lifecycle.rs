//! The statements of retiring streams, snapshot maintenance and the subject keys.

use super::Statement;

/// SQLSTATE of the `streams_archived` trigger: an append to an archived stream.
pub(crate) const STREAM_ARCHIVED: &str = "ES190";

#[derive(Debug)]
pub(crate) struct Lifecycle {
    /// Archives `$1` (keeping an earlier time); its status row, none for an unknown stream.
    pub(crate) archive_stream: Statement,
    /// `delete_stream($1)` of migration 7: the number of events deleted.
    pub(crate) delete_stream: Statement,
    /// The status row of `$1`.
    pub(crate) stream_status: Statement,
    /// Deletes the snapshot of stream `$1`.
    pub(crate) delete_snapshot: Statement,
    /// Deletes the snapshots of category `$1`.
    pub(crate) delete_category_snapshots: Statement,
    /// Deletes every snapshot.
    pub(crate) delete_all_snapshots: Statement,
    /// The live key of subject `$1`: `key_version`, `key`.
    pub(crate) current_key: Statement,
    /// Creates key `$2` for subject `$1` at the next version, unless another process just did
    /// (no row then): `key_version`.
    pub(crate) create_key: Statement,
    /// Key `$2` of subject `$1` (`key` is NULL once forgotten).
    pub(crate) key: Statement,
    /// Whether key `$2` of subject `$1` exists and is not forgotten.
    pub(crate) key_live: Statement,
    /// Records that stream `$2` holds values sealed for `$1`.
    pub(crate) record_stream: Statement,
    /// Deletes the key material of `$1`, keeping the rows as the record of the forget.
    pub(crate) forget_keys: Statement,
    /// The streams recorded for `$1`.
    pub(crate) subject_streams: Statement,
    /// The forgotten subjects (`$1` at most), by subject: `subject`, `forgotten_at`.
    pub(crate) forgotten_subjects: Statement,
}

impl Lifecycle {
    pub(crate) fn new(s: &str) -> Self {
        let status = "stream_id, version, archived_at, deleted_at";
        Lifecycle {
            archive_stream: format!(
                "UPDATE {s}.streams SET archived_at = coalesce(archived_at, now()) \
                  WHERE stream_id = $1 RETURNING {status}"
            )
            .into(),
            delete_stream: format!("SELECT {s}.delete_stream($1)").into(),
            stream_status: format!("SELECT {status} FROM {s}.streams WHERE stream_id = $1").into(),
            delete_snapshot: format!("DELETE FROM {s}.snapshots WHERE stream_id = $1").into(),
            delete_category_snapshots: format!(
                "DELETE FROM {s}.snapshots WHERE split_part(stream_id, '-', 1) = $1"
            )
            .into(),
            delete_all_snapshots: format!("DELETE FROM {s}.snapshots").into(),
            current_key: format!(
                "SELECT key_version, key FROM {s}.subject_keys \
                  WHERE subject = $1 AND key IS NOT NULL \
                  ORDER BY key_version DESC LIMIT 1"
            )
            .into(),
            create_key: format!(
                "INSERT INTO {s}.subject_keys (subject, key_version, key) \
                 SELECT $1, coalesce(max(k.key_version), 0) + 1, $2 \
                   FROM {s}.subject_keys k WHERE k.subject = $1 \
                 ON CONFLICT (subject, key_version) DO NOTHING \
                 RETURNING key_version"
            )
            .into(),
            key: format!(
                "SELECT key FROM {s}.subject_keys WHERE subject = $1 AND key_version = $2"
            )
            .into(),
            key_live: format!(
                "SELECT EXISTS (SELECT 1 FROM {s}.subject_keys \
                                 WHERE subject = $1 AND key_version = $2 AND key IS NOT NULL)"
            )
            .into(),
            record_stream: format!(
                "INSERT INTO {s}.subject_streams (subject, stream_id) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING"
            )
            .into(),
            forget_keys: format!(
                "UPDATE {s}.subject_keys SET key = NULL, forgotten_at = now() \
                  WHERE subject = $1 AND key IS NOT NULL"
            )
            .into(),
            subject_streams: format!(
                "SELECT stream_id FROM {s}.subject_streams WHERE subject = $1 ORDER BY stream_id"
            )
            .into(),
            forgotten_subjects: format!(
                "SELECT subject, max(forgotten_at) AS forgotten_at FROM {s}.subject_keys \
                  GROUP BY subject HAVING bool_and(key IS NULL) \
                  ORDER BY subject LIMIT $1"
            )
            .into(),
        }
    }
}
