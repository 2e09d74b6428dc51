//! Compile-time guarantees of the derives: each `tests/ui/fail` case must fail with the
//! reviewed message in its `.stderr`; each `tests/ui/pass` case must compile and run. The cases
//! under `tests/ui/lock` name their own schema lock (`lock = "<case>.lock"`, beside the case).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/lock/pass/*.rs");
    t.compile_fail("tests/ui/lock/fail/*.rs");
}
