//! Group commit of client writes: the commands of concurrent writers are batched into one raft
//! [`Proposal`], so that they share one log entry, one append and one fsync.
//!
//! Why here and not in the log store: openraft 0.9 appends every client write as its own entry,
//! and its core waits for that append to be flushed before it takes the next message
//! (`RaftCore::append_to_log` awaits the flush callback). One command per entry therefore costs
//! one fsync per write, one after the other, however many writers wait: the log store never sees
//! two appends to sync together.
//!
//! One proposal is in flight at a time. While it is being committed and applied, writers queue;
//! then everything queued (up to [`MAX_COMMANDS`] commands or about [`MAX_BYTES`]) becomes the next
//! proposal, in arrival order. Writers answered together usually come back together, so the next
//! proposal lingers (at most [`LINGER`]) until as many commands as the previous one had are
//! queued. A lone writer pays one round as before, and the busier the store, the bigger the
//! batches. (Measured on 2 vCPUs with 16 and 64 writers: one in flight gave the biggest batches
//! and the most throughput at 64; letting a second proposal queue behind the fsync, or starting
//! the next one as soon as the previous one was durable, split writers into smaller entries and
//! cost more fsyncs than the overlap won. See docs/PERF.md.)
//!
//! What a caller is promised is unchanged:
//! - its reply comes only after the entry holding its command was committed (so fsynced by a
//!   quorum, this node's log among them when it is the leader) and applied;
//! - each command is applied as if it had been proposed alone: atomically, with its own revision
//!   when it writes, and its own reply (`StateMachine` applies a proposal's commands in order and
//!   commits them in one RocksDB batch with the entry's log id);
//! - watch events are published in revision order (by the state machine, under its lock);
//! - a write not committed within `request_timeout` fails with `Unavailable` (it may still be
//!   applied later, as with any timeout), and a writer that gave up is not proposed or forwarded
//!   any more.
//!
//! A follower forwards a whole proposal to the leader and replies once it has applied the entry
//! itself (read-your-writes on this node).

use std::sync::Arc;
use std::time::Duration;

use corten_store::mvcc::{Command, Response};
use corten_store::{Compare, CompareTarget, Op};
use openraft::error::ForwardToLeader;
use openraft::BasicNode;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::RaftFailure;
use crate::store::{leader_node, not_leader, wait_applied, Forwarder};
use crate::types::{NodeId, Proposal, Raft, Reply};

/// How long the next proposal may wait for the writers of the previous one to come back (they were
/// answered at once and usually write again within microseconds): without it, the first of them
/// would leave alone and the rest would wait a whole round behind it.
const LINGER: Duration = Duration::from_millis(1);
/// Most commands in one proposal: bounds how long applying one entry holds the MVCC write lock.
const MAX_COMMANDS: usize = 256;
/// Most payload bytes (keys and values, roughly) in one proposal, unless a single command is
/// bigger: keeps log entries and replication messages small.
const MAX_BYTES: usize = 4 << 20;

type ReplyTx = oneshot::Sender<corten_store::Result<Response>>;

/// A command waiting for its proposal, and where its reply goes.
struct Pending {
    cmd: Command,
    reply: ReplyTx,
}

/// Everything a proposal needs to be proposed or forwarded.
struct Context {
    raft: Raft,
    forwarder: Option<Arc<dyn Forwarder>>,
    request_timeout: Duration,
}

/// The handle writers use; the batcher task ends when `stop` is cancelled or every handle is
/// dropped, and queued commands then fail with [`corten_store::Error::Stopped`].
pub(crate) struct Proposer {
    tx: mpsc::UnboundedSender<Pending>,
}

impl Proposer {
    /// Starts the batcher task for `raft`.
    pub(crate) fn start(
        raft: Raft,
        forwarder: Option<Arc<dyn Forwarder>>,
        request_timeout: Duration,
        stop: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let ctx = Context { raft, forwarder, request_timeout };
        (Proposer { tx }, tokio::spawn(batch_loop(ctx, rx, stop)))
    }

    /// Proposes `cmd` (validated by the caller) with whatever else is waiting; returns its reply
    /// once it has been committed and applied on this node.
    pub(crate) async fn propose(&self, cmd: Command) -> corten_store::Result<Response> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Pending { cmd, reply }).map_err(|_| corten_store::Error::Stopped)?;
        rx.await.map_err(|_| corten_store::Error::Stopped)?
    }
}

/// Roughly how many bytes `cmd` adds to a proposal.
fn approx_bytes(cmd: &Command) -> usize {
    const OVERHEAD: usize = 32;
    let Command::Txn(txn) = cmd else { return OVERHEAD };
    let compares = txn.compares.iter().map(|Compare { key, target, .. }| {
        key.len() + if let CompareTarget::Value(v) = target { v.len() } else { 8 }
    });
    let ops = txn
        .success
        .iter()
        .chain(&txn.failure)
        .map(|op| op.key().len() + if let Op::Put { value, .. } = op { value.len() } else { 0 });
    OVERHEAD + compares.chain(ops).map(|n| n + OVERHEAD).sum::<usize>()
}

