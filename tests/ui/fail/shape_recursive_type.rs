use eventsource::prelude::*;

// A recursive type's fingerprint would be defined by itself.
#[derive(Shape, Serialize, Deserialize)]
struct Tree {
    kids: Vec<Tree>,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "tree.grown")]
struct Grown {
    tree: Tree,
}

fn main() {}
