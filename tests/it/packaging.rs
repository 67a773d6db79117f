//! The Debian package: `cargo deb` builds it from Cargo.toml's metadata; it holds the binary
//! (without debug info), the man page, the completions, the systemd units, and the /etc files
//! as conffiles; its binary runs a dry run with its own config on the sample logs; lintian
//! finds no error in it and `systemd-analyze verify` nothing in its units but that the binary
//! is not installed.
//!
//! Skipped, saying so, where cargo-deb or dpkg-deb is missing (`.ci/run` installs both);
//! lintian and systemd-analyze are each checked where they are installed. Building the package
//! is a release build, so this is one test that does it all once.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{json_summary, sample_logs, SAMPLE_LOGS, SAMPLE_PROBLEMS};

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("could not start {cmd:?}: {e}"))
}

fn found(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Every file the package installs, as (mode, path) from `dpkg-deb --contents`.
fn contents(deb: &Path) -> Vec<(String, String)> {
    let out = run(Command::new("dpkg-deb").arg("--contents").arg(deb));
    assert!(out.status.success(), "dpkg-deb --contents failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mode = l.split_whitespace().next()?.to_string();
            let path = l
                .split_whitespace()
                .last()?
                .trim_start_matches('.')
                .to_string();
            Some((mode, path))
        })
        .collect()
}