/// Takes the next batch: waits for one command, then takes what is queued behind it, lingering
/// (at most [`LINGER`]) until `expected` commands are there. Writers that gave up while queued
/// (timed out) are left out. `None` once every handle is dropped.
async fn next_batch(
    rx: &mut mpsc::UnboundedReceiver<Pending>,
    carried: &mut Option<Pending>,
    expected: usize,
) -> Option<Vec<Pending>> {
    let first = match carried.take() {
        Some(p) => p,
        None => rx.recv().await?,
    };
    let mut bytes = approx_bytes(&first.cmd);
    let mut batch = vec![first];
    let linger = tokio::time::sleep(LINGER);
    tokio::pin!(linger);
    while batch.len() < MAX_COMMANDS {
        let p = match rx.try_recv() {
            Ok(p) => p,
            Err(mpsc::error::TryRecvError::Empty) if batch.len() < expected => tokio::select! {
                p = rx.recv() => match p {
                    Some(p) => p,
                    None => break,
                },
                () = &mut linger => break,
            },
            Err(_) => break,
        };
        bytes += approx_bytes(&p.cmd);
        if bytes > MAX_BYTES {
            // For the next proposal.
            *carried = Some(p);
            break;
        }
        batch.push(p);
    }
    batch.retain(|p| !p.reply.is_closed());
    Some(batch)
}

async fn batch_loop(ctx: Context, mut rx: mpsc::UnboundedReceiver<Pending>, stop: CancellationToken) {
    // A command that did not fit in the previous proposal.
    let mut carried = None;
    // The size of the previous proposal: its writers are answered together and, when they write
    // in a loop (one request after another), come back together.
    let mut expected = 1;
    loop {
        let batch = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            batch = next_batch(&mut rx, &mut carried, expected) => match batch {
                Some(batch) => batch,
                None => return,
            },
        };
        if batch.is_empty() {
            continue;
        }
        expected = batch.len();
        let (commands, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
        tracing::trace!(commands = commands.len(), "proposing");
        // On shutdown the writers of the proposal in flight get `Stopped` (their replies are
        // dropped); it may still have been applied.
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = propose(&ctx, Proposal { commands }, replies) => {}
        }
    }
}

/// Proposes `proposal` (forwarding it when this node is not the leader) and answers its writers.
async fn propose(ctx: &Context, proposal: Proposal, replies: Vec<ReplyTx>) {
    // Kept only where it may have to be forwarded to the leader.
    let retained = ctx.forwarder.is_some().then(|| proposal.clone());
    let written = tokio::time::timeout(ctx.request_timeout, ctx.raft.client_write(proposal)).await;
    let outcome = match written {
        Ok(Ok(written)) => Ok(written.data),
        Ok(Err(e)) => match RaftFailure::from(e) {
            RaftFailure::Fail(e) => Err(e),
            RaftFailure::NotLeader(f) => match retained {
                // Not in this node's log (never appended, or truncated by a new leader), so not
                // committed: the leader gets it.
                Some(proposal) => return forward(ctx, proposal, replies, &f).await,
                None => Err(not_leader(&f)),
            },
        },
        // Its fate is unknown (it may still commit), as with any timeout; moving on keeps an entry
        // stuck in a partitioned node's log from holding up every later write.
        Err(_) => Err(corten_store::Error::Unavailable(format!(
            "the write was not committed within {:?}",
            ctx.request_timeout
        ))),
    };
    deliver(replies, outcome);
}

/// Forwards the commands of `proposal` whose writers still wait to the leader named by `f`, waits
/// until this node has applied them, and answers their writers.
async fn forward(
    ctx: &Context,
    proposal: Proposal,
    replies: Vec<ReplyTx>,
    f: &ForwardToLeader<NodeId, BasicNode>,
) {
    // A writer that gave up (timed out) is not forwarded: its write must not land later, once
    // nobody waits for it any more.
    let (commands, replies): (Vec<_>, Vec<_>) =
        proposal.commands.into_iter().zip(replies).filter(|(_, reply)| !reply.is_closed()).unzip();
    if replies.is_empty() {
        return;
    }
    let (Some(forwarder), Some(leader)) = (&ctx.forwarder, leader_node(&ctx.raft, f)) else {
        return deliver(replies, Err(not_leader(f)));
    };
    let outcome = async {
        let written = forwarder.propose(&leader, &Proposal { commands }).await?;
        // Read-your-writes on this node: wait until it has applied the write too.
        wait_applied(&ctx.raft, written.log_id.index, ctx.request_timeout).await?;
        Ok(written.data)
    };
    deliver(replies, outcome.await);
}

/// Answers each writer with its command's result, or all of them with the proposal's error.
fn deliver(replies: Vec<ReplyTx>, outcome: corten_store::Result<Reply>) {
    let results = match outcome {
        Ok(reply) if reply.results.len() == replies.len() => reply.results,
        Ok(reply) => {
            let e = corten_store::Error::Fatal(format!(
                "a proposal of {} commands was applied with {} results",
                replies.len(),
                reply.results.len()
            ));
            vec![Err(e); replies.len()]
        }
        Err(e) => vec![Err(e); replies.len()],
    };
    for (reply, result) in replies.into_iter().zip(results) {
        // A writer that gave up waiting is no one's concern.
        let _ = reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use corten_store::Txn;

    use super::*;

    #[test]
    fn a_put_counts_its_key_and_value() {
        let small = approx_bytes(&Command::Txn(Txn::new().success(Op::put("k", "v"))));
        let big = approx_bytes(&Command::Txn(Txn::new().success(Op::put("k", vec![0u8; 1 << 20]))));
        assert_eq!(big - small, (1 << 20) - 1);
        assert!(approx_bytes(&Command::Compact(3)) > 0);
    }
}
