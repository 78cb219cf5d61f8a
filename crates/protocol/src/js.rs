//! The error and close codes as a JavaScript module, so the JS client and the console name codes
//! from the one list in this crate instead of typing them. `clients/js/src/codes.js` is this
//! module's output, checked by this crate's tests (`tests/js_codes.rs`, which also rewrites it
//! when run with `WARDEN_WRITE_JS_CODES=1`).

use crate::{CloseCode, ErrorCode};
use std::fmt::Write;
use strum::VariantArray;

/// The text of `clients/js/src/codes.js`.
pub fn codes_module() -> String {
    let mut out = String::from(
        "// Generated from the warden-protocol crate (crates/protocol: ErrorCode, CloseCode); do not\n\
         // edit. `WARDEN_WRITE_JS_CODES=1 cargo test -p warden-protocol --test js_codes` rewrites it.\n\n\
         /** Every error code of the protocol (docs/protocol.md §5), by its Rust name. */\n\
         export const ErrorCode = Object.freeze({\n",
    );
    for code in ErrorCode::VARIANTS {
        let _ = writeln!(out, "  {code:?}: \"{}\",", code.as_str());
    }
    out.push_str(
        "});\n\n\
         /** Every close code a session ends with (docs/protocol.md §7), by its Rust name. */\n\
         export const CloseCode = Object.freeze({\n",
    );
    for code in CloseCode::VARIANTS {
        let _ = writeln!(out, "  {code:?}: {},", code.code());
    }
    out.push_str("});\n");
    out
}