#[test]
fn cargo_deb_builds_a_package_that_installs_runs_and_passes_lintian() {
    if !found("dpkg-deb", "--version")
        || !cargo()
            .args(["deb", "--version"])
            .output()
            .is_ok_and(|o| o.status.success())
    {
        eprintln!(
            "skipped: cargo-deb or dpkg-deb is not installed \
             (`cargo install cargo-deb --locked`; dpkg-deb comes with dpkg)"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let deb = dir.path().join("triage.deb");
    let out = run(cargo()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["deb", "--quiet", "--output"])
        .arg(&deb)
        .args(["--", "--locked"]));
    assert!(
        out.status.success(),
        "cargo deb failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // What it installs, and with which modes.
    let files = contents(&deb);
    let mode_of = |path: &str| {
        files
            .iter()
            .find(|(_, p)| p == path)
            .map(|(m, _)| m.as_str())
            .unwrap_or_else(|| panic!("{path} is not in the package: {files:?}"))
    };
    assert_eq!(mode_of("/usr/bin/triage"), "-rwxr-xr-x");
    for path in [
        "/usr/share/man/man1/triage.1.gz",
        "/usr/share/bash-completion/completions/triage",
        "/usr/share/zsh/vendor-completions/_triage",
        "/usr/share/fish/vendor_completions.d/triage.fish",
        "/usr/lib/systemd/system/triage.service",
        "/usr/lib/systemd/system/triage.timer",
        "/etc/triage/triage.toml",
        "/usr/share/doc/triage/copyright",
        "/usr/share/doc/triage/changelog.Debian.gz",
        "/usr/share/doc/triage/deploy.md",
    ] {
        assert_eq!(mode_of(path), "-rw-r--r--", "{path}");
    }
    assert_eq!(mode_of("/etc/default/triage"), "-rw-------");

    // The conffiles, so an upgrade keeps a user's edits; the maintainer scripts.
    let control = dir.path().join("DEBIAN");
    let out = run(Command::new("dpkg-deb")
        .arg("--control")
        .arg(&deb)
        .arg(&control));
    assert!(out.status.success(), "dpkg-deb --control failed");
    let conffiles = std::fs::read_to_string(control.join("conffiles")).expect("conffiles");
    let mut listed: Vec<&str> = conffiles.lines().collect();
    listed.sort();
    assert_eq!(listed, ["/etc/default/triage", "/etc/triage/triage.toml"]);
    let postinst = std::fs::read_to_string(control.join("postinst")).expect("postinst");
    // The timer is the user's to enable: an upgrade re-enables it only where it was enabled,
    // and nothing starts it.
    let lines: Vec<&str> = postinst
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    for (i, line) in lines.iter().enumerate() {
        if line.contains("deb-systemd-helper enable") {
            assert!(
                i > 0 && lines[i - 1].contains("was-enabled"),
                "the timer is enabled at install:\n{postinst}"
            );
        }
        assert!(
            !line.contains("deb-systemd-invoke start") && !line.contains("systemctl start"),
            "the timer is started at install:\n{postinst}"
        );
    }
    let postrm = std::fs::read_to_string(control.join("postrm")).expect("postrm");
    assert!(
        postrm.contains("\"purge\"") && postrm.contains("/var/lib/private/triage"),
        "a purge deletes the state:\n{postrm}"
    );

    // Unpacked: the binary has no debug info, and the files say what they should.
    let root = dir.path().join("root");
    let out = run(Command::new("dpkg-deb")
        .arg("--extract")
        .arg(&deb)
        .arg(&root));
    assert!(out.status.success(), "dpkg-deb --extract failed");
    let binary = root.join("usr/bin/triage");
    let bytes = std::fs::read(&binary).expect("the packaged binary");
    let sections = elf_section_names(&bytes);
    assert!(sections.iter().any(|s| s == ".text"), "{sections:?}");
    assert!(
        !sections.iter().any(|s| s.starts_with(".debug")),
        "the packaged binary carries debug info: {sections:?}"
    );
    check_units(&root.join("usr/lib/systemd/system"));
    check_etc_files(&root);
    check_man_page(&root.join("usr/share/man/man1/triage.1.gz"));

    // The packaged binary, with the packaged config, on the sample logs.
    let work = tempfile::tempdir().expect("temp dir");
    let out = run(Command::new(&binary)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("XDG_CONFIG_HOME", work.path().join("xdg"))
        .current_dir(work.path())
        .arg("--config")
        .arg(root.join("etc/triage/triage.toml"))
        .args(["--dry-run", "--no-state", "--output", "json", "--input"])
        .arg(sample_logs()));
    let summary = json_summary(&out, 0);
    assert_eq!(summary["processed"], SAMPLE_LOGS, "{summary}");
    assert_eq!(summary["would_create"], SAMPLE_PROBLEMS, "{summary}");

    lintian(&deb);
    verify_units(&root.join("usr/lib/systemd/system"));
}

/// The service: a oneshot, its own user, its state directory, the secrets file, hardened. The
/// timer: every 5 minutes, persistent, with a small random delay.
fn check_units(dir: &Path) {
    let service = std::fs::read_to_string(dir.join("triage.service")).expect("service");
    for line in [
        "Type=oneshot",
        "ExecStart=/usr/bin/triage",
        "DynamicUser=yes",
        "StateDirectory=triage",
        "EnvironmentFile=-/etc/default/triage",
        "Environment=TRIAGE_CONFIG=/etc/triage/triage.toml",
        "Environment=TRIAGE_STATE=/var/lib/triage/state.db",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
    ] {
        assert!(
            service.lines().any(|l| l == line),
            "triage.service lacks {line}"
        );
    }
    let timer = std::fs::read_to_string(dir.join("triage.timer")).expect("timer");
    for line in [
        "OnCalendar=*:0/5",
        "Persistent=true",
        "RandomizedDelaySec=30s",
        "WantedBy=timers.target",
    ] {
        assert!(
            timer.lines().any(|l| l == line),
            "triage.timer lacks {line}"
        );
    }
}

/// The config is all comments (a dry run with it works, above); the secrets file names the
/// variables and holds no value.
fn check_etc_files(root: &Path) {
    let config = std::fs::read_to_string(root.join("etc/triage/triage.toml")).expect("config");
    assert!(config
        .lines()
        .all(|l| l.trim().is_empty() || l.starts_with('#')));
    let secrets = std::fs::read_to_string(root.join("etc/default/triage")).expect("secrets");
    assert!(secrets
        .lines()
        .all(|l| l.trim().is_empty() || l.starts_with('#')));
    for name in ["DD_API_KEY", "DD_APP_KEY", "JIRA_API_TOKEN", "JIRA_PAT"] {
        assert!(
            secrets.lines().any(|l| l == format!("#{name}=")),
            "/etc/default/triage does not name {name}"
        );
    }
}

/// The man page is gzip and holds the command's options.
fn check_man_page(path: &Path) {
    let gz = std::fs::read(path).expect("man page");
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "the man page is gzipped");
    let out = run(Command::new("gzip").arg("-dc").arg(path));
    if out.status.success() {
        let page = String::from_utf8_lossy(&out.stdout);
        assert!(page.contains(".TH triage 1"), "{page}");
        assert!(page.contains("dry\\-run"), "the page lists the options");
    }
}

/// `lintian`: no error (its warnings are listed and accepted in docs/deploy.md).
fn lintian(deb: &PathBuf) {
    if !found("lintian", "--version") {
        eprintln!("lintian check skipped: lintian is not installed (apt-get install lintian)");
        return;
    }
    let out = run(Command::new("lintian").arg(deb));
    let text = String::from_utf8_lossy(&out.stdout);
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{text}");
    let warnings: Vec<&str> = text.lines().filter(|l| l.starts_with("W:")).collect();
    let accepted = [
        "non-standard-file-perm 0600 != 0644 [etc/default/triage]",
        "initial-upload-closes-no-bugs",
    ];
    for w in warnings {
        assert!(
            accepted.iter().any(|a| w.contains(a)),
            "a lintian warning docs/deploy.md does not list: {w}"
        );
    }
}

/// `systemd-analyze verify`: nothing but that /usr/bin/triage is not installed here.
fn verify_units(dir: &Path) {
    if !found("systemd-analyze", "--version") {
        eprintln!("unit check skipped: systemd-analyze is not installed");
        return;
    }
    let out = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.join("triage.service"))
        .arg(dir.join("triage.timer")));
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    let complaints: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.contains("/usr/bin/triage is not executable"))
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify: {complaints:?}"
    );
}

/// The section names of a 64-bit little-endian ELF file (what `readelf -S` lists).
fn elf_section_names(elf: &[u8]) -> Vec<String> {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let u32_at =
        |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().expect("4 bytes")) as usize;
    let u64_at =
        |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().expect("8 bytes")) as usize;
    let (table, entry, count, names) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let header = |i: usize| table + i * entry;
    let strings = u64_at(header(names) + 0x18);
    (0..count)
        .map(|i| {
            let start = strings + u32_at(header(i));
            let end = elf[start..]
                .iter()
                .position(|&b| b == 0)
                .map_or(elf.len(), |n| start + n);
            String::from_utf8_lossy(&elf[start..end]).into_owned()
        })
        .collect()
}
