use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
#[event(name = "account.opened", version = 3, previous = OpenedV2)]
struct Opened {
    owner: String,
    currency: String,
}

#[derive(Event, Deserialize)]
#[event(name = "account.opened", version = 2, previous = OpenedV1)]
struct OpenedV2 {
    owner: String,
}

#[derive(Event, Deserialize)]
#[event(name = "account.opened")]
struct OpenedV1 {
    name: String,
}

impl From<OpenedV1> for OpenedV2 {
    fn from(v1: OpenedV1) -> Self {
        OpenedV2 { owner: v1.name }
    }
}

// A step that can fail: `TryFrom` with an error that implements `Display`.
impl TryFrom<OpenedV2> for Opened {
    type Error = &'static str;
    fn try_from(v2: OpenedV2) -> Result<Self, Self::Error> {
        if v2.owner.is_empty() {
            return Err("an account needs an owner");
        }
        Ok(Opened {
            owner: v2.owner,
            currency: "EUR".into(),
        })
    }
}

fn main() {
    let payload = serde_json::json!({ "name": "ada" });
    let opened = Opened::decode_version(1, &payload).unwrap();
    assert_eq!(opened.currency, "EUR");
}
