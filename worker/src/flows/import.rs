//! `api_image_import`: glance-direct, web-download, glance-download and copy-image
//! (docs/glance-v2-api.md §6).
//!
//! glance-download first reads the remote image's metadata (see `glance_download`) ->
//! fetch (staging area, HTTP, or an existing copy; a download checked against the caller's
//! `validation_data` or the remote image's size and digests, compressed data decompressed
//! when `[import] decompress` is on) -> convert
//! when configured -> inspect, hash and store in each target store -> image `active`,
//! locations, lock released, the remote formats and properties (glance-download) and task
//! `success` in one transaction. Data staged as it is stored skips the second pass: its
//! digests and inspection, recorded while it was staged, are used as long as the file is
//! unchanged, and a filesystem store on the same filesystem links the file instead of copying
//! it. Conversion to raw streams from the staged file into each store, so the staging area
//! never holds a converted copy.
//!
//! A failure undoes all of it: written copies removed, image
//! back to `queued` (copy-image: left `active`), stores recorded as failed, staging cleaned.

use glint_core::image::import::{self, FAILED_IMPORT, IMPORT_TASK, IMPORTING_TO_STORES, ImportJob, Method};
use glint_core::image::location_import::Validation;
use glint_core::image::{Image, Ingested, data, locations, repo as images};
use glint_core::store::{ByteStream, StagedFacts, Store};
use glint_core::task::{Task, repo as tasks};
use glint_formats::Format;
use serde_json::json;

use super::decompress::{decompressing, sniff};
use super::glance_download::{self, RemoteImage};
use super::verify::{mismatch, sized, verified};
use super::{Deps, Progress};
use crate::{Flow, FlowContext, FlowError};

/// Runs interoperable imports.
pub struct ImportFlow {
    deps: Deps,
}

/// Where the data comes from once it has been prepared.
enum Source {
    /// A file in the staging area, by name (the image id, or a converted or decompressed copy).
    Staged(String),
    /// A staged file with what was learnt of it while it was staged.
    Recorded(String, StagedFacts),
    /// A staged file of the given format (`.0`), converted to the other (`.1`, raw or qcow2)
    /// as it is read.
    Converted(String, Format, Format),
    /// A compressed file in the staging area, decompressed as it is read.
    Compressed(String),
    /// A URL, streamed straight into the one target store.
    Web(WebSource),
    /// An existing copy of an active image.
    Copy(locations::Location),
}

/// A URL to download, and what its bytes must match.
#[derive(Clone)]
struct WebSource {
    url: String,
    /// Sent as `X-Auth-Token` (glance-download: the caller's).
    token: Option<String>,
    /// Digests the bytes must have, vouched for by `vouched_by`.
    checks: Vec<Validation>,
    vouched_by: &'static str,
    /// How many bytes there must be, when known.
    size: Option<u64>,
}

impl WebSource {
    /// A web-download's URL, checked against its `validation_data` if it has some.
    fn web_download(uri: &str, validation: Option<&Validation>) -> WebSource {
        WebSource {
            url: uri.to_owned(),
            token: None,
            checks: validation.into_iter().cloned().collect(),
            vouched_by: "the validation_data",
            size: None,
        }
    }

    /// A glance-download's data, read with the caller's token and checked against the
    /// remote image's size and digests.
    fn glance_download(remote: &RemoteImage) -> WebSource {
        WebSource {
            url: remote.file_url.clone(),
            token: remote.token.clone(),
            checks: remote.checks.clone(),
            vouched_by: "the remote image",
            size: Some(remote.size),
        }
    }
}

/// What an import learned of the image besides its data, recorded with it.
struct Learned<'a> {
    /// The format the data was converted to.
    converted: Option<Format>,
    /// The remote image of a glance-download.
    remote: Option<&'a RemoteImage>,
}

/// One store written.
struct Written {
    store: String,
    data: Ingested,
    virtual_size: Option<i64>,
}

impl ImportFlow {
    /// The flow over `deps`.
    pub fn new(deps: Deps) -> Self {
        ImportFlow { deps }
    }

    fn store_id<'a>(&'a self, target: &'a Option<String>) -> &'a str {
        target.as_deref().unwrap_or(self.deps.stores.default_id())
    }

