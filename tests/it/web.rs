//! The web dashboard's routes against a real server: status codes, escaping,
//! CSRF and role checks, paging, and what each action changes.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

use crate::common::certs::temp_dir;
use crate::common::{TestServer, enqueue, eventually_async, job, lease, open_stream};
use jobq::config::Config;
use jobq::grpc::pb;
use jobq::queue::{JobId, JobState};

const ADMIN: &str = "admin-token-0123456789abc";
const VIEWER: &str = "viewer-token-0123456789ab";
const PRODUCER: &str = "producer-token-0123456789";
const XSS: &str = "<script>alert(1)</script>";
const ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;";

/// A browser of one person: their cookies, no redirects followed.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

/// One answer.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The CSRF token of the page's first form that carries one.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find(r#"name="csrf" value=""#)
            .expect("a form with a CSRF token");
        let rest = &self.body[at + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').expect("closing quote")].to_string()
    }
}

impl Browser {
    fn new(server: &TestServer) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: format!("http://{}", server.web_addr),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Answer {
        let request = if self.cookies.is_empty() {
            request
        } else {
            request.header(reqwest::header::COOKIE, self.cookie_header())
        };
        let response = request.send().await.expect("the dashboard answers");
        for value in response.headers().get_all(SET_COOKIE) {
            let text = value.to_str().expect("ascii cookie");
            let (pair, _) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').expect("name=value");
            self.cookies.retain(|(k, _)| k != name);
            if !value.is_empty() {
                self.cookies.push((name.to_string(), value.to_string()));
            }
        }
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.expect("body"),
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let body = form
            .iter()
            .fold(
                form_urlencoded::Serializer::new(String::new()),
                |mut s, (k, v)| {
                    s.append_pair(k, v);
                    s
                },
            )
            .finish();
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(request).await
    }
}

/// A job dead-lettered in `queue` by a worker's nack, with `reason`.
async fn dead_job(server: &TestServer, queue: &str, new_job: pb::NewJob, reason: &str) -> JobId {
    let mut client = server.client();
    let id = enqueue(&mut client, queue, new_job).await;
    let leases = lease(&mut client, queue, 1, 5).await;
    client
        .nack(pb::NackRequest {
            queue: queue.into(),
            lease_token: leases[0].lease_token.clone(),
            retry_delay: None,
            dead_letter: true,
            reason: reason.into(),
        })
        .await
        .expect("nack");
    id.parse().expect("job id")
}

async fn state_of(server: &TestServer, queue: &str, id: &JobId) -> Option<JobState> {
    server.job_status(queue, id).await.map(|s| s.state)
}

