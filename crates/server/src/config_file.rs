//! The binary's configuration file (`--config server.toml`): one key per flag, named as the
//! flag without its dashes (`header-read-timeout-secs = 30`; `_` works as well as `-`).
//!
//! The file is applied as if its keys were flags, but only for flags that neither the command
//! line nor their environment variable set: flag > env > file > default. Repeatable flags
//! take arrays (`cors-origin = ["https://a.example"]`), switches take booleans.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("{path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// What reading it said.
        error: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{path}: {error}")]
    Toml {
        /// The file.
        path: String,
        /// What the TOML parser said.
        error: Box<toml::de::Error>,
    },
    /// A key names no flag, or its value has a shape no flag takes.
    #[error("{path}: {message}")]
    Key {
        /// The file.
        path: String,
        /// Which key and why.
        message: String,
    },
}

/// The flags that `file` adds to `args` (the command line as given, program name first): each
/// key whose flag `matches` (the command line parsed alone) did not get from the command line
/// or the environment. They go right after the program name, before any subcommand.
pub fn merge(
    command: &Command,
    matches: &ArgMatches,
    mut args: Vec<OsString>,
    file: &Path,
) -> Result<Vec<OsString>, ConfigFileError> {
    let from_file = file_args(command, file, |arg| {
        matches!(
            matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    })?;
    let at = args.len().min(1);
    args.splice(at..at, from_file);
    Ok(args)
}

/// Checks `file`: every key names a flag and every value parses as that flag's. Returns the
/// flags it amounts to.
pub fn check(command: &Command, file: &Path) -> Result<Vec<OsString>, ConfigFileError> {
    let args = file_args(command, file, |_| false)?;
    let mut argv = vec![OsString::from(command.get_name())];
    argv.extend(args.iter().cloned());
    command.clone().try_get_matches_from(argv).map_err(|e| ConfigFileError::Key {
        path: file.display().to_string(),
        message: e
            .render()
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_owned(),
    })?;
    Ok(args)
}

/// The flags of `file`, except those `skip` says are set already.
fn file_args(
    command: &Command,
    file: &Path,
    skip: impl Fn(&Arg) -> bool,
) -> Result<Vec<OsString>, ConfigFileError> {
    let path = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|error| ConfigFileError::Read { path: path.clone(), error })?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|error| ConfigFileError::Toml { path: path.clone(), error: Box::new(error) })?;
    let key_error = |message: String| ConfigFileError::Key { path: path.clone(), message };
    let mut args = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let arg = settable(command)
            .find(|arg| arg.get_long() == Some(long.as_str()))
            .ok_or_else(|| key_error(format!("unknown key {key:?}: it names no flag")))?;
        if skip(arg) {
            continue;
        }
        let scalar = |value: &toml::Value| match value {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            other => Err(key_error(format!("{key}: expected a string or an integer, not {other}"))),
        };
        match (arg.get_action(), value) {
            (ArgAction::SetTrue, toml::Value::Boolean(on)) => {
                if *on {
                    args.push(format!("--{long}").into());
                }
            }
            (ArgAction::SetTrue, _) => return Err(key_error(format!("{key}: expected a boolean"))),
            (ArgAction::Append, toml::Value::Array(items)) => {
                for item in items {
                    args.push(format!("--{long}={}", scalar(item)?).into());
                }
            }
            (_, value) => args.push(format!("--{long}={}", scalar(value)?).into()),
        }
    }
    Ok(args)
}

/// The flags a file may set: every long flag but `--help`, `--version` and `--config`.
fn settable(command: &Command) -> impl Iterator<Item = &Arg> {
    command.get_arguments().filter(|arg| {
        arg.get_long().is_some_and(|long| !matches!(long, "help" | "version" | "config"))
    })
}

/// A configuration file with every key commented out, each under its flag's help: a line
/// `#key = default` for keys with a default (remove the `#` to change it), `# key = …` for keys
/// without one.
pub fn default_file(command: &Command) -> String {
    let mut out = format!(
        "# {} configuration: one key per flag (see `{} --help`).\n\
         # Precedence: flag > environment > this file > default.\n",
        command.get_name(),
        command.get_name()
    );
    for arg in settable(command) {
        let Some(long) = arg.get_long() else { continue };
        out.push('\n');
        if let Some(help) = arg.get_long_help().or_else(|| arg.get_help()) {
            for line in help.to_string().lines() {
                wrap_comment(&mut out, line);
            }
        }
        if let Some(env) = arg.get_env() {
            let _ = writeln!(out, "# (environment: {})", env.to_string_lossy());
        }
        let defaults = arg.get_default_values();
        match arg.get_action() {
            ArgAction::SetTrue => {
                let _ = writeln!(out, "#{long} = false");
            }
            ArgAction::Append => {
                let _ = writeln!(out, "#{long} = []");
            }
            _ => match defaults.first() {
                Some(default) => {
                    let default = default.to_string_lossy();
                    if default.parse::<i64>().is_ok() {
                        let _ = writeln!(out, "#{long} = {default}");
                    } else {
                        let quoted = toml::Value::String(default.into_owned()).to_string();
                        let _ = writeln!(out, "#{long} = {quoted}");
                    }
                }
                None => {
                    let _ = writeln!(out, "# {long} = … (no default)");
                }
            },
        }
    }
    out
}

/// Writes `text` as `# ` comment lines of at most about 96 characters.
fn wrap_comment(out: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() > 1 && line.len() + 1 + word.len() > 96 {
            let _ = writeln!(out, "{line}");
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    let _ = writeln!(out, "{line}");
}
