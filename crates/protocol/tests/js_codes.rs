//! Guards against the JS client and the console naming a code the server does not send: the
//! codes module they import is exactly what this crate generates from its enums.

use std::path::PathBuf;

#[test]
fn the_js_codes_module_is_generated_from_the_enums() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../clients/js/src/codes.js");
    let want = warden_protocol::js::codes_module();
    if std::env::var_os("WARDEN_WRITE_JS_CODES").is_some() {
        std::fs::write(&path, &want).expect("write codes.js");
    }
    let have = std::fs::read_to_string(&path).expect("clients/js/src/codes.js exists");
    assert!(
        have == want,
        "{} is out of date: run `WARDEN_WRITE_JS_CODES=1 cargo test -p warden-protocol --test js_codes`",
        path.display()
    );
    assert!(want.contains("  NotLockHolder: \"not_lock_holder\",\n"));
    assert!(want.contains("  SlowConsumer: 4008,\n"));
}
