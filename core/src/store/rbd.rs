//! The RBD store: one image per image id in a Ceph pool, laid out as Glance's rbd driver does
//! so that Nova and Cinder can clone from it: the data, then a snapshot `snap`, protected.
//!
//! librbd calls block, so each operation runs on a blocking thread: a put's writer receives
//! chunks through the bounded channel of [`feed_writer`](super::feed_writer) and writes whole
//! objects; a get's reader sends chunks the other way. The image is only complete once `snap`
//! exists: an abandoned put removes its image, and a crashed writer's image (no `snap`, no
//! watcher, older than a lease) is removed by [`Store::remove_abandoned`].

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use glint_rbd::{Cluster, ClusterConfig, Pool};
use tokio::sync::{OnceCell, mpsc};

use super::fs::valid_name;
use super::{ByteStream, Store, StoreError, SweepLimits, Swept};
use crate::config::RbdConfig;

/// The snapshot clones are made from; Glance's name, which Nova and Cinder expect.
const SNAPSHOT: &str = "snap";
/// Growth of an image whose final size is unknown: at least this much per resize...
const MIN_GROWTH: u64 = 1 << 30;
/// ...and at most this much, so the last resize rarely leaves much to shrink.
const MAX_GROWTH: u64 = 8 << 30;
/// Chunks a download's reader may have ready ahead of the client.
const READ_AHEAD: usize = 2;

/// Images in one pool of one Ceph cluster.
pub struct RbdStore {
    cfg: RbdConfig,
    /// log2 of the object size.
    order: u8,
    /// Connected on first use, so that the service starts while the cluster is unreachable.
    conn: OnceCell<Arc<Connection>>,
}

/// A connection and the pool's I/O context, shared by every operation.
struct Connection {
    fsid: String,
    pool: Pool,
}

impl RbdStore {
    /// A store for `cfg`, checking the configuration and that librbd can be loaded; the
    /// cluster is contacted on first use (or [`Store::health`]).
    pub fn open(cfg: &RbdConfig) -> Result<RbdStore, StoreError> {
        let mib = cfg.chunk_size;
        if !mib.is_power_of_two() || mib > 32 {
            return Err(invalid_config(format!("chunk_size must be a power of two from 1 to 32 MiB, not {mib}")));
        }
        if !valid_name(&cfg.pool) {
            return Err(invalid_config(format!("pool {:?} is not a valid pool name", cfg.pool)));
        }
        // 1 MiB is 2^20 bytes.
        let order = 20 + mib.trailing_zeros() as u8;
        Ok(RbdStore { cfg: cfg.clone(), order, conn: OnceCell::new() })
    }

    fn chunk(&self) -> usize {
        1 << self.order
    }

    async fn connection(&self) -> Result<Arc<Connection>, StoreError> {
        let conn = self
            .conn
            .get_or_try_init(|| {
                let cluster_cfg = ClusterConfig {
                    user: self.cfg.user.clone(),
                    conf_file: self.cfg.conf_file.as_ref().map(|p| p.display().to_string()),
                    keyring: self.cfg.keyring.as_ref().map(|p| p.display().to_string()),
                    timeout: Duration::from_secs(self.cfg.connect_timeout),
                };
                let pool = self.cfg.pool.clone();
                blocking(move || {
                    let cluster = Cluster::connect(&cluster_cfg).map_err(|e| classify("connecting to Ceph", e))?;
                    let fsid = cluster.fsid().map_err(|e| classify("reading the cluster fsid", e))?;
                    let pool = cluster.pool(&pool).map_err(|e| classify(&format!("opening pool {pool}"), e))?;
                    Ok(Arc::new(Connection { fsid, pool }))
                })
            })
            .await?;
        Ok(Arc::clone(conn))
    }

    fn url(&self, fsid: &str, name: &str) -> String {
        format!("rbd://{fsid}/{}/{name}/{SNAPSHOT}", self.cfg.pool)
    }

