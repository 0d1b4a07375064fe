//! Single-node mode (no Redis): the spool is the bus, and an accepted event survives a restart.

use std::collections::HashSet;
use std::time::Duration;

use gatehouse_core::ids::{EventId, OrgId};
use gatehouse_events::Bus;
use tokio_util::sync::CancellationToken;

use crate::helpers::{call, config, drain, segments, temp_dir, unique};

#[tokio::test]
async fn events_survive_a_restart_and_are_deleted_once_acknowledged() {
    let spool = temp_dir("single-node");
    let cfg = config(None, &spool, &unique("single"), &[]);
    let org = OrgId::new();

    // First "process": emits 300 events, consumes and acknowledges only the first batch, then
    // stops (flushing what was emitted).
    let sent: Vec<_> = (0..300).map(|n| call(org, n)).collect();
    let ids: HashSet<EventId> = sent.iter().map(|m| m.id()).collect();
    let first_batch_ids: HashSet<EventId>;
    {
        let shutdown = CancellationToken::new();
        let mut bus = Bus::from_config(&cfg, shutdown.clone()).await.unwrap();
        for m in &sent {
            bus.publisher.emit(m.clone());
        }
        let batch = bus.consumer.next_batch(50, Duration::from_secs(5)).await.unwrap();
        assert!(!batch.messages.is_empty());
        first_batch_ids = batch.messages.iter().map(|m| m.id()).collect();
        bus.consumer.ack(batch).await.unwrap();
        // A batch read but never acknowledged (the worker crashed mid-transaction).
        let unacked = bus.consumer.next_batch(50, Duration::from_secs(5)).await.unwrap();
        assert!(!unacked.messages.is_empty());
        bus.handle.close().await;
        shutdown.cancel();
    }
    assert!(segments(&spool) > 0, "events are on disk");

    // Second "process" on the same spool: everything not acknowledged comes back.
    let shutdown = CancellationToken::new();
    let mut bus = Bus::from_config(&cfg, shutdown.clone()).await.unwrap();
    let remaining: HashSet<EventId> = ids.difference(&first_batch_ids).copied().collect();
    let received = drain(&mut bus.consumer, &remaining, Duration::from_secs(10)).await;
    let received_set: HashSet<EventId> = received.iter().copied().collect();
    assert_eq!(
        received_set, remaining,
        "exactly the unacknowledged events are redelivered"
    );
    assert_eq!(received.len(), remaining.len(), "each once");
    assert_eq!(segments(&spool), 0, "acknowledged segments are deleted");
    assert_eq!(bus.handle.spool_bytes(), 0);

    // The bus keeps working after the spool emptied.
    let later = call(org, 1000);
    bus.publisher.emit(later.clone());
    let batch = bus.consumer.next_batch(10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(batch.messages, vec![later]);
    bus.consumer.ack(batch).await.unwrap();
    bus.handle.close().await;
    shutdown.cancel();
    std::fs::remove_dir_all(&spool).ok();
}

#[tokio::test]
async fn one_process_per_spool_directory() {
    let spool = temp_dir("single-node-lock");
    let cfg = config(None, &spool, &unique("lock"), &[]);
    let shutdown = CancellationToken::new();
    let _first = Bus::from_config(&cfg, shutdown.clone()).await.unwrap();
    let second = Bus::from_config(&cfg, shutdown.clone()).await;
    let err = format!("{:#}", second.err().expect("second owner refused"));
    assert!(
        err.contains("dataplane.spool_dir") && err.contains("in use"),
        "{err}"
    );
    shutdown.cancel();
}
