//! `check --explain` of every shipped example against its golden text.

use super::*;

/// `check --explain` for every shipped example, compared with
/// tests/golden/NAME.explain (regenerate with UPDATE_GOLDEN=1).
#[test]
fn explain_golden() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for entry in std::fs::read_dir(root.join("rules")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let (r, warnings) = load(&path).unwrap();
        assert!(warnings.is_empty(), "{}: {warnings:?}", path.display());
        let got = explain(&r);
        let golden = root.join("tests/golden").join(format!(
            "{}.explain",
            path.file_stem().unwrap().to_string_lossy()
        ));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &got).unwrap();
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|_| panic!("missing {}", golden.display()));
        assert_eq!(got, want, "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 5);
}