    /// The image behind `location`, only if it names an image of our cluster and pool.
    async fn image_of(&self, location: &str) -> Result<(Arc<Connection>, String), StoreError> {
        let conn = self.connection().await?;
        let parts = parse_location(location).filter(|p| p.fsid == conn.fsid && p.pool == self.cfg.pool);
        match parts {
            Some(parts) if parts.snapshot == SNAPSHOT => Ok((conn, parts.image)),
            _ => Err(StoreError::NotFound(location.to_owned())),
        }
    }
}

/// The parts of `rbd://<fsid>/<pool>/<image>/<snapshot>`.
#[derive(Debug, PartialEq, Eq)]
struct LocationParts {
    fsid: String,
    pool: String,
    image: String,
    snapshot: String,
}

/// Splits an rbd location; Glance percent-encodes each part, so they are decoded here.
fn parse_location(location: &str) -> Option<LocationParts> {
    let rest = location.strip_prefix("rbd://")?;
    let parts: Vec<String> = rest
        .split('/')
        .map(|part| percent_encoding::percent_decode_str(part).decode_utf8().ok().map(|p| p.into_owned()))
        .collect::<Option<_>>()?;
    let [fsid, pool, image, snapshot] = <[String; 4]>::try_from(parts).ok()?;
    (valid_name(&image) && !fsid.is_empty() && !pool.is_empty()).then_some(LocationParts {
        fsid,
        pool,
        image,
        snapshot,
    })
}

fn invalid_config(message: String) -> StoreError {
    StoreError::Io(io::Error::new(io::ErrorKind::InvalidInput, message))
}

/// Maps librbd's errno to what the rest of Glint acts on.
fn classify(doing: &str, err: io::Error) -> StoreError {
    const EDQUOT: i32 = 122;
    const ENOSPC: i32 = 28;
    match (err.kind(), err.raw_os_error()) {
        (io::ErrorKind::NotFound, _) => StoreError::NotFound(format!("{doing}: {err}")),
        (io::ErrorKind::PermissionDenied, _) => StoreError::Denied(format!("{doing}: {err}")),
        (_, Some(ENOSPC | EDQUOT)) => StoreError::Full,
        _ => StoreError::Io(io::Error::new(err.kind(), format!("{doing}: {err}"))),
    }
}

fn is_busy(err: &io::Error) -> bool {
    const EBUSY: i32 = 16;
    err.raw_os_error() == Some(EBUSY)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| StoreError::Io(io::Error::other(e)))?
}

/// How a put lays its image out.
#[derive(Clone, Copy)]
struct Layout {
    /// Object size, and size of each write.
    chunk: usize,
    /// log2 of `chunk`.
    order: u8,
    /// Skip all-zero chunks.
    thin: bool,
    /// The size to create the image with: the announced size, else 0 (grown as data comes).
    size: u64,
}

/// Writes an image from `chunks` until the end marker, then snapshots and protects it. Any
/// other ending (a closed channel, an error) removes the image again.
fn write_image(
    conn: &Connection,
    name: &str,
    layout: Layout,
    chunks: &mut mpsc::Receiver<Option<Bytes>>,
) -> Result<(), StoreError> {
    let pool = &conn.pool;
    match pool.create(name, layout.size, layout.order) {
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            // A writer that died before committing; one with the snapshot is a finished image
            // and stays untouched.
            remove_unfinished(pool, name)?;
            pool.create(name, layout.size, layout.order).map_err(|e| classify("creating the image", e))?;
        }
        other => other.map_err(|e| classify("creating the image", e))?,
    }
    let written = fill(pool, name, layout, chunks);
    if written.is_err() {
        let _ = pool.remove(name);
    }
    written
}

