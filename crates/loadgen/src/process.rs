//! Stopping child processes with the processes they started, for the load tool's runs and the
//! test harnesses that start nginx (whose workers outlive a master that is killed).

use std::process::Stdio;
use std::time::Duration;

/// Stops a child started with std's `Command`, and the processes it started: SIGTERM, SIGKILL
/// if it has not exited within [`GRACE`], then its children (nginx's workers outlive a master
/// that is killed, holding its port and its parent's pipes). For the `Drop` of test harnesses.
pub fn stop_tree(child: &mut std::process::Child) {
    let descendants = children(child.id());
    signal("-TERM", child.id());
    let deadline = std::time::Instant::now() + GRACE;
    while std::time::Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    for descendant in descendants {
        signal("-KILL", descendant);
    }
}

/// How long a child may take to exit after SIGTERM before it is killed.
pub const GRACE: Duration = Duration::from_secs(3);

/// Sends `signal` (`-TERM`, `-KILL`) to `pid` with kill(1); a process that is gone is no
/// error.
pub fn signal(signal: &str, pid: u32) {
    let _ = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// The process ids whose parent is `pid` (nginx's workers), from /proc/*/stat.
pub fn children(pid: u32) -> Vec<u32> {
    let parent = |child: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
        // After the command name (in parentheses, may hold spaces): state, then the parent.
        stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse::<u32>().ok()
    };
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| parent(*child) == Some(pid))
        .collect()
}