    /// The image, if it still exists and this task holds its import lock.
    async fn locked_image(&self, ctx: &FlowContext, task: &Task, image_id: &str) -> Result<Image, FlowError> {
        let image = images::get(&ctx.db, image_id)
            .await?
            .ok_or_else(|| FlowError::Abort("Image has been deleted, aborting import.".into()))?;
        if image.properties.get(IMPORT_TASK).cloned().flatten().as_deref() != Some(task.id.as_str()) {
            return Err(FlowError::Abort("The image's import lock was taken over by another import.".into()));
        }
        Ok(image)
    }

    /// Brings the data where the store step can read it, converting it if configured.
    /// Returns the source and the disk format it is in, when that changed.
    async fn prepare(
        &self,
        ctx: &FlowContext,
        job: &ImportJob,
        image: &Image,
        web: Option<&WebSource>,
        progress: &Progress,
    ) -> Result<(Source, Option<Format>), FlowError> {
        let (staged, compressed) = match &job.method {
            Method::CopyImage => {
                let copies = locations::active(&ctx.db, &image.id).await?;
                let copy = copies
                    .into_iter()
                    .find(|l| l.store.as_deref().is_some_and(|s| self.deps.stores.get(s).is_some()))
                    .ok_or_else(|| {
                        FlowError::Abort("The image has no data in any configured store to copy from.".into())
                    })?;
                return Ok((Source::Copy(copy), None));
            }
            Method::GlanceDirect => {
                let size = self.deps.staging.size(&image.id).await.map_err(|_| {
                    FlowError::Abort(
                        "No data is staged for this image: stage it again with PUT /v2/images/{id}/stage.".into(),
                    )
                })?;
                if image.size.is_some_and(|s| u64::try_from(s).ok() != Some(size)) {
                    return Err(FlowError::Abort(format!(
                        "The staged data has {size} bytes but the image records {} bytes.",
                        image.size.unwrap_or_default()
                    )));
                }
                (image.id.clone(), self.staged_compressed(image).await?)
            }
            Method::WebDownload { .. } | Method::GlanceDownload(_) => {
                let web = web.ok_or_else(|| FlowError::Abort("The import has no URL to download from.".into()))?;
                let target = self.conversion_for(image);
                if target.is_none() && job.stores.len() == 1 {
                    return Ok((Source::Web(web.clone()), None));
                }
                let (body, _) = self.download(web, progress).await?;
                self.deps.staging.put(&image.id, body, self.deps.cap).await?;
                (image.id.clone(), false)
            }
        };
        let Some(output) = self.conversion_for(image) else {
            if compressed {
                return Ok((Source::Compressed(staged), None));
            }
            return Ok(match self.deps.staging.recorded(&staged).await {
                Some(facts) => (Source::Recorded(staged, facts), None),
                None => (Source::Staged(staged), None),
            });
        };
        let staged = if compressed {
            // Conversion reads a file at random: the data is decompressed into one first.
            let decompressed = format!("{}.decompressed", image.id);
            let body = decompressing(self.read_staged(&staged, progress).await?.0, self.deps.cap);
            self.deps.staging.put(&decompressed, body, self.deps.cap).await?;
            decompressed
        } else {
            staged
        };
        Ok((Source::Converted(staged, source_format(image)?, output), Some(output)))
    }

    /// Whether the staged data of a glance-direct import is to be decompressed: it is
    /// compressed and `[import] decompress` is on.
    async fn staged_compressed(&self, image: &Image) -> Result<bool, FlowError> {
        if !self.deps.config.import.decompress {
            return Ok(false);
        }
        let compression = sniff(&self.deps.staging.path(&image.id))
            .await
            .map_err(|e| FlowError::Retry(format!("could not read the staged data: {e}")))?;
        Ok(compression.is_some())
    }

    /// The body of `web`, counted, checked against its size and digests and decompressed
    /// when so configured.
    async fn download(&self, web: &WebSource, progress: &Progress) -> Result<(ByteStream, Option<u64>), FlowError> {
        let download = self.deps.fetcher.get_as(&web.url, self.deps.cap, web.token.as_deref()).await?;
        let mut body = progress.count(download.body, web.size.or(download.content_length));
        if let Some(size) = web.size {
            body = sized(body, size);
        }
        for expected in &web.checks {
            body = verified(body, expected.clone(), web.vouched_by);
        }
        Ok(if self.deps.config.import.decompress {
            // What decompression makes of it is known only at the end.
            (decompressing(body, self.deps.cap), None)
        } else {
            (body, download.content_length)
        })
    }

