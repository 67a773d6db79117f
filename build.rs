//! Build script: stamps the binary with the git commit it was built from and the build date,
//! for `triage --version`; and writes the man page and the bash, zsh and fish completions
//! from the command line's own definition (src/config/cli.rs, included here), for the Debian
//! package (`cargo deb`) and anyone packaging the binary.
//!
//! In: `git` (when the source is a git checkout) and `SOURCE_DATE_EPOCH` (reproducible builds).
//! Out: the `TRIAGE_GIT_COMMIT` and `TRIAGE_BUILD_DATE` compile-time variables, and in
//! `target/<profile>/assets/`: `triage.1.gz`, `triage.bash`, `_triage` (zsh) and `triage.fish`.
//! It never fails on git: built from a tarball without `.git`, or without `git` installed, the
//! commit is `unknown`. It fails only when it cannot write those files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// What cli.rs takes from the rest of the crate, as far as its help text needs it.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `--redact` parser's type, for the definition only: the build script parses nothing.
mod redact {
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Redactor;

    impl Redactor {
        pub fn parse(_: &str) -> Result<Redactor, String> {
            Ok(Redactor)
        }
    }
}

#[allow(dead_code)]
#[path = "src/config/cli.rs"]
mod cli;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/config/cli.rs");
    if let Err(e) = write_assets() {
        panic!("could not write the man page and completions: {e}");
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // Only this package's own checkout counts: a tarball unpacked inside another repository
    // must not take that repository's commit.
    let own_checkout = std::env::var("CARGO_MANIFEST_DIR")
        .map(|d| std::path::Path::new(&d).join(".git").exists())
        .unwrap_or(false);
    let commit = own_checkout
        .then(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .flatten()
        .unwrap_or_else(|| "unknown".into());
    if commit != "unknown" {
        // Rebuild the stamp when HEAD moves (a commit, a checkout).
        for path in [
            git(&["rev-parse", "--git-path", "HEAD"]),
            git(&["rev-parse", "--symbolic-full-name", "HEAD"])
                .and_then(|r| git(&["rev-parse", "--git-path", &r])),
            git(&["rev-parse", "--git-path", "packed-refs"]),
        ]
        .into_iter()
        .flatten()
        {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    println!("cargo:rustc-env=TRIAGE_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=TRIAGE_BUILD_DATE={}", civil_date(secs));
}

/// Run git in the package directory; `None` when git is missing or this is no checkout.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let out = Command::new("git")
        .args(args)
        .current_dir(&dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    if text.is_empty() {
        return None;
    }
    // `--git-path` answers relative to the package directory.
    if args.get(1) == Some(&"--git-path") && !std::path::Path::new(&text).is_absolute() {
        return Some(format!("{dir}/{text}"));
    }
    Some(text)
}

/// `YYYY-MM-DD` (UTC) of a Unix time (Howard Hinnant's days-to-civil algorithm).
fn civil_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The man page and the shell completions, in `target/<profile>/assets/` (the profile's
/// directory is three levels above `OUT_DIR`), where Cargo.toml's `cargo deb` assets find them.
fn write_assets() -> std::io::Result<()> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or(std::io::ErrorKind::NotFound)?);
    let dir = out
        .ancestors()
        .nth(3)
        .map(|profile| profile.join("assets"))
        .unwrap_or_else(|| out.join("assets"));
    std::fs::create_dir_all(&dir)?;
    let mut page = Vec::new();
    clap_mangen::Man::new(cli::command()).render(&mut page)?;
    // Compressed as `gzip -9n` would: no name and no time in the header, so the same page
    // gives the same bytes.
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &page)?;
    write_if_changed(&dir.join("triage.1.gz"), &gz.finish()?)?;
    use clap_complete::Shell;
    for (shell, name) in [
        (Shell::Bash, "triage.bash"),
        (Shell::Zsh, "_triage"),
        (Shell::Fish, "triage.fish"),
    ] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cli::command(), "triage", &mut script);
        write_if_changed(&dir.join(name), &script)?;
    }
    Ok(())
}

/// Write `bytes` unless the file holds them already (its time then stays as it was).
fn write_if_changed(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    std::fs::write(path, bytes)
}
