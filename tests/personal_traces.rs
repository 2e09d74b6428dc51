//! Crypto-shredding leaves no trace: neither tracing output (every level, captured with a
//! subscriber) nor error messages or `Debug` output hold plain personal fields or key
//! material. Its own test binary: tracing caches callsite interest process-wide, so a test
//! running beside it without a subscriber could hide its events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/customer.rs"]
mod customer;

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use customer::{ADA, ADA_NEW, Customer, GRACE};
use eventsource::{
    EventStore, ExpectedVersion, KeyStore, LogFilter, MemoryKeyStore, MemoryStore, NewEvent,
    Repository, SEALED_PATHS, Shredding, StreamId, Version,
};
use serde_json::{Value, json};

/// A writer of everything the subscriber formats.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn leaks(text: &str, key: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for secret in [ADA, ADA_NEW, GRACE, "lovelace", "countess"] {
        if text.contains(secret) {
            found.push(secret.to_owned());
        }
    }
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let encodings = [
        hex.clone(),
        hex.to_uppercase(),
        base64::engine::general_purpose::STANDARD.encode(key),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key),
        format!("{key:?}"),
    ];
    for encoded in encodings {
        if text.contains(&encoded) {
            found.push(format!("key material as {encoded}"));
        }
    }
    found
}

#[test]
fn traces_and_errors_hold_no_personal_data_or_key_material() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (key, messages) = tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let store = MemoryStore::new();
            let keys = MemoryKeyStore::new();
            let key = customer::forget_scenario(store.clone(), keys.clone()).await;
            let mut messages = Vec::new();

            // Errors around personal data: a tampered value, an unsealed one, refused appends.
            let shredding = Shredding::new(store.clone(), keys.clone());
            let stream = StreamId::new("customer", "c-2");
            let mut raw = store
                .read_stream(&stream, Version(1), 1)
                .await
                .unwrap()
                .remove(0);
            let Value::String(sealed) = &raw.payload["email"] else {
                panic!("not sealed")
            };
            // Move c-2's ciphertext into a new event: it does not authenticate there.
            let moved = NewEvent::new(
                "customer.registered",
                1,
                json!({ "customer_id": "c-9", "email": sealed, "plan": "basic" }),
            );
            let mut moved = moved;
            moved
                .metadata
                .custom
                .insert(SEALED_PATHS.into(), json!(["/email"]));
            store
                .append(
                    &StreamId::new("customer", "c-9"),
                    ExpectedVersion::NoStream,
                    vec![moved],
                )
                .await
                .unwrap();
            let customers = Repository::<Customer, _>::new(shredding.clone());
            let error = customers.load("c-9").await.unwrap_err();
            let message = error.to_string();
            assert!(message.contains("customer.registered"), "{message}");
            assert!(message.contains("customer-c-9"), "{message}");
            messages.push(message);
            messages.push(format!("{error:?}"));

            // Read without the wrapper, the sealed value is an error, not a wrong value.
            raw.payload["email"] = Value::String(sealed.clone());
            let error = eventsource::decode_event::<Customer>(&raw).unwrap_err();
            messages.push(error.to_string());

            let error = customer_error_on_plain_store().await;
            messages.push(error);

            for subject in ["", &"x".repeat(300)] {
                let event = NewEvent::new(
                    "customer.registered",
                    1,
                    json!({ "email": { "$personal": ADA, "$subject": subject } }),
                );
                let error = shredding
                    .append(&stream, ExpectedVersion::Any, vec![event])
                    .await
                    .unwrap_err();
                messages.push(error.to_string());
                messages.push(format!("{error:?}"));
            }
            // Debug of the key store, the wrapper, a key and a value.
            let key_value = keys.key("c-2", 1).await.unwrap().unwrap();
            messages.push(format!("{key_value:?} {keys:?} {shredding:?}"));
            messages.push(format!(
                "{:?}",
                eventsource::Personal::Known(ADA.to_owned())
            ));
            let all = shredding
                .read_all(eventsource::Checkpoint::START, 100, &LogFilter::all())
                .await
                .unwrap();
            messages.push(format!("{:?}", all.len()));
            (key, messages)
        })
    });
    let traces = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(!traces.is_empty(), "the subscriber captured nothing");
    assert!(traces.contains("forgotten"), "{traces}");
    assert_eq!(leaks(&traces, &key), Vec::<String>::new(), "in the traces");
    for message in &messages {
        assert_eq!(leaks(message, &key), Vec::<String>::new(), "in {message}");
    }
}

async fn customer_error_on_plain_store() -> String {
    let customers = Repository::<Customer, _>::new(MemoryStore::new());
    let error = customers
        .execute(
            "c-1",
            customer::Register {
                customer_id: "c-1".into(),
                email: ADA.into(),
                plan: "basic".into(),
            },
        )
        .await
        .unwrap_err();
    format!("{error} {error:?}")
}
