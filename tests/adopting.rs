//! `docs/adopting.md` shows the change that makes `examples/existing_app_before.rs` into
//! `examples/existing_app.rs`: the diff on the page must be that change, exactly, and small
//! enough to adopt in an afternoon.

use std::path::Path;
use std::process::Command;

/// A file's lines after its leading `//!` documentation (which says before or after).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("example");
    text.lines()
        .skip_while(|line| line.starts_with("//!"))
        .map(|line| format!("{line}\n"))
        .collect()
}

#[test]
fn the_adoption_guide_shows_the_whole_change() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("oidc-logout-adopting-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (before, after) = (dir.join("before.rs"), dir.join("after.rs"));
    std::fs::write(&before, code(&root.join("examples/existing_app_before.rs"))).expect("write");
    std::fs::write(&after, code(&root.join("examples/existing_app.rs"))).expect("write");
    let output = Command::new("diff")
        .arg("-u")
        .args([&before, &after])
        .output()
        .expect("diff (diffutils) runs");
    let _ = std::fs::remove_dir_all(&dir);
    let diff = String::from_utf8(output.stdout).expect("utf-8");
    // Without the two header lines, which name the temporary files.
    let hunks: String = diff.lines().skip(2).map(|l| format!("{l}\n")).collect();
    let changed = hunks
        .lines()
        .filter(|l| l.starts_with('+') || l.starts_with('-'))
        .count();
    // At most 30: the logout button with its return route, and the login error kept.
    assert!(changed <= 30, "{changed} changed lines:\n{hunks}");

    let guide = std::fs::read_to_string(root.join("docs/adopting.md")).expect("guide");
    let shown = guide
        .split_once("```diff\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .expect("a diff block in docs/adopting.md");
    assert_eq!(
        shown, hunks,
        "docs/adopting.md must show the change as it is (run `diff -u` on the two examples \
         without their //! lines)"
    );
    assert!(
        guide.contains(&format!("## The code: {changed} changed lines")),
        "the guide's heading gives the count ({changed})"
    );
}