fn fill(pool: &Pool, name: &str, layout: Layout, chunks: &mut mpsc::Receiver<Option<Bytes>>) -> Result<(), StoreError> {
    let Layout { chunk, thin, .. } = layout;
    let image = pool.open(name).map_err(|e| classify("opening the new image", e))?;
    let mut size = layout.size;
    let mut offset = 0u64;
    let mut buf = BytesMut::with_capacity(chunk);
    let flush = |buf: &mut BytesMut, offset: &mut u64, size: &mut u64| -> Result<(), StoreError> {
        let end = *offset + buf.len() as u64;
        if end > *size {
            let growth = (*size).clamp(MIN_GROWTH, MAX_GROWTH);
            *size = end.max(*size + growth);
            image.resize(*size).map_err(|e| classify("growing the image", e))?;
        }
        if !(thin && buf.iter().all(|&b| b == 0)) {
            image.write(*offset, buf).map_err(|e| classify("writing the image", e))?;
        }
        *offset = end;
        buf.clear();
        Ok(())
    };
    loop {
        match chunks.blocking_recv() {
            Some(Some(mut data)) => {
                while !data.is_empty() {
                    let take = (chunk - buf.len()).min(data.len());
                    buf.extend_from_slice(&data.split_to(take));
                    if buf.len() == chunk {
                        flush(&mut buf, &mut offset, &mut size)?;
                    }
                }
            }
            Some(None) => break,
            None => return Err(StoreError::Source(io::Error::other("upload abandoned"))),
        }
    }
    if !buf.is_empty() {
        flush(&mut buf, &mut offset, &mut size)?;
    }
    if offset != size {
        image.resize(offset).map_err(|e| classify("sizing the image", e))?;
    }
    image.flush().map_err(|e| classify("flushing the image", e))?;
    image.snap_create(SNAPSHOT).map_err(|e| classify("taking the snapshot", e))?;
    image.snap_protect(SNAPSHOT).map_err(|e| classify("protecting the snapshot", e))?;
    Ok(())
}

/// Removes image `name` if it never got its snapshot; `EBUSY` while its writer is alive.
fn remove_unfinished(pool: &Pool, name: &str) -> Result<(), StoreError> {
    let image = pool.open_read_only(name, None).map_err(|e| classify("opening an earlier image", e))?;
    if image.snap_exists(SNAPSHOT).map_err(|e| classify("checking an earlier image", e))? {
        return Err(StoreError::Io(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("image {name} already exists in the pool"),
        )));
    }
    drop(image);
    pool.remove(name).map_err(|e| classify("removing an unfinished earlier image", e))
}

/// Removes image `name`: unprotects and removes its snapshot, then the image. Clones of the
/// snapshot make this fail with [`StoreError::InUse`] and leave everything in place.
fn remove_image(pool: &Pool, name: &str) -> Result<(), StoreError> {
    let in_use = |err: io::Error, what: &str| {
        if is_busy(&err) { StoreError::InUse(format!("{what}: {err}")) } else { classify(what, err) }
    };
    let image = match pool.open(name) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other.map_err(|e| classify("opening the image", e))?,
    };
    if image.snap_exists(SNAPSHOT).map_err(|e| classify("reading the snapshots", e))? {
        if image.snap_is_protected(SNAPSHOT).map_err(|e| classify("reading the snapshot", e))? {
            image.snap_unprotect(SNAPSHOT).map_err(|e| in_use(e, "the snapshot has clones"))?;
        }
        image.snap_remove(SNAPSHOT).map_err(|e| classify("removing the snapshot", e))?;
    }
    drop(image);
    match pool.remove(name) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(|e| in_use(e, "the image is open elsewhere")),
    }
}