#[tokio::test]
async fn the_overview_lists_queues_with_their_counts_and_strict_headers() {
    let server = TestServer::start().await;
    let mut client = server.client();
    for n in 0..1234 {
        enqueue(&mut client, "emails", job(&format!("job {n}"))).await;
    }
    let mut browser = Browser::new(&server);
    let page = browser.get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains(r#"<a href="/queue?name=emails">emails</a>"#),
        "{}",
        page.body
    );
    // The overview's counts may be the store's figures of a moment ago
    // (postgres counts every 2 s), so they are waited for.
    let overview = browser.http.get(format!("{}/", browser.base));
    let mut counts = String::new();
    eventually_async(
        "the overview counts 1,234 jobs, with a separator",
        async || {
            let request = overview.try_clone().expect("a GET clones");
            counts = request
                .send()
                .await
                .expect("answer")
                .text()
                .await
                .expect("body");
            counts.contains(">1,234<")
        },
    )
    .await;
    let store = format!("{} store", server.engine.store_kind());
    assert!(page.body.contains(&store), "the footer names the store");
    let csp = page.headers["content-security-policy"]
        .to_str()
        .expect("ascii");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(page.headers["x-frame-options"], "DENY");
    let cookie = page.headers[SET_COOKIE].to_str().expect("ascii");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    // Assets are embedded and cached by version.
    let css = browser.get("/assets/dashboard.css?v=whatever").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.body.contains("prefers-color-scheme: dark"));
    assert_eq!(
        browser.get("/assets/nope.js").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(browser.get("/nowhere").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn payloads_metadata_and_errors_render_as_text_never_as_markup() {
    let server = TestServer::start().await;
    let mut hostile = job(XSS);
    hostile.metadata.insert(XSS.into(), XSS.into());
    let id = dead_job(&server, "xss", hostile, XSS).await;
    let mut browser = Browser::new(&server);
    for path in [
        format!("/job?queue=xss&id={id}"),
        "/dead?queue=xss".to_string(),
        "/queue?name=xss".to_string(),
        format!("/queue?name=xss&q={}", urlencode(XSS)),
    ] {
        let page = browser.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(
            !page.body.contains(XSS),
            "{path} holds raw markup:\n{}",
            page.body
        );
        assert!(page.body.contains(ESCAPED), "{path} shows the text escaped");
    }
    // A bad queue name in an error page is escaped too.
    let page = browser
        .get(&format!("/queue?name={}", urlencode(XSS)))
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn an_action_without_the_sessions_csrf_token_is_refused() {
    let server = TestServer::start().await;
    enqueue(&mut server.client(), "q", job("a")).await;
    let mut browser = Browser::new(&server);
    let page = browser.get("/queue?name=q").await;
    let csrf = page.csrf();
    for form in [
        vec![("queue", "q")],
        vec![("queue", "q"), ("csrf", "0123")],
        vec![("queue", "q"), ("csrf", &csrf[..csrf.len() - 1])],
    ] {
        let refused = browser.post("/act/pause", &form).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(refused.body.contains("CSRF token"), "{}", refused.body);
    }
    // The right token from another browser (no session cookie) is refused.
    let mut stranger = Browser::new(&server);
    let refused = stranger
        .post("/act/pause", &[("queue", "q"), ("csrf", &csrf)])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(!server.info("q").await.expect("queue").paused);

    let done = browser
        .post("/act/pause", &[("queue", "q"), ("csrf", &csrf)])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(done.location(), "/queue?name=q");
    assert!(server.info("q").await.expect("queue").paused);
    let after = browser.get(done.location()).await;
    assert!(
        after.body.contains("Paused q"),
        "the page says what was done"
    );
    assert!(after.body.contains("Resume leasing"));
    let done = browser
        .post("/act/resume", &[("queue", "q"), ("csrf", &csrf)])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert!(!server.info("q").await.expect("queue").paused);
}

#[tokio::test]
async fn a_dead_job_is_shown_whole_and_redriven() {
    let server = TestServer::start().await;
    let mut new_job = job(r#"{"to":"alice@example.com","attempt":[1,2]}"#);
    new_job.metadata.insert("tenant".into(), "acme".into());
    new_job.metadata.insert(
        "traceparent".into(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
    );
    let id = dead_job(&server, "emails", new_job, "550 mailbox unavailable").await;
    let mut browser = Browser::new(&server);
    let page = browser.get(&format!("/job?queue=emails&id={id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    for shown in [
        "550 mailbox unavailable",
        "tenant",
        "acme",
        "&quot;to&quot;: &quot;alice@example.com&quot;",
        "0af7651916cd43dd8448eb211c80319c",
        "Redrive",
        "1 of 10",
    ] {
        assert!(page.body.contains(shown), "{shown} missing:\n{}", page.body);
    }
    // Without a queue, the job is looked up everywhere.
    let found = browser.get(&format!("/job?id={id}")).await;
    assert_eq!(found.status, StatusCode::SEE_OTHER);
    assert_eq!(found.location(), format!("/job?queue=emails&id={id}"));

    let csrf = page.csrf();
    let done = browser
        .post(
            "/act/redrive",
            &[
                ("queue", "emails"),
                ("id", &id.to_string()),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(
        state_of(&server, "emails", &id).await,
        Some(JobState::Ready)
    );
    let again = browser
        .post(
            "/act/redrive",
            &[
                ("queue", "emails"),
                ("id", &id.to_string()),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(
        again.status,
        StatusCode::CONFLICT,
        "a ready job cannot be redriven"
    );
    assert!(again.body.contains("not dead-lettered"), "{}", again.body);

    let gone = browser
        .get("/job?queue=emails&id=01JDQ0Z6Y7R3M2A9V5B8C4D1EF")
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let bad = browser.get("/job?queue=emails&id=nope").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("not a job id"), "{}", bad.body);
}

#[tokio::test]
async fn a_trace_id_links_through_the_configured_template() {
    let server = TestServer::start_with(Config {
        web_trace_url: Some("http://jaeger.local:16686/trace/{trace_id}".into()),
        ..Config::defaults()
    })
    .await;
    let mut new_job = job("traced");
    new_job.metadata.insert(
        "traceparent".into(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
    );
    let id = enqueue(&mut server.client(), "q", new_job).await;
    let page = Browser::new(&server)
        .get(&format!("/job?queue=q&id={id}"))
        .await;
    assert!(
        page.body
            .contains(r#"href="http://jaeger.local:16686/trace/0af7651916cd43dd8448eb211c80319c""#),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn payloads_show_as_text_or_hex_and_download_whole() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let binary = pb::NewJob {
        payload: vec![0u8, 159, 146, 150, b'A'].into(),
        ..pb::NewJob::default()
    };
    let id = enqueue(&mut client, "bin", binary).await;
    let mut browser = Browser::new(&server);
    let page = browser.get(&format!("/job?queue=bin&id={id}")).await;
    assert!(
        page.body.contains("00000000  00 9f 92 96 41"),
        "{}",
        page.body
    );
    assert!(page.body.contains("(binary, 5 B)"), "{}", page.body);
    let download = browser
        .http
        .get(format!("{}/job/payload?queue=bin&id={id}", browser.base))
        .header(reqwest::header::COOKIE, browser.cookie_header())
        .send()
        .await
        .expect("download");
    assert_eq!(download.status(), StatusCode::OK);
    let disposition = download.headers()["content-disposition"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert_eq!(
        download.bytes().await.expect("bytes").as_ref(),
        [0u8, 159, 146, 150, b'A']
    );

    let big = "x".repeat(100 * 1024);
    let id = enqueue(&mut client, "bin", job(&big)).await;
    let page = browser.get(&format!("/job?queue=bin&id={id}")).await;
    assert!(page.body.contains("Only the start is shown"));
    assert!(page.body.len() < big.len(), "the page holds only the start");
}

#[tokio::test]
async fn a_leased_job_names_its_holder_and_deadline_and_cannot_be_cancelled() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let id = enqueue(&mut client, "q", job("work")).await;
    lease(&mut client, "q", 1, 5).await;
    let mut browser = Browser::new(&server);
    let page = browser.get(&format!("/job?queue=q&id={id}")).await;
    assert!(page.body.contains("Lease ends"), "{}", page.body);
    assert!(page.body.contains("a unary Lease call"), "{}", page.body);
    assert!(
        !page.body.contains(">Cancel<"),
        "a leased job offers no cancel"
    );
    let csrf = browser.get("/queue?name=q").await.csrf();
    let refused = browser
        .post(
            "/act/cancel",
            &[("queue", "q"), ("id", &id), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused.body.contains("leased by a worker"),
        "{}",
        refused.body
    );

    let ready = enqueue(&mut client, "q", job("other")).await;
    let done = browser
        .post(
            "/act/cancel",
            &[("queue", "q"), ("id", &ready), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let id: JobId = ready.parse().expect("id");
    assert_eq!(state_of(&server, "q", &id).await, Some(JobState::Cancelled));
}

#[tokio::test]
async fn a_job_leased_by_a_stream_names_the_stream() {
    let server = TestServer::start().await;
    let id = enqueue(&mut server.client(), "q", job("work")).await;
    let mut stream = open_stream(&server, "q", 1).await;
    assert_eq!(stream.next_lease().await.job.expect("job").id, id);
    let page = Browser::new(&server)
        .get(&format!("/job?queue=q&id={id}"))
        .await;
    assert!(page.body.contains(" by worker stream "), "{}", page.body);
    assert!(page.body.contains("Lease ends"), "{}", page.body);
}

#[tokio::test]
async fn dead_letters_are_redriven_or_deleted_in_bulk() {
    let server = TestServer::start().await;
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(
            dead_job(&server, "d", job(&format!("{n}")), "boom")
                .await
                .to_string(),
        );
    }
    let mut browser = Browser::new(&server);
    let page = browser.get("/dead?queue=d").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("data-select-all"));
    for id in &ids {
        assert!(page.body.contains(&format!(r#"name="id" value="{id}""#)));
    }
    let csrf = page.csrf();
    let none = browser
        .post(
            "/act/dead",
            &[("queue", "d"), ("action", "redrive"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST);
    assert!(none.body.contains("no job was selected"));
    let done = browser
        .post(
            "/act/dead",
            &[
                ("queue", "d"),
                ("action", "redrive"),
                ("id", &ids[0]),
                ("id", &ids[1]),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(server.counts("d").await.expect("queue").dead, 2);
    assert!(
        browser
            .get("/dead?queue=d")
            .await
            .body
            .contains("Redrove 2 of the 2 jobs selected")
    );
    let done = browser
        .post(
            "/act/dead",
            &[
                ("queue", "d"),
                ("action", "delete"),
                ("id", &ids[2]),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(server.counts("d").await.expect("queue").dead, 1);
    let done = browser
        .post(
            "/act/dead",
            &[("queue", "d"), ("action", "redrive-all"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let counts = server.counts("d").await.expect("queue");
    assert_eq!((counts.dead, counts.ready), (0, 3));
    let bad = browser
        .post(
            "/act/dead",
            &[("queue", "d"), ("action", "explode"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_purge_asks_first_naming_the_count() {
    let server = TestServer::start().await;
    for n in 0..3 {
        dead_job(&server, "p", job(&format!("{n}")), "boom").await;
    }
    let mut browser = Browser::new(&server);
    let confirm = browser.get("/queue/purge?name=p&target=dead").await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(
        confirm.body.contains("Delete 3 dead jobs"),
        "{}",
        confirm.body
    );
    assert_eq!(
        server.counts("p").await.expect("queue").dead,
        3,
        "asking deletes nothing"
    );
    let csrf = confirm.csrf();
    let done = browser
        .post(
            "/act/purge",
            &[("queue", "p"), ("target", "dead"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(server.counts("p").await.expect("queue").dead, 0);
    assert!(
        browser
            .get(done.location())
            .await
            .body
            .contains("Deleted 3 dead jobs of p")
    );
    let bad = browser.get("/queue/purge?name=p&target=everything").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn settings_are_saved_and_bad_values_say_what_would_do() {
    let server = TestServer::start().await;
    enqueue(&mut server.client(), "s", job("a")).await;
    let mut browser = Browser::new(&server);
    let csrf = browser.get("/queue?name=s").await.csrf();
    let done = browser
        .post(
            "/act/settings",
            &[
                ("queue", "s"),
                ("capacity", "5,000"),
                ("lease_duration", "2m"),
                ("max_attempts", "3"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let config = server.info("s").await.expect("queue").config;
    assert_eq!(config.capacity, 5000);
    assert_eq!(config.lease_duration, std::time::Duration::from_secs(120));
    assert_eq!(config.max_attempts, 3);
    for (field, value, says) in [
        ("lease_duration", "forever", "is not a duration"),
        ("capacity", "0", "must be from 1"),
        ("max_attempts", "lots", "is not a whole number"),
        ("backoff_base", "2h", "would exceed backoff_cap"),
    ] {
        let refused = browser
            .post(
                "/act/settings",
                &[("queue", "s"), (field, value), ("csrf", &csrf)],
            )
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{field}={value}");
        assert!(
            refused.body.contains(says),
            "{field}={value}: {}",
            refused.body
        );
    }
    let missing = browser
        .post(
            "/act/settings",
            &[("queue", "nope"), ("capacity", "5"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn jobs_page_by_state_and_are_found_by_id_or_metadata() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let mut ids = Vec::new();
    for n in 0..120 {
        let mut new_job = job(&format!("{n}"));
        new_job
            .metadata
            .insert("order".into(), format!("order-{n}"));
        ids.push(enqueue(&mut client, "big", new_job).await);
    }
    let mut browser = Browser::new(&server);
    let first = browser.get("/queue?name=big&state=ready").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        first.body.matches("<tr>").count(),
        1 + 50,
        "a header row and 50 jobs"
    );
    assert!(first.body.contains(&ids[49]) && !first.body.contains(&ids[50]));
    let next = format!("/queue?name=big&amp;state=ready&amp;after={}", ids[49]);
    assert!(first.body.contains(&next), "a next-page link");
    let second = browser
        .get(&format!("/queue?name=big&state=ready&after={}", ids[49]))
        .await;
    assert!(
        second.body.contains(&ids[50])
            && second.body.contains(&ids[99])
            && !second.body.contains(&ids[100])
    );
    let dead = browser.get("/queue?name=big&state=dead").await;
    assert!(dead.body.contains("No jobs here."));

    let by_id = browser.get(&format!("/queue?name=big&q={}", ids[7])).await;
    assert_eq!(by_id.body.matches("<tr>").count(), 2, "{}", by_id.body);
    let by_value = browser.get("/queue?name=big&q=order-11").await;
    // order-11 and order-110 .. order-119 hold it.
    assert_eq!(by_value.body.matches("<tr>").count(), 1 + 11);
    let exact = browser.get("/queue?name=big&q=order%3Dorder-11").await;
    assert_eq!(exact.body.matches("<tr>").count(), 2);

    for (path, status) in [
        ("/queue?name=big&state=finished", StatusCode::BAD_REQUEST),
        ("/queue?name=big&after=nope", StatusCode::BAD_REQUEST),
        ("/queue", StatusCode::BAD_REQUEST),
        ("/queue?name=missing", StatusCode::NOT_FOUND),
        ("/dead?queue=missing", StatusCode::NOT_FOUND),
        ("/?after=bad%20name", StatusCode::BAD_REQUEST),
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, status, "{path}: {}", page.body);
    }
}

#[tokio::test]
async fn schedules_are_listed_and_paused_resumed_and_fired() {
    let server = TestServer::start().await;
    pb::schedules_client::SchedulesClient::new(server.channel.clone())
        .set_schedule(pb::SetScheduleRequest {
            name: "hourly-report".into(),
            settings: Some(pb::ScheduleSettings {
                queue: "reports".into(),
                job: Some(pb::JobTemplate {
                    payload: "sales".into(),
                    ..Default::default()
                }),
                trigger: Some(pb::schedule_settings::Trigger::Cron("0 * * * *".into())),
                ..Default::default()
            }),
        })
        .await
        .expect("set");
    let mut browser = Browser::new(&server);
    let list = browser.get("/schedules").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        list.body.contains("hourly-report") && list.body.contains("0 * * * *"),
        "{}",
        list.body
    );
    let page = browser.get("/schedule?name=hourly-report").await;
    assert!(page.body.contains("Next fires") && page.body.contains("It has not fired yet."));
    let csrf = page.csrf();
    for action in ["pause", "resume", "trigger"] {
        let done = browser
            .post(
                "/act/schedule",
                &[
                    ("name", "hourly-report"),
                    ("action", action),
                    ("csrf", &csrf),
                ],
            )
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{action}");
    }
    assert_eq!(server.counts("reports").await.expect("fired").ready, 1);
    let page = browser.get("/schedule?name=hourly-report").await;
    assert!(
        page.body.contains("Fired hourly-report now"),
        "{}",
        page.body
    );
    assert_eq!(
        browser.get("/schedule?name=nope").await.status,
        StatusCode::NOT_FOUND
    );
}

async fn server_with_tokens() -> TestServer {
    let file = temp_dir("web-tokens").join("tokens");
    std::fs::write(
        &file,
        format!("admin {ADMIN}\nviewer {VIEWER}\nproducer {PRODUCER}\n"),
    )
    .expect("write tokens");
    TestServer::start_with(Config {
        auth_tokens_file: Some(file),
        ..Config::defaults()
    })
    .await
}

/// Logs in with `token`, from the login form.
async fn log_in(browser: &mut Browser, token: &str) -> Answer {
    let form = browser.get("/login?next=%2Fqueue%3Fname%3Dq").await;
    assert_eq!(form.status, StatusCode::OK);
    let csrf = form.csrf();
    browser
        .post(
            "/login",
            &[("token", token), ("csrf", &csrf), ("next", "/queue?name=q")],
        )
        .await
}

#[tokio::test]
async fn with_tokens_only_viewers_and_admins_get_in_and_only_admins_act() {
    let server = server_with_tokens().await;
    enqueue_with_token(&server).await;
    let mut anonymous = Browser::new(&server);
    let sent = anonymous.get("/queue?name=q").await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER);
    assert_eq!(sent.location(), "/login?next=%2Fqueue%3Fname%3Dq");
    assert_eq!(anonymous.get("/").await.status, StatusCode::SEE_OTHER);
    assert_eq!(
        anonymous
            .get("/job/payload?queue=q&id=01JDQ0Z6Y7R3M2A9V5B8C4D1EF")
            .await
            .status,
        StatusCode::SEE_OTHER
    );

    let refused = log_in(&mut Browser::new(&server), PRODUCER).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused
            .body
            .contains("A producer token cannot open the dashboard"),
        "{}",
        refused.body
    );
    let refused = log_in(&mut Browser::new(&server), "not-a-token-at-all-0000").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    // A login form posted without its cookie (from another site) is refused.
    let mut stranger = Browser::new(&server);
    let refused = stranger
        .post("/login", &[("token", ADMIN), ("csrf", "x")])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let mut viewer = Browser::new(&server);
    let in_ = log_in(&mut viewer, VIEWER).await;
    assert_eq!(in_.status, StatusCode::SEE_OTHER);
    assert_eq!(in_.location(), "/queue?name=q");
    let page = viewer.get("/queue?name=q").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Signed in as <strong>viewer</strong>"));
    assert!(!page.body.contains("Pause leasing") && !page.body.contains("Save settings"));
    let csrf = page.csrf();
    let refused = viewer
        .post("/act/pause", &[("queue", "q"), ("csrf", &csrf)])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused
            .body
            .contains("a viewer may look but not change anything"),
        "{}",
        refused.body
    );
    assert!(!server.info("q").await.expect("queue").paused);

    let mut admin = Browser::new(&server);
    assert_eq!(
        log_in(&mut admin, ADMIN).await.status,
        StatusCode::SEE_OTHER
    );
    let page = admin.get("/queue?name=q").await;
    assert!(page.body.contains("Pause leasing"));
    let csrf = page.csrf();
    let done = admin
        .post("/act/pause", &[("queue", "q"), ("csrf", &csrf)])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert!(server.info("q").await.expect("queue").paused);

    let out = admin.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(
        admin.get("/").await.status,
        StatusCode::SEE_OTHER,
        "logged out"
    );
}

async fn enqueue_with_token(server: &TestServer) {
    let mut request = tonic::Request::new(pb::EnqueueRequest {
        queue: "q".into(),
        job: Some(job("a")),
        wait_for_room: false,
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {ADMIN}").parse().expect("header"),
    );
    server.client().enqueue(request).await.expect("enqueue");
}

#[tokio::test]
async fn without_tokens_only_requests_to_a_loopback_host_are_answered() {
    let server = TestServer::start().await;
    let browser = Browser::new(&server);
    let answer = browser
        .http
        .get(format!("{}/", browser.base))
        .header(reqwest::header::HOST, "attacker.example")
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), StatusCode::MISDIRECTED_REQUEST);
    let body = answer.text().await.expect("body");
    assert!(body.contains("only requests to localhost"), "{body}");
}

#[tokio::test]
async fn without_tokens_the_server_will_not_serve_the_dashboard_beyond_loopback() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_jobq"))
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(["--web-listen", "0.0.0.0:0"])
        .env_remove("JOBQ_AUTH_TOKENS")
        .env_remove("JOBQ_WEB_ALLOW_UNAUTHENTICATED")
        .output()
        .await
        .expect("jobq runs");
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("--web-listen 0.0.0.0:"), "{said}");
    assert!(said.contains("no auth tokens are configured"), "{said}");
    assert!(said.contains("--web-allow-unauthenticated"), "{said}");
}

#[tokio::test]
async fn guessing_tokens_is_held_to_twenty_tries_a_minute() {
    let server = server_with_tokens().await;
    let mut browser = Browser::new(&server);
    for _ in 0..20 {
        let refused = log_in(&mut browser, "not-a-token-at-all-0000").await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    }
    let held = log_in(&mut browser, ADMIN).await;
    assert_eq!(held.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        held.body.contains("Too many failed logins"),
        "{}",
        held.body
    );
}

#[tokio::test]
async fn a_session_opened_by_one_server_is_taken_by_another_with_the_same_tokens() {
    let (first, second) = (server_with_tokens().await, server_with_tokens().await);
    let mut browser = Browser::new(&first);
    assert_eq!(
        log_in(&mut browser, VIEWER).await.status,
        StatusCode::SEE_OTHER
    );
    browser.base = format!("http://{}", second.web_addr);
    let page = browser.get("/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Signed in as <strong>viewer</strong>"));
    // Logging out removes the cookie and ends the session where it was
    // logged out.
    let csrf = page.csrf();
    let session = browser.cookies.clone();
    assert_eq!(
        browser.post("/logout", &[("csrf", &csrf)]).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(browser.get("/").await.status, StatusCode::SEE_OTHER);
    browser.cookies = session;
    assert_eq!(
        browser.get("/").await.status,
        StatusCode::SEE_OTHER,
        "revoked here"
    );
}
