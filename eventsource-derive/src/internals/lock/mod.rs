//! The schema lock: a committed file recording the wire shape of every published event version.
//!
//! ```text
//! # comments and blank lines are ignored
//! [bank]
//! account.opened v1 5d0e1a9c3b7f2e41 {owner:String}
//! account.opened v2 9c41f0d2aa13b7e5 {owner:String;overdraft_limit:u64}
//! ```
//!
//! A section is the crate (cargo target) whose events it holds, as `CARGO_CRATE_NAME` names it;
//! `[*]` holds entries for every crate. Each line is `<name> v<version> <fingerprint> <shape>`.
//! The derive checks its (name, version) against the entry, and in `EVENTSOURCE_LOCK=update`
//! mode writes the entries that are missing. The file is rewritten sorted, so diffs are stable.
//! A mismatch is explained change by change (`explain`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Attribute, Fields, Ident, LitStr};

use crate::internals::ctxt::Ctxt;

mod explain;
use crate::internals::fingerprint::{Shape, hash};
use explain::explain;

/// The environment variable that selects the [`Mode`].
pub(crate) const MODE_VARIABLE: &str = "EVENTSOURCE_LOCK";
/// The lock's name at the crate root.
const DEFAULT_FILE: &str = "events.lock";
/// The name prefix of a nested type's entry (`type:Money v0 <fingerprint> <shape>`).
pub(crate) const TYPE_PREFIX: &str = "type:";
/// The section whose entries apply to every crate.
const ANY_CRATE: &str = "*";

const HEADER: &str = "\
# eventsource schema lock: the wire shape of every published event version.
# A locked version's shape never changes; evolve an event by adding a version with `previous`.
# Add new versions with `EVENTSOURCE_LOCK=update cargo build`; review this file like code.
";

/// What the derive does with the lock, from `EVENTSOURCE_LOCK`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    /// Unset: locked versions are checked, unlocked ones pass.
    Check,
    /// `update`: also write the entries of unlocked versions.
    Update,
    /// `overwrite`: also rewrite the entries of changed versions (a deliberate reset).
    Overwrite,
    /// `strict`: an unlocked version is an error (for CI).
    Strict,
}

impl Mode {
    fn from_env() -> Result<Mode, String> {
        let value = std::env::var(MODE_VARIABLE).unwrap_or_default();
        match value.trim() {
            "" | "check" => Ok(Mode::Check),
            "update" => Ok(Mode::Update),
            "overwrite" => Ok(Mode::Overwrite),
            "strict" => Ok(Mode::Strict),
            other => Err(format!(
                "unknown `{MODE_VARIABLE}` value `{other}`: use `update`, `overwrite` or `strict`, or leave it unset"
            )),
        }
    }

    fn writes(self) -> bool {
        matches!(self, Mode::Update | Mode::Overwrite)
    }
}

/// One locked event version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) fingerprint: String,
    pub(crate) shape: String,
    /// The Rust type (`Opened`, `CartEvent::Opened`) that declared it, written after the shape
    /// as `@Opened`: how a renamed event is recognized. Absent in entries recorded before it.
    pub(crate) ty: Option<String>,
}

/// The parsed file: sections by crate, entries by (name, version).
#[derive(Default, Debug, PartialEq, Eq)]
pub(crate) struct Lock {
    pub(crate) sections: BTreeMap<String, BTreeMap<(String, u32), Entry>>,
}

