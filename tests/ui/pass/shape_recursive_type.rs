use eventsource::prelude::*;

// A type that contains itself: its own fields' types are folded in by their text only (folding
// `Tree`'s fingerprint into `Tree`'s would define it by itself).
#[derive(Shape, Serialize, Deserialize)]
struct Tree {
    label: String,
    kids: Vec<Tree>,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "tree.grown")]
struct Grown {
    tree: Tree,
}

#[derive(Shape, Serialize, Deserialize)]
struct OtherTree {
    label: u64,
    kids: Vec<OtherTree>,
}

fn main() {
    assert_ne!(
        <Tree as Shape>::SHAPE_FINGERPRINT,
        <OtherTree as Shape>::SHAPE_FINGERPRINT
    );
    assert_ne!(<Grown as Shape>::SHAPE_FINGERPRINT, 0);
}
