// A locked event whose shape did not change compiles, however its source is formatted.
use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "cart.item_added", lock = "untouched.lock")]
#[serde(rename_all = "camelCase")]
struct ItemAdded {
    #[serde(rename = "id")]
    sku: String,
    /// Comments and layout are not part of the shape.
    #[serde(default)]
    qty: u32,
    tags: Vec<(String, [u8; 4])>,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "cart.checked_out", lock = "untouched.lock")]
struct CheckedOut;

fn main() {
    assert_eq!(
        ItemAdded::SHAPE,
        r#"#[serde(rename_all="camelCase")]{#[serde(rename="id")]sku:String;#[serde(default)]qty:u32;tags:Vec<(String,[u8;4])>}"#
    );
    assert_eq!(ItemAdded::FINGERPRINT, "11150cc277624b31");
    assert_eq!(CheckedOut::SHAPE, "unit");
}