impl Lock {
    /// Parses the file's text; the error names the line.
    pub(crate) fn parse(text: &str) -> Result<Lock, String> {
        let mut lock = Lock::default();
        let mut section: Option<String> = None;
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                let name = name.trim();
                if name.is_empty() {
                    return Err(format!("line {number}: empty section name `[]`"));
                }
                lock.sections.entry(name.to_owned()).or_default();
                section = Some(name.to_owned());
                continue;
            }
            let Some(section) = &section else {
                return Err(format!(
                    "line {number}: an entry before any `[crate]` section header"
                ));
            };
            let (key, entry) = parse_entry(line).ok_or_else(|| {
                format!("line {number}: expected `<name> v<version> <fingerprint> <shape>`")
            })?;
            if hash(&entry.shape) != entry.fingerprint {
                return Err(format!(
                    "line {number}: the fingerprint of `{} v{}` does not match its shape",
                    key.0, key.1
                ));
            }
            let entries = lock.sections.entry(section.clone()).or_default();
            if entries.insert(key.clone(), entry).is_some() {
                return Err(format!(
                    "line {number}: `{} v{}` is listed twice in `[{section}]`",
                    key.0, key.1
                ));
            }
        }
        Ok(lock)
    }

    /// The entry for (name, version) in `krate`'s section, or else in `[*]`.
    fn get(&self, krate: &str, name: &str, version: u32) -> Option<&Entry> {
        let key = (name.to_owned(), version);
        [krate, ANY_CRATE]
            .iter()
            .find_map(|section| self.sections.get(*section)?.get(&key))
    }

    /// The name under which the type of `subject` locked its version, if it is not the
    /// subject's name any more (and the subject's name is not locked itself).
    fn renamed(&self, krate: &str, subject: &Subject) -> Option<String> {
        [krate, ANY_CRATE].iter().find_map(|section| {
            self.sections
                .get(*section)?
                .iter()
                .find(|((name, version), entry)| {
                    *version == subject.version
                        && *name != subject.name
                        && entry.ty.as_deref() == Some(subject.ty.as_str())
                })
                .map(|((name, _), _)| name.clone())
        })
    }

    /// The file's text: sections and entries sorted.
    pub(crate) fn render(&self) -> String {
        let mut out = String::from(HEADER);
        for (section, entries) in &self.sections {
            let _ = write!(out, "\n[{section}]\n");
            for ((name, version), entry) in entries {
                let _ = write!(
                    out,
                    "{name} v{version} {} {}",
                    entry.fingerprint, entry.shape
                );
                if let Some(ty) = &entry.ty {
                    let _ = write!(out, " @{ty}");
                }
                out.push('\n');
            }
        }
        out
    }
}

fn parse_entry(line: &str) -> Option<((String, u32), Entry)> {
    let mut words = line.splitn(4, ' ');
    let name = words.next()?;
    let version = words.next()?.strip_prefix('v')?.parse().ok()?;
    let fingerprint = words.next()?;
    let rest = words.next()?.trim();
    let (shape, ty) = match rest.rsplit_once(" @") {
        Some((shape, ty)) if !ty.is_empty() && !ty.contains(char::is_whitespace) => {
            (shape.trim(), Some(ty.to_owned()))
        }
        _ => (rest, None),
    };
    let parses = if name.starts_with(TYPE_PREFIX) {
        !shape.is_empty() && version == 0
    } else {
        Shape::parse(shape).is_some()
    };
    if name.is_empty() || fingerprint.len() != 16 || !parses {
        return None;
    }
    Some((
        (name.to_owned(), version),
        Entry {
            fingerprint: fingerprint.to_owned(),
            shape: shape.to_owned(),
            ty,
        },
    ))
}

/// Where the lock of one event is.
struct Location {
    path: PathBuf,
    /// As the user knows it, for messages: `events.lock` or the `lock = "..."` value.
    display: String,
    /// Whether `lock = "..."` named it (then it must exist, outside update mode).
    explicit: bool,
}

/// One event version to check against the lock: a struct deriving `Event`, or one variant of
/// an enum deriving `EventEnum`.
pub(crate) struct Subject<'a> {
    pub(crate) name: String,
    pub(crate) version: u32,
    /// What errors about it point at when no narrower token applies: the struct's or the
    /// variant's name.
    pub(crate) ident: &'a Ident,
    /// The `serde` attributes its shape includes (the struct's; the enum's, then the variant's).
    pub(crate) attrs: Vec<&'a Attribute>,
    pub(crate) fields: &'a Fields,
    pub(crate) shape: Shape,
    /// The Rust type as the lock records it: `Opened`, or `CartEvent::Opened` for a variant.
    pub(crate) ty: String,
    /// Whether it is a variant (messages then say "a tuple variant", not "a tuple struct").
    pub(crate) is_variant: bool,
}

/// The lock one derive checks against.
pub(crate) struct LockAttr<'a> {
    /// `lock = "..."`, if written.
    pub(crate) path: Option<&'a LitStr>,
    /// The deriving type, which errors about the file as a whole point at.
    pub(crate) ident: &'a Ident,
    /// The file the type is defined in, which `lock = "..."` is relative to.
    pub(crate) source_file: Option<&'a Path>,
}

