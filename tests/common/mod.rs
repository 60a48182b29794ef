//! What several test files share: the CV32E40P simulator, built once per test binary.

use qsearch::rtl::{Rtl, RtlError};
use std::sync::OnceLock;

/// The CV32E40P simulator, built once for the tests of a file; `None` (the reason printed) when
/// one of its tools is not installed, so that only those tests skip.
pub fn simulator() -> Option<&'static Rtl> {
    static RTL: OnceLock<Option<Rtl>> = OnceLock::new();
    RTL.get_or_init(|| match Rtl::init() {
        Ok(rtl) => Some(rtl),
        Err(RtlError::ToolMissing { tool, install }) => {
            eprintln!("skipped: {tool} not found; {install}");
            None
        }
        Err(e) => panic!("{e}"),
    })
    .as_ref()
}
