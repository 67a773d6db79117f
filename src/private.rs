//! Files and folders only their owner may read: the state database and its folder, the lock
//! file, and the report, which hold (redacted) log messages and ticket keys.
//!
//! In: a path. Out: the created folder (0700) or an open file (0600) on unix; elsewhere the
//! platform's defaults. Fails with the `std::io::Error` of the underlying call. A folder or a
//! database that already exists keeps the mode its owner gave it; a file this module truncates
//! and rewrites (the report's temporary files) is set to 0600 every time.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Create `dir` and its missing parents, each new one 0700.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Options that create a file 0600 (on unix).
pub fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Create or truncate `path` for writing, 0600 even when it already existed.
pub fn create_file(path: &Path) -> io::Result<File> {
    let file = options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// Create `path` empty and 0600 if it does not exist yet; an existing file is left as it is.
pub fn create_if_missing(path: &Path) -> io::Result<()> {
    match options().write(true).create_new(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}