/// Checks each subject against the lock (and in update mode, records the new and, in
/// overwrite mode, the changed ones), unless an error was recorded already. Returns the tokens
/// that make cargo rebuild when the lock or the mode changes.
pub(crate) fn check(cx: &Ctxt, lock_attr: &LockAttr, subjects: &[Subject]) -> TokenStream {
    let ident = lock_attr.ident;
    let (mode, location, lock, krate) = match open(cx, lock_attr) {
        Ok(opened) => opened,
        Err(tokens) => return tokens,
    };
    let mut to_record = Vec::new();
    let mut missing_file_reported = false;
    for subject in subjects {
        let current = Entry {
            fingerprint: hash(&subject.shape.to_string()),
            shape: subject.shape.to_string(),
            ty: Some(subject.ty.clone()),
        };
        let locked = lock
            .as_ref()
            .and_then(|lock| lock.get(&krate, &subject.name, subject.version));
        let renamed = match locked {
            None => lock.as_ref().and_then(|lock| lock.renamed(&krate, subject)),
            Some(_) => None,
        };
        match locked {
            Some(locked) if locked.fingerprint == current.fingerprint => continue,
            Some(_) if mode == Mode::Overwrite => {}
            Some(locked) => explain(cx, subject, &location.display, &locked.shape),
            None if renamed.is_some() => {
                let old_name = renamed.unwrap_or_default();
                if mode != Mode::Overwrite {
                    cx.error_spanned_by(
                        subject.ident,
                        format!(
                            "`{}` is locked in `{}` as `{old_name}` v{}, and is now named `{}`: a stored event keeps its name forever (rows written as `{old_name}` would no longer decode); restore the name, or declare the new name as a new event",
                            subject.ty, location.display, subject.version, subject.name
                        ),
                    );
                }
            }
            None if mode == Mode::Strict => cx.error_spanned_by(
                subject.ident,
                format!(
                    "`{}` v{} is not in the schema lock `{}`: record it with `{MODE_VARIABLE}=update cargo build` and commit the lock",
                    subject.name, subject.version, location.display
                ),
            ),
            // Once per derive, not once per variant of an enum.
            None if lock.is_none()
                && location.explicit
                && !mode.writes()
                && !missing_file_reported =>
            {
                missing_file_reported = true;
                cx.error_spanned_by(
                    ident,
                    format!(
                        "cannot read the schema lock `{}`: no such file (create it with `{MODE_VARIABLE}=update cargo build`)",
                        location.display
                    ),
                );
            }
            None => {}
        }
        to_record.push(((subject.name.clone(), subject.version), current));
    }

    finish(cx, lock_attr, mode, location, &krate, to_record)
}

/// Checks a nested type's shape (a type deriving `Shape`) against its `type:<Name>` entry.
/// A nested type is locked by its own canonical text; the event that contains it is locked by
/// its own, so that together the entries cover the whole type tree of every locked version.
pub(crate) fn check_type(cx: &Ctxt, lock_attr: &LockAttr, shape: &str) -> TokenStream {
    let ident = lock_attr.ident;
    let (mode, location, lock, krate) = match open(cx, lock_attr) {
        Ok(opened) => opened,
        Err(tokens) => return tokens,
    };
    let key = format!("{TYPE_PREFIX}{ident}");
    let current = Entry {
        fingerprint: hash(shape),
        shape: shape.to_owned(),
        ty: None,
    };
    let locked = lock.as_ref().and_then(|lock| lock.get(&krate, &key, 0));
    match locked {
        Some(locked) if locked.fingerprint == current.fingerprint => {}
        Some(_) if mode == Mode::Overwrite => {}
        Some(locked) => cx.error_spanned_by(
            ident,
            format!(
                "`{ident}` differs from its locked shape, and it is part of the wire shape of locked event versions\n  locked in `{}`: {}\n  now: {shape}\n  a stored event keeps its shape forever: restore `{ident}`, and give the new event version a new type (e.g. `{ident}V2`)",
                location.display, locked.shape
            ),
        ),
        None if mode == Mode::Strict => cx.error_spanned_by(
            ident,
            format!(
                "the shape of `{ident}` is not in the schema lock `{}`: record it with `{MODE_VARIABLE}=update cargo build` and commit the lock",
                location.display
            ),
        ),
        None if lock.is_none() && location.explicit && !mode.writes() => cx.error_spanned_by(
            ident,
            format!(
                "cannot read the schema lock `{}`: no such file (create it with `{MODE_VARIABLE}=update cargo build`)",
                location.display
            ),
        ),
        None => {}
    }
    finish(
        cx,
        lock_attr,
        mode,
        location,
        &krate,
        vec![((key, 0), current)],
    )
}

