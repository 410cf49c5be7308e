//! Fuzzes the configuration-file parsers of the command line: arbitrary UTF-8 as a run
//! configuration (`episodic run --config FILE.toml`) and as a suite grid (`episodic suite
//! --config FILE.toml`). Any input must give a value or a one-line error, never a panic, and a
//! parsed run configuration must print (`--print-config`'s TOML) and parse back to the same
//! options.
#![no_main]

use episodic_cli::{parse_grid, parse_run_config};
use libfuzzer_sys::fuzz_target;

fn assert_one_line(e: &anyhow::Error) {
    let line = format!("{e:#}");
    assert!(!line.contains('\n') && !line.is_empty(), "{line:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_run_config(text) {
        Ok(options) => {
            let printed = match options.to_toml() {
                Ok(printed) => printed,
                Err(e) => panic!("{options:?} does not print: {e:#}"),
            };
            let back = match parse_run_config(&printed) {
                Ok(back) => back,
                Err(e) => panic!("{printed:?} does not parse back: {e:#}"),
            };
            // NaN options are not equal to themselves: compare their printed forms then.
            #[allow(clippy::eq_op)]
            if options == options {
                assert_eq!(back, options, "{printed}");
            }
            assert_eq!(back.to_toml().ok().as_deref(), Some(printed.as_str()));
        }
        Err(e) => assert_one_line(&e),
    }
    if let Err(e) = parse_grid(text) {
        assert_one_line(&e);
    }
});
