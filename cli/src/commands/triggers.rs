//! `mossfs triggers run | exec`, and the trigger flags of the commands that commit.

use std::io::Write;
use std::time::{Duration, Instant};

use mossfs_triggers::Action;

use mossfs_db::Query;

use super::{RootArg, report_recovery};
use crate::engine::{EngineError, Result, Root, triggers};

/// Flags of every command that commits a state.
#[derive(clap::Args, Debug, Clone)]
pub struct TriggerArgs {
    /// Run no transaction or system triggers.
    #[arg(long)]
    pub skip_triggers: bool,
    /// How long one trigger command may run before it is killed, with all it started
    /// (1 second to a week).
    #[arg(
        long,
        default_value_t = 300,
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u64).range(1..=mossfs_triggers::MAX_TIME_LIMIT.as_secs())
    )]
    pub trigger_timeout: u64,
}

impl Default for TriggerArgs {
    fn default() -> Self {
        TriggerArgs {
            skip_triggers: false,
            trigger_timeout: 300,
        }
    }
}

impl TriggerArgs {
    /// The engine's options for these flags.
    pub fn options(&self) -> triggers::Options {
        triggers::Options {
            skip: self.skip_triggers,
            time_limit: Duration::from_secs(self.trigger_timeout),
        }
    }
}

/// `mossfs triggers …`.
#[derive(clap::Subcommand, Debug)]
pub enum TriggersCommand {
    /// Run the system triggers of the active state again (after one failed).
    Run {
        #[command(flatten)]
        triggers: TriggerArgs,
        #[command(flatten)]
        root: RootArg,
    },
    /// Run one command in the transaction-trigger container over the active /usr, as a
    /// trigger would run; what it writes to /usr is thrown away. Prints the time taken.
    Exec {
        /// The program and its arguments.
        #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
        command: Vec<String>,
        #[command(flatten)]
        triggers: TriggerArgs,
        #[command(flatten)]
        root: RootArg,
    },
}

/// Runs `mossfs triggers …`.
pub fn run(command: &TriggersCommand, out: &mut dyn Write) -> Result<()> {
    match command {
        TriggersCommand::Run { triggers: t, root } => {
            let mut root = Root::open_write(&root.root)?;
            report_recovery(&root);
            root.triggers = t.options();
            let id = root
                .db
                .read()?
                .active()?
                .ok_or(EngineError::NoActiveState)?;
            triggers::after_exchange(&root, id, root.triggers)?;
            writeln!(
                out,
                "system triggers of state {id} ran; log: {}",
                triggers::log_path(&root, id).display()
            )?;
            Ok(())
        }
        TriggersCommand::Exec {
            command,
            triggers: t,
            root,
        } => {
            let root = Root::open_write(&root.root)?;
            report_recovery(&root);
            let scratch = root.staging();
            let (container, _) =
                triggers::overlay_container(&root, root.usr(), &scratch, t.options().time_limit)?;
            let action = Action::Run {
                program: command[0].clone(),
                args: command[1..].to_vec(),
            };
            let log = tempfile::tempfile().map_err(EngineError::Output)?;
            let started = Instant::now();
            let outcome = container.run(&action, &log);
            let elapsed = started.elapsed();
            let _ = mossfs_fs::blit::remove_tree(&scratch);
            let outcome = outcome?;
            let mut text = String::new();
            let mut log = log;
            use std::io::{Read, Seek};
            let _ = log.rewind();
            let _ = log.read_to_string(&mut text);
            out.write_all(text.as_bytes())?;
            writeln!(
                out,
                "{outcome} after {:.2} ms in the container",
                elapsed.as_secs_f64() * 1000.0
            )?;
            if outcome.success() {
                Ok(())
            } else {
                Err(EngineError::TriggerFailed(Box::new(
                    crate::engine::error::TriggerFailure {
                        scope: "exec",
                        trigger: "exec".into(),
                        command: action.to_string(),
                        outcome: outcome.to_string(),
                        log: "standard output".into(),
                        tail: String::new(),
                    },
                )))
            }
        }
    }
}