type Opened = (Mode, Location, Option<Lock>, String);

/// The mode, the file's location and its parsed contents (`None` if it does not exist); or,
/// after an error, the tokens to emit.
fn open(cx: &Ctxt, lock_attr: &LockAttr) -> Result<Opened, TokenStream> {
    // The lock is consulted only for well-formed events: a name or version with a mistake
    // would be checked (or recorded) under the wrong key. (Nothing to emit: the errors are.)
    if cx.has_errors() {
        return Err(TokenStream::new());
    }
    let ident = lock_attr.ident;
    let track_mode = track_mode();
    let mode = match Mode::from_env() {
        Ok(mode) => mode,
        Err(message) => {
            cx.error_spanned_by(ident, message);
            return Err(track_mode);
        }
    };
    let Some(location) = locate(cx, lock_attr) else {
        return Err(track_mode);
    };
    let krate = std::env::var("CARGO_CRATE_NAME").unwrap_or_else(|_| ANY_CRATE.to_owned());
    let lock = match read(&location.path) {
        Ok(Some(text)) => match Lock::parse(&text) {
            Ok(lock) => Some(lock),
            Err(message) => {
                cx.error_spanned_by(
                    ident,
                    format!("malformed schema lock `{}`: {message}", location.display),
                );
                return Err(track_mode);
            }
        },
        Ok(None) => None,
        Err(error) => {
            cx.error_spanned_by(
                ident,
                format!(
                    "cannot read the schema lock `{}`: {error}",
                    location.display
                ),
            );
            return Err(track_mode);
        }
    };
    Ok((mode, location, lock, krate))
}

