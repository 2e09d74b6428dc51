//! Collects every error found in a derive input, so that the user sees all mistakes at once.

use std::cell::RefCell;
use std::fmt::Display;

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};

/// The error sink of one derive invocation. Checked once with [`Ctxt::check`], which hands back
/// all the errors combined into one `syn::Error` (each keeps its own span).
pub(crate) struct Ctxt {
    errors: RefCell<Vec<syn::Error>>,
}

impl Ctxt {
    pub(crate) fn new() -> Self {
        Ctxt {
            errors: RefCell::new(Vec::new()),
        }
    }

    /// Records an error spanned at `tokens` (the narrowest token the mistake is in).
    pub(crate) fn error_spanned_by(&self, tokens: impl ToTokens, message: impl Display) {
        self.errors
            .borrow_mut()
            .push(syn::Error::new_spanned(tokens.into_token_stream(), message));
    }

    /// Records an error found by a syn parser.
    pub(crate) fn syn_error(&self, error: syn::Error) {
        self.errors.borrow_mut().push(error);
    }

    /// Whether an error was recorded so far.
    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.borrow().is_empty()
    }

    /// The derive's output: `generate()` if no error was recorded, else every error beside
    /// `stub()`, items that keep the errors from cascading into the user's other code.
    pub(crate) fn finish(
        self,
        generate: impl FnOnce() -> TokenStream,
        stub: impl FnOnce() -> TokenStream,
    ) -> TokenStream {
        match self.check() {
            Ok(()) => generate(),
            Err(error) => {
                let error = error.into_compile_error();
                let stub = stub();
                quote!(#error #stub)
            }
        }
    }

    /// All the recorded errors, combined; `Ok` if there are none.
    pub(crate) fn check(self) -> syn::Result<()> {
        let mut errors = self.errors.into_inner().into_iter();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for error in errors {
            combined.combine(error);
        }
        Err(combined)
    }
}
