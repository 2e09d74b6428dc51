//! `EVENTSOURCE_MACROS_DEBUG`: print what the derives generate.
//!
//! Set it to `1` (or `*`) to print every expansion to stderr during the build, or to a type's
//! name to print only that type's: `EVENTSOURCE_MACROS_DEBUG=Account cargo check`.

use proc_macro2::TokenStream;
use syn::Ident;

const VARIABLE: &str = "EVENTSOURCE_MACROS_DEBUG";

pub(crate) fn print(derive: &str, ident: &Ident, output: &TokenStream) {
    let Ok(filter) = std::env::var(VARIABLE) else {
        return;
    };
    let wanted = match filter.trim() {
        "" | "0" => false,
        "1" | "*" | "all" => true,
        name => *ident == name,
    };
    if wanted {
        eprintln!("// #[derive({derive})] on `{ident}`\n{output}\n");
    }
}
