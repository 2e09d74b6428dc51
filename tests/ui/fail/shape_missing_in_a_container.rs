use eventsource::prelude::*;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Line {
    sku: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "invoice.issued")]
struct Issued {
    lines: Option<Vec<Line>>,
}

fn main() {}
