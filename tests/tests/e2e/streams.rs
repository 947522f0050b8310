//! Seeds 001/003: the tabs of one browser profile share one front and one reverse stream, get
//! what is meant for them exactly once and in order, and recover by themselves from a tab gone
//! offline, a backend restart and a wiped store; eight tabs all get active.

use anyhow::{Context, ensure};
use devserver::webdriver::Window;

use crate::harness::{App, DEADLINE, Server, serial};

const TWO_TABS: &str = "seeds 001/003: two tabs of one front";
const EIGHT_TABS: &str = "seeds 001/003: eight tabs";

/// A tab of the demo app and what it showed when it became active.
pub(crate) struct Tab {
    pub(crate) window: Window,
    pub(crate) label: String,
    pub(crate) front: String,
    pub(crate) session: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_001_003_two_tabs_share_a_front_and_recover() -> anyhow::Result<()> {
    let _turn = serial().await;
    let server = Server::start("seeds-001-003-two-tabs", |_| {}).await?;
    let app = App::start(&server, TWO_TABS, "seeds-001-003-two-tabs").await?;
    let result = two_tabs(&server, &app).await;
    app.finish(result).await?;
    drop(app);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_001_003_eight_tabs_are_active_and_get_a_broadcast() -> anyhow::Result<()> {
    let _turn = serial().await;
    let server = Server::start("seeds-001-003-eight-tabs", |_| {}).await?;
    let app = App::start(&server, EIGHT_TABS, "seeds-001-003-eight-tabs").await?;
    let result = eight_tabs(&server, &app).await;
    app.finish(result).await?;
    drop(app);
    server.stop().await
}

async fn two_tabs(server: &Server, app: &App) -> anyhow::Result<()> {
    app.step("two tabs open the demo");
    let a = open_tab(app, "tab A", true).await?;
    let b = open_tab(app, "tab B", false).await?;
    ensure!(a.front == b.front, "the tabs show two fronts: {} and {}", a.front, b.front);
    ensure!(a.session != b.session, "both tabs show the session {}", a.session);
    let mut roles = Vec::new();
    for tab in [&a, &b] {
        app.switch(&tab.window, &tab.label).await?;
        roles.push(app.read("#front-role").await?);
    }
    roles.sort();
    ensure!(roles == ["follower", "leader"], "the tabs' stream roles are {roles:?}");
    let tabs = [&a, &b];

    app.step("a broadcast from tab A reaches both tabs");
    app.switch(&a.window, &a.label).await?;
    app.fill("#direct-text", "hello from tab A").await?;
    app.click("#broadcast-button").await?;
    app.wait_text("#direct-result", "Sent").await?;
    for tab in tabs {
        app.switch(&tab.window, &tab.label).await?;
        app.wait_text("#events", "hello from tab A").await?;
    }
    app.shot("tab-b-got-the-broadcast").await?;

    app.step("an echo requested by tab B comes back to tab B only");
    app.switch(&b.window, &b.label).await?;
    app.fill("#direct-text", "echo for tab B").await?;
    app.click("#echo-button").await?;
    app.wait_text("#direct-result", "Echoed back").await?;
    app.wait_text("#events", "echo for tab B").await?;

    app.step("an event targeted at tab B reaches tab B only");
    server.emit(&a.front, Some(&b.session), "only-b").await?;
    app.switch(&b.window, &b.label).await?;
    app.wait_text("#events", &quoted("only-b")).await?;
    server.emit(&a.front, None, "after-only-b").await?;
    app.switch(&a.window, &a.label).await?;
    let seen = app.wait_text("#events", &quoted("after-only-b")).await?;
    ensure!(
        !seen.contains(&quoted("only-b")) && !seen.contains("echo for tab B"),
        "tab A shows what was meant for tab B: {seen}"
    );

    app.step("the leader tab goes offline and comes back");
    let leader = leader_of(app, &tabs).await?;
    app.switch(&leader.window, &leader.label).await?;
    app.browser.set_offline(true).await?;
    app.wait_for("#stream-state", "not active", DEADLINE, |state| state != "active").await?;
    let marks = ["offline-1", "offline-2", "offline-3"];
    for mark in marks {
        server.emit(&a.front, None, mark).await?;
    }
    app.shot("leader-offline").await?;
    app.browser.set_offline(false).await?;
    expect_once_in_order(server, app, &tabs, &marks, "offline-end").await?;
    app.switch(&leader.window, &leader.label).await?;
    app.shot("leader-back-online").await?;

    app.step("the backend restarts: both tabs reconnect by themselves");
    let before = reconnects(app, &tabs).await?;
    server.emit(&a.front, None, "restart-1").await?;
    server.restart(false, 1000).await?;
    server.emit_when_accepted(&a.front, "restart-2").await?;
    server.emit(&a.front, None, "restart-3").await?;
    let marks = ["restart-1", "restart-2", "restart-3"];
    expect_once_in_order(server, app, &tabs, &marks, "restart-end").await?;
    let after = reconnects(app, &tabs).await?;
    ensure!(
        after.iter().zip(&before).all(|(after, before)| after > before),
        "the timelines do not show the reconnect (before {before:?}, after {after:?})"
    );
    app.shot("after-restart").await?;

    app.step("the backend's store is wiped: the tabs register again by themselves");
    server.restart(true, 500).await?;
    // Accepted only once the front is registered again.
    server.emit_when_accepted(&a.front, "wiped-1").await?;
    expect_once_in_order(server, app, &tabs, &["wiped-1"], "wiped-end").await?;
    for tab in tabs {
        app.switch(&tab.window, &tab.label).await?;
        ensure!(app.read("#front-uuid").await? == a.front, "{} shows another front", tab.label);
    }
    // The stream resumed after an id the wiped store never gave: no silent gap, the tab that
    // holds the shared stream is told.
    let mut told = false;
    for _ in 0..50 {
        for tab in tabs {
            app.switch(&tab.window, &tab.label).await?;
            told |= app.read("#timeline").await?.contains("events_lost");
        }
        if told {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    ensure!(told, "no tab's timeline shows events_lost after the wiped store");
    app.switch(&b.window, &b.label).await?;
    app.fill("#direct-text", "echo after the wipe").await?;
    app.click("#echo-button").await?;
    app.wait_text("#direct-result", "Echoed back").await?;
    app.wait_text("#events", "echo after the wipe").await?;
    app.shot("after-wipe").await?;
    Ok(())
}

async fn eight_tabs(server: &Server, app: &App) -> anyhow::Result<()> {
    app.step("eight tabs open the demo");
    let mut tabs = Vec::new();
    for n in 1..=8 {
        tabs.push(open_tab(app, &format!("tab {n}"), n == 1).await?);
    }
    let tabs: Vec<&Tab> = tabs.iter().collect();
    let front = &tabs[0].front;
    let mut sessions = Vec::new();
    let mut leaders = 0;
    for tab in &tabs {
        ensure!(&tab.front == front, "{} shows the front {}, not {front}", tab.label, tab.front);
        sessions.push(tab.session.clone());
        app.switch(&tab.window, &tab.label).await?;
        app.wait_exact("#stream-state", "active").await?;
        leaders += usize::from(app.read("#front-role").await? == "leader");
    }
    sessions.sort();
    sessions.dedup();
    ensure!(sessions.len() == 8, "eight tabs show {} session UUIDs", sessions.len());
    ensure!(leaders == 1, "{leaders} of the eight tabs lead the stream");

    app.step("a broadcast reaches every tab");
    server.emit(front, None, "to-all-eight").await?;
    for tab in &tabs {
        app.switch(&tab.window, &tab.label).await?;
        app.wait_text("#events", &quoted("to-all-eight")).await?;
    }
    app.shot("tab-8-got-the-broadcast").await?;
    Ok(())
}

/// Opens the demo in the first tab (`first`) or a new one and waits until its stream is active.
pub(crate) async fn open_tab(app: &App, label: &str, first: bool) -> anyhow::Result<Tab> {
    let window = if first { app.browser.window().await? } else { app.browser.new_tab().await? };
    app.switch(&window, label).await?;
    app.open("/").await?;
    app.wait_exact("#stream-state", "active").await?;
    let front = app.read("#front-uuid").await?;
    let session = app.read("#session-uuid").await?;
    Ok(Tab { window, label: label.to_owned(), front, session })
}

/// The tab whose stream role is `leader`.
pub(crate) async fn leader_of<'a>(app: &App, tabs: &[&'a Tab]) -> anyhow::Result<&'a Tab> {
    for tab in tabs {
        app.switch(&tab.window, &tab.label).await?;
        if app.read("#front-role").await? == "leader" {
            return Ok(tab);
        }
    }
    anyhow::bail!("no tab leads the stream")
}

/// How often each tab's timeline says it went `reconnecting`.
pub(crate) async fn reconnects(app: &App, tabs: &[&Tab]) -> anyhow::Result<Vec<usize>> {
    let mut counts = Vec::new();
    for tab in tabs {
        app.switch(&tab.window, &tab.label).await?;
        counts.push(app.read("#timeline").await?.matches("→ reconnecting").count());
    }
    Ok(counts)
}

/// How a mark appears in the event log (the data is shown as pretty JSON).
fn quoted(mark: &str) -> String {
    format!("\"{mark}\"")
}

/// Publishes `end` after everything else, then checks in every tab that the stream is active
/// and `marks` and `end` are shown, each exactly once, in order (anything repeated by a replay
/// would have arrived before `end`).
pub(crate) async fn expect_once_in_order(
    server: &Server,
    app: &App,
    tabs: &[&Tab],
    marks: &[&str],
    end: &str,
) -> anyhow::Result<()> {
    let front = &tabs.first().context("no tabs")?.front;
    server.emit_when_accepted(front, end).await?;
    let all: Vec<&str> = marks.iter().copied().chain([end]).collect();
    for tab in tabs {
        app.switch(&tab.window, &tab.label).await?;
        app.wait_for("#stream-state", "active", DEADLINE * 2, |state| state == "active").await?;
        let log = app
            .wait_for("#events", &format!("{all:?}"), DEADLINE * 2, |log| {
                all.iter().all(|mark| log.contains(&quoted(mark)))
            })
            .await?;
        // The log shows the newest event first.
        let mut previous = usize::MAX;
        for mark in &all {
            let count = log.matches(&quoted(mark)).count();
            ensure!(count == 1, "{}: {mark:?} is shown {count} times: {log}", tab.label);
            let at = log.find(&quoted(mark)).unwrap_or_default();
            ensure!(at < previous, "{}: {mark:?} is out of order: {log}", tab.label);
            previous = at;
        }
    }
    Ok(())
}
