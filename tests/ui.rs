//! Compile-time guarantees of the derives: each `tests/ui/fail` case must fail with the
//! reviewed message in its `.stderr`; each `tests/ui/pass` case must compile and run.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
