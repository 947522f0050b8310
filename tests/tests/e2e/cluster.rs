//! Several instances act as one: the demo app through a real nginx, round-robin over two
//! development servers whose backends share one `redis-server`. Two tabs share a front and get
//! every event once, in order; the one-time-token login and its refreshes work whichever
//! instance each request reaches; one instance is killed (its runtime dropped, as `kill -9`
//! would) and the tabs resume on the other without losing or repeating an event.

use std::time::Duration;

use anyhow::{Context, ensure};
use server::redis_link::RedisTarget;
use server::tokens::EnterpriseStoreConfig;

use crate::harness::{App, Killable, Nginx, Redis, Server, serial};
use crate::login::{api, cookie, rotations};
use crate::streams::{Tab, expect_once_in_order, leader_of, open_tab, reconnects};

const SCENARIO: &str = "cluster: two backends on one Redis behind nginx";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backends_on_one_redis_behind_nginx_serve_the_demo_as_one() -> anyhow::Result<()> {
    let _turn = serial().await;
    let redis = Redis::start().await?;
    let url = redis.url();
    let shared = |config: &mut devserver::Config| {
        config.server = config.server.clone().with_redis(url.clone());
        // One-time login tokens where either instance can take them.
        config.server.tokens.enterprise_store = EnterpriseStoreConfig::Redis {
            target: RedisTarget::Single(url.clone()),
            key_prefix: "e2e-ott:".to_owned(),
        };
        // Short access tokens, so the page refreshes every two seconds or so.
        config.server.tokens.access_ttl = Duration::from_secs(4);
        config.server.tokens.refresh_grace = Duration::from_secs(1);
    };
    let a = Server::start("cluster-a", shared).await?;
    // B trusts A's venue stand-in, which nginx routes every venue path to.
    let venue_jwks = a.dev.standin().jwks();
    let mut b = Killable::start("cluster-b", |config| {
        shared(config);
        config.trusted_venue_jwks = Some(venue_jwks);
    })
    .await?;
    let nginx = Nginx::start(&a.url, &[&a.url, &b.url]).await?;
    let app = App::start_at(&nginx.url, SCENARIO, "cluster").await?;
    let result = steps(&a, &mut b, &nginx, &app).await;
    app.finish(result).await?;
    drop(app);
    drop(nginx);
    drop(b);
    a.stop().await
}

async fn steps(a: &Server, b: &mut Killable, nginx: &Nginx, app: &App) -> anyhow::Result<()> {
    app.step("two tabs open the demo through nginx: every request alternates between backends");
    let one = open_tab(app, "tab 1", true).await?;
    let two = open_tab(app, "tab 2", false).await?;
    ensure!(one.front == two.front, "the tabs show two fronts: {} and {}", one.front, two.front);
    let tabs: [&Tab; 2] = [&one, &two];
    a.emit(&one.front, None, "cluster-1").await?;
    a.emit(&one.front, Some(&two.session), "cluster-2").await?;
    expect_once_in_order(a, app, &[&two], &["cluster-1", "cluster-2"], "cluster-end").await?;
    expect_once_in_order(a, app, &[&one], &["cluster-1"], "cluster-end-1").await?;

    app.step("a broadcast from a tab reaches both tabs");
    app.switch(&one.window, &one.label).await?;
    app.fill("#direct-text", "broadcast through the cluster").await?;
    app.click("#broadcast-button").await?;
    for tab in tabs {
        app.switch(&tab.window, &tab.label).await?;
        app.wait_text("#events", "broadcast through the cluster").await?;
    }
    app.shot("broadcast").await?;

    app.step("alice logs in with a one-time link and her tokens refresh across the backends");
    let link = a.login_link("alice", &["CanAccessDashboard"]).await?;
    let link = link.replace(&a.url, &nginx.url);
    app.switch(&one.window, &one.label).await?;
    app.open(&link).await?;
    app.wait_text("#login-state", "alice").await?;
    let (first, _) = cookie(app).await?.context("no refresh cookie after the login")?;
    // Each refresh is a request of its own, so consecutive ones reach both backends: the
    // session and the signing key are shared.
    rotations(app, &first, 3).await?;
    api(app, "#api-dashboard", "200 OK /api/dashboard").await?;
    app.shot("logged-in-across-backends").await?;

    app.step("the backend that holds the tabs' shared stream is killed");
    app.open("/").await?;
    app.wait_exact("#stream-state", "active").await?;
    // The leader's stream lands on either backend; reopen it until it is on B (only B can be
    // killed), so the kill really cuts the stream the tabs depend on.
    let streams_on_a = || a.dev.backend().state().map_or(0, |state| state.events.stream_counts().1);
    let mut reopened = 0;
    while streams_on_a() > 0 {
        ensure!(reopened < 10, "the shared stream stays on backend A after {reopened} reopenings");
        let leader = leader_of(app, &tabs).await?;
        app.open("/").await?;
        app.wait_exact("#stream-state", "active").await?;
        reopened += 1;
        eprintln!("e2e [cluster] reopened {}'s page", leader.label);
    }
    let reconnects_before = reconnects(app, &tabs).await?;
    b.kill();
    a.emit_when_accepted(&one.front, "after-kill-1").await?;
    a.emit(&one.front, None, "after-kill-2").await?;
    let marks = ["after-kill-1", "after-kill-2"];
    expect_once_in_order(a, app, &tabs, &marks, "after-kill-end").await?;
    let reconnects_after = reconnects(app, &tabs).await?;
    ensure!(
        reconnects_after.iter().zip(&reconnects_before).any(|(after, before)| after > before),
        "no tab shows a reconnect after the kill ({reconnects_before:?} → {reconnects_after:?})"
    );
    app.switch(&one.window, &one.label).await?;
    app.wait_text("#login-state", "alice").await?;
    api(app, "#api-dashboard", "200 OK /api/dashboard").await?;
    app.shot("after-kill").await?;
    Ok(())
}
