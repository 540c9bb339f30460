//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;

/// The reference Python venv (`$AUTOLORA_CACHE/python/torch-2.11.0/bin/python`), if present.
pub fn reference_python() -> Option<PathBuf> {
    let cache = autolora_data::assets::cache_root().ok()?;
    let python = cache.join("python/torch-2.11.0/bin/python");
    if python.exists() {
        Some(python)
    } else {
        println!(
            "skipping: reference Python not found at {} (cargo xtask setup installs it)",
            python.display()
        );
        None
    }
}

/// The folder of the committed reference scripts and fixtures.
pub fn reference_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference")
}

/// Asserts |a - b| <= tol (NaN equals NaN), naming the case.
pub fn assert_close(what: &str, ours: f64, reference: f64, tol: f64) {
    let ok = (ours.is_nan() && reference.is_nan()) || (ours - reference).abs() <= tol;
    assert!(ok, "{what}: ours {ours}, reference {reference}");
}

/// Compares two JSON documents, numbers to within `tol`.
pub fn json_close(path: &str, a: &serde_json::Value, b: &serde_json::Value, tol: f64) {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            assert_close(path, x.as_f64().unwrap(), y.as_f64().unwrap(), tol)
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}: lengths differ");
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                json_close(&format!("{path}[{i}]"), u, v, tol);
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            let kx: Vec<_> = x.keys().collect();
            let ky: Vec<_> = y.keys().collect();
            assert_eq!(kx, ky, "{path}: keys differ");
            for (k, u) in x {
                json_close(&format!("{path}.{k}"), u, &y[k], tol);
            }
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}
