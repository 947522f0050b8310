//! The child processes a comparing command (`loadgen cluster`, `loadgen peer`) measures, and
//! their scratch directory: started on loopback, waited for until they serve, and stopped
//! (with the processes they started) when the command ends, whether it succeeded, failed or
//! was interrupted.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use loadgen::process::{GRACE, children, signal};

/// The children of a run and its scratch directory: dropping it kills the children still
/// running and removes the directory.
#[derive(Debug)]
pub(crate) struct Rig {
    children: Vec<Child>,
    dir: PathBuf,
}

impl Rig {
    /// An empty rig with a fresh scratch directory named after `kind` and this process.
    pub(crate) fn new(kind: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("loadgen-{kind}-{}", std::process::id()));
        // A directory left by an earlier run with the same process id holds nothing of value.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { children: Vec::new(), dir })
    }

    /// The scratch directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops every child: SIGTERM, and SIGKILL if it has not exited within [`GRACE`]; then
    /// kills the processes it had started (nginx's workers outlive a master that is killed).
    pub(crate) async fn stop(&mut self) {
        for mut child in self.children.drain(..) {
            let Some(pid) = child.id() else { continue };
            let descendants = children(pid);
            signal("-TERM", pid);
            if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
                let _ = child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            }
            for descendant in descendants {
                signal("-KILL", descendant);
            }
        }
    }

    /// Starts `command` as the child `name`, its stdout to be read with
    /// [`Rig::wait_for_line`] if `piped` (else dropped), its stderr to ours so that a failure
    /// to start explains itself. Returns its process id.
    pub(crate) fn spawn(
        &mut self,
        name: &str,
        mut command: Command,
        piped: bool,
    ) -> anyhow::Result<u32> {
        let stdout = if piped { Stdio::piped() } else { Stdio::null() };
        command.stdin(Stdio::null()).stdout(stdout).kill_on_drop(true);
        let child = command.spawn().with_context(|| format!("starting {name}"))?;
        let pid = child.id().with_context(|| format!("{name} has no process id"))?;
        self.children.push(child);
        Ok(pid)
    }

    /// The first line of the last spawned child's stdout that `parse` accepts, within
    /// `startup`; its stdout is drained from then on, so that it never blocks on a full pipe.
    pub(crate) async fn wait_for_line<T>(
        &mut self,
        name: &str,
        startup: Duration,
        parse: impl Fn(&str) -> Option<T>,
    ) -> anyhow::Result<T> {
        let stdout = self
            .children
            .last_mut()
            .and_then(|child| child.stdout.take())
            .with_context(|| format!("{name} has no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let found = tokio::time::timeout(startup, async {
            loop {
                let line = lines
                    .next_line()
                    .await
                    .with_context(|| format!("reading {name}'s output"))?
                    .with_context(|| format!("{name} exited before it was ready"))?;
                if let Some(found) = parse(&line) {
                    return anyhow::Ok(found);
                }
            }
        })
        .await
        .map_err(|_| anyhow!("{name} was not ready within {startup:?}"))??;
        // Ends when the child exits.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(found)
    }

    /// Waits until `ready` says yes (asked every 50 ms), failing if the last spawned child
    /// exits first or `startup` passes.
    pub(crate) async fn wait_until<F: Future<Output = bool>>(
        &mut self,
        name: &str,
        startup: Duration,
        mut ready: impl FnMut() -> F,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + startup;
        loop {
            if ready().await {
                return Ok(());
            }
            if let Some(child) = self.children.last_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!("{name} exited ({status}) before it was ready");
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{name} was not ready within {startup:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for child in &mut self.children {
            for descendant in child.id().map(children).unwrap_or_default() {
                signal("-KILL", descendant);
            }
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port free when asked. Another process could take it before the child binds it,
/// in which case the child exits and [`Rig::wait_until`] says so.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
