//! The producer side of the email scenario: a web handler that enqueues the
//! emails a sign-up causes and answers at once, without waiting for SMTP.
//!
//! Run a server (`cargo run --release`), then:
//! `cargo run --example email_producer`
//! (`JOBQ_SERVER` overrides the address, default `http://127.0.0.1:50051`).

use std::time::{Duration, Instant};

use jobq_client::{Client, ClientError};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let server =
        std::env::var("JOBQ_SERVER").unwrap_or_else(|_| "http://127.0.0.1:50051".to_string());
    let client = Client::connect(server).await?;
    let users = ["alice", "bob", "carol", "dave", "mallory"];
    for user in users {
        let started = Instant::now();
        sign_up(&client, user).await?;
        println!(
            "signed up {user}: 3 emails queued, answered in {:?}",
            started.elapsed()
        );
    }
    Ok(())
}

/// What a sign-up handler does: queue the emails, answer the user.
async fn sign_up(client: &Client, user: &str) -> Result<(), ClientError> {
    // The address check matters most: the user is waiting for it.
    client
        .enqueue("emails", format!("{user}@example.com"))
        .metadata("template", "verify-address")
        .priority(10)
        .send()
        .await?;
    client
        .enqueue("emails", format!("{user}@example.com"))
        .metadata("template", "welcome")
        .send()
        .await?;
    // The admins can wait a minute, and should not be retried forever.
    client
        .enqueue("emails", "admins@example.com")
        .metadata("template", "new-user")
        .metadata("user", user)
        .priority(-5)
        .delay(Duration::from_secs(1))
        .max_attempts(3)
        .send()
        .await?;
    Ok(())
}
