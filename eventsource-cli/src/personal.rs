//! Personal data in the events the CLI shows: the CLI never opens sealed values (an operator
//! needs to know that a value is there and whether it is forgotten, not what it says), so each
//! is shown as a marker naming its subject.

use std::collections::HashMap;

use eventsource_core::{RecordedEvent, sealed_values};
use eventsource_postgres::PostgresStore;
use serde_json::Value;

use crate::error::CliError;

/// Replaces each sealed value of `events` with `"<personal data of SUBJECT: sealed>"` or, when
/// the subject's key is gone, `"<personal data of SUBJECT: forgotten>"`.
pub(crate) async fn mark_sealed(
    store: &PostgresStore,
    events: &mut [RecordedEvent],
) -> Result<(), CliError> {
    let keys = store.key_store();
    let mut live: HashMap<(String, u32), bool> = HashMap::new();
    for event in events {
        for sealed in sealed_values(event) {
            let id = (sealed.subject.clone(), sealed.key_version);
            let is_live = match live.get(&id) {
                Some(known) => *known,
                None => {
                    let known = keys.is_live(&sealed.subject, sealed.key_version).await?;
                    live.insert(id, known);
                    known
                }
            };
            let state = if is_live { "sealed" } else { "forgotten" };
            if let Some(slot) = event.payload.pointer_mut(&sealed.path) {
                *slot = Value::String(format!("<personal data of {}: {state}>", sealed.subject));
            }
        }
    }
    Ok(())
}
