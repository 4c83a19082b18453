//! `authmilter report import FILE|DIR|-`: stores the aggregate reports in a file (a message,
//! `.xml`, `.xml.gz` or `.zip`), in every file of a directory, or on standard input, and
//! prints what became of each. Exit status: 0 when nothing was refused, 1 when something was
//! (the rest is still imported), 2 when nothing could be tried (no store, unreadable
//! directory).

use super::import::ImportError;
use super::received::{import, Fate, ImportSettings, Imported};
use crate::config::Config;
use crate::dates::now_ms;
use crate::store::{Location, Store};
use clap::Args;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Args, Debug, Clone)]
pub struct ImportArgs {
    /// Configuration file (TOML): the store and the [reports] settings.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The verdict store (SQLite) to import into; replaces `[store] path`.
    #[arg(long, value_name = "PATH")]
    pub store: Option<PathBuf>,
    /// A report file or message, a directory of them, or - for standard input.
    #[arg(value_name = "FILE|DIR|-")]
    pub input: String,
}

/// Why an import could not even start.
#[derive(Debug, thiserror::Error)]
pub enum ImportCmdError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("no verdict store: give --store or [store] path or url in the configuration")]
    NoStore,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{0}: {1}")]
    Io(String, io::Error),
}

/// How many reports ended each way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub stored: usize,
    pub duplicate: usize,
    pub dropped: usize,
    pub refused: usize,
    pub failed: usize,
}

impl Tally {
    fn count(&mut self, fate: &Fate) {
        match fate {
            Fate::Stored { .. } | Fate::FailureStored { .. } => self.stored += 1,
            Fate::Duplicate { .. } | Fate::FailureDuplicate { .. } => self.duplicate += 1,
            Fate::Dropped { .. } => self.dropped += 1,
            Fate::Refused(_) | Fate::FailureRefused(_) => self.refused += 1,
            Fate::StoreFailed(_) => self.failed += 1,
        }
    }

    /// Whether everything was either stored or knowingly set aside.
    pub fn clean(&self) -> bool {
        self.refused == 0 && self.failed == 0
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} stored, {} duplicate, {} dropped, {} refused",
            self.stored, self.duplicate, self.dropped, self.refused
        )?;
        if self.failed > 0 {
            write!(f, ", {} not stored (store errors)", self.failed)?;
        }
        Ok(())
    }
}

/// Runs the command, printing a line per report (and a total) to `out`.
pub fn run(args: &ImportArgs, out: &mut impl Write) -> Result<Tally, ImportCmdError> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let location = args
        .store
        .clone()
        .map(Location::Sqlite)
        .or_else(|| config.store.location())
        .ok_or(ImportCmdError::NoStore)?;
    let mut store = Store::connect(&location)?.with_host(&config.store.host);
    let settings = ImportSettings::from(&config.reports);
    let tally = import_target(&mut store, &args.input, &settings, out)?;
    let _ = writeln!(out, "{tally}");
    Ok(tally)
}

/// Imports `target` (a file, a directory's files in name order, or `-`).
pub fn import_target(
    store: &mut Store,
    target: &str,
    settings: &ImportSettings,
    out: &mut impl Write,
) -> Result<Tally, ImportCmdError> {
    let mut tally = Tally::default();
    if target == "-" {
        let input = read_capped(io::stdin().lock(), settings.max_size)
            .map_err(|e| ImportCmdError::Io("standard input".into(), e))?;
        report("-", input, store, settings, &mut tally, out);
        return Ok(tally);
    }
    let path = Path::new(target);
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| ImportCmdError::Io(target.into(), e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    for file in files {
        let input = std::fs::File::open(&file).and_then(|f| read_capped(f, settings.max_size));
        let name = file.display().to_string();
        match input {
            Ok(input) => report(&name, input, store, settings, &mut tally, out),
            Err(e) => {
                tally.refused += 1;
                let _ = writeln!(out, "{name}: refused: cannot read: {e}");
            }
        }
    }
    Ok(tally)
}

/// What [`read_capped`] read: the bytes, or that there were more than the cap.
enum Input {
    Bytes(Vec<u8>),
    TooLarge,
}

/// Reads at most `max + 1` bytes: a larger input is refused without being read whole.
fn read_capped(reader: impl Read, max: usize) -> io::Result<Input> {
    let mut data = Vec::new();
    reader
        .take((max as u64).saturating_add(1))
        .read_to_end(&mut data)?;
    Ok(if data.len() > max {
        Input::TooLarge
    } else {
        Input::Bytes(data)
    })
}

fn report(
    name: &str,
    input: Input,
    store: &mut Store,
    settings: &ImportSettings,
    tally: &mut Tally,
    out: &mut impl Write,
) {
    let results = match input {
        Input::Bytes(data) => import(store, &data, settings, now_ms()),
        Input::TooLarge => vec![Imported {
            part: None,
            fate: Fate::Refused(ImportError::TooLarge(settings.max_size)),
            repairs: Vec::new(),
        }],
    };
    for imported in results {
        tally.count(&imported.fate);
        let _ = writeln!(out, "{name}: {imported}");
    }
}
