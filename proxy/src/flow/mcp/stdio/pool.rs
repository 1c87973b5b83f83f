//! The live processes of one stdio server, never more than its `max_processes`: one per
//! handshake-era session, and a pool shared by the stateless era's requests. A dead
//! process leaves the pool when next looked at; idle ones are stopped by the sweep.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tollgate_config::StdioCommand;

use super::process::Process;

/// A pooled (stateless-era) process without a request for this long is stopped.
pub const IDLE_SHARED: Duration = Duration::from_secs(5 * 60);
/// A session's process without a request for this long is stopped; the session ends
/// with it (the agent gets 404 and initializes anew).
pub const IDLE_SESSION: Duration = Duration::from_secs(30 * 60);

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A fresh process of its own (an `initialize`).
    Session,
    /// Any pooled process (a stateless-era request).
    Shared,
}

/// A process as the choice sees it.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub shared: bool,
    pub busy: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Choice {
    Reuse(usize),
    Spawn,
    /// Stop the idle pooled process at this index to make room, then spawn.
    Replace(usize),
    Full,
}

/// Which process serves a request, given the live ones. A pooled process is reused when
/// one is idle; a new one starts while there is room; at the bound, requests share the
/// least busy pooled process, and a session takes the place of an idle pooled one.
pub fn choose(live: &[Seen], want: Want, max: usize) -> Choice {
    let idle_shared = live.iter().position(|p| p.shared && p.busy == 0);
    match want {
        Want::Shared => {
            if let Some(i) = idle_shared {
                return Choice::Reuse(i);
            }
            if live.len() < max {
                return Choice::Spawn;
            }
            live.iter()
                .enumerate()
                .filter(|(_, p)| p.shared)
                .min_by_key(|(_, p)| p.busy)
                .map_or(Choice::Full, |(i, _)| Choice::Reuse(i))
        }
        Want::Session => {
            if live.len() < max {
                Choice::Spawn
            } else {
                idle_shared.map_or(Choice::Full, Choice::Replace)
            }
        }
    }
}

/// Why no process was given.
#[derive(Debug)]
pub enum Refused {
    /// Every one of the `max_processes` is in use.
    Full(u32),
    /// The command could not be started.
    Spawn(std::io::Error),
    /// The process ended as the request was written.
    Ended,
}

pub struct Pool {
    pub server: String,
    pub cmd: StdioCommand,
    procs: Mutex<Vec<Arc<Process>>>,
    next_id: AtomicU64,
}

impl Pool {
    pub fn new(server: &str, cmd: StdioCommand) -> Pool {
        Pool {
            server: server.to_string(),
            cmd,
            procs: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
        }
    }

    /// A process for a request, which `send` writes to it while the pool is locked (so a
    /// process chosen for a request is busy before anyone else chooses): returns the
    /// process and what `send` returned. Spawns within the current runtime when needed.
    pub fn take(
        &self,
        want: Want,
        max_line: usize,
        send: impl FnOnce(&Process) -> Result<u64, ()>,
    ) -> Result<(Arc<Process>, u64), Refused> {
        let mut procs = self.procs.lock().expect("pool lock");
        procs.retain(|p| p.alive());
        let seen: Vec<Seen> = procs
            .iter()
            .map(|p| Seen {
                shared: p.shared,
                busy: p.busy(),
            })
            .collect();
        let max = self.cmd.max_processes;
        let choice = choose(&seen, want, max as usize);
        let p = match choice {
            Choice::Reuse(i) => procs[i].clone(),
            Choice::Full => return Err(Refused::Full(max)),
            Choice::Replace(_) | Choice::Spawn => {
                if let Choice::Replace(i) = choice {
                    procs.remove(i).kill();
                }
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let p = Process::spawn(&self.server, &self.cmd, id, want == Want::Shared, max_line)
                    .map_err(Refused::Spawn)?;
                procs.push(p.clone());
                p
            }
        };
        let n = send(&p).map_err(|()| Refused::Ended)?;
        Ok((p, n))
    }

    /// The live process `id`.
    pub fn find(&self, id: u64) -> Option<Arc<Process>> {
        let procs = self.procs.lock().expect("pool lock");
        procs.iter().find(|p| p.id == id && p.alive()).cloned()
    }

    /// Stops the process `id` (its session ended).
    pub fn stop(&self, id: u64) {
        let mut procs = self.procs.lock().expect("pool lock");
        if let Some(i) = procs.iter().position(|p| p.id == id) {
            procs.remove(i).kill();
        }
    }

    /// Stops the processes idle for longer than their kind allows; forgets dead ones.
    pub fn sweep(&self, now: Instant) {
        let mut procs = self.procs.lock().expect("pool lock");
        procs.retain(|p| {
            let idle = if p.shared { IDLE_SHARED } else { IDLE_SESSION };
            let stale = p.busy() == 0 && now.saturating_duration_since(p.last_active()) >= idle;
            if stale {
                tracing::info!(
                    server = self.server.as_str(),
                    pid = p.pid,
                    "MCP stdio server process idle: stopped"
                );
                p.kill();
            }
            p.alive()
        });
    }

    /// Stops every process; returns them, to wait for their exit.
    pub fn stop_all(&self) -> Vec<Arc<Process>> {
        let procs = std::mem::take(&mut *self.procs.lock().expect("pool lock"));
        for p in &procs {
            p.kill();
        }
        procs
    }

    pub fn live(&self) -> usize {
        let procs = self.procs.lock().expect("pool lock");
        procs.iter().filter(|p| p.alive()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::{Choice, Seen, Want, choose};

    fn shared(busy: usize) -> Seen {
        Seen { shared: true, busy }
    }
    fn session(busy: usize) -> Seen {
        Seen {
            shared: false,
            busy,
        }
    }

    #[test]
    fn the_bound_holds_for_every_kind_of_request() {
        let table = [
            // (live processes, want, max, choice)
            (vec![], Want::Shared, 2, Choice::Spawn),
            (vec![shared(1)], Want::Shared, 2, Choice::Spawn),
            (
                vec![shared(1), shared(0)],
                Want::Shared,
                2,
                Choice::Reuse(1),
            ),
            (
                vec![shared(3), shared(1)],
                Want::Shared,
                2,
                Choice::Reuse(1),
            ),
            (
                vec![session(0), shared(2)],
                Want::Shared,
                2,
                Choice::Reuse(1),
            ),
            (vec![session(0), session(0)], Want::Shared, 2, Choice::Full),
            (vec![], Want::Session, 1, Choice::Spawn),
            (vec![session(0)], Want::Session, 1, Choice::Full),
            (
                vec![session(0), shared(0)],
                Want::Session,
                2,
                Choice::Replace(1),
            ),
            (vec![session(0), shared(1)], Want::Session, 2, Choice::Full),
            (vec![shared(0)], Want::Session, 4, Choice::Spawn),
        ];
        for (live, want, max, expected) in table {
            assert_eq!(
                choose(&live, want, max),
                expected,
                "{live:?} {want:?} max {max}"
            );
        }
    }
}
