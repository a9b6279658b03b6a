//! [`DirLock`]: an advisory lock on a run or export directory, so that two processes never
//! write into one directory (two `dgating train --out D` started together used to leave a
//! directory whose files came from different runs).
//!
//! The lock is the operating system's file lock (`flock` on Unix, `LockFileEx` on Windows,
//! through `std::fs::File::try_lock`) on `DIR/.dgating.lock`: it is released when the
//! process exits, however it exits, so a killed process never leaves a stale lock behind
//! (unlike a pid file). Writers take it exclusively; readers that must not see a run change
//! under them (pruning) take it shared.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// File name of the lock inside a locked directory.
pub const LOCK_FILE: &str = ".dgating.lock";

/// A held lock; released on drop.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Locks `dir` for writing (creating `dir` if needed). Fails at once with
    /// [`Error::Locked`] if another process holds any lock on it.
    pub fn exclusive(dir: &Path) -> Result<Self> {
        Self::acquire(dir, true)
    }

    /// Locks `dir` for reading: other readers may hold it too, writers may not. `dir` must
    /// exist.
    pub fn shared(dir: &Path) -> Result<Self> {
        Self::acquire(dir, false)
    }

    fn acquire(dir: &Path, exclusive: bool) -> Result<Self> {
        if exclusive {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        } else if !dir.is_dir() {
            return Err(Error::io(dir, std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory")));
        }
        let path = dir.join(LOCK_FILE);
        let file =
            OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
        let locked = if exclusive { file.try_lock() } else { file.try_lock_shared() };
        match locked {
            Ok(()) => Ok(Self { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(Error::Locked { dir: dir.into() }),
            Err(TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Removes the temporary files (`.NAME.tmp-PID`) that a process killed during an atomic write
/// left in `dir`. Call it only while holding [`DirLock::exclusive`]: then no live process is
/// writing them.
pub fn remove_stale_temp_files(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp-") && entry.path().is_file() {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_everyone_and_shared_excludes_writers() {
        let dir = tempfile::tempdir().unwrap();
        let a = DirLock::exclusive(dir.path()).unwrap();
        assert!(matches!(DirLock::exclusive(dir.path()), Err(Error::Locked { .. })));
        assert!(matches!(DirLock::shared(dir.path()), Err(Error::Locked { .. })));
        drop(a);
        let r1 = DirLock::shared(dir.path()).unwrap();
        let _r2 = DirLock::shared(dir.path()).unwrap();
        assert!(matches!(DirLock::exclusive(dir.path()), Err(Error::Locked { .. })));
        assert!(r1.path().ends_with(LOCK_FILE));
        assert!(DirLock::shared(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn stale_temp_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".model.safetensors.tmp-123"), b"half").unwrap();
        std::fs::write(dir.path().join("config.json"), b"{}").unwrap();
        assert_eq!(remove_stale_temp_files(dir.path()).unwrap(), 1);
        assert!(dir.path().join("config.json").exists());
    }
}
