//! `authmilter man DIR` and `authmilter completions SHELL`: the man pages and completion
//! scripts come from the clap definitions of this very binary, so they cannot drift from
//! the options it accepts. The package build (`packaging/build-deb.sh`) runs both.

use anyhow::{Context, Result};
use std::path::Path;
use std::process::ExitCode;

/// authmilter.8, authmilter-COMMAND.8 for each command, and authmilter.toml.5.
pub fn man(mut cli: clap::Command, dir: &Path) -> Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Propagates the version and the global flags into the subcommands, as parsing does.
    cli.build();
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    write("authmilter.8", &render(&cli)?)?;
    let mut pages = Vec::new();
    subcommand_pages(&cli, "authmilter", &mut pages);
    for (name, page) in pages {
        write(&format!("{name}.8"), &render(&page)?)?;
    }
    let config =
        authmilter::manpage::config_page(authmilter::manpage::README, env!("CARGO_PKG_VERSION"));
    write("authmilter.toml.5", config.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// authmilter-COMMAND, and authmilter-COMMAND-SUBCOMMAND for nested ones (`report send`),
/// the names clap_mangen gives them under SUBCOMMANDS.
fn subcommand_pages(cmd: &clap::Command, prefix: &str, out: &mut Vec<(String, clap::Command)>) {
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("{prefix}-{}", sub.get_name());
        out.push((name.clone(), sub.clone().display_name(name.clone())));
        subcommand_pages(sub, &name, out);
    }
}

/// A page in section 8 (system administration: a daemon), with the configuration page and
/// the per-command pages under SEE ALSO.
fn render(cmd: &clap::Command) -> Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .source(concat!("authmilter ", env!("CARGO_PKG_VERSION")))
        .manual("System Manager's Manual");
    let mut out = Vec::new();
    man.render(&mut out)?;
    out.extend_from_slice(b".SH \"SEE ALSO\"\nauthmilter.toml(5), authmilter(8)\n");
    Ok(out)
}

pub fn completions(mut cli: clap::Command, shell: clap_complete::Shell) -> Result<ExitCode> {
    use std::io::Write;
    // Into a buffer first: clap_complete panics on a write error (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cli, "authmilter", &mut script);
    std::io::stdout()
        .write_all(&script)
        .context("writing the completion script")?;
    Ok(ExitCode::SUCCESS)
}