    async fn read_staged(&self, name: &str, progress: &Progress) -> Result<(ByteStream, Option<u64>), FlowError> {
        let size = self.deps.staging.size(name).await.ok();
        let body = self.deps.staging.read(name).await?;
        Ok((progress.count(body, size), size))
    }

    /// The format to convert `image` to, if conversion is configured and changes something.
    fn conversion_for(&self, image: &Image) -> Option<Format> {
        let output = self.deps.conversion?;
        let declared = image.disk_format.as_deref()?;
        (image.container_format.as_deref() == Some("bare") && declared != output.as_str() && declared != "iso")
            .then_some(output)
    }

    /// The source's bytes, and their size when it is known in advance.
    async fn open(
        &self,
        image: &Image,
        source: &Source,
        progress: &Progress,
    ) -> Result<(ByteStream, Option<u64>), FlowError> {
        match source {
            Source::Staged(name) | Source::Recorded(name, _) => self.read_staged(name, progress).await,
            Source::Converted(name, from, to) => {
                let body = converted(self.deps.staging.path(name), *from, *to);
                Ok((progress.count(body, None), None))
            }
            Source::Compressed(name) => {
                let (body, _) = self.read_staged(name, progress).await?;
                Ok((decompressing(body, self.deps.cap), None))
            }
            Source::Web(web) => self.download(web, progress).await,
            Source::Copy(location) => {
                let store = location.store.as_deref().and_then(|s| self.deps.stores.get(s)).ok_or_else(|| {
                    FlowError::Abort(format!("Store {:?} of the image's data is not configured", location.store))
                })?;
                let body = store.get(&location.url, None).await?;
                let size = image.size.and_then(|s| u64::try_from(s).ok());
                Ok((progress.count(body, size), size))
            }
        }
    }

    /// Writes the data to one store, inspecting and hashing it; the copy is removed again
    /// if it fails the checks.
    async fn write(
        &self,
        image: &Image,
        source: &Source,
        store: &dyn Store,
        disk_format: &str,
        progress: &Progress,
    ) -> Result<Written, FlowError> {
        if let Source::Recorded(name, facts) = source
            && let Some(written) = self.write_recorded(image, name, facts, store, disk_format).await?
        {
            return Ok(written);
        }
        let body = self.open(image, source, progress).await?;
        let copying = matches!(source, Source::Copy(_));
        let inspector =
            (!copying && image.container_format.as_deref() == Some("bare")).then(glint_formats::Inspector::new);
        let (ingested, inspector) = data::ingest(store, &image.id, body, self.deps.cap, inspector).await?;
        let report = inspector.map(glint_formats::Inspector::finish);
        if let (Source::Converted(_, _, to), Some(inspected)) = (source, &report)
            && let Err(err) = glint_formats::check_converted(inspected, *to)
        {
            remove(store, &image.id, &ingested.location).await;
            let from = image.disk_format.as_deref().unwrap_or_default();
            return Err(FlowError::Abort(format!("Image conversion from {from} to {to} failed: {err}")));
        }
        let mut declared = image.clone();
        declared.disk_format = Some(disk_format.to_owned());
        let checked = if copying {
            match image.checksum.as_deref() {
                Some(expected) if expected != ingested.checksum => Err(FlowError::Abort(format!(
                    "The copy's checksum {} differs from the image's {expected}",
                    ingested.checksum
                ))),
                _ => Ok(image.virtual_size),
            }
        } else {
            data::verdict(&declared, report, self.deps.config.images.require_image_format_match)
                .map_err(|e| FlowError::Abort(format!("Image format check failed: {e}")))
        };
        match checked {
            Ok(virtual_size) => Ok(Written { store: String::new(), data: ingested, virtual_size }),
            Err(err) => {
                remove(store, &image.id, &ingested.location).await;
                Err(err)
            }
        }
    }