fn track_mode() -> TokenStream {
    quote! {
        const _: ::core::option::Option<&str> = ::core::option_env!(#MODE_VARIABLE);
    }
}

/// Records `to_record` in a writing mode (unless an error was found), and returns the tokens
/// that make cargo rebuild when the lock or the mode changes.
fn finish(
    cx: &Ctxt,
    lock_attr: &LockAttr,
    mode: Mode,
    location: Location,
    krate: &str,
    to_record: Vec<((String, u32), Entry)>,
) -> TokenStream {
    let ident = lock_attr.ident;
    let track_mode = track_mode();
    if mode.writes()
        && !cx.has_errors()
        && !to_record.is_empty()
        && let Err(error) = record(&location.path, krate, to_record)
    {
        cx.error_spanned_by(
            ident,
            format!(
                "cannot write the schema lock `{}`: {error}",
                location.display
            ),
        );
    }
    if !location.path.is_file() {
        return track_mode;
    }
    // `include_bytes!` makes cargo track the file: editing the lock rebuilds the crate.
    let path = std::fs::canonicalize(&location.path).unwrap_or(location.path);
    let path = LitStr::new(&path.to_string_lossy(), ident.span());
    quote! {
        #track_mode
        const _: &[u8] = ::core::include_bytes!(#path);
    }
}

/// The lock file: `lock = "..."` relative to the source file, or `events.lock` in the crate root
/// (none outside cargo).
fn locate(cx: &Ctxt, lock_attr: &LockAttr) -> Option<Location> {
    let Some(lit) = lock_attr.path else {
        let root = std::env::var_os("CARGO_MANIFEST_DIR")?;
        return Some(Location {
            path: Path::new(&root).join(DEFAULT_FILE),
            display: DEFAULT_FILE.to_owned(),
            explicit: false,
        });
    };
    let Some(dir) = lock_attr.source_file.and_then(Path::parent) else {
        cx.error_spanned_by(
            lit,
            "cannot resolve `lock = \"...\"`: the path is relative to the source file, which the compiler does not name here",
        );
        return None;
    };
    Some(Location {
        path: dir.join(lit.value()),
        display: lit.value(),
        explicit: true,
    })
}

/// The file's text, or `None` if it does not exist. Read under a shared file lock, so that a
/// concurrent update is seen whole.
fn read(path: &Path) -> std::io::Result<Option<String>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    file.lock_shared()?;
    let mut text = String::new();
    let read = file.read_to_string(&mut text);
    file.unlock()?;
    read?;
    Ok(Some(text))
}

/// Adds (or replaces) entries: read, merge and write back under an exclusive file lock, so
/// that derives compiling in parallel (several crates of a package) do not lose each other's
/// entries. The file is not touched if the entries are already there.
fn record(
    path: &Path,
    krate: &str,
    new_entries: Vec<((String, u32), Entry)>,
) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    file.lock()?;
    let result = (|| {
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        let mut lock = Lock::parse(&text).map_err(std::io::Error::other)?;
        let entries = lock.sections.entry(krate.to_owned()).or_default();
        let mut changed = false;
        for (key, entry) in new_entries {
            if entries.get(&key) != Some(&entry) {
                entries.insert(key, entry);
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
        let rendered = lock.render();
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(rendered.as_bytes())?;
        file.sync_all()
    })();
    file.unlock()?;
    result
}

#[cfg(test)]
mod tests {
    use super::{Entry, Lock, record};
    use crate::internals::fingerprint::hash;

    #[test]
    fn recording_merges_into_the_file_and_leaves_it_alone_when_nothing_is_new() {
        let path =
            std::env::temp_dir().join(format!("eventsource-lock-{}.lock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let key = |name: &str, version| (name.to_owned(), version);
        record(&path, "b", vec![(key("x.one", 2), entry("{a:u8}"))]).unwrap();
        record(&path, "a", vec![(key("x.one", 1), entry("unit"))]).unwrap();
        record(&path, "b", vec![(key("x.one", 1), entry("(u8)"))]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let body: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert_eq!(
            body,
            [
                "[a]".to_owned(),
                format!("x.one v1 {} unit", hash("unit")),
                "[b]".to_owned(),
                format!("x.one v1 {} (u8)", hash("(u8)")),
                format!("x.one v2 {} {{a:u8}}", hash("{a:u8}")),
            ]
        );
        // Several entries (the variants of an enum) in one write.
        let both = vec![
            (key("y.two", 1), entry("unit")),
            (key("y.one", 1), entry("unit")),
        ];
        record(&path, "a", both).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("y.one v1") && text.contains("y.two v1"),
            "{text}"
        );
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        record(&path, "b", vec![(key("x.one", 2), entry("{a:u8}"))]).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            modified
        );
        std::fs::remove_file(&path).unwrap();
    }

    fn entry(shape: &str) -> Entry {
        Entry {
            fingerprint: hash(shape),
            shape: shape.to_owned(),
            ty: None,
        }
    }

    #[test]
    fn a_rendered_lock_parses_back() {
        let mut lock = Lock::default();
        let bank = lock.sections.entry("bank".to_owned()).or_default();
        bank.insert(("b.two".to_owned(), 1), entry("{a:u8}"));
        bank.insert(("a.one".to_owned(), 2), entry("{a:u8;b:Vec<u8>}"));
        bank.insert(("a.one".to_owned(), 1), entry("(u8,u16)"));
        let mut typed = entry("unit");
        typed.ty = Some("E::One".to_owned());
        bank.insert(("c.three".to_owned(), 1), typed);
        let text = lock.render();
        assert!(text.contains("c.three v1 "), "{text}");
        assert!(text.contains(" unit @E::One\n"), "{text}");
        assert_eq!(Lock::parse(&text), Ok(lock));
        // Sorted by (name, version) for stable diffs.
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("a.") || l.starts_with("b."))
            .collect();
        assert!(lines[0].starts_with("a.one v1 "));
        assert!(lines[1].starts_with("a.one v2 "));
        assert!(lines[2].starts_with("b.two v1 "));
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let bad = [
            (
                "a.one v1 0000000000000000 {a:u8}",
                "line 1: an entry before any",
            ),
            ("[x]\na.one 1 0000000000000000 {a:u8}", "line 2: expected"),
            (
                "[x]\n\na.one v1 0000000000000000 {a:u8}",
                "line 3: the fingerprint",
            ),
        ];
        for (text, expected) in bad {
            match Lock::parse(text) {
                Err(message) => assert!(message.starts_with(expected), "{message}"),
                Ok(_) => panic!("`{text}` parsed"),
            }
        }
    }

    #[test]
    fn a_version_is_listed_once_per_section() {
        let line = format!("a.one v1 {} {{a:u8}}", hash("{a:u8}"));
        let text = format!("[x]\n{line}\n{line}\n[y]\n{line}\n");
        assert!(Lock::parse(&text).is_err_and(|m| m.contains("listed twice")));
        let text = format!("[x]\n{line}\n[y]\n{line}\n");
        assert!(Lock::parse(&text).is_ok());
    }
}