/// Sends the bytes of `range` of image `name` at the snapshot, one object at a time.
fn read_image(
    conn: &Connection,
    name: &str,
    range: Option<Range<u64>>,
    chunk: usize,
    chunks: &mpsc::Sender<io::Result<Bytes>>,
) -> Result<(), StoreError> {
    let image = conn.pool.open_read_only(name, Some(SNAPSHOT)).map_err(|e| classify("opening the image", e))?;
    let size = image.size().map_err(|e| classify("reading the image size", e))?;
    let Range { start, end } = range.unwrap_or(0..size);
    let mut offset = start;
    while offset < end.min(size) {
        let len = usize::try_from(end.min(size) - offset).unwrap_or(usize::MAX).min(chunk);
        let mut buf = vec![0u8; len];
        let read = image.read(offset, &mut buf).map_err(|e| classify("reading the image", e))?;
        if read == 0 {
            break;
        }
        buf.truncate(read);
        offset += read as u64;
        if chunks.blocking_send(Ok(Bytes::from(buf))).is_err() {
            // The client went away.
            return Ok(());
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Store for RbdStore {
    async fn put_sized(
        &self,
        image_id: &str,
        data: ByteStream,
        cap: u64,
        size: Option<u64>,
    ) -> Result<String, StoreError> {
        if !valid_name(image_id) {
            return Err(StoreError::NotFound(image_id.to_owned()));
        }
        let conn = self.connection().await?;
        let layout = Layout {
            chunk: self.chunk(),
            order: self.order,
            thin: self.cfg.thin_provisioning,
            size: size.filter(|s| *s <= cap).unwrap_or(0),
        };
        let (name, writer) = (image_id.to_owned(), Arc::clone(&conn));
        super::feed_writer(data, cap, move |mut rx| {
            tokio::task::spawn_blocking(move || write_image(&writer, &name, layout, &mut rx))
        })
        .await?;
        Ok(self.url(&conn.fsid, image_id))
    }

    async fn get(&self, location: &str, range: Option<Range<u64>>) -> Result<ByteStream, StoreError> {
        let (conn, name) = self.image_of(location).await?;
        // Open once here so that a missing image is an error of the call, not of the stream.
        let check = Arc::clone(&conn);
        let checked = name.clone();
        blocking(move || {
            check.pool.open_read_only(&checked, Some(SNAPSHOT)).map(drop).map_err(|e| classify("opening the image", e))
        })
        .await?;
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let chunk = self.chunk();
        tokio::task::spawn_blocking(move || {
            if let Err(err) = read_image(&conn, &name, range, chunk, &tx) {
                let _ = tx.blocking_send(Err(io::Error::other(err)));
            }
        });
        Ok(Box::pin(tokio_stream_from(rx)))
    }

    async fn delete(&self, location: &str) -> Result<(), StoreError> {
        let (conn, name) = match self.image_of(location).await {
            Err(StoreError::NotFound(_)) => return Ok(()),
            other => other?,
        };
        blocking(move || remove_image(&conn.pool, &name)).await
    }

    async fn in_use(&self, location: &str) -> Result<bool, StoreError> {
        let (conn, name) = match self.image_of(location).await {
            Err(StoreError::NotFound(_)) => return Ok(false),
            other => other?,
        };
        blocking(move || match conn.pool.open_read_only(&name, Some(SNAPSHOT)) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(classify("opening the image", err)),
            Ok(image) => image.has_children().map_err(|e| classify("listing the clones", e)),
        })
        .await
    }

    async fn health(&self) -> Result<(), StoreError> {
        let conn = self.connection().await?;
        blocking(move || conn.pool.list().map(drop).map_err(|e| classify("listing the pool", e))).await
    }

    async fn remove_abandoned(&self, limits: &SweepLimits) -> Result<Swept, StoreError> {
        let conn = self.connection().await?;
        let limits = *limits;
        blocking(move || {
            let started = std::time::Instant::now();
            let mut swept = Swept::default();
            // A crashed writer's watch outlives it by Ceph's watch timeout (30 s): a lease on top
            // leaves that long for the image to look dead.
            let cutoff = SystemTime::now().checked_sub(limits.lease).unwrap_or(SystemTime::UNIX_EPOCH);
            for name in conn.pool.list().map_err(|e| classify("listing the pool", e))? {
                if limits.spent(started, swept.files) {
                    break;
                }
                // Only names Glint writes: other tenants of the pool are not ours to judge.
                if uuid::Uuid::parse_str(&name).is_err() {
                    continue;
                }
                let Ok(image) = conn.pool.open_read_only(&name, None) else { continue };
                let abandoned = image.snap_exists(SNAPSHOT).is_ok_and(|done| !done)
                    && image.has_watchers().is_ok_and(|watched| !watched)
                    && image.created().is_ok_and(|created| created < cutoff);
                let bytes = image.size().unwrap_or(0);
                drop(image);
                if abandoned && conn.pool.remove(&name).is_ok() {
                    swept.files += 1;
                    swept.bytes += bytes;
                }
            }
            Ok(swept)
        })
        .await
    }

    fn holds(&self, location: &str) -> bool {
        parse_location(location).is_some_and(|parts| parts.pool == self.cfg.pool)
    }

    async fn size(&self, location: &str) -> Result<u64, StoreError> {
        let (conn, name) = self.image_of(location).await?;
        blocking(move || {
            let image =
                conn.pool.open_read_only(&name, Some(SNAPSHOT)).map_err(|e| classify("opening the image", e))?;
            image.size().map_err(|e| classify("reading the image size", e))
        })
        .await
    }
}

/// A receiver as a stream, without pulling in tokio-stream for one adapter.
fn tokio_stream_from(rx: mpsc::Receiver<io::Result<Bytes>>) -> impl futures_util::Stream<Item = io::Result<Bytes>> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RbdConfig {
        RbdConfig {
            pool: "images".into(),
            user: "glance".into(),
            conf_file: None,
            keyring: None,
            chunk_size: 8,
            thin_provisioning: false,
            connect_timeout: 10,
            description: None,
        }
    }

    #[test]
    fn locations_split_into_fsid_pool_image_and_snapshot() {
        let parts = parse_location("rbd://f5e0c3a2/images/3b0a4bfc-7e2f-4cbd-a3b5-5a0d5d5c9e10/snap").expect("parses");
        assert_eq!(
            parts,
            LocationParts {
                fsid: "f5e0c3a2".into(),
                pool: "images".into(),
                image: "3b0a4bfc-7e2f-4cbd-a3b5-5a0d5d5c9e10".into(),
                snapshot: "snap".into(),
            }
        );
        assert_eq!(parse_location("rbd://fsid/my%20pool/img/snap").map(|p| p.pool), Some("my pool".into()));
    }

    #[test]
    fn malformed_locations_are_refused() {
        for bad in [
            "rbd://fsid/images/img",
            "rbd://fsid/images/img/snap/extra",
            "rbd:///images/img/snap",
            "rbd://fsid/images/../snap",
            "file:///var/lib/glint/img",
            "rbd://fsid/images/%ff/snap",
        ] {
            assert_eq!(parse_location(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_store_holds_locations_of_its_pool_only() {
        let store = RbdStore::open(&config()).expect("opens");
        assert!(store.holds("rbd://fsid/images/3b0a4bfc-7e2f-4cbd-a3b5-5a0d5d5c9e10/snap"));
        assert!(!store.holds("rbd://fsid/volumes/3b0a4bfc-7e2f-4cbd-a3b5-5a0d5d5c9e10/snap"));
    }

    #[test]
    fn chunk_sizes_must_be_powers_of_two_up_to_32_mib() {
        for (mib, order) in [(1, 20), (8, 23), (32, 25)] {
            let store = RbdStore::open(&RbdConfig { chunk_size: mib, ..config() }).expect("valid");
            assert_eq!(store.order, order);
        }
        for mib in [0, 3, 64] {
            assert!(RbdStore::open(&RbdConfig { chunk_size: mib, ..config() }).is_err(), "{mib}");
        }
    }
}
