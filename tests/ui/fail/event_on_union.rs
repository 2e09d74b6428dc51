use eventsource::prelude::*;

#[derive(Event)]
#[event(name = "cart.changed")]
union Changed {
    opened: u32,
    closed: u64,
}

fn main() {}