    /// Writes the staged file `name` to one store without reading it for digests or
    /// inspection, which staging `facts` already hold: linked into a filesystem store on the
    /// same filesystem, else copied. `None` (and nothing written) when the file turns out
    /// changed since it was staged: the caller then reads and hashes it as it is.
    async fn write_recorded(
        &self,
        image: &Image,
        name: &str,
        facts: &StagedFacts,
        store: &dyn Store,
        disk_format: &str,
    ) -> Result<Option<Written>, FlowError> {
        let mut declared = image.clone();
        declared.disk_format = Some(disk_format.to_owned());
        let report = match (image.container_format.as_deref() == Some("bare"), facts.inspection.report()) {
            (false, _) => None,
            (true, Some(report)) => Some(report),
            // Recorded by a build that knows other formats: inspect the data as it is.
            (true, None) => return Ok(None),
        };
        // Checked again right before the data is used: the file may have changed since the
        // import began.
        if self.deps.staging.recorded(name).await.as_ref() != Some(facts) {
            return Ok(None);
        }
        let virtual_size = data::verdict(&declared, report, self.deps.config.images.require_image_format_match)
            .map_err(|e| FlowError::Abort(format!("Image format check failed: {e}")))?;
        let path = self.deps.staging.path(name);
        let location = match store.adopt(&image.id, &path).await? {
            Some(location) => location,
            None => {
                let body = self.deps.staging.read(name).await?;
                store.put_sized(&image.id, body, self.deps.cap, Some(facts.size)).await?
            }
        };
        if !self.deps.staging.unchanged_since(name, facts).await {
            tracing::warn!(image = %image.id, "the staged data changed during the import; hashing it again");
            remove(store, &image.id, &location).await;
            return Ok(None);
        }
        let ingested = Ingested {
            size: facts.size,
            checksum: facts.checksum.clone(),
            os_hash_value: facts.os_hash_value.clone(),
            location,
        };
        Ok(Some(Written { store: String::new(), data: ingested, virtual_size }))
    }

    /// Removes every file this import put in the staging area.
    async fn clean_staging(&self, image_id: &str, method: &Method) {
        let mut names = vec![format!("{image_id}.decompressed")];
        if *method != Method::CopyImage {
            names.push(image_id.to_owned());
        }
        for name in names {
            if let Err(err) = self.deps.staging.remove(&name).await {
                tracing::warn!(image = %image_id, error = %err, "could not remove staged data");
            }
        }
    }

    /// The final transaction: image, locations, import properties and task together, in as
    /// few statements as they take: `image` is the image as this import read it under its
    /// lock, whose import properties nobody else writes while the lock holds (checked here),
    /// so it is not read again. `Ok(false)` when the claim was lost (nothing written).
    #[allow(clippy::too_many_arguments)]
    async fn commit(
        &self,
        ctx: &FlowContext,
        task: &Task,
        job: &ImportJob,
        image: &Image,
        written: &[Written],
        failed: &[String],
        learned: Learned<'_>,
    ) -> Result<bool, FlowError> {
        let Learned { converted, remote } = learned;
        let deleted = || FlowError::Abort("Image has been deleted, aborting import.".into());
        // `Ok(false)` has written nothing, so committing it changes nothing.
        Ok(ctx
            .db
            .transaction_async(async |txn| {
                if !tasks::succeed_in(txn, &ctx.claim(task), json!({"image_id": job.image_id})).await? {
                    return Ok(false);
                }
                if job.method == Method::CopyImage {
                    if images::get(txn, &job.image_id).await?.is_none() {
                        return Err(deleted());
                    }
                } else {
                    let first = &written[0];
                    let remote_formats = remote.map(|r| (r.disk_format.as_str(), r.container_format.as_str()));
                    let imported = images::Imported {
                        data: &first.data,
                        virtual_size: first.virtual_size,
                        disk_format: converted.map(|f| f.as_str()).or(remote_formats.map(|(disk, _)| disk)),
                        container_format: if converted.is_some() {
                            Some("bare")
                        } else {
                            remote_formats.map(|(_, container)| container)
                        },
                    };
                    if !images::activate_import(txn, &job.image_id, &imported).await? {
                        // Read only now, to say what became of it.
                        return Err(match images::get(txn, &job.image_id).await? {
                            None => deleted(),
                            Some(now) => FlowError::Abort(format!(
                                "Image changed status to {} during the import, aborting.",
                                now.status
                            )),
                        });
                    }
                }
                if let Some(remote) = remote {
                    let copied: Vec<(&str, Option<&str>)> =
                        remote.properties.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))).collect();
                    images::set_properties(txn, &job.image_id, &copied).await?;
                }
                let copies: Vec<(&str, &str)> =
                    written.iter().map(|copy| (copy.data.location.as_str(), copy.store.as_str())).collect();
                locations::insert_many(txn, &job.image_id, &copies).await?;
                if !images::remove_property_if(txn, &job.image_id, IMPORT_TASK, &task.id).await? {
                    return Err(FlowError::Abort("The image's import lock was taken over by another import.".into()));
                }
                set_store_lists(txn, image, &self.targets(job), failed).await?;
                Ok(true)
            })
            .await?)
    }

    fn targets(&self, job: &ImportJob) -> Vec<String> {
        job.stores.iter().flatten().cloned().collect()
    }
}

