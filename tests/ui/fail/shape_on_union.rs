use eventsource::prelude::*;

#[derive(Shape)]
union Bits {
    a: u32,
    b: f32,
}

fn main() {}
