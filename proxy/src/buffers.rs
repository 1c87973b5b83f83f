//! Provider bytes held in memory, bounded for all requests together.
//!
//! Each request bounds what it buffers itself (`server.max_response_bytes` for a whole
//! answer, `server.max_event_bytes` for one stream event); this pool bounds their sum
//! (`server.max_buffered_bytes`), so many concurrent large answers cannot exhaust memory.
//! A request takes a [`Lease`] and grows it as bytes arrive; dropping it gives them back.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::IntGauge;

/// The pool of every request's buffered provider bytes.
pub struct Buffers {
    used: AtomicU64,
    /// `tollgate_buffered_bytes`.
    gauge: IntGauge,
}

/// All requests together would hold more than the pool's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted;

impl Buffers {
    pub fn new(gauge: IntGauge) -> Buffers {
        Buffers {
            used: AtomicU64::new(0),
            gauge,
        }
    }

    /// A lease of nothing yet, on a pool of `limit` bytes (the request's config version).
    pub fn lease(&self, limit: u64) -> Lease<'_> {
        Lease {
            pool: self,
            limit,
            held: 0,
        }
    }

    /// Bytes held by all requests now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    fn take(&self, n: u64, limit: u64) -> Result<(), Exhausted> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= limit)
            })
            .map_err(|_| Exhausted)?;
        self.gauge.add(n as i64);
        Ok(())
    }

    fn give(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
        self.gauge.sub(n as i64);
    }
}

/// One request's share of the pool.
pub struct Lease<'a> {
    pool: &'a Buffers,
    limit: u64,
    held: u64,
}

impl Lease<'_> {
    /// Holds `bytes` in all (more or fewer than before); on `Err` nothing changed.
    pub fn hold(&mut self, bytes: u64) -> Result<(), Exhausted> {
        if bytes > self.held {
            self.pool.take(bytes - self.held, self.limit)?;
        } else if bytes < self.held {
            self.pool.give(self.held - bytes);
        }
        self.held = bytes;
        Ok(())
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.held > 0 {
            self.pool.give(self.held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_share_one_limit_and_give_back_when_dropped() {
        let pool = Buffers::new(IntGauge::new("t", "t").unwrap());
        let mut a = pool.lease(100);
        let mut b = pool.lease(100);
        a.hold(60).unwrap();
        assert_eq!(b.hold(41), Err(Exhausted), "60 + 41 is over the limit");
        assert_eq!(pool.used(), 60, "a refused lease holds nothing more");
        b.hold(40).unwrap();
        a.hold(10).unwrap();
        assert_eq!(pool.used(), 50);
        b.hold(90).unwrap();
        drop(a);
        drop(b);
        assert_eq!(pool.used(), 0);
        assert_eq!(pool.gauge.get(), 0);
    }
}