/// The format `image` is declared in, as a conversion source.
fn source_format(image: &Image) -> Result<Format, FlowError> {
    let declared = image.disk_format.as_deref().unwrap_or_default();
    Format::from_name(declared)
        .ok_or_else(|| FlowError::Abort(format!("Cannot convert images of disk_format {declared}")))
}

/// Zeros handed on for the holes of a converted disk: the hashers still see every byte, but
/// no buffer is filled for them and the filesystem store leaves them unwritten.
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// The `from` image at `path` as a `to` image (raw or qcow2), converted on a blocking thread
/// as the stream is read, so that neither the staging area nor memory ever holds the output. A
/// conversion that fails (the source refused, malformed) ends the stream with an error that
/// fails the import for good.
fn converted(path: std::path::PathBuf, from: Format, to: Format) -> ByteStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut out = RawChunks(tx.clone());
        let outcome = if to == Format::Qcow2 {
            glint_formats::stream_qcow2(&path, from, &mut out).map(|_| ())
        } else {
            glint_formats::stream_raw(&path, from, &mut out).map(|_| ())
        };
        if let Err(err) = outcome {
            let message = format!("Image conversion from {from} to {to} failed: {err}");
            let _ = tx.blocking_send(Err(mismatch(message)));
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

/// A converted image as chunks on a channel.
struct RawChunks(tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>);

impl RawChunks {
    fn send(&self, chunk: bytes::Bytes) -> std::io::Result<()> {
        self.0.blocking_send(Ok(chunk)).map_err(|_| std::io::Error::other("the import stopped reading"))
    }
}

impl glint_formats::RawStream for RawChunks {
    fn data(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.send(bytes::Bytes::copy_from_slice(data))
    }

    fn zeros(&mut self, len: u64) -> std::io::Result<()> {
        let mut left = len;
        while left > 0 {
            let take = usize::try_from(left).unwrap_or(ZEROS.len()).min(ZEROS.len());
            self.send(bytes::Bytes::from_static(ZEROS.get(..take).unwrap_or_default()))?;
            left -= take as u64;
        }
        Ok(())
    }
}

/// Takes `done` off `os_glance_importing_to_stores` and records `failed` in
/// `os_glance_failed_import`.
async fn set_store_lists(
    db: &impl sea_orm::ConnectionTrait,
    image: &Image,
    done: &[String],
    failed: &[String],
) -> glint_core::Result<()> {
    let property = |name: &str| image.properties.get(name).cloned().flatten().unwrap_or_default();
    let importing = import::remove_stores(&property(IMPORTING_TO_STORES), done);
    let mut failures: Vec<String> =
        property(FAILED_IMPORT).split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    failures.extend(failed.iter().filter(|f| !failures.contains(f)).cloned().collect::<Vec<_>>());
    let failures = failures.join(",");
    images::set_properties(db, &image.id, &[(IMPORTING_TO_STORES, Some(&importing)), (FAILED_IMPORT, Some(&failures))])
        .await
}

async fn remove(store: &dyn Store, image_id: &str, location: &str) {
    if let Err(err) = store.delete(location).await {
        tracing::error!(image = %image_id, location, error = %err, "could not remove the data of a failed import");
    }
}

#[async_trait::async_trait]
impl Flow for ImportFlow {
    async fn run(&self, ctx: &FlowContext, task: &Task) -> Result<(), FlowError> {
        // A corrupt task stays corrupt: no retry.
        let job = ImportJob::of(task).map_err(|e| FlowError::Abort(e.to_string()))?;
        let image = self.locked_image(ctx, task, &job.image_id).await?;
        let remote = match &job.method {
            Method::GlanceDownload(remote) => {
                let prefixes = &self.deps.config.import.glance_download_properties;
                let found = glance_download::inspect(&self.deps.fetcher, remote, job.caller.as_ref(), prefixes).await?;
                Some(found.admitted_for(&image, task, job.caller.as_ref(), &self.deps)?)
            }
            _ => None,
        };
        let image = match &remote {
            Some(remote) => remote.applied_to(image),
            None => image,
        };
        let web = match (&job.method, &remote) {
            (Method::WebDownload { uri, validation }, _) => Some(WebSource::web_download(uri, validation.as_ref())),
            (_, Some(remote)) => Some(WebSource::glance_download(remote)),
            _ => None,
        };
        let progress = Progress::new(ctx);
        let work = async {
            let (source, converted) = self.prepare(ctx, &job, &image, web.as_ref(), &progress).await?;
            let disk_format =
                converted.map_or_else(|| image.disk_format.clone().unwrap_or_default(), |f| f.as_str().to_owned());
            let (mut written, mut failed) = (Vec::new(), Vec::new());
            let mut last_error = None;
            for target in &job.stores {
                let store_id = self.store_id(target).to_owned();
                let store = self.deps.stores.get(&store_id).cloned();
                let Some(store) = store else {
                    failed.push(store_id.clone());
                    last_error = Some(FlowError::Abort(format!("Store {store_id} is not configured")));
                    continue;
                };
                match self.write(&image, &source, store.as_ref(), &disk_format, &progress).await {
                    Ok(mut copy) => {
                        copy.store = store_id;
                        written.push(copy);
                    }
                    Err(err) => {
                        tracing::warn!(task = %task.id, store = %store_id, error = %err, "import to a store failed");
                        failed.push(store_id);
                        // A retry would write every store again: only a must-succeed import retries.
                        let retryable = job.all_stores_must_succeed && matches!(err, FlowError::Retry(_));
                        last_error = Some(err);
                        if retryable || job.all_stores_must_succeed {
                            break;
                        }
                    }
                }
            }
            Ok::<_, FlowError>((written, failed, last_error, converted))
        };
        let (written, failed, last_error, converted) = progress.around(ctx, task, work).await?;
        let undo = async |written: &[Written]| {
            for copy in written {
                if let Some(store) = self.deps.stores.get(&copy.store) {
                    remove(store.as_ref(), &job.image_id, &copy.data.location).await;
                }
            }
        };
        // A store the hand-over cut is no failure of that store: the next worker writes them all.
        if let Some(err) = last_error
            && (job.all_stores_must_succeed || written.is_empty() || ctx.hand_over.is_cancelled())
        {
            undo(&written).await;
            return Err(err);
        }
        let learned = Learned { converted, remote: remote.as_ref() };
        match self.commit(ctx, task, &job, &image, &written, &failed, learned).await {
            Ok(true) => {
                self.clean_staging(&job.image_id, &job.method).await;
                tracing::info!(task = %task.id, image = %job.image_id, method = job.method.name(), "import succeeded");
                Ok(())
            }
            Ok(false) => {
                undo(&written).await;
                Ok(())
            }
            Err(err) => {
                undo(&written).await;
                Err(err)
            }
        }
    }

    async fn fail(&self, ctx: &FlowContext, task: &Task, reason: &str) -> glint_core::Result<()> {
        let job = ImportJob::of(task).ok();
        let finished = ctx
            .db
            .transaction_async(async |txn| -> glint_core::Result<bool> {
                if !tasks::fail_in(txn, &ctx.claim(task), reason).await? {
                    return Ok(false);
                }
                let Some(job) = &job else { return Ok(true) };
                let Some(image) = images::get(txn, &job.image_id).await? else { return Ok(true) };
                if !images::remove_property_if(txn, &image.id, IMPORT_TASK, &task.id).await? {
                    // Someone took the lock over; the image is theirs now.
                    return Ok(true);
                }
                if job.method != Method::CopyImage {
                    images::back_to_queued(txn, &image.id, glint_core::image::Status::Importing).await?;
                }
                let targets = self.targets(job);
                set_store_lists(txn, &image, &targets, &targets).await?;
                Ok(true)
            })
            .await?;
        if !finished {
            return Ok(());
        }
        if let Some(job) = &job {
            self.clean_staging(&job.image_id, &job.method).await;
        }
        Ok(())
    }
}
