//! The smallest complete embedding: configuration from the environment, start, one actor
//! recording through a handle clone and one through a `Recipient`, a preview, shutdown.
//!
//! `cargo run --example embed` (log-only here: the report is written to the log, not sent).

use std::time::Duration;

use actix::prelude::*;
use electric_telemetry::{
    ClientConnected, InitialSync, ReplicatedFromPg, SentToClients, Telemetry, TelemetryConfig,
    TelemetryMode,
};

/// The replication side: records through a clone of the handle (the cheapest path).
struct Replication {
    telemetry: Telemetry,
}

impl Actor for Replication {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_millis(100), |this, _| {
            this.telemetry.record(ReplicatedFromPg::new(1, 12)); // 1 transaction, 12 rows
            this.telemetry.record(SentToClients::new(1, 12)); // fanned out to one client
        });
    }
}

/// The shape server: holds only a `Recipient` for the one event it produces.
struct ShapeServer {
    initial_syncs: Recipient<InitialSync>,
}

impl Actor for ShapeServer {
    type Context = Context<Self>;
    fn started(&mut self, _: &mut Context<Self>) {
        self.initial_syncs.do_send(InitialSync::new(vec![120, 8])); // two shapes' row counts
    }
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let config = TelemetryConfig::builder()
        .electric_version(env!("CARGO_PKG_VERSION"))
        // Only for this example: reports go to the log. A service leaves this line out.
        .mode(TelemetryMode::LogOnly)
        .with_env()? // ELECTRIC_* variables; an opt-out always wins
        .build()?;
    let telemetry = Telemetry::start(config)?;

    telemetry.record(ClientConnected::new("client-42", "user-7")); // ids are hashed at once
    let replication = Replication {
        telemetry: telemetry.clone(),
    }
    .start();
    if let Some(collector) = telemetry.collector() {
        ShapeServer {
            initial_syncs: collector.recipient(),
        }
        .start();
    }

    actix_rt::time::sleep(Duration::from_secs(1)).await;
    if let Some(json) = telemetry.preview_json().await {
        println!("would send now:\n{json}");
    }
    drop(replication);
    // Before stopping the System: the final report of the partial window.
    telemetry.shutdown().await;
    Ok(())
}
