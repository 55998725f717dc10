//! What a state change does package by package, and the one-line summary of it that is
//! recorded with the state and shown by `state list` and after every change.
//!
//! The summary must fit one terminal line whatever the number of packages: a fresh install
//! of 81 stones reads "install 81 packages (adduser, apt, bash, … and 78 more)". `state
//! show` and `--json` keep the full list.

use mossfs_format::Meta;

/// What happens to one package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verb {
    /// Not installed before.
    Install,
    /// Installed before in a lower (source, build) release.
    Upgrade,
    /// Installed before in a higher or equal release: moving back, as `sync` does when a
    /// repository goes away or drops in priority.
    Downgrade,
    /// Installed before, this very stone.
    Reinstall,
    /// Taken out.
    Remove,
}

impl Verb {
    /// The word for people and for `--json`.
    pub fn word(self) -> &'static str {
        match self {
            Verb::Install => "install",
            Verb::Upgrade => "upgrade",
            Verb::Downgrade => "downgrade",
            Verb::Reinstall => "reinstall",
            Verb::Remove => "remove",
        }
    }
}

/// One package's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What happens.
    pub verb: Verb,
    /// The package name.
    pub name: String,
    /// `version-release` before, if it was installed.
    pub from: Option<String>,
    /// `version-release` after, unless removed.
    pub to: Option<String>,
}

impl Change {
    /// `name-version-release` of what the change leaves (or takes away, for a removal).
    fn full_name(&self) -> String {
        match (&self.to, &self.from) {
            (Some(v), _) => format!("{}-{v}", self.name),
            (None, _) if self.verb == Verb::Remove => self.name.clone(),
            (None, Some(v)) => format!("{}-{v}", self.name),
            (None, None) => self.name.clone(),
        }
    }
}

/// `version-release` of a package.
pub fn version_of(meta: &Meta) -> String {
    format!("{}-{}", meta.version, meta.release)
}

/// How many names a group of more than one package shows before "… and N more".
const SHOWN: usize = 3;

/// How many characters a group of several packages may take before it names fewer.
const GROUP_BUDGET: usize = 64;

/// "install 81 packages (adduser, apt, bash, … and 78 more)", naming `shown` of them.
fn group_text(verb: Verb, group: &[&&Change], shown: usize) -> String {
    let mut names: Vec<&str> = group.iter().take(shown).map(|c| c.name.as_str()).collect();
    let more = group.len().saturating_sub(shown);
    let tail = format!("… and {more} more");
    if more > 0 {
        names.push(&tail);
    }
    format!(
        "{} {} packages ({})",
        verb.word(),
        group.len(),
        names.join(", ")
    )
}

/// The one-line summary: one group per verb, in the order install, upgrade, downgrade,
/// reinstall, remove. A group of one names the package with its version ("upgrade nano-2-1"; a
/// removal just "remove vim"); a larger group counts them and names the first few,
/// alphabetically, as many as fit [`GROUP_BUDGET`]: "install 81 packages (adduser, apt,
/// bash, … and 78 more)".
pub fn summarize(changes: &[Change]) -> String {
    let mut sorted: Vec<&Change> = changes.iter().collect();
    sorted.sort_by(|a, b| (a.verb, &a.name).cmp(&(b.verb, &b.name)));
    let mut groups = Vec::new();
    for verb in [
        Verb::Install,
        Verb::Upgrade,
        Verb::Downgrade,
        Verb::Reinstall,
        Verb::Remove,
    ] {
        let group: Vec<&&Change> = sorted.iter().filter(|c| c.verb == verb).collect();
        match group.len() {
            0 => {}
            1 => groups.push(format!("{} {}", verb.word(), group[0].full_name())),
            n => {
                // As many names as fit the budget, at least one.
                let mut shown = SHOWN.min(n);
                loop {
                    let text = group_text(verb, &group, shown);
                    if shown == 1 || text.chars().count() <= GROUP_BUDGET {
                        groups.push(text);
                        break;
                    }
                    shown -= 1;
                }
            }
        }
    }
    groups.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(verb: Verb, name: &str) -> Change {
        Change {
            verb,
            name: name.to_owned(),
            from: (verb != Verb::Install).then(|| "1-1".to_owned()),
            to: (verb != Verb::Remove).then(|| "2-1".to_owned()),
        }
    }

    #[test]
    fn one_package_is_named_with_its_version() {
        assert_eq!(
            summarize(&[change(Verb::Install, "nano")]),
            "install nano-2-1"
        );
        assert_eq!(
            summarize(&[change(Verb::Upgrade, "tool")]),
            "upgrade tool-2-1"
        );
        assert_eq!(summarize(&[change(Verb::Remove, "vim")]), "remove vim");
    }

    #[test]
    fn many_packages_fit_one_line() {
        let changes: Vec<Change> = (0..81)
            .map(|i| change(Verb::Install, &format!("package-with-a-long-name-{i:02}")))
            .collect();
        let line = summarize(&changes);
        assert_eq!(
            line,
            "install 81 packages (package-with-a-long-name-00, … and 80 more)"
        );
        let short: Vec<Change> = ["adduser", "apt", "bash", "coreutils"]
            .iter()
            .chain(&["x"; 77])
            .map(|n| change(Verb::Install, n))
            .collect();
        assert_eq!(
            summarize(&short),
            "install 81 packages (adduser, apt, bash, … and 78 more)"
        );
    }

    #[test]
    fn groups_come_in_a_fixed_order_and_names_alphabetically() {
        let line = summarize(&[
            change(Verb::Remove, "zsh"),
            change(Verb::Install, "vim"),
            change(Verb::Remove, "bash"),
            change(Verb::Install, "nano"),
            change(Verb::Upgrade, "apt"),
        ]);
        assert_eq!(
            line,
            "install 2 packages (nano, vim), upgrade apt-2-1, remove 2 packages (bash, zsh)"
        );
        let four: Vec<Change> = ["d", "c", "b", "a"]
            .iter()
            .map(|n| change(Verb::Remove, n))
            .collect();
        assert_eq!(
            summarize(&four),
            "remove 4 packages (a, b, c, … and 1 more)"
        );
    }
}
