//! The connection to Redis: one node through a self-healing connection manager, or a Redis
//! Cluster through the redis crate's async cluster client (MOVED/ASK redirections, topology
//! refresh, reconnects, TLS for `rediss://`), behind one `ConnectionLike` so the scripts'
//! callers do not care which.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterConfig;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

/// Where Redis is: one node, or the seed nodes of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// `redis://host:port/db` (or `rediss://`).
    Single(String),
    /// Seed nodes; the client learns the rest of the cluster from them.
    Cluster(Vec<String>),
}

/// Builds connections for one topology; a fresh one replaces a wedged one.
#[derive(Clone)]
pub(crate) enum Connector {
    Single(redis::Client, ConnectionManagerConfig),
    Cluster(redis::cluster::ClusterClient, ClusterConfig),
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URLs may carry a password: name the kind only.
        f.write_str(match self {
            Connector::Single(..) => "Connector::Single",
            Connector::Cluster(..) => "Connector::Cluster",
        })
    }
}

impl Connector {
    /// Fails only on an invalid URL; never touches the network.
    pub(crate) fn new(
        topology: &Topology,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self, RedisError> {
        Ok(match topology {
            Topology::Single(url) => Connector::Single(
                redis::Client::open(url.as_str())?,
                ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(response_timeout))
                    // One attempt per call: a caller waiting on reconnect backoff is a hung
                    // request.
                    .set_number_of_retries(0),
            ),
            Topology::Cluster(seeds) => Connector::Cluster(
                redis::cluster::ClusterClient::builder(seeds.iter().map(String::as_str))
                    .connection_timeout(connect_timeout)
                    .response_timeout(response_timeout)
                    // Redirections (MOVED/ASK) and a refresh of the slot map after a failover
                    // count as retries: a few, quickly, all inside the caller's deadline.
                    .retries(4)
                    .min_retry_wait(10)
                    .max_retry_wait(100)
                    .overall_response_timeout(Some(connect_timeout + response_timeout))
                    .build()?,
                ClusterConfig::new()
                    .set_connection_timeout(connect_timeout)
                    .set_response_timeout(response_timeout),
            ),
        })
    }

    /// A connection that connects on first use and reconnects by itself.
    pub(crate) fn connect(&self) -> Result<Conn, RedisError> {
        Ok(match self {
            Connector::Single(client, config) => Conn::Single(
                ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?,
            ),
            Connector::Cluster(client, config) => {
                Conn::Cluster(client.get_pending_async_connection_with_config(config.clone()))
            }
        })
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Connector::Cluster(..))
    }
}

/// One node's or the cluster's connection; cheap to clone (both multiplex).
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Runs `cmd` on the master serving `key`'s slot (a cluster), or on the one node. `WAIT`
    /// needs this: the cluster client would otherwise ask every master.
    pub(crate) async fn on_master_of(&mut self, key: &str, cmd: Cmd) -> Result<Value, RedisError> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => {
                let route = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
                c.route_command(
                    cmd,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                )
                .await
            }
        }
    }
}

impl Conn {
    /// Runs `cmd` on one node the client is connected to (a cluster), or on the one node:
    /// for questions any node answers about the whole cluster (`CLUSTER NODES`).
    pub(crate) async fn on_any_node<T: redis::FromRedisValue>(
        &mut self,
        cmd: Cmd,
    ) -> Result<T, RedisError> {
        let v = match self {
            Conn::Single(c) => cmd.query_async(c).await?,
            Conn::Cluster(c) => {
                c.route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
                    .await?
            }
        };
        Ok(redis::from_redis_value(v)?)
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::Single(..) => "Conn::Single",
            Conn::Cluster(..) => "Conn::Cluster",
        })
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
